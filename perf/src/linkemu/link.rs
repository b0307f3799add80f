//! The sans-IO core of the emulator: two delay queues (one per direction), random loss and
//! jitter from one seedable RNG, bounded queues with counted drops.
//!
//! Call [`Link::handle_frame`] for every frame read from a port, then
//! [`Link::poll_transmit`] until it returns `None` to get the frames that are due, and sleep
//! until [`Link::poll_timeout`]. Time is always passed in; nothing here reads a clock.
//!
//! Ordering: each frame's deadline is `arrival + delay + jitter sample`, raised to the
//! previous frame's deadline in the same direction if it would overtake it. Frames therefore
//! never reorder (TCP over an emulated link sees no spurious reordering, unlike netem); the
//! price is that when the jitter exceeds the gap between frames, later frames wait for
//! earlier ones and the delay distribution shifts up a little. A queue sorted by deadline
//! with no such raise would reorder instead.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{Config, DirConfig, JitterDist};

/// Frames kept for reuse, so steady traffic does not allocate.
const FREE_LIST_MAX: usize = 256;

/// Direction of travel through the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Port a -> port b: mobile host -> network.
    Up,
    /// Port b -> port a: network -> mobile host.
    Down,
}

impl Dir {
    /// Both directions, in index order.
    pub const ALL: [Dir; 2] = [Dir::Up, Dir::Down];

    fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }

    /// `"up"` or `"down"` (the configuration and status key prefix).
    pub fn name(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
        }
    }
}

/// What happened to a frame handed to [`Link::handle_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Queued; it will come out of [`Link::poll_transmit`] at its deadline.
    Queued,
    /// Dropped by the random loss.
    Lost,
    /// Dropped because the direction's queue is full.
    QueueFull,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Frames read.
    pub rx_frames: u64,
    /// Bytes read (including the virtio-net header when present).
    pub rx_bytes: u64,
    /// Frames written out.
    pub tx_frames: u64,
    /// Bytes written out.
    pub tx_bytes: u64,
    /// Frames dropped by the random loss.
    pub lost: u64,
    /// Frames dropped because the queue was full.
    pub queue_full: u64,
    /// Frames the port refused to send (counted by the driver).
    pub tx_errors: u64,
    /// Frames larger than the receive buffer (counted by the driver).
    pub truncated: u64,
    /// Worst lateness: time between a frame's deadline and its release.
    pub late_max: Duration,
    /// Sum of lateness over released frames (for the mean).
    pub late_sum: Duration,
    /// Frames released (the lateness sample count).
    pub released: u64,
}

/// One queued frame.
#[derive(Debug)]
struct Frame {
    deadline: Instant,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Lane {
    cfg: DirConfig,
    queue: VecDeque<Frame>,
    bytes: usize,
    last_deadline: Option<Instant>,
    stats: DirStats,
}

/// A frame that is due, from [`Link::poll_transmit`].
#[derive(Debug)]
pub struct Transmit {
    /// Its direction (send it out of port b for `Up`, port a for `Down`).
    pub dir: Dir,
    /// The frame, exactly as read. Give the buffer back with [`Link::recycle`].
    pub data: Vec<u8>,
}

/// Both directions of one emulated link.
#[derive(Debug)]
pub struct Link {
    lanes: [Lane; 2],
    dist: JitterDist,
    seed: u64,
    rng: StdRng,
    queue_packets: usize,
    queue_bytes: usize,
    free: Vec<Vec<u8>>,
}

impl Link {
    /// A link configured with `cfg`, queues empty.
    pub fn new(cfg: &Config) -> Self {
        let mut link = Self {
            lanes: [Lane::default(), Lane::default()],
            dist: cfg.jitter_dist,
            seed: cfg.seed,
            rng: StdRng::seed_from_u64(cfg.seed),
            queue_packets: cfg.queue_packets,
            queue_bytes: cfg.queue_bytes,
            free: Vec::new(),
        };
        link.configure(cfg);
        link
    }

