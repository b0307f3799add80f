//! Cost of the emulator's sans-IO core per frame: `handle_frame` (loss draw, jitter sample,
//! copy into a recycled buffer, enqueue) plus `poll_transmit` and `recycle`. The syscalls
//! (AF_PACKET recv/send) come on top; see docs/benchmarks/perf.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use perf::linkemu::{Config, Dir, DirConfig, Link};

fn frame_through_link(c: &mut Criterion) {
    let mut g = c.benchmark_group("linkemu");
    for (name, up) in [
        ("plain", DirConfig::default()),
        (
            "delay_jitter_loss",
            DirConfig {
                delay: Duration::from_millis(40),
                jitter: Duration::from_millis(5),
                loss: 0.2,
            },
        ),
    ] {
        for size in [64usize, 1514] {
            let mut link = Link::new(&Config {
                up,
                ..Config::default()
            });
            let frame = vec![0xabu8; size];
            let t0 = Instant::now();
            let mut i = 0u64;
            g.throughput(Throughput::Elements(1));
            g.bench_function(format!("{name}/{size}B"), |b| {
                b.iter(|| {
                    // A virtual clock 10 us per frame: the queue holds ~4000 frames at 40 ms.
                    i += 1;
                    let now = t0 + Duration::from_micros(i * 10);
                    link.handle_frame(Dir::Up, now, black_box(&frame));
                    while let Some(tx) = link.poll_transmit(now) {
                        link.note_sent(tx.dir, tx.data.len());
                        link.recycle(tx.data);
                    }
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, frame_through_link);
criterion_main!(benches);
