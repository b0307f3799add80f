//! RFC 4787 / 5382 / 5508 / 6888 behaviours, with a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nat::{DropReason, Filtering, Nat, NatConfig, Proto, TcpState, Verdict};

fn cfg(filtering: Filtering) -> NatConfig {
    let mut c = NatConfig::new(vec![PUBLIC]);
    c.filtering = filtering;
    c
}

fn nat(filtering: Filtering) -> Nat {
    Nat::new(cfg(filtering)).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn fwd(vipa: Ipv4Addr) -> Verdict {
    Verdict::Forward { to_vipa: vipa }
}

#[test]
fn outbound_udp_rewritten_port_preserved_checksums_valid() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    let mut p = udp(H1, 40000, CH, 53);
    assert_eq!(n.translate_outbound(t0, H1, &mut p), Verdict::ToInternet);
    assert_eq!(src(&p), PUBLIC);
    assert_eq!(sport(&p), 40000, "port preservation (RFC 4787 REQ-3)");
    assert_eq!(dst(&p), CH);
    verify(&p).unwrap();
    assert_eq!(n.len(), 1);
    // the reply goes back to the host
    let mut r = udp(CH, 53, PUBLIC, 40000);
    assert_eq!(n.translate_inbound(t0, &mut r), fwd(H1));
    assert_eq!(dst(&r), H1);
    assert_eq!(dport(&r), 40000);
    verify(&r).unwrap();
}

#[test]
fn endpoint_independent_mapping_reused_across_destinations() {
    // RFC 4787 REQ-1, RFC 5382 REQ-1
    let n = nat(Filtering::AddressAndPortDependent);
    let t0 = Instant::now();
    let mut a = udp(H1, 5000, CH, 53);
    let mut b = udp(H1, 5000, CH2, 9999);
    n.translate_outbound(t0, H1, &mut a);
    n.translate_outbound(t0, H1, &mut b);
    assert_eq!((src(&a), sport(&a)), (src(&b), sport(&b)));
    assert_eq!(n.len(), 1);
    let mut c = tcp(H1, 5000, CH, 80, SYN);
    n.translate_outbound(t0, H1, &mut c);
    assert_eq!(n.len(), 2, "TCP and UDP are separate mappings");
}

#[test]
fn port_in_use_gets_same_parity_and_no_overloading() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    let mut a = udp(H1, 6001, CH, 53);
    let mut b = udp(H2, 6001, CH, 53);
    n.translate_outbound(t0, H1, &mut a);
    n.translate_outbound(t0, H2, &mut b);
    assert_eq!(sport(&a), 6001);
    assert_ne!(sport(&b), 6001, "no port overloading (REQ-3)");
    assert_eq!(sport(&b) % 2, 1, "parity preserved (REQ-4)");
    assert!(sport(&b) >= 1024);
    // low host ports are mapped into the configured range
    let mut c = udp(H2, 53, CH, 53);
    n.translate_outbound(t0, H2, &mut c);
    assert!(sport(&c) >= 1024 && sport(&c) % 2 == 1);
}

#[test]
fn paired_pooling_keeps_one_public_address_per_host() {
    let mut c = NatConfig::new(vec![PUBLIC, PUBLIC2]);
    c.filtering = Filtering::EndpointIndependent;
    let n = Nat::new(c).unwrap();
    let t0 = Instant::now();
    for host in 1..20u8 {
        let vipa = Ipv4Addr::new(100, 64, 1, host);
        let mut seen = None;
        for port in [1111u16, 2222, 3333] {
            let mut p = udp(vipa, port, CH, 53);
            n.translate_outbound(t0, vipa, &mut p);
            let s = src(&p);
            assert!(s == PUBLIC || s == PUBLIC2);
            assert!(seen.is_none() || seen == Some(s), "RFC 4787 REQ-2 paired");
            seen = Some(s);
        }
    }
}

#[test]
fn filtering_endpoint_independent() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH, 53));
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH2, 1, PUBLIC, 7000)),
        fwd(H1)
    );
}

#[test]
fn filtering_address_dependent() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH, 53));
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 53, PUBLIC, 7000)),
        fwd(H1)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 4444, PUBLIC, 7000)),
        fwd(H1)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH2, 53, PUBLIC, 7000)),
        Verdict::Drop(DropReason::Filtered)
    );
    assert_eq!(n.counters().dropped(DropReason::Filtered), 1);
    // once the host sends to CH2, it is admitted
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH2, 9));
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH2, 53, PUBLIC, 7000)),
        fwd(H1)
    );
}

