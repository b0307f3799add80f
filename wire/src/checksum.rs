//! The Internet checksum: full computation (RFC 1071), incremental update (RFC 1624) and
//! pseudo-headers (RFC 768 / RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6).
//!
//! Vocabulary: a *sum* is the folded 16-bit one's-complement sum of some words (what
//! [`sum`], [`combine`] and the `pseudo_header*` functions return); a *checksum* is the
//! complement of the sum of everything it covers (what goes on the wire). So a transport
//! checksum is `!combine(&[pseudo_header(..), sum(segment)])`, computed with the checksum field
//! zeroed, and a received segment verifies when `combine(&[pseudo_header(..), sum(segment)])`
//! is `0xffff`.
//!
//! All sums assume their data starts at an even offset of the covered range (true for every
//! header and pseudo-header this crate sums).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::IpProtocol;

// RFC 1071 section 2(B) "Byte Order Independence": the sum of 16-bit words read in the
// machine's byte order is the byte-swapped sum of the big-endian words; section 2(C)
// "Parallel Summation": on a machine with a wider word, add that word at a time with
// end-around carry, then fold (2^16 - 1 divides 2^64 - 1, so a 64-bit one's-complement sum
// folds to the same 16-bit sum). Four independent accumulators over 32-byte blocks keep the
// carry chains apart, so the CPU runs them in parallel (about 2.5x the one-accumulator loop
// on 1400 bytes, see docs/benchmarks/wire.md).
/// Folded one's-complement sum of `data`, read as big-endian 16-bit words (an odd last byte is
/// padded with a zero byte, RFC 1071 section 4.1). Not complemented.
pub fn sum(data: &[u8]) -> u16 {
    let mut accs = [0u64; 4];
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        for (acc, word) in accs.iter_mut().zip(block.chunks_exact(8)) {
            *acc = add_carry(*acc, ne64(word));
        }
    }
    let mut acc = accs.iter().fold(0, |a, &b| add_carry(a, b));
    let mut words = blocks.remainder().chunks_exact(8);
    for word in &mut words {
        acc = add_carry(acc, ne64(word));
    }
    // At most 7 bytes left: whole 16-bit words, then an odd last byte, which keeps its
    // position in memory, i.e. the high half of its big-endian word (fixed-size reads, no
    // memcpy call).
    let mut halves = words.remainder().chunks_exact(2);
    for half in &mut halves {
        if let [a, b] = *half {
            acc = add_carry(acc, u64::from(u16::from_ne_bytes([a, b])));
        }
    }
    if let [last] = *halves.remainder() {
        acc = add_carry(acc, u64::from(u16::from_ne_bytes([last, 0])));
    }
    u16::from_be(fold(acc))
}

/// 64-bit one's-complement addition (end-around carry).
#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// An 8-byte chunk as a native-endian word (callers pass `chunks_exact(8)` items).
#[inline(always)]
fn ne64(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    u64::from_ne_bytes(w)
}

/// Folds a wide one's-complement accumulator to 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's-complement sum of several 16-bit sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Sum of an IPv4 pseudo-header (RFC 768, RFC 793 section 3.1): source and destination
/// address, zero, protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, len: u16) -> u16 {
    let acc = addr4_sum(src) + addr4_sum(dst) + u64::from(u8::from(proto)) + u64::from(len);
    fold(acc)
}

/// Sum of an IPv6 pseudo-header (RFC 8200 section 8.1): source and destination address,
/// 32-bit upper-layer packet length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, len: u32) -> u16 {
    let acc = addr6_sum(src)
        + addr6_sum(dst)
        + u64::from(u8::from(proto))
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(acc)
}

/// Sum of the pseudo-header for either family. Both addresses are expected to be of the same
/// family; if not, each address still contributes its own words (no panic), which matches no
/// real packet.
#[inline]
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: IpProtocol, len: u32) -> u16 {
    let acc = addr_sum(src) + addr_sum(dst) + u64::from(u8::from(proto));
    fold(acc + u64::from(len >> 16) + u64::from(len & 0xffff))
}

