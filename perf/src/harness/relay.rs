//! The naive TUN <-> UDP relay anchor (`upmt-bench relay`, internal): one packet per
//! syscall, blocking, two threads (TUN -> `send`, `recv` -> TUN), no offloads, no batching.
//! It is the baseline DESIGN.md section 5 measures the data plane against (0.79 Gb/s on
//! 2026-11-23).
//!
//! Also the small-packet load generator (`upmt-bench blast`, internal): several threads,
//! each with its own UDP flows, sending 64-datagram `sendmmsg` batches as fast as it can.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use perf::sys;

/// Runs the relay until killed.
pub(crate) fn relay(tun: &str, local: SocketAddr, peer: SocketAddr) -> Result<()> {
    let dev = sys::open_tun(tun).with_context(|| format!("opening TUN {tun}"))?;
    let sock = UdpSocket::bind(local).with_context(|| format!("binding {local}"))?;
    sock.connect(peer)
        .with_context(|| format!("connecting to {peer}"))?;
    let (mut dev_rd, mut dev_wr) = (dev.try_clone().context("TUN fd")?, dev);
    let (sock_rd, sock_wr) = (sock.try_clone().context("socket")?, sock);
    let up = std::thread::spawn(move || -> Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = dev_rd.read(&mut buf).context("TUN read")?;
            if let Some(p) = buf.get(..n) {
                // The peer may not be there yet (ECONNREFUSED): drop, like a lossy path.
                let _ = sock_wr.send(p);
            }
        }
    });
    let mut buf = vec![0u8; 65536];
    loop {
        if up.is_finished() {
            return match up.join() {
                Ok(r) => r,
                Err(_) => anyhow::bail!("TUN reader thread panicked"),
            };
        }
        match sock_rd.recv(&mut buf) {
            Ok(n) => {
                if let Some(p) = buf.get(..n) {
                    // A malformed packet is refused by the kernel: drop it.
                    let _ = dev_wr.write(p);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e).context("UDP recv"),
        }
    }
}

/// The load generator's result.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Blast {
    pub(crate) sent: u64,
    pub(crate) send_errors: u64,
    pub(crate) secs: f64,
}

