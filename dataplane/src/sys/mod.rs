//! Everything that talks to the kernel: TUN devices, UDP sockets, io_uring rings and buffer
//! rings, and the epoll/recvmmsg/sendmmsg fallback. All `unsafe` of the crate lives here; each
//! block carries a `// SAFETY:` comment naming the invariant and who upholds it.
//!
//! Descriptors are `OwnedFd`; every syscall error is surfaced as `io::Error`.

pub(crate) mod addr;
pub mod netns;
pub(crate) mod poll;
pub mod tun;
pub mod udp;
pub(crate) mod uring;

use std::io;

/// Turns a libc return value (`-1` + errno) into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Same as [`cvt`] for `ssize_t` returns.
pub(crate) fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
