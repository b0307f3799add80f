//! Per-application placement on the mobile host: the policy engine fed by the classifier,
//! the SOCKS5 proxy and the socket API (`upmt-api`), and the moves the policy decides.

use super::*;

/// The policy engine and the classifier that feeds it.
pub(super) struct PolicyState {
    pub(super) engine: PolicyEngine,
    pub(super) classifier: Option<appclass::Classifier>,
    pub(super) path: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub(super) struct FlowInfo {
    pub(super) app: Option<String>,
    pub(super) class: String,
}

/// A flow the SOCKS proxy opened for an application.
pub(super) type SocksFlow = (socks::Proto, SocketAddr, SocketAddr, String);

/// Hands the proxy's flows to the control thread, and names clients that give no SOCKS user
/// name by the process owning their connection (its own classifier: the proxy's threads
/// must not wait for the control thread).
pub(super) struct SocksHook {
    pub(super) tx: Sender<SocksFlow>,
    pub(super) classifier: std::sync::Mutex<Option<appclass::Classifier>>,
}

impl socks::FlowHook for SocksHook {
    fn register(&self, proto: socks::Proto, local: SocketAddr, remote: SocketAddr, app: &str) {
        let _ = self.tx.send((proto, local, remote, app.to_owned()));
    }

    fn app_of_client(&self, client: SocketAddr, proxy: SocketAddr) -> Option<String> {
        let mut g = self.classifier.lock().ok()?;
        let c = g.as_mut()?;
        c.classify(&appclass::Flow {
            proto: appclass::Proto::Tcp,
            src: client,
            dst: proxy,
        })
        .map(|a| a.name)
    }
}

impl Mobile {
    /// An aware application's flow (upmt-api), announced before its first packet.
    pub(super) fn register_flow(
        &mut self,
        now: Instant,
        proto: &str,
        src_port: u16,
        dst: SocketAddr,
        app: &str,
    ) -> Result<(), String> {
        if self.policy.is_none() {
            return Err("no policy configured (`policy` in mobile.toml)".into());
        }
        appclass::cgroup::validate_app_name(app).map_err(|e| e.to_string())?;
        let proto = match proto {
            "tcp" => socks::Proto::Tcp,
            "udp" => socks::Proto::Udp,
            p => return Err(format!("unknown protocol {p:?} (tcp or udp)")),
        };
        let vipa = self.vipa.ok_or("not associated yet")?;
        let local = SocketAddr::new(IpAddr::V4(vipa), src_port);
        self.on_socks_flow(now, proto, local, dst, app.to_owned());
        Ok(())
    }

    pub(super) fn policy_document(&self) -> serde_json::Value {
        let Some(ps) = &self.policy else {
            return serde_json::Value::Null;
        };
        let decisions: serde_json::Map<String, serde_json::Value> = ps
            .engine
            .decisions()
            .into_iter()
            .map(|(class, d)| (class.to_owned(), decision_json(d)))
            .collect();
        serde_json::json!({
            "file": ps.path.display().to_string(),
            "decisions": decisions,
            "realtime_paths": ps.engine.realtime_paths(),
        })
    }

    /// Reads the policy file again; a bad file is refused and the running policy stays.
    pub(super) fn reload_policy(&mut self, now: Instant) -> Result<(), String> {
        let known: Vec<String> = self.cfg.interfaces.iter().map(|i| i.name.clone()).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let Some(ps) = self.policy.as_mut() else {
            return Err("no policy configured (`policy` in mobile.toml)".into());
        };
        let p = load_policy(&ps.path, &known).map_err(|e| format!("{e:#}"))?;
        ps.engine.reload(now, p);
        tracing::info!(file = %ps.path.display(), "policy reloaded");
        // Rules may change a flow's class: decide every live flow again.
        let live: Vec<(FlowKey, Option<String>)> = self
            .flows
            .iter()
            .map(|(k, f)| (*k, f.app.clone()))
            .collect();
        for (key, app) in live {
            self.place(now, key, app, true);
        }
        self.apply_policy(now);
        self.flush(now);
        Ok(())
    }

    /// Classifies a new flow (unless `app` is known) and places it by the policy.
    pub(super) fn place_new_flow(&mut self, now: Instant, key: FlowKey, app: Option<String>) {
        let started = Instant::now();
        let Some(ps) = self.policy.as_mut() else {
            return;
        };
        let app = app.or_else(|| {
            let flow = classify_flow(&key)?;
            ps.classifier.as_mut()?.classify(&flow).map(|a| a.name)
        });
        self.place(now, key, app, false);
        if self.placement_us.len() >= 1024 {
            self.placement_us.pop_front();
        }
        self.placement_us
            .push_back(started.elapsed().as_micros() as u64);
        self.placements += 1;
    }

    /// Decides `key`'s placement and puts it there (telling the anchor when an existing
    /// flow changes tunnel).
    pub(super) fn place(
        &mut self,
        now: Instant,
        key: FlowKey,
        app: Option<String>,
        existing: bool,
    ) {
        let Some(ps) = self.policy.as_mut() else {
            return;
        };
        let input = FlowMatchInput {
            proto: u8::from(key.proto),
            dst: key.dst,
            dst_port: key.dst_port,
        };
        let placement = ps.engine.decide(now, app.as_deref(), &input);
        let target = self.target_of(&placement.decision);
        tracing::debug!(flow = %key, app = ?app, class = %placement.class, decision = ?placement.decision, "flow placed");
        let before = self.flows.insert(
            key,
            FlowInfo {
                app,
                class: placement.class,
            },
        );
        let _ = self.engine.handle().send(Command::SetFlow {
            key,
            tunnel: Some(target.unwrap_or(dataplane::BLOCKED)),
        });
        if existing && before.is_some() {
            if let Some(link) = target {
                self.signal_moves(now, link, &[key]);
            }
        }
    }

