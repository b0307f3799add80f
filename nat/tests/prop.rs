//! Property tests: the table against a `HashMap` model over random operation sequences,
//! checksums after rewrite against a full recompute (with `wire::checksum`), and no panic
//! on arbitrary or mutated bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;
use nat::{DropReason, Filtering, Nat, NatConfig, Proto, Verdict};
use proptest::prelude::*;
use wire::checksum::{combine, pseudo_header_v4, sum};
use wire::IpProtocol;

/// Full recompute with `wire::checksum`: IPv4 header, then TCP/UDP (pseudo-header) or ICMP.
fn verify_wire(p: &[u8]) -> Result<(), TestCaseError> {
    let h = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    prop_assert_eq!(sum(&p[..h]), 0xffff, "ipv4 header checksum");
    let seg = &p[h..total];
    let ps = |proto| pseudo_header_v4(src(p), dst(p), proto, seg.len() as u16);
    match p[9] {
        UDP if u16::from_be_bytes([seg[6], seg[7]]) != 0 => {
            prop_assert_eq!(combine(&[ps(IpProtocol::Udp), sum(seg)]), 0xffff, "udp")
        }
        TCP => prop_assert_eq!(combine(&[ps(IpProtocol::Tcp), sum(seg)]), 0xffff, "tcp"),
        ICMP => prop_assert_eq!(sum(seg), 0xffff, "icmp"),
        _ => {}
    }
    Ok(())
}

fn vipa(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 0, 10 + i)
}

const PORTS: [u16; 6] = [2000, 2001, 2002, 40000, 40001, 53];
const REMOTES: [Ipv4Addr; 3] = [CH, CH2, Ipv4Addr::new(198, 18, 3, 3)];
const HOST_CAP: usize = 4;
const GLOBAL_CAP: usize = 10;

#[derive(Debug, Clone)]
enum Op {
    Out {
        host: u8,
        port: usize,
        proto: u8,
        remote: usize,
    },
    In {
        target: usize,
        remote: usize,
    },
    InRandom {
        proto: u8,
        port: u16,
    },
    Advance {
        secs: u16,
    },
    Expire,
    RemoveHost {
        host: u8,
    },
    List {
        host: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0usize..6, 0u8..3, 0usize..3)
            .prop_map(|(host, port, proto, remote)| Op::Out { host, port, proto, remote }),
        4 => (any::<usize>(), 0usize..3).prop_map(|(target, remote)| Op::In { target, remote }),
        1 => (0u8..3, any::<u16>()).prop_map(|(proto, port)| Op::InRandom { proto, port }),
        3 => (0u16..200).prop_map(|secs| Op::Advance { secs }),
        2 => Just(Op::Expire),
        1 => (0u8..4).prop_map(|host| Op::RemoveHost { host }),
        1 => (0u8..4).prop_map(|host| Op::List { host }),
    ]
}

fn proto_of(i: u8) -> Proto {
    [Proto::Udp, Proto::Tcp, Proto::Icmp][usize::from(i % 3)]
}

fn timeout_ms(p: Proto) -> u64 {
    match p {
        Proto::Udp => 300_000,
        Proto::Tcp => 240_000, // always SynOut in this model: transitory
        Proto::Icmp => 60_000,
    }
}

#[derive(Debug, Clone, Copy)]
struct M {
    pport: u16,
    last: u64,
}

fn out_packet(p: Proto, host: Ipv4Addr, port: u16, remote: Ipv4Addr) -> Vec<u8> {
    match p {
        Proto::Udp => udp(host, port, remote, 53),
        Proto::Tcp => tcp(host, port, remote, 80, SYN),
        Proto::Icmp => echo(host, remote, 8, port, 1),
    }
}

fn in_packet(p: Proto, remote: Ipv4Addr, pport: u16) -> Vec<u8> {
    match p {
        Proto::Udp => udp(remote, 53, PUBLIC, pport),
        Proto::Tcp => tcp(remote, 80, PUBLIC, pport, ACK),
        Proto::Icmp => echo(remote, PUBLIC, 0, pport, 1),
    }
}

fn out_port(p: Proto, pkt: &[u8]) -> u16 {
    if p == Proto::Icmp {
        icmp_id(pkt)
    } else {
        sport(pkt)
    }
}

