//! `upmt anchor`: the Anchor Node (the paper's MMS). Registrar and tunnel broker on the
//! control thread, the data plane's shards, and the NAT.
//!
//! The control thread waits on three channels (SIP datagrams from a reader thread, data-plane
//! events, control-socket requests) with a timeout at the registrar's next timer, so it
//! sleeps when nothing happens. It turns registrar events into data-plane commands:
//! `TunnelUp` adds the tunnel and binds the host's VIPA to it, `Handover` moves flows,
//! `Released` (expiry or de-registration) removes the host's tunnels, flows and NAT mappings.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crossbeam_channel::{select, Receiver};
use dataplane::{Command, Engine, EngineConfig, Event as DpEvent, Mode};
use rand::SeedableRng as _;
use signaling_proto::body::{FlowMatch, Proto};
use signaling_proto::credentials::Credentials;
use signaling_proto::path::Path as SigPath;
use signaling_proto::rate::RateLimit;
use signaling_proto::registrar::{Event as RegEvent, Registrar, RegistrarConfig};

use crate::config::{AnchorConfig, NatMode};
use crate::control::{self, Incoming, Request, Response};
use crate::netcfg;
use crate::status::{AnchorHost, AnchorStatus, AnchorTunnel, NatStatus};

#[derive(Debug)]
struct Host {
    id: dataplane::HostId,
    vipa: Ipv4Addr,
    expires_at: Instant,
    /// Tunnel id -> outer address.
    tunnels: HashMap<u32, SocketAddr>,
}

/// Reads the credentials file on a thread of its own and keeps a copy made on this one.
/// Parsing a large file leaves a heap full of small holes between the strings it keeps
/// (100,000 users: ~130 MB of RSS for ~30 MB of data, measured); that garbage stays in the
/// parsing thread's malloc arena, which is handed back to the kernel once the copy is made.
fn load_credentials(path: &std::path::Path) -> Result<Credentials> {
    let parsed = std::thread::scope(|s| {
        s.spawn(|| -> Result<Credentials> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Credentials::from_toml(&text)
                .with_context(|| format!("credentials file {}", path.display()))
        })
        .join()
    })
    .map_err(|_| anyhow::anyhow!("the credentials loader panicked"))??;
    let kept = parsed.clone();
    drop(parsed);
    dataplane::sys::release_free_heap();
    Ok(kept)
}

