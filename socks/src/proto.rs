//! SOCKS5 messages (RFC 1928) and username/password sub-negotiation (RFC 1929), parsed
//! from and written to byte slices. No I/O.
//!
//! Parsers take what has been read so far and answer [`Parse::Incomplete`] when more bytes
//! are needed, so the server can read exactly one message at a time; anything malformed is a
//! [`SocksError`], never a panic.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Protocol version byte.
pub const VERSION: u8 = 5;
/// RFC 1928 section 3: "X'00' NO AUTHENTICATION REQUIRED".
pub const METHOD_NONE: u8 = 0x00;
/// RFC 1928 section 3: "X'02' USERNAME/PASSWORD".
pub const METHOD_USERPASS: u8 = 0x02;
/// RFC 1928 section 3: "X'FF' NO ACCEPTABLE METHODS".
pub const METHOD_UNACCEPTABLE: u8 = 0xff;

/// What a parser made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole message, and how many bytes it took.
    Done(T, usize),
    /// Need more bytes.
    Incomplete,
}

/// A malformed or unsupported message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SocksError {
    /// The version byte is not 5 (or 1 in the RFC 1929 sub-negotiation).
    #[error("unsupported SOCKS version {0}")]
    Version(u8),
    /// The greeting lists no methods.
    #[error("no authentication methods offered")]
    NoMethods,
    /// A reserved byte is not zero.
    #[error("reserved byte is not zero")]
    Reserved,
    /// Unknown address type (answered with reply 0x08).
    #[error("address type {0} not supported")]
    AddressType(u8),
    /// Unknown command (answered with reply 0x07).
    #[error("command {0} not supported")]
    Command(u8),
    /// A domain name that is empty or not UTF-8.
    #[error("bad domain name")]
    Domain,
    /// A UDP datagram that is a fragment (FRAG != 0): RFC 1928 section 7 allows dropping it.
    #[error("UDP fragments are not supported")]
    Fragment,
}

/// The client's greeting: the authentication methods it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Offered methods.
    pub methods: Vec<u8>,
}

/// Parses the greeting: `VER NMETHODS METHODS...`.
pub fn parse_greeting(b: &[u8]) -> Result<Parse<Greeting>, SocksError> {
    let (Some(&ver), Some(&n)) = (b.first(), b.get(1)) else {
        return Ok(Parse::Incomplete);
    };
    if ver != VERSION {
        return Err(SocksError::Version(ver));
    }
    if n == 0 {
        return Err(SocksError::NoMethods);
    }
    let end = 2 + usize::from(n);
    match b.get(2..end) {
        None => Ok(Parse::Incomplete),
        Some(m) => Ok(Parse::Done(
            Greeting {
                methods: m.to_vec(),
            },
            end,
        )),
    }
}

/// RFC 1929 username/password request: `VER=1 ULEN UNAME PLEN PASSWD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPass {
    /// User name (UPMT: the application's name).
    pub user: String,
    /// Password.
    pub pass: String,
}

/// Parses an RFC 1929 request.
pub fn parse_userpass(b: &[u8]) -> Result<Parse<UserPass>, SocksError> {
    let (Some(&ver), Some(&ulen)) = (b.first(), b.get(1)) else {
        return Ok(Parse::Incomplete);
    };
    if ver != 1 {
        return Err(SocksError::Version(ver));
    }
    let u_end = 2 + usize::from(ulen);
    let Some(&plen) = b.get(u_end) else {
        return Ok(Parse::Incomplete);
    };
    let p_end = u_end + 1 + usize::from(plen);
    let (Some(user), Some(pass)) = (b.get(2..u_end), b.get(u_end + 1..p_end)) else {
        return Ok(Parse::Incomplete);
    };
    Ok(Parse::Done(
        UserPass {
            user: String::from_utf8_lossy(user).into_owned(),
            pass: String::from_utf8_lossy(pass).into_owned(),
        },
        p_end,
    ))
}

/// A destination: an address, or a name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// IPv4 or IPv6 address and port.
    Addr(SocketAddr),
    /// Domain name and port.
    Domain(String, u16),
}

/// The request's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// X'01' CONNECT.
    Connect,
    /// X'02' BIND (refused with 0x07: not needed by UPMT).
    Bind,
    /// X'03' UDP ASSOCIATE.
    UdpAssociate,
}

