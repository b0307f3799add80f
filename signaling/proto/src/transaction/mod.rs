//! RFC 3261 §17 non-INVITE transactions over an unreliable transport.
//!
//! Each transaction is a state enum with a pure transition function
//! (`on_event(state, event) -> Result<(state, action), InvalidTransition>`) plus a small
//! struct that applies the action's side effects (timers, cached bytes). The owner (the
//! registrar or the client) keys transactions by branch and drives them with
//! `handle_*`/`handle_timeout`.

mod client;
mod server;

pub use client::{ClientAction, ClientEvent, ClientState, ClientTransaction};
pub use server::{ServerAction, ServerEvent, ServerState, ServerTransaction};

/// An event that the current state does not accept (RFC 3261 §17 has no arrow for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {event} not valid in state {state}")]
pub struct InvalidTransition {
    /// The state's name.
    pub state: &'static str,
    /// The event's name.
    pub event: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// Walks every (state, event) pair of both machines; the expected table is the RFC's
    /// diagrams written out (the `insta`-style snapshot, inline).
    #[test]
    fn transition_tables_snapshot() {
        let mut got = String::new();
        for s in ClientState::ALL {
            for e in ClientEvent::ALL {
                let r = match client::on_event(s, e) {
                    Ok((n, a)) => format!("{n:?} {a:?}"),
                    Err(_) => "invalid".into(),
                };
                let _ = writeln!(got, "client {s:?} + {e:?} -> {r}");
            }
        }
        for s in ServerState::ALL {
            for e in ServerEvent::ALL {
                let r = match server::on_event(s, e) {
                    Ok((n, a)) => format!("{n:?} {a:?}"),
                    Err(_) => "invalid".into(),
                };
                let _ = writeln!(got, "server {s:?} + {e:?} -> {r}");
            }
        }
        let expected = "\
client Trying + TimerE -> Trying Retransmit
client Trying + TimerF -> Terminated TimedOut
client Trying + TimerK -> invalid
client Trying + Provisional -> Proceeding Deliver
client Trying + Final -> Completed Deliver
client Trying + TransportError -> Terminated TransportError
client Proceeding + TimerE -> Proceeding Retransmit
client Proceeding + TimerF -> Terminated TimedOut
client Proceeding + TimerK -> invalid
client Proceeding + Provisional -> Proceeding Deliver
client Proceeding + Final -> Completed Deliver
client Proceeding + TransportError -> Terminated TransportError
client Completed + TimerE -> invalid
client Completed + TimerF -> invalid
client Completed + TimerK -> Terminated Destroy
client Completed + Provisional -> Completed Absorb
client Completed + Final -> Completed Absorb
client Completed + TransportError -> invalid
client Terminated + TimerE -> invalid
client Terminated + TimerF -> invalid
client Terminated + TimerK -> invalid
client Terminated + Provisional -> invalid
client Terminated + Final -> invalid
client Terminated + TransportError -> invalid
server Trying + Request -> Trying Absorb
server Trying + Provisional -> Proceeding Send
server Trying + Final -> Completed Send
server Trying + TimerJ -> invalid
server Trying + TransportError -> invalid
server Proceeding + Request -> Proceeding ResendLast
server Proceeding + Provisional -> Proceeding Send
server Proceeding + Final -> Completed Send
server Proceeding + TimerJ -> invalid
server Proceeding + TransportError -> Terminated TransportError
server Completed + Request -> Completed ResendLast
server Completed + Provisional -> invalid
server Completed + Final -> Completed Absorb
server Completed + TimerJ -> Terminated Destroy
server Completed + TransportError -> Terminated TransportError
server Terminated + Request -> invalid
server Terminated + Provisional -> invalid
server Terminated + Final -> invalid
server Terminated + TimerJ -> invalid
server Terminated + TransportError -> invalid
";
        assert_eq!(got, expected);
    }
}
