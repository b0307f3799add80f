//! Mappings, their keys and the RFC 5382 TCP state machine.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use crate::config::Timeouts;

/// Transport protocols the NAT translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Proto {
    /// ICMP queries (echo), keyed by the echo identifier.
    Icmp = 1,
    /// TCP, keyed by port.
    Tcp = 6,
    /// UDP, keyed by port.
    Udp = 17,
}

impl Proto {
    /// The protocol for an IPv4 protocol number, if the NAT handles it.
    pub fn from_ip_proto(p: u8) -> Option<Proto> {
        match p {
            1 => Some(Proto::Icmp),
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// A packed `(proto, address, port)` endpoint key: the outbound table is keyed by
/// `(proto, VIPA, host port)`, the inbound one by `(proto, public address, public port)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key(pub(crate) u64);

impl Key {
    #[inline]
    pub(crate) fn new(proto: Proto, addr: Ipv4Addr, port: u16) -> Key {
        Key((proto as u64) << 48 | u64::from(u32::from(addr)) << 16 | u64::from(port))
    }
}

/// A filtering permission: a mapping's inbound key plus a remote endpoint it may hear from
/// (remote port 0 for address-dependent filtering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PermKey(pub(crate) u128);

impl PermKey {
    #[inline]
    pub(crate) fn new(mapping: Key, remote: Remote) -> PermKey {
        PermKey(u128::from(mapping.0) << 48 | u128::from(remote.0))
    }
}

/// A remote endpoint packed as `address << 16 | port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Remote(pub(crate) u64);

impl Remote {
    #[inline]
    pub(crate) fn new(addr: Ipv4Addr, port: u16) -> Remote {
        Remote(u64::from(u32::from(addr)) << 16 | u64::from(port))
    }
}

/// Direction of a packet through the NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From a host (VIPA) to the Internet.
    Out,
    /// From the Internet to a host.
    In,
}

/// TCP flags the state machine looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpFlags {
    pub(crate) syn: bool,
    pub(crate) fin: bool,
    pub(crate) rst: bool,
}

impl TcpFlags {
    pub(crate) fn from_byte(b: u8) -> TcpFlags {
        TcpFlags {
            fin: b & 0x01 != 0,
            syn: b & 0x02 != 0,
            rst: b & 0x04 != 0,
        }
    }
}

/// TCP connection state of a mapping, as far as the NAT needs it for timeouts
/// (RFC 5382 idle timeouts; RFC 7857 for the handling of RST).
///
/// ```text
///            out SYN                 in SYN
///  (new) ──────────▶ SynOut ───────────────────▶ Established ──out FIN──▶ FinOut ─in FIN─┐
///    │ out non-SYN                                  ▲    │                               ▼
///    └──────────▶ Midstream ──in any───────────────┘    └──in FIN──▶ FinIn ──out FIN─▶ Closing
///  any state ──RST──▶ Reset;   Reset/Closing/Fin* ──out SYN──▶ SynOut;  Reset ──in SYN──▶ SynIn
///  SynIn ──out SYN──▶ Established
/// ```
/// Only `Established` uses the long (2 h 4 min) timeout; all others are "transitory" (4 min).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// The host sent a SYN; no SYN back yet (partially open).
    SynOut = 0,
    /// A remote SYN arrived on an existing mapping (simultaneous open); partially open.
    SynIn = 1,
    /// SYNs seen both ways.
    Established = 2,
    /// The host sent a FIN (half closed).
    FinOut = 3,
    /// The remote sent a FIN (half closed).
    FinIn = 4,
    /// FINs seen both ways.
    Closing = 5,
    /// A RST was seen; kept for the transitory timeout (RFC 7857 advises against removing
    /// the session at once on a RST).
    Reset = 6,
    /// Created by a non-SYN outbound segment (connection picked up mid-stream, e.g. after an
    /// anchor restart); becomes `Established` when the remote answers.
    Midstream = 7,
}

impl TcpState {
    #[cfg(test)]
    pub(crate) const ALL: [TcpState; 8] = [
        TcpState::SynOut,
        TcpState::SynIn,
        TcpState::Established,
        TcpState::FinOut,
        TcpState::FinIn,
        TcpState::Closing,
        TcpState::Reset,
        TcpState::Midstream,
    ];

