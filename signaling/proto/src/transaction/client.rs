//! Non-INVITE client transaction (RFC 3261 §17.1.2).

use std::time::{Duration, Instant};

use super::InvalidTransition;
use crate::consts::{T1, T2, TIMER_F, TIMER_K};
use crate::timer::{Timer, TimerTable};

/// State of a non-INVITE client transaction. RFC 3261 §17.1.2.2, Figure 6:
///
/// ```text
///                                    |Request from TU
///                                    |send request
///                Timer E             V
///                send request  +-----------+
///                    +---------|           |-------------------+
///                    |         |  Trying   |  Timer F          |
///                    +-------->|           |  or Transport Err.|
///                              +-----------+  inform TU        |
///                 200-699         |  |                         |
///                 resp. to TU     |  |1xx                      |
///                 +---------------+  |resp. to TU              |
///                 |                  |                         |
///                 |   Timer E        V       Timer F           |
///                 |   send req +-----------+ or Transport Err. |
///                 |  +---------|           | inform TU         |
///                 |  |         |Proceeding |------------------>|
///                 |  +-------->|           |-----+             |
///                 |            +-----------+     |1xx          |
///                 |              |      ^        |resp to TU   |
///                 | 200-699      |      +--------+             |
///                 | resp. to TU  |                             |
///                 |              |                             |
///                 |              V                             |
///                 |            +-----------+                   |
///                 |            |           |                   |
///                 |            | Completed |                   |
///                 |            |           |                   |
///                 |            +-----------+                   |
///                 |              ^   |                         |
///                 |              |   | Timer K                 |
///                 +--------------+   | -                       |
///                                    |                         |
///                                    V                         |
///              NOTE:           +-----------+                   |
///                              |           |                   |
///          transitions         | Terminated|<------------------+
///          labeled with        |           |
///          the event           +-----------+
///          over which
///          is the action
///          to take
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Request sent, nothing heard yet; Timer E retransmits.
    Trying,
    /// A provisional response arrived; Timer E retransmits every T2.
    Proceeding,
    /// A final response arrived; Timer K absorbs its retransmissions.
    Completed,
    /// Done; the owner removes the transaction.
    Terminated,
}

impl ClientState {
    /// Every state, for table walks.
    pub const ALL: [ClientState; 4] = [
        ClientState::Trying,
        ClientState::Proceeding,
        ClientState::Completed,
        ClientState::Terminated,
    ];

    fn name(self) -> &'static str {
        match self {
            ClientState::Trying => "Trying",
            ClientState::Proceeding => "Proceeding",
            ClientState::Completed => "Completed",
            ClientState::Terminated => "Terminated",
        }
    }
}

/// An input of the client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Timer E fired.
    TimerE,
    /// Timer F fired.
    TimerF,
    /// Timer K fired.
    TimerK,
    /// A 1xx response matched.
    Provisional,
    /// A 200-699 response matched.
    Final,
    /// The transport reported an error.
    TransportError,
}

impl ClientEvent {
    /// Every event, for table walks.
    pub const ALL: [ClientEvent; 6] = [
        ClientEvent::TimerE,
        ClientEvent::TimerF,
        ClientEvent::TimerK,
        ClientEvent::Provisional,
        ClientEvent::Final,
        ClientEvent::TransportError,
    ];

    fn name(self) -> &'static str {
        match self {
            ClientEvent::TimerE => "TimerE",
            ClientEvent::TimerF => "TimerF",
            ClientEvent::TimerK => "TimerK",
            ClientEvent::Provisional => "Provisional",
            ClientEvent::Final => "Final",
            ClientEvent::TransportError => "TransportError",
        }
    }
}

/// What the owner must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    /// Send the request again.
    Retransmit,
    /// Pass the response to the TU.
    Deliver,
    /// Swallow the (retransmitted) response.
    Absorb,
    /// Tell the TU the transaction timed out (Timer F).
    TimedOut,
    /// Tell the TU of the transport error.
    TransportError,
    /// Remove the transaction silently.
    Destroy,
}

/// The pure transition function of Figure 6.
pub(super) fn on_event(
    state: ClientState,
    event: ClientEvent,
) -> Result<(ClientState, ClientAction), InvalidTransition> {
    use ClientAction as A;
    use ClientEvent as E;
    use ClientState as S;
    Ok(match (state, event) {
        (S::Trying, E::TimerE) => (S::Trying, A::Retransmit),
        (S::Proceeding, E::TimerE) => (S::Proceeding, A::Retransmit),
        (S::Trying | S::Proceeding, E::TimerF) => (S::Terminated, A::TimedOut),
        (S::Trying | S::Proceeding, E::TransportError) => (S::Terminated, A::TransportError),
        (S::Trying | S::Proceeding, E::Provisional) => (S::Proceeding, A::Deliver),
        (S::Trying | S::Proceeding, E::Final) => (S::Completed, A::Deliver),
        (S::Completed, E::Provisional | E::Final) => (S::Completed, A::Absorb),
        (S::Completed, E::TimerK) => (S::Terminated, A::Destroy),
        (S::Trying | S::Proceeding, E::TimerK)
        | (S::Completed, E::TimerE | E::TimerF | E::TransportError)
        | (S::Terminated, _) => {
            return Err(InvalidTransition {
                state: state.name(),
                event: event.name(),
            })
        }
    })
}

