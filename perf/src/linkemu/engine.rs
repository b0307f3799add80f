//! The emulator's event loop: two AF_PACKET ports, a signalfd, and [`Link`] in between.
//!
//! One thread, no busy polling: `ppoll` sleeps until a frame arrives, a signal comes, or the
//! earliest queued frame is due (nanosecond timeout, 1 us timer slack).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::config::Config;
use super::link::{Dir, Link};
use crate::sys::{poll_readable, set_realtime, set_timer_slack, PacketSocket, Signal, SignalFd};

/// Receive buffer: virtio-net header + the largest GSO frame a veth passes (64 KB), with
/// room to spare; larger frames are counted as truncated and dropped.
const RECV_BUF: usize = 256 << 10;
/// Frames read from one port per wake-up before looking at the other port and the clock.
const BURST: usize = 64;
/// How often the status file is refreshed while running.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Where the emulator runs and what it reads and writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Port a: the interface towards the mobile host ("up" traffic enters here).
    pub port_a: String,
    /// Port b: the interface towards the network ("down" traffic enters here).
    pub port_b: String,
    /// Configuration file, read at start and on SIGHUP.
    pub config: PathBuf,
    /// Status file (counters, applied generation), rewritten atomically.
    pub status: Option<PathBuf>,
    /// PID file, written once both ports are open (scripts wait for it).
    pub pid_file: Option<PathBuf>,
    /// `SCHED_FIFO` priority (1-99) for the event loop; `None` keeps the normal class.
    pub realtime: Option<i32>,
}

/// Reads and parses a configuration file.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Runs until SIGTERM or SIGINT.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    // First, so no signal is lost between here and the loop.
    let signals = SignalFd::new().context("signalfd")?;
    let mut cfg = load_config(&opts.config)?;
    if let Err(e) = set_timer_slack(Duration::from_micros(1)) {
        eprintln!("upmt-linkemu: timer slack not set ({e}); deadlines may be up to 50 us late");
    }
    if let Some(prio) = opts.realtime {
        if let Err(e) = set_realtime(prio) {
            eprintln!(
                "upmt-linkemu: SCHED_FIFO {prio} not set ({e}); a loaded machine may delay frames"
            );
        }
    }
    let a = PacketSocket::open(&opts.port_a).with_context(|| format!("port a {}", opts.port_a))?;
    let b = PacketSocket::open(&opts.port_b).with_context(|| format!("port b {}", opts.port_b))?;
    let mut link = Link::new(&cfg);
    let started = Instant::now();
    let mut config_error: Option<String> = None;

    write_status(opts, &cfg, &link, started, None)?;
    if let Some(p) = &opts.pid_file {
        write_atomic(p, &format!("{}\n", std::process::id()))?;
    }
    eprintln!(
        "upmt-linkemu: {} <-> {} running, generation {}",
        a.ifname(),
        b.ifname(),
        cfg.generation
    );

    let mut buf = vec![0u8; RECV_BUF];
    let mut last_status = Instant::now();
    let mut reported_errors = 0u32;
    loop {
        let now = Instant::now();
        let until_due = link
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now));
        let wait = until_due.map_or(STATUS_EVERY, |d| d.min(STATUS_EVERY));
        let ready = poll_readable([a.as_fd(), b.as_fd(), signals.as_fd()], Some(wait))?;

        if ready[2] {
            while let Some(sig) = signals.read()? {
                match sig {
                    Signal::Terminate => {
                        write_status(opts, &cfg, &link, started, config_error.as_deref())?;
                        if let Some(p) = &opts.pid_file {
                            let _ = fs::remove_file(p);
                        }
                        eprintln!("upmt-linkemu: terminated");
                        return Ok(());
                    }
                    Signal::Reload => match load_config(&opts.config) {
                        Ok(new) => {
                            link.configure(&new);
                            cfg = new;
                            config_error = None;
                            eprintln!("upmt-linkemu: generation {} applied", cfg.generation);
                        }
                        Err(e) => {
                            eprintln!("upmt-linkemu: configuration kept: {e:#}");
                            config_error = Some(format!("{e:#}"));
                        }
                    },
                    Signal::Report => {}
                }
                write_status(opts, &cfg, &link, started, config_error.as_deref())?;
                last_status = Instant::now();
            }
        }

        for (i, port, dir) in [(0, &a, Dir::Up), (1, &b, Dir::Down)] {
            if !ready[i] {
                continue;
            }
            for _ in 0..BURST {
                match port.recv(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(n)) => match buf.get(..n) {
                        Some(frame) => {
                            link.handle_frame(dir, Instant::now(), frame);
                        }
                        None => link.note_truncated(dir),
                    },
                    Err(e) => {
                        // E.g. ENETDOWN once when the interface goes down: keep going.
                        if reported_errors < 20 && !is_transient(&e) {
                            reported_errors += 1;
                            eprintln!("upmt-linkemu: receive on {}: {e}", port.ifname());
                        }
                        break;
                    }
                }
            }
        }

        let now = Instant::now();
        while let Some(tx) = link.poll_transmit(now) {
            let out = match tx.dir {
                Dir::Up => &b,
                Dir::Down => &a,
            };
            match out.send(&tx.data) {
                Ok(_) => link.note_sent(tx.dir, tx.data.len()),
                Err(e) => {
                    link.note_tx_error(tx.dir);
                    if reported_errors < 20 && !is_transient(&e) {
                        reported_errors += 1;
                        eprintln!("upmt-linkemu: send on {}: {e}", out.ifname());
                    }
                }
            }
            link.recycle(tx.data);
        }

        if last_status.elapsed() >= STATUS_EVERY {
            write_status(opts, &cfg, &link, started, config_error.as_deref())?;
            last_status = Instant::now();
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN)
    )
}

