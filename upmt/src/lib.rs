//! The UPMT daemons as a library: configuration, the control socket, and (as they land) the
//! anchor and mobile host wiring. The `upmt` binary is a thin command line over this.
//!
//! Layer: the top of the house. It wires `signaling` (association, tunnel setup, handover),
//! `dataplane` (the forwarder) and `nat` (the anchor's NAPT); it processes no packets itself.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod anchor;
pub mod config;
pub mod control;
pub mod mobile;
pub mod netcfg;
pub mod netmon;
pub mod status;

/// The data plane's drop counters by reason name, for the status documents.
pub fn drops_by_name(s: &dataplane::StatsSnapshot) -> std::collections::BTreeMap<String, u64> {
    dataplane::DropReason::ALL
        .iter()
        .map(|r| (r.name().to_owned(), s.drops(*r)))
        .collect()
}
