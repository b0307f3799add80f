//! `upmt-bench throughput`: UPMT against the anchors, side by side, interleaved, repeated.
//!
//! On the harness's own 3-namespace line ([`super::line`]), every round runs every variant
//! once, in the same order, so slow phases of a shared machine hit all of them alike:
//!
//! - **kernel routing**: no tunnel at all (the physical limit of the line);
//! - **kernel VXLAN**: the in-kernel UDP tunnel (VNI 42, UDP 4789);
//! - **naive relay**: TUN <-> UDP, one packet per syscall, two blocking threads per end
//!   ([`super::relay`]);
//! - **UPMT**: the real `upmt anchor` and `upmt mobile` daemons, with UPMT's own NAT and with
//!   the kernel-nftables NAT mode, offloads on and off.
//!
//! Per variant and round: a single TCP flow and 4 TCP flows (iperf3, receiver's goodput), and
//! UDP at full rate (iperf3 `-u -b 0`, 1200-byte datagrams) counted at the correspondent's
//! interface: iperf3's UDP receiver is itself a bottleneck on 2 cores; and UDP from one
//! socket sending 32 datagrams per send with `UDP_SEGMENT` (`upmt-bench blast --gso`, to a
//! never-read socket on ch), which UPMT with offload reads from its TUN as USO
//! super-packets. CPU: the machine's
//! busy cores during the single-flow run (`/proc/stat`) per Gb/s. For UPMT the mobile host's
//! data-plane syscalls per inner packet (its status counters). The table gives the median
//! and range over the rounds and the ratio of each UPMT variant's median to each anchor's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::daemons::{self, Daemons, Nat, Refused, Setup};
use super::line::{self, Line, CH, MH_WLAN, RELAY_MH, VX_MH};
use super::relay::Blast;
use super::report::{self, Machine};
use super::stats::{self, Spread};
use super::svg;
use super::testbed;
use perf::sys;

const IPERF_PORT: u16 = 5201;
/// UDP payload of the full-rate test: fits every variant's inner MTU (VXLAN: 1450).
const UDP_LEN: u32 = 1200;
/// Datagrams per send of the UDP GSO test (`UDP_SEGMENT` = `UDP_LEN`).
const GSO_SEGMENTS: u32 = 32;
/// ch's never-read UDP socket, the GSO test's destination.
const SINK_PORT: u16 = 9;

/// Command-line options of `upmt-bench throughput`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Short runs (2 s per test, one round, fewer UPMT variants): smoke runs, CI.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Rounds (every variant once per round; default 3, 1 with --quick).
    #[arg(long)]
    pub(crate) repeats: Option<u32>,
    /// Seconds per test (default 5, 2 with --quick).
    #[arg(long)]
    pub(crate) secs: Option<u32>,
    /// Write the figures as JSON here (the plot goes next to it as .svg).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write the bar plot here (default: next to --json).
    #[arg(long)]
    pub(crate) svg: Option<PathBuf>,
    /// Namespace prefix (default `ut<pid>-`).
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// The UPMT checkout (default: found from the current directory or the executable).
    #[arg(long)]
    pub(crate) repo: Option<PathBuf>,
    /// Only these variants (comma-separated names, see the table; default all).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Shards of the anchor in the UPMT variants (pinned; default one per core). Variant
    /// names get `-shardsN`; `--only` takes the names without it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) anchor_shards: Option<u32>,
}

/// What carries the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Routing,
    Vxlan,
    Relay,
    Upmt(Setup),
}

impl Variant {
    fn name(self) -> String {
        match self {
            Variant::Routing => "kernel-routing".into(),
            Variant::Vxlan => "kernel-vxlan".into(),
            Variant::Relay => "naive-relay".into(),
            Variant::Upmt(s) => {
                format!(
                    "upmt-{}-nat{}",
                    match s.nat {
                        Nat::Upmt => "upmt",
                        Nat::Kernel => "kernel",
                    },
                    match s.offload {
                        Some(true) => "-offload",
                        Some(false) => "-no-offload",
                        None => "",
                    }
                ) + &s.shards.map(|n| format!("-shards{n}")).unwrap_or_default()
            }
        }
    }

    fn anchor(self) -> bool {
        !matches!(self, Variant::Upmt(_))
    }

