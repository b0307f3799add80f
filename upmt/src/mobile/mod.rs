//! `upmt mobile`: the Mobile Host (the paper's MMC). Association, one tunnel per usable
//! access interface, keepalives that hold the local NATs open and measure each path, and the
//! handover executor.
//!
//! One control thread waits on the interface monitor, the data plane's events, SIP
//! datagrams and control-socket requests, with a timeout at the earliest timer (the
//! signalling client's and every tunnel's probe), so an idle host sleeps between keepalives.
//!
//! Tunnel life: an interface becomes usable (up, carrier, IPv4 address) -> the data plane
//! opens a socket bound to it (`AddTunnel`) -> once associated, a tunnel-setup MESSAGE goes
//! inside that tunnel -> `TunnelReady` carries the anchor's tunnel id and our mapped address
//! -> the tunnel is `up` and may carry flows. An interface that stops being usable, or a
//! tunnel whose keepalives stop coming back, has its flows moved to the best remaining
//! tunnel at once (break-before-make), and the anchor is told inside the new tunnel.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crossbeam_channel::{select, Sender};
use dataplane::{Command, ControlKind, Engine, EngineConfig, Event as DpEvent, FlowKey, Mode};
use mobility::ifaces::{IfaceChange, Interfaces};
use mobility::policy::{Decision, Engine as PolicyEngine, FlowMatchInput, Policy};
use mobility::{PathState, Probe, ProbeConfig, ProbeEvent};
use rand::SeedableRng as _;
use signaling_proto::body::{FlowMatch, FlowMove, TunnelTarget};
use signaling_proto::client::{Client, ClientConfig, Event as ClientEvent};
use signaling_proto::path::{Path as SigPath, Transmit};

use crate::config::MobileConfig;
use crate::control::{self, FlowSelector, Incoming, Request, Response};
use crate::netcfg;
use crate::status::{MobileFlow, MobileStatus, MobileTunnel};

mod apps;
mod spec;

use apps::{load_policy, FlowInfo, PolicyState, SocksFlow, SocksHook};
use spec::{exact_match, parse_spec, spec_matches};

/// Most flows listed one by one in a handover request; beyond it one wildcard entry moves
/// every flow of the host.
const MAX_LISTED_FLOWS: usize = 64;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum TunnelPhase {
    /// The data plane is opening the socket.
    Opening,
    /// Tunnel setup sent to the anchor.
    Setup,
    /// The anchor answered: usable while the probe says so.
    Ready,
}

#[derive(Debug)]
struct Tunnel {
    /// Data-plane tunnel id and signalling link (the same number).
    link: u32,
    iface: String,
    cost: u32,
    phase: TunnelPhase,
    local: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    anchor_id: Option<u32>,
    probe: Probe,
}

impl Tunnel {
    fn usable(&self) -> bool {
        self.phase == TunnelPhase::Ready && self.probe.state().usable()
    }
}

/// A SIP socket bound to one access interface.
struct SipSocket {
    iface: String,
    sock: UdpSocket,
}

struct Mobile {
    cfg: MobileConfig,
    tun: String,
    anchor_tunnel: SocketAddr,
    epoch: Instant,
    client: Client,
    engine: Engine,
    tunnels: BTreeMap<u32, Tunnel>,
    next_link: u32,
    sip: Vec<SipSocket>,
    sip_tx: Sender<(SocketAddr, Vec<u8>)>,
    vipa: Option<Ipv4Addr>,
    /// The tunnel new flows follow.
    default: Option<u32>,
    /// Flows pinned by a manual handover to an interface (kept there while it is usable).
    pinned_all: Option<String>,
    ifaces: Interfaces,
    probe_cfg: ProbeConfig,
    /// Per tunnel: packets sent as last seen, keepalives sent then, last time data left.
    activity: HashMap<u32, (u64, u64, Option<Instant>)>,
    last_activity_check: Instant,
    last_reassociation: Option<Instant>,
    /// Per-application placement, when a policy file is configured.
    policy: Option<PolicyState>,
    /// The application and policy class of every flow placed by the policy.
    flows: HashMap<FlowKey, FlowInfo>,
    last_flow_sweep: Instant,
    socks: Option<socks::Proxy>,
    socks_rx: crossbeam_channel::Receiver<SocksFlow>,
    /// How long the last new flows waited for classification and placement, µs.
    placement_us: std::collections::VecDeque<u64>,
    placements: u64,
    /// Interfaces the policy's start-up settle no longer waits for: their tunnel answered
    /// once, or they went away.
    settled: std::collections::HashSet<String>,
}

