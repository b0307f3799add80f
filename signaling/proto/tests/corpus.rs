//! Replays the committed SIP seed corpus (tests/corpus/sip, also the seed corpus of
//! `fuzz/fuzz_targets/sip_parse.rs`) through the fuzz body on every stable `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use signaling_proto::codec::{check_invariants, parse, Message};

#[test]
fn corpus_replays_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sip");
    let mut n = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(check_invariants(&data), Ok(()), "{}", path.display());
        if matches!(parse(&data), Ok(Message::Request(_) | Message::Response(_))) {
            accepted += 1;
        }
        n += 1;
    }
    assert!(n >= 20, "corpus has {n} files");
    assert_eq!(
        accepted, 8,
        "the 8 valid seeds parse, the rest are rejected"
    );
}
