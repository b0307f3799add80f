//! Engine start/stop, the command relay thread, and what both shard backends share.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::control::{Backend, Command, EngineConfig, Event, Mode};
use crate::forward::Forwarder;
use crate::stats::{ShardStats, StatsSnapshot, TunnelSnapshot};
use crate::sys;
use crate::tables::{Tables, Tunnel, TunnelId, TunnelSocket};

/// Errors starting or stopping the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is invalid.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// io_uring was required but cannot be used.
    #[error("io_uring unavailable: {0}")]
    UringUnavailable(io::Error),
    /// Opening the TUN failed.
    #[error("opening TUN {name}: {source}")]
    Tun {
        /// Device name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// Opening the tunnel port failed.
    #[error("binding tunnel socket {addr}: {source}")]
    Socket {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// Spawning a thread failed.
    #[error("spawning thread: {0}")]
    Spawn(io::Error),
    /// A thread panicked.
    #[error("engine thread panicked")]
    Panicked,
}

/// Buffer size with offloads: a 64 KB super-packet plus the vnet header (TUN reads), or a
/// 64 KB `UDP_GRO` receive plus the recvmsg prefix (net receives).
const OFFLOAD_BUFFER_SIZE: usize = 65_536 + 1_024;

/// Messages from the relay to one shard (followed by an eventfd wake-up).
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// Start receiving on this tunnel's own socket.
    AddSocket(Arc<Tunnel>),
    /// Stop receiving on it.
    RemoveSocket(TunnelId),
    /// A flow decision arrived: re-check held packets.
    Recheck,
    /// Stop.
    Shutdown,
}

/// Everything a shard thread owns.
pub(crate) struct ShardCtx {
    pub(crate) index: usize,
    pub(crate) tun: OwnedFd,
    pub(crate) listen: Option<Arc<OwnedFd>>,
    pub(crate) wake: Arc<OwnedFd>,
    pub(crate) msgs: Receiver<ShardMsg>,
    pub(crate) fwd: Forwarder,
    pub(crate) cfg: EngineConfig,
    /// The TUN accepted USO: UDP super-packets may be written to it.
    pub(crate) tun_uso: bool,
}

struct ShardLink {
    tx: Sender<ShardMsg>,
    wake: Arc<OwnedFd>,
}

/// The relay's links to all shards. Dropping it (relay exit, or a failed start) tells every
/// spawned shard to stop, so no shard is left waiting on its ring.
struct ShardLinks(Vec<ShardLink>);

impl Drop for ShardLinks {
    fn drop(&mut self) {
        for l in &self.0 {
            l.send(ShardMsg::Shutdown);
        }
    }
}

impl ShardLink {
    fn send(&self, m: ShardMsg) {
        let _ = self.tx.send(m);
        let _ = sys::poll::eventfd_signal(self.wake.as_raw_fd());
    }
}

/// Most flows a stats snapshot lists (the count covers them all).
pub const FLOWS_LISTED: usize = 100_000;

struct Core {
    tables: Arc<Tables>,
    stats: Vec<Arc<ShardStats>>,
}

impl Core {
    fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.counters();
        s.flows = self.tables.flows(FLOWS_LISTED);
        s.flow_count = self.tables.flow_count() as u64;
        s
    }

    fn counters(&self) -> StatsSnapshot {
        StatsSnapshot {
            shards: self
                .stats
                .iter()
                .enumerate()
                .map(|(i, s)| s.snapshot(i))
                .collect(),
            tunnels: self
                .tables
                .tunnels()
                .iter()
                .map(|t| TunnelSnapshot {
                    id: t.id,
                    local: t.local,
                    remote: t.remote,
                    state: t.state(),
                    tx: t.tx.get(),
                    rx: t.rx.get(),
                })
                .collect(),
            flows: Vec::new(),
            flow_count: self.tables.flow_count() as u64,
        }
    }
}

