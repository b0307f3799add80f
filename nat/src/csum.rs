//! Byte accessors for the transport header and the ICMP quote, and checksum patching with
//! `wire::checksum::Delta` (RFC 1624 eqn. 3 accumulated over every changed word, folded once).
//!
//! Why not `wire`'s transport views here: `udp::Packet::check_len` (rightly) wants the whole
//! datagram, which a first fragment or an ICMP quote does not hold, and `wire::rewrite`
//! re-parses the packet per endpoint it rewrites. The NAT rewrites source, destination and
//! quote in one pass at offsets it has bounds-checked, so it keeps these small `Option`
//! accessors (they never panic). The property tests check every rewrite against a full
//! recompute with `wire::checksum`.

use std::net::Ipv4Addr;

pub(crate) use wire::checksum::Delta;

/// Reads a big-endian `u16` at `off`, if in bounds.
#[inline]
pub(crate) fn rd16(b: &[u8], off: usize) -> Option<u16> {
    let s: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(s))
}

/// Writes a big-endian `u16` at `off`, if in bounds.
#[inline]
pub(crate) fn wr16(b: &mut [u8], off: usize, v: u16) -> Option<()> {
    b.get_mut(off..off.checked_add(2)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

/// Writes an IPv4 address at `off`, if in bounds.
#[inline]
pub(crate) fn wr_addr(b: &mut [u8], off: usize, a: Ipv4Addr) -> Option<()> {
    b.get_mut(off..off.checked_add(4)?)?
        .copy_from_slice(&a.octets());
    Some(())
}

/// Patches the checksum at `off` with `d` (TCP, ICMP and IPv4 header checksums).
#[inline]
pub(crate) fn patch(b: &mut [u8], off: usize, d: Delta) -> Option<(u16, u16)> {
    let old = rd16(b, off)?;
    let new = d.apply(old);
    wr16(b, off, new)?;
    Some((old, new))
}

/// Patches a UDP checksum: zero ("no checksum", RFC 768) stays zero, and a computed zero
/// is sent as `0xffff`.
#[inline]
pub(crate) fn patch_udp(b: &mut [u8], off: usize, d: Delta) -> Option<(u16, u16)> {
    let old = rd16(b, off)?;
    let new = d.apply_udp(old, true);
    wr16(b, off, new)?;
    Some((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_refuse_out_of_bounds() {
        let mut b = [0u8; 3];
        assert_eq!(rd16(&b, 2), None);
        assert_eq!(wr16(&mut b, 2, 1), None);
        assert_eq!(wr_addr(&mut b, 0, Ipv4Addr::LOCALHOST), None);
        assert_eq!(rd16(&b, usize::MAX), None);
    }

    #[test]
    fn udp_zero_checksum_stays_zero_and_zero_result_becomes_ffff() {
        let mut b = [0u8; 2];
        let mut d = Delta::default();
        d.word(1, 2);
        assert_eq!(patch_udp(&mut b, 0, d), Some((0, 0)));
        // a checksum that would come out 0 is sent as 0xffff
        let mut b = 0x0001u16.to_be_bytes();
        let mut d = Delta::default();
        d.word(0, 1);
        let (_, new) = patch_udp(&mut b, 0, d).unwrap();
        assert_eq!(new, 0xffff);
    }
}
