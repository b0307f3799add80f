//! # nat: the UPMT anchor's NAPT
//!
//! Layer: between `wire` (packet views) and `dataplane` (shards, rings). The anchor gives
//! every mobile host a VIPA (100.64.0.0/16) and NATs it to a public address, so
//! correspondent hosts never see the host move between access networks (UPMT paper §IV, §VI).
//! This crate holds the mapping state and rewrites packets **in place**; it does no I/O,
//! reads no clock (every call takes `now: Instant`) and draws no randomness (the seed is in
//! [`NatConfig::seed`]).
//!
//! ## What it does
//! - **NAPT for IPv4 TCP, UDP and ICMP echo**: `(VIPA, port) <-> (public, port)`.
//!   Endpoint-independent mapping (RFC 4787 REQ-1, RFC 5382 REQ-1); "Paired" address
//!   pooling (REQ-2); port preservation when free, else a random port of the same parity,
//!   never port overloading (REQ-3, REQ-4).
//! - **Filtering**: endpoint-independent, address-dependent (default, see
//!   [`NatConfig::filtering`] for why) or address-and-port-dependent. A permission (a remote
//!   the host has sent to through the mapping) lives as long as the mapping, as RFC 4787 §5
//!   ties filtering to the mapping; at most `max_permissions_per_mapping` are kept per
//!   mapping, the oldest forgotten first.
//! - **Lifetimes**: UDP 5 min refreshed by outbound traffic (REQ-5, REQ-6); TCP state
//!   tracked (SYN, FIN, RST) with 2 h 4 min established / 4 min transitory (RFC 5382 REQ-5),
//!   refreshed both ways; ICMP echo 60 s (RFC 5508 REQ-1). All configurable above the RFC
//!   minimums. A mapping is removed by [`Nat::expire`] (call it every second): until then it
//!   keeps answering, so a lifetime is its timeout plus at most one expiry period.
//! - **Hairpinning** (RFC 4787 REQ-9; likewise for TCP, RFC 5382) with the external source endpoint.
//! - **ICMP errors** (RFC 5508): inbound errors about a NATed flow are translated, quote
//!   included (inner IP header checksum, inner UDP/TCP/ICMP checksum when quoted, outer
//!   ICMP checksum) and delivered to the host; outbound errors from hosts likewise; errors
//!   with no mapping are dropped.
//! - **Fragments**: the first fragment is translated; later fragments of the same datagram
//!   (ident, src, dst, proto) follow it through a small bounded table. A later fragment that
//!   arrives before its first fragment is dropped (no reassembly).
//! - **Caps** (RFC 6888 REQ-4 per subscriber, plus a global limit): per-host and global; when full, new flows are refused and
//!   counted ([`DropReason::HostCapReached`], [`DropReason::GlobalCapReached`]), existing
//!   ones keep working.
//!
//! ## What it does not do
//! - No IPv6: NAT66/NAT64 are not needed (IPv6 packets are [`DropReason::NotIpv4`]).
//! - No ALGs (FTP, SIP); no TTL decrement (the kernel routes the packet after the TUN);
//!   no IPv4 header checksum verification (a bad checksum stays bad after the
//!   incremental update, and the kernel drops it); no reassembly; no inbound port
//!   forwarding (inbound packets never create mappings).
//! - No kernel mode: the nftables-masquerade comparison lives in the anchor.
//!
//! ## Concurrency
//! The data plane shares one `Arc<Nat>` between its shards. An outbound packet is handled by
//! the shard that received the tunnel datagram, the inbound one by the shard that read the
//! TUN queue, so both directions of one mapping meet on different threads. Choice:
//! **lock-free concurrent hash maps** ([`papaya`]), not per-shard ownership, because the
//! two directions of a flow cannot be steered to the same shard (the kernel picks the TUN
//! queue, the remote picks the tunnel port), and a hand-off would add a channel hop per
//! packet. Not an RCU copy of a `hashbrown` table either: that makes every new mapping copy
//! the whole table (1M entries).
//!
//! - Per-packet lookups (`out`: `(proto, VIPA, port)`, `in`: `(proto, public, port)`) are
//!   papaya reads: no lock, and no write to shared memory (the `seize` reclamation guard
//!   writes only a thread-local slot). One lookup per packet, also with address-dependent
//!   filtering when the remote is the mapping's first peer. Both tables share an
//!   `Arc<Mapping>` (one cache line: addresses, ports, TCP state, timer slot), but each
//!   table's entry also carries inline what its direction needs: outbound the public
//!   endpoint, first peer and the outbound refresh stamp; inbound the VIPA, port and first
//!   peer. So UDP and ICMP packets read nothing but their table entry in either direction;
//!   TCP follows the `Arc` for its state. [`Nat::pin`] enters the reclamation epoch once
//!   for a batch of packets.
//! - Refresh is `fetch_max` of a millisecond timestamp (outbound: in the outbound entry;
//!   inbound TCP: in the mapping), done at most once per second per mapping; TCP state is a
//!   `compare_exchange` on one byte, only when flags change it.
//! - Tables grow in papaya's *blocking* resize mode: the insert that fills a table copies
//!   it (under the slow-path lock: creation of new flows pauses for the copy, tens of ms at
//!   1M); readers are never blocked, and once done no lookup has to search two tables (the
//!   default incremental mode leaves a resize half done until enough later inserts finish
//!   it, and every lookup meanwhile may probe both tables).
//! - Cost: a papaya lookup is three dependent loads (metadata byte, entry pointer, boxed
//!   entry) where `hashbrown` needs one or two, so single-threaded it is slower than an
//!   uncontended `Mutex<hashbrown::HashMap>`; see `docs/benchmarks/nat.md`.
//! - The slow path (creating a mapping, its port allocation and cap checks; removal;
//!   expiry; listing) takes **one mutex**. Creation re-checks the table under it, so two
//!   shards creating the same mapping at once get the same one, and a port found free stays
//!   free until inserted. A TCP FIN/RST that shortens the timeout takes the same lock once
//!   per connection, to file the mapping at its earlier deadline. Adding a filtering
//!   permission for a *further* remote (the host talks to a second peer from the same
//!   port) takes the same lock once per (mapping, peer).
//! - Expiry is a timer queue of one-second buckets (`BTreeMap<second, Vec<mapping>>`):
//!   [`Nat::expire`] pops due buckets and re-files mappings refreshed since
//!   (lazy rescheduling); it never scans the whole table. A mapping is killed by a
//!   `compare_exchange` of its timestamps to a tombstone (outbound first, then inbound,
//!   undone if the inbound one moved), so a refresh racing with expiry either wins (the
//!   mapping stays) or sees the tombstone (the packet takes the slow path, waits for the
//!   lock and finds the mapping kept or gets a fresh one). Expiry releases the lock every 4096 mappings, so a mass
//!   expiry does not stall flow creation for long.
//!
//! ## Driver loop
//! Shards call [`Nat::translate_outbound`] / [`Nat::translate_inbound`] per packet (or
//! through [`Nat::pin`] per receive batch) with a `now` read once per batch: `Instant::now()`
//! costs 50-90 ns on the project's VMs, more than a translation. The control thread calls
//! [`Nat::expire`] every second (or at [`Nat::next_expiry`]), [`Nat::remove_host`] when an
//! association ends, and [`Nat::mappings_for`] / [`Nat::counters`] for status.
//! ```
//! use std::net::Ipv4Addr;
//! use std::time::{Duration, Instant};
//! use nat::{Nat, NatConfig, Verdict};
//!
//! let nat = Nat::new(NatConfig::new(vec![Ipv4Addr::new(198, 18, 2, 100)])).unwrap();
//! let vipa = Ipv4Addr::new(100, 64, 0, 7);
//! let t0 = Instant::now();
//! // an outbound UDP packet 100.64.0.7:5000 -> 198.18.3.1:53, checksum left zero
//! let mut pkt = [
//!     0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 100, 64, 0, 7, 198, 18, 3, 1, //
//!     0x13, 0x88, 0, 53, 0, 8, 0, 0,
//! ];
//! assert_eq!(nat.translate_outbound(t0, vipa, &mut pkt), Verdict::ToInternet);
//! assert_eq!(&pkt[12..16], &[198, 18, 2, 100]);
//! // the reply comes back through the TUN, on whichever shard read it
//! let mut reply = [
//!     0x45, 0, 0, 28, 0, 2, 0, 0, 64, 17, 0, 0, 198, 18, 3, 1, 198, 18, 2, 100, //
//!     0, 53, 0x13, 0x88, 0, 8, 0, 0,
//! ];
//! assert_eq!(nat.translate_inbound(t0, &mut reply), Verdict::Forward { to_vipa: vipa });
//! assert_eq!(&reply[16..20], &[100, 64, 0, 7]);
//! // the control thread expires idle mappings now and then
//! nat.expire(t0 + Duration::from_secs(301));
//! assert!(nat.is_empty());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod csum;
mod hash;
mod mapping;
mod table;
mod translate;
mod verdict;

pub use config::{ConfigError, Filtering, NatConfig, Timeouts};
pub use mapping::{MappingInfo, Proto, TcpState};
pub use table::Nat;
pub use translate::Pinned;
pub use verdict::{CounterSnapshot, DropReason, Verdict};
