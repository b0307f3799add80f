//! Per-packet costs of the wire crate on 1400-byte packets: view parsing, flow key, in-place
//! NAT rewrite with incremental checksums, against a full checksum pass for scale.
//!
//! `cargo bench -p wire -- --warm-up-time 1 --measurement-time 3`; results in
//! docs/benchmarks/wire.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wire::{checksum, ipv4, ipv6, rewrite, tcp, tunnel, udp, FlowKey, IpProtocol};

const SIZE: usize = 1400;

fn v4_packet(proto: IpProtocol) -> Vec<u8> {
    let src = Ipv4Addr::new(100, 64, 0, 2);
    let dst = Ipv4Addr::new(198, 18, 3, 1);
    let r = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: proto,
        payload_len: SIZE - 20,
        ttl: 64,
        ident: 1,
        dont_frag: true,
        dscp_ecn: 0,
    };
    let mut v = vec![0u8; SIZE];
    let mut ip = ipv4::Packet::new_unchecked(&mut v[..]);
    r.emit(&mut ip).unwrap();
    fill_transport(proto, ip.payload_mut(), src.into(), dst.into());
    v
}

fn v6_packet(proto: IpProtocol) -> Vec<u8> {
    let src: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:3::1".parse().unwrap();
    let r = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: SIZE - 40,
        hop_limit: 64,
    };
    let mut v = vec![0u8; SIZE];
    let mut ip = ipv6::Packet::new_unchecked(&mut v[..]);
    r.emit(&mut ip).unwrap();
    fill_transport(proto, ip.payload_mut(), src.into(), dst.into());
    v
}

fn fill_transport(proto: IpProtocol, seg: &mut [u8], src: IpAddr, dst: IpAddr) {
    let n = seg.len();
    for (i, b) in seg.iter_mut().enumerate() {
        *b = i as u8;
    }
    if proto == IpProtocol::Tcp {
        let r = tcp::Repr {
            src_port: 40000,
            dst_port: 5201,
            seq_number: 1,
            ack_number: 1,
            flags: tcp::Flags::ACK | tcp::Flags::PSH,
            window_len: 512,
            mss: None,
            payload_len: n - 20,
        };
        let mut p = tcp::Packet::new_unchecked(seg);
        r.emit(&mut p).unwrap();
        p.fill_checksum(src, dst);
    } else {
        let r = udp::Repr {
            src_port: 40000,
            dst_port: 5201,
            payload_len: n - 8,
        };
        let mut p = udp::Packet::new_unchecked(seg);
        r.emit(&mut p).unwrap();
        p.fill_checksum(src, dst);
    }
}

fn benches(c: &mut Criterion) {
    let cases = [
        ("udp4", v4_packet(IpProtocol::Udp)),
        ("tcp4", v4_packet(IpProtocol::Tcp)),
        ("udp6", v6_packet(IpProtocol::Udp)),
        ("tcp6", v6_packet(IpProtocol::Tcp)),
    ];

    let mut g = c.benchmark_group("flow_key");
    g.throughput(Throughput::Elements(1));
    for (name, pkt) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| FlowKey::from_ip_packet(black_box(pkt)).unwrap())
        });
    }
    g.finish();

    // Parse + flow key + incremental checksum update: the NAT's per-packet work. Alternates
    // between two source endpoints so every iteration really rewrites.
    let mut g = c.benchmark_group("parse_key_rewrite");
    g.throughput(Throughput::Elements(1));
    for (name, pkt) in &cases {
        let mut buf = pkt.clone();
        let key = FlowKey::from_ip_packet(&buf).unwrap();
        let other: IpAddr = match key.src {
            IpAddr::V4(_) => Ipv4Addr::new(198, 18, 2, 100).into(),
            IpAddr::V6(_) => "2001:db8:2::100".parse::<Ipv6Addr>().unwrap().into(),
        };
        let ends = [(other, 61000u16), (key.src, key.src_port)];
        let mut i = 0;
        g.bench_function(*name, |b| {
            b.iter(|| {
                let k = FlowKey::from_ip_packet(black_box(&buf)).unwrap();
                let (a, p) = ends[i & 1];
                i += 1;
                rewrite::rewrite_src(black_box(&mut buf), a, p).unwrap();
                k
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("views");
    g.throughput(Throughput::Elements(1));
    let udp4 = &cases[0].1;
    g.bench_function("ipv4_udp_getters", |b| {
        b.iter(|| {
            let ip = ipv4::Packet::new_checked(black_box(&udp4[..])).unwrap();
            let u = udp::Packet::new_checked(ip.payload()).unwrap();
            (
                ip.src_addr(),
                ip.dst_addr(),
                u.src_port(),
                u.dst_port(),
                u.payload().len(),
            )
        })
    });
    g.bench_function("tunnel_classify", |b| {
        b.iter(|| tunnel::Payload::classify(black_box(&udp4[..])).is_ok())
    });
    g.finish();

    // For scale: the full checksum pass that the incremental update avoids.
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("full_sum_1400", |b| {
        b.iter(|| checksum::sum(black_box(&udp4[..])))
    });
    let src: IpAddr = Ipv4Addr::new(100, 64, 0, 2).into();
    let dst: IpAddr = Ipv4Addr::new(198, 18, 3, 1).into();
    g.bench_function("udp4_verify_1400", |b| {
        b.iter(|| udp::Packet::new_unchecked(black_box(&udp4[20..])).verify_checksum(src, dst))
    });
    g.bench_function("incremental_addr_port", |b| {
        b.iter(|| {
            checksum::update_addr_port(
                black_box(0x1234),
                black_box(src),
                black_box(dst),
                black_box(1),
                black_box(2),
            )
        })
    });
    g.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
