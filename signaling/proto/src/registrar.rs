//! The anchor side: SIP registrar (VIPA pool, Digest, soft state) and tunnel broker
//! (tunnel setup and handover MESSAGEs). Sans-IO.
//!
//! Call [`Registrar::handle_datagram`] for every datagram from the SIP socket or from a
//! tunnel's signalling frames, [`Registrar::handle_timeout`] when [`Registrar::poll_timeout`]
//! is reached, then drain [`Registrar::poll_transmit`] and [`Registrar::poll_event`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::auth::{
    digest_eq, request_digest, Algorithm, Authorization, Challenge, MessageAuth, NonceStatus,
    Nonces, ReplayWindow, SessionKey,
};
use crate::body::{self, FlowMatch, FlowResult, RequestBody, ResponseBody, TunnelTarget};
use crate::codec::{self, reason_phrase, Message, Method, Request, Response};
use crate::consts::{
    CONTENT_TYPE_JSON, DEFAULT_EXPIRES, MAX_EXPIRES, MAX_FLOWS_PER_HANDOVER, MAX_TUNNELS_PER_HOST,
    MIN_EXPIRES, NONCE_LIFETIME, POOL_RETRY_AFTER, VIPADDR_HEADER,
};
use crate::credentials::Credentials;
use crate::path::{Path, Transmit};
use crate::pool::{Ipv4Cidr, VipaPool};
use crate::rate::{RateLimit, RateLimiter};
use crate::transaction::ServerTransaction;

/// Registrar settings.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// VIPA pool prefix (default 100.64.0.0/16).
    pub pool: Ipv4Cidr,
    /// Digest algorithms offered, most preferred first (default SHA-256, MD5).
    pub algorithms: Vec<Algorithm>,
    /// Per-source rate limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// Lifetime granted when the REGISTER asks for none.
    pub default_expires: u32,
    /// Shortest lifetime granted (shorter non-zero requests are raised).
    pub min_expires: u32,
    /// Longest lifetime granted.
    pub max_expires: u32,
    /// Digest nonce lifetime.
    pub nonce_lifetime: Duration,
    /// Most tunnels per host.
    pub max_tunnels_per_host: usize,
    /// Never answer an unauthenticated request with more bytes than it had (DESIGN.md §6);
    /// drop instead. Clients pad (see [`crate::consts::MIN_UNAUTHENTICATED_REGISTER`]).
    /// Turn off only for interop with clients that cannot pad.
    pub anti_amplification: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            pool: Ipv4Cidr {
                addr: Ipv4Addr::new(100, 64, 0, 0),
                len: 16,
            },
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            rate_limit: Some(RateLimit::default()),
            default_expires: DEFAULT_EXPIRES,
            min_expires: MIN_EXPIRES,
            max_expires: MAX_EXPIRES,
            nonce_lifetime: NONCE_LIFETIME,
            max_tunnels_per_host: MAX_TUNNELS_PER_HOST,
            anti_amplification: true,
        }
    }
}

/// Why an association ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The soft state expired without refresh.
    Expired,
    /// The host de-registered (Expires: 0).
    Deregistered,
}

/// What the registrar tells the anchor daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A host associated (new binding).
    Associated {
        /// Identity (SIP user).
        user: String,
        /// Its VIPA.
        vipa: Ipv4Addr,
        /// Granted lifetime.
        expires: Duration,
    },
    /// A host refreshed its association.
    Refreshed {
        /// Identity.
        user: String,
        /// Its VIPA (unchanged).
        vipa: Ipv4Addr,
        /// Granted lifetime.
        expires: Duration,
    },
    /// An association ended: drop the host's tunnels, flows and NAT mappings.
    Released {
        /// Identity.
        user: String,
        /// The VIPA, now back in the pool.
        vipa: Ipv4Addr,
        /// The host's tunnels, now gone.
        tunnels: Vec<u32>,
        /// Why.
        reason: ReleaseReason,
    },
    /// A tunnel was set up (or re-confirmed): data from `remote` on the tunnel socket
    /// belongs to `user`.
    TunnelUp {
        /// Identity.
        user: String,
        /// Its VIPA.
        vipa: Ipv4Addr,
        /// Tunnel ID.
        tunnel_id: u32,
        /// The MH's outer address as seen (the tunnel's identity on the wire).
        remote: SocketAddr,
        /// The daemon's link handle the setup arrived on.
        link: u32,
    },
    /// A tunnel was taken away from `user` because another host's tunnel now has the same
    /// remote address (NAT mapping reuse).
    TunnelDown {
        /// Previous owner.
        user: String,
        /// Tunnel ID.
        tunnel_id: u32,
    },
    /// An authenticated handover request: move each flow to its tunnel.
    Handover {
        /// Identity.
        user: String,
        /// Its VIPA.
        vipa: Ipv4Addr,
        /// Accepted moves.
        moves: Vec<(FlowMatch, u32)>,
    },
}

