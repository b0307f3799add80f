//! `sockaddr` <-> `SocketAddr` conversions, byte-level and without pointer casts where possible.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Writes `addr` as a `sockaddr_in`/`sockaddr_in6` into `out`; returns the length to pass.
pub(crate) fn write_sockaddr(
    addr: &SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    *out = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Parses a raw `sockaddr_in`/`sockaddr_in6` from bytes (as the kernel wrote them). `None`
/// for other families or short input.
pub(crate) fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET as u16 {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 as u16 {
        let flow = u32::from_ne_bytes(b.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
        let ip = Ipv6Addr::from(ip);
        // A v4-mapped source on a dual-stack socket is reported as plain IPv4.
        if let Some(v4) = ip.to_ipv4_mapped() {
            return Some(SocketAddr::new(IpAddr::V4(v4), port));
        }
        Some(SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)))
    } else {
        None
    }
}

/// Reads a `sockaddr_storage` the kernel filled (`len` bytes valid).
pub(crate) fn read_sockaddr(
    st: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let n = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `st` is a valid sockaddr_storage, readable as bytes for its whole size.
    let bytes = unsafe {
        std::slice::from_raw_parts((st as *const libc::sockaddr_storage).cast::<u8>(), n)
    };
    parse_sockaddr(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v4_v6() {
        for a in [
            "198.18.2.1:1800".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        ] {
            // SAFETY: test-only zeroed POD.
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = write_sockaddr(&a, &mut st);
            assert_eq!(read_sockaddr(&st, len), Some(a));
        }
        assert_eq!(parse_sockaddr(&[1, 2, 3]), None);
    }
}
