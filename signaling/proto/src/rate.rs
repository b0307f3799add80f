//! Per-source rate limit: a token bucket per source IP address, in a bounded table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Rate limit settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained datagrams per second per source IP.
    pub per_second: f64,
    /// Burst size.
    pub burst: f64,
    /// Most sources tracked; beyond it, idle (full) buckets are purged and then new sources
    /// are refused until room frees up.
    pub max_sources: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 50.0,
            burst: 100.0,
            max_sources: 65_536,
        }
    }
}

/// Token buckets keyed by source IP.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cfg: RateLimit,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    last_purge: Option<Instant>,
}

impl RateLimiter {
    /// A limiter with `cfg`.
    pub fn new(cfg: RateLimit) -> RateLimiter {
        RateLimiter {
            cfg,
            buckets: HashMap::new(),
            last_purge: None,
        }
    }

    /// Takes a token for `src`; `false` means drop the datagram.
    pub fn allow(&mut self, now: Instant, src: IpAddr) -> bool {
        let cfg = self.cfg;
        if !self.buckets.contains_key(&src) && self.buckets.len() >= cfg.max_sources {
            // Table full: purge idle buckets at most once a second (a flood of spoofed
            // sources must not make every datagram scan the table), else refuse.
            if self
                .last_purge
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
            {
                return false;
            }
            self.last_purge = Some(now);
            self.buckets.retain(|_, (tokens, last)| {
                *tokens + now.saturating_duration_since(*last).as_secs_f64() * cfg.per_second
                    < cfg.burst
            });
            if self.buckets.len() >= cfg.max_sources {
                return false;
            }
        }
        let (tokens, last) = self.buckets.entry(src).or_insert((cfg.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * cfg.per_second;
        *tokens = (*tokens + refill).min(cfg.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn bucket_refills() {
        let t0 = Instant::now();
        let ip: IpAddr = "198.18.0.1".parse().unwrap();
        let mut r = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
            max_sources: 1,
        });
        assert!(r.allow(t0, ip) && r.allow(t0, ip) && r.allow(t0, ip));
        assert!(!r.allow(t0, ip));
        assert!(r.allow(t0 + Duration::from_millis(100), ip));
        // Table full and the only bucket is not idle: a new source is refused.
        assert!(!r.allow(
            t0 + Duration::from_millis(100),
            "198.18.0.2".parse().unwrap()
        ));
    }
}
