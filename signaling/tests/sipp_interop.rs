//! Interop with a real SIP tool: SIPp (Debian package `sip-tester`) registers against the
//! real UDP driver, with Digest, and every 200 OK must carry a VIpAddr header (the scenario's
//! `ereg ... check_it="true"`). Root-free: loopback, ephemeral ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;

use signaling::RegistrarDriver;
use signaling_proto::auth::Algorithm;
use signaling_proto::credentials::Credentials;
use signaling_proto::registrar::{Event, RegistrarConfig};

fn sipp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sipp")
}

fn require_sipp() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("sipp"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`sipp` not found in PATH: install the Debian package `sip-tester` (CI does)")
    })
}

/// Credentials matching tests/sipp/users.csv (`user;[authentication username=u password=p]`).
fn credentials() -> Credentials {
    let csv = std::fs::read_to_string(sipp_dir().join("users.csv")).unwrap();
    let mut toml = String::from("realm = \"upmt\"\n");
    for line in csv.lines().skip(1) {
        let (user, auth) = line.split_once(';').unwrap();
        let password = auth
            .split("password=")
            .nth(1)
            .unwrap()
            .trim_end_matches(']');
        toml.push_str(&format!(
            "[[user]]\nname = \"{user}\"\npassword = \"{password}\"\n"
        ));
    }
    Credentials::from_toml(&toml).unwrap()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct SippRun {
    ok: bool,
    successful: u64,
    failed: u64,
    output: String,
}

fn run_sipp(
    sipp: &Path,
    scenario: &Path,
    target: std::net::SocketAddr,
    calls: u32,
    rate: u32,
) -> SippRun {
    let out = Command::new(sipp)
        .current_dir(sipp_dir())
        .arg("-sf")
        .arg(scenario)
        .args(["-inf", "users.csv"])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-nostdin", "-timeout", "60s", "-max_recv_loops", "10000"])
        .arg(target.to_string())
        .output()
        .expect("running sipp");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let cumulative = |label: &str| -> u64 {
        output
            .lines()
            .rfind(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    SippRun {
        ok: out.status.success(),
        successful: cumulative("Successful call"),
        failed: cumulative("Failed call"),
        output,
    }
}

fn start_registrar() -> signaling::RegistrarHandle {
    let cfg = RegistrarConfig {
        // SIPp 3.6 only answers MD5 challenges and takes the first one.
        algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        // All SIPp calls come from one source address.
        rate_limit: None,
        ..RegistrarConfig::default()
    };
    RegistrarDriver::bind("127.0.0.1:0", cfg, credentials())
        .unwrap()
        .spawn()
        .unwrap()
}

#[test]
fn sipp_registers_with_digest_and_every_200_carries_vipaddr() {
    let sipp = require_sipp();
    let reg = start_registrar();
    let run = run_sipp(
        &sipp,
        &sipp_dir().join("register.xml"),
        reg.local_addr,
        200,
        200,
    );
    let events: Vec<Event> = reg.events.try_iter().collect();
    let stats = reg.stop().unwrap();
    assert!(run.ok, "sipp exit status non-zero:\n{}", run.output);
    assert_eq!(run.failed, 0, "{}", run.output);
    assert_eq!(run.successful, 200, "{}", run.output);
    assert_eq!(stats.registrations, 200);
    assert_eq!(stats.malformed, 0);
    // 100 users: each associates once, then refreshes on its second call.
    let associated = events
        .iter()
        .filter(|e| matches!(e, Event::Associated { .. }))
        .count();
    assert_eq!(associated, 100);
}

/// The VIpAddr check is not vacuous: the same scenario looking for a header the registrar
/// does not send fails every call.
#[test]
fn sipp_check_fails_without_the_header() {
    let sipp = require_sipp();
    let text = std::fs::read_to_string(sipp_dir().join("register.xml")).unwrap();
    let broken = text.replace("header=\"VIpAddr:\"", "header=\"X-No-Such-Header:\"");
    assert_ne!(text, broken);
    let dir = std::env::temp_dir().join(format!("upmt-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("register-broken.xml");
    std::fs::write(&scenario, broken).unwrap();
    let reg = start_registrar();
    let run = run_sipp(&sipp, &scenario, reg.local_addr, 5, 50);
    reg.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!run.ok, "sipp should have failed:\n{}", run.output);
    assert_eq!(run.failed, 5, "{}", run.output);
}
