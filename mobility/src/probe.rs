//! Per-tunnel path probing: the keepalives that hold the local NATs' pinholes open and
//! measure each path (the paper's MM Measurement Entity).
//!
//! One [`Probe`] per tunnel. It decides when the next keepalive leaves, notices replies that
//! do not come back, and keeps round-trip time and jitter as moving averages and loss over the
//! last [`LOSS_WINDOW`] keepalives (see [`Quality::loss_pct`]). The rate
//! adapts: a healthy idle path is probed every `idle_interval` (quiet laptop); a path that
//! carries a real-time flow, or that just missed a reply, every `fast_interval`; a dead path
//! is re-probed with exponential back-off up to `idle_interval`.
//!
//! Sans-IO: the caller sends what [`Probe::poll_transmit`] returns, feeds replies to
//! [`Probe::handle_reply`], calls [`Probe::handle_timeout`] at [`Probe::poll_timeout`], and
//! drains [`Probe::poll_event`]. Time is always an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How a [`Probe`] paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Interval on a healthy path with no real-time flow. Keep it under the shortest UDP
    /// timeout of the NATs on the path, or the pinhole closes.
    pub idle_interval: Duration,
    /// Interval while a real-time flow rides the path or the path is in doubt.
    pub fast_interval: Duration,
    /// Keepalives lost in a row before the path is declared down.
    pub lost_before_down: u32,
    /// Least time a keepalive is given to come back.
    pub min_timeout: Duration,
    /// Most time a keepalive is given to come back (also used before the first RTT sample).
    pub max_timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            idle_interval: Duration::from_secs(5),
            fast_interval: Duration::from_millis(50),
            lost_before_down: 3,
            min_timeout: Duration::from_millis(80),
            max_timeout: Duration::from_secs(1),
        }
    }
}

/// What the probe believes of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathState {
    /// No reply seen yet.
    Probing,
    /// Replies come back.
    Up,
    /// The last keepalive went unanswered: probing fast to decide.
    Doubt,
    /// `lost_before_down` keepalives in a row went unanswered.
    Down,
}

impl PathState {
    /// Whether traffic may be sent over the path.
    pub fn usable(self) -> bool {
        matches!(self, PathState::Up | PathState::Doubt)
    }
}

/// A change the owner of the probe should act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The path's state changed.
    State {
        /// Before.
        from: PathState,
        /// Now.
        to: PathState,
    },
}

/// A keepalive to send: its sequence number, and the send time to encode (echoed back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Sequence number (wraps).
    pub seq: u32,
    /// When it leaves.
    pub sent: Instant,
}

/// The path's measured quality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    /// Current state.
    pub state: PathState,
    /// Smoothed round-trip time, ms (RFC 6298 SRTT), when measured.
    pub rtt_ms: Option<f64>,
    /// Inter-sample RTT variation, ms (RFC 3550 section 6.4.1 estimator).
    pub jitter_ms: Option<f64>,
    /// Keepalive loss, percent: keepalives given up on among the last [`LOSS_WINDOW`],
    /// over [`LOSS_WINDOW`]. Until that many have been answered or given up on, the missing
    /// ones count as answered, so one early loss reads as 1.6 %, not 100 % or 12 %: a fresh
    /// path is presumed clean until measured otherwise (state, not loss, catches a path that
    /// does not answer at all). A reply that comes back after its keepalive was given up on
    /// takes the loss back. A path that comes back up from down starts a fresh window.
    pub loss_pct: f64,
    /// Keepalives sent.
    pub sent: u64,
    /// Replies received.
    pub received: u64,
    /// Keepalives given up on (including those whose reply came back later).
    pub lost: u64,
}

/// Keepalives in flight at most; older ones are counted lost when a new one would not fit.
const MAX_INFLIGHT: usize = 64;
/// Keepalives over which loss is measured ([`Quality::loss_pct`]).
pub const LOSS_WINDOW: usize = 64;

