//! RFC 1624 incremental checksum updates and the byte accessors of the rewrite.
//!
//! `wire::checksum` has `update_u16`/`update_u32` that patch one field at a time; the NAT
//! changes up to six words covered by one checksum (ICMP errors), so it accumulates the
//! whole change first and folds once ([`Delta`]). The property tests check the result
//! against a full recompute with `wire::checksum`.

use std::net::Ipv4Addr;

/// An accumulated change of 16-bit words under one Internet checksum.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Delta(u64);

impl Delta {
    /// One 16-bit word changed from `old` to `new`.
    #[inline]
    pub(crate) fn word(&mut self, old: u16, new: u16) {
        // RFC 1624 §3, eqn. 3: HC' = ~(~HC + ~m + m')
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// A 32-bit field (an IPv4 address) changed.
    #[inline]
    pub(crate) fn addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let (o, n) = (u32::from(old), u32::from(new));
        self.word((o >> 16) as u16, (n >> 16) as u16);
        self.word(o as u16, n as u16);
    }

    /// Adds another change under the same checksum.
    #[inline]
    pub(crate) fn add(&mut self, other: Delta) {
        self.0 += other.0;
    }

    /// Folds the change into checksum `csum`.
    #[inline]
    pub(crate) fn apply(self, csum: u16) -> u16 {
        let mut s = u64::from(!csum) + self.0;
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
}

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

/// Reads an IPv4 address at `off`, if in bounds.
#[inline]
pub(crate) fn rd_addr(b: &[u8], off: usize) -> Option<Ipv4Addr> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(Ipv4Addr::from(s))
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
    if old == 0 {
        return Some((0, 0));
    }
    let mut new = d.apply(old);
    if new == 0 {
        new = 0xffff;
    }
    wr16(b, off, new)?;
    Some((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(data: &[u8]) -> u16 {
        let mut s = 0u64;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            s += u64::from(w);
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    proptest::proptest! {
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(proptest::num::u8::ANY, 4..64),
                                   idx in 0usize..32, new in proptest::num::u16::ANY) {
            let words = data.len() / 2;
            let i = (idx % words) * 2;
            let before = full(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let mut d = Delta::default();
            d.word(old, new);
            let inc = d.apply(before);
            let fullv = full(&data);
            // both represent the same one's-complement value (0x0000 and 0xffff are both zero)
            proptest::prop_assert!(inc == fullv || (inc == 0 && fullv == 0xffff) || (inc == 0xffff && fullv == 0));
        }
    }

    #[test]
    fn accessors_refuse_out_of_bounds() {
        let mut b = [0u8; 3];
        assert_eq!(rd16(&b, 2), None);
        assert_eq!(wr16(&mut b, 2, 1), None);
        assert_eq!(rd_addr(&b, 0), None);
        assert_eq!(rd16(&b, usize::MAX), None);
    }
}
