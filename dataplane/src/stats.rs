//! Counters: per shard, per tunnel and per flow, all relaxed atomics (no per-packet locks or
//! logs), read as a [`StatsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a packet was dropped. Every drop on the data path is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Not a valid IP packet / tunnel payload (bad first byte, truncated, bad header).
    Malformed = 0,
    /// No tunnel for the packet (no PAFT entry, no default, unknown host) or unknown source.
    NoTunnel,
    /// Data from a tunnel whose inner source is not that host's VIPA.
    SpoofedSource,
    /// The NAT refused a new mapping (table or per-host cap full).
    NatFull,
    /// The NAT found no mapping for an inbound packet.
    NatNoMapping,
    /// No free buffer / submission slot (ring or pool full).
    RingFull,
    /// The PAFT refused a new flow (table full).
    PaftFull,
    /// Reserved control frame kind, or a control frame not allowed here.
    ControlRejected,
    /// Control frame could not be handed to the control thread (channel full/closed).
    ControlQueueFull,
    /// A tunnel socket send failed (e.g. EMSGSIZE, ENETUNREACH).
    SendError,
    /// A TUN write failed.
    TunWriteError,
    /// Held packets of a new flow beyond the bounded wait queue.
    HoldOverflow,
    /// The tunnel is draining or down.
    TunnelDown,
    /// The NAT does not translate this packet (not IPv4, protocol or ICMP type unsupported).
    NatUnsupported,
    /// The NAT asked for a hairpin (host to host via the public address): not supported yet.
    NatHairpin,
    /// Mobile host: the flow's application may use no usable interface now (policy "wait").
    PolicyWait,
    /// Mobile host: a link-scoped packet (IPv6 link-local source or destination, such as the
    /// kernel's router solicitations on the TUN): it may not leave its link (RFC 4291 2.5.6).
    LinkLocal,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 17;
    /// All reasons, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NoTunnel,
        DropReason::SpoofedSource,
        DropReason::NatFull,
        DropReason::NatNoMapping,
        DropReason::RingFull,
        DropReason::PaftFull,
        DropReason::ControlRejected,
        DropReason::ControlQueueFull,
        DropReason::SendError,
        DropReason::TunWriteError,
        DropReason::HoldOverflow,
        DropReason::TunnelDown,
        DropReason::NatUnsupported,
        DropReason::NatHairpin,
        DropReason::PolicyWait,
        DropReason::LinkLocal,
    ];

    /// Stable snake_case name (for JSON).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoTunnel => "no_tunnel",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NatFull => "nat_full",
            DropReason::NatNoMapping => "nat_no_mapping",
            DropReason::RingFull => "ring_full",
            DropReason::PaftFull => "paft_full",
            DropReason::ControlRejected => "control_rejected",
            DropReason::ControlQueueFull => "control_queue_full",
            DropReason::SendError => "send_error",
            DropReason::TunWriteError => "tun_write_error",
            DropReason::HoldOverflow => "hold_overflow",
            DropReason::TunnelDown => "tunnel_down",
            DropReason::NatUnsupported => "nat_unsupported",
            DropReason::NatHairpin => "nat_hairpin",
            DropReason::PolicyWait => "policy_wait",
            DropReason::LinkLocal => "link_local",
        }
    }
}

/// Packet and byte counter pair.
#[derive(Debug, Default)]
pub(crate) struct PktBytes {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl PktBytes {
    /// Adds one packet of `len` bytes.
    #[inline]
    pub(crate) fn add(&self, len: usize) {
        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(len as u64, Relaxed);
    }
    /// Adds `packets` packets of `bytes` bytes in all.
    #[inline]
    pub(crate) fn add_n(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
    /// Reads (packets, bytes).
    pub(crate) fn get(&self) -> (u64, u64) {
        (self.packets.load(Relaxed), self.bytes.load(Relaxed))
    }
}

/// Counters of one shard.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    /// Packets read from the TUN.
    pub(crate) tun_rx: PktBytes,
    /// Packets written to the TUN.
    pub(crate) tun_tx: PktBytes,
    /// Datagrams received on tunnel sockets.
    pub(crate) net_rx: PktBytes,
    /// Datagrams sent on tunnel sockets.
    pub(crate) net_tx: PktBytes,
    /// Control frames handed to the control thread.
    pub(crate) control_rx: AtomicU64,
    /// Keepalive requests answered by the data plane.
    pub(crate) keepalive_answered: AtomicU64,
    /// Syscalls made by this shard (io_uring_enter, epoll_wait, read/write, *mmsg).
    pub(crate) syscalls: AtomicU64,
    /// Offload work (see [`OffloadSnapshot`]).
    pub(crate) offload: OffloadStats,
    drops: [AtomicU64; DropReason::COUNT],
}

impl ShardStats {
    /// Counts one drop.
    #[inline]
    pub(crate) fn drop_packet(&self, r: DropReason) {
        if let Some(c) = self.drops.get(r as usize) {
            c.fetch_add(1, Relaxed);
        }
    }
    /// Reads the drop counter of `r`.
    pub(crate) fn drops(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).map_or(0, |c| c.load(Relaxed))
    }
    pub(crate) fn snapshot(&self, shard: usize) -> ShardSnapshot {
        ShardSnapshot {
            shard,
            tun_rx: self.tun_rx.get(),
            tun_tx: self.tun_tx.get(),
            net_rx: self.net_rx.get(),
            net_tx: self.net_tx.get(),
            control_rx: self.control_rx.load(Relaxed),
            keepalive_answered: self.keepalive_answered.load(Relaxed),
            syscalls: self.syscalls.load(Relaxed),
            offload: self.offload.snapshot(),
            drops: DropReason::ALL
                .iter()
                .map(|r| (*r, self.drops(*r)))
                .collect(),
        }
    }
}

