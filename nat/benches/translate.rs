//! Per-packet NAT cost: outbound translate and inbound reverse translate with 1k, 100k and
//! 1M live mappings, against a `Mutex<HashMap>` baseline doing the same lookup + rewrite in
//! the same run; read throughput with 1 and 2
//! threads.
//!
//! Memory per mapping is measured by `benches/memory.rs` (fresh process per table).
//!
//! `cargo bench -p nat --bench translate -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nat::Filtering;

fn sizes() -> Vec<(usize, &'static str)> {
    vec![(1_000, "1k"), (100_000, "100k"), (1_000_000, "1M")]
}

fn per_packet(c: &mut Criterion<CpuTime>) {
    let t0 = Instant::now();
    for (n, name) in sizes() {
        let mut g = c.benchmark_group(format!("translate/{name}"));
        g.throughput(Throughput::Elements(1));
        {
            let (f, _) = nat_fixture(n, Filtering::AddressDependent, t0);
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new("nat_outbound", name), |b| {
                b.iter(|| {
                    i = (i + 1) & (SAMPLE - 1);
                    let (vipa, mut p) = f.out_packet(i);
                    black_box(f.table.translate_outbound(t0, vipa, &mut p));
                    black_box(p);
                })
            });
            g.bench_function(BenchmarkId::new("nat_inbound", name), |b| {
                b.iter(|| {
                    i = (i + 1) & (SAMPLE - 1);
                    let mut p = f.in_packet(i);
                    black_box(f.table.translate_inbound(t0, &mut p));
                    black_box(p);
                })
            });
        }
        if n == 1_000_000 {
            let (f, _) = nat_fixture(n, Filtering::EndpointIndependent, t0);
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new("nat_eif_inbound", name), |b| {
                b.iter(|| {
                    i = (i + 1) & (SAMPLE - 1);
                    let mut p = f.in_packet(i);
                    black_box(f.table.translate_inbound(t0, &mut p));
                    black_box(p);
                })
            });
        }
        {
            let (f, _) = base_fixture(n);
            let mut i = 0usize;
            let mut now = 0u64;
            g.bench_function(BenchmarkId::new("mutex_outbound", name), |b| {
                b.iter(|| {
                    i = (i + 1) & (SAMPLE - 1);
                    now += 1;
                    let (vipa, mut p) = f.out_packet(i);
                    black_box(base_outbound(&f.table, now, vipa, &mut p));
                    black_box(p);
                })
            });
            g.bench_function(BenchmarkId::new("mutex_inbound", name), |b| {
                b.iter(|| {
                    i = (i + 1) & (SAMPLE - 1);
                    let mut p = f.in_packet(i);
                    black_box(base_inbound(&f.table, &mut p));
                    black_box(p);
                })
            });
        }
        g.finish();
    }
}

/// Inbound translations with 1 and 2 threads sharing one table (1M mappings).
///
/// Measured as the CPU time summed over the threads (criterion then reports elements per
/// CPU-second): on the shared, oversubscribed 2-core VM wall time cannot show scaling, but
/// contention shows up as CPU per packet (cache-line transfers, lock spinning and futex
/// sleeps/wakeups). Equal figures for 1t and 2t mean the read path scales with cores.
fn threads(c: &mut Criterion<CpuTime>) {
    let t0 = Instant::now();
    const PER_THREAD: u64 = 50_000;
    let mut g = c.benchmark_group("read_threads/1M");
    let (nf, _) = nat_fixture(1_000_000, Filtering::AddressDependent, t0);
    let (bf, _) = base_fixture(1_000_000);
    for t in [1u64, 2] {
        g.throughput(Throughput::Elements(PER_THREAD * t));
        g.bench_function(BenchmarkId::new("nat_inbound", format!("{t}t")), |b| {
            b.iter_custom(|iters| {
                let mut cpu = 0;
                for _ in 0..iters {
                    cpu += run_threads(t, |i| {
                        let mut p = nf.in_packet(i);
                        black_box(nf.table.translate_inbound(t0, &mut p));
                    });
                }
                cpu
            })
        });
        g.bench_function(BenchmarkId::new("mutex_inbound", format!("{t}t")), |b| {
            b.iter_custom(|iters| {
                let mut cpu = 0;
                for _ in 0..iters {
                    cpu += run_threads(t, |i| {
                        let mut p = bf.in_packet(i);
                        black_box(base_inbound(&bf.table, &mut p));
                    });
                }
                cpu
            })
        });
    }
    g.finish();

    /// Runs `PER_THREAD` packets on each of `t` threads; returns their summed CPU ns.
    fn run_threads(t: u64, f: impl Fn(usize) + Sync) -> u64 {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..t)
                .map(|k| {
                    let f = &f;
                    s.spawn(move || {
                        let c0 = thread_cpu_ns();
                        let mut i = (k as usize) * 7919;
                        for _ in 0..PER_THREAD {
                            i = (i + 1) & (SAMPLE - 1);
                            f(i);
                        }
                        thread_cpu_ns().saturating_sub(c0)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        })
    }
}

criterion_group! {
    name = cpu;
    config = Criterion::default()
        .with_measurement(CpuTime)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = per_packet
}
criterion_group! {
    name = threaded;
    config = Criterion::default()
        .with_measurement(CpuTime)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = threads
}
criterion_main!(cpu, threaded);
