//! Replays the committed fuzz seed corpus (`fuzz/corpus/wire_parse/`, written by
//! `fuzz/gen_seeds.py`) through `wire::fuzz::parse_all` on every `cargo test`, and checks the
//! seeds against what the generator (an independent Python implementation of the same
//! checksums) meant: checksums verify and flow keys come out right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use wire::{ip, tcp, udp, FlowKey, IpProtocol};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wire_parse")
}

fn seed(name: &str) -> Vec<u8> {
    fs::read(corpus_dir().join(name)).unwrap_or_else(|e| panic!("seed {name}: {e}"))
}

#[test]
fn replay_corpus() {
    let mut n = 0;
    for entry in fs::read_dir(corpus_dir()).expect("corpus directory exists") {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        wire::fuzz::parse_all(&data);
        n += 1;
    }
    // Never pass without running: the generator writes 28 seeds.
    assert!(n >= 28, "only {n} seeds in {}", corpus_dir().display());
}

/// Transport checksum of a whole packet verifies (TCP/UDP only).
fn transport_ok(pkt: &[u8]) -> bool {
    let p = ip::Packet::new_checked(pkt).unwrap();
    let t = p.transport().unwrap();
    let seg = &pkt[t.offset..t.end];
    match t.protocol {
        IpProtocol::Tcp => tcp::Packet::new_checked(seg)
            .unwrap()
            .verify_checksum(p.src_addr(), p.dst_addr()),
        IpProtocol::Udp => udp::Packet::new_checked(seg)
            .unwrap()
            .verify_checksum(p.src_addr(), p.dst_addr()),
        _ => true,
    }
}

#[test]
fn generator_checksums_agree() {
    for name in [
        "ipv4_udp_dns",
        "ipv4_udp_1400",
        "ipv4_udp_zero_checksum",
        "ipv4_tcp_syn_mss",
        "ipv4_tcp_mss_odd_offset",
        "ipv4_tcp_data",
        "ipv4_options_router_alert",
        "ipv6_udp",
        "ipv6_tcp_syn",
        "ipv6_ah_udp",
    ] {
        let pkt = seed(name);
        if let ip::Packet::V4(p) = ip::Packet::new_checked(&pkt[..]).unwrap() {
            assert!(p.verify_checksum(), "{name}: ipv4 header checksum");
        }
        assert!(transport_ok(&pkt), "{name}: transport checksum");
    }
    let ptb = seed("ipv6_packet_too_big");
    let p = wire::ipv6::Packet::new_checked(&ptb[..]).unwrap();
    let icmp = wire::icmpv6::Packet::new_checked(p.payload()).unwrap();
    assert!(icmp.verify_checksum(p.src_addr(), p.dst_addr()));
}

#[test]
fn seed_flow_keys() {
    let k = |name: &str| FlowKey::from_ip_packet(&seed(name)).unwrap();
    let ports = |k: FlowKey| (k.proto, k.src_port, k.dst_port);
    assert_eq!(ports(k("ipv4_udp_dns")), (IpProtocol::Udp, 50395, 53));
    assert_eq!(ports(k("ipv4_tcp_syn_mss")), (IpProtocol::Tcp, 44346, 80));
    assert_eq!(ports(k("ipv4_first_fragment")), (IpProtocol::Udp, 5000, 53));
    assert_eq!(ports(k("ipv4_later_fragment")), (IpProtocol::Udp, 0, 0));
    assert_eq!(
        ports(k("ipv4_icmp_echo")),
        (IpProtocol::Icmp, 0x1c46, 0x1c46)
    );
    assert_eq!(ports(k("ipv4_gre")), (IpProtocol::Other(47), 0, 0));
    assert_eq!(ports(k("ipv6_ext_frag_icmpv6")), (IpProtocol::Icmpv6, 1, 1));
    assert_eq!(ports(k("ipv6_later_fragment")), (IpProtocol::Udp, 0, 0));
    assert_eq!(ports(k("ipv6_ah_udp")), (IpProtocol::Udp, 9, 9));
    let e = |name: &str| FlowKey::from_icmp_error(&seed(name)).unwrap();
    assert_eq!(
        ports(e("ipv4_icmp_port_unreachable")),
        (IpProtocol::Udp, 50395, 53)
    );
    assert_eq!(
        ports(e("ipv4_icmp_frag_needed_tcp")),
        (IpProtocol::Tcp, 44346, 80)
    );
    assert_eq!(
        ports(e("ipv4_icmp_time_exceeded_echo")),
        (IpProtocol::Icmp, 7, 7)
    );
    assert_eq!(
        ports(e("ipv6_packet_too_big")),
        (IpProtocol::Tcp, 44346, 80)
    );
    let short = e("ipv6_dst_unreachable_short_quote");
    assert_eq!(ports(short), (IpProtocol::Tcp, 44346, 80));
    assert_eq!(short.src, "2001:db8::1".parse::<IpAddr>().unwrap());
}

#[test]
fn seed_tunnel_frames() {
    use wire::tunnel::{ControlKind, Keepalive, Payload};
    match Payload::classify(&seed("tunnel_keepalive_request")).unwrap() {
        Payload::Control {
            kind: ControlKind::KeepaliveRequest,
            body,
        } => {
            assert_eq!(
                Keepalive::parse(body).unwrap(),
                Keepalive {
                    tunnel_id: 7,
                    seq: 42,
                    timestamp_us: 123_456_789
                }
            );
        }
        other => panic!("{other:?}"),
    }
    let sip = seed("tunnel_signalling");
    assert!(matches!(
        Payload::classify(&sip).unwrap(),
        Payload::Control {
            kind: ControlKind::Signalling,
            ..
        }
    ));
    assert!(Payload::classify(&seed("tunnel_reserved_kind")).is_err());
    assert!(matches!(
        Payload::classify(&seed("ipv6_udp")).unwrap(),
        Payload::Ipv6(_)
    ));
}
