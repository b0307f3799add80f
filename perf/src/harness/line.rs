//! The 3-namespace line the throughput, pps and scale benches run on, owned by one harness
//! run (unique prefix, removed by `Drop` on every exit path, with the processes the harness
//! started in it), and the UPMT daemons and anchors on it.
//!
//! ```text
//!  [PREFIXmh]                              [PREFIXan]                          [PREFIXch]
//!  wlan0 192.168.100.25/24 ------- eth0 192.168.100.1/24
//!                                   lo   198.18.2.1/32 (SIP 5060, tunnels 1800, relay 1900)
//!                                  eth1 198.18.3.254/24 ------------------ eth0 198.18.3.1/24
//!  vx0  198.19.1.1/30   kernel VXLAN 42 (UDP 4789)   vx0 198.19.1.2/30
//!  nr0  198.19.2.1      naive relay TUN (UDP 1900)   nr0 198.19.2.2
//!  upmt0 VIPA (100.64.0.0/16) while the UPMT daemons run; anchor NAT public 198.18.2.100
//! ```
//! Every variant crosses the same two veth pairs and the anchor namespace; the source
//! address picks the path on the mobile host: 192.168.100.25 plain kernel routing (table 100),
//! 198.19.1.1 the VXLAN (table 201), 198.19.2.1 the relay (table 202), the VIPA UPMT (its
//! default route on upmt0). No link emulator is in the path.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub(crate) const CH: &str = "198.18.3.1";
pub(crate) const MH_WLAN: &str = "192.168.100.25";
pub(crate) const AN_LO: &str = "198.18.2.1";
pub(crate) const VX_MH: &str = "198.19.1.1";
pub(crate) const RELAY_MH: &str = "198.19.2.1";
pub(crate) const RELAY_PORT: u16 = 1900;
/// Inner MTU of the relay's TUN: the veth's 1500 minus IPv4 + UDP.
pub(crate) const RELAY_MTU: u32 = 1472;

/// Runs `program args`, failing with its output on a non-zero exit.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether we run as root.
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Fails unless we are root and every tool in `tools` is in PATH.
pub(crate) fn require(what: &str, tools: &[&str]) -> Result<()> {
    if !is_root() {
        bail!("upmt-bench {what} needs root (network namespaces, TUN)");
    }
    for t in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
            .unwrap_or(false);
        if !found {
            bail!("upmt-bench {what} needs `{t}` in PATH: run scripts/install-deps.sh");
        }
    }
    Ok(())
}

/// rx (packets, bytes) of interface `dev` in namespace `ns` (`ip -j -s link`).
pub(crate) fn rx_counters(ns: &str, dev: &str) -> Result<(u64, u64)> {
    let out = run("ip", &["-j", "-s", "-n", ns, "link", "show", "dev", dev])?;
    parse_rx(&out).with_context(|| format!("no rx counters for {dev} in {ns}"))
}

/// (packets, bytes) of `stats64.rx` in `ip -j -s link show` output.
pub(crate) fn parse_rx(json: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let rx = v.get(0)?.pointer("/stats64/rx")?;
    Some((rx.get("packets")?.as_u64()?, rx.get("bytes")?.as_u64()?))
}

/// A started process and what it is.
struct Proc {
    label: String,
    child: Child,
}

/// The line of one run.
pub(crate) struct Line {
    prefix: String,
    /// Scratch directory (configurations, logs), removed with the line.
    pub(crate) dir: PathBuf,
    procs: Vec<Proc>,
    built: Vec<String>,
}

impl Line {
    /// Namespace of `node` (`mh`, `an`, `ch`).
    pub(crate) fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    fn ip(&self, node: &str, args: &str) -> Result<()> {
        let ns = self.ns(node);
        let mut a: Vec<&str> = vec!["-n", &ns];
        a.extend(args.split_whitespace());
        run("ip", &a).map(|_| ())
    }

    fn sysctl(&self, node: &str, kv: &str) -> Result<()> {
        run(
            "ip",
            &["netns", "exec", &self.ns(node), "sysctl", "-q", "-w", kv],
        )
        .map(|_| ())
    }

