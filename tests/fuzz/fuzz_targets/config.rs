#![no_main]
//! Fuzzes `Config::parse` with arbitrary UTF-8: it must return a config or a
//! one-line error, never panic. Seeds: `tests/fuzz/corpus/config/`.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tapbridge::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse("fuzz", Path::new("/etc/tapbridge/fuzz.toml"), text) {
        Ok(config) => {
            // Invariants the rest of the program relies on.
            assert!(!config.peers.is_empty());
            assert!((576..=9000).contains(&config.interface.mtu));
            if let Some(dhcp) = &config.dhcp {
                assert!(
                    dhcp.subnet.contains(dhcp.pool_start) && dhcp.subnet.contains(dhcp.pool_end)
                );
                assert!(dhcp.pool_start <= dhcp.pool_end);
            }
        }
        Err(err) => {
            let ConfigError::Invalid { line, column, .. } = &err else {
                return;
            };
            assert!(*line >= 1 && *column >= 1);
            assert!(!err.to_string().contains('\n'), "multi-line error: {err}");
        }
    }
});
