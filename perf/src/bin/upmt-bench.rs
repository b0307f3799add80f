//! `upmt-bench`: the UPMT benchmark harness (issue 8). Every subcommand needs root.
//!
//! ```text
//! upmt-bench throughput [--quick] [--repeats N] [--secs S] [--json FILE] [--svg FILE] [--only V,..]
//! upmt-bench handover   [--quick] [--repeats N] [--json FILE] [--svg FILE] [--only S,..]
//! upmt-bench pps        [--quick] [--repeats N] [--secs S] [--size B] [--flows N] [--json FILE]
//! upmt-bench scale      [--quick] [--registrations N] [--hosts N] [--flows-per-host N] [--json FILE]
//! ```
//! Each builds namespaces of its own (unique prefix, removed at the end even on error),
//! starts UPMT and its anchors side by side, prints a table and writes JSON (and SVG
//! plots). See docs/benchmarks/harness.md.
//!
//! `probe`, `relay`, `blast`, `blast-tunnel`, `sim-hosts` and `sink` are internal: the pieces the harness
//! runs inside the namespaces (the handover probe, the naive relay anchor, the load
//! generators, many simulated mobile hosts, a receiver that is never read).

#[path = "../harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "upmt-bench", about = "UPMT benchmark harness")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Handover scenarios through UPMT (needs root).
    Handover(harness::handover::Options),
    /// Throughput of UPMT against kernel routing, kernel VXLAN and a naive relay (needs root).
    Throughput(harness::throughput::Options),
    /// Small-packet forwarding rate of the anchor per core (needs root).
    Pps(harness::pps::Options),
    /// The anchor with many mobile hosts (needs root).
    Scale(harness::scale::Options),
    /// Internal: the naive one-packet-per-syscall TUN <-> UDP relay (an anchor of `throughput`).
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        tun: String,
        #[arg(long)]
        local: SocketAddr,
        #[arg(long)]
        peer: SocketAddr,
    },
    /// Internal: the small-packet load generator (`sendmmsg` batches); prints JSON.
    #[command(hide = true)]
    Blast {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        src: std::net::IpAddr,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 8)]
        flows: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Datagrams per send with UDP_SEGMENT (0: sendmmsg of single datagrams).
        #[arg(long, default_value_t = 0)]
        gso: usize,
    },
    /// Internal: inner packets through a registered tunnel, from its own address (`pps`).
    #[command(hide = true)]
    BlastTunnel {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        anchor: SocketAddr,
        #[arg(long)]
        vipa: std::net::Ipv4Addr,
        #[arg(long)]
        dst: std::net::SocketAddrV4,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 64)]
        flows: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Internal: many simulated mobile hosts with a tunnel and flows each (`scale`).
    #[command(hide = true)]
    SimHosts(harness::simhosts::Args),
    /// Internal: a UDP socket that is never read (the kernel counts and drops).
    #[command(hide = true)]
    Sink {
        #[arg(long)]
        bind: SocketAddr,
    },
    /// Internal: send a constant-rate UDP probe to an echo server and print the trace.
    #[command(hide = true)]
    Probe {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        interval_us: u64,
        #[arg(long, default_value_t = 5000)]
        duration_ms: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Handover(o) => harness::handover::main(&o),
        Cmd::Throughput(o) => harness::throughput::main(&o),
        Cmd::Pps(o) => harness::pps::main(&o),
        Cmd::Scale(o) => harness::scale::main(&o),
        Cmd::Relay { tun, local, peer } => harness::relay::relay(&tun, local, peer),
        Cmd::Blast {
            to,
            src,
            threads,
            flows,
            size,
            secs,
            gso,
        } => harness::relay::blast(to, src, threads, flows, size, secs, gso).and_then(|b| {
            serde_json::to_writer(std::io::stdout().lock(), &b).map_err(anyhow::Error::from)
        }),
        Cmd::BlastTunnel {
            bind,
            anchor,
            vipa,
            dst,
            threads,
            flows,
            size,
            secs,
        } => harness::pps::blast_tunnel_main(bind, anchor, vipa, dst, threads, flows, size, secs),
        Cmd::SimHosts(a) => harness::simhosts::main(&a),
        Cmd::Sink { bind } => harness::relay::sink(bind),
        Cmd::Probe {
            to,
            interval_us,
            duration_ms,
        } => harness::probe::run(
            to,
            Duration::from_micros(interval_us),
            Duration::from_millis(duration_ms),
        )
        .map_err(anyhow::Error::from)
        .and_then(|t| {
            serde_json::to_writer(std::io::stdout().lock(), &t).map_err(anyhow::Error::from)
        }),
    };
    if let Err(e) = result {
        eprintln!("upmt-bench: {e:#}");
        std::process::exit(1);
    }
}
