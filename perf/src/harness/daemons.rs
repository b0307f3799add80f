//! The real UPMT daemons on the line (`upmt anchor` in PREFIXan, `upmt mobile` in PREFIXmh),
//! with configurations the harness writes for each variant.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::line::Line;

/// How the anchor NATs (`[nat] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nat {
    Upmt,
    Kernel,
}

/// One configuration of the daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setup {
    pub(crate) nat: Nat,
    /// `[dataplane] offload` in both files; `None` leaves the key out (the daemon's default).
    pub(crate) offload: Option<bool>,
    /// `[dataplane] shards` of the anchor (pinned); `None`: the default (one per core).
    pub(crate) shards: Option<u32>,
}

/// Why a variant could not run: the daemon refused its configuration.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused by upmt: {}", self.0)
    }
}

impl std::error::Error for Refused {}

pub(crate) const USER: &str = "mh1";
const PASSWORD: &str = "bench-mh1-secret";

/// The anchor's configuration text.
pub(crate) fn anchor_toml(s: Setup, credentials: &Path, max_hosts: u32) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "[sip]\nlisten = \"198.18.2.1:5060\"");
    let _ = writeln!(t, "credentials = {:?}", credentials.display().to_string());
    // SIPp's calls all come from one source address.
    let _ = writeln!(t, "rate_limit_per_source = 1000000");
    let _ = writeln!(t, "min_expires_s = 30\n");
    let _ = writeln!(t, "[tunnel]\nlisten = \"198.18.2.1:1800\"\n");
    let _ = writeln!(t, "[vipa]\npool = \"100.64.0.0/16\"\n");
    match s.nat {
        Nat::Upmt => {
            let _ = writeln!(t, "[nat]\nmode = \"upmt\"\npublic = [\"198.18.2.100\"]\n");
        }
        Nat::Kernel => {
            let _ = writeln!(
                t,
                "[nat]\nmode = \"kernel\"\npublic = [\"198.18.3.254\"]\nuplink = \"eth1\"\n"
            );
        }
    }
    let _ = writeln!(t, "[dataplane]\ntun = \"upmt-an0\"");
    if let Some(o) = s.offload {
        let _ = writeln!(t, "offload = {o}");
    }
    if let Some(n) = s.shards {
        let _ = writeln!(t, "shards = {n}\npin = true");
    }
    let _ = writeln!(t, "\n[limits]\nmax_hosts = {max_hosts}");
    t
}

/// The mobile host's configuration text (one access interface, no policy, no SOCKS).
pub(crate) fn mobile_toml(s: Setup) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "[anchor]\nsip = \"198.18.2.1:5060\"\ntunnel = \"198.18.2.1:1800\"\n"
    );
    let _ = writeln!(
        t,
        "[identity]\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\n"
    );
    let _ = writeln!(t, "[[interface]]\nname = \"wlan0\"\ncost = 1\n");
    let _ = writeln!(t, "[dataplane]\ntun = \"upmt0\"");
    if let Some(o) = s.offload {
        let _ = writeln!(t, "offload = {o}");
    }
    t
}

/// A credentials file with the mobile host and `extra` SIPp users `sipp1..` (`pwN`).
pub(crate) fn credentials_toml(extra: u32) -> String {
    let mut t =
        format!("realm = \"upmt\"\n\n[[user]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n");
    for i in 1..=extra {
        let _ = write!(t, "\n[[user]]\nname = \"sipp{i}\"\npassword = \"pw{i}\"\n");
    }
    t
}

/// The daemons of one variant; [`Daemons::stop`] (or the line going) ends them.
pub(crate) struct Daemons {
    pub(crate) anchor_pid: u32,
    pub(crate) mobile_pid: Option<u32>,
    anchor_log: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

/// Whether a daemon's log says its configuration was refused (unknown key, bad value).
fn refusal(log: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains("unknown field") || l.contains("config"))
        .map(|l| l.trim().chars().take(200).collect())
}

/// `upmt status --json` of the daemon in `node`.
pub(crate) fn status(line: &Line, upmt: &Path, node: &str) -> Result<serde_json::Value> {
    let out = line
        .cmd(node, upmt)
        .args(["status", "--json"])
        .stderr(Stdio::null())
        .output()
        .context("running upmt status")?;
    if !out.status.success() {
        bail!("upmt status failed in {node}");
    }
    serde_json::from_slice(&out.stdout).context("upmt status --json: not JSON")
}

/// The mobile host is associated with its wlan0 tunnel up.
fn associated(v: &serde_json::Value) -> bool {
    v.get("vipa").is_some_and(|x| !x.is_null())
        && v.get("tunnels")
            .and_then(|t| t.as_array())
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    t.get("iface").and_then(|i| i.as_str()) == Some("wlan0")
                        && t.get("state").and_then(|s| s.as_str()) == Some("up")
                })
            })
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(30));
    }
    false
}

