//! `upmt-bench scale` (issue 8). Work in progress.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// Command-line options of `upmt-bench scale`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Short run (under 2 minutes): smoke runs, CI.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

/// `upmt-bench scale`.
pub(crate) fn main(_opts: &Options) -> Result<()> {
    bail!("upmt-bench scale is not built yet")
}
