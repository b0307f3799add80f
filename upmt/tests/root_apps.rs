//! Per-application mobility end to end (issue 7) in the reference testbed, with the example
//! policy (`examples/policy.toml`: video prefers wlan0 then umts0, real-time; backup wlan0
//! only, never umts0; voip prefers umts0 then wlan0). Needs root, like `root_e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{finish_download, root, Tb, ONE_AT_A_TIME};
use serde_json::Value;

/// `upmt run --app APP -- ip netns exec NS CMD...`: the launcher moves itself into the
/// application's cgroup before entering the namespace (KERNEL-NOTES: `ip netns exec` hides
/// the cgroup2 mount).
fn run_as(tb: &Tb, app: &str, cmd: &[&str], log: &str) -> Child {
    let ns = format!("{}mh", tb.prefix);
    let f = std::fs::File::create(tb.dir.join(log)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_upmt"))
        .args(["run", "--app", app, "--", "ip", "netns", "exec", &ns])
        .args(cmd)
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn flows(tb: &Tb) -> Vec<Value> {
    tb.status("mh")["flows"].as_array().unwrap().clone()
}

fn flow_to(tb: &Tb, dst: &str) -> Option<Value> {
    flows(tb).into_iter().find(|f| f["dst"] == dst)
}

fn iperf_servers(tb: &mut Tb) {
    for port in ["5201", "5202", "5203"] {
        tb.spawn(
            "ch",
            &["iperf3", "-s", "-B", "198.18.3.1", "-p", port],
            &format!("iperf-{port}.log"),
        );
    }
    tb.wait_listening("ch", ":5203");
}

#[test]
fn applications_ride_their_own_tunnels_from_the_first_packet() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("p");
    tb.upmt_start();
    iperf_servers(&mut tb);
    let video = run_as(
        &tb,
        "video",
        &["iperf3", "-c", "198.18.3.1", "-p", "5201", "-t", "3"],
        "video.log",
    );
    let voip = run_as(
        &tb,
        "voip",
        &[
            "iperf3",
            "-c",
            "198.18.3.1",
            "-p",
            "5202",
            "-u",
            "-b",
            "1M",
            "-t",
            "3",
        ],
        "voip.log",
    );
    // An untagged program: named by its executable.
    tb.spawn(
        "mh",
        &[
            "iperf3",
            "-c",
            "198.18.3.1",
            "-p",
            "5203",
            "-t",
            "3",
            "-b",
            "5M",
        ],
        "plain.log",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let v = flow_to(&tb, "198.18.3.1:5201").expect("video flow");
    let u = flows(&tb)
        .into_iter()
        .find(|f| f["dst"] == "198.18.3.1:5202" && f["proto"] == "udp")
        .expect("voip flow");
    let p = flow_to(&tb, "198.18.3.1:5203").expect("untagged flow");
    assert_eq!(
        (v["app"].as_str(), v["iface"].as_str()),
        (Some("video"), Some("wlan0")),
        "{v}\nstatus: {}\n{}",
        tb.status("mh"),
        tb.logs()
    );
    assert_eq!(
        (u["app"].as_str(), u["iface"].as_str()),
        (Some("voip"), Some("umts0")),
        "{u}\nstatus: {}\n{}",
        tb.status("mh"),
        tb.logs()
    );
    assert_eq!(p["app"].as_str(), Some("iperf3"), "{p}");
    // Per-flow bytes both ways: video uploads (on iperf3's data connection, the busiest of
    // its two), its ACKs come back.
    let data = flows(&tb)
        .into_iter()
        .filter(|f| f["dst"] == "198.18.3.1:5201")
        .max_by_key(|f| f["tx_bytes"].as_u64().unwrap())
        .unwrap();
    let (vtx, vrx) = (
        data["tx_bytes"].as_u64().unwrap(),
        data["rx_bytes"].as_u64().unwrap(),
    );
    assert!(vrx > 0 && vtx > 10 * vrx, "video flow's bytes: {data}");
    // Per-application, per-path accounting.
    let s = tb.status("mh");
    let app = |name: &str| {
        s["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {s}"))
    };
    assert!(app("video")["tx_bytes_by_iface"]["wlan0"].as_u64().unwrap() > 0);
    assert!(app("voip")["tx_bytes_by_iface"]["umts0"].as_u64().unwrap() > 0);
    for c in [video, voip] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success());
    }
    // From the first packet: the flows were placed when they appeared, never moved.
    let logs = tb.logs();
    for app in ["video", "voip"] {
        assert!(
            !logs.contains(&format!("policy move app={app}")),
            "{app} was moved after its first packet:\n{logs}"
        );
    }
    // The anchor carried the voip flow on the umts0 tunnel (from nat1's address).
    let a = tb.status("an");
    let t = a["hosts"][0]["tunnels"].as_array().unwrap();
    let rx = |prefix: &str| {
        t.iter()
            .filter(|t| t["addr"].as_str().unwrap().starts_with(prefix))
            .map(|t| t["rx_bytes"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        rx("198.18.1.1") > 300_000,
        "umts0 tunnel carried too little: {a}"
    );
    assert!(
        rx("198.18.0.1") > 10_000_000,
        "wlan0 tunnel carried too little: {a}"
    );
}

#[test]
fn wlan_down_video_moves_backup_waits_and_resumes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("q");
    tb.upmt_start();
    iperf_servers(&mut tb);
    let blob = tb.web_server(8);
    let out = tb.dir.join("backup.bin");
    let out_s = out.to_string_lossy().into_owned();
    let backup = run_as(
        &tb,
        "backup",
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "--limit-rate",
            "2M",
            "-o",
            &out_s,
            "http://198.18.3.1:8080/blob",
        ],
        "backup.log",
    );
    let video = run_as(
        &tb,
        "video",
        &[
            "iperf3",
            "-c",
            "198.18.3.1",
            "-p",
            "5201",
            "-t",
            "8",
            "-b",
            "20M",
        ],
        "video.log",
    );
    // A steady backup stream too: its packets during the outage are held back and counted.
    let backup_udp = run_as(
        &tb,
        "backup",
        &[
            "iperf3",
            "-c",
            "198.18.3.1",
            "-p",
            "5203",
            "-u",
            "-b",
            "1M",
            "-t",
            "6",
        ],
        "backup-udp.log",
    );
    // Early in the daemon's life (within the policy's start-up settle, 3 s) on purpose: a
    // path that answered and then went away moves (or holds back) its flows at once.
    std::thread::sleep(Duration::from_millis(300));
    tb.ok(&["link", "wlan0", "down"]);
    tb.wait_for("video to move to umts0", 5, || {
        flow_to(&tb, "198.18.3.1:5201").is_some_and(|f| f["iface"] == "umts0")
    });
    // backup may not use umts0: it waits (held back, counted).
    std::thread::sleep(Duration::from_millis(1000));
    let b = flow_to(&tb, "198.18.3.1:8080").expect("backup flow");
    assert_eq!(b["app"], "backup");
    assert!(
        b["iface"].is_null(),
        "backup must wait, not ride {b}\n{}",
        tb.logs()
    );
    let s = tb.status("mh");
    assert!(
        s["drops"]["policy_wait"].as_u64().unwrap() > 0,
        "{}",
        s["drops"]
    );
    let u = flows(&tb)
        .into_iter()
        .find(|f| f["dst"] == "198.18.3.1:5203" && f["proto"] == "udp")
        .expect("backup's UDP flow");
    assert!(u["iface"].is_null(), "backup must wait, not ride {u}");
    tb.ok(&["link", "wlan0", "up"]);
    let _ = backup_udp.wait_with_output();
    // backup resumes on wlan0 and completes whole; video's TCP never broke.
    finish_download(&tb, backup, &out, &blob);
    let o = video.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "video's TCP connection broke\n{}",
        tb.logs()
    );
}

