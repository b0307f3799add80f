//! IPv6 packets (RFC 8200), with a walk over extension headers to the transport header.
//!
//! See the crate docs for the panic contract of views.

use core::net::Ipv6Addr;

use crate::ipv4::{be16, be32, put16};
use crate::{Error, IpProtocol, Result};

mod field {
    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) const VER_TC_FLOW: Field = 0..4;
    pub(crate) const PAYLOAD_LEN: Field = 4..6;
    pub(crate) const NEXT_HEADER: usize = 6;
    pub(crate) const HOP_LIMIT: usize = 7;
    pub(crate) const SRC_ADDR: Field = 8..24;
    pub(crate) const DST_ADDR: Field = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers [`walk_headers`] follows before giving up (RFC 8200 sets no
/// limit; RFC 7045 lets intermediate nodes stop; every header is at least 8 bytes anyway).
pub const MAX_EXT_HEADERS: usize = 16;

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Fragment header contents (RFC 8200 section 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// Offset of this fragment's data, in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Result of the extension-header walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Walk {
    /// The upper-layer protocol (or `Esp` / `Ipv6NoNxt`, where the walk must stop).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the slice walked (for
    /// [`Packet::walk`]: from the start of the IPv6 header).
    pub offset: usize,
    /// The Fragment header, if one was crossed. If its `offset` is not 0 the bytes at
    /// `offset` are the middle of the datagram, not a transport header.
    pub fragment: Option<FragmentInfo>,
}

impl Walk {
    /// True if the bytes at `offset` start the upper-layer header (not a non-first fragment).
    pub fn is_first_fragment(&self) -> bool {
        self.fragment.is_none_or(|f| f.offset == 0)
    }
}

// RFC 8200 section 4: Hop-by-Hop (0), Routing (43), Fragment (44), Destination Options (60)
// and (RFC 4302) Authentication Header (51) are chained through "Next Header". "Hdr Ext Len:
// Length of the [...] header in 8-octet units, not including the first 8 octets"; AH's
// "Payload Len" counts 4-octet units minus 2 (RFC 4302 section 2.2).
/// Walks the extension headers in `data` (the bytes after the fixed IPv6 header, bounded by
/// the payload length) starting with `next_header`, and returns the upper-layer protocol and
/// its offset in `data`. Errors: [`Error::Truncated`] when a header runs past `data`,
/// [`Error::Malformed`] when more than [`MAX_EXT_HEADERS`] are chained.
pub fn walk_headers(next_header: IpProtocol, data: &[u8]) -> Result<Walk> {
    let mut proto = next_header;
    let mut off = 0usize;
    let mut fragment = None;
    for _ in 0..=MAX_EXT_HEADERS {
        let len = match proto {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let b = data.get(off..off + 2).ok_or(Error::Truncated)?;
                (usize::from(b[1]) + 1) * 8
            }
            IpProtocol::Ah => {
                let b = data.get(off..off + 2).ok_or(Error::Truncated)?;
                (usize::from(b[1]) + 2) * 4
            }
            IpProtocol::Ipv6Frag => {
                let b = data.get(off..off + 8).ok_or(Error::Truncated)?;
                let off_flags = u16::from_be_bytes([b[2], b[3]]);
                fragment = Some(FragmentInfo {
                    offset: off_flags & 0xfff8,
                    more: off_flags & 1 != 0,
                    ident: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                });
                8
            }
            _ => {
                return Ok(Walk {
                    protocol: proto,
                    offset: off,
                    fragment,
                })
            }
        };
        let hdr = data.get(off..off + len).ok_or(Error::Truncated)?;
        proto = IpProtocol::from(hdr[0]);
        off += len;
        if let Some(f) = fragment {
            if f.offset != 0 {
                // Non-first fragment: what follows is not a header.
                return Ok(Walk {
                    protocol: proto,
                    offset: off,
                    fragment,
                });
            }
        }
    }
    Err(Error::Malformed("ipv6: too many extension headers"))
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

    /// Checks version 6 and that the buffer holds the fixed header and `payload_len` bytes
    /// (the buffer may be longer). Jumbograms (payload length 0 with a Jumbo option) are
    /// seen as an empty payload.
    pub fn check_len(&self) -> Result<()> {
        self.check_header_len()?;
        if self.buffer.as_ref().len() < self.total_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Checks version 6 and the fixed header only, not `payload_len`: for the packet quoted
    /// in an ICMPv6 error, which is cut to fit the minimum MTU.
    pub fn check_header_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        let first = *data.first().ok_or(Error::Truncated)?;
        if first >> 4 != 6 {
            return Err(Error::Malformed("ipv6: version is not 6"));
        }
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// IP version (6 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        ((be32(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) & 0xff) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Fixed header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header after the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The payload (extension headers included), up to `payload_len`, clamped to the buffer.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = self.total_len().min(data.len());
        data.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// Walks the extension headers (see [`walk_headers`]); the offset is from the start of
    /// the IPv6 header.
    pub fn walk(&self) -> Result<Walk> {
        let mut w = walk_headers(self.next_header(), self.payload())?;
        w.offset += HEADER_LEN;
        Ok(w)
    }

    /// The upper-layer protocol and the offset of its header from the start of the packet.
    pub fn transport(&self) -> Result<(IpProtocol, usize)> {
        let w = self.walk()?;
        Ok((w.protocol, w.offset))
    }

    /// The Fragment header's contents, if the packet has one.
    pub fn fragment(&self) -> Result<Option<FragmentInfo>> {
        Ok(self.walk()?.fragment)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version, traffic class and flow label.
    pub fn set_ver_tc_flow(&mut self, version: u8, tc: u8, flow: u32) {
        let v = (u32::from(version) << 28) | (u32::from(tc) << 20) | (flow & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN, v);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = p.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address (transport checksums untouched: see [`crate::rewrite`]).
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    /// Sets the destination address (transport checksums untouched).
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Mutable payload (up to `payload_len`, clamped to the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let tl = self.total_len();
        let data = self.buffer.as_mut();
        let end = tl.min(data.len());
        data.get_mut(HEADER_LEN..end).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// High-level description of a fixed IPv6 header (no extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Parses the fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
        })
    }

    /// Header plus payload length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header (traffic class and flow label 0).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        let len = u16::try_from(self.payload_len).map_err(|_| Error::BufferTooSmall)?;
        if p.buffer.as_ref().len() < self.buffer_len() {
            return Err(Error::BufferTooSmall);
        }
        p.set_ver_tc_flow(6, 0, 0);
        p.set_payload_len(len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

fn addr(data: &[u8], f: core::ops::Range<usize>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&data[f]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    // A real ICMPv6 echo request 2001:db8::1 -> 2001:db8::2 behind a Hop-by-Hop header
    // (PadN), a Destination Options header and a Fragment header (first fragment, more).
    fn packet() -> Vec<u8> {
        hex!(
            "60000000 0024 00 40"
            "20010db8000000000000000000000001"
            "20010db8000000000000000000000002"
            "3c00 0104 00000000"      // hop-by-hop: next = dest opts (60), PadN
            "2c00 0104 00000000"      // dest opts: next = fragment (44)
            "3a00 0001 12345678"      // fragment: next = icmpv6, offset 0, M=1
            "8000 0000 0001 0001 61626364" // echo request, id 1, seq 1, "abcd"
        )
        .to_vec()
    }

    #[test]
    fn walk_to_icmpv6() {
        let v = packet();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.payload_len(), 36);
        assert_eq!(p.next_header(), IpProtocol::HopByHop);
        let w = p.walk().unwrap();
        assert_eq!(w.protocol, IpProtocol::Icmpv6);
        assert_eq!(w.offset, 64);
        assert_eq!(
            w.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0x12345678
            })
        );
        assert!(w.is_first_fragment());
        assert_eq!(p.transport().unwrap(), (IpProtocol::Icmpv6, 64));
    }

    #[test]
    fn non_first_fragment_stops() {
        let mut v = packet();
        v[58..60].copy_from_slice(&[0x00, 0xb8]); // offset 23*8 = 184
        let w = Packet::new_checked(&v[..]).unwrap().walk().unwrap();
        assert_eq!(w.fragment.unwrap().offset, 184);
        assert!(!w.is_first_fragment());
    }

    #[test]
    fn truncated_ext_header() {
        let mut v = packet();
        v[41] = 0x10; // hop-by-hop claims 136 bytes
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.walk().unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&v[..75]).unwrap_err(), Error::Truncated);
        let mut b = v.clone();
        b[0] = 0x40;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn header_loop_is_bounded() {
        // 20 chained destination-options headers.
        let mut v = [0u8; 40 + 20 * 8];
        let mut p = Packet::new_unchecked(&mut v[..]);
        p.set_ver_tc_flow(6, 0, 0);
        p.set_payload_len(160);
        p.set_next_header(IpProtocol::Ipv6Opts);
        for i in 0..20 {
            v[40 + i * 8] = 60;
        }
        let p = Packet::new_checked(&v[..]).unwrap();
        assert!(matches!(p.walk(), Err(Error::Malformed(_))));
    }

    #[test]
    fn repr_round_trip() {
        let r = Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header: IpProtocol::Udp,
            payload_len: 8,
            hop_limit: 64,
        };
        let mut v = vec![0u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut v[..])).unwrap();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&v[..]).unwrap()).unwrap(),
            r
        );
    }
}
