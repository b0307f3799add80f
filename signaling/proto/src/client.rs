//! The mobile-host side: associate (REGISTER with Digest), refresh before expiry,
//! re-associate after losing the anchor, set up tunnels and request handovers
//! (authenticated MESSAGEs). Sans-IO.
//!
//! Call [`Client::handle_datagram`] for every signalling datagram (from the SIP socket or
//! from a tunnel's signalling frames), [`Client::handle_timeout`] at
//! [`Client::poll_timeout`], then drain [`Client::poll_transmit`] and [`Client::poll_event`].

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::auth::{ha1, request_digest, Authorization, Challenge, MessageAuth, SessionKey};
use crate::body::{self, FlowMove, FlowResult, RequestBody, ResponseBody};
use crate::codec::{self, CSeq, Head, Header, Message, Method, NameAddr, Request, Response, Via};
use crate::consts::{
    BRANCH_COOKIE, CONTENT_TYPE_JSON, DEFAULT_EXPIRES, MIN_UNAUTHENTICATED_REGISTER, PAD_HEADER,
    PRODUCT, REASSOCIATE_MAX, REASSOCIATE_MIN, TIMER_F, VIPADDR_HEADER,
};
use crate::path::{Path, Transmit};
use crate::transaction::{ClientAction, ClientTransaction};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Identity (SIP user and Digest username).
    pub user: String,
    /// Password.
    pub password: String,
    /// SIP domain (Request-URI `sip:<domain>`; the registrar's realm need not match).
    pub domain: String,
    /// The anchor's SIP address (UDP 5060).
    pub registrar: SocketAddr,
    /// Lifetime to ask for.
    pub expires: u32,
    /// Host part used in Via and Contact (the anchor answers to the source address anyway).
    pub local_host: String,
}

impl ClientConfig {
    /// A config with defaults for `expires` and `local_host`.
    pub fn new(user: &str, password: &str, domain: &str, registrar: SocketAddr) -> ClientConfig {
        ClientConfig {
            user: user.to_owned(),
            password: password.to_owned(),
            domain: domain.to_owned(),
            registrar,
            expires: DEFAULT_EXPIRES,
            local_host: "mh.invalid".to_owned(),
        }
    }
}

/// What the client tells the mobile daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Associated (first time, or after re-association): configure `upmt0` with `vipa`.
    Associated {
        /// The VIPA.
        vipa: Ipv4Addr,
        /// Granted lifetime.
        expires: Duration,
    },
    /// A refresh succeeded.
    Refreshed {
        /// The VIPA (unchanged).
        vipa: Ipv4Addr,
        /// Granted lifetime.
        expires: Duration,
    },
    /// The anchor stopped answering (a REGISTER timed out); re-association is under way.
    AssociationLost,
    /// The anchor refused the credentials (403). Retries continue with backoff.
    AuthFailed {
        /// Status code.
        status: u16,
    },
    /// The anchor refused the association for another reason (e.g. 503 pool exhausted).
    Rejected {
        /// Status code.
        status: u16,
        /// Retry-After, if given.
        retry_after: Option<Duration>,
    },
    /// De-registration done (or timed out); nothing is held any more.
    Deregistered,
    /// A tunnel is ready.
    TunnelReady {
        /// The link the setup was sent on.
        link: u32,
        /// Tunnel ID assigned by the anchor.
        tunnel_id: u32,
        /// Our outer address as the anchor sees it.
        mapped: SocketAddr,
    },
    /// A tunnel setup failed (`status` None = timed out).
    TunnelFailed {
        /// The link.
        link: u32,
        /// Status, if a response came.
        status: Option<u16>,
    },
    /// A handover request was answered.
    HandoverAck {
        /// The id returned by [`Client::request_handover`].
        id: u64,
        /// Per-flow results, in request order.
        results: Vec<FlowResult>,
    },
    /// A handover request failed (`status` None = timed out).
    HandoverFailed {
        /// The id.
        id: u64,
        /// Status, if a response came.
        status: Option<u16>,
    },
}

/// Errors of the client API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No session key yet: associate first.
    #[error("not associated")]
    NotAssociated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegState {
    /// Not associated, nothing scheduled.
    Idle,
    /// A REGISTER transaction is in flight.
    Registering,
    /// Associated; refresh at `refresh_at`.
    Registered { refresh_at: Instant },
    /// Associated; a refresh REGISTER is in flight.
    Refreshing,
    /// Waiting before the next attempt.
    Backoff { until: Instant },
    /// De-registration in flight.
    Deregistering,
}

