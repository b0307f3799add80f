//! The launcher behind `upmt run --app NAME -- CMD ARGS`: runs a program as application
//! NAME by putting it in the cgroup `<cgroup2 mount>/upmt.apps/NAME` before it starts.
//!
//! The calling process moves itself into the cgroup (writes its pid to `cgroup.procs`) and
//! then `exec`s the command, so the program and all its children live in the cgroup from
//! their first instruction, and every socket they open carries the cgroup's id. (Moving a
//! forked child from `pre_exec` would need `unsafe`; moving ourselves needs none.)
//!
//! `ip netns exec` remounts `/sys` and hides the cgroup2 mount: start `upmt run` outside the
//! namespace and let it exec `ip netns exec NS CMD` (the cgroup is inherited), or enter the
//! namespace with `nsenter --net=/var/run/netns/NS`, which keeps the mounts.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cgroup::{self, validate_app_name};

/// Creates (if needed) the cgroup of application `name` under `mount` and returns its
/// directory.
pub fn ensure_app_cgroup(mount: &Path, name: &str) -> io::Result<PathBuf> {
    validate_app_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let dir = cgroup::app_cgroup_dir(mount, name);
    fs::create_dir_all(&dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create cgroup {}: {e}", dir.display()),
        )
    })?;
    Ok(dir)
}

/// Moves the calling process (all its threads must be in the same cgroup: call it before
/// starting threads) into the cgroup directory `dir`.
pub fn join_cgroup(dir: &Path) -> io::Result<()> {
    let procs = dir.join("cgroup.procs");
    fs::write(&procs, format!("{}\n", std::process::id())).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot join cgroup {}: {e}", procs.display()),
        )
    })
}

/// Removes application `name`'s cgroup (fails with `EBUSY` while processes live in it).
pub fn remove_app_cgroup(mount: &Path, name: &str) -> io::Result<()> {
    validate_app_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    fs::remove_dir(cgroup::app_cgroup_dir(mount, name))
}

/// Runs `argv` as application `name`: finds the cgroup2 mount, creates
/// `upmt.apps/NAME`, moves this process into it and execs `argv[0]` with the rest as
/// arguments (searched in `PATH`). Returns only on failure, with the reason.
pub fn run_in_app(name: &str, argv: &[OsString]) -> io::Error {
    match prepare(name, argv) {
        Ok(mut cmd) => cmd.exec(),
        Err(e) => e,
    }
}

fn prepare(name: &str, argv: &[OsString]) -> io::Result<Command> {
    validate_app_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command to run",
        ));
    };
    let mount = cgroup::cgroup2_mount()?;
    let dir = ensure_app_cgroup(&mount, name)?;
    join_cgroup(&dir)?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_input_before_touching_anything() {
        let e = run_in_app("a/b", &["true".into()]);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("a/b"), "{e}");
        let e = run_in_app("ok", &[]);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(remove_app_cgroup(Path::new("/nonexistent"), "..").is_err());
    }

    #[test]
    fn creates_cgroup_dirs() {
        let tmp = std::env::temp_dir().join(format!("appclass-launch-{}", std::process::id()));
        let dir = ensure_app_cgroup(&tmp, "video").unwrap();
        assert!(dir.ends_with("upmt.apps/video") && dir.is_dir());
        ensure_app_cgroup(&tmp, "video").unwrap(); // idempotent
        remove_app_cgroup(&tmp, "video").unwrap();
        assert!(ensure_app_cgroup(&tmp, "x y").is_err());
        let _ = fs::remove_dir_all(&tmp);
    }
}
