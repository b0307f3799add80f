//! `upmt-bench pps`: the anchor's small-packet forwarding rate per core, against the kernel
//! forwarding the same packets, side by side, interleaved, repeated.
//!
//! On the 3-namespace line ([`super::line`]). The load generator (`upmt-bench blast` /
//! `blast-tunnel`, pinned to core 1) sends 64-byte IPv4/UDP packets on many flows in
//! 64-datagram `sendmmsg` bursts, so it is not the bottleneck of a one-shard anchor:
//!
//! - **kernel**: plain packets mh -> ch, forwarded by the kernel in the anchor namespace;
//! - **upmt**: the real `upmt anchor` (one shard, pinned to core 0). A real `upmt mobile`
//!   associates and sets its tunnel up, then is killed (SIGKILL: it does not de-register),
//!   and the generator sends from that tunnel's own address and port, so the anchor sees a
//!   registered host's tunnel carrying inner packets from its VIPA (the anchor NATs them to
//!   its public address). The mobile host's own data plane, which would otherwise be the
//!   bottleneck, is out of the path.
//!
//! Counted at the correspondent's interface (a UDP socket there is never read: the kernel
//! counts and drops). Also: the anchor's CPU (process time), packets per anchor core, and
//! the anchor's data-plane syscalls per received datagram (its status counters).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::daemons::{self, Daemons, Nat, Setup};
use super::line::{self, Line, AN_LO, CH, MH_WLAN};
use super::relay::Blast;
use super::report::{self, Machine};
use super::stats::{self, Spread};
use super::testbed;
use perf::sys;

const SINK_PORT: u16 = 9;

/// Command-line options of `upmt-bench pps`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Short run (2 s per test, one round): smoke runs, CI.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Rounds (default 3, 1 with --quick).
    #[arg(long)]
    pub(crate) repeats: Option<u32>,
    /// Seconds of load per test (default 5, 2 with --quick).
    #[arg(long)]
    pub(crate) secs: Option<u32>,
    /// Inner packet size in bytes (IPv4 + UDP + payload).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Flows (inner UDP source ports) the generator cycles through.
    #[arg(long, default_value_t = 64)]
    pub(crate) flows: usize,
    /// Generator threads (one socket).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Namespace prefix (default `up<pid>-`).
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// The UPMT checkout (default: found from the current directory or the executable).
    #[arg(long)]
    pub(crate) repo: Option<PathBuf>,
}

