#![no_main]
//! Fuzz the TCP transport's record reader: the stream cut into reads of
//! fuzzed sizes. Nothing may panic; the reader never holds more than one
//! record; every message it hands out is 1..=65535 bytes; once it reports a
//! broken stream, the connection would be closed (the target stops).

use libfuzzer_sys::fuzz_target;
use tapbridge::wire::tcp::{HEADER_LEN, MAX_MESSAGE, RecordReader};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, mut rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1) * 37;
    let mut r = RecordReader::new();
    while !rest.is_empty() {
        let spare = r.spare();
        assert!(!spare.is_empty(), "a whole record always fits");
        let n = spare.len().min(rest.len()).min(step);
        spare[..n].copy_from_slice(&rest[..n]);
        r.filled(n);
        rest = &rest[n..];
        loop {
            match r.next_message() {
                Ok(Some(m)) => assert!((1..=MAX_MESSAGE).contains(&m.len())),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(r.buffered() <= HEADER_LEN + MAX_MESSAGE);
    }
});