#[test]
fn filtering_address_and_port_dependent() {
    let n = nat(Filtering::AddressAndPortDependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH, 53));
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 53, PUBLIC, 7000)),
        fwd(H1)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 54, PUBLIC, 7000)),
        Verdict::Drop(DropReason::Filtered)
    );
}

#[test]
fn filtering_permissions_live_as_long_as_the_mapping() {
    // RFC 4787 §5 ties filtering to the mapping: a peer the host has sent to stays admitted
    // while the mapping lives (kept alive here by traffic to CH2 only)
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH, 53));
    for k in 1..=5 {
        n.translate_outbound(t0 + secs(100 * k), H1, &mut udp(H1, 7000, CH2, 53));
    }
    let t = t0 + secs(501);
    n.expire(t);
    assert_eq!(n.len(), 1);
    assert_eq!(
        n.translate_inbound(t, &mut udp(CH2, 53, PUBLIC, 7000)),
        fwd(H1)
    );
    assert_eq!(
        n.translate_inbound(t, &mut udp(CH, 53, PUBLIC, 7000)),
        fwd(H1)
    );
    // with the mapping, every permission goes
    n.expire(t0 + secs(800));
    assert!(n.is_empty());
    n.translate_outbound(t0 + secs(800), H1, &mut udp(H1, 7000, CH2, 53));
    assert_eq!(
        n.translate_inbound(t0 + secs(800), &mut udp(CH, 53, PUBLIC, 7000)),
        Verdict::Drop(DropReason::Filtered)
    );
}

#[test]
fn permissions_per_mapping_are_capped_oldest_forgotten() {
    let mut c = cfg(Filtering::AddressDependent);
    c.max_permissions_per_mapping = 2;
    let n = Nat::new(c).unwrap();
    let t0 = Instant::now();
    let peers: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(198, 18, 3, 10 + i)).collect();
    for p in &peers {
        n.translate_outbound(t0, H1, &mut udp(H1, 7000, *p, 53));
    }
    // first peer: inline; the list keeps the 2 newest of the 3 others
    assert_eq!(
        n.translate_inbound(t0, &mut udp(peers[0], 53, PUBLIC, 7000)),
        fwd(H1)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut udp(peers[1], 53, PUBLIC, 7000)),
        Verdict::Drop(DropReason::Filtered)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut udp(peers[2], 53, PUBLIC, 7000)),
        fwd(H1)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut udp(peers[3], 53, PUBLIC, 7000)),
        fwd(H1)
    );
}

#[test]
fn unsolicited_inbound_dropped() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 53, PUBLIC, 7000)),
        Verdict::Drop(DropReason::NoMapping)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut tcp(CH, 53, PUBLIC, 7000, SYN)),
        Verdict::Drop(DropReason::NoMapping)
    );
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 53, Ipv4Addr::new(198, 18, 2, 7), 7000)),
        Verdict::Drop(DropReason::NotOurs)
    );
    assert_eq!(n.len(), 0, "inbound packets never create mappings");
}

#[test]
fn udp_timeout_default_5_min_refreshed_outbound_only() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH, 53));
    // inbound traffic does not refresh UDP (RFC 4787 REQ-6: outbound refresh)
    n.translate_inbound(t0 + secs(200), &mut udp(CH, 53, PUBLIC, 7000));
    assert_eq!(n.expire(t0 + secs(299)), 0);
    assert_eq!(n.len(), 1);
    assert_eq!(n.expire(t0 + secs(300)), 1);
    assert_eq!(n.len(), 0);
    assert!(n.lookup(Proto::Udp, H1, 7000).is_none());
    assert_eq!(
        n.translate_inbound(t0 + secs(301), &mut udp(CH, 53, PUBLIC, 7000)),
        Verdict::Drop(DropReason::NoMapping)
    );
    // outbound refresh keeps it
    let n = nat(Filtering::EndpointIndependent);
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH, 53));
    n.translate_outbound(t0 + secs(250), H1, &mut udp(H1, 7000, CH, 53));
    n.expire(t0 + secs(500));
    assert_eq!(n.len(), 1);
    n.expire(t0 + secs(550));
    assert_eq!(n.len(), 0);
}

