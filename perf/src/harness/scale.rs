//! `upmt-bench scale`: the anchor with many mobile hosts.
//!
//! On the 3-namespace line ([`super::line`]), against one real `upmt anchor` (one data-plane
//! shard pinned to core 0; load on core 1), in this order:
//!
//! 1. **Simulated hosts** (`upmt-bench sim-hosts`, [`super::simhosts`]): `hosts` real
//!    signalling clients (the mobile daemon's own) associate and each sets a tunnel up from
//!    its own UDP socket: setups per second, the anchor's memory per host with a tunnel.
//! 2. **SIPp REGISTER load**: `sipp` (the real tool, `tests/sipp/register.xml`: REGISTER,
//!    401 Digest challenge, REGISTER with credentials, 200 OK whose `VIpAddr` is checked)
//!    registers `registrations` more users (default 100,000, the DESIGN.md target;
//!    registered for an hour, so all are held to the end) as fast as the anchor answers (up
//!    to `--sipp-rate` per second, `--sipp-window` in flight). Associations per second = the
//!    successful ones over SIPp's wall time, and per second of the anchor's CPU (SIPp, one
//!    thread on one core, is often the limit); the anchor's memory per association.
//! 3. **Flows**: every simulated host sends one packet on each of its `flows_per_host`
//!    flows (paced, `--fill-pps`), so the anchor's flow table and NAT hold
//!    hosts x flows_per_host entries (1,048,576 by default) next to all the associations:
//!    memory per flow, and new flows per second of the anchor's CPU.
//! 4. **Forwarding with the tables full**: interleaved rounds of full-rate 64-byte traffic
//!    over the first 64 flows (hot in cache) and over all flows (every packet a different
//!    table entry, round robin), counted at the correspondent's interface; the ratio is what
//!    a full table costs.
//!
//! Memory is the anchor's RSS growth over a phase divided by what the phase added; no status
//! call (whose JSON lists every host) falls inside a measured phase. The allocator reuses
//! freed memory, so small phases (the 1,024 hosts) read low: the 100,000 associations and
//! the 1M flows are the figures to quote.
//!
//! The anchor's configuration lifts what would otherwise stop the load: Digest MD5 offered
//! first (SIPp 3.6 answers only MD5), no per-source SIP rate limit (SIPp is one source),
//! 32 public addresses (one has ~64k ports, the NAT needs one per flow), caps above the load.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::daemons::{self, Daemons};
use super::line::{self, Line, AN_LO, CH, MH_WLAN};
use super::relay::Blast;
use super::report::{self, Machine};
use super::simhosts;
use super::stats::{self, Spread};
use super::testbed;
use perf::sys;

const SINK_PORT: u16 = 9;
/// Public addresses of the anchor's NAT: 198.18.2.100 and the next ones.
const PUBLIC_ADDRS: u8 = 32;
/// Flows of the "hot" forwarding test.
const HOT_FLOWS: u64 = 64;

/// Command-line options of `upmt-bench scale`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Short run (under 2 minutes): smoke runs, CI. 500 registrations, 64 hosts x 256 flows,
    /// one round of 2 s.
    #[arg(long)]
    pub(crate) quick: bool,
    /// SIPp registrations (default 100000).
    #[arg(long)]
    pub(crate) registrations: Option<u32>,
    /// SIPp's call rate ceiling per second.
    #[arg(long, default_value_t = 20000)]
    pub(crate) sipp_rate: u32,
    /// SIPp's registrations in flight at most.
    #[arg(long, default_value_t = 200)]
    pub(crate) sipp_window: u32,
    /// Simulated hosts with a tunnel each (default 1024).
    #[arg(long)]
    pub(crate) hosts: Option<u32>,
    /// Flows per simulated host, a multiple of 64 (default 1024: 1,048,576 flows in all).
    #[arg(long)]
    pub(crate) flows_per_host: Option<u32>,
    /// Rounds of the forwarding test (default 3, 1 with --quick).
    #[arg(long)]
    pub(crate) repeats: Option<u32>,
    /// Seconds per forwarding test (default 5, 2 with --quick).
    #[arg(long)]
    pub(crate) secs: Option<u32>,
    /// Inner packet size in bytes (IPv4 + UDP + payload).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Pace of the fill (first packet of every flow), packets per second.
    #[arg(long, default_value_t = 150_000)]
    pub(crate) fill_pps: u32,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Namespace prefix (default `us<pid>-`).
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// The UPMT checkout (default: found from the current directory or the executable).
    #[arg(long)]
    pub(crate) repo: Option<PathBuf>,
}

