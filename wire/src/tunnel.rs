//! UPMT tunnel payload framing (the payload of the outer UDP datagram; `docs/PROTOCOL.md`).
//!
//! The first byte decides what a tunnel datagram carries:
//!
//! ```text
//! high nibble 4    -> an IPv4 packet (data)
//! high nibble 6    -> an IPv6 packet (data)
//! byte 0 == 0x00   -> UPMT control frame:
//!     0      1      2      3
//!     +------+------+------+------+---------------------+
//!     | 0x00 | kind |  len (BE)   | body (len bytes)    |
//!     +------+------+------+------+---------------------+
//!     kind 0x01 keepalive request, 0x02 keepalive reply  (body: Keepalive, 16 bytes)
//!     kind 0x03 signalling (body: a SIP message, UTF-8)
//!     other kinds reserved -> Error::Unsupported (dropped and counted)
//! anything else    -> Error::Malformed (dropped and counted)
//! ```
//!
//! SIP text starts with an ASCII letter, e.g. `M` = 0x4D whose high nibble is 4: hence the
//! explicit 0x00 control marker. The control header's `len` must match the datagram exactly.

use crate::{Error, Result};

/// Bytes the tunnel adds to an inner packet: outer IPv4 header (20) + UDP header (8).
pub const OUTER_OVERHEAD_V4: usize = 28;
/// Length of the control frame header (`0x00, kind, len`).
pub const CONTROL_HEADER_LEN: usize = 4;
/// First byte of a control frame.
pub const CONTROL_MARKER: u8 = 0x00;
/// Length of a keepalive body.
pub const KEEPALIVE_LEN: usize = 16;
/// UDP port of the anchor's tunnel endpoint.
pub const ANCHOR_PORT: u16 = 1800;

/// Kind of a control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// Keepalive request (0x01): body is a [`Keepalive`].
    KeepaliveRequest = 0x01,
    /// Keepalive reply (0x02): body is the request's [`Keepalive`], echoed unchanged.
    KeepaliveReply = 0x02,
    /// Signalling (0x03): body is a SIP message (UTF-8).
    Signalling = 0x03,
}

impl TryFrom<u8> for ControlKind {
    type Error = Error;

    fn try_from(v: u8) -> Result<ControlKind> {
        match v {
            0x01 => Ok(ControlKind::KeepaliveRequest),
            0x02 => Ok(ControlKind::KeepaliveReply),
            0x03 => Ok(ControlKind::Signalling),
            _ => Err(Error::Unsupported("tunnel: reserved control kind")),
        }
    }
}

impl From<ControlKind> for u8 {
    fn from(k: ControlKind) -> u8 {
        k as u8
    }
}

