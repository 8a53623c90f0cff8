//! Schema classification (`cloud.md` §7) and reviews (§8).
//!
//! - this module: the review record, the classes, and [`classify_new`], a pure function from a
//!   hash's columns and the most recently approved hash to a class and a difference;
//! - [`decide`]: approval requests and policy decisions turned into column decisions,
//!   validated (§8.2);
//! - [`ops`]: the store transactions that list, show, approve and reject reviews.

pub mod decide;
pub mod ops;

use std::collections::BTreeMap;

use omega_protocol::schema::{ColumnInfo, SchemaColumns};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::policy::Scope;

/// How a batch's hash relates to what is approved in its scope (§7.2). The names are the API
/// strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaClass {
    /// The hash is approved in scope: materialize.
    CompatibleMapped,
    /// The hash has a pending or rejected review: stage.
    Pending,
    /// No hash of this table is approved in scope yet, or the columns are unknown.
    Ambiguous,
    /// Only new nullable, non-key columns compared with the most recently approved hash.
    CompatibleAdditive,
    /// Any other difference.
    Breaking,
}

impl SchemaClass {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaClass::CompatibleMapped => "compatible_mapped",
            SchemaClass::Pending => "pending",
            SchemaClass::Ambiguous => "ambiguous",
            SchemaClass::CompatibleAdditive => "compatible_additive",
            SchemaClass::Breaking => "breaking",
        }
    }

    /// Parses [`SchemaClass::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "compatible_mapped" => SchemaClass::CompatibleMapped,
            "pending" => SchemaClass::Pending,
            "ambiguous" => SchemaClass::Ambiguous,
            "compatible_additive" => SchemaClass::CompatibleAdditive,
            "breaking" => SchemaClass::Breaking,
            _ => return None,
        })
    }
}

/// A review's state (§8.1).
///
/// Transitions: `pending` → `approved` (approve), `pending` → `rejected` (reject),
/// `rejected` → `approved` (approve). `approved` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewStatus {
    /// Awaiting a decision; its rows are staged.
    Pending,
    /// Columns bound, mirror provisioned.
    Approved,
    /// Refused; its rows stay staged until purged.
    Rejected,
}

impl ReviewStatus {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
        }
    }

    /// Parses [`ReviewStatus::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ReviewStatus::Pending,
            "approved" => ReviewStatus::Approved,
            "rejected" => ReviewStatus::Rejected,
            _ => return None,
        })
    }
}

/// Who decided a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// An operator, through the API or CLI.
    Api,
    /// `auto_approve` or `allow_additive_continue`.
    Policy,
}

impl DecidedBy {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Api => "api",
            DecidedBy::Policy => "policy",
        }
    }

    /// Parses [`DecidedBy::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(DecidedBy::Api),
            "policy" => Some(DecidedBy::Policy),
            _ => None,
        }
    }
}

/// What happens to one source column (§8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnAction {
    /// Stored in the mirror.
    Mirror,
    /// Never stored.
    Ignore,
}

impl ColumnAction {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnAction::Mirror => "mirror",
            ColumnAction::Ignore => "ignore",
        }
    }
}

/// The decision for one source column of an approved hash: also its binding (§3.2
/// `omega_bindings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDecision {
    /// Source column name.
    pub name: String,
    /// Mirror or ignore.
    pub action: ColumnAction,
    /// The mirror column, for `mirror`.
    pub mirror_column: Option<String>,
}

/// Difference between a hash and the approved hash it was compared with (§8.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaDiff {
    /// Columns only in the new hash.
    pub added: Vec<String>,
    /// Columns only in the approved hash.
    pub dropped: Vec<String>,
    /// Columns in both whose affinity, key position or NOT NULL flag differ.
    pub changed: Vec<String>,
}

/// A review (§8.1), one per (scope, table, hash).
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// UUIDv7.
    pub id: Uuid,
    /// Reach.
    pub scope: Scope,
    /// Source table.
    pub source_table: String,
    /// The reviewed hash.
    pub schema_hash: String,
    /// Class at creation (`ambiguous`, `compatible_additive` or `breaking`).
    pub class: SchemaClass,
    /// The hash's columns; `None` until a batch brings them (§7.4).
    pub columns: Option<SchemaColumns>,
    /// The approved hash it was compared with.
    pub compared_hash: Option<String>,
    /// The difference to `compared_hash`.
    pub diff: Option<SchemaDiff>,
    /// State.
    pub status: ReviewStatus,
    /// Per-column decisions, once approved.
    pub decisions: Vec<ColumnDecision>,
    /// Who decided.
    pub decided_by: Option<DecidedBy>,
    /// Reason given on reject.
    pub reason: Option<String>,
    /// The mirror this hash writes to, once approved.
    pub mirror_table: Option<String>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
    /// Approved or rejected.
    pub decided_at: Option<OffsetDateTime>,
}

impl Review {
    /// A new pending review.
    pub fn new_pending(
        scope: Scope,
        source_table: &str,
        schema_hash: &str,
        columns: Option<SchemaColumns>,
        classified: Classified,
        now: OffsetDateTime,
    ) -> Self {
        Review {
            id: Uuid::now_v7(),
            scope,
            source_table: source_table.to_string(),
            schema_hash: schema_hash.to_string(),
            class: classified.class,
            columns,
            compared_hash: classified.compared_hash,
            diff: classified.diff,
            status: ReviewStatus::Pending,
            decisions: Vec::new(),
            decided_by: None,
            reason: None,
            mirror_table: None,
            created_at: now,
            updated_at: now,
            decided_at: None,
        }
    }
}

