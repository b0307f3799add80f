//! Hand-written SVG plots of the harness.
//!
//! - [`render`]: the handover timeline: per scenario a panel with the probe's RTT against
//!   send time (the maximum per pixel column, so an SVG of 8000 probes stays small), lost
//!   probes as red ticks under the axis, and the events as dashed vertical lines.
//! - [`bars`]: throughput / rate bars of every variant against the anchors, one panel per
//!   test, the median as the bar and the range of the repeats as a whisker.

use std::fmt::Write as _;

/// One panel.
pub(crate) struct Panel {
    pub(crate) title: String,
    /// Per probe: send time and RTT (ns), `None` when lost (from `analysis::per_probe`).
    pub(crate) probes: Vec<(u64, Option<u64>)>,
    /// Event times (ns since the probe's start) and their labels.
    pub(crate) events: Vec<(u64, String)>,
    /// Length of the time axis (ns).
    pub(crate) duration_ns: u64,
}

const W: f64 = 900.0;
const PANEL_H: f64 = 190.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 28.0;
const PLOT_H: f64 = 120.0;
const COLS: usize = 820;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round upper bound for the y axis (1, 2 or 5 times a power of ten, in ms).
fn nice_ceil(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// Renders the panels into one SVG document.
pub(crate) fn render(title: &str, panels: &[Panel]) -> String {
    let h = 30.0 + PANEL_H * panels.len() as f64;
    let pw = W - LEFT - RIGHT;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (k, p) in panels.iter().enumerate() {
        let y0 = 30.0 + PANEL_H * k as f64 + TOP;
        let dur = p.duration_ns.max(1) as f64;
        // Per column: max RTT (ms) and whether a probe was lost.
        let mut max_rtt: Vec<Option<f64>> = vec![None; COLS];
        let mut lost = vec![0u32; COLS];
        for (t, rtt) in &p.probes {
            let c = ((*t as f64 / dur) * COLS as f64) as usize;
            let c = c.min(COLS - 1);
            match rtt {
                Some(r) => {
                    let r = *r as f64 / 1e6;
                    if let Some(m) = max_rtt.get_mut(c) {
                        *m = Some(m.map_or(r, |x: f64| x.max(r)));
                    }
                }
                None => {
                    if let Some(l) = lost.get_mut(c) {
                        *l += 1;
                    }
                }
            }
        }
        let ymax = nice_ceil(max_rtt.iter().flatten().fold(0.0, |a: f64, b| a.max(*b)));
        let x_of = |c: usize| LEFT + (c as f64 + 0.5) * pw / COLS as f64;
        let y_of = |ms: f64| y0 + PLOT_H - (ms / ymax).min(1.0) * PLOT_H;
        let total_lost: u32 = lost.iter().sum();
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{:.1}" font-weight="bold">{} <tspan font-weight="normal" fill="#555">({} probes, {} lost)</tspan></text>"##,
            y0 - 8.0,
            esc(&p.title),
            p.probes.len(),
            total_lost
        );
        // Axes and grid.
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y0:.1}" width="{pw:.1}" height="{PLOT_H}" fill="none" stroke="#999"/>"##
        );
        for (frac, label) in [(0.0, 0.0), (0.5, ymax / 2.0), (1.0, ymax)] {
            let y = y0 + PLOT_H - frac * PLOT_H;
            let _ = writeln!(
                s,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label} ms</text>"##,
                LEFT - 4.0,
                LEFT - 6.0,
                y + 4.0
            );
        }
        let secs = (dur / 1e9).ceil() as u64;
        for sec in 0..=secs {
            let x = LEFT + (sec as f64 * 1e9 / dur).min(1.0) * pw;
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{sec} s</text>"##,
                y0 + PLOT_H,
                y0 + PLOT_H + 4.0,
                y0 + PLOT_H + 30.0
            );
        }
        // RTT: one polyline per stretch of columns with echoes.
        let mut pts: Vec<String> = Vec::new();
        let flush = |pts: &mut Vec<String>, s: &mut String| {
            if !pts.is_empty() {
                let _ = writeln!(
                    s,
                    r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1" points="{}"/>"##,
                    pts.join(" ")
                );
                pts.clear();
            }
        };
        for (c, m) in max_rtt.iter().enumerate() {
            match m {
                Some(ms) => pts.push(format!("{:.1},{:.1}", x_of(c), y_of(*ms))),
                None => flush(&mut pts, &mut s),
            }
        }
        flush(&mut pts, &mut s);
        // Lost probes: red ticks under the axis.
        for (c, l) in lost.iter().enumerate() {
            if *l > 0 {
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="8" fill="#d62728"/>"##,
                    x_of(c) - pw / COLS as f64 / 2.0,
                    y0 + PLOT_H + 6.0,
                    pw / COLS as f64
                );
            }
        }
        // Events.
        for (t, label) in &p.events {
            let x = LEFT + (*t as f64 / dur).min(1.0) * pw;
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ff7f0e" stroke-width="1.5" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#ff7f0e">{}</text>"##,
                y0 + PLOT_H,
                x + 3.0,
                y0 + 10.0,
                esc(label)
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{:.1}" fill="#555">blue: probe RTT (max per pixel column); red: lost probes at their send time; orange: events</text>"##,
        h - 6.0
    );
    s.push_str("</svg>\n");
    s
}