/// What a tunnel datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// An IPv4 packet (the whole payload; not validated beyond the version nibble).
    Ipv4(&'a [u8]),
    /// An IPv6 packet (the whole payload; not validated beyond the version nibble).
    Ipv6(&'a [u8]),
    /// A control frame.
    Control {
        /// Its kind.
        kind: ControlKind,
        /// Its body (`len` bytes after the 4-byte header).
        body: &'a [u8],
    },
}

impl<'a> Payload<'a> {
    /// Classifies a tunnel datagram's payload (see the module docs).
    ///
    /// Errors: empty or shorter than the control header or its `len` -> [`Error::Truncated`];
    /// longer than `len` says, or an unknown first byte -> [`Error::Malformed`]; reserved
    /// kind -> [`Error::Unsupported`].
    pub fn classify(data: &'a [u8]) -> Result<Payload<'a>> {
        let first = *data.first().ok_or(Error::Truncated)?;
        match first >> 4 {
            4 => return Ok(Payload::Ipv4(data)),
            6 => return Ok(Payload::Ipv6(data)),
            _ => {}
        }
        if first != CONTROL_MARKER {
            return Err(Error::Malformed("tunnel: unknown payload type"));
        }
        let hdr = data.get(..CONTROL_HEADER_LEN).ok_or(Error::Truncated)?;
        let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        let kind = ControlKind::try_from(hdr[1])?;
        let body = data.get(CONTROL_HEADER_LEN..).unwrap_or(&[]);
        if body.len() < len {
            return Err(Error::Truncated);
        }
        if body.len() > len {
            return Err(Error::Malformed("tunnel: bytes after the control body"));
        }
        Ok(Payload::Control { kind, body })
    }
}

/// Writes a control frame header for a body of `body_len` bytes into `buf[..4]` (for
/// building the body in place after it).
pub fn emit_control_header(buf: &mut [u8], kind: ControlKind, body_len: usize) -> Result<()> {
    let len = u16::try_from(body_len).map_err(|_| Error::BufferTooSmall)?;
    let hdr = buf
        .get_mut(..CONTROL_HEADER_LEN)
        .ok_or(Error::BufferTooSmall)?;
    let l = len.to_be_bytes();
    hdr.copy_from_slice(&[CONTROL_MARKER, kind.into(), l[0], l[1]]);
    Ok(())
}

/// Writes a whole control frame (header and a copy of `body`) into `buf`; returns its length.
pub fn emit_control(buf: &mut [u8], kind: ControlKind, body: &[u8]) -> Result<usize> {
    let total = CONTROL_HEADER_LEN + body.len();
    let out = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    emit_control_header(out, kind, body.len())?;
    out.get_mut(CONTROL_HEADER_LEN..)
        .ok_or(Error::BufferTooSmall)?
        .copy_from_slice(body);
    Ok(total)
}

/// Keepalive body: `tunnel_id: u32 BE, seq: u32 BE, timestamp_us: u64 BE`. The timestamp is
/// the sender's monotonic clock; the reply echoes the whole body unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keepalive {
    /// Tunnel identifier.
    pub tunnel_id: u32,
    /// Sequence number.
    pub seq: u32,
    /// Sender's monotonic timestamp, microseconds.
    pub timestamp_us: u64,
}

impl Keepalive {
    /// Parses a keepalive body (exactly [`KEEPALIVE_LEN`] bytes).
    pub fn parse(body: &[u8]) -> Result<Keepalive> {
        let b: &[u8; KEEPALIVE_LEN] = body.try_into().map_err(|_| {
            if body.len() < KEEPALIVE_LEN {
                Error::Truncated
            } else {
                Error::Malformed("keepalive: body longer than 16 bytes")
            }
        })?;
        Ok(Keepalive {
            tunnel_id: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            timestamp_us: u64::from_be_bytes([
                b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
            ]),
        })
    }

    /// The body's bytes.
    pub fn to_bytes(&self) -> [u8; KEEPALIVE_LEN] {
        let mut b = [0u8; KEEPALIVE_LEN];
        b[0..4].copy_from_slice(&self.tunnel_id.to_be_bytes());
        b[4..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.timestamp_us.to_be_bytes());
        b
    }

    /// Writes a whole keepalive frame of `kind` (request or reply) into `buf`; returns its
    /// length (20).
    pub fn emit(&self, buf: &mut [u8], kind: ControlKind) -> Result<usize> {
        emit_control(buf, kind, &self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    #[test]
    fn data_packets() {
        let v4 = hex!("4500001c");
        assert_eq!(Payload::classify(&v4).unwrap(), Payload::Ipv4(&v4));
        let v6 = hex!("60000000");
        assert_eq!(Payload::classify(&v6).unwrap(), Payload::Ipv6(&v6));
    }

    #[test]
    fn keepalive_round_trip() {
        let k = Keepalive {
            tunnel_id: 7,
            seq: 42,
            timestamp_us: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; 64];
        let n = k.emit(&mut buf, ControlKind::KeepaliveRequest).unwrap();
        assert_eq!(n, 20);
        assert_eq!(
            buf[..n],
            hex!("00010010 00000007 0000002a 0102030405060708")
        );
        match Payload::classify(&buf[..n]).unwrap() {
            Payload::Control { kind, body } => {
                assert_eq!(kind, ControlKind::KeepaliveRequest);
                assert_eq!(Keepalive::parse(body).unwrap(), k);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Keepalive::parse(&buf[4..19]).unwrap_err(), Error::Truncated);
        assert!(matches!(
            Keepalive::parse(&buf[4..21]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn signalling_starting_with_m() {
        let sip = b"MESSAGE sip:an SIP/2.0\r\n\r\n";
        let mut buf = [0u8; 64];
        let n = emit_control(&mut buf, ControlKind::Signalling, sip).unwrap();
        assert_eq!(
            Payload::classify(&buf[..n]).unwrap(),
            Payload::Control {
                kind: ControlKind::Signalling,
                body: sip
            }
        );
        // The bare SIP text would look like IPv4: the marker is what tells them apart.
        assert!(matches!(Payload::classify(sip).unwrap(), Payload::Ipv4(_)));
    }

    #[test]
    fn malformed() {
        assert_eq!(Payload::classify(&[]).unwrap_err(), Error::Truncated);
        assert_eq!(Payload::classify(&[0, 1, 0]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Payload::classify(&[0, 3, 0, 2, 0x41]).unwrap_err(),
            Error::Truncated
        );
        assert!(matches!(
            Payload::classify(&[0, 3, 0, 0, 1]),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            Payload::classify(&[0, 9, 0, 0]),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            Payload::classify(&[0x12]),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            Payload::classify(&[0x01, 1, 0, 0]),
            Err(Error::Malformed(_))
        ));
        let mut small = [0u8; 3];
        assert_eq!(
            emit_control(&mut small, ControlKind::KeepaliveReply, &[]).unwrap_err(),
            Error::BufferTooSmall
        );
    }
}
