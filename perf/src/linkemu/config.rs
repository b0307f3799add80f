//! The emulator's configuration file: `key = value` lines, `#` comments.
//!
//! ```text
//! generation = 3          # echoed in the status file once applied (readiness for scripts)
//! seed = 1                # loss and jitter RNG seed (re-seeded only when it changes)
//! jitter_dist = uniform   # uniform: delay +- jitter; normal: standard deviation = jitter
//! up.delay_ms = 40        # "up" = port a -> port b (mobile host -> network)
//! up.jitter_ms = 0
//! up.loss_pct = 0
//! down.delay_ms = 0       # "down" = port b -> port a
//! down.jitter_ms = 0
//! down.loss_pct = 0
//! queue_packets = 10000   # per direction; packets beyond are dropped and counted
//! queue_bytes = 33554432  # per direction
//! ```
//! Every key is optional (defaults: nothing impaired); unknown keys are errors, so a typo
//! never silently leaves a link unimpaired.

use std::time::Duration;

/// Upper bound for delays and jitters (one minute): beyond it a value is surely a typo.
const MAX_MS: f64 = 60_000.0;

/// How a per-packet jitter is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JitterDist {
    /// Uniform in `[delay - jitter, delay + jitter]`.
    #[default]
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter` (clamped at 0).
    Normal,
}

/// Impairment of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DirConfig {
    /// Mean added one-way delay.
    pub delay: Duration,
    /// Jitter: half-width (uniform) or standard deviation (normal).
    pub jitter: Duration,
    /// Probability that a frame is dropped, in `[0, 1]`.
    pub loss: f64,
}

impl DirConfig {
    /// Whether this direction changes anything.
    pub fn is_impaired(&self) -> bool {
        !self.delay.is_zero() || !self.jitter.is_zero() || self.loss > 0.0
    }
}

/// Whole emulator configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Opaque counter echoed in the status file once this configuration is in force.
    pub generation: u64,
    /// RNG seed for loss and jitter.
    pub seed: u64,
    /// Jitter distribution (both directions).
    pub jitter_dist: JitterDist,
    /// Port a -> port b (mobile host -> network).
    pub up: DirConfig,
    /// Port b -> port a (network -> mobile host).
    pub down: DirConfig,
    /// Queue bound per direction, in frames.
    pub queue_packets: usize,
    /// Queue bound per direction, in bytes.
    pub queue_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            generation: 0,
            seed: 1,
            jitter_dist: JitterDist::Uniform,
            up: DirConfig::default(),
            down: DirConfig::default(),
            queue_packets: 10_000,
            queue_bytes: 32 << 20,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A line is not `key = value`.
    #[error("line {line}: expected `key = value`")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// The key is not one of the documented ones.
    #[error("line {line}: unknown key `{key}`")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The key as written.
        key: String,
    },
    /// The value does not parse or is out of range.
    #[error("line {line}: bad value for `{key}`: {why}")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl Config {
    /// Parses a configuration file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut cfg = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let (key, value) = content
                .split_once('=')
                .ok_or(ConfigError::Syntax { line })?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(ConfigError::Syntax { line });
            }
            let bad = |why| ConfigError::BadValue {
                line,
                key: key.to_string(),
                why,
            };
            match key {
                "generation" => {
                    cfg.generation = value.parse().map_err(|_| bad("not an integer"))?
                }
                "seed" => cfg.seed = value.parse().map_err(|_| bad("not an integer"))?,
                "jitter_dist" => {
                    cfg.jitter_dist = match value {
                        "uniform" => JitterDist::Uniform,
                        "normal" => JitterDist::Normal,
                        _ => return Err(bad("uniform or normal")),
                    }
                }
                "queue_packets" => {
                    cfg.queue_packets = parse_bounded(value, 1, 1_000_000).map_err(bad)?;
                }
                "queue_bytes" => {
                    cfg.queue_bytes = parse_bounded(value, 65_536, 1 << 30).map_err(bad)?;
                }
                _ => {
                    let (dir, field) = match key.split_once('.') {
                        Some(("up", f)) => (&mut cfg.up, f),
                        Some(("down", f)) => (&mut cfg.down, f),
                        _ => {
                            return Err(ConfigError::UnknownKey {
                                line,
                                key: key.to_string(),
                            })
                        }
                    };
                    match field {
                        "delay_ms" => dir.delay = parse_ms(value).map_err(bad)?,
                        "jitter_ms" => dir.jitter = parse_ms(value).map_err(bad)?,
                        "loss_pct" => dir.loss = parse_pct(value).map_err(bad)?,
                        _ => {
                            return Err(ConfigError::UnknownKey {
                                line,
                                key: key.to_string(),
                            })
                        }
                    }
                }
            }
        }
        Ok(cfg)
    }
}

fn parse_f64(value: &str) -> Result<f64, &'static str> {
    let v: f64 = value.parse().map_err(|_| "not a number")?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err("must be a finite number >= 0")
    }
}

fn parse_ms(value: &str) -> Result<Duration, &'static str> {
    let v = parse_f64(value)?;
    if v > MAX_MS {
        return Err("at most 60000 ms");
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

fn parse_pct(value: &str) -> Result<f64, &'static str> {
    let v = parse_f64(value)?;
    if v > 100.0 {
        return Err("a percentage, 0 to 100");
    }
    Ok(v / 100.0)
}

fn parse_bounded(value: &str, min: usize, max: usize) -> Result<usize, &'static str> {
    let v: usize = value.parse().map_err(|_| "not an integer")?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err("out of range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default_and_unimpaired() {
        let c = Config::parse("# nothing\n\n").unwrap();
        assert_eq!(c, Config::default());
        assert!(!c.up.is_impaired() && !c.down.is_impaired());
    }

    #[test]
    fn full_file() {
        let c = Config::parse(
            "generation = 7\nseed=42\njitter_dist = normal # comment\n\
             up.delay_ms = 40\nup.jitter_ms = 2.5\nup.loss_pct = 20\n\
             down.delay_ms = 0.5\ndown.loss_pct = 0\nqueue_packets = 100\nqueue_bytes = 70000\n",
        )
        .unwrap();
        assert_eq!(c.generation, 7);
        assert_eq!(c.seed, 42);
        assert_eq!(c.jitter_dist, JitterDist::Normal);
        assert_eq!(c.up.delay, Duration::from_millis(40));
        assert_eq!(c.up.jitter, Duration::from_micros(2500));
        assert!((c.up.loss - 0.2).abs() < 1e-12);
        assert_eq!(c.down.delay, Duration::from_micros(500));
        assert!(c.up.is_impaired() && c.down.is_impaired());
        assert_eq!(c.queue_packets, 100);
        assert_eq!(c.queue_bytes, 70_000);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            Config::parse("seed 3"),
            Err(ConfigError::Syntax { line: 1 })
        );
        assert_eq!(
            Config::parse("\nup.delay_ms ="),
            Err(ConfigError::Syntax { line: 2 })
        );
        assert!(matches!(
            Config::parse("up.dealy_ms = 4"),
            Err(ConfigError::UnknownKey { line: 1, .. })
        ));
        assert!(matches!(
            Config::parse("sideways.delay_ms = 4"),
            Err(ConfigError::UnknownKey { .. })
        ));
        for bad in [
            "up.loss_pct = 101",
            "up.loss_pct = -1",
            "up.delay_ms = NaN",
            "up.delay_ms = inf",
            "up.delay_ms = 60001",
            "up.jitter_ms = x",
            "jitter_dist = pareto",
            "queue_packets = 0",
            "queue_bytes = 10",
            "generation = -1",
        ] {
            assert!(
                matches!(
                    Config::parse(bad),
                    Err(ConfigError::BadValue { line: 1, .. })
                ),
                "{bad}"
            );
        }
    }
}
