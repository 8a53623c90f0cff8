//! The PostgreSQL store's review and binding statements.

use deadpool_postgres::Object;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::policy::Scope;
use crate::schema_review::{ColumnAction, DecidedBy, Review, ReviewStatus, SchemaClass};
use crate::store::codec;
use crate::store::{StoreError, StoreResult};

use super::queries::*;

// ---- reviews ----

const REVIEW_COLS: &str = "id, scope, source_table, schema_hash, class, columns::text,
    compared_hash, diff::text, status, decisions::text, decided_by, reason, mirror_table,
    created_at, updated_at, decided_at";

fn review_from(r: &Row) -> StoreResult<Review> {
    let scope: String = r.get(1);
    let class: String = r.get(4);
    let status: String = r.get(8);
    let decided_by: Option<String> = r.get(10);
    Ok(Review {
        id: r.get(0),
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.scope", &scope))?,
        source_table: r.get(2),
        schema_hash: r.get(3),
        class: SchemaClass::parse(&class)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.class", &class))?,
        columns: r
            .get::<_, Option<&str>>(5)
            .map(codec::parse_columns)
            .transpose()?,
        compared_hash: r.get(6),
        diff: r
            .get::<_, Option<&str>>(7)
            .map(codec::parse_diff)
            .transpose()?,
        status: ReviewStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.status", &status))?,
        decisions: codec::parse_decisions(r.get(9))?,
        decided_by: decided_by.as_deref().and_then(DecidedBy::parse),
        reason: r.get(11),
        mirror_table: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
        decided_at: r.get(15),
    })
}

pub(super) async fn review_by_key(
    c: &Object,
    scope: &str,
    table: &str,
    hash: &str,
) -> StoreResult<Option<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews
         WHERE scope = $1 AND source_table = $2 AND schema_hash = $3"
    );
    query_opt(c, &sql, &[&scope, &table, &hash])
        .await?
        .as_ref()
        .map(review_from)
        .transpose()
}

pub(super) async fn review_get(c: &Object, id: Uuid, lock: bool) -> StoreResult<Option<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    query_opt(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(review_from)
        .transpose()
}

pub(super) async fn review_latest_approved(
    c: &Object,
    scope: &str,
    table: &str,
) -> StoreResult<Option<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews
         WHERE scope = $1 AND source_table = $2 AND status = 'approved'
         ORDER BY decided_at DESC, id DESC LIMIT 1"
    );
    query_opt(c, &sql, &[&scope, &table])
        .await?
        .as_ref()
        .map(review_from)
        .transpose()
}

pub(super) async fn reviews(c: &Object, status: Option<ReviewStatus>) -> StoreResult<Vec<Review>> {
    let sql = format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews WHERE ($1::text IS NULL OR status = $1) ORDER BY id"
    );
    let status = status.map(ReviewStatus::as_str);
    query(c, &sql, &[&status])
        .await?
        .iter()
        .map(review_from)
        .collect()
}

pub(super) async fn review_insert(c: &Object, r: &Review) -> StoreResult<bool> {
    let n = exec(
        c,
        "INSERT INTO omega_reviews (id, scope, source_table, schema_hash, class, columns,
             compared_hash, diff, status, decisions, decided_by, reason, mirror_table,
             created_at, updated_at, decided_at)
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8::text::jsonb, $9,
                 $10::text::jsonb, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (scope, source_table, schema_hash) DO NOTHING",
        &[
            &r.id,
            &r.scope.key(),
            &r.source_table,
            &r.schema_hash,
            &r.class.as_str(),
            &r.columns.as_ref().map(codec::columns_json),
            &r.compared_hash,
            &r.diff.as_ref().map(codec::diff_json),
            &r.status.as_str(),
            &codec::decisions_json(&r.decisions),
            &r.decided_by.map(DecidedBy::as_str),
            &r.reason,
            &r.mirror_table,
            &r.created_at,
            &r.updated_at,
            &r.decided_at,
        ],
    )
    .await?;
    if n == 1 && r.status == ReviewStatus::Approved {
        bindings_put(c, r).await?;
    }
    Ok(n == 1)
}

pub(super) async fn review_save(c: &Object, r: &Review) -> StoreResult<()> {
    exec(
        c,
        "UPDATE omega_reviews SET class = $2, columns = $3::text::jsonb, compared_hash = $4,
             diff = $5::text::jsonb, status = $6, decisions = $7::text::jsonb,
             decided_by = $8, reason = $9, mirror_table = $10, updated_at = $11,
             decided_at = $12
         WHERE id = $1",
        &[
            &r.id,
            &r.class.as_str(),
            &r.columns.as_ref().map(codec::columns_json),
            &r.compared_hash,
            &r.diff.as_ref().map(codec::diff_json),
            &r.status.as_str(),
            &codec::decisions_json(&r.decisions),
            &r.decided_by.map(DecidedBy::as_str),
            &r.reason,
            &r.mirror_table,
            &r.updated_at,
            &r.decided_at,
        ],
    )
    .await?;
    if r.status == ReviewStatus::Approved {
        bindings_put(c, r).await?;
    }
    Ok(())
}

async fn bindings_put(c: &Object, r: &Review) -> StoreResult<()> {
    let scope = r.scope.key();
    exec(
        c,
        "DELETE FROM omega_bindings WHERE scope = $1 AND source_table = $2 AND schema_hash = $3",
        &[&scope, &r.source_table, &r.schema_hash],
    )
    .await?;
    let names: Vec<&str> = r.decisions.iter().map(|d| d.name.as_str()).collect();
    let actions: Vec<&str> = r.decisions.iter().map(|d| d.action.as_str()).collect();
    let columns: Vec<Option<&str>> = r
        .decisions
        .iter()
        .map(|d| match d.action {
            ColumnAction::Mirror => d.mirror_column.as_deref(),
            ColumnAction::Ignore => None,
        })
        .collect();
    let mirror = r.mirror_table.clone().unwrap_or_default();
    exec(
        c,
        "INSERT INTO omega_bindings (scope, source_table, schema_hash, column_name, action,
             mirror_column, mirror_table)
         SELECT $1, $2, $3, u.name, u.action, u.mirror_column, $7
         FROM unnest($4::text[], $5::text[], $6::text[]) AS u(name, action, mirror_column)",
        &[
            &scope,
            &r.source_table,
            &r.schema_hash,
            &names,
            &actions,
            &columns,
            &mirror,
        ],
    )
    .await?;
    Ok(())
}
