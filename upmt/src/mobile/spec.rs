//! Flow selections: `upmt handover --flow SPEC` and the exact matches of handover requests.

use std::net::{IpAddr, Ipv4Addr};

use dataplane::FlowKey;
use signaling_proto::body::{FlowMatch, Proto};

/// The exact 5-tuple match of a flow, for a handover request (IPv4 TCP/UDP/ICMP only).
pub(super) fn exact_match(k: &FlowKey) -> Option<FlowMatch> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (k.src, k.dst) else {
        return None;
    };
    let proto = match k.proto {
        wire::IpProtocol::Tcp => Proto::Tcp,
        wire::IpProtocol::Udp => Proto::Udp,
        wire::IpProtocol::Icmp => Proto::Icmp,
        _ => return None,
    };
    Some(FlowMatch {
        proto: Some(proto),
        src: Some(src),
        sport: Some(k.src_port),
        dst: Some(signaling_proto::pool::Ipv4Cidr { addr: dst, len: 32 }),
        dport: Some(k.dst_port),
    })
}

/// A flow spec for `upmt handover --flow`: `[tcp|udp|icmp] [ADDR][:PORT]`, e.g.
/// `udp 198.18.3.1:5001`, `tcp :80`, `198.18.3.1`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Spec {
    proto: Option<wire::IpProtocol>,
    dst: Option<Ipv4Addr>,
    dport: Option<u16>,
}

pub(super) fn parse_spec(s: &str) -> Result<Spec, String> {
    let mut spec = Spec::default();
    for word in s.split_whitespace() {
        match word {
            "tcp" => spec.proto = Some(wire::IpProtocol::Tcp),
            "udp" => spec.proto = Some(wire::IpProtocol::Udp),
            "icmp" => spec.proto = Some(wire::IpProtocol::Icmp),
            w => {
                let (a, p) = match w.rsplit_once(':') {
                    Some((a, p)) => (a, Some(p)),
                    None => (w, None),
                };
                if !a.is_empty() {
                    spec.dst = Some(a.parse().map_err(|_| format!("bad address `{a}`"))?);
                }
                if let Some(p) = p {
                    spec.dport = Some(p.parse().map_err(|_| format!("bad port `{p}`"))?);
                }
            }
        }
    }
    if spec == Spec::default() {
        return Err(format!(
            "`{s}` selects no flow (e.g. `udp 198.18.3.1:5001`)"
        ));
    }
    Ok(spec)
}

pub(super) fn spec_matches(s: &Spec, k: &FlowKey) -> bool {
    s.proto.is_none_or(|p| p == k.proto)
        && s.dst.is_none_or(|d| IpAddr::V4(d) == k.dst)
        && s.dport.is_none_or(|p| p == k.dst_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse_spec("udp 198.18.3.1:5001").unwrap(),
            Spec {
                proto: Some(wire::IpProtocol::Udp),
                dst: Some(Ipv4Addr::new(198, 18, 3, 1)),
                dport: Some(5001)
            }
        );
        assert_eq!(
            parse_spec("tcp :80").unwrap(),
            Spec {
                proto: Some(wire::IpProtocol::Tcp),
                dst: None,
                dport: Some(80)
            }
        );
        assert!(parse_spec("").is_err());
        assert!(parse_spec("udp 1.2.3:80").is_err());
        assert!(parse_spec("udp 1.2.3.4:99999").is_err());
    }
}