#[test]
fn inbound_works_until_the_sweep() {
    // the inbound path reads no timestamp: a mapping past its deadline answers until
    // expire() (called every second by the control thread) removes it
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 7000, CH, 53));
    assert_eq!(
        n.translate_inbound(t0 + secs(301), &mut udp(CH, 53, PUBLIC, 7000)),
        fwd(H1)
    );
    n.expire(t0 + secs(301));
    assert_eq!(
        n.translate_inbound(t0 + secs(301), &mut udp(CH, 53, PUBLIC, 7000)),
        Verdict::Drop(DropReason::NoMapping)
    );
}

fn handshake(n: &Nat, t: Instant, port: u16) {
    assert_eq!(
        n.translate_outbound(t, H1, &mut tcp(H1, port, CH, 80, SYN)),
        Verdict::ToInternet
    );
    assert_eq!(
        n.translate_inbound(t, &mut tcp(CH, 80, PUBLIC, port, SYN | ACK)),
        fwd(H1)
    );
    assert_eq!(
        n.translate_outbound(t, H1, &mut tcp(H1, port, CH, 80, ACK)),
        Verdict::ToInternet
    );
}

#[test]
fn tcp_established_timeout_2h4m() {
    // RFC 5382 REQ-5
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    handshake(&n, t0, 8000);
    assert_eq!(
        n.lookup(Proto::Tcp, H1, 8000).unwrap().tcp_state,
        Some(TcpState::Established)
    );
    n.expire(t0 + secs(2 * 3600 + 4 * 60 - 1));
    assert_eq!(n.len(), 1);
    n.expire(t0 + secs(2 * 3600 + 4 * 60));
    assert_eq!(n.len(), 0);
}

#[test]
fn tcp_inbound_refreshes_established() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    handshake(&n, t0, 8000);
    let t1 = t0 + secs(7000);
    assert_eq!(
        n.translate_inbound(t1, &mut tcp(CH, 80, PUBLIC, 8000, ACK)),
        fwd(H1)
    );
    n.expire(t0 + secs(7500));
    assert_eq!(n.len(), 1);
    n.expire(t1 + secs(7440));
    assert_eq!(n.len(), 0);
}

#[test]
fn tcp_transitory_4_min_for_syn_only() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut tcp(H1, 8001, CH, 80, SYN));
    assert_eq!(
        n.lookup(Proto::Tcp, H1, 8001).unwrap().tcp_state,
        Some(TcpState::SynOut)
    );
    n.expire(t0 + secs(239));
    assert_eq!(n.len(), 1);
    n.expire(t0 + secs(240));
    assert_eq!(n.len(), 0);
}

#[test]
fn tcp_fin_both_ways_shortens_to_transitory() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    handshake(&n, t0, 8002);
    let t1 = t0 + secs(1000);
    n.translate_outbound(t1, H1, &mut tcp(H1, 8002, CH, 80, FIN | ACK));
    assert_eq!(
        n.lookup(Proto::Tcp, H1, 8002).unwrap().tcp_state,
        Some(TcpState::FinOut)
    );
    n.translate_inbound(t1, &mut tcp(CH, 80, PUBLIC, 8002, FIN | ACK));
    assert_eq!(
        n.lookup(Proto::Tcp, H1, 8002).unwrap().tcp_state,
        Some(TcpState::Closing)
    );
    n.expire(t1 + secs(239));
    assert_eq!(n.len(), 1);
    n.expire(t1 + secs(240));
    assert_eq!(
        n.len(),
        0,
        "filed again at the shorter deadline, not left for 2 h"
    );
}

#[test]
fn tcp_rst_is_transitory_and_port_reusable() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    handshake(&n, t0, 8003);
    n.translate_inbound(t0 + secs(10), &mut tcp(CH, 80, PUBLIC, 8003, RST));
    assert_eq!(
        n.lookup(Proto::Tcp, H1, 8003).unwrap().tcp_state,
        Some(TcpState::Reset)
    );
    // a new connection from the same port reuses the mapping
    n.translate_outbound(t0 + secs(20), H1, &mut tcp(H1, 8003, CH, 80, SYN));
    assert_eq!(
        n.lookup(Proto::Tcp, H1, 8003).unwrap().tcp_state,
        Some(TcpState::SynOut)
    );
    let n2 = nat(Filtering::AddressDependent);
    handshake(&n2, t0, 8003);
    n2.translate_outbound(t0 + secs(10), H1, &mut tcp(H1, 8003, CH, 80, RST));
    n2.expire(t0 + secs(10 + 240));
    assert_eq!(n2.len(), 0);
}

