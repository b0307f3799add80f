//! The interface between the control thread (signalling, policy) and the shards: the engine
//! configuration, [`Command`]s in, [`Event`]s out, and the [`NatHook`] the anchor plugs in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::pkt::ControlKind;
use crate::stats::{DropReason, StatsSnapshot};
use crate::tables::{HostId, TunnelId, TunnelState};

pub use crate::nat_adapter::Napt;
use crate::FlowKey;

/// Which side of UPMT this engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mobile host: TUN -> PAFT -> tunnel socket; tunnel -> TUN.
    Mobile,
    /// Anchor node: tunnel -> check -> NAT -> TUN; TUN -> NAT reverse -> PAFT -> tunnel.
    Anchor,
}

/// I/O backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring if it can be set up, else the fallback (one log line says which).
    Auto,
    /// io_uring only (error if unavailable).
    Uring,
    /// epoll + batched recvmmsg/sendmmsg, TUN read/write loops.
    Poll,
}

/// Engine configuration.
#[derive(Clone)]
pub struct EngineConfig {
    /// Mode.
    pub mode: Mode,
    /// TUN device name (created if absent; one queue per shard).
    pub tun_name: String,
    /// Number of shards; 0 = one per CPU of `cpus` (one per core when `cpus` is empty).
    pub shards: usize,
    /// Pin shard threads: shard `i` to `cpus[i % cpus.len()]`, or to core `i % cores` when
    /// `cpus` is empty.
    pub pin_cores: bool,
    /// The CPUs (ids as the kernel numbers them) shards run on. Two engines on one machine
    /// (a test bed, or two daemons) give them different ones.
    pub cpus: Vec<usize>,
    /// I/O backend.
    pub backend: Backend,
    /// Anchor: the tunnel port address (one `SO_REUSEPORT` socket per shard). Mobile: unused.
    pub listen: Option<SocketAddr>,
    /// `SO_RCVBUF`/`SO_SNDBUF` of tunnel sockets.
    pub socket_buffer: usize,
    /// Buffers per buffer ring (power of two); each shard has two rings (TUN, net).
    pub buffers: u16,
    /// Size of each buffer (>= TUN MTU + 108 bytes of recvmsg prefix).
    pub buffer_size: usize,
    /// TUN transmit queue length (packets the kernel queues for the engine before dropping;
    /// the kernel default of 500 overflows when a shard is scheduled late). `None`: leave it.
    pub tun_queue_len: Option<u32>,
    /// Open the TUN with `IFF_VNET_HDR` (each packet carries a 10-byte virtio_net_hdr, which
    /// the engine skips on read and writes zeroed on write). Default off.
    pub vnet_hdr: bool,
    /// Offloads (issue 9): the TUN opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD CSUM | TSO4
    /// | TSO6`, so TCP senders hand the engine 64 KB super-packets; those are segmented in
    /// user space (`wire::offload::segment`) and sent with one `UDP_SEGMENT` (UDP GSO)
    /// `sendmsg` on io_uring; tunnel sockets receive with `UDP_GRO`, and the datagrams of one
    /// receive are decapsulated, NATed and coalesced (`wire::offload::Coalescer`) into
    /// super-packets for one TUN write each. Every part falls back on its own when the kernel
    /// refuses it (logged once, counted in `offload_fallbacks`). io_uring backend only: with
    /// the fallback backend it is off. Implies `vnet_hdr`. Default off here; `upmt` turns it
    /// on.
    pub offload: bool,
    /// Buffers per buffer ring when `offload` is on (power of two; each buffer holds a 64 KB
    /// super-packet, so the default `buffers` would cost too much memory).
    pub offload_buffers: u16,
    /// Out buffers per shard when `offload` is on (128 KB each: segmentation output and
    /// coalescing arenas while their sends and writes are in flight).
    pub offload_out_buffers: u16,
    /// Fault injection for the offload fallback tests.
    pub offload_faults: OffloadFaults,
    /// Mobile: how long the first packets of a new flow wait for the control side's
    /// `SetFlow` before following the default rule. `None`: no wait.
    pub new_flow_wait: Option<Duration>,
    /// Mobile: at most this many packets held per shard while waiting.
    pub new_flow_hold: usize,
    /// Answer keepalive requests in the data plane (true at the anchor).
    pub answer_keepalives: bool,
    /// PAFT capacity (flows); beyond it new flows follow the default / are not learned.
    pub paft_capacity: usize,
    /// Events channel capacity (events are dropped and counted when full).
    pub event_capacity: usize,
    /// NAT at the anchor. [`KernelNat`] (identity: the kernel masquerades) by default.
    pub nat: Arc<dyn NatHook>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("mode", &self.mode)
            .field("tun_name", &self.tun_name)
            .field("shards", &self.shards)
            .field("backend", &self.backend)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    /// Defaults for `mode` on TUN `tun_name`.
    pub fn new(mode: Mode, tun_name: &str) -> EngineConfig {
        EngineConfig {
            mode,
            tun_name: tun_name.to_string(),
            shards: 0,
            pin_cores: true,
            cpus: Vec::new(),
            backend: Backend::Auto,
            listen: None,
            socket_buffer: 4 << 20,
            buffers: 1024,
            tun_queue_len: Some(4096),
            buffer_size: 2048,
            vnet_hdr: false,
            offload: false,
            offload_buffers: 128,
            offload_out_buffers: 32,
            offload_faults: OffloadFaults::default(),
            new_flow_wait: None,
            new_flow_hold: 64,
            answer_keepalives: mode == Mode::Anchor,
            paft_capacity: 1 << 20,
            event_capacity: 4096,
            nat: Arc::new(KernelNat),
        }
    }
}

