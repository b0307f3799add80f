//! io_uring wrapper: the ring, provided buffer rings, and typed submission helpers.
//!
//! Ownership rule (from io-uring's `SubmissionQueue::push` contract): from the moment an SQE
//! is pushed until its CQE is reaped, the kernel owns the memory it points to. Buffers of a
//! [`BufRing`] are owned by the kernel while provided; a completion hands exactly one buffer id
//! back to us (the pool in `crate::pool` tracks which ids we hold and refuses double use);
//! `msghdr`/`iovec`/`sockaddr` for sends live in stable per-slot storage owned by the shard.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// An anonymous, page-aligned memory mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory; access discipline is enforced by its users (the pool).
unsafe impl Send for Region {}

impl Region {
    /// A mapping populated at once (no page faults on the hot path later).
    pub(crate) fn new(len: usize) -> io::Result<Region> {
        Region::map(len, libc::MAP_POPULATE)
    }

    /// A mapping whose pages are faulted in on first use: for the large offload buffers,
    /// so that resident memory follows what the traffic touches (an idle mobile host keeps
    /// little of them).
    pub(crate) fn lazy(len: usize) -> io::Result<Region> {
        Region::map(len, 0)
    }

    fn map(len: usize, extra: libc::c_int) -> io::Result<Region> {
        let len = len.max(1);
        // SAFETY: anonymous private mapping, no file; the result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Region { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` come from a successful mmap and are unmapped exactly once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A provided buffer ring (`IORING_REGISTER_PBUF_RING`): `entries` buffers of `buf_size`
/// bytes; buffer id = index.
#[derive(Debug)]
pub(crate) struct BufRing {
    ring: Region,
    bufs: Region,
    entries: u16,
    buf_size: usize,
    bgid: u16,
    local_tail: u16,
}

impl BufRing {
    /// Allocates the ring (`entries` must be a power of two, at most 32768).
    pub(crate) fn new(entries: u16, buf_size: usize, bgid: u16) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring size must be a power of two <= 32768",
            ));
        }
        let ring = Region::new(entries as usize * std::mem::size_of::<types::BufRingEntry>())?;
        // Small (MTU-sized) buffers are populated; 64 KB offload buffers fault in on use.
        let bufs = if buf_size > 4096 {
            Region::lazy(entries as usize * buf_size)?
        } else {
            Region::new(entries as usize * buf_size)?
        };
        Ok(BufRing {
            ring,
            bufs,
            entries,
            buf_size,
            bgid,
            local_tail: 0,
        })
    }

    /// Buffer group id.
    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Size of each buffer.
    pub(crate) fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Registers the ring with `ring`.
    pub(crate) fn register(&self, uring: &IoUring) -> io::Result<()> {
        // SAFETY: `self.ring` is a page-aligned mapping of `entries` BufRingEntry slots that
        // lives as long as `self`; the shard drops the io_uring (or unregisters) before it.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                self.ring.as_ptr() as u64,
                self.entries,
                self.bgid,
                0,
            )
        }
    }

    /// Stages buffer `bid` for the kernel (visible after [`BufRing::commit`]).
    /// The caller must own `bid` (the pool checks it) and not touch it until a completion returns it.
    pub(crate) fn provide(&mut self, bid: u16) {
        let idx = (self.local_tail & (self.entries - 1)) as usize;
        let base = self.ring.as_ptr().cast::<types::BufRingEntry>();
        // SAFETY: idx < entries, so the entry lies within the ring mapping; the kernel only
        // reads entries between its head and the published tail, and this one is past the tail.
        let e = unsafe { &mut *base.add(idx) };
        e.set_addr(self.buf_ptr(bid) as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
        self.local_tail = self.local_tail.wrapping_add(1);
    }

    /// Publishes staged buffers to the kernel (release store of the tail).
    pub(crate) fn commit(&mut self) {
        let base = self.ring.as_ptr().cast::<types::BufRingEntry>();
        // SAFETY: the tail field lives in the first entry of a valid, initialized ring, is
        // 2-byte aligned and is shared with the kernel, hence accessed atomically.
        unsafe {
            let tail = types::BufRingEntry::tail(base) as *const AtomicU16;
            (*tail).store(self.local_tail, Ordering::Release);
        }
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let i = (bid as usize) % self.entries as usize;
        // SAFETY: i < entries, so the offset is inside the `bufs` mapping.
        unsafe { self.bufs.as_ptr().add(i * self.buf_size) }
    }

    /// Mutable view of buffer `bid`.
    ///
    /// # Safety
    /// The caller must own `bid`: a completion returned it and it has been neither provided
    /// again nor handed to another in-flight request, and no other view of it is alive.
    pub(crate) unsafe fn buf_mut(&mut self, bid: u16) -> &mut [u8] {
        // SAFETY: the pointer covers `buf_size` bytes inside the mapping; exclusivity is the
        // caller's contract above.
        unsafe { std::slice::from_raw_parts_mut(self.buf_ptr(bid), self.buf_size) }
    }
}