    /// Builds the line (without the relay: see [`Line::start_relay`]).
    pub(crate) fn up(prefix: &str) -> Result<Line> {
        let dir = std::env::temp_dir().join(format!("{prefix}bench"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut line = Line {
            prefix: prefix.to_string(),
            dir,
            procs: Vec::new(),
            built: Vec::new(),
        };
        for n in ["mh", "an", "ch"] {
            let ns = line.ns(n);
            run("ip", &["netns", "add", &ns])?;
            line.built.push(ns);
            line.ip(n, "link set lo up")?;
        }
        let (an, ch) = (line.ns("an"), line.ns("ch"));
        line.ip(
            "mh",
            &format!("link add wlan0 type veth peer name eth0 netns {an}"),
        )?;
        line.ip(
            "an",
            &format!("link add eth1 type veth peer name eth0 netns {ch}"),
        )?;
        for cmd in [
            ("mh", "addr add 192.168.100.25/24 dev wlan0"),
            ("mh", "link set wlan0 up"),
            ("an", "addr add 192.168.100.1/24 dev eth0"),
            ("an", "addr add 198.18.2.1/32 dev lo"),
            ("an", "addr add 198.18.3.254/24 dev eth1"),
            ("an", "link set eth0 up"),
            ("an", "link set eth1 up"),
            ("ch", "addr add 198.18.3.1/24 dev eth0"),
            ("ch", "link set eth0 up"),
            ("ch", "route add default via 198.18.3.254"),
            ("mh", "route add default via 192.168.100.1 dev wlan0 metric 100"),
            ("mh", "route add 192.168.100.0/24 dev wlan0 table 100"),
            ("mh", "route add default via 192.168.100.1 dev wlan0 table 100"),
            ("mh", "rule add from 192.168.100.25 lookup 100 prio 1000"),
            // Kernel VXLAN anchor.
            (
                "mh",
                "link add vx0 type vxlan id 42 local 192.168.100.25 remote 198.18.2.1 dstport 4789 dev wlan0",
            ),
            ("mh", "addr add 198.19.1.1/30 dev vx0"),
            ("mh", "link set vx0 up"),
            ("mh", "route add default via 198.19.1.2 dev vx0 table 201"),
            ("mh", "rule add from 198.19.1.1 lookup 201 prio 1001"),
            (
                "an",
                "link add vx0 type vxlan id 42 local 198.18.2.1 remote 192.168.100.25 dstport 4789",
            ),
            ("an", "addr add 198.19.1.2/30 dev vx0"),
            ("an", "link set vx0 up"),
        ] {
            line.ip(cmd.0, cmd.1)?;
        }
        line.sysctl("an", "net.ipv4.ip_forward=1")?;
        // Readiness: ch answers over the plain route and over the VXLAN.
        line.wait_ping(MH_WLAN)?;
        line.wait_ping(VX_MH)?;
        Ok(line)
    }

    /// Polls until mh reaches ch from source `src` (5 s at most).
    pub(crate) fn wait_ping(&self, src: &str) -> Result<()> {
        let t0 = Instant::now();
        let ns = self.ns("mh");
        while t0.elapsed() < Duration::from_secs(5) {
            let ok = Command::new("ip")
                .args(["netns", "exec", &ns, "ping", "-c1", "-W1", "-I", src, CH])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        bail!("mh cannot reach {CH} from {src}")
    }

    /// A command in the namespace of `node` (`ip netns exec` execs the program: the
    /// child's PID is the program's).
    pub(crate) fn cmd(&self, node: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns")
            .arg("exec")
            .arg(self.ns(node))
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// Starts a long-running process, killed (by PID) when the line goes; returns its PID.
    pub(crate) fn spawn(&mut self, label: &str, mut c: Command, log: Option<&Path>) -> Result<u32> {
        match log {
            Some(p) => {
                let f = std::fs::File::create(p)
                    .with_context(|| format!("creating {}", p.display()))?;
                let f2 = f.try_clone().context("log file")?;
                c.stdout(f).stderr(f2);
            }
            None => {
                c.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = c.spawn().with_context(|| format!("starting {label}"))?;
        let pid = child.id();
        self.procs.push(Proc {
            label: label.to_string(),
            child,
        });
        Ok(pid)
    }

    /// Starts a long-running process that the harness talks to over its stdin and stdout
    /// (stderr goes to `log`), killed (by PID) when the line goes; returns its PID and pipes.
    pub(crate) fn spawn_piped(
        &mut self,
        label: &str,
        mut c: Command,
        log: &Path,
    ) -> Result<(u32, std::process::ChildStdin, std::process::ChildStdout)> {
        let f =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(f);
        let mut child = c.spawn().with_context(|| format!("starting {label}"))?;
        let pid = child.id();
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        self.procs.push(Proc {
            label: label.to_string(),
            child,
        });
        match (stdin, stdout) {
            (Some(i), Some(o)) => Ok((pid, i, o)),
            _ => bail!("{label}: no pipes"),
        }
    }

    /// The exit status of process `label` if it has ended.
    pub(crate) fn exited(&mut self, label: &str) -> Option<std::process::ExitStatus> {
        self.procs
            .iter_mut()
            .find(|p| p.label == label)
            .and_then(|p| p.child.try_wait().ok().flatten())
    }

    /// Ends process `label` at once (SIGKILL, by PID): it gets no chance to clean up (a
    /// mobile host that does not de-register).
    pub(crate) fn kill(&mut self, label: &str) {
        if let Some(i) = self.procs.iter().position(|p| p.label == label) {
            let mut p = self.procs.remove(i);
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Ends process `label`: SIGTERM (by PID), SIGKILL after `grace`.
    pub(crate) fn stop(&mut self, label: &str, grace: Duration) {
        let Some(i) = self.procs.iter().position(|p| p.label == label) else {
            return;
        };
        let mut p = self.procs.remove(i);
        if matches!(p.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let t0 = Instant::now();
            while t0.elapsed() < grace {
                if !matches!(p.child.try_wait(), Ok(None)) {
                    return;
                }
                sleep(Duration::from_millis(20));
            }
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
    }

    /// Starts the naive relay at both ends (`upmt-bench relay`) and routes 198.19.2.1
    /// through it.
    pub(crate) fn start_relay(&mut self, exe: &Path) -> Result<Vec<u32>> {
        let mut pids = Vec::new();
        for (node, local, peer, addr, peer_addr) in [
            ("mh", MH_WLAN, AN_LO, RELAY_MH, "198.19.2.2"),
            ("an", AN_LO, MH_WLAN, "198.19.2.2", RELAY_MH),
        ] {
            let mut c = self.cmd(node, exe);
            c.args(["relay", "--tun", "nr0"]);
            c.arg("--local").arg(format!("{local}:{RELAY_PORT}"));
            c.arg("--peer").arg(format!("{peer}:{RELAY_PORT}"));
            let log = self.dir.join(format!("relay-{node}.log"));
            pids.push(self.spawn(&format!("relay-{node}"), c, Some(&log))?);
            let t0 = Instant::now();
            while self.ip(node, "link show nr0").is_err() {
                if t0.elapsed() > Duration::from_secs(5) {
                    bail!(
                        "the relay in {node} did not create nr0: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                sleep(Duration::from_millis(20));
            }
            self.ip(node, &format!("addr add {addr} peer {peer_addr} dev nr0"))?;
            self.ip(node, &format!("link set nr0 mtu {RELAY_MTU} up"))?;
        }
        self.ip("mh", "route add default dev nr0 table 202")?;
        self.ip("mh", "rule add from 198.19.2.1 lookup 202 prio 1002")?;
        self.wait_ping(RELAY_MH)?;
        Ok(pids)
    }

    /// Kills what the harness started and deletes the namespaces (also what `Drop` does).
    pub(crate) fn down(&mut self) {
        while let Some(p) = self.procs.first().map(|p| p.label.clone()) {
            self.stop(&p, Duration::from_secs(3));
        }
        for ns in self.built.drain(..).rev() {
            // Anything still inside (a process that escaped us) keeps a namespace alive:
            // end only processes in our namespaces, by PID.
            if let Ok(pids) = run("ip", &["netns", "pids", &ns]) {
                for pid in pids.split_whitespace() {
                    let _ = Command::new("kill")
                        .args(["-KILL", pid])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = run("ip", &["netns", "del", &ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_counters_from_ip_json() {
        let j = r#"[{"ifindex":2,"ifname":"eth0","stats64":{"rx":{"bytes":1500,"packets":10,"errors":0},"tx":{"bytes":7,"packets":1}}}]"#;
        assert_eq!(parse_rx(j), Some((10, 1500)));
        assert_eq!(parse_rx("[]"), None);
        assert_eq!(parse_rx("nope"), None);
    }
}