/// A SOCKS request: `VER CMD RSV ATYP DST.ADDR DST.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Command.
    pub cmd: Cmd,
    /// Destination (for UDP ASSOCIATE: where the client will send from, often zeros).
    pub target: Target,
}

/// Parses `ATYP ADDR PORT` at the start of `b`.
fn parse_target(b: &[u8]) -> Result<Parse<Target>, SocksError> {
    let Some(&atyp) = b.first() else {
        return Ok(Parse::Incomplete);
    };
    let (addr_len, skip) = match atyp {
        1 => (4, 1),
        4 => (16, 1),
        3 => match b.get(1) {
            None => return Ok(Parse::Incomplete),
            Some(&0) => return Err(SocksError::Domain),
            Some(&n) => (usize::from(n), 2),
        },
        t => return Err(SocksError::AddressType(t)),
    };
    let end = skip + addr_len + 2;
    let (Some(a), Some(p)) = (b.get(skip..skip + addr_len), b.get(skip + addr_len..end)) else {
        return Ok(Parse::Incomplete);
    };
    let port = u16::from_be_bytes([p[0], p[1]]);
    let target = match atyp {
        1 => {
            let o: [u8; 4] = a.try_into().map_err(|_| SocksError::AddressType(1))?;
            Target::Addr(SocketAddr::from((Ipv4Addr::from(o), port)))
        }
        4 => {
            let o: [u8; 16] = a.try_into().map_err(|_| SocksError::AddressType(4))?;
            Target::Addr(SocketAddr::from((Ipv6Addr::from(o), port)))
        }
        _ => {
            let name = std::str::from_utf8(a).map_err(|_| SocksError::Domain)?;
            Target::Domain(name.to_owned(), port)
        }
    };
    Ok(Parse::Done(target, end))
}

/// Writes `ATYP ADDR PORT` for an address.
fn emit_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            out.push(4);
            out.extend_from_slice(&v6.ip().octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Parses a request.
pub fn parse_request(b: &[u8]) -> Result<Parse<Request>, SocksError> {
    let (Some(&ver), Some(&cmd), Some(&rsv)) = (b.first(), b.get(1), b.get(2)) else {
        return Ok(Parse::Incomplete);
    };
    if ver != VERSION {
        return Err(SocksError::Version(ver));
    }
    if rsv != 0 {
        return Err(SocksError::Reserved);
    }
    let cmd = match cmd {
        1 => Cmd::Connect,
        2 => Cmd::Bind,
        3 => Cmd::UdpAssociate,
        c => return Err(SocksError::Command(c)),
    };
    match parse_target(b.get(3..).unwrap_or(&[]))? {
        Parse::Incomplete => Ok(Parse::Incomplete),
        Parse::Done(target, n) => Ok(Parse::Done(Request { cmd, target }, 3 + n)),
    }
}

/// Reply codes (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    /// X'00' succeeded.
    Succeeded = 0,
    /// X'01' general SOCKS server failure.
    GeneralFailure = 1,
    /// X'02' connection not allowed by ruleset.
    NotAllowed = 2,
    /// X'03' Network unreachable.
    NetworkUnreachable = 3,
    /// X'04' Host unreachable.
    HostUnreachable = 4,
    /// X'05' Connection refused.
    ConnectionRefused = 5,
    /// X'06' TTL expired.
    TtlExpired = 6,
    /// X'07' Command not supported.
    CommandNotSupported = 7,
    /// X'08' Address type not supported.
    AddressTypeNotSupported = 8,
}

impl Reply {
    /// The reply for an I/O error of connecting.
    pub fn from_io(e: &std::io::Error) -> Reply {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused => Reply::ConnectionRefused,
            TimedOut => Reply::TtlExpired,
            NetworkUnreachable => Reply::NetworkUnreachable,
            HostUnreachable | NotFound => Reply::HostUnreachable,
            PermissionDenied => Reply::NotAllowed,
            _ => Reply::GeneralFailure,
        }
    }

    /// The reply for a request that could not be parsed.
    pub fn from_error(e: &SocksError) -> Reply {
        match e {
            SocksError::AddressType(_) => Reply::AddressTypeNotSupported,
            SocksError::Command(_) => Reply::CommandNotSupported,
            _ => Reply::GeneralFailure,
        }
    }
}

/// A reply: `VER REP RSV ATYP BND.ADDR BND.PORT`.
pub fn emit_reply(rep: Reply, bound: SocketAddr) -> Vec<u8> {
    let mut out = vec![VERSION, rep as u8, 0];
    emit_addr(&mut out, bound);
    out
}