/// The per-shard ring.
pub(crate) struct Uring {
    ring: IoUring,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring").finish_non_exhaustive()
    }
}

/// A completion, copied out of the CQ.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    pub(crate) user_data: u64,
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// The provided buffer id, if the kernel picked one.
    pub(crate) fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
    /// Whether a multishot request stays armed.
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

impl Uring {
    /// Sets up a ring with `SINGLE_ISSUER | DEFER_TASKRUN` (falls back to `COOP_TASKRUN`, then
    /// no flags). Must be called on the thread that will use it.
    pub(crate) fn new(entries: u32) -> io::Result<Uring> {
        // DEFER_TASKRUN: completions are produced in a batch when the shard enters the ring to
        // wait (it is the only thread using its ring). Older kernels: COOP_TASKRUN, then none.
        let ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
        {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                match IoUring::builder()
                    .setup_single_issuer()
                    .setup_coop_taskrun()
                    .build(entries)
                {
                    Ok(r) => r,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(Uring { ring })
    }

    pub(crate) fn raw(&self) -> &IoUring {
        &self.ring
    }

    /// Pushes an SQE, submitting first if the SQ is full.
    ///
    /// # Safety
    /// All memory the entry points to must stay valid and unaliased until its CQE is reaped.
    unsafe fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded contract.
        if unsafe { self.ring.submission().push(e) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: forwarded contract.
        unsafe { self.ring.submission().push(e) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Arms a multishot read on `fd` (TUN) selecting buffers from group `bgid`.
    pub(crate) fn read_multi(&mut self, fd: RawFd, len: u32, bgid: u16, ud: u64) -> io::Result<()> {
        let e = opcode::ReadMulti::new(types::Fd(fd), len, bgid)
            .build()
            .user_data(ud);
        // SAFETY: the request points to no memory of ours; buffers come from a registered ring.
        unsafe { self.push(&e) }
    }

    /// Arms a multishot recvmsg on `fd` with buffers from group `bgid`.
    ///
    /// # Safety
    /// `msg` must stay valid until the request ends (final CQE without `MORE`).
    pub(crate) unsafe fn recvmsg_multi(
        &mut self,
        fd: RawFd,
        msg: *const libc::msghdr,
        bgid: u16,
        ud: u64,
    ) -> io::Result<()> {
        let e = opcode::RecvMsgMulti::new(types::Fd(fd), msg, bgid)
            .build()
            .user_data(ud);
        // SAFETY: forwarded contract on `msg`.
        unsafe { self.push(&e) }
    }

    /// Queues a sendmsg.
    ///
    /// # Safety
    /// `msg` and everything it points to must stay valid until the CQE is reaped.
    pub(crate) unsafe fn sendmsg(
        &mut self,
        fd: RawFd,
        msg: *const libc::msghdr,
        ud: u64,
    ) -> io::Result<()> {
        let e = opcode::SendMsg::new(types::Fd(fd), msg)
            .build()
            .user_data(ud);
        // SAFETY: forwarded contract.
        unsafe { self.push(&e) }
    }

    /// Queues a write of `len` bytes at `ptr` (TUN write).
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay valid until the CQE is reaped.
    pub(crate) unsafe fn write(
        &mut self,
        fd: RawFd,
        ptr: *const u8,
        len: u32,
        ud: u64,
    ) -> io::Result<()> {
        let e = opcode::Write::new(types::Fd(fd), ptr, len)
            .build()
            .user_data(ud);
        // SAFETY: forwarded contract.
        unsafe { self.push(&e) }
    }

    /// Queues an 8-byte read (eventfd).
    ///
    /// # Safety
    /// `dst` must stay valid until the CQE is reaped.
    pub(crate) unsafe fn read_u64(&mut self, fd: RawFd, dst: *mut u64, ud: u64) -> io::Result<()> {
        let e = opcode::Read::new(types::Fd(fd), dst.cast(), 8)
            .build()
            .user_data(ud);
        // SAFETY: forwarded contract.
        unsafe { self.push(&e) }
    }

    /// Queues a cancellation of every request on `fd`.
    pub(crate) fn cancel_fd(&mut self, fd: RawFd, ud: u64) -> io::Result<()> {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(ud);
        // SAFETY: a cancel request points to no memory.
        unsafe { self.push(&e) }
    }

    /// Submits queued SQEs and waits for at least one completion (or `timeout`).
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let r = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Copies out up to `out.capacity()` completions.
    pub(crate) fn drain(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        let cap = out.capacity().max(1);
        for c in self.ring.completion().take(cap) {
            out.push(Completion {
                user_data: c.user_data(),
                result: c.result(),
                flags: c.flags(),
            });
        }
    }
}

/// Layout of `struct io_uring_recvmsg_out` at the start of a multishot recvmsg buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvMsgOut {
    pub(crate) namelen: u32,
    pub(crate) controllen: u32,
    pub(crate) payloadlen: u32,
    pub(crate) flags: u32,
}

/// Size of `struct io_uring_recvmsg_out`.
pub(crate) const RECVMSG_OUT_LEN: usize = 16;

impl RecvMsgOut {
    /// Reads the header (native endian, as the kernel writes it).
    pub(crate) fn parse(b: &[u8]) -> Option<RecvMsgOut> {
        let rd = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        Some(RecvMsgOut {
            namelen: rd(0)?,
            controllen: rd(4)?,
            payloadlen: rd(8)?,
            flags: rd(12)?,
        })
    }
}

/// Probes whether io_uring can be used at all (not ENOSYS/EPERM, not disabled by sysctl).
pub(crate) fn probe() -> io::Result<()> {
    Uring::new(8).map(drop)
}

// ---------------------------------------------------------------------------------------------
// UringIo: the safe face of a shard's ring, its two buffer rings and per-slot send storage.
// ---------------------------------------------------------------------------------------------

use std::net::SocketAddr;
use std::ops::Range;

use super::addr::{parse_sockaddr, write_sockaddr};
use crate::pool::SlotTracker;

const GROUP_TUN: u16 = 0;
const GROUP_NET: u16 = 1;
/// Name space reserved in each multishot recvmsg buffer (`sizeof(sockaddr_in6)`).
const RECV_NAME_LEN: usize = 28;
/// Control space reserved (IP_PKTINFO / IPV6_PKTINFO cmsg, with room to spare).
const RECV_CONTROL_LEN: usize = 64;
/// Payload offset inside a multishot recvmsg buffer.
pub(crate) const RECV_PAYLOAD_OFF: usize = RECVMSG_OUT_LEN + RECV_NAME_LEN + RECV_CONTROL_LEN;

const OP_SHIFT: u32 = 56;
const OP_TUN_READ: u64 = 1;
const OP_NET_RECV: u64 = 2;
const OP_SEND_TUN: u64 = 3;
const OP_SEND_NET: u64 = 4;
const OP_TUN_WRITE: u64 = 5;
const OP_WAKE: u64 = 6;
const OP_CANCEL: u64 = 7;
const OP_OUT_SEND: u64 = 8;
const OP_OUT_WRITE: u64 = 9;

/// Size of each out buffer: a 64 KB super-packet segmented with its per-segment headers
/// (IPv4 or IPv6 + TCP with options, MSS down to ~500) or a coalescer arena for one GRO
/// receive (64 KB of datagrams plus a virtio header per frame).
pub(crate) const OUT_BUF_LEN: usize = 128 * 1024;
/// Sends one out buffer may have in flight (a segmented super-packet needs two: one GSO send
/// carries at most 65 507 bytes).
pub(crate) const OUT_MAX_SENDS: usize = 4;

fn ud(op: u64, arg: u32) -> u64 {
    (op << OP_SHIFT) | arg as u64
}

/// What a completion was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Multishot TUN read (buffer in the TUN group).
    TunRead,
    /// Multishot recvmsg on the socket with this token (buffer in the net group).
    NetRecv(u32),
    /// A send of a TUN-group buffer finished (buffer is Held again).
    SendFromTun(u16),
    /// A send of a net-group buffer finished (keepalive answered in place).
    SendFromNet(u16),
    /// A TUN write of a net-group buffer finished.
    TunWrite(u16),
    /// The wake-up eventfd fired.
    Wake,
    /// A cancel request finished.
    Cancel,
    /// A GSO send from out buffer `idx` finished.
    OutSend(u16),
    /// A TUN write from out buffer `idx` finished.
    OutWrite(u16),
    /// Unknown user_data (bug).
    Unknown,
}

/// A decoded completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    pub(crate) op: Op,
    pub(crate) result: i32,
    /// Buffer selected by the kernel (reads/receives), now Held by us.
    pub(crate) buffer: Option<u16>,
    /// Multishot request still armed.
    pub(crate) more: bool,
}

#[repr(C)]
struct SendMeta {
    msg: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    /// `UDP_SEGMENT` control message (8-byte aligned).
    cmsg: [u64; 3],
}

/// One out buffer: stable memory the shard fills (segmentation output, coalescer arena) and
/// submits from; free again once it is released and every request on it has completed.
struct OutBuf {
    mem: Region,
    metas: Box<[SendMeta; OUT_MAX_SENDS]>,
    held: bool,
    pending: u32,
    sends: usize,
}

impl SendMeta {
    fn zeroed() -> SendMeta {
        // SAFETY: msghdr, iovec and sockaddr_storage are plain C structs; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }

    /// Points the `msghdr` at `len` bytes from `start` (to `to`, or a connected peer) and
    /// returns it. The caller keeps `self` and the bytes in place until the send completes.
    fn prepare(
        &mut self,
        start: *mut u8,
        len: usize,
        to: Option<&SocketAddr>,
    ) -> *const libc::msghdr {
        let namelen = to.map(|to| write_sockaddr(to, &mut self.addr));
        self.iov = libc::iovec {
            iov_base: start.cast(),
            iov_len: len,
        };
        // SAFETY: all-zero msghdr is valid; the fields set below point into `self`.
        self.msg = unsafe { std::mem::zeroed() };
        if let Some(namelen) = namelen {
            self.msg.msg_name = (&mut self.addr as *mut libc::sockaddr_storage).cast();
            self.msg.msg_namelen = namelen;
        }
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        &self.msg
    }
}

/// A shard's ring with its buffers. Not `Send`: it is created and used on the shard thread.
pub(crate) struct UringIo {
    // Field order matters: the ring is dropped (and its requests torn down) before the memory
    // its requests point into.
    ring: Uring,
    tun_bufs: BufRing,
    net_bufs: BufRing,
    tun_slots: SlotTracker,
    net_slots: SlotTracker,
    tun_meta: Box<[SendMeta]>,
    net_meta: Box<[SendMeta]>,
    recv_msgs: hashbrown::HashMap<u32, Box<libc::msghdr>>,
    outs: Vec<OutBuf>,
    out_free: Vec<u16>,
    wake_buf: Box<u64>,
    comps: Vec<Completion>,
    /// Slot-tracking violations seen (bugs; should stay 0).
    pub(crate) slot_errors: u64,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo").finish_non_exhaustive()
    }
}

impl UringIo {
    /// Creates the ring and both buffer rings (`bufs` buffers of `buf_size` bytes each) and
    /// provides every buffer.
    pub(crate) fn new(entries: u32, bufs: u16, buf_size: usize, outs: u16) -> io::Result<UringIo> {
        let ring = Uring::new(entries)?;
        let mut out_bufs = Vec::with_capacity(outs as usize);
        for _ in 0..outs {
            out_bufs.push(OutBuf {
                mem: Region::lazy(OUT_BUF_LEN)?,
                metas: Box::new(std::array::from_fn(|_| SendMeta::zeroed())),
                held: false,
                pending: 0,
                sends: 0,
            });
        }
        let tun_bufs = BufRing::new(bufs, buf_size, GROUP_TUN)?;
        let net_bufs = BufRing::new(bufs, buf_size, GROUP_NET)?;
        tun_bufs.register(ring.raw())?;
        net_bufs.register(ring.raw())?;
        let n = bufs as usize;
        let mut io = UringIo {
            ring,
            tun_bufs,
            net_bufs,
            tun_slots: SlotTracker::new(n),
            net_slots: SlotTracker::new(n),
            tun_meta: (0..n).map(|_| SendMeta::zeroed()).collect(),
            net_meta: (0..n).map(|_| SendMeta::zeroed()).collect(),
            recv_msgs: hashbrown::HashMap::new(),
            outs: out_bufs,
            out_free: (0..outs).rev().collect(),
            wake_buf: Box::new(0),
            comps: Vec::with_capacity(256),
            slot_errors: 0,
        };
        for bid in 0..bufs {
            io.recycle_tun(bid);
            io.recycle_net(bid);
        }
        io.commit();
        Ok(io)
    }

