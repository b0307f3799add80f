//! # perf: benchmarks, benchmark harness and the testbed's link emulator
//!
//! Layer: tooling around UPMT, never linked into the `upmt` binary. Today it holds the link
//! emulator behind `scripts/testbed.sh` ([`linkemu`], binary `upmt-linkemu`); the benchmark
//! harness joins it.
//!
//! All `unsafe` lives in [`sys`] (AF_PACKET, signalfd, ppoll), each block with its `SAFETY:`
//! argument; the rest of the crate is safe code.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod linkemu;
#[allow(unsafe_code)]
pub mod sys;
