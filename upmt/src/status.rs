//! The status documents `upmt status --json` prints (one per daemon). Field names are a
//! stable interface: scripts and the benchmark harness read them. Documented with examples
//! in `docs/CONTROL.md`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};

/// The mobile host's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileStatus {
    /// `"mobile"`.
    pub role: String,
    /// The VIPA held, once associated.
    pub vipa: Option<Ipv4Addr>,
    /// The anchor's SIP address.
    pub anchor: SocketAddrV4,
    /// `"associating"`, `"associated"`.
    pub association: String,
    /// One per access interface with a tunnel (or trying to have one).
    pub tunnels: Vec<MobileTunnel>,
    /// Flows seen on the TUN, most recent first.
    pub flows: Vec<MobileFlow>,
    /// Data-plane drop counters by reason.
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Data-plane totals over all shards (packets, syscalls, offload work).
    #[serde(default)]
    pub dataplane: DataplaneStatus,
    /// Per application: its flows and the bytes it sent over each interface.
    #[serde(default)]
    pub apps: Vec<MobileApp>,
    /// How long new flows waited for their application's placement (with a policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// One application's accounting on the mobile host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileApp {
    /// The application (`null`: flows no application could be named for).
    pub name: Option<String>,
    /// Its live flows.
    pub flows: u64,
    /// Bytes sent, by the interface each flow rides now (`"waiting"` while held back).
    pub tx_bytes_by_iface: std::collections::BTreeMap<String, u64>,
}

/// First-packet wait of new flows: classification and policy decision, over the last 1024.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Flows placed since start.
    pub flows: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

/// One tunnel of the mobile host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileTunnel {
    /// Tunnel id the anchor assigned (0 until set up).
    pub id: u32,
    /// The access interface it rides.
    pub iface: String,
    /// `"setup"` (asking the anchor), `"up"` (usable), `"doubt"` (a keepalive was missed,
    /// still usable), `"down"`.
    pub state: String,
    /// Local address and port of the tunnel socket.
    pub local: Option<SocketAddr>,
    /// The address and port the anchor sees (after the local NAT).
    pub mapped: Option<SocketAddr>,
    /// Smoothed RTT of keepalives, ms.
    pub rtt_ms: Option<f64>,
    /// RTT variation (jitter), ms.
    pub jitter_ms: Option<f64>,
    /// Keepalive loss over the last 64 keepalives, percent.
    pub loss_pct: f64,
    /// Bytes sent into the tunnel.
    pub tx_bytes: u64,
    /// Bytes received from the tunnel.
    pub rx_bytes: u64,
}

/// One flow of the mobile host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileFlow {
    /// `"tcp"`, `"udp"`, `"icmp"`, or a protocol number.
    pub proto: String,
    /// Source `addr:port` (the VIPA side).
    pub src: String,
    /// Destination `addr:port`.
    pub dst: String,
    /// The application, when known.
    pub app: Option<String>,
    /// The interface whose tunnel the flow rides.
    pub iface: Option<String>,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
}

/// The anchor's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorStatus {
    /// `"anchor"`.
    pub role: String,
    /// Associated hosts (their `flows`: among the listed flows, see `flows_listed`).
    pub hosts: Vec<AnchorHost>,
    /// Flows in the anchor's flow table, all shards.
    #[serde(default)]
    pub flows: u64,
    /// Flows the per-host counts were taken from (the table's first
    /// [`dataplane::FLOWS_LISTED`]; equal to `flows` below that).
    #[serde(default)]
    pub flows_listed: u64,
    /// NAT state.
    pub nat: NatStatus,
    /// Data-plane drop counters by reason.
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Data-plane totals over all shards.
    #[serde(default)]
    pub dataplane: DataplaneStatus,
}

/// Data-plane totals over all shards of a daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneStatus {
    /// Shards running.
    pub shards: usize,
    /// Packets read from the TUN (a TCP super-packet counts once).
    pub tun_rx_packets: u64,
    /// Packets written to the TUN (a coalesced super-packet counts once).
    pub tun_tx_packets: u64,
    /// Datagrams received on tunnel sockets.
    pub net_rx_packets: u64,
    /// Datagrams sent on tunnel sockets.
    pub net_tx_packets: u64,
    /// Syscalls the shards made (io_uring_enter, and synchronous fallbacks).
    pub syscalls: u64,
    /// Offload work (all zero with offload off).
    pub offload: OffloadStatus,
}

/// What the offloads did (sums over shards; see `dataplane::OffloadSnapshot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadStatus {
    /// TCP super-packets read from the TUN.
    pub tso_in: u64,
    /// UDP super-packets read from the TUN (USO).
    #[serde(default)]
    pub uso_in: u64,
    /// Packets the TCP and UDP super-packets were segmented into.
    pub tso_segments: u64,
    /// UDP GSO sends.
    pub gso_sends: u64,
    /// UDP GRO receives carrying several datagrams.
    pub gro_in: u64,
    /// Datagrams those carried.
    pub gro_datagrams: u64,
    /// Super-packets written to the TUN.
    pub coalesced: u64,
    /// Segments merged into them.
    pub coalesced_segments: u64,
    /// Offloads the kernel refused (each one fell back).
    pub fallbacks: u64,
}

/// One associated mobile host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorHost {
    /// Its identity (SIP user).
    pub id: String,
    /// Its VIPA.
    pub vipa: Ipv4Addr,
    /// Seconds until its association expires.
    pub expires_in_s: u64,
    /// Its tunnels.
    pub tunnels: Vec<AnchorTunnel>,
    /// Flows in the PAFT for this host.
    pub flows: u64,
}

/// One tunnel at the anchor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorTunnel {
    /// Tunnel id.
    pub id: u32,
    /// The outer address the tunnel comes from (the host's NAT mapping).
    pub addr: SocketAddr,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent into it.
    pub tx_bytes: u64,
}

/// NAT state at the anchor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatStatus {
    /// `"upmt"` or `"kernel"`.
    pub mode: String,
    /// Live mappings (0 in kernel mode: see `conntrack -L`).
    pub mappings: u64,
    /// Public addresses.
    pub public: Vec<Ipv4Addr>,
}
