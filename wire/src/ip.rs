//! Version dispatch: one view for "an IPv4 or IPv6 packet".

use core::net::IpAddr;

use crate::{ipv4, ipv6, Error, IpProtocol, Result};

/// IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Reads the version nibble of the first byte.
pub fn version(data: &[u8]) -> Result<Version> {
    match data.first().map(|b| b >> 4) {
        None => Err(Error::Truncated),
        Some(4) => Ok(Version::V4),
        Some(6) => Ok(Version::V6),
        Some(_) => Err(Error::Malformed("ip: version is neither 4 nor 6")),
    }
}

/// Where the upper-layer header sits in an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transport {
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IP packet.
    pub offset: usize,
    /// End of the IP packet (IPv4 total length, IPv6 40 + payload length); `offset <= end`
    /// and `end <=` the buffer length for a checked packet.
    pub end: usize,
    /// False for non-first fragments, whose bytes at `offset` are not a header.
    pub is_first_fragment: bool,
    /// True for any fragment. In a first fragment the transport header is there, but its
    /// length fields (UDP length) describe the whole datagram, not this packet.
    pub is_fragment: bool,
}

/// An IPv4 or IPv6 packet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<T: AsRef<[u8]>> {
    /// IPv4.
    V4(ipv4::Packet<T>),
    /// IPv6.
    V6(ipv6::Packet<T>),
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Dispatches on the version nibble and runs the version's `check_len`.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        match version(buffer.as_ref())? {
            Version::V4 => Ok(Packet::V4(ipv4::Packet::new_checked(buffer)?)),
            Version::V6 => Ok(Packet::V6(ipv6::Packet::new_checked(buffer)?)),
        }
    }

    /// Same as [`new_checked`](Self::new_checked).
    pub fn parse(buffer: T) -> Result<Packet<T>> {
        Self::new_checked(buffer)
    }

    /// The version.
    pub fn version(&self) -> Version {
        match self {
            Packet::V4(_) => Version::V4,
            Packet::V6(_) => Version::V6,
        }
    }

    /// Source address.
    pub fn src_addr(&self) -> IpAddr {
        match self {
            Packet::V4(p) => p.src_addr().into(),
            Packet::V6(p) => p.src_addr().into(),
        }
    }

    /// Destination address.
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            Packet::V4(p) => p.dst_addr().into(),
            Packet::V6(p) => p.dst_addr().into(),
        }
    }

    /// Length of the packet as its header states (may be less than the buffer).
    pub fn total_len(&self) -> usize {
        match self {
            Packet::V4(p) => usize::from(p.total_len()),
            Packet::V6(p) => p.total_len(),
        }
    }

    /// Locates the upper-layer header (walking IPv6 extension headers).
    pub fn transport(&self) -> Result<Transport> {
        match self {
            Packet::V4(p) => Ok(Transport {
                protocol: p.protocol(),
                offset: p.header_len(),
                end: usize::from(p.total_len()),
                is_first_fragment: p.is_first_fragment(),
                is_fragment: p.is_fragment(),
            }),
            Packet::V6(p) => {
                let w = p.walk()?;
                Ok(Transport {
                    protocol: w.protocol,
                    offset: w.offset,
                    end: p.total_len(),
                    is_first_fragment: w.is_first_fragment(),
                    is_fragment: w.fragment.is_some(),
                })
            }
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        match self {
            Packet::V4(p) => p.into_inner(),
            Packet::V6(p) => p.into_inner(),
        }
    }
}
