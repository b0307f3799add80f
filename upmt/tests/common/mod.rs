//! The testbed harness shared by the end-to-end tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn require_prerequisites() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the end-to-end tests need root (network namespaces, TUN): run sudo scripts/test.sh"
    );
    for tool in ["ip", "nft", "ping", "curl", "iperf3", "python3"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "the end-to-end tests need `{tool}`: run scripts/install-deps.sh"
        );
    }
}

/// A testbed with the UPMT daemons running; removed on drop.
pub struct Tb {
    pub prefix: String,
    pub dir: PathBuf,
    pub children: Vec<Child>,
    /// Extra environment for testbed.sh (e.g. UPMT_MOBILE_CONFIG).
    pub env: Vec<(String, String)>,
}

impl Tb {
    pub fn new(tag: &str) -> Tb {
        require_prerequisites();
        let prefix = format!("e2e{}{tag}-", std::process::id());
        let dir = std::env::temp_dir().join(format!("upmt-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tb = Tb {
            prefix,
            dir,
            children: Vec::new(),
            env: Vec::new(),
        };
        tb.ok(&["up"]);
        tb
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/testbed.sh"))
            .args(["-q", "--prefix", &self.prefix])
            .args(args)
            .env("UPMT_BIN", env!("CARGO_BIN_EXE_upmt"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "testbed.sh {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn exec(&self, node: &str, cmd: &[&str]) -> Output {
        let mut a = vec!["exec", node, "--"];
        a.extend_from_slice(cmd);
        self.run(&a)
    }

    pub fn exec_ok(&self, node: &str, cmd: &[&str]) -> String {
        let o = self.exec(node, cmd);
        assert!(
            o.status.success(),
            "{node}: {cmd:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts a background process in a node; ended on drop.
    pub fn spawn(&mut self, node: &str, cmd: &[&str], log: &str) {
        let mut a = vec!["exec", node, "--"];
        a.extend_from_slice(cmd);
        let f = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = self
            .cmd(&a)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    pub fn upmt_start(&self) {
        self.ok(&["upmt", "start"]);
    }

    pub fn status(&self, node: &str) -> Value {
        let out = self.exec_ok(node, &["upmt", "status", "--json"]);
        serde_json::from_str(&out).unwrap()
    }

    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.run(&["upmt", "logs"]).stdout).into_owned()
    }

    /// A web server on ch serving a random file of `mb` MB; returns its bytes.
    pub fn web_server(&mut self, mb: usize) -> Vec<u8> {
        let www = self.dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        let mut data = vec![0u8; mb << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::write(www.join("blob"), &data).unwrap();
        let www_s = www.to_string_lossy().into_owned();
        self.spawn(
            "ch",
            &[
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "198.18.3.1",
                "--directory",
                &www_s,
            ],
            "http.log",
        );
        self.wait_listening("ch", ":8080");
        data
    }

    pub fn wait_listening(&self, node: &str, port: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            let out = self.exec_ok(node, &["ss", "-ltnu"]);
            if out.contains(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{node}: nothing listening on {port}");
    }

    /// Starts `curl` on mh downloading the blob at `rate` (curl's --limit-rate); returns
    /// the child and the output path.
    pub fn download(&self, rate: &str) -> (Child, PathBuf) {
        // curl's --limit-rate paces its reads, not the wire: with the kernel's default
        // receive buffer (up to 32 MB here) a whole test blob can arrive in the first second,
        // and a link event meant for a running transfer would meet an idle one. A 1 MB window
        // keeps the wire at the asked rate.
        self.exec_ok(
            "mh",
            &["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 1048576"],
        );
        let out = self.dir.join("download");
        let _ = std::fs::remove_file(&out);
        let out_s = out.to_string_lossy().into_owned();
        let child = self
            .cmd(&[
                "exec",
                "mh",
                "--",
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "60",
                "--limit-rate",
                rate,
                "-o",
                &out_s,
                "http://198.18.3.1:8080/blob",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (child, out)
    }

    pub fn tunnel_ifaces_up(&self) -> Vec<String> {
        let s = self.status("mh");
        s["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "up")
            .map(|t| t["iface"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}\n{}", self.logs());
    }
}

impl Drop for Tb {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.run(&["down"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Finishes a download and checks it arrived whole and byte-exact.
pub fn finish_download(tb: &Tb, child: Child, out: &Path, want: &[u8]) {
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "curl failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        tb.logs()
    );
    let got = std::fs::read(out).unwrap();
    assert_eq!(got.len(), want.len(), "download truncated");
    assert!(got == want, "download corrupted");
}

pub fn counter(text: &str) -> u64 {
    // "counter packets N bytes M"
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}