/// Makes the kernel refuse offloads, to exercise the fallbacks with real errors (tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadFaults {
    /// Ask `TUNSETOFFLOAD` for an invalid flag set first (`USO4` alone: `EINVAL`), so the
    /// engine runs with the vnet header but without TSO.
    pub refuse_tun_offload: bool,
    /// Make the first UDP GSO send of each socket ask for segments of 8 bytes, which the
    /// kernel refuses (`EINVAL`: more than its segment limit), so that socket falls back to
    /// one datagram per segment.
    pub fail_gso_send: bool,
    /// Write each shard's second UDP super-packet to the TUN with a `csum_start` past its
    /// end, which the kernel refuses (`EINVAL`), so that shard writes UDP datagrams one by
    /// one from then on (the datagrams of that write are lost, as with any refused write).
    /// The second, so that a test sees a coalesced write succeed first.
    pub fail_udp_coalesced_write: bool,
}

/// The anchor's NAT, called in place on the per-packet path (must not block or lock).
pub trait NatHook: Send + Sync + 'static {
    /// Host -> Internet, after decapsulation and the spoof check: rewrite the source
    /// (VIPA:port -> public:port) in place.
    fn outbound(
        &self,
        host_vipa: IpAddr,
        packet: &mut [u8],
        now: Instant,
    ) -> Result<(), DropReason>;
    /// Internet -> host, read from the TUN: rewrite the destination back to VIPA:port.
    fn inbound(&self, packet: &mut [u8], now: Instant) -> Result<(), DropReason>;
}

/// Identity NAT: the kernel masquerades (nftables) the VIPA-sourced packets written to the TUN.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelNat;

impl NatHook for KernelNat {
    fn outbound(
        &self,
        _host_vipa: IpAddr,
        _packet: &mut [u8],
        _now: Instant,
    ) -> Result<(), DropReason> {
        Ok(())
    }
    fn inbound(&self, _packet: &mut [u8], _now: Instant) -> Result<(), DropReason> {
        Ok(())
    }
}