/// Counters of the registrar (every drop reason has one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams fed in.
    pub datagrams: u64,
    /// Dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Rejected by the codec (replied to or dropped).
    pub malformed: u64,
    /// Codec rejections dropped without reply (no usable headers).
    pub malformed_dropped: u64,
    /// Responses received (the registrar sends no requests): dropped.
    pub stray_responses: u64,
    /// Request retransmissions answered from a transaction.
    pub retransmissions: u64,
    /// 401 challenges sent.
    pub challenges: u64,
    /// Digest failures (403).
    pub auth_failures: u64,
    /// Successful REGISTERs.
    pub registrations: u64,
    /// 503 for pool exhaustion.
    pub pool_exhausted: u64,
    /// MESSAGEs rejected as replays.
    pub replays: u64,
    /// MESSAGEs with a bad MAC or unknown key.
    pub bad_mac: u64,
    /// Replies not sent because they would exceed the unauthenticated request's size.
    pub amplification_drops: u64,
    /// ACKs and requests to ignore.
    pub ignored: u64,
}

#[derive(Debug)]
struct Key {
    session: SessionKey,
    window: ReplayWindow,
    nonce: String,
    cnonce: String,
}

#[derive(Debug)]
struct Binding {
    vipa: Ipv4Addr,
    expires_at: Instant,
    contact: String,
    keys: [Option<Key>; 2],
    tunnels: Vec<(u32, SocketAddr)>,
}

/// Server transaction identity: RFC 3261 §17.2.3 matches on the top Via's branch, its
/// sent-by and the method; the source address stands in for sent-by (responses go there).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TxKey {
    branch: String,
    method: Method,
    remote: SocketAddr,
}

/// Outcome of handling one request at the TU level.
struct Reply {
    resp: Response,
    /// The request was not authenticated: enforce the amplification rule.
    unauthenticated: bool,
}

