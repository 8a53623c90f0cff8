//! Column metadata and the schema fingerprint (`protocol.md` §6).

use serde::{Deserialize, Serialize};

use crate::ids::sha256_hex;
use crate::json::{Json, to_canonical_vec};

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

impl Affinity {
    /// The wire name: `INTEGER`, `TEXT`, `BLOB`, `REAL` or `NUMERIC`.
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::Integer => "INTEGER",
            Affinity::Text => "TEXT",
            Affinity::Blob => "BLOB",
            Affinity::Real => "REAL",
            Affinity::Numeric => "NUMERIC",
        }
    }

    /// Reads a wire name (exact, upper case).
    pub fn parse(name: &str) -> Option<Affinity> {
        Some(match name {
            "INTEGER" => Affinity::Integer,
            "TEXT" => Affinity::Text,
            "BLOB" => Affinity::Blob,
            "REAL" => Affinity::Real,
            "NUMERIC" => Affinity::Numeric,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The affinity of a declared column type, by SQLite's rules in the order of §6.3, applied to
/// the ASCII-upper-cased type: `INT` → INTEGER; `CHAR`/`CLOB`/`TEXT` → TEXT; `BLOB` or an empty
/// type → BLOB; `REAL`/`FLOA`/`DOUB` → REAL; otherwise NUMERIC.
pub fn affinity(decl_type: &str) -> Affinity {
    let t = decl_type.to_ascii_uppercase();
    let has = |s: &str| t.contains(s);
    if has("INT") {
        Affinity::Integer
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        Affinity::Text
    } else if has("BLOB") || t.is_empty() {
        Affinity::Blob
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
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

impl ColumnInfo {
    /// The column's JSON object (§6.2).
    pub fn to_json(&self) -> Json {
        Json::Object(vec![
            ("name".into(), Json::from(self.name.as_str())),
            (
                "decl_type_affinity".into(),
                Json::from(self.decl_type_affinity.as_str()),
            ),
            (
                "pk_ordinal".into(),
                Json::Integer(i64::from(self.pk_ordinal)),
            ),
            ("not_null".into(), Json::Bool(self.not_null)),
        ])
    }
}

/// The hash input and the `schema_columns` wire object (§6.2, §6.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaColumns {
    /// Table name as stored in the schema.
    pub table_name: String,
    /// Columns, sorted by name (UTF-8 byte order) when hashed.
    pub columns: Vec<ColumnInfo>,
}

impl SchemaColumns {
    /// The wire object (§6.7), columns in their given order.
    pub fn to_json(&self) -> Json {
        Json::Object(vec![
            ("table_name".into(), Json::from(self.table_name.as_str())),
            (
                "columns".into(),
                Json::Array(self.columns.iter().map(ColumnInfo::to_json).collect()),
            ),
        ])
    }

    /// The canonical bytes the hash is taken of (§6.2, §6.4): columns sorted by name as
    /// UTF-8 bytes, then canonical JSON (§5).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut columns: Vec<&ColumnInfo> = self.columns.iter().collect();
        columns.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let object = Json::Object(vec![
            ("table_name".into(), Json::from(self.table_name.as_str())),
            (
                "columns".into(),
                Json::Array(columns.into_iter().map(ColumnInfo::to_json).collect()),
            ),
        ]);
        to_canonical_vec(&object)
    }

    /// `schema_hash` of these columns (§6.4).
    pub fn hash(&self) -> String {
        schema_hash(self)
    }

    /// The primary-key columns' names, in `pk_ordinal` order.
    pub fn pk_columns(&self) -> Vec<&str> {
        let mut pk: Vec<&ColumnInfo> = self.columns.iter().filter(|c| c.pk_ordinal > 0).collect();
        pk.sort_by_key(|c| c.pk_ordinal);
        pk.into_iter().map(|c| c.name.as_str()).collect()
    }
}

/// `schema_hash` (§6.4): lowercase hex SHA-256 of [`SchemaColumns::canonical_bytes`].
pub fn schema_hash(columns: &SchemaColumns) -> String {
    sha256_hex(&columns.canonical_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, a: Affinity, pk: u32, not_null: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            decl_type_affinity: a,
            pk_ordinal: pk,
            not_null,
        }
    }

    #[test]
    fn affinity_follows_sqlite_rules_in_order() {
        let cases = [
            ("INTEGER", Affinity::Integer),
            ("bigint", Affinity::Integer),
            ("POINT", Affinity::Integer), // contains INT, checked first
            ("VARCHAR(20)", Affinity::Text),
            ("clob", Affinity::Text),
            ("CHARINT", Affinity::Integer),
            ("BLOB", Affinity::Blob),
            ("", Affinity::Blob),
            ("REAL", Affinity::Real),
            ("floating point", Affinity::Integer), // "point" contains INT
            ("FLOAT", Affinity::Real),
            ("double precision", Affinity::Real),
            ("DECIMAL(10,5)", Affinity::Numeric),
            ("BOOLEAN", Affinity::Numeric),
            ("DATETIME", Affinity::Numeric),
            ("TEXTBLOB", Affinity::Text),
        ];
        for (decl, a) in cases {
            assert_eq!(affinity(decl), a, "{decl}");
        }
    }

    #[test]
    fn device_state_vector_of_section_6_6_hashes_as_published() {
        let s = SchemaColumns {
            table_name: "device_state".into(),
            columns: vec![
                col("mode", Affinity::Text, 0, false),
                col("id", Affinity::Integer, 1, true),
            ],
        };
        assert_eq!(
            String::from_utf8(s.canonical_bytes()).unwrap(),
            r#"{"columns":[{"decl_type_affinity":"INTEGER","name":"id","not_null":true,"pk_ordinal":1},{"decl_type_affinity":"TEXT","name":"mode","not_null":false,"pk_ordinal":0}],"table_name":"device_state"}"#
        );
        assert_eq!(
            schema_hash(&s),
            "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0"
        );
    }

    #[test]
    fn temps_vector_of_section_6_6_hashes_as_published() {
        let s = SchemaColumns {
            table_name: "temps".into(),
            columns: vec![
                col("value", Affinity::Real, 0, false),
                col("ts", Affinity::Text, 0, true),
                col("id", Affinity::Integer, 1, true),
            ],
        };
        assert_eq!(
            String::from_utf8(s.canonical_bytes()).unwrap(),
            r#"{"columns":[{"decl_type_affinity":"INTEGER","name":"id","not_null":true,"pk_ordinal":1},{"decl_type_affinity":"TEXT","name":"ts","not_null":true,"pk_ordinal":0},{"decl_type_affinity":"REAL","name":"value","not_null":false,"pk_ordinal":0}],"table_name":"temps"}"#
        );
        assert_eq!(
            s.hash(),
            "3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142"
        );
    }

    #[test]
    fn hash_changes_with_not_null_but_not_with_column_order() {
        let a = SchemaColumns {
            table_name: "t".into(),
            columns: vec![
                col("a", Affinity::Integer, 1, true),
                col("B", Affinity::Text, 0, false),
            ],
        };
        let mut b = a.clone();
        b.columns.reverse();
        assert_eq!(a.hash(), b.hash());
        b.columns[0].not_null = true;
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.pk_columns(), ["a"]);
    }

    #[test]
    fn wire_object_reads_back_through_serde() {
        let s = SchemaColumns {
            table_name: "t".into(),
            columns: vec![col("a", Affinity::Numeric, 2, false)],
        };
        let text = crate::json::to_compact_vec(&s.to_json());
        let back: SchemaColumns = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, s);
    }
}
