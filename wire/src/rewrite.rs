//! In-place address and port rewrites with incremental checksum updates (RFC 1624), the
//! per-packet work of a NAT. No allocation, no copy, no full checksum recompute.
//!
//! What gets patched:
//!
//! | packet                       | address changes                   | port changes        |
//! |------------------------------|-----------------------------------|---------------------|
//! | IPv4 header                  | header checksum                   | -                   |
//! | TCP                          | checksum (pseudo-header)          | port, checksum      |
//! | UDP, checksum in use         | checksum (pseudo-header)          | port, checksum      |
//! | UDP over IPv4, checksum 0    | nothing (stays 0: no checksum)    | port                |
//! | ICMPv4 query (echo, ts)      | nothing (no pseudo-header)        | identifier, checksum|
//! | ICMPv6 query                 | checksum (pseudo-header)          | identifier, checksum|
//! | ICMP errors, other protocols | IPv4 header / ICMPv6 pseudo-header| ignored             |
//! | non-first fragments          | IPv4 header checksum only         | ignored             |
//!
//! A first fragment's transport checksum covers the whole datagram; the incremental update
//! is still exact because it only depends on the words that change.
//!
//! ICMP errors are translated with [`rewrite_icmp_error`] (RFC 5508 section 4.2): outer
//! address, quoted packet's endpoint, and every checksum that covers them.

use core::net::IpAddr;

use crate::checksum;
use crate::{icmpv4, icmpv6, ip, ipv4, ipv6, tcp, udp, Error, IpProtocol, Result};

/// Which endpoint of the packet to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Source address and port.
    Src,
    /// Destination address and port.
    Dst,
}

/// Rewrites the source address and port (ICMP query identifier) of the IP packet in `buf`.
/// Returns the old address and port (0 where the protocol has no port).
pub fn rewrite_src(buf: &mut [u8], addr: IpAddr, port: u16) -> Result<(IpAddr, u16)> {
    rewrite(buf, Side::Src, addr, port)
}

/// Rewrites the destination address and port (ICMP query identifier) of the IP packet in
/// `buf`. Returns the old address and port.
pub fn rewrite_dst(buf: &mut [u8], addr: IpAddr, port: u16) -> Result<(IpAddr, u16)> {
    rewrite(buf, Side::Dst, addr, port)
}

/// Rewrites one endpoint of the IP packet in `buf` (see the module docs for what is patched).
///
/// Errors: the packet does not parse ([`Error::Truncated`], [`Error::Malformed`]); `addr` is
/// of the other family ([`Error::Unsupported`]). On error the packet is untouched.
pub fn rewrite(buf: &mut [u8], side: Side, addr: IpAddr, port: u16) -> Result<(IpAddr, u16)> {
    // Validate everything before writing anything.
    let (t, old_addr) = {
        let p = ip::Packet::new_checked(&*buf)?;
        check_family(p.version(), addr)?;
        (p.transport()?, endpoint(&p, side))
    };
    if t.is_first_fragment {
        check_transport(t.protocol, buf, &t)?;
    }
    set_ip_addr(buf, side, addr);
    if !t.is_first_fragment {
        return Ok((old_addr, 0));
    }
    let seg = buf.get_mut(t.offset..t.end).ok_or(Error::Truncated)?;
    let old_port = patch_transport(seg, t.protocol, side, old_addr, addr, port);
    Ok((old_addr, old_port))
}

/// The other endpoint.
fn opposite(side: Side) -> Side {
    match side {
        Side::Src => Side::Dst,
        Side::Dst => Side::Src,
    }
}

fn check_family(v: ip::Version, addr: IpAddr) -> Result<()> {
    if addr.is_ipv4() != (v == ip::Version::V4) {
        return Err(Error::Unsupported(
            "rewrite: address family differs from packet",
        ));
    }
    Ok(())
}

fn endpoint<T: AsRef<[u8]>>(p: &ip::Packet<T>, side: Side) -> IpAddr {
    match side {
        Side::Src => p.src_addr(),
        Side::Dst => p.dst_addr(),
    }
}

/// Writes the address into the IP header at the start of `buf` (whose header is known to be
/// complete and of `addr`'s family) and patches the IPv4 header checksum.
fn set_ip_addr(buf: &mut [u8], side: Side, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            let mut p = ipv4::Packet::new_unchecked(buf);
            let old = match side {
                Side::Src => p.src_addr(),
                Side::Dst => p.dst_addr(),
            };
            match side {
                Side::Src => p.set_src_addr(a),
                Side::Dst => p.set_dst_addr(a),
            }
            let c = checksum::update_u32(p.checksum(), u32::from(old), u32::from(a));
            p.set_checksum(c);
        }
        IpAddr::V6(a) => {
            let mut p = ipv6::Packet::new_unchecked(buf);
            match side {
                Side::Src => p.set_src_addr(a),
                Side::Dst => p.set_dst_addr(a),
            }
        }
    }
}