    /// Arms the multishot TUN read.
    pub(crate) fn arm_tun_read(&mut self, fd: RawFd) -> io::Result<()> {
        // len 0: the kernel requires it for READ_MULTISHOT (each completion uses one buffer).
        self.ring
            .read_multi(fd, 0, self.tun_bufs.bgid(), ud(OP_TUN_READ, 0))
    }

    /// Arms a multishot recvmsg on socket `fd`, identified by `token` in completions.
    pub(crate) fn arm_recv(&mut self, fd: RawFd, token: u32) -> io::Result<()> {
        let msg = self.recv_msgs.entry(token).or_insert_with(|| {
            // SAFETY: msghdr is a plain C struct; all-zero is valid.
            let mut m: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
            m.msg_namelen = RECV_NAME_LEN as libc::socklen_t;
            m.msg_controllen = RECV_CONTROL_LEN as _;
            m
        });
        let p: *const libc::msghdr = &**msg;
        // SAFETY: the boxed msghdr is kept in `recv_msgs` (never removed while the ring lives),
        // so its address is stable until the request ends.
        unsafe {
            self.ring
                .recvmsg_multi(fd, p, self.net_bufs.bgid(), ud(OP_NET_RECV, token))
        }
    }

    /// Arms an 8-byte read on the wake-up eventfd.
    pub(crate) fn arm_wake(&mut self, fd: RawFd) -> io::Result<()> {
        let p: *mut u64 = &mut *self.wake_buf;
        // SAFETY: `wake_buf` is boxed and lives as long as the ring; only one wake read is
        // armed at a time (re-armed after its completion).
        unsafe { self.ring.read_u64(fd, p, ud(OP_WAKE, 0)) }
    }

