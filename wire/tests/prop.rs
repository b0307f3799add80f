//! Property tests: Repr round trips, no panic on arbitrary (and mutated) bytes, incremental
//! checksum updates equal to full recomputes, flow keys through ICMP errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wire::rewrite::{self, Side};
use wire::{checksum, icmpv4, icmpv6, ip, ipv4, ipv6, tcp, udp, FlowKey, IpProtocol};

/// A TCP or UDP packet over IPv4 or IPv6 with valid checksums.
#[derive(Debug, Clone)]
struct Spec {
    src: IpAddr,
    dst: IpAddr,
    tcp: bool,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
    /// UDP over IPv4 only: send without checksum (0).
    udp_no_csum: bool,
    mss: Option<u16>,
}

fn build(s: &Spec) -> Vec<u8> {
    let t_len = if s.tcp {
        tcp::HEADER_LEN + if s.mss.is_some() { 4 } else { 0 }
    } else {
        udp::HEADER_LEN
    } + s.payload.len();
    let proto = if s.tcp {
        IpProtocol::Tcp
    } else {
        IpProtocol::Udp
    };
    let (mut buf, off) = match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let r = ipv4::Repr {
                src_addr: a,
                dst_addr: b,
                protocol: proto,
                payload_len: t_len,
                ttl: 64,
                ident: 0x1234,
                dont_frag: true,
                dscp_ecn: 0,
            };
            let mut v = vec![0u8; r.buffer_len()];
            r.emit(&mut ipv4::Packet::new_unchecked(&mut v[..]))
                .unwrap();
            (v, 20)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let r = ipv6::Repr {
                src_addr: a,
                dst_addr: b,
                next_header: proto,
                payload_len: t_len,
                hop_limit: 64,
            };
            let mut v = vec![0u8; r.buffer_len()];
            r.emit(&mut ipv6::Packet::new_unchecked(&mut v[..]))
                .unwrap();
            (v, 40)
        }
        _ => unreachable!("same family"),
    };
    let seg = &mut buf[off..];
    if s.tcp {
        let r = tcp::Repr {
            src_port: s.sport,
            dst_port: s.dport,
            seq_number: 1,
            ack_number: 0,
            flags: tcp::Flags::SYN,
            window_len: 65535,
            mss: s.mss,
            payload_len: s.payload.len(),
        };
        let mut p = tcp::Packet::new_unchecked(&mut *seg);
        r.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(&s.payload);
        p.fill_checksum(s.src, s.dst);
    } else {
        let r = udp::Repr {
            src_port: s.sport,
            dst_port: s.dport,
            payload_len: s.payload.len(),
        };
        let mut p = udp::Packet::new_unchecked(&mut *seg);
        r.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(&s.payload);
        if !(s.udp_no_csum && s.src.is_ipv4()) {
            p.fill_checksum(s.src, s.dst);
        }
    }
    buf
}

fn v4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
}

fn v6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
}

fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr, IpAddr)> {
    prop_oneof![(v4(), v4(), v4()), (v6(), v6(), v6())]
}

