//! The mapping tables: lock-free lookups, the locked slow path (creation, removal, expiry),
//! port allocation, filtering permissions and the fragment table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use papaya::Guard;

use crate::config::{ConfigError, Filtering, NatConfig};
use crate::hash::{fmix64, KeyHashState};
use crate::mapping::{
    InEntry, Key, Mapping, MappingInfo, OutEntry, PermKey, Proto, Remote, TcpState,
};
use crate::verdict::{CounterSnapshot, Counters, DropReason, Verdict};

pub(crate) type PMap<K, V> = papaya::HashMap<K, V, KeyHashState>;

/// Granularity of the expiry timer queue.
const BUCKET_MS: u64 = 1000;
/// Mappings examined per hold of the slow-path lock in [`Nat::expire`].
const EXPIRE_BATCH: usize = 4096;
/// Random probes tried by the port allocator before it scans the range.
const RANDOM_PROBES: usize = 64;

/// The anchor's NAT: translation tables plus the rewrite functions (see the crate docs).
///
/// `Nat` is `Send + Sync`; share it between shards with an `Arc`. Every method takes
/// `&self`. The per-packet methods never block on a lock for packets of existing mappings.
pub struct Nat {
    pub(crate) cfg: NatConfig,
    epoch: OnceLock<Instant>,
    /// `(proto, VIPA, port)` -> mapping.
    pub(crate) out: PMap<Key, OutEntry>,
    /// `(proto, public address, port)` -> mapping.
    pub(crate) inb: PMap<Key, InEntry>,
    /// Filtering permissions beyond each mapping's first remote. A permission lives as long
    /// as its mapping (RFC 4787 §5 ties filtering to the mapping, not to a timer of its own).
    perms: PMap<PermKey, ()>,
    /// Fragment tracking.
    frags: PMap<FragKey, FragEntry>,
    frag_count: AtomicUsize,
    slow: Mutex<Slow>,
    live: AtomicUsize,
    pub(crate) counters: Counters,
    /// The public addresses as sorted integers, and their span, for a quick membership test.
    public_sorted: Vec<u32>,
    public_span: (u32, u32),
}

/// State behind the slow-path lock.
#[derive(Debug, Default)]
struct Slow {
    /// VIPA -> outbound keys of its mappings.
    hosts: HashMap<Ipv4Addr, HashSet<Key>>,
    /// Mapping (inbound key) -> remotes with a permission besides its first one.
    perm_lists: HashMap<Key, Vec<Remote>>,
    /// Timer queue: bucket (deadline in seconds, rounded up) -> mappings filed there.
    wheel: BTreeMap<u64, Vec<Arc<Mapping>>>,
    /// Timer-queue entries that no longer count (mapping removed with its host, or filed
    /// again at an earlier deadline). When they outnumber the live mappings the queue is
    /// compacted, so removed hosts' mappings do not linger in memory until their deadline
    /// (up to 2 h 4 min for TCP).
    wheel_garbage: usize,
    rng: u64,
}

impl Slow {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn schedule(&mut self, m: Arc<Mapping>, deadline_ms: u64) {
        let bucket = deadline_ms.div_ceil(BUCKET_MS);
        m.sched.store(bucket, Ordering::Relaxed);
        self.wheel.entry(bucket).or_default().push(m);
    }
}

/// Key of a fragmented datagram: `(direction, src, dst, proto, ident)` of the packet as it
/// arrived (RFC 791 §3.2: fragments of one datagram share these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey(u128);

impl FragKey {
    pub(crate) fn new(inbound: bool, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ident: u16) -> Self {
        FragKey(
            u128::from(inbound) << 120
                | u128::from(u32::from(src)) << 64
                | u128::from(u32::from(dst)) << 32
                | u128::from(proto) << 16
                | u128::from(ident),
        )
    }
}

/// What to do with the later fragments of a datagram: the addresses its first fragment got.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FragEntry {
    pub(crate) created_ms: u64,
    pub(crate) new_src: Ipv4Addr,
    pub(crate) new_dst: Ipv4Addr,
    pub(crate) verdict: Verdict,
}

