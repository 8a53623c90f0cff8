//! Column metadata and the schema fingerprint (`protocol.md` §6).

use serde::{Deserialize, Serialize};

/// SQLite column affinity (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Affinity {
    /// Declared type contains `INT`.
    Integer,
    /// Contains `CHAR`, `CLOB` or `TEXT`.
    Text,
    /// Contains `BLOB`, or no declared type.
    Blob,
    /// Contains `REAL`, `FLOA` or `DOUB`.
    Real,
    /// Anything else.
    Numeric,
}

/// One column as it enters the schema hash (§6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// `table_info.name`, case kept.
    pub name: String,
    /// Affinity of the declared type.
    pub decl_type_affinity: Affinity,
    /// 0 if not in the primary key, else 1..N.
    pub pk_ordinal: u32,
    /// `table_info.notnull = 1`.
    pub not_null: bool,
}

/// The hash input and the `schema_columns` wire object (§6.2, §6.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaColumns {
    /// Table name as stored in the schema.
    pub table_name: String,
    /// Columns, sorted by name (UTF-8 byte order) when hashed.
    pub columns: Vec<ColumnInfo>,
}
