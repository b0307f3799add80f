//! The classifier: flow -> socket (sock_diag) -> application (cgroup, else process), with
//! the caches that keep the `/proc` scan off the common path.
//!
//! Per flow (see the crate doc for the order of the steps):
//! - one sock_diag exact lookup (a few microseconds; always done: it is how we learn the
//!   socket, and sockets are new for new flows);
//! - cgroup id -> application: a map, rescanned only for a never-seen id;
//! - else socket inode -> pid: a map filled by `/proc` scans; on a miss, first the fd tables
//!   of the last 16 socket owners (a running program opening one more connection), then
//!   one full scan (rate limited by a token bucket; an inode no scan could find is
//!   remembered for `negative_ttl`), which also caches every other socket it saw;
//! - pid -> name: cached for `name_ttl` (a process may exec another program).
//!
//! Nothing runs in the background: with no new flows, the classifier does no work at all.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cgroup::{self, AppCgroups};
use crate::diag::SockInfo;
use crate::procfs::{self, ScanStats};
use crate::sock::DiagSocket;
use crate::Flow;

/// Largest number of cached socket inodes / names / negative entries before a cache is
/// cleared (bounded state).
const MAX_CACHE: usize = 65_536;
/// Recent socket owners whose fds are read before a full `/proc` scan.
const RECENT_OWNERS: usize = 16;

/// How an untagged process is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameSource {
    /// Basename of `/proc/PID/exe` (not truncated, not settable by the process), falling
    /// back to `comm` when unreadable.
    #[default]
    Exe,
    /// `/proc/PID/comm` (15 bytes at most, changed by `prctl(PR_SET_NAME)`).
    Comm,
}

/// Classifier settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// cgroup2 mount point; `None`: found in `/proc/self/mountinfo` (and when there is none,
    /// e.g. under `ip netns exec`, applications are recognised from `/proc/PID/cgroup`).
    pub cgroup_mount: Option<PathBuf>,
    /// How untagged processes are named.
    pub name_source: NameSource,
    /// How long an inode that no `/proc` scan found is not looked for again.
    pub negative_ttl: Duration,
    /// How long a pid's name is trusted.
    pub name_ttl: Duration,
    /// `/proc` scans allowed per second on average.
    pub scans_per_sec: u32,
    /// `/proc` scans allowed back to back.
    pub scan_burst: u32,
    /// The proc file system (`/proc`).
    pub proc_root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cgroup_mount: None,
            name_source: NameSource::Exe,
            negative_ttl: Duration::from_secs(2),
            name_ttl: Duration::from_secs(1),
            scans_per_sec: 20,
            scan_burst: 8,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// How the application was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The socket's cgroup id is an application cgroup (`upmt run --app NAME`).
    Cgroup,
    /// The owning process sits in an application cgroup (`/proc/PID/cgroup`), found through
    /// the socket inode (used when the cgroup mount is not visible).
    ProcCgroup,
    /// The owning process's executable name.
    Process,
}

/// The application a flow belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// Application name: the `--app` name, or the executable name.
    pub name: String,
    /// How it was found.
    pub source: Source,
    /// The owning process, when looked up (not needed when the cgroup names the app).
    pub pid: Option<u32>,
    /// The socket's owner.
    pub uid: u32,
    /// The socket's cgroup id, when the kernel reported it.
    pub cgroup_id: Option<u64>,
    /// The socket's inode.
    pub inode: u32,
}

