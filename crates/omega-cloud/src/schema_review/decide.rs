//! Column decisions for an approval (`cloud.md` §8.2), from an operator's request or from
//! the policy (§7.2, §7.3). Pure: validation only, no store.

use std::collections::{BTreeMap, BTreeSet};

use omega_protocol::schema::SchemaColumns;

use super::{ColumnAction, ColumnDecision, Review, ReviewStatus};
use crate::naming::{self, RenameError};
use crate::store::StoreError;

/// One column of an approval request: `{"name", "action", "as"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRequest {
    /// Source column name.
    pub name: String,
    /// Mirror or ignore.
    pub action: ColumnAction,
    /// Mirror column name (`as`), for `mirror`.
    pub as_name: Option<String>,
}

impl ColumnRequest {
    /// Parses the CLI form `NAME=mirror`, `NAME=ignore` or `NAME=mirror:NEWNAME`. The name is
    /// everything before the last `=`, so column names containing `=` still work.
    pub fn parse_cli(s: &str) -> Result<Self, ReviewError> {
        let bad =
            || ReviewError::InvalidRequest(format!("`{s}`: want NAME=mirror|ignore|mirror:NEW"));
        let (name, action) = s.rsplit_once('=').ok_or_else(bad)?;
        let (action, as_name) = match action.split_once(':') {
            Some(("mirror", new)) => (ColumnAction::Mirror, Some(new.to_string())),
            None if action == "mirror" => (ColumnAction::Mirror, None),
            None if action == "ignore" => (ColumnAction::Ignore, None),
            _ => return Err(bad()),
        };
        Ok(ColumnRequest {
            name: name.to_string(),
            action,
            as_name,
        })
    }
}

/// An approval request (§8.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApproveRequest {
    /// Explicit column actions.
    pub columns: Vec<ColumnRequest>,
    /// Every column without an explicit action is `mirror`.
    pub all_mirror: bool,
}

impl ApproveRequest {
    /// All columns `mirror` under their default names.
    pub fn all_mirror() -> Self {
        ApproveRequest {
            columns: Vec::new(),
            all_mirror: true,
        }
    }
}

/// Why a review operation was refused. [`ReviewError::code`] is the API error code.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No review with this id.
    #[error("review {0} not found")]
    NotFound(String),
    /// Only a pending (or, for approve, a rejected) review can be decided.
    #[error("review is {0}, not pending")]
    NotPending(&'static str),
    /// The hash's columns are not known yet (§7.4): a batch with `schema_columns` must come first.
    #[error("the columns of this hash are unknown until a batch brings `schema_columns`")]
    ColumnsUnknown,
    /// Columns without an action.
    #[error("no action for column(s) {}: give one or use all_mirror", .0.join(", "))]
    IncompleteColumnActions(Vec<String>),
    /// A key column was not `mirror`.
    #[error("key column `{0}` must be mirrored")]
    KeyColumnNotMirrored(String),
    /// A mirror column name given with `as` is not allowed, or two columns map to one name.
    #[error("invalid column name: {0}")]
    InvalidColumnName(String),
    /// The mirror already has this column with another type.
    #[error(
        "mirror `{mirror}` already has column `{column}` as {existing}, not {wanted}: rename it with `as`"
    )]
    ColumnTypeConflict {
        /// Mirror table.
        mirror: String,
        /// Mirror column.
        column: String,
        /// Type it has.
        existing: &'static str,
        /// Type this approval needs.
        wanted: &'static str,
    },
    /// The request is malformed (unknown column, duplicate entry, `as` on `ignore`, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReviewError {
    /// The API error code (`cloud.md` §18).
    pub fn code(&self) -> &'static str {
        match self {
            ReviewError::NotFound(_) => "not_found",
            ReviewError::NotPending(_) => "review_not_pending",
            ReviewError::ColumnsUnknown => "columns_unknown",
            ReviewError::IncompleteColumnActions(_) | ReviewError::KeyColumnNotMirrored(_) => {
                "incomplete_column_actions"
            }
            ReviewError::InvalidColumnName(_) => "invalid_column_name",
            ReviewError::ColumnTypeConflict { .. } => "column_type_conflict",
            ReviewError::InvalidRequest(_) => "invalid_request",
            ReviewError::Store(_) => "store_unavailable",
        }
    }
}

impl From<RenameError> for ReviewError {
    fn from(e: RenameError) -> Self {
        ReviewError::InvalidColumnName(e.to_string())
    }
}

/// Checks that a review may be approved (§8.2.5).
pub fn check_approvable(review: &Review) -> Result<&SchemaColumns, ReviewError> {
    if review.status == ReviewStatus::Approved {
        return Err(ReviewError::NotPending(review.status.as_str()));
    }
    review.columns.as_ref().ok_or(ReviewError::ColumnsUnknown)
}

