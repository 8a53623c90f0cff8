//! Integration tests of omega-cloud, one binary (`cargo test -p omega-cloud`):
//!
//! - `conformance`: one suite of store behaviour, run against SQLite and PostgreSQL (each
//!   PostgreSQL test on its own fresh database);
//! - `ingest`: end to end over the machine's mosquitto;
//! - `api`: the HTTP API in process, over SQLite and PostgreSQL.

mod api;
mod conformance;
mod controls;
mod ingest;
mod support;
