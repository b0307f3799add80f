//! ICMP for IPv6 (RFC 4443).
//!
//! Errors (types 0-127) quote the offending packet: [`Packet::quoted`]. The checksum covers
//! an IPv6 pseudo-header. See the crate docs for the panic contract.

use core::net::Ipv6Addr;

use crate::checksum;
use crate::ipv4::{be16, be32, put16, put32};
use crate::ipv6;
use crate::{Error, IpProtocol, Result};

mod field {
    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: Field = 2..4;
    pub(crate) const ECHO_IDENT: Field = 4..6;
    pub(crate) const ECHO_SEQNO: Field = 6..8;
    pub(crate) const MTU: Field = 4..8;
}

/// Length of the ICMPv6 header (type, code, checksum and 4 bytes of message body).
pub const HEADER_LEN: usize = 8;

/// Destination unreachable (error).
pub const TYPE_DST_UNREACHABLE: u8 = 1;
/// Packet too big (error).
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time exceeded (error).
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter problem (error).
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;

/// IPv6 minimum MTU (RFC 8200 section 5); an ICMPv6 error must not exceed it.
pub const MIN_MTU: usize = 1280;

/// A read/write view of an ICMPv6 message.
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

    /// Checks that the 8-byte header is there. The message is the whole buffer.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    // RFC 4443 section 2.1: "Error messages are identified as such by a zero in the
    // high-order bit of their message Type field values."
    /// True for error messages (types 0-127).
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// True for echo request and reply (the identifier acts as the port).
    pub fn is_query(&self) -> bool {
        matches!(self.msg_type(), TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// MTU of a Packet Too Big message (RFC 4443 section 3.2).
    pub fn mtu(&self) -> u32 {
        be32(self.buffer.as_ref(), field::MTU)
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The quoted packet of an error ("as much of invoking packet as possible without the
    /// ICMPv6 packet exceeding the minimum IPv6 MTU"); `None` for informational messages.
    pub fn quoted(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.data())
    }

    /// True if the checksum (with the pseudo-header of `src`/`dst`) verifies.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let d = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, d.len() as u32);
        checksum::combine(&[ph, checksum::sum(d)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets the code.
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the echo identifier (checksum untouched).
    pub fn set_echo_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number (checksum untouched).
    pub fn set_echo_seq_no(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Sets the MTU field of a Packet Too Big message.
    pub fn set_mtu(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::MTU, v);
    }

    /// Mutable data after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Computes and writes the checksum (pseudo-header of `src`/`dst`, RFC 4443 section 2.3).
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let d = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, d.len() as u32);
        let c = !checksum::combine(&[ph, checksum::sum(d)]);
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

// RFC 4443 section 3.2: "A Packet Too Big MUST be sent by a router in response to a packet
// that it cannot forward because the packet is larger than the MTU of the outgoing link."
/// Builds a complete IPv6 packet carrying an ICMPv6 Packet Too Big (type 2) about `offending`
/// (an IPv6 packet), from `src` to the offending packet's source, quoting as much of it as
/// fits in [`MIN_MTU`] bytes. Returns the length written into `out`.
///
/// Errors: the offending packet does not parse; it is an ICMPv6 error
/// ([`Error::Unsupported`], RFC 4443 section 2.4 (e)); `out` is too small
/// ([`Error::BufferTooSmall`]; [`MIN_MTU`] bytes always suffice).
pub fn emit_packet_too_big(
    out: &mut [u8],
    src: Ipv6Addr,
    offending: &[u8],
    mtu: u32,
) -> Result<usize> {
    let off = ipv6::Packet::new_checked(offending)?;
    // RFC 4443 section 2.4 (e): "An ICMPv6 error message MUST NOT be originated as a result
    // of receiving [...] (e.1) An ICMPv6 error message."
    let w = off.walk()?;
    if w.protocol == IpProtocol::Icmpv6 && w.is_first_fragment() {
        let about = off
            .as_bytes()
            .get(w.offset..off.total_len())
            .ok_or(Error::Truncated)?;
        if Packet::new_checked(about)?.is_error() {
            return Err(Error::Unsupported("icmpv6: no error about an icmpv6 error"));
        }
    }
    let max_quote = MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN;
    let quote_len = off.total_len().min(max_quote);
    let quote = offending.get(..quote_len).ok_or(Error::Truncated)?;
    let repr = ipv6::Repr {
        src_addr: src,
        dst_addr: off.src_addr(),
        next_header: IpProtocol::Icmpv6,
        payload_len: HEADER_LEN + quote.len(),
        hop_limit: 64,
    };
    let out = out
        .get_mut(..repr.buffer_len())
        .ok_or(Error::BufferTooSmall)?;
    let mut ip = ipv6::Packet::new_unchecked(&mut *out);
    repr.emit(&mut ip)?;
    let mut icmp = Packet::new_unchecked(ip.payload_mut());
    icmp.set_msg_type(TYPE_PACKET_TOO_BIG);
    icmp.set_code(0);
    icmp.set_mtu(mtu);
    icmp.data_mut().copy_from_slice(quote);
    icmp.fill_checksum(repr.src_addr, repr.dst_addr);
    Ok(repr.buffer_len())
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    #[test]
    fn echo_checksum() {
        let mut v = hex!("8000 0000 0001 0001 61626364").to_vec();
        let (s, d) = addrs();
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum(s, d);
        assert!(p.verify_checksum(s, d));
        assert!(!p.verify_checksum(d, "2001:db8::3".parse().unwrap()));
        assert!(p.is_query() && !p.is_error());
        assert_eq!(p.echo_ident(), 1);
    }

    #[test]
    fn packet_too_big() {
        let (s, d) = addrs();
        let r = ipv6::Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::Udp,
            payload_len: 1460,
            hop_limit: 64,
        };
        let mut off = vec![0u8; r.buffer_len()];
        r.emit(&mut ipv6::Packet::new_unchecked(&mut off[..]))
            .unwrap();
        let mut out = vec![0u8; 2000];
        let router: Ipv6Addr = "2001:db8::ff".parse().unwrap();
        let n = emit_packet_too_big(&mut out, router, &off, 1400).unwrap();
        assert_eq!(n, MIN_MTU);
        let ip = ipv6::Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(ip.dst_addr(), s);
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(router, s));
        assert_eq!(icmp.mtu(), 1400);
        assert_eq!(icmp.quoted().unwrap(), &off[..MIN_MTU - 48]);
        let err = out[..n].to_vec();
        assert!(matches!(
            emit_packet_too_big(&mut [0u8; 1280], s, &err, 1280),
            Err(Error::Unsupported(_))
        ));
    }
}
