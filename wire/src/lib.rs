//! # wire: packet views over byte slices
//!
//! Layer: the bottom of UPMT. This crate reads and writes packet headers in place: IPv4 (with
//! options), IPv6 (with an extension-header walk to the transport header), UDP, TCP (with the
//! MSS option for clamping), ICMPv4 and ICMPv6 (errors expose the quoted packet), the Internet
//! checksum (full and incremental), the [`FlowKey`] of any packet (also of the packet quoted in
//! an ICMP error), in-place address/port rewrites with incremental checksum updates, ICMP
//! errors translated as a NAT must (RFC 5508, [`rewrite`]), ICMP "fragmentation needed" /
//! "packet too big" generation for path MTU discovery through the tunnel
//! ([`icmpv4::emit_frag_needed`], [`icmpv6::emit_packet_too_big`]), and the UPMT tunnel
//! payload framing ([`tunnel`]), and the TUN offloads done in user space: `virtio_net_hdr`,
//! TCP segmentation of TUN super-packets and TCP coalescing for TUN writes ([`offload`]).
//!
//! It does **not** do I/O, keep state, allocate on the per-packet path, reassemble fragments or
//! validate anything beyond what a header says about itself. `unsafe` is forbidden.
//!
//! ## Views, `Repr`s and the panic contract
//!
//! Views follow smoltcp's `wire` module: a `Packet<T: AsRef<[u8]>>` wraps a buffer, keeps its
//! byte ranges in a private `mod field`, reads fields in the `AsRef` impl and writes them in
//! the `AsMut` impl. `Repr` types are owned, high-level descriptions for the control plane and
//! tests (`parse` a view into a `Repr`, `emit` a `Repr` into a view).
//!
//! The panic contract (adapted from `smoltcp/src/wire/mod.rs`):
//!
//! * `Packet::new_unchecked` wraps any buffer without looking at it. Getters and setters on
//!   such a view may panic if the buffer is too short: use it only to build packets in
//!   buffers you sized yourself.
//! * `Packet::check_len` validates the buffer against every length the header states
//!   (header length, total/payload length, options, ...). `Packet::new_checked` is
//!   `new_unchecked` followed by `check_len`.
//! * **After `check_len` succeeded, no getter panics, on any input.** Fixed fields are known to
//!   be in range; variable ranges (options, payload) are clamped to the buffer. Setters of
//!   fixed fields never panic either. Setters that change a length field (for example
//!   `set_header_len`) may make a later `check_len` fail, but still do not make getters panic.
//! * Parsers of derived structures (`Repr::parse`, [`FlowKey::from_ip_packet`],
//!   [`tunnel::Payload::classify`], [`ipv6::Packet::walk`]) return a typed [`Error`] for
//!   malformed input; they never panic.
//!
//! [`fuzz::parse_all`] runs every parser over arbitrary bytes; the fuzz target in `fuzz/` and
//! the `corpus` test in `tests/` call it.
//!
//! ## Example
//!
//! ```
//! use wire::{FlowKey, IpProtocol};
//! // An IPv4/UDP packet 192.0.2.1:1234 -> 198.51.100.7:53 with a 4-byte payload.
//! let mut buf = [0u8; 32];
//! let ip = wire::ipv4::Repr {
//!     src_addr: [192, 0, 2, 1].into(),
//!     dst_addr: [198, 51, 100, 7].into(),
//!     protocol: IpProtocol::Udp,
//!     payload_len: 12,
//!     ttl: 64,
//!     ident: 1,
//!     dont_frag: true,
//!     dscp_ecn: 0,
//! };
//! let mut pkt = wire::ipv4::Packet::new_unchecked(&mut buf[..]);
//! ip.emit(&mut pkt).unwrap();
//! let udp = wire::udp::Repr { src_port: 1234, dst_port: 53, payload_len: 4 };
//! let mut seg = wire::udp::Packet::new_unchecked(pkt.payload_mut());
//! udp.emit(&mut seg).unwrap();
//! seg.fill_checksum(ip.src_addr.into(), ip.dst_addr.into());
//!
//! let key = FlowKey::from_ip_packet(&buf).unwrap();
//! assert_eq!(key.proto, IpProtocol::Udp);
//! assert_eq!((key.src_port, key.dst_port), (1234, 53));
//! assert_eq!(key.to_string(), "udp 192.0.2.1:1234 -> 198.51.100.7:53");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod checksum;
mod error;
pub mod flow;
pub mod fuzz;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod offload;
mod protocol;
pub mod rewrite;
pub mod tcp;
pub mod tunnel;
pub mod udp;

pub use error::{Error, Result};
pub use flow::FlowKey;
pub use ip::Packet as IpPacket;
pub use protocol::IpProtocol;
