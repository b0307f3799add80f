//! TUN devices: one queue per shard (`IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE`, optional
//! `IFF_VNET_HDR`), opened by hand because the `tun-tap` crate offers neither multi-queue nor
//! the vnet header. See `tun(4)` / `Documentation/networking/tuntap.rst`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::cvt;

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// `TUN_F_CSUM`: the TUN may hand us packets with a partial checksum.
pub const TUN_F_CSUM: u32 = 0x01;
/// `TUN_F_TSO4`.
pub const TUN_F_TSO4: u32 = 0x02;
/// `TUN_F_TSO6`.
pub const TUN_F_TSO6: u32 = 0x04;
/// `TUN_F_USO4` (only together with `TUN_F_CSUM` and `TUN_F_USO6`, KERNEL-NOTES).
pub const TUN_F_USO4: u32 = 0x20;
/// `TUN_F_USO6`.
pub const TUN_F_USO6: u32 = 0x40;

/// Size of `struct virtio_net_hdr` that precedes each packet when `IFF_VNET_HDR` is on.
pub const VNET_HDR_LEN: usize = 10;

/// How long `TUNSETIFF` `EBUSY` is retried (a previous process's armed io_uring read can keep
/// the queue busy for ~200 ms after exit, see KERNEL-NOTES).
const EBUSY_RETRY: Duration = Duration::from_millis(1500);

/// Options for opening TUN queues.
#[derive(Debug, Clone)]
pub struct TunOptions {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Open with `IFF_VNET_HDR` (each packet carries a 10-byte `virtio_net_hdr`).
    pub vnet_hdr: bool,
    /// Open the descriptor `O_NONBLOCK` (fallback path).
    pub nonblocking: bool,
}

/// Opens one queue of the multi-queue TUN `opts.name` (creating the device if needed).
/// Returns the descriptor and the kernel's name for it.
pub fn open_queue(opts: &TunOptions) -> io::Result<OwnedFd> {
    if opts.name.is_empty() || opts.name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TUN name must be 1..=15 bytes",
        ));
    }
    let deadline = Instant::now() + EBUSY_RETRY;
    loop {
        match open_queue_once(opts) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

fn open_queue_once(opts: &TunOptions) -> io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    let mut oflags = libc::O_RDWR | libc::O_CLOEXEC;
    if opts.nonblocking {
        oflags |= libc::O_NONBLOCK;
    }
    // SAFETY: `path` is a valid NUL-terminated string; open has no other preconditions.
    let raw = cvt(unsafe { libc::open(path.as_ptr(), oflags) })?;
    // SAFETY: `raw` was just returned by open(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = ifreq_for(&opts.name)?;
    let mut flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE;
    if opts.vnet_hdr {
        flags |= IFF_VNET_HDR;
    }
    ifr.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `ifr` is; it lives across the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr as *mut libc::ifreq) })?;
    Ok(fd)
}

/// Enables TUN offloads (`TUN_F_*` bits) on a queue opened with `vnet_hdr`.
pub fn set_offload(fd: &OwnedFd, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, flags as libc::c_ulong) })?;
    Ok(())
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(cname.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let raw =
        cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sets the MTU of interface `name` (`SIOCSIFMTU`).
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU reads a `struct ifreq`.
    cvt(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFMTU as _,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    Ok(())
}

/// Sets the transmit queue length of interface `name` (`SIOCSIFTXQLEN`). For a TUN this is
/// the number of packets the kernel queues for us before dropping.
pub fn set_txqueuelen(name: &str, len: u32) -> io::Result<()> {
    const SIOCSIFTXQLEN: libc::c_ulong = 0x8943;
    let sock = ctl_socket()?;
    let mut ifr = ifreq_for(name)?;
    // ifr_qlen shares its place with ifr_mtu (an int).
    ifr.ifr_ifru.ifru_mtu = len.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: SIOCSIFTXQLEN reads a `struct ifreq`.
    cvt(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            SIOCSIFTXQLEN as _,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    Ok(())
}

/// Brings interface `name` up (`SIOCGIFFLAGS` + `SIOCSIFFLAGS` with `IFF_UP`).
pub fn set_up(name: &str) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_for(name)?;
    // SAFETY: SIOCGIFFLAGS fills `ifr.ifr_ifru.ifru_flags` of a valid `struct ifreq`.
    cvt(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS as _,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    // SAFETY: the union was just written as flags by the kernel.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a `struct ifreq`.
    cvt(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS as _,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    Ok(())
}
