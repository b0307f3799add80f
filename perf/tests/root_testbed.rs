//! Root tests of `scripts/testbed.sh` and the link emulator: they build the reference
//! topology in network namespaces (unique prefix per test), ping through it, impair the
//! mobile host's access links and check the effect, and make sure nothing is left behind.
//!
//! Needs root, iproute2, nftables and iputils-ping (`scripts/install-deps.sh`). Missing
//! prerequisites make the tests FAIL with a message, never pass silently. The tests run one
//! at a time (a lock), so RTT measurements are not disturbed by a sibling test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

const NODES: [&str; 6] = ["mh", "nat0", "nat1", "inet", "an", "ch"];
const CH: &str = "198.18.3.1";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh")
}

/// Fails the test with a clear message when something it needs is missing.
fn require_prerequisites() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .expect("running `id -u`");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "testbed tests need root (network namespaces, nftables): run `sudo scripts/test.sh`"
    );
    for tool in ["ip", "nft", "ping", "tc", "flock", "iperf3", "ss"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "testbed tests need `{tool}`: run scripts/install-deps.sh \
             (apt-get install iproute2 nftables iputils-ping util-linux iperf3)"
        );
    }
    assert!(script().exists(), "missing {}", script().display());
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// PIDs of running `upmt-linkemu` processes whose command line mentions `needle`.
fn emulators_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if comm.trim() == "upmt-linkemu" && String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// One testbed with a unique prefix; `down` on drop, pass or fail.
struct Testbed {
    prefix: String,
}

