//! The shared forwarding tables: PAFT (flow -> tunnel), tunnels, and host bindings.
//!
//! **Concurrency choice**: `papaya::HashMap` (lock-free concurrent hash table with epoch-style
//! reclamation via `seize`). Reads on the per-packet path never lock; the control thread
//! inserts rules and, at the anchor, shards insert learned flows concurrently without a
//! writer lock or a copy of the table (an RCU snapshot of a `hashbrown` map would have to be
//! copied on every newly learned flow). A flow's tunnel and counters are atomics inside the
//! entry, so a handover or a re-learn is one relaxed store, not a map write.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use crate::stats::PktBytes;
use crate::FlowKey;

/// Tunnel identifier (assigned by the control side).
pub type TunnelId = u32;
/// Host identifier (assigned by the control side, anchor only).
pub type HostId = u32;

/// "No tunnel": the flow follows the default rule.
pub(crate) const NO_TUNNEL: u32 = u32::MAX;
/// The flow waits for the control side's decision (mobile host, bounded).
pub(crate) const PENDING: u32 = u32::MAX - 1;
/// Mobile host: the flow is held back by policy (its packets are dropped and counted as
/// `policy_wait`) until the control side puts it on a tunnel. Set with
/// `Command::SetFlow { tunnel: Some(BLOCKED), .. }`.
pub const BLOCKED: u32 = u32::MAX - 2;

type Hasher64 = hashbrown::DefaultHashBuilder;

/// State of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelState {
    /// Usable.
    Up,
    /// Being removed: receives still accepted, nothing new sent on it.
    Draining,
    /// Not usable.
    Down,
}

/// Which socket a tunnel sends on.
#[derive(Debug)]
pub(crate) enum TunnelSocket {
    /// The engine's shared listening sockets (anchor: one per shard on the tunnel port; each
    /// shard sends on its own, all with the same local address).
    Shared,
    /// A socket of its own (mobile host: bound to the tunnel's interface).
    Dedicated(OwnedFd),
}

/// One tunnel.
#[derive(Debug)]
pub(crate) struct Tunnel {
    /// Id.
    pub(crate) id: TunnelId,
    /// Its socket.
    pub(crate) socket: TunnelSocket,
    /// Local address of that socket.
    pub(crate) local: SocketAddr,
    /// Remote (outer) address: the anchor, or the host as the anchor sees it.
    pub(crate) remote: SocketAddr,
    state: AtomicU8,
    /// Sent into the tunnel.
    pub(crate) tx: PktBytes,
    /// Received from the tunnel.
    pub(crate) rx: PktBytes,
}

impl Tunnel {
    pub(crate) fn new(
        id: TunnelId,
        socket: TunnelSocket,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Tunnel {
        Tunnel {
            id,
            socket,
            local,
            remote,
            state: AtomicU8::new(0),
            tx: PktBytes::default(),
            rx: PktBytes::default(),
        }
    }
    /// Current state.
    pub(crate) fn state(&self) -> TunnelState {
        match self.state.load(Relaxed) {
            0 => TunnelState::Up,
            1 => TunnelState::Draining,
            _ => TunnelState::Down,
        }
    }
    pub(crate) fn set_state(&self, s: TunnelState) {
        self.state.store(
            match s {
                TunnelState::Up => 0,
                TunnelState::Draining => 1,
                TunnelState::Down => 2,
            },
            Relaxed,
        );
    }
}

/// A PAFT entry.
#[derive(Debug)]
pub(crate) struct FlowEntry {
    tunnel: AtomicU32,
    /// Coarse clock ([`Tables::tick`]) of the last packet; written at most once per tick.
    last_seen: AtomicU32,
    /// Host-outbound packets (the mobile host's uplink).
    pub(crate) up: PktBytes,
    /// Host-inbound packets (toward the mobile host).
    pub(crate) down: PktBytes,
}

/// Which way a packet goes, for a flow's counters (flows are keyed host-outbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From the mobile host (its TUN, or the anchor's tunnel sockets).
    Up,
    /// Toward the mobile host.
    Down,
}

impl FlowEntry {
    fn new(t: u32, now: u32) -> FlowEntry {
        FlowEntry {
            tunnel: AtomicU32::new(t),
            last_seen: AtomicU32::new(now),
            up: PktBytes::default(),
            down: PktBytes::default(),
        }
    }