/// Folded sum of the words of an address (4 or 16 bytes).
#[inline]
pub fn addr_words(addr: IpAddr) -> u16 {
    fold(addr_sum(addr))
}

#[inline]
fn addr_sum(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(a) => addr4_sum(a),
        IpAddr::V6(a) => addr6_sum(a),
    }
}

#[inline]
fn addr4_sum(a: Ipv4Addr) -> u64 {
    let v = u32::from(a);
    u64::from(v >> 16) + u64::from(v & 0xffff)
}

#[inline]
fn addr6_sum(a: Ipv6Addr) -> u64 {
    a.segments().iter().map(|&s| u64::from(s)).sum()
}

/// Full checksum (the value to put on the wire) of `data` (checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

// RFC 1624 section 3, eqn. 3: HC' = ~(~HC + ~m + m'). Unlike eqn. 2 it never turns a
// checksum into -0 (0xffff is never produced from a non-zero sum).
/// Incremental update of checksum `csum` when a covered 16-bit word changes from `old` to
/// `new` (RFC 1624 eqn. 3).
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!csum) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// Incremental update when an aligned 32-bit word changes (e.g. an IPv4 address, a TCP
/// sequence number).
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let old_sum = fold(u64::from(old >> 16) + u64::from(old & 0xffff));
    let new_sum = fold(u64::from(new >> 16) + u64::from(new & 0xffff));
    update_u16(csum, old_sum, new_sum)
}

/// Incremental update when covered data whose folded sum was `old_sum` now sums to
/// `new_sum` (RFC 1624 eqn. 3 applied to a whole region: ~(a + b) = ~a + ~b in one's
/// complement).
#[inline]
pub fn update_sum(csum: u16, old_sum: u16, new_sum: u16) -> u16 {
    update_u16(csum, old_sum, new_sum)
}

/// Incremental update for an address change covered by the checksum (an IPv4 header address,
/// or a pseudo-header address of TCP, UDP or ICMPv6).
#[inline]
pub fn update_addr(csum: u16, old: IpAddr, new: IpAddr) -> u16 {
    update_u16(csum, addr_words(old), addr_words(new))
}

/// Incremental update of a transport (TCP, UDP, ICMPv6) checksum when the address in the
/// pseudo-header changes from `old_addr` to `new_addr` and the port (or ICMP identifier)
/// changes from `old_port` to `new_port`. Works for UDP only when the checksum is in use:
/// see [`udp_update`].
#[inline]
pub fn update_addr_port(
    csum: u16,
    old_addr: IpAddr,
    new_addr: IpAddr,
    old_port: u16,
    new_port: u16,
) -> u16 {
    let old_sum = fold(addr_sum(old_addr) + u64::from(old_port));
    let new_sum = fold(addr_sum(new_addr) + u64::from(new_port));
    update_u16(csum, old_sum, new_sum)
}

// RFC 768: "If the computed checksum is zero, it is transmitted as all ones (the equivalent
// in one's complement arithmetic). An all zero transmitted checksum value means that the
// transmitter generated no checksum." RFC 8200 section 8.1: for IPv6 "a zero checksum [...]
// must be discarded" (except RFC 6935 tunnels, which we do not use).
/// Applies an incremental update (folded sums `old_sum` -> `new_sum`) to a UDP checksum,
/// honouring the zero-checksum rule: over IPv4 a checksum of 0 means "none" and stays 0; an
/// updated checksum that comes out as 0 is sent as `0xffff`.
#[inline]
pub fn udp_update(csum: u16, old_sum: u16, new_sum: u16, is_ipv4: bool) -> u16 {
    if csum == 0 && is_ipv4 {
        return 0;
    }
    udp_nonzero(update_u16(csum, old_sum, new_sum))
}

/// Maps a computed UDP checksum of 0 to `0xffff` (RFC 768).
#[inline]
pub fn udp_nonzero(csum: u16) -> u16 {
    if csum == 0 {
        0xffff
    } else {
        csum
    }
}