/// One variant in one round.
#[derive(Debug, Clone, Default, Serialize)]
struct Sample {
    variant: &'static str,
    round: u32,
    offered_pps: Option<f64>,
    delivered_pps: Option<f64>,
    /// CPU of the anchor process (UPMT), or busy cores of the whole machine (kernel).
    anchor_cores: Option<f64>,
    delivered_pps_per_anchor_core: Option<f64>,
    anchor_syscalls_per_packet: Option<f64>,
    send_errors: u64,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Summary {
    variant: &'static str,
    offered_pps: Option<Spread>,
    delivered_pps: Option<Spread>,
    anchor_cores: Option<Spread>,
    delivered_pps_per_anchor_core: Option<Spread>,
    anchor_syscalls_per_packet: Option<Spread>,
    note: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    tool: &'static str,
    date_unix_s: u64,
    machine: Machine,
    quick: bool,
    rounds: u32,
    secs_per_test: u32,
    packet_bytes: usize,
    flows: usize,
    generator_threads: usize,
    upmt_bin: String,
    summary: &'a [Summary],
    samples: &'a [Sample],
    /// UPMT's median delivered rate over the kernel's.
    ratio_upmt_to_kernel: Option<f64>,
}

/// Runs the generator (`upmt-bench ARGS`) in the mobile host's namespace on core 1.
fn generator(line: &Line, exe: &Path, args: &[String]) -> Result<Blast> {
    let mut c = line.cmd("mh", Path::new("taskset"));
    c.args(["-c", "1"]).arg(exe).args(args);
    let out = c.output().context("running the load generator")?;
    if !out.status.success() {
        bail!(
            "load generator failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("load generator output")
}

/// Runs the generator and counts what reaches ch; `pids`: the anchor's (for its CPU).
fn load(line: &Line, exe: &Path, args: &[String], pids: &[u32]) -> Result<(Blast, f64, f64)> {
    let ch = line.ns("ch");
    let (p0, _) = line::rx_counters(&ch, "eth0")?;
    let cpu0 = stats::machine_cpu();
    let ticks0 = stats::pids_ticks(pids);
    let t0 = Instant::now();
    let b = generator(line, exe, args)?;
    let dt = t0.elapsed().as_secs_f64();
    let ticks1 = stats::pids_ticks(pids);
    let cpu1 = stats::machine_cpu();
    let (p1, _) = line::rx_counters(&ch, "eth0")?;
    // The generator's own start and end are outside its sending time: count over `b.secs`
    // (what reached ch while it sent; the tail drains within microseconds).
    let delivered = stats::rate(p0, p1, b.secs).unwrap_or(0.0);
    let cores = if pids.is_empty() {
        match (cpu0, cpu1) {
            (Some(a), Some(c)) => stats::machine_cores(a, c, stats::ncpu()).unwrap_or(0.0),
            _ => 0.0,
        }
    } else {
        stats::process_cores(ticks1.saturating_sub(ticks0), sys::clock_ticks(), dt).unwrap_or(0.0)
    };
    Ok((b, delivered, cores))
}

fn sample(variant: &'static str, round: u32, r: Result<(Blast, f64, f64)>) -> Sample {
    match r {
        Ok((b, delivered, cores)) => Sample {
            variant,
            round,
            offered_pps: stats::rate(0, b.sent, b.secs),
            delivered_pps: Some(delivered),
            anchor_cores: Some(cores),
            delivered_pps_per_anchor_core: stats::ratio(delivered, cores),
            send_errors: b.send_errors,
            ..Sample::default()
        },
        Err(e) => Sample {
            variant,
            round,
            error: Some(format!("{e:#}")),
            ..Sample::default()
        },
    }
}

/// The anchor's (datagrams received, syscalls) from its status.
fn anchor_counters(line: &Line, upmt: &Path) -> Option<(u64, u64)> {
    let s = daemons::status(line, upmt, "an").ok()?;
    let d = s.get("dataplane")?;
    Some((
        d.get("net_rx_packets")?.as_u64()?,
        d.get("syscalls")?.as_u64()?,
    ))
}

/// The mobile host's VIPA and its first ready tunnel's local address.
fn tunnel_of(status: &serde_json::Value) -> Option<(Ipv4Addr, SocketAddr)> {
    let vipa = status.get("vipa")?.as_str()?.parse().ok()?;
    let local = status
        .get("tunnels")?
        .as_array()?
        .iter()
        .find(|t| t.get("state").and_then(|s| s.as_str()) == Some("up"))?
        .get("local")?
        .as_str()?
        .parse()
        .ok()?;
    Some((vipa, local))
}

fn upmt_round(
    line: &mut Line,
    exe: &Path,
    upmt: &Path,
    o: &Options,
    secs: u32,
    round: u32,
) -> Sample {
    let setup = Setup {
        nat: Nat::Upmt,
        offload: Some(true),
        shards: Some(1),
    };
    let d = match Daemons::start(line, upmt, setup, true, 0, 16) {
        Ok(d) => d,
        Err(e) => return sample("upmt-anchor", round, Err(e)),
    };
    let r = (|| -> Result<(Blast, f64, f64, Option<f64>)> {
        let st = daemons::status(line, upmt, "mh")?;
        let (vipa, local) = tunnel_of(&st).context("no tunnel up in the mobile host's status")?;
        // The host goes without de-registering: its tunnel stays at the anchor.
        line.kill("mobile");
        let args: Vec<String> = vec![
            "blast-tunnel".into(),
            "--bind".into(),
            local.to_string(),
            "--anchor".into(),
            format!("{AN_LO}:1800"),
            "--vipa".into(),
            vipa.to_string(),
            "--dst".into(),
            format!("{CH}:{SINK_PORT}"),
            "--threads".into(),
            o.threads.to_string(),
            "--flows".into(),
            o.flows.to_string(),
            "--size".into(),
            o.size.to_string(),
            "--secs".into(),
            secs.to_string(),
        ];
        let c0 = anchor_counters(line, upmt);
        let (b, delivered, cores) = load(line, exe, &args, &[d.anchor_pid])?;
        let c1 = anchor_counters(line, upmt);
        let per = match (c0, c1) {
            (Some((r0, s0)), Some((r1, s1))) if r1 > r0 && s1 >= s0 => {
                Some((s1 - s0) as f64 / (r1 - r0) as f64)
            }
            _ => None,
        };
        Ok((b, delivered, cores, per))
    })();
    d.stop(line);
    match r {
        Ok((b, delivered, cores, per)) => Sample {
            anchor_syscalls_per_packet: per,
            ..sample("upmt-anchor", round, Ok((b, delivered, cores)))
        },
        Err(e) => sample("upmt-anchor", round, Err(e)),
    }
}

fn summarise(samples: &[Sample]) -> Vec<Summary> {
    ["kernel-forwarding", "upmt-anchor"]
        .iter()
        .map(|v| {
            let ss: Vec<&Sample> = samples.iter().filter(|s| s.variant == *v).collect();
            let sp = |f: &dyn Fn(&Sample) -> Option<f64>| {
                stats::spread(&ss.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
            };
            Summary {
                variant: v,
                offered_pps: sp(&|s| s.offered_pps),
                delivered_pps: sp(&|s| s.delivered_pps),
                anchor_cores: sp(&|s| s.anchor_cores),
                delivered_pps_per_anchor_core: sp(&|s| s.delivered_pps_per_anchor_core),
                anchor_syscalls_per_packet: sp(&|s| s.anchor_syscalls_per_packet),
                note: ss.iter().find_map(|s| s.error.clone()),
            }
        })
        .collect()
}

fn table(summary: &[Summary]) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<18} {:>18} {:>18} {:>12} {:>16} {:>10}",
        "anchor", "offered kpps", "delivered kpps", "cores", "kpps per core", "sysc/pkt"
    );
    for s in summary {
        let _ = writeln!(
            t,
            "{:<18} {:>18} {:>18} {:>12} {:>16} {:>10}",
            s.variant,
            report::kpps(s.offered_pps.as_ref()),
            report::kpps(s.delivered_pps.as_ref()),
            report::num(s.anchor_cores.map(|x| x.median), 2),
            report::kpps(s.delivered_pps_per_anchor_core.as_ref()),
            report::num(s.anchor_syscalls_per_packet.map(|x| x.median), 3),
        );
    }
    for s in summary {
        if let Some(n) = &s.note {
            let _ = writeln!(t, "note {}: {n}", s.variant);
        }
    }
    t
}

fn ratio(summary: &[Summary]) -> Option<f64> {
    let m = |v: &str| {
        summary
            .iter()
            .find(|s| s.variant == v)
            .and_then(|s| s.delivered_pps.map(|x| x.median))
    };
    stats::ratio(m("upmt-anchor")?, m("kernel-forwarding")?)
}

/// `upmt-bench pps`.
pub(crate) fn main(o: &Options) -> Result<()> {
    line::require("pps", &["ip", "nft", "taskset"])?;
    let root = testbed::find_root(o.repo.as_deref())?;
    let upmt = testbed::upmt_bin(&root)?;
    let exe = std::env::current_exe().context("locating upmt-bench")?;
    let rounds = o.repeats.unwrap_or(if o.quick { 1 } else { 3 }).max(1);
    let secs = o.secs.unwrap_or(if o.quick { 2 } else { 5 }).max(1);
    let prefix = o
        .prefix
        .clone()
        .unwrap_or_else(|| format!("up{}-", std::process::id()));
    let machine = report::machine();
    let t_start = Instant::now();
    eprintln!(
        "upmt-bench pps: line {prefix} (upmt: {}), {} B packets, {} flows, {rounds} round(s) of {secs} s, load {}",
        upmt.display(),
        o.size,
        o.flows,
        machine.load_at_start
    );
    let mut line = Line::up(&prefix)?;
    let mut sink = line.cmd("ch", &exe);
    sink.args(["sink", "--bind", &format!("{CH}:{SINK_PORT}")]);
    line.spawn("sink", sink, None)?;
    let kernel_args: Vec<String> = vec![
        "blast".into(),
        "--to".into(),
        format!("{CH}:{SINK_PORT}"),
        "--src".into(),
        MH_WLAN.into(),
        "--threads".into(),
        o.threads.to_string(),
        "--flows".into(),
        o.flows.max(o.threads).to_string(),
        "--size".into(),
        o.size.saturating_sub(28).max(1).to_string(),
        "--secs".into(),
        secs.to_string(),
    ];
    let mut samples = Vec::new();
    for round in 1..=rounds {
        eprint!(
            "  {} round {round}/{rounds}: kernel ... ",
            report::progress(round - 1, rounds)
        );
        let k = sample(
            "kernel-forwarding",
            round,
            load(&line, &exe, &kernel_args, &[]),
        );
        eprint!(
            "{} kpps; upmt ... ",
            report::num(k.delivered_pps.map(|x| x / 1e3), 0)
        );
        samples.push(k);
        let u = upmt_round(&mut line, &exe, &upmt, o, secs, round);
        eprintln!(
            "{} kpps{}",
            report::num(u.delivered_pps.map(|x| x / 1e3), 0),
            u.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        samples.push(u);
    }
    line.down();
    drop(line);
    let summary = summarise(&samples);
    let r = ratio(&summary);
    println!(
        "\nsmall-packet forwarding, {} B IPv4/UDP, {} flows, generator on core 1 (sendmmsg x64), anchor 1 shard on core 0:\nmedian [range] of {rounds} round(s), {secs} s each\n",
        o.size, o.flows
    );
    print!("{}", table(&summary));
    println!(
        "\ndelivered: packets at ch's eth0; cores: the anchor process's CPU (upmt) or the machine's busy cores (kernel:\n\
         its forwarding runs in softirq on the sender's core); sysc/pkt: anchor data-plane syscalls per datagram received.\n\
         upmt / kernel delivered: {}",
        report::num(r, 2)
    );
    eprintln!("  done in {:.0} s", t_start.elapsed().as_secs_f64());
    if let Some(p) = &o.json {
        report::write_json(
            p,
            &Report {
                tool: "upmt-bench pps",
                date_unix_s: report::unix_s(),
                machine,
                quick: o.quick,
                rounds,
                secs_per_test: secs,
                packet_bytes: o.size,
                flows: o.flows,
                generator_threads: o.threads,
                upmt_bin: upmt.display().to_string(),
                summary: &summary,
                samples: &samples,
                ratio_upmt_to_kernel: r,
            },
        )?;
    }
    Ok(())
}

/// `upmt-bench blast-tunnel` (arguments parsed by clap in the binary): prints the JSON.
#[allow(clippy::too_many_arguments)]
pub(crate) fn blast_tunnel_main(
    bind: SocketAddr,
    anchor: SocketAddr,
    vipa: Ipv4Addr,
    dst: SocketAddrV4,
    threads: usize,
    flows: usize,
    size: usize,
    secs: f64,
) -> Result<()> {
    let b = super::relay::blast_tunnel(bind, anchor, vipa, dst, threads, flows, size, secs)?;
    serde_json::to_writer(std::io::stdout().lock(), &b)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_from_status() {
        let st: serde_json::Value = serde_json::from_str(
            r#"{"vipa":"100.64.0.2","tunnels":[{"state":"probing","local":"1.2.3.4:5"},
            {"state":"up","local":"192.168.100.25:40000"}]}"#,
        )
        .unwrap();
        assert_eq!(
            tunnel_of(&st),
            Some((
                Ipv4Addr::new(100, 64, 0, 2),
                "192.168.100.25:40000".parse().unwrap()
            ))
        );
        assert_eq!(tunnel_of(&serde_json::json!({"vipa": null})), None);
    }

