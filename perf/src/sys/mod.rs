//! The only place in `perf` with `unsafe`: thin, safe wrappers over the Linux calls the link
//! emulator needs (AF_PACKET sockets, signalfd, ppoll, timer slack). Every descriptor is an
//! `OwnedFd`; every failing call surfaces as `io::Error`.

mod packet;
mod poll;
mod signal;

pub use packet::PacketSocket;
pub use poll::{poll_readable, set_realtime, set_timer_slack};
pub use signal::{Signal, SignalFd};
