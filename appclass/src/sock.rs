//! The `NETLINK_SOCK_DIAG` socket: sends [`diag::build_request`] and reads the answer.
//!
//! The socket comes from `netlink-sys` (already a dependency of the daemon), so this crate
//! needs no `unsafe`. It is non-blocking: the kernel handles a sock_diag request inside the
//! `sendto` call and queues the answer before `sendto` returns, so the answer is read at once
//! and a missing one is an error rather than a stall of the caller.

use std::io;

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use crate::diag::{self, Answer, SockInfo};
use crate::Flow;

/// Largest answer read (an exact lookup's answer is about 150 bytes).
const RECV_BUF: usize = 8192;
/// Datagrams read per lookup before giving up (stale answers to older requests).
const MAX_READS: usize = 8;

/// A sock_diag netlink socket for exact lookups. Sees the sockets of the network namespace
/// it was created in.
#[derive(Debug)]
pub struct DiagSocket {
    sock: Socket,
    kernel: SocketAddr,
    seq: u32,
    buf: Vec<u8>,
}

impl DiagSocket {
    /// Opens the socket.
    pub fn new() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
        sock.bind_auto()?;
        sock.set_non_blocking(true)?;
        Ok(DiagSocket {
            sock,
            kernel: SocketAddr::new(0, 0),
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// The socket that owns `flow` (as it leaves the host: `src` = local end), or `None`
    /// when the kernel has none.
    pub fn lookup(&mut self, flow: &Flow) -> io::Result<Option<SockInfo>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = diag::build_request(seq, flow)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.sock.send_to(&req, &self.kernel, 0)?;
        for _ in 0..MAX_READS {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no sock_diag answer queued after the request",
                    ))
                }
                Err(e) => return Err(e),
            }
            match diag::parse_answer(&self.buf, seq) {
                Ok(Answer::Socket(s)) => return Ok(Some(s)),
                Ok(Answer::NotFound) => return Ok(None),
                Ok(Answer::Nothing) => continue,
                Err(diag::DiagError::Kernel(errno)) => {
                    return Err(io::Error::from_raw_os_error(errno))
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no sock_diag answer for our request",
        ))
    }
}
