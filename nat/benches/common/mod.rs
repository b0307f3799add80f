//! Fixtures shared by the NAT benches: a `Nat` or a `Mutex<HashMap>` baseline holding `n`
//! UDP mappings, and 64k packets of randomly picked flows in both directions.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Instant;

use nat::{Filtering, Nat, NatConfig, Verdict};
use wire::checksum::Delta;

pub const FLOWS_PER_HOST: usize = 1000;
pub const CH: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
pub const SAMPLE: usize = 1 << 16;
pub const PKT: usize = 36;

pub fn publics() -> Vec<Ipv4Addr> {
    (0..32)
        .map(|i| Ipv4Addr::new(198, 18, 2, 100 + i))
        .collect()
}

pub fn flow(i: usize) -> (Ipv4Addr, u16) {
    let host = u32::try_from(i / FLOWS_PER_HOST).unwrap() + 1;
    let vipa = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + host);
    (vipa, 10_000 + u16::try_from(i % FLOWS_PER_HOST).unwrap())
}

pub fn csum(data: &[u8]) -> u16 {
    wire::checksum::checksum(data)
}

/// IPv4/UDP, 8 bytes of payload, valid checksums.
pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> [u8; PKT] {
    let mut p = [0u8; PKT];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(PKT as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = csum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&16u16.to_be_bytes());
    p[28..].copy_from_slice(b"payload!");
    let ps = wire::checksum::pseudo_header_v4(src, dst, wire::IpProtocol::Udp, 16);
    let c = !wire::checksum::combine(&[ps, wire::checksum::sum(&p[20..])]);
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}

