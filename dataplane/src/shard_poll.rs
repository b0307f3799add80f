//! The fallback shard loop (no io_uring): epoll, up to 64 TUN reads per wake-up with the sends
//! batched per socket into `sendmmsg`, `recvmmsg` of up to 64 datagrams per socket. Blocks in
//! `epoll_wait` when idle.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{hold_timeout, Held, ShardCtx, ShardMsg};
use crate::forward::{NetVerdict, TunVerdict};
use crate::stats::{DropReason, ShardStats};
use crate::sys::poll::{self, Epoll};
use crate::sys::tun::VNET_HDR_LEN;
use crate::tables::{Tunnel, TunnelSocket};

const TOK_TUN: u64 = u64::MAX;
const TOK_WAKE: u64 = u64::MAX - 1;
const TOK_LISTEN: u64 = u64::MAX - 2;
const BATCH: usize = 64;

pub(crate) fn run(ctx: ShardCtx) -> io::Result<()> {
    let ShardCtx {
        index,
        tun,
        listen,
        wake,
        msgs,
        fwd,
        cfg,
        tun_uso: _,
    } = ctx;
    let ep = Epoll::new()?;
    tracing::debug!(shard = index, "epoll shard running");
    let tun_fd = tun.as_raw_fd();
    ep.add(tun_fd, TOK_TUN)?;
    ep.add(wake.as_raw_fd(), TOK_WAKE)?;
    if let Some(l) = &listen {
        ep.add(l.as_raw_fd(), TOK_LISTEN)?;
    }
    let vnet = if cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
    let mut socks: hashbrown::HashMap<u64, Arc<Tunnel>> = hashbrown::HashMap::new();
    let mut tun_bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; cfg.buffer_size]).collect();
    let mut net_bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; cfg.buffer_size]).collect();
    let mut meta = Vec::with_capacity(BATCH);
    let mut tokens = Vec::with_capacity(64);
    let mut held: VecDeque<Held<Vec<u8>>> = VecDeque::new();
    let wait = cfg.new_flow_wait.unwrap_or(Duration::ZERO);
    let stats = fwd.stats.clone();
    let listen_fd = listen.as_ref().map(|l| l.as_raw_fd());
    let mut zero = vec![0u8; vnet];

    loop {
        let timeout_ms =
            hold_timeout(&held).map_or(-1, |d| d.as_millis().clamp(1, i32::MAX as u128) as i32);
        ep.wait(&mut tokens, 64, timeout_ms)?;
        stats.syscalls.fetch_add(1, Relaxed);
        let now = Instant::now();
        fwd.tables.tick(now);
        for &tok in &tokens {
            match tok {
                TOK_TUN => {
                    // Read a batch, decide each, send per socket with sendmmsg.
                    let mut sends: Vec<(RawFd, usize, usize, Arc<Tunnel>)> = Vec::new();
                    let mut lens = [0usize; BATCH];
                    for (i, buf) in tun_bufs.iter_mut().enumerate() {
                        let n = match poll::read(tun_fd, buf) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                            Err(e) => return Err(e),
                        };
                        stats.syscalls.fetch_add(1, Relaxed);
                        lens[i] = n;
                        if n <= vnet {
                            stats.drop_packet(DropReason::Malformed);
                            continue;
                        }
                        match fwd.on_tun(&mut buf[vnet..n], now) {
                            TunVerdict::Send(t) => match sock_fd(&t, listen_fd) {
                                Some(fd) => sends.push((fd, i, n, t)),
                                None => stats.drop_packet(DropReason::NoTunnel),
                            },
                            TunVerdict::Hold(key) if held.len() < cfg.new_flow_hold => {
                                held.push_back(Held {
                                    key,
                                    buf: buf[vnet..n].to_vec(),
                                    deadline: now + wait,
                                });
                            }
                            TunVerdict::Hold(key) => match fwd.release(&key, true) {
                                Some(TunVerdict::Send(t)) => match sock_fd(&t, listen_fd) {
                                    Some(fd) => sends.push((fd, i, n, t)),
                                    None => stats.drop_packet(DropReason::NoTunnel),
                                },
                                _ => stats.drop_packet(DropReason::HoldOverflow),
                            },
                            TunVerdict::Drop(r) => stats.drop_packet(r),
                        }
                    }
                    sends.sort_by_key(|s| s.0);
                    let mut start = 0;
                    while start < sends.len() {
                        let fd = sends[start].0;
                        let end = sends[start..]
                            .iter()
                            .position(|s| s.0 != fd)
                            .map_or(sends.len(), |p| start + p);
                        let batch: Vec<(&[u8], SocketAddr)> = sends[start..end]
                            .iter()
                            .map(|(_, i, n, t)| (&tun_bufs[*i][vnet..*n], t.remote))
                            .collect();
                        let sent = poll::sendmmsg(fd, &batch).unwrap_or(0);
                        stats.syscalls.fetch_add(1, Relaxed);
                        for (k, (_, _, n, t)) in sends[start..end].iter().enumerate() {
                            if k < sent {
                                stats.net_tx.add(n - vnet);
                                t.tx.add(n - vnet);
                            } else {
                                stats.drop_packet(DropReason::SendError);
                            }
                        }
                        start = end;
                    }
                }
                TOK_WAKE => {
                    let mut b = [0u8; 8];
                    let _ = poll::read(wake.as_raw_fd(), &mut b);
                    while let Ok(m) = msgs.try_recv() {
                        match m {
                            ShardMsg::AddSocket(t) => {
                                if let TunnelSocket::Dedicated(fd) = &t.socket {
                                    // A tunnel re-added with the same id replaces its socket.
                                    if let Some(old) = socks.remove(&(t.id as u64)) {
                                        if let TunnelSocket::Dedicated(ofd) = &old.socket {
                                            let _ = ep.remove(ofd.as_raw_fd());
                                        }
                                    }
                                    if let Err(e) = ep.add(fd.as_raw_fd(), t.id as u64) {
                                        let _ = fwd.events.try_send(
                                            crate::control::Event::TunnelError {
                                                id: Some(t.id),
                                                error: e.to_string(),
                                            },
                                        );
                                    } else {
                                        socks.insert(t.id as u64, t);
                                    }
                                }
                            }
                            ShardMsg::RemoveSocket(id) => {
                                if let Some(t) = socks.remove(&(id as u64)) {
                                    if let TunnelSocket::Dedicated(fd) = &t.socket {
                                        let _ = ep.remove(fd.as_raw_fd());
                                    }
                                }
                            }
                            ShardMsg::Recheck => {}
                            ShardMsg::Shutdown => return Ok(()),
                        }
                    }
                }
                tok => {
                    let (fd, dedicated) = if tok == TOK_LISTEN {
                        match listen_fd {
                            Some(fd) => (fd, None),
                            None => continue,
                        }
                    } else {
                        match socks.get(&tok) {
                            Some(t) => match &t.socket {
                                TunnelSocket::Dedicated(fd) => (fd.as_raw_fd(), Some(t.id)),
                                TunnelSocket::Shared => continue,
                            },
                            None => continue,
                        }
                    };
                    recv_batch(
                        fd,
                        dedicated,
                        tun_fd,
                        vnet,
                        &mut net_bufs,
                        &mut meta,
                        &fwd,
                        &stats,
                        &mut zero,
                        now,
                    )?;
                }
            }
        }
        let mut keep = VecDeque::with_capacity(held.len());
        for h in held.drain(..) {
            match fwd.release(&h.key, now >= h.deadline) {
                None => keep.push_back(h),
                Some(TunVerdict::Send(t)) => match sock_fd(&t, listen_fd) {
                    Some(fd) => {
                        if poll::sendmmsg(fd, &[(&h.buf[..], t.remote)]).unwrap_or(0) == 1 {
                            stats.net_tx.add(h.buf.len());
                            t.tx.add(h.buf.len());
                        } else {
                            stats.drop_packet(DropReason::SendError);
                        }
                    }
                    None => stats.drop_packet(DropReason::NoTunnel),
                },
                Some(_) => stats.drop_packet(DropReason::NoTunnel),
            }
        }
        held = keep;
    }
}