/// What the control thread holds: the command sender, the event receiver, and direct access
/// to counters. Cheap to clone (clones share one event queue: each event goes to one of them).
#[derive(Clone)]
pub struct EngineHandle {
    /// Commands to the engine.
    pub commands: Sender<Command>,
    /// Events from the engine.
    pub events: Receiver<Event>,
    core: Arc<Core>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// A counter snapshot with up to 100 000 flows (reads the atomics directly; no round trip
    /// through the shards).
    pub fn stats(&self) -> StatsSnapshot {
        self.core.snapshot()
    }

    /// Shard and tunnel counters only (cheap enough to poll often; `flows` is empty).
    pub fn counters(&self) -> StatsSnapshot {
        self.core.counters()
    }

    /// Sends a command (error only if the engine has stopped).
    pub fn send(&self, c: Command) -> Result<(), EngineError> {
        self.commands
            .send(c)
            .map_err(|_| EngineError::Config("engine stopped".into()))
    }
}

/// A running engine. Dropping it shuts it down.
pub struct Engine {
    handle: EngineHandle,
    backend: Backend,
    relay: Option<JoinHandle<()>>,
    shards: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Engine {
    /// Opens the TUN queues (and, at the anchor, the tunnel port sockets), spawns one pinned
    /// thread per shard and the command relay thread.
    pub fn start(mut cfg: EngineConfig) -> Result<Engine, EngineError> {
        if !cfg.buffers.is_power_of_two() || cfg.buffers < 8 {
            return Err(EngineError::Config(
                "buffers must be a power of two >= 8".into(),
            ));
        }
        if cfg.buffer_size < 256 + sys::uring::RECV_PAYLOAD_OFF {
            return Err(EngineError::Config("buffer_size too small".into()));
        }
        if cfg.mode == Mode::Anchor && cfg.listen.is_none() {
            return Err(EngineError::Config(
                "anchor mode needs `listen` (the tunnel port)".into(),
            ));
        }
        let mut cores = core_affinity::get_core_ids().unwrap_or_default();
        if !cfg.cpus.is_empty() {
            cores = cfg
                .cpus
                .iter()
                .map(|cpu| {
                    cores.iter().find(|c| c.id == *cpu).copied().ok_or_else(|| {
                        EngineError::Config(format!(
                            "cpu {cpu} is not one this process may run on ({:?})",
                            cores.iter().map(|c| c.id).collect::<Vec<_>>()
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let n = if cfg.shards == 0 {
            cores.len().max(1)
        } else {
            cfg.shards
        };
        let backend = match cfg.backend {
            Backend::Poll => Backend::Poll,
            Backend::Uring => {
                sys::uring::probe().map_err(EngineError::UringUnavailable)?;
                Backend::Uring
            }
            Backend::Auto => {
                match sys::uring::probe() {
                    Ok(()) => Backend::Uring,
                    Err(e) => {
                        tracing::warn!("io_uring unavailable ({e}); using the epoll + recvmmsg/sendmmsg fallback");
                        Backend::Poll
                    }
                }
            }
        };
        let nonblocking = backend == Backend::Poll;
        if cfg.offload && backend == Backend::Poll {
            tracing::info!("offloads need the io_uring backend: running without them");
            cfg.offload = false;
        }
        if cfg.offload {
            if !cfg.offload_buffers.is_power_of_two() || cfg.offload_buffers < 8 {
                return Err(EngineError::Config(
                    "offload_buffers must be a power of two >= 8".into(),
                ));
            }
            cfg.vnet_hdr = true;
            cfg.buffers = cfg.offload_buffers;
            cfg.buffer_size = cfg.buffer_size.max(OFFLOAD_BUFFER_SIZE);
        }
        let mut tuns = Vec::with_capacity(n);
        for _ in 0..n {
            let opts = sys::tun::TunOptions {
                name: cfg.tun_name.clone(),
                vnet_hdr: cfg.vnet_hdr,
                nonblocking,
            };
            tuns.push(
                sys::tun::open_queue(&opts).map_err(|source| EngineError::Tun {
                    name: cfg.tun_name.clone(),
                    source,
                })?,
            );
        }
        // TSO and USO on the TUN (the device's features: once is enough). USO (Linux 6.2+)
        // refused: TSO alone. TSO refused too: the vnet header stays (coalesced writes still
        // work), reads are single packets. Each refusal is logged and counted.
        let mut tso = false;
        let mut uso = false;
        let mut fallbacks = 0;
        if let (true, Some(q)) = (cfg.offload, tuns.first()) {
            let tso_flags = sys::tun::TUN_F_CSUM | sys::tun::TUN_F_TSO4 | sys::tun::TUN_F_TSO6;
            let uso_flags = sys::tun::TUN_F_USO4 | sys::tun::TUN_F_USO6;
            let first = if cfg.offload_faults.refuse_tun_offload {
                // USO4 alone: EINVAL (KERNEL-NOTES), as a kernel without any would answer.
                sys::tun::set_offload(q, sys::tun::TUN_F_USO4)
            } else {
                sys::tun::set_offload(q, tso_flags | uso_flags)
            };
            match first {
                Ok(()) => {
                    tso = true;
                    uso = true;
                }
                Err(e) => {
                    fallbacks += 1;
                    let second = if cfg.offload_faults.refuse_tun_offload {
                        sys::tun::set_offload(q, sys::tun::TUN_F_USO4)
                    } else {
                        sys::tun::set_offload(q, tso_flags)
                    };
                    match second {
                        Ok(()) => {
                            tracing::warn!(tun = %cfg.tun_name, "TUN refused UDP segmentation offload ({e}): TSO only");
                            tso = true;
                        }
                        Err(e) => {
                            tracing::warn!(tun = %cfg.tun_name, "TUN refused TSO offload ({e}): segmentation offload off, coalescing stays on");
                            fallbacks += 1;
                        }
                    }
                }
            }
        }
        if let Some(q) = cfg.tun_queue_len {
            sys::tun::set_txqueuelen(&cfg.tun_name, q).map_err(|source| EngineError::Tun {
                name: cfg.tun_name.clone(),
                source,
            })?;
        }
        sys::tun::set_up(&cfg.tun_name).map_err(|source| EngineError::Tun {
            name: cfg.tun_name.clone(),
            source,
        })?;
        let mut listens = Vec::new();
        if let (Mode::Anchor, Some(addr)) = (cfg.mode, cfg.listen) {
            for _ in 0..n {
                let opts = sys::udp::UdpOptions {
                    reuseport: true,
                    buffer_bytes: cfg.socket_buffer,
                    device: None,
                    nonblocking,
                    gro: cfg.offload,
                };
                let s = sys::udp::bind_socket(addr, &opts)
                    .map_err(|source| EngineError::Socket { addr, source })?;
                if cfg.offload && !s.gro {
                    tracing::warn!(%addr, "UDP_GRO refused: datagrams are received one by one");
                }
                listens.push(Arc::new(s.fd));
            }
        }
        let tables = Arc::new(Tables::new(cfg.paft_capacity));
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(cfg.event_capacity.max(1));
        let stats: Vec<Arc<ShardStats>> = (0..n).map(|_| Arc::new(ShardStats::default())).collect();
        if let Some(s) = stats.first() {
            s.offload
                .fallbacks
                .fetch_add(fallbacks, std::sync::atomic::Ordering::Relaxed);
        }
        let mut links = ShardLinks(Vec::with_capacity(n));
        let mut shards = Vec::with_capacity(n);
        for (i, tun) in tuns.into_iter().enumerate() {
            let wake = Arc::new(sys::poll::eventfd().map_err(EngineError::Spawn)?);
            let (tx, rx) = crossbeam_channel::unbounded();
            links.0.push(ShardLink {
                tx,
                wake: wake.clone(),
            });
            let ctx = ShardCtx {
                index: i,
                tun,
                listen: listens.get(i).cloned(),
                wake,
                msgs: rx,
                fwd: Forwarder {
                    mode: cfg.mode,
                    shard: i,
                    tables: tables.clone(),
                    stats: stats[i].clone(),
                    events: ev_tx.clone(),
                    nat: cfg.nat.clone(),
                    answer_keepalives: cfg.answer_keepalives,
                    hold: cfg.mode == Mode::Mobile && cfg.new_flow_wait.is_some(),
                },
                cfg: cfg.clone(),
                tun_uso: uso,
            };
            let core = if cfg.pin_cores && !cores.is_empty() {
                cores.get(i % cores.len()).copied()
            } else {
                None
            };
            let events = ev_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("upmt-shard-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let r = match backend {
                        Backend::Poll => crate::shard_poll::run(ctx),
                        _ => crate::shard_uring::run(ctx),
                    };
                    if let Err(e) = r {
                        tracing::error!("shard {i} stopped: {e}");
                        let _ = events.try_send(Event::ShardFailed {
                            shard: i,
                            error: e.to_string(),
                        });
                    }
                })
                .map_err(EngineError::Spawn)?;
            shards.push(h);
        }
        let core = Arc::new(Core {
            tables: tables.clone(),
            stats,
        });
        let relay = Relay {
            tables,
            links,
            listens,
            events: ev_tx,
            cfg: cfg.clone(),
            core: core.clone(),
            nonblocking,
        };
        let relay = std::thread::Builder::new()
            .name("upmt-dp-control".into())
            .spawn(move || relay.run(cmd_rx))
            .map_err(EngineError::Spawn)?;
        tracing::info!(shards = n, ?backend, mode = ?cfg.mode, tun = %cfg.tun_name, offload = cfg.offload, tso, uso, "data plane started");
        Ok(Engine {
            handle: EngineHandle {
                commands: cmd_tx,
                events: ev_rx,
                core,
            },
            backend,
            relay: Some(relay),
            shards,
        })
    }

    /// The handle for the control thread.
    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    /// The backend in use (`Uring` or `Poll`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Stops the engine: cancels in-flight io_uring requests, joins the threads, closes the
    /// TUN queues and sockets.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), EngineError> {
        let _ = self.handle.commands.send(Command::Shutdown);
        let mut panicked = false;
        if let Some(r) = self.relay.take() {
            panicked |= r.join().is_err();
        }
        for s in self.shards.drain(..) {
            panicked |= s.join().is_err();
        }
        if panicked {
            Err(EngineError::Panicked)
        } else {
            Ok(())
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

struct Relay {
    tables: Arc<Tables>,
    links: ShardLinks,
    listens: Vec<Arc<OwnedFd>>,
    events: Sender<Event>,
    cfg: EngineConfig,
    core: Arc<Core>,
    nonblocking: bool,
}

impl Relay {
    fn run(self, cmds: Receiver<Command>) {
        while let Ok(c) = cmds.recv() {
            if matches!(c, Command::Shutdown) {
                break;
            }
            let name = format!("{c:?}").chars().take(80).collect::<String>();
            if let Err(e) = self.apply(c) {
                let _ = self.events.try_send(Event::CommandFailed {
                    command: name,
                    error: e.to_string(),
                });
            }
        }
        // Dropping `self.links` (end of this function) stops the shards.
    }

    fn recheck(&self) {
        if self.cfg.new_flow_wait.is_some() {
            for l in &self.links.0 {
                l.send(ShardMsg::Recheck);
            }
        }
    }

    fn apply(&self, c: Command) -> io::Result<()> {
        match c {
            Command::AddTunnel {
                id,
                local,
                device,
                remote,
            } => {
                let opts = sys::udp::UdpOptions {
                    reuseport: false,
                    buffer_bytes: self.cfg.socket_buffer,
                    device,
                    nonblocking: self.nonblocking,
                    gro: self.cfg.offload,
                };
                let s = sys::udp::bind_socket(local, &opts)?;
                if self.cfg.offload && !s.gro {
                    tracing::warn!(%local, "UDP_GRO refused: datagrams are received one by one");
                }
                let fd = s.fd;
                sys::udp::connect(&fd, remote)?;
                let bound = sys::udp::local_addr(&fd)?;
                let t = self.tables.add_tunnel(Tunnel::new(
                    id,
                    TunnelSocket::Dedicated(fd),
                    bound,
                    remote,
                ));
                if let Some(l) = self.links.0.get(id as usize % self.links.0.len().max(1)) {
                    l.send(ShardMsg::AddSocket(t));
                }
                let _ = self
                    .events
                    .try_send(Event::TunnelAdded { id, local: bound });
            }
            Command::AddPeerTunnel { id, remote } => {
                let local = self
                    .cfg
                    .listen
                    .ok_or_else(|| io::Error::other("no tunnel port (mobile mode?)"))?;
                self.tables
                    .add_tunnel(Tunnel::new(id, TunnelSocket::Shared, local, remote));
                let _ = self.events.try_send(Event::TunnelAdded { id, local });
            }
            Command::RemoveTunnel { id } => {
                if let Some(t) = self.tables.remove_tunnel(id) {
                    if matches!(t.socket, TunnelSocket::Dedicated(_)) {
                        if let Some(l) = self.links.0.get(id as usize % self.links.0.len().max(1)) {
                            l.send(ShardMsg::RemoveSocket(id));
                        }
                    }
                }
            }
            Command::SetTunnelState { id, state } => {
                self.tables
                    .tunnel(id)
                    .ok_or_else(|| io::Error::other("no such tunnel"))?
                    .set_state(state);
            }
            Command::SetFlow { key, tunnel } => {
                self.tables.set_flow(key, tunnel);
                self.recheck();
            }
            Command::SetFlows(v) => {
                for (k, t) in v {
                    self.tables.set_flow(k, t);
                }
                self.recheck();
            }
            Command::MoveFlows { from, to } => self.tables.move_flows(from, to),
            Command::RemoveFlow(k) => self.tables.remove_flow(&k),
            Command::ExpireFlows(idle) => {
                self.tables.tick(std::time::Instant::now());
                let gone = self.tables.expire_flows(idle);
                let _ = self.events.try_send(Event::FlowsExpired(gone));
            }
            Command::SetDefault(t) => {
                self.tables.set_default(t);
                self.recheck();
            }
            Command::BindHost {
                host,
                vipa,
                tunnels,
            } => self.tables.bind_host(host, vipa, tunnels),
            Command::UnbindHost(h) => self.tables.unbind_host(h),
            Command::SendControl { tunnel, frame } => {
                let t = self
                    .tables
                    .tunnel(tunnel)
                    .ok_or_else(|| io::Error::other("no such tunnel"))?;
                let fd = match &t.socket {
                    TunnelSocket::Dedicated(fd) => fd,
                    TunnelSocket::Shared => self
                        .listens
                        .first()
                        .map(|a| &**a)
                        .ok_or_else(|| io::Error::other("no tunnel port"))?,
                };
                sys::udp::send_to(fd, &frame, t.remote)?;
                t.tx.add(frame.len());
            }
            Command::SendControlTo { remote, frame } => {
                let fd = self
                    .listens
                    .first()
                    .ok_or_else(|| io::Error::other("no tunnel port"))?;
                sys::udp::send_to(fd, &frame, remote)?;
            }
            Command::Stats(tx) => {
                let _ = tx.send(self.core.snapshot());
            }
            Command::Shutdown => {}
        }
        Ok(())
    }
}

/// A packet held while its flow waits for the control side (mobile host).
#[derive(Debug)]
pub(crate) struct Held<B> {
    pub(crate) key: crate::FlowKey,
    pub(crate) buf: B,
    pub(crate) deadline: std::time::Instant,
}

/// How long to wait at most: until the earliest held deadline.
pub(crate) fn hold_timeout<B>(held: &std::collections::VecDeque<Held<B>>) -> Option<Duration> {
    held.front().map(|h| {
        h.deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_micros(100))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_the_process_cannot_use_is_refused_before_any_device_is_made() {
        let mut cfg = EngineConfig::new(Mode::Mobile, "upmt-nodev0");
        cfg.cpus = vec![100_000];
        match Engine::start(cfg) {
            Err(EngineError::Config(m)) => assert!(m.contains("cpu 100000"), "{m}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}
