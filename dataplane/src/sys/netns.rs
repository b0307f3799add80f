//! Entering a named network namespace (`/var/run/netns/NAME`, as `ip netns` creates them) on
//! the calling thread. Threads spawned afterwards by that thread inherit it; descriptors
//! opened there (TUN, sockets) stay bound to it. Used by the testbed and the root tests.

use std::io;
use std::os::fd::AsRawFd;

use super::cvt;

/// Moves the calling thread into network namespace `name`.
pub fn enter(name: &str) -> io::Result<()> {
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns on a namespace file descriptor we own for the duration of the call.
    cvt(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}