#[derive(Debug, Clone)]
enum Kind {
    Register {
        expires: u32,
        used: Option<(String, String)>,
    },
    TunnelSetup {
        link: u32,
    },
    Handover {
        id: u64,
    },
}

#[derive(Debug)]
struct Pending {
    tx: ClientTransaction,
    kind: Kind,
    path: Path,
}

#[derive(Debug, Clone)]
struct AuthState {
    challenge: Challenge,
    nc: u32,
    cnonce: String,
}

/// The mobile host's signalling endpoint.
pub struct Client {
    cfg: ClientConfig,
    rng: Box<dyn RngCore + Send>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    vipa: Option<Ipv4Addr>,
    expires_at: Option<Instant>,
    auth: Option<AuthState>,
    /// Consecutive 401s in the current attempt.
    challenges: u32,
    session: Option<SessionKey>,
    seq: u64,
    backoff: Duration,
    next_handover: u64,
    pending: HashMap<String, Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.cfg.user)
            .field("state", &self.state)
            .field("vipa", &self.vipa)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client; nothing is sent until [`Client::associate`].
    pub fn new(cfg: ClientConfig, mut rng: Box<dyn RngCore + Send>) -> Client {
        let call_id = format!("{:016x}@{}", rng.next_u64(), cfg.local_host);
        let from_tag = format!("{:08x}", rng.next_u32());
        Client {
            cfg,
            rng,
            call_id,
            from_tag,
            cseq: 0,
            state: RegState::Idle,
            vipa: None,
            expires_at: None,
            auth: None,
            challenges: 0,
            session: None,
            seq: 0,
            backoff: REASSOCIATE_MIN,
            next_handover: 1,
            pending: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The VIPA held (also while re-associating).
    pub fn vipa(&self) -> Option<Ipv4Addr> {
        self.vipa
    }

    /// Whether the association is live (a session key exists and it has not expired).
    pub fn is_associated(&self) -> bool {
        matches!(
            self.state,
            RegState::Registered { .. } | RegState::Refreshing
        )
    }

    /// Starts (or restarts) association.
    pub fn associate(&mut self, now: Instant) {
        self.challenges = 0;
        self.state = if self.is_associated() {
            RegState::Refreshing
        } else {
            RegState::Registering
        };
        self.send_register(now, self.cfg.expires);
    }

    /// De-registers (Expires: 0). [`Event::Deregistered`] follows.
    pub fn deregister(&mut self, now: Instant) {
        self.pending
            .retain(|_, p| !matches!(p.kind, Kind::Register { .. }));
        self.send_register(now, 0);
        self.state = RegState::Deregistering;
    }

    /// Sends a tunnel setup MESSAGE inside the tunnel of `link` towards the anchor's
    /// tunnel address `anchor` (UDP 1800). [`Event::TunnelReady`] follows.
    pub fn setup_tunnel(
        &mut self,
        now: Instant,
        link: u32,
        anchor: SocketAddr,
    ) -> Result<(), ClientError> {
        let body = body::encode(RequestBody::TunnelSetup { link: None });
        let path = Path::Tunnel {
            link,
            remote: anchor,
        };
        self.send_message(now, path, body, Kind::TunnelSetup { link })
    }

    /// Sends one handover request for many flows on `path` (inside a tunnel, where
    /// `"any"` targets mean that tunnel, or on the SIP socket). Returns the id echoed in
    /// [`Event::HandoverAck`].
    pub fn request_handover(
        &mut self,
        now: Instant,
        path: Path,
        flows: Vec<FlowMove>,
    ) -> Result<u64, ClientError> {
        let id = self.next_handover;
        let body = body::encode(RequestBody::Handover { flows });
        self.send_message(now, path, body, Kind::Handover { id })?;
        self.next_handover += 1;
        Ok(id)
    }

    /// Feeds one datagram that arrived on `path` (SIP socket or a tunnel's signalling frame).
    pub fn handle_datagram(&mut self, now: Instant, _path: Path, data: &[u8]) {
        let Ok(Message::Response(resp)) = codec::parse(data) else {
            return; // the client serves no requests
        };
        let branch = resp.head.via.branch.clone();
        let Some(p) = self.pending.get_mut(&branch) else {
            return;
        };
        let expected_method = match p.kind {
            Kind::Register { .. } => Method::Register,
            _ => Method::Message,
        };
        if resp.head.cseq.method != expected_method {
            return;
        }
        match p.tx.handle_response(now, resp.status) {
            Ok(ClientAction::Deliver) if resp.status >= 200 => {
                let kind = p.kind.clone();
                self.on_final(now, kind, &resp);
            }
            _ => {}
        }
    }

    /// Fires due timers: retransmissions, transaction timeouts, refresh and backoff.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        let mut done = Vec::new();
        for (branch, p) in &mut self.pending {
            while let Some(action) = p.tx.handle_timeout(now) {
                match action {
                    ClientAction::Retransmit => self.transmits.push_back(Transmit {
                        path: p.path,
                        payload: p.tx.request().to_vec(),
                    }),
                    ClientAction::TimedOut | ClientAction::TransportError => {
                        timed_out.push(branch.clone());
                        break;
                    }
                    ClientAction::Destroy => {
                        done.push(branch.clone());
                        break;
                    }
                    _ => {}
                }
            }
        }
        for b in done {
            self.pending.remove(&b);
        }
        for b in timed_out {
            if let Some(p) = self.pending.remove(&b) {
                self.on_timeout(now, p.kind);
            }
        }
        match self.state {
            RegState::Registered { refresh_at } if refresh_at <= now => {
                self.challenges = 0;
                self.state = RegState::Refreshing;
                self.send_register(now, self.cfg.expires);
            }
            RegState::Backoff { until } if until <= now => {
                self.challenges = 0;
                self.state = RegState::Registering;
                self.send_register(now, self.cfg.expires);
            }
            _ => {}
        }
    }

    /// The next instant [`Client::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match self.state {
            RegState::Registered { refresh_at } => Some(refresh_at),
            RegState::Backoff { until } => Some(until),
            _ => None,
        };
        self.pending
            .values()
            .filter_map(|p| p.tx.poll_timeout())
            .chain(state)
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn branch(&mut self) -> String {
        format!("{BRANCH_COOKIE}{:016x}", self.rng.next_u64())
    }

    fn head(
        &mut self,
        branch: &str,
        call_id: String,
        cseq: u32,
        method: Method,
        to: NameAddr,
    ) -> Head {
        let via = format!("SIP/2.0/UDP {};branch={branch};rport", self.cfg.local_host);
        Head {
            via: Via {
                transport: "UDP".into(),
                host: self.cfg.local_host.clone(),
                port: None,
                branch: branch.to_owned(),
                rport: true,
            },
            vias: vec![via],
            from: NameAddr::new(
                format!("sip:{}@{}", self.cfg.user, self.cfg.domain),
                Some(self.from_tag.clone()),
            ),
            to,
            call_id,
            cseq: CSeq { seq: cseq, method },
            max_forwards: Some(70),
            content_type: None,
            headers: Vec::new(),
        }
    }

    fn send_register(&mut self, now: Instant, expires: u32) {
        self.pending
            .retain(|_, p| !matches!(p.kind, Kind::Register { .. }));
        self.cseq = self.cseq.wrapping_add(1) % crate::consts::MAX_CSEQ;
        let branch = self.branch();
        let uri = format!("sip:{}", self.cfg.domain);
        let to = NameAddr::new(format!("sip:{}@{}", self.cfg.user, self.cfg.domain), None);
        let mut head = self.head(
            &branch,
            self.call_id.clone(),
            self.cseq,
            Method::Register,
            to,
        );
        let mut push = |n: &str, v: String| {
            head.headers.push(Header {
                name: n.to_owned(),
                value: v,
            })
        };
        push(
            "Contact",
            format!(
                "<sip:{}@{}>;expires={expires}",
                self.cfg.user, self.cfg.local_host
            ),
        );
        push("Expires", expires.to_string());
        if let Some(v) = self.vipa {
            push(VIPADDR_HEADER, v.to_string());
        }
        push("User-Agent", PRODUCT.to_owned());
        let mut used = None;
        if let Some(a) = &mut self.auth {
            a.nc = a.nc.wrapping_add(1);
            let alg = a.challenge.algorithm;
            let h1 = ha1(alg, &self.cfg.user, &a.challenge.realm, &self.cfg.password);
            let nc = format!("{:08x}", a.nc);
            let resp = request_digest(
                alg,
                &h1,
                &a.challenge.nonce,
                Some((&nc, &a.cnonce)),
                "REGISTER",
                &uri,
            );
            push(
                "Authorization",
                Authorization::encode_client(
                    alg,
                    &self.cfg.user,
                    &a.challenge.realm,
                    &a.challenge.nonce,
                    &uri,
                    &resp,
                    a.nc,
                    &a.cnonce,
                    a.challenge.opaque.as_deref(),
                ),
            );
            used = Some((a.challenge.nonce.clone(), a.cnonce.clone()));
        }
        let mut req = Request {
            method: Method::Register,
            uri,
            head,
            body: Vec::new(),
        };
        let mut bytes = req.encode();
        if used.is_none() && bytes.len() < MIN_UNAUTHENTICATED_REGISTER {
            let pad = MIN_UNAUTHENTICATED_REGISTER - bytes.len();
            let n = pad.saturating_sub(PAD_HEADER.len() + 4).max(1);
            req.head.headers.push(Header {
                name: PAD_HEADER.to_owned(),
                value: "0".repeat(n),
            });
            bytes = req.encode();
        }
        let path = Path::Udp(self.cfg.registrar);
        self.transmits.push_back(Transmit {
            path,
            payload: bytes.clone(),
        });
        self.pending.insert(
            branch,
            Pending {
                tx: ClientTransaction::new(now, bytes),
                kind: Kind::Register { expires, used },
                path,
            },
        );
    }

    fn send_message(
        &mut self,
        now: Instant,
        path: Path,
        body: Vec<u8>,
        kind: Kind,
    ) -> Result<(), ClientError> {
        let Some(key) = self.session.clone().filter(|_| self.vipa.is_some()) else {
            return Err(ClientError::NotAssociated);
        };
        self.seq += 1;
        let branch = self.branch();
        let call_id = format!("{:016x}@{}", self.rng.next_u64(), self.cfg.local_host);
        let to = NameAddr::new(format!("sip:{}", self.cfg.domain), None);
        let mut head = self.head(&branch, call_id, 1, Method::Message, to);
        let mac = key.mac(&self.cfg.user, "MESSAGE", self.seq, &body);
        head.headers.push(Header {
            name: MessageAuth::HEADER.to_owned(),
            value: MessageAuth {
                kid: key.kid.clone(),
                seq: self.seq,
                mac,
            }
            .encode(),
        });
        head.content_type = Some(CONTENT_TYPE_JSON.to_owned());
        let req = Request {
            method: Method::Message,
            uri: format!("sip:{}", self.cfg.domain),
            head,
            body,
        };
        let bytes = req.encode();
        self.transmits.push_back(Transmit {
            path,
            payload: bytes.clone(),
        });
        self.pending.insert(
            branch,
            Pending {
                tx: ClientTransaction::new(now, bytes),
                kind,
                path,
            },
        );
        Ok(())
    }

    fn enter_backoff(&mut self, now: Instant, at_least: Option<Duration>) {
        let delay = at_least.map_or(self.backoff, |d| d.max(self.backoff));
        self.state = RegState::Backoff { until: now + delay };
        self.backoff = (self.backoff * 2).min(REASSOCIATE_MAX);
    }

    fn on_final(&mut self, now: Instant, kind: Kind, resp: &Response) {
        match kind {
            Kind::Register { expires, used } => self.on_register_final(now, expires, used, resp),
            Kind::TunnelSetup { link } => {
                let ev = match body::decode::<ResponseBody>(&resp.body) {
                    Ok(ResponseBody::TunnelReady {
                        tunnel_id, mapped, ..
                    }) if resp.status < 300 => Event::TunnelReady {
                        link,
                        tunnel_id,
                        mapped,
                    },
                    _ => Event::TunnelFailed {
                        link,
                        status: Some(resp.status),
                    },
                };
                self.check_message_rejection(now, resp);
                self.events.push_back(ev);
            }
            Kind::Handover { id } => {
                let ev = match body::decode::<ResponseBody>(&resp.body) {
                    Ok(ResponseBody::HandoverAck { results }) if resp.status < 300 => {
                        Event::HandoverAck { id, results }
                    }
                    _ => Event::HandoverFailed {
                        id,
                        status: Some(resp.status),
                    },
                };
                self.check_message_rejection(now, resp);
                self.events.push_back(ev);
            }
        }
    }

    /// A 403 "Not Associated" / "Unknown Key" means the anchor lost our association (e.g. it
    /// restarted): associate again.
    fn check_message_rejection(&mut self, now: Instant, resp: &Response) {
        if resp.status == 403 && (resp.reason == "Not Associated" || resp.reason == "Unknown Key") {
            self.session = None;
            self.auth = None;
            self.events.push_back(Event::AssociationLost);
            self.associate(now);
        }
    }

    fn on_register_final(
        &mut self,
        now: Instant,
        expires: u32,
        used: Option<(String, String)>,
        resp: &Response,
    ) {
        let dereg = expires == 0;
        match resp.status {
            200..=299 if dereg => {
                self.clear_association();
                self.events.push_back(Event::Deregistered);
            }
            200..=299 => {
                let vipa: Option<Ipv4Addr> = resp
                    .head
                    .header(VIPADDR_HEADER)
                    .and_then(|v| v.trim().parse().ok());
                let granted = resp
                    .head
                    .header("Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .unwrap_or(expires);
                let (Some(vipa), Some((nonce, cnonce)), Some(a)) = (vipa, used, self.auth.clone())
                else {
                    // A 200 without VIPA or without our authentication is useless.
                    self.events.push_back(Event::Rejected {
                        status: resp.status,
                        retry_after: None,
                    });
                    self.enter_backoff(now, None);
                    return;
                };
                let h1 = ha1(
                    a.challenge.algorithm,
                    &self.cfg.user,
                    &a.challenge.realm,
                    &self.cfg.password,
                );
                let key = SessionKey::derive(&h1, &nonce, &cnonce);
                if self.session.as_ref().map(|k| &k.kid) != Some(&key.kid) {
                    self.session = Some(key);
                    self.seq = 0;
                }
                let granted_d = Duration::from_secs(u64::from(granted));
                let first = !self.is_associated() || self.vipa != Some(vipa);
                self.vipa = Some(vipa);
                self.expires_at = Some(now + granted_d);
                // Refresh early enough that a whole transaction (Timer F) plus margin fits.
                let margin = TIMER_F + Duration::from_secs(5);
                let refresh_in = granted_d
                    .checked_sub(margin)
                    .unwrap_or_default()
                    .max(granted_d / 2);
                self.state = RegState::Registered {
                    refresh_at: now + refresh_in,
                };
                self.backoff = REASSOCIATE_MIN;
                self.challenges = 0;
                self.events.push_back(if first {
                    Event::Associated {
                        vipa,
                        expires: granted_d,
                    }
                } else {
                    Event::Refreshed {
                        vipa,
                        expires: granted_d,
                    }
                });
            }
            401 | 407 => {
                self.challenges += 1;
                let ch = resp
                    .head
                    .headers_named(if resp.status == 401 {
                        "WWW-Authenticate"
                    } else {
                        "Proxy-Authenticate"
                    })
                    .filter_map(Challenge::parse)
                    .find(|c| c.qop_auth);
                match ch {
                    Some(ch) if self.challenges <= 2 => {
                        let cnonce = format!("{:016x}", self.rng.next_u64());
                        self.auth = Some(AuthState {
                            challenge: ch,
                            nc: 0,
                            cnonce,
                        });
                        self.send_register(now, expires);
                    }
                    _ => {
                        self.auth = None;
                        self.events.push_back(Event::AuthFailed {
                            status: resp.status,
                        });
                        if dereg {
                            self.clear_association();
                        } else {
                            self.enter_backoff(now, None);
                        }
                    }
                }
            }
            403 => {
                self.auth = None;
                self.events.push_back(Event::AuthFailed { status: 403 });
                if dereg {
                    self.clear_association();
                } else {
                    self.enter_backoff(now, None);
                }
            }
            status => {
                let retry_after = resp
                    .head
                    .header("Retry-After")
                    .and_then(|v| v.split(';').next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                self.events.push_back(Event::Rejected {
                    status,
                    retry_after,
                });
                if dereg {
                    self.clear_association();
                } else {
                    self.enter_backoff(now, retry_after);
                }
            }
        }
    }

    fn clear_association(&mut self) {
        self.state = RegState::Idle;
        self.session = None;
        self.vipa = None;
        self.expires_at = None;
    }

    fn on_timeout(&mut self, now: Instant, kind: Kind) {
        match kind {
            Kind::Register { expires: 0, .. } => {
                self.clear_association();
                self.events.push_back(Event::Deregistered);
            }
            Kind::Register { .. } => {
                // The anchor is gone (or the path to it): keep the VIPA for the next
                // attempt (sent in VIpAddr), forget the nonce, retry with backoff.
                self.auth = None;
                if self.is_associated() || self.session.is_some() {
                    self.events.push_back(Event::AssociationLost);
                }
                self.session = None;
                self.enter_backoff(now, None);
            }
            Kind::TunnelSetup { link } => self
                .events
                .push_back(Event::TunnelFailed { link, status: None }),
            Kind::Handover { id } => self
                .events
                .push_back(Event::HandoverFailed { id, status: None }),
        }
    }
}