#[test]
fn policy_reload_moves_running_flows_and_bad_files_are_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("r");
    // Our own copy of the configuration, so the test can rewrite the policy.
    let cfgdir = tb.dir.join("cfg");
    std::fs::create_dir_all(&cfgdir).unwrap();
    let ex = root().join("examples");
    std::fs::copy(ex.join("mobile.toml"), cfgdir.join("mobile.toml")).unwrap();
    let policy = std::fs::read_to_string(ex.join("policy.toml")).unwrap();
    std::fs::write(cfgdir.join("policy.toml"), &policy).unwrap();
    tb.env.push((
        "UPMT_MOBILE_CONFIG".into(),
        cfgdir.join("mobile.toml").to_string_lossy().into_owned(),
    ));
    tb.upmt_start();
    iperf_servers(&mut tb);
    let voip = run_as(
        &tb,
        "voip",
        &[
            "iperf3",
            "-c",
            "198.18.3.1",
            "-p",
            "5202",
            "-u",
            "-b",
            "1M",
            "-t",
            "6",
        ],
        "voip.log",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let dst = "198.18.3.1:5202";
    let on = |tb: &Tb| {
        flows(tb)
            .into_iter()
            .find(|f| f["dst"] == dst && f["proto"] == "udp")
            .and_then(|f| f["iface"].as_str().map(str::to_owned))
    };
    assert_eq!(on(&tb).as_deref(), Some("umts0"));
    // A bad file: refused with a useful message, the old policy stays.
    std::fs::write(
        cfgdir.join("policy.toml"),
        "[app.voip]\ninterfaces = [\"wlan9\"]\n",
    )
    .unwrap();
    let o = tb.exec("mh", &["upmt", "policy", "reload"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wlan9"), "{err}");
    assert_eq!(on(&tb).as_deref(), Some("umts0"));
    // voip now prefers wlan0: the running flow moves.
    let swapped = policy.replace(
        "[app.voip]\ninterfaces = [\"umts0\", \"wlan0\"]",
        "[app.voip]\ninterfaces = [\"wlan0\", \"umts0\"]",
    );
    assert_ne!(
        swapped, policy,
        "the example policy changed: update this test"
    );
    std::fs::write(cfgdir.join("policy.toml"), swapped).unwrap();
    tb.exec_ok("mh", &["upmt", "policy", "reload"]);
    tb.wait_for("voip to move to wlan0", 5, || {
        on(&tb).as_deref() == Some("wlan0")
    });
    // Manual per-application move, and back to the policy's choice.
    tb.exec_ok(
        "mh",
        &["upmt", "handover", "--app", "voip", "--to", "umts0"],
    );
    tb.wait_for("voip pinned to umts0", 5, || {
        on(&tb).as_deref() == Some("umts0")
    });
    tb.exec_ok("mh", &["upmt", "handover", "--app", "voip", "--to", "auto"]);
    tb.wait_for("voip back to wlan0", 10, || {
        on(&tb).as_deref() == Some("wlan0")
    });
    assert!(voip.wait_with_output().unwrap().status.success());
}

/// `curl` on mh through the proxy, as SOCKS user `user` (none: the proxy names the client
/// by its process).
fn socks_curl(tb: &Tb, user: Option<&str>, out: &Path) -> Child {
    let proxy = match user {
        Some(u) => format!("socks5h://{u}@127.0.0.1:1080"),
        None => "socks5h://127.0.0.1:1080".to_owned(),
    };
    let out_s = out.to_string_lossy().into_owned();
    tb.cmd(&[
        "exec",
        "mh",
        "--",
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "30",
        "--limit-rate",
        "2M",
        "-x",
        &proxy,
        "-o",
        &out_s,
        "http://198.18.3.1:8080/blob",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

#[test]
fn socks5_user_name_selects_the_application() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = Tb::new("s");
    tb.upmt_start();
    let blob = tb.web_server(4);
    let out = tb.dir.join("socks.bin");
    let c = socks_curl(&tb, Some("voip"), &out);
    std::thread::sleep(Duration::from_millis(800));
    let f = flow_to(&tb, "198.18.3.1:8080").expect("the proxy's flow");
    assert_eq!(
        (f["app"].as_str(), f["iface"].as_str()),
        (Some("voip"), Some("umts0")),
        "{f}"
    );
    finish_download(&tb, c, &out, &blob);
    // No user name: the application is the client process (curl, untagged: by its
    // executable; the default policy places it).
    let out2 = tb.dir.join("socks2.bin");
    let c = socks_curl(&tb, None, &out2);
    std::thread::sleep(Duration::from_millis(800));
    let named: Vec<Value> = flows(&tb)
        .into_iter()
        .filter(|f| f["dst"] == "198.18.3.1:8080" && f["app"] == "curl")
        .collect();
    assert_eq!(named.len(), 1, "{:?}", flows(&tb));
    finish_download(&tb, c, &out2, &blob);
}

#[test]
fn aware_application_declares_its_flows_through_the_api() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The API's example program (api/examples/aware.rs).
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "upmt-api", "--example", "aware"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(st.success());
    let exe = target.join("debug/examples/aware");
    let exe_s = exe.to_string_lossy().into_owned();
    let mut tb = Tb::new("t");
    tb.upmt_start();
    let _blob = tb.web_server(1);
    // voip prefers umts0 in the example policy; without the declaration the flow would be
    // the program's own ("aware"), which follows the default (wlan0).
    let out = tb.exec_ok("mh", &[&exe_s, "198.18.3.1:8080", "voip"]);
    assert!(out.contains("as application voip"), "{out}");
    let f = flow_to(&tb, "198.18.3.1:8080").expect("the aware application's flow");
    assert_eq!(
        (f["app"].as_str(), f["iface"].as_str()),
        (Some("voip"), Some("umts0")),
        "{f}"
    );
}