/// The outcome of one keepalive, kept while it is among the last [`LOSS_WINDOW`].
#[derive(Debug, Clone, Copy)]
struct Outcome {
    seq: u32,
    sent: Instant,
    lost: bool,
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    seq: u32,
    sent: Instant,
    deadline: Instant,
}

/// Whether two instants are the same send time, as carried on the wire in microseconds.
fn same_time(a: Instant, b: Instant) -> bool {
    let d = if a > b { a - b } else { b - a };
    d < Duration::from_micros(1)
}

/// The probing state machine of one tunnel. See the module doc.
#[derive(Debug)]
pub struct Probe {
    cfg: ProbeConfig,
    state: PathState,
    next_seq: u32,
    next_send: Instant,
    inflight: VecDeque<Inflight>,
    srtt: Option<Duration>,
    rttvar: Duration,
    last_rtt: Option<Duration>,
    jitter: Option<f64>,
    /// The last [`LOSS_WINDOW`] outcomes, oldest first.
    window: VecDeque<Outcome>,
    /// How many of `window` are lost.
    window_lost: usize,
    lost_in_row: u32,
    down_backoff: u32,
    realtime: bool,
    events: VecDeque<ProbeEvent>,
    sent: u64,
    received: u64,
    lost: u64,
}

impl Probe {
    /// A probe whose first keepalive leaves at `now`.
    pub fn new(cfg: ProbeConfig, now: Instant) -> Self {
        Probe {
            cfg,
            state: PathState::Probing,
            next_seq: 1,
            next_send: now,
            inflight: VecDeque::new(),
            srtt: None,
            rttvar: Duration::ZERO,
            last_rtt: None,
            jitter: None,
            window: VecDeque::with_capacity(LOSS_WINDOW),
            window_lost: 0,
            lost_in_row: 0,
            down_backoff: 0,
            realtime: false,
            events: VecDeque::new(),
            sent: 0,
            received: 0,
            lost: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> PathState {
        self.state
    }

    /// Measured quality.
    pub fn quality(&self) -> Quality {
        Quality {
            state: self.state,
            rtt_ms: self.srtt.map(|d| d.as_secs_f64() * 1e3),
            jitter_ms: self.jitter,
            loss_pct: self.window_lost as f64 * 100.0 / LOSS_WINDOW as f64,
            sent: self.sent,
            received: self.received,
            lost: self.lost,
        }
    }

    /// Marks whether a real-time flow rides this path (probe fast) or not. Taking effect for
    /// the next keepalive: a path that goes real-time is probed at once.
    pub fn set_realtime(&mut self, now: Instant, realtime: bool) {
        if realtime && !self.realtime {
            self.next_send = self.next_send.min(now);
        }
        self.realtime = realtime;
    }

    /// Asks for a keepalive now (e.g. right after the interface came back, or before a
    /// make-before-break move, to have a fresh measurement).
    pub fn probe_now(&mut self, now: Instant) {
        self.next_send = self.next_send.min(now);
        self.down_backoff = 0;
    }

    /// When [`Probe::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.inflight.iter().map(|i| i.deadline).min();
        Some(match deadline {
            Some(d) => d.min(self.next_send),
            None => self.next_send,
        })
    }

    /// Gives up on keepalives whose time ran out. Call at [`Probe::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(pos) = self.inflight.iter().position(|i| i.deadline <= now) {
            if let Some(i) = self.inflight.remove(pos) {
                self.on_lost(now, i);
            }
        }
    }

    /// The keepalive to send now, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Keepalive> {
        if now < self.next_send {
            return None;
        }
        if self.inflight.len() >= MAX_INFLIGHT {
            if let Some(i) = self.inflight.pop_front() {
                self.on_lost(now, i);
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.inflight.push_back(Inflight {
            seq,
            sent: now,
            deadline: now + self.reply_timeout(),
        });
        self.sent += 1;
        self.next_send = now + self.interval();
        Some(Keepalive { seq, sent: now })
    }

    /// A keepalive reply came back at `now`, echoing `seq` and the send time `sent` (as the
    /// caller decoded it from the echoed timestamp). Replies that name no keepalive in flight
    /// (duplicates, replies already given up on, forgeries) still prove the path alive when
    /// their timestamp is plausible, but give no RTT sample.
    pub fn handle_reply(&mut self, now: Instant, seq: u32, sent: Instant) {
        let Some(rtt) = now.checked_duration_since(sent) else {
            return; // from the future: not ours
        };
        if rtt > self.cfg.max_timeout * 60 {
            return;
        }
        match self.inflight.iter().position(|i| i.seq == seq) {
            Some(pos)
                if !self
                    .inflight
                    .get(pos)
                    .is_some_and(|i| same_time(i.sent, sent)) =>
            {
                return; // the timestamp is not the one we sent: not ours
            }
            Some(pos) => {
                // Measure from our own record of the send: the wire's copy is truncated.
                if let Some(i) = self.inflight.remove(pos) {
                    self.on_rtt_sample(now.checked_duration_since(i.sent).unwrap_or(rtt));
                    self.record(Outcome {
                        seq,
                        sent: i.sent,
                        lost: false,
                    });
                }
            }
            None => {
                // Late (given up on already) or duplicate: alive. A late one is a real RTT
                // sample (it stretches the reply timeout) and takes its loss back.
                let late = self
                    .window
                    .iter_mut()
                    .find(|o| o.seq == seq && o.lost && same_time(o.sent, sent))
                    .map(|o| {
                        o.lost = false;
                        now.checked_duration_since(o.sent).unwrap_or(rtt)
                    });
                if let Some(sample) = late {
                    self.window_lost = self.window_lost.saturating_sub(1);
                    self.on_rtt_sample(sample);
                }
            }
        }
        self.received += 1;
        self.lost_in_row = 0;
        self.down_backoff = 0;
        if self.state == PathState::Down {
            // Back from down: what was lost while it was down is no measure of the path now.
            self.window.retain(|o| !o.lost);
            self.window_lost = 0;
        }
        self.set_state(PathState::Up);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ProbeEvent> {
        self.events.pop_front()
    }

    fn on_rtt_sample(&mut self, rtt: Duration) {
        // RFC 6298 section 2: SRTT and RTTVAR.
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        // RFC 3550 section 6.4.1: J += (|D| - J) / 16, D between successive samples.
        if let Some(last) = self.last_rtt {
            let d = last.abs_diff(rtt).as_secs_f64() * 1e3;
            let j = self.jitter.unwrap_or(0.0);
            self.jitter = Some(j + (d - j) / 16.0);
        } else {
            self.jitter = Some(0.0);
        }
        self.last_rtt = Some(rtt);
    }

    /// Keeps `o` among the last [`LOSS_WINDOW`] outcomes.
    fn record(&mut self, o: Outcome) {
        if self.window.len() >= LOSS_WINDOW {
            if let Some(old) = self.window.pop_front() {
                if old.lost {
                    self.window_lost = self.window_lost.saturating_sub(1);
                }
            }
        }
        if o.lost {
            self.window_lost += 1;
        }
        self.window.push_back(o);
    }

    fn on_lost(&mut self, now: Instant, i: Inflight) {
        self.lost += 1;
        self.record(Outcome {
            seq: i.seq,
            sent: i.sent,
            lost: true,
        });
        self.lost_in_row = self.lost_in_row.saturating_add(1);
        if self.lost_in_row >= self.cfg.lost_before_down {
            if self.state != PathState::Down {
                self.down_backoff = 0;
            }
            self.set_state(PathState::Down);
        } else {
            if self.state == PathState::Up {
                self.set_state(PathState::Doubt);
            }
            // Decide quickly: the next keepalive goes at the fast pace.
            self.next_send = self.next_send.min(now + self.cfg.fast_interval);
        }
    }

    fn set_state(&mut self, to: PathState) {
        if self.state != to {
            self.events.push_back(ProbeEvent::State {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn interval(&mut self) -> Duration {
        match self.state {
            PathState::Doubt => self.cfg.fast_interval,
            PathState::Probing | PathState::Down => {
                // Not answering (yet): back off, fast, 2x, 4x ... up to the idle interval.
                let f = self
                    .cfg
                    .fast_interval
                    .saturating_mul(1u32 << self.down_backoff.min(16));
                self.down_backoff = self.down_backoff.saturating_add(1);
                f.min(self.cfg.idle_interval)
            }
            PathState::Up if self.realtime => self.cfg.fast_interval,
            PathState::Up => self.cfg.idle_interval,
        }
    }

    fn reply_timeout(&self) -> Duration {
        match self.srtt {
            None => self.cfg.max_timeout,
            // Like RFC 6298's RTO (SRTT + 4 RTTVAR), with a floor for scheduling noise.
            Some(srtt) => {
                (srtt * 2 + self.rttvar * 4).clamp(self.cfg.min_timeout, self.cfg.max_timeout)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path with a fixed RTT that can be cut, driven by a virtual clock.
    struct Sim {
        now: Instant,
        probe: Probe,
        rtt: Duration,
        cut: bool,
        /// Replies on their way: (arrival, seq, sent).
        wire: Vec<(Instant, u32, Instant)>,
        sends: Vec<Instant>,
        events: Vec<(Instant, ProbeEvent)>,
    }

    impl Sim {
        fn new(cfg: ProbeConfig, rtt_ms: u64) -> Sim {
            let now = Instant::now();
            Sim {
                now,
                probe: Probe::new(cfg, now),
                rtt: Duration::from_millis(rtt_ms),
                cut: false,
                wire: Vec::new(),
                sends: Vec::new(),
                events: Vec::new(),
            }
        }

        /// Runs until `until` (relative to start), jumping from event to event.
        fn run_until(&mut self, until: Instant) {
            loop {
                while let Some(k) = self.probe.poll_transmit(self.now) {
                    self.sends.push(self.now);
                    if !self.cut {
                        self.wire.push((self.now + self.rtt, k.seq, k.sent));
                    }
                }
                while let Some(e) = self.probe.poll_event() {
                    self.events.push((self.now, e));
                }
                let t_probe = self.probe.poll_timeout().unwrap();
                let t_wire = self.wire.iter().map(|w| w.0).min();
                let next = t_wire.map_or(t_probe, |w| w.min(t_probe));
                if next > until {
                    self.now = until;
                    return;
                }
                self.now = self.now.max(next);
                let (due, rest): (Vec<_>, Vec<_>) =
                    self.wire.drain(..).partition(|w| w.0 <= self.now);
                self.wire = rest;
                for (_, seq, sent) in due {
                    self.probe.handle_reply(self.now, seq, sent);
                }
                self.probe.handle_timeout(self.now);
            }
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_reply_brings_the_path_up_and_measures_it() {
        let mut s = Sim::new(ProbeConfig::default(), 30);
        let t0 = s.now;
        s.run_until(t0 + ms(100));
        assert_eq!(s.probe.state(), PathState::Up);
        let q = s.probe.quality();
        assert!((q.rtt_ms.unwrap() - 30.0).abs() < 0.01, "{q:?}");
        assert_eq!(q.loss_pct, 0.0);
        assert_eq!(
            s.events[0].1,
            ProbeEvent::State {
                from: PathState::Probing,
                to: PathState::Up
            }
        );
    }

    #[test]
    fn idle_healthy_path_is_quiet() {
        let mut s = Sim::new(ProbeConfig::default(), 10);
        let t0 = s.now;
        s.run_until(t0 + Duration::from_secs(60));
        // One probe at start, then one every 5 s: 13 in 60 s (a few more at most while the
        // path was first measured).
        assert!(s.sends.len() <= 14, "{} keepalives in 60 s", s.sends.len());
        assert_eq!(s.probe.state(), PathState::Up);
    }

    #[test]
    fn realtime_blackhole_detected_under_300_ms() {
        let mut s = Sim::new(ProbeConfig::default(), 10);
        let t0 = s.now;
        s.probe.set_realtime(t0, true);
        s.run_until(t0 + Duration::from_secs(2));
        assert_eq!(s.probe.state(), PathState::Up);
        let cut_at = s.now;
        s.cut = true;
        s.run_until(cut_at + Duration::from_secs(2));
        let down = s
            .events
            .iter()
            .find(|(_, e)| {
                matches!(
                    e,
                    ProbeEvent::State {
                        to: PathState::Down,
                        ..
                    }
                )
            })
            .map(|(t, _)| *t - cut_at)
            .unwrap();
        assert!(down < ms(300), "detected after {down:?}");
    }

    #[test]
    fn idle_path_doubts_on_first_loss_then_probes_fast() {
        let mut s = Sim::new(ProbeConfig::default(), 10);
        let t0 = s.now;
        s.run_until(t0 + Duration::from_secs(7));
        let cut_at = s.now;
        s.cut = true;
        s.run_until(cut_at + Duration::from_secs(6));
        // The next idle keepalive (at t0+10 s) is lost: doubt, then 2 fast ones: down well
        // before another idle interval passes.
        let down = s
            .events
            .iter()
            .find(|(_, e)| {
                matches!(
                    e,
                    ProbeEvent::State {
                        to: PathState::Down,
                        ..
                    }
                )
            })
            .map(|(t, _)| *t - cut_at)
            .unwrap();
        assert!(down < Duration::from_secs(4), "{down:?}");
        assert!(s.events.iter().any(|(_, e)| matches!(
            e,
            ProbeEvent::State {
                to: PathState::Doubt,
                ..
            }
        )));
    }

    #[test]
    fn dead_path_backs_off_and_recovers() {
        let mut s = Sim::new(ProbeConfig::default(), 10);
        let t0 = s.now;
        s.cut = true;
        s.run_until(t0 + Duration::from_secs(60));
        assert_eq!(s.probe.state(), PathState::Down);
        // Back-off to the idle interval: far fewer than 60 s / 50 ms.
        assert!(s.sends.len() < 25, "{} keepalives", s.sends.len());
        let heal = s.now;
        s.cut = false;
        s.run_until(heal + Duration::from_secs(6));
        assert_eq!(s.probe.state(), PathState::Up);
        // Back from down: a fresh loss measurement; the give-ups are still counted.
        let q = s.probe.quality();
        assert_eq!(q.loss_pct, 0.0, "{q:?}");
        assert!(q.lost > 3, "{q:?}");
    }

    #[test]
    fn forged_or_wild_replies_are_ignored() {
        let t0 = Instant::now();
        let mut p = Probe::new(ProbeConfig::default(), t0);
        let k = p.poll_transmit(t0).unwrap();
        // Wrong timestamp for a live seq: not ours.
        p.handle_reply(t0 + ms(5), k.seq, t0 + ms(1));
        assert_eq!(p.state(), PathState::Probing);
        // From the future.
        p.handle_reply(t0 + ms(5), k.seq, t0 + ms(50));
        assert_eq!(p.state(), PathState::Probing);
        p.handle_reply(t0 + ms(5), k.seq, k.sent);
        assert_eq!(p.state(), PathState::Up);
        // The wire carries microseconds: a send time truncated to them is ours.
        let t1 = t0 + Duration::from_nanos(1_700);
        let mut p = Probe::new(ProbeConfig::default(), t1);
        let k = p.poll_transmit(t1).unwrap();
        p.handle_reply(t1 + ms(5), k.seq, t0 + Duration::from_micros(1));
        assert_eq!(p.state(), PathState::Up);
        assert!((p.quality().rtt_ms.unwrap() - 5.0).abs() < 1e-6);
    }

    #[test]
    fn jitter_follows_rtt_variation() {
        let t0 = Instant::now();
        let mut p = Probe::new(ProbeConfig::default(), t0);
        let mut now = t0;
        for i in 0..200u64 {
            p.set_realtime(now, true);
            if let Some(k) = p.poll_transmit(now) {
                let rtt = if i % 2 == 0 { ms(10) } else { ms(20) };
                p.handle_reply(now + rtt, k.seq, k.sent);
            }
            now += ms(50);
            p.handle_timeout(now);
        }
        let q = p.quality();
        assert!(
            q.jitter_ms.unwrap() > 8.0 && q.jitter_ms.unwrap() < 10.5,
            "{q:?}"
        );
        assert!(q.rtt_ms.unwrap() > 10.0 && q.rtt_ms.unwrap() < 20.0);
    }

    #[test]
    fn one_early_loss_is_one_in_the_window() {
        let t0 = Instant::now();
        let mut p = Probe::new(ProbeConfig::default(), t0);
        p.poll_transmit(t0).unwrap();
        p.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(p.quality().lost, 1);
        let q = p.quality();
        assert!(
            (q.loss_pct - 100.0 / LOSS_WINDOW as f64).abs() < 1e-9,
            "{q:?}"
        );
        // Under a strict real-time limit of 3 %.
        assert!(q.loss_pct < 3.0);
    }

    #[test]
    fn steady_loss_is_measured_over_the_window() {
        let t0 = Instant::now();
        let mut p = Probe::new(ProbeConfig::default(), t0);
        p.set_realtime(t0, true);
        let mut now = t0;
        // Every 10th keepalive is lost, for many windows.
        for i in 0..1000u64 {
            if let Some(k) = p.poll_transmit(now) {
                if i % 10 != 0 {
                    p.handle_reply(now + ms(5), k.seq, k.sent);
                }
            }
            now += ms(50);
            p.handle_timeout(now);
        }
        let q = p.quality();
        // 6 or 7 of the last 64, depending on where the window falls.
        assert!(q.loss_pct > 9.0 && q.loss_pct < 11.0, "{q:?}");
    }

    #[test]
    fn late_reply_takes_its_loss_back_and_stretches_the_timeout() {
        let t0 = Instant::now();
        let mut p = Probe::new(ProbeConfig::default(), t0);
        p.set_realtime(t0, true);
        let mut now = t0;
        // A fast path (1 ms) measured for a while: the timeout sits at its 80 ms floor.
        for _ in 0..20 {
            if let Some(k) = p.poll_transmit(now) {
                p.handle_reply(now + ms(1), k.seq, k.sent);
            }
            now += ms(50);
            p.handle_timeout(now);
        }
        // Then one stall: the reply comes back after 150 ms, when it was given up on.
        let k = p.poll_transmit(now).unwrap();
        p.handle_timeout(now + ms(100));
        assert_eq!(p.state(), PathState::Doubt);
        assert!(p.quality().loss_pct > 0.0);
        p.handle_reply(now + ms(150), k.seq, k.sent);
        let q = p.quality();
        assert_eq!(q.state, PathState::Up);
        assert_eq!(q.loss_pct, 0.0, "{q:?}");
        assert!(q.rtt_ms.unwrap() > 10.0, "the late sample counts: {q:?}");
        assert!(p.reply_timeout() > ms(150), "{:?}", p.reply_timeout());
        // A forged late reply (wrong timestamp) takes nothing back.
        let k = p.poll_transmit(now + ms(200)).unwrap();
        p.handle_timeout(now + ms(2000));
        let lost = p.quality().loss_pct;
        assert!(lost > 0.0);
        p.handle_reply(now + ms(2100), k.seq, k.sent + ms(1));
        assert_eq!(p.quality().loss_pct, lost);
    }
}