impl Nat {
    /// Creates an empty NAT. Fails if the configuration breaks an RFC minimum.
    pub fn new(cfg: NatConfig) -> Result<Nat, ConfigError> {
        cfg.validate()?;
        // One reclamation domain for every map, so one guard serves all lookups of a packet.
        let shared = Arc::new(seize::Collector::new());
        let hs = KeyHashState(fmix64(cfg.seed ^ 0x6e61_745f_7461_626c));
        let build = |cap: usize| (cap, hs, shared.clone());
        let (c, h, s) = build(1024);
        let out = papaya::HashMap::builder()
            .resize_mode(papaya::ResizeMode::Blocking)
            .hasher(h)
            .capacity(c)
            .shared_collector(s)
            .build();
        let (c, h, s) = build(1024);
        let inb = papaya::HashMap::builder()
            .resize_mode(papaya::ResizeMode::Blocking)
            .hasher(h)
            .capacity(c)
            .shared_collector(s)
            .build();
        let (_, h, s) = build(0);
        let perms = papaya::HashMap::builder()
            .resize_mode(papaya::ResizeMode::Blocking)
            .hasher(h)
            .capacity(if cfg.filtering == Filtering::EndpointIndependent {
                0
            } else {
                1024
            })
            .shared_collector(s)
            .build();
        let (_, h, s) = build(0);
        let frags = papaya::HashMap::builder()
            .resize_mode(papaya::ResizeMode::Blocking)
            .hasher(h)
            .capacity(64)
            .shared_collector(s)
            .build();
        let rng = fmix64(cfg.seed ^ 0x706f_7274) | 1;
        let mut public_sorted: Vec<u32> = cfg.public_addrs.iter().map(|a| u32::from(*a)).collect();
        public_sorted.sort_unstable();
        public_sorted.dedup();
        let public_span = (
            public_sorted.first().copied().unwrap_or(0),
            public_sorted.last().copied().unwrap_or(0),
        );
        Ok(Nat {
            cfg,
            epoch: OnceLock::new(),
            out,
            inb,
            perms,
            frags,
            frag_count: AtomicUsize::new(0),
            slow: Mutex::new(Slow {
                rng,
                ..Slow::default()
            }),
            live: AtomicUsize::new(0),
            counters: Counters::default(),
            public_sorted,
            public_span,
        })
    }
}

