//! The SQLite store's review and binding statements.

use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::policy::Scope;
use crate::schema_review::{ColumnAction, DecidedBy, Review, ReviewStatus, SchemaClass};
use crate::store::codec::{self, format_time as ft, parse_time};
use crate::store::{StoreError, StoreResult};

use super::queries::*;

// ---- reviews ----

const REVIEW_COLS: &str = "id, scope, source_table, schema_hash, class, columns, compared_hash,
    diff, status, decisions, decided_by, reason, mirror_table, created_at, updated_at, decided_at";

fn review_from(r: &Row<'_>) -> StoreResult<Review> {
    let scope: String = r.get(1)?;
    let class: String = r.get(4)?;
    let status: String = r.get(8)?;
    let decided_by: Option<String> = r.get(10)?;
    Ok(Review {
        id: parse_uuid("omega_reviews.id", &r.get::<_, String>(0)?)?,
        scope: Scope::from_key(&scope)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.scope", &scope))?,
        source_table: r.get(2)?,
        schema_hash: r.get(3)?,
        class: SchemaClass::parse(&class)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.class", &class))?,
        columns: r
            .get::<_, Option<String>>(5)?
            .map(|s| codec::parse_columns(&s))
            .transpose()?,
        compared_hash: r.get(6)?,
        diff: r
            .get::<_, Option<String>>(7)?
            .map(|s| codec::parse_diff(&s))
            .transpose()?,
        status: ReviewStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("omega_reviews.status", &status))?,
        decisions: codec::parse_decisions(&r.get::<_, String>(9)?)?,
        decided_by: decided_by.as_deref().and_then(DecidedBy::parse),
        reason: r.get(11)?,
        mirror_table: r.get(12)?,
        created_at: parse_time(&r.get::<_, String>(13)?)?,
        updated_at: parse_time(&r.get::<_, String>(14)?)?,
        decided_at: opt_time(r.get(15)?)?,
    })
}

fn one_review(
    c: &Connection,
    sql_where: &str,
    p: impl rusqlite::Params,
) -> StoreResult<Option<Review>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews {sql_where}"
    ))?;
    let mut rows = st.query(p)?;
    rows.next()?.map(review_from).transpose()
}

pub(super) fn review_by_key(
    c: &Connection,
    scope: &str,
    table: &str,
    hash: &str,
) -> StoreResult<Option<Review>> {
    one_review(
        c,
        "WHERE scope = ?1 AND source_table = ?2 AND schema_hash = ?3",
        params![scope, table, hash],
    )
}

pub(super) fn review_get(c: &Connection, id: Uuid) -> StoreResult<Option<Review>> {
    one_review(c, "WHERE id = ?1", params![u(id)])
}

pub(super) fn review_latest_approved(
    c: &Connection,
    scope: &str,
    table: &str,
) -> StoreResult<Option<Review>> {
    one_review(
        c,
        "WHERE scope = ?1 AND source_table = ?2 AND status = 'approved'
         ORDER BY decided_at DESC, id DESC LIMIT 1",
        params![scope, table],
    )
}

pub(super) fn reviews(c: &Connection, status: Option<ReviewStatus>) -> StoreResult<Vec<Review>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REVIEW_COLS} FROM omega_reviews WHERE (?1 IS NULL OR status = ?1) ORDER BY id"
    ))?;
    let mut rows = st.query(params![status.map(ReviewStatus::as_str)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(review_from(r)?);
    }
    Ok(out)
}

pub(super) fn review_insert(c: &Connection, r: &Review) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO omega_reviews (id, scope, source_table, schema_hash, class, columns,
                 compared_hash, diff, status, decisions, decided_by, reason, mirror_table,
                 created_at, updated_at, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
             ON CONFLICT (scope, source_table, schema_hash) DO NOTHING",
        )?
        .execute(params![
            u(r.id),
            r.scope.key(),
            r.source_table,
            r.schema_hash,
            r.class.as_str(),
            r.columns.as_ref().map(codec::columns_json),
            r.compared_hash,
            r.diff.as_ref().map(codec::diff_json),
            r.status.as_str(),
            codec::decisions_json(&r.decisions),
            r.decided_by.map(DecidedBy::as_str),
            r.reason,
            r.mirror_table,
            ft(r.created_at),
            ft(r.updated_at),
            r.decided_at.map(ft),
        ])?;
    if n == 1 && r.status == ReviewStatus::Approved {
        bindings_put(c, r)?;
    }
    Ok(n == 1)
}

pub(super) fn review_save(c: &Connection, r: &Review) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE omega_reviews SET class = ?2, columns = ?3, compared_hash = ?4, diff = ?5,
             status = ?6, decisions = ?7, decided_by = ?8, reason = ?9, mirror_table = ?10,
             updated_at = ?11, decided_at = ?12
         WHERE id = ?1",
    )?
    .execute(params![
        u(r.id),
        r.class.as_str(),
        r.columns.as_ref().map(codec::columns_json),
        r.compared_hash,
        r.diff.as_ref().map(codec::diff_json),
        r.status.as_str(),
        codec::decisions_json(&r.decisions),
        r.decided_by.map(DecidedBy::as_str),
        r.reason,
        r.mirror_table,
        ft(r.updated_at),
        r.decided_at.map(ft),
    ])?;
    if r.status == ReviewStatus::Approved {
        bindings_put(c, r)?;
    }
    Ok(())
}

fn bindings_put(c: &Connection, r: &Review) -> StoreResult<()> {
    let scope = r.scope.key();
    c.prepare_cached(
        "DELETE FROM omega_bindings WHERE scope = ?1 AND source_table = ?2 AND schema_hash = ?3",
    )?
    .execute(params![scope, r.source_table, r.schema_hash])?;
    let mut ins = c.prepare_cached(
        "INSERT INTO omega_bindings (scope, source_table, schema_hash, column_name, action,
             mirror_column, mirror_table) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mirror = r.mirror_table.clone().unwrap_or_default();
    for d in &r.decisions {
        let mirror_column = match d.action {
            ColumnAction::Mirror => d.mirror_column.as_deref(),
            ColumnAction::Ignore => None,
        };
        ins.execute(params![
            scope,
            r.source_table,
            r.schema_hash,
            d.name,
            d.action.as_str(),
            mirror_column,
            mirror
        ])?;
    }
    Ok(())
}
