//! The io_uring shard loop: one ring; multishot TUN read and multishot recvmsg with provided
//! buffer rings; sends and TUN writes straight from the buffers they were read into. One
//! `io_uring_enter` per batch submits everything queued and waits; an idle shard sleeps in it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{hold_timeout, Held, ShardCtx, ShardMsg};
use crate::forward::{NetVerdict, TunVerdict};
use crate::stats::DropReason;
use crate::sys::tun::VNET_HDR_LEN;
use crate::sys::uring::{parse_recv, Op, UringIo};
use crate::tables::{Tunnel, TunnelSocket};

/// Token of the shared tunnel-port socket (others are tunnel ids).
const LISTEN: u32 = u32::MAX;

struct Sock {
    fd: RawFd,
    tunnel: Option<Arc<Tunnel>>,
    armed: bool,
    removed: bool,
}

pub(crate) fn run(ctx: ShardCtx) -> io::Result<()> {
    let ShardCtx {
        index,
        tun,
        listen,
        wake,
        msgs,
        fwd,
        cfg,
    } = ctx;
    let mut io = UringIo::new(1024, cfg.buffers, cfg.buffer_size)?;
    tracing::debug!(shard = index, "io_uring shard running");
    let tun_fd = tun.as_raw_fd();
    let wake_fd = wake.as_raw_fd();
    let vnet = if cfg.vnet_hdr { VNET_HDR_LEN } else { 0 };
    let mut socks: hashbrown::HashMap<u32, Sock> = hashbrown::HashMap::new();
    let mut by_tunnel: hashbrown::HashMap<u32, u32> = hashbrown::HashMap::new();
    let mut next_token: u32 = 0;
    if let Some(l) = &listen {
        socks.insert(
            LISTEN,
            Sock {
                fd: l.as_raw_fd(),
                tunnel: None,
                armed: false,
                removed: false,
            },
        );
    }
    // Keeps a tunnel (and its socket) alive while a send from TUN slot `i` is in flight.
    let mut in_flight: Vec<Option<Arc<Tunnel>>> = (0..cfg.buffers).map(|_| None).collect();
    let mut held: VecDeque<Held<(u16, usize, usize)>> = VecDeque::new();
    let wait = cfg.new_flow_wait.unwrap_or(Duration::ZERO);
    let mut tun_armed = false;
    let mut wake_armed = false;
    let mut stopping: Option<Instant> = None;
    let mut done = Vec::with_capacity(256);
    let stats = fwd.stats.clone();

    loop {
        // (Re-)arm what needs it, when buffers allow (never spin on an empty ring).
        if stopping.is_none() {
            if !tun_armed && io.tun_available() > 0 {
                io.arm_tun_read(tun_fd)?;
                tun_armed = true;
            }
            for (tok, s) in socks.iter_mut() {
                if !s.armed && !s.removed && io.net_available() > 0 {
                    io.arm_recv(s.fd, *tok)?;
                    s.armed = true;
                }
            }
            if !wake_armed {
                io.arm_wake(wake_fd)?;
                wake_armed = true;
            }
        } else if io.in_flight() == 0
            && !tun_armed
            && !wake_armed
            && socks.values().all(|s| !s.armed)
        {
            break;
        } else if stopping.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            tracing::warn!("shard: requests still armed 2 s after cancel; closing anyway");
            break;
        }
        let timeout = if stopping.is_some() {
            Some(Duration::from_millis(50))
        } else {
            hold_timeout(&held)
        };
        io.wait(timeout)?;
        stats.syscalls.fetch_add(1, Relaxed);
        io.completions(&mut done);
        let now = Instant::now();
        fwd.tables.tick(now);
        for d in done.drain(..) {
            match d.op {
                Op::TunRead => {
                    if !d.more {
                        tun_armed = false;
                    }
                    if d.result < 0 {
                        if let Some(b) = d.buffer {
                            io.recycle_tun(b);
                        }
                        // ENOBUFS: the ring ran dry, re-armed once buffers come back.
                        // ECANCELED: shutdown. Anything else would repeat forever: stop.
                        if !transient(d.result) {
                            return Err(io::Error::from_raw_os_error(-d.result));
                        }
                        continue;
                    }
                    let Some(bid) = d.buffer else { continue };
                    let n = d.result as usize;
                    let verdict = match io.tun_buf(bid) {
                        Some(buf) if n > vnet && n <= buf.len() => {
                            fwd.on_tun(&mut buf[vnet..n], now)
                        }
                        _ => TunVerdict::Drop(DropReason::Malformed),
                    };
                    match verdict {
                        TunVerdict::Send(t) => send(
                            &mut io,
                            &mut in_flight,
                            &listen,
                            bid,
                            vnet..n,
                            t,
                            &fwd.stats,
                        ),
                        TunVerdict::Hold(key) if held.len() < cfg.new_flow_hold => {
                            held.push_back(Held {
                                key,
                                buf: (bid, vnet, n),
                                deadline: now + wait,
                            });
                        }
                        TunVerdict::Hold(key) => match fwd.release(&key, true) {
                            Some(TunVerdict::Send(t)) => send(
                                &mut io,
                                &mut in_flight,
                                &listen,
                                bid,
                                vnet..n,
                                t,
                                &fwd.stats,
                            ),
                            _ => {
                                stats.drop_packet(DropReason::HoldOverflow);
                                io.recycle_tun(bid);
                            }
                        },
                        TunVerdict::Drop(r) => {
                            stats.drop_packet(r);
                            io.recycle_tun(bid);
                        }
                    }
                }
                Op::NetRecv(tok) => {
                    let Some(sock) = socks.get_mut(&tok) else {
                        if let Some(b) = d.buffer {
                            io.recycle_net(b);
                        }
                        continue;
                    };
                    if !d.more {
                        sock.armed = false;
                    }
                    let sock_fd = sock.fd;
                    let dedicated = sock.tunnel.as_ref().map(|t| t.id);
                    if d.result < 0 {
                        if let Some(b) = d.buffer {
                            io.recycle_net(b);
                        }
                        // Errors of one tunnel socket (ICMP-reported ECONNREFUSED on a
                        // connected socket, interface gone...) never stop the shard: transient
                        // ones re-arm; others retire that socket and tell the control thread.
                        if !transient(d.result) && !socket_transient(d.result) {
                            sock.removed = true;
                            let error = io::Error::from_raw_os_error(-d.result).to_string();
                            let _ = fwd.events.try_send(crate::control::Event::TunnelError {
                                id: dedicated,
                                error,
                            });
                        }
                        continue;
                    }
                    let Some(bid) = d.buffer else { continue };
                    let n = d.result as usize;
                    let Some(buf) = io.net_buf(bid) else { continue };
                    let (verdict, range, from) = match parse_recv(buf, n) {
                        Some((Some(from), range, false)) => {
                            let v = match buf.get_mut(range.clone()) {
                                Some(p) => fwd.on_net(dedicated, from, p, now),
                                None => NetVerdict::Drop(DropReason::Malformed),
                            };
                            (v, range, Some(from))
                        }
                        _ => (NetVerdict::Drop(DropReason::Malformed), 0..0, None),
                    };
                    match (verdict, from) {
                        (NetVerdict::ToTun, _) => {
                            // The recvmsg prefix before the payload is our headroom for the vnet header.
                            let start = range.start - vnet;
                            if let Some(h) = buf.get_mut(start..range.start) {
                                h.fill(0);
                            }
                            if io.write_net_buf(bid, start..range.end, tun_fd).is_err() {
                                stats.drop_packet(DropReason::RingFull);
                                io.recycle_net(bid);
                            }
                        }
                        (NetVerdict::Reply, Some(from)) => {
                            let len = range.len();
                            if io.send_net_buf(bid, range, sock_fd, &from).is_ok() {
                                stats.net_tx.add(len);
                            } else {
                                stats.drop_packet(DropReason::RingFull);
                                io.recycle_net(bid);
                            }
                        }
                        (NetVerdict::Drop(r), _) => {
                            stats.drop_packet(r);
                            io.recycle_net(bid);
                        }
                        _ => io.recycle_net(bid),
                    }
                }
                Op::SendFromTun(bid) => {
                    if d.result < 0 {
                        stats.drop_packet(DropReason::SendError);
                    }
                    if let Some(s) = in_flight.get_mut(bid as usize) {
                        *s = None;
                    }
                    io.recycle_tun(bid);
                }
                Op::SendFromNet(bid) => {
                    if d.result < 0 {
                        stats.drop_packet(DropReason::SendError);
                    }
                    io.recycle_net(bid);
                }
                Op::TunWrite(bid) => {
                    if d.result < 0 {
                        stats.drop_packet(DropReason::TunWriteError);
                    } else {
                        stats.tun_tx.add(d.result as usize);
                    }
                    io.recycle_net(bid);
                }
                Op::Wake => {
                    wake_armed = false;
                    while let Ok(m) = msgs.try_recv() {
                        match m {
                            ShardMsg::AddSocket(t) => {
                                if let TunnelSocket::Dedicated(fd) = &t.socket {
                                    // A tunnel re-added with the same id replaces its socket.
                                    if let Some(old) = by_tunnel.remove(&t.id) {
                                        retire(&mut io, &mut socks, old)?;
                                    }
                                    let fd = fd.as_raw_fd();
                                    // Tokens are per socket instance, never reused while the
                                    // ring may still report on an older one.
                                    next_token = next_token.wrapping_add(1) % LISTEN;
                                    by_tunnel.insert(t.id, next_token);
                                    socks.insert(
                                        next_token,
                                        Sock {
                                            fd,
                                            tunnel: Some(t),
                                            armed: false,
                                            removed: false,
                                        },
                                    );
                                }
                            }
                            ShardMsg::RemoveSocket(id) => {
                                if let Some(tok) = by_tunnel.remove(&id) {
                                    retire(&mut io, &mut socks, tok)?;
                                }
                            }
                            ShardMsg::Recheck => {}
                            ShardMsg::Shutdown => {
                                if stopping.is_none() {
                                    stopping = Some(Instant::now());
                                    io.cancel(tun_fd)?;
                                    for s in socks.values().filter(|s| s.armed) {
                                        io.cancel(s.fd)?;
                                    }
                                }
                            }
                        }
                    }
                    if stopping.is_some() {
                        // Do not re-arm: the final state needs the wake read ended.
                    }
                }
                Op::Cancel | Op::Unknown => {}
            }
        }
        // Sockets removed and no longer armed: drop them (closes the fd when last ref goes).
        socks.retain(|_, s| !s.removed || s.armed);
        // Held packets: release decided ones and timed out ones, in order.
        let mut keep = VecDeque::with_capacity(held.len());
        for h in held.drain(..) {
            let timed_out = now >= h.deadline || stopping.is_some();
            match fwd.release(&h.key, timed_out) {
                None => keep.push_back(h),
                Some(TunVerdict::Send(t)) => {
                    let (bid, s, e) = h.buf;
                    send(&mut io, &mut in_flight, &listen, bid, s..e, t, &fwd.stats);
                }
                Some(_) => {
                    stats.drop_packet(DropReason::NoTunnel);
                    io.recycle_tun(h.buf.0);
                }
            }
        }
        held = keep;
        io.commit();
        if io.slot_errors > 0 {
            tracing::error!(errors = io.slot_errors, "buffer slot ownership violations");
            io.slot_errors = 0;
        }
    }
    Ok(())
}

