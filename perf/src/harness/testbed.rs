//! A reference testbed (`scripts/testbed.sh`) owned by one harness run: built with a unique
//! prefix, torn down by `Drop` (also on error and panic), with the processes the harness
//! started inside it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// The testbed of one run. Dropping it kills the children the harness started and runs
/// `testbed.sh down` (which also ends every other process inside its namespaces).
pub(crate) struct Testbed {
    root: PathBuf,
    prefix: String,
    upmt_bin: PathBuf,
    children: Vec<Child>,
    up: bool,
}

/// The workspace root: the first of `hint`, the current directory and the executable's
/// directory (and their ancestors) that holds `scripts/testbed.sh`.
pub(crate) fn find_root(hint: Option<&Path>) -> Result<PathBuf> {
    let mut starts: Vec<PathBuf> = hint.map(Path::to_path_buf).into_iter().collect();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    for s in &starts {
        for d in s.ancestors() {
            if d.join("scripts/testbed.sh").is_file() {
                return Ok(d.to_path_buf());
            }
        }
    }
    bail!("scripts/testbed.sh not found (run from the UPMT checkout or pass --repo)")
}

/// target/release/upmt if present, else target/debug/upmt (`UPMT_BIN` wins).
pub(crate) fn upmt_bin(root: &Path) -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("UPMT_BIN") {
        return Ok(PathBuf::from(b));
    }
    for p in ["target/release/upmt", "target/debug/upmt"] {
        let b = root.join(p);
        if b.is_file() {
            return Ok(b);
        }
    }
    bail!("no upmt binary: cargo build --release -p upmt (or set UPMT_BIN)")
}

fn check(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

impl Testbed {
    /// Builds the testbed (`testbed.sh up`). Returns once every link is up.
    pub(crate) fn up(root: &Path, prefix: &str, upmt_bin: PathBuf) -> Result<Self> {
        let tb = Testbed {
            root: root.to_path_buf(),
            prefix: prefix.to_string(),
            upmt_bin,
            children: Vec::new(),
            up: true, // a failed `up` can leave a partial testbed: always take it down
        };
        tb.script(&["up"]).context("testbed up")?;
        Ok(tb)
    }

    /// `testbed.sh -q --prefix P ARGS...`, failing on a non-zero exit.
    pub(crate) fn script(&self, args: &[&str]) -> Result<Output> {
        let out = Command::new(self.root.join("scripts/testbed.sh"))
            .arg("-q")
            .arg("--prefix")
            .arg(&self.prefix)
            .args(args)
            .env("UPMT_BIN", &self.upmt_bin)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running testbed.sh {args:?}"))?;
        check(out, &format!("testbed.sh {}", args.join(" ")))
    }

    /// A command in namespace `PREFIX<node>` (`ip netns exec`: no shell in between, so
    /// it starts within a few ms).
    pub(crate) fn cmd(&self, node: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns")
            .arg("exec")
            .arg(format!("{}{node}", self.prefix))
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// Runs `upmt ARGS` on the mobile host and returns its standard output.
    pub(crate) fn upmt(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd("mh", &self.upmt_bin)
            .args(args)
            .output()
            .context("running upmt")?;
        let out = check(out, &format!("upmt {}", args.join(" ")))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running server; it is killed when the testbed goes.
    pub(crate) fn spawn_server(&mut self, mut c: Command) -> Result<()> {
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a server")?;
        self.children.push(child);
        Ok(())
    }

    /// The mobile host's `TcpExtTCPTimeouts` counter (RTOs) (`nstat -az`).
    pub(crate) fn tcp_timeouts(&self) -> Result<u64> {
        let out = self
            .cmd("mh", Path::new("nstat"))
            .args(["-az", "TcpExtTCPTimeouts"])
            .output()
            .context("running nstat")?;
        let out = check(out, "nstat")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("TcpExtTCPTimeouts"))
                    .then(|| f.next().and_then(|v| v.parse().ok()))
                    .flatten()
            })
            .context("no TcpExtTCPTimeouts in nstat's output")
    }

    /// Takes the testbed down now (also what `Drop` does).
    pub(crate) fn down(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        if self.up {
            self.up = false;
            let _ = Command::new(self.root.join("scripts/testbed.sh"))
                .args(["-q", "--prefix", &self.prefix, "down"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.down();
    }
}