/// Sends `size`-byte UDP datagrams to `to` from `src` on `flows` flows (source ports) over
/// `threads` threads for `secs`: 64 per `sendmmsg`, or with `gso` > 0, `gso` datagrams per
/// `send` with `UDP_SEGMENT` (what a QUIC stack does).
#[allow(clippy::too_many_arguments)]
pub(crate) fn blast(
    to: SocketAddr,
    src: std::net::IpAddr,
    threads: usize,
    flows: usize,
    size: usize,
    secs: f64,
    gso: usize,
) -> Result<Blast> {
    let threads = threads.clamp(1, 64);
    let flows = flows.max(threads);
    let mut socks: Vec<Vec<UdpSocket>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..flows {
        let s =
            UdpSocket::bind(SocketAddr::new(src, 0)).with_context(|| format!("binding {src}"))?;
        s.connect(to)
            .with_context(|| format!("connecting to {to}"))?;
        if gso > 0 {
            let seg = u16::try_from(size).context("--size too large for UDP_SEGMENT")?;
            sys::set_udp_segment(&s, seg).context("UDP_SEGMENT")?;
        }
        if let Some(v) = socks.get_mut(i % threads) {
            v.push(s);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let gso = gso.min(64);
    let payload = if gso > 0 {
        vec![0x5au8; (size.clamp(1, 65507) * gso).min(65507)]
    } else {
        vec![0x5au8; size.clamp(1, 65507)]
    };
    let per_send = payload.len().div_ceil(size.max(1)) as u64;
    let t0 = Instant::now();
    let handles: Vec<_> = socks
        .into_iter()
        .map(|v| {
            let (stop, sent, errors, payload) =
                (stop.clone(), sent.clone(), errors.clone(), payload.clone());
            std::thread::spawn(move || {
                let (mut n, mut e) = (0u64, 0u64);
                'run: loop {
                    for s in &v {
                        if stop.load(Ordering::Relaxed) {
                            break 'run;
                        }
                        if gso > 0 {
                            match s.send(&payload) {
                                Ok(_) => n += per_send,
                                Err(_) => e += 1,
                            }
                            continue;
                        }
                        match sys::send_batch(s, &payload, sys::MAX_BATCH) {
                            Ok(k) => n += k as u64,
                            Err(_) => e += 1,
                        }
                    }
                }
                sent.fetch_add(n, Ordering::Relaxed);
                errors.fetch_add(e, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    Ok(Blast {
        sent: sent.load(Ordering::Relaxed),
        send_errors: errors.load(Ordering::Relaxed),
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// A UDP socket that is never read (the pps bench's receiver: the kernel counts and drops,
/// no ICMP port-unreachable comes back). Runs until killed.
pub(crate) fn sink(bind: SocketAddr) -> Result<()> {
    let _s = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// An IPv4/UDP packet of `total` bytes (at least 28) from `src:sport` to `dst:dport`, with
/// valid header and UDP checksums: what a mobile host puts into its tunnel.
pub(crate) fn inner_udp(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    sport: u16,
    dport: u16,
    total: usize,
) -> Vec<u8> {
    use wire::checksum;
    let total = total.clamp(28, 1472);
    let mut p = vec![0u8; total];
    let len = total as u16;
    let udp_len = len - 20;
    p[0] = 0x45;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&udp_len.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let ph = checksum::pseudo_header_v4(src, dst, wire::IpProtocol::Udp, udp_len);
    let c = !checksum::combine(&[ph, checksum::sum(&p[20..])]);
    let c = if c == 0 { 0xffff } else { c };
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}

/// Sends `flows` different inner UDP packets (inner source ports 20000..) through a tunnel:
/// from the tunnel's own local address `bind` to the anchor's tunnel port `anchor`, in
/// 64-datagram `sendmmsg` bursts per flow, over `threads` threads (one socket, cloned) for
/// `secs`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn blast_tunnel(
    bind: SocketAddr,
    anchor: SocketAddr,
    vipa: std::net::Ipv4Addr,
    dst: std::net::SocketAddrV4,
    threads: usize,
    flows: usize,
    size: usize,
    secs: f64,
) -> Result<Blast> {
    // The tunnel's owner was just killed: its io_uring (and with it the socket) is torn
    // down asynchronously, so the address can stay busy for a moment.
    let t0 = Instant::now();
    let sock = loop {
        match UdpSocket::bind(bind) {
            Ok(s) => break s,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && t0.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("binding {bind}")),
        }
    };
    sock.connect(anchor)
        .with_context(|| format!("connecting to {anchor}"))?;
    let frames: Vec<Vec<u8>> = (0..flows.clamp(1, 40000))
        .map(|i| inner_udp(vipa, *dst.ip(), 20000 + i as u16, dst.port(), size))
        .collect();
    let frames = Arc::new(frames);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let threads = threads.clamp(1, 16);
    let mut handles = Vec::new();
    for t in 0..threads {
        let s = sock.try_clone().context("socket")?;
        let (stop, sent, errors, frames) =
            (stop.clone(), sent.clone(), errors.clone(), frames.clone());
        handles.push(std::thread::spawn(move || {
            let (mut n, mut e) = (0u64, 0u64);
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                if let Some(f) = frames.get(i % frames.len()) {
                    match sys::send_batch(&s, f, sys::MAX_BATCH) {
                        Ok(k) => n += k as u64,
                        Err(_) => e += 1,
                    }
                }
                i = i.wrapping_add(threads);
            }
            sent.fetch_add(n, Ordering::Relaxed);
            errors.fetch_add(e, Ordering::Relaxed);
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    Ok(Blast {
        sent: sent.load(Ordering::Relaxed),
        send_errors: errors.load(Ordering::Relaxed),
        secs: t0.elapsed().as_secs_f64(),
    })
}