    /// Applies a new configuration. Queued frames keep their deadlines; the RNG is re-seeded
    /// only when the seed changes (so a later `loss` does not replay the same sequence).
    pub fn configure(&mut self, cfg: &Config) {
        self.lanes[0].cfg = cfg.up;
        self.lanes[1].cfg = cfg.down;
        self.dist = cfg.jitter_dist;
        self.queue_packets = cfg.queue_packets;
        self.queue_bytes = cfg.queue_bytes;
        if cfg.seed != self.seed {
            self.seed = cfg.seed;
            self.rng = StdRng::seed_from_u64(cfg.seed);
        }
    }

    /// Takes a frame read at `now` travelling in `dir`: drops it (loss, full queue) or
    /// queues a copy with its deadline.
    pub fn handle_frame(&mut self, dir: Dir, now: Instant, frame: &[u8]) -> Verdict {
        let lane = &mut self.lanes[dir.index()];
        lane.stats.rx_frames += 1;
        lane.stats.rx_bytes += frame.len() as u64;
        if lane.cfg.loss > 0.0 && self.rng.gen::<f64>() < lane.cfg.loss {
            lane.stats.lost += 1;
            return Verdict::Lost;
        }
        if lane.queue.len() >= self.queue_packets || lane.bytes + frame.len() > self.queue_bytes {
            lane.stats.queue_full += 1;
            return Verdict::QueueFull;
        }
        let delay = sample_delay(&lane.cfg, self.dist, &mut self.rng);
        let mut deadline = now + delay;
        if let Some(last) = lane.last_deadline {
            deadline = deadline.max(last);
        }
        lane.last_deadline = Some(deadline);
        let mut data = self.free.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(frame);
        lane.bytes += data.len();
        lane.queue.push_back(Frame { deadline, data });
        Verdict::Queued
    }

    /// The earliest deadline of any queued frame: wake up then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|l| l.queue.front().map(|f| f.deadline))
            .min()
    }

    /// The next frame due at `now` (earliest deadline first across directions), if any.
    /// Records how late it is released.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let mut best: Option<(usize, Instant)> = None;
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(f) = lane.queue.front() {
                if f.deadline <= now && best.is_none_or(|(_, d)| f.deadline < d) {
                    best = Some((i, f.deadline));
                }
            }
        }
        let (i, _) = best?;
        let lane = &mut self.lanes[i];
        let frame = lane.queue.pop_front()?;
        lane.bytes -= frame.data.len();
        let late = now.saturating_duration_since(frame.deadline);
        lane.stats.late_max = lane.stats.late_max.max(late);
        lane.stats.late_sum += late;
        lane.stats.released += 1;
        Some(Transmit {
            dir: Dir::ALL[i],
            data: frame.data,
        })
    }

    /// Gives a transmitted frame's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.free.len() < FREE_LIST_MAX {
            self.free.push(buf);
        }
    }

    /// Counts a frame the driver sent.
    pub fn note_sent(&mut self, dir: Dir, len: usize) {
        let s = &mut self.lanes[dir.index()].stats;
        s.tx_frames += 1;
        s.tx_bytes += len as u64;
    }

    /// Counts a frame the driver failed to send.
    pub fn note_tx_error(&mut self, dir: Dir) {
        self.lanes[dir.index()].stats.tx_errors += 1;
    }

    /// Counts a frame the driver had to drop because it did not fit the receive buffer.
    pub fn note_truncated(&mut self, dir: Dir) {
        let s = &mut self.lanes[dir.index()].stats;
        s.rx_frames += 1;
        s.truncated += 1;
    }

    /// Counters of one direction.
    pub fn stats(&self, dir: Dir) -> &DirStats {
        &self.lanes[dir.index()].stats
    }

    /// Frames queued in one direction.
    pub fn queued(&self, dir: Dir) -> usize {
        self.lanes[dir.index()].queue.len()
    }
}