fn sock_fd(t: &Tunnel, listen: Option<RawFd>) -> Option<RawFd> {
    match &t.socket {
        TunnelSocket::Dedicated(fd) => Some(fd.as_raw_fd()),
        TunnelSocket::Shared => listen,
    }
}

#[allow(clippy::too_many_arguments)]
fn recv_batch(
    fd: RawFd,
    dedicated: Option<u32>,
    tun_fd: RawFd,
    vnet: usize,
    bufs: &mut [Vec<u8>],
    meta: &mut Vec<(usize, Option<SocketAddr>)>,
    fwd: &crate::forward::Forwarder,
    stats: &ShardStats,
    zero: &mut [u8],
    now: Instant,
) -> io::Result<()> {
    // Receive at offset `vnet` so the TUN write can put a zeroed vnet header in front.
    let got = match poll::recvmmsg(fd, bufs, vnet, meta) {
        Ok(n) => n,
        // Errors of one socket (ICMP-reported ECONNREFUSED, interface gone...) are consumed
        // by this call and never stop the shard.
        Err(_) => return Ok(()),
    };
    stats.syscalls.fetch_add(1, Relaxed);
    let mut replies: Vec<(usize, SocketAddr)> = Vec::new();
    for i in 0..got {
        let (n, from) = meta[i];
        let Some(from) = from else {
            stats.drop_packet(DropReason::Malformed);
            continue;
        };
        let Some(p) = bufs[i].get_mut(vnet..vnet + n) else {
            stats.drop_packet(DropReason::Malformed);
            continue;
        };
        match fwd.on_net(dedicated, from, p, now) {
            NetVerdict::ToTun => {
                bufs[i][..vnet].copy_from_slice(zero);
                stats.syscalls.fetch_add(1, Relaxed);
                match poll::write(tun_fd, &bufs[i][..vnet + n]) {
                    Ok(w) => stats.tun_tx.add(w),
                    Err(_) => stats.drop_packet(DropReason::TunWriteError),
                }
            }
            NetVerdict::Reply => replies.push((i, from)),
            NetVerdict::Consumed => {}
            NetVerdict::Drop(r) => stats.drop_packet(r),
        }
    }
    if !replies.is_empty() {
        let batch: Vec<(&[u8], SocketAddr)> = replies
            .iter()
            .map(|(i, a)| (&bufs[*i][vnet..vnet + meta[*i].0], *a))
            .collect();
        let sent = poll::sendmmsg(fd, &batch).unwrap_or(0);
        stats.syscalls.fetch_add(1, Relaxed);
        for (k, (_, _)) in replies.iter().enumerate() {
            if k < sent {
                stats.net_tx.add(meta[replies[k].0].0);
            } else {
                stats.drop_packet(DropReason::SendError);
            }
        }
    }
    Ok(())
}
