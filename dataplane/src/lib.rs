//! # dataplane: the UPMT Tunnel Forwarding Agent
//!
//! Layer: between the kernel (TUN, UDP sockets) and the control thread of `upmt anchor` /
//! `upmt mobile`. It moves every packet: per-core shards, each with an io_uring ring, a TUN
//! queue (`IFF_MULTI_QUEUE`), provided buffer rings and (anchor) an `SO_REUSEPORT` socket on
//! the tunnel port; the PAFT (flow -> tunnel) and the tunnel and host tables, shared
//! lock-free; counters. It does **not** speak SIP, choose paths, manage addresses or routes,
//! or (by itself) do NAT: the control thread decides and sends [`Command`]s; the anchor's NAT
//! plugs in through [`NatHook`] (default [`KernelNat`]: the kernel masquerades).
//!
//! Zero copy: with a UDP socket the kernel builds the outer IPv4/UDP header, so
//! encapsulation is "the packet read from the TUN is the UDP payload": its buffer goes to
//! `sendmsg` unchanged. Decapsulation writes the received payload, in the receive buffer, to
//! the TUN. NAT rewrites in place in between.
//!
//! The anchor's own NAT: `cfg.nat = Arc::new(Napt(Arc::new(nat::Nat::new(..)?)))`; route its
//! public address to the TUN. Tests: `cargo test -p dataplane` (the `root_engine` target needs
//! root, `ip`, `nft`, `ping`, and builds its own namespaces); figures:
//! `cargo test --release -p dataplane --test root_engine -- --ignored --nocapture figures` and
//! `cargo bench -p dataplane --bench per_packet`.
//!
//! All `unsafe` lives in [`sys`]. See `docs/ARCHITECTURE-dataplane.md`.
//!
//! ```no_run
//! use dataplane::{Command, Engine, EngineConfig, Event, Mode};
//! let mut cfg = EngineConfig::new(Mode::Mobile, "upmt0");
//! cfg.shards = 1;
//! let engine = Engine::start(cfg)?;
//! let h = engine.handle().clone();
//! h.send(Command::AddTunnel {
//!     id: 1,
//!     local: "0.0.0.0:0".parse()?,
//!     device: Some("wlan0".into()),
//!     remote: "198.18.2.1:1800".parse()?,
//! })?;
//! h.send(Command::SetDefault(Some(1)))?;
//! while let Ok(ev) = h.events.recv_timeout(std::time::Duration::from_millis(10)) {
//!     if let Event::NewFlow { key, .. } = ev {
//!         h.send(Command::SetFlow { key, tunnel: Some(1) })?;
//!     }
//! }
//! println!("{:?}", h.stats().shards);
//! engine.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod control;
mod engine;
mod forward;
mod nat_adapter;
mod pkt;
mod pool;
mod shard_poll;
mod shard_uring;
mod stats;
mod tables;

#[allow(unsafe_code)]
pub mod sys;

pub use control::{
    Backend, Command, EngineConfig, Event, KernelNat, Mode, Napt, NatHook, OffloadFaults,
};
pub use engine::{Engine, EngineError, EngineHandle, FLOWS_LISTED};
pub use pkt::{control_frame, ControlKind, FlowKey, CONTROL_HEADER_LEN, KEEPALIVE_BODY_LEN};
pub use stats::{
    DropReason, FlowSnapshot, OffloadSnapshot, ShardSnapshot, StatsSnapshot, TunnelSnapshot,
};
pub use tables::{shard_for, HostId, TunnelId, TunnelState, BLOCKED};

/// Bench-only access to the per-packet path (not a stable API).
#[doc(hidden)]
pub mod bench {
    pub use crate::forward::bench_api::*;
}