    /// Cancels every request on `fd`.
    pub(crate) fn cancel(&mut self, fd: RawFd) -> io::Result<()> {
        self.ring.cancel_fd(fd, ud(OP_CANCEL, 0))
    }

    /// Submits and waits for at least one completion or `timeout`.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.ring.submit_and_wait(timeout)
    }

    /// Decodes available completions into `out`, moving buffer ownership accordingly.
    pub(crate) fn completions(&mut self, out: &mut Vec<Done>) {
        out.clear();
        let mut comps = std::mem::take(&mut self.comps);
        self.ring.drain(&mut comps);
        for c in &comps {
            let arg = (c.user_data & 0xffff_ffff) as u32;
            let op = match c.user_data >> OP_SHIFT {
                OP_TUN_READ => Op::TunRead,
                OP_NET_RECV => Op::NetRecv(arg),
                OP_SEND_TUN => Op::SendFromTun(arg as u16),
                OP_SEND_NET => Op::SendFromNet(arg as u16),
                OP_TUN_WRITE => Op::TunWrite(arg as u16),
                OP_WAKE => Op::Wake,
                OP_CANCEL => Op::Cancel,
                OP_OUT_SEND => Op::OutSend(arg as u16),
                OP_OUT_WRITE => Op::OutWrite(arg as u16),
                _ => Op::Unknown,
            };
            if let Op::OutSend(i) | Op::OutWrite(i) = op {
                self.out_complete(i);
            }
            let buffer = c.buffer();
            let ok = match (op, buffer) {
                (Op::TunRead, Some(b)) => self.tun_slots.take(b).is_ok(),
                (Op::NetRecv(_), Some(b)) => self.net_slots.take(b).is_ok(),
                (Op::SendFromTun(b), _) => self.tun_slots.complete(b).is_ok(),
                (Op::SendFromNet(b), _) | (Op::TunWrite(b), _) => {
                    self.net_slots.complete(b).is_ok()
                }
                _ => true,
            };
            if !ok {
                self.slot_errors += 1;
                continue;
            }
            out.push(Done {
                op,
                result: c.result,
                buffer,
                more: c.more(),
            });
        }
        self.comps = comps;
    }

