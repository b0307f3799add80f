//! rtnetlink messages the interface monitor needs, parsed from bytes (no socket here).
//!
//! The mobile host learns of interfaces coming and going from the kernel's `NETLINK_ROUTE`
//! multicast groups (`RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`) and from a dump at start. This
//! module builds the dump requests and turns received datagrams into [`NetEvent`]s; the
//! daemon owns the socket. Layout: `linux/netlink.h`, `linux/rtnetlink.h`,
//! `linux/if_link.h`, `linux/if_addr.h`: all fields in host byte order, attributes aligned
//! to 4 bytes.
//!
//! Anything malformed is skipped (a truncated message ends the datagram's walk); nothing
//! here panics on any input.

use std::net::Ipv4Addr;

/// `RTMGRP_LINK`: link up/down, new and removed interfaces.
pub const RTMGRP_LINK: u32 = 0x1;
/// `RTMGRP_IPV4_IFADDR`: IPv4 addresses added and removed.
pub const RTMGRP_IPV4_IFADDR: u32 = 0x10;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFINFOMSG: usize = 16;
const IFADDRMSG: usize = 8;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;
const AF_INET: u8 = 2;

/// What changed on the host's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// An interface exists with this state (sent on every change, and for each at a dump).
    Link {
        /// Interface index.
        index: u32,
        /// Name, when the message carried it.
        name: Option<String>,
        /// Administratively up and carrier present (`IFF_UP` and `IFF_LOWER_UP`).
        usable: bool,
    },
    /// An interface is gone.
    LinkRemoved {
        /// Interface index.
        index: u32,
        /// Name, when the message carried it.
        name: Option<String>,
    },
    /// An IPv4 address was added (or is present, at a dump).
    AddrAdded {
        /// Interface index.
        index: u32,
        /// The address.
        addr: Ipv4Addr,
        /// Prefix length.
        prefix: u8,
    },
    /// An IPv4 address was removed.
    AddrRemoved {
        /// Interface index.
        index: u32,
        /// The address.
        addr: Ipv4Addr,
        /// Prefix length.
        prefix: u8,
    },
    /// The end of a dump.
    DumpDone,
    /// The kernel refused a request (errno, positive).
    Error(i32),
}

/// A dump request for every link (`RTM_GETLINK`).
pub fn dump_links(seq: u32) -> Vec<u8> {
    request(RTM_GETLINK, seq, &[0u8; IFINFOMSG])
}

/// A dump request for every IPv4 address (`RTM_GETADDR`).
pub fn dump_ipv4_addrs(seq: u32) -> Vec<u8> {
    let mut body = [0u8; IFADDRMSG];
    body[0] = AF_INET;
    request(RTM_GETADDR, seq, &body)
}

fn request(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDR + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Walks the `rtattr`s in `b`, yielding (type, payload). Stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & 0x3fff; // strip NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = b.get(4..len)?;
        b = b.get(align4(len).min(b.len())..)?;
        Some((kind, payload))
    })
}

fn name_of(payload: &[u8]) -> Option<String> {
    let end = payload
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(payload.len());
    std::str::from_utf8(payload.get(..end)?)
        .ok()
        .map(str::to_owned)
}

/// Parses one received netlink datagram (it may hold several messages).
pub fn parse(datagram: &[u8]) -> Vec<NetEvent> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while let (Some(len), Some(kind)) = (u32_at(rest, 0), u16_at(rest, 4)) {
        let len = len as usize;
        if len < NLMSG_HDR || len > rest.len() {
            break;
        }
        let body = rest.get(NLMSG_HDR..len).unwrap_or(&[]);
        if let Some(e) = parse_one(kind, body) {
            out.push(e);
        }
        rest = rest.get(align4(len).min(rest.len())..).unwrap_or(&[]);
    }
    out
}

