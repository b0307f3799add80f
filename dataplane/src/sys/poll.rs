//! The fallback path when io_uring is unavailable: epoll, eventfd, and batched
//! `recvmmsg`/`sendmmsg` behind safe wrappers (the headers only live during the call).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::addr::{read_sockaddr, write_sockaddr};
use super::{cvt, cvt_size};

/// An epoll instance.
#[derive(Debug)]
pub(crate) struct Epoll(OwnedFd);

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain epoll_create1 call.
        let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fresh descriptor we own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Watches `fd` for readability, level-triggered, reporting `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event living across the call.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub(crate) fn remove(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer on modern kernels; we pass a valid one.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) })?;
        Ok(())
    }

    /// Waits; fills `tokens` with ready tokens. `timeout_ms < 0` blocks.
    pub(crate) fn wait(
        &self,
        tokens: &mut Vec<u64>,
        max: usize,
        timeout_ms: i32,
    ) -> io::Result<()> {
        tokens.clear();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let max = max.clamp(1, evs.len());
        // SAFETY: `evs` has room for `max` events.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                evs.as_mut_ptr(),
                max as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            return Err(e);
        }
        tokens.extend(evs.iter().take(n as usize).map(|e| e.u64));
        Ok(())
    }
}

/// Creates a non-blocking eventfd (shard wake-up).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd call.
    let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds 1 to an eventfd (wakes the shard).
pub(crate) fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64.
    cvt_size(unsafe { libc::write(fd, (&one as *const u64).cast(), 8) })?;
    Ok(())
}

/// `read(2)`; `WouldBlock` when nothing is ready.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)`.
pub(crate) fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// Receives up to `bufs.len()` datagrams with one `recvmmsg`; `meta[i] = (len, source)`.
/// Each datagram lands at `headroom` bytes into its buffer.
pub(crate) fn recvmmsg(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    headroom: usize,
    meta: &mut Vec<(usize, Option<SocketAddr>)>,
) -> io::Result<usize> {
    meta.clear();
    let n = bufs.len().min(64);
    // SAFETY: POD arrays, all-zero valid.
    let mut names: [libc::sockaddr_storage; 64] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; 64] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
    for (i, b) in bufs.iter_mut().take(n).enumerate() {
        let room = b.get_mut(headroom..).unwrap_or(&mut []);
        iovs[i] = libc::iovec {
            iov_base: room.as_mut_ptr().cast(),
            iov_len: room.len(),
        };
        hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen =
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points into `names`/`iovs`/`bufs`, all alive and exclusively
    // borrowed for the duration of the call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let got = cvt(r)? as usize;
    for i in 0..got {
        meta.push((
            hdrs[i].msg_len as usize,
            read_sockaddr(&names[i], hdrs[i].msg_hdr.msg_namelen),
        ));
    }
    Ok(got)
}

/// Sends `msgs` (payload, destination) with `sendmmsg`, looping until all are sent or an error.
/// Returns how many were sent.
pub(crate) fn sendmmsg(fd: RawFd, msgs: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < msgs.len() {
        let chunk = &msgs[sent..msgs.len().min(sent + 64)];
        // SAFETY: POD arrays, all-zero valid.
        let mut names: [libc::sockaddr_storage; 64] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; 64] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
        for (i, (buf, to)) in chunk.iter().enumerate() {
            let len = write_sockaddr(to, &mut names[i]);
            iovs[i] = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdrs[i].msg_hdr.msg_namelen = len;
            hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: headers point into live local arrays and borrowed payloads (only read).
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), chunk.len() as libc::c_uint, 0) };
        match cvt(r) {
            Ok(0) => break,
            Ok(k) => sent += k as usize,
            Err(e) if sent > 0 => {
                let _ = e;
                // Report the partial count; the caller counts the rest as dropped.
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}
