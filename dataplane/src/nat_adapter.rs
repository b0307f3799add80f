//! [`Napt`]: the `nat` crate's NAPT as the anchor's [`NatHook`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::control::NatHook;
use crate::stats::DropReason;

/// The anchor's own NAPT (`nat::Nat`), shared by all shards. The control thread keeps its own
/// `Arc<nat::Nat>` clone to call `expire` and read counters.
#[derive(Debug, Clone)]
pub struct Napt(pub Arc<nat::Nat>);

fn map_drop(r: nat::DropReason) -> DropReason {
    use nat::DropReason as N;
    match r {
        N::Malformed => DropReason::Malformed,
        N::SpoofedSource => DropReason::SpoofedSource,
        N::NotIpv4 | N::UnsupportedProtocol | N::UnsupportedIcmp => DropReason::NatUnsupported,
        N::HostCapReached | N::GlobalCapReached | N::PortsExhausted => DropReason::NatFull,
        _ => DropReason::NatNoMapping,
    }
}

impl NatHook for Napt {
    fn outbound(
        &self,
        host_vipa: IpAddr,
        packet: &mut [u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        let IpAddr::V4(vipa) = host_vipa else {
            return Err(DropReason::NatUnsupported);
        };
        match self.0.translate_outbound(now, vipa, packet) {
            nat::Verdict::ToInternet => Ok(()),
            nat::Verdict::Hairpin { .. } => Err(DropReason::NatHairpin),
            nat::Verdict::Forward { .. } => Err(DropReason::Malformed),
            nat::Verdict::Drop(r) => Err(map_drop(r)),
        }
    }

    fn inbound(&self, packet: &mut [u8], now: Instant) -> Result<(), DropReason> {
        match self.0.translate_inbound(now, packet) {
            nat::Verdict::Forward { .. } => Ok(()),
            nat::Verdict::Drop(r) => Err(map_drop(r)),
            _ => Err(DropReason::Malformed),
        }
    }
}