/// The registrar and tunnel broker.
pub struct Registrar {
    cfg: RegistrarConfig,
    creds: Credentials,
    pool: VipaPool,
    nonces: Nonces,
    rng: Box<dyn RngCore + Send>,
    limiter: Option<RateLimiter>,
    bindings: HashMap<String, Binding>,
    /// Last VIPA of identities whose binding ended, for a returning host.
    last_vipa: HashMap<String, Ipv4Addr>,
    expiries: BinaryHeap<Reverse<(Instant, String)>>,
    transactions: HashMap<TxKey, ServerTransaction>,
    tx_timers: BinaryHeap<Reverse<(Instant, TxKey)>>,
    tunnels: HashMap<SocketAddr, (String, u32)>,
    next_tunnel_id: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("bindings", &self.bindings.len())
            .field("transactions", &self.transactions.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// A registrar. `now` is the first instant it will see; `rng` supplies nonces, tags and
    /// the nonce secret (seed it in tests).
    pub fn new(
        now: Instant,
        cfg: RegistrarConfig,
        creds: Credentials,
        mut rng: Box<dyn RngCore + Send>,
    ) -> Result<Registrar, crate::pool::CidrError> {
        let pool = VipaPool::new(cfg.pool)?;
        let nonces = Nonces::new(now, cfg.nonce_lifetime, &mut *rng);
        Ok(Registrar {
            limiter: cfg.rate_limit.map(RateLimiter::new),
            cfg,
            creds,
            pool,
            nonces,
            rng,
            bindings: HashMap::new(),
            last_vipa: HashMap::new(),
            expiries: BinaryHeap::new(),
            transactions: HashMap::new(),
            tx_timers: BinaryHeap::new(),
            tunnels: HashMap::new(),
            next_tunnel_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of associated hosts.
    pub fn associations(&self) -> usize {
        self.bindings.len()
    }

    /// Number of live server transactions.
    pub fn transactions(&self) -> usize {
        self.transactions.len()
    }

    /// The VIPA held by `user`, if associated.
    pub fn vipa_of(&self, user: &str) -> Option<Ipv4Addr> {
        self.bindings.get(user).map(|b| b.vipa)
    }

    /// Removes a tunnel (the data plane found it dead). Returns its owner.
    pub fn remove_tunnel(&mut self, tunnel_id: u32) -> Option<String> {
        let remote = self
            .tunnels
            .iter()
            .find(|(_, (_, id))| *id == tunnel_id)
            .map(|(r, _)| *r)?;
        let (user, _) = self.tunnels.remove(&remote)?;
        if let Some(b) = self.bindings.get_mut(&user) {
            b.tunnels.retain(|(id, _)| *id != tunnel_id);
        }
        Some(user)
    }

    /// Feeds one datagram that arrived on `path`. Call for every datagram of the SIP socket
    /// and for the body of every signalling control frame from a tunnel.
    pub fn handle_datagram(&mut self, now: Instant, path: Path, data: &[u8]) {
        self.stats.datagrams += 1;
        if let Some(l) = &mut self.limiter {
            if !l.allow(now, path.remote().ip()) {
                self.stats.rate_limited += 1;
                return;
            }
        }
        let req = match codec::parse(data) {
            Ok(Message::Request(r)) => r,
            Ok(Message::Response(_)) => {
                self.stats.stray_responses += 1;
                return;
            }
            Err(e) => {
                self.stats.malformed += 1;
                let tag = self.tag();
                match e.reply(&tag) {
                    // An error reply only echoes the request's headers; still, never send
                    // more than we got.
                    Some(bytes) if bytes.len() <= data.len() || !self.cfg.anti_amplification => {
                        self.transmits.push_back(Transmit {
                            path,
                            payload: bytes,
                        })
                    }
                    Some(_) => self.stats.amplification_drops += 1,
                    None => self.stats.malformed_dropped += 1,
                }
                return;
            }
        };
        if req.method == Method::Ack {
            self.stats.ignored += 1;
            return;
        }
        // RFC 3261 §17.2.3: the branch (with the method) identifies the transaction.
        let key = TxKey {
            branch: req.head.via.branch.clone(),
            method: req.method.clone(),
            remote: path.remote(),
        };
        if let Some(tx) = self.transactions.get_mut(&key) {
            self.stats.retransmissions += 1;
            if let Some(bytes) = tx.handle_request(now) {
                let payload = bytes.to_vec();
                self.transmits.push_back(Transmit { path, payload });
            }
            return;
        }
        let reply = self.on_request(now, path, &req, data.len());
        let bytes = reply.resp.encode();
        let mut tx = ServerTransaction::new();
        let send =
            if self.cfg.anti_amplification && reply.unauthenticated && bytes.len() > data.len() {
                self.stats.amplification_drops += 1;
                None
            } else {
                tx.handle_response(now, reply.resp.status, bytes)
                    .map(<[u8]>::to_vec)
            };
        if let Some(payload) = send {
            self.transmits.push_back(Transmit { path, payload });
            if let Some(t) = tx.poll_timeout() {
                self.tx_timers.push(Reverse((t, key.clone())));
            }
            self.transactions.insert(key, tx);
        }
    }

    /// Fires due timers: transaction Timer J and association expiry. Call when
    /// [`Registrar::poll_timeout`] is reached (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, _))) = self.tx_timers.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, key))) = self.tx_timers.pop() else {
                break;
            };
            if let Some(tx) = self.transactions.get_mut(&key) {
                if tx.handle_timeout(now) {
                    self.transactions.remove(&key);
                } else if let Some(t) = tx.poll_timeout() {
                    self.tx_timers.push(Reverse((t, key)));
                }
            }
        }
        while let Some(Reverse((t, _))) = self.expiries.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((t, user))) = self.expiries.pop() else {
                break;
            };
            if self.bindings.get(&user).is_some_and(|b| b.expires_at == t) {
                self.release(&user, ReleaseReason::Expired);
            }
        }
    }

    /// The next instant [`Registrar::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.tx_timers.peek().map(|Reverse((t, _))| *t);
        let b = self.expiries.peek().map(|Reverse((t, _))| *t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram to send. Drain after every `handle_*` call.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the daemon. Drain after every `handle_*` call.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn tag(&mut self) -> String {
        format!("{:08x}", self.rng.next_u32())
    }

    fn respond(
        &mut self,
        req: &Request,
        path: Path,
        status: u16,
        reason: Option<&str>,
    ) -> Response {
        let tag = self.tag();
        let reason = reason.unwrap_or_else(|| reason_phrase(status));
        Response::to_request(req, status, reason, &tag, Some(path.remote()))
    }

    fn on_request(&mut self, now: Instant, path: Path, req: &Request, req_len: usize) -> Reply {
        let authed = |resp| Reply {
            resp,
            unauthenticated: false,
        };
        match req.method {
            Method::Register => self.on_register(now, path, req, req_len),
            Method::Message => authed(self.on_message(now, path, req)),
            Method::Options => {
                let mut r = self.respond(req, path, 200, None);
                r.push_header("Allow", "REGISTER, MESSAGE, OPTIONS");
                Reply {
                    resp: r,
                    unauthenticated: true,
                }
            }
            _ => {
                let mut r = self.respond(req, path, 405, None);
                r.push_header("Allow", "REGISTER, MESSAGE, OPTIONS");
                Reply {
                    resp: r,
                    unauthenticated: true,
                }
            }
        }
    }

    fn challenge(
        &mut self,
        now: Instant,
        req: &Request,
        path: Path,
        stale: bool,
        req_len: usize,
    ) -> Reply {
        self.stats.challenges += 1;
        let nonce = self.nonces.issue(now, &mut *self.rng);
        let realm = self.creds.realm().to_owned();
        let mut r = self.respond(req, path, 401, None);
        r.head.headers.clear(); // no Server header: keep the challenge small
        let base_len = r.encode().len();
        let algs = self.cfg.algorithms.clone();
        for (i, alg) in algs.iter().enumerate() {
            let v = Challenge::encode(&realm, &nonce, *alg, stale);
            // Offer the next algorithm only while the reply stays no larger than the
            // request (DESIGN.md §6: no reply larger than an unauthenticated request).
            let added = "WWW-Authenticate: \r\n".len() + v.len();
            if i > 0 && self.cfg.anti_amplification && base_len + added > req_len {
                break;
            }
            r.push_header("WWW-Authenticate", v);
        }
        Reply {
            resp: r,
            unauthenticated: true,
        }
    }

    fn forbid(&mut self, req: &Request, path: Path, why: &str) -> Reply {
        self.stats.auth_failures += 1;
        Reply {
            resp: self.respond(req, path, 403, Some(why)),
            unauthenticated: true,
        }
    }

    /// RFC 3261 §10.3 (processing REGISTER requests), with Digest per §22.4 / RFC 7616.
    fn on_register(&mut self, now: Instant, path: Path, req: &Request, req_len: usize) -> Reply {
        let Some(user) = req.head.to.user().map(str::to_owned) else {
            let r = self.respond(req, path, 400, Some("To Has No User"));
            return Reply {
                resp: r,
                unauthenticated: true,
            };
        };
        // Authentication.
        let Some(auth_value) = req.head.header("Authorization") else {
            return self.challenge(now, req, path, false, req_len);
        };
        let Some(auth) = Authorization::parse(auth_value) else {
            return self.forbid(req, path, "Malformed Authorization");
        };
        if auth.realm != self.creds.realm() || !self.cfg.algorithms.contains(&auth.algorithm) {
            return self.challenge(now, req, path, false, req_len);
        }
        let nonce_status = self.nonces.check(now, &auth.nonce);
        if nonce_status == NonceStatus::Invalid {
            return self.challenge(now, req, path, false, req_len);
        }
        if auth.username != user {
            return self.forbid(req, path, "Identity Mismatch");
        }
        // RFC 7616 §3.4.6 wants the `uri` directive to name the Request-URI. SIP clients
        // differ (SIPp 3.6 sends `sip:<registrar ip>:<port>`), and replay is already
        // prevented by our nonce and the increasing nonce-count, so only a SIP URI is
        // required here; the digest covers whatever `uri` says.
        let uri_ok = auth
            .uri
            .split_once(':')
            .is_some_and(|(s, _)| s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips"));
        if !uri_ok {
            return self.forbid(req, path, "Digest URI Mismatch");
        }
        let Some((nc, cnonce)) = auth.qop.clone() else {
            return self.forbid(req, path, "qop=auth Required");
        };
        let Some(ha1) = self
            .creds
            .get(&user)
            .and_then(|s| s.ha1(auth.algorithm))
            .map(str::to_owned)
        else {
            return self.forbid(req, path, "Forbidden");
        };
        let expected = request_digest(
            auth.algorithm,
            &ha1,
            &auth.nonce,
            Some((&auth.nc_raw, &cnonce)),
            req.method.as_str(),
            &auth.uri,
        );
        if !digest_eq(&expected, &auth.response.to_ascii_lowercase()) {
            return self.forbid(req, path, "Forbidden");
        }
        if nonce_status == NonceStatus::Stale {
            return self.challenge(now, req, path, true, req_len);
        }
        if !self.nonces.check_count(now, &auth.nonce, nc) {
            // A replayed nonce-count: make the client start over with a fresh nonce.
            return self.challenge(now, req, path, false, req_len);
        }

        // Authenticated: binding update (RFC 3261 §10.3 steps 6-8).
        let contact = req.head.header("Contact").map(str::to_owned);
        let expires = requested_expires(req);
        if expires == Some(0) || contact.as_deref() == Some("*") {
            if self.bindings.contains_key(&user) {
                self.release(&user, ReleaseReason::Deregistered);
            }
            let mut r = self.respond(req, path, 200, None);
            r.push_header("Expires", "0");
            return Reply {
                resp: r,
                unauthenticated: false,
            };
        }
        let granted = expires
            .unwrap_or(self.cfg.default_expires)
            .clamp(self.cfg.min_expires, self.cfg.max_expires);
        let expires_at = now + Duration::from_secs(u64::from(granted));
        let key = || Key {
            session: SessionKey::derive(&ha1, &auth.nonce, &cnonce),
            window: ReplayWindow::default(),
            nonce: auth.nonce.clone(),
            cnonce: cnonce.clone(),
        };
        let contact = contact.unwrap_or_else(|| req.head.from.to_string());
        let vipa = if let Some(b) = self.bindings.get_mut(&user) {
            b.expires_at = expires_at;
            b.contact = contact;
            let same = b.keys[0]
                .as_ref()
                .is_some_and(|k| k.nonce == auth.nonce && k.cnonce == cnonce);
            if !same {
                b.keys.swap(0, 1);
                b.keys[0] = Some(key());
            }
            let vipa = b.vipa;
            self.events.push_back(Event::Refreshed {
                user: user.clone(),
                vipa,
                expires: Duration::from_secs(u64::from(granted)),
            });
            vipa
        } else {
            let held: Option<Ipv4Addr> = req
                .head
                .header(VIPADDR_HEADER)
                .and_then(|v| v.trim().parse().ok());
            let preferred = held.or_else(|| self.last_vipa.get(&user).copied());
            let Some(vipa) = self.pool.allocate(&user, preferred) else {
                self.stats.pool_exhausted += 1;
                let mut r = self.respond(req, path, 503, Some("VIPA Pool Exhausted"));
                r.push_header("Retry-After", POOL_RETRY_AFTER.to_string());
                return Reply {
                    resp: r,
                    unauthenticated: false,
                };
            };
            self.bindings.insert(
                user.clone(),
                Binding {
                    vipa,
                    expires_at,
                    contact,
                    keys: [Some(key()), None],
                    tunnels: Vec::new(),
                },
            );
            self.events.push_back(Event::Associated {
                user: user.clone(),
                vipa,
                expires: Duration::from_secs(u64::from(granted)),
            });
            vipa
        };
        self.expiries.push(Reverse((expires_at, user.clone())));
        self.stats.registrations += 1;
        let mut r = self.respond(req, path, 200, None);
        if let Some(b) = self.bindings.get(&user) {
            r.push_header(
                "Contact",
                format!(
                    "{};expires={granted}",
                    b.contact.split(";expires=").next().unwrap_or(&b.contact)
                ),
            );
        }
        r.push_header("Expires", granted.to_string());
        r.push_header(VIPADDR_HEADER, vipa.to_string());
        Reply {
            resp: r,
            unauthenticated: false,
        }
    }

    fn release(&mut self, user: &str, reason: ReleaseReason) {
        let Some(b) = self.bindings.remove(user) else {
            return;
        };
        self.pool.release(b.vipa);
        self.last_vipa.insert(user.to_owned(), b.vipa);
        let mut tunnels = Vec::with_capacity(b.tunnels.len());
        for (id, remote) in b.tunnels {
            self.tunnels.remove(&remote);
            tunnels.push(id);
        }
        self.events.push_back(Event::Released {
            user: user.to_owned(),
            vipa: b.vipa,
            tunnels,
            reason,
        });
    }

    fn error_body(&mut self, req: &Request, path: Path, status: u16, why: &str) -> Response {
        let mut r = self.respond(req, path, status, Some(why));
        r.set_json_body(body::encode(ResponseBody::Error {
            error: why.to_owned(),
        }));
        r
    }

    /// Tunnel setup and handover (docs/PROTOCOL.md): authenticated with the session key,
    /// replay-protected with the sequence-number window.
    fn on_message(&mut self, now: Instant, path: Path, req: &Request) -> Response {
        let _ = now;
        let Some(user) = req.head.from.user().map(str::to_owned) else {
            return self.respond(req, path, 400, Some("From Has No User"));
        };
        if !self.bindings.contains_key(&user) {
            self.stats.auth_failures += 1;
            return self.respond(req, path, 403, Some("Not Associated"));
        }
        let ct_ok = req
            .head
            .content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case(CONTENT_TYPE_JSON));
        if !ct_ok {
            let mut r = self.respond(req, path, 415, None);
            r.push_header("Accept", CONTENT_TYPE_JSON);
            return r;
        }
        let Some(mauth) = req
            .head
            .header(MessageAuth::HEADER)
            .and_then(MessageAuth::parse)
        else {
            self.stats.bad_mac += 1;
            return self.respond(req, path, 403, Some("Missing UPMT-Auth"));
        };
        let Some(binding) = self.bindings.get_mut(&user) else {
            return self.respond(req, path, 403, Some("Not Associated"));
        };
        let Some(key) = binding
            .keys
            .iter_mut()
            .flatten()
            .find(|k| k.session.kid == mauth.kid)
        else {
            self.stats.bad_mac += 1;
            return self.respond(req, path, 403, Some("Unknown Key"));
        };
        if !key.window.check(mauth.seq) {
            self.stats.replays += 1;
            return self.respond(req, path, 403, Some("Replayed"));
        }
        if !key
            .session
            .verify(&user, req.method.as_str(), mauth.seq, &req.body, &mauth.mac)
        {
            self.stats.bad_mac += 1;
            return self.respond(req, path, 403, Some("Bad MAC"));
        }
        key.window.record(mauth.seq);
        let vipa = binding.vipa;

        let parsed: RequestBody = match body::decode(&req.body) {
            Ok(b) => b,
            Err(e) => return self.error_body(req, path, 400, &e.to_string()),
        };
        match parsed {
            RequestBody::TunnelSetup { .. } => self.tunnel_setup(req, path, &user, vipa),
            RequestBody::Handover { flows } => {
                if flows.len() > MAX_FLOWS_PER_HANDOVER {
                    return self.error_body(req, path, 400, "Too Many Flows");
                }
                let arrived_on = match path {
                    Path::Tunnel { remote, .. } => self
                        .tunnels
                        .get(&remote)
                        .filter(|(u, _)| *u == user)
                        .map(|(_, id)| *id),
                    Path::Udp(_) => None,
                };
                let owned: Vec<u32> = self
                    .bindings
                    .get(&user)
                    .map(|b| b.tunnels.iter().map(|(id, _)| *id).collect())
                    .unwrap_or_default();
                let mut results = Vec::with_capacity(flows.len());
                let mut moves = Vec::new();
                for f in flows {
                    let target = match f.tunnel {
                        TunnelTarget::Any => arrived_on,
                        TunnelTarget::Id(id) => owned.contains(&id).then_some(id),
                    };
                    let result = if f.flow.src.is_some_and(|s| s != vipa) {
                        FlowResult {
                            tunnel: None,
                            error: Some("source is not your VIPA".into()),
                        }
                    } else if let Some(t) = target {
                        moves.push((f.flow, t));
                        FlowResult {
                            tunnel: Some(t),
                            error: None,
                        }
                    } else {
                        FlowResult {
                            tunnel: None,
                            error: Some("no such tunnel of yours".into()),
                        }
                    };
                    results.push(result);
                }
                if !moves.is_empty() {
                    self.events.push_back(Event::Handover {
                        user: user.clone(),
                        vipa,
                        moves,
                    });
                }
                let mut r = self.respond(req, path, 200, None);
                r.set_json_body(body::encode(ResponseBody::HandoverAck { results }));
                r
            }
        }
    }

    fn tunnel_setup(&mut self, req: &Request, path: Path, user: &str, vipa: Ipv4Addr) -> Response {
        let Path::Tunnel { link, remote } = path else {
            return self.error_body(req, path, 403, "Tunnel Setup Must Arrive Inside The Tunnel");
        };
        let existing = self.tunnels.get(&remote).cloned();
        let id = match existing {
            Some((owner, id)) if owner == user => id,
            other => {
                let count = self.bindings.get(user).map_or(0, |b| b.tunnels.len());
                if count >= self.cfg.max_tunnels_per_host {
                    return self.error_body(req, path, 403, "Too Many Tunnels");
                }
                if let Some((prev, old_id)) = other {
                    if let Some(b) = self.bindings.get_mut(&prev) {
                        b.tunnels.retain(|(i, _)| *i != old_id);
                    }
                    self.events.push_back(Event::TunnelDown {
                        user: prev,
                        tunnel_id: old_id,
                    });
                }
                let id = self.next_tunnel_id;
                self.next_tunnel_id = self.next_tunnel_id.wrapping_add(1).max(1);
                self.tunnels.insert(remote, (user.to_owned(), id));
                if let Some(b) = self.bindings.get_mut(user) {
                    b.tunnels.push((id, remote));
                }
                id
            }
        };
        self.events.push_back(Event::TunnelUp {
            user: user.to_owned(),
            vipa,
            tunnel_id: id,
            remote,
            link,
        });
        let mut r = self.respond(req, path, 200, None);
        r.set_json_body(body::encode(ResponseBody::TunnelReady {
            tunnel_id: id,
            mapped: remote,
            vipa,
        }));
        r
    }

    /// Heap + inline bytes held by the association of `user` (for the memory figure).
    pub fn association_size(&self, user: &str) -> Option<usize> {
        let b = self.bindings.get(user)?;
        let keys: usize = b
            .keys
            .iter()
            .flatten()
            .map(|k| k.nonce.capacity() + k.cnonce.capacity() + k.session.kid.capacity())
            .sum();
        Some(
            std::mem::size_of::<Binding>()
                + std::mem::size_of::<String>()
                + user.len() * 2 // key in `bindings` and in the expiry heap
                + b.contact.capacity()
                + keys
                + b.tunnels.capacity() * std::mem::size_of::<(u32, SocketAddr)>()
                + std::mem::size_of::<Reverse<(Instant, String)>>()
                + 4 + user.len() + 24, // pool owner entry
        )
    }
}

/// Expires requested: the Contact's `expires` parameter, else the Expires header
/// (RFC 3261 §10.3 step 6).
fn requested_expires(req: &Request) -> Option<u32> {
    let from_contact = req
        .head
        .header("Contact")
        .and_then(codec::NameAddr::parse)
        .and_then(|c| c.param("expires"))
        .and_then(|v| v.parse::<u64>().ok());
    let from_header = req
        .head
        .header("Expires")
        .and_then(|v| v.trim().parse::<u64>().ok());
    from_contact
        .or(from_header)
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}