/// A non-INVITE client transaction: the request bytes, the state and timers E, F, K.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    state: ClientState,
    timers: TimerTable,
    interval: Duration,
    request: Vec<u8>,
}

impl ClientTransaction {
    /// Starts a transaction whose request (`request`, already encoded) the owner sends
    /// now. RFC 3261 §17.1.2.2: "the client transaction MUST set timer E to fire in T1
    /// seconds" and "MUST set timer F to fire in 64*T1 seconds".
    pub fn new(now: Instant, request: Vec<u8>) -> ClientTransaction {
        let mut timers = TimerTable::default();
        timers.set(Timer::E, now + T1);
        timers.set(Timer::F, now + TIMER_F);
        ClientTransaction {
            state: ClientState::Trying,
            timers,
            interval: T1,
            request,
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request bytes (for retransmission).
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Feeds a matching response with `status`; returns whether to deliver it to the TU.
    pub fn handle_response(
        &mut self,
        now: Instant,
        status: u16,
    ) -> Result<ClientAction, InvalidTransition> {
        let ev = if status < 200 {
            ClientEvent::Provisional
        } else {
            ClientEvent::Final
        };
        self.apply(now, ev)
    }

    /// Fires due timers. Returns the action of the first one that fired, if any; call
    /// again until `None` is returned or the state is Terminated.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ClientAction> {
        for t in [Timer::F, Timer::K, Timer::E] {
            if self.timers.is_expired(t, now) {
                self.timers.stop(t);
                let ev = match t {
                    Timer::E => ClientEvent::TimerE,
                    Timer::F => ClientEvent::TimerF,
                    _ => ClientEvent::TimerK,
                };
                return self.apply(now, ev).ok();
            }
        }
        None
    }

    /// Reports a transport error (e.g. ICMP unreachable from the driver).
    pub fn handle_transport_error(&mut self, now: Instant) -> Option<ClientAction> {
        self.apply(now, ClientEvent::TransportError).ok()
    }

    /// The earliest armed timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    fn apply(&mut self, now: Instant, ev: ClientEvent) -> Result<ClientAction, InvalidTransition> {
        let (next, action) = on_event(self.state, ev)?;
        match (ev, next) {
            // "If timer E fires while still in this state, the timer is reset, but this
            // time with a value of MIN(2*T1, T2)" (Trying) / "T2" (Proceeding).
            (ClientEvent::TimerE, ClientState::Trying) => {
                self.interval = (self.interval * 2).min(T2);
                self.timers.set(Timer::E, now + self.interval);
            }
            (ClientEvent::TimerE, ClientState::Proceeding) => {
                self.timers.set(Timer::E, now + T2);
            }
            (ClientEvent::Provisional, ClientState::Proceeding)
                if self.state == ClientState::Trying =>
            {
                self.timers.set(Timer::E, now + T2);
            }
            // "Once the client transaction enters the Completed state, it MUST set Timer K
            // to fire in T4 seconds for unreliable transports".
            (ClientEvent::Final, ClientState::Completed)
                if self.state != ClientState::Completed =>
            {
                self.timers.stop_all();
                self.timers.set(Timer::K, now + TIMER_K);
            }
            (_, ClientState::Terminated) => self.timers.stop_all(),
            _ => {}
        }
        self.state = next;
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn retransmits_back_off_to_t2_then_time_out() {
        let t0 = t0();
        let mut tx = ClientTransaction::new(t0, b"REQ".to_vec());
        let mut sends = vec![];
        let mut now = t0;
        while let Some(t) = tx.poll_timeout() {
            now = t;
            if let Some(a) = tx.handle_timeout(now) {
                if a == ClientAction::Retransmit {
                    sends.push((now - t0).as_millis());
                }
                if a == ClientAction::TimedOut {
                    break;
                }
            }
        }
        assert_eq!(tx.state(), ClientState::Terminated);
        assert_eq!(now - t0, TIMER_F);
        assert_eq!(&sends[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
    }

    #[test]
    fn final_response_then_timer_k() {
        let t0 = t0();
        let mut tx = ClientTransaction::new(t0, vec![]);
        assert_eq!(tx.handle_response(t0, 100), Ok(ClientAction::Deliver));
        assert_eq!(tx.poll_timeout(), Some(t0 + T2));
        assert_eq!(tx.handle_response(t0, 200), Ok(ClientAction::Deliver));
        assert_eq!(tx.handle_response(t0, 200), Ok(ClientAction::Absorb));
        assert_eq!(tx.poll_timeout(), Some(t0 + TIMER_K));
        assert_eq!(tx.handle_timeout(t0 + TIMER_K), Some(ClientAction::Destroy));
        assert_eq!(tx.state(), ClientState::Terminated);
        assert!(tx.handle_response(t0, 200).is_err());
    }
}