/// Completion errors after which re-arming makes sense.
/// Stops receiving on socket `tok` (cancel if armed); it leaves `socks` once its request ended.
fn retire(io: &mut UringIo, socks: &mut hashbrown::HashMap<u32, Sock>, tok: u32) -> io::Result<()> {
    if let Some(s) = socks.get_mut(&tok) {
        s.removed = true;
        if s.armed {
            io.cancel(s.fd)?;
        }
    }
    Ok(())
}

/// Receive errors a UDP socket reports from ICMP or link changes, after which it still works.
fn socket_transient(res: i32) -> bool {
    matches!(
        -res,
        libc::ECONNREFUSED
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::ETIMEDOUT
            | libc::EMSGSIZE
            | libc::EPROTO
    )
}

fn transient(res: i32) -> bool {
    matches!(
        -res,
        libc::ENOBUFS | libc::ECANCELED | libc::EINTR | libc::EAGAIN
    )
}

fn send(
    io: &mut UringIo,
    in_flight: &mut [Option<Arc<Tunnel>>],
    listen: &Option<Arc<std::os::fd::OwnedFd>>,
    bid: u16,
    range: std::ops::Range<usize>,
    t: Arc<Tunnel>,
    stats: &crate::stats::ShardStats,
) {
    // Dedicated sockets are connected to the tunnel's remote (cached route, no name).
    let (fd, to) = match &t.socket {
        TunnelSocket::Dedicated(fd) => (fd.as_raw_fd(), None),
        TunnelSocket::Shared => match listen {
            Some(l) => (l.as_raw_fd(), Some(&t.remote)),
            None => {
                stats.drop_packet(DropReason::NoTunnel);
                io.recycle_tun(bid);
                return;
            }
        },
    };
    let len = range.len();
    match io.send_tun_buf(bid, range, fd, to) {
        Ok(()) => {
            stats.net_tx.add(len);
            t.tx.add(len);
            if let Some(s) = in_flight.get_mut(bid as usize) {
                *s = Some(t);
            }
        }
        Err(_) => {
            stats.drop_packet(DropReason::RingFull);
            io.recycle_tun(bid);
        }
    }
}