/// One-way delay for a frame: `delay` plus a jitter sample, never negative.
fn sample_delay(cfg: &DirConfig, dist: JitterDist, rng: &mut StdRng) -> Duration {
    if cfg.jitter.is_zero() {
        return cfg.delay;
    }
    let j = cfg.jitter.as_secs_f64();
    let offset = match dist {
        JitterDist::Uniform => (rng.gen::<f64>() * 2.0 - 1.0) * j,
        JitterDist::Normal => {
            // Box-Muller; u1 in (0, 1] so the logarithm is finite.
            let u1 = 1.0 - rng.gen::<f64>();
            let u2 = rng.gen::<f64>();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * j
        }
    };
    Duration::from_secs_f64((cfg.delay.as_secs_f64() + offset).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(up: DirConfig) -> Config {
        Config {
            up,
            ..Config::default()
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn unimpaired_frames_are_due_at_once_in_order() {
        let mut link = Link::new(&Config::default());
        let t0 = Instant::now();
        for i in 0..5u8 {
            assert_eq!(link.handle_frame(Dir::Up, t0, &[i]), Verdict::Queued);
        }
        assert_eq!(link.poll_timeout(), Some(t0));
        for i in 0..5u8 {
            let tx = link.poll_transmit(t0).unwrap();
            assert_eq!((tx.dir, tx.data.as_slice()), (Dir::Up, &[i][..]));
            link.recycle(tx.data);
        }
        assert!(link.poll_transmit(t0).is_none());
        assert_eq!(link.poll_timeout(), None);
    }

    #[test]
    fn delay_holds_frames_until_their_deadline() {
        let mut link = Link::new(&cfg(DirConfig {
            delay: ms(40),
            ..DirConfig::default()
        }));
        let t0 = Instant::now();
        link.handle_frame(Dir::Up, t0, b"a");
        link.handle_frame(Dir::Down, t0, b"b"); // down is unimpaired
        link.handle_frame(Dir::Up, t0 + ms(1), b"c");
        let tx = link.poll_transmit(t0).unwrap();
        assert_eq!((tx.dir, tx.data.as_slice()), (Dir::Down, &b"b"[..]));
        assert_eq!(link.poll_timeout(), Some(t0 + ms(40)));
        assert!(link.poll_transmit(t0 + ms(39)).is_none());
        assert_eq!(link.poll_transmit(t0 + ms(40)).unwrap().data, b"a");
        assert!(link.poll_transmit(t0 + ms(40)).is_none());
        assert_eq!(link.poll_transmit(t0 + ms(42)).unwrap().data, b"c");
        let s = link.stats(Dir::Up);
        assert_eq!((s.rx_frames, s.released, s.late_max), (2, 2, ms(1)));
    }

    #[test]
    fn jitter_never_reorders_and_stays_in_bounds() {
        let up = DirConfig {
            delay: ms(20),
            jitter: ms(10),
            loss: 0.0,
        };
        for dist in [JitterDist::Uniform, JitterDist::Normal] {
            let mut link = Link::new(&Config {
                up,
                jitter_dist: dist,
                ..Config::default()
            });
            let t0 = Instant::now();
            let n = 2000u32;
            for i in 0..n {
                // 0.1 ms apart: far less than the jitter, the worst case for ordering.
                let at = t0 + Duration::from_micros(u64::from(i) * 100);
                link.handle_frame(Dir::Up, at, &i.to_be_bytes());
            }
            let mut next = 0u32;
            let mut now = t0;
            while let Some(deadline) = link.poll_timeout() {
                now = deadline;
                while let Some(tx) = link.poll_transmit(now) {
                    assert_eq!(tx.data, next.to_be_bytes(), "{dist:?}");
                    next += 1;
                }
            }
            assert_eq!(next, n);
            // Uniform: at most delay + jitter after the last arrival.
            if dist == JitterDist::Uniform {
                assert!(now <= t0 + Duration::from_micros(u64::from(n - 1) * 100) + ms(30));
            }
        }
    }

    #[test]
    fn sampled_delays_have_the_configured_moments() {
        let mut rng = StdRng::seed_from_u64(7);
        let c = DirConfig {
            delay: ms(40),
            jitter: ms(5),
            loss: 0.0,
        };
        let n = 50_000;
        for dist in [JitterDist::Uniform, JitterDist::Normal] {
            let xs: Vec<f64> = (0..n)
                .map(|_| sample_delay(&c, dist, &mut rng).as_secs_f64() * 1e3)
                .collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            assert!((mean - 40.0).abs() < 0.1, "{dist:?} mean {mean}");
            let want_sd = match dist {
                JitterDist::Uniform => 5.0 / 3f64.sqrt(),
                JitterDist::Normal => 5.0,
            };
            assert!((sd - want_sd).abs() < 0.1, "{dist:?} sd {sd}");
            if dist == JitterDist::Uniform {
                assert!(xs.iter().all(|x| (35.0..=45.0).contains(x)));
            }
        }
        // Never negative, even with jitter larger than the delay.
        let c = DirConfig {
            delay: ms(1),
            jitter: ms(10),
            loss: 0.0,
        };
        for _ in 0..1000 {
            let _ = sample_delay(&c, JitterDist::Normal, &mut rng);
        }
    }

    #[test]
    fn loss_rate_matches_and_is_reproducible() {
        let run = |seed| {
            let up = DirConfig {
                loss: 0.2,
                ..DirConfig::default()
            };
            let mut link = Link::new(&Config {
                up,
                seed,
                ..Config::default()
            });
            let t0 = Instant::now();
            let mut verdicts = Vec::new();
            for _ in 0..100_000 {
                verdicts.push(link.handle_frame(Dir::Up, t0, b"x"));
                while let Some(tx) = link.poll_transmit(t0) {
                    link.recycle(tx.data);
                }
            }
            (verdicts, *link.stats(Dir::Up))
        };
        let (v1, s1) = run(3);
        let (v2, _) = run(3);
        let (v3, _) = run(4);
        assert_eq!(v1, v2);
        assert_ne!(v1, v3);
        let rate = s1.lost as f64 / s1.rx_frames as f64;
        assert!((rate - 0.2).abs() < 0.01, "loss {rate}");
        assert_eq!(s1.lost + s1.released, 100_000);
    }

    #[test]
    fn queue_is_bounded_by_frames_and_bytes() {
        let up = DirConfig {
            delay: ms(10),
            ..DirConfig::default()
        };
        let mut link = Link::new(&Config {
            up,
            queue_packets: 3,
            queue_bytes: 65_536,
            ..Config::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(link.handle_frame(Dir::Up, t0, &[0; 100]), Verdict::Queued);
        }
        assert_eq!(
            link.handle_frame(Dir::Up, t0, &[0; 100]),
            Verdict::QueueFull
        );
        assert_eq!(link.queued(Dir::Up), 3);
        // Bytes: a fresh link with room for one 40 kB frame only.
        let mut link = Link::new(&Config {
            up,
            queue_bytes: 65_536,
            ..Config::default()
        });
        assert_eq!(
            link.handle_frame(Dir::Up, t0, &[0; 40_000]),
            Verdict::Queued
        );
        assert_eq!(
            link.handle_frame(Dir::Up, t0, &[0; 40_000]),
            Verdict::QueueFull
        );
        assert_eq!(link.stats(Dir::Up).queue_full, 1);
        // Releasing frees the room.
        link.poll_transmit(t0 + ms(10)).unwrap();
        assert_eq!(
            link.handle_frame(Dir::Up, t0 + ms(10), &[0; 40_000]),
            Verdict::Queued
        );
    }

    #[test]
    fn reconfiguring_keeps_queued_frames_and_order() {
        let up = DirConfig {
            delay: ms(50),
            ..DirConfig::default()
        };
        let mut link = Link::new(&cfg(up));
        let t0 = Instant::now();
        link.handle_frame(Dir::Up, t0, b"old");
        link.configure(&Config::default());
        // The new frame has no delay but must not overtake the old one.
        link.handle_frame(Dir::Up, t0 + ms(1), b"new");
        assert!(link.poll_transmit(t0 + ms(1)).is_none());
        assert_eq!(link.poll_transmit(t0 + ms(50)).unwrap().data, b"old");
        assert_eq!(link.poll_transmit(t0 + ms(50)).unwrap().data, b"new");
    }
}
