//! UPMT control frames inside the tunnel's UDP payload (CONVENTIONS.md, docs/PROTOCOL.md).
//!
//! `[0x00, kind, len: u16 BE, body]`; kind 0x03 carries a SIP message. The first byte tells a
//! control frame (0x00) from data (an IPv4/IPv6 packet, high nibble 4 or 6). The `wire` crate
//! has the data plane's views; this copy keeps `signaling` free of the data-plane crates.

/// Control frame marker (first byte).
pub const CONTROL_MARKER: u8 = 0x00;
/// Kind: keepalive request.
pub const KIND_KEEPALIVE_REQUEST: u8 = 0x01;
/// Kind: keepalive reply.
pub const KIND_KEEPALIVE_REPLY: u8 = 0x02;
/// Kind: signalling (body = one SIP message).
pub const KIND_SIGNALLING: u8 = 0x03;
/// Control frame header length.
pub const HEADER_LEN: usize = 4;

/// Wraps a SIP message into a signalling control frame; `None` if it exceeds 65535 bytes.
pub fn encode_signalling(sip: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(sip.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + sip.len());
    out.extend_from_slice(&[CONTROL_MARKER, KIND_SIGNALLING]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sip);
    Some(out)
}

/// The SIP message inside a tunnel payload, if it is a well-formed signalling frame
/// (exact length: trailing bytes make it malformed).
pub fn decode_signalling(payload: &[u8]) -> Option<&[u8]> {
    match payload {
        [CONTROL_MARKER, KIND_SIGNALLING, hi, lo, body @ ..]
            if usize::from(u16::from_be_bytes([*hi, *lo])) == body.len() =>
        {
            Some(body)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let f = encode_signalling(b"MESSAGE sip:x SIP/2.0\r\n").unwrap();
        assert_eq!(&f[..4], &[0, 3, 0, 23]);
        assert_eq!(
            decode_signalling(&f),
            Some(&b"MESSAGE sip:x SIP/2.0\r\n"[..])
        );
        assert_eq!(decode_signalling(&f[..f.len() - 1]), None);
        assert_eq!(decode_signalling(&[0x45, 0, 0, 0]), None);
        assert_eq!(decode_signalling(&[0, 1, 0, 0]), None);
        assert_eq!(decode_signalling(&[0, 3]), None);
    }
}