#[test]
fn icmp_echo_60s() {
    // RFC 5508 REQ-1
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    let mut q = echo(H1, CH, 8, 0x4242, 1);
    assert_eq!(n.translate_outbound(t0, H1, &mut q), Verdict::ToInternet);
    verify(&q).unwrap();
    assert_eq!(src(&q), PUBLIC);
    let id = icmp_id(&q);
    let mut r = echo(CH, PUBLIC, 0, id, 1);
    assert_eq!(n.translate_inbound(t0, &mut r), fwd(H1));
    assert_eq!(icmp_id(&r), 0x4242);
    verify(&r).unwrap();
    n.expire(t0 + secs(59));
    assert_eq!(n.len(), 1);
    n.expire(t0 + secs(60));
    assert_eq!(n.len(), 0);
}

#[test]
fn icmp_echo_id_collision_allocates() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    let mut a = echo(H1, CH, 8, 7000, 1);
    let mut b = echo(H2, CH, 8, 7000, 1);
    n.translate_outbound(t0, H1, &mut a);
    n.translate_outbound(t0, H2, &mut b);
    assert_ne!(icmp_id(&a), icmp_id(&b));
    verify(&b).unwrap();
    let mut r = echo(CH, PUBLIC, 0, icmp_id(&b), 1);
    assert_eq!(n.translate_inbound(t0, &mut r), fwd(H2));
    assert_eq!(icmp_id(&r), 7000);
}

#[test]
fn hairpin_endpoint_independent() {
    // RFC 4787 REQ-9: H2 reaches H1's public endpoint; the packet shows H2's public endpoint
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 9000, CH, 3478));
    let mut p = udp(H2, 9001, PUBLIC, 9000);
    assert_eq!(
        n.translate_outbound(t0, H2, &mut p),
        Verdict::Hairpin { to_vipa: H1 }
    );
    assert_eq!((src(&p), sport(&p)), (PUBLIC, 9001));
    assert_eq!((dst(&p), dport(&p)), (H1, 9000));
    verify(&p).unwrap();
    // and back
    let mut r = udp(H1, 9000, PUBLIC, 9001);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut r),
        Verdict::Hairpin { to_vipa: H2 }
    );
    assert_eq!((dst(&r), dport(&r)), (H2, 9001));
    verify(&r).unwrap();
}

#[test]
fn hairpin_respects_filtering() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 9000, CH, 3478));
    let mut p = udp(H2, 9001, PUBLIC, 9000);
    assert_eq!(
        n.translate_outbound(t0, H2, &mut p),
        Verdict::Drop(DropReason::Filtered)
    );
    // H1 punches towards the public address (ICE-style), then H2 gets through
    n.translate_outbound(t0, H1, &mut udp(H1, 9000, PUBLIC, 9001));
    let mut p = udp(H2, 9001, PUBLIC, 9000);
    assert_eq!(
        n.translate_outbound(t0, H2, &mut p),
        Verdict::Hairpin { to_vipa: H1 }
    );
    // TCP hairpin with handshake
    let n = nat(Filtering::EndpointIndependent);
    n.translate_outbound(t0, H1, &mut tcp(H1, 9100, CH, 1, SYN));
    let mut s = tcp(H2, 9200, PUBLIC, 9100, SYN);
    assert_eq!(
        n.translate_outbound(t0, H2, &mut s),
        Verdict::Hairpin { to_vipa: H1 }
    );
    verify(&s).unwrap();
}