/// The SIPp phase.
#[derive(Debug, Clone, Default, Serialize)]
struct SippPhase {
    registrations: u32,
    successful: u64,
    failed: u64,
    secs: f64,
    associations_per_s: Option<f64>,
    anchor_cores: Option<f64>,
    /// Associations per second of the anchor's CPU (SIPp on one core is often the limit).
    associations_per_anchor_core_s: Option<f64>,
    hosts_held: Option<u64>,
    rss_kb_before: Option<u64>,
    rss_kb_after: Option<u64>,
    bytes_per_association: Option<f64>,
    error: Option<String>,
}

/// The simulated-host phase.
#[derive(Debug, Clone, Default, Serialize)]
struct HostPhase {
    hosts: u32,
    flows_per_host: u32,
    hosts_up: u32,
    failed: u32,
    setup_secs: f64,
    setups_per_s: Option<f64>,
    first_error: Option<String>,
    rss_kb_before_hosts: Option<u64>,
    rss_kb_after_hosts: Option<u64>,
    bytes_per_host: Option<f64>,
    fill_passes: u32,
    fill_packets: u64,
    fill_secs: f64,
    nat_mappings: Option<u64>,
    anchor_flows: Option<u64>,
    new_flows_per_s: Option<f64>,
    /// Flows the first pass created per second of the anchor's CPU.
    new_flows_per_anchor_core_s: Option<f64>,
    /// After the hosts and the SIPp registrations.
    rss_kb_before_flows: Option<u64>,
    rss_kb_after_flows: Option<u64>,
    bytes_per_flow: Option<f64>,
    /// The anchor's drop counters after the fill (non-zero ones).
    anchor_drops: std::collections::BTreeMap<String, u64>,
}

/// One forwarding test.
#[derive(Debug, Clone, Default, Serialize)]
struct Sample {
    variant: &'static str,
    round: u32,
    flows: u64,
    offered_pps: Option<f64>,
    delivered_pps: Option<f64>,
    anchor_cores: Option<f64>,
    delivered_pps_per_anchor_core: Option<f64>,
    send_errors: u64,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Summary {
    variant: &'static str,
    flows: u64,
    delivered_pps: Option<Spread>,
    anchor_cores: Option<Spread>,
    delivered_pps_per_anchor_core: Option<Spread>,
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
    upmt_bin: String,
    sipp: &'a SippPhase,
    hosts: &'a HostPhase,
    summary: &'a [Summary],
    samples: &'a [Sample],
    /// Delivered rate with every flow in use over the rate with 64 hot flows (medians).
    ratio_all_to_hot: Option<f64>,
}

/// The anchor's configuration for the scale bench.
fn anchor_toml(credentials: &Path, max_hosts: u32, flows_per_host: u32, flows: u64) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "[sip]\nlisten = \"{AN_LO}:5060\"");
    let _ = writeln!(t, "credentials = {:?}", credentials.display().to_string());
    // SIPp is one source address; it answers only MD5, and only the first challenge.
    let _ = writeln!(t, "rate_limit_per_source = 0");
    let _ = writeln!(t, "algorithms = [\"MD5\", \"SHA-256\"]");
    let _ = writeln!(t, "min_expires_s = 30\nmax_expires_s = 3600\n");
    let _ = writeln!(t, "[tunnel]\nlisten = \"{AN_LO}:1800\"\n");
    // A /14: room for 262,000 hosts.
    let _ = writeln!(t, "[vipa]\npool = \"100.64.0.0/14\"\n");
    let public: Vec<String> = (0..PUBLIC_ADDRS)
        .map(|i| format!("\"{}\"", Ipv4Addr::new(198, 18, 2, 100 + i)))
        .collect();
    let _ = writeln!(
        t,
        "[nat]\nmode = \"upmt\"\npublic = [{}]",
        public.join(", ")
    );
    let _ = writeln!(t, "max_mappings_per_host = {}", flows_per_host.max(64) + 64);
    let _ = writeln!(t, "max_mappings = {}\n", (flows + flows / 8).max(4096));
    let _ = writeln!(
        t,
        "[dataplane]\ntun = \"upmt-an0\"\noffload = true\nshards = 1\npin = true\n"
    );
    let _ = writeln!(t, "[limits]\nmax_hosts = {max_hosts}");
    let _ = writeln!(t, "max_flows_per_host = {}", flows_per_host.max(64) + 64);
    // The hot-flow tests leave most tunnels silent for a while; nothing may expire.
    let _ = writeln!(t, "tunnel_idle_s = 3600");
    t
}

