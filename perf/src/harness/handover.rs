//! `upmt-bench handover`: handover scenarios through UPMT in a testbed of its own, with a
//! 1 ms UDP echo probe and a bulk TCP flow (iperf3) running across each event.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::analysis::{self, Interval, ProbeStats, Trace};
use super::svg;
use super::testbed::{self, Testbed};

/// The correspondent host's address (DESIGN.md section 4) and the servers' ports.
const CH: &str = "198.18.3.1";
const ECHO_PORT: u16 = 9000;
const IPERF_PORT: u16 = 5201;
/// Throughput counts as recovered at this fraction of the pre-event median.
const RECOVERED: f64 = 0.8;

/// Command-line options of `upmt-bench handover`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Short runs, one repeat (the whole thing in under 2 minutes): smoke runs, CI.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Runs per scenario (default 3, 1 with --quick); medians are reported.
    #[arg(long)]
    pub(crate) repeats: Option<u32>,
    /// Write every run's figures as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write the handover timelines (one panel per scenario, first run) as SVG here.
    #[arg(long)]
    pub(crate) svg: Option<PathBuf>,
    /// Namespace prefix of the testbed (default `ub<pid>-`).
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// The UPMT checkout (default: found from the current directory or the executable).
    #[arg(long)]
    pub(crate) repo: Option<PathBuf>,
    /// iperf3 target rate of the bulk TCP flow (`-b`; 0 = unlimited).
    #[arg(long, default_value = "200M")]
    pub(crate) tcp_rate: String,
    /// Only these scenarios (comma-separated names; default all).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

/// A handover scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    MakeBeforeBreak,
    InterfaceDown,
    Blackhole,
    LinkUp,
    Flapping,
}

const ALL: [Scenario; 5] = [
    Scenario::MakeBeforeBreak,
    Scenario::InterfaceDown,
    Scenario::Blackhole,
    Scenario::LinkUp,
    Scenario::Flapping,
];

/// One step of an event: when (ms after the event's start), what, and its label.
struct Step {
    at_ms: u64,
    args: Vec<&'static str>,
    label: &'static str,
}

fn step(at_ms: u64, args: &[&'static str], label: &'static str) -> Step {
    Step {
        at_ms,
        args: args.to_vec(),
        label,
    }
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::MakeBeforeBreak => "make-before-break",
            Scenario::InterfaceDown => "interface-down",
            Scenario::Blackhole => "blackhole",
            Scenario::LinkUp => "link-up",
            Scenario::Flapping => "flapping",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::MakeBeforeBreak => "upmt handover --all --to umts0",
            Scenario::InterfaceDown => "link wlan0 down",
            Scenario::Blackhole => "link wlan0 blackhole on",
            Scenario::LinkUp => "link wlan0 up (flows on umts0)",
            Scenario::Flapping => "link wlan0 down/up x3, 1 s apart",
        }
    }

    /// The event: `upmt ...` steps go to the mobile host's daemon, the others to
    /// `testbed.sh`.
    fn steps(self) -> Vec<Step> {
        match self {
            Scenario::MakeBeforeBreak => vec![step(
                0,
                &["upmt", "handover", "--all", "--to", "umts0"],
                "handover to umts0",
            )],
            Scenario::InterfaceDown => vec![step(0, &["link", "wlan0", "down"], "wlan0 down")],
            Scenario::Blackhole => vec![step(
                0,
                &["link", "wlan0", "blackhole", "on"],
                "blackhole on",
            )],
            Scenario::LinkUp => vec![step(0, &["link", "wlan0", "up"], "wlan0 up")],
            Scenario::Flapping => (0..6)
                .map(|i| {
                    if i % 2 == 0 {
                        step(i * 1000, &["link", "wlan0", "down"], "down")
                    } else {
                        step(i * 1000, &["link", "wlan0", "up"], "up")
                    }
                })
                .collect(),
        }
    }

    /// What puts the testbed back after a run.
    fn undo(self) -> Option<[&'static str; 3]> {
        match self {
            Scenario::InterfaceDown => Some(["link", "wlan0", "up"]),
            Scenario::Blackhole => Some(["link", "wlan0", "blackhole"]),
            _ => None,
        }
    }
}

