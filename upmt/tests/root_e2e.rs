//! UPMT end to end in the reference testbed (network namespaces, real nftables NATs, real
//! TUN devices, iperf3, curl, python3's web server). Needs root: the tests fail with a clear
//! message when it or a tool is missing (`scripts/install-deps.sh` installs them).
//!
//! Each test builds its own testbed (`scripts/testbed.sh --prefix e2e<pid>x-`), starts the
//! anchor and the mobile host with the example configurations (`testbed.sh upmt start`),
//! and removes everything when it ends, pass or fail. They run one at a time: timing
//! matters (keepalives, handovers) and the machine has two cores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{counter, finish_download, root, Tb, ONE_AT_A_TIME};
use serde_json::Value;

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
    // The transfer was running when wlan0 went silent: its rest came over umts0.
    let umts_rx = s["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["iface"] == "umts0")
        .map(|t| t["rx_bytes"].as_u64().unwrap())
        .sum::<u64>();
    assert!(umts_rx > 1 << 20, "the flow did not move to umts0: {s}");
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

#[test]
fn kernel_nat_mode_for_comparison() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("h");
    let ex = root().join("examples");
    let text = std::fs::read_to_string(ex.join("anchor.toml"))
        .unwrap()
        .replace("mode = \"upmt\"", "mode = \"kernel\"")
        .replace("# uplink = \"eth0\"", "uplink = \"eth0\"")
        .replace(
            "credentials = \"credentials.toml\"",
            &format!("credentials = {:?}", ex.join("credentials.toml")),
        );
    assert!(text.contains("mode = \"kernel\"") && text.contains("uplink = \"eth0\""));
    let cfg = tb.dir.join("anchor-kernel.toml");
    std::fs::write(&cfg, text).unwrap();
    tb.env.push((
        "UPMT_ANCHOR_CONFIG".into(),
        cfg.to_string_lossy().into_owned(),
    ));
    tb.upmt_start();
    let blob = tb.web_server(2);
    let (c, out) = tb.download("100M");
    finish_download(&tb, c, &out, &blob);
    let http_log = std::fs::read_to_string(tb.dir.join("http.log")).unwrap();
    assert!(http_log.contains("198.18.2.100"), "{http_log}");
    let a = tb.status("an");
    assert_eq!(a["nat"]["mode"], "kernel", "{a}");
    let tables = tb.exec_ok("an", &["nft", "list", "tables"]);
    assert!(tables.contains("upmt_anchor"), "{tables}");
    // Stopping the anchor removes its table.
    tb.ok(&["upmt", "stop"]);
    let tables = tb.exec_ok("an", &["nft", "list", "tables"]);
    assert!(!tables.contains("upmt_anchor"), "{tables}");
}