    #[test]
    fn summary_and_ratio() {
        let mk = |v, d: f64| Sample {
            variant: v,
            delivered_pps: Some(d),
            anchor_cores: Some(1.0),
            delivered_pps_per_anchor_core: Some(d),
            ..Sample::default()
        };
        let s = summarise(&[
            mk("kernel-forwarding", 400e3),
            mk("upmt-anchor", 100e3),
            mk("kernel-forwarding", 500e3),
            mk("upmt-anchor", 120e3),
            mk("kernel-forwarding", 450e3),
            Sample {
                error: Some("boom".into()),
                ..Sample::default()
            },
        ]);
        assert_eq!(s[0].delivered_pps.map(|x| x.median), Some(450e3));
        assert_eq!(s[1].delivered_pps.map(|x| x.median), Some(110e3));
        assert!((ratio(&s).unwrap() - 110.0 / 450.0).abs() < 1e-9);
        let t = table(&s);
        assert!(t.contains("450 [400-500]"), "{t}");
    }

    #[test]
    fn inner_packets_are_valid() {
        let p = super::super::relay::inner_udp(
            Ipv4Addr::new(100, 64, 0, 2),
            Ipv4Addr::new(198, 18, 3, 1),
            20000,
            9,
            64,
        );
        assert_eq!(p.len(), 64);
        let key = wire::FlowKey::from_ip_packet(&p).unwrap();
        assert_eq!(key.src_port, 20000);
        assert_eq!(wire::checksum::sum(&p[..20]), 0xffff);
        let ph = wire::checksum::pseudo_header_v4(
            Ipv4Addr::new(100, 64, 0, 2),
            Ipv4Addr::new(198, 18, 3, 1),
            wire::IpProtocol::Udp,
            44,
        );
        assert_eq!(
            wire::checksum::combine(&[ph, wire::checksum::sum(&p[20..])]),
            0xffff
        );
    }
}
