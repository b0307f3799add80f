//! `upmt-bench sim-hosts` (internal, run by `scale` in the mobile host's namespace): many
//! simulated mobile hosts in one process. Each is a real signalling client
//! ([`signaling_proto::client::Client`], the mobile daemon's own) that associates over SIP
//! with Digest and sets one tunnel up from its own UDP socket; then the process sends inner
//! packets on `flows_per_host` flows of every host through that host's tunnel, as a mobile
//! host's data plane would, so the anchor holds hosts x flows entries in its flow and NAT
//! tables. No TUN and no data plane of our own on this side: the anchor is under test.
//!
//! Driven over stdin/stdout, one line each way:
//!
//! | stdin                   | stdout (one JSON line)                                   |
//! |-------------------------|----------------------------------------------------------|
//! | (start)                 | [`Setup`]: hosts up, failures, seconds                   |
//! | `fill PPS`              | [`Blast`]: one packet on every flow of every host, paced  |
//! | `blast FLOWS SECS`      | [`Blast`]: full rate over the first FLOWS flows           |
//! | `quit` or end of input  | (exits)                                                  |
//!
//! Flow `k` is host `k / flows_per_host`, inner source port `FIRST_PORT + k % flows_per_host`;
//! a burst is 64 consecutive flows of one host (one `sendmmsg` on its tunnel socket), and
//! consecutive bursts go to different hosts, so a pass over all flows touches every table
//! entry once, spread over the whole table.

use std::io::{BufRead, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use signaling_proto::client::{Client, ClientConfig, Event};
use signaling_proto::framing::{decode_signalling, encode_signalling};
use signaling_proto::Path as SigPath;

use super::relay::{inner_udp, Blast};
use perf::sys;

/// Inner source port of a host's flow 0.
pub(crate) const FIRST_PORT: u16 = 10000;
/// Longest one host's association and tunnel setup may take.
const HOST_DEADLINE: Duration = Duration::from_secs(10);

/// What `sim-hosts` was asked to build (its command line).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Users `sipp{first_user}..`, password `pw{N}` (as [`super::daemons::credentials_toml`]).
    #[arg(long)]
    pub(crate) first_user: u32,
    #[arg(long)]
    pub(crate) hosts: u32,
    #[arg(long)]
    pub(crate) flows_per_host: u32,
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    #[arg(long)]
    pub(crate) sip: SocketAddr,
    #[arg(long)]
    pub(crate) tunnel: SocketAddr,
    #[arg(long)]
    pub(crate) bind: Ipv4Addr,
    #[arg(long)]
    pub(crate) dst: SocketAddrV4,
    /// Hosts set up in parallel (threads).
    #[arg(long, default_value_t = 8)]
    pub(crate) parallel: usize,
}

/// The answer to the start: how the hosts' setup went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) hosts_up: u32,
    pub(crate) failed: u32,
    pub(crate) secs: f64,
    pub(crate) first_error: Option<String>,
}

/// One simulated host once its tunnel is up.
struct Host {
    /// Connected to the anchor's tunnel address.
    tunnel: UdpSocket,
    /// `flows_per_host` inner packets back to back, `size` bytes each.
    packets: Vec<u8>,
}

/// Where burst `b` of a pass over `flows` flows goes: (host, first flow of the host, count).
/// Per host at most `per_host` flows; the flows used are the first `flows` in the order of
/// the module docs (hosts filled one after the other).
pub(crate) fn burst(b: u64, flows: u64, per_host: u64, batch: u64) -> (u64, u64, u64) {
    let per_host = per_host.max(1);
    let flows = flows.max(1);
    let batch = batch.max(1);
    let hosts = flows.div_ceil(per_host);
    let host = b % hosts;
    let in_host = (flows - host * per_host).min(per_host);
    let rounds = in_host.div_ceil(batch);
    let j0 = ((b / hosts) % rounds) * batch;
    (host, j0, batch.min(in_host - j0))
}

/// Bursts in one pass over `flows` flows.
pub(crate) fn bursts_per_pass(flows: u64, per_host: u64, batch: u64) -> u64 {
    let per_host = per_host.max(1);
    let batch = batch.max(1);
    let hosts = flows.max(1).div_ceil(per_host);
    // The first hosts are full; the last may be partial: every host gets as many bursts as
    // the fullest needs (a partial host repeats some of its flows).
    hosts * per_host.min(flows.max(1)).div_ceil(batch)
}

