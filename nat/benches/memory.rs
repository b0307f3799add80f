//! Bytes of memory per mapping: each table is built in a fresh child process and the
//! process RSS grows by (table + allocator overhead); divided by the number of mappings.
//! No allocator hooks (the crate forbids `unsafe`), so this is RSS, page-granular, which
//! is what the anchor pays.
//!
//! `cargo bench -p nat --bench memory`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;
use nat::Filtering;

fn child(kind: &str, n: usize) {
    let rss = match kind {
        "nat-adf" => nat_fixture(n, Filtering::AddressDependent, Instant::now()).1,
        "nat-eif" => nat_fixture(n, Filtering::EndpointIndependent, Instant::now()).1,
        _ => base_fixture(n).1,
    };
    println!("{}", rss as f64 / n as f64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` compatibility
    }
    let exe = std::env::current_exe().unwrap();
    println!("{:<44} {:>10} {:>12}", "table", "mappings", "B/mapping");
    for (kind, label) in [
        ("nat-adf", "nat, address-dependent filtering (default)"),
        ("nat-eif", "nat, endpoint-independent filtering"),
        ("mutex", "Mutex<hashbrown::HashMap> baseline"),
    ] {
        for n in [100_000usize, 1_000_000] {
            let out = Command::new(&exe)
                .args(["--child", kind, &n.to_string()])
                .output()
                .unwrap();
            let v = String::from_utf8_lossy(&out.stdout);
            println!(
                "{:<44} {:>10} {:>12.0}",
                label,
                n,
                v.trim().parse::<f64>().unwrap_or(f64::NAN)
            );
        }
    }
}