fn write_status(
    opts: &Options,
    cfg: &Config,
    link: &Link,
    started: Instant,
    config_error: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(p) = &opts.status {
        let text = format_status(cfg.generation, started.elapsed(), link, config_error);
        write_atomic(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The status file: `key = value` lines, the applied generation first.
pub fn format_status(
    generation: u64,
    uptime: Duration,
    link: &Link,
    config_error: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "generation = {generation}");
    let _ = writeln!(s, "pid = {}", std::process::id());
    let _ = writeln!(s, "uptime_s = {:.1}", uptime.as_secs_f64());
    if let Some(e) = config_error {
        let _ = writeln!(s, "config_error = {}", e.replace('\n', " "));
    }
    for dir in Dir::ALL {
        let st = link.stats(dir);
        let d = dir.name();
        let mean_us = if st.released == 0 {
            0.0
        } else {
            st.late_sum.as_secs_f64() * 1e6 / st.released as f64
        };
        let _ = writeln!(s, "{d}.rx_frames = {}", st.rx_frames);
        let _ = writeln!(s, "{d}.rx_bytes = {}", st.rx_bytes);
        let _ = writeln!(s, "{d}.tx_frames = {}", st.tx_frames);
        let _ = writeln!(s, "{d}.tx_bytes = {}", st.tx_bytes);
        let _ = writeln!(s, "{d}.lost = {}", st.lost);
        let _ = writeln!(s, "{d}.queue_full = {}", st.queue_full);
        let _ = writeln!(s, "{d}.tx_errors = {}", st.tx_errors);
        let _ = writeln!(s, "{d}.truncated = {}", st.truncated);
        let _ = writeln!(s, "{d}.queued = {}", link.queued(dir));
        let _ = writeln!(s, "{d}.late_mean_us = {mean_us:.1}");
        let _ = writeln!(s, "{d}.late_max_us = {}", st.late_max.as_micros());
    }
    s
}

fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_starts_with_the_generation_and_lists_both_directions() {
        let link = Link::new(&Config::default());
        let s = format_status(9, Duration::from_secs(2), &link, Some("bad\nthing"));
        assert!(s.starts_with("generation = 9\n"));
        assert!(s.contains("config_error = bad thing\n"));
        assert!(s.contains("up.lost = 0\n") && s.contains("down.late_max_us = 0\n"));
    }
}