fn parse_one(kind: u16, body: &[u8]) -> Option<NetEvent> {
    match kind {
        NLMSG_DONE => Some(NetEvent::DumpDone),
        NLMSG_ERROR => {
            let errno = i32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
            // errno 0 is an ACK.
            (errno != 0).then_some(NetEvent::Error(-errno))
        }
        RTM_NEWLINK | RTM_DELLINK => {
            let index = u32_at(body, 4)?;
            let flags = u32_at(body, 8)?;
            let name = attrs(body.get(IFINFOMSG..)?)
                .find(|(t, _)| *t == IFLA_IFNAME)
                .and_then(|(_, p)| name_of(p));
            Some(if kind == RTM_DELLINK {
                NetEvent::LinkRemoved { index, name }
            } else {
                NetEvent::Link {
                    index,
                    name,
                    usable: flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0,
                }
            })
        }
        RTM_NEWADDR | RTM_DELADDR => {
            if *body.first()? != AF_INET {
                return None;
            }
            let prefix = *body.get(1)?;
            let index = u32_at(body, 4)?;
            let mut local = None;
            let mut address = None;
            for (t, p) in attrs(body.get(IFADDRMSG..)?) {
                let a: Option<[u8; 4]> = p.try_into().ok();
                match t {
                    IFA_LOCAL => local = a.map(Ipv4Addr::from),
                    IFA_ADDRESS => address = a.map(Ipv4Addr::from),
                    _ => {}
                }
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
            // point-to-point links and equal to it otherwise.
            let addr = local.or(address)?;
            Some(if kind == RTM_NEWADDR {
                NetEvent::AddrAdded {
                    index,
                    addr,
                    prefix,
                }
            } else {
                NetEvent::AddrRemoved {
                    index,
                    addr,
                    prefix,
                }
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attr(t: u16, p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + p.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&t.to_ne_bytes());
        v.extend_from_slice(p);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = request(kind, 7, body);
        m.truncate(NLMSG_HDR + body.len());
        m
    }

    fn link(kind: u16, index: u32, flags: u32, name: &str) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body[8..12].copy_from_slice(&flags.to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        body.extend(attr(IFLA_IFNAME, &n));
        msg(kind, &body)
    }

    #[test]
    fn link_up_down_removed() {
        let mut d = link(RTM_NEWLINK, 3, IFF_UP | IFF_LOWER_UP, "wlan0");
        d.extend(link(RTM_NEWLINK, 4, IFF_UP, "umts0"));
        d.extend(link(RTM_DELLINK, 5, 0, "eth1"));
        d.extend(msg(NLMSG_DONE, &[0, 0, 0, 0]));
        assert_eq!(
            parse(&d),
            vec![
                NetEvent::Link {
                    index: 3,
                    name: Some("wlan0".into()),
                    usable: true
                },
                NetEvent::Link {
                    index: 4,
                    name: Some("umts0".into()),
                    usable: false
                },
                NetEvent::LinkRemoved {
                    index: 5,
                    name: Some("eth1".into())
                },
                NetEvent::DumpDone,
            ]
        );
    }

    #[test]
    fn addresses() {
        let mut body = vec![AF_INET, 24, 0, 0];
        body.extend_from_slice(&3u32.to_ne_bytes());
        body.extend(attr(IFA_ADDRESS, &[192, 168, 100, 25]));
        body.extend(attr(IFA_LOCAL, &[192, 168, 100, 25]));
        let d = msg(RTM_NEWADDR, &body);
        assert_eq!(
            parse(&d),
            vec![NetEvent::AddrAdded {
                index: 3,
                addr: Ipv4Addr::new(192, 168, 100, 25),
                prefix: 24
            }]
        );
        let d = msg(RTM_DELADDR, &body);
        assert!(matches!(parse(&d)[0], NetEvent::AddrRemoved { .. }));
        // IPv6 is not ours.
        body[0] = 10;
        assert!(parse(&msg(RTM_NEWADDR, &body)).is_empty());
    }

    #[test]
    fn error_and_ack() {
        let e = msg(NLMSG_ERROR, &(-1i32).to_ne_bytes());
        assert_eq!(parse(&e), vec![NetEvent::Error(1)]);
        let ack = msg(NLMSG_ERROR, &0i32.to_ne_bytes());
        assert!(parse(&ack).is_empty());
    }

    #[test]
    fn requests_are_well_formed() {
        let r = dump_links(9);
        assert_eq!(u32_at(&r, 0), Some(r.len() as u32));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETLINK));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        let r = dump_ipv4_addrs(10);
        assert_eq!(r[NLMSG_HDR], AF_INET);
    }

    #[test]
    fn truncated_stops_cleanly() {
        let d = link(RTM_NEWLINK, 3, IFF_UP | IFF_LOWER_UP, "wlan0");
        for cut in 0..d.len() {
            let _ = parse(&d[..cut]);
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_with_plausible_header(kind in 0u16..32, body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&msg(kind, &body));
        }
    }
}