/// A tunnel that carried data this recently is probed at the fast pace, so that a silent
/// failure under a running flow is found in a few hundred milliseconds.
const ACTIVE_FOR: Duration = Duration::from_secs(1);
/// How often the data plane's counters are read for that.
const ACTIVITY_CHECK: Duration = Duration::from_millis(100);
/// How long the policy waits at start for every interface's tunnel to answer.
const STARTUP_SETTLE: Duration = Duration::from_secs(3);
/// Least time between two re-associations when every tunnel went silent.
const REASSOCIATE_EVERY: Duration = Duration::from_secs(3);
/// Most queued events handled in one turn of the loop before timers are driven.
const MAX_DRAIN: usize = 1024;

/// Runs the mobile host until SIGINT/SIGTERM, then de-registers and leaves the host as it
/// found it (the TUN, and the routes on it, go with the process).
pub fn run(cfg: MobileConfig, stop: Arc<AtomicBool>) -> Result<()> {
    let now = Instant::now();
    let password = cfg.password()?;
    let tun = cfg
        .dataplane
        .tun
        .clone()
        .unwrap_or_else(|| "upmt0".to_owned());
    let anchor_sip = SocketAddr::V4(cfg.anchor.sip);
    let anchor_tunnel = SocketAddr::V4(cfg.anchor.tunnel);
    let domain = cfg
        .identity
        .domain
        .clone()
        .unwrap_or_else(|| cfg.anchor.sip.ip().to_string());
    let mut ccfg = ClientConfig::new(&cfg.identity.user, &password, &domain, anchor_sip);
    ccfg.expires = cfg.anchor.expires_s;
    let client = Client::new(ccfg, Box::new(rand::rngs::StdRng::from_entropy()));

    // The control socket first: a second daemon fails here, before touching the TUN.
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Incoming>();
    let ctl_path = cfg
        .control
        .socket
        .clone()
        .unwrap_or_else(|| control::default_socket(control::Role::Mobile));
    let _ctl = control::Server::start(&ctl_path, ctl_tx)
        .with_context(|| format!("control socket {}", ctl_path.display()))?;

    let mut ecfg = EngineConfig::new(Mode::Mobile, &tun);
    ecfg.shards = cfg.dataplane.shards;
    ecfg.pin_cores = cfg.dataplane.pin;
    ecfg.cpus = cfg.dataplane.cpus.clone();
    ecfg.offload = cfg.dataplane.offload;
    ecfg.backend = if cfg.dataplane.io_uring {
        dataplane::Backend::Auto
    } else {
        dataplane::Backend::Poll
    };
    let policy = match &cfg.policy {
        None => None,
        Some(path) => {
            let known: Vec<&str> = cfg.interfaces.iter().map(|i| i.name.as_str()).collect();
            let p = load_policy(path, &known)?;
            let costs: Vec<(&str, u32)> = cfg
                .interfaces
                .iter()
                .map(|i| (i.name.as_str(), i.cost))
                .collect();
            let classifier = match appclass::Classifier::new(appclass::Config::default()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(
                        "no application classifier ({e}): flows follow the default policy"
                    );
                    None
                }
            };
            // The first packets of a new flow wait (briefly) for its placement.
            ecfg.new_flow_wait = Some(Duration::from_millis(50));
            Some(PolicyState {
                engine: PolicyEngine::new(p, &costs),
                classifier,
                path: path.clone(),
            })
        }
    };
    let engine = Engine::start(ecfg).context("starting the data plane")?;

    let (socks_tx, socks_rx) = crossbeam_channel::unbounded::<SocksFlow>();
    let socks = match &cfg.socks {
        None => None,
        Some(sc) => {
            let pc = socks::ProxyConfig {
                listen: sc.listen,
                ..socks::ProxyConfig::default()
            };
            Some(
                socks::Proxy::start(
                    pc,
                    Arc::new(SocksHook {
                        tx: socks_tx,
                        classifier: std::sync::Mutex::new(
                            appclass::Classifier::new(appclass::Config::default()).ok(),
                        ),
                    }),
                )
                .with_context(|| format!("SOCKS5 proxy on {}", sc.listen))?,
            )
        }
    };

    let (net_tx, net_rx) = crossbeam_channel::unbounded();
    let _netmon = crate::netmon::spawn(net_tx).context("interface monitor")?;
    let (sip_tx, sip_rx) = crossbeam_channel::bounded(256);

    let watched = cfg.interfaces.iter().map(|i| i.name.clone()).collect();
    let probe_cfg = ProbeConfig {
        idle_interval: Duration::from_millis(cfg.keepalive.idle_interval_ms),
        fast_interval: Duration::from_millis(cfg.keepalive.fast_interval_ms),
        lost_before_down: cfg.keepalive.lost_before_down,
        ..ProbeConfig::default()
    };
    let mut m = Mobile {
        ifaces: Interfaces::new(watched, vec![tun.clone()]),
        activity: HashMap::new(),
        last_activity_check: now,
        last_reassociation: None,
        policy,
        flows: HashMap::new(),
        last_flow_sweep: now,
        socks,
        socks_rx: socks_rx.clone(),
        placement_us: std::collections::VecDeque::new(),
        placements: 0,
        settled: std::collections::HashSet::new(),
        cfg,
        tun,
        anchor_tunnel,
        epoch: now,
        client,
        engine,
        tunnels: BTreeMap::new(),
        next_link: 1,
        sip: Vec::new(),
        sip_tx,
        vipa: None,
        default: None,
        pinned_all: None,
        probe_cfg,
    };
    tracing::info!(anchor = %anchor_sip, tun = %m.tun, "mobile host starting");
    let events = m.engine.handle().events.clone();
    let mut associating = false;

    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = m
            .next_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(now + Duration::from_millis(250))
            .saturating_duration_since(now);
        select! {
            recv(net_rx) -> e => if let Ok(e) = e {
                for change in m.ifaces.handle(&e) {
                    m.on_iface(Instant::now(), change);
                }
            },
            recv(events) -> e => if let Ok(e) = e { m.on_dataplane(e) },
            recv(sip_rx) -> d => if let Ok((from, bytes)) = d {
                m.client.handle_datagram(Instant::now(), SigPath::Udp(from), &bytes);
            },
            recv(socks_rx) -> f => if let Ok((proto, local, remote, app)) = f {
                m.on_socks_flow(Instant::now(), proto, local, remote, app);
            },
            recv(ctl_rx) -> r => if let Ok(inc) = r {
                let resp = m.answer(Instant::now(), &inc.request);
                let _ = inc.reply.send(resp);
            },
            default(wait) => {}
        }
        // Everything already queued is handled before timers fire: after a CPU stall a
        // keepalive reply may wait in the channel, and `drive` would otherwise declare it
        // lost (and move real-time flows off a healthy path).
        for _ in 0..MAX_DRAIN {
            match events.try_recv() {
                Ok(e) => m.on_dataplane(e),
                Err(_) => break,
            }
        }
        for _ in 0..MAX_DRAIN {
            match sip_rx.try_recv() {
                Ok((from, bytes)) => {
                    m.client
                        .handle_datagram(Instant::now(), SigPath::Udp(from), &bytes)
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        // Associate as soon as a SIP socket exists.
        if !associating && !m.sip.is_empty() {
            m.client.associate(now);
            associating = true;
        }
        m.drive(now);
    }

    tracing::info!("mobile host stopping: de-registering");
    let deadline = Instant::now() + Duration::from_secs(2);
    m.client.deregister(Instant::now());
    m.flush(Instant::now());
    while Instant::now() < deadline {
        match sip_rx.recv_timeout(Duration::from_millis(100)) {
            Ok((from, bytes)) => {
                m.client
                    .handle_datagram(Instant::now(), SigPath::Udp(from), &bytes);
            }
            Err(_) => m.client.handle_timeout(Instant::now()),
        }
        m.flush(Instant::now());
        let mut done = false;
        while let Some(e) = m.client.poll_event() {
            done |= matches!(e, ClientEvent::Deregistered);
        }
        if done {
            break;
        }
    }
    let engine = m.engine;
    let _ = engine.shutdown();
    Ok(())
}

impl Mobile {
    fn next_timeout(&self) -> Option<Instant> {
        let probes = self.tunnels.values().filter_map(|t| {
            (t.phase == TunnelPhase::Ready)
                .then(|| t.probe.poll_timeout())
                .flatten()
        });
        let policy = self.policy.as_ref().and_then(|p| p.engine.poll_timeout());
        probes.chain(self.client.poll_timeout()).chain(policy).min()
    }

    /// Marks tunnels that carry data as real-time (fast probing) and the others as idle.
    fn check_activity(&mut self, now: Instant) {
        if now.duration_since(self.last_activity_check) < ACTIVITY_CHECK {
            return;
        }
        self.last_activity_check = now;
        let stats = self.engine.handle().stats();
        let realtime = self
            .policy
            .as_ref()
            .map(|p| p.engine.realtime_paths())
            .unwrap_or_default();
        for t in self.tunnels.values_mut() {
            let Some(s) = stats.tunnels.iter().find(|s| s.id == t.link) else {
                continue;
            };
            let keepalives = t.probe.quality().sent;
            let entry = self
                .activity
                .entry(t.link)
                .or_insert((s.tx.0, keepalives, None));
            // Our own keepalives and the odd signalling message are not data.
            let data = s.tx.0.saturating_sub(entry.0) > keepalives.saturating_sub(entry.1) + 2;
            if data {
                entry.2 = Some(now);
            }
            entry.0 = s.tx.0;
            entry.1 = keepalives;
            let active = entry
                .2
                .is_some_and(|at| now.duration_since(at) < ACTIVE_FOR);
            t.probe
                .set_realtime(now, active || realtime.contains(&t.iface));
        }
        self.activity.retain(|l, _| self.tunnels.contains_key(l));
    }

    /// When every tunnel went silent at once, the anchor may have lost our association (a
    /// restart): associate again, which sets every tunnel up again.
    fn check_anchor(&mut self, now: Instant) {
        let ready: Vec<&Tunnel> = self
            .tunnels
            .values()
            .filter(|t| t.phase == TunnelPhase::Ready)
            .collect();
        let all_down =
            !ready.is_empty() && ready.iter().all(|t| t.probe.state() == PathState::Down);
        let due = self
            .last_reassociation
            .is_none_or(|at| now.duration_since(at) >= REASSOCIATE_EVERY);
        if all_down && due {
            tracing::warn!("every tunnel is silent: re-associating with the anchor");
            self.last_reassociation = Some(now);
            self.client.associate(now);
        }
    }

    /// Timers, then everything the state machines want sent or said.
    fn drive(&mut self, now: Instant) {
        self.check_activity(now);
        self.check_anchor(now);
        self.client.handle_timeout(now);
        for t in self.tunnels.values_mut() {
            if t.phase == TunnelPhase::Ready {
                t.probe.handle_timeout(now);
            }
        }
        self.flush(now);
        while let Some(e) = self.client.poll_event() {
            self.on_client(now, e);
        }
        let mut changed = Vec::new();
        for t in self.tunnels.values_mut() {
            while let Some(ProbeEvent::State { from, to }) = t.probe.poll_event() {
                if to == PathState::Doubt || (from == PathState::Doubt && to == PathState::Up) {
                    tracing::debug!(iface = %t.iface, ?from, ?to, "path state");
                } else {
                    tracing::info!(iface = %t.iface, ?from, ?to, "path state");
                }
                changed.push(t.link);
            }
        }
        if !changed.is_empty() {
            self.reroute(now);
        }
        self.apply_policy(now);
        self.sweep_flows(now);
        self.flush(now);
    }

    /// Sends what the client and the probes have queued.
    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.client.poll_transmit(now) {
            self.send_signalling(t);
        }
        let epoch = self.epoch;
        let mut frames = Vec::new();
        for t in self.tunnels.values_mut() {
            if t.phase != TunnelPhase::Ready {
                continue;
            }
            while let Some(k) = t.probe.poll_transmit(now) {
                let ka = wire::tunnel::Keepalive {
                    tunnel_id: t.anchor_id.unwrap_or(0),
                    seq: k.seq,
                    timestamp_us: k.sent.saturating_duration_since(epoch).as_micros() as u64,
                };
                if let Some(f) =
                    dataplane::control_frame(ControlKind::KeepaliveRequest, &ka.to_bytes())
                {
                    frames.push((t.link, f));
                }
            }
        }
        for (tunnel, frame) in frames {
            let _ = self
                .engine
                .handle()
                .send(Command::SendControl { tunnel, frame });
        }
    }

    fn send_signalling(&mut self, t: Transmit) {
        match t.path {
            SigPath::Udp(to) => {
                // The preferred interface's SIP socket (lowest cost first).
                let best = self.sip.iter().min_by_key(|s| self.cost_of(&s.iface));
                if let Some(s) = best {
                    if let Err(e) = s.sock.send_to(&t.payload, to) {
                        tracing::debug!(iface = %s.iface, "SIP send: {e}");
                    }
                }
            }
            SigPath::Tunnel { link, .. } => {
                let Some(frame) = signaling_proto::framing::encode_signalling(&t.payload) else {
                    return;
                };
                let _ = self.engine.handle().send(Command::SendControl {
                    tunnel: link,
                    frame,
                });
            }
        }
    }

    fn cost_of(&self, iface: &str) -> (u32, usize) {
        self.cfg
            .interfaces
            .iter()
            .position(|i| i.name == iface)
            .map_or((u32::MAX, usize::MAX), |p| {
                (self.cfg.interfaces.get(p).map_or(0, |i| i.cost), p)
            })
    }

    fn on_iface(&mut self, now: Instant, change: IfaceChange) {
        match change {
            IfaceChange::Usable { name, addr } => {
                tracing::info!(iface = %name, %addr, "interface usable");
                self.open_sip(&name);
                let link = self.next_link;
                self.next_link = self.next_link.wrapping_add(1).max(1);
                let (cost, _) = self.cost_of(&name);
                self.tunnels.insert(
                    link,
                    Tunnel {
                        link,
                        iface: name.clone(),
                        cost,
                        phase: TunnelPhase::Opening,
                        local: None,
                        mapped: None,
                        anchor_id: None,
                        probe: Probe::new(self.probe_cfg, now),
                    },
                );
                let _ = self.engine.handle().send(Command::AddTunnel {
                    id: link,
                    local: SocketAddr::V4(SocketAddrV4::new(addr, 0)),
                    device: Some(name),
                    remote: self.anchor_tunnel,
                });
            }
            IfaceChange::Unusable { name } => {
                tracing::info!(iface = %name, "interface unusable");
                self.sip.retain(|s| s.iface != name);
                let gone: Vec<u32> = self
                    .tunnels
                    .values()
                    .filter(|t| t.iface == name)
                    .map(|t| t.link)
                    .collect();
                for link in &gone {
                    self.tunnels.remove(link);
                }
                // Move flows first (the socket is useless now), then close it. The policy
                // learns the path is gone before the tunnel is: its flows go where it
                // decides (a `never` flow waits) instead of falling to the default path
                // when the data plane unroutes the removed tunnel.
                self.reroute(now);
                self.settled.insert(name.clone());
                self.apply_policy(now);
                for id in gone {
                    let _ = self.engine.handle().send(Command::RemoveTunnel { id });
                }
            }
        }
    }

    fn open_sip(&mut self, iface: &str) {
        if self.sip.iter().any(|s| s.iface == iface) {
            return;
        }
        match bound_udp(iface) {
            Ok(sock) => {
                let (reader, tx) = match sock.try_clone() {
                    Ok(r) => (r, self.sip_tx.clone()),
                    Err(e) => {
                        tracing::warn!(%iface, "SIP socket: {e}");
                        return;
                    }
                };
                let _ = std::thread::Builder::new()
                    .name("upmt-sip-rx".into())
                    .spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        // Ends when the socket errors out (interface gone) or the daemon exits.
                        while let Ok((n, from)) = reader.recv_from(&mut buf) {
                            let data = buf.get(..n).unwrap_or(&[]).to_vec();
                            if tx.send((from, data)).is_err() {
                                return;
                            }
                        }
                    });
                self.sip.push(SipSocket {
                    iface: iface.to_owned(),
                    sock,
                });
            }
            Err(e) => tracing::warn!(%iface, "SIP socket: {e:#}"),
        }
    }

    fn on_dataplane(&mut self, e: DpEvent) {
        let now = Instant::now();
        match e {
            DpEvent::TunnelAdded { id, local } => {
                if let Some(t) = self.tunnels.get_mut(&id) {
                    t.local = Some(local);
                    t.phase = TunnelPhase::Setup;
                    if self.client.is_associated() {
                        let _ = self.client.setup_tunnel(now, id, self.anchor_tunnel);
                    }
                }
            }
            DpEvent::ControlFrame {
                tunnel: Some(link),
                kind,
                body,
                received,
                ..
            } => match kind {
                ControlKind::Signalling => {
                    self.client.handle_datagram(
                        received,
                        SigPath::Tunnel {
                            link,
                            remote: self.anchor_tunnel,
                        },
                        &body,
                    );
                }
                ControlKind::KeepaliveReply => {
                    if let (Ok(k), Some(t)) = (
                        wire::tunnel::Keepalive::parse(&body),
                        self.tunnels.get_mut(&link),
                    ) {
                        let sent = self.epoch + Duration::from_micros(k.timestamp_us);
                        t.probe.handle_reply(received, k.seq, sent);
                    }
                }
                ControlKind::KeepaliveRequest => {}
            },
            DpEvent::NewFlow { key, .. } => {
                // The proxy announces its flows before their first packet: take those
                // announcements first, so a proxied flow is not classified as the daemon.
                while let Ok((proto, local, remote, app)) = self.socks_rx.try_recv() {
                    self.on_socks_flow(now, proto, local, remote, app);
                }
                if !self.flows.contains_key(&key) {
                    self.place_new_flow(now, key, None);
                }
            }
            DpEvent::CommandFailed { command, error } => {
                tracing::warn!("data plane refused {command}: {error}");
            }
            DpEvent::ShardFailed { shard, error } => {
                tracing::error!("data plane shard {shard} stopped: {error}");
            }
            _ => {}
        }
    }

    fn on_client(&mut self, now: Instant, e: ClientEvent) {
        match e {
            ClientEvent::Associated { vipa, expires } => {
                tracing::info!(%vipa, ?expires, "associated");
                if self.vipa != Some(vipa) {
                    // The smallest path MTU of the access networks, less the tunnel's 28
                    // bytes: TCP's MSS then fits every tunnel, before and after a move.
                    let path_mtu = self
                        .cfg
                        .interfaces
                        .iter()
                        .filter_map(|i| i.mtu)
                        .fold(self.cfg.dataplane.path_mtu, u16::min);
                    let mtu = path_mtu.saturating_sub(28);
                    if let Err(e) = netcfg::mobile_tun_up(&self.tun, vipa, mtu) {
                        tracing::error!("configuring {}: {e:#}", self.tun);
                    }
                    self.vipa = Some(vipa);
                    if let Some(p) = &self.socks {
                        p.set_bind_v4(Some(vipa));
                    }
                }
                // A new association (first, or after the anchor lost us): set up every
                // tunnel again.
                let links: Vec<u32> = self
                    .tunnels
                    .values()
                    .filter(|t| t.phase != TunnelPhase::Opening)
                    .map(|t| t.link)
                    .collect();
                self.setup_tunnels(now, &links);
            }
            ClientEvent::Refreshed { .. } => self.setup_silent_tunnels(now),
            ClientEvent::AssociationLost => {
                tracing::warn!("anchor not answering: re-associating");
            }
            ClientEvent::AuthFailed { status } => {
                tracing::error!(status, "the anchor refused our credentials");
            }
            ClientEvent::Rejected {
                status,
                retry_after,
            } => tracing::warn!(status, ?retry_after, "association refused"),
            ClientEvent::Deregistered => {}
            ClientEvent::TunnelReady {
                link,
                tunnel_id,
                mapped,
            } => {
                if let Some(t) = self.tunnels.get_mut(&link) {
                    tracing::info!(iface = %t.iface, tunnel_id, %mapped, "tunnel ready");
                    t.phase = TunnelPhase::Ready;
                    t.anchor_id = Some(tunnel_id);
                    t.mapped = Some(mapped);
                    t.probe.probe_now(now);
                }
                self.reroute(now);
            }
            ClientEvent::TunnelFailed { link, status } => {
                tracing::warn!(link, ?status, "tunnel setup failed; retrying");
                if self.tunnels.contains_key(&link) {
                    let _ = self.client.setup_tunnel(now, link, self.anchor_tunnel);
                }
            }
            ClientEvent::HandoverAck { id, results } => {
                tracing::debug!(id, flows = results.len(), "handover acknowledged");
            }
            ClientEvent::HandoverFailed { id, status } => {
                tracing::warn!(id, ?status, "handover request failed");
            }
        }
    }

    fn setup_tunnels(&mut self, now: Instant, links: &[u32]) {
        for link in links {
            if let Some(t) = self.tunnels.get_mut(link) {
                t.phase = TunnelPhase::Setup;
            }
            let _ = self.client.setup_tunnel(now, *link, self.anchor_tunnel);
        }
    }

    /// After a refresh: tunnels that went silent may be unknown to the anchor (it restarted
    /// and we kept our VIPA): set them up again.
    fn setup_silent_tunnels(&mut self, now: Instant) {
        let links: Vec<u32> = self
            .tunnels
            .values()
            .filter(|t| t.phase == TunnelPhase::Ready && t.probe.state() == PathState::Down)
            .map(|t| t.link)
            .collect();
        self.setup_tunnels(now, &links);
    }

    /// The tunnel flows should use: the pinned interface's when usable, else the cheapest
    /// usable one (configuration order breaks ties).
    fn best(&self) -> Option<u32> {
        if let Some(p) = &self.pinned_all {
            if let Some(t) = self.tunnels.values().find(|t| &t.iface == p && t.usable()) {
                return Some(t.link);
            }
        }
        self.tunnels
            .values()
            .filter(|t| t.usable())
            .min_by_key(|t| (t.cost, self.cost_of(&t.iface).1))
            .map(|t| t.link)
    }

    /// Puts the default and every flow on a tunnel that is not usable onto the best one,
    /// and tells the anchor inside that tunnel.
    fn reroute(&mut self, now: Instant) {
        let best = self.best();
        let old_default = self.default;
        if best != old_default {
            tracing::info!(
                from = ?old_default.and_then(|l| self.iface_of(l)),
                to = ?best.and_then(|l| self.iface_of(l)),
                "default path"
            );
            self.default = best;
            let _ = self.engine.handle().send(Command::SetDefault(best));
        }
        let Some(to) = best else { return };
        let stats = self.engine.handle().stats();
        // Flows pinned to a tunnel that is no longer usable move (uplink and downlink);
        // flows that follow the default moved with it above, and the anchor must be told
        // so that their downlink follows at once, even while nothing goes up.
        let mut pinned = Vec::new();
        let mut signal = Vec::new();
        for f in stats
            .flows
            .iter()
            .filter(|f| !self.flows.contains_key(&f.key))
        {
            match f.tunnel {
                Some(t) if t != to && !self.tunnels.get(&t).is_some_and(|t| t.usable()) => {
                    pinned.push(f.key);
                    signal.push(f.key);
                }
                None if old_default != Some(to) => signal.push(f.key),
                _ => {}
            }
        }
        if !pinned.is_empty() {
            let set = pinned.iter().map(|k| (*k, Some(to))).collect();
            let _ = self.engine.handle().send(Command::SetFlows(set));
        }
        if !signal.is_empty() {
            self.signal_moves(now, to, &signal);
        }
        // Flows the policy placed but that ride a tunnel that is no longer usable (a manual
        // `handover --all` took them off the policy's path, which then saw no reason to move
        // them when that path died): back onto the policy's current path for their class.
        let mut back: BTreeMap<u32, Vec<FlowKey>> = BTreeMap::new();
        for f in &stats.flows {
            let Some(info) = self.flows.get(&f.key) else {
                continue;
            };
            let Some(on) = f.tunnel.filter(|t| *t != dataplane::BLOCKED) else {
                continue;
            };
            if self.tunnels.get(&on).is_some_and(|t| t.usable()) {
                continue;
            }
            let decision = self
                .policy
                .as_ref()
                .and_then(|ps| ps.engine.current(&info.class))
                .cloned();
            if let Some(link) = decision.and_then(|d| self.target_of(&d)) {
                if link != on {
                    back.entry(link).or_default().push(f.key);
                }
            }
        }
        for (link, keys) in back {
            tracing::info!(
                flows = keys.len(),
                to = ?self.iface_of(link),
                "flows off a dead path, back to their policy's path"
            );
            let set = keys.iter().map(|k| (*k, Some(link))).collect();
            let _ = self.engine.handle().send(Command::SetFlows(set));
            self.signal_moves(now, link, &keys);
        }
    }

    fn iface_of(&self, link: u32) -> Option<String> {
        self.tunnels.get(&link).map(|t| t.iface.clone())
    }

    /// Tells the anchor that `flows` now ride tunnel `to` (sent inside it: "any").
    fn signal_moves(&mut self, now: Instant, to: u32, flows: &[FlowKey]) {
        let Some(vipa) = self.vipa else { return };
        let moves: Vec<FlowMove> = if flows.len() > MAX_LISTED_FLOWS {
            vec![FlowMove {
                flow: FlowMatch {
                    src: Some(vipa),
                    ..FlowMatch::default()
                },
                tunnel: TunnelTarget::Any,
            }]
        } else {
            flows
                .iter()
                .filter_map(exact_match)
                .map(|flow| FlowMove {
                    flow,
                    tunnel: TunnelTarget::Any,
                })
                .collect()
        };
        if moves.is_empty() {
            return;
        }
        let path = SigPath::Tunnel {
            link: to,
            remote: self.anchor_tunnel,
        };
        if let Err(e) = self.client.request_handover(now, path, moves) {
            tracing::warn!("handover request: {e}");
        }
    }

    fn answer(&mut self, now: Instant, req: &Request) -> Response {
        match req {
            Request::Status => match serde_json::to_value(self.status()) {
                Ok(value) => Response::Ok { value },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
            Request::Handover { flows, to } => match self.manual_handover(now, flows, to) {
                Ok(n) => Response::Ok {
                    value: serde_json::json!({ "moved": n, "to": to }),
                },
                Err(message) => Response::Error { message },
            },
            Request::RegisterFlow {
                proto,
                src_port,
                dst,
                app,
            } => match self.register_flow(now, proto, *src_port, *dst, app) {
                Ok(()) => Response::Ok {
                    value: serde_json::Value::Null,
                },
                Err(message) => Response::Error { message },
            },
            Request::PolicyReload => match self.reload_policy(now) {
                Ok(()) => Response::Ok {
                    value: self.policy_document(),
                },
                Err(message) => Response::Error { message },
            },
            Request::PolicyShow => match &self.policy {
                None => Response::Error {
                    message: "no policy configured (`policy` in mobile.toml)".into(),
                },
                Some(_) => Response::Ok {
                    value: self.policy_document(),
                },
            },
        }
    }

    fn manual_handover(
        &mut self,
        now: Instant,
        sel: &FlowSelector,
        to: &str,
    ) -> Result<usize, String> {
        if let FlowSelector::App(app) = sel {
            let Some(ps) = self.policy.as_mut() else {
                return Err(
                    "per-application handover needs a policy (`policy` in mobile.toml)".into(),
                );
            };
            let iface = (to != "auto").then_some(to);
            ps.engine.pin(app, iface).map_err(|e| e.to_string())?;
            let n = self.flows.values().filter(|f| &f.class == app).count();
            self.apply_policy(now);
            self.flush(now);
            return Ok(n);
        }
        let target = self
            .tunnels
            .values()
            .find(|t| t.iface == to)
            .ok_or_else(|| format!("no tunnel on {to}"))?;
        if !target.usable() {
            return Err(format!("the tunnel on {to} is not up"));
        }
        let link = target.link;
        let flows: Vec<FlowKey> = self
            .engine
            .handle()
            .stats()
            .flows
            .iter()
            .map(|f| f.key)
            .collect();
        let chosen: Vec<FlowKey> = match sel {
            FlowSelector::All => {
                self.pinned_all = Some(to.to_owned());
                flows
            }
            FlowSelector::Spec(spec) => {
                let m = parse_spec(spec)?;
                flows.into_iter().filter(|k| spec_matches(&m, k)).collect()
            }
            FlowSelector::App(_) => Vec::new(), // handled above
        };
        // Uplink first (make-before-break: the target is up), then the anchor.
        if matches!(sel, FlowSelector::All) {
            self.default = Some(link);
            let _ = self.engine.handle().send(Command::SetDefault(Some(link)));
        }
        if !chosen.is_empty() {
            let set = chosen.iter().map(|k| (*k, Some(link))).collect();
            let _ = self.engine.handle().send(Command::SetFlows(set));
            self.signal_moves(now, link, &chosen);
        }
        self.flush(now);
        Ok(chosen.len())
    }

    fn status(&self) -> MobileStatus {
        let stats = self.engine.handle().stats();
        let tunnels = self
            .tunnels
            .values()
            .map(|t| {
                let q = t.probe.quality();
                let s = stats.tunnels.iter().find(|s| s.id == t.link);
                MobileTunnel {
                    id: t.anchor_id.unwrap_or(0),
                    iface: t.iface.clone(),
                    state: match (t.phase, q.state) {
                        (TunnelPhase::Opening | TunnelPhase::Setup, _) => "setup",
                        (TunnelPhase::Ready, PathState::Up | PathState::Probing) => "up",
                        (TunnelPhase::Ready, PathState::Doubt) => "doubt",
                        (TunnelPhase::Ready, PathState::Down) => "down",
                    }
                    .to_owned(),
                    local: t.local,
                    mapped: t.mapped,
                    rtt_ms: q.rtt_ms,
                    jitter_ms: q.jitter_ms,
                    loss_pct: q.loss_pct,
                    tx_bytes: s.map_or(0, |s| s.tx.1),
                    rx_bytes: s.map_or(0, |s| s.rx.1),
                }
            })
            .collect();
        let flows: Vec<MobileFlow> = stats
            .flows
            .iter()
            .map(|f| MobileFlow {
                proto: proto_name(f.key.proto),
                src: sock(f.key.src, f.key.src_port),
                dst: sock(f.key.dst, f.key.dst_port),
                app: self.flows.get(&f.key).and_then(|i| i.app.clone()),
                iface: match f.tunnel {
                    Some(dataplane::BLOCKED) => None,
                    t => t.or(self.default).and_then(|l| self.iface_of(l)),
                },
                tx_bytes: f.up.1,
                rx_bytes: f.down.1,
            })
            .collect();
        let mut apps: BTreeMap<Option<String>, crate::status::MobileApp> = BTreeMap::new();
        for f in &flows {
            let a = apps
                .entry(f.app.clone())
                .or_insert_with(|| crate::status::MobileApp {
                    name: f.app.clone(),
                    flows: 0,
                    tx_bytes_by_iface: BTreeMap::new(),
                });
            a.flows += 1;
            let iface = f.iface.clone().unwrap_or_else(|| "waiting".into());
            *a.tx_bytes_by_iface.entry(iface).or_default() += f.tx_bytes;
        }
        MobileStatus {
            apps: apps.into_values().collect(),
            role: "mobile".into(),
            vipa: self.vipa,
            anchor: self.cfg.anchor.sip,
            association: if self.client.is_associated() {
                "associated"
            } else {
                "associating"
            }
            .into(),
            tunnels,
            flows,
            drops: crate::drops_by_name(&stats),
            dataplane: crate::dataplane_status(&stats),
            placement: self.placement_summary(),
        }
    }
}

fn sock(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

fn proto_name(p: wire::IpProtocol) -> String {
    match p {
        wire::IpProtocol::Tcp => "tcp".into(),
        wire::IpProtocol::Udp => "udp".into(),
        wire::IpProtocol::Icmp => "icmp".into(),
        other => u8::from(other).to_string(),
    }
}

/// A UDP socket bound to an interface (`SO_BINDTODEVICE`), so signalling leaves by that
/// access network and never through the TUN.
fn bound_udp(iface: &str) -> Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.bind_device(Some(iface.as_bytes()))
        .with_context(|| format!("SO_BINDTODEVICE {iface}"))?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())?;
    Ok(s.into())
}