/// Timing of the runs.
struct Timing {
    /// Time from the flows' start to the event.
    event_at: Duration,
    /// Time the flows go on after the event's last step.
    tail: Duration,
    /// Quiet time before each run.
    settle: Duration,
    /// Pre-event intervals before this are TCP slow start.
    warmup_s: f64,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    scenario: &'static str,
    run: u32,
    /// Event steps: ms since the probe's start, and how long the command took (ms).
    events_ms: Vec<(f64, f64)>,
    probe: ProbeStats,
    tcp_retransmits: Option<u64>,
    tcp_rto: Option<u64>,
    tcp_pre_event_mbps: Option<f64>,
    tcp_recovery_ms: Option<f64>,
    tcp_intervals: usize,
    /// Where the mobile host had the flows (proto:iface) before the event and 0.5 s after
    /// its last step.
    flows_before: Vec<String>,
    flows_after: Vec<String>,
}

/// Median figures of a scenario.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    scenario: &'static str,
    event: &'static str,
    runs: usize,
    interruption_ms: Option<f64>,
    max_gap_ms: Option<f64>,
    lost: Option<f64>,
    max_loss_run: Option<f64>,
    duplicated: Option<f64>,
    reordered: Option<f64>,
    rtt_p50_ms: Option<f64>,
    tcp_retransmits: Option<f64>,
    tcp_rto: Option<f64>,
    tcp_pre_event_mbps: Option<f64>,
    tcp_recovery_ms: Option<f64>,
    /// Runs whose flow did not get back to 80 % of its pre-event throughput.
    tcp_not_recovered: usize,
}

#[derive(Serialize)]
struct Report<'a> {
    tool: &'static str,
    date_unix_s: u64,
    quick: bool,
    repeats: u32,
    probe_interval_us: u64,
    tcp_rate: &'a str,
    upmt_bin: String,
    summary: Vec<Summary>,
    runs: Vec<Run>,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The mobile host's tunnels that are `up`, by interface.