/// Runs the anchor until SIGINT/SIGTERM.
pub fn run(cfg: AnchorConfig, stop: Arc<AtomicBool>) -> Result<()> {
    let now = Instant::now();
    let creds = load_credentials(&cfg.sip.credentials)?;
    let rcfg = RegistrarConfig {
        pool: signaling_proto::pool::Ipv4Cidr {
            addr: cfg.vipa.pool.addr,
            len: cfg.vipa.pool.len,
        },
        min_expires: cfg.sip.min_expires_s,
        max_expires: cfg.sip.max_expires_s,
        max_tunnels_per_host: cfg.limits.max_tunnels_per_host as usize,
        algorithms: cfg.sip.digest_algorithms(),
        // 0 turns the per-source limit off.
        rate_limit: (cfg.sip.rate_limit_per_source > 0).then(|| RateLimit {
            per_second: f64::from(cfg.sip.rate_limit_per_source),
            burst: 2.0 * f64::from(cfg.sip.rate_limit_per_source),
            ..RateLimit::default()
        }),
        ..RegistrarConfig::default()
    };
    let mut registrar = Registrar::new(
        now,
        rcfg,
        creds,
        Box::new(rand::rngs::StdRng::from_entropy()),
    )
    .context("registrar")?;

    // Sockets first: a second anchor fails here, before touching the TUN.
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Incoming>();
    let ctl_path = cfg
        .control
        .socket
        .clone()
        .unwrap_or_else(|| control::default_socket(control::Role::Anchor));
    let _ctl = control::Server::start(&ctl_path, ctl_tx)
        .with_context(|| format!("control socket {}", ctl_path.display()))?;
    let sip = UdpSocket::bind(cfg.sip.listen)
        .with_context(|| format!("binding SIP to {}", cfg.sip.listen))?;

    // NAT.
    let tun = cfg
        .dataplane
        .tun
        .clone()
        .unwrap_or_else(|| "upmt-an0".to_owned());
    let nat = match cfg.nat.mode {
        NatMode::Upmt => {
            let mut ncfg = nat::NatConfig::new(cfg.nat.public.clone());
            ncfg.port_range = cfg.nat.ports.first..=cfg.nat.ports.last;
            ncfg.filtering = match cfg.nat.filtering {
                crate::config::Filtering::EndpointIndependent => {
                    nat::Filtering::EndpointIndependent
                }
                crate::config::Filtering::AddressDependent => nat::Filtering::AddressDependent,
                crate::config::Filtering::AddressAndPortDependent => {
                    nat::Filtering::AddressAndPortDependent
                }
            };
            ncfg.timeouts.udp = Duration::from_secs(cfg.nat.udp_timeout_s.into());
            ncfg.timeouts.tcp_established =
                Duration::from_secs(cfg.nat.tcp_established_timeout_s.into());
            ncfg.timeouts.tcp_transitory =
                Duration::from_secs(cfg.nat.tcp_transitory_timeout_s.into());
            ncfg.timeouts.icmp = Duration::from_secs(cfg.nat.icmp_timeout_s.into());
            ncfg.max_mappings_per_host = cfg.nat.max_mappings_per_host as usize;
            ncfg.max_mappings = cfg.nat.max_mappings as usize;
            ncfg.seed = rand::random();
            Some(Arc::new(nat::Nat::new(ncfg).context("NAT configuration")?))
        }
        NatMode::Kernel => None,
    };

    // Data plane.
    let mut ecfg = EngineConfig::new(Mode::Anchor, &tun);
    ecfg.shards = cfg.dataplane.shards;
    ecfg.pin_cores = cfg.dataplane.pin;
    ecfg.cpus = cfg.dataplane.cpus.clone();
    ecfg.offload = cfg.dataplane.offload;
    ecfg.backend = if cfg.dataplane.io_uring {
        dataplane::Backend::Auto
    } else {
        dataplane::Backend::Poll
    };
    ecfg.listen = Some(cfg.tunnel.listen);
    if let Some(n) = &nat {
        ecfg.nat = Arc::new(dataplane::Napt(n.clone()));
    }
    let engine = Engine::start(ecfg).context("starting the data plane")?;
    let inner_mtu = cfg.dataplane.path_mtu - 28;
    let (routed, _nft) = match cfg.nat.mode {
        NatMode::Upmt => (
            cfg.nat
                .public
                .iter()
                .map(|a| format!("{a}/32"))
                .collect::<Vec<_>>(),
            None,
        ),
        NatMode::Kernel => {
            let uplink = cfg.nat.uplink.as_deref().unwrap_or("eth0");
            let public = cfg
                .nat
                .public
                .first()
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            (
                vec![cfg.vipa.pool.to_string()],
                Some(netcfg::NftTable::anchor_snat(
                    &cfg.vipa.pool.to_string(),
                    public,
                    uplink,
                )?),
            )
        }
    };
    netcfg::anchor_tun_up(&tun, inner_mtu, &routed)?;
    let sip_rx = spawn_udp_reader(sip.try_clone()?)?;

    tracing::info!(
        sip = %cfg.sip.listen,
        tunnels = %cfg.tunnel.listen,
        tun = %tun,
        nat = ?cfg.nat.mode,
        backend = ?engine.backend(),
        "anchor running"
    );

    let mut hosts: HashMap<String, Host> = HashMap::new();
    let mut next_host: dataplane::HostId = 1;
    let events = engine.handle().events.clone();
    let mut last_nat_sweep = Instant::now();
    let mut last_tunnel_sweep = Instant::now();
    // Tunnel id -> (bytes received when last seen, when they last changed).
    let mut tunnel_rx: HashMap<u32, (u64, Instant)> = HashMap::new();
    let tunnel_idle = Duration::from_secs(cfg.limits.tunnel_idle_s.into());

    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let next = registrar
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(now + Duration::from_millis(250));
        let wait = next.saturating_duration_since(now);
        select! {
            recv(sip_rx) -> m => if let Ok((from, bytes)) = m {
                registrar.handle_datagram(Instant::now(), SigPath::Udp(from), &bytes);
            },
            recv(events) -> e => if let Ok(e) = e {
                on_dataplane_event(&mut registrar, e);
            },
            recv(ctl_rx) -> r => if let Ok(inc) = r {
                let resp = answer(&inc.request, &hosts, nat.as_deref(), &cfg, &engine);
                let _ = inc.reply.send(resp);
            },
            default(wait) => {}
        }
        let now = Instant::now();
        registrar.handle_timeout(now);
        while let Some(t) = registrar.poll_transmit(now) {
            send(&sip, &engine, t);
        }
        while let Some(ev) = registrar.poll_event() {
            on_registrar_event(ev, &mut hosts, &mut next_host, &engine, nat.as_deref());
        }
        if now.duration_since(last_tunnel_sweep) >= Duration::from_secs(5) {
            last_tunnel_sweep = now;
            for id in silent_tunnels(&engine, &mut tunnel_rx, now, tunnel_idle) {
                if let Some(user) = registrar.remove_tunnel(id) {
                    tracing::info!(%user, tunnel_id = id, "tunnel silent: removed");
                    if let Some(h) = hosts.get_mut(&user) {
                        h.tunnels.remove(&id);
                        bind_host(&engine, h);
                    }
                }
                let _ = engine.handle().send(Command::RemoveTunnel { id });
            }
        }
        if let Some(n) = &nat {
            if now.duration_since(last_nat_sweep) >= Duration::from_secs(1) {
                n.expire(now);
                last_nat_sweep = now;
            }
        }
    }

    tracing::info!("anchor stopping");
    let _ = engine.shutdown();
    Ok(())
}