/// Turns an approval request into one decision per column, in the hash's column order
/// (§8.2.1–2).
pub fn decisions_from_request(
    columns: &SchemaColumns,
    req: &ApproveRequest,
) -> Result<Vec<ColumnDecision>, ReviewError> {
    let known: BTreeSet<&str> = columns.columns.iter().map(|c| c.name.as_str()).collect();
    let mut given: BTreeMap<&str, &ColumnRequest> = BTreeMap::new();
    for c in &req.columns {
        if !known.contains(c.name.as_str()) {
            return Err(ReviewError::InvalidRequest(format!(
                "no column `{}` in this hash",
                c.name
            )));
        }
        if given.insert(c.name.as_str(), c).is_some() {
            return Err(ReviewError::InvalidRequest(format!(
                "column `{}` given twice",
                c.name
            )));
        }
    }
    let missing: Vec<String> = columns
        .columns
        .iter()
        .filter(|c| !given.contains_key(c.name.as_str()) && !req.all_mirror)
        .map(|c| c.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(ReviewError::IncompleteColumnActions(missing));
    }
    let mut out = Vec::with_capacity(columns.columns.len());
    for c in &columns.columns {
        let decision = match given.get(c.name.as_str()) {
            Some(r) => match (r.action, &r.as_name) {
                (ColumnAction::Ignore, Some(_)) => {
                    return Err(ReviewError::InvalidRequest(format!(
                        "column `{}`: `as` needs action mirror",
                        c.name
                    )));
                }
                (ColumnAction::Ignore, None) => ColumnDecision {
                    name: c.name.clone(),
                    action: ColumnAction::Ignore,
                    mirror_column: None,
                },
                (ColumnAction::Mirror, Some(new)) => {
                    naming::validate_rename(new)?;
                    mirror_decision(&c.name, new.clone())
                }
                (ColumnAction::Mirror, None) => {
                    mirror_decision(&c.name, naming::mirror_column(&c.name))
                }
            },
            None => mirror_decision(&c.name, naming::mirror_column(&c.name)),
        };
        if c.pk_ordinal > 0 && decision.action != ColumnAction::Mirror {
            return Err(ReviewError::KeyColumnNotMirrored(c.name.clone()));
        }
        out.push(decision);
    }
    check_distinct(&out)?;
    Ok(out)
}

/// Decisions the policy takes (§7.2 additive continue, §7.3 auto approve): every column
/// `mirror`. A column the previous approval also had keeps its decision there (an ignored
/// column stays ignored under additive continue, a renamed one keeps its mirror name).
pub fn policy_decisions(
    columns: &SchemaColumns,
    previous: Option<&Review>,
    keep_ignored: bool,
) -> Vec<ColumnDecision> {
    let prev: BTreeMap<&str, &ColumnDecision> = previous
        .map(|r| r.decisions.iter().map(|d| (d.name.as_str(), d)).collect())
        .unwrap_or_default();
    columns
        .columns
        .iter()
        .map(|c| match prev.get(c.name.as_str()) {
            Some(d) if d.action == ColumnAction::Mirror => (*d).clone(),
            Some(d) if keep_ignored && c.pk_ordinal == 0 => (*d).clone(),
            _ => mirror_decision(&c.name, naming::mirror_column(&c.name)),
        })
        .collect()
}

fn mirror_decision(name: &str, mirror_column: String) -> ColumnDecision {
    ColumnDecision {
        name: name.to_string(),
        action: ColumnAction::Mirror,
        mirror_column: Some(mirror_column),
    }
}

fn check_distinct(decisions: &[ColumnDecision]) -> Result<(), ReviewError> {
    let mut seen = BTreeSet::new();
    for d in decisions {
        if let Some(m) = &d.mirror_column
            && !seen.insert(m.as_str())
        {
            return Err(ReviewError::InvalidColumnName(format!(
                "two columns map to mirror column `{m}`"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::schema::{Affinity, ColumnInfo};

    fn cols() -> SchemaColumns {
        let c = |name: &str, pk| ColumnInfo {
            name: name.into(),
            decl_type_affinity: Affinity::Text,
            pk_ordinal: pk,
            not_null: pk > 0,
        };
        SchemaColumns {
            table_name: "t".into(),
            columns: vec![c("id", 1), c("mode", 0), c("secret", 0), c("device_id", 0)],
        }
    }

    fn req(cols: &[&str], all: bool) -> ApproveRequest {
        ApproveRequest {
            columns: cols
                .iter()
                .map(|s| ColumnRequest::parse_cli(s).unwrap())
                .collect(),
            all_mirror: all,
        }
    }

    #[test]
    fn all_mirror_fills_missing_actions_and_renames_device_id() {
        let d = decisions_from_request(&cols(), &req(&["secret=ignore"], true)).unwrap();
        let names: Vec<_> = d.iter().map(|d| d.mirror_column.clone()).collect();
        assert_eq!(
            names,
            vec![
                Some("id".into()),
                Some("mode".into()),
                None,
                Some("device_id_src".into())
            ]
        );
    }

    #[test]
    fn missing_actions_are_listed() {
        let e = decisions_from_request(&cols(), &req(&["id=mirror"], false)).unwrap_err();
        assert_eq!(e.code(), "incomplete_column_actions");
        assert!(e.to_string().contains("mode, secret, device_id"), "{e}");
    }

    #[test]
    fn key_columns_must_be_mirrored() {
        let e = decisions_from_request(&cols(), &req(&["id=ignore"], true)).unwrap_err();
        assert!(matches!(e, ReviewError::KeyColumnNotMirrored(_)));
    }

    #[test]
    fn renames_are_validated_and_must_not_collide() {
        for bad in [
            "mode=mirror:Mode",
            "mode=mirror:_omega_x",
            "mode=mirror:device_id",
        ] {
            let e = decisions_from_request(&cols(), &req(&[bad], true)).unwrap_err();
            assert_eq!(e.code(), "invalid_column_name", "{bad}");
        }
        let e = decisions_from_request(&cols(), &req(&["mode=mirror:id"], true)).unwrap_err();
        assert_eq!(e.code(), "invalid_column_name");
        let d = decisions_from_request(&cols(), &req(&["mode=mirror:mode_v2"], true)).unwrap();
        assert_eq!(d[1].mirror_column.as_deref(), Some("mode_v2"));
    }

    #[test]
    fn unknown_columns_and_bad_cli_forms_are_invalid_requests() {
        let e = decisions_from_request(&cols(), &req(&["nope=mirror"], true)).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(ColumnRequest::parse_cli("x=copy").is_err());
        assert_eq!(ColumnRequest::parse_cli("a=b=ignore").unwrap().name, "a=b");
    }
}