/// An accumulated change of several 16-bit words under one checksum, applied with a single
/// fold (RFC 1624 eqn. 3 summed over the changed words: ~(a + b) = ~a + ~b). For rewrites
/// that touch many words at once, e.g. an ICMP error whose quoted addresses, ports and
/// checksums all change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// No change.
    pub const fn new() -> Delta {
        Delta(0)
    }

    /// A 16-bit word changed from `old` to `new` (or a region whose folded sum changed).
    #[inline]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// An aligned 32-bit word changed.
    #[inline]
    pub fn u32(&mut self, old: u32, new: u32) {
        self.word((old >> 16) as u16, (new >> 16) as u16);
        self.word(old as u16, new as u16);
    }

    /// An address changed (4 or 16 bytes, aligned).
    #[inline]
    pub fn addr(&mut self, old: IpAddr, new: IpAddr) {
        self.word(addr_words(old), addr_words(new));
    }

    /// Adds another change under the same checksum.
    #[inline]
    pub fn add(&mut self, other: Delta) {
        self.0 += other.0;
    }

    /// The checksum `csum` patched with the change.
    #[inline]
    pub fn apply(self, csum: u16) -> u16 {
        !fold(u64::from(!csum) + self.0)
    }

    /// Like [`apply`](Self::apply) for a UDP checksum (zero-checksum rule, see
    /// [`udp_update`]).
    #[inline]
    pub fn apply_udp(self, csum: u16, is_ipv4: bool) -> u16 {
        if csum == 0 && is_ipv4 {
            return 0;
        }
        udp_nonzero(self.apply(csum))
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    /// Bit-by-bit reference: 16-bit words, one at a time (RFC 1071 section 4.1's C code).
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            acc += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            acc += u32::from(data[i]) << 8;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(sum(&hex!("0001f203f4f5f6f7")), 0xddf2);
    }

    #[test]
    fn ipv4_header_checksum() {
        // A real IPv4 header (wikipedia's example), checksum b861.
        let mut h = hex!("450000730000400040110000c0a80001c0a800c7");
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(sum(&h), 0xffff);
    }

    #[test]
    fn odd_lengths_match_reference() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(sum(&data[..n]), reference_sum(&data[..n]), "len {n}");
        }
        assert_eq!(sum(&[0xff; 1000]), 0xffff);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn udp_zero_rule() {
        assert_eq!(udp_update(0, 1, 2, true), 0);
        assert_ne!(udp_update(0, 1, 2, false), 0);
        assert_eq!(udp_nonzero(0), 0xffff);
        // A checksum that the update would make zero is sent as ffff.
        let c = update_u16(0x1234, 0x0000, 0x0000);
        assert_eq!(c, 0x1234);
    }

    #[test]
    fn incremental_matches_full() {
        let mut h = hex!("450000730000400040110000c0a80001c0a800c7");
        let c0 = checksum(&h);
        let c1 = update_u32(c0, 0xc0a80001, 0x0a000001);
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(c1, checksum(&h));
    }

    #[test]
    fn delta_matches_single_updates() {
        let mut d = Delta::new();
        d.u32(0xc0a80001, 0x0a000001);
        d.word(0x1234, 0x4321);
        let one = update_u16(update_u32(0xb861, 0xc0a80001, 0x0a000001), 0x1234, 0x4321);
        assert_eq!(d.apply(0xb861), one);
        assert_eq!(Delta::new().apply(0x1234), 0x1234);
        assert_eq!(Delta::new().apply_udp(0, true), 0);
    }

    #[test]
    fn pseudo_headers() {
        let a4: Ipv4Addr = [192, 0, 2, 1].into();
        let b4: Ipv4Addr = [198, 51, 100, 7].into();
        assert_eq!(
            pseudo_header_v4(a4, b4, IpProtocol::Udp, 12),
            pseudo_header(a4.into(), b4.into(), IpProtocol::Udp, 12)
        );
        let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        assert_eq!(
            pseudo_header_v6(a6, b6, IpProtocol::Tcp, 70_000),
            pseudo_header(a6.into(), b6.into(), IpProtocol::Tcp, 70_000)
        );
    }
}