#[test]
fn icmp_error_inbound_translated_with_quote_and_checksums() {
    // RFC 5508: a router reports "port unreachable" for a packet H1 sent
    let n = nat(Filtering::AddressAndPortDependent);
    let t0 = Instant::now();
    let original = udp(H1, 40001, CH, 33434);
    let mut out = original.clone();
    n.translate_outbound(t0, H1, &mut out);
    for quote_len in [28, original.len()] {
        // routers quote 28 bytes (RFC 792) or more (RFC 1812)
        let mut e = icmp_error(ROUTER, PUBLIC, 3, 3, &out, quote_len);
        assert_eq!(
            n.translate_inbound(t0, &mut e),
            fwd(H1),
            "ICMP errors are not filtered by source (RFC 5508)"
        );
        verify(&e).unwrap();
        assert_eq!(dst(&e), H1);
        let inner = &e[28..];
        assert_eq!(inner, &original[..quote_len], "the quote is what H1 sent");
    }
    // TCP with a short (8-byte) quote: no transport checksum in it
    let original = tcp(H1, 40002, CH, 80, SYN);
    let mut out = original.clone();
    n.translate_outbound(t0, H1, &mut out);
    for quote_len in [28, 40] {
        let mut e = icmp_error(ROUTER, PUBLIC, 11, 0, &out, quote_len);
        assert_eq!(n.translate_inbound(t0, &mut e), fwd(H1));
        verify(&e).unwrap();
        assert_eq!(&e[28..], &original[..quote_len]);
    }
    // a quoted echo request
    let original = echo(H1, CH, 8, 0x77, 3);
    let mut out = original.clone();
    n.translate_outbound(t0, H1, &mut out);
    let mut e = icmp_error(ROUTER, PUBLIC, 11, 0, &out, out.len());
    assert_eq!(n.translate_inbound(t0, &mut e), fwd(H1));
    verify(&e).unwrap();
    assert_eq!(&e[28..], &original[..]);
    // the errors created no mapping
    assert_eq!(n.len(), 3);
}

#[test]
fn icmp_error_without_mapping_dropped() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    let fake = udp(PUBLIC, 5555, CH, 53);
    let mut e = icmp_error(ROUTER, PUBLIC, 3, 1, &fake, 28);
    assert_eq!(
        n.translate_inbound(t0, &mut e),
        Verdict::Drop(DropReason::NoMapping)
    );
    // a quote too short to hold the ports
    let mut e = icmp_error(ROUTER, PUBLIC, 3, 1, &fake, 24);
    assert_eq!(
        n.translate_inbound(t0, &mut e),
        Verdict::Drop(DropReason::Malformed)
    );
    // redirects are not translated
    let mut e = icmp_error(ROUTER, PUBLIC, 5, 1, &fake, 28);
    assert_eq!(
        n.translate_inbound(t0, &mut e),
        Verdict::Drop(DropReason::UnsupportedIcmp)
    );
}

#[test]
fn icmp_error_outbound_translated() {
    // H1 answers an inbound datagram with "port unreachable"
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 5353, CH, 5353));
    let mut inbound = udp(CH, 5353, PUBLIC, 5353);
    n.translate_inbound(t0, &mut inbound);
    let mut e = icmp_error(H1, CH, 3, 3, &inbound, inbound.len());
    assert_eq!(n.translate_outbound(t0, H1, &mut e), Verdict::ToInternet);
    verify(&e).unwrap();
    assert_eq!(src(&e), PUBLIC);
    let original = udp(CH, 5353, PUBLIC, 5353);
    assert_eq!(&e[28..], &original[..], "the quote is what CH sent");
}

#[test]
fn udp_zero_checksum_stays_zero() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    let mut p = ipv4(H1, CH, UDP, &udp_seg(H1, CH, 1234, 53, b"x", false));
    n.translate_outbound(t0, H1, &mut p);
    assert_eq!(&p[26..28], &[0, 0]);
    let mut r = ipv4(CH, PUBLIC, UDP, &udp_seg(CH, PUBLIC, 53, 1234, b"y", false));
    assert_eq!(n.translate_inbound(t0, &mut r), fwd(H1));
    assert_eq!(&r[26..28], &[0, 0]);
    verify(&r).unwrap();
}

