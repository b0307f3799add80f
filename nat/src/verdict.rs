//! What the NAT decided about a packet, and its drop counters.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The result of translating one packet. The packet buffer has been rewritten in place for
/// every variant but `Drop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Outbound packet translated: send it to the Internet (the anchor's TUN).
    ToInternet,
    /// Inbound packet translated: send it into the tunnel of the host with this VIPA.
    Forward {
        /// Destination host.
        to_vipa: Ipv4Addr,
    },
    /// Outbound packet addressed to one of our own public mappings (RFC 4787 REQ-9):
    /// both source and destination were translated; send it back down to this host.
    Hairpin {
        /// Destination host.
        to_vipa: Ipv4Addr,
    },
    /// The packet must be dropped (it may have been partly rewritten). Counted.
    Drop(DropReason),
}

/// Why a packet was dropped. Every reason has a counter (see [`crate::Nat::counters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Truncated or inconsistent IPv4 or transport header.
    Malformed = 0,
    /// Not IPv4 (the NAT does not do NAT64/NAT66).
    NotIpv4 = 1,
    /// Outbound packet whose source is not the sending host's VIPA.
    SpoofedSource = 2,
    /// Inbound packet not addressed to one of the NAT's public addresses.
    NotOurs = 3,
    /// A protocol other than TCP, UDP and ICMP.
    UnsupportedProtocol = 4,
    /// An ICMP type the NAT does not translate (neither echo nor a known error).
    UnsupportedIcmp = 5,
    /// Inbound packet (or ICMP error, or hairpin target) with no live mapping.
    NoMapping = 6,
    /// Inbound packet from a remote endpoint the filtering mode does not admit.
    Filtered = 7,
    /// The host already holds `max_mappings_per_host` mappings (RFC 6888 REQ-4).
    HostCapReached = 8,
    /// The table holds `max_mappings` mappings.
    GlobalCapReached = 9,
    /// No free public port for the host's public address.
    PortsExhausted = 10,
    /// A non-first fragment of a datagram whose first fragment was not seen (or its state expired).
    FragmentNoState = 11,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 12;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::NotIpv4,
        DropReason::SpoofedSource,
        DropReason::NotOurs,
        DropReason::UnsupportedProtocol,
        DropReason::UnsupportedIcmp,
        DropReason::NoMapping,
        DropReason::Filtered,
        DropReason::HostCapReached,
        DropReason::GlobalCapReached,
        DropReason::PortsExhausted,
        DropReason::FragmentNoState,
    ];

    /// A stable snake_case name for metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NotOurs => "not_ours",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::UnsupportedIcmp => "unsupported_icmp",
            DropReason::NoMapping => "no_mapping",
            DropReason::Filtered => "filtered",
            DropReason::HostCapReached => "host_cap_reached",
            DropReason::GlobalCapReached => "global_cap_reached",
            DropReason::PortsExhausted => "ports_exhausted",
            DropReason::FragmentNoState => "fragment_no_state",
        }
    }
}

/// Counters kept by the NAT (relaxed atomics; only drops and slow-path events count, so
/// the forwarding fast path writes no shared counter).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    drops: [AtomicU64; DropReason::COUNT],
    created: AtomicU64,
    expired: AtomicU64,
    removed: AtomicU64,
    fragments_untracked: AtomicU64,
}

impl Counters {
    pub(crate) fn drop(&self, r: DropReason) -> Verdict {
        if let Some(c) = self.drops.get(r as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Drop(r)
    }
    pub(crate) fn created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn expired(&self, n: u64) {
        self.expired.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn removed(&self, n: u64) {
        self.removed.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn fragment_untracked(&self) {
        self.fragments_untracked.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        let mut drops = [0; DropReason::COUNT];
        for (d, c) in drops.iter_mut().zip(self.drops.iter()) {
            *d = c.load(Ordering::Relaxed);
        }
        CounterSnapshot {
            drops,
            created: self.created.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            removed: self.removed.load(Ordering::Relaxed),
            fragments_untracked: self.fragments_untracked.load(Ordering::Relaxed),
        }
    }
}

/// A copy of the NAT's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Drops per [`DropReason`] (index = `reason as usize`).
    pub drops: [u64; DropReason::COUNT],
    /// Mappings created.
    pub created: u64,
    /// Mappings removed by idle timeout.
    pub expired: u64,
    /// Mappings removed with their host ([`crate::Nat::remove_host`]).
    pub removed: u64,
    /// First fragments forwarded without tracking because the fragment table was full.
    pub fragments_untracked: u64,
}

impl CounterSnapshot {
    /// Drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }
}