/// SIPp's users file for `n` users from `sipp{first}` (passwords as
/// [`daemons::credentials_toml`]).
fn users_csv(first: u32, n: u32) -> String {
    let mut t = String::from("SEQUENTIAL\n");
    for i in first..first + n {
        let _ = writeln!(
            t,
            "sipp{i};[authentication username=sipp{i} password=pw{i}]"
        );
    }
    t
}

/// The SIPp scenario with its 60 s registrations made 3600 s ones.
fn long_lived(xml: &str) -> String {
    xml.replace("expires=60", "expires=3600")
        .replace("Expires: 60", "Expires: 3600")
}

/// The cumulative value of SIPp's final statistics row `label` (`Successful call`, ...).
fn sipp_cumulative(output: &str, label: &str) -> Option<u64> {
    output
        .lines()
        .rfind(|l| l.trim_start().starts_with(label))?
        .split('|')
        .nth(2)?
        .trim()
        .parse()
        .ok()
}

/// RSS growth per item in bytes.
fn bytes_per(before_kb: Option<u64>, after_kb: Option<u64>, items: u64) -> Option<f64> {
    let (b, a) = (before_kb?, after_kb?);
    if items == 0 {
        return None;
    }
    Some((a.saturating_sub(b) as f64) * 1024.0 / items as f64)
}

fn count_hosts(status: &serde_json::Value) -> Option<u64> {
    Some(status.get("hosts")?.as_array()?.len() as u64)
}

fn nat_mappings(status: &serde_json::Value) -> Option<u64> {
    status.get("nat")?.get("mappings")?.as_u64()
}

fn anchor_flows(status: &serde_json::Value) -> Option<u64> {
    status.get("flows")?.as_u64()
}