    /// The data-plane tunnel of a policy decision (`None`: hold the flow back).
    pub(super) fn target_of(&self, d: &Decision) -> Option<u32> {
        match d {
            Decision::Tunnel(iface) => self
                .tunnels
                .values()
                .find(|t| &t.iface == iface && t.usable())
                .map(|t| t.link),
            Decision::Wait => None,
        }
    }

    /// Feeds the paths' state to the policy and carries out the moves it decides.
    pub(super) fn apply_policy(&mut self, now: Instant) {
        // At start, let every tunnel answer once (or 3 s pass) before the policy sees the
        // paths: otherwise the first path to answer wins and the preferred one would have
        // to wait out the hold-down. A path that answered, or went away, does not hold the
        // policy back: a lost path's flows must move (or wait) at once.
        for t in self.tunnels.values() {
            if t.phase == TunnelPhase::Ready
                && t.probe.state() != PathState::Probing
                && !self.settled.contains(&t.iface)
            {
                self.settled.insert(t.iface.clone());
            }
        }
        let settling = self
            .cfg
            .interfaces
            .iter()
            .any(|i| !self.settled.contains(&i.name));
        if settling && now.duration_since(self.epoch) < STARTUP_SETTLE {
            return;
        }
        let Some(ps) = self.policy.as_mut() else {
            return;
        };
        for i in &self.cfg.interfaces {
            let q = self
                .tunnels
                .values()
                .find(|t| t.iface == i.name && t.phase == TunnelPhase::Ready)
                .map(|t| t.probe.quality());
            ps.engine.set_path(now, &i.name, q);
        }
        let moves = ps.engine.reevaluate(now);
        for mv in moves {
            tracing::info!(app = %mv.app, from = ?mv.from, to = ?mv.to, "policy move");
            let target = self.target_of(&mv.to);
            let keys: Vec<FlowKey> = self
                .flows
                .iter()
                .filter(|(_, f)| f.class == mv.app)
                .map(|(k, _)| *k)
                .collect();
            if keys.is_empty() {
                continue;
            }
            let set = keys
                .iter()
                .map(|k| (*k, Some(target.unwrap_or(dataplane::BLOCKED))))
                .collect();
            let _ = self.engine.handle().send(Command::SetFlows(set));
            if let Some(link) = target {
                self.signal_moves(now, link, &keys);
            }
        }
    }

    /// Forgets flows the data plane no longer has (expired), every 10 s.
    pub(super) fn sweep_flows(&mut self, now: Instant) {
        if self.flows.is_empty()
            || now.duration_since(self.last_flow_sweep) < Duration::from_secs(10)
        {
            return;
        }
        self.last_flow_sweep = now;
        let live: std::collections::HashSet<FlowKey> = self
            .engine
            .handle()
            .stats()
            .flows
            .iter()
            .map(|f| f.key)
            .collect();
        self.flows.retain(|k, _| live.contains(k));
    }

    pub(super) fn on_socks_flow(
        &mut self,
        now: Instant,
        proto: socks::Proto,
        local: SocketAddr,
        remote: SocketAddr,
        app: String,
    ) {
        let key = FlowKey {
            proto: match proto {
                socks::Proto::Tcp => wire::IpProtocol::Tcp,
                socks::Proto::Udp => wire::IpProtocol::Udp,
            },
            src: local.ip(),
            dst: remote.ip(),
            src_port: local.port(),
            dst_port: remote.port(),
        };
        self.place_new_flow(now, key, Some(app));
    }

    pub(super) fn placement_summary(&self) -> Option<crate::status::Placement> {
        if self.placement_us.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = self.placement_us.iter().copied().collect();
        v.sort_unstable();
        let at = |p: f64| {
            v.get(((v.len() - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Some(crate::status::Placement {
            flows: self.placements,
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: v.last().copied().unwrap_or(0),
        })
    }
}

fn decision_json(d: &Decision) -> serde_json::Value {
    match d {
        Decision::Tunnel(i) => serde_json::Value::from(i.as_str()),
        Decision::Wait => serde_json::Value::from("wait"),
    }
}

/// Reads and checks a policy file against the configured interfaces.
pub(super) fn load_policy(path: &std::path::Path, known: &[&str]) -> Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    let p = Policy::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !known.is_empty() {
        p.check_interfaces(known)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(p)
}

/// The classifier's view of a flow (TCP and UDP only: sock_diag has no ICMP lookup).
fn classify_flow(k: &FlowKey) -> Option<appclass::Flow> {
    let proto = match k.proto {
        wire::IpProtocol::Tcp => appclass::Proto::Tcp,
        wire::IpProtocol::Udp => appclass::Proto::Udp,
        _ => return None,
    };
    Some(appclass::Flow {
        proto,
        src: SocketAddr::new(k.src, k.src_port),
        dst: SocketAddr::new(k.dst, k.dst_port),
    })
}
