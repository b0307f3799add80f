//! Where a datagram came from / goes to: the plain SIP socket or the inside of a tunnel.

use std::net::SocketAddr;

/// The way a signalling datagram travels.
///
/// The daemon tags every datagram it feeds in with its path, and sends every
/// [`Transmit`] back the same way: `Udp` on the SIP socket (anchor port 5060), `Tunnel` as
/// a UPMT control frame of kind 0x03 on the tunnel socket (anchor port 1800), see
/// [`crate::framing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// Plain UDP; the address is the remote peer's.
    Udp(SocketAddr),
    /// Inside a UPMT tunnel.
    Tunnel {
        /// The daemon's handle for the local tunnel socket / interface (the mobile host
        /// uses its interface index; the anchor may use 0 or a shard number).
        link: u32,
        /// The remote outer address: on the anchor the MH's address as seen (after NAT),
        /// which is also the tunnel's identity; on the MH the anchor's tunnel address.
        remote: SocketAddr,
    },
}

impl Path {
    /// The remote address.
    pub fn remote(&self) -> SocketAddr {
        match *self {
            Path::Udp(a) => a,
            Path::Tunnel { remote, .. } => remote,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// How to send it.
    pub path: Path,
    /// The SIP message (for `Path::Tunnel`, the daemon wraps it with
    /// [`crate::framing::encode_signalling`]).
    pub payload: Vec<u8>,
}
