//! Every wire parser on arbitrary bytes, with the invariants of `wire::fuzz::parse_all`
//! (Repr round trips, checksums still valid after rewrites and MSS clamping).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wire::fuzz::parse_all(data);
});