fn rd16(b: &[u8], off: usize) -> Option<u16> {
    let w = b.get(off..off + 2)?;
    Some(u16::from_be_bytes([w[0], w[1]]))
}

fn wr16(b: &mut [u8], off: usize, v: u16) {
    if let Some(w) = b.get_mut(off..off + 2) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Rewrites the port (ICMP query identifier) of `side` in the transport segment `seg` and
/// patches its checksum for the port and for the pseudo-header address `old_addr` ->
/// `new_addr`. Works on whole segments and on the truncated ones quoted in ICMP errors: a
/// field that is not in `seg` is left alone. Returns the old port (0 if none).
fn patch_transport(
    seg: &mut [u8],
    proto: IpProtocol,
    side: Side,
    old_addr: IpAddr,
    new_addr: IpAddr,
    port: u16,
) -> u16 {
    let is_v4 = new_addr.is_ipv4();
    let port_off = match side {
        Side::Src => 0,
        Side::Dst => 2,
    };
    match proto {
        IpProtocol::Tcp | IpProtocol::Udp => {
            let Some(old_port) = rd16(seg, port_off) else {
                return 0;
            };
            wr16(seg, port_off, port);
            let csum_off = if proto == IpProtocol::Tcp { 16 } else { 6 };
            if let Some(c) = rd16(seg, csum_off) {
                let c = if proto == IpProtocol::Tcp {
                    checksum::update_addr_port(c, old_addr, new_addr, old_port, port)
                } else {
                    let old_sum = checksum::combine(&[checksum::addr_words(old_addr), old_port]);
                    let new_sum = checksum::combine(&[checksum::addr_words(new_addr), port]);
                    checksum::udp_update(c, old_sum, new_sum, is_v4)
                };
                wr16(seg, csum_off, c);
            }
            old_port
        }
        IpProtocol::Icmp if is_v4 => {
            let Ok(p) = icmpv4::Packet::new_checked(&*seg) else {
                return 0;
            };
            if !p.is_query() {
                return 0;
            }
            let (old_id, csum) = (p.echo_ident(), p.checksum());
            let mut p = icmpv4::Packet::new_unchecked(seg);
            p.set_echo_ident(port);
            p.set_checksum(checksum::update_u16(csum, old_id, port));
            old_id
        }
        IpProtocol::Icmpv6 if !is_v4 => {
            let Ok(p) = icmpv6::Packet::new_checked(&*seg) else {
                return 0;
            };
            let (old_id, new_id) = if p.is_query() {
                (p.echo_ident(), port)
            } else {
                (0, 0)
            };
            let csum = p.checksum();
            let mut p = icmpv6::Packet::new_unchecked(seg);
            if p.is_query() {
                p.set_echo_ident(port);
            }
            p.set_checksum(checksum::update_addr_port(
                csum, old_addr, new_addr, old_id, new_id,
            ));
            old_id
        }
        _ => 0,
    }
}

// RFC 5508 section 4.2: "the NAT device MUST translate the [...] IP address(es) and port(s)
// of the embedded packet in the ICMP error payload [...] the NAT device MUST also update the
// checksum of the embedded packet's IP header and the ICMP checksum".
/// Rewrites an ICMP (or ICMPv6) error the way a NAT translates it (RFC 5508 section 4.2): the
/// outer `side` address becomes `addr`, and in the quoted packet, which travelled the other
/// way, the opposite endpoint becomes `addr:port`. Patches incrementally: the outer IPv4
/// header checksum, the quoted IPv4 header checksum, the quoted transport checksum (when the
/// quote is long enough to hold it), and the ICMP checksum (quote bytes, and the ICMPv6
/// pseudo-header).
///
/// Example: an error coming back to the anchor's public address about a packet the NAT sent
/// as `public:pport -> ch` is translated with `(Side::Dst, vipa, vport)`: outer destination
/// `vipa`, quoted source `vipa:vport`.
///
/// Returns the quoted packet's old endpoint. Errors: not an ICMP error, a quote that does not
/// parse or is of the other family ([`Error::Unsupported`], [`Error::Malformed`],
/// [`Error::Truncated`]). On error the packet is untouched.
pub fn rewrite_icmp_error(
    buf: &mut [u8],
    side: Side,
    addr: IpAddr,
    port: u16,
) -> Result<(IpAddr, u16)> {
    let inner = opposite(side);
    // Validate everything before writing anything.
    let (t, old_outer, version) = {
        let p = ip::Packet::new_checked(&*buf)?;
        check_family(p.version(), addr)?;
        (p.transport()?, endpoint(&p, side), p.version())
    };
    let seg = buf.get(t.offset..t.end).ok_or(Error::Truncated)?;
    let is_error = match (version, t.protocol) {
        (ip::Version::V4, IpProtocol::Icmp) => icmpv4::Packet::new_checked(seg)?.is_error(),
        (ip::Version::V6, IpProtocol::Icmpv6) => icmpv6::Packet::new_checked(seg)?.is_error(),
        _ => false,
    };
    if !is_error || !t.is_first_fragment {
        return Err(Error::Unsupported("rewrite: not an icmp error"));
    }
    let quote_off = t.offset + icmpv4::HEADER_LEN;
    let quote = buf.get(quote_off..t.end).ok_or(Error::Truncated)?;
    // Where the quoted transport header starts, and what it is.
    let (q_proto, q_off, q_first, old_inner) = match version {
        ip::Version::V4 => {
            let q = ipv4::Packet::new_unchecked(quote);
            q.check_header_len()?;
            let old = match inner {
                Side::Src => q.src_addr(),
                Side::Dst => q.dst_addr(),
            };
            (
                q.protocol(),
                q.header_len(),
                q.is_first_fragment(),
                IpAddr::V4(old),
            )
        }
        ip::Version::V6 => {
            let q = ipv6::Packet::new_unchecked(quote);
            q.check_header_len()?;
            let w = ipv6::walk_headers(q.next_header(), q.payload())?;
            let old = match inner {
                Side::Src => q.src_addr(),
                Side::Dst => q.dst_addr(),
            };
            (
                w.protocol,
                ipv6::HEADER_LEN + w.offset,
                w.is_first_fragment(),
                IpAddr::V6(old),
            )
        }
    };

    // The quoted packet, then the ICMP checksum by the change of the quote's sum.
    let quote = buf.get_mut(quote_off..t.end).ok_or(Error::Truncated)?;
    let before = checksum::sum(quote);
    set_ip_addr(quote, inner, addr);
    let old_port = match quote.get_mut(q_off..) {
        Some(q_seg) if q_first => patch_transport(q_seg, q_proto, inner, old_inner, addr, port),
        _ => 0,
    };
    let after = checksum::sum(quote);

    // The outer header, and the ICMP checksum.
    set_ip_addr(buf, side, addr);
    let icmp = buf.get_mut(t.offset..t.end).ok_or(Error::Truncated)?;
    if let Some(c) = rd16(icmp, 2) {
        let mut c = checksum::update_sum(c, before, after);
        if version == ip::Version::V6 {
            c = checksum::update_addr(c, old_outer, addr);
        }
        wr16(icmp, 2, c);
    }
    Ok((old_inner, old_port))
}

/// Checks that the transport header the rewrite will touch is complete.
fn check_transport(proto: IpProtocol, buf: &[u8], t: &ip::Transport) -> Result<()> {
    let seg = buf.get(t.offset..t.end).ok_or(Error::Truncated)?;
    match proto {
        IpProtocol::Tcp => tcp::Packet::new_checked(seg).map(|_| ()),
        // A first fragment's UDP length covers the whole datagram: only the header must be here.
        IpProtocol::Udp if t.is_fragment => seg
            .get(..udp::HEADER_LEN)
            .map(|_| ())
            .ok_or(Error::Truncated),
        IpProtocol::Udp => udp::Packet::new_checked(seg).map(|_| ()),
        IpProtocol::Icmp => icmpv4::Packet::new_checked(seg).map(|_| ()),
        IpProtocol::Icmpv6 => icmpv6::Packet::new_checked(seg).map(|_| ()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::FlowKey;

    fn udp4(csum: bool) -> Vec<u8> {
        let ip = ipv4::Repr {
            src_addr: [100, 64, 0, 2].into(),
            dst_addr: [198, 18, 3, 1].into(),
            protocol: IpProtocol::Udp,
            payload_len: 12,
            ttl: 64,
            ident: 1,
            dont_frag: true,
            dscp_ecn: 0,
        };
        let mut v = vec![0u8; ip.buffer_len()];
        let mut p = ipv4::Packet::new_unchecked(&mut v[..]);
        ip.emit(&mut p).unwrap();
        let mut u = udp::Packet::new_unchecked(p.payload_mut());
        udp::Repr {
            src_port: 5000,
            dst_port: 53,
            payload_len: 4,
        }
        .emit(&mut u)
        .unwrap();
        u.payload_mut().copy_from_slice(b"ping");
        if csum {
            u.fill_checksum(ip.src_addr.into(), ip.dst_addr.into());
        }
        v
    }

    fn valid_udp4(v: &[u8]) -> bool {
        let p = ipv4::Packet::new_checked(v).unwrap();
        let u = udp::Packet::new_checked(p.payload()).unwrap();
        p.verify_checksum() && u.verify_checksum(p.src_addr().into(), p.dst_addr().into())
    }

    #[test]
    fn udp4_src_rewrite() {
        let mut v = udp4(true);
        let new: IpAddr = Ipv4Addr::new(198, 18, 2, 100).into();
        let old = rewrite_src(&mut v, new, 40000).unwrap();
        assert_eq!(old, (Ipv4Addr::new(100, 64, 0, 2).into(), 5000));
        assert!(valid_udp4(&v));
        let k = FlowKey::from_ip_packet(&v).unwrap();
        assert_eq!((k.src, k.src_port), (new, 40000));
    }

    #[test]
    fn udp4_zero_checksum_stays_zero() {
        let mut v = udp4(false);
        rewrite_dst(&mut v, Ipv4Addr::new(10, 0, 0, 1).into(), 1).unwrap();
        let p = ipv4::Packet::new_checked(&v[..]).unwrap();
        assert_eq!(udp::Packet::new_checked(p.payload()).unwrap().checksum(), 0);
        assert!(valid_udp4(&v));
    }

    #[test]
    fn non_first_fragment_rewrites_addresses_only() {
        let mut v = udp4(true);
        ipv4::Packet::new_unchecked(&mut v[..]).set_flags_frag(false, false, 1480);
        ipv4::Packet::new_unchecked(&mut v[..]).fill_checksum();
        let payload_before = v[20..].to_vec();
        let (old, port) = rewrite_src(&mut v, Ipv4Addr::new(198, 18, 2, 100).into(), 9).unwrap();
        assert_eq!((old, port), (Ipv4Addr::new(100, 64, 0, 2).into(), 0));
        assert_eq!(&v[20..], &payload_before[..]);
        assert!(ipv4::Packet::new_checked(&v[..]).unwrap().verify_checksum());
    }

    #[test]
    fn icmp_error_translation() {
        // Port unreachable from 198.51.100.7 to the NAT's public 198.18.2.100, quoting the
        // datagram the NAT sent as 198.18.2.100:40000 -> 198.51.100.7:53.
        let mut sent = udp4(true);
        rewrite_src(&mut sent, Ipv4Addr::new(198, 18, 2, 100).into(), 40000).unwrap();
        rewrite_dst(&mut sent, Ipv4Addr::new(198, 51, 100, 7).into(), 53).unwrap();
        let mut err = vec![0u8; 28 + sent.len()];
        let r = ipv4::Repr {
            src_addr: [198, 51, 100, 7].into(),
            dst_addr: [198, 18, 2, 100].into(),
            protocol: IpProtocol::Icmp,
            payload_len: 8 + sent.len(),
            ttl: 64,
            ident: 0,
            dont_frag: false,
            dscp_ecn: 0,
        };
        let mut ip = ipv4::Packet::new_unchecked(&mut err[..]);
        r.emit(&mut ip).unwrap();
        let mut icmp = icmpv4::Packet::new_unchecked(ip.payload_mut());
        icmp.set_msg_type(icmpv4::TYPE_DST_UNREACHABLE);
        icmp.set_code(3);
        icmp.data_mut().copy_from_slice(&sent);
        icmp.fill_checksum();

        let vipa: IpAddr = Ipv4Addr::new(100, 64, 0, 2).into();
        let old = rewrite_icmp_error(&mut err, Side::Dst, vipa, 5000).unwrap();
        assert_eq!(old, (Ipv4Addr::new(198, 18, 2, 100).into(), 40000));
        let ip = ipv4::Packet::new_checked(&err[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(IpAddr::from(ip.dst_addr()), vipa);
        let icmp = icmpv4::Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        // The quote is now exactly the datagram as the host sent it.
        let mut original = udp4(true);
        rewrite_dst(&mut original, Ipv4Addr::new(198, 51, 100, 7).into(), 53).unwrap();
        assert_eq!(icmp.quoted().unwrap(), &original[..]);
        assert!(valid_udp4(icmp.quoted().unwrap()));
        // Not an error.
        assert!(matches!(
            rewrite_icmp_error(&mut original, Side::Dst, vipa, 1),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn wrong_family_leaves_packet_alone() {
        let mut v = udp4(true);
        let before = v.clone();
        let a: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().into();
        assert!(matches!(
            rewrite_src(&mut v, a, 1),
            Err(Error::Unsupported(_))
        ));
        assert_eq!(v, before);
        assert_eq!(
            rewrite_src(&mut v[..30], a, 1).unwrap_err(),
            Error::Truncated
        );
    }
}
