//! Non-INVITE server transaction (RFC 3261 §17.2.2).

use std::time::Instant;

use super::InvalidTransition;
use crate::consts::TIMER_J;
use crate::timer::{Timer, TimerTable};

/// State of a non-INVITE server transaction. RFC 3261 §17.2.2, Figure 8:
///
/// ```text
///                                   |Request received
///                                   |pass to TU
///                                   V
///                             +-----------+
///                             |           |
///                             | Trying    |-------------+
///                             |           |             |
///                             +-----------+             |200-699 from TU
///                                   |                   |send response
///                                   |1xx from TU        |
///                                   |send response      |
///                                   |                   |
///                Request            V      1xx from TU  |
///                send response+-----------+send response|
///                    +--------|           |--------+    |
///                    |        | Proceeding|        |    |
///                    +------->|           |<-------+    |
///             +<--------------|           |             |
///             |Trnsprt Err    +-----------+             |
///             |Inform TU            |                   |
///             |                     |                   |
///             |                     |200-699 from TU    |
///             |                     |send response      |
///             |  Request            V                   |
///             |  send response+-----------+             |
///             |      +--------|           |             |
///             |      |        | Completed |<------------+
///             |      +------->|           |
///             +<--------------|           |
///             |Trnsprt Err    +-----------+
///             |Inform TU            |
///             |                     |Timer J fires
///             |                     |-
///             |                     |
///             |                     V
///             |               +-----------+
///             |               |           |
///             +-------------->| Terminated|
///                             |           |
///                             +-----------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Request passed to the TU, no response yet; retransmissions are discarded.
    Trying,
    /// A provisional response was sent; retransmissions get it again.
    Proceeding,
    /// A final response was sent; retransmissions get it again until Timer J.
    Completed,
    /// Done; the owner removes the transaction.
    Terminated,
}

impl ServerState {
    /// Every state, for table walks.
    pub const ALL: [ServerState; 4] = [
        ServerState::Trying,
        ServerState::Proceeding,
        ServerState::Completed,
        ServerState::Terminated,
    ];

    fn name(self) -> &'static str {
        match self {
            ServerState::Trying => "Trying",
            ServerState::Proceeding => "Proceeding",
            ServerState::Completed => "Completed",
            ServerState::Terminated => "Terminated",
        }
    }
}

/// An input of the server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// A retransmission of the request arrived.
    Request,
    /// The TU sends a 1xx.
    Provisional,
    /// The TU sends a 200-699.
    Final,
    /// Timer J fired.
    TimerJ,
    /// The transport reported an error.
    TransportError,
}

impl ServerEvent {
    /// Every event, for table walks.
    pub const ALL: [ServerEvent; 5] = [
        ServerEvent::Request,
        ServerEvent::Provisional,
        ServerEvent::Final,
        ServerEvent::TimerJ,
        ServerEvent::TransportError,
    ];

    fn name(self) -> &'static str {
        match self {
            ServerEvent::Request => "Request",
            ServerEvent::Provisional => "Provisional",
            ServerEvent::Final => "Final",
            ServerEvent::TimerJ => "TimerJ",
            ServerEvent::TransportError => "TransportError",
        }
    }
}

/// What the owner must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    /// Discard the retransmitted request.
    Absorb,
    /// Send the response the TU passed.
    Send,
    /// Send the last response again (duplicate suppression: the TU never sees it).
    ResendLast,
    /// Inform the TU of the transport error.
    TransportError,
    /// Remove the transaction.
    Destroy,
}

