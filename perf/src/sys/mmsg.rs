//! Batched UDP sends (`sendmmsg`) for the harness's load generator, and the kernel's clock
//! tick (for `/proc` CPU times).

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// Most datagrams one [`send_batch`] hands to the kernel.
pub const MAX_BATCH: usize = 64;

/// Sends `count` (at most [`MAX_BATCH`]) copies of `payload` on the connected socket `sock`
/// with one `sendmmsg`; returns how many the kernel took.
pub fn send_batch(sock: &UdpSocket, payload: &[u8], count: usize) -> io::Result<usize> {
    send_each(sock, &[payload; MAX_BATCH][..count.min(MAX_BATCH)])
}

/// Sends each of `payloads` (at most [`MAX_BATCH`]: the rest are ignored) as one datagram
/// on the connected socket `sock` with one `sendmmsg`; returns how many the kernel took.
pub fn send_each(sock: &UdpSocket, payloads: &[&[u8]]) -> io::Result<usize> {
    let count = payloads.len().min(MAX_BATCH);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    for (v, p) in iov.iter_mut().zip(payloads) {
        v.iov_base = p.as_ptr() as *mut libc::c_void;
        v.iov_len = p.len();
    }
    // SAFETY: `mmsghdr` is plain old data for which all-zero is a valid value (null name
    // and control, zero lengths).
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..count]` each point at one iovec describing one of `payloads`, all of
    // which outlive the call and are only read by the kernel; the socket is connected; the
    // descriptor is owned by `sock`.
    let n = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sets `UDP_SEGMENT` (UDP GSO) on `sock`: a send of more than `size` bytes leaves as
/// `size`-byte datagrams (0: off).
pub fn set_udp_segment(sock: &UdpSocket, size: u16) -> io::Result<()> {
    let v = libc::c_int::from(size);
    // SAFETY: the option value is a c_int living across the call, its exact size passed;
    // the descriptor is owned by `sock`.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clock ticks per second of `/proc/*/stat` and `/proc/stat` (`sysconf(_SC_CLK_TCK)`),
/// 100 if the call fails.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}
