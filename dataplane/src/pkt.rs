//! The few packet facts the engine needs, from `wire`: the flow key, the inner source address,
//! and the classification of a tunnel payload (CONVENTIONS.md "Tunnel framing").

use std::net::IpAddr;

pub use wire::tunnel::{ControlKind, CONTROL_HEADER_LEN, KEEPALIVE_LEN as KEEPALIVE_BODY_LEN};
pub use wire::FlowKey;

/// Flow key of an IP packet, `None` if malformed.
#[inline]
pub(crate) fn flow_key(p: &[u8]) -> Option<FlowKey> {
    FlowKey::from_ip_packet(p).ok()
}

/// Source address of an IP packet (header checked). `None` if malformed.
#[inline]
pub(crate) fn ip_src(p: &[u8]) -> Option<IpAddr> {
    wire::IpPacket::new_checked(p).ok().map(|ip| ip.src_addr())
}

/// What a tunnel payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// An IPv4 or IPv6 packet (data) whose IP header checks out.
    Data,
    /// A control frame; the body is `payload[4..4+body_len]`.
    Control { kind: ControlKind, body_len: usize },
    /// Reserved control kind.
    ReservedControl,
    /// Anything else.
    Malformed,
}

/// Classifies a tunnel payload by its first byte (CONVENTIONS.md "Tunnel framing").
#[inline]
pub(crate) fn classify(p: &[u8]) -> Class {
    match wire::tunnel::Payload::classify(p) {
        Ok(wire::tunnel::Payload::Ipv4(d) | wire::tunnel::Payload::Ipv6(d)) => {
            if wire::IpPacket::new_checked(d).is_ok() {
                Class::Data
            } else {
                Class::Malformed
            }
        }
        Ok(wire::tunnel::Payload::Control { kind, body }) => {
            // Keepalive bodies have a fixed size.
            if matches!(
                kind,
                ControlKind::KeepaliveRequest | ControlKind::KeepaliveReply
            ) && body.len() != KEEPALIVE_BODY_LEN
            {
                Class::Malformed
            } else {
                Class::Control {
                    kind,
                    body_len: body.len(),
                }
            }
        }
        Err(wire::Error::Unsupported(_)) if p.first() == Some(&0) => Class::ReservedControl,
        Err(_) => Class::Malformed,
    }
}

/// A whole control frame (header + body), for [`crate::Command::SendControl`]. `None` if the
/// body is longer than 65535 bytes.
pub fn control_frame(kind: ControlKind, body: &[u8]) -> Option<Vec<u8>> {
    let mut v = vec![0u8; CONTROL_HEADER_LEN + body.len()];
    wire::tunnel::emit_control(&mut v, kind, body).ok()?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::tests::udp_packet;

    #[test]
    fn classify_cases() {
        let v4 = udp_packet([100, 64, 0, 2], [198, 18, 3, 1], 1, 2, b"x");
        assert_eq!(classify(&v4), Class::Data);
        assert_eq!(classify(&v4[..10]), Class::Malformed);
        assert_eq!(classify(&[]), Class::Malformed);
        assert_eq!(classify(&[0x17, 1, 2]), Class::Malformed);
        assert_eq!(classify(&[0x45; 40]), Class::Malformed);
        let ka = control_frame(ControlKind::KeepaliveRequest, &[0; 16]).unwrap();
        assert_eq!(
            classify(&ka),
            Class::Control {
                kind: ControlKind::KeepaliveRequest,
                body_len: 16
            }
        );
        assert_eq!(classify(&ka[..10]), Class::Malformed);
        let sip = control_frame(ControlKind::Signalling, b"MESSAGE sip:x SIP/2.0\r\n").unwrap();
        assert!(matches!(
            classify(&sip),
            Class::Control {
                kind: ControlKind::Signalling,
                ..
            }
        ));
        assert_eq!(classify(&[0, 9, 0, 0]), Class::ReservedControl);
        // Keepalive with a wrong body length is malformed.
        assert_eq!(
            classify(&control_frame(ControlKind::KeepaliveReply, &[0; 3]).unwrap()),
            Class::Malformed
        );
    }

    #[test]
    fn flow_key_and_src() {
        let p = udp_packet([100, 64, 0, 2], [198, 18, 3, 1], 5000, 53, b"abc");
        let k = flow_key(&p).unwrap();
        assert_eq!((k.src_port, k.dst_port), (5000, 53));
        assert_eq!(ip_src(&p), Some("100.64.0.2".parse().unwrap()));
        assert!(flow_key(&p[..20]).is_none());
        assert!(ip_src(&p[..5]).is_none());
    }
}