    /// The source address that selects this path on the mobile host (`None`: the VIPA,
    /// UPMT's default route).
    fn source(self) -> Option<&'static str> {
        match self {
            Variant::Routing => Some(MH_WLAN),
            Variant::Vxlan => Some(VX_MH),
            Variant::Relay => Some(RELAY_MH),
            Variant::Upmt(_) => None,
        }
    }
}

fn upmt(nat: Nat, offload: bool) -> Variant {
    Variant::Upmt(Setup {
        nat,
        offload: Some(offload),
        shards: None,
    })
}

fn variants(quick: bool) -> Vec<Variant> {
    let mut v = vec![
        Variant::Routing,
        Variant::Vxlan,
        Variant::Relay,
        upmt(Nat::Upmt, true),
        upmt(Nat::Upmt, false),
        upmt(Nat::Kernel, true),
    ];
    if !quick {
        v.push(upmt(Nat::Kernel, false));
    }
    v
}

/// One variant's figures in one round.
#[derive(Debug, Clone, Default, Serialize)]
struct Sample {
    variant: String,
    round: u32,
    tcp1_gbps: Option<f64>,
    tcp1_retransmits: Option<u64>,
    tcp4_gbps: Option<f64>,
    udp_gbps: Option<f64>,
    udp_pps: Option<f64>,
    /// UDP from a `UDP_SEGMENT` sender, at ch's interface.
    udp_gso_gbps: Option<f64>,
    udp_gso_pps: Option<f64>,
    /// Busy cores of the whole machine during the single-flow run.
    cpu_cores: Option<f64>,
    cpu_cores_per_gbps: Option<f64>,
    /// UPMT only: CPU of the two daemons (user + system) during the single-flow run, cores.
    upmt_cores: Option<f64>,
    /// UPMT only: resident memory of the daemons after the tests, KiB.
    anchor_rss_kb: Option<u64>,
    mobile_rss_kb: Option<u64>,
    /// Mobile host's data-plane syscalls per inner packet (UPMT only).
    mh_syscalls_per_packet: Option<f64>,
    /// Why figures are missing.
    error: Option<String>,
}

/// One variant over all rounds.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    variant: String,
    anchor: bool,
    tcp1_gbps: Option<Spread>,
    tcp4_gbps: Option<Spread>,
    udp_gbps: Option<Spread>,
    udp_pps: Option<Spread>,
    udp_gso_gbps: Option<Spread>,
    cpu_cores_per_gbps: Option<Spread>,
    upmt_cores: Option<Spread>,
    mh_syscalls_per_packet: Option<Spread>,
    /// UPMT only: median single-flow TCP over each anchor's median.
    tcp1_ratio_to: Vec<(String, Option<f64>)>,
    tcp4_ratio_to: Vec<(String, Option<f64>)>,
    udp_ratio_to: Vec<(String, Option<f64>)>,
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
    udp_payload_bytes: u32,
    upmt_bin: String,
    summary: &'a [Summary],
    samples: &'a [Sample],
}

/// The goodput (bits/s at the receiver) and retransmits of an `iperf3 -J` report.
fn parse_iperf(json: &str) -> Option<(f64, Option<u64>)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let end = v.get("end")?;
    let bps = end
        .pointer("/sum_received/bits_per_second")
        .or_else(|| end.pointer("/sum/bits_per_second"))?
        .as_f64()?;
    let retr = end
        .pointer("/sum_sent/retransmits")
        .and_then(serde_json::Value::as_u64);
    Some((bps, retr))
}

/// `iperf3 -c CH` from the mobile host; `extra` are more arguments.
fn iperf(line: &Line, src: Option<&str>, secs: u32, extra: &[&str]) -> Result<String> {
    let mut c = line.cmd("mh", Path::new("iperf3"));
    c.args(["-c", CH, "-p", &IPERF_PORT.to_string(), "-J", "-t"])
        .arg(secs.to_string());
    if let Some(s) = src {
        c.args(["-B", s]);
    }
    c.args(extra);
    let out = c.output().context("running iperf3")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let err = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
        anyhow::bail!("iperf3 failed: {err}");
    }
    Ok(text)
}

