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
    /// Ask for `UDP_GRO` (the kernel may hand one receive several datagrams of one size,
    /// with a `UDP_GRO` cmsg giving that size). Best effort: a kernel that refuses it leaves
    /// the socket as it was, see [`BoundSocket::gro`].
    pub gro: bool,
}

/// A bound tunnel socket and what it got of the options asked for.
#[derive(Debug)]
pub struct BoundSocket {
    /// The descriptor.
    pub fd: OwnedFd,
    /// `UDP_GRO` is on.
    pub gro: bool,
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

/// Sets `UDP_SEGMENT` (UDP GSO) on any UDP socket: every send of more than `gso_size`
/// bytes leaves as datagrams of `gso_size` bytes (the last shorter), segmented by the kernel
/// or, through a TUN with USO, by whoever reads the TUN. 0 turns it off. What a QUIC stack
/// does; the engine tests use it to send UDP super-packets into the mobile host's TUN.
pub fn set_udp_segment(fd: std::os::fd::BorrowedFd<'_>, gso_size: u16) -> io::Result<()> {
    let v = libc::c_int::from(gso_size);
    // SAFETY: the option value is a c_int living across the call, with its exact size
    // passed; the descriptor is borrowed for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Creates, configures and binds a UDP socket.
pub fn bind(local: SocketAddr, opts: &UdpOptions) -> io::Result<OwnedFd> {
    bind_socket(local, opts).map(|s| s.fd)
}

/// [`bind`], telling which best-effort options took.
pub fn bind_socket(local: SocketAddr, opts: &UdpOptions) -> io::Result<BoundSocket> {
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
    let gro = opts.gro && setsockopt_int(&fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
    Ok(BoundSocket { fd, gro })
}

/// `CMSG_SPACE(sizeof(u16))`: room for one `UDP_SEGMENT` control message.
pub(crate) const GSO_CMSG_SPACE: usize = 24;

/// Writes a `UDP_SEGMENT` control message carrying `gso_size` into `buf` (at least
/// [`GSO_CMSG_SPACE`] bytes, 8-byte aligned); returns its `msg_controllen`.
pub(crate) fn write_gso_cmsg(buf: &mut [u64; 3], gso_size: u16) -> usize {
    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } + u16 data.
    let mut b = [0u8; GSO_CMSG_SPACE];
    b[..8].copy_from_slice(&(18usize).to_ne_bytes()); // CMSG_LEN(2)
    b[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    b[12..16].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
    b[16..18].copy_from_slice(&gso_size.to_ne_bytes());
    for (w, c) in buf.iter_mut().zip(b.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        *w = u64::from_ne_bytes(a);
    }
    GSO_CMSG_SPACE
}

/// Finds the `UDP_GRO` segment size in a received control buffer (the cmsgs of a recvmsg).
pub(crate) fn parse_gro_cmsg(control: &[u8]) -> Option<u16> {
    let mut off = 0usize;
    while let Some(h) = control.get(off..off + 16) {
        let len = usize::from_ne_bytes(h[..8].try_into().ok()?);
        let level = i32::from_ne_bytes(h[8..12].try_into().ok()?);
        let ty = i32::from_ne_bytes(h[12..16].try_into().ok()?);
        if len < 16 {
            return None;
        }
        if level == libc::SOL_UDP && ty == libc::UDP_GRO {
            // The kernel puts an int.
            let d = control.get(off + 16..off + 20)?;
            let v = i32::from_ne_bytes(d.try_into().ok()?);
            return u16::try_from(v).ok().filter(|v| *v > 0);
        }
        off = off.checked_add(len.checked_add(7)? & !7)?;
    }
    None
}

/// Sends back-to-back segments synchronously (no io_uring): `buf[..len]` holds segments of
/// `stride` bytes (the last may be shorter). With `gso`, one `sendmsg` with `UDP_SEGMENT`
/// per group of at most `max_segs` segments; without, one `sendmmsg` entry per segment.
/// Never blocks (`MSG_DONTWAIT`). Returns the number of segments the kernel took.
pub(crate) fn send_segments(
    fd: std::os::fd::RawFd,
    buf: &[u8],
    stride: usize,
    to: Option<SocketAddr>,
    gso: Option<usize>,
) -> io::Result<usize> {
    if stride == 0 || buf.is_empty() {
        return Ok(0);
    }
    // SAFETY: sockaddr_storage is POD; all-zero is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let namelen = to.map(|to| write_sockaddr(&to, &mut st));
    let name = |m: &mut libc::msghdr, st: &mut libc::sockaddr_storage| {
        if let Some(n) = namelen {
            m.msg_name = (st as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = n;
        }
    };
    let mut sent = 0usize;
    match gso {
        Some(max_segs) => {
            let group = stride * max_segs.max(1);
            for chunk in buf.chunks(group) {
                let mut iov = libc::iovec {
                    iov_base: chunk.as_ptr() as *mut libc::c_void,
                    iov_len: chunk.len(),
                };
                let mut cmsg = [0u64; 3];
                let clen = write_gso_cmsg(&mut cmsg, stride.min(u16::MAX as usize) as u16);
                // SAFETY: all-zero msghdr is valid; the fields set point at locals that live
                // across the call.
                let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
                name(&mut m, &mut st);
                m.msg_iov = &mut iov;
                m.msg_iovlen = 1;
                if chunk.len() > stride {
                    m.msg_control = cmsg.as_mut_ptr().cast();
                    m.msg_controllen = clen as _;
                }
                // SAFETY: `m` and everything it points to are valid for the call; the kernel
                // only reads them.
                cvt_size(unsafe { libc::sendmsg(fd, &m, libc::MSG_DONTWAIT) })?;
                sent += chunk.len().div_ceil(stride);
            }
        }
        None => {
            for group in buf.chunks(stride * 64) {
                let mut iovs: Vec<libc::iovec> = group
                    .chunks(stride)
                    .map(|seg| libc::iovec {
                        iov_base: seg.as_ptr() as *mut libc::c_void,
                        iov_len: seg.len(),
                    })
                    .collect();
                let mut msgs: Vec<libc::mmsghdr> = iovs
                    .iter_mut()
                    .map(|iov| {
                        // SAFETY: all-zero mmsghdr is valid.
                        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                        name(&mut h.msg_hdr, &mut st);
                        h.msg_hdr.msg_iov = iov;
                        h.msg_hdr.msg_iovlen = 1;
                        h
                    })
                    .collect();
                // SAFETY: `msgs` holds `len` valid headers pointing at `iovs` and `st`, all
                // alive across the call.
                let n = cvt(unsafe {
                    libc::sendmmsg(
                        fd,
                        msgs.as_mut_ptr(),
                        msgs.len() as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                })?;
                sent += n as usize;
                if (n as usize) < msgs.len() {
                    break;
                }
            }
        }
    }
    Ok(sent)
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
