//! Memory per association: heap bytes held by the registrar per associated host, measured
//! with a counting global allocator; also the CPU time (not wall time, which other load on a
//! shared machine inflates) of 100k authenticated REGISTER transactions.
//!
//!   cargo bench -p signaling-proto --bench memory
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use signaling_proto::auth::Algorithm;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// GlobalAlloc contract is upheld by `System`; we only count bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout the caller gave us (non-zero size per the GlobalAlloc contract).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System.alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: `ptr`/`layout` come from a previous allocation of ours; forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// utime + stime of this thread in clock ticks (/proc/thread-self/stat fields 14 and 15):
/// CPU time, unaffected by other load on a shared machine.
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn main() {
    const N: usize = 100_000;
    // Setup issues one challenge per user (stateless nonces: no per-user state yet).
    let mut b = common::setup(N, Algorithm::Sha256);
    // Let the challenge transactions expire (Timer J) so only associations remain after.
    b.feed(common::src(0), b"", Duration::from_secs(40));
    let requests: Vec<_> = (0..N).map(|_| b.next_request()).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let cpu0 = thread_cpu_ticks();
    for (path, data) in &requests {
        b.feed(*path, data, Duration::ZERO);
    }
    let cpu = thread_cpu_ticks().zip(cpu0).map(|(a, b)| a - b);
    let with_tx = LIVE.load(Ordering::Relaxed);
    assert_eq!(b.registrar.associations(), N);
    b.feed(common::src(0), b"", Duration::from_secs(40)); // Timer J: transactions gone
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(b.registrar.transactions(), 0);
    assert_eq!(b.registrar.associations(), N);
    drop(requests);
    let per = (after - before) as f64 / N as f64;
    let per_tx = (with_tx - after) as f64 / N as f64;
    let estimate = b.registrar.association_size("u0").unwrap();
    println!("associations: {N}");
    println!("heap per association (measured, allocator): {per:.0} bytes");
    println!("heap per live server transaction (Timer J window): {per_tx:.0} bytes");
    println!("size_of + heap estimate for one binding: {estimate} bytes");
    if let Some(ticks) = cpu {
        // USER_HZ is 100 on Linux: one tick = 10 ms of CPU.
        let secs = ticks as f64 / 100.0;
        println!(
            "CPU time for {N} new associations (authenticated REGISTER -> 200): {secs:.2} s = {:.1} us each = {:.0} per CPU-second",
            secs * 1e6 / N as f64,
            N as f64 / secs
        );
    }
}
