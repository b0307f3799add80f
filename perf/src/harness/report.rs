//! What every bench report carries (date, machine) and how it is written: terminal cells,
//! JSON, the SVG next to it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use super::stats::Spread;

/// The machine a report was measured on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) kernel: String,
    pub(crate) cpu: String,
    /// 1-minute load average at the start: the machine is shared.
    pub(crate) load_at_start: String,
}

pub(crate) fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    Machine {
        nproc: super::stats::ncpu(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu: read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default(),
        load_at_start: read("/proc/loadavg")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    }
}

pub(crate) fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `median [min-max]` with `prec` decimals, or `note` when there is no value.
pub(crate) fn cell(s: Option<&Spread>, prec: usize, note: &str) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.prec$} [{:.prec$}-{:.prec$}]", s.median, s.min, s.max),
        Some(s) => format!("{:.prec$}", s.median),
        None => note.to_string(),
    }
}

/// A rate cell in thousands (`median [min-max]` k/s, no decimals), `-` when absent.
pub(crate) fn kpps(s: Option<&Spread>) -> String {
    let k = s.map(|x| Spread {
        median: x.median / 1e3,
        min: x.min / 1e3,
        max: x.max / 1e3,
        n: x.n,
    });
    cell(k.as_ref(), 0, "-")
}

/// A text progress bar: `n` of `total` steps done.
pub(crate) fn progress(n: u32, total: u32) -> String {
    let w = 20usize;
    let filled = (n as usize * w)
        .checked_div(total as usize)
        .unwrap_or(w)
        .min(w);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(w - filled))
}

/// An optional number with `prec` decimals, `-` when absent.
pub(crate) fn num(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"))
}

/// Where the SVG goes: `--svg`, else next to `--json` (same name, `.svg`).
pub(crate) fn svg_path(svg: Option<&Path>, json: Option<&Path>) -> Option<PathBuf> {
    svg.map(Path::to_path_buf)
        .or_else(|| json.map(|j| j.with_extension("svg")))
}

/// Writes `report` as pretty JSON to `path`.
pub(crate) fn write_json<T: Serialize>(path: &Path, report: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("  JSON: {}", path.display());
    Ok(())
}

/// Writes an SVG document.
pub(crate) fn write_svg(path: &Path, doc: &str) -> Result<()> {
    std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("  SVG: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar() {
        assert_eq!(progress(0, 4), format!("[{}]", ".".repeat(20)));
        assert_eq!(
            progress(2, 4),
            format!("[{}{}]", "#".repeat(10), ".".repeat(10))
        );
        assert_eq!(progress(4, 4), format!("[{}]", "#".repeat(20)));
        assert_eq!(progress(1, 0), format!("[{}]", "#".repeat(20)));
    }

    #[test]
    fn cells_and_paths() {
        let s = Spread {
            median: 1.234,
            min: 1.0,
            max: 2.0,
            n: 3,
        };
        assert_eq!(cell(Some(&s), 2, "x"), "1.23 [1.00-2.00]");
        assert_eq!(cell(Some(&Spread { n: 1, ..s }), 1, "x"), "1.2");
        assert_eq!(cell(None, 1, "unavailable"), "unavailable");
        assert_eq!(num(None, 1), "-");
        assert_eq!(
            svg_path(None, Some(Path::new("/tmp/a.json"))),
            Some(PathBuf::from("/tmp/a.svg"))
        );
        assert_eq!(
            svg_path(Some(Path::new("b.svg")), Some(Path::new("a.json"))),
            Some(PathBuf::from("b.svg"))
        );
        assert_eq!(svg_path(None, None), None);
        assert!(machine().nproc >= 1);
    }
}
