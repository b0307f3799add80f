//! Pure analysis of a probe trace and of an iperf3 report: no I/O, no clocks, so every
//! figure the harness prints is unit-tested on synthetic traces.

use serde::{Deserialize, Serialize};

/// One echoed probe: its sequence number, when it was sent and when its echo came back
/// (ns since the trace's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Arrival {
    pub(crate) seq: u64,
    pub(crate) sent_ns: u64,
    pub(crate) recv_ns: u64,
}

/// What one probe run recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Trace {
    /// Wall clock (ns since the Unix epoch) of the trace's time 0, to line it up with the
    /// harness's events.
    pub(crate) start_unix_ns: u64,
    /// Send interval.
    pub(crate) interval_ns: u64,
    /// Probes sent: sequence numbers 0..sent.
    pub(crate) sent: u64,
    /// Every echo in the order it arrived (duplicates included).
    pub(crate) arrivals: Vec<Arrival>,
}

/// The probe's figures for one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProbeStats {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    /// Largest gap between two consecutive echoes over the whole run.
    pub(crate) max_gap_ms: f64,
    /// Largest gap between two consecutive echoes that ends after the event: from the last
    /// echo before the outage to the first after it.
    pub(crate) interruption_ms: f64,
    /// Longest run of consecutive lost sequence numbers, in probe intervals.
    pub(crate) max_loss_run: u64,
    pub(crate) rtt_p50_ms: f64,
    pub(crate) rtt_p99_ms: f64,
    pub(crate) rtt_max_ms: f64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Per sequence number: whether an echo came back (first copy only), and the counts of
/// duplicates and reordered echoes. An echo is reordered when a higher sequence number
/// arrived before it. Sequence numbers outside `0..sent` are ignored.
fn classify(trace: &Trace) -> (Vec<Option<Arrival>>, u64, u64) {
    let mut seen: Vec<Option<Arrival>> = vec![None; usize::try_from(trace.sent).unwrap_or(0)];
    let (mut duplicated, mut reordered) = (0, 0);
    let mut highest: Option<u64> = None;
    for a in &trace.arrivals {
        let Some(slot) = usize::try_from(a.seq).ok().and_then(|i| seen.get_mut(i)) else {
            continue;
        };
        if slot.is_some() {
            duplicated += 1;
            continue;
        }
        *slot = Some(*a);
        if highest.is_some_and(|h| a.seq < h) {
            reordered += 1;
        }
        highest = Some(highest.map_or(a.seq, |h| h.max(a.seq)));
    }
    (seen, duplicated, reordered)
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// The probe figures of `trace` for an event at `event_ns` (ns since the trace's start).
pub(crate) fn probe_stats(trace: &Trace, event_ns: u64) -> ProbeStats {
    let (seen, duplicated, reordered) = classify(trace);
    let received = seen.iter().filter(|s| s.is_some()).count() as u64;
    let mut max_loss_run = 0;
    let mut run = 0;
    for s in &seen {
        if s.is_some() {
            run = 0;
        } else {
            run += 1;
            max_loss_run = max_loss_run.max(run);
        }
    }
    let mut recv: Vec<u64> = trace.arrivals.iter().map(|a| a.recv_ns).collect();
    recv.sort_unstable();
    let gaps = recv.windows(2).filter_map(|w| match w {
        [a, b] => Some((*a, *b)),
        _ => None,
    });
    let (mut max_gap, mut interruption) = (0, 0);
    for (a, b) in gaps {
        max_gap = max_gap.max(b - a);
        if b > event_ns {
            interruption = interruption.max(b - a);
        }
    }
    let mut rtts: Vec<u64> = seen
        .iter()
        .flatten()
        .map(|a| a.recv_ns.saturating_sub(a.sent_ns))
        .collect();
    rtts.sort_unstable();
    ProbeStats {
        sent: trace.sent,
        received,
        lost: trace.sent - received,
        duplicated,
        reordered,
        max_gap_ms: ms(max_gap),
        interruption_ms: ms(interruption),
        max_loss_run,
        rtt_p50_ms: ms(percentile(&rtts, 0.5)),
        rtt_p99_ms: ms(percentile(&rtts, 0.99)),
        rtt_max_ms: ms(rtts.last().copied().unwrap_or(0)),
    }
}

/// For the timeline: per probe, its send time and RTT (ns), `None` when lost.
pub(crate) fn per_probe(trace: &Trace) -> Vec<(u64, Option<u64>)> {
    let (seen, _, _) = classify(trace);
    seen.iter()
        .enumerate()
        .map(|(i, a)| match a {
            Some(a) => (a.sent_ns, Some(a.recv_ns.saturating_sub(a.sent_ns))),
            None => (i as u64 * trace.interval_ns, None),
        })
        .collect()
}

/// One iperf3 reporting interval (`-i 0.1`), seconds since the flow's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Interval {
    pub(crate) start_s: f64,
    pub(crate) end_s: f64,
    pub(crate) bits_per_second: f64,
}