fn in_port(p: Proto, pkt: &[u8]) -> u16 {
    if p == Proto::Icmp {
        icmp_id(pkt)
    } else {
        dport(pkt)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The NAT against a `HashMap<(proto, vipa, port), (public port, last refresh)>` model.
    #[test]
    fn table_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut c = NatConfig::new(vec![PUBLIC]);
        c.filtering = Filtering::EndpointIndependent;
        c.max_mappings_per_host = HOST_CAP;
        c.max_mappings = GLOBAL_CAP;
        let nat = Nat::new(c).unwrap();
        let t0 = Instant::now();
        nat.expire(t0); // fixes the NAT's epoch at t0
        let mut now: u64 = 0;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut model: HashMap<(Proto, Ipv4Addr, u16), M> = HashMap::new();
        let mut seen: Vec<(Proto, u16)> = Vec::new();

        for op in ops {
            match op {
                Op::Out { host, port, proto, remote } => {
                    let (p, h, vport) = (proto_of(proto), vipa(host), PORTS[port]);
                    let mut pkt = out_packet(p, h, vport, REMOTES[remote]);
                    let v = nat.translate_outbound(at(now), h, &mut pkt);
                    if let Some(m) = model.get_mut(&(p, h, vport)) {
                        prop_assert_eq!(v, Verdict::ToInternet);
                        prop_assert_eq!(out_port(p, &pkt), m.pport, "mapping reused");
                        if now > m.last + 1000 {
                            m.last = now;
                        }
                    } else if model.keys().filter(|k| k.1 == h).count() >= HOST_CAP {
                        prop_assert_eq!(v, Verdict::Drop(DropReason::HostCapReached));
                    } else if model.len() >= GLOBAL_CAP {
                        prop_assert_eq!(v, Verdict::Drop(DropReason::GlobalCapReached));
                    } else {
                        prop_assert_eq!(v, Verdict::ToInternet);
                        let pport = out_port(p, &pkt);
                        let taken = |q: u16| model.iter().any(|(k, m)| k.0 == p && m.pport == q);
                        prop_assert!(!taken(pport), "no port overloading");
                        if vport >= 1024 && !taken(vport) {
                            prop_assert_eq!(pport, vport, "port preservation");
                        } else {
                            prop_assert_eq!(pport % 2, vport % 2, "parity");
                        }
                        model.insert((p, h, vport), M { pport, last: now });
                        seen.push((p, pport));
                    }
                    if v == Verdict::ToInternet {
                        prop_assert_eq!(src(&pkt), PUBLIC);
                        verify_wire(&pkt)?;
                    }
                }
                Op::In { target, remote } => {
                    if seen.is_empty() {
                        continue;
                    }
                    let (p, pport) = seen[target % seen.len()];
                    let mut pkt = in_packet(p, REMOTES[remote], pport);
                    let v = nat.translate_inbound(at(now), &mut pkt);
                    let hit = model.iter_mut().find(|(k, m)| k.0 == p && m.pport == pport);
                    match hit {
                        // usable inbound until the sweep removes it
                        Some((k, m)) => {
                            prop_assert_eq!(v, Verdict::Forward { to_vipa: k.1 });
                            prop_assert_eq!(dst(&pkt), k.1);
                            prop_assert_eq!(in_port(p, &pkt), k.2);
                            verify_wire(&pkt)?;
                            if p == Proto::Tcp && now > m.last + 1000 {
                                m.last = now; // TCP is refreshed both ways
                            }
                        }
                        _ => prop_assert_eq!(v, Verdict::Drop(DropReason::NoMapping)),
                    }
                }
                Op::InRandom { proto, port } => {
                    let p = proto_of(proto);
                    let mut pkt = in_packet(p, CH, port);
                    let v = nat.translate_inbound(at(now), &mut pkt);
                    let live = model.iter().any(|(k, m)| k.0 == p && m.pport == port);
                    prop_assert_eq!(matches!(v, Verdict::Forward { .. }), live);
                }
                Op::Advance { secs } => now += u64::from(secs) * 1000,
                Op::Expire => {
                    let before = model.len();
                    model.retain(|k, m| m.last + timeout_ms(k.0) > now);
                    prop_assert_eq!(nat.expire(at(now)), before - model.len());
                }
                Op::RemoveHost { host } => {
                    let before = model.len();
                    model.retain(|k, _| k.1 != vipa(host));
                    prop_assert_eq!(nat.remove_host(vipa(host)), before - model.len());
                }
                Op::List { host } => {
                    let mut got: Vec<_> = nat.mappings_for(vipa(host)).iter()
                        .map(|i| (i.proto, i.vport, i.pport)).collect();
                    let mut want: Vec<_> = model.iter().filter(|(k, _)| k.1 == vipa(host))
                        .map(|(k, m)| (k.0, k.2, m.pport)).collect();
                    got.sort();
                    want.sort();
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(nat.len(), model.len());
        }
    }

    /// After every rewrite (outbound, inbound reply, inbound ICMP error) the checksums equal
    /// a full recompute, and the ICMP error's quote is exactly what the host sent.
    #[test]
    fn checksums_after_rewrite_equal_full_recompute(
        proto in 0u8..4,
        host in 1u8..250,
        sport_ in any::<u16>(),
        dport_ in any::<u16>(),
        remote in any::<[u8; 4]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..80),
        flags in any::<u8>(),
        quote_extra in 0usize..100,
        filtering in 0u8..3,
    ) {
        let remote = Ipv4Addr::from(remote);
        prop_assume!(remote != PUBLIC);
        let h = Ipv4Addr::new(100, 64, 1, host);
        let mut c = NatConfig::new(vec![PUBLIC]);
        c.filtering = [Filtering::EndpointIndependent, Filtering::AddressDependent,
            Filtering::AddressAndPortDependent][usize::from(filtering)];
        let nat = Nat::new(c).unwrap();
        let t0 = Instant::now();
        let flags = flags & !RST & !0x02; // keep the mapping usable (no RST); SYN added below
        let original = match proto {
            0 => ipv4(h, remote, UDP, &udp_seg(h, remote, sport_, dport_, &payload, true)),
            1 => ipv4(h, remote, UDP, &udp_seg(h, remote, sport_, dport_, &payload, false)),
            2 => ipv4(h, remote, TCP, &tcp_seg(h, remote, sport_, dport_, flags | SYN, &payload)),
            _ => {
                let mut rest = [0u8; 4];
                rest[..2].copy_from_slice(&sport_.to_be_bytes());
                ipv4(h, remote, ICMP, &icmp_msg(8, 0, rest, &payload))
            }
        };
        let mut out = original.clone();
        prop_assert_eq!(nat.translate_outbound(t0, h, &mut out), Verdict::ToInternet);
        verify_wire(&out)?;
        let m = nat.mappings_for(h)[0];
        // reply
        let mut reply = match proto {
            0 | 1 => ipv4(remote, PUBLIC, UDP, &udp_seg(remote, PUBLIC, dport_, m.pport, &payload, proto == 0)),
            2 => ipv4(remote, PUBLIC, TCP, &tcp_seg(remote, PUBLIC, dport_, m.pport, ACK | SYN, &payload)),
            _ => {
                let mut rest = [0u8; 4];
                rest[..2].copy_from_slice(&m.pport.to_be_bytes());
                ipv4(remote, PUBLIC, ICMP, &icmp_msg(0, 0, rest, &payload))
            }
        };
        prop_assert_eq!(nat.translate_inbound(t0, &mut reply), Verdict::Forward { to_vipa: h });
        verify_wire(&reply)?;
        prop_assert_eq!(dst(&reply), h);
        if proto == 1 {
            prop_assert_eq!(&reply[26..28], &[0u8, 0][..], "zero UDP checksum stays zero");
        }
        // an ICMP error quoting what left the NAT
        let mut quote_len = (28 + quote_extra).min(out.len());
        if proto == 2 && quote_len == 20 + 17 {
            // cut inside the TCP checksum: no correct value exists for its one quoted byte
            quote_len += 1;
        }
        let mut err = icmp_error(ROUTER, PUBLIC, 3, 4, &out, quote_len);
        prop_assert_eq!(nat.translate_inbound(t0, &mut err), Verdict::Forward { to_vipa: h });
        verify_wire(&err)?;
        prop_assert_eq!(&err[28..], &original[..quote_len]);
    }

    /// Arbitrary bytes never panic, in either direction.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128), host in any::<[u8; 4]>()) {
        let nat = Nat::new(NatConfig::new(vec![PUBLIC])).unwrap();
        let t0 = Instant::now();
        let mut a = bytes.clone();
        let _ = nat.translate_outbound(t0, Ipv4Addr::from(host), &mut a);
        let mut b = bytes;
        let _ = nat.translate_inbound(t0, &mut b);
    }

    /// Valid packets with random bytes overwritten or cut never panic.
    #[test]
    fn mutated_packets_never_panic(
        kind in 0u8..6,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let mut c = NatConfig::new(vec![PUBLIC]);
        c.filtering = Filtering::EndpointIndependent;
        let nat = Nat::new(c).unwrap();
        let t0 = Instant::now();
        let mut seed = udp(H1, 5000, CH, 53);
        nat.translate_outbound(t0, H1, &mut seed);
        let base = match kind {
            0 => udp(H1, 5000, CH, 53),
            1 => tcp(H1, 5001, CH, 80, SYN),
            2 => echo(H1, CH, 8, 5, 1),
            3 => icmp_error(ROUTER, PUBLIC, 3, 3, &seed, 28),
            4 => udp(CH, 53, PUBLIC, 5000),
            _ => ipv4_frag(CH, PUBLIC, UDP, 7, false, 3, &[1, 2, 3]),
        };
        let mut p = base;
        for (i, v) in edits {
            if !p.is_empty() {
                let n = p.len();
                p[i % n] = v;
            }
        }
        p.truncate(cut % (p.len() + 1));
        let mut q = p.clone();
        let _ = nat.translate_outbound(t0, H1, &mut p);
        let _ = nat.translate_inbound(t0, &mut q);
    }
}
