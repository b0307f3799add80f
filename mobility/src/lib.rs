//! Sans-IO control logic of the UPMT mobile host: what the paper calls the MM Measurement
//! Entity (path probing) and, as it grows, the tunnel manager and handover planning.
//!
//! Layer: control plane, above `signaling` and `dataplane`, below the `upmt` daemon. It does
//! no I/O and reads no clock: time is an argument of every call, so every behaviour (a
//! blackhole detected in under 300 ms, an idle laptop sending one keepalive per interval) is
//! tested on a virtual clock in microseconds.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ifaces;
pub mod netlink;
pub mod policy;
pub mod probe;

pub use probe::{Keepalive, PathState, Probe, ProbeConfig, ProbeEvent, Quality};
