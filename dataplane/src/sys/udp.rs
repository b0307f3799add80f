//! UDP tunnel sockets: `SO_REUSEPORT` (one per shard), large buffers, `IP_PKTINFO`, and on the
//! mobile host `SO_BINDTODEVICE` so tunnel traffic leaves through its physical interface and
//! never loops into the TUN (KERNEL-NOTES: that interface needs a route with a gateway).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::addr::{read_sockaddr, write_sockaddr};
use super::{cvt, cvt_size};

/// Options of a tunnel socket.
#[derive(Debug, Clone, Default)]
pub struct UdpOptions {
    /// Set `SO_REUSEPORT` (several shards bind the same address).
    pub reuseport: bool,
    /// Receive and send buffer size in bytes (0: kernel default). Tried with
    /// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` first (root), then the plain options.
    pub buffer_bytes: usize,
    /// `SO_BINDTODEVICE` to this interface.
    pub device: Option<String>,
    /// Open `O_NONBLOCK` (fallback path).
    pub nonblocking: bool,
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int living across the call, with its exact size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Creates, configures and binds a UDP socket.
pub fn bind(local: SocketAddr, opts: &UdpOptions) -> io::Result<OwnedFd> {
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let mut ty = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC;
    if opts.nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: plain socket(2) call.
    let raw = cvt(unsafe { libc::socket(family, ty, 0) })?;
    // SAFETY: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if opts.reuseport {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if opts.buffer_bytes > 0 {
        let n = opts.buffer_bytes.min(i32::MAX as usize) as libc::c_int;
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, n)
            .or_else(|_| setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, n))?;
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, n)
            .or_else(|_| setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, n))?;
    }
    // DESIGN.md 3: outer packets are never fragmented silently: DF on, an oversize datagram
    // fails with EMSGSIZE (counted as a send error) instead of leaving as fragments.
    if local.is_ipv4() {
        setsockopt_int(&fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        setsockopt_int(
            &fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )?;
    } else {
        setsockopt_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        setsockopt_int(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )?;
    }
    if let Some(dev) = &opts.device {
        // SAFETY: the device name bytes live across the call and their length is passed.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        })?;
    }
    // SAFETY: sockaddr_storage is POD; all-zero is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = write_sockaddr(&local, &mut st);
    // SAFETY: `st` holds a valid sockaddr of `len` bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&st as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    Ok(fd)
}

/// Connects the socket to `remote` (the kernel caches the route and filters other sources).
pub fn connect(fd: &OwnedFd, remote: SocketAddr) -> io::Result<()> {
    // SAFETY: sockaddr_storage is POD; all-zero is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = write_sockaddr(&remote, &mut st);
    // SAFETY: `st` holds a valid sockaddr of `len` bytes.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&st as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    Ok(())
}

/// The socket's bound address (`getsockname`).
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is POD; all-zero is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `st`/`len` describe a writable buffer of the stated size.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    read_sockaddr(&st, len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))
}

/// One blocking-or-not `sendto` (control frames from the control thread; not the hot path).
pub fn send_to(fd: &OwnedFd, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
    // SAFETY: sockaddr_storage is POD; all-zero is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = write_sockaddr(&to, &mut st);
    // SAFETY: `buf` and `st` are valid for the lengths passed.
    cvt_size(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&st as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}
