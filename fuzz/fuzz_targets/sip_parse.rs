//! Fuzzes the SIP codec of `signaling-proto` and the tunnel signalling framing.
//!
//!   cargo +nightly fuzz run sip_parse ../signaling/proto/tests/corpus/sip
//!
//! The body is `codec::check_invariants` (no panic; a parsed message re-encodes to the same
//! value; error replies are small 4xx/5xx), which the stable test
//! `signaling/proto/tests/corpus.rs` also runs over the committed seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = signaling_proto::codec::check_invariants(data) {
        panic!("{violation}");
    }
    if let Some(sip) = signaling_proto::framing::decode_signalling(data) {
        if let Err(violation) = signaling_proto::codec::check_invariants(sip) {
            panic!("{violation}");
        }
    }
});