    #[inline]
    fn route(&self) -> Route {
        match self.tunnel.load(Relaxed) {
            NO_TUNNEL => Route::Default,
            PENDING => Route::Pending,
            BLOCKED => Route::Blocked,
            t => Route::Tunnel(t),
        }
    }

    #[inline]
    fn touch(&self, dir: Dir, len: usize, now: u32) {
        match dir {
            Dir::Up => self.up.add(len),
            Dir::Down => self.down.add(len),
        }
        if self.last_seen.load(Relaxed) != now {
            self.last_seen.store(now, Relaxed);
        }
    }
}

/// A host bound at the anchor: its VIPA and tunnels.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) id: HostId,
    pub(crate) vipa: IpAddr,
    pub(crate) tunnels: Vec<TunnelId>,
    /// Tunnel its last valid packet came in on (default for its flows without an entry).
    pub(crate) last_tunnel: AtomicU32,
}

/// Result of a PAFT lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Explicit or learned tunnel.
    Tunnel(TunnelId),
    /// Known flow following the default rule.
    Default,
    /// Waiting for the control side.
    Pending,
    /// Unknown flow.
    Miss,
    /// Held back by policy.
    Blocked,
}

/// All shared tables.
pub(crate) struct Tables {
    paft: papaya::HashMap<FlowKey, FlowEntry, Hasher64>,
    paft_cap: usize,
    tunnels: papaya::HashMap<TunnelId, Arc<Tunnel>, Hasher64>,
    by_remote: papaya::HashMap<SocketAddr, TunnelId, Hasher64>,
    hosts_by_vipa: papaya::HashMap<IpAddr, Arc<Host>, Hasher64>,
    host_by_tunnel: papaya::HashMap<TunnelId, Arc<Host>, Hasher64>,
    default_tunnel: AtomicU32,
    /// Coarse clock in seconds since `epoch`, advanced by the shards once per batch.
    clock: AtomicU32,
    epoch: std::time::Instant,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("flows", &self.paft.len())
            .field("tunnels", &self.tunnels.len())
            .finish()
    }
}

