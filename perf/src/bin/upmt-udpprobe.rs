//! `upmt-udpprobe`: a constant-rate UDP probe for handover measurements.
//!
//! ```text
//! upmt-udpprobe echo --bind 198.18.3.1:9000
//! upmt-udpprobe send --to 198.18.3.1:9000 [--interval-us 1000] [--duration-ms 10000]
//! ```
//! `send` emits one datagram per interval (sequence number and send time), the echo sends it
//! back, and `send` reports on one JSON line what came back: sent, received, lost,
//! duplicated, reordered, the largest gap between two consecutive arrivals, the longest run
//! of consecutive losses, and round-trip percentiles. Both directions cross the path, so an
//! interruption of either shows. The send schedule uses absolute deadlines (no drift).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LEN: usize = 64;

/// One echoed probe: its sequence number, when it was sent and when it came back (ns from
/// the start of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arrival {
    seq: u64,
    sent_ns: u64,
    recv_ns: u64,
}

/// What a run shows.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    sent: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    max_gap_ms: f64,
    max_loss_run: u64,
    rtt_p50_ms: f64,
    rtt_p99_ms: f64,
    rtt_max_ms: f64,
}

fn analyse(sent: u64, arrivals: &[Arrival]) -> Report {
    let mut seen = vec![false; sent as usize];
    let mut duplicated = 0;
    let mut reordered = 0;
    let mut highest: Option<u64> = None;
    let mut rtts: Vec<u64> = Vec::new();
    for a in arrivals {
        let Some(slot) = seen.get_mut(a.seq as usize) else {
            continue; // not one we sent
        };
        if *slot {
            duplicated += 1;
            continue;
        }
        *slot = true;
        if highest.is_some_and(|h| a.seq < h) {
            reordered += 1;
        }
        highest = Some(highest.map_or(a.seq, |h| h.max(a.seq)));
        rtts.push(a.recv_ns.saturating_sub(a.sent_ns));
    }
    let received = seen.iter().filter(|s| **s).count() as u64;
    let mut max_loss_run = 0;
    let mut run = 0;
    for s in &seen {
        if *s {
            run = 0;
        } else {
            run += 1;
            max_loss_run = max_loss_run.max(run);
        }
    }
    let mut recv: Vec<u64> = arrivals.iter().map(|a| a.recv_ns).collect();
    recv.sort_unstable();
    let max_gap = recv.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    rtts.sort_unstable();
    let pct = |p: f64| -> f64 {
        if rtts.is_empty() {
            return 0.0;
        }
        let i = ((rtts.len() - 1) as f64 * p).round() as usize;
        rtts.get(i).copied().unwrap_or(0) as f64 / 1e6
    };
    Report {
        sent,
        received,
        lost: sent - received,
        duplicated,
        reordered,
        max_gap_ms: max_gap as f64 / 1e6,
        max_loss_run,
        rtt_p50_ms: pct(0.5),
        rtt_p99_ms: pct(0.99),
        rtt_max_ms: rtts.last().copied().unwrap_or(0) as f64 / 1e6,
    }
}

impl Report {
    fn json(&self, interval_us: u64) -> String {
        format!(
            "{{\"sent\":{},\"received\":{},\"lost\":{},\"duplicated\":{},\"reordered\":{},\
             \"max_gap_ms\":{:.3},\"max_loss_run\":{},\"max_loss_run_ms\":{:.3},\
             \"rtt_p50_ms\":{:.3},\"rtt_p99_ms\":{:.3},\"rtt_max_ms\":{:.3},\"interval_us\":{}}}",
            self.sent,
            self.received,
            self.lost,
            self.duplicated,
            self.reordered,
            self.max_gap_ms,
            self.max_loss_run,
            self.max_loss_run as f64 * interval_us as f64 / 1e3,
            self.rtt_p50_ms,
            self.rtt_p99_ms,
            self.rtt_max_ms,
            interval_us
        )
    }
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn usage() -> ! {
    eprintln!(
        "usage: upmt-udpprobe echo --bind ADDR:PORT\n       \
         upmt-udpprobe send --to ADDR:PORT [--interval-us 1000] [--duration-ms 10000]"
    );
    std::process::exit(2)
}

fn parse<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match arg(args, name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| usage()),
    }
}