/// Inner packets and syscalls of the mobile host's data plane (status counters).
fn mh_counters(line: &Line, upmt: &Path) -> Option<(u64, u64)> {
    let s = daemons::status(line, upmt, "mh").ok()?;
    let d = s.get("dataplane")?;
    let g = |p: &str| d.pointer(p).and_then(serde_json::Value::as_u64);
    let segs = g("/offload/tso_segments")?.saturating_sub(g("/offload/tso_in")?);
    Some((
        g("/tun_rx_packets")? + segs + g("/net_rx_packets")?,
        g("/syscalls")?,
    ))
}

/// The three tests of one variant.
/// The UDP GSO test's sender (`upmt-bench blast --gso`) in mh, from `src` (or the VIPA).
fn gso_blast(line: &Line, exe: &Path, src: Option<&str>, secs: u32) -> Result<Blast> {
    let out = line
        .cmd("mh", exe)
        .args(["blast", "--to", &format!("{CH}:{SINK_PORT}")])
        .args([
            "--src",
            src.unwrap_or("0.0.0.0"),
            "--threads",
            "1",
            "--flows",
            "1",
        ])
        .args([
            "--size",
            &UDP_LEN.to_string(),
            "--gso",
            &GSO_SEGMENTS.to_string(),
        ])
        .args(["--secs", &secs.to_string()])
        .output()
        .context("running the UDP GSO sender")?;
    if !out.status.success() {
        anyhow::bail!(
            "UDP GSO sender failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("UDP GSO sender output")
}

#[allow(clippy::too_many_arguments)]
fn measure(
    line: &Line,
    exe: &Path,
    v: Variant,
    upmt: &Path,
    pids: &[u32],
    secs: u32,
    round: u32,
) -> Sample {
    let mut s = Sample {
        variant: v.name(),
        round,
        ..Sample::default()
    };
    let src = v.source();
    let c0 = matches!(v, Variant::Upmt(_))
        .then(|| mh_counters(line, upmt))
        .flatten();
    let cpu0 = stats::machine_cpu();
    let ticks0 = stats::pids_ticks(pids);
    let t0 = Instant::now();
    let r1 = iperf(line, src, secs, &[]);
    let dt1 = t0.elapsed().as_secs_f64();
    let ticks1 = stats::pids_ticks(pids);
    let cpu1 = stats::machine_cpu();
    if !pids.is_empty() {
        s.upmt_cores = stats::process_cores(ticks1.saturating_sub(ticks0), sys::clock_ticks(), dt1);
    }
    let c1 = matches!(v, Variant::Upmt(_))
        .then(|| mh_counters(line, upmt))
        .flatten();
    let mut errors = Vec::new();
    match r1.map(|t| parse_iperf(&t)) {
        Ok(Some((bps, retr))) => {
            let gbps = bps / 1e9;
            s.tcp1_gbps = Some(gbps);
            s.tcp1_retransmits = retr;
            if let (Some(a), Some(b)) = (cpu0, cpu1) {
                s.cpu_cores = stats::machine_cores(a, b, stats::ncpu());
                s.cpu_cores_per_gbps = s.cpu_cores.and_then(|c| stats::cores_per_gbps(c, gbps));
            }
        }
        Ok(None) => errors.push("tcp1: unreadable iperf3 report".to_string()),
        Err(e) => errors.push(format!("tcp1: {e:#}")),
    }
    if let (Some((p0, y0)), Some((p1, y1))) = (c0, c1) {
        if p1 > p0 && y1 >= y0 {
            s.mh_syscalls_per_packet = Some((y1 - y0) as f64 / (p1 - p0) as f64);
        }
    }
    match iperf(line, src, secs, &["-P", "4"]).map(|t| parse_iperf(&t)) {
        Ok(Some((bps, _))) => s.tcp4_gbps = Some(bps / 1e9),
        Ok(None) => errors.push("tcp4: unreadable iperf3 report".to_string()),
        Err(e) => errors.push(format!("tcp4: {e:#}")),
    }
    // UDP: counted at the correspondent's interface, not by iperf3's receiver.
    let ch = line.ns("ch");
    let rx0 = line::rx_counters(&ch, "eth0");
    let t0 = Instant::now();
    let ru = iperf(
        line,
        src,
        secs,
        &["-u", "-b", "0", "-l", &UDP_LEN.to_string()],
    );
    let dt = t0.elapsed().as_secs_f64();
    let rx1 = line::rx_counters(&ch, "eth0");
    match (ru, rx0, rx1) {
        (Ok(_), Ok((p0, b0)), Ok((p1, b1))) => {
            // iperf3's own start-up and end (~0.1-0.3 s) are in `dt`: the rate is a
            // slight underestimate, the same for every variant.
            s.udp_pps = stats::rate(p0, p1, dt);
            s.udp_gbps = stats::rate(b0, b1, dt).map(|b| b * 8.0 / 1e9);
        }
        (Err(e), _, _) => errors.push(format!("udp: {e:#}")),
        (_, Err(e), _) | (_, _, Err(e)) => errors.push(format!("udp counters: {e:#}")),
    }
    // UDP from a sender that uses UDP_SEGMENT (32 x 1200 B per send, as QUIC stacks do):
    // UPMT with offload takes one USO super-packet per send from its TUN.
    let rx0 = line::rx_counters(&ch, "eth0");
    let rg = gso_blast(line, exe, src, secs);
    let rx1 = line::rx_counters(&ch, "eth0");
    match (rg, rx0, rx1) {
        (Ok(b), Ok((p0, b0)), Ok((p1, b1))) => {
            s.udp_gso_pps = stats::rate(p0, p1, b.secs);
            s.udp_gso_gbps = stats::rate(b0, b1, b.secs).map(|x| x * 8.0 / 1e9);
        }
        (Err(e), _, _) => errors.push(format!("udp gso: {e:#}")),
        (_, Err(e), _) | (_, _, Err(e)) => errors.push(format!("udp gso counters: {e:#}")),
    }
    if let [anchor, mobile, ..] = pids {
        s.anchor_rss_kb = stats::rss_kb(*anchor);
        s.mobile_rss_kb = stats::rss_kb(*mobile);
    }
    if !errors.is_empty() {
        s.error = Some(errors.join("; "));
    }
    s
}

fn spread_of(samples: &[&Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<Spread> {
    let v: Vec<f64> = samples.iter().filter_map(|s| f(s)).collect();
    stats::spread(&v)
}

fn summarise(vs: &[Variant], samples: &[Sample]) -> Vec<Summary> {
    let mut out: Vec<Summary> = vs
        .iter()
        .map(|v| {
            let name = v.name();
            let ss: Vec<&Sample> = samples.iter().filter(|s| s.variant == name).collect();
            let note = ss.iter().find_map(|s| s.error.clone());
            Summary {
                variant: name,
                anchor: v.anchor(),
                tcp1_gbps: spread_of(&ss, |s| s.tcp1_gbps),
                tcp4_gbps: spread_of(&ss, |s| s.tcp4_gbps),
                udp_gbps: spread_of(&ss, |s| s.udp_gbps),
                udp_pps: spread_of(&ss, |s| s.udp_pps),
                udp_gso_gbps: spread_of(&ss, |s| s.udp_gso_gbps),
                cpu_cores_per_gbps: spread_of(&ss, |s| s.cpu_cores_per_gbps),
                upmt_cores: spread_of(&ss, |s| s.upmt_cores),
                mh_syscalls_per_packet: spread_of(&ss, |s| s.mh_syscalls_per_packet),
                tcp1_ratio_to: Vec::new(),
                tcp4_ratio_to: Vec::new(),
                udp_ratio_to: Vec::new(),
                note,
            }
        })
        .collect();
    let anchors: Vec<(String, [Option<f64>; 3])> = out
        .iter()
        .filter(|s| s.anchor)
        .map(|s| {
            (
                s.variant.clone(),
                [
                    s.tcp1_gbps.map(|x| x.median),
                    s.tcp4_gbps.map(|x| x.median),
                    s.udp_gbps.map(|x| x.median),
                ],
            )
        })
        .collect();
    for s in out.iter_mut().filter(|s| !s.anchor) {
        let me = [
            s.tcp1_gbps.map(|x| x.median),
            s.tcp4_gbps.map(|x| x.median),
            s.udp_gbps.map(|x| x.median),
        ];
        for (name, a) in &anchors {
            let r = |i: usize| match (me[i], a[i]) {
                (Some(x), Some(y)) => stats::ratio(x, y),
                _ => None,
            };
            s.tcp1_ratio_to.push((name.clone(), r(0)));
            s.tcp4_ratio_to.push((name.clone(), r(1)));
            s.udp_ratio_to.push((name.clone(), r(2)));
        }
    }
    out
}

fn table(summary: &[Summary]) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<30} {:>20} {:>20} {:>20} {:>10} {:>20} {:>10} {:>10} {:>8}",
        "variant",
        "TCP 1 flow Gb/s",
        "TCP 4 flows Gb/s",
        "UDP Gb/s (rx if)",
        "UDP kpps",
        "UDP GSO Gb/s",
        "cores/Gbps",
        "upmt cores",
        "sysc/pkt"
    );
    for s in summary {
        let na = if s.note.is_some() { "failed" } else { "-" };
        let _ = writeln!(
            t,
            "{:<30} {:>20} {:>20} {:>20} {:>10} {:>20} {:>10} {:>10} {:>8}",
            s.variant,
            report::cell(s.tcp1_gbps.as_ref(), 2, na),
            report::cell(s.tcp4_gbps.as_ref(), 2, na),
            report::cell(s.udp_gbps.as_ref(), 2, na),
            report::num(s.udp_pps.map(|k| k.median / 1e3), 0),
            report::cell(s.udp_gso_gbps.as_ref(), 2, na),
            report::num(s.cpu_cores_per_gbps.map(|x| x.median), 2),
            report::num(s.upmt_cores.map(|x| x.median), 2),
            report::num(s.mh_syscalls_per_packet.map(|x| x.median), 3),
        );
    }
    let upmts: Vec<&Summary> = summary.iter().filter(|s| !s.anchor).collect();
    if let Some(first) = upmts.first() {
        let _ = writeln!(
            t,
            "\nratio of UPMT's median to each anchor's (TCP 1 / TCP 4 / UDP):"
        );
        let _ = write!(t, "{:<30}", "");
        for (a, _) in &first.tcp1_ratio_to {
            let _ = write!(t, " {a:>26}");
        }
        let _ = writeln!(t);
        for s in &upmts {
            let _ = write!(t, "{:<30}", s.variant);
            for i in 0..s.tcp1_ratio_to.len() {
                let g = |v: &[(String, Option<f64>)]| report::num(v.get(i).and_then(|x| x.1), 2);
                let cell = format!(
                    "{} / {} / {}",
                    g(&s.tcp1_ratio_to),
                    g(&s.tcp4_ratio_to),
                    g(&s.udp_ratio_to)
                );
                let _ = write!(t, " {cell:>26}");
            }
            let _ = writeln!(t);
        }
    }
    for s in summary {
        if let Some(n) = &s.note {
            let _ = writeln!(t, "note {}: {n}", s.variant);
        }
    }
    t
}

fn plot(summary: &[Summary], rounds: u32, secs: u32) -> String {
    let panel = |title: &str, unit: &str, f: &dyn Fn(&Summary) -> Option<Spread>| svg::BarPanel {
        title: title.to_string(),
        unit: unit.to_string(),
        bars: summary
            .iter()
            .map(|s| svg::Bar {
                label: s.variant.clone(),
                value: f(s).map(|x| (x.median, x.min, x.max)),
                note: s.note.clone().unwrap_or_else(|| "unavailable".into()),
                anchor: s.anchor,
            })
            .collect(),
    };
    svg::bars(
        &format!(
            "UPMT throughput against the anchors (upmt-bench throughput; median and range of {rounds} round(s), {secs} s per test)"
        ),
        &[
            panel("TCP, 1 flow (receiver goodput)", "Gb/s", &|s| s.tcp1_gbps),
            panel("TCP, 4 flows (receiver goodput)", "Gb/s", &|s| s.tcp4_gbps),
            panel(
                "UDP 1200 B at full rate (correspondent's interface)",
                "Gb/s",
                &|s| s.udp_gbps,
            ),
            panel("CPU per Gb/s, TCP 1 flow (whole machine)", "cores per Gb/s", &|s| {
                s.cpu_cores_per_gbps
            }),
        ],
    )
}

/// `upmt-bench throughput`.
pub(crate) fn main(opts: &Options) -> Result<()> {
    line::require("throughput", &["iperf3", "ip", "nft"])?;
    let root = testbed::find_root(opts.repo.as_deref())?;
    let upmt_bin = testbed::upmt_bin(&root)?;
    let exe = std::env::current_exe().context("locating upmt-bench")?;
    let all = variants(opts.quick);
    let vs: Vec<Variant> = if opts.only.is_empty() {
        all
    } else {
        let mut v = Vec::new();
        for n in &opts.only {
            match all.iter().find(|x| &x.name() == n) {
                Some(x) => v.push(*x),
                None => anyhow::bail!(
                    "unknown variant {n:?} (one of: {})",
                    all.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        v
    };
    let vs: Vec<Variant> = vs
        .into_iter()
        .map(|v| match (v, opts.anchor_shards) {
            (Variant::Upmt(s), Some(n)) => Variant::Upmt(Setup {
                shards: Some(n),
                ..s
            }),
            (v, _) => v,
        })
        .collect();
    let rounds = opts
        .repeats
        .unwrap_or(if opts.quick { 1 } else { 3 })
        .max(1);
    let secs = opts.secs.unwrap_or(if opts.quick { 2 } else { 5 }).max(1);
    let prefix = opts
        .prefix
        .clone()
        .unwrap_or_else(|| format!("ut{}-", std::process::id()));
    let machine = report::machine();
    let t_start = Instant::now();
    eprintln!(
        "upmt-bench throughput: line {prefix} (upmt: {}), {} variants x {rounds} round(s), {secs} s per test, load {}",
        upmt_bin.display(),
        vs.len(),
        machine.load_at_start
    );
    let mut line = Line::up(&prefix)?;
    if vs.contains(&Variant::Relay) {
        line.start_relay(&exe)?;
    }
    let mut srv = line.cmd("ch", Path::new("iperf3"));
    srv.args(["-s", "-B", CH, "-p", &IPERF_PORT.to_string()]);
    line.spawn("iperf3-server", srv, None)?;
    let mut sink = line.cmd("ch", &exe);
    sink.args(["sink", "--bind", &format!("{CH}:{SINK_PORT}")]);
    line.spawn("sink", sink, None)?;
    wait_for_server(&line)?;

    let total = vs.len() as u32 * rounds;
    let mut n = 0;
    let mut samples = Vec::new();
    for round in 1..=rounds {
        for v in &vs {
            n += 1;
            eprint!(
                "  [{n:>2}/{total}] {} round {round}/{rounds} ... ",
                report::progress(n, total)
            );
            eprint!("{:<32}", v.name());
            let s = match v {
                Variant::Upmt(setup) => {
                    match Daemons::start(&mut line, &upmt_bin, *setup, true, 0, 16) {
                        Ok(d) => {
                            let pids: Vec<u32> =
                                std::iter::once(d.anchor_pid).chain(d.mobile_pid).collect();
                            let mut s = measure(&line, &exe, *v, &upmt_bin, &pids, secs, round);
                            if let Some(e) = &mut s.error {
                                let log = d.anchor_log();
                                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                                e.push_str(&format!(" [anchor log: {}]", tail.join(" | ")));
                            }
                            d.stop(&mut line);
                            s
                        }
                        Err(e) => Sample {
                            variant: v.name(),
                            round,
                            error: Some(match e.downcast_ref::<Refused>() {
                                Some(r) => r.to_string(),
                                None => format!("{e:#}"),
                            }),
                            ..Sample::default()
                        },
                    }
                }
                _ => measure(&line, &exe, *v, &upmt_bin, &[], secs, round),
            };
            eprintln!(
                "TCP {} / {} Gb/s, UDP {} Gb/s{}",
                report::num(s.tcp1_gbps, 2),
                report::num(s.tcp4_gbps, 2),
                report::num(s.udp_gbps, 2),
                s.error
                    .as_ref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
            samples.push(s);
        }
    }
    line.down();
    drop(line);

    let summary = summarise(&vs, &samples);
    println!(
        "\nthroughput, mh -> an -> ch (3-namespace line, veths, 2 cores): median [range] of {rounds} round(s), {secs} s per test\n"
    );
    print!("{}", table(&summary));
    println!(
        "\nTCP: iperf3 receiver goodput; UDP: {UDP_LEN}-byte datagrams at full rate, bytes and packets at ch's eth0;\n\
         UDP GSO: the same from one socket sending {GSO_SEGMENTS} datagrams per send with UDP_SEGMENT (as QUIC stacks do;\n\
         the kernel paths carry the GSO skb through the veths unsegmented, so they are not a like-for-like anchor);\n\
         cores/Gbps: busy cores of the whole machine during the 1-flow run per Gb/s; upmt cores: CPU of the\n\
         two UPMT daemons during that run; sysc/pkt: the UPMT mobile host's data-plane syscalls per inner packet\n\
         (a TCP super-packet counts as its segments)"
    );
    eprintln!("  done in {:.0} s", t_start.elapsed().as_secs_f64());
    if let Some(p) = &opts.json {
        report::write_json(
            p,
            &Report {
                tool: "upmt-bench throughput",
                date_unix_s: report::unix_s(),
                machine,
                quick: opts.quick,
                rounds,
                secs_per_test: secs,
                udp_payload_bytes: UDP_LEN,
                upmt_bin: upmt_bin.display().to_string(),
                summary: &summary,
                samples: &samples,
            },
        )?;
    }
    if let Some(p) = report::svg_path(opts.svg.as_deref(), opts.json.as_deref()) {
        report::write_svg(&p, &plot(&summary, rounds, secs))?;
    }
    Ok(())
}

/// The iperf3 server answers (polled, 5 s at most).
fn wait_for_server(line: &Line) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(5) {
        let out = line
            .cmd("ch", Path::new("ss"))
            .args(["-Hltn", &format!("sport = :{IPERF_PORT}")])
            .output();
        if out.is_ok_and(|o| !o.stdout.is_empty()) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    anyhow::bail!("the iperf3 server in ch did not start")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf_reports() {
        let tcp = r#"{"end":{"sum_sent":{"bits_per_second":2.1e9,"retransmits":5},
            "sum_received":{"bits_per_second":2.0e9}}}"#;
        assert_eq!(parse_iperf(tcp), Some((2.0e9, Some(5))));
        let udp = r#"{"end":{"sum":{"bits_per_second":9e8,"lost_packets":3}}}"#;
        assert_eq!(parse_iperf(udp), Some((9e8, None)));
        assert_eq!(parse_iperf(r#"{"error":"unable to connect"}"#), None);
        assert_eq!(parse_iperf("garbage"), None);
    }

    #[test]
    fn variant_names_are_unique_and_anchors_first() {
        let vs = variants(false);
        let mut names: Vec<String> = vs.iter().map(|v| v.name()).collect();
        assert_eq!(names[3], "upmt-upmt-nat-offload");
        assert!(vs.iter().take(3).all(|v| v.anchor()));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), vs.len());
        assert!(variants(true).len() < vs.len());
    }

    #[test]
    fn summary_medians_and_ratios() {
        let vs = [Variant::Routing, upmt(Nat::Upmt, true)];
        let mk = |v: Variant, round, g: f64| Sample {
            variant: v.name(),
            round,
            tcp1_gbps: Some(g),
            tcp4_gbps: Some(g * 2.0),
            udp_gbps: None,
            ..Sample::default()
        };
        let samples = vec![
            mk(vs[0], 1, 10.0),
            mk(vs[1], 1, 4.0),
            mk(vs[0], 2, 8.0),
            mk(vs[1], 2, 5.0),
            mk(vs[0], 3, 9.0),
            Sample {
                error: Some("tcp1: iperf3 failed".into()),
                ..mk(vs[1], 3, f64::NAN)
            },
        ];
        let s = summarise(&vs, &samples);
        assert_eq!(s[0].tcp1_gbps.map(|x| (x.median, x.n)), Some((9.0, 3)));
        // NaN (the failed run) is left out: median of 4 and 5.
        assert_eq!(s[1].tcp1_gbps.map(|x| (x.median, x.n)), Some((4.5, 2)));
        assert_eq!(
            s[1].tcp1_ratio_to,
            vec![("kernel-routing".into(), Some(0.5))]
        );
        assert_eq!(s[1].udp_ratio_to, vec![("kernel-routing".into(), None)]);
        assert!(s[1].note.is_some());
        let t = table(&s);
        assert!(t.contains("kernel-routing") && t.contains("0.50"), "{t}");
        let svg = plot(&s, 3, 5);
        assert!(svg.starts_with("<svg") && svg.contains("upmt-upmt-nat-offload"));
    }
}
