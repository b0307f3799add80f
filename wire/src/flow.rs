//! Flow keys: the 5-tuple of a packet, or of the packet quoted inside an ICMP error.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use crate::{icmpv4, icmpv6, ip, ipv4, ipv6, tcp, udp, Error, IpProtocol, Result};

/// The 5-tuple identifying a flow.
///
/// Ports are the TCP/UDP ports; for ICMP queries (echo, timestamp) both ports are the query
/// identifier (RFC 5508 section 3.1 and RFC 5382 treat it as the port); for every other
/// protocol, ICMP errors and non-first fragments they are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: IpProtocol,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (or ICMP identifier, or 0).
    pub src_port: u16,
    /// Destination port (or ICMP identifier, or 0).
    pub dst_port: u16,
}

/// How much of the transport header must be present.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// A whole packet: the full transport header must be there, and UDP's length must fit.
    Full,
    /// A first fragment: the full transport header must be there; UDP's length describes the
    /// whole datagram.
    Header,
    /// A packet quoted in an ICMP error: only the first 8 bytes are guaranteed (RFC 792).
    Quoted,
}

impl FlowKey {
    /// The key of an IPv4 or IPv6 packet. Checks the IP header lengths, walks IPv6 extension
    /// headers, and requires the whole TCP/UDP/ICMP header (and, unless the packet is a first
    /// fragment, a UDP length that fits). Non-first fragments get ports 0.
    pub fn from_ip_packet(data: &[u8]) -> Result<FlowKey> {
        let p = ip::Packet::new_checked(data)?;
        let t = p.transport()?;
        let seg = data.get(t.offset..t.end).ok_or(Error::Truncated)?;
        let depth = if t.is_fragment {
            Depth::Header
        } else {
            Depth::Full
        };
        let (src_port, dst_port) = ports(t.protocol, seg, t.is_first_fragment, depth)?;
        Ok(FlowKey {
            proto: t.protocol,
            src: p.src_addr(),
            dst: p.dst_addr(),
            src_port,
            dst_port,
        })
    }

    /// The key of the packet quoted inside the ICMP or ICMPv6 error `data` (a whole IP
    /// packet). This is the flow as its sender sent it (source = the host the error goes
    /// back to); use [`reversed`](Self::reversed) to match the error's own direction.
    ///
    /// Errors: [`Error::Unsupported`] if `data` is not an ICMP error; [`Error::Malformed`] if
    /// the quoted packet's family differs from the outer one; the quoted packet's own errors.
    pub fn from_icmp_error(data: &[u8]) -> Result<FlowKey> {
        let p = ip::Packet::new_checked(data)?;
        let t = p.transport()?;
        let seg = data.get(t.offset..t.end).ok_or(Error::Truncated)?;
        if !t.is_first_fragment {
            return Err(Error::Unsupported("icmp error in a non-first fragment"));
        }
        let quoted = match (p.version(), t.protocol) {
            (ip::Version::V4, IpProtocol::Icmp) => {
                if !icmpv4::Packet::new_checked(seg)?.is_error() {
                    return Err(Error::Unsupported("not an icmp error"));
                }
                seg.get(icmpv4::HEADER_LEN..).unwrap_or(&[])
            }
            (ip::Version::V6, IpProtocol::Icmpv6) => {
                if !icmpv6::Packet::new_checked(seg)?.is_error() {
                    return Err(Error::Unsupported("not an icmp error"));
                }
                seg.get(icmpv6::HEADER_LEN..).unwrap_or(&[])
            }
            _ => return Err(Error::Unsupported("not an icmp error")),
        };
        let key = Self::from_quoted(quoted)?;
        if key.src.is_ipv4() != p.src_addr().is_ipv4() {
            return Err(Error::Malformed(
                "icmp error quotes a packet of the other family",
            ));
        }
        Ok(key)
    }

