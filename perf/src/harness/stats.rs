//! Pure arithmetic of the throughput, pps and scale benches: median and range of repeated
//! runs, ratios, rates from counter deltas, CPU use from `/proc` samples. No I/O except the
//! small `/proc` readers at the bottom, whose parsers are tested on synthetic text.

use serde::Serialize;

use super::analysis;

/// Median and range of one figure over the repeats of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

/// The spread of the finite values among `v`; `None` when there are none.
pub(crate) fn spread(v: &[f64]) -> Option<Spread> {
    let ok: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let median = analysis::median(&ok)?;
    Some(Spread {
        median,
        min: ok.iter().copied().fold(f64::INFINITY, f64::min),
        max: ok.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        n: ok.len(),
    })
}

/// `a / b` when both are positive and finite.
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && a >= 0.0 && b > 0.0).then(|| a / b)
}

/// Per second rate of a counter that went from `before` to `after` in `secs`; `None` when
/// the counter went backwards (reset, wrapped) or no time passed.
pub(crate) fn rate(before: u64, after: u64, secs: f64) -> Option<f64> {
    (after >= before && secs > 0.0 && secs.is_finite()).then(|| (after - before) as f64 / secs)
}

/// Whole-machine CPU times from `/proc/stat`'s `cpu` line, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MachineCpu {
    /// user + nice + system + irq + softirq + steal.
    pub(crate) busy: u64,
    /// busy + idle + iowait.
    pub(crate) total: u64,
}

/// Parses the aggregate `cpu ` line of `/proc/stat`.
pub(crate) fn parse_proc_stat(text: &str) -> Option<MachineCpu> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    if f.len() < 4 {
        return None;
    }
    let busy = g(0) + g(1) + g(2) + g(5) + g(6) + g(7);
    Some(MachineCpu {
        busy,
        total: busy + g(3) + g(4),
    })
}

/// Cores kept busy between two `/proc/stat` samples on a machine with `ncpu` CPUs.
pub(crate) fn machine_cores(a: MachineCpu, b: MachineCpu, ncpu: usize) -> Option<f64> {
    let total = b.total.checked_sub(a.total)?;
    let busy = b.busy.checked_sub(a.busy)?;
    (total > 0).then(|| busy as f64 / total as f64 * ncpu as f64)
}

/// utime + stime (ticks) from the text of `/proc/PID/stat`. The command name may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ... utime is field 14, stime 15 (1-based in proc(5)).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Cores used by processes whose CPU ticks grew by `ticks` in `secs`.
pub(crate) fn process_cores(ticks: u64, clk_tck: u64, secs: f64) -> Option<f64> {
    (clk_tck > 0 && secs > 0.0).then(|| ticks as f64 / clk_tck as f64 / secs)
}

/// CPU cores per Gb/s of forwarded traffic.
pub(crate) fn cores_per_gbps(cores: f64, gbps: f64) -> Option<f64> {
    ratio(cores, gbps)
}

/// `VmRSS` in kB from the text of `/proc/PID/status`.
pub(crate) fn parse_vm_rss_kb(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `/proc/stat` now.
pub(crate) fn machine_cpu() -> Option<MachineCpu> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// utime + stime of every process in `pids` that still exists (ticks).
pub(crate) fn pids_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|t| parse_pid_stat(&t))
        .sum()
}

/// The RSS of `pid` in kB.
pub(crate) fn rss_kb(pid: u32) -> Option<u64> {
    parse_vm_rss_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Number of CPUs online.
pub(crate) fn ncpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_repeats() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = spread(&[4.0, 1.0, f64::NAN, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 1.0, 10.0, 4));
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[f64::INFINITY]), None);
    }

    #[test]
    fn ratios_and_rates() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(rate(100, 1100, 2.0), Some(500.0));
        assert_eq!(rate(100, 50, 2.0), None);
        assert_eq!(rate(0, 10, 0.0), None);
    }

    #[test]
    fn proc_stat_cpu() {
        let a = parse_proc_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(
            a,
            MachineCpu {
                busy: 150,
                total: 1000
            }
        );
        let b = parse_proc_stat("cpu  200 0 100 850 50 0 50 0 0 0\n").unwrap();
        // 200 busy of 250 ticks on 2 CPUs: 1.6 cores.
        assert!((machine_cores(a, b, 2).unwrap() - 1.6).abs() < 1e-9);
        assert_eq!(machine_cores(b, a, 2), None);
        assert_eq!(parse_proc_stat("intr 1 2 3"), None);
        assert_eq!(parse_proc_stat("cpu  x y"), None);
    }

    #[test]
    fn pid_stat_and_rss() {
        let t = "1234 (upmt (x) y) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 125 0 0 20 0 3 0";
        assert_eq!(parse_pid_stat(t), Some(375));
        assert_eq!(parse_pid_stat("garbage"), None);
        assert_eq!(parse_pid_stat("1 (a) S 1 2"), None);
        assert_eq!(process_cores(300, 100, 2.0), Some(1.5));
        assert_eq!(process_cores(300, 0, 2.0), None);
        assert_eq!(
            parse_vm_rss_kb("Name:\tupmt\nVmRSS:\t   14500 kB\nThreads: 3\n"),
            Some(14500)
        );
        assert_eq!(parse_vm_rss_kb("Name: x"), None);
    }

    #[test]
    fn cpu_per_gbps() {
        assert_eq!(cores_per_gbps(1.5, 3.0), Some(0.5));
        assert_eq!(cores_per_gbps(1.5, 0.0), None);
    }
}