/// Counters (monotonic), for `upmt status` and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flows asked about.
    pub flows: u64,
    /// Named by cgroup.
    pub by_cgroup: u64,
    /// Named through the process (inode cache hit or scan).
    pub by_process: u64,
    /// No local socket for the flow (forwarded traffic, raw sockets, a socket already gone).
    pub no_socket: u64,
    /// sock_diag errors.
    pub diag_errors: u64,
    /// Inode found in the cache.
    pub inode_hits: u64,
    /// Inode found among the fds of a recent owner (no full scan).
    pub recent_hits: u64,
    /// `/proc` scans done.
    pub scans: u64,
    /// Processes visited by scans.
    pub scanned_processes: u64,
    /// Misses answered by the negative cache (no scan).
    pub negative_hits: u64,
    /// Misses not scanned for because of the rate limit.
    pub rate_limited: u64,
    /// Sockets found but left unnamed (no owner found, inode 0, process gone).
    pub unnamed: u64,
}

/// What the classifier needs from the system; [`LiveHost`] is the real one, tests use
/// fakes.
pub trait Host {
    /// sock_diag exact lookup.
    fn lookup(&mut self, flow: &Flow) -> io::Result<Option<SockInfo>>;
    /// The application whose cgroup has this id.
    fn cgroup_app(&mut self, id: u64) -> Option<String>;
    /// Looks for `inode` among the fds of `pids` only; reports every socket seen.
    fn find_owner_in(
        &mut self,
        pids: &[u32],
        inode: u32,
        seen: &mut dyn FnMut(u32, u32),
    ) -> (Option<u32>, ScanStats);
    /// Scans for the process holding `inode`; reports every socket seen to `seen`.
    fn find_owner(
        &mut self,
        inode: u32,
        uid: u32,
        seen: &mut dyn FnMut(u32, u32),
    ) -> (Option<u32>, ScanStats);
    /// The application named by the process's cgroup, if any.
    fn process_app(&mut self, pid: u32) -> Option<String>;
    /// The process's name.
    fn process_name(&mut self, pid: u32, source: NameSource) -> Option<String>;
}

/// The real system: a sock_diag socket, the cgroup index and `/proc`.
#[derive(Debug)]
pub struct LiveHost {
    diag: DiagSocket,
    cgroups: AppCgroups,
    proc_root: PathBuf,
}

impl LiveHost {
    /// Opens the sock_diag socket (in the current network namespace) and finds the cgroup2
    /// mount when `cfg` does not name it.
    pub fn new(cfg: &Config) -> io::Result<Self> {
        let mount = match &cfg.cgroup_mount {
            Some(m) => Some(m.clone()),
            None => cgroup::cgroup2_mount().ok(),
        };
        Ok(LiveHost {
            diag: DiagSocket::new()?,
            cgroups: AppCgroups::new(mount.as_deref()),
            proc_root: cfg.proc_root.clone(),
        })
    }
}

impl Host for LiveHost {
    fn lookup(&mut self, flow: &Flow) -> io::Result<Option<SockInfo>> {
        self.diag.lookup(flow)
    }

    fn cgroup_app(&mut self, id: u64) -> Option<String> {
        self.cgroups.lookup(id).map(str::to_owned)
    }

    fn find_owner_in(
        &mut self,
        pids: &[u32],
        inode: u32,
        seen: &mut dyn FnMut(u32, u32),
    ) -> (Option<u32>, ScanStats) {
        procfs::find_socket_owner_in(&self.proc_root, pids, inode, seen)
    }

    fn find_owner(
        &mut self,
        inode: u32,
        uid: u32,
        seen: &mut dyn FnMut(u32, u32),
    ) -> (Option<u32>, ScanStats) {
        procfs::find_socket_owner(&self.proc_root, inode, uid, seen)
    }

    fn process_app(&mut self, pid: u32) -> Option<String> {
        procfs::cgroup_app(&self.proc_root, pid)
    }

    fn process_name(&mut self, pid: u32, source: NameSource) -> Option<String> {
        match source {
            NameSource::Exe => procfs::exe_name(&self.proc_root, pid)
                .or_else(|| procfs::comm(&self.proc_root, pid)),
            NameSource::Comm => procfs::comm(&self.proc_root, pid),
        }
    }
}

#[derive(Debug, Clone)]
struct Named {
    at: Instant,
    name: String,
    source: Source,
}

