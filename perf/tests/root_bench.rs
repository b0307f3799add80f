//! Smoke runs of the benchmark harness (`upmt-bench throughput --quick`, `upmt-bench
//! handover --quick`): they build their own namespaces, run every variant or scenario once
//! and write JSON and SVG. Checked: that they run, that the output is sane and complete,
//! and that no namespace is left behind. Not checked: the timings (benchmarks, not tests).
//!
//! Needs root, iproute2, nftables, iperf3 and the `upmt` binary next to `upmt-bench` (both
//! are built by `cargo test --workspace`). Missing prerequisites FAIL the test with a
//! message, never pass silently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_upmt-bench"))
}

/// The `upmt` binary of the same build (not a stale release one).
fn upmt() -> PathBuf {
    let b = bench().with_file_name("upmt");
    assert!(
        b.is_file(),
        "{} missing: build it (`cargo build -p upmt`, or run `sudo scripts/test.sh`)",
        b.display()
    );
    b
}

fn require_prerequisites() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "benchmark harness smoke tests need root (network namespaces, TUN): run `sudo scripts/test.sh`"
    );
    for tool in ["ip", "nft", "iperf3", "ss", "ping", "sipp", "taskset"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "needs `{tool}`: run scripts/install-deps.sh");
    }
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Runs `upmt-bench ARGS --json DIR/out.json --prefix P` and returns the JSON.
fn run(args: &[&str], prefix: &str, dir: &Path) -> Value {
    let json = dir.join("out.json");
    let out = Command::new(bench())
        .args(args)
        .arg("--json")
        .arg(&json)
        .args(["--prefix", prefix])
        .env("UPMT_BIN", upmt())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running upmt-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "upmt-bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        namespaces_with(prefix).is_empty(),
        "namespaces left behind: {:?}",
        namespaces_with(prefix)
    );
    let svg = std::fs::read_to_string(json.with_extension("svg"))
        .or_else(|_| std::fs::read_to_string(dir.join("out.svg")))
        .unwrap_or_default();
    if !svg.is_empty() {
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
    let text = std::fs::read_to_string(&json).expect("the JSON report");
    eprintln!("{stdout}");
    serde_json::from_str(&text).expect("valid JSON")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("upmt-bench-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn throughput_quick_runs_every_variant() {
    require_prerequisites();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("tq{}-", std::process::id() % 100_000);
    let dir = scratch("thr");
    let v = run(&["throughput", "--quick", "--secs", "1"], &prefix, &dir);
    assert!(dir.join("out.svg").is_file(), "no SVG next to the JSON");
    let summary = v["summary"].as_array().expect("summary");
    let names: Vec<&str> = summary
        .iter()
        .map(|s| s["variant"].as_str().unwrap())
        .collect();
    for want in [
        "kernel-routing",
        "kernel-vxlan",
        "naive-relay",
        "upmt-upmt-nat-offload",
        "upmt-upmt-nat-no-offload",
        "upmt-kernel-nat-offload",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for s in summary {
        let name = s["variant"].as_str().unwrap();
        assert!(s["note"].is_null(), "{name}: {}", s["note"]);
        for k in ["tcp1_gbps", "tcp4_gbps", "udp_gbps"] {
            let m = s[k]["median"].as_f64().unwrap_or(0.0);
            assert!(m > 0.0 && m < 1000.0, "{name} {k} = {m}");
        }
        if s["anchor"] == false {
            assert_eq!(s["tcp1_ratio_to"].as_array().unwrap().len(), 3, "{s}");
            let sc = s["mh_syscalls_per_packet"]["median"].as_f64().unwrap();
            assert!(sc > 0.0 && sc < 10.0, "{name} syscalls/packet {sc}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn handover_quick_runs_every_scenario() {
    require_prerequisites();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // testbed.sh prefixes must stay short (interface names are derived from them).
    let prefix = format!("hq{}-", std::process::id() % 10_000);
    let dir = scratch("ho");
    let v = run(
        &[
            "handover",
            "--quick",
            "--svg",
            dir.join("out.svg").to_str().unwrap(),
        ],
        &prefix,
        &dir,
    );
    let summary = v["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 5, "{v}");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 5);
    for r in runs {
        let p = &r["probe"];
        // The probe ran and saw most of its echoes; an interruption was measured.
        assert!(p["sent"].as_u64().unwrap_or(0) > 1000, "{r}");
        assert!(p["received"].as_u64().unwrap_or(0) > 500, "{r}");
        assert!(p["interruption_ms"].as_f64().is_some(), "{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pps_quick_measures_both_anchors() {
    require_prerequisites();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("pq{}-", std::process::id() % 100_000);
    let dir = scratch("pps");
    let v = run(&["pps", "--quick", "--secs", "1"], &prefix, &dir);
    let summary = v["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 2, "{v}");
    for s in summary {
        let name = s["variant"].as_str().unwrap();
        assert!(s["note"].is_null(), "{name}: {}", s["note"]);
        let d = s["delivered_pps"]["median"].as_f64().unwrap_or(0.0);
        let o = s["offered_pps"]["median"].as_f64().unwrap_or(0.0);
        assert!(d > 1000.0 && d <= o * 1.05, "{name}: delivered {d} of {o}");
    }
    let sc = summary[1]["anchor_syscalls_per_packet"]["median"]
        .as_f64()
        .unwrap();
    assert!(sc > 0.0 && sc < 10.0, "{sc}");
    assert!(v["ratio_upmt_to_kernel"].as_f64().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scale_quick_holds_every_host_and_flow() {
    require_prerequisites();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("sq{}-", std::process::id() % 100_000);
    let dir = scratch("scale");
    let v = run(
        &["scale", "--quick", "--registrations", "300", "--secs", "1"],
        &prefix,
        &dir,
    );
    let sipp = &v["sipp"];
    assert!(sipp["error"].is_null(), "{sipp}");
    assert_eq!(sipp["successful"].as_u64(), Some(300), "{sipp}");
    assert!(
        sipp["associations_per_s"].as_f64().unwrap_or(0.0) > 10.0,
        "{sipp}"
    );
    assert!(sipp["hosts_held"].as_u64().unwrap_or(0) >= 300, "{sipp}");
    let h = &v["hosts"];
    assert_eq!(h["hosts_up"].as_u64(), Some(64), "{h}");
    // Every flow of every host is in the anchor's flow table and NAT (0.1 % slack).
    let flows = 64 * 256;
    for k in ["nat_mappings", "anchor_flows"] {
        let n = h[k].as_u64().unwrap_or(0);
        assert!(n >= flows - flows / 1000 && n <= flows, "{k} {n}: {h}");
    }
    assert!(
        h["bytes_per_flow"]
            .as_f64()
            .is_some_and(|b| b > 0.0 && b < 100_000.0),
        "{h}"
    );
    let summary = v["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 2, "{v}");
    for s in summary {
        assert!(s["note"].is_null(), "{s}");
        assert!(
            s["delivered_pps"]["median"].as_f64().unwrap_or(0.0) > 1000.0,
            "{s}"
        );
    }
    assert!(v["ratio_all_to_hot"].as_f64().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