#[test]
fn fragments_follow_the_first() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    let seg = udp_seg(H1, CH, 4000, 4000, &[7u8; 40], true);
    let mut f1 = ipv4_frag(H1, CH, UDP, 99, true, 0, &seg[..24]);
    let mut f2 = ipv4_frag(H1, CH, UDP, 99, false, 3, &seg[24..]);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut f2),
        Verdict::Drop(DropReason::FragmentNoState)
    );
    assert_eq!(n.translate_outbound(t0, H1, &mut f1), Verdict::ToInternet);
    let mut f2 = ipv4_frag(H1, CH, UDP, 99, false, 3, &seg[24..]);
    assert_eq!(n.translate_outbound(t0, H1, &mut f2), Verdict::ToInternet);
    assert_eq!(src(&f2), PUBLIC);
    verify(&f1).unwrap();
    verify(&f2).unwrap();
    // reassembled, the UDP checksum holds
    let mut whole = f1[20..].to_vec();
    whole.extend_from_slice(&f2[20..]);
    assert_eq!(
        fold(ones_sum(&whole, pseudo(PUBLIC, CH, UDP, whole.len()))),
        0xffff
    );
    // inbound fragments
    let pport = sport(&f1);
    let rseg = udp_seg(CH, PUBLIC, 4000, pport, &[9u8; 40], true);
    let mut g1 = ipv4_frag(CH, PUBLIC, UDP, 5, true, 0, &rseg[..16]);
    let mut g2 = ipv4_frag(CH, PUBLIC, UDP, 5, false, 2, &rseg[16..]);
    assert_eq!(n.translate_inbound(t0, &mut g1), fwd(H1));
    assert_eq!(n.translate_inbound(t0, &mut g2), fwd(H1));
    assert_eq!(dst(&g2), H1);
    verify(&g2).unwrap();
    // state expires
    n.expire(t0 + secs(31));
    let mut g3 = ipv4_frag(CH, PUBLIC, UDP, 5, false, 2, &rseg[16..]);
    assert_eq!(
        n.translate_inbound(t0 + secs(31), &mut g3),
        Verdict::Drop(DropReason::FragmentNoState)
    );
    // a tiny first fragment without the whole UDP header is refused (RFC 1858)
    let mut tiny = ipv4_frag(H1, CH, UDP, 100, true, 0, &seg[..4]);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut tiny),
        Verdict::Drop(DropReason::Malformed)
    );
}

#[test]
fn fragment_table_is_bounded() {
    let mut c = cfg(Filtering::EndpointIndependent);
    c.max_fragments = 2;
    let n = Nat::new(c).unwrap();
    let t0 = Instant::now();
    let seg = udp_seg(H1, CH, 4000, 4000, &[7u8; 40], true);
    for id in 0..5u16 {
        let mut f = ipv4_frag(H1, CH, UDP, id, true, 0, &seg[..24]);
        assert_eq!(n.translate_outbound(t0, H1, &mut f), Verdict::ToInternet);
    }
    assert_eq!(n.counters().fragments_untracked, 3);
    let mut later = ipv4_frag(H1, CH, UDP, 4, false, 3, &seg[24..]);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut later),
        Verdict::Drop(DropReason::FragmentNoState)
    );
    let mut later = ipv4_frag(H1, CH, UDP, 1, false, 3, &seg[24..]);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut later),
        Verdict::ToInternet
    );
}

#[test]
fn host_cap_refuses_new_flows_existing_keep_working() {
    // RFC 6888 REQ-4
    let mut c = cfg(Filtering::EndpointIndependent);
    c.max_mappings_per_host = 2;
    let n = Nat::new(c).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        n.translate_outbound(t0, H1, &mut udp(H1, 1, CH, 53)),
        Verdict::ToInternet
    );
    assert_eq!(
        n.translate_outbound(t0, H1, &mut udp(H1, 2, CH, 53)),
        Verdict::ToInternet
    );
    assert_eq!(
        n.translate_outbound(t0, H1, &mut udp(H1, 3, CH, 53)),
        Verdict::Drop(DropReason::HostCapReached)
    );
    assert_eq!(n.counters().dropped(DropReason::HostCapReached), 1);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut udp(H1, 1, CH, 53)),
        Verdict::ToInternet
    );
    assert_eq!(
        n.translate_outbound(t0, H2, &mut udp(H2, 3, CH, 53)),
        Verdict::ToInternet
    );
    // after expiry there is room again
    n.expire(t0 + secs(300));
    assert_eq!(
        n.translate_outbound(t0 + secs(300), H1, &mut udp(H1, 3, CH, 53)),
        Verdict::ToInternet
    );
}

#[test]
fn global_cap_refuses_new_flows() {
    let mut c = cfg(Filtering::EndpointIndependent);
    c.max_mappings = 3;
    let n = Nat::new(c).unwrap();
    let t0 = Instant::now();
    for port in 3001..=3003 {
        assert_eq!(
            n.translate_outbound(t0, H1, &mut udp(H1, port, CH, 53)),
            Verdict::ToInternet
        );
    }
    assert_eq!(
        n.translate_outbound(t0, H2, &mut udp(H2, 9, CH, 53)),
        Verdict::Drop(DropReason::GlobalCapReached)
    );
    assert_eq!(n.counters().dropped(DropReason::GlobalCapReached), 1);
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 53, PUBLIC, 3002)),
        fwd(H1)
    );
}

