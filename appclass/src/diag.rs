//! Sans-IO `NETLINK_SOCK_DIAG` messages: the exact-lookup request (`inet_diag_req_v2`) for
//! one flow, and the parser of the kernel's answer (`inet_diag_msg` + attributes, or an
//! `NLMSG_ERROR`).
//!
//! Layouts (Linux `include/uapi/linux/inet_diag.h`, `sock_diag.h`, `netlink.h`); netlink
//! headers and the `idiag_*` counters are in host byte order, ports and addresses in network
//! byte order:
//!
//! ```text
//! nlmsghdr (16)        len u32 | type u16 (20 = SOCK_DIAG_BY_FAMILY) | flags u16 | seq u32 | pid u32
//! inet_diag_req_v2 (56) family u8 | protocol u8 | ext u8 | pad u8 | states u32 | sockid (48)
//! inet_diag_sockid (48) sport be16 | dport be16 | src [u8;16] | dst [u8;16] | if u32 | cookie [u32;2]
//! inet_diag_msg (72)   family u8 | state u8 | timer u8 | retrans u8 | sockid (48)
//!                      | expires u32 | rqueue u32 | wqueue u32 | uid u32 | inode u32
//! rtattr               len u16 | type u16 | payload, padded to 4 (type 21 = INET_DIAG_CGROUP_ID, u64)
//! ```
//!
//! Which end goes in `id.src` differs by protocol (measured, see KERNEL-NOTES): TCP is looked
//! up in its natural order (`src` = the local end), UDP reversed (`src` = the remote end, as
//! the kernel's receive-path lookup `__udp4_lib_lookup(saddr = remote, daddr = local)` sees a
//! datagram). The reversed UDP query also finds unconnected and wildcard-bound sockets.
//!
//! Everything here takes and returns bytes: no socket, no clock. Parsing never panics on any
//! input (property-tested).

use std::net::{IpAddr, SocketAddr};

use crate::{Flow, Proto};

/// `SOCK_DIAG_BY_FAMILY` netlink message type.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_CGROUP_ID` attribute type (Linux 5.9+): the socket's cgroup v2 id, u64.
pub const INET_DIAG_CGROUP_ID: u16 = 21;
/// Length of a request built by [`build_request`].
pub const REQUEST_LEN: usize = NLMSG_HDR_LEN + REQ_V2_LEN;

const NLMSG_HDR_LEN: usize = 16;
const REQ_V2_LEN: usize = 56;
const SOCKID_LEN: usize = 48;
const DIAG_MSG_LEN: usize = 72;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const ENOENT: i32 = 2;
/// `INET_DIAG_NOCOOKIE`: both cookie words set means "do not check the cookie".
const NOCOOKIE: u32 = !0;