/// One bar of [`bars`]: a variant's median and range, or why it has none.
pub(crate) struct Bar {
    pub(crate) label: String,
    /// (median, min, max); `None`: unavailable.
    pub(crate) value: Option<(f64, f64, f64)>,
    /// Shown instead of a bar when `value` is `None`.
    pub(crate) note: String,
    /// Anchors are drawn grey, UPMT variants blue.
    pub(crate) anchor: bool,
}

/// One panel of [`bars`]: a test and its bars.
pub(crate) struct BarPanel {
    pub(crate) title: String,
    pub(crate) unit: String,
    pub(crate) bars: Vec<Bar>,
}

const BAR_H: f64 = 18.0;
const BAR_LEFT: f64 = 230.0;

/// Horizontal bar charts (median bar, min-max whisker, value label), one panel per test.
pub(crate) fn bars(title: &str, panels: &[BarPanel]) -> String {
    let pw = W - BAR_LEFT - 110.0;
    let heights: Vec<f64> = panels
        .iter()
        .map(|p| 40.0 + BAR_H * p.bars.len() as f64)
        .collect();
    let h = 50.0 + heights.iter().sum::<f64>();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let mut y = 36.0;
    for (p, ph) in panels.iter().zip(&heights) {
        let vmax = nice_ceil(
            p.bars
                .iter()
                .filter_map(|b| b.value.map(|v| v.2.max(v.0)))
                .fold(0.0, f64::max),
        );
        let x_of = |v: f64| BAR_LEFT + (v / vmax).clamp(0.0, 1.0) * pw;
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-weight="bold">{} ({})</text>"#,
            y + 12.0,
            esc(&p.title),
            esc(&p.unit)
        );
        let top = y + 20.0;
        let bottom = top + BAR_H * p.bars.len() as f64;
        for (frac, label) in [(0.0, 0.0), (0.5, vmax / 2.0), (1.0, vmax)] {
            let x = BAR_LEFT + frac * pw;
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                bottom + 11.0,
                fmt_num(label)
            );
        }
        for (i, b) in p.bars.iter().enumerate() {
            let by = top + BAR_H * i as f64;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                BAR_LEFT - 6.0,
                by + 13.0,
                esc(&b.label)
            );
            match b.value {
                Some((med, lo, hi)) => {
                    let fill = if b.anchor { "#9e9e9e" } else { "#1f77b4" };
                    let _ = writeln!(
                        s,
                        r#"<rect x="{BAR_LEFT}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
                        by + 3.0,
                        x_of(med) - BAR_LEFT,
                        BAR_H - 6.0
                    );
                    let (xl, xh, ym) = (x_of(lo), x_of(hi), by + BAR_H / 2.0);
                    let _ = writeln!(
                        s,
                        r##"<path d="M{xl:.1},{ym:.1}H{xh:.1}M{xl:.1},{:.1}V{:.1}M{xh:.1},{:.1}V{:.1}" stroke="#222" fill="none"/>"##,
                        ym - 4.0,
                        ym + 4.0,
                        ym - 4.0,
                        ym + 4.0
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                        xh.max(x_of(med)) + 5.0,
                        by + 13.0,
                        fmt_num(med)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
                        BAR_LEFT + 4.0,
                        by + 13.0,
                        esc(&b.note)
                    );
                }
            }
        }
        y += ph;
    }
    let _ = writeln!(
        s,
        r##"<text x="10" y="{:.1}" fill="#555">bar: median of the repeats; whisker: min-max; grey: anchors (kernel, naive relay), blue: UPMT</text>"##,
        h - 8.0
    );
    s.push_str("</svg>\n");
    s
}

/// A short number for axis and bar labels.
fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_bounds() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(0.3), 0.5);
        assert_eq!(nice_ceil(1.2), 2.0);
        assert_eq!(nice_ceil(18.5), 20.0);
        assert_eq!(nice_ceil(70.0), 100.0);
    }

    #[test]
    fn renders_a_well_formed_document() {
        let probes = (0..1000u64)
            .map(|i| (i * 1_000_000, (!(400..450).contains(&i)).then_some(300_000)))
            .collect();
        let svg = render(
            "t <&>",
            &[Panel {
                title: "blackhole".into(),
                probes,
                events: vec![(400_000_000, "blackhole on".into())],
                duration_ns: 1_000_000_000,
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(svg.contains("50 lost"));
        assert!(svg.contains("blackhole on"));
        // The outage splits the RTT line in two.
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("#d62728"));
    }

    #[test]
    fn bars_with_whiskers_and_unavailable() {
        let svg = bars(
            "thr <1>",
            &[BarPanel {
                title: "TCP 1 flow".into(),
                unit: "Gb/s".into(),
                bars: vec![
                    Bar {
                        label: "kernel routing".into(),
                        value: Some((8.9, 8.5, 9.2)),
                        note: String::new(),
                        anchor: true,
                    },
                    Bar {
                        label: "upmt offload".into(),
                        value: None,
                        note: "unavailable: unknown field".into(),
                        anchor: false,
                    },
                ],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("thr &lt;1&gt;"));
        assert!(svg.contains(">8.90<") && svg.contains("unavailable: unknown field"));
        assert_eq!(svg.matches("<path").count(), 1);
        // Axis up to 10 (nice bound of 9.2).
        assert!(svg.contains(">10.0<"));
        assert_eq!(fmt_num(0.0123), "0.012");
        assert_eq!(fmt_num(1234.0), "1234");
    }
}