#[test]
fn ports_exhausted_is_counted() {
    let mut c = cfg(Filtering::EndpointIndependent);
    c.port_range = 2000..=2003;
    let n = Nat::new(c).unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    for port in 10..14 {
        let mut p = udp(H1, port, CH, 53);
        assert_eq!(n.translate_outbound(t0, H1, &mut p), Verdict::ToInternet);
        got.push(sport(&p));
    }
    got.sort_unstable();
    assert_eq!(got, vec![2000, 2001, 2002, 2003]);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut udp(H1, 99, CH, 53)),
        Verdict::Drop(DropReason::PortsExhausted)
    );
}

#[test]
fn remove_host_and_mappings_for() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    n.translate_outbound(t0, H1, &mut udp(H1, 1000, CH, 53));
    n.translate_outbound(t0, H1, &mut tcp(H1, 1001, CH, 80, SYN));
    n.translate_outbound(t0, H2, &mut udp(H2, 1000, CH, 53));
    let m = n.mappings_for(H1);
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].proto, m[0].vport), (Proto::Tcp, 1001));
    assert_eq!(m[1].tcp_state, None);
    assert_eq!(n.remove_host(H1), 2);
    assert_eq!(n.len(), 1);
    assert!(n.mappings_for(H1).is_empty());
    assert_eq!(
        n.translate_inbound(t0, &mut udp(CH, 53, PUBLIC, 1000)),
        Verdict::Drop(DropReason::NoMapping)
    );
    assert_eq!(n.remove_host(H1), 0);
    assert_eq!(n.counters().removed, 2);
    // expiry of removed mappings is harmless
    assert_eq!(n.expire(t0 + secs(3 * 3600)), 1);
    assert!(n.is_empty());
}

#[test]
fn spoofed_and_malformed_refused() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    assert_eq!(
        n.translate_outbound(t0, H2, &mut udp(H1, 1, CH, 53)),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    let mut p = udp(H1, 1, CH, 53);
    p[0] = 0x60;
    assert_eq!(
        n.translate_outbound(t0, H1, &mut p),
        Verdict::Drop(DropReason::NotIpv4)
    );
    let mut p = udp(H1, 1, CH, 53);
    p.truncate(25);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut p),
        Verdict::Drop(DropReason::Malformed)
    );
    let mut p = ipv4(H1, CH, 47, &[0; 8]);
    assert_eq!(
        n.translate_outbound(t0, H1, &mut p),
        Verdict::Drop(DropReason::UnsupportedProtocol)
    );
    assert_eq!(
        n.translate_outbound(t0, H1, &mut []),
        Verdict::Drop(DropReason::Malformed)
    );
    let c = n.counters();
    assert_eq!(c.dropped(DropReason::SpoofedSource), 1);
    assert_eq!(c.dropped(DropReason::Malformed), 2);
}

#[test]
fn config_below_rfc_minimums_rejected() {
    let mut c = cfg(Filtering::EndpointIndependent);
    c.timeouts.udp = secs(60);
    assert!(Nat::new(c).is_err());
    let mut c = cfg(Filtering::EndpointIndependent);
    c.timeouts.tcp_established = secs(3600);
    assert!(Nat::new(c).is_err());
    assert!(Nat::new(NatConfig::new(vec![])).is_err());
}

#[test]
fn next_expiry_reports_the_earliest_bucket() {
    let n = nat(Filtering::EndpointIndependent);
    let t0 = Instant::now();
    assert_eq!(n.next_expiry(), None);
    n.translate_outbound(t0, H1, &mut echo(H1, CH, 8, 1, 1));
    assert_eq!(n.next_expiry(), Some(t0 + secs(60)));
}

#[test]
fn concurrent_creation_of_one_mapping_yields_one_port() {
    let n = Arc::new(nat(Filtering::AddressDependent));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let n = n.clone();
            std::thread::spawn(move || {
                let mut ports = Vec::new();
                for port in 0..2000u16 {
                    let mut p = udp(H1, 10000 + port, CH, 53);
                    assert_eq!(n.translate_outbound(t0, H1, &mut p), Verdict::ToInternet);
                    ports.push(sport(&p));
                }
                ports
            })
        })
        .collect();
    let results: Vec<Vec<u16>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results[0], results[1]);
    assert_eq!(n.len(), 2000);
}