    fn from_u8(v: u8) -> TcpState {
        match v {
            0 => TcpState::SynOut,
            1 => TcpState::SynIn,
            2 => TcpState::Established,
            3 => TcpState::FinOut,
            4 => TcpState::FinIn,
            5 => TcpState::Closing,
            6 => TcpState::Reset,
            _ => TcpState::Midstream,
        }
    }

    /// State of a mapping created by an outbound segment with these flags.
    pub(crate) fn initial(flags: TcpFlags) -> TcpState {
        if flags.rst {
            TcpState::Reset
        } else if flags.syn {
            TcpState::SynOut
        } else {
            TcpState::Midstream
        }
    }

    /// The transition for one segment (`on_segment`), a pure function.
    pub(crate) fn on_segment(self, dir: Dir, f: TcpFlags) -> TcpState {
        use TcpState::*;
        if f.rst {
            return Reset;
        }
        match (self, dir) {
            (SynOut, Dir::In) if f.syn => Established,
            (SynIn, Dir::Out) if f.syn => Established,
            (Midstream, Dir::In) => Established,
            (Established, Dir::Out) if f.fin => FinOut,
            (Established, Dir::In) if f.fin => FinIn,
            (FinOut, Dir::In) if f.fin => Closing,
            (FinIn, Dir::Out) if f.fin => Closing,
            (FinOut | FinIn | Closing | Reset | Midstream, Dir::Out) if f.syn => SynOut,
            (Reset | Closing, Dir::In) if f.syn => SynIn,
            (s, _) => s,
        }
    }

    /// Idle timeout for a mapping in this state.
    pub(crate) fn timeout(self, t: &Timeouts) -> Duration {
        match self {
            TcpState::Established => t.tcp_established,
            _ => t.tcp_transitory,
        }
    }
}

/// `last_seen` value of a mapping that has been removed.
pub(crate) const DEAD: u64 = u64::MAX;

/// Refreshes closer than this to the previous one are skipped, so a busy mapping costs
/// one shared-cache-line write per second, not one per packet.
pub(crate) const REFRESH_GRAIN_MS: u64 = 1000;

/// One NAPT mapping `(proto, VIPA, port) <-> (proto, public, port)`.
///
/// Shared by both tables behind an `Arc`. The hot path only reads the immutable fields and
/// touches `last_seen`/`tcp` with atomics.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub(crate) proto: Proto,
    pub(crate) vipa: Ipv4Addr,
    pub(crate) vport: u16,
    pub(crate) public: Ipv4Addr,
    pub(crate) pport: u16,
    /// Creation, then the last inbound refresh (TCP only; outbound refreshes go to the
    /// outbound entry's stamp); [`DEAD`] once removed.
    last_seen: Stamp,
    /// [`TcpState`] as `u8` (unused for UDP/ICMP).
    tcp: AtomicU8,
    /// Timer-queue bucket this mapping is filed under (only touched under the slow lock).
    pub(crate) sched: AtomicU64,
    /// The remote endpoint (as the filtering mode sees it) of the packet that created the
    /// mapping: its permission lives here (and in the inbound entry), so the common one-peer
    /// mapping needs no entry in the permission table and no second lookup.
    pub(crate) first_remote: Remote,
}

/// The outbound table's value: the public endpoint, first peer and the outbound refresh
/// stamp inline, so a UDP or ICMP packet from a host reads nothing but its table entry (one
/// cache miss less at 1M mappings than following the `Arc`); TCP follows `m` for its state.
#[derive(Debug)]
pub(crate) struct OutEntry {
    pub(crate) public: Ipv4Addr,
    pub(crate) pport: u16,
    pub(crate) first_remote: Remote,
    /// Last outbound refresh (ms since the epoch), or [`DEAD`] once removed.
    pub(crate) stamp: Stamp,
    pub(crate) m: std::sync::Arc<Mapping>,
}

impl OutEntry {
    pub(crate) fn new(m: std::sync::Arc<Mapping>, now_ms: u64) -> OutEntry {
        OutEntry {
            public: m.public,
            pport: m.pport,
            first_remote: m.first_remote,
            stamp: Stamp::new(now_ms),
            m,
        }
    }

