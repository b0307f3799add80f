//! `/proc` readers: which process holds a socket inode, and what the process is called.
//!
//! Finding a socket's owner means reading `/proc/PID/fd/*` links (`socket:[INODE]`) of
//! every process until one matches: the expensive path, taken only on a cache miss (see
//! [`crate::Classifier`]). Processes of our network namespace are visited first (the
//! sock_diag lookup only sees that namespace's sockets), then those of the socket's uid,
//! newest pid first (a flow's first packet usually comes from a process that just started);
//! every socket seen on the way is reported so the caller can cache it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a scan visited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Processes whose fd table was read.
    pub processes: u32,
    /// Descriptor links read.
    pub fds: u32,
}

/// The socket inode a `/proc/PID/fd/N` link target names (`socket:[12345]`).
pub fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Looks for the process holding socket `inode` under `proc_root` (normally `/proc`).
/// Processes of our network namespace owned by `uid` first, then the rest of our namespace,
/// then the others, newest first within each; stops at the first match. Calls `seen` with
/// every `(inode, pid)` found on the way (including the match).
pub fn find_socket_owner(
    proc_root: &Path,
    inode: u32,
    uid: u32,
    seen: &mut dyn FnMut(u32, u32),
) -> (Option<u32>, ScanStats) {
    let mut stats = ScanStats::default();
    let Ok(rd) = fs::read_dir(proc_root) else {
        return (None, stats);
    };
    // The sock_diag socket sees the sockets of our network namespace: their owners are
    // almost always processes of that namespace.
    let own_netns = fs::metadata(proc_root.join("self/ns/net"))
        .ok()
        .map(|m| m.ino());
    let mut pids: Vec<u32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable_by(|a, b| b.cmp(a)); // newest first
    let mut buf = proc_root.to_path_buf();
    // Pass 0: our namespace and the socket's uid; pass 1: our namespace; pass 2: the rest.
    // Ranks are computed lazily so a recent owner is found without statting every process.
    let mut later: Vec<(u8, u32)> = Vec::new();
    for pid in pids {
        buf.push(pid.to_string());
        let same_uid = fs::metadata(&buf).is_ok_and(|m| m.uid() == uid);
        buf.push("ns/net");
        let same_netns =
            own_netns.is_none() || fs::metadata(&buf).ok().map(|m| m.ino()) == own_netns;
        buf.pop();
        buf.pop();
        buf.pop();
        match (same_netns, same_uid) {
            (true, true) => {}
            (true, false) => {
                later.push((1, pid));
                continue;
            }
            (false, _) => {
                later.push((2, pid));
                continue;
            }
        }
        if scan_process(&mut buf, pid, inode, seen, &mut stats) {
            return (Some(pid), stats);
        }
    }
    later.sort_by_key(|(rank, _)| *rank); // stable: newest first within a rank
    for (_, pid) in later {
        if scan_process(&mut buf, pid, inode, seen, &mut stats) {
            return (Some(pid), stats);
        }
    }
    (None, stats)
}

/// Looks for socket `inode` in the fd tables of `pids` only (processes that owned sockets
/// before: a long-running program opening one more connection is found at the cost of
/// reading its own fds).
pub fn find_socket_owner_in(
    proc_root: &Path,
    pids: &[u32],
    inode: u32,
    seen: &mut dyn FnMut(u32, u32),
) -> (Option<u32>, ScanStats) {
    let mut stats = ScanStats::default();
    let mut buf = proc_root.to_path_buf();
    for &pid in pids {
        if scan_process(&mut buf, pid, inode, seen, &mut stats) {
            return (Some(pid), stats);
        }
    }
    (None, stats)
}

/// Reads `<buf>/PID/fd`; reports its sockets; true when `inode` is among them.
fn scan_process(
    buf: &mut std::path::PathBuf,
    pid: u32,
    inode: u32,
    seen: &mut dyn FnMut(u32, u32),
    stats: &mut ScanStats,
) -> bool {
    buf.push(pid.to_string());
    buf.push("fd");
    let rd = fs::read_dir(&*buf);
    buf.pop();
    buf.pop();
    let Ok(rd) = rd else { return false };
    stats.processes += 1;
    let mut found = false;
    for e in rd.flatten() {
        stats.fds += 1;
        let Ok(target) = fs::read_link(e.path()) else {
            continue;
        };
        if let Some(ino) = target.to_str().and_then(socket_inode) {
            seen(ino, pid);
            found |= ino == inode;
        }
    }
    found
}

/// The process's command name (`/proc/PID/comm`, at most 15 bytes, settable by the
/// process).
pub fn comm(proc_root: &Path, pid: u32) -> Option<String> {
    let s = fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).ok()?;
    let s = s.trim_end_matches('\n');
    (!s.is_empty()).then(|| s.to_owned())
}

/// The basename of the process's executable (`/proc/PID/exe`), without a ` (deleted)`
/// suffix. Needs the right to ptrace the process (root has it).
pub fn exe_name(proc_root: &Path, pid: u32) -> Option<String> {
    let target = fs::read_link(proc_root.join(pid.to_string()).join("exe")).ok()?;
    let name = target.file_name()?.to_str()?;
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    (!name.is_empty()).then(|| name.to_owned())
}

/// The application the process's cgroup names (`/proc/PID/cgroup` under `upmt.apps`).
pub fn cgroup_app(proc_root: &Path, pid: u32) -> Option<String> {
    let s = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    crate::cgroup::app_from_proc_cgroup(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("socket:[]"), None);
        assert_eq!(socket_inode("pipe:[12]"), None);
        assert_eq!(socket_inode("socket:[99999999999]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn finds_own_socket() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let link = fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).unwrap();
        let inode = socket_inode(link.to_str().unwrap()).unwrap();
        let me = std::process::id();
        let uid = fs::metadata("/proc/self").unwrap().uid();
        let mut seen = Vec::new();
        let (pid, stats) = find_socket_owner(Path::new("/proc"), inode, uid, &mut |i, p| {
            seen.push((i, p))
        });
        assert_eq!(pid, Some(me));
        assert!(seen.contains(&(inode, me)));
        assert!(stats.processes >= 1 && stats.fds >= 1);
        assert!(comm(Path::new("/proc"), me).is_some());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            exe_name(Path::new("/proc"), me).as_deref(),
            exe.file_name().and_then(|n| n.to_str())
        );
        assert_eq!(comm(Path::new("/proc"), u32::MAX), None);
        let (none, _) = find_socket_owner(Path::new("/nonexistent"), inode, uid, &mut |_, _| {});
        assert_eq!(none, None);
        let (hint, stats) =
            find_socket_owner_in(Path::new("/proc"), &[u32::MAX, me], inode, &mut |_, _| {});
        assert_eq!((hint, stats.processes), (Some(me), 1));
    }
}