fn tunnels_up(tb: &Testbed) -> Vec<String> {
    let Ok(out) = tb.upmt(&["status", "--json"]) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
        return Vec::new();
    };
    v.get("tunnels")
        .and_then(|t| t.as_array())
        .map(|ts| {
            ts.iter()
                .filter(|t| t.get("state").and_then(|s| s.as_str()) == Some("up"))
                .filter_map(|t| t.get("iface").and_then(|i| i.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until `want(up tunnels)` holds, for at most `limit`.
fn wait_tunnels(tb: &Testbed, limit: Duration, want: impl Fn(&[String]) -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if want(&tunnels_up(tb)) {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    false
}

fn both_up(up: &[String]) -> bool {
    up.iter().any(|i| i == "wlan0") && up.iter().any(|i| i == "umts0")
}

/// The interfaces the mobile host has the run's flows on (probe and TCP flow to the
/// correspondent host), e.g. `["udp:wlan0", "tcp:wlan0"]`.
fn flow_ifaces(tb: &Testbed) -> Vec<String> {
    let Ok(out) = tb.upmt(&["status", "--json"]) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
        return Vec::new();
    };
    let ports = [format!("{CH}:{ECHO_PORT}"), format!("{CH}:{IPERF_PORT}")];
    let mut r: Vec<String> = v
        .get("flows")
        .and_then(|f| f.as_array())
        .map(|fs| {
            fs.iter()
                .filter(|f| {
                    f.get("dst")
                        .and_then(|d| d.as_str())
                        .is_some_and(|d| ports.iter().any(|p| p == d))
                })
                .map(|f| {
                    format!(
                        "{}:{}",
                        f.get("proto").and_then(|p| p.as_str()).unwrap_or("?"),
                        f.get("iface").and_then(|i| i.as_str()).unwrap_or("none")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    r.sort();
    r.dedup();
    r
}

fn run_step(tb: &Testbed, args: &[&str]) -> Result<()> {
    match args.split_first() {
        Some((&"upmt", rest)) => tb.upmt(rest).map(|_| ()),
        _ => tb.script(args).map(|_| ()),
    }
}

/// Parses iperf3's `-J` report: the per-interval throughput and the sender's retransmits.
fn parse_iperf(json: &str) -> (Vec<Interval>, Option<u64>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return (Vec::new(), None);
    };
    let intervals = v
        .get("intervals")
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    let s = i.get("sum")?;
                    Some(Interval {
                        start_s: s.get("start")?.as_f64()?,
                        end_s: s.get("end")?.as_f64()?,
                        bits_per_second: s.get("bits_per_second")?.as_f64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let retransmits = v
        .pointer("/end/sum_sent/retransmits")
        .and_then(|r| r.as_u64());
    (intervals, retransmits)
}

/// The child's output once it exits, or after `deadline` (then it is killed, by PID, and
/// what it wrote so far comes back).
fn wait_until(child: Child, deadline: Instant) -> Result<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(r) => Ok(r?),
        Err(_) => {
            eprint!("(killing a client that outlived its run: pid {pid}) ");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            rx.recv_timeout(Duration::from_secs(5))
                .context("the killed client did not exit")?
                .map_err(anyhow::Error::from)
        }
    }
}

fn spawn_piped(mut c: Command) -> Result<Child> {
    c.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning a flow")
}

/// One run of one scenario; returns its figures and the trace (for the timeline).
fn run_once(
    tb: &Testbed,
    exe: &Path,
    sc: Scenario,
    run: u32,
    timing: &Timing,
    tcp_rate: &str,
) -> Result<(Run, Trace)> {
    // Start from flows on wlan0 with both tunnels up.
    if !wait_tunnels(tb, Duration::from_secs(15), both_up) {
        let status = tb.upmt(&["status"]).unwrap_or_default();
        let logs = tb
            .script(&["upmt", "logs"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        bail!(
            "the tunnels did not come (back) up before {} run {run}\n{status}\n{}",
            sc.name(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    tb.upmt(&["handover", "--all", "--to", "wlan0"])?;
    if sc == Scenario::LinkUp {
        tb.script(&["link", "wlan0", "down"])?;
        wait_tunnels(tb, Duration::from_secs(5), |up| {
            !up.iter().any(|i| i == "wlan0")
        });
    }
    sleep(timing.settle);
    let steps = sc.steps();
    let last_ms = steps.last().map_or(0, |s| s.at_ms);
    let flow = timing.event_at + Duration::from_millis(last_ms) + timing.tail;
    let rto0 = tb.tcp_timeouts().ok();

    let iperf_start = unix_ns();
    let mut iperf = tb.cmd("mh", Path::new("iperf3"));
    iperf.args(["-c", CH, "-p", &IPERF_PORT.to_string(), "-J", "-i", "0.1"]);
    iperf.args(["-t", &format!("{:.1}", flow.as_secs_f64()), "-b", tcp_rate]);
    let iperf = spawn_piped(iperf)?;
    let mut probe = tb.cmd("mh", exe);
    probe.args(["probe", "--to", &format!("{CH}:{ECHO_PORT}")]);
    probe.args(["--interval-us", "1000"]);
    probe.args(["--duration-ms", &flow.as_millis().to_string()]);
    let probe = spawn_piped(probe)?;

    let t0 = Instant::now();
    // New flows follow the policy, which an earlier run's handover may have changed: move
    // this run's flows onto wlan0 (not in link-up, where wlan0 is down) before the event.
    sleep(Duration::from_millis(250));
    if sc != Scenario::LinkUp {
        tb.upmt(&["handover", "--all", "--to", "wlan0"])?;
    }
    sleep(Duration::from_millis(100));
    let flows_before = flow_ifaces(tb);
    let mut events = Vec::new();
    let mut step_err = None;
    for s in &steps {
        let at = timing.event_at + Duration::from_millis(s.at_ms);
        if let Some(d) = at.checked_sub(t0.elapsed()) {
            sleep(d);
        }
        let start = unix_ns();
        let r = run_step(tb, &s.args);
        events.push((start, unix_ns().saturating_sub(start), s.label));
        if let Err(e) = r {
            step_err = Some(e);
            break;
        }
    }
    sleep(Duration::from_millis(500));
    let flows_after = flow_ifaces(tb);
    // A client stuck on a dead path must not hang the harness: killed 15 s past its end.
    let deadline = t0 + flow + Duration::from_secs(15);
    let probe_out = wait_until(probe, deadline).context("waiting for the probe")?;
    let iperf_out = wait_until(iperf, deadline).context("waiting for iperf3")?;
    let rto1 = tb.tcp_timeouts().ok();
    if let Some(u) = sc.undo() {
        let mut args = u.to_vec();
        if sc == Scenario::Blackhole {
            args.push("off");
        }
        tb.script(&args)?;
    }
    if sc == Scenario::Flapping || sc == Scenario::LinkUp {
        // Whatever the last step left, wlan0 is up for the next run.
        tb.script(&["link", "wlan0", "up"])?;
    }
    if let Some(e) = step_err {
        return Err(e.context(format!("{} run {run}: event", sc.name())));
    }
    let trace: Trace = serde_json::from_slice(&probe_out.stdout)
        .with_context(|| format!("{} run {run}: the probe's output", sc.name()))?;

    let first_event = events.first().map_or(0, |e| e.0);
    let ev_probe_ns = first_event.saturating_sub(trace.start_unix_ns);
    let probe = analysis::probe_stats(&trace, ev_probe_ns);
    let (intervals, tcp_retransmits) = parse_iperf(&String::from_utf8_lossy(&iperf_out.stdout));
    let ev_iperf_s = first_event.saturating_sub(iperf_start) as f64 / 1e9;
    let tcp_pre_event_mbps =
        analysis::pre_event_bps(&intervals, ev_iperf_s, timing.warmup_s).map(|b| b / 1e6);
    let tcp_recovery_ms = analysis::recovery_ms(&intervals, ev_iperf_s, timing.warmup_s, RECOVERED);
    let run = Run {
        scenario: sc.name(),
        run,
        events_ms: events
            .iter()
            .map(|(t, d, _)| {
                (
                    t.saturating_sub(trace.start_unix_ns) as f64 / 1e6,
                    *d as f64 / 1e6,
                )
            })
            .collect(),
        probe,
        tcp_retransmits,
        tcp_rto: rto0.zip(rto1).map(|(a, b)| b.saturating_sub(a)),
        tcp_pre_event_mbps,
        tcp_recovery_ms,
        tcp_intervals: intervals.len(),
        flows_before,
        flows_after,
    };
    Ok((run, trace))
}

fn med<T: Into<f64> + Copy>(runs: &[&Run], f: impl Fn(&Run) -> Option<T>) -> Option<f64> {
    let v: Vec<f64> = runs.iter().filter_map(|r| f(r).map(Into::into)).collect();
    analysis::median(&v)
}

fn summarise(sc: Scenario, runs: &[&Run]) -> Summary {
    Summary {
        scenario: sc.name(),
        event: sc.describe(),
        runs: runs.len(),
        interruption_ms: med(runs, |r| Some(r.probe.interruption_ms)),
        max_gap_ms: med(runs, |r| Some(r.probe.max_gap_ms)),
        lost: med(runs, |r| Some(r.probe.lost as f64)),
        max_loss_run: med(runs, |r| Some(r.probe.max_loss_run as f64)),
        duplicated: med(runs, |r| Some(r.probe.duplicated as f64)),
        reordered: med(runs, |r| Some(r.probe.reordered as f64)),
        rtt_p50_ms: med(runs, |r| Some(r.probe.rtt_p50_ms)),
        tcp_retransmits: med(runs, |r| r.tcp_retransmits.map(|v| v as f64)),
        tcp_rto: med(runs, |r| r.tcp_rto.map(|v| v as f64)),
        tcp_pre_event_mbps: med(runs, |r| r.tcp_pre_event_mbps),
        tcp_recovery_ms: med(runs, |r| r.tcp_recovery_ms),
        tcp_not_recovered: runs.iter().filter(|r| r.tcp_recovery_ms.is_none()).count(),
    }
}

fn cell(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"))
}

/// The terminal table.
fn table(summary: &[Summary]) -> String {
    let mut out = format!(
        "{:<18} {:>6} {:>8} {:>8} {:>6} {:>5} {:>5} {:>6} {:>5} {:>4} {:>9} {:>7}\n",
        "scenario",
        "runs",
        "interr",
        "max gap",
        "lost",
        "dup",
        "reord",
        "rtt50",
        "retr",
        "RTO",
        "recovery",
        "TCP"
    );
    out.push_str(&format!(
        "{:<18} {:>6} {:>8} {:>8} {:>6} {:>5} {:>5} {:>6} {:>5} {:>4} {:>9} {:>7}\n",
        "", "", "ms", "ms", "", "", "", "ms", "", "", "ms", "Mb/s"
    ));
    for s in summary {
        let rec = match (s.tcp_recovery_ms, s.tcp_not_recovered) {
            (r, 0) => cell(r, 0),
            (r, n) => format!("{}+{n}x", cell(r, 0)),
        };
        out.push_str(&format!(
            "{:<18} {:>6} {:>8} {:>8} {:>6} {:>5} {:>5} {:>6} {:>5} {:>4} {:>9} {:>7}\n",
            s.scenario,
            s.runs,
            cell(s.interruption_ms, 1),
            cell(s.max_gap_ms, 1),
            cell(s.lost, 0),
            cell(s.duplicated, 0),
            cell(s.reordered, 0),
            cell(s.rtt_p50_ms, 2),
            cell(s.tcp_retransmits, 0),
            cell(s.tcp_rto, 0),
            rec,
            cell(s.tcp_pre_event_mbps, 0),
        ));
    }
    out
}

/// `upmt-bench handover`.
pub(crate) fn main(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("upmt-bench handover needs root (network namespaces)");
    }
    let root = testbed::find_root(opts.repo.as_deref())?;
    let upmt = testbed::upmt_bin(&root)?;
    let exe = std::env::current_exe().context("locating upmt-bench")?;
    let echo = exe.with_file_name("upmt-udpprobe");
    if !echo.is_file() {
        bail!(
            "{} not found: build it next to upmt-bench (cargo build -p perf --bins)",
            echo.display()
        );
    }
    let scenarios: Vec<Scenario> = if opts.only.is_empty() {
        ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for n in &opts.only {
            match ALL.iter().find(|s| s.name() == n) {
                Some(s) => v.push(*s),
                None => bail!("unknown scenario {n:?}"),
            }
        }
        v
    };
    let repeats = opts
        .repeats
        .unwrap_or(if opts.quick { 1 } else { 3 })
        .max(1);
    let timing = if opts.quick {
        Timing {
            event_at: Duration::from_millis(1500),
            tail: Duration::from_millis(2000),
            settle: Duration::from_millis(300),
            warmup_s: 0.5,
        }
    } else {
        Timing {
            event_at: Duration::from_secs(3),
            tail: Duration::from_secs(4),
            settle: Duration::from_secs(1),
            warmup_s: 1.0,
        }
    };
    let prefix = opts
        .prefix
        .clone()
        .unwrap_or_else(|| format!("ub{}-", std::process::id()));
    let t_start = Instant::now();
    eprintln!(
        "upmt-bench handover: testbed {prefix} (upmt: {}), {} scenarios x {repeats}",
        upmt.display(),
        scenarios.len()
    );
    let mut tb = Testbed::up(&root, &prefix, upmt.clone())?;
    let mut echo_cmd = tb.cmd("ch", &echo);
    echo_cmd.args(["echo", "--bind", &format!("{CH}:{ECHO_PORT}")]);
    tb.spawn_server(echo_cmd)?;
    let mut iperf_srv = tb.cmd("ch", Path::new("iperf3"));
    iperf_srv.args(["-s", "-B", CH, "-p", &IPERF_PORT.to_string()]);
    tb.spawn_server(iperf_srv)?;
    tb.script(&["upmt", "start"]).context("starting UPMT")?;
    eprintln!(
        "  testbed and UPMT up ({:.1} s)",
        t_start.elapsed().as_secs_f64()
    );

    let total = scenarios.len() as u32 * repeats;
    let mut n = 0;
    let mut runs: Vec<Run> = Vec::new();
    let mut panels: Vec<svg::Panel> = Vec::new();
    for sc in &scenarios {
        for r in 1..=repeats {
            n += 1;
            eprint!(
                "  [{n:>2}/{total}] {} {:<18} run {r}/{repeats} ... ",
                super::report::progress(n - 1, total),
                sc.name()
            );
            let (run, trace) = run_once(&tb, &exe, *sc, r, &timing, &opts.tcp_rate)?;
            eprintln!(
                "flows {} -> {}: interruption {:.1} ms, lost {}, retr {}, RTO {}, recovery {}",
                run.flows_before.join(","),
                run.flows_after.join(","),
                run.probe.interruption_ms,
                run.probe.lost,
                run.tcp_retransmits.map_or("-".into(), |v| v.to_string()),
                run.tcp_rto.map_or("-".into(), |v| v.to_string()),
                run.tcp_recovery_ms
                    .map_or("not recovered".into(), |v| format!("{v:.0} ms")),
            );
            if r == 1 {
                panels.push(svg::Panel {
                    title: format!("{} ({})", sc.name(), sc.describe()),
                    probes: analysis::per_probe(&trace),
                    events: run
                        .events_ms
                        .iter()
                        .zip(sc.steps())
                        .map(|((t, _), s)| ((*t * 1e6) as u64, s.label.to_string()))
                        .collect(),
                    duration_ns: trace.sent * trace.interval_ns,
                });
            }
            runs.push(run);
        }
    }
    tb.down();
    drop(tb);

    let summary: Vec<Summary> = scenarios
        .iter()
        .map(|sc| {
            let rs: Vec<&Run> = runs.iter().filter(|r| r.scenario == sc.name()).collect();
            summarise(*sc, &rs)
        })
        .collect();
    println!(
        "\nhandover through UPMT: medians of {repeats} run(s); 1 ms UDP echo probe + iperf3 TCP ({})\n",
        opts.tcp_rate
    );
    print!("{}", table(&summary));
    println!(
        "\ninterr: largest gap between echoes ending after the event; retr: iperf3 retransmits; \
         RTO: TcpTimeouts on mh;\nrecovery: event -> TCP back at >= 80 % of its pre-event \
         median (100 ms intervals; +Nx: N runs never recovered)"
    );
    eprintln!("  done in {:.1} s", t_start.elapsed().as_secs_f64());
    if let Some(p) = &opts.json {
        let report = Report {
            tool: "upmt-bench handover",
            date_unix_s: unix_ns() / 1_000_000_000,
            quick: opts.quick,
            repeats,
            probe_interval_us: 1000,
            tcp_rate: &opts.tcp_rate,
            upmt_bin: upmt.display().to_string(),
            summary,
            runs,
        };
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("  JSON: {}", p.display());
    }
    if let Some(p) = &opts.svg {
        let doc = svg::render(
            "UPMT handover timeline: 1 ms UDP echo probe RTT vs time (upmt-bench handover)",
            &panels,
        );
        std::fs::write(p, doc).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("  SVG: {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf_report_parsing() {
        let j = r#"{"intervals":[{"sum":{"start":0,"end":0.1,"bits_per_second":1e8}},
            {"sum":{"start":0.1,"end":0.2,"bits_per_second":2e8}}],
            "end":{"sum_sent":{"retransmits":7}}}"#;
        let (iv, retr) = parse_iperf(j);
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[1].bits_per_second, 2e8);
        assert_eq!(retr, Some(7));
        assert_eq!(parse_iperf("{\"error\":\"x\"}"), (Vec::new(), None));
        assert_eq!(parse_iperf("not json"), (Vec::new(), None));
    }

    #[test]
    fn scenarios_have_named_steps() {
        for s in ALL {
            assert!(!s.steps().is_empty(), "{s:?}");
        }
        assert_eq!(Scenario::Flapping.steps().len(), 6);
        assert_eq!(Scenario::Flapping.steps()[5].at_ms, 5000);
    }
}
