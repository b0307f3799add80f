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

/// The data plane's totals over shards, for the status documents.
pub fn dataplane_status(s: &dataplane::StatsSnapshot) -> status::DataplaneStatus {
    let mut d = status::DataplaneStatus {
        shards: s.shards.len(),
        ..Default::default()
    };
    for sh in &s.shards {
        d.tun_rx_packets += sh.tun_rx.0;
        d.tun_tx_packets += sh.tun_tx.0;
        d.net_rx_packets += sh.net_rx.0;
        d.net_tx_packets += sh.net_tx.0;
        d.syscalls += sh.syscalls;
        let (o, t) = (&mut d.offload, &sh.offload);
        o.tso_in += t.tso_in;
        o.uso_in += t.uso_in;
        o.tso_segments += t.tso_segments;
        o.gso_sends += t.gso_sends;
        o.gro_in += t.gro_in;
        o.gro_datagrams += t.gro_datagrams;
        o.coalesced += t.coalesced;
        o.coalesced_segments += t.coalesced_segments;
        o.fallbacks += t.fallbacks;
    }
    d
}
