//! Change capture for `rows` tables (`spec/agent.md` §6).
//!
//! Each enrolled table gets three `AFTER` triggers that append one key-only entry to
//! `__omega_journal` inside the application's own transaction. The journal's
//! `INTEGER PRIMARY KEY` is the change's `commit_seq`: SQLite serialises writers, so append
//! order is commit order, and the value is durable with the application's commit. Row images
//! are read at flush time ([`crate::source::image`]).
//!
//! Why key-only: a trigger that names only key columns is cheap (no JSON functions, no
//! per-column work), never fails on any value (values are copied into untyped columns, so
//! BLOB, REAL, ±Inf, huge TEXT and i64 extremes stay exact), and does not block the
//! application's `ALTER TABLE … DROP COLUMN` of a non-key column.

pub mod spec;
pub mod triggers;

pub use spec::TableSpec;