    /// The TUN-group buffer `bid`, if we hold it.
    pub(crate) fn tun_buf(&mut self, bid: u16) -> Option<&mut [u8]> {
        if !self.tun_slots.is_held(bid) {
            return None;
        }
        // SAFETY: the tracker says we hold `bid` (returned by a completion, neither provided
        // again nor in flight), and the &mut borrow of self prevents a second view.
        Some(unsafe { self.tun_bufs.buf_mut(bid) })
    }

    /// The net-group buffer `bid`, if we hold it.
    pub(crate) fn net_buf(&mut self, bid: u16) -> Option<&mut [u8]> {
        if !self.net_slots.is_held(bid) {
            return None;
        }
        // SAFETY: as in `tun_buf`.
        Some(unsafe { self.net_bufs.buf_mut(bid) })
    }

    /// Gives a TUN-group buffer back to the kernel (visible after `commit`).
    pub(crate) fn recycle_tun(&mut self, bid: u16) {
        if self.tun_slots.provide(bid).is_ok() {
            self.tun_bufs.provide(bid);
        } else {
            self.slot_errors += 1;
        }
    }

    /// Gives a net-group buffer back to the kernel.
    pub(crate) fn recycle_net(&mut self, bid: u16) {
        if self.net_slots.provide(bid).is_ok() {
            self.net_bufs.provide(bid);
        } else {
            self.slot_errors += 1;
        }
    }

