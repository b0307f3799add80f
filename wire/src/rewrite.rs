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
        if addr.is_ipv4() != matches!(p.version(), ip::Version::V4) {
            return Err(Error::Unsupported(
                "rewrite: address family differs from packet",
            ));
        }
        let old = match side {
            Side::Src => p.src_addr(),
            Side::Dst => p.dst_addr(),
        };
        (p.transport()?, old)
    };
    let is_v4 = addr.is_ipv4();
    if t.is_first_fragment {
        check_transport(t.protocol, buf, &t)?;
    }

    // IP header.
    match (addr, is_v4) {
        (IpAddr::V4(a), true) => {
            let mut p = ipv4::Packet::new_unchecked(&mut *buf);
            match side {
                Side::Src => p.set_src_addr(a),
                Side::Dst => p.set_dst_addr(a),
            }
            let c = checksum::update_addr(p.checksum(), old_addr, addr);
            p.set_checksum(c);
        }
        (IpAddr::V6(a), _) => {
            let mut p = ipv6::Packet::new_unchecked(&mut *buf);
            match side {
                Side::Src => p.set_src_addr(a),
                Side::Dst => p.set_dst_addr(a),
            }
        }
        (IpAddr::V4(_), false) => return Err(Error::Unsupported("rewrite: family")),
    }
    if !t.is_first_fragment {
        return Ok((old_addr, 0));
    }
    let seg = buf.get_mut(t.offset..t.end).ok_or(Error::Truncated)?;

    let old_port = match t.protocol {
        IpProtocol::Tcp => {
            let mut s = tcp::Packet::new_unchecked(&mut *seg);
            let old_port = match side {
                Side::Src => s.src_port(),
                Side::Dst => s.dst_port(),
            };
            match side {
                Side::Src => s.set_src_port(port),
                Side::Dst => s.set_dst_port(port),
            }
            let c = checksum::update_addr_port(s.checksum(), old_addr, addr, old_port, port);
            s.set_checksum(c);
            old_port
        }
        IpProtocol::Udp => {
            let mut s = udp::Packet::new_unchecked(&mut *seg);
            let old_port = match side {
                Side::Src => s.src_port(),
                Side::Dst => s.dst_port(),
            };
            match side {
                Side::Src => s.set_src_port(port),
                Side::Dst => s.set_dst_port(port),
            }
            let old_sum = checksum::combine(&[checksum::addr_words(old_addr), old_port]);
            let new_sum = checksum::combine(&[checksum::addr_words(addr), port]);
            let c = checksum::udp_update(s.checksum(), old_sum, new_sum, is_v4);
            s.set_checksum(c);
            old_port
        }
        IpProtocol::Icmp if is_v4 => {
            let mut s = icmpv4::Packet::new_unchecked(&mut *seg);
            if s.is_query() {
                let old_id = s.echo_ident();
                s.set_echo_ident(port);
                let c = checksum::update_u16(s.checksum(), old_id, port);
                s.set_checksum(c);
                old_id
            } else {
                0
            }
        }
        IpProtocol::Icmpv6 if !is_v4 => {
            let mut s = icmpv6::Packet::new_unchecked(&mut *seg);
            let (old_id, new_id) = if s.is_query() {
                let old_id = s.echo_ident();
                s.set_echo_ident(port);
                (old_id, port)
            } else {
                (0, 0)
            };
            let c = checksum::update_addr_port(s.checksum(), old_addr, addr, old_id, new_id);
            s.set_checksum(c);
            old_id
        }
        _ => 0,
    };
    Ok((old_addr, old_port))
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