/// Median of a list (the mean of the two middle values for an even count); `None` when
/// empty. NaNs sort last.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return None;
    }
    let hi = v.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        Some((v.get(n / 2 - 1).copied()? + hi) / 2.0)
    }
}

/// Throughput before the event: the median of the intervals that start after `warmup_s`
/// (slow start) and end by the event.
pub(crate) fn pre_event_bps(intervals: &[Interval], event_s: f64, warmup_s: f64) -> Option<f64> {
    let pre: Vec<f64> = intervals
        .iter()
        .filter(|i| i.start_s >= warmup_s && i.end_s <= event_s)
        .map(|i| i.bits_per_second)
        .collect();
    median(&pre)
}

/// Goodput recovery time (ms): from the event to the start of the first interval that lies
/// mostly after the event (ends more than half an interval after it) and carries at least
/// `fraction` of the pre-event median. 0 when the flow never dipped; `None` when there is no
/// pre-event figure or the flow never came back.
pub(crate) fn recovery_ms(
    intervals: &[Interval],
    event_s: f64,
    warmup_s: f64,
    fraction: f64,
) -> Option<f64> {
    let base = pre_event_bps(intervals, event_s, warmup_s)?;
    let mut after = intervals
        .iter()
        .filter(|i| i.end_s > event_s + (i.end_s - i.start_s) / 2.0)
        .peekable();
    let first = after.peek()?;
    if first.bits_per_second >= fraction * base {
        return Some(0.0);
    }
    let good = after.find(|i| i.bits_per_second >= fraction * base)?;
    Some(((good.start_s - event_s) * 1e3).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn a(seq: u64, sent_ms: u64, recv_ms: u64) -> Arrival {
        Arrival {
            seq,
            sent_ns: sent_ms * MS,
            recv_ns: recv_ms * MS,
        }
    }

    fn trace(sent: u64, arrivals: Vec<Arrival>) -> Trace {
        Trace {
            start_unix_ns: 0,
            interval_ns: MS,
            sent,
            arrivals,
        }
    }

    #[test]
    fn clean_run_has_no_loss_and_unit_gaps() {
        let t = trace(100, (0..100).map(|i| a(i, i, i + 2)).collect());
        let s = probe_stats(&t, 50 * MS);
        assert_eq!(
            (s.received, s.lost, s.duplicated, s.reordered),
            (100, 0, 0, 0)
        );
        assert_eq!(s.max_gap_ms, 1.0);
        assert_eq!(s.interruption_ms, 1.0);
        assert_eq!(s.max_loss_run, 0);
        assert_eq!(s.rtt_p50_ms, 2.0);
        assert_eq!(s.rtt_max_ms, 2.0);
    }

    #[test]
    fn outage_after_event_is_the_interruption() {
        // Probes 0..=99 every ms; 40..=59 lost (a 20 ms outage starting at 40 ms); an
        // unrelated 5 ms stall before the event at 30 ms (10..=14 lost).
        let v: Vec<Arrival> = (0..100)
            .filter(|i| !(40..60).contains(i) && !(10..15).contains(i))
            .map(|i| a(i, i, i + 1))
            .collect();
        let s = probe_stats(&trace(100, v), 30 * MS);
        assert_eq!(s.lost, 25);
        assert_eq!(s.max_loss_run, 20);
        assert_eq!(s.max_gap_ms, 21.0); // echo of 39 at 40 ms -> echo of 60 at 61 ms
        assert_eq!(s.interruption_ms, 21.0);
        // An event after the outage only sees unit gaps.
        let s = probe_stats(
            &trace(
                100,
                (0..100)
                    .filter(|i| !(10..15).contains(i))
                    .map(|i| a(i, i, i + 1))
                    .collect(),
            ),
            50 * MS,
        );
        assert_eq!(s.max_gap_ms, 6.0);
        assert_eq!(s.interruption_ms, 1.0);
    }

    #[test]
    fn duplicates_and_reordering_are_counted_once() {
        // 0..=3 in order, then 5, 4 (reordered), 5 again (duplicate), 6.
        let mut v: Vec<Arrival> = (0..4).map(|i| a(i, i, i + 1)).collect();
        v.push(a(5, 5, 6));
        v.push(a(4, 4, 7));
        v.push(a(5, 5, 7));
        v.push(a(6, 6, 8));
        let s = probe_stats(&trace(7, v), 0);
        assert_eq!((s.received, s.lost), (7, 0));
        assert_eq!(s.duplicated, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.rtt_max_ms, 3.0);
    }

    #[test]
    fn foreign_sequence_numbers_and_empty_traces() {
        let s = probe_stats(&trace(2, vec![a(0, 0, 1), a(u64::MAX, 0, 1)]), 0);
        assert_eq!((s.received, s.lost), (1, 1));
        let s = probe_stats(&trace(0, vec![]), 0);
        assert_eq!(s, ProbeStats::default());
        let s = probe_stats(&trace(10, vec![]), 0);
        assert_eq!((s.lost, s.max_loss_run), (10, 10));
    }

    #[test]
    fn per_probe_marks_losses_at_their_send_slot() {
        let p = per_probe(&trace(3, vec![a(0, 0, 2), a(2, 2, 5)]));
        assert_eq!(
            p,
            vec![(0, Some(2 * MS)), (MS, None), (2 * MS, Some(3 * MS))]
        );
    }

    fn iv(start: f64, mbit: f64) -> Interval {
        Interval {
            start_s: start,
            end_s: start + 0.1,
            bits_per_second: mbit * 1e6,
        }
    }

    fn flow(rates: &[f64]) -> Vec<Interval> {
        rates
            .iter()
            .enumerate()
            .map(|(i, r)| iv(i as f64 / 10.0, *r))
            .collect()
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn recovery_after_a_dip() {
        // Slow start, 200 Mbit/s until 1.0 s, event at 1.0 s, 0 for 300 ms, 100 (50 %),
        // then 170 (85 %): recovered at 1.4 s.
        let f = flow(&[
            20.0, 100.0, 200.0, 200.0, 190.0, 210.0, 200.0, 200.0, 200.0, 200.0, 0.0, 0.0, 0.0,
            100.0, 170.0, 200.0,
        ]);
        let base = pre_event_bps(&f, 1.0, 0.2).unwrap();
        assert_eq!(base, 200e6);
        let r = recovery_ms(&f, 1.0, 0.2, 0.8).unwrap();
        assert!((r - 400.0).abs() < 1e-6, "{r}");
    }

    #[test]
    fn no_dip_recovers_at_once_and_a_dead_flow_never() {
        let f = flow(&[200.0; 20]);
        assert_eq!(recovery_ms(&f, 1.0, 0.2, 0.8), Some(0.0));
        // The event in the middle of an interval, no dip: still 0.
        assert_eq!(recovery_ms(&f, 1.06, 0.2, 0.8), Some(0.0));
        let mut dead = flow(&[200.0; 10]);
        dead.extend(flow(&[0.0; 10]).into_iter().map(|mut i| {
            i.start_s += 1.0;
            i.end_s += 1.0;
            i
        }));
        assert_eq!(recovery_ms(&dead, 1.0, 0.2, 0.8), None);
        assert_eq!(recovery_ms(&[], 1.0, 0.2, 0.8), None);
    }
}
