//! The only place in `perf` with `unsafe`: thin, safe wrappers over the Linux calls the link
//! emulator needs (AF_PACKET sockets, signalfd, ppoll, timer slack) and the benchmark
//! harness's naive relay and load generator (a plain TUN device, sendmmsg). Every descriptor is an
//! `OwnedFd`; every failing call surfaces as `io::Error`.

mod mmsg;
mod packet;
mod poll;
mod signal;
mod tun;

pub use mmsg::{clock_ticks, send_batch, send_each, set_udp_segment, MAX_BATCH};
pub use packet::PacketSocket;
pub use poll::{poll_readable, set_realtime, set_timer_slack};
pub use signal::{Signal, SignalFd};
pub use tun::open_tun;