/// A UDP ASSOCIATE datagram's header (RFC 1928 section 7): `RSV RSV FRAG ATYP ADDR PORT`.
/// Returns the target and the offset of the data.
pub fn parse_udp(b: &[u8]) -> Result<(Target, usize), SocksError> {
    let hdr = b.get(..3).ok_or(SocksError::Reserved)?;
    if hdr[0] != 0 || hdr[1] != 0 {
        return Err(SocksError::Reserved);
    }
    if hdr[2] != 0 {
        return Err(SocksError::Fragment);
    }
    match parse_target(b.get(3..).unwrap_or(&[]))? {
        Parse::Done(t, n) => Ok((t, 3 + n)),
        Parse::Incomplete => Err(SocksError::Reserved),
    }
}

/// Prepends the UDP ASSOCIATE header for a datagram from `from`.
pub fn emit_udp(from: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 22);
    out.extend_from_slice(&[0, 0, 0]);
    emit_addr(&mut out, from);
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greeting() {
        assert_eq!(parse_greeting(&[5]), Ok(Parse::Incomplete));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(Parse::Incomplete));
        assert_eq!(
            parse_greeting(&[5, 2, 0, 2, 99]),
            Ok(Parse::Done(
                Greeting {
                    methods: vec![0, 2]
                },
                4
            ))
        );
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(SocksError::Version(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(SocksError::NoMethods));
    }

    #[test]
    fn userpass() {
        let b = [1, 5, b'v', b'i', b'd', b'e', b'o', 1, b'x'];
        assert_eq!(
            parse_userpass(&b),
            Ok(Parse::Done(
                UserPass {
                    user: "video".into(),
                    pass: "x".into()
                },
                9
            ))
        );
        assert_eq!(parse_userpass(&b[..8]), Ok(Parse::Incomplete));
    }

    #[test]
    fn requests() {
        // CONNECT 198.18.3.1:80
        let b = [5, 1, 0, 1, 198, 18, 3, 1, 0, 80];
        assert_eq!(
            parse_request(&b),
            Ok(Parse::Done(
                Request {
                    cmd: Cmd::Connect,
                    target: Target::Addr("198.18.3.1:80".parse().unwrap())
                },
                10
            ))
        );
        for cut in 0..b.len() {
            assert_eq!(parse_request(&b[..cut]), Ok(Parse::Incomplete));
        }
        // Domain.
        let mut d = vec![5, 1, 0, 3, 7];
        d.extend_from_slice(b"ch.test");
        d.extend_from_slice(&[1, 187]);
        assert_eq!(
            parse_request(&d).unwrap(),
            Parse::Done(
                Request {
                    cmd: Cmd::Connect,
                    target: Target::Domain("ch.test".into(), 443)
                },
                d.len()
            )
        );
        assert_eq!(
            parse_request(&[5, 9, 0, 1, 0, 0, 0, 0, 0, 0]),
            Err(SocksError::Command(9))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 7, 0]),
            Err(SocksError::AddressType(7))
        );
        assert_eq!(parse_request(&[5, 1, 1, 1]), Err(SocksError::Reserved));
    }

    #[test]
    fn reply_and_udp_round_trip() {
        let a: SocketAddr = "100.64.0.2:40000".parse().unwrap();
        assert_eq!(
            emit_reply(Reply::Succeeded, a),
            vec![5, 0, 0, 1, 100, 64, 0, 2, 0x9c, 0x40]
        );
        let v6: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let d = emit_udp(v6, b"hello");
        let (t, off) = parse_udp(&d).unwrap();
        assert_eq!(t, Target::Addr(v6));
        assert_eq!(&d[off..], b"hello");
        let mut frag = d.clone();
        frag[2] = 1;
        assert_eq!(parse_udp(&frag), Err(SocksError::Fragment));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_greeting(&b);
            let _ = parse_userpass(&b);
            let _ = parse_request(&b);
            let _ = parse_udp(&b);
        }

        #[test]
        fn done_never_claims_more_than_given(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Parse::Done(_, n)) = parse_request(&b) { prop_assert!(n <= b.len()); }
            if let Ok(Parse::Done(_, n)) = parse_greeting(&b) { prop_assert!(n <= b.len()); }
            if let Ok(Parse::Done(_, n)) = parse_userpass(&b) { prop_assert!(n <= b.len()); }
        }
    }
}
