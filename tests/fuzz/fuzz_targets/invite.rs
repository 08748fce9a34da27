#![no_main]
//! Fuzzes the invitation a branch pastes into `bridge-ctl join`
//! (`Invitation::decode`) with arbitrary UTF-8, and the same bytes as the body
//! of a version-1 line: it must return an invitation or a one-line error,
//! never panic; what it returns encodes back to a line that decodes to the
//! same. Seeds: `tests/fuzz/corpus/invite/`.
use libfuzzer_sys::fuzz_target;
use tapbridge::invite::Invitation;

fn check(text: &str) {
    match Invitation::decode(text) {
        Ok(inv) => {
            let again = inv.encode().expect("a decoded invitation encodes");
            assert_eq!(Invitation::decode(&again).expect("round trip"), inv);
        }
        Err(err) => assert!(!err.to_string().contains('\n'), "multi-line error: {err}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    check(&format!("tapbridge-invite:1:{text}"));
});