/// The anchor's non-zero drop counters.
fn drops(status: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    status
        .get("drops")
        .and_then(|d| d.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .filter(|(_, v)| *v > 0)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs SIPp in the mobile host's namespace against the anchor.
fn sipp_phase(line: &Line, root: &Path, o: &Options, first: u32, n: u32, pid: u32) -> SippPhase {
    let mut p = SippPhase {
        registrations: n,
        rss_kb_before: stats::rss_kb(pid),
        ..SippPhase::default()
    };
    let r = (|| -> Result<()> {
        let dir = &line.dir;
        std::fs::write(dir.join("users.csv"), users_csv(first, n)).context("users.csv")?;
        // The interop scenario, asking an hour instead of a minute: every registration is
        // still held while the flows are measured.
        let xml = std::fs::read_to_string(root.join("tests/sipp/register.xml"))
            .context("reading tests/sipp/register.xml")?;
        std::fs::write(dir.join("register.xml"), long_lived(&xml)).context("register.xml")?;
        let mut c = line.cmd("mh", Path::new("taskset"));
        c.current_dir(dir)
            .args([
                "-c",
                "1",
                "sipp",
                "-sf",
                "register.xml",
                "-inf",
                "users.csv",
            ])
            .args(["-i", MH_WLAN, "-p", "5070"])
            .args(["-m", &n.to_string(), "-r", &o.sipp_rate.to_string()])
            .args(["-rp", "1000", "-l", &o.sipp_window.to_string()])
            .args(["-nostdin", "-timeout", "300s", "-max_recv_loops", "100000"])
            .args(["-max_sched_loops", "100000"])
            .arg(format!("{AN_LO}:5060"));
        let ticks0 = stats::pids_ticks(&[pid]);
        let t0 = Instant::now();
        let out = c.output().context("running sipp")?;
        p.secs = t0.elapsed().as_secs_f64();
        let ticks1 = stats::pids_ticks(&[pid]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        std::fs::write(dir.join("sipp.out"), &text).ok();
        p.successful = sipp_cumulative(&text, "Successful call").unwrap_or(0);
        p.failed = sipp_cumulative(&text, "Failed call").unwrap_or(0);
        p.associations_per_s = stats::rate(0, p.successful, p.secs);
        p.anchor_cores =
            stats::process_cores(ticks1.saturating_sub(ticks0), sys::clock_ticks(), p.secs);
        p.associations_per_anchor_core_s = p
            .anchor_cores
            .and_then(|c| stats::ratio(p.associations_per_s.unwrap_or(0.0), c));
        if p.successful == 0 {
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            bail!("no SIPp registration succeeded: {}", tail.join(" / "));
        }
        Ok(())
    })();
    p.error = r.err().map(|e| format!("{e:#}"));
    // A short settle (the anchor may still be answering the last retransmissions), and no
    // status call before the reading: its JSON of every host would count as memory.
    std::thread::sleep(Duration::from_millis(300));
    p.rss_kb_after = stats::rss_kb(pid);
    p.bytes_per_association = bytes_per(p.rss_kb_before, p.rss_kb_after, p.successful);
    p
}

/// The simulated hosts' process and its pipes.
struct Sim {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Sim {
    fn read<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T> {
        let mut l = String::new();
        if self.stdout.read_line(&mut l).context("reading sim-hosts")? == 0 {
            bail!("sim-hosts ended (see sim-hosts.log)");
        }
        serde_json::from_str(l.trim()).with_context(|| format!("sim-hosts said {l:?}"))
    }

    fn ask<T: for<'de> Deserialize<'de>>(&mut self, cmd: &str) -> Result<T> {
        writeln!(self.stdin, "{cmd}").context("writing to sim-hosts")?;
        self.stdin.flush().context("writing to sim-hosts")?;
        self.read()
    }
}

/// A forwarding test: `blast FLOWS SECS`, counted at ch.
fn forward(
    line: &Line,
    sim: &mut Sim,
    flows: u64,
    secs: u32,
    pid: u32,
) -> Result<(Blast, f64, f64)> {
    let ch = line.ns("ch");
    let (p0, _) = line::rx_counters(&ch, "eth0")?;
    let ticks0 = stats::pids_ticks(&[pid]);
    let t0 = Instant::now();
    let b: Blast = sim.ask(&format!("blast {flows} {secs}"))?;
    let dt = t0.elapsed().as_secs_f64();
    let ticks1 = stats::pids_ticks(&[pid]);
    let (p1, _) = line::rx_counters(&ch, "eth0")?;
    let delivered = stats::rate(p0, p1, b.secs).unwrap_or(0.0);
    let cores =
        stats::process_cores(ticks1.saturating_sub(ticks0), sys::clock_ticks(), dt).unwrap_or(0.0);
    Ok((b, delivered, cores))
}

fn sample(variant: &'static str, round: u32, flows: u64, r: Result<(Blast, f64, f64)>) -> Sample {
    match r {
        Ok((b, delivered, cores)) => Sample {
            variant,
            round,
            flows,
            offered_pps: stats::rate(0, b.sent, b.secs),
            delivered_pps: Some(delivered),
            anchor_cores: Some(cores),
            delivered_pps_per_anchor_core: stats::ratio(delivered, cores),
            send_errors: b.send_errors,
            error: None,
        },
        Err(e) => Sample {
            variant,
            round,
            flows,
            error: Some(format!("{e:#}")),
            ..Sample::default()
        },
    }
}

/// Starts the simulated hosts (users `sipp{first_user}..`) and waits for their setup.
#[allow(clippy::too_many_arguments)]
fn start_hosts(
    line: &mut Line,
    exe: &Path,
    o: &Options,
    first_user: u32,
    hosts: u32,
    per_host: u32,
    pid: u32,
) -> Result<(Sim, HostPhase)> {
    let mut hp = HostPhase {
        hosts,
        flows_per_host: per_host,
        rss_kb_before_hosts: stats::rss_kb(pid),
        ..HostPhase::default()
    };
    let mut c = line.cmd("mh", Path::new("taskset"));
    c.args(["-c", "1"]).arg(exe).arg("sim-hosts");
    c.args(["--first-user", &first_user.to_string()]);
    c.args(["--hosts", &hosts.to_string()]);
    c.args(["--flows-per-host", &per_host.to_string()]);
    c.args(["--size", &o.size.to_string()]);
    c.args(["--sip", &format!("{AN_LO}:5060")]);
    c.args(["--tunnel", &format!("{AN_LO}:1800")]);
    c.args(["--bind", MH_WLAN]);
    c.args(["--dst", &format!("{CH}:{SINK_PORT}")]);
    let log = line.dir.join("sim-hosts.log");
    let (_, stdin, stdout) = line.spawn_piped("sim-hosts", c, &log)?;
    let mut sim = Sim {
        stdin,
        stdout: BufReader::new(stdout),
    };
    let setup: simhosts::Setup = sim.read()?;
    hp.hosts_up = setup.hosts_up;
    hp.failed = setup.failed;
    hp.setup_secs = setup.secs;
    hp.setups_per_s = stats::rate(0, u64::from(setup.hosts_up), setup.secs);
    hp.first_error = setup.first_error;
    std::thread::sleep(Duration::from_millis(300));
    hp.rss_kb_after_hosts = stats::rss_kb(pid);
    hp.bytes_per_host = bytes_per(
        hp.rss_kb_before_hosts,
        hp.rss_kb_after_hosts,
        u64::from(setup.hosts_up),
    );
    if setup.hosts_up == 0 {
        bail!(
            "no simulated host came up: {}",
            hp.first_error.clone().unwrap_or_default()
        );
    }
    Ok((sim, hp))
}

/// One packet on every flow of every host (memory per flow, new-flow rate), then the
/// forwarding tests.
#[allow(clippy::too_many_arguments)]
fn fill_and_forward(
    line: &Line,
    upmt: &Path,
    sim: &mut Sim,
    hp: &mut HostPhase,
    o: &Options,
    rounds: u32,
    secs: u32,
    pid: u32,
) -> Result<Vec<Sample>> {
    let flows_up = u64::from(hp.hosts_up) * u64::from(hp.flows_per_host);
    hp.rss_kb_before_flows = stats::rss_kb(pid);
    // Fill: one packet per flow, paced below the anchor's new-flow rate so its socket
    // queue does not overflow; again for any a full queue dropped.
    let target = flows_up - flows_up / 1000;
    for pass in 1..=6 {
        let ticks0 = stats::pids_ticks(&[pid]);
        let b: Blast = sim.ask(&format!("fill {}", o.fill_pps))?;
        hp.fill_passes = pass;
        hp.fill_packets += b.sent;
        // Let the anchor drain its queue before counting; memory before the status call
        // (whose JSON lists every host).
        std::thread::sleep(Duration::from_millis(200));
        let cpu =
            stats::pids_ticks(&[pid]).saturating_sub(ticks0) as f64 / sys::clock_ticks() as f64;
        hp.rss_kb_after_flows = stats::rss_kb(pid);
        let st = daemons::status(line, upmt, "an")?;
        hp.nat_mappings = nat_mappings(&st);
        hp.anchor_flows = anchor_flows(&st);
        hp.anchor_drops = drops(&st);
        if pass == 1 {
            // The anchor may still work through its queue after the sender is done: the
            // rate over the sending time is an upper bound, per CPU second the cost.
            hp.fill_secs = b.secs;
            hp.new_flows_per_s = hp.nat_mappings.and_then(|m| stats::rate(0, m, b.secs));
            hp.new_flows_per_anchor_core_s = hp.nat_mappings.and_then(|m| stats::rate(0, m, cpu));
        }
        if hp.nat_mappings.is_some_and(|m| m >= target) {
            break;
        }
    }
    hp.bytes_per_flow = bytes_per(
        hp.rss_kb_before_flows,
        hp.rss_kb_after_flows,
        hp.nat_mappings.unwrap_or(0),
    );
    let mut samples = Vec::new();
    for round in 1..=rounds {
        eprint!(
            "  {} round {round}/{rounds}: {HOT_FLOWS} flows ... ",
            report::progress(round - 1, rounds)
        );
        let hot = sample(
            "hot-64-flows",
            round,
            HOT_FLOWS,
            forward(line, sim, HOT_FLOWS, secs, pid),
        );
        eprint!(
            "{} kpps; {flows_up} flows ... ",
            report::num(hot.delivered_pps.map(|x| x / 1e3), 0)
        );
        samples.push(hot);
        let all = sample(
            "all-flows",
            round,
            flows_up,
            forward(line, sim, flows_up, secs, pid),
        );
        eprintln!(
            "{} kpps",
            report::num(all.delivered_pps.map(|x| x / 1e3), 0)
        );
        samples.push(all);
    }
    Ok(samples)
}

fn summarise(samples: &[Sample]) -> Vec<Summary> {
    ["hot-64-flows", "all-flows"]
        .iter()
        .map(|v| {
            let ss: Vec<&Sample> = samples.iter().filter(|s| s.variant == *v).collect();
            let sp = |f: &dyn Fn(&Sample) -> Option<f64>| {
                stats::spread(&ss.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
            };
            Summary {
                variant: v,
                flows: ss.first().map_or(0, |s| s.flows),
                delivered_pps: sp(&|s| s.delivered_pps),
                anchor_cores: sp(&|s| s.anchor_cores),
                delivered_pps_per_anchor_core: sp(&|s| s.delivered_pps_per_anchor_core),
                note: ss.iter().find_map(|s| s.error.clone()),
            }
        })
        .collect()
}

fn ratio(summary: &[Summary]) -> Option<f64> {
    let m = |v: &str| {
        summary
            .iter()
            .find(|s| s.variant == v)
            .and_then(|s| s.delivered_pps.map(|x| x.median))
    };
    stats::ratio(m("all-flows")?, m("hot-64-flows")?)
}

fn mib(kb: Option<u64>) -> String {
    report::num(kb.map(|k| k as f64 / 1024.0), 1)
}

fn table(s: &SippPhase, h: &HostPhase, summary: &[Summary], ratio: Option<f64>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "associations (SIPp REGISTER + Digest MD5, {} users):",
        s.registrations
    );
    let _ = writeln!(
        t,
        "  {} ok, {} failed in {:.2} s: {} associations/s, anchor {} cores ({} per anchor core);\n  RSS {} -> {} MiB ({} B per association; {} hosts held at the end)",
        s.successful,
        s.failed,
        s.secs,
        report::num(s.associations_per_s, 0),
        report::num(s.anchor_cores, 2),
        report::num(s.associations_per_anchor_core_s, 0),
        mib(s.rss_kb_before),
        mib(s.rss_kb_after),
        report::num(s.bytes_per_association, 0),
        s.hosts_held.map_or("-".to_string(), |n| n.to_string()),
    );
    if let Some(e) = &s.error {
        let _ = writeln!(t, "  note: {e}");
    }
    let _ = writeln!(t, "simulated hosts (association + tunnel setup each):");
    let _ = writeln!(
        t,
        "  {} of {} up ({} failed) in {:.2} s: {} setups/s; {} B per host with its tunnel",
        h.hosts_up,
        h.hosts,
        h.failed,
        h.setup_secs,
        report::num(h.setups_per_s, 0),
        report::num(h.bytes_per_host, 0),
    );
    if let Some(e) = &h.first_error {
        let _ = writeln!(t, "  first failure: {e}");
    }
    let _ = writeln!(
        t,
        "  flows: {} per host, {} NAT mappings, {} anchor flow entries after {} fill pass(es);\n  first pass: {} new flows/s while sending, {} new flows per anchor CPU second;\n  RSS {} MiB before the flows -> {} MiB with them: {} B per flow",
        h.flows_per_host,
        h.nat_mappings.map_or("-".to_string(), |n| n.to_string()),
        h.anchor_flows.map_or("-".to_string(), |n| n.to_string()),
        h.fill_passes,
        report::num(h.new_flows_per_s, 0),
        report::num(h.new_flows_per_anchor_core_s, 0),
        mib(h.rss_kb_before_flows),
        mib(h.rss_kb_after_flows),
        report::num(h.bytes_per_flow, 0),
    );
    if !h.anchor_drops.is_empty() {
        let d: Vec<String> = h
            .anchor_drops
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(t, "  anchor drops during the fill: {}", d.join(", "));
    }
    let _ = writeln!(
        t,
        "\nforwarding with the tables full (64 B packets, 1 shard):"
    );
    let _ = writeln!(
        t,
        "{:<14} {:>9} {:>18} {:>12} {:>16}",
        "test", "flows", "delivered kpps", "cores", "kpps per core"
    );
    for x in summary {
        let _ = writeln!(
            t,
            "{:<14} {:>9} {:>18} {:>12} {:>16}",
            x.variant,
            x.flows,
            report::kpps(x.delivered_pps.as_ref()),
            report::num(x.anchor_cores.map(|c| c.median), 2),
            report::kpps(x.delivered_pps_per_anchor_core.as_ref()),
        );
    }
    for x in summary {
        if let Some(n) = &x.note {
            let _ = writeln!(t, "note {}: {n}", x.variant);
        }
    }
    let _ = writeln!(
        t,
        "all flows / hot flows delivered: {}",
        report::num(ratio, 2)
    );
    t
}

/// `upmt-bench scale`.
pub(crate) fn main(o: &Options) -> Result<()> {
    line::require("scale", &["ip", "taskset", "sipp"])?;
    let root = testbed::find_root(o.repo.as_deref())?;
    let upmt = testbed::upmt_bin(&root)?;
    let exe = std::env::current_exe().context("locating upmt-bench")?;
    let registrations = o
        .registrations
        .unwrap_or(if o.quick { 500 } else { 100_000 })
        .max(1);
    let hosts = o.hosts.unwrap_or(if o.quick { 64 } else { 1024 }).max(1);
    let per_host = o
        .flows_per_host
        .unwrap_or(if o.quick { 256 } else { 1024 })
        .max(64)
        .div_ceil(64)
        * 64;
    if u64::from(registrations) + u64::from(hosts) > 260_000 {
        bail!("registrations + hosts must fit the anchor's /14 VIPA pool (260,000 at most)");
    }
    let rounds = o.repeats.unwrap_or(if o.quick { 1 } else { 3 }).max(1);
    let secs = o.secs.unwrap_or(if o.quick { 2 } else { 5 }).max(1);
    let flows = u64::from(hosts) * u64::from(per_host);
    let prefix = o
        .prefix
        .clone()
        .unwrap_or_else(|| format!("us{}-", std::process::id()));
    let machine = report::machine();
    let t_start = Instant::now();
    eprintln!(
        "upmt-bench scale: line {prefix} (upmt: {}), {registrations} SIPp registrations, {hosts} hosts x {per_host} flows = {flows} flows, {rounds} round(s) of {secs} s, load {}",
        upmt.display(),
        machine.load_at_start
    );
    let mut line = Line::up(&prefix)?;
    let mut sink = line.cmd("ch", &exe);
    sink.args(["sink", "--bind", &format!("{CH}:{SINK_PORT}")]);
    line.spawn("sink", sink, None)?;
    let users = registrations + hosts;
    let max_hosts = users + 16;
    let d = Daemons::start_anchor(
        &mut line,
        &upmt,
        &daemons::credentials_toml(users),
        |cred| anchor_toml(cred, max_hosts, per_host, flows),
    )?;
    let pid = d.anchor_pid;
    eprint!("  {hosts} simulated hosts ... ");
    let mut sp = SippPhase::default();
    let r =
        start_hosts(&mut line, &exe, o, 1, hosts, per_host, pid).and_then(|(mut sim, mut hp)| {
            eprintln!("{} up", hp.hosts_up);
            eprint!("  SIPp: {registrations} registrations ... ");
            sp = sipp_phase(&line, &root, o, hosts + 1, registrations, pid);
            eprintln!(
                "{} ok, {} associations/s",
                sp.successful,
                report::num(sp.associations_per_s, 0)
            );
            eprintln!("  {flows} flows, then forwarding:");
            let samples = fill_and_forward(&line, &upmt, &mut sim, &mut hp, o, rounds, secs, pid)?;
            let _ = writeln!(sim.stdin, "quit");
            Ok((hp, samples))
        });
    sp.hosts_held = daemons::status(&line, &upmt, "an")
        .ok()
        .and_then(|s| count_hosts(&s));
    let anchor_log = d.anchor_log();
    let sim_log = std::fs::read_to_string(line.dir.join("sim-hosts.log")).unwrap_or_default();
    d.stop(&mut line);
    line.down();
    drop(line);
    let (hp, samples) = match r {
        Ok(x) => x,
        Err(e) => bail!(
            "{e:#}\nsim-hosts: {}\nanchor log (tail): {}",
            sim_log.trim(),
            anchor_log
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    };
    let summary = summarise(&samples);
    let rt = ratio(&summary);
    println!(
        "\nthe anchor with many mobile hosts (1 data-plane shard on core 0, load on core 1); forwarding: median [range] of {rounds} round(s), {secs} s each\n"
    );
    print!("{}", table(&sp, &hp, &summary, rt));
    println!(
        "\nmemory: the anchor's RSS growth divided by what was added; delivered: packets at ch's eth0; cores: the anchor's CPU"
    );
    eprintln!("  done in {:.0} s", t_start.elapsed().as_secs_f64());
    if let Some(p) = &o.json {
        report::write_json(
            p,
            &Report {
                tool: "upmt-bench scale",
                date_unix_s: report::unix_s(),
                machine,
                quick: o.quick,
                rounds,
                secs_per_test: secs,
                packet_bytes: o.size,
                upmt_bin: upmt.display().to_string(),
                sipp: &sp,
                hosts: &hp,
                summary: &summary,
                samples: &samples,
                ratio_all_to_hot: rt,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_config_lifts_the_limits() {
        let t = anchor_toml(Path::new("/tmp/c.toml"), 11040, 1024, 1 << 20);
        assert!(t.contains("algorithms = [\"MD5\", \"SHA-256\"]"), "{t}");
        assert!(t.contains("rate_limit_per_source = 0"));
        assert!(t.contains("\"198.18.2.100\"") && t.contains("\"198.18.2.131\""));
        assert!(!t.contains("\"198.18.2.132\""));
        assert!(t.contains("max_mappings = 1179648"), "{t}");
        assert!(t.contains("max_flows_per_host = 1088"));
        assert!(t.contains("max_hosts = 11040"));
    }

    #[test]
    fn users_file_matches_the_credentials() {
        let u = users_csv(2, 3);
        assert!(u.starts_with("SEQUENTIAL\nsipp2;"));
        assert!(u.contains("sipp4;[authentication username=sipp4 password=pw4]\n"));
        assert_eq!(u.lines().count(), 4);
        assert!(daemons::credentials_toml(3).contains("name = \"sipp3\"\npassword = \"pw3\""));
    }

    #[test]
    fn the_scenario_registers_for_an_hour() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let xml = std::fs::read_to_string(root.join("tests/sipp/register.xml")).unwrap();
        let l = long_lived(&xml);
        assert_eq!(l.matches("Expires: 3600").count(), 2);
        assert_eq!(l.matches("expires=3600").count(), 2);
        assert!(!l.contains("Expires: 60\n") && !l.contains("expires=60\n"));
    }

    #[test]
    fn sipp_statistics_are_read() {
        let out = "  Successful call        |        0                  |       480\n\
                   \x20 Failed call            |        0                  |        20\n\
                   ...\n  Successful call        |        3                  |       497\n";
        assert_eq!(sipp_cumulative(out, "Successful call"), Some(497));
        assert_eq!(sipp_cumulative(out, "Failed call"), Some(20));
        assert_eq!(sipp_cumulative("nothing", "Failed call"), None);
    }

    #[test]
    fn memory_per_item() {
        assert_eq!(bytes_per(Some(1000), Some(2000), 1024), Some(1000.0));
        assert_eq!(bytes_per(Some(2000), Some(1000), 10), Some(0.0));
        assert_eq!(bytes_per(None, Some(1), 1), None);
        assert_eq!(bytes_per(Some(1), Some(2), 0), None);
    }

    #[test]
    fn status_counts() {
        let st = serde_json::json!({
            "hosts": [{"flows": 3}, {"flows": 4}, {}],
            "flows": 9,
            "nat": {"mappings": 7},
            "drops": {"nat_refused": 2, "malformed": 0},
        });
        assert_eq!(count_hosts(&st), Some(3));
        assert_eq!(anchor_flows(&st), Some(9));
        assert_eq!(nat_mappings(&st), Some(7));
        assert_eq!(
            drops(&st).into_iter().collect::<Vec<_>>(),
            vec![("nat_refused".to_string(), 2)]
        );
    }

    #[test]
    fn summary_and_table() {
        let mk = |v, flows, d: f64| Sample {
            variant: v,
            flows,
            delivered_pps: Some(d),
            anchor_cores: Some(1.0),
            delivered_pps_per_anchor_core: Some(d),
            ..Sample::default()
        };
        let s = summarise(&[
            mk("hot-64-flows", 64, 300e3),
            mk("all-flows", 1 << 20, 150e3),
            mk("hot-64-flows", 64, 320e3),
            mk("all-flows", 1 << 20, 170e3),
        ]);
        assert_eq!(s[1].flows, 1 << 20);
        let r = ratio(&s).unwrap();
        assert!((r - 160.0 / 310.0).abs() < 1e-9);
        let t = table(&SippPhase::default(), &HostPhase::default(), &s, Some(r));
        assert!(t.contains("310 [300-320]") && t.contains("1048576"), "{t}");
    }
}