fn client_for(a: &Args, user: u32) -> Client {
    let mut cfg = ClientConfig::new(&format!("sipp{user}"), &format!("pw{user}"), "upmt", a.sip);
    cfg.expires = 3600;
    Client::new(cfg, Box::new(rand::rngs::StdRng::from_entropy()))
}

fn flush(c: &mut Client, now: Instant, sip: &UdpSocket, tunnel: &UdpSocket) {
    while let Some(t) = c.poll_transmit(now) {
        // A send error is a lost datagram: the client's transaction timers retransmit.
        match t.path {
            SigPath::Udp(to) => {
                let _ = sip.send_to(&t.payload, to);
            }
            SigPath::Tunnel { .. } => {
                if let Some(f) = encode_signalling(&t.payload) {
                    let _ = tunnel.send(&f);
                }
            }
        }
    }
}

/// Associates user `user` and sets its tunnel up; returns the host with its packets built.
fn set_up(a: &Args, user: u32) -> Result<Host> {
    let sip = UdpSocket::bind((a.bind, 0)).context("SIP socket")?;
    let tunnel = UdpSocket::bind((a.bind, 0)).context("tunnel socket")?;
    tunnel.connect(a.tunnel).context("connecting the tunnel")?;
    sip.set_nonblocking(true)?;
    tunnel.set_nonblocking(true)?;
    let mut c = client_for(a, user);
    let t0 = Instant::now();
    c.associate(t0);
    let mut vipa: Option<Ipv4Addr> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now.duration_since(t0) > HOST_DEADLINE {
            bail!("sipp{user}: no tunnel within {HOST_DEADLINE:?}");
        }
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        flush(&mut c, now, &sip, &tunnel);
        while let Some(e) = c.poll_event() {
            match e {
                Event::Associated { vipa: v, .. } => {
                    vipa = Some(v);
                    c.setup_tunnel(now, 0, a.tunnel)
                        .context("tunnel setup before association")?;
                    flush(&mut c, now, &sip, &tunnel);
                }
                Event::TunnelReady { .. } => {
                    let v = vipa.context("tunnel ready before association")?;
                    let packets = (0..a.flows_per_host)
                        .flat_map(|j| {
                            inner_udp(
                                v,
                                *a.dst.ip(),
                                FIRST_PORT.wrapping_add(j as u16),
                                a.dst.port(),
                                a.size,
                            )
                        })
                        .collect();
                    tunnel.set_nonblocking(false)?;
                    return Ok(Host { tunnel, packets });
                }
                Event::AuthFailed { status } => {
                    bail!("sipp{user}: authentication refused ({status})")
                }
                Event::Rejected { status, .. } => {
                    bail!("sipp{user}: association refused ({status})")
                }
                Event::TunnelFailed { status, .. } => {
                    bail!("sipp{user}: tunnel setup failed ({status:?})")
                }
                _ => {}
            }
        }
        let wait = c
            .poll_timeout()
            .map_or(Duration::from_millis(5), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(5));
        let ready = sys::poll_readable([sip.as_fd(), tunnel.as_fd()], Some(wait))?;
        let now = Instant::now();
        if ready[0] {
            while let Ok((n, from)) = sip.recv_from(&mut buf) {
                c.handle_datagram(now, SigPath::Udp(from), &buf[..n]);
            }
        }
        if ready[1] {
            while let Ok(n) = tunnel.recv(&mut buf) {
                if let Some(m) = decode_signalling(&buf[..n]) {
                    let path = SigPath::Tunnel {
                        link: 0,
                        remote: a.tunnel,
                    };
                    c.handle_datagram(now, path, m);
                }
            }
        }
    }
}

/// Sets every host up, `parallel` at a time.
fn set_up_all(a: &Args) -> (Vec<Host>, Setup) {
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    let hosts: Mutex<Vec<(u32, Host)>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..a.parallel.clamp(1, 64) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u32;
                if i >= a.hosts {
                    break;
                }
                match set_up(a, a.first_user + i) {
                    Ok(h) => hosts.lock().unwrap_or_else(|e| e.into_inner()).push((i, h)),
                    Err(e) => errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{e:#}")),
                }
            });
        }
    });
    let mut hosts = hosts.into_inner().unwrap_or_else(|e| e.into_inner());
    hosts.sort_by_key(|(i, _)| *i);
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    let setup = Setup {
        hosts_up: hosts.len() as u32,
        failed: errors.len() as u32,
        secs: t0.elapsed().as_secs_f64(),
        first_error: errors.first().cloned(),
    };
    (hosts.into_iter().map(|(_, h)| h).collect(), setup)
}