#[test]
fn concurrent_inbound_and_outbound_with_expiry() {
    let n = Arc::new(nat(Filtering::EndpointIndependent));
    let t0 = Instant::now();
    for port in 0..500u16 {
        n.translate_outbound(t0, H1, &mut udp(H1, 20000 + port, CH, 53));
    }
    let n2 = n.clone();
    let reader = std::thread::spawn(move || {
        let mut ok = 0;
        for round in 0..20u64 {
            for port in 0..500u16 {
                let mut p = udp(CH, 53, PUBLIC, 20000 + port);
                if n2.translate_inbound(t0 + secs(round * 20), &mut p) == fwd(H1) {
                    verify(&p).unwrap();
                    ok += 1;
                }
            }
        }
        ok
    });
    for round in 0..20u64 {
        n.expire(t0 + secs(round * 20));
        for port in 0..250u16 {
            n.translate_outbound(
                t0 + secs(round * 20),
                H1,
                &mut udp(H1, 20000 + port, CH, 53),
            );
        }
    }
    let ok = reader.join().unwrap();
    assert!(ok > 0);
    n.expire(t0 + secs(10_000));
    assert!(n.is_empty());
}

#[test]
fn mass_expiry_in_batches_removes_everything() {
    let mut c = cfg(Filtering::AddressDependent);
    c.max_mappings_per_host = 100_000;
    let n = Nat::new(c).unwrap();
    let t0 = Instant::now();
    for i in 0..10_000u16 {
        let host = Ipv4Addr::new(100, 64, 2, (i % 200) as u8);
        let mut p = udp(host, 20_000 + i, CH, 53);
        assert_eq!(n.translate_outbound(t0, host, &mut p), Verdict::ToInternet);
    }
    assert_eq!(n.len(), 10_000);
    // refresh a few, so the sweep re-files them
    for i in 0..10u16 {
        let host = Ipv4Addr::new(100, 64, 2, (i % 200) as u8);
        n.translate_outbound(t0 + secs(100), host, &mut udp(host, 20_000 + i, CH, 53));
    }
    assert_eq!(n.expire(t0 + secs(300)), 9_990);
    assert_eq!(n.len(), 10);
    assert_eq!(n.expire(t0 + secs(400)), 10);
    assert!(n.is_empty());
    assert_eq!(n.next_expiry(), None);
}

#[test]
fn pinned_batch_api_matches_per_packet_api() {
    let n = nat(Filtering::AddressDependent);
    let t0 = Instant::now();
    let pin = n.pin();
    let mut out: Vec<Vec<u8>> = (0..8).map(|i| udp(H1, 30_000 + i, CH, 53)).collect();
    for p in &mut out {
        assert_eq!(pin.translate_outbound(t0, H1, p), Verdict::ToInternet);
        verify(p).unwrap();
    }
    for i in 0..8 {
        let mut r = udp(CH, 53, PUBLIC, 30_000 + i);
        assert_eq!(pin.translate_inbound(t0, &mut r), fwd(H1));
    }
    drop(pin);
    assert_eq!(n.len(), 8);
}

#[test]
fn nat_is_shareable_between_shards() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Nat>();
    assert_send_sync::<Arc<Nat>>();
}

#[test]
fn tcp_inbound_refresh_racing_expiry_keeps_the_table_consistent() {
    let n = Arc::new(nat(Filtering::EndpointIndependent));
    let t0 = Instant::now();
    for port in 0..300u16 {
        handshake(&n, t0, 41_000 + port);
    }
    assert_eq!(n.len(), 300);
    // inbound ACKs on one thread, expiry sweeps on another, around the 2 h 4 min deadline
    let n2 = n.clone();
    let refresher = std::thread::spawn(move || {
        for step in 0..40u64 {
            for port in 0..150u16 {
                let t = t0 + secs(7430 + step / 2);
                let mut p = tcp(CH, 80, PUBLIC, 41_000 + port, ACK);
                let _ = n2.translate_inbound(t, &mut p);
            }
        }
    });
    for step in 0..40u64 {
        n.expire(t0 + secs(7430 + step / 2));
    }
    refresher.join().unwrap();
    // the refreshed half may survive, the idle half is gone; nothing is half-removed
    let live = n.len();
    assert!(live <= 150, "{live}");
    let listed = n.mappings_for(H1).len();
    assert_eq!(listed, live);
    n.expire(t0 + secs(20_000));
    assert!(n.is_empty());
}
