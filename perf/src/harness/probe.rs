//! The harness's own probe sender and receiver (`upmt-bench probe`, run inside the mobile
//! host's namespace): one 64-byte datagram per interval to a UDP echo server (`upmt-udpprobe
//! echo`), carrying its sequence number and send time; every echo is recorded with its
//! arrival time, and the whole trace is printed as JSON for the harness to analyse.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::analysis::{Arrival, Trace};

const LEN: usize = 64;

/// How long the receiver keeps listening after the last probe was sent.
const GRACE: Duration = Duration::from_millis(500);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sends `duration / interval` probes to `to` on an absolute schedule (no drift) and
/// returns the trace. A send error (the path is down for a moment) is a loss like any other.
pub(crate) fn run(
    to: SocketAddr,
    interval: Duration,
    duration: Duration,
) -> std::io::Result<Trace> {
    let bind: SocketAddr = if to.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(to)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let interval = interval.max(Duration::from_micros(10));
    let start_unix_ns = unix_ns();
    let t0 = Instant::now();
    let arrivals = Arc::new(Mutex::new(Vec::<Arrival>::with_capacity(16_384)));
    let done = Arc::new(AtomicBool::new(false));
    let (r, a2, d2) = (s.try_clone()?, arrivals.clone(), done.clone());
    let rx = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !d2.load(Ordering::Relaxed) {
            let Ok(n) = r.recv(&mut buf) else { continue };
            let recv_ns = t0.elapsed().as_nanos() as u64;
            let (Some(seq), Some(sent)) = (
                buf.get(..n).and_then(|b| b.get(0..8)),
                buf.get(..n).and_then(|b| b.get(8..16)),
            ) else {
                continue; // too short: not ours
            };
            let (Ok(seq), Ok(sent)) = (<[u8; 8]>::try_from(seq), <[u8; 8]>::try_from(sent)) else {
                continue;
            };
            if let Ok(mut v) = a2.lock() {
                v.push(Arrival {
                    seq: u64::from_be_bytes(seq),
                    sent_ns: u64::from_be_bytes(sent),
                    recv_ns,
                });
            }
        }
    });
    let count = (duration.as_nanos() / interval.as_nanos()) as u64;
    let mut pkt = [0u8; LEN];
    for seq in 0..count {
        let deadline = t0 + Duration::from_nanos(interval.as_nanos() as u64 * seq);
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        pkt[0..8].copy_from_slice(&seq.to_be_bytes());
        pkt[8..16].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_be_bytes());
        let _ = s.send(&pkt);
    }
    std::thread::sleep(GRACE);
    done.store(true, Ordering::Relaxed);
    let _ = rx.join();
    let arrivals = arrivals.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(Trace {
        start_unix_ns,
        interval_ns: interval.as_nanos() as u64,
        sent: count,
        arrivals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = run(addr, Duration::from_millis(1), Duration::from_millis(100)).unwrap();
        assert_eq!(t.sent, 100);
        assert!(t.start_unix_ns > 0);
        // Loopback loses nothing; the analysis sees every sequence number once.
        let s = super::super::analysis::probe_stats(&t, 0);
        assert_eq!((s.received, s.lost, s.duplicated), (100, 0, 0), "{s:?}");
    }
}
