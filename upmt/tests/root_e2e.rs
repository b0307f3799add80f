//! UPMT end to end in the reference testbed (network namespaces, real nftables NATs, real
//! TUN devices, iperf3, curl, python3's web server). Needs root: the tests fail with a clear
//! message when it or a tool is missing (`scripts/install-deps.sh` installs them).
//!
//! Each test builds its own testbed (`scripts/testbed.sh --prefix e2e<pid>x-`), starts the
//! anchor and the mobile host with the example configurations (`testbed.sh upmt start`),
//! and removes everything when it ends, pass or fail. They run one at a time: timing
//! matters (keepalives, handovers) and the machine has two cores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require_prerequisites() {
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
struct Tb {
    prefix: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Tb {
    fn new(tag: &str) -> Tb {
        require_prerequisites();
        let prefix = format!("e2e{}{tag}-", std::process::id());
        let dir = std::env::temp_dir().join(format!("upmt-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tb = Tb {
            prefix,
            dir,
            children: Vec::new(),
        };
        tb.ok(&["up"]);
        tb
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/testbed.sh"))
            .args(["-q", "--prefix", &self.prefix])
            .args(args)
            .env("UPMT_BIN", env!("CARGO_BIN_EXE_upmt"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "testbed.sh {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn exec(&self, node: &str, cmd: &[&str]) -> Output {
        let mut a = vec!["exec", node, "--"];
        a.extend_from_slice(cmd);
        self.run(&a)
    }

    fn exec_ok(&self, node: &str, cmd: &[&str]) -> String {
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
    fn spawn(&mut self, node: &str, cmd: &[&str], log: &str) {
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

    fn upmt_start(&self) {
        self.ok(&["upmt", "start"]);
    }

    fn status(&self, node: &str) -> Value {
        let out = self.exec_ok(node, &["upmt", "status", "--json"]);
        serde_json::from_str(&out).unwrap()
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.run(&["upmt", "logs"]).stdout).into_owned()
    }

    /// A web server on ch serving a random file of `mb` MB; returns its bytes.
    fn web_server(&mut self, mb: usize) -> Vec<u8> {
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

    fn wait_listening(&self, node: &str, port: &str) {
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
    fn download(&self, rate: &str) -> (Child, PathBuf) {
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

    fn tunnel_ifaces_up(&self) -> Vec<String> {
        let s = self.status("mh");
        s["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "up")
            .map(|t| t["iface"].as_str().unwrap().to_owned())
            .collect()
    }

    fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
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
fn finish_download(tb: &Tb, child: Child, out: &Path, want: &[u8]) {
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

fn counter(text: &str) -> u64 {
    // "counter packets N bytes M"
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn traffic_crosses_upmt_and_correspondents_see_only_the_anchor() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("a");
    // Count what leaves the access networks for anything but the anchor: with UPMT, only
    // tunnels and signalling may (they all go to 198.18.2.1).
    for (nat, net) in [("nat0", "192.168.100.0/24"), ("nat1", "10.10.10.0/24")] {
        tb.exec_ok(nat, &["nft", "add", "table", "ip", "upmt_e2e"]);
        tb.exec_ok(
            nat,
            &[
                "nft",
                "add chain ip upmt_e2e leak { type filter hook forward priority -10; }",
            ],
        );
        let rule =
            format!("add rule ip upmt_e2e leak ip saddr {net} ip daddr != 198.18.2.1 counter");
        tb.exec_ok(nat, &["nft", &rule]);
    }
    tb.upmt_start();
    let s = tb.status("mh");
    let vipa = s["vipa"].as_str().unwrap().to_owned();
    assert!(vipa.starts_with("100.64."), "{s}");

    tb.exec_ok(
        "mh",
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.3.1"],
    );
    let blob = tb.web_server(4);
    let (c, out) = tb.download("100M");
    finish_download(&tb, c, &out, &blob);
    tb.spawn("ch", &["iperf3", "-s", "-B", "198.18.3.1"], "iperf.log");
    tb.wait_listening("ch", ":5201");
    tb.exec_ok("mh", &["iperf3", "-c", "198.18.3.1", "-t", "2"]);
    tb.exec_ok(
        "mh",
        &["iperf3", "-c", "198.18.3.1", "-u", "-b", "20M", "-t", "2"],
    );

    // The correspondent saw the anchor's public address, and nothing else.
    let http_log = std::fs::read_to_string(tb.dir.join("http.log")).unwrap();
    assert!(http_log.contains("198.18.2.100"), "{http_log}");
    for private in [
        vipa.as_str(),
        "192.168.100.",
        "10.10.10.",
        "198.18.0.1",
        "198.18.1.1",
    ] {
        assert!(!http_log.contains(private), "ch saw {private}: {http_log}");
    }
    let iperf_log = std::fs::read_to_string(tb.dir.join("iperf.log")).unwrap();
    assert!(iperf_log.contains("198.18.2.100"), "{iperf_log}");
    // Nothing left the access networks outside the tunnels.
    for nat in ["nat0", "nat1"] {
        let out = tb.exec_ok(nat, &["nft", "list", "table", "ip", "upmt_e2e"]);
        assert_eq!(
            counter(&out),
            0,
            "{nat} forwarded traffic outside the tunnels:\n{out}"
        );
    }
    // The anchor knows the host, its VIPA and its two tunnels, and NATs its flows.
    let a = tb.status("an");
    let host = &a["hosts"][0];
    assert_eq!(host["vipa"], Value::from(vipa));
    assert_eq!(host["tunnels"].as_array().unwrap().len(), 2, "{a}");
    assert!(a["nat"]["mappings"].as_u64().unwrap() > 0, "{a}");
}

#[test]
fn manual_handover_moves_a_tcp_transfer_and_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("b");
    tb.upmt_start();
    let blob = tb.web_server(24);
    let (c, out) = tb.download("6M");
    std::thread::sleep(Duration::from_millis(1200));
    tb.exec_ok("mh", &["upmt", "handover", "--all", "--to", "umts0"]);
    std::thread::sleep(Duration::from_millis(1200));
    // The flow now rides umts0, at the mobile host and at the anchor.
    let s = tb.status("mh");
    let flow = s["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dst"] == "198.18.3.1:8080")
        .cloned()
        .unwrap_or_else(|| panic!("no flow to the web server: {s}"));
    assert_eq!(flow["iface"], "umts0", "{s}");
    tb.exec_ok("mh", &["upmt", "handover", "--all", "--to", "wlan0"]);
    finish_download(&tb, c, &out, &blob);
}

#[test]
fn interface_down_is_break_before_make() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("c");
    tb.upmt_start();
    let blob = tb.web_server(16);
    let (c, out) = tb.download("6M");
    std::thread::sleep(Duration::from_millis(1000));
    tb.ok(&["link", "wlan0", "down"]);
    tb.wait_for("the wlan0 tunnel to go", 5, || {
        !tb.tunnel_ifaces_up().contains(&"wlan0".to_owned())
    });
    finish_download(&tb, c, &out, &blob);
    // wlan0 back: a new tunnel comes up on it.
    tb.ok(&["link", "wlan0", "up"]);
    tb.wait_for("the wlan0 tunnel to come back", 15, || {
        tb.tunnel_ifaces_up().contains(&"wlan0".to_owned())
    });
}

#[test]
fn blackhole_is_detected_and_flows_move() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("d");
    tb.upmt_start();
    let blob = tb.web_server(16);
    let (c, out) = tb.download("6M");
    std::thread::sleep(Duration::from_millis(1000));
    tb.ok(&["link", "wlan0", "blackhole", "on"]);
    finish_download(&tb, c, &out, &blob);
    let s = tb.status("mh");
    let wlan = s["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["iface"] == "wlan0")
        .cloned()
        .unwrap();
    assert_eq!(wlan["state"], "down", "{s}");
    tb.ok(&["link", "wlan0", "blackhole", "off"]);
    tb.wait_for("the wlan0 path to recover", 15, || {
        tb.tunnel_ifaces_up().contains(&"wlan0".to_owned())
    });
}

#[test]
fn keepalives_hold_the_local_nat_pinholes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Tb::new("e");
    tb.ok(&["nat", "nat0", "udp-timeout", "10"]);
    tb.ok(&["nat", "nat1", "udp-timeout", "10"]);
    tb.upmt_start();
    let addrs = |tb: &Tb| {
        let mut v: Vec<String> = tb.status("an")["hosts"][0]["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| format!("{} {}", t["id"], t["addr"]))
            .collect();
        v.sort();
        v
    };
    let before = addrs(&tb);
    // Idle for a minute: six times the NATs' UDP timeout.
    std::thread::sleep(Duration::from_secs(60));
    let after = addrs(&tb);
    assert_eq!(
        before, after,
        "the tunnels' outer addresses changed: a pinhole closed"
    );
    let mut up = tb.tunnel_ifaces_up();
    up.sort();
    assert_eq!(up, vec!["umts0", "wlan0"]);
    for iface in ["wlan0", "umts0"] {
        tb.exec_ok("mh", &["upmt", "handover", "--all", "--to", iface]);
        tb.exec_ok(
            "mh",
            &["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.3.1"],
        );
    }
}

#[test]
fn anchor_restart_the_host_reassociates_with_its_vipa() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("f");
    tb.upmt_start();
    let vipa = tb.status("mh")["vipa"].clone();
    // Restart the anchor only (its PID is in the testbed's state).
    let pid_file = PathBuf::from(format!("/run/upmt-testbed/{}/upmt-anchor.pid", tb.prefix));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    Command::new("kill").arg(pid.trim()).status().unwrap();
    let sock = format!("/run/upmt/{}an/anchor.sock", tb.prefix);
    tb.wait_for("the anchor to stop", 10, || !Path::new(&sock).exists());
    let cfg = root().join("examples/anchor.toml");
    let cfg_s = cfg.to_string_lossy().into_owned();
    tb.spawn(
        "an",
        &[env!("CARGO_BIN_EXE_upmt"), "anchor", "--config", &cfg_s],
        "anchor2.log",
    );
    tb.wait_for("re-association with tunnels up", 30, || {
        let s = tb.status("mh");
        s["vipa"] == vipa && tb.tunnel_ifaces_up().len() == 2
    });
    let blob = tb.web_server(1);
    let (c, out) = tb.download("100M");
    finish_download(&tb, c, &out, &blob);
}

#[test]
fn spoofed_and_unassociated_traffic_is_dropped_and_counted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("g");
    tb.upmt_start();
    tb.spawn(
        "ch",
        &[
            "python3",
            "-c",
            "import socket,sys\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('198.18.3.1',7777))\n\
             while True:\n\
             \x20   d,a=s.recvfrom(2048); print(a, d, flush=True)",
        ],
        "sink.log",
    );
    tb.wait_listening("ch", ":7777");
    // A UDP packet with a forged source, written into upmt0 by an application with a raw
    // socket: the mobile host tunnels it, the anchor must drop it (DESIGN.md 6).
    let spoof = "import socket,struct\n\
        def csum(b):\n\
        \x20   s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return ~s&0xffff\n\
        src=socket.inet_aton('100.64.0.99'); dst=socket.inet_aton('198.18.3.1')\n\
        payload=b'spoofed!'\n\
        udp=struct.pack('!HHHH',4000,7777,8+len(payload),0)+payload\n\
        ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),1,0,64,17,0,src,dst)\n\
        ip=ip[:10]+struct.pack('!H',csum(ip))+ip[12:]\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)\n\
        s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'upmt0')\n\
        for _ in range(5): s.sendto(ip+udp,('198.18.3.1',0))\n";
    tb.exec_ok("mh", &["python3", "-c", spoof]);
    // A tunnel datagram from a source that never associated (a bare socket on wlan0 to the
    // anchor's tunnel port), carrying a packet with the real VIPA as source.
    let vipa = tb.status("mh")["vipa"].as_str().unwrap().to_owned();
    let unassoc = format!(
        "import socket,struct\n\
         src=socket.inet_aton('{vipa}'); dst=socket.inet_aton('198.18.3.1')\n\
         payload=b'intruder'\n\
         udp=struct.pack('!HHHH',4001,7777,8+len(payload),0)+payload\n\
         ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),2,0,64,17,0,src,dst)\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'wlan0')\n\
         for _ in range(5): s.sendto(ip+udp,('198.18.2.1',1800))\n"
    );
    tb.exec_ok("mh", &["python3", "-c", &unassoc]);
    // Neither reached the correspondent; both were counted at the anchor.
    tb.exec_ok(
        "mh",
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.3.1"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let sink = std::fs::read_to_string(tb.dir.join("sink.log")).unwrap();
    assert!(sink.is_empty(), "the correspondent received: {sink}");
    let a = tb.status("an");
    assert!(
        a["drops"]["spoofed_source"].as_u64().unwrap() >= 5,
        "{}",
        a["drops"]
    );
    assert!(
        a["drops"]["no_tunnel"].as_u64().unwrap() >= 5,
        "{}",
        a["drops"]
    );
    // And the host still works.
    let blob = tb.web_server(1);
    let (c, out) = tb.download("100M");
    finish_download(&tb, c, &out, &blob);
}