    /// Last refresh in either direction (outbound stamp, or the mapping's inbound one).
    pub(crate) fn seen(&self) -> (u64, u64) {
        (self.stamp.load(), self.m.last_seen())
    }
}

/// A refresh timestamp in ms since the NAT's epoch; [`DEAD`] marks a removed mapping.
#[derive(Debug)]
pub(crate) struct Stamp(AtomicU64);

impl Stamp {
    pub(crate) fn new(now_ms: u64) -> Stamp {
        Stamp(AtomicU64::new(now_ms))
    }

    pub(crate) fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Refreshes; `false` if the mapping has been removed meanwhile.
    #[inline]
    pub(crate) fn touch(&self, now_ms: u64) -> bool {
        let old = self.0.load(Ordering::Relaxed);
        if old == DEAD {
            return false;
        }
        if now_ms > old.saturating_add(REFRESH_GRAIN_MS) {
            // fetch_max never overwrites DEAD (u64::MAX) and never moves time backwards
            // when two shards refresh at once.
            let prev = self.0.fetch_max(now_ms, Ordering::AcqRel);
            return prev != DEAD;
        }
        true
    }

    /// Marks removed if still at `seen` (the expiry CAS).
    pub(crate) fn kill_if_unchanged(&self, seen: u64) -> bool {
        self.0
            .compare_exchange(seen, DEAD, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks removed unconditionally.
    pub(crate) fn kill(&self) {
        self.0.store(DEAD, Ordering::Release);
    }

    /// Undoes [`Stamp::kill_if_unchanged`] (slow-path lock held).
    pub(crate) fn restore(&self, seen: u64) {
        self.0.store(seen, Ordering::Release);
    }
}

/// The inbound table's value: what an inbound packet needs, inline, so that UDP and ICMP
/// replies are translated without touching the shared [`Mapping`] (one cache miss less at
/// 1M mappings); TCP follows `m` for its state.
#[derive(Debug)]
pub(crate) struct InEntry {
    pub(crate) vipa: Ipv4Addr,
    pub(crate) vport: u16,
    pub(crate) first_remote: Remote,
    pub(crate) m: std::sync::Arc<Mapping>,
}

impl InEntry {
    pub(crate) fn new(m: std::sync::Arc<Mapping>) -> InEntry {
        InEntry {
            vipa: m.vipa,
            vport: m.vport,
            first_remote: m.first_remote,
            m,
        }
    }
}

impl Mapping {
    pub(crate) fn new(
        proto: Proto,
        (vipa, vport): (Ipv4Addr, u16),
        (public, pport): (Ipv4Addr, u16),
        now_ms: u64,
        tcp: TcpState,
        first_remote: Remote,
    ) -> Mapping {
        Mapping {
            proto,
            vipa,
            vport,
            public,
            pport,
            last_seen: Stamp::new(now_ms),
            tcp: AtomicU8::new(tcp as u8),
            sched: AtomicU64::new(0),
            first_remote,
        }
    }

    pub(crate) fn out_key(&self) -> Key {
        Key::new(self.proto, self.vipa, self.vport)
    }

    pub(crate) fn in_key(&self) -> Key {
        Key::new(self.proto, self.public, self.pport)
    }

    pub(crate) fn last_seen(&self) -> u64 {
        self.last_seen.load()
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.last_seen() == DEAD
    }

    /// Inbound refresh (TCP); `false` if the mapping has been removed meanwhile.
    #[inline]
    pub(crate) fn touch(&self, now_ms: u64) -> bool {
        self.last_seen.touch(now_ms)
    }

    /// Marks the mapping removed if its inbound stamp is still `seen` (the expiry CAS).
    pub(crate) fn kill_if_unchanged(&self, seen: u64) -> bool {
        self.last_seen.kill_if_unchanged(seen)
    }

    /// Marks the mapping removed unconditionally.
    pub(crate) fn kill(&self) {
        self.last_seen.kill();
    }

    pub(crate) fn tcp_state(&self) -> TcpState {
        TcpState::from_u8(self.tcp.load(Ordering::Acquire))
    }

    /// Applies a TCP segment; returns `(old, new)` when the state changed.
    #[inline]
    pub(crate) fn on_tcp(&self, dir: Dir, flags: TcpFlags) -> Option<(TcpState, TcpState)> {
        let mut cur = self.tcp.load(Ordering::Acquire);
        loop {
            let old = TcpState::from_u8(cur);
            let new = old.on_segment(dir, flags);
            if new == old {
                return None;
            }
            match self.tcp.compare_exchange_weak(
                cur,
                new as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((old, new)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Idle timeout in milliseconds for the current state.
    pub(crate) fn timeout_ms(&self, t: &Timeouts) -> u64 {
        let d = match self.proto {
            Proto::Udp => t.udp,
            Proto::Icmp => t.icmp,
            Proto::Tcp => self.tcp_state().timeout(t),
        };
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
    }

    /// Expiry deadline (ms since epoch) given its last refresh `seen`.
    pub(crate) fn deadline_ms(&self, seen: u64, t: &Timeouts) -> u64 {
        seen.saturating_add(self.timeout_ms(t))
    }

    pub(crate) fn info(&self) -> MappingInfo {
        MappingInfo {
            proto: self.proto,
            vipa: self.vipa,
            vport: self.vport,
            public: self.public,
            pport: self.pport,
            tcp_state: (self.proto == Proto::Tcp).then(|| self.tcp_state()),
        }
    }
}

/// A snapshot of one mapping, for listing (`upmt status`) and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MappingInfo {
    /// Protocol.
    pub proto: Proto,
    /// The host's VIPA.
    pub vipa: Ipv4Addr,
    /// The host's port (or ICMP echo identifier).
    pub vport: u16,
    /// Public address.
    pub public: Ipv4Addr,
    /// Public port (or identifier).
    pub pport: u16,
    /// TCP state, for TCP mappings.
    pub tcp_state: Option<TcpState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fl(syn: bool, fin: bool, rst: bool) -> TcpFlags {
        TcpFlags { syn, fin, rst }
    }

    #[test]
    fn handshake_and_close() {
        let s = TcpState::initial(fl(true, false, false));
        assert_eq!(s, TcpState::SynOut);
        let s = s.on_segment(Dir::In, fl(true, false, false));
        assert_eq!(s, TcpState::Established);
        let s = s.on_segment(Dir::Out, fl(false, false, false));
        assert_eq!(s, TcpState::Established);
        let s = s.on_segment(Dir::Out, fl(false, true, false));
        assert_eq!(s, TcpState::FinOut);
        let s = s.on_segment(Dir::In, fl(false, true, false));
        assert_eq!(s, TcpState::Closing);
        let s = s.on_segment(Dir::Out, fl(true, false, false));
        assert_eq!(s, TcpState::SynOut);
    }

    #[test]
    fn every_state_and_event_is_defined_and_rst_wins() {
        let t = Timeouts::default();
        for s in TcpState::ALL {
            for dir in [Dir::In, Dir::Out] {
                for bits in 0u8..8 {
                    let f = TcpFlags::from_byte(bits);
                    let n = s.on_segment(dir, f);
                    if f.rst {
                        assert_eq!(n, TcpState::Reset);
                    }
                    // only Established has the long timeout
                    assert_eq!(
                        n.timeout(&t) == t.tcp_established,
                        n == TcpState::Established
                    );
                    assert_eq!(TcpState::from_u8(n as u8), n);
                }
            }
        }
    }

    #[test]
    fn midstream_pickup() {
        let s = TcpState::initial(fl(false, false, false));
        assert_eq!(s, TcpState::Midstream);
        assert_eq!(s.on_segment(Dir::Out, fl(false, false, false)), s);
        assert_eq!(
            s.on_segment(Dir::In, fl(false, false, false)),
            TcpState::Established
        );
    }

    #[test]
    fn touch_never_resurrects() {
        let m = Mapping::new(
            Proto::Udp,
            (Ipv4Addr::new(100, 64, 0, 1), 1),
            (Ipv4Addr::new(198, 18, 2, 100), 1),
            0,
            TcpState::SynOut,
            Remote(0),
        );
        assert!(m.touch(5000));
        assert_eq!(m.last_seen(), 5000);
        assert!(m.touch(5500)); // within grain: no write
        assert_eq!(m.last_seen(), 5000);
        assert!(!m.kill_if_unchanged(1));
        assert!(m.kill_if_unchanged(5000));
        assert!(!m.touch(90_000));
        assert!(m.is_dead());
    }
}