/// The pure transition function of Figure 8.
pub(super) fn on_event(
    state: ServerState,
    event: ServerEvent,
) -> Result<(ServerState, ServerAction), InvalidTransition> {
    use ServerAction as A;
    use ServerEvent as E;
    use ServerState as S;
    Ok(match (state, event) {
        (S::Trying, E::Request) => (S::Trying, A::Absorb),
        (S::Trying | S::Proceeding, E::Provisional) => (S::Proceeding, A::Send),
        (S::Trying | S::Proceeding, E::Final) => (S::Completed, A::Send),
        (S::Proceeding, E::Request) => (S::Proceeding, A::ResendLast),
        (S::Proceeding | S::Completed, E::TransportError) => (S::Terminated, A::TransportError),
        (S::Completed, E::Request) => (S::Completed, A::ResendLast),
        // "Any other final responses passed by the TU to the server transaction MUST be
        // discarded while in the Completed state."
        (S::Completed, E::Final) => (S::Completed, A::Absorb),
        (S::Completed, E::TimerJ) => (S::Terminated, A::Destroy),
        (S::Trying, E::TimerJ | E::TransportError)
        | (S::Proceeding, E::TimerJ)
        | (S::Completed, E::Provisional)
        | (S::Terminated, _) => {
            return Err(InvalidTransition {
                state: state.name(),
                event: event.name(),
            })
        }
    })
}

/// A non-INVITE server transaction: state, Timer J and the last response sent.
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    state: ServerState,
    timers: TimerTable,
    last_response: Vec<u8>,
}

impl Default for ServerTransaction {
    fn default() -> Self {
        ServerTransaction::new()
    }
}

impl ServerTransaction {
    /// A transaction for a request just received (and passed to the TU).
    pub fn new() -> ServerTransaction {
        ServerTransaction {
            state: ServerState::Trying,
            timers: TimerTable::default(),
            last_response: Vec::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// A retransmission of the request arrived; returns the bytes to send back, if any.
    pub fn handle_request(&mut self, now: Instant) -> Option<&[u8]> {
        match self.apply(now, ServerEvent::Request) {
            Ok(ServerAction::ResendLast) => Some(&self.last_response),
            _ => None,
        }
    }

    /// The TU responds with `status`, encoded as `bytes`; returns the bytes to send, if
    /// the transaction accepts them.
    pub fn handle_response(&mut self, now: Instant, status: u16, bytes: Vec<u8>) -> Option<&[u8]> {
        let ev = if status < 200 {
            ServerEvent::Provisional
        } else {
            ServerEvent::Final
        };
        match self.apply(now, ev) {
            Ok(ServerAction::Send) => {
                self.last_response = bytes;
                Some(&self.last_response)
            }
            _ => None,
        }
    }

    /// Fires Timer J if due; returns `true` when the transaction terminated.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.timers.is_expired(Timer::J, now) {
            self.timers.stop(Timer::J);
            return matches!(
                self.apply(now, ServerEvent::TimerJ),
                Ok(ServerAction::Destroy)
            );
        }
        false
    }

    /// The earliest armed timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Heap bytes held (the cached response).
    pub fn heap_size(&self) -> usize {
        self.last_response.capacity()
    }

    fn apply(&mut self, now: Instant, ev: ServerEvent) -> Result<ServerAction, InvalidTransition> {
        let (next, action) = on_event(self.state, ev)?;
        // "When the server transaction enters the "Completed" state, it MUST set Timer J to
        // fire in 64*T1 seconds for unreliable transports".
        if next == ServerState::Completed && self.state != ServerState::Completed {
            self.timers.set(Timer::J, now + TIMER_J);
        }
        if next == ServerState::Terminated {
            self.timers.stop_all();
        }
        self.state = next;
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn duplicate_answered_until_timer_j() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new();
        assert_eq!(tx.handle_request(t0), None);
        assert_eq!(
            tx.handle_response(t0, 200, b"OK".to_vec()),
            Some(&b"OK"[..])
        );
        assert_eq!(tx.handle_request(t0), Some(&b"OK"[..]));
        assert_eq!(tx.handle_response(t0, 500, b"NO".to_vec()), None);
        assert!(!tx.handle_timeout(t0 + TIMER_J / 2));
        assert!(tx.handle_timeout(t0 + TIMER_J));
        assert_eq!(tx.state(), ServerState::Terminated);
    }
}