    /// Publishes recycled buffers.
    pub(crate) fn commit(&mut self) {
        self.tun_bufs.commit();
        self.net_bufs.commit();
    }

    /// TUN-group buffers currently provided to the kernel.
    pub(crate) fn tun_available(&self) -> usize {
        self.tun_slots.in_kernel()
    }

    /// Net-group buffers currently provided to the kernel.
    pub(crate) fn net_available(&self) -> usize {
        self.net_slots.in_kernel()
    }

    /// Requests in flight that reference our buffers.
    pub(crate) fn in_flight(&self) -> usize {
        self.tun_slots.in_flight()
            + self.net_slots.in_flight()
            + self.outs.iter().map(|o| o.pending as usize).sum::<usize>()
    }

    /// Takes a free out buffer (`None`: all held or in flight).
    pub(crate) fn out_take(&mut self) -> Option<u16> {
        let i = self.out_free.pop()?;
        match self.outs.get_mut(i as usize) {
            Some(o) => {
                o.held = true;
                o.sends = 0;
                Some(i)
            }
            None => None,
        }
    }

    /// Done submitting from out buffer `i`: it is free once its requests complete.
    pub(crate) fn out_release(&mut self, i: u16) {
        if let Some(o) = self.outs.get_mut(i as usize) {
            if o.held {
                o.held = false;
                if o.pending == 0 {
                    self.out_free.push(i);
                }
            }
        }
    }

    fn out_complete(&mut self, i: u16) {
        if let Some(o) = self.outs.get_mut(i as usize) {
            o.pending = o.pending.saturating_sub(1);
            if o.pending == 0 && !o.held {
                self.out_free.push(i);
            }
        }
    }

    /// Out buffer `i`, if held with no request pending.
    pub(crate) fn out_buf(&mut self, i: u16) -> Option<&mut [u8]> {
        out_view(&mut self.outs, i)
    }

    /// The TUN-group buffer `bid` and out buffer `out`, both ours, as two views.
    pub(crate) fn tun_buf_and_out(&mut self, bid: u16, out: u16) -> Option<(&mut [u8], &mut [u8])> {
        if !self.tun_slots.is_held(bid) {
            return None;
        }
        // SAFETY: as in `tun_buf`; the out view is checked in `out_view`.
        let src = unsafe { self.tun_bufs.buf_mut(bid) };
        let dst = out_view(&mut self.outs, out)?;
        Some((src, dst))
    }

