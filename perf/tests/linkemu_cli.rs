//! `upmt-linkemu --check-config` (no root needed): good files pass, bad ones are refused
//! with the line and the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn check(text: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("linkemu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{:x}.conf",
        text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
    ));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_upmt-linkemu"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_valid_file() {
    let (ok, err) = check("generation = 2\nup.delay_ms = 40\nup.loss_pct = 20\n");
    assert!(ok, "{err}");
}

#[test]
fn check_config_names_the_bad_line() {
    let (ok, err) = check("generation = 2\nup.loss_pct = 120\n");
    assert!(!ok);
    assert!(
        err.contains("line 2") && err.contains("up.loss_pct"),
        "{err}"
    );
    let (ok, err) = check("up.dleay_ms = 4\n");
    assert!(!ok);
    assert!(err.contains("unknown key"), "{err}");
}

#[test]
fn missing_ports_are_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_upmt-linkemu"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
