//! Transaction timers named after their RFC 3261 letters, stored in a [`TimerTable`]
//! (the shape of `quinn-proto/src/connection/timer.rs`).

use std::time::Instant;

/// A transaction timer. Values are in [`crate::consts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Non-INVITE request retransmit interval: starts at T1, then `min(2*E, T2)`; in
    /// Proceeding it is T2 (RFC 3261 §17.1.2.2).
    E = 0,
    /// Non-INVITE transaction timeout: `64*T1` (RFC 3261 §17.1.2.2).
    F = 1,
    /// Server: wait time for request retransmissions: `64*T1` over UDP (RFC 3261 §17.2.2).
    J = 2,
    /// Client: wait time for response retransmissions: `T4` over UDP (RFC 3261 §17.1.2.2).
    K = 3,
}

impl Timer {
    /// Every timer, in table order.
    pub const VALUES: [Timer; 4] = [Timer::E, Timer::F, Timer::J, Timer::K];
}

/// Deadlines of the [`Timer`]s of one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTable([Option<Instant>; 4]);

impl TimerTable {
    /// Arms (or re-arms) `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    /// Whether `timer` is armed and its deadline is at or before `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.0 = [None; 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn table_orders_deadlines() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::F, t0 + Duration::from_secs(32));
        t.set(Timer::E, t0 + Duration::from_millis(500));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(500)));
        assert!(t.is_expired(Timer::E, t0 + Duration::from_millis(500)));
        assert!(!t.is_expired(Timer::F, t0 + Duration::from_millis(500)));
        t.stop(Timer::E);
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(32)));
        t.stop_all();
        assert_eq!(t.next_timeout(), None);
    }
}
