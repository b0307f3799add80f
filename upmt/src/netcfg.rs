//! Host network configuration for the daemons: addresses and routes on the TUN, forwarding
//! sysctls, and the nftables table of the anchor's kernel-NAT mode.
//!
//! Done with the standard tools (`ip`, `nft`), whose errors are reported with the command
//! that failed. Everything is named so that a crashed daemon's leftovers are removed by the
//! next start: routes live on the non-persistent TUN and vanish with it, and the nftables
//! table is `ip upmt_anchor`, deleted at start and at exit ([`NftTable`]).
//!
//! Routes on the mobile host: `0.0.0.0/1` and `128.0.0.0/1` via the TUN with the VIPA as
//! source, which win over the access networks' default routes without replacing them (so
//! nothing is lost if the daemon dies: the TUN goes, and the old defaults apply again). The
//! tunnel sockets are bound to their interfaces (`SO_BINDTODEVICE`) and keep using those
//! defaults; KERNEL-NOTES: a bound socket needs a route with a gateway on its interface.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(argv: &[&str]) -> Result<String> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {prog} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with `input` on its standard input (for `nft -f -`).
fn run_with_input(argv: &[&str], input: &str) -> Result<()> {
    use std::io::Write as _;
    let (prog, args) = argv.split_first().context("empty command")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {prog} (is it installed?)"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}\ninput:\n{input}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes a sysctl under /proc/sys (`net.ipv4.ip_forward` style names).
pub fn sysctl(name: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("cannot set {name}={value}"))
}

/// Brings the mobile host's TUN up with the VIPA and makes it the route for applications.
pub fn mobile_tun_up(tun: &str, vipa: Ipv4Addr, mtu: u16) -> Result<()> {
    let vipa_s = vipa.to_string();
    let mtu_s = mtu.to_string();
    // A re-association may bring a new VIPA: start from a clean device.
    run(&["ip", "-4", "addr", "flush", "dev", tun])?;
    run(&["ip", "addr", "add", &format!("{vipa_s}/32"), "dev", tun])?;
    run(&["ip", "link", "set", "dev", tun, "mtu", &mtu_s, "up"])?;
    for half in ["0.0.0.0/1", "128.0.0.0/1"] {
        run(&["ip", "route", "replace", half, "dev", tun, "src", &vipa_s])?;
    }
    // Replies to the VIPA arrive on the TUN while the access routes point elsewhere.
    sysctl(&format!("net.ipv4.conf.{tun}.rp_filter"), "0")?;
    sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    Ok(())
}

/// Anchor, `upmt` NAT mode: the public addresses are routed into the TUN, so that the
/// correspondents' answers come back to the data plane; NATed packets leave through the
/// kernel's forwarding.
pub fn anchor_tun_up(tun: &str, mtu: u16, routed: &[String]) -> Result<()> {
    run(&[
        "ip",
        "link",
        "set",
        "dev",
        tun,
        "mtu",
        &mtu.to_string(),
        "up",
    ])?;
    for r in routed {
        run(&["ip", "route", "replace", r, "dev", tun])?;
    }
    sysctl("net.ipv4.ip_forward", "1")?;
    sysctl(&format!("net.ipv4.conf.{tun}.rp_filter"), "0")?;
    sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    Ok(())
}

/// The anchor's nftables table for the kernel-NAT mode; deleted on drop.
#[derive(Debug)]
pub struct NftTable {
    name: &'static str,
}

/// The table name: fixed, so a crashed anchor's table is found and replaced.
pub const ANCHOR_TABLE: &str = "upmt_anchor";

impl NftTable {
    /// Installs `snat` of the VIPA pool to `public` on traffic leaving by `uplink`
    /// (replacing a stale table of the same name).
    pub fn anchor_snat(pool: &str, public: Ipv4Addr, uplink: &str) -> Result<NftTable> {
        let _ = run(&["nft", "delete", "table", "ip", ANCHOR_TABLE]);
        let rules = format!(
            "table ip {ANCHOR_TABLE} {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname \"{uplink}\" ip saddr {pool} snat to {public}\n\
             \t}}\n\
             }}\n"
        );
        run_with_input(&["nft", "-f", "-"], &rules)?;
        Ok(NftTable { name: ANCHOR_TABLE })
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = run(&["nft", "delete", "table", "ip", self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_names_itself() {
        let e = run(&["false"]).unwrap_err().to_string();
        assert!(e.contains("`false` failed"), "{e}");
        let e = run(&["/nonexistent/upmt-tool"]).unwrap_err().to_string();
        assert!(e.contains("is it installed"), "{e}");
        assert_eq!(run(&["echo", "hi"]).unwrap(), "hi\n");
    }
}