pub fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A tiny deterministic RNG for picking flows.
pub fn picks(n: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..SAMPLE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

/// A table plus the flows to drive through it. The packet is one hot template whose
/// addresses and ports are patched per packet from a compact, sequentially read flow list
/// (as a data plane's freshly received buffer is hot), while the flows are picked at random
/// across the whole table (so the table itself is cold at 100k and 1M mappings).
pub struct Fixture<T> {
    pub table: T,
    /// Outbound flows: (VIPA, host port).
    pub out: Vec<(Ipv4Addr, u16)>,
    /// Inbound flows: (public address, public port).
    pub inb: Vec<(Ipv4Addr, u16)>,
    pub out_template: [u8; PKT],
    pub in_template: [u8; PKT],
}

impl<T> Fixture<T> {
    /// The i-th outbound packet (template patched with the flow's source).
    #[inline]
    pub fn out_packet(&self, i: usize) -> (Ipv4Addr, [u8; PKT]) {
        let (vipa, port) = self.out[i];
        let mut p = self.out_template;
        p[12..16].copy_from_slice(&vipa.octets());
        p[20..22].copy_from_slice(&port.to_be_bytes());
        (vipa, p)
    }

    /// The i-th inbound packet (template patched with the flow's destination).
    #[inline]
    pub fn in_packet(&self, i: usize) -> [u8; PKT] {
        let (public, port) = self.inb[i];
        let mut p = self.in_template;
        p[16..20].copy_from_slice(&public.octets());
        p[22..24].copy_from_slice(&port.to_be_bytes());
        p
    }
}

pub fn nat_fixture(n: usize, filtering: Filtering, t0: Instant) -> (Fixture<Nat>, usize) {
    let mut c = NatConfig::new(publics());
    c.filtering = filtering;
    c.max_mappings_per_host = FLOWS_PER_HOST;
    let rss0 = rss_bytes();
    let nat = Nat::new(c).unwrap();
    let mut mapped = Vec::with_capacity(n);
    for i in 0..n {
        let (vipa, port) = flow(i);
        let mut p = udp(vipa, port, CH, 53);
        assert_eq!(
            nat.translate_outbound(t0, vipa, &mut p),
            Verdict::ToInternet
        );
        let public = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        mapped.push((public, u16::from_be_bytes([p[20], p[21]])));
    }
    assert_eq!(nat.len(), n);
    let rss = rss_bytes()
        .saturating_sub(rss0)
        .saturating_sub(mapped.capacity() * 8);
    (fixture(nat, n, &mapped), rss)
}

fn fixture<T>(table: T, n: usize, mapped: &[(Ipv4Addr, u16)]) -> Fixture<T> {
    let idx = picks(n, 0x9e37_79b9);
    Fixture {
        table,
        out: idx.iter().map(|&i| flow(i)).collect(),
        inb: idx.iter().map(|&i| mapped[i]).collect(),
        out_template: udp(flow(0).0, flow(0).1, CH, 53),
        in_template: udp(CH, 53, mapped[0].0, mapped[0].1),
    }
}

// ---- the baseline: the same mapping and rewrite behind one Mutex<HashMap> ----

#[derive(Clone, Copy)]
pub struct Entry {
    vipa: Ipv4Addr,
    vport: u16,
    public: Ipv4Addr,
    pport: u16,
    last: u64,
}

#[derive(Default)]
pub struct Baseline {
    out: hashbrown::HashMap<(u32, u16), Entry>,
    inb: hashbrown::HashMap<(u32, u16), Entry>,
}

pub fn rewrite_udp(p: &mut [u8], src: Option<(Ipv4Addr, u16)>, dst: Option<(Ipv4Addr, u16)>) {
    let mut d = Delta::default();
    if let Some((a, port)) = src {
        let old = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        d.addr(old.into(), a.into());
        p[12..16].copy_from_slice(&a.octets());
        let c = d.apply(u16::from_be_bytes([p[10], p[11]]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        d.word(u16::from_be_bytes([p[20], p[21]]), port);
        p[20..22].copy_from_slice(&port.to_be_bytes());
    }
    if let Some((a, port)) = dst {
        let old = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        d.addr(old.into(), a.into());
        p[16..20].copy_from_slice(&a.octets());
        let c = d.apply(u16::from_be_bytes([p[10], p[11]]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        d.word(u16::from_be_bytes([p[22], p[23]]), port);
        p[22..24].copy_from_slice(&port.to_be_bytes());
    }
    let c = d.apply_udp(u16::from_be_bytes([p[26], p[27]]), true);
    p[26..28].copy_from_slice(&c.to_be_bytes());
}

pub fn base_outbound(b: &Mutex<Baseline>, now: u64, vipa: Ipv4Addr, p: &mut [u8]) -> bool {
    let sport = u16::from_be_bytes([p[20], p[21]]);
    let e = {
        let mut g = b.lock().unwrap();
        match g.out.get_mut(&(u32::from(vipa), sport)) {
            Some(e) => {
                e.last = now;
                *e
            }
            None => return false,
        }
    };
    rewrite_udp(p, Some((e.public, e.pport)), None);
    true
}

pub fn base_inbound(b: &Mutex<Baseline>, p: &mut [u8]) -> Option<Ipv4Addr> {
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let dport = u16::from_be_bytes([p[22], p[23]]);
    let e = *b.lock().unwrap().inb.get(&(u32::from(dst), dport))?;
    rewrite_udp(p, None, Some((e.vipa, e.vport)));
    Some(e.vipa)
}

pub fn base_fixture(n: usize) -> (Fixture<Mutex<Baseline>>, usize) {
    let rss0 = rss_bytes();
    let pubs = publics();
    let mut b = Baseline::default();
    let mut mapped = Vec::with_capacity(n);
    for i in 0..n {
        let (vipa, vport) = flow(i);
        let public = pubs[i % pubs.len()];
        let pport = 10_000 + u16::try_from(i / pubs.len() % 50_000).unwrap();
        let e = Entry {
            vipa,
            vport,
            public,
            pport,
            last: 0,
        };
        b.out.insert((u32::from(vipa), vport), e);
        b.inb.insert((u32::from(public), pport), e);
        mapped.push((public, pport));
    }
    let rss = rss_bytes()
        .saturating_sub(rss0)
        .saturating_sub(mapped.capacity() * 8);
    (fixture(Mutex::new(b), n, &mapped), rss)
}

// ---- CPU-time measurement ----

/// This thread's CPU time in ns, from `/proc/thread-self/schedstat` (no `unsafe`, no libc).
/// The kernel updates it at scheduler ticks and switches, so samples are kept long
/// (hundreds of ms) to make the tick granularity negligible.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

/// A criterion measurement of the benchmark thread's CPU time instead of wall time: on a
/// shared 2-core VM with other jobs running, wall time mostly measures the scheduler.
/// (Cache pollution by the neighbours is still in it.)
pub struct CpuTime;

/// Formats CPU nanoseconds.
pub struct CpuNs;

impl criterion::measurement::ValueFormatter for CpuNs {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns(cpu)"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &criterion::Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let n = match throughput {
            criterion::Throughput::Elements(n) | criterion::Throughput::Bytes(n) => *n as f64,
            _ => 1.0,
        };
        for v in values.iter_mut() {
            *v = n * 1e3 / v.max(1e-9);
        }
        "Melem/s(cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl criterion::measurement::Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        &CpuNs
    }
}
