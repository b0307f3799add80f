//! ICMP for IPv4 (RFC 792, RFC 1191 for "fragmentation needed").
//!
//! Errors expose the packet they quote with [`Packet::quoted`]; the flow key of that packet
//! comes from [`crate::FlowKey::from_quoted`]. See the crate docs for the panic contract.

use core::net::Ipv4Addr;

use crate::checksum;
use crate::ipv4::{self, be16, put16};
use crate::{Error, IpProtocol, Result};

mod field {
    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: Field = 2..4;
    pub(crate) const ECHO_IDENT: Field = 4..6;
    pub(crate) const ECHO_SEQNO: Field = 6..8;
    pub(crate) const NEXT_HOP_MTU: Field = 6..8;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte "rest of header").
pub const HEADER_LEN: usize = 8;

/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination unreachable (error).
pub const TYPE_DST_UNREACHABLE: u8 = 3;
/// Source quench (error, deprecated by RFC 6633).
pub const TYPE_SOURCE_QUENCH: u8 = 4;
/// Redirect (error).
pub const TYPE_REDIRECT: u8 = 5;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time exceeded (error).
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Parameter problem (error).
pub const TYPE_PARAM_PROBLEM: u8 = 12;
/// Timestamp request.
pub const TYPE_TIMESTAMP: u8 = 13;
/// Timestamp reply.
pub const TYPE_TIMESTAMP_REPLY: u8 = 14;
/// Destination unreachable code 4: fragmentation needed and DF set (RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;

/// A read/write view of an ICMPv4 message.
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

    /// True for error messages, which quote the packet that caused them (RFC 792; RFC 5508
    /// section 7 lists the ones a NAT translates).
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            TYPE_DST_UNREACHABLE
                | TYPE_SOURCE_QUENCH
                | TYPE_REDIRECT
                | TYPE_TIME_EXCEEDED
                | TYPE_PARAM_PROBLEM
        )
    }

    /// True for query messages that carry an identifier (echo and timestamp, request and
    /// reply; RFC 5508 section 3.1 treats the identifier as the "port").
    pub fn is_query(&self) -> bool {
        matches!(
            self.msg_type(),
            TYPE_ECHO_REPLY | TYPE_ECHO_REQUEST | TYPE_TIMESTAMP | TYPE_TIMESTAMP_REPLY
        )
    }

    /// Identifier of a query (meaningful when [`is_query`](Self::is_query)).
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of a query.
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191 section 4).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The quoted packet (IP header and at least 8 bytes of its payload, RFC 792) of an
    /// error message; `None` for other types.
    pub fn quoted(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.data())
    }

    /// True if the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
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

    /// Sets the query identifier (checksum untouched).
    pub fn set_echo_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Sets the query sequence number (checksum untouched).
    pub fn set_echo_seq_no(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Sets the 4-byte "rest of header" as unused (0) and the next-hop MTU.
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, 0);
        put16(self.buffer.as_mut(), field::NEXT_HOP_MTU, v);
    }

    /// Mutable data after the header (the quoted packet of an error).
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Computes and writes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Bytes of the offending packet quoted in errors this crate builds: its IP header plus 8
/// bytes (RFC 792 minimum); with 20-byte headers that is 28, so the error stays 56 bytes.
/// RFC 1812 section 4.3.2.3 allows more; we keep the minimum to stay small.
const QUOTE_PAYLOAD: usize = 8;