impl Daemons {
    /// Starts the anchor (and the mobile host unless `mobile` is false) with setup `s` and
    /// waits for the control socket / the association. A refused configuration comes back
    /// as a [`Refused`] error.
    pub(crate) fn start(
        line: &mut Line,
        upmt: &Path,
        s: Setup,
        mobile: bool,
        sipp_users: u32,
        max_hosts: u32,
    ) -> Result<Daemons> {
        let mut d = Daemons::start_anchor(line, upmt, &credentials_toml(sipp_users), |cred| {
            anchor_toml(s, cred, max_hosts)
        })?;
        let dir = line.dir.clone();
        if mobile {
            let mcfg = write(&dir, "mobile.toml", &mobile_toml(s))?;
            let mlog = dir.join("mobile.log");
            let mut c = line.cmd("mh", upmt);
            c.arg("mobile").arg("--config").arg(&mcfg);
            c.env("RUST_LOG", "warn");
            d.mobile_pid = Some(line.spawn("mobile", c, Some(&mlog))?);
            let ok = wait_until(Duration::from_secs(15), || {
                line.exited("mobile").is_some()
                    || status(line, upmt, "mh").is_ok_and(|v| associated(&v))
            });
            let log = std::fs::read_to_string(&mlog).unwrap_or_default();
            if line.exited("mobile").is_some() || !ok {
                d.stop(line);
                return Err(match refusal(&log) {
                    Some(r) => Refused(r).into(),
                    None => anyhow::anyhow!("the mobile host did not associate: {}", log.trim()),
                });
            }
        }
        Ok(d)
    }

    /// Starts only the anchor, with the credentials file `credentials` and the configuration
    /// `anchor(path of the credentials file)`, and waits for its control socket.
    pub(crate) fn start_anchor(
        line: &mut Line,
        upmt: &Path,
        credentials: &str,
        anchor: impl FnOnce(&Path) -> String,
    ) -> Result<Daemons> {
        let dir = line.dir.clone();
        let cred = write(&dir, "credentials.toml", credentials)?;
        let acfg = write(&dir, "anchor.toml", &anchor(&cred))?;
        let anchor_log = dir.join("anchor.log");
        let mut c = line.cmd("an", upmt);
        c.arg("anchor").arg("--config").arg(&acfg);
        c.env("RUST_LOG", "warn");
        let anchor_pid = line.spawn("anchor", c, Some(&anchor_log))?;
        let sock = PathBuf::from(format!("/run/upmt/{}/anchor.sock", line.ns("an")));
        let up = wait_until(Duration::from_secs(10), || {
            sock.exists() || line.exited("anchor").is_some()
        });
        let log = std::fs::read_to_string(&anchor_log).unwrap_or_default();
        if line.exited("anchor").is_some() || !up {
            line.stop("anchor", Duration::from_secs(1));
            return Err(match refusal(&log) {
                Some(r) => Refused(r).into(),
                None => anyhow::anyhow!("the anchor did not start: {}", log.trim()),
            });
        }
        Ok(Daemons {
            anchor_pid,
            mobile_pid: None,
            anchor_log,
        })
    }

    /// The anchor's log so far.
    pub(crate) fn anchor_log(&self) -> String {
        std::fs::read_to_string(&self.anchor_log).unwrap_or_default()
    }

    /// SIGTERM to both (the host de-registers; TUNs and routes go), SIGKILL after 3 s; then
    /// waits until the TUN names are free for the next variant.
    pub(crate) fn stop(self, line: &mut Line) {
        line.stop("mobile", Duration::from_secs(3));
        line.stop("anchor", Duration::from_secs(3));
        for (node, tun) in [("mh", "upmt0"), ("an", "upmt-an0")] {
            let ns = line.ns(node);
            wait_until(Duration::from_secs(2), || {
                !Command::new("ip")
                    .args(["-n", &ns, "link", "show", tun])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            });
        }
        // KERNEL-NOTES: a TUN name can stay busy ~200 ms after its owner exits.
        sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_carry_the_variant() {
        let s = Setup {
            nat: Nat::Kernel,
            offload: Some(true),
            shards: Some(1),
        };
        let a = anchor_toml(s, Path::new("/tmp/c.toml"), 10);
        assert!(a.contains("mode = \"kernel\"") && a.contains("uplink = \"eth1\""));
        assert!(a.contains("offload = true") && a.contains("\"/tmp/c.toml\""));
        assert!(a.contains("shards = 1\npin = true"));
        let m = mobile_toml(Setup {
            nat: Nat::Upmt,
            offload: None,
            shards: None,
        });
        assert!(!m.contains("offload") && m.contains("name = \"wlan0\""));
        let c = credentials_toml(3);
        assert_eq!(c.matches("[[user]]").count(), 4);
        assert!(c.contains("name = \"sipp3\"\npassword = \"pw3\""));
    }

    #[test]
    fn refusals_are_recognised() {
        let log = "Error: loading /x/anchor.toml\nunknown field `offload`, expected one of `tun`";
        assert!(refusal(log).is_some_and(|r| r.contains("offload")));
        assert_eq!(refusal("thread panicked"), None);
    }
}