/// Sends bursts over the first `flows` flows until `passes` passes are done or `secs` pass,
/// at most `pps` packets per second when given.
fn send(
    hosts: &[Host],
    per_host: usize,
    size: usize,
    flows: u64,
    passes: Option<u64>,
    secs: f64,
    pps: Option<f64>,
) -> Blast {
    let per_host_u = per_host as u64;
    let total = (hosts.len() as u64) * per_host_u;
    let flows = flows.clamp(1, total.max(1));
    let limit = passes.map(|p| p * bursts_per_pass(flows, per_host_u, sys::MAX_BATCH as u64));
    let t0 = Instant::now();
    let deadline = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX);
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut b = 0u64;
    let mut slices: Vec<&[u8]> = Vec::with_capacity(sys::MAX_BATCH);
    loop {
        if limit.is_some_and(|l| b >= l) {
            break;
        }
        // The clock is read once per 64 bursts (4096 packets).
        if b % 64 == 0 && limit.is_none() && t0.elapsed() >= deadline {
            break;
        }
        let (h, j0, n) = burst(b, flows, per_host_u, sys::MAX_BATCH as u64);
        b += 1;
        let Some(host) = hosts.get(h as usize) else {
            continue;
        };
        slices.clear();
        for j in j0..j0 + n {
            let at = j as usize * size;
            if let Some(p) = host.packets.get(at..at + size) {
                slices.push(p);
            }
        }
        match sys::send_each(&host.tunnel, &slices) {
            Ok(k) => sent += k as u64,
            Err(_) => errors += 1,
        }
        if let Some(r) = pps.filter(|r| *r > 0.0) {
            let due = Duration::try_from_secs_f64(sent as f64 / r).unwrap_or(Duration::MAX);
            if let Some(ahead) = due.checked_sub(t0.elapsed()) {
                if ahead > Duration::from_millis(1) {
                    std::thread::sleep(ahead);
                }
            }
        }
    }
    Blast {
        sent,
        send_errors: errors,
        secs: t0.elapsed().as_secs_f64(),
    }
}

fn reply<T: Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// `upmt-bench sim-hosts`.
pub(crate) fn main(a: &Args) -> Result<()> {
    let size = a.size.clamp(28, 1472);
    let a = Args { size, ..a.clone() };
    let (hosts, setup) = set_up_all(&a);
    reply(&setup)?;
    let per_host = a.flows_per_host as usize;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["fill", pps] => {
                let pps: f64 = pps.parse().context("fill PPS")?;
                reply(&send(
                    &hosts,
                    per_host,
                    size,
                    u64::MAX,
                    Some(1),
                    f64::MAX,
                    Some(pps),
                ))?;
            }
            ["blast", flows, secs] => {
                let flows: u64 = flows.parse().context("blast FLOWS")?;
                let secs: f64 = secs.parse().context("blast SECS")?;
                reply(&send(&hosts, per_host, size, flows, None, secs, None))?;
            }
            ["quit"] => break,
            _ => bail!("sim-hosts: unknown command {line:?}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_touches_every_flow_once() {
        for (flows, per_host) in [(1024u64, 256u64), (64, 256), (100, 32), (4096, 1024)] {
            let n = bursts_per_pass(flows, per_host, 64);
            let mut seen = std::collections::HashMap::new();
            for b in 0..n {
                let (h, j0, k) = burst(b, flows, per_host, 64);
                assert!(k >= 1 && j0 + k <= per_host, "{flows} {per_host} {b}");
                for j in j0..j0 + k {
                    *seen.entry(h * per_host + j).or_insert(0u32) += 1;
                }
            }
            assert_eq!(seen.len() as u64, flows, "{flows} {per_host}");
            assert!(seen.keys().all(|k| *k < flows));
            if flows % per_host == 0 && per_host % 64 == 0 {
                assert!(seen.values().all(|c| *c == 1), "{flows} {per_host}");
            }
        }
    }

    #[test]
    fn consecutive_bursts_change_host() {
        let hosts: Vec<u64> = (0..8).map(|b| burst(b, 4 * 256, 256, 64).0).collect();
        assert_eq!(hosts, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(burst(4, 4 * 256, 256, 64), (0, 64, 64));
        // Few flows: one host, the same burst again and again.
        assert_eq!(burst(0, 64, 1024, 64), (0, 0, 64));
        assert_eq!(burst(7, 64, 1024, 64), (0, 0, 64));
    }
}
