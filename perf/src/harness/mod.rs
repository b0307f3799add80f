//! The benchmark harness of issue 8 (`upmt-bench`): testbed handling, the handover probe,
//! the analysis of its traces and the SVG timeline.

pub(crate) mod analysis;
pub(crate) mod handover;
pub(crate) mod probe;
pub(crate) mod svg;
pub(crate) mod testbed;
