//! Schema observation (§10).

use ::time::OffsetDateTime;

use super::write::ObjectWriter;
use crate::FORMAT_VERSION;
use crate::time::format_rfc3339;

/// A schema observation on `sync/schema/observe` (§10). Advisory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaObservation {
    /// Table name.
    pub source_table: String,
    /// The table's hash now.
    pub schema_hash: String,
    /// When the agent computed it.
    pub observed_at: OffsetDateTime,
}

impl SchemaObservation {
    /// The compact JSON payload.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        let mut w = ObjectWriter::new(&mut out);
        w.int("format_version", FORMAT_VERSION);
        w.str("source_table", &self.source_table);
        w.str("schema_hash", &self.schema_hash);
        w.str("observed_at", &format_rfc3339(self.observed_at));
        w.finish();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_of_section_10_encodes_compactly() {
        let o = SchemaObservation {
            source_table: "device_state".into(),
            schema_hash: "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0".into(),
            observed_at: crate::time::parse_rfc3339("2026-04-28T09:00:00.123456789Z").unwrap(),
        };
        assert_eq!(
            String::from_utf8(o.to_json_bytes()).unwrap(),
            concat!(
                r#"{"format_version":1,"source_table":"device_state","#,
                r#""schema_hash":"4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0","#,
                r#""observed_at":"2026-04-28T09:00:00.123456789Z"}"#
            )
        );
    }
}