fn echo(bind: SocketAddr) -> std::io::Result<()> {
    let s = UdpSocket::bind(bind)?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = s.recv_from(&mut buf)?;
        if let Some(d) = buf.get(..n) {
            let _ = s.send_to(d, from);
        }
    }
}

fn send(to: SocketAddr, interval: Duration, duration: Duration) -> std::io::Result<Report> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(to)?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let t0 = Instant::now();
    let arrivals = Arc::new(Mutex::new(Vec::<Arrival>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (r, a2, d2) = (s.try_clone()?, arrivals.clone(), done.clone());
    let rx = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !d2.load(Ordering::Relaxed) {
            let Ok(n) = r.recv(&mut buf) else { continue };
            let recv_ns = t0.elapsed().as_nanos() as u64;
            if n < 16 {
                continue;
            }
            let seq = u64::from_be_bytes(buf[0..8].try_into().unwrap_or_default());
            let sent_ns = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
            if let Ok(mut v) = a2.lock() {
                v.push(Arrival {
                    seq,
                    sent_ns,
                    recv_ns,
                });
            }
        }
    });
    let count = (duration.as_nanos() / interval.as_nanos().max(1)) as u64;
    let mut pkt = [0u8; LEN];
    for seq in 0..count {
        let deadline = t0 + interval * seq as u32;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        pkt[0..8].copy_from_slice(&seq.to_be_bytes());
        pkt[8..16].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_be_bytes());
        // A send error (path down for a moment) is a loss like any other.
        let _ = s.send(&pkt);
    }
    // Let the last echoes come back.
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let _ = rx.join();
    let v = arrivals.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(analyse(count, &v))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("echo") => {
            let bind = arg(&args, "--bind")
                .and_then(|b| b.parse().ok())
                .unwrap_or_else(|| usage());
            echo(bind).map(|_| ())
        }
        Some("send") => {
            let to = arg(&args, "--to")
                .and_then(|b| b.parse().ok())
                .unwrap_or_else(|| usage());
            let interval_us: u64 = parse(&args, "--interval-us", 1000);
            let duration_ms: u64 = parse(&args, "--duration-ms", 10_000);
            send(
                to,
                Duration::from_micros(interval_us.max(10)),
                Duration::from_millis(duration_ms),
            )
            .map(|r| println!("{}", r.json(interval_us)))
        }
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("upmt-udpprobe: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(seq: u64, sent_ms: u64, recv_ms: u64) -> Arrival {
        Arrival {
            seq,
            sent_ns: sent_ms * 1_000_000,
            recv_ns: recv_ms * 1_000_000,
        }
    }

    #[test]
    fn clean_run() {
        let v: Vec<Arrival> = (0..10).map(|i| a(i, i, i + 2)).collect();
        let r = analyse(10, &v);
        assert_eq!(
            (r.received, r.lost, r.duplicated, r.reordered),
            (10, 0, 0, 0)
        );
        assert_eq!(r.max_gap_ms, 1.0);
        assert_eq!(r.max_loss_run, 0);
        assert_eq!(r.rtt_p50_ms, 2.0);
    }

    #[test]
    fn outage_loss_dup_reorder() {
        // 0..=3 arrive, 4..=8 lost, 9 arrives late after 10, 10 duplicated.
        let mut v: Vec<Arrival> = (0..4).map(|i| a(i, i, i + 1)).collect();
        v.push(a(10, 10, 11));
        v.push(a(9, 9, 12));
        v.push(a(10, 10, 13));
        let r = analyse(11, &v);
        assert_eq!(r.received, 6);
        assert_eq!(r.lost, 5);
        assert_eq!(r.max_loss_run, 5);
        assert_eq!(r.duplicated, 1);
        assert_eq!(r.reordered, 1);
        assert_eq!(r.max_gap_ms, 7.0); // 4 -> 11
        assert_eq!(r.rtt_max_ms, 3.0);
    }

    #[test]
    fn foreign_sequence_numbers_are_ignored() {
        let r = analyse(2, &[a(0, 0, 1), a(99, 0, 1)]);
        assert_eq!((r.received, r.lost), (1, 1));
    }

    #[test]
    fn round_trip_over_loopback() {
        let e = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = e.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = e.recv_from(&mut buf) {
                let _ = e.send_to(&buf[..n], from);
            }
        });
        let r = send(addr, Duration::from_millis(1), Duration::from_millis(200)).unwrap();
        assert_eq!(r.sent, 200);
        assert_eq!(r.lost, 0, "{r:?}");
    }
}