fn spec() -> impl Strategy<Value = (Spec, IpAddr)> {
    (
        addr_pair(),
        any::<bool>(),
        1u16..,
        1u16..,
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(
            |((src, dst, new), tcp, sport, dport, payload, udp_no_csum, mss)| {
                (
                    Spec {
                        src,
                        dst,
                        tcp,
                        sport,
                        dport,
                        payload,
                        udp_no_csum,
                        mss,
                    },
                    new,
                )
            },
        )
}

/// The transport checksum recomputed from scratch on a copy (None for UDP/v4 without one).
fn full_transport_checksum(pkt: &[u8]) -> (u16, u16) {
    let mut copy = pkt.to_vec();
    let p = ip::Packet::new_checked(&copy[..]).unwrap();
    let (src, dst) = (p.src_addr(), p.dst_addr());
    let t = p.transport().unwrap();
    let seg = &mut copy[t.offset..t.end];
    match t.protocol {
        IpProtocol::Tcp => {
            let mut s = tcp::Packet::new_checked(seg).unwrap();
            let before = s.checksum();
            s.fill_checksum(src, dst);
            (before, s.checksum())
        }
        IpProtocol::Udp => {
            let mut s = udp::Packet::new_checked(seg).unwrap();
            let before = s.checksum();
            if before == 0 && src.is_ipv4() {
                return (0, 0);
            }
            s.fill_checksum(src, dst);
            (before, s.checksum())
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn ip_checksum_ok(pkt: &[u8]) -> bool {
    match ip::Packet::new_checked(pkt).unwrap() {
        ip::Packet::V4(p) => {
            let mut h = p.header().to_vec();
            let mut q = ipv4::Packet::new_unchecked(&mut h[..]);
            let before = q.checksum();
            q.fill_checksum();
            before == q.checksum()
        }
        ip::Packet::V6(_) => true,
    }
}

/// An ICMP destination-unreachable from `router` to the packet's source, quoting all of it.
fn full_quote_error(pkt: &[u8], router: IpAddr) -> Vec<u8> {
    let p = ip::Packet::new_checked(pkt).unwrap();
    match (router, p.src_addr()) {
        (IpAddr::V4(r), IpAddr::V4(to)) => {
            let repr = ipv4::Repr {
                src_addr: r,
                dst_addr: to,
                protocol: IpProtocol::Icmp,
                payload_len: 8 + pkt.len(),
                ttl: 64,
                ident: 0,
                dont_frag: false,
                dscp_ecn: 0,
            };
            let mut v = vec![0u8; repr.buffer_len()];
            let mut ip = ipv4::Packet::new_unchecked(&mut v[..]);
            repr.emit(&mut ip).unwrap();
            let mut icmp = icmpv4::Packet::new_unchecked(ip.payload_mut());
            icmp.set_msg_type(icmpv4::TYPE_DST_UNREACHABLE);
            icmp.set_code(3);
            icmp.data_mut().copy_from_slice(pkt);
            icmp.fill_checksum();
            v
        }
        (IpAddr::V6(r), IpAddr::V6(to)) => {
            let repr = ipv6::Repr {
                src_addr: r,
                dst_addr: to,
                next_header: IpProtocol::Icmpv6,
                payload_len: 8 + pkt.len(),
                hop_limit: 64,
            };
            let mut v = vec![0u8; repr.buffer_len()];
            let mut ip = ipv6::Packet::new_unchecked(&mut v[..]);
            repr.emit(&mut ip).unwrap();
            let mut icmp = icmpv6::Packet::new_unchecked(ip.payload_mut());
            icmp.set_msg_type(icmpv6::TYPE_DST_UNREACHABLE);
            icmp.set_code(4);
            icmp.data_mut().copy_from_slice(pkt);
            icmp.fill_checksum(r, to);
            v
        }
        _ => unreachable!("same family"),
    }
}

/// Outer IPv4 header checksum and ICMP checksum of an error verify.
fn icmp_error_checksums_ok(err: &[u8]) -> bool {
    match ip::Packet::new_checked(err).unwrap() {
        ip::Packet::V4(p) => {
            p.verify_checksum()
                && icmpv4::Packet::new_checked(p.payload())
                    .unwrap()
                    .verify_checksum()
        }
        ip::Packet::V6(p) => icmpv6::Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum(p.src_addr(), p.dst_addr()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ipv4_repr_round_trip(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), proto in any::<u8>(),
        payload_len in 0usize..1500, ttl in any::<u8>(), ident in any::<u16>(),
        dont_frag in any::<bool>(), dscp_ecn in any::<u8>(),
    ) {
        let r = ipv4::Repr {
            src_addr: src.into(), dst_addr: dst.into(), protocol: IpProtocol::from(proto),
            payload_len, ttl, ident, dont_frag, dscp_ecn,
        };
        let mut v = vec![0u8; r.buffer_len()];
        r.emit(&mut ipv4::Packet::new_unchecked(&mut v[..])).unwrap();
        let p = ipv4::Packet::new_checked(&v[..]).unwrap();
        prop_assert_eq!(ipv4::Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn ipv6_repr_round_trip(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(),
        payload_len in 0usize..1500, hop_limit in any::<u8>(),
    ) {
        let r = ipv6::Repr {
            src_addr: src.into(), dst_addr: dst.into(), next_header: IpProtocol::from(nh),
            payload_len, hop_limit,
        };
        let mut v = vec![0u8; r.buffer_len()];
        r.emit(&mut ipv6::Packet::new_unchecked(&mut v[..])).unwrap();
        prop_assert_eq!(ipv6::Repr::parse(&ipv6::Packet::new_checked(&v[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn transport_repr_round_trip((s, _new) in spec()) {
        let pkt = build(&s);
        let p = ip::Packet::new_checked(&pkt[..]).unwrap();
        let t = p.transport().unwrap();
        let seg = &pkt[t.offset..t.end];
        if s.tcp {
            let r = tcp::Repr::parse(&tcp::Packet::new_checked(seg).unwrap(), s.src, s.dst).unwrap();
            prop_assert_eq!((r.src_port, r.dst_port, r.mss, r.payload_len),
                            (s.sport, s.dport, s.mss, s.payload.len()));
            prop_assert_eq!(r.flags, tcp::Flags::SYN);
            // Re-emit and compare bytes.
            let mut again = vec![0u8; r.buffer_len()];
            let mut q = tcp::Packet::new_unchecked(&mut again[..]);
            r.emit(&mut q).unwrap();
            q.payload_mut().copy_from_slice(&s.payload);
            q.fill_checksum(s.src, s.dst);
            prop_assert_eq!(&again[..], seg);
        } else {
            let r = udp::Repr::parse(&udp::Packet::new_checked(seg).unwrap(), s.src, s.dst).unwrap();
            prop_assert_eq!(r, udp::Repr { src_port: s.sport, dst_port: s.dport, payload_len: s.payload.len() });
        }
        let k = FlowKey::from_ip_packet(&pkt).unwrap();
        prop_assert_eq!((k.src, k.dst, k.src_port, k.dst_port), (s.src, s.dst, s.sport, s.dport));
    }

    #[test]
    fn no_panic_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        wire::fuzz::parse_all(&data);
        let _ = FlowKey::from_ip_packet(&data);
        let _ = wire::tunnel::Payload::classify(&data);
    }

    #[test]
    fn no_panic_on_arbitrary_ip_headers(
        first in prop_oneof![0x40u8..0x50, 0x60u8..0x70],
        rest in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut data = vec![first];
        data.extend_from_slice(&rest);
        wire::fuzz::parse_all(&data);
    }

    #[test]
    fn no_panic_on_mutated_packets(
        (s, _new) in spec(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut pkt = build(&s);
        for (i, b) in flips {
            let i = i.index(pkt.len());
            pkt[i] = b;
        }
        wire::fuzz::parse_all(&pkt);
        let n = cut.index(pkt.len() + 1);
        wire::fuzz::parse_all(&pkt[..n]);
    }

    #[test]
    fn incremental_equals_full_on_rewrite(
        (s, new) in spec(), new_port in any::<u16>(), dst_side in any::<bool>(),
    ) {
        let mut pkt = build(&s);
        let side = if dst_side { Side::Dst } else { Side::Src };
        let (old_addr, old_port) = rewrite::rewrite(&mut pkt, side, new, new_port).unwrap();
        prop_assert_eq!(old_addr, if dst_side { s.dst } else { s.src });
        prop_assert_eq!(old_port, if dst_side { s.dport } else { s.sport });
        prop_assert!(ip_checksum_ok(&pkt));
        let (incremental, full) = full_transport_checksum(&pkt);
        prop_assert_eq!(incremental, full);
        if !s.tcp && s.udp_no_csum && s.src.is_ipv4() {
            prop_assert_eq!(incremental, 0);
        }
        let k = FlowKey::from_ip_packet(&pkt).unwrap();
        if dst_side {
            prop_assert_eq!((k.dst, k.dst_port, k.src, k.src_port), (new, new_port, s.src, s.sport));
        } else {
            prop_assert_eq!((k.src, k.src_port, k.dst, k.dst_port), (new, new_port, s.dst, s.dport));
        }
    }

    #[test]
    fn update_u16_equals_full(
        mut data in proptest::collection::vec(any::<u8>(), 2..300),
        i in any::<prop::sample::Index>(), new in any::<u16>(),
    ) {
        if data.len() % 2 == 1 { data.pop(); }
        let w = i.index(data.len() / 2) * 2;
        let before = checksum::checksum(&data);
        let old = u16::from_be_bytes([data[w], data[w + 1]]);
        data[w..w + 2].copy_from_slice(&new.to_be_bytes());
        let inc = checksum::update_u16(before, old, new);
        let full = checksum::checksum(&data);
        // 0x0000 and 0xffff are the two zeros of one's complement; they only differ when
        // every covered word is zero, which no IP packet is.
        prop_assert!(inc == full || (inc | full == 0xffff && inc & full == 0), "{inc:04x} {full:04x}");
    }

    #[test]
    fn fast_sum_equals_reference(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            acc += u32::from(c[0]) << 8 | c.get(1).map_or(0, |&b| u32::from(b));
        }
        while acc > 0xffff { acc = (acc & 0xffff) + (acc >> 16); }
        prop_assert_eq!(checksum::sum(&data), acc as u16);
    }

    #[test]
    fn mss_clamp_keeps_checksum((s, _new) in spec(), max in any::<u16>()) {
        prop_assume!(s.tcp);
        let mut pkt = build(&s);
        let p = ip::Packet::new_checked(&pkt[..]).unwrap();
        let t = p.transport().unwrap();
        let seg = &mut pkt[t.offset..t.end];
        let mut q = tcp::Packet::new_checked(seg).unwrap();
        let clamped = q.clamp_mss(max);
        prop_assert_eq!(clamped.is_some(), s.mss.is_some_and(|m| m > max));
        if clamped.is_some() { prop_assert_eq!(q.mss(), Some(max)); }
        prop_assert!(q.verify_checksum(s.src, s.dst));
    }

    #[test]
    fn flow_key_through_icmp_error((s, router) in spec()) {
        let pkt = build(&s);
        let key = FlowKey::from_ip_packet(&pkt).unwrap();
        let mut out = vec![0u8; 1500];
        let n = match router {
            IpAddr::V4(r) => icmpv4::emit_frag_needed(&mut out, r, &pkt, 1280).unwrap(),
            IpAddr::V6(r) => icmpv6::emit_packet_too_big(&mut out, r, &pkt, 1280).unwrap(),
        };
        let err = &out[..n];
        prop_assert_eq!(FlowKey::from_icmp_error(err).unwrap(), key);
        let outer = FlowKey::from_ip_packet(err).unwrap();
        prop_assert_eq!((outer.src, outer.dst), (router, s.src));
        wire::fuzz::parse_all(err);
    }
    #[test]
    fn icmp_error_translation_equals_rewrite_of_quote(
        (s, new) in spec(), new_port in any::<u16>(), router_seed in any::<u8>(),
    ) {
        // The error comes from a router of the same family.
        let router = match s.src {
            IpAddr::V4(_) => IpAddr::from([198, 18, 0, router_seed]),
            IpAddr::V6(_) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(router_seed)]),
        };
        let pkt = build(&s);
        let mut err = full_quote_error(&pkt, router);
        let old = rewrite::rewrite_icmp_error(&mut err, Side::Dst, new, new_port).unwrap();
        prop_assert_eq!(old, (s.src, s.sport));
        prop_assert!(icmp_error_checksums_ok(&err));
        // The translated quote is byte for byte the original packet with its source rewritten.
        let mut expected = pkt.clone();
        rewrite::rewrite_src(&mut expected, new, new_port).unwrap();
        let p = ip::Packet::new_checked(&err[..]).unwrap();
        prop_assert_eq!(p.dst_addr(), new);
        let t = p.transport().unwrap();
        prop_assert_eq!(&err[t.offset + 8..t.end], &expected[..]);

        // A truncated quote (RFC 792 minimum / IPv6 minimum MTU) still translates cleanly.
        let mut out = vec![0u8; 1500];
        let n = match router {
            IpAddr::V4(r) => icmpv4::emit_frag_needed(&mut out, r, &pkt, 1280).unwrap(),
            IpAddr::V6(r) => icmpv6::emit_packet_too_big(&mut out, r, &pkt, 1280).unwrap(),
        };
        let err = &mut out[..n];
        rewrite::rewrite_icmp_error(err, Side::Dst, new, new_port).unwrap();
        prop_assert!(icmp_error_checksums_ok(err));
        let k = FlowKey::from_icmp_error(err).unwrap();
        prop_assert_eq!((k.src, k.src_port, k.dst, k.dst_port), (new, new_port, s.dst, s.dport));
    }
}
