//! Buffer slot ownership, as a small state machine checked on every transition.
//!
//! A slot (buffer id of a provided buffer ring) is in exactly one of three hands:
//! `Kernel` (provided to the ring, the kernel may write it), `Held` (a completion handed it to
//! us: we may read and rewrite it in place), or `InFlight` (we pushed a request that reads it:
//! the kernel owns it until that request's completion). Only a `Held` slot can be viewed,
//! submitted or provided again; a violated transition is a bug and is refused with an error
//! rather than risking a buffer that the kernel and we both write.

use std::fmt;

/// Where a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Provided to the kernel.
    Kernel,
    /// Ours.
    Held,
    /// Referenced by a request in flight.
    InFlight,
}

/// A refused transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotError {
    pub(crate) bid: u16,
    pub(crate) state: Option<SlotState>,
    pub(crate) wanted: SlotState,
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "buffer slot {} is {:?}, expected {:?}",
            self.bid, self.state, self.wanted
        )
    }
}

/// Tracks the state of each slot of one buffer ring.
#[derive(Debug)]
pub(crate) struct SlotTracker {
    states: Vec<SlotState>,
    in_kernel: usize,
}

impl SlotTracker {
    /// `n` slots, all `Held` (not yet provided).
    pub(crate) fn new(n: usize) -> SlotTracker {
        SlotTracker {
            states: vec![SlotState::Held; n],
            in_kernel: 0,
        }
    }

    fn transition(&mut self, bid: u16, from: SlotState, to: SlotState) -> Result<(), SlotError> {
        match self.states.get_mut(bid as usize) {
            Some(s) if *s == from => {
                *s = to;
                if from == SlotState::Kernel {
                    self.in_kernel -= 1;
                }
                if to == SlotState::Kernel {
                    self.in_kernel += 1;
                }
                Ok(())
            }
            other => Err(SlotError {
                bid,
                state: other.copied(),
                wanted: from,
            }),
        }
    }

    /// Held -> Kernel (provide to the ring).
    pub(crate) fn provide(&mut self, bid: u16) -> Result<(), SlotError> {
        self.transition(bid, SlotState::Held, SlotState::Kernel)
    }
    /// Kernel -> Held (a completion selected it).
    pub(crate) fn take(&mut self, bid: u16) -> Result<(), SlotError> {
        self.transition(bid, SlotState::Kernel, SlotState::Held)
    }
    /// Held -> InFlight (a request reads it).
    pub(crate) fn submit(&mut self, bid: u16) -> Result<(), SlotError> {
        self.transition(bid, SlotState::Held, SlotState::InFlight)
    }
    /// InFlight -> Held (that request completed).
    pub(crate) fn complete(&mut self, bid: u16) -> Result<(), SlotError> {
        self.transition(bid, SlotState::InFlight, SlotState::Held)
    }
    /// Whether `bid` is ours to view.
    pub(crate) fn is_held(&self, bid: u16) -> bool {
        self.states.get(bid as usize) == Some(&SlotState::Held)
    }
    /// Slots currently provided to the kernel.
    pub(crate) fn in_kernel(&self) -> usize {
        self.in_kernel
    }
    /// Slots in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.states
            .iter()
            .filter(|s| **s == SlotState::InFlight)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_refusals() {
        let mut t = SlotTracker::new(4);
        assert!(t.is_held(0));
        t.provide(0).unwrap();
        assert_eq!(t.in_kernel(), 1);
        assert!(!t.is_held(0));
        // Cannot submit or provide a slot the kernel owns.
        assert!(t.submit(0).is_err());
        assert!(t.provide(0).is_err());
        t.take(0).unwrap();
        assert_eq!(t.in_kernel(), 0);
        t.submit(0).unwrap();
        // In flight: not viewable, not providable, not submittable twice.
        assert!(!t.is_held(0));
        assert!(t.provide(0).is_err());
        assert!(t.submit(0).is_err());
        assert_eq!(t.in_flight(), 1);
        t.complete(0).unwrap();
        assert!(t.complete(0).is_err());
        t.provide(0).unwrap();
        // Out of range ids (a corrupt completion) are refused, not panicking.
        assert_eq!(t.take(99).unwrap_err().state, None);
    }
}