/// A shard's counters at one instant. Pairs are (packets, bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSnapshot {
    /// Shard index.
    pub shard: usize,
    /// Read from the TUN.
    pub tun_rx: (u64, u64),
    /// Written to the TUN.
    pub tun_tx: (u64, u64),
    /// Received from tunnels.
    pub net_rx: (u64, u64),
    /// Sent into tunnels.
    pub net_tx: (u64, u64),
    /// Control frames handed up.
    pub control_rx: u64,
    /// Keepalives answered in the data plane.
    pub keepalive_answered: u64,
    /// Syscalls made.
    pub syscalls: u64,
    /// Offload work.
    pub offload: OffloadSnapshot,
    /// Drops by reason (every reason listed, zero included).
    pub drops: Vec<(DropReason, u64)>,
}

/// Offload counters of one shard.
#[derive(Debug, Default)]
pub(crate) struct OffloadStats {
    pub(crate) tso_in: AtomicU64,
    pub(crate) uso_in: AtomicU64,
    pub(crate) tso_segments: AtomicU64,
    pub(crate) gso_sends: AtomicU64,
    pub(crate) gro_in: AtomicU64,
    pub(crate) gro_datagrams: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) coalesced_segments: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
}

impl OffloadStats {
    fn snapshot(&self) -> OffloadSnapshot {
        OffloadSnapshot {
            tso_in: self.tso_in.load(Relaxed),
            uso_in: self.uso_in.load(Relaxed),
            tso_segments: self.tso_segments.load(Relaxed),
            gso_sends: self.gso_sends.load(Relaxed),
            gro_in: self.gro_in.load(Relaxed),
            gro_datagrams: self.gro_datagrams.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            coalesced_segments: self.coalesced_segments.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
        }
    }
}

/// What the offloads did on one shard (all zero with offload off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadSnapshot {
    /// TCP super-packets read from the TUN (TSO).
    pub tso_in: u64,
    /// UDP super-packets read from the TUN (USO: an application sent with `UDP_SEGMENT`).
    pub uso_in: u64,
    /// Packets the TCP and UDP super-packets were segmented into.
    pub tso_segments: u64,
    /// `UDP_SEGMENT` sends (each carries several datagrams).
    pub gso_sends: u64,
    /// Receives that carried several datagrams (`UDP_GRO`).
    pub gro_in: u64,
    /// Datagrams those carried.
    pub gro_datagrams: u64,
    /// Super-packets written to the TUN (coalesced from two or more segments).
    pub coalesced: u64,
    /// Segments merged into them.
    pub coalesced_segments: u64,
    /// Offloads the kernel refused, each falling back (TUN offload, GSO per socket).
    pub fallbacks: u64,
}

/// Counters of one tunnel at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSnapshot {
    /// Tunnel id.
    pub id: u32,
    /// Local address of its socket.
    pub local: std::net::SocketAddr,
    /// Remote (outer) address.
    pub remote: std::net::SocketAddr,
    /// State.
    pub state: crate::tables::TunnelState,
    /// Sent (packets, bytes).
    pub tx: (u64, u64),
    /// Received (packets, bytes).
    pub rx: (u64, u64),
}

/// Counters of one flow at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSnapshot {
    /// The flow (host-outbound orientation).
    pub key: crate::FlowKey,
    /// Its tunnel, `None` if it follows the default rule.
    pub tunnel: Option<u32>,
    /// Packets and bytes from the mobile host (its uplink).
    pub up: (u64, u64),
    /// Packets and bytes toward the mobile host (its downlink).
    pub down: (u64, u64),
}

/// Everything at one instant.
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    /// Per shard.
    pub shards: Vec<ShardSnapshot>,
    /// Per tunnel.
    pub tunnels: Vec<TunnelSnapshot>,
    /// Per flow: the first [`crate::FLOWS_LISTED`] of the table.
    pub flows: Vec<FlowSnapshot>,
    /// Flows in the table (all of them, listed or not).
    pub flow_count: u64,
}

impl StatsSnapshot {
    /// Sum of a drop reason over shards.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.drops.iter())
            .filter(|(k, _)| *k == r)
            .map(|(_, v)| v)
            .sum()
    }
    /// Sum over shards of a (packets, bytes) field selected by `f`.
    pub fn total(&self, f: impl Fn(&ShardSnapshot) -> (u64, u64)) -> (u64, u64) {
        self.shards
            .iter()
            .map(f)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_matches_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let s = ShardStats::default();
        s.drop_packet(DropReason::SpoofedSource);
        s.drop_packet(DropReason::SpoofedSource);
        assert_eq!(s.drops(DropReason::SpoofedSource), 2);
        let snap = StatsSnapshot {
            shards: vec![s.snapshot(0)],
            ..Default::default()
        };
        assert_eq!(snap.drops(DropReason::SpoofedSource), 2);
        assert_eq!(snap.drops(DropReason::Malformed), 0);
    }
}