/// The class of a hash that has no review yet, with what it was compared against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `ambiguous`, `compatible_additive` or `breaking`.
    pub class: SchemaClass,
    /// The most recently approved hash, when there is one and both column sets are known.
    pub compared_hash: Option<String>,
    /// The difference to it.
    pub diff: Option<SchemaDiff>,
}

/// §7.2 for a hash without a review: compare with the most recently approved hash in scope.
pub fn classify_new(
    columns: Option<&SchemaColumns>,
    latest_approved: Option<&Review>,
) -> Classified {
    let ambiguous = Classified {
        class: SchemaClass::Ambiguous,
        compared_hash: None,
        diff: None,
    };
    let (Some(cols), Some(approved)) = (columns, latest_approved) else {
        return ambiguous;
    };
    let Some(old) = approved.columns.as_ref() else {
        return ambiguous;
    };
    let diff = diff_columns(old, cols);
    let new_by_name: BTreeMap<&str, &ColumnInfo> =
        cols.columns.iter().map(|c| (c.name.as_str(), c)).collect();
    let additive = diff.dropped.is_empty()
        && diff.changed.is_empty()
        && diff.added.iter().all(|n| {
            new_by_name
                .get(n.as_str())
                .is_some_and(|c| !c.not_null && c.pk_ordinal == 0)
        });
    Classified {
        class: if additive {
            SchemaClass::CompatibleAdditive
        } else {
            SchemaClass::Breaking
        },
        compared_hash: Some(approved.schema_hash.clone()),
        diff: Some(diff),
    }
}

/// Added, dropped and changed columns from `old` to `new`, each sorted by name.
pub fn diff_columns(old: &SchemaColumns, new: &SchemaColumns) -> SchemaDiff {
    let old_by: BTreeMap<&str, &ColumnInfo> =
        old.columns.iter().map(|c| (c.name.as_str(), c)).collect();
    let new_by: BTreeMap<&str, &ColumnInfo> =
        new.columns.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut d = SchemaDiff::default();
    for (name, n) in &new_by {
        match old_by.get(name) {
            None => d.added.push(name.to_string()),
            Some(o) if *o != *n => d.changed.push(name.to_string()),
            Some(_) => {}
        }
    }
    for name in old_by.keys() {
        if !new_by.contains_key(name) {
            d.dropped.push(name.to_string());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::schema::Affinity;

    fn col(name: &str, a: Affinity, pk: u32, nn: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            decl_type_affinity: a,
            pk_ordinal: pk,
            not_null: nn,
        }
    }

    fn cols(c: Vec<ColumnInfo>) -> SchemaColumns {
        SchemaColumns {
            table_name: "t".into(),
            columns: c,
        }
    }

    fn approved(c: SchemaColumns) -> Review {
        let mut r = Review::new_pending(
            Scope::Project,
            "t",
            "h0",
            Some(c),
            classify_new(None, None),
            OffsetDateTime::UNIX_EPOCH,
        );
        r.status = ReviewStatus::Approved;
        r
    }

    fn base() -> Vec<ColumnInfo> {
        vec![
            col("id", Affinity::Integer, 1, true),
            col("mode", Affinity::Text, 0, false),
        ]
    }

    #[test]
    fn first_hash_of_a_table_is_ambiguous() {
        assert_eq!(
            classify_new(Some(&cols(base())), None).class,
            SchemaClass::Ambiguous
        );
    }

    #[test]
    fn unknown_columns_are_ambiguous() {
        let a = approved(cols(base()));
        assert_eq!(classify_new(None, Some(&a)).class, SchemaClass::Ambiguous);
    }

    #[test]
    fn a_new_nullable_column_is_additive() {
        let a = approved(cols(base()));
        let mut c = base();
        c.push(col("extra", Affinity::Real, 0, false));
        let got = classify_new(Some(&cols(c)), Some(&a));
        assert_eq!(got.class, SchemaClass::CompatibleAdditive);
        assert_eq!(got.diff.unwrap().added, vec!["extra".to_string()]);
        assert_eq!(got.compared_hash.as_deref(), Some("h0"));
    }

    #[test]
    fn not_null_new_columns_drops_and_affinity_changes_are_breaking() {
        let a = approved(cols(base()));
        let mut c = base();
        c.push(col("extra", Affinity::Real, 0, true));
        assert_eq!(
            classify_new(Some(&cols(c)), Some(&a)).class,
            SchemaClass::Breaking
        );
        let c = vec![col("id", Affinity::Integer, 1, true)];
        let got = classify_new(Some(&cols(c)), Some(&a));
        assert_eq!(got.class, SchemaClass::Breaking);
        assert_eq!(got.diff.unwrap().dropped, vec!["mode".to_string()]);
        let c = vec![
            col("id", Affinity::Integer, 1, true),
            col("mode", Affinity::Blob, 0, false),
        ];
        let got = classify_new(Some(&cols(c)), Some(&a));
        assert_eq!(got.diff.unwrap().changed, vec!["mode".to_string()]);
    }
}