    /// The net-group buffer `bid` and out buffer `out`, both ours, as two views.
    pub(crate) fn net_buf_and_out(&mut self, bid: u16, out: u16) -> Option<(&mut [u8], &mut [u8])> {
        if !self.net_slots.is_held(bid) {
            return None;
        }
        // SAFETY: as in `net_buf`; the out view is checked in `out_view`.
        let src = unsafe { self.net_bufs.buf_mut(bid) };
        let dst = out_view(&mut self.outs, out)?;
        Some((src, dst))
    }

    /// Queues a send of `range` of out buffer `out` on `fd` (to `to`, or connected), as UDP
    /// GSO segments of `gso_size` bytes when the range holds more than one.
    pub(crate) fn out_send(
        &mut self,
        out: u16,
        range: Range<usize>,
        fd: RawFd,
        to: Option<&SocketAddr>,
        gso_size: u16,
    ) -> io::Result<()> {
        let o = self
            .outs
            .get_mut(out as usize)
            .filter(|o| o.held)
            .ok_or_else(|| io::Error::other("out buffer not held"))?;
        if range.start > range.end || range.end > OUT_BUF_LEN || gso_size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad out range"));
        }
        let meta = o
            .metas
            .get_mut(o.sends)
            .ok_or_else(|| io::Error::other("too many sends from one out buffer"))?;
        // SAFETY: the range was checked to lie within the OUT_BUF_LEN-byte region.
        let start = unsafe { o.mem.as_ptr().add(range.start) };
        let p = meta.prepare(start, range.end - range.start, to);
        if range.end - range.start > gso_size as usize {
            let clen = super::udp::write_gso_cmsg(&mut meta.cmsg, gso_size);
            meta.msg.msg_control = meta.cmsg.as_mut_ptr().cast();
            meta.msg.msg_controllen = clen as _;
        }
        // SAFETY: `meta` lives in a box owned by `self.outs` that is never dropped or moved
        // while the ring lives; the out buffer stays unavailable (pending > 0) until the
        // completion, so neither the memory nor the meta is reused before the kernel is done.
        unsafe { self.ring.sendmsg(fd, p, ud(OP_OUT_SEND, out as u32)) }?;
        o.sends += 1;
        o.pending += 1;
        Ok(())
    }

    /// Queues a TUN write of `range` of out buffer `out` (a coalesced frame).
    pub(crate) fn out_write(&mut self, out: u16, range: Range<usize>, fd: RawFd) -> io::Result<()> {
        let o = self
            .outs
            .get_mut(out as usize)
            .filter(|o| o.held)
            .ok_or_else(|| io::Error::other("out buffer not held"))?;
        if range.start > range.end || range.end > OUT_BUF_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad out range"));
        }
        // SAFETY: range checked within the region; the buffer stays unavailable until every
        // request on it completed (pending).
        unsafe {
            self.ring.write(
                fd,
                o.mem.as_ptr().add(range.start),
                (range.end - range.start) as u32,
                ud(OP_OUT_WRITE, out as u32),
            )
        }?;
        o.pending += 1;
        Ok(())
    }

    fn send_from(
        &mut self,
        tun_group: bool,
        bid: u16,
        range: Range<usize>,
        fd: RawFd,
        to: Option<&SocketAddr>,
    ) -> io::Result<()> {
        let (bufs, slots, metas, op) = if tun_group {
            (
                &self.tun_bufs,
                &mut self.tun_slots,
                &mut self.tun_meta,
                OP_SEND_TUN,
            )
        } else {
            (
                &self.net_bufs,
                &mut self.net_slots,
                &mut self.net_meta,
                OP_SEND_NET,
            )
        };
        if range.start > range.end || range.end > bufs.buf_size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range outside buffer",
            ));
        }
        let meta = metas
            .get_mut(bid as usize)
            .ok_or_else(|| io::Error::other("bad buffer id"))?;
        slots
            .submit(bid)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let base = bufs.buf_ptr(bid);
        // SAFETY: range was checked to lie within the buffer.
        let start = unsafe { base.add(range.start) };
        let p = meta.prepare(start, range.end - range.start, to);
        // SAFETY: `meta` lives in a boxed slice that never moves; the slot is InFlight, so
        // neither the buffer nor its meta is reused until the completion moves it back.
        let r = unsafe { self.ring.sendmsg(fd, p, ud(op, bid as u32)) };
        if r.is_err() {
            let _ = if tun_group {
                self.tun_slots.complete(bid)
            } else {
                self.net_slots.complete(bid)
            };
        }
        r
    }

    /// Sends `range` of TUN-group buffer `bid` to `to` on socket `fd` (zero copy: the packet
    /// read from the TUN is the UDP payload); `to = None` on a connected socket. The buffer is
    /// in flight until `SendFromTun`.
    pub(crate) fn send_tun_buf(
        &mut self,
        bid: u16,
        range: Range<usize>,
        fd: RawFd,
        to: Option<&SocketAddr>,
    ) -> io::Result<()> {
        self.send_from(true, bid, range, fd, to)
    }

    /// Sends `range` of net-group buffer `bid` (keepalive answered in place).
    pub(crate) fn send_net_buf(
        &mut self,
        bid: u16,
        range: Range<usize>,
        fd: RawFd,
        to: &SocketAddr,
    ) -> io::Result<()> {
        self.send_from(false, bid, range, fd, Some(to))
    }

    /// Writes `range` of net-group buffer `bid` to the TUN `fd` (zero copy decapsulation).
    pub(crate) fn write_net_buf(
        &mut self,
        bid: u16,
        range: Range<usize>,
        fd: RawFd,
    ) -> io::Result<()> {
        if range.start > range.end || range.end > self.net_bufs.buf_size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range outside buffer",
            ));
        }
        self.net_slots
            .submit(bid)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let base = self.net_bufs.buf_ptr(bid);
        // SAFETY: range checked within the buffer; the slot is InFlight until TunWrite.
        let r = unsafe {
            self.ring.write(
                fd,
                base.add(range.start),
                (range.end - range.start) as u32,
                ud(OP_TUN_WRITE, bid as u32),
            )
        };
        if r.is_err() {
            let _ = self.net_slots.complete(bid);
        }
        r
    }
}

