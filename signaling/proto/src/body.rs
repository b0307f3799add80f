//! JSON bodies of the UPMT MESSAGE requests and their responses (`application/json`).
//!
//! Every body is an object with `"v": 1` and a `"type"`; see docs/PROTOCOL.md for examples.
//! A receiver answers a body whose `v` it does not know with 400.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::consts::BODY_VERSION;
use crate::pool::Ipv4Cidr;

/// A request body (MESSAGE from the mobile host to the anchor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestBody {
    /// Tunnel setup, sent inside the new tunnel.
    TunnelSetup {
        /// The MH's name for the interface (informational, e.g. `wlan0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
    },
    /// Handover request: move these flows.
    Handover {
        /// Flows and where each goes.
        flows: Vec<FlowMove>,
    },
}

/// A response body (in the 200 OK to a MESSAGE, or with an error status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBody {
    /// The tunnel exists.
    TunnelReady {
        /// Tunnel ID assigned by the anchor (used in keepalives and handover targets).
        tunnel_id: u32,
        /// The MH's outer address and port as the anchor sees them (its NAT mapping).
        mapped: SocketAddr,
        /// The MH's VIPA, for convenience.
        vipa: Ipv4Addr,
    },
    /// Outcome of a handover request, one entry per requested flow, in order.
    HandoverAck {
        /// Per-flow results.
        results: Vec<FlowResult>,
    },
    /// An error, with the status code of the response carrying it.
    Error {
        /// Human-readable reason.
        error: String,
    },
}

/// A body on the wire: the version plus the typed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Body format version, [`BODY_VERSION`].
    pub v: u32,
    /// The content.
    #[serde(flatten)]
    pub body: T,
}

/// Error decoding a body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not JSON, or missing fields.
    #[error("malformed body: {0}")]
    Json(#[from] serde_json::Error),
    /// `v` is not [`BODY_VERSION`].
    #[error("unsupported body version {0}")]
    Version(u32),
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// Encodes `body` with the current version.
pub fn encode<T: Serialize>(body: T) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        v: BODY_VERSION,
        body,
    })
    .unwrap_or_default()
}

/// Decodes a body, checking the version first.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, BodyError> {
    let v: VersionOnly = serde_json::from_slice(bytes)?;
    if v.v != BODY_VERSION {
        return Err(BodyError::Version(v.v));
    }
    let e: Envelope<T> = serde_json::from_slice(bytes)?;
    Ok(e.body)
}

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
}

/// An iptables-like flow match; a 5-tuple is the case where every field is set. Absent
/// fields match anything. Source fields are on the MH side (the VIPA).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowMatch {
    /// Protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    /// Source address (must be the sender's VIPA if given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<Ipv4Addr>,
    /// Source port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Destination prefix (a host is `/32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<Ipv4Cidr>,
    /// Destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
}

/// Where a flow should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelTarget {
    /// `"any"`: the tunnel the request arrived on.
    Any,
    /// A tunnel ID returned by tunnel setup.
    Id(u32),
}

impl Serialize for TunnelTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TunnelTarget::Any => s.serialize_str("any"),
            TunnelTarget::Id(id) => s.serialize_u32(*id),
        }
    }
}

impl<'de> Deserialize<'de> for TunnelTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(u32),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Id(id) => Ok(TunnelTarget::Id(id)),
            Raw::Word(w) if w == "any" => Ok(TunnelTarget::Any),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("bad tunnel target {w:?}"))),
        }
    }
}

fn any() -> TunnelTarget {
    TunnelTarget::Any
}

fn is_any(t: &TunnelTarget) -> bool {
    *t == TunnelTarget::Any
}

/// One entry of a handover request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowMove {
    /// Which flows.
    #[serde(rename = "match")]
    pub flow: FlowMatch,
    /// Target tunnel; absent means `"any"`.
    #[serde(default = "any", skip_serializing_if = "is_any")]
    pub tunnel: TunnelTarget,
}

/// The outcome for one flow of a handover request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowResult {
    /// The tunnel the flow now uses, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<u32>,
    /// Why it was refused, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_example_roundtrip() {
        let text = br#"{"v":1,"type":"handover","flows":[
            {"match":{"proto":"tcp","src":"100.64.0.2","sport":40000,"dst":"198.18.3.1/32","dport":80},"tunnel":7},
            {"match":{"proto":"udp","dport":5004}},
            {"match":{},"tunnel":"any"}]}"#;
        let b: RequestBody = decode(text).unwrap();
        let RequestBody::Handover { flows } = &b else {
            panic!("not a handover");
        };
        assert_eq!(flows.len(), 3);
        assert_eq!(flows[0].tunnel, TunnelTarget::Id(7));
        assert_eq!(flows[1].tunnel, TunnelTarget::Any);
        let again: RequestBody = decode(&encode(&b)).unwrap();
        assert_eq!(again, b);
    }

    #[test]
    fn version_and_garbage_rejected() {
        assert!(matches!(
            decode::<RequestBody>(br#"{"v":2,"type":"tunnel_setup"}"#),
            Err(BodyError::Version(2))
        ));
        assert!(decode::<RequestBody>(br#"{"type":"tunnel_setup"}"#).is_err());
        assert!(decode::<RequestBody>(br#"{"v":1,"type":"nope"}"#).is_err());
        assert!(decode::<RequestBody>(
            br#"{"v":1,"type":"handover","flows":[{"match":{},"tunnel":"x"}]}"#
        )
        .is_err());
        let r = ResponseBody::TunnelReady {
            tunnel_id: 3,
            mapped: "198.18.0.1:40001".parse().unwrap(),
            vipa: "100.64.0.2".parse().unwrap(),
        };
        assert_eq!(decode::<ResponseBody>(&encode(&r)).unwrap(), r);
    }
}