/// What the kernel says about the socket that owns a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockInfo {
    /// Address family of the socket entry (`AF_INET` = 2, `AF_INET6` = 10).
    pub family: u8,
    /// TCP state (`TCP_ESTABLISHED` = 1, `TCP_SYN_SENT` = 2, ...; UDP: 7 unconnected, 1
    /// connected).
    pub state: u8,
    /// The socket's owner (`sk_uid`).
    pub uid: u32,
    /// Inode of the socket (`socket:[inode]` in `/proc/PID/fd`); 0 for sockets without a
    /// file (e.g. TCP time-wait or request sockets).
    pub inode: u32,
    /// cgroup v2 id the socket was created in, when the kernel reported it.
    pub cgroup_id: Option<u64>,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiagError {
    /// The flow mixes IPv4 and IPv6 addresses.
    #[error("flow mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    /// The kernel answered with an error (errno, positive).
    #[error("kernel answered errno {0}")]
    Kernel(i32),
    /// The answer is truncated or inconsistent.
    #[error("malformed sock_diag answer: {0}")]
    Malformed(&'static str),
}

/// Builds the exact-lookup request for `flow` with sequence number `seq`.
///
/// `flow` is as the packet leaves the host (`src` = local end). The request asks for every
/// state and no extension (the kernel adds `INET_DIAG_CGROUP_ID` on its own).
pub fn build_request(seq: u32, flow: &Flow) -> Result<[u8; REQUEST_LEN], DiagError> {
    let (family, local, remote) = match (flow.src.ip(), flow.dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (AF_INET, flow.src, flow.dst),
        (IpAddr::V6(_), IpAddr::V6(_)) => (AF_INET6, flow.src, flow.dst),
        _ => return Err(DiagError::MixedFamilies),
    };
    let (protocol, id_src, id_dst) = match flow.proto {
        Proto::Tcp => (IPPROTO_TCP, local, remote),
        Proto::Udp => (IPPROTO_UDP, remote, local),
    };
    let mut b = [0u8; REQUEST_LEN];
    put(&mut b, 0, &(REQUEST_LEN as u32).to_ne_bytes());
    put(&mut b, 4, &SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    put(&mut b, 6, &NLM_F_REQUEST.to_ne_bytes());
    put(&mut b, 8, &seq.to_ne_bytes());
    // pid 0: the kernel.
    let r = NLMSG_HDR_LEN;
    put(&mut b, r, &[family, protocol, 0, 0]);
    put(&mut b, r + 4, &u32::MAX.to_ne_bytes()); // all states
    let id = r + 8;
    put(&mut b, id, &id_src.port().to_be_bytes());
    put(&mut b, id + 2, &id_dst.port().to_be_bytes());
    put(&mut b, id + 4, &addr_bytes(&id_src));
    put(&mut b, id + 20, &addr_bytes(&id_dst));
    // if = 0: any interface.
    put(&mut b, id + 40, &NOCOOKIE.to_ne_bytes());
    put(&mut b, id + 44, &NOCOOKIE.to_ne_bytes());
    Ok(b)
}

/// Parses the kernel's answer to the request numbered `seq`.
///
/// `Ok(Some(_))`: the socket; `Ok(None)`: no such socket (`ENOENT`), or no message for `seq`
/// in `buf` (a stale answer to an older request: read again). Messages for other sequence
/// numbers are skipped.
pub fn parse_response(buf: &[u8], seq: u32) -> Result<Option<SockInfo>, DiagError> {
    Ok(match parse_answer(buf, seq)? {
        Answer::Socket(s) => Some(s),
        Answer::NotFound | Answer::Nothing => None,
    })
}

/// What one datagram from the kernel said about request `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The socket.
    Socket(SockInfo),
    /// No such socket.
    NotFound,
    /// Nothing about this request (stale answer, or only an ACK / DONE).
    Nothing,
}

/// Like [`parse_response`], but tells "no socket" from "no answer for `seq` here".
pub fn parse_answer(buf: &[u8], seq: u32) -> Result<Answer, DiagError> {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR_LEN {
        let len = u32_at(rest, 0).ok_or(DiagError::Malformed("header"))? as usize;
        let ty = u16_at(rest, 4).ok_or(DiagError::Malformed("header"))?;
        let mseq = u32_at(rest, 8).ok_or(DiagError::Malformed("header"))?;
        if len < NLMSG_HDR_LEN || len > rest.len() {
            return Err(DiagError::Malformed("message length"));
        }
        let body = rest
            .get(NLMSG_HDR_LEN..len)
            .ok_or(DiagError::Malformed("message length"))?;
        if mseq == seq {
            match ty {
                NLMSG_ERROR => {
                    let err = i32_at(body, 0).ok_or(DiagError::Malformed("error body"))?;
                    match err {
                        0 => {} // ACK
                        e if e == -ENOENT => return Ok(Answer::NotFound),
                        e => return Err(DiagError::Kernel(e.checked_neg().unwrap_or(i32::MAX))),
                    }
                }
                NLMSG_DONE => return Ok(Answer::Nothing),
                SOCK_DIAG_BY_FAMILY => return parse_diag_msg(body).map(Answer::Socket),
                _ => {}
            }
        }
        let next = align4(len).min(rest.len());
        rest = rest.get(next..).unwrap_or(&[]);
    }
    Ok(Answer::Nothing)
}

/// Parses an `inet_diag_msg` and its attributes.
fn parse_diag_msg(body: &[u8]) -> Result<SockInfo, DiagError> {
    if body.len() < DIAG_MSG_LEN {
        return Err(DiagError::Malformed("inet_diag_msg too short"));
    }
    let family = *body.first().ok_or(DiagError::Malformed("family"))?;
    let state = *body.get(1).ok_or(DiagError::Malformed("state"))?;
    let tail = 4 + SOCKID_LEN;
    let uid = u32_at(body, tail + 12).ok_or(DiagError::Malformed("uid"))?;
    let inode = u32_at(body, tail + 16).ok_or(DiagError::Malformed("inode"))?;
    let mut cgroup_id = None;
    let mut attrs = body.get(DIAG_MSG_LEN..).unwrap_or(&[]);
    while attrs.len() >= 4 {
        let alen = u16_at(attrs, 0).ok_or(DiagError::Malformed("attribute"))? as usize;
        let aty = u16_at(attrs, 2).ok_or(DiagError::Malformed("attribute"))? & 0x3fff;
        if alen < 4 || alen > attrs.len() {
            return Err(DiagError::Malformed("attribute length"));
        }
        if aty == INET_DIAG_CGROUP_ID {
            let v = attrs
                .get(4..alen)
                .and_then(|p| <[u8; 8]>::try_from(p).ok())
                .ok_or(DiagError::Malformed("cgroup id length"))?;
            cgroup_id = Some(u64::from_ne_bytes(v));
        }
        let next = align4(alen).min(attrs.len());
        attrs = attrs.get(next..).unwrap_or(&[]);
    }
    Ok(SockInfo {
        family,
        state,
        uid,
        inode,
        cgroup_id,
    })
}

fn addr_bytes(a: &SocketAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a.ip() {
        IpAddr::V4(v4) => put(&mut out, 0, &v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

// The fixtures are little-endian netlink (x86, arm64).
#[cfg(test)]
#[cfg(target_endian = "little")]
mod tests {
    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    fn flow(proto: Proto, src: &str, dst: &str) -> Flow {
        Flow {
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    #[test]
    fn tcp_request_natural_order() {
        let f = flow(Proto::Tcp, "100.64.0.2:40000", "198.18.3.1:80");
        let b = build_request(7, &f).unwrap();
        let want = hex!(
            "48000000 1400 0100 07000000 00000000" // nlmsghdr: len 72, type 20, REQUEST, seq 7
            "02 06 00 00 ffffffff"                  // AF_INET, TCP, no ext, all states
            "9c40 0050"                             // sport 40000, dport 80
            "64400002 000000000000000000000000"     // src 100.64.0.2
            "c6120301 000000000000000000000000"     // dst 198.18.3.1
            "00000000 ffffffff ffffffff"            // if 0, no cookie
        );
        assert_eq!(b, want);
    }

    #[test]
    fn udp_request_reversed() {
        let f = flow(Proto::Udp, "100.64.0.2:5000", "198.18.3.1:53");
        let b = build_request(1, &f).unwrap();
        // id.src = remote 198.18.3.1:53, id.dst = local 100.64.0.2:5000.
        assert_eq!(&b[16..18], &[2, 17]);
        assert_eq!(&b[24..28], &hex!("0035 1388"));
        assert_eq!(&b[28..32], &hex!("c6120301"));
        assert_eq!(&b[44..48], &hex!("64400002"));
    }

    #[test]
    fn ipv6_request_and_mixed_refused() {
        let f = flow(Proto::Tcp, "[2001:db8::1]:1000", "[2001:db8::2]:443");
        let b = build_request(1, &f).unwrap();
        assert_eq!(b[16], 10);
        assert_eq!(&b[28..44], &hex!("20010db8000000000000000000000001"));
        let m = flow(Proto::Tcp, "10.0.0.1:1", "[2001:db8::2]:443");
        assert_eq!(build_request(1, &m), Err(DiagError::MixedFamilies));
    }

    /// A TCP answer as Linux 6.x sends it: inet_diag_msg, INET_DIAG_SHUTDOWN (8),
    /// INET_DIAG_SOCKOPT (22) and INET_DIAG_CGROUP_ID (21).
    const TCP_ANSWER: [u8; 116] = hex!(
        "74000000 1400 0200 07000000 00000000"      // len 116, SOCK_DIAG_BY_FAMILY, MULTI, seq 7
        "02 02 01 00"                                // AF_INET, SYN_SENT, timer, retrans
        "9c40 0050 64400002 000000000000000000000000 c6120301 000000000000000000000000"
        "00000000 11223344 55667788"                 // if, cookie
        "e8030000 00000000 00000000"                 // expires, rqueue, wqueue
        "e8030000 39300000"                          // uid 1000, inode 12345
        "0500 0800 00000000"                         // SHUTDOWN (len 5, padded)
        "0600 1600 0000 0000"                        // SOCKOPT (len 6, padded)
        "0c00 1500 2a00000000000100"                 // CGROUP_ID 0x0001_0000_0000_002a
    );

    #[test]
    fn parses_tcp_answer() {
        let s = parse_response(&TCP_ANSWER, 7).unwrap().unwrap();
        assert_eq!(
            s,
            SockInfo {
                family: 2,
                state: 2,
                uid: 1000,
                inode: 12345,
                cgroup_id: Some(0x0001_0000_0000_002a),
            }
        );
        // Another request's answer is skipped.
        assert_eq!(parse_answer(&TCP_ANSWER, 8).unwrap(), Answer::Nothing);
    }

    #[test]
    fn parses_enoent_and_errors() {
        let enoent = hex!(
            "24000000 0200 0000 07000000 00000000 feffffff 48000000 1400 0100 07000000 00000000"
        );
        assert_eq!(parse_answer(&enoent, 7).unwrap(), Answer::NotFound);
        assert_eq!(parse_response(&enoent, 7).unwrap(), None);
        let eperm = hex!(
            "24000000 0200 0000 07000000 00000000 ffffffff 48000000 1400 0100 07000000 00000000"
        );
        assert_eq!(parse_response(&eperm, 7), Err(DiagError::Kernel(1)));
    }

    #[test]
    fn answer_without_cgroup_attribute() {
        let mut a = TCP_ANSWER[..88].to_vec();
        a[0] = 88;
        let s = parse_response(&a, 7).unwrap().unwrap();
        assert_eq!(s.cgroup_id, None);
        assert_eq!(s.inode, 12345);
    }

    #[test]
    fn malformed_answers_are_errors() {
        // Truncated inet_diag_msg.
        let mut short = TCP_ANSWER[..40].to_vec();
        short[0] = 40;
        assert!(matches!(
            parse_response(&short, 7),
            Err(DiagError::Malformed(_))
        ));
        // Length field beyond the buffer.
        assert!(parse_response(&TCP_ANSWER[..100], 7).is_err());
        // Attribute with a bad length.
        let mut bad = TCP_ANSWER;
        bad[88] = 0xff;
        assert!(parse_response(&bad, 7).is_err());
        // Cgroup attribute of the wrong size.
        let mut bad = TCP_ANSWER;
        bad[104] = 0x0b;
        assert!(parse_response(&bad, 7).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300), seq in 0u32..3) {
            let _ = parse_answer(&buf, seq);
        }

        #[test]
        fn parser_never_panics_on_mutated_answer(idx in 0usize..116, val in any::<u8>(), cut in 0usize..=116) {
            let mut a = TCP_ANSWER;
            a[idx] = val;
            let _ = parse_answer(&a[..cut], 7);
        }

        #[test]
        fn request_round_trips_ports(sp in any::<u16>(), dp in any::<u16>(), a in any::<[u8; 4]>(), b in any::<[u8; 4]>()) {
            let f = Flow {
                proto: Proto::Tcp,
                src: SocketAddr::from((a, sp)),
                dst: SocketAddr::from((b, dp)),
            };
            let r = build_request(1, &f).unwrap();
            prop_assert_eq!(u16::from_be_bytes([r[24], r[25]]), sp);
            prop_assert_eq!(u16::from_be_bytes([r[26], r[27]]), dp);
            prop_assert_eq!(&r[28..32], &a[..]);
            prop_assert_eq!(&r[44..48], &b[..]);
        }
    }
}