impl Nat {
    /// The configuration.
    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// Number of live mappings.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// `true` if no mapping is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the counters.
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Milliseconds since the NAT's epoch (the first `now` it was given).
    #[inline]
    pub(crate) fn now_ms(&self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_init(|| now);
        u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX / 2)
    }

    pub(crate) fn guard(&self) -> impl Guard + '_ {
        self.out.guard()
    }

    fn lock_slow(&self) -> MutexGuard<'_, Slow> {
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The public address of a host: "Paired" pooling (RFC 4787 REQ-2), by a hash of its VIPA.
    pub(crate) fn public_for(&self, vipa: Ipv4Addr) -> Ipv4Addr {
        let addrs = &self.cfg.public_addrs;
        if addrs.len() == 1 {
            return addrs.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        }
        let h = fmix64(self.cfg.seed ^ u64::from(u32::from(vipa)));
        let i = usize::try_from(h % addrs.len() as u64).unwrap_or(0);
        addrs.get(i).copied().unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// `true` if `addr` is one of the NAT's public addresses.
    #[inline]
    pub(crate) fn is_public(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        // most outbound destinations are outside the pool's span: two compares
        a >= self.public_span.0
            && a <= self.public_span.1
            && self.public_sorted.binary_search(&a).is_ok()
    }

    /// The live mapping for an outbound key, or `None` (lock-free).
    #[inline]
    pub(crate) fn lookup_out<'g>(&self, key: Key, guard: &'g impl Guard) -> Option<&'g OutEntry> {
        self.out.get(&key, guard)
    }

    /// The inbound entry for an inbound key, or `None` (lock-free).
    ///
    /// A mapping is usable inbound until [`Nat::expire`] removes it (at most one expiry
    /// period after its deadline), so the inbound path reads no timestamp.
    #[inline]
    pub(crate) fn lookup_in<'g>(&self, key: Key, guard: &'g impl Guard) -> Option<&'g InEntry> {
        self.inb.get(&key, guard)
    }

    /// The outbound mapping for `(proto, vipa, vport)`, refreshed, created if missing.
    ///
    /// Fast path: one lock-free lookup and (at most once a second) an atomic `fetch_max`.
    /// Slow path (no mapping yet, or it was just expired): takes the slow-path lock.
    #[inline]
    pub(crate) fn outbound_mapping<'g>(
        &self,
        now_ms: u64,
        proto: Proto,
        (vipa, vport): (Ipv4Addr, u16),
        init: TcpState,
        remote: Remote,
        guard: &'g impl Guard,
    ) -> Result<&'g OutEntry, DropReason> {
        let key = Key::new(proto, vipa, vport);
        if let Some(e) = self.lookup_out(key, guard) {
            if e.stamp.touch(now_ms) {
                return Ok(e);
            }
        }
        self.create(now_ms, key, proto, (vipa, vport), (init, remote), guard)
    }

    #[cold]
    fn create<'g>(
        &self,
        now_ms: u64,
        key: Key,
        proto: Proto,
        (vipa, vport): (Ipv4Addr, u16),
        (init, remote): (TcpState, Remote),
        guard: &'g impl Guard,
    ) -> Result<&'g OutEntry, DropReason> {
        let mut slow = self.lock_slow();
        // Another shard may have created it while we waited for the lock.
        if let Some(e) = self.out.get(&key, guard) {
            if e.stamp.touch(now_ms) {
                return Ok(e);
            }
        }
        // RFC 6888 REQ-4: per-subscriber limit; then the global limit.
        let held = slow.hosts.get(&vipa).map_or(0, HashSet::len);
        if held >= self.cfg.max_mappings_per_host {
            return Err(DropReason::HostCapReached);
        }
        if self.live.load(Ordering::Relaxed) >= self.cfg.max_mappings {
            return Err(DropReason::GlobalCapReached);
        }
        let public = self.public_for(vipa);
        let pport = self
            .allocate(&mut slow, proto, public, vport, guard)
            .ok_or(DropReason::PortsExhausted)?;
        let m = Arc::new(Mapping::new(
            proto,
            (vipa, vport),
            (public, pport),
            now_ms,
            init,
            remote,
        ));
        self.inb.insert(m.in_key(), InEntry::new(m.clone()), guard);
        self.out
            .insert(key, OutEntry::new(m.clone(), now_ms), guard);
        slow.hosts.entry(vipa).or_default().insert(key);
        self.live.fetch_add(1, Ordering::Relaxed);
        let deadline = m.deadline_ms(now_ms, &self.cfg.timeouts);
        slow.schedule(m, deadline);
        self.counters.created();
        drop(slow);
        self.out.get(&key, guard).ok_or(DropReason::NoMapping)
    }

    /// Picks a free public port (or ICMP identifier) on `public` for a host port `want`.
    ///
    /// RFC 4787 REQ-3/REQ-4 and RFC 5382 REQ-1: port preservation when `want` is in range and
    /// free, else a random port of the same parity ("Port parity preservation" RECOMMENDED),
    /// else any free port; never port overloading. Runs under the slow-path lock, which also
    /// guards every insertion into the inbound table, so "free" stays true until we insert.
    fn allocate(
        &self,
        slow: &mut Slow,
        proto: Proto,
        public: Ipv4Addr,
        want: u16,
        guard: &impl Guard,
    ) -> Option<u16> {
        let lo = u32::from(*self.cfg.port_range.start());
        let hi = u32::from(*self.cfg.port_range.end());
        let span = hi - lo + 1;
        let free = |p: u32| -> Option<u16> {
            let p = u16::try_from(p).ok()?;
            (!self.inb.contains_key(&Key::new(proto, public, p), guard)).then_some(p)
        };
        let want32 = u32::from(want);
        if (lo..=hi).contains(&want32) {
            if let Some(p) = free(want32) {
                return Some(p);
            }
        }
        let parity = want32 & 1;
        for _ in 0..RANDOM_PROBES {
            let r = u32::try_from(slow.next_rand() % u64::from(span)).unwrap_or(0);
            let mut p = lo + r;
            if p & 1 != parity {
                p = if p < hi {
                    p + 1
                } else {
                    p.saturating_sub(1).max(lo)
                };
            }
            if let Some(p) = free(p) {
                return Some(p);
            }
        }
        let start = u32::try_from(slow.next_rand() % u64::from(span)).unwrap_or(0);
        for same_parity in [true, false] {
            for i in 0..span {
                let p = lo + (start + i) % span;
                if same_parity && p & 1 != parity {
                    continue;
                }
                if let Some(p) = free(p) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Removes a dead mapping from every structure. Slow-path lock held by the caller.
    fn unlink(&self, slow: &mut Slow, m: &Arc<Mapping>, guard: &impl Guard) {
        let key = m.out_key();
        if self
            .out
            .get(&key, guard)
            .is_some_and(|x| Arc::ptr_eq(&x.m, m))
        {
            self.out.remove(&key, guard);
        }
        let ikey = m.in_key();
        if self
            .inb
            .get(&ikey, guard)
            .is_some_and(|x| Arc::ptr_eq(&x.m, m))
        {
            self.inb.remove(&ikey, guard);
        }
        self.clear_permissions(slow, m, guard);
        if let Some(set) = slow.hosts.get_mut(&m.vipa) {
            set.remove(&key);
            if set.is_empty() {
                slow.hosts.remove(&m.vipa);
            }
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Files a mapping again after its timeout got shorter (TCP FIN or RST seen).
    /// Takes the slow-path lock: this happens once per connection close, like creation.
    #[cold]
    pub(crate) fn reschedule(&self, m: &Arc<Mapping>) {
        let guard = self.guard();
        let mut slow = self.lock_slow();
        if m.is_dead() {
            return;
        }
        let Some(seen) = self.seen(m, &guard) else {
            return;
        };
        let deadline = m.deadline_ms(seen, &self.cfg.timeouts);
        let bucket = deadline.div_ceil(BUCKET_MS);
        if bucket < m.sched.load(Ordering::Relaxed) {
            slow.schedule(m.clone(), deadline);
            slow.wheel_garbage += 1; // the entry in the later bucket is stale now
            self.maybe_compact(&mut slow);
        }
    }

    /// Last refresh of a live mapping, either direction (slow-path lock held).
    fn seen(&self, m: &Arc<Mapping>, guard: &impl Guard) -> Option<u64> {
        let e = self
            .out
            .get(&m.out_key(), guard)
            .filter(|e| Arc::ptr_eq(&e.m, m))?;
        let (o, i) = e.seen();
        Some(o.max(i))
    }

    /// Drops stale timer-queue entries once they outnumber the live mappings (and 4096):
    /// a pass over the queue, paid for by at least as many removals before it.
    fn maybe_compact(&self, slow: &mut Slow) {
        if slow.wheel_garbage <= EXPIRE_BATCH.max(self.len()) {
            return;
        }
        for (bucket, list) in slow.wheel.iter_mut() {
            list.retain(|m| !m.is_dead() && m.sched.load(Ordering::Relaxed) == *bucket);
        }
        slow.wheel.retain(|_, list| !list.is_empty());
        slow.wheel_garbage = 0;
    }

    /// Timer-queue entries (live and stale), for tests.
    #[cfg(test)]
    fn wheel_entries(&self) -> usize {
        self.lock_slow().wheel.values().map(Vec::len).sum()
    }

    /// Removes every mapping whose idle timeout has passed, and stale fragment state.
    /// Returns the number of mappings removed.
    ///
    /// Call it periodically (e.g. once a second) from the control thread. Cost: proportional
    /// to the mappings whose deadline bucket has come (a timer queue of one-second buckets),
    /// never a scan of the whole table. A mapping refreshed since it was filed is filed again
    /// at its new deadline (lazy rescheduling: refreshes on the hot path stay one atomic store).
    pub fn expire(&self, now: Instant) -> usize {
        let now_ms = self.now_ms(now);
        let guard = self.guard();
        let now_bucket = now_ms / BUCKET_MS;
        let mut removed = 0usize;
        // The lock is released every EXPIRE_BATCH mappings so that a mass expiry (say 1M
        // mappings created in the same second) never stalls flow creation on the shards.
        'batches: loop {
            let mut slow = self.lock_slow();
            let mut budget = EXPIRE_BATCH;
            loop {
                let Some(mut entry) = slow.wheel.first_entry() else {
                    break 'batches;
                };
                let bucket = *entry.key();
                if bucket > now_bucket {
                    break 'batches;
                }
                if budget == 0 {
                    continue 'batches;
                }
                let take = budget.min(entry.get().len());
                let len = entry.get().len();
                let batch: Vec<Arc<Mapping>> = entry.get_mut().drain(len - take..).collect();
                if entry.get().is_empty() {
                    entry.remove();
                }
                budget -= take;
                for m in batch {
                    if m.sched.load(Ordering::Relaxed) != bucket || m.is_dead() {
                        // stale entry: filed elsewhere since, or already removed
                        slow.wheel_garbage = slow.wheel_garbage.saturating_sub(1);
                        continue;
                    }
                    let Some(e) = self
                        .out
                        .get(&m.out_key(), &guard)
                        .filter(|e| Arc::ptr_eq(&e.m, &m))
                    else {
                        continue; // not in the table (cannot happen while alive)
                    };
                    let (seen_out, seen_in) = e.seen();
                    let mut deadline = m.deadline_ms(seen_out.max(seen_in), &self.cfg.timeouts);
                    if deadline <= now_ms {
                        // Kill the outbound stamp first (an outbound packet then takes the
                        // slow path and waits for this lock), then the inbound one; if an
                        // inbound TCP segment refreshed it meanwhile, undo.
                        if e.stamp.kill_if_unchanged(seen_out) {
                            if m.kill_if_unchanged(seen_in) {
                                self.unlink(&mut slow, &m, &guard);
                                removed += 1;
                                continue;
                            }
                            e.stamp.restore(seen_out);
                        }
                        // refreshed concurrently: keep it
                        let (o, i) = e.seen();
                        deadline = m.deadline_ms(o.max(i), &self.cfg.timeouts);
                    }
                    slow.schedule(m, deadline.max(now_ms + 1));
                }
            }
        }
        self.expire_fragments(now_ms, &guard);
        self.counters.expired(removed as u64);
        removed
    }

    /// When [`Nat::expire`] next has work, if any mapping is live (for `poll_timeout`).
    pub fn next_expiry(&self) -> Option<Instant> {
        let epoch = *self.epoch.get()?;
        let slow = self.lock_slow();
        let (bucket, _) = slow.wheel.first_key_value()?;
        epoch.checked_add(Duration::from_millis(bucket.saturating_mul(BUCKET_MS)))
    }

    /// Drops every mapping of a host (its association ended). Returns how many.
    pub fn remove_host(&self, vipa: Ipv4Addr) -> usize {
        let guard = self.guard();
        let mut slow = self.lock_slow();
        let Some(keys) = slow.hosts.remove(&vipa) else {
            return 0;
        };
        let mut n = 0;
        for key in keys {
            if let Some(e) = self.out.get(&key, &guard) {
                e.stamp.kill();
                let m = e.m.clone();
                m.kill();
                self.unlink(&mut slow, &m, &guard);
                slow.wheel_garbage += 1;
                n += 1;
            }
        }
        self.maybe_compact(&mut slow);
        self.counters.removed(n as u64);
        n
    }

    /// The live mappings of a host, sorted. Takes the slow-path lock (control plane only).
    pub fn mappings_for(&self, vipa: Ipv4Addr) -> Vec<MappingInfo> {
        let guard = self.guard();
        let slow = self.lock_slow();
        let mut v: Vec<MappingInfo> = slow
            .hosts
            .get(&vipa)
            .into_iter()
            .flatten()
            .filter_map(|k| self.out.get(k, &guard))
            .map(|e| e.m.info())
            .collect();
        drop(slow);
        v.sort_by_key(|i| (i.proto, i.vport));
        v
    }

    /// The mapping of one host endpoint, if live (lock-free; for tests and diagnostics).
    pub fn lookup(&self, proto: Proto, vipa: Ipv4Addr, vport: u16) -> Option<MappingInfo> {
        let guard = self.guard();
        self.lookup_out(Key::new(proto, vipa, vport), &guard)
            .filter(|e| !e.m.is_dead())
            .map(|e| e.m.info())
    }

    // ---- filtering (RFC 4787 §5, and RFC 5382 for TCP) ----

    /// The remote endpoint as the filtering mode sees it.
    #[inline]
    pub(crate) fn filter_remote(&self, proto: Proto, addr: Ipv4Addr, port: u16) -> Remote {
        match self.cfg.filtering {
            Filtering::AddressAndPortDependent if proto != Proto::Icmp => Remote::new(addr, port),
            _ => Remote::new(addr, 0),
        }
    }

    /// Records that the host sent to `remote` through `m` (outbound packet).
    #[inline]
    pub(crate) fn permit(&self, proto: Proto, e: &OutEntry, remote: Remote, guard: &impl Guard) {
        if self.cfg.filtering == Filtering::EndpointIndependent || remote == e.first_remote {
            return;
        }
        let pk = PermKey::new(Key::new(proto, e.public, e.pport), remote);
        if !self.perms.contains_key(&pk, guard) {
            self.add_permission(&e.m, pk, remote, guard);
        }
    }

    /// Slow path of [`Nat::permit`] (a new remote for an existing mapping): takes the
    /// slow-path lock, like creation.
    #[cold]
    fn add_permission(&self, m: &Mapping, pk: PermKey, remote: Remote, guard: &impl Guard) {
        // unlink() kills and drains a mapping under this lock, so a permission added here
        // is either seen by it or not added at all.
        let mut slow = self.lock_slow();
        if m.is_dead() || self.perms.contains_key(&pk, guard) {
            return;
        }
        let ikey = m.in_key();
        let list = slow.perm_lists.entry(ikey).or_default();
        if list.len() >= self.cfg.max_permissions_per_mapping.max(1) {
            // forget the oldest remote
            let r = list.remove(0);
            self.perms.remove(&PermKey::new(ikey, r), guard);
        }
        list.push(remote);
        self.perms.insert(pk, (), guard);
    }

    /// May `remote` send to the mapping of inbound entry `e`? (inbound packet)
    #[inline]
    pub(crate) fn permitted(
        &self,
        ikey: Key,
        e: &InEntry,
        remote: Remote,
        guard: &impl Guard,
    ) -> bool {
        self.cfg.filtering == Filtering::EndpointIndependent
            || remote == e.first_remote
            || self.perms.contains_key(&PermKey::new(ikey, remote), guard)
    }

    fn clear_permissions(&self, slow: &mut Slow, m: &Mapping, guard: &impl Guard) {
        let ikey = m.in_key();
        let list = slow.perm_lists.remove(&ikey).unwrap_or_default();
        for r in list {
            self.perms.remove(&PermKey::new(ikey, r), guard);
        }
    }

    // ---- fragments (RFC 791 §3.2) ----

    /// Remembers how the first fragment of a datagram was translated.
    pub(crate) fn track_fragment(&self, key: FragKey, entry: FragEntry, guard: &impl Guard) {
        if self.frag_count.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_fragments {
            self.frag_count.fetch_sub(1, Ordering::Relaxed);
            self.counters.fragment_untracked();
            return;
        }
        if self.frags.insert(key, entry, guard).is_some() {
            // replaced an older entry with the same key: the count did not grow
            self.frag_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// How the first fragment of this datagram was translated, if known and fresh.
    #[inline]
    pub(crate) fn fragment(
        &self,
        key: FragKey,
        now_ms: u64,
        guard: &impl Guard,
    ) -> Option<FragEntry> {
        let timeout = u64::try_from(self.cfg.fragment_timeout.as_millis()).unwrap_or(u64::MAX / 2);
        self.frags
            .get(&key, guard)
            .filter(|e| now_ms <= e.created_ms.saturating_add(timeout))
            .copied()
    }

    /// Drops stale fragment state: a scan of the (small, bounded) fragment table only.
    fn expire_fragments(&self, now_ms: u64, guard: &impl Guard) {
        if self.frag_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let timeout = u64::try_from(self.cfg.fragment_timeout.as_millis()).unwrap_or(u64::MAX / 2);
        let stale: Vec<FragKey> = self
            .frags
            .iter(guard)
            .filter(|(_, e)| now_ms > e.created_ms.saturating_add(timeout))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if self.frags.remove(&k, guard).is_some() {
                self.frag_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl std::fmt::Debug for Nat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nat")
            .field("public_addrs", &self.cfg.public_addrs)
            .field("filtering", &self.cfg.filtering)
            .field("mappings", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(src: Ipv4Addr, sport: u16) -> [u8; 28] {
        let mut p = [0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&[198, 18, 3, 1]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p[24..26].copy_from_slice(&8u16.to_be_bytes());
        p
    }

    #[test]
    fn removed_hosts_do_not_linger_in_the_timer_queue() {
        let mut c = NatConfig::new(vec![Ipv4Addr::new(198, 18, 2, 100)]);
        c.max_mappings_per_host = 100_000;
        let nat = Nat::new(c).unwrap();
        let t0 = Instant::now();
        for round in 0..3u8 {
            let host = Ipv4Addr::new(100, 64, 9, round);
            for port in 0..5000u16 {
                let mut p = udp(host, 10_000 + port);
                assert_eq!(
                    nat.translate_outbound(t0, host, &mut p),
                    Verdict::ToInternet
                );
            }
            assert_eq!(nat.remove_host(host), 5000);
        }
        assert!(nat.is_empty());
        // compacted once garbage passed max(4096, live): at most one host's worth remains
        assert!(nat.wheel_entries() <= 5000, "{}", nat.wheel_entries());
        assert_eq!(nat.expire(t0 + Duration::from_secs(3600)), 0);
        assert_eq!(nat.wheel_entries(), 0);
    }
}
