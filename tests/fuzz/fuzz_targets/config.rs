#![no_main]
//! Fuzzes `Config::parse` with arbitrary UTF-8: it must return a config or a
//! one-line error, never panic. Text after a NUL character is a peer drop-in
//! (`Config::parse_with`). Seeds: `tests/fuzz/corpus/config/`.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tapbridge::config::{Config, ConfigError, DropIn};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (main, dropins) = match text.split_once('\0') {
        Some((main, dropin)) => (
            main,
            vec![DropIn {
                path: "/etc/tapbridge/fuzz.d/a.toml".into(),
                text: dropin.to_owned(),
            }],
        ),
        None => (text, Vec::new()),
    };
    match Config::parse_with("fuzz", Path::new("/etc/tapbridge/fuzz.toml"), main, &dropins) {
        Ok(config) => {
            // Invariants the rest of the program relies on.
            assert!(!config.peers.is_empty());
            assert!((576..=9000).contains(&config.interface.mtu));
            if let Some(dhcp) = &config.dhcp {
                // The plan is checked: checking its settings again agrees.
                let s = dhcp.plan.settings().clone();
                let respond = config.arp.as_ref().map(|a| a.respond.clone());
                assert!(s.pool_start <= s.pool_end);
                assert_eq!(
                    s.check(respond.as_deref().unwrap_or_default()).as_ref(),
                    Ok(&dhcp.plan)
                );
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
