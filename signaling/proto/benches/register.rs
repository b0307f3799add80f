//! REGISTER transactions per second through the sans-IO registrar, one core.
//!
//!   cargo bench -p signaling-proto --bench register
//!
//! Each iteration is one complete server transaction: parse, Digest check (or challenge),
//! binding update, response encoding, transaction bookkeeping. Virtual time advances 1 ms per
//! request, so Timer J (32 s) keeps ~32k transactions alive, as at a real 1k REGISTER/s load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use signaling_proto::auth::Algorithm;

const USERS: usize = 10_000;

#[allow(clippy::disallowed_methods)] // a bench measures wall time
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}
const STEP: Duration = Duration::from_millis(1);

fn authenticated(c: &mut Criterion) {
    let mut g = c.benchmark_group("register");
    g.throughput(Throughput::Elements(1));
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let mut b = common::setup(USERS, alg);
        g.bench_function(format!("authenticated_200/{}", alg.name()), |bencher| {
            bencher.iter_custom(|iters| {
                let reqs: Vec<_> = (0..iters).map(|_| b.next_request()).collect();
                let start = wall_clock();
                for (path, data) in &reqs {
                    black_box(b.feed(*path, data, STEP));
                }
                start.elapsed()
            })
        });
        assert!(b.registrar.stats().registrations > 0);
        assert_eq!(b.registrar.stats().auth_failures, 0);
    }
    let mut b = common::setup(USERS, Algorithm::Sha256);
    let mut k = 0u64;
    g.bench_function("challenge_401", |bencher| {
        bencher.iter_custom(|iters| {
            let reqs: Vec<_> = (0..iters)
                .map(|_| {
                    k += 1;
                    let i = k as usize % USERS;
                    (
                        common::src(i),
                        common::unauthenticated(&format!("u{i}"), (1 << 40) + k),
                    )
                })
                .collect();
            let start = wall_clock();
            for (path, data) in &reqs {
                black_box(b.feed(*path, data, STEP));
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn parse_only(c: &mut Criterion) {
    let mut b = common::setup(1, Algorithm::Sha256);
    let (_, data) = b.next_request();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_authenticated_register", |bencher| {
        bencher.iter(|| black_box(signaling_proto::codec::parse(black_box(&data)).is_ok()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = authenticated, parse_only
}
criterion_main!(benches);
