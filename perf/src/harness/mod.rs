//! The benchmark harness of issue 8 (`upmt-bench`): testbed handling, the handover probe,
//! the analysis of its traces, the throughput, packet-rate and scale benchmarks and the SVG
//! plots.

pub(crate) mod analysis;
pub(crate) mod daemons;
pub(crate) mod handover;
pub(crate) mod line;
pub(crate) mod pps;
pub(crate) mod probe;
pub(crate) mod relay;
pub(crate) mod report;
pub(crate) mod scale;
pub(crate) mod simhosts;
pub(crate) mod stats;
pub(crate) mod svg;
pub(crate) mod testbed;
pub(crate) mod throughput;