// RFC 1191 section 4: "the router MUST include the MTU of that next-hop network in the
// low-order 16 bits of the ICMP header field that is labelled "unused" in the ICMP
// specification".
/// Builds a complete IPv4 packet carrying an ICMP "fragmentation needed and DF set" error
/// (type 3 code 4, RFC 1191) about `offending` (an IPv4 packet), from `src` to the offending
/// packet's source, with next-hop MTU `mtu`. Writes into `out`, returns the length written.
///
/// Errors: the offending packet does not parse ([`Error::Truncated`]/[`Error::Malformed`]);
/// it is an ICMP error or a non-first fragment, which must not be answered with an error
/// ([`Error::Unsupported`], RFC 1122 section 3.2.2); or `out` is too small ([`Error::BufferTooSmall`]; 20 + 8 + 60 + 8 bytes always suffice).
pub fn emit_frag_needed(
    out: &mut [u8],
    src: Ipv4Addr,
    offending: &[u8],
    mtu: u16,
) -> Result<usize> {
    let off = ipv4::Packet::new_checked(offending)?;
    // RFC 1122 section 3.2.2: "An ICMP error message MUST NOT be sent as the result of
    // receiving: an ICMP error message, [...] a datagram fragment other than the first".
    if !off.is_first_fragment() {
        return Err(Error::Unsupported(
            "icmp: no error about a non-first fragment",
        ));
    }
    if off.protocol() == IpProtocol::Icmp {
        let about = Packet::new_checked(off.payload())?;
        if about.is_error() {
            return Err(Error::Unsupported("icmp: no error about an icmp error"));
        }
    }
    let quote_len = (off.header_len() + QUOTE_PAYLOAD).min(usize::from(off.total_len()));
    let quote = offending.get(..quote_len).ok_or(Error::Truncated)?;
    let icmp_len = HEADER_LEN + quote.len();
    let repr = ipv4::Repr {
        src_addr: src,
        dst_addr: off.src_addr(),
        protocol: IpProtocol::Icmp,
        payload_len: icmp_len,
        ttl: 64,
        ident: 0,
        dont_frag: false,
        dscp_ecn: 0,
    };
    let out = out
        .get_mut(..repr.buffer_len())
        .ok_or(Error::BufferTooSmall)?;
    let mut ip = ipv4::Packet::new_unchecked(&mut *out);
    repr.emit(&mut ip)?;
    let mut icmp = Packet::new_unchecked(ip.payload_mut());
    icmp.set_msg_type(TYPE_DST_UNREACHABLE);
    icmp.set_code(CODE_FRAG_NEEDED);
    icmp.set_next_hop_mtu(mtu);
    icmp.data_mut().copy_from_slice(quote);
    icmp.fill_checksum();
    Ok(repr.buffer_len())
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    // A real echo request from Linux ping: id 0x1c46, seq 1, 56 bytes of data (cut to 8).
    const ECHO: [u8; 16] = hex!("0800 0000 1c46 0001 68e3a05f00000000");

    #[test]
    fn echo() {
        let mut v = ECHO.to_vec();
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.is_query() && !p.is_error());
        assert_eq!(p.echo_ident(), 0x1c46);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.quoted(), None);
        assert_eq!(Packet::new_checked(&v[..7]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn frag_needed() {
        // Offending: IPv4/UDP 1400 bytes with DF from 100.64.0.2 to 198.18.3.1.
        let mut off = vec![0u8; 1400];
        let r = ipv4::Repr {
            src_addr: [100, 64, 0, 2].into(),
            dst_addr: [198, 18, 3, 1].into(),
            protocol: IpProtocol::Udp,
            payload_len: 1380,
            ttl: 64,
            ident: 7,
            dont_frag: true,
            dscp_ecn: 0,
        };
        r.emit(&mut ipv4::Packet::new_unchecked(&mut off[..]))
            .unwrap();
        off[20..24].copy_from_slice(&hex!("d4311f90"));
        let mut out = [0u8; 128];
        let n = emit_frag_needed(&mut out, [198, 18, 2, 1].into(), &off, 1372).unwrap();
        assert_eq!(n, 56);
        let ip = ipv4::Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(100, 64, 0, 2));
        let icmp = Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((icmp.msg_type(), icmp.code()), (3, 4));
        assert_eq!(icmp.next_hop_mtu(), 1372);
        assert_eq!(icmp.quoted().unwrap(), &off[..28]);
        // No error about an error.
        let err = out[..n].to_vec();
        assert!(matches!(
            emit_frag_needed(&mut [0u8; 128], [1, 1, 1, 1].into(), &err, 576),
            Err(Error::Unsupported(_))
        ));
        let mut small = [0u8; 40];
        assert_eq!(
            emit_frag_needed(&mut small, [198, 18, 2, 1].into(), &off, 1372).unwrap_err(),
            Error::BufferTooSmall
        );
    }
}
