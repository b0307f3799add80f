//! Placeholder, replaced below.
#![allow(clippy::unwrap_used, clippy::expect_used)]
fn main() {}
