//! Any bytes as a control envelope or a delivery receipt (what the agent reads from the
//! cloud before verifying signatures): never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omega_protocol::validate::{decode_control, decode_receipt};

fuzz_target!(|data: &[u8]| {
    if let Err(r) = decode_control(data, 1 << 16) {
        assert!(!r.message.is_empty());
    }
    if let Err(r) = decode_receipt(data) {
        assert!(!r.message.is_empty());
    }
});
