//! UDP datagrams (RFC 768).
//!
//! See the crate docs for the panic contract of views.

use core::net::IpAddr;

use crate::checksum;
use crate::ipv4::{be16, put16};
use crate::{Error, IpProtocol, Result};

mod field {
    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) const SRC_PORT: Field = 0..2;
    pub(crate) const DST_PORT: Field = 2..4;
    pub(crate) const LENGTH: Field = 4..6;
    pub(crate) const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram (header and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks (see the crate's panic contract).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and runs [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header and `len` bytes, and that `len` covers the
    /// header. The buffer may be longer than `len`.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed("udp: length below 8"));
        }
        if data.len() < len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// True if the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field (0 over IPv4: no checksum).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, up to the length field (clamped to the buffer).
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = usize::from(self.len()).min(data.len());
        data.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The bytes the checksum covers (header and payload, up to the length field).
    fn datagram(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = usize::from(self.len()).min(data.len());
        data.get(..end).unwrap_or(data)
    }

    // RFC 768: "An all zero transmitted checksum value means that the transmitter generated
    // no checksum"; RFC 8200 section 8.1: over IPv6 "UDP checksum is not optional", a zero
    // checksum must be discarded.
    /// Verifies the checksum with the pseudo-header of `src` and `dst`. Over IPv4 a zero
    /// checksum (none sent) verifies; over IPv6 it does not.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let d = self.datagram();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Udp, d.len() as u32);
        checksum::combine(&[ph, checksum::sum(d)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (checksum untouched).
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port (checksum untouched).
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes and writes the checksum over the pseudo-header, header and payload (up to the
    /// length field). A computed 0 is written as `0xffff` (RFC 768).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let d = self.datagram();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Udp, d.len() as u32);
        let c = !checksum::combine(&[ph, checksum::sum(d)]);
        self.set_checksum(checksum::udp_nonzero(c));
    }

    /// Mutable payload (up to the length field, clamped to the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        let data = self.buffer.as_mut();
        let end = len.min(data.len());
        data.get_mut(HEADER_LEN..end).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// High-level description of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Parses a datagram and verifies its checksum against `src`/`dst` (zero-checksum rule
    /// as in [`Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, src: IpAddr, dst: IpAddr) -> Result<Repr> {
        p.check_len()?;
        if p.dst_port() == 0 {
            return Err(Error::Malformed("udp: destination port 0"));
        }
        if !p.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: usize::from(p.len()) - HEADER_LEN,
        })
    }

    /// Header plus payload length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes ports and length, and zeroes the checksum. Fill the payload, then call
    /// [`Packet::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        let len = u16::try_from(self.buffer_len()).map_err(|_| Error::BufferTooSmall)?;
        if p.buffer.as_ref().len() < self.buffer_len() {
            return Err(Error::BufferTooSmall);
        }
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        p.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use hex_literal::hex;

    use super::*;

    // A real DNS query captured on the wire: 10.0.2.15:50395 -> 10.0.2.3:53, query "a.com" A.
    const SRC: [u8; 4] = [10, 0, 2, 15];
    const DST: [u8; 4] = [10, 0, 2, 3];

    fn datagram() -> Vec<u8> {
        let mut d =
            hex!("c4db0035001b0000 12340100000100000000000001610363 6f6d0000010001").to_vec();
        let mut p = Packet::new_unchecked(&mut d[..]);
        p.fill_checksum(Ipv4Addr::from(SRC).into(), Ipv4Addr::from(DST).into());
        d
    }

    #[test]
    fn parse() {
        let d = datagram();
        let p = Packet::new_checked(&d[..]).unwrap();
        assert_eq!(p.src_port(), 50395);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 27);
        assert_eq!(p.payload().len(), 19);
        let (s, t) = (Ipv4Addr::from(SRC).into(), Ipv4Addr::from(DST).into());
        assert!(p.verify_checksum(s, t));
        assert_eq!(
            Repr::parse(&p, s, t).unwrap(),
            Repr {
                src_port: 50395,
                dst_port: 53,
                payload_len: 19
            }
        );
    }

    #[test]
    fn zero_checksum_rule() {
        let mut d = datagram();
        let mut p = Packet::new_unchecked(&mut d[..]);
        p.set_checksum(0);
        let v4 = (Ipv4Addr::from(SRC).into(), Ipv4Addr::from(DST).into());
        assert!(p.verify_checksum(v4.0, v4.1));
        let v6: (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        assert!(!p.verify_checksum(v6.0, v6.1));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a payload word that makes the checksum compute to zero.
        let (s, t): (IpAddr, IpAddr) = (Ipv4Addr::from(SRC).into(), Ipv4Addr::from(DST).into());
        let mut d = hex!("00010002000a00000000").to_vec();
        let mut p = Packet::new_unchecked(&mut d[..]);
        p.fill_checksum(s, t);
        let c = p.checksum();
        // Put the checksum value into the payload word: the new sum is all ones.
        let mut p = Packet::new_unchecked(&mut d[..]);
        p.payload_mut().copy_from_slice(&c.to_be_bytes());
        p.fill_checksum(s, t);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(s, t));
    }

    #[test]
    fn bad_lengths() {
        let d = datagram();
        assert_eq!(Packet::new_checked(&d[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&d[..26]).unwrap_err(), Error::Truncated);
        let mut b = d.clone();
        b[4..6].copy_from_slice(&[0, 7]);
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
    }
}
