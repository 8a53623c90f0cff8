//! Any UTF-8 text as `cloud.yaml`: never a panic; every error names the file and a key
//! path or a line.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use omega_cloud::config::CloudConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = "/etc/omega/cloud.yaml";
    if let Err(errors) = CloudConfig::check_yaml_str(text, Path::new(file), &|_| None) {
        for e in errors.errors() {
            assert_eq!(e.file(), file);
            assert!(e.path().is_some() || e.line().is_some(), "{e}");
        }
    }
});
