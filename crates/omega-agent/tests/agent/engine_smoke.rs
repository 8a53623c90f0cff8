//! The engine alone, without a broker.

use crate::support::*;

#[test]
fn engine_opens_and_enrolls_the_hostile_tables() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let cfg = run_config(dir.path(), &source, "dev-1", "mqtt://127.0.0.1:1");
    let engine = omega_agent::engine::Engine::open(cfg.engine).unwrap();
    assert_eq!(
        engine.table_names(),
        vec!["a\"b".to_string(), "naïve table".into(), "order".into()]
    );
    assert_eq!(engine.skipped.len(), 1, "{:?}", engine.skipped);
}