/// Tunnels whose received-bytes counter has not moved for `limit`.
fn silent_tunnels(
    engine: &Engine,
    seen: &mut HashMap<u32, (u64, Instant)>,
    now: Instant,
    limit: Duration,
) -> Vec<u32> {
    let stats = engine.handle().stats();
    let mut silent = Vec::new();
    for t in &stats.tunnels {
        let e = seen.entry(t.id).or_insert((t.rx.1, now));
        if t.rx.1 != e.0 {
            *e = (t.rx.1, now);
        } else if now.duration_since(e.1) >= limit {
            silent.push(t.id);
        }
    }
    seen.retain(|id, _| stats.tunnels.iter().any(|t| t.id == *id) && !silent.contains(id));
    silent
}

fn spawn_udp_reader(sock: UdpSocket) -> Result<Receiver<(SocketAddr, Vec<u8>)>> {
    let (tx, rx) = crossbeam_channel::bounded(1024);
    std::thread::Builder::new()
        .name("upmt-sip-rx".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let data = buf.get(..n).unwrap_or(&[]).to_vec();
                        // Full: the control thread is behind; drop (UDP semantics).
                        if let Err(crossbeam_channel::TrySendError::Disconnected(_)) =
                            tx.try_send((from, data))
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!("SIP socket: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
    Ok(rx)
}

fn send(sip: &UdpSocket, engine: &Engine, t: signaling_proto::path::Transmit) {
    match t.path {
        SigPath::Udp(to) => {
            if let Err(e) = sip.send_to(&t.payload, to) {
                tracing::debug!("SIP send to {to}: {e}");
            }
        }
        SigPath::Tunnel { remote, .. } => {
            let Some(frame) = signaling_proto::framing::encode_signalling(&t.payload) else {
                tracing::warn!("signalling message too large for a control frame");
                return;
            };
            let _ = engine
                .handle()
                .send(Command::SendControlTo { remote, frame });
        }
    }
}

fn on_dataplane_event(registrar: &mut Registrar, e: DpEvent) {
    match e {
        DpEvent::ControlFrame {
            from,
            kind: dataplane::ControlKind::Signalling,
            body,
            received,
            ..
        } => {
            registrar.handle_datagram(
                received,
                SigPath::Tunnel {
                    link: 0,
                    remote: from,
                },
                &body,
            );
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

fn bind_host(engine: &Engine, h: &Host) {
    let _ = engine.handle().send(Command::BindHost {
        host: h.id,
        vipa: h.vipa.into(),
        tunnels: h.tunnels.keys().copied().collect(),
    });
}

fn on_registrar_event(
    ev: RegEvent,
    hosts: &mut HashMap<String, Host>,
    next_host: &mut dataplane::HostId,
    engine: &Engine,
    nat: Option<&nat::Nat>,
) {
    let now = Instant::now();
    match ev {
        RegEvent::Associated {
            user,
            vipa,
            expires,
        }
        | RegEvent::Refreshed {
            user,
            vipa,
            expires,
        } => {
            let h = hosts.entry(user.clone()).or_insert_with(|| {
                let id = *next_host;
                *next_host = next_host.wrapping_add(1).max(1);
                Host {
                    id,
                    vipa,
                    expires_at: now + expires,
                    tunnels: HashMap::new(),
                }
            });
            h.vipa = vipa;
            h.expires_at = now + expires;
            tracing::info!(%user, %vipa, "host associated");
            bind_host(engine, h);
        }
        RegEvent::TunnelUp {
            user,
            vipa,
            tunnel_id,
            remote,
            ..
        } => {
            let Some(h) = hosts.get_mut(&user) else {
                return;
            };
            h.vipa = vipa;
            if h.tunnels.insert(tunnel_id, remote) != Some(remote) {
                let _ = engine.handle().send(Command::AddPeerTunnel {
                    id: tunnel_id,
                    remote,
                });
                tracing::info!(%user, tunnel_id, %remote, "tunnel up");
            }
            bind_host(engine, h);
        }
        RegEvent::TunnelDown { user, tunnel_id } => {
            if let Some(h) = hosts.get_mut(&user) {
                h.tunnels.remove(&tunnel_id);
                bind_host(engine, h);
            }
            let _ = engine
                .handle()
                .send(Command::RemoveTunnel { id: tunnel_id });
        }
        RegEvent::Released {
            user,
            vipa,
            tunnels,
            reason,
        } => {
            tracing::info!(%user, %vipa, ?reason, "host released");
            if let Some(h) = hosts.remove(&user) {
                let _ = engine.handle().send(Command::UnbindHost(h.id));
            }
            for id in tunnels {
                let _ = engine.handle().send(Command::RemoveTunnel { id });
            }
            if let Some(n) = nat {
                n.remove_host(vipa);
            }
        }
        RegEvent::Handover { user, vipa, moves } => {
            let flows = engine.handle().stats().flows;
            let mut set = Vec::new();
            for (m, tunnel) in &moves {
                for f in &flows {
                    if matches(m, vipa, &f.key) {
                        set.push((f.key, Some(*tunnel)));
                    }
                }
            }
            tracing::info!(%user, moves = moves.len(), flows = set.len(), "handover");
            if !set.is_empty() {
                let _ = engine.handle().send(Command::SetFlows(set));
            }
        }
    }
}

/// Whether a flow of host `vipa` matches a handover request's flow match.
fn matches(m: &FlowMatch, vipa: Ipv4Addr, key: &dataplane::FlowKey) -> bool {
    let std::net::IpAddr::V4(src) = key.src else {
        return false;
    };
    let std::net::IpAddr::V4(dst) = key.dst else {
        return false;
    };
    src == vipa
        && m.src.is_none_or(|s| s == src)
        && m.sport.is_none_or(|p| p == key.src_port)
        && m.dport.is_none_or(|p| p == key.dst_port)
        && m.dst.is_none_or(|c| c.contains(dst))
        && m.proto.is_none_or(|p| {
            let want = match p {
                Proto::Tcp => wire::IpProtocol::Tcp,
                Proto::Udp => wire::IpProtocol::Udp,
                Proto::Icmp => wire::IpProtocol::Icmp,
            };
            key.proto == want
        })
}

fn answer(
    req: &Request,
    hosts: &HashMap<String, Host>,
    nat: Option<&nat::Nat>,
    cfg: &AnchorConfig,
    engine: &Engine,
) -> Response {
    match req {
        Request::Status => {
            let now = Instant::now();
            let stats = engine.handle().stats();
            // One pass over the listed flows (a scan per host would be hosts x flows).
            let mut per_vipa: HashMap<std::net::IpAddr, u64> = HashMap::new();
            for f in &stats.flows {
                *per_vipa.entry(f.key.src).or_default() += 1;
            }
            let mut hs: Vec<AnchorHost> = hosts
                .iter()
                .map(|(user, h)| AnchorHost {
                    id: user.clone(),
                    vipa: h.vipa,
                    expires_in_s: h.expires_at.saturating_duration_since(now).as_secs(),
                    flows: per_vipa
                        .get(&std::net::IpAddr::V4(h.vipa))
                        .copied()
                        .unwrap_or(0),
                    tunnels: h
                        .tunnels
                        .iter()
                        .map(|(id, addr)| {
                            let t = stats.tunnels.iter().find(|t| t.id == *id);
                            AnchorTunnel {
                                id: *id,
                                addr: *addr,
                                rx_bytes: t.map_or(0, |t| t.rx.1),
                                tx_bytes: t.map_or(0, |t| t.tx.1),
                            }
                        })
                        .collect(),
                })
                .collect();
            hs.sort_by(|a, b| a.id.cmp(&b.id));
            let s = AnchorStatus {
                role: "anchor".into(),
                hosts: hs,
                flows: stats.flow_count,
                flows_listed: stats.flows.len() as u64,
                nat: NatStatus {
                    mode: match cfg.nat.mode {
                        NatMode::Upmt => "upmt".into(),
                        NatMode::Kernel => "kernel".into(),
                    },
                    mappings: nat.map_or(0, |n| n.len() as u64),
                    public: cfg.nat.public.clone(),
                },
                drops: crate::drops_by_name(&stats),
                dataplane: crate::dataplane_status(&stats),
            };
            match serde_json::to_value(s) {
                Ok(value) => Response::Ok { value },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            }
        }
        Request::Handover { .. }
        | Request::PolicyReload
        | Request::PolicyShow
        | Request::RegisterFlow { .. } => Response::Error {
            message: "handovers and policies belong to the mobile host (run it there)".into(),
        },
    }
}
