//! cgroup v2 plumbing: where cgroup2 is mounted, application names, and the index of the
//! application cgroups (`<mount>/upmt.apps/<NAME>`) by cgroup id.
//!
//! A socket's cgroup id is fixed when the socket is created and equals the inode number of
//! its cgroup directory (KERNEL-NOTES). Cgroup ids are 64-bit and never reused while the
//! system runs, so an id found outside `upmt.apps` once can be remembered as "not an app"
//! for good: the index rescans the (small) `upmt.apps` tree only when an id it has never
//! seen shows up.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Directory under the cgroup2 mount that holds one cgroup per application.
pub const APPS_DIR: &str = "upmt.apps";
/// Longest application name.
pub const MAX_NAME_LEN: usize = 64;
/// Sub-cgroups below an application's cgroup that still count as that application.
const MAX_DEPTH: usize = 4;
/// Ids remembered as "not an application" before the set is cleared.
const MAX_UNKNOWN: usize = 8192;

/// An application name that is not `[A-Za-z0-9._-]{1,64}` (or is `.` / `..`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad application name {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (not \".\" or \"..\")")]
pub struct BadName(pub String);

/// Checks an application name: 1 to 64 characters of `[A-Za-z0-9._-]`, not `.` or `..`
/// (it becomes a directory name).
pub fn validate_app_name(name: &str) -> Result<(), BadName> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BadName(name.to_owned()))
    }
}

/// The mount point of the first cgroup2 file system in a `/proc/PID/mountinfo` text.
///
/// Line format (proc(5)): `id parent major:minor root mountpoint options [optional...] -
/// fstype source superoptions`. The mount point is octal-escaped (`\040` for a space).
pub fn parse_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mountpoint = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mountpoint)))
    })
}

/// The cgroup2 mount point of this process's mount namespace.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    parse_mountinfo(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 file system in /proc/self/mountinfo (inside `ip netns exec`? it \
             remounts /sys and hides the cgroup mount: start `upmt run` before entering the \
             namespace, or enter it with `nsenter --net=/var/run/netns/NAME`)",
        )
    })
}

/// `<mount>/upmt.apps/<name>`.
pub fn app_cgroup_dir(mount: &Path, name: &str) -> PathBuf {
    mount.join(APPS_DIR).join(name)
}