/// Flow classifier. Owned by one thread (it is `Send`, not shared): the daemon's control
/// thread, or a classifier thread fed by the data plane's "new flow" events.
#[derive(Debug)]
pub struct Classifier<H: Host = LiveHost> {
    host: H,
    cfg: Config,
    inode_pid: HashMap<u32, u32>,
    negative: HashMap<u32, Instant>,
    names: HashMap<u32, Named>,
    /// Processes that owned the latest sockets, most recent first (looked at before a full
    /// scan).
    recent: Vec<u32>,
    tokens: f64,
    refilled: Option<Instant>,
    stats: Stats,
}

impl Classifier<LiveHost> {
    /// A classifier on the real system.
    pub fn new(cfg: Config) -> io::Result<Self> {
        let host = LiveHost::new(&cfg)?;
        Ok(Classifier::with_host(cfg, host))
    }

    /// [`Classifier::classify_at`] now.
    pub fn classify(&mut self, flow: &Flow) -> Option<AppInfo> {
        self.classify_at(Instant::now(), flow)
    }
}

impl<H: Host> Classifier<H> {
    /// A classifier over any [`Host`].
    pub fn with_host(cfg: Config, host: H) -> Self {
        let tokens = f64::from(cfg.scan_burst);
        Classifier {
            host,
            cfg,
            inode_pid: HashMap::new(),
            negative: HashMap::new(),
            names: HashMap::new(),
            recent: Vec::new(),
            tokens,
            refilled: None,
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The host (tests inspect their fakes through it).
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The application owning `flow` (as it leaves the host: `src` = the local end, e.g.
    /// VIPA:port on `upmt0`), or `None` when no local socket owns it or it cannot be named
    /// (the flow then follows the default policy). `now` drives the caches only.
    pub fn classify_at(&mut self, now: Instant, flow: &Flow) -> Option<AppInfo> {
        self.stats.flows += 1;
        let sock = match self.host.lookup(flow) {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.stats.no_socket += 1;
                return None;
            }
            Err(_) => {
                self.stats.diag_errors += 1;
                return None;
            }
        };
        if let Some(name) = sock.cgroup_id.and_then(|id| self.host.cgroup_app(id)) {
            self.stats.by_cgroup += 1;
            return Some(AppInfo {
                name,
                source: Source::Cgroup,
                pid: None,
                uid: sock.uid,
                cgroup_id: sock.cgroup_id,
                inode: sock.inode,
            });
        }
        let named = self.owner(now, &sock).and_then(|pid| {
            let n = self.name(now, pid)?;
            Some((pid, n))
        });
        match named {
            Some((pid, n)) => {
                self.stats.by_process += 1;
                Some(AppInfo {
                    name: n.name,
                    source: n.source,
                    pid: Some(pid),
                    uid: sock.uid,
                    cgroup_id: sock.cgroup_id,
                    inode: sock.inode,
                })
            }
            None => {
                self.stats.unnamed += 1;
                None
            }
        }
    }

    /// The pid holding the socket: cache, else a rate-limited scan.
    fn owner(&mut self, now: Instant, sock: &SockInfo) -> Option<u32> {
        if sock.inode == 0 {
            return None;
        }
        if let Some(&pid) = self.inode_pid.get(&sock.inode) {
            self.stats.inode_hits += 1;
            self.on_owner(pid);
            return Some(pid);
        }
        // A process that owned sockets before (a long-running program opening one more
        // connection): read only its fds. Not rate limited: at most RECENT_OWNERS processes.
        if !self.recent.is_empty() {
            let cache = &mut self.inode_pid;
            let (pid, _) = self
                .host
                .find_owner_in(&self.recent, sock.inode, &mut |ino, pid| {
                    cache.insert(ino, pid);
                });
            if let Some(pid) = pid {
                self.stats.recent_hits += 1;
                self.on_owner(pid);
                return Some(pid);
            }
        }
        if let Some(&at) = self.negative.get(&sock.inode) {
            if now.saturating_duration_since(at) < self.cfg.negative_ttl {
                self.stats.negative_hits += 1;
                return None;
            }
        }
        if !self.take_token(now) {
            self.stats.rate_limited += 1;
            return None;
        }
        self.stats.scans += 1;
        if self.inode_pid.len() >= MAX_CACHE {
            self.inode_pid.clear();
        }
        let cache = &mut self.inode_pid;
        let (pid, scan) = self.host.find_owner(sock.inode, sock.uid, &mut |ino, pid| {
            cache.insert(ino, pid);
        });
        self.stats.scanned_processes += u64::from(scan.processes);
        if let Some(pid) = pid {
            self.on_owner(pid);
        } else {
            if self.negative.len() >= MAX_CACHE {
                self.negative.clear();
            }
            self.negative.insert(sock.inode, now);
        }
        pid
    }

    fn on_owner(&mut self, pid: u32) {
        self.recent.retain(|p| *p != pid);
        self.recent.insert(0, pid);
        self.recent.truncate(RECENT_OWNERS);
    }

    /// The name of `pid`: cached for `name_ttl`. A vanished process loses its cache
    /// entries.
    fn name(&mut self, now: Instant, pid: u32) -> Option<Named> {
        if let Some(n) = self.names.get(&pid) {
            if now.saturating_duration_since(n.at) < self.cfg.name_ttl {
                return Some(n.clone());
            }
        }
        let named = match self.host.process_app(pid) {
            Some(app) => Some((app, Source::ProcCgroup)),
            None => self
                .host
                .process_name(pid, self.cfg.name_source)
                .map(|n| (n, Source::Process)),
        };
        let Some((name, source)) = named else {
            self.names.remove(&pid);
            self.inode_pid.retain(|_, p| *p != pid);
            self.recent.retain(|p| *p != pid);
            return None;
        };
        if self.names.len() >= MAX_CACHE {
            self.names.clear();
        }
        let n = Named {
            at: now,
            name,
            source,
        };
        self.names.insert(pid, n.clone());
        Some(n)
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let burst = f64::from(self.cfg.scan_burst.max(1));
        if let Some(last) = self.refilled {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * f64::from(self.cfg.scans_per_sec)).min(burst);
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proto;

    /// A fake system: sockets by flow, processes with their fds.
    #[derive(Default)]
    struct Fake {
        sockets: HashMap<Flow, SockInfo>,
        cgroups: HashMap<u64, String>,
        /// pid -> (name, app cgroup, socket inodes)
        procs: HashMap<u32, (String, Option<String>, Vec<u32>)>,
        scans: u32,
        hint_scans: u32,
        name_reads: u32,
        diag_error: bool,
    }

    impl Host for Fake {
        fn lookup(&mut self, flow: &Flow) -> io::Result<Option<SockInfo>> {
            if self.diag_error {
                return Err(io::Error::other("boom"));
            }
            Ok(self.sockets.get(flow).copied())
        }
        fn cgroup_app(&mut self, id: u64) -> Option<String> {
            self.cgroups.get(&id).cloned()
        }
        fn find_owner_in(
            &mut self,
            pids: &[u32],
            inode: u32,
            seen: &mut dyn FnMut(u32, u32),
        ) -> (Option<u32>, ScanStats) {
            self.hint_scans += 1;
            for pid in pids {
                if let Some((_, _, inodes)) = self.procs.get(pid) {
                    for &i in inodes {
                        seen(i, *pid);
                    }
                    if inodes.contains(&inode) {
                        return (Some(*pid), ScanStats::default());
                    }
                }
            }
            (None, ScanStats::default())
        }
        fn find_owner(
            &mut self,
            inode: u32,
            _uid: u32,
            seen: &mut dyn FnMut(u32, u32),
        ) -> (Option<u32>, ScanStats) {
            self.scans += 1;
            let mut found = None;
            for (pid, (_, _, inodes)) in &self.procs {
                for &i in inodes {
                    seen(i, *pid);
                    if i == inode {
                        found = Some(*pid);
                    }
                }
            }
            (
                found,
                ScanStats {
                    processes: self.procs.len() as u32,
                    fds: 0,
                },
            )
        }
        fn process_app(&mut self, pid: u32) -> Option<String> {
            self.procs.get(&pid).and_then(|p| p.1.clone())
        }
        fn process_name(&mut self, pid: u32, _: NameSource) -> Option<String> {
            self.name_reads += 1;
            self.procs.get(&pid).map(|p| p.0.clone())
        }
    }

    fn flow(port: u16) -> Flow {
        Flow {
            proto: Proto::Tcp,
            src: ([100, 64, 0, 2], port).into(),
            dst: ([198, 18, 3, 1], 80).into(),
        }
    }

    fn sock(inode: u32, cg: Option<u64>) -> SockInfo {
        SockInfo {
            family: 2,
            state: 2,
            uid: 1000,
            inode,
            cgroup_id: cg,
        }
    }

    fn setup() -> (Classifier<Fake>, Instant) {
        let mut f = Fake::default();
        f.sockets.insert(flow(1), sock(11, Some(500)));
        f.sockets.insert(flow(2), sock(22, Some(1)));
        f.sockets.insert(flow(3), sock(33, Some(1)));
        f.sockets.insert(flow(4), sock(44, Some(1)));
        f.sockets.insert(flow(5), sock(0, None));
        f.cgroups.insert(500, "video".into());
        f.procs.insert(100, ("curl".into(), None, vec![22, 33]));
        f.procs
            .insert(200, ("iperf3".into(), Some("backup".into()), vec![55]));
        (Classifier::with_host(Config::default(), f), Instant::now())
    }

    #[test]
    fn cgroup_first_then_process() {
        let (mut c, t) = setup();
        let a = c.classify_at(t, &flow(1)).unwrap();
        assert_eq!(
            (a.name.as_str(), a.source, a.pid),
            ("video", Source::Cgroup, None)
        );
        assert_eq!(c.host().scans, 0);
        let b = c.classify_at(t, &flow(2)).unwrap();
        assert_eq!(
            (b.name.as_str(), b.source, b.pid),
            ("curl", Source::Process, Some(100))
        );
        assert_eq!((b.uid, b.inode, b.cgroup_id), (1000, 22, Some(1)));
        assert_eq!(c.host().scans, 1);
        // Inode 33 was cached by the same scan: no second scan, name cached too.
        let d = c.classify_at(t, &flow(3)).unwrap();
        assert_eq!(d.name, "curl");
        assert_eq!(c.host().scans, 1);
        assert_eq!(c.host().name_reads, 1);
        let s = c.stats();
        assert_eq!(
            (s.flows, s.by_cgroup, s.by_process, s.inode_hits),
            (3, 1, 2, 1)
        );
    }

    #[test]
    fn no_socket_and_errors() {
        let (mut c, t) = setup();
        assert_eq!(c.classify_at(t, &flow(9)), None);
        assert_eq!(c.stats().no_socket, 1);
        // inode 0 (no file): unnamed, no scan.
        assert_eq!(c.classify_at(t, &flow(5)), None);
        assert_eq!((c.stats().unnamed, c.host().scans), (1, 0));
        c.host.diag_error = true;
        assert_eq!(c.classify_at(t, &flow(1)), None);
        assert_eq!(c.stats().diag_errors, 1);
    }

    #[test]
    fn negative_cache_and_rate_limit() {
        let (mut c, t) = setup();
        // Inode 44 is held by no process: one scan, then the negative cache answers.
        assert_eq!(c.classify_at(t, &flow(4)), None);
        assert_eq!(c.host().scans, 1);
        for i in 0..10 {
            assert_eq!(
                c.classify_at(t + Duration::from_millis(i * 100), &flow(4)),
                None
            );
        }
        assert_eq!(c.host().scans, 1);
        assert_eq!(c.stats().negative_hits, 10);
        // After negative_ttl it is looked for again.
        c.classify_at(t + Duration::from_secs(3), &flow(4));
        assert_eq!(c.host().scans, 2);

        // Rate limit: new unknown inodes back to back exhaust the burst.
        let (mut c, t) = setup();
        for i in 0..20u32 {
            let f = flow(1000 + i as u16);
            c.host.sockets.insert(f, sock(1000 + i, None));
            c.classify_at(t, &f);
        }
        assert_eq!(c.host().scans, 8);
        assert_eq!(c.stats().rate_limited, 12);
        // A second later, 20 more tokens (capped at the burst).
        let f = flow(2000);
        c.host.sockets.insert(f, sock(2000, None));
        c.classify_at(t + Duration::from_secs(1), &f);
        assert_eq!(c.host().scans, 9);
    }

    #[test]
    fn process_cgroup_and_name_ttl() {
        let (mut c, t) = setup();
        let f = flow(7);
        c.host.sockets.insert(f, sock(55, Some(77)));
        let a = c.classify_at(t, &f).unwrap();
        assert_eq!((a.name.as_str(), a.source), ("backup", Source::ProcCgroup));
        // Name re-read after the TTL; process exec'd something else.
        c.host
            .procs
            .insert(100, ("wget".into(), None, vec![22, 33]));
        assert_eq!(c.classify_at(t, &flow(2)).unwrap().name, "wget");
        c.host
            .procs
            .insert(100, ("curl".into(), None, vec![22, 33]));
        assert_eq!(c.classify_at(t, &flow(3)).unwrap().name, "wget");
        assert_eq!(
            c.classify_at(t + Duration::from_secs(2), &flow(3))
                .unwrap()
                .name,
            "curl"
        );
        // Process gone: its inodes leave the cache, next time a scan runs.
        c.host.procs.remove(&100);
        let scans = c.host().scans;
        assert_eq!(c.classify_at(t + Duration::from_secs(4), &flow(3)), None);
        assert!(!c.inode_pid.contains_key(&22));
        assert_eq!(c.host().scans, scans);
    }

    #[test]
    fn new_socket_of_a_known_process_needs_no_full_scan() {
        let (mut c, t) = setup();
        assert_eq!(c.classify_at(t, &flow(2)).unwrap().name, "curl");
        assert_eq!(c.host().scans, 1);
        // curl opens another connection: found in its own fds.
        let f = flow(8);
        c.host.sockets.insert(f, sock(88, Some(1)));
        c.host.procs.get_mut(&100).unwrap().2.push(88);
        let a = c.classify_at(t, &f).unwrap();
        assert_eq!((a.name.as_str(), a.pid), ("curl", Some(100)));
        assert_eq!((c.host().scans, c.host().hint_scans), (1, 1));
        assert_eq!(c.stats().recent_hits, 1);
        // Not a recent owner's: falls through to a full scan.
        let f = flow(9);
        c.host.sockets.insert(f, sock(99, Some(1)));
        c.host.procs.insert(300, ("ssh".into(), None, vec![99]));
        assert_eq!(c.classify_at(t, &f).unwrap().name, "ssh");
        assert_eq!((c.host().scans, c.host().hint_scans), (2, 2));
    }

    #[test]
    fn classifier_is_send() {
        fn send<T: Send>() {}
        send::<Classifier<LiveHost>>();
    }

    #[test]
    fn idle_classifier_does_nothing() {
        // No call, no work: the classifier has no timers or threads. Checked by design
        // (no `poll_timeout`), and here: creating it touches nothing.
        let (c, _) = setup();
        assert_eq!(c.host().scans, 0);
        assert_eq!(c.host().name_reads, 0);
    }
}