impl Testbed {
    fn new() -> Self {
        require_prerequisites();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            prefix: format!("ut{}x{n}-", std::process::id()),
        }
    }

    fn up() -> Self {
        let tb = Self::new();
        tb.ok(&["up"]);
        tb
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(script())
            .args(["--prefix", &self.prefix])
            .args(args)
            .env("UPMT_LINKEMU", env!("CARGO_BIN_EXE_upmt-linkemu"))
            .output()
            .expect("running scripts/testbed.sh")
    }

    /// Runs a verb that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            let mut logs = String::new();
            for entry in std::fs::read_dir(self.state_dir())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") || name.ends_with(".status") {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    logs += &format!("--- {name}\n{text}");
                }
            }
            panic!(
                "testbed.sh {args:?} failed ({}):\n{}{}{logs}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn exec(&self, node: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", node, "--"];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    fn ns(&self) -> Vec<String> {
        namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix))
            .collect()
    }

    fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/upmt-testbed/{}", self.prefix))
    }

    /// Pings ch from mh through `iface`; returns (sent, received, RTTs in ms).
    fn ping(&self, iface: &str, count: u32, interval: &str) -> Ping {
        let c = count.to_string();
        let out = self.exec(
            "mh",
            &[
                "ping", "-n", "-c", &c, "-i", interval, "-W", "1", "-I", iface, CH,
            ],
        );
        Ping::parse(&String::from_utf8_lossy(&out.stdout))
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

#[derive(Debug)]
struct Ping {
    sent: u32,
    received: u32,
    rtts: Vec<f64>,
}

impl Ping {
    fn parse(text: &str) -> Self {
        let mut rtts = Vec::new();
        let (mut sent, mut received) = (0, 0);
        for line in text.lines() {
            if let Some(t) = line.split("time=").nth(1) {
                if let Some(v) = t.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    rtts.push(v);
                }
            }
            if line.contains("packets transmitted") {
                let nums: Vec<u32> = line
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                sent = nums.first().copied().unwrap_or(0);
                received = nums.get(1).copied().unwrap_or(0);
            }
        }
        Self {
            sent,
            received,
            rtts,
        }
    }

    fn median(&self) -> f64 {
        let mut v = self.rtts.clone();
        assert!(!v.is_empty(), "no ping replies: {self:?}");
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn loss_pct(&self) -> f64 {
        assert!(self.sent > 0, "ping sent nothing");
        100.0 * f64::from(self.sent - self.received) / f64::from(self.sent)
    }
}

#[test]
fn up_and_down_leave_nothing_behind_and_are_idempotent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::new();
    assert!(tb.ns().is_empty());
    // `down` with nothing up is harmless.
    tb.ok(&["down"]);
    tb.ok(&["up"]);
    let mut want: Vec<String> = NODES.iter().map(|n| format!("{}{n}", tb.prefix)).collect();
    let mut have = tb.ns();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    // `up` twice is harmless and leaves a working testbed.
    let again = tb.ok(&["up"]);
    assert!(again.contains("already up"), "{again}");
    assert_eq!(tb.ping("wlan0", 1, "0.2").received, 1);
    assert!(tb.ok(&["status"]).contains("up"));

    // The emulator is started by the testbed and must be gone after down, as must a server
    // started in a namespace.
    tb.ok(&["link", "wlan0", "delay", "5"]);
    let state = tb.state_dir().to_string_lossy().into_owned();
    assert_eq!(emulators_mentioning(&state).len(), 1);
    let server = tb.exec("ch", &["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"]);
    let sleeper: u32 = String::from_utf8_lossy(&server.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{sleeper}")).exists());

    tb.ok(&["down"]);
    assert!(tb.ns().is_empty(), "namespaces left: {:?}", tb.ns());
    assert!(!tb.state_dir().exists());
    let lock = format!("/run/upmt-testbed/{}.lock", tb.prefix);
    assert!(!Path::new(&lock).exists(), "{lock} left behind");
    assert!(emulators_mentioning(&state).is_empty());
    let sleeper_state =
        std::fs::read_to_string(format!("/proc/{sleeper}/status")).unwrap_or_default();
    assert!(
        sleeper_state.is_empty() || sleeper_state.contains("zombie"),
        "a process started in the testbed survived down"
    );
    // `down` twice is harmless; `status` says down.
    tb.ok(&["down"]);
    assert_eq!(tb.run(&["status"]).status.code(), Some(3));
}

#[test]
fn mh_reaches_ch_over_each_access_network() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::up();
    // The core router has no route to the private access networks, so a reply can only
    // come back through the NATs' masquerade.
    for iface in ["wlan0", "umts0"] {
        let p = tb.ping(iface, 3, "0.1");
        assert_eq!(p.received, 3, "ping over {iface}: {p:?}");
    }
    // Source routing: sourced from umts0's address, the ping leaves through umts0, and the
    // default (no interface) goes through wlan0.
    let out = tb.exec(
        "mh",
        &[
            "ping",
            "-n",
            "-c",
            "2",
            "-i",
            "0.1",
            "-I",
            "10.10.10.25",
            CH,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let count = |nat: &str| -> u64 {
        let o = tb.exec(nat, &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]);
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    assert!(count("nat0") >= 1 && count("nat1") >= 1);
    // The anchor's public NAT address is routed to the anchor by the core router.
    let route = tb.exec("inet", &["ip", "route", "get", "198.18.2.100"]);
    assert!(String::from_utf8_lossy(&route.stdout).contains("via 198.18.2.1"));
    // The NATs' UDP mapping timeout is settable, with `nat` or with `up` (also when up).
    let timeout = |nat: &str, which: &str| -> String {
        let path = format!("/proc/sys/net/netfilter/nf_conntrack_udp_timeout{which}");
        let o = tb.exec(nat, &["cat", &path]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    tb.ok(&["nat", "nat0", "udp-timeout", "7"]);
    assert_eq!(
        (timeout("nat0", ""), timeout("nat0", "_stream")),
        ("7".into(), "7".into())
    );
    assert_eq!(timeout("nat1", ""), "30");
    tb.ok(&["up", "--nat-udp-timeout", "9"]);
    assert_eq!(
        (timeout("nat0", ""), timeout("nat1", "_stream")),
        ("9".into(), "9".into())
    );
    assert!(!tb
        .run(&["nat", "nat0", "udp-timeout", "0"])
        .status
        .success());
}

#[test]
fn delay_raises_rtt_and_loss_drops_its_share() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::up();
    let base = tb.ping("wlan0", 30, "0.02").median();

    tb.ok(&["link", "wlan0", "delay", "40"]);
    let delayed = tb.ping("wlan0", 30, "0.02").median();
    let added = delayed - base;
    assert!(
        (37.0..=43.0).contains(&added),
        "delay 40 added {added:.2} ms (base {base:.3})"
    );
    // umts0 is unaffected.
    assert!(tb.ping("umts0", 10, "0.02").median() < base + 3.0);

    // Loss combines with the delay already set.
    tb.ok(&["link", "wlan0", "loss", "20"]);
    let p = tb.ping("wlan0", 500, "0.01");
    let loss = p.loss_pct();
    assert!(
        (14.0..=26.0).contains(&loss),
        "loss 20 lost {loss:.1} % of {}",
        p.sent
    );
    let added = p.median() - base;
    assert!(
        (37.0..=43.0).contains(&added),
        "delay lost after loss: {added:.2} ms"
    );

    // clear takes the emulator out of the path and restores the plain link.
    tb.ok(&["link", "wlan0", "clear"]);
    let state = tb.state_dir().to_string_lossy().into_owned();
    assert!(
        emulators_mentioning(&state).is_empty(),
        "emulator still running after clear"
    );
    let links = tb.exec("nat0", &["ip", "-br", "link"]);
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("lan-in") && !links.contains("lan-emu"),
        "{links}"
    );
    let p = tb.ping("wlan0", 20, "0.02");
    assert_eq!(p.received, 20);
    assert!(
        p.median() < base + 3.0,
        "RTT after clear {:.3} ms",
        p.median()
    );
}

#[test]
fn link_down_and_blackhole_cut_and_clear_restores() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::up();
    assert_eq!(tb.ping("wlan0", 2, "0.1").received, 2);

    tb.ok(&["link", "wlan0", "down"]);
    assert_eq!(tb.ping("wlan0", 2, "0.1").received, 0);
    assert_eq!(tb.ping("umts0", 2, "0.1").received, 2);
    tb.ok(&["link", "wlan0", "up"]);
    assert_eq!(
        tb.ping("wlan0", 2, "0.1").received,
        2,
        "routes not restored after up"
    );

    // Blackhole: the interface stays up, packets vanish; also with the emulator spliced in.
    for with_emulator in [false, true] {
        if with_emulator {
            tb.ok(&["link", "wlan0", "delay", "2"]);
        }
        tb.ok(&["link", "wlan0", "blackhole", "on"]);
        let oper = tb.exec("mh", &["cat", "/sys/class/net/wlan0/operstate"]);
        assert_eq!(String::from_utf8_lossy(&oper.stdout).trim(), "up");
        assert_eq!(
            tb.ping("wlan0", 3, "0.1").received,
            0,
            "emulator: {with_emulator}"
        );
        assert_eq!(tb.ping("umts0", 2, "0.1").received, 2);
        tb.ok(&["link", "wlan0", "clear"]);
        assert_eq!(
            tb.ping("wlan0", 2, "0.1").received,
            2,
            "clear did not restore"
        );
    }

    // Rate: a tbf on both ends while set, gone after clear.
    tb.ok(&["link", "wlan0", "rate", "50"]);
    let q = tb.exec("mh", &["tc", "qdisc", "show", "dev", "wlan0"]);
    assert!(String::from_utf8_lossy(&q.stdout).contains("tbf"));
    let q = tb.exec("nat0", &["tc", "qdisc", "show", "dev", "lan"]);
    assert!(String::from_utf8_lossy(&q.stdout).contains("tbf"));
    assert_eq!(tb.ping("wlan0", 2, "0.1").received, 2);
    tb.ok(&["link", "wlan0", "clear"]);
    let q = tb.exec("mh", &["tc", "qdisc", "show", "dev", "wlan0"]);
    assert!(!String::from_utf8_lossy(&q.stdout).contains("tbf"));

    // Bad arguments are refused.
    assert!(!tb.run(&["link", "eth7", "delay", "4"]).status.success());
    assert!(!tb.run(&["link", "wlan0", "loss", "120"]).status.success());
    assert!(!tb.run(&["link", "wlan0", "delay", "x"]).status.success());
}

/// Runs one iperf3 client from mh (bound to wlan0's address) against a one-shot server in
/// ch; returns the client's output. Panics if the transfer fails.
fn iperf3(tb: &Testbed, extra: &[&str]) -> String {
    let server = tb.exec("ch", &["iperf3", "-s", "-1", "-D", "-B", CH]);
    assert!(server.status.success(), "iperf3 server: {server:?}");
    let mut listening = false;
    for _ in 0..50 {
        let ss = tb.exec("ch", &["ss", "-ltn"]);
        if String::from_utf8_lossy(&ss.stdout).contains(":5201 ") {
            listening = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(listening, "iperf3 server did not listen");
    let mut args = vec![
        "iperf3",
        "-c",
        CH,
        "-B",
        "192.168.100.25",
        "-t",
        "1",
        "--connect-timeout",
        "5000",
    ];
    args.extend_from_slice(extra);
    let out = tb.exec("mh", &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "iperf3 {extra:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn tcp_and_udp_cross_the_spliced_emulator() {
    // ICMP checksums are computed in software; TCP and UDP on veth leave theirs to
    // "hardware" and travel as GSO frames, which the relay must carry intact
    // (PACKET_VNET_HDR). A relay without it passes pings and drops every TCP segment.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::up();
    tb.ok(&["link", "wlan0", "delay", "2", "dir", "both"]);
    for extra in [&[][..], &["-R"][..]] {
        let out = iperf3(&tb, extra);
        let receiver = out
            .lines()
            .find(|l| l.contains("receiver"))
            .unwrap_or_default();
        assert!(receiver.contains("Bytes"), "TCP {extra:?}: {out}");
        assert!(
            !receiver.contains(" 0.00 Bytes"),
            "TCP {extra:?} moved nothing: {out}"
        );
    }
    let out = iperf3(&tb, &["-u", "-b", "10M"]);
    let receiver = out
        .lines()
        .find(|l| l.contains("receiver"))
        .unwrap_or_default();
    let pct: f64 = receiver
        .split('(')
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    assert!(pct < 10.0, "UDP through the emulator lost {pct} %: {out}");

    // `dir both` delays each direction: the RTT grows by twice the delay.
    tb.ok(&["link", "wlan0", "clear"]);
    let base = tb.ping("wlan0", 20, "0.02").median();
    tb.ok(&["link", "wlan0", "delay", "10ms", "dir", "both"]);
    let added = tb.ping("wlan0", 20, "0.02").median() - base;
    assert!(
        (17.0..=23.0).contains(&added),
        "delay 10 dir both added {added:.2} ms"
    );
}