/// Commands from the control thread.
#[derive(Debug)]
pub enum Command {
    /// Mobile: a tunnel with its own socket bound to `local` (port 0: any), optionally to
    /// `device` (`SO_BINDTODEVICE`), towards `remote` (the anchor). Answered by
    /// [`Event::TunnelAdded`] (with the bound address) or [`Event::CommandFailed`].
    AddTunnel {
        /// Tunnel id.
        id: TunnelId,
        /// Local bind address.
        local: SocketAddr,
        /// Interface to bind to.
        device: Option<String>,
        /// Anchor address.
        remote: SocketAddr,
    },
    /// Anchor: a tunnel on the shared tunnel port towards `remote` (the host's address as seen).
    AddPeerTunnel {
        /// Tunnel id.
        id: TunnelId,
        /// The host's outer address.
        remote: SocketAddr,
    },
    /// Removes a tunnel; its flows fall back to the default rule.
    RemoveTunnel {
        /// Tunnel id.
        id: TunnelId,
    },
    /// Changes a tunnel's state (`Draining`: nothing new sent on it).
    SetTunnelState {
        /// Tunnel id.
        id: TunnelId,
        /// New state.
        state: TunnelState,
    },
    /// Puts one flow on a tunnel (`None`: the default rule). Takes effect on its next packet.
    SetFlow {
        /// The flow, host-outbound orientation (src = VIPA).
        key: FlowKey,
        /// Tunnel or default.
        tunnel: Option<TunnelId>,
    },
    /// Same for a set of flows (handover).
    SetFlows(Vec<(FlowKey, Option<TunnelId>)>),
    /// Moves every flow currently on `from` (or every flow, if `None`) to `to`.
    MoveFlows {
        /// Source tunnel, or all flows.
        from: Option<TunnelId>,
        /// Target tunnel.
        to: TunnelId,
    },
    /// Forgets a flow.
    RemoveFlow(FlowKey),
    /// Removes flows idle longer than this (1 s resolution); answered by
    /// [`Event::FlowsExpired`]. The control thread calls it periodically.
    ExpireFlows(Duration),
    /// The default rule: tunnel for flows without an entry (`None`: drop them).
    SetDefault(Option<TunnelId>),
    /// Anchor: host `host` has VIPA `vipa` and these tunnels.
    BindHost {
        /// Host id.
        host: HostId,
        /// Its VIPA.
        vipa: IpAddr,
        /// Its tunnels.
        tunnels: Vec<TunnelId>,
    },
    /// Anchor: forget a host (and its flows).
    UnbindHost(HostId),
    /// Sends a control frame (full tunnel payload, e.g. from [`crate::control_frame`]) in a tunnel.
    SendControl {
        /// Tunnel id.
        tunnel: TunnelId,
        /// Payload.
        frame: Vec<u8>,
    },
    /// Anchor: sends a control frame from the tunnel port to an address with no tunnel yet
    /// (tunnel setup answer).
    SendControlTo {
        /// Destination.
        remote: SocketAddr,
        /// Payload.
        frame: Vec<u8>,
    },
    /// Replies with a stats snapshot.
    Stats(Sender<StatsSnapshot>),
    /// Stops the engine (cancels in-flight requests, closes the TUN queues).
    Shutdown,
}

/// Events to the control thread.
#[derive(Debug, Clone)]
pub enum Event {
    /// Mobile: first packet of a flow with no entry (one event per flow).
    NewFlow {
        /// The flow.
        key: FlowKey,
        /// Seen by this shard.
        shard: usize,
    },
    /// A control frame arrived inside a tunnel (never written to the TUN).
    ControlFrame {
        /// The tunnel it came in on, if known.
        tunnel: Option<TunnelId>,
        /// Outer source address.
        from: SocketAddr,
        /// Kind.
        kind: ControlKind,
        /// Body (after the 4-byte control header).
        body: Vec<u8>,
        /// When the data plane received it.
        received: Instant,
    },
    /// A tunnel was added (with the local address its socket bound to).
    TunnelAdded {
        /// Tunnel id.
        id: TunnelId,
        /// Bound local address.
        local: SocketAddr,
    },
    /// A command could not be carried out.
    CommandFailed {
        /// Which command.
        command: String,
        /// Why.
        error: String,
    },
    /// Flows removed by [`Command::ExpireFlows`].
    FlowsExpired(Vec<FlowKey>),
    /// Receiving on a tunnel's socket failed for good; the data plane stopped listening on
    /// it (`id` is `None` for the anchor's shared tunnel port).
    TunnelError {
        /// Tunnel id (dedicated socket), or `None`.
        id: Option<TunnelId>,
        /// Error.
        error: String,
    },
    /// A shard stopped on an I/O error.
    ShardFailed {
        /// Shard index.
        shard: usize,
        /// Error.
        error: String,
    },
}