    /// The key of a quoted packet (the data of an ICMP error): an IP header followed by at
    /// least the first 8 bytes of its transport header; the header's length fields may claim
    /// more than is there.
    pub fn from_quoted(quoted: &[u8]) -> Result<FlowKey> {
        match ip::version(quoted)? {
            ip::Version::V4 => {
                let p = ipv4::Packet::new_unchecked(quoted);
                p.check_header_len()?;
                let end = usize::from(p.total_len()).min(quoted.len());
                let seg = quoted
                    .get(p.header_len()..end)
                    .ok_or(Error::Malformed("ipv4: total length below header length"))?;
                let proto = p.protocol();
                let (src_port, dst_port) = ports(proto, seg, p.is_first_fragment(), Depth::Quoted)?;
                Ok(FlowKey {
                    proto,
                    src: p.src_addr().into(),
                    dst: p.dst_addr().into(),
                    src_port,
                    dst_port,
                })
            }
            ip::Version::V6 => {
                let p = ipv6::Packet::new_unchecked(quoted);
                p.check_header_len()?;
                let w = ipv6::walk_headers(p.next_header(), p.payload())?;
                let seg = p.payload().get(w.offset..).ok_or(Error::Truncated)?;
                let (src_port, dst_port) =
                    ports(w.protocol, seg, w.is_first_fragment(), Depth::Quoted)?;
                Ok(FlowKey {
                    proto: w.protocol,
                    src: p.src_addr().into(),
                    dst: p.dst_addr().into(),
                    src_port,
                    dst_port,
                })
            }
        }
    }

    /// The key of the reply direction (addresses and ports swapped).
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// Source address and port.
    pub fn src_socket(&self) -> SocketAddr {
        SocketAddr::new(self.src, self.src_port)
    }

    /// Destination address and port.
    pub fn dst_socket(&self) -> SocketAddr {
        SocketAddr::new(self.dst, self.dst_port)
    }
}

