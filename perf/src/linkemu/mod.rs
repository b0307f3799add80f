//! `upmt-linkemu`: a user-space link emulator for the testbed (the kernel here has no netem).
//!
//! It relays Ethernet frames between two interfaces with AF_PACKET sockets and adds, per
//! direction, a delay with jitter and random loss; queues are bounded and every drop is
//! counted. The testbed splices it into an access link only while such an impairment is set
//! (see `docs/TESTBED.md`); rate limits and blackholes are done by the kernel (tbf,
//! nftables).
//!
//! - [`config`]: the configuration file (re-read on SIGHUP).
//! - [`link`]: the sans-IO core (queues, loss, jitter), unit tested without root.
//! - [`engine`]: the event loop over `sys` (AF_PACKET, signalfd, ppoll).

pub mod config;
pub mod engine;
pub mod link;

pub use config::{Config, ConfigError, DirConfig, JitterDist};
pub use link::{Dir, DirStats, Link, Transmit, Verdict};