/// The view of out buffer `i` if it is held with no request pending.
fn out_view(outs: &mut [OutBuf], i: u16) -> Option<&mut [u8]> {
    let o = outs.get_mut(i as usize)?;
    if !o.held || o.pending > 0 {
        return None;
    }
    // SAFETY: the region is OUT_BUF_LEN bytes of our own mapping; held with nothing pending
    // means no request reads it, and the &mut borrow of `outs` prevents a second view.
    Some(unsafe { std::slice::from_raw_parts_mut(o.mem.as_ptr(), OUT_BUF_LEN) })
}

/// A parsed multishot recvmsg buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    /// Source address.
    pub(crate) from: Option<SocketAddr>,
    /// Payload bytes in the buffer.
    pub(crate) payload: Range<usize>,
    /// The payload did not fit.
    pub(crate) truncated: bool,
    /// `UDP_GRO`: the payload is several datagrams of this size (the last may be shorter).
    pub(crate) gro: Option<u16>,
}

/// Parses a multishot recvmsg buffer of `n` valid bytes, with its `UDP_GRO` cmsg.
pub(crate) fn parse_recv_gro(buf: &[u8], n: usize) -> Option<Received> {
    let (from, payload, truncated) = parse_recv(buf, n)?;
    let out = RecvMsgOut::parse(buf)?;
    let c0 = RECVMSG_OUT_LEN + RECV_NAME_LEN;
    let clen = (out.controllen as usize).min(RECV_CONTROL_LEN);
    let gro = buf.get(c0..c0 + clen).and_then(super::udp::parse_gro_cmsg);
    Some(Received {
        from,
        payload,
        truncated,
        gro,
    })
}

/// Parses a multishot recvmsg buffer of `n` valid bytes: (source, payload range, truncated).
pub(crate) fn parse_recv(buf: &[u8], n: usize) -> Option<(Option<SocketAddr>, Range<usize>, bool)> {
    let buf = buf.get(..n)?;
    let out = RecvMsgOut::parse(buf)?;
    let name =
        buf.get(RECVMSG_OUT_LEN..RECVMSG_OUT_LEN + (out.namelen as usize).min(RECV_NAME_LEN))?;
    let from = parse_sockaddr(name);
    let start = RECV_PAYLOAD_OFF;
    let end = start.checked_add(out.payloadlen as usize)?.min(buf.len());
    let truncated = out.flags & libc::MSG_TRUNC as u32 != 0
        || (out.payloadlen as usize) > buf.len().saturating_sub(start);
    Some((from, start..end, truncated))
}
