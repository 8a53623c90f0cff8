//! Ingest over MQTT (`cloud.md` §4, §15).
