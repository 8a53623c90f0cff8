//! Any bytes on any device-to-cloud topic: decoded and validated, never a panic; an
//! accepted row batch re-encodes to a payload accepted as the same batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};

fuzz_target!(|data: &[u8]| {
    for s in Suffix::ALL {
        if let Ok(DeviceMessage::RowBatch(b)) = decode_device_message(s, data) {
            let again = b.to_json_bytes();
            match decode_device_message(Suffix::RowsBatch, &again) {
                Ok(DeviceMessage::RowBatch(back)) => assert_eq!(back.to_json_bytes(), again),
                other => panic!("re-encoded batch refused: {other:?}"),
            }
        }
    }
});
