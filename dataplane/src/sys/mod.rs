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

/// Hands the heap's free memory back to the kernel (`malloc_trim(0)`, glibc), so that what a
/// daemon needed only while starting (parsing a credentials file of 100,000 users builds a
/// document several times the size of what is kept) does not stay in its RSS. Returns whether
/// memory was released. A no-op elsewhere than glibc.
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and shrinks the allocator's own arenas; it takes no
        // pointer and is thread-safe (glibc locks each arena).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