impl Tables {
    pub(crate) fn new(paft_cap: usize) -> Tables {
        Tables {
            paft: papaya::HashMap::with_hasher(Hasher64::default()),
            paft_cap,
            tunnels: papaya::HashMap::with_hasher(Hasher64::default()),
            by_remote: papaya::HashMap::with_hasher(Hasher64::default()),
            hosts_by_vipa: papaya::HashMap::with_hasher(Hasher64::default()),
            host_by_tunnel: papaya::HashMap::with_hasher(Hasher64::default()),
            default_tunnel: AtomicU32::new(NO_TUNNEL),
            clock: AtomicU32::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    // ---- coarse clock ----

    /// Advances the coarse clock to `now` (called by shards once per batch).
    #[inline]
    pub(crate) fn tick(&self, now: std::time::Instant) {
        let s = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .min(u32::MAX as u64) as u32;
        if self.clock.load(Relaxed) < s {
            self.clock.fetch_max(s, Relaxed);
        }
    }

    #[inline]
    fn now(&self) -> u32 {
        self.clock.load(Relaxed)
    }

    // ---- PAFT ----

    /// Removes flows idle for more than `idle` (by the coarse clock, 1 s resolution);
    /// returns their keys. Flows still pending a decision are kept.
    pub(crate) fn expire_flows(&self, idle: std::time::Duration) -> Vec<FlowKey> {
        let now = self.now();
        let idle = idle.as_secs().min(u32::MAX as u64) as u32;
        let mut gone = Vec::new();
        self.paft.pin().retain(|k, e| {
            let keep = now.saturating_sub(e.last_seen.load(Relaxed)) <= idle
                || e.tunnel.load(Relaxed) == PENDING;
            if !keep {
                gone.push(*k);
            }
            keep
        });
        gone
    }

    /// Looks a flow up and counts the packet (`len` bytes going `dir`) on its entry.
    #[inline]
    pub(crate) fn route(&self, key: &FlowKey, dir: Dir, len: usize) -> Route {
        let g = self.paft.pin();
        match g.get(key) {
            None => Route::Miss,
            Some(e) => {
                e.touch(dir, len, self.now());
                e.route()
            }
        }
    }

    /// Looks a flow up without counting (a held packet, counted when it arrived).
    #[inline]
    pub(crate) fn lookup(&self, key: &FlowKey) -> Route {
        self.paft
            .pin()
            .get(key)
            .map_or(Route::Miss, FlowEntry::route)
    }

    /// Counts a packet on an existing entry (no insert).
    #[inline]
    pub(crate) fn count(&self, key: &FlowKey, dir: Dir, len: usize) {
        if let Some(e) = self.paft.pin().get(key) {
            e.touch(dir, len, self.now());
        }
    }

    /// Counts `packets` packets of `bytes` bytes in all on an existing entry (no insert).
    #[inline]
    pub(crate) fn count_n(&self, key: &FlowKey, dir: Dir, packets: u64, bytes: u64) {
        if let Some(e) = self.paft.pin().get(key) {
            match dir {
                Dir::Up => e.up.add_n(packets, bytes),
                Dir::Down => e.down.add_n(packets, bytes),
            }
            let now = self.now();
            if e.last_seen.load(Relaxed) != now {
                e.last_seen.store(now, Relaxed);
            }
        }
    }

    /// Sets a flow's tunnel (control rule or handover); `None` = default rule.
    pub(crate) fn set_flow(&self, key: FlowKey, tunnel: Option<TunnelId>) {
        let t = tunnel.unwrap_or(NO_TUNNEL);
        let g = self.paft.pin();
        match g.get(&key) {
            Some(e) => e.tunnel.store(t, Relaxed),
            None => {
                g.insert(key, FlowEntry::new(t, self.now()));
            }
        }
    }

    /// Inserts a new flow with `marker` (NO_TUNNEL or PENDING) if absent. Returns `Ok(true)`
    /// when this call created it, `Err(())` when the table is full.
    pub(crate) fn insert_new(&self, key: FlowKey, marker: u32) -> Result<bool, ()> {
        let g = self.paft.pin();
        if g.get(&key).is_some() {
            return Ok(false);
        }
        if g.len() >= self.paft_cap {
            return Err(());
        }
        match g.try_insert(key, FlowEntry::new(marker, self.now())) {
            Ok(_) => Ok(true),
            Err(_) => Ok(false),
        }
    }

    /// Resolves a PENDING flow to the default rule (wait timed out). No-op otherwise.
    pub(crate) fn resolve_pending(&self, key: &FlowKey) {
        if let Some(e) = self.paft.pin().get(key) {
            let _ = e
                .tunnel
                .compare_exchange(PENDING, NO_TUNNEL, Relaxed, Relaxed);
        }
    }

    /// Learns (anchor): the flow's tunnel is the one its last valid packet came in on.
    #[inline]
    pub(crate) fn learn(&self, key: FlowKey, tunnel: TunnelId, len: usize) -> Result<(), ()> {
        let g = self.paft.pin();
        if let Some(e) = g.get(&key) {
            if e.tunnel.load(Relaxed) != tunnel {
                e.tunnel.store(tunnel, Relaxed);
            }
            e.touch(Dir::Up, len, self.now());
            return Ok(());
        }
        if g.len() >= self.paft_cap {
            return Err(());
        }
        let e = FlowEntry::new(tunnel, self.now());
        e.up.add(len);
        let _ = g.try_insert(key, e);
        Ok(())
    }

    /// Removes a flow.
    pub(crate) fn remove_flow(&self, key: &FlowKey) {
        self.paft.pin().remove(key);
    }

    /// Flows on `tunnel` fall back to the default rule.
    pub(crate) fn unroute_tunnel(&self, tunnel: TunnelId) {
        for (_, e) in self.paft.pin().iter() {
            let _ = e
                .tunnel
                .compare_exchange(tunnel, NO_TUNNEL, Relaxed, Relaxed);
        }
    }

    /// Moves flows on `from` (all flows if `None`) to `to`.
    pub(crate) fn move_flows(&self, from: Option<TunnelId>, to: TunnelId) {
        for (_, e) in self.paft.pin().iter() {
            match from {
                Some(f) => {
                    let _ = e.tunnel.compare_exchange(f, to, Relaxed, Relaxed);
                }
                None => e.tunnel.store(to, Relaxed),
            }
        }
    }

    /// Removes the flows whose source is `vipa` (host unbound).
    pub(crate) fn remove_flows_of(&self, vipa: IpAddr) {
        self.paft.pin().retain(|k, _| k.src != vipa);
    }

    /// Number of flows.
    pub(crate) fn flow_count(&self) -> usize {
        self.paft.len()
    }

    /// Snapshot of the flows (at most `max`).
    pub(crate) fn flows(&self, max: usize) -> Vec<crate::stats::FlowSnapshot> {
        self.paft
            .pin()
            .iter()
            .take(max)
            .map(|(k, e)| {
                let t = e.tunnel.load(Relaxed);
                crate::stats::FlowSnapshot {
                    key: *k,
                    tunnel: (t != NO_TUNNEL && t != PENDING).then_some(t),
                    up: e.up.get(),
                    down: e.down.get(),
                }
            })
            .collect()
    }

    // ---- default rule ----

    pub(crate) fn set_default(&self, t: Option<TunnelId>) {
        self.default_tunnel.store(t.unwrap_or(NO_TUNNEL), Relaxed);
    }

    pub(crate) fn default_tunnel(&self) -> Option<TunnelId> {
        match self.default_tunnel.load(Relaxed) {
            NO_TUNNEL => None,
            t => Some(t),
        }
    }

    // ---- tunnels ----

    pub(crate) fn add_tunnel(&self, t: Tunnel) -> Arc<Tunnel> {
        let t = Arc::new(t);
        if matches!(t.socket, TunnelSocket::Shared) {
            self.by_remote.pin().insert(t.remote, t.id);
        }
        if let Some(old) = self.tunnels.pin().insert(t.id, t.clone()) {
            if old.remote != t.remote && matches!(old.socket, TunnelSocket::Shared) {
                self.by_remote
                    .pin()
                    .remove_if(&old.remote, |_, id| *id == old.id)
                    .ok();
            }
        }
        t
    }

    pub(crate) fn remove_tunnel(&self, id: TunnelId) -> Option<Arc<Tunnel>> {
        let old = self.tunnels.pin().remove(&id).cloned();
        if let Some(t) = &old {
            t.set_state(TunnelState::Down);
            self.by_remote
                .pin()
                .remove_if(&t.remote, |_, v| *v == id)
                .ok();
            self.unroute_tunnel(id);
            if self.default_tunnel.load(Relaxed) == id {
                self.set_default(None);
            }
        }
        old
    }

    #[inline]
    pub(crate) fn tunnel(&self, id: TunnelId) -> Option<Arc<Tunnel>> {
        self.tunnels.pin().get(&id).cloned()
    }

    #[inline]
    pub(crate) fn tunnel_by_remote(&self, remote: &SocketAddr) -> Option<TunnelId> {
        self.by_remote.pin().get(remote).copied()
    }

    pub(crate) fn tunnels(&self) -> Vec<Arc<Tunnel>> {
        self.tunnels.pin().values().cloned().collect()
    }

    // ---- hosts ----

    pub(crate) fn bind_host(&self, id: HostId, vipa: IpAddr, tunnels: Vec<TunnelId>) {
        let first = tunnels.first().copied().unwrap_or(NO_TUNNEL);
        let h = Arc::new(Host {
            id,
            vipa,
            tunnels,
            last_tunnel: AtomicU32::new(first),
        });
        if let Some(old) = self.hosts_by_vipa.pin().insert(vipa, h.clone()) {
            let g = self.host_by_tunnel.pin();
            for t in &old.tunnels {
                g.remove(t);
            }
        }
        let g = self.host_by_tunnel.pin();
        for t in &h.tunnels {
            g.insert(*t, h.clone());
        }
    }

    pub(crate) fn unbind_host(&self, id: HostId) {
        let found: Vec<Arc<Host>> = self
            .hosts_by_vipa
            .pin()
            .values()
            .filter(|h| h.id == id)
            .cloned()
            .collect();
        for h in found {
            self.hosts_by_vipa.pin().remove(&h.vipa);
            let g = self.host_by_tunnel.pin();
            for t in &h.tunnels {
                g.remove_if(t, |_, v| v.id == id).ok();
            }
            self.remove_flows_of(h.vipa);
        }
    }

    #[inline]
    pub(crate) fn host_by_tunnel(&self, t: TunnelId) -> Option<Arc<Host>> {
        self.host_by_tunnel.pin().get(&t).cloned()
    }

    #[inline]
    pub(crate) fn host_by_vipa(&self, vipa: &IpAddr) -> Option<Arc<Host>> {
        self.hosts_by_vipa.pin().get(vipa).cloned()
    }
}

/// The shard that owns `key`: a symmetric hash (both directions of a flow map to the same
/// shard), stable within a process.
pub fn shard_for(key: &FlowKey, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let (a, b) = if (key.src, key.src_port) <= (key.dst, key.dst_port) {
        ((key.src, key.src_port), (key.dst, key.dst_port))
    } else {
        ((key.dst, key.dst_port), (key.src, key.src_port))
    };
    // A fixed-key hasher so the result does not depend on per-process random state.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.proto.hash(&mut h);
    a.hash(&mut h);
    b.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key(i: u16) -> FlowKey {
        FlowKey {
            proto: wire::IpProtocol::Udp,
            src: "100.64.0.2".parse().unwrap(),
            dst: "198.18.3.1".parse().unwrap(),
            src_port: 1000 + i,
            dst_port: 53,
        }
    }

    #[test]
    fn paft_rules_default_pending_handover() {
        let t = Tables::new(16);
        let k = key(1);
        assert_eq!(t.route(&k, Dir::Up, 10), Route::Miss);
        assert_eq!(t.insert_new(k, PENDING), Ok(true));
        assert_eq!(t.insert_new(k, PENDING), Ok(false));
        assert_eq!(t.route(&k, Dir::Up, 10), Route::Pending);
        t.resolve_pending(&k);
        assert_eq!(t.route(&k, Dir::Up, 10), Route::Default);
        t.set_flow(k, Some(7));
        assert_eq!(t.route(&k, Dir::Up, 10), Route::Tunnel(7));
        // Handover: next lookup sees the new tunnel.
        t.set_flow(k, Some(8));
        assert_eq!(t.route(&k, Dir::Up, 10), Route::Tunnel(8));
        // resolve_pending does not override a decision.
        t.resolve_pending(&k);
        assert_eq!(t.route(&k, Dir::Up, 10), Route::Tunnel(8));
        // Each direction has its own counters; a look-up alone counts nothing.
        assert_eq!(t.route(&k, Dir::Down, 300), Route::Tunnel(8));
        t.count(&k, Dir::Down, 700);
        assert_eq!(t.lookup(&k), Route::Tunnel(8));
        t.count(&key(9), Dir::Down, 1);
        assert_eq!(t.lookup(&key(9)), Route::Miss, "count never inserts");
        let f = t.flows(10);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].up, f[0].down, f[0].tunnel),
            ((5, 50), (2, 1000), Some(8))
        );
        t.unroute_tunnel(8);
        assert_eq!(t.route(&k, Dir::Up, 1), Route::Default);
        t.remove_flow(&k);
        assert_eq!(t.route(&k, Dir::Up, 1), Route::Miss);
    }

    #[test]
    fn paft_learn_and_cap() {
        let t = Tables::new(2);
        assert!(t.learn(key(1), 1, 100).is_ok());
        assert!(t.learn(key(2), 1, 100).is_ok());
        assert!(t.learn(key(3), 1, 100).is_err());
        assert_eq!(t.insert_new(key(3), NO_TUNNEL), Err(()));
        // Re-learning an existing flow on another tunnel always works.
        assert!(t.learn(key(1), 2, 100).is_ok());
        assert_eq!(t.route(&key(1), Dir::Up, 0), Route::Tunnel(2));
        t.remove_flows_of("100.64.0.2".parse().unwrap());
        assert_eq!(t.flow_count(), 0);
    }

    #[test]
    fn paft_against_hashmap_oracle() {
        // Differential: random op sequences against a HashMap oracle.
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(
                &proptest::collection::vec((0u8..4, 0u16..8, 0u32..3), 0..64),
                |ops| {
                    let t = Tables::new(1000);
                    let mut oracle: HashMap<FlowKey, u32> = HashMap::new();
                    for (op, k, tun) in ops {
                        let k = key(k);
                        match op {
                            0 => {
                                t.set_flow(k, Some(tun));
                                oracle.insert(k, tun);
                            }
                            1 => {
                                t.learn(k, tun, 1).unwrap();
                                oracle.insert(k, tun);
                            }
                            2 => {
                                t.remove_flow(&k);
                                oracle.remove(&k);
                            }
                            _ => {
                                t.unroute_tunnel(tun);
                                for v in oracle.values_mut() {
                                    if *v == tun {
                                        *v = NO_TUNNEL;
                                    }
                                }
                            }
                        }
                    }
                    for i in 0..8 {
                        let k = key(i);
                        let want = match oracle.get(&k) {
                            None => Route::Miss,
                            Some(&NO_TUNNEL) => Route::Default,
                            Some(&v) => Route::Tunnel(v),
                        };
                        prop_assert_eq!(t.route(&k, Dir::Up, 0), want);
                    }
                    Ok(())
                },
            )
            .unwrap();
    }

    #[test]
    fn move_flows_and_remove_tunnel() {
        let t = Tables::new(10);
        t.set_flow(key(1), Some(1));
        t.set_flow(key(2), Some(2));
        t.set_flow(key(3), None);
        t.move_flows(Some(1), 3);
        assert_eq!(t.route(&key(1), Dir::Up, 0), Route::Tunnel(3));
        assert_eq!(t.route(&key(2), Dir::Up, 0), Route::Tunnel(2));
        t.move_flows(None, 4);
        for i in 1..4 {
            assert_eq!(t.route(&key(i), Dir::Up, 0), Route::Tunnel(4));
        }
        let remote: SocketAddr = "198.18.0.1:4000".parse().unwrap();
        t.add_tunnel(Tunnel::new(4, TunnelSocket::Shared, remote, remote));
        t.set_default(Some(4));
        assert_eq!(t.tunnel_by_remote(&remote), Some(4));
        assert!(t.remove_tunnel(4).is_some());
        assert_eq!(t.tunnel_by_remote(&remote), None);
        assert_eq!(t.default_tunnel(), None);
        assert_eq!(t.route(&key(1), Dir::Up, 0), Route::Default);
        // Re-adding an id with a new remote (NAT rebinding) moves the lookup.
        let r2: SocketAddr = "198.18.0.1:4001".parse().unwrap();
        t.add_tunnel(Tunnel::new(5, TunnelSocket::Shared, remote, remote));
        t.add_tunnel(Tunnel::new(5, TunnelSocket::Shared, remote, r2));
        assert_eq!(t.tunnel_by_remote(&remote), None);
        assert_eq!(t.tunnel_by_remote(&r2), Some(5));
    }

    #[test]
    fn expiry_by_coarse_clock() {
        let t = Tables::new(10);
        t.set_flow(key(1), Some(1));
        t.set_flow(key(2), Some(1));
        assert!(t.expire_flows(std::time::Duration::from_secs(5)).is_empty());
        t.tick(t.epoch + std::time::Duration::from_secs(10));
        // key(2) sees a packet at t=10.
        assert_eq!(t.route(&key(2), Dir::Up, 1), Route::Tunnel(1));
        let gone = t.expire_flows(std::time::Duration::from_secs(5));
        assert_eq!(gone, vec![key(1)]);
        assert_eq!(t.route(&key(1), Dir::Up, 1), Route::Miss);
    }

    #[test]
    fn hosts_bind_unbind() {
        let t = Tables::new(10);
        let vipa: IpAddr = "100.64.0.2".parse().unwrap();
        t.bind_host(1, vipa, vec![10, 11]);
        assert_eq!(t.host_by_tunnel(11).unwrap().vipa, vipa);
        assert_eq!(t.host_by_vipa(&vipa).unwrap().id, 1);
        t.learn(key(1), 10, 1).unwrap();
        t.unbind_host(1);
        assert!(t.host_by_tunnel(10).is_none());
        assert!(t.host_by_vipa(&vipa).is_none());
        assert_eq!(t.flow_count(), 0);
    }

    #[test]
    fn shard_for_is_symmetric_and_in_range() {
        for n in 1..5 {
            for i in 0..50 {
                let k = key(i);
                let s = shard_for(&k, n);
                assert!(s < n);
                assert_eq!(s, shard_for(&k.reversed(), n));
            }
        }
        // Spreads over shards.
        let hit: std::collections::HashSet<usize> =
            (0..100).map(|i| shard_for(&key(i), 2)).collect();
        assert_eq!(hit.len(), 2);
    }
}
