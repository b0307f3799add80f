//! The io_uring shard loop: one ring; multishot TUN read and multishot recvmsg with provided
//! buffer rings; sends and TUN writes straight from the buffers they were read into. One
//! `io_uring_enter` per batch submits everything queued and waits; an idle shard sleeps in it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire::offload::{self, Coalescer, Gso, Pushed, VirtioNetHdr};

use crate::engine::{hold_timeout, Held, ShardCtx, ShardMsg};
use crate::forward::{Forwarder, NetVerdict, TunVerdict};
use crate::stats::{DropReason, ShardStats};
use crate::sys::tun::VNET_HDR_LEN;
use crate::sys::uring::{parse_recv_gro, Op, Received, UringIo, OUT_BUF_LEN, OUT_MAX_SENDS};
use crate::tables::{Tunnel, TunnelSocket};

/// Most bytes one UDP GSO send may carry (the largest UDP payload over IPv4).
const GSO_MAX_BYTES: usize = 65_507;
/// Most segments one UDP GSO send may carry (the kernel's `UDP_MAX_SEGMENTS` is 128 on
/// recent kernels, 64 on older ones).
const GSO_MAX_SEGS: usize = 64;

/// Token of the shared tunnel-port socket (others are tunnel ids).
const LISTEN: u32 = u32::MAX;

struct Sock {
    fd: RawFd,
    tunnel: Option<Arc<Tunnel>>,
    armed: bool,
    removed: bool,
}

/// What one shard knows and keeps for the offloads (issue 9).
struct Offload {
    /// Offloads on (`cfg.offload`): TUN packets carry a vnet header that may be GSO.
    on: bool,
    /// Sockets whose GSO sends the kernel refused: one datagram per segment from now on.
    no_gso: hashbrown::HashSet<RawFd>,
    /// Fault injection: sockets that already got their failing GSO send.
    faulted: hashbrown::HashSet<RawFd>,
    fail_gso: bool,
    /// Per out buffer: the socket and tunnel of its sends (kept alive while in flight).
    out_dest: Vec<Option<(RawFd, Arc<Tunnel>)>>,
    /// Synchronous fallback memory (no out buffer free, or a super-packet too big for one).
    scratch: Vec<u8>,
    /// Frame ranges of one coalescer, reused.
    frames: Vec<std::ops::Range<usize>>,
    /// The TUN takes UDP super-packets (USO): UDP datagrams are coalesced too. Off for good
    /// once the TUN refuses a coalesced write.
    udp_coalesce: bool,
    /// Fault injection: UDP super-packets still to write before one goes out with a bad
    /// header (`None`: no fault).
    fail_udp_write: Option<u32>,
}