/// Ports of a transport segment (see [`FlowKey`] for what counts as a port).
fn ports(proto: IpProtocol, seg: &[u8], first: bool, depth: Depth) -> Result<(u16, u16)> {
    if !first {
        return Ok((0, 0));
    }
    let two = |seg: &[u8]| -> Result<(u16, u16)> {
        match seg.get(..4) {
            Some(b) => Ok((
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            )),
            None => Err(Error::Truncated),
        }
    };
    match (proto, depth) {
        (IpProtocol::Tcp, Depth::Full | Depth::Header) => {
            let t = tcp::Packet::new_checked(seg)?;
            Ok((t.src_port(), t.dst_port()))
        }
        (IpProtocol::Udp, Depth::Full) => {
            let u = udp::Packet::new_checked(seg)?;
            Ok((u.src_port(), u.dst_port()))
        }
        (IpProtocol::Udp, Depth::Header) => match seg.get(..udp::HEADER_LEN) {
            Some(h) => two(h),
            None => Err(Error::Truncated),
        },
        (IpProtocol::Tcp | IpProtocol::Udp, Depth::Quoted) => two(seg),
        (IpProtocol::Icmp, _) => {
            let i = icmpv4::Packet::new_checked(seg)?;
            let id = if i.is_query() { i.echo_ident() } else { 0 };
            Ok((id, id))
        }
        (IpProtocol::Icmpv6, _) => {
            let i = icmpv6::Packet::new_checked(seg)?;
            let id = if i.is_query() { i.echo_ident() } else { 0 };
            Ok((id, id))
        }
        _ => Ok((0, 0)),
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.proto,
            self.src_socket(),
            self.dst_socket()
        )
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use hex_literal::hex;

    use super::*;

    // Real capture: IPv4/TCP SYN 10.0.2.15:44346 -> 93.184.216.34:80 (checksums not valid:
    // the flow key does not look at them).
    const TCP4: [u8; 60] = hex!(
        "4500003c 1c46 4000 4006 0000 0a00020f 5db8d822"
        "ad3a0050 5b2e9f2a 00000000 a002faf0 0000 0000"
        "020405b4 0402080a 9b1a6e3c 00000000 01030307"
    );

    // ICMP port unreachable from 10.0.2.3 quoting a UDP datagram 10.0.2.15:50395 -> :53,
    // truncated to the 8-byte UDP header as RFC 792 allows.
    const ICMP_ERR4: [u8; 56] = hex!(
        "45c00038 0000 0000 4001 0000 0a000203 0a00020f"
        "0303 0000 00000000"
        "4500003b 1234 4000 4011 0000 0a00020f 0a000203"
        "c4db0035 0027 abcd"
    );

    #[test]
    fn tcp_v4() {
        let k = FlowKey::from_ip_packet(&TCP4).unwrap();
        assert_eq!(k.proto, IpProtocol::Tcp);
        assert_eq!(k.src, IpAddr::from(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(k.dst, IpAddr::from(Ipv4Addr::new(93, 184, 216, 34)));
        assert_eq!((k.src_port, k.dst_port), (44346, 80));
        assert_eq!(k.reversed().reversed(), k);
        assert_eq!(k.reversed().src_port, 80);
        assert_eq!(k.to_string(), "tcp 10.0.2.15:44346 -> 93.184.216.34:80");
        // A TCP header cut short is an error for a whole packet...
        let mut cut = TCP4;
        cut[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(
            FlowKey::from_ip_packet(&cut[..30]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn icmp_error_v4_truncated_quote() {
        let k = FlowKey::from_icmp_error(&ICMP_ERR4).unwrap();
        assert_eq!(k.proto, IpProtocol::Udp);
        assert_eq!(k.src, IpAddr::from(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!((k.src_port, k.dst_port), (50395, 53));
        // The outer packet's own key: ICMP error, ports 0.
        let outer = FlowKey::from_ip_packet(&ICMP_ERR4).unwrap();
        assert_eq!(
            (outer.proto, outer.src_port, outer.dst_port),
            (IpProtocol::Icmp, 0, 0)
        );
        // A quote cut inside the ports fails cleanly.
        let mut cut = ICMP_ERR4;
        cut[2..4].copy_from_slice(&50u16.to_be_bytes());
        assert_eq!(
            FlowKey::from_icmp_error(&cut[..50]).unwrap_err(),
            Error::Truncated
        );
        // Not an error.
        assert!(matches!(
            FlowKey::from_icmp_error(&TCP4),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn icmp_echo_id_is_port() {
        let v = hex!("45000020 0001 0000 4001 0000 0a000001 0a000002 0800 0000 1c46 0001 61626364");
        let k = FlowKey::from_ip_packet(&v).unwrap();
        assert_eq!(
            (k.proto, k.src_port, k.dst_port),
            (IpProtocol::Icmp, 0x1c46, 0x1c46)
        );
    }

    #[test]
    fn v6_udp_behind_ext_header_and_other_protocols() {
        let v = hex!(
            "60000000 0018 00 40"
            "20010db8000000000000000000000001"
            "20010db8000000000000000000000002"
            "1100 0104 00000000"
            "04d2 0035 0010 0000 61626364 65666768"
        );
        let k = FlowKey::from_ip_packet(&v).unwrap();
        assert_eq!(k.proto, IpProtocol::Udp);
        assert_eq!(
            k.src,
            IpAddr::from("2001:db8::1".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!((k.src_port, k.dst_port), (1234, 53));
        assert_eq!(k.to_string(), "udp [2001:db8::1]:1234 -> [2001:db8::2]:53");
        // GRE (47): ports 0.
        let mut g = v;
        g[40] = 47;
        let k = FlowKey::from_ip_packet(&g).unwrap();
        assert_eq!(
            (k.proto, k.src_port, k.dst_port),
            (IpProtocol::Other(47), 0, 0)
        );
    }

    #[test]
    fn icmpv6_error_quote() {
        // Destination unreachable from 2001:db8::ff quoting a TCP SYN (first 8 bytes only).
        let v = hex!(
            "60000000 0038 3a 40"
            "20010db80000000000000000000000ff"
            "20010db8000000000000000000000001"
            "0104 0000 00000000"
            "60000000 0014 06 40"
            "20010db8000000000000000000000001"
            "20010db8000000000000000000000002"
            "ad3a0050 5b2e9f2a"
        );
        let k = FlowKey::from_icmp_error(&v).unwrap();
        assert_eq!(k.proto, IpProtocol::Tcp);
        assert_eq!((k.src_port, k.dst_port), (44346, 80));
        assert_eq!(
            k.dst,
            IpAddr::from("2001:db8::2".parse::<Ipv6Addr>().unwrap())
        );
    }

    #[test]
    fn non_first_fragment_has_no_ports() {
        let mut v = TCP4;
        v[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        let k = FlowKey::from_ip_packet(&v).unwrap();
        assert_eq!((k.proto, k.src_port, k.dst_port), (IpProtocol::Tcp, 0, 0));
    }
}