/// The application a `/proc/PID/cgroup` text puts the process in: the `0::` (cgroup v2)
/// line's path, when it is `/.../upmt.apps/NAME[/...]`.
pub fn app_from_proc_cgroup(text: &str) -> Option<String> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut parts = path.split('/');
    parts.find(|p| *p == APPS_DIR)?;
    let name = parts.next()?;
    validate_app_name(name).ok()?;
    Some(name.to_owned())
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let esc = b
            .get(i + 1..i + 4)
            .filter(|d| b.get(i) == Some(&b'\\') && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match esc {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.extend(b.get(i).copied());
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Application cgroups by id, refreshed lazily. See the module doc.
#[derive(Debug, Default)]
pub struct AppCgroups {
    apps_dir: Option<PathBuf>,
    by_id: HashMap<u64, String>,
    unknown: HashSet<u64>,
    scans: u64,
}

impl AppCgroups {
    /// An index of `<mount>/upmt.apps`; `None`: no cgroup2 mount visible (every lookup
    /// misses and the caller falls back to `/proc/PID/cgroup`).
    pub fn new(mount: Option<&Path>) -> Self {
        AppCgroups {
            apps_dir: mount.map(|m| m.join(APPS_DIR)),
            ..Default::default()
        }
    }

    /// The application whose cgroup (or a cgroup below it) has id `id`. Rescans the tree
    /// once for an id never seen before.
    pub fn lookup(&mut self, id: u64) -> Option<&str> {
        if !self.by_id.contains_key(&id) {
            if self.unknown.contains(&id) || self.apps_dir.is_none() {
                return None;
            }
            self.rescan();
            if !self.by_id.contains_key(&id) {
                if self.unknown.len() >= MAX_UNKNOWN {
                    self.unknown.clear();
                }
                self.unknown.insert(id);
                return None;
            }
        }
        self.by_id.get(&id).map(String::as_str)
    }

    /// Tree scans done so far.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// Records `id` as application `name` (used by tests and by a launcher running in the
    /// same process).
    pub fn insert(&mut self, id: u64, name: &str) {
        self.unknown.remove(&id);
        self.by_id.insert(id, name.to_owned());
    }

    /// Rebuilds the map from the tree (so removed cgroups leave it: bounded state).
    fn rescan(&mut self) {
        self.scans += 1;
        self.by_id.clear();
        let Some(dir) = self.apps_dir.clone() else {
            return;
        };
        let Ok(rd) = fs::read_dir(&dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if validate_app_name(&name).is_err() || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            self.index(&e.path(), &name, 0);
        }
    }

    fn index(&mut self, dir: &Path, name: &str, depth: usize) {
        if let Ok(md) = fs::metadata(dir) {
            self.by_id.insert(md.ino(), name.to_owned());
        }
        if depth >= MAX_DEPTH {
            return;
        }
        let Ok(rd) = fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.index(&e.path(), name, depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["video", "a", "voip-1.2_x", &"x".repeat(64), "..."] {
            assert!(validate_app_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "vidéo",
            &"x".repeat(65),
            "a\n",
            "a\0",
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad:?}");
        }
        let e = validate_app_name("a/b").unwrap_err().to_string();
        assert!(e.contains("a/b") && e.contains("A-Z"), "{e}");
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn mountinfo() {
        assert_eq!(
            parse_mountinfo(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_mountinfo(UNIFIED),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // What `ip netns exec` leaves: a fresh sysfs, no cgroup2.
        assert_eq!(
            parse_mountinfo("100 1 0:50 / /sys rw - sysfs sysfs rw\n"),
            None
        );
        assert_eq!(parse_mountinfo(""), None);
        assert_eq!(parse_mountinfo("garbage - \n - cgroup2\n41 31"), None);
        assert_eq!(
            parse_mountinfo("1 2 0:1 / /mnt/my\\040cg rw - cgroup2 none rw\n"),
            Some(PathBuf::from("/mnt/my cg"))
        );
        assert_eq!(unescape_octal("a\\1"), "a\\1");
        assert_eq!(unescape_octal("\\134x"), "\\x");
    }

    #[test]
    fn proc_cgroup() {
        assert_eq!(
            app_from_proc_cgroup("1:cpu:/\n0::/upmt.apps/video\n").as_deref(),
            Some("video")
        );
        assert_eq!(
            app_from_proc_cgroup("0::/user.slice/upmt.apps/voip/child\n").as_deref(),
            Some("voip")
        );
        assert_eq!(app_from_proc_cgroup("0::/\n"), None);
        assert_eq!(app_from_proc_cgroup("0::/upmt.apps\n"), None);
        assert_eq!(app_from_proc_cgroup("4:memory:/upmt.apps/x\n"), None);
    }

    #[test]
    fn index_scans_once_per_unknown_id() {
        let tmp = std::env::temp_dir().join(format!("appclass-cg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join(APPS_DIR).join("video").join("sub")).unwrap();
        fs::create_dir_all(tmp.join(APPS_DIR).join("bad name")).unwrap();
        let video = fs::metadata(tmp.join(APPS_DIR).join("video"))
            .unwrap()
            .ino();
        let sub = fs::metadata(tmp.join(APPS_DIR).join("video/sub"))
            .unwrap()
            .ino();
        let mut idx = AppCgroups::new(Some(&tmp));
        assert_eq!(idx.lookup(video), Some("video"));
        assert_eq!(idx.scans(), 1);
        assert_eq!(idx.lookup(sub), Some("video"));
        assert_eq!(idx.scans(), 1);
        assert_eq!(idx.lookup(1), None);
        assert_eq!(idx.scans(), 2);
        assert_eq!(idx.lookup(1), None); // negative cache: no rescan
        assert_eq!(idx.scans(), 2);
        // A new application appears: its new id triggers one rescan.
        fs::create_dir_all(tmp.join(APPS_DIR).join("backup")).unwrap();
        let backup = fs::metadata(tmp.join(APPS_DIR).join("backup"))
            .unwrap()
            .ino();
        assert_eq!(idx.lookup(backup), Some("backup"));
        assert_eq!(idx.scans(), 3);
        // A removed application leaves the map at the next rescan.
        fs::remove_dir(tmp.join(APPS_DIR).join("backup")).unwrap();
        assert_eq!(idx.lookup(2), None);
        assert_eq!(idx.scans(), 4);
        assert_eq!(idx.lookup(backup), None);
        assert_eq!(idx.lookup(video), Some("video"));
        let _ = fs::remove_dir_all(&tmp);

        let mut none = AppCgroups::new(None);
        assert_eq!(none.lookup(video), None);
        assert_eq!(none.scans(), 0);
    }
}
