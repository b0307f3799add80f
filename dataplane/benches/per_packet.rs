//! Per-packet path of the data plane, without I/O: PAFT lookup (with 1M flows), and the whole
//! decision for each direction (flow key + PAFT + tunnel lookup; classify + spoof check +
//! learn + NAT hook). Run: `cargo bench -p dataplane --bench per_packet`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::bench::{BenchForwarder, Outcome};

const VIPA: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let total = 28 + len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    p
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn peers() -> [SocketAddr; 2] {
    [
        "198.18.0.1:40000".parse().unwrap(),
        "198.18.1.1:40001".parse().unwrap(),
    ]
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("dataplane");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    g.throughput(Throughput::Elements(1));

    // PAFT lookup in a table of 1M flows (random keys).
    let f = BenchForwarder::new(true, IpAddr::V4(VIPA), peers());
    let rss0 = rss_bytes();
    let keys = f.populate(IpAddr::V4(VIPA), 1 << 20);
    let rss1 = rss_bytes();
    // The keys Vec (40 B per key) is part of the delta; subtract it.
    let per_flow = (rss1.saturating_sub(rss0) as f64
        - (keys.capacity() * std::mem::size_of::<dataplane::FlowKey>()) as f64)
        / keys.len() as f64;
    println!(
        "PAFT memory: {per_flow:.0} bytes per flow (RSS delta over 1M flows, keys Vec excluded)"
    );
    let mut i = 0usize;
    g.bench_function("paft_lookup_1M_flows", |b| {
        b.iter(|| {
            i = (i + 7919) & ((1 << 20) - 1);
            black_box(f.route(&keys[i]))
        })
    });

    // Read scaling: the same lookups spread over 1 and 2 threads (time per lookup, aggregate).
    for threads in [1usize, 2] {
        g.bench_function(format!("paft_lookup_1M_flows_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let per = (iters as usize).div_ceil(threads);
                let start = std::time::Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let (f, keys) = (&f, &keys);
                        s.spawn(move || {
                            let mut i = t * 104_729;
                            for _ in 0..per {
                                i = (i + 7919) & ((1 << 20) - 1);
                                black_box(f.route(&keys[i]));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }

    // Baseline for the concurrency choice: a plain (single-threaded, unshared) hashbrown map
    // of the same 1M keys.
    let plain: hashbrown::HashMap<dataplane::FlowKey, u32> = keys.iter().map(|k| (*k, 1)).collect();
    let mut j = 0usize;
    g.bench_function("hashbrown_lookup_1M_flows_baseline", |b| {
        b.iter(|| {
            j = (j + 7919) & ((1 << 20) - 1);
            black_box(plain.get(&keys[j]).copied())
        })
    });
    // Same PAFT lookup with a small hot table (1k flows: cache-resident).
    let small = BenchForwarder::new(true, IpAddr::V4(VIPA), peers());
    let hot = small.populate(IpAddr::V4(VIPA), 1 << 10);
    let mut h = 0usize;
    g.bench_function("paft_lookup_1k_flows", |b| {
        b.iter(|| {
            h = (h + 7) & ((1 << 10) - 1);
            black_box(small.route(&hot[h]))
        })
    });

    // Mobile host uplink: TUN packet -> flow key -> PAFT -> tunnel (1M flows in the table).
    let mut pkt = udp(VIPA, Ipv4Addr::new(198, 18, 3, 1), 5000, 7, 64);
    f.set_flow(&pkt, 2);
    g.bench_function("mobile_tun_to_tunnel", |b| {
        b.iter(|| {
            let o = f.on_tun(black_box(&mut pkt));
            debug_assert_eq!(o, Outcome::Tunnel(2));
            o
        })
    });

    // Mobile host downlink: tunnel payload -> classify -> tunnel rx counter -> the flow's
    // downlink counter (flow key + PAFT look-up) -> TUN.
    let mut answer = udp(Ipv4Addr::new(198, 18, 3, 1), VIPA, 7, 5000, 64);
    let wlan = peers()[0];
    g.bench_function("mobile_tunnel_to_tun", |b| {
        b.iter(|| f.on_net(wlan, black_box(&mut answer)))
    });

    // Anchor uplink: tunnel payload -> classify -> tunnel by source -> spoof check -> learn ->
    // NAT hook (kernel NAT: identity) -> TUN.
    let an = BenchForwarder::new(false, IpAddr::V4(VIPA), peers());
    an.populate(IpAddr::V4(VIPA), 1 << 20);
    let from = peers()[1];
    let mut up = udp(VIPA, Ipv4Addr::new(198, 18, 3, 1), 5000, 7, 64);
    g.bench_function("anchor_tunnel_to_tun", |b| {
        b.iter(|| an.on_net(from, black_box(&mut up)))
    });

    // Anchor downlink: TUN packet -> reversed key -> PAFT -> tunnel.
    let mut down = udp(Ipv4Addr::new(198, 18, 3, 1), VIPA, 7, 5000, 64);
    g.bench_function("anchor_tun_to_tunnel", |b| {
        b.iter(|| an.on_tun(black_box(&mut down)))
    });

    // Anchor uplink with the `nat` crate (copy of a fresh 92-byte packet included).
    let nat = nat::Nat::new(nat::NatConfig::new(vec![Ipv4Addr::new(198, 18, 2, 100)])).unwrap();
    let napt = BenchForwarder::with_nat(
        false,
        IpAddr::V4(VIPA),
        peers(),
        Arc::new(dataplane::Napt(Arc::new(nat))),
    );
    let fresh = udp(VIPA, Ipv4Addr::new(198, 18, 3, 1), 5000, 7, 64);
    let mut buf = fresh.clone();
    g.bench_function("anchor_tunnel_to_tun_napt", |b| {
        b.iter(|| {
            buf.copy_from_slice(&fresh);
            napt.on_net(from, black_box(&mut buf))
        })
    });
    g.finish();
}

criterion_group!(per_packet, benches);
criterion_main!(per_packet);