impl Offload {
    /// A TUN write failed with `-errno`: `EINVAL` means the kernel refused a header this
    /// shard wrote, and the only header it may not take is a UDP super-packet's (older
    /// kernels): UDP datagrams are written one by one from now on. Logged once, counted.
    fn on_tun_write_error(&mut self, shard: usize, errno: i32, stats: &ShardStats) {
        if errno == libc::EINVAL && self.udp_coalesce {
            tracing::warn!(shard, "TUN refused a coalesced write (EINVAL): UDP datagrams are written one by one from now on");
            self.udp_coalesce = false;
            stats.offload.fallbacks.fetch_add(1, Relaxed);
        }
    }
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
        tun_uso,
    } = ctx;
    let outs = if cfg.offload {
        cfg.offload_out_buffers
    } else {
        0
    };
    let mut io = UringIo::new(1024, cfg.buffers, cfg.buffer_size, outs)?;
    let mut off = Offload {
        on: cfg.offload,
        no_gso: hashbrown::HashSet::new(),
        faulted: hashbrown::HashSet::new(),
        fail_gso: cfg.offload_faults.fail_gso_send,
        out_dest: (0..outs).map(|_| None).collect(),
        scratch: Vec::new(),
        frames: Vec::with_capacity(offload::MAX_FRAMES),
        udp_coalesce: cfg.offload && tun_uso,
        fail_udp_write: cfg.offload_faults.fail_udp_coalesced_write.then_some(1),
    };
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
                            match prepare_tun(vnet, &mut buf[..n]) {
                                Ok(()) => fwd.on_tun(&mut buf[vnet..n], now),
                                Err(r) => TunVerdict::Drop(r),
                            }
                        }
                        _ => TunVerdict::Drop(DropReason::Malformed),
                    };
                    match verdict {
                        TunVerdict::Send(t) => send(
                            &mut io,
                            &mut off,
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
                                &mut off,
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
                    let rx = parse_recv_gro(buf, n);
                    if let Some(Received {
                        from: Some(from),
                        payload,
                        truncated: false,
                        gro: Some(g),
                    }) = &rx
                    {
                        if off.on && payload.len() > usize::from(*g) {
                            let d = Datagrams {
                                bid,
                                from: *from,
                                payload: payload.clone(),
                                size: usize::from(*g),
                                sock_fd,
                                dedicated,
                            };
                            gro_receive(&mut io, &mut off, &fwd, d, tun_fd, now);
                            continue;
                        }
                    }
                    let (verdict, range, from) = match rx.map(|r| (r.from, r.payload, r.truncated))
                    {
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
                Op::OutSend(i) => {
                    let dest = off.out_dest.get_mut(i as usize).and_then(Option::take);
                    if d.result < 0 {
                        match (-d.result, dest) {
                            // The kernel or device refuses GSO on this socket: fall back to
                            // one datagram per segment for it (these segments are lost; TCP
                            // recovers them).
                            (libc::EINVAL | libc::EIO | libc::EOPNOTSUPP, Some((fd, _)))
                                if !off.no_gso.contains(&fd) =>
                            {
                                tracing::warn!(shard = index, fd, error = %io::Error::from_raw_os_error(-d.result), "UDP GSO send refused: this socket sends one datagram per segment from now on");
                                off.no_gso.insert(fd);
                                stats.offload.fallbacks.fetch_add(1, Relaxed);
                            }
                            _ => stats.drop_packet(DropReason::SendError),
                        }
                    }
                }
                Op::OutWrite(_) => {
                    if d.result < 0 {
                        stats.drop_packet(DropReason::TunWriteError);
                        off.on_tun_write_error(index, -d.result, &stats);
                    } else {
                        stats.tun_tx.add(d.result as usize);
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
                    send(
                        &mut io,
                        &mut off,
                        &mut in_flight,
                        &listen,
                        bid,
                        s..e,
                        t,
                        &fwd.stats,
                    );
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

/// Readies a TUN read (`buf` = `[vnet header][packet]`, or the packet alone when `vnet` is
/// 0) for the forwarding decision: a single packet with a partial checksum gets it completed
/// (before any NAT rewrite, which patches complete checksums only); TCP and UDP
/// super-packets (TSO, USO) stay as they are (segmentation recomputes every checksum); UFO
/// is never enabled, so it is malformed here.
fn prepare_tun(vnet: usize, buf: &mut [u8]) -> Result<(), DropReason> {
    if vnet == 0 {
        return Ok(());
    }
    let hdr = VirtioNetHdr::parse(buf).map_err(|_| DropReason::Malformed)?;
    match hdr.gso() {
        Gso::None => match buf.get_mut(vnet..) {
            Some(p) => offload::complete_checksum(&hdr, p).map_err(|_| DropReason::Malformed),
            None => Err(DropReason::Malformed),
        },
        Gso::TcpV4 | Gso::TcpV6 | Gso::UdpL4 => Ok(()),
        _ => Err(DropReason::Malformed),
    }
}

/// What TUN buffer `bid` holds, by its vnet header: `Some(false)` a TCP super-packet (TSO),
/// `Some(true)` a UDP one (USO), `None` a single packet.
fn super_kind(io: &mut UringIo, bid: u16, vnet: usize) -> Option<bool> {
    if vnet == 0 {
        return None;
    }
    match VirtioNetHdr::parse(io.tun_buf(bid)?).ok()?.gso() {
        Gso::TcpV4 | Gso::TcpV6 => Some(false),
        Gso::UdpL4 => Some(true),
        _ => None,
    }
}

/// The socket (and destination, on the shared tunnel-port socket) a tunnel sends on.
fn destination(
    t: &Tunnel,
    listen: &Option<Arc<std::os::fd::OwnedFd>>,
) -> Option<(RawFd, Option<std::net::SocketAddr>)> {
    match &t.socket {
        // Dedicated sockets are connected to the tunnel's remote (cached route, no name).
        TunnelSocket::Dedicated(fd) => Some((fd.as_raw_fd(), None)),
        TunnelSocket::Shared => listen.as_ref().map(|l| (l.as_raw_fd(), Some(t.remote))),
    }
}

#[allow(clippy::too_many_arguments)]
fn send(
    io: &mut UringIo,
    off: &mut Offload,
    in_flight: &mut [Option<Arc<Tunnel>>],
    listen: &Option<Arc<std::os::fd::OwnedFd>>,
    bid: u16,
    range: std::ops::Range<usize>,
    t: Arc<Tunnel>,
    stats: &ShardStats,
) {
    let Some((fd, to)) = destination(&t, listen) else {
        stats.drop_packet(DropReason::NoTunnel);
        io.recycle_tun(bid);
        return;
    };
    if let Some(udp) = off.on.then(|| super_kind(io, bid, range.start)).flatten() {
        send_super(io, off, bid, range, udp, fd, to, t, stats);
        return;
    }
    let len = range.len();
    match io.send_tun_buf(bid, range, fd, to.as_ref()) {
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

/// Segments of a super-packet and where they are.
enum Segmented {
    /// In out buffer `.0`.
    Out(u16, offload::Segments),
    /// In the shard's scratch buffer.
    Scratch(offload::Segments),
}

/// TSO/USO: segments the super-packet in TUN buffer `bid` (`range` after its vnet header) into
/// an out buffer and sends the segments with UDP GSO on io_uring; with no out buffer free,
/// or more segments than one out buffer's sends carry, through the scratch buffer and a
/// synchronous send.
#[allow(clippy::too_many_arguments)]
fn send_super(
    io: &mut UringIo,
    off: &mut Offload,
    bid: u16,
    range: std::ops::Range<usize>,
    udp: bool,
    fd: RawFd,
    to: Option<std::net::SocketAddr>,
    t: Arc<Tunnel>,
    stats: &ShardStats,
) {
    let seg = |src: &[u8], dst: &mut [u8]| -> Result<offload::Segments, wire::Error> {
        let hdr = VirtioNetHdr::parse(src)?;
        let pkt = src.get(range.clone()).ok_or(wire::Error::Truncated)?;
        offload::segment(&hdr, pkt, dst)
    };
    let mut result = None;
    if let Some(o) = io.out_take() {
        match io.tun_buf_and_out(bid, o).map(|(src, dst)| seg(src, dst)) {
            Some(Ok(s)) => result = Some(Ok(Segmented::Out(o, s))),
            Some(Err(wire::Error::BufferTooSmall)) | None => io.out_release(o),
            Some(Err(e)) => {
                io.out_release(o);
                result = Some(Err(e));
            }
        }
    }
    if result.is_none() {
        result = Some(match io.tun_buf(bid) {
            Some(src) => {
                let need = VirtioNetHdr::parse(src).and_then(|h| {
                    offload::segmented_len(&h, src.get(range.clone()).unwrap_or_default())
                });
                match need {
                    Ok(need) => {
                        if off.scratch.len() < need {
                            off.scratch.resize(need, 0);
                        }
                        seg(src, &mut off.scratch).map(Segmented::Scratch)
                    }
                    Err(e) => Err(e),
                }
            }
            None => Err(wire::Error::Truncated),
        });
    }
    // The segments are copies: the TUN buffer goes back at once.
    io.recycle_tun(bid);
    let segs = match result {
        Some(Ok(s)) => s,
        _ => {
            stats.drop_packet(DropReason::Malformed);
            return;
        }
    };
    if udp {
        stats.offload.uso_in.fetch_add(1, Relaxed);
    } else {
        stats.offload.tso_in.fetch_add(1, Relaxed);
    }
    let (s, sent) = match segs {
        Segmented::Out(o, s) => {
            let sent = send_out(io, off, o, &s, fd, to, &t, stats);
            io.out_release(o);
            (s, sent)
        }
        Segmented::Scratch(s) => {
            let buf = off.scratch.get(..s.len).unwrap_or_default();
            let sent = send_sync(fd, buf, &s, to, off.no_gso.contains(&fd), stats);
            (s, sent)
        }
    };
    stats
        .offload
        .tso_segments
        .fetch_add(s.count as u64, Relaxed);
    for _ in sent..s.count {
        stats.drop_packet(DropReason::SendError);
    }
    // Bytes of the segments sent (every segment but the last is `stride` bytes).
    let bytes = if sent == s.count {
        s.len
    } else {
        sent * s.stride
    };
    stats.net_tx.add_n(sent as u64, bytes as u64);
    t.tx.add_n(sent as u64, bytes as u64);
}

/// Segments per GSO send for segments of `stride` bytes.
fn per_send(stride: usize) -> usize {
    (GSO_MAX_BYTES / stride.max(1)).clamp(1, GSO_MAX_SEGS)
}

/// Queues the segments in out buffer `o` as UDP GSO sends (or sends them synchronously when
/// this socket refused GSO or they need more sends than an out buffer has room for).
/// Returns the segments queued or sent.
#[allow(clippy::too_many_arguments)]
fn send_out(
    io: &mut UringIo,
    off: &mut Offload,
    o: u16,
    s: &offload::Segments,
    fd: RawFd,
    to: Option<std::net::SocketAddr>,
    t: &Arc<Tunnel>,
    stats: &ShardStats,
) -> usize {
    let per = per_send(s.stride);
    if off.no_gso.contains(&fd) || s.count.div_ceil(per) > OUT_MAX_SENDS {
        let no_gso = off.no_gso.contains(&fd);
        return match io.out_buf(o) {
            Some(buf) => send_sync(
                fd,
                buf.get(..s.len).unwrap_or_default(),
                s,
                to,
                no_gso,
                stats,
            ),
            None => 0,
        };
    }
    if let Some(d) = off.out_dest.get_mut(o as usize) {
        *d = Some((fd, t.clone()));
    }
    let group = per * s.stride;
    let mut start = 0;
    let mut queued = 0;
    while start < s.len.min(OUT_BUF_LEN) {
        let end = (start + group).min(s.len);
        let gso_size = if off.fail_gso && off.faulted.insert(fd) {
            8 // more segments than the kernel allows: EINVAL (fault injection)
        } else {
            s.stride as u16
        };
        if io
            .out_send(o, start..end, fd, to.as_ref(), gso_size)
            .is_err()
        {
            break;
        }
        if end - start > s.stride {
            stats.offload.gso_sends.fetch_add(1, Relaxed);
        }
        queued += (end - start).div_ceil(s.stride);
        start = end;
    }
    queued
}

/// Sends segments synchronously: UDP GSO unless the socket refused it, else one datagram per
/// segment. Returns the segments the kernel took.
fn send_sync(
    fd: RawFd,
    buf: &[u8],
    s: &offload::Segments,
    to: Option<std::net::SocketAddr>,
    no_gso: bool,
    stats: &ShardStats,
) -> usize {
    stats.syscalls.fetch_add(1, Relaxed);
    let gso = (!no_gso).then(|| per_send(s.stride));
    crate::sys::udp::send_segments(fd, buf, s.stride, to, gso).unwrap_or(0)
}

/// One `UDP_GRO` receive: several datagrams of `size` bytes back to back in net buffer `bid`.
struct Datagrams {
    bid: u16,
    from: std::net::SocketAddr,
    payload: std::ops::Range<usize>,
    size: usize,
    sock_fd: RawFd,
    dedicated: Option<crate::tables::TunnelId>,
}

/// GRO: decapsulates (and NATs) each datagram of one receive in place, coalesces the data
/// into super-packets in an out buffer and queues one TUN write per frame (with no out buffer
/// free: in the scratch buffer, written synchronously).
fn gro_receive(
    io: &mut UringIo,
    off: &mut Offload,
    fwd: &Forwarder,
    d: Datagrams,
    tun_fd: RawFd,
    now: Instant,
) {
    let stats = &fwd.stats;
    stats.offload.gro_in.fetch_add(1, Relaxed);
    let out = io.out_take();
    if out.is_none() && off.scratch.len() < OUT_BUF_LEN {
        off.scratch.resize(OUT_BUF_LEN, 0);
    }
    let mut replies: Vec<std::ops::Range<usize>> = Vec::new();
    off.frames.clear();
    // A refused synchronous TUN write (its errno), handled once the arena is given back.
    let mut refused: Option<i32> = None;
    {
        let views = match out {
            Some(o) => io.net_buf_and_out(d.bid, o),
            None => io.net_buf(d.bid).map(|b| (b, &mut off.scratch[..])),
        };
        let Some((src, arena)) = views else {
            if let Some(o) = out {
                io.out_release(o);
            }
            io.recycle_net(d.bid);
            return;
        };
        let mut coal = Coalescer::new(arena).udp(off.udp_coalesce);
        let payload = src.get_mut(d.payload.clone()).unwrap_or_default();
        let mut at = d.payload.start;
        for chunk in payload.chunks_mut(d.size) {
            stats.offload.gro_datagrams.fetch_add(1, Relaxed);
            let len = chunk.len();
            match fwd.on_net_coalesced(d.dedicated, d.from, chunk, now) {
                NetVerdict::ToTun => match coal.push(chunk) {
                    Ok(Pushed::Appended) => {
                        stats.offload.coalesced_segments.fetch_add(1, Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => stats.drop_packet(DropReason::RingFull),
                },
                NetVerdict::Reply => replies.push(at..at + len),
                NetVerdict::Consumed => {}
                NetVerdict::Drop(r) => stats.drop_packet(r),
            }
            at += len;
        }
        coal.flush();
        off.frames.extend(coal.frame_ranges());
        // Super-packets: frames whose header says GSO. Every frame is counted on its flow.
        let arena = coal.into_inner();
        for r in &off.frames {
            let Some(frame) = arena.get_mut(r.clone()) else {
                continue;
            };
            match frame.get(1).copied() {
                Some(VirtioNetHdr::GSO_NONE) | None => {}
                Some(g) => {
                    stats.offload.coalesced.fetch_add(1, Relaxed);
                    if g == VirtioNetHdr::GSO_UDP_L4 {
                        match off.fail_udp_write {
                            Some(0) => {
                                off.fail_udp_write = None;
                                if let Some(cs) = frame.get_mut(6..8) {
                                    cs.copy_from_slice(&u16::MAX.to_le_bytes());
                                }
                            }
                            Some(n) => off.fail_udp_write = Some(n - 1),
                            None => {}
                        }
                    }
                }
            }
            fwd.count_tun_frame(frame);
        }
        // Keepalive requests in the batch (its short last datagram): answered at once.
        if !replies.is_empty() {
            let msgs: Vec<(&[u8], std::net::SocketAddr)> = replies
                .iter()
                .filter_map(|r| src.get(r.clone()).map(|b| (b, d.from)))
                .collect();
            stats.syscalls.fetch_add(1, Relaxed);
            if let Ok(n) = crate::sys::poll::sendmmsg(d.sock_fd, &msgs) {
                for (b, _) in msgs.iter().take(n) {
                    stats.net_tx.add(b.len());
                }
            }
        }
        if out.is_none() {
            for r in &off.frames {
                stats.syscalls.fetch_add(1, Relaxed);
                match arena
                    .get(r.clone())
                    .map(|f| crate::sys::poll::write(tun_fd, f))
                {
                    Some(Ok(n)) => stats.tun_tx.add(n),
                    Some(Err(e)) => {
                        stats.drop_packet(DropReason::TunWriteError);
                        refused = e.raw_os_error();
                    }
                    None => stats.drop_packet(DropReason::TunWriteError),
                }
            }
        }
    }
    if let Some(errno) = refused {
        off.on_tun_write_error(fwd.shard, errno, stats);
    }
    io.recycle_net(d.bid);
    if let Some(o) = out {
        for r in off.frames.drain(..) {
            if io.out_write(o, r, tun_fd).is_err() {
                stats.drop_packet(DropReason::RingFull);
            }
        }
        io.out_release(o);
    }
}
