//! The per-packet decisions, free of I/O: what to do with a packet read from the TUN and with a
//! datagram received from a tunnel. Both backends (io_uring and fallback) call these, then act
//! on the verdict; benches and unit tests call them directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::control::{Event, Mode, NatHook};
use crate::pkt::{self, Class, ControlKind, CONTROL_HEADER_LEN};
use crate::stats::{DropReason, ShardStats};
use crate::tables::{Dir, Route, Tables, Tunnel, TunnelId, TunnelState, NO_TUNNEL, PENDING};
use crate::FlowKey;

/// What to do with a packet read from the TUN.
#[derive(Debug)]
pub(crate) enum TunVerdict {
    /// Send it, as is, as the UDP payload of this tunnel.
    Send(Arc<Tunnel>),
    /// Hold it until the control side decides (or the wait times out).
    Hold(FlowKey),
    /// Drop it.
    Drop(DropReason),
}

/// What to do with a datagram received from a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetVerdict {
    /// Write the payload (possibly NAT-rewritten in place) to the TUN.
    ToTun,
    /// Send the payload (rewritten in place into a keepalive reply) back to the source.
    Reply,
    /// Handed to the control thread; the buffer can be recycled.
    Consumed,
    /// Drop it.
    Drop(DropReason),
}

/// Per-shard forwarding logic over the shared tables.
pub(crate) struct Forwarder {
    pub(crate) mode: Mode,
    pub(crate) shard: usize,
    pub(crate) tables: Arc<Tables>,
    pub(crate) stats: Arc<ShardStats>,
    pub(crate) events: Sender<Event>,
    pub(crate) nat: Arc<dyn NatHook>,
    pub(crate) answer_keepalives: bool,
    pub(crate) hold: bool,
}

impl Forwarder {
    /// A packet read from the TUN (`pkt` is exactly the IP packet).
    #[inline]
    pub(crate) fn on_tun(&self, pkt: &mut [u8], now: Instant) -> TunVerdict {
        self.stats.tun_rx.add(pkt.len());
        match self.mode {
            Mode::Mobile => self.mobile_uplink(pkt),
            Mode::Anchor => self.anchor_downlink(pkt, now),
        }
    }

    fn mobile_uplink(&self, pkt: &[u8]) -> TunVerdict {
        let Some(key) = pkt::flow_key(pkt) else {
            return TunVerdict::Drop(DropReason::Malformed);
        };
        // RFC 4291 2.5.6: "Routers must not forward any packets with Link-Local source or
        // destination addresses to other links." The TUN is the link; the tunnel is not.
        if link_scoped(&key.src) || link_scoped(&key.dst) {
            return TunVerdict::Drop(DropReason::LinkLocal);
        }
        match self.tables.route(&key, Dir::Up, pkt.len()) {
            Route::Tunnel(t) => match self.usable(t) {
                Some(tun) => TunVerdict::Send(tun),
                None => self.default_route(),
            },
            Route::Default => self.default_route(),
            Route::Blocked => TunVerdict::Drop(DropReason::PolicyWait),
            Route::Pending if self.hold => TunVerdict::Hold(key),
            Route::Pending => self.default_route(),
            Route::Miss => {
                let marker = if self.hold { PENDING } else { NO_TUNNEL };
                match self.tables.insert_new(key, marker) {
                    Ok(created) => {
                        if created {
                            // Full channel: the control side misses the event, the flow still
                            // follows the default rule.
                            let _ = self.events.try_send(Event::NewFlow {
                                key,
                                shard: self.shard,
                            });
                        }
                        self.tables.count(&key, Dir::Up, pkt.len());
                        if self.hold {
                            TunVerdict::Hold(key)
                        } else {
                            self.default_route()
                        }
                    }
                    Err(()) => {
                        self.stats.drop_packet(DropReason::PaftFull);
                        self.default_route()
                    }
                }
            }
        }
    }

    /// Route for a held packet whose wait is over (decided or timed out).
    pub(crate) fn release(&self, key: &FlowKey, timed_out: bool) -> Option<TunVerdict> {
        if timed_out {
            self.tables.resolve_pending(key);
        }
        match self.tables.lookup(key) {
            Route::Pending => None,
            Route::Tunnel(t) => Some(match self.usable(t) {
                Some(tun) => TunVerdict::Send(tun),
                None => self.default_route(),
            }),
            Route::Default | Route::Miss => Some(self.default_route()),
            Route::Blocked => Some(TunVerdict::Drop(DropReason::PolicyWait)),
        }
    }

    fn usable(&self, t: TunnelId) -> Option<Arc<Tunnel>> {
        self.tables
            .tunnel(t)
            .filter(|tun| tun.state() == TunnelState::Up)
    }

    fn default_route(&self) -> TunVerdict {
        match self.tables.default_tunnel().and_then(|t| self.usable(t)) {
            Some(tun) => TunVerdict::Send(tun),
            None => TunVerdict::Drop(DropReason::NoTunnel),
        }
    }

    fn anchor_downlink(&self, pkt: &mut [u8], now: Instant) -> TunVerdict {
        if let Err(r) = self.nat.inbound(pkt, now) {
            return TunVerdict::Drop(r);
        }
        let Some(key) = pkt::flow_key(pkt) else {
            return TunVerdict::Drop(DropReason::Malformed);
        };
        // PAFT keys are host-outbound (src = VIPA).
        let hkey = key.reversed();
        if let Route::Tunnel(t) = self.tables.route(&hkey, Dir::Down, pkt.len()) {
            if let Some(tun) = self.usable(t) {
                return TunVerdict::Send(tun);
            }
        }
        // No (usable) entry: the host's most recently active tunnel.
        let Some(host) = self.tables.host_by_vipa(&key.dst) else {
            return TunVerdict::Drop(DropReason::NoTunnel);
        };
        let last = host.last_tunnel.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(tun) = self.usable(last) {
            return TunVerdict::Send(tun);
        }
        match host.tunnels.iter().find_map(|t| self.usable(*t)) {
            Some(tun) => TunVerdict::Send(tun),
            None => TunVerdict::Drop(DropReason::NoTunnel),
        }
    }

    /// A datagram from a tunnel socket. `dedicated` is the tunnel of a socket of its own
    /// (mobile host); otherwise the tunnel is found by `from` (anchor).
    #[inline]
    pub(crate) fn on_net(
        &self,
        dedicated: Option<TunnelId>,
        from: SocketAddr,
        payload: &mut [u8],
        now: Instant,
    ) -> NetVerdict {
        self.on_net_counted(dedicated, from, payload, now, true)
    }

    /// [`Forwarder::on_net`] for a datagram of a UDP GRO batch whose packets are coalesced
    /// before the TUN write: the mobile host counts them on their flow once per written
    /// frame ([`Forwarder::count_tun_frame`]), not per datagram.
    #[inline]
    pub(crate) fn on_net_coalesced(
        &self,
        dedicated: Option<TunnelId>,
        from: SocketAddr,
        payload: &mut [u8],
        now: Instant,
    ) -> NetVerdict {
        self.on_net_counted(dedicated, from, payload, now, false)
    }

    /// Mobile host: counts a frame written to the TUN (a virtio-net header and a packet or a
    /// coalesced super-packet) on its flow's downlink counters, as the datagrams it was made
    /// of. One flow look-up per frame. Anchor: nothing (its downlink is counted by route).
    pub(crate) fn count_tun_frame(&self, frame: &[u8]) {
        if self.mode != Mode::Mobile {
            return;
        }
        let Ok((hdr, packet)) = wire::offload::VirtioNetHdr::split(frame) else {
            return;
        };
        let Some(key) = pkt::flow_key(packet) else {
            return;
        };
        let (mut packets, mut bytes) = (1u64, packet.len() as u64);
        let gso = usize::from(hdr.gso_size);
        let start = usize::from(hdr.csum_start);
        let l4_hdr = match hdr.gso() {
            wire::offload::Gso::None => None,
            wire::offload::Gso::UdpL4 => Some(8),
            // TCP: the data offset, at byte 12 of its header.
            _ => Some(
                packet
                    .get(start + 12)
                    .map_or(20, |b| usize::from(b >> 4) * 4),
            ),
        };
        if let (Some(l4_hdr), true) = (l4_hdr, gso > 0) {
            let hdrs = start + l4_hdr;
            let payload = packet.len().saturating_sub(hdrs);
            packets = payload.div_ceil(gso).max(1) as u64;
            bytes += (packets - 1) * hdrs as u64;
        }
        self.tables
            .count_n(&key.reversed(), Dir::Down, packets, bytes);
    }

    #[inline]
    fn on_net_counted(
        &self,
        dedicated: Option<TunnelId>,
        from: SocketAddr,
        payload: &mut [u8],
        now: Instant,
        count_flow: bool,
    ) -> NetVerdict {
        self.stats.net_rx.add(payload.len());
        let tunnel = dedicated.or_else(|| self.tables.tunnel_by_remote(&from));
        match pkt::classify(payload) {
            Class::Malformed => NetVerdict::Drop(DropReason::Malformed),
            Class::ReservedControl => NetVerdict::Drop(DropReason::ControlRejected),
            Class::Control { kind, body_len } => {
                // Keepalives and signalling count as traffic of their tunnel: the anchor
                // removes tunnels that stay silent.
                if let Some(tun) = tunnel.and_then(|t| self.tables.tunnel(t)) {
                    tun.rx.add(payload.len());
                }
                self.control(tunnel, from, kind, payload, body_len, now)
            }
            Class::Data => {
                let Some(t) = tunnel else {
                    return NetVerdict::Drop(DropReason::NoTunnel);
                };
                if let Some(tun) = self.tables.tunnel(t) {
                    tun.rx.add(payload.len());
                }
                match self.mode {
                    Mode::Mobile => {
                        // Counted on its flow (which it also keeps alive: a receive-only
                        // UDP stream must not expire). Unparsable packets still go to the
                        // TUN: the kernel is the judge of what it accepts.
                        if count_flow {
                            if let Some(k) = pkt::flow_key(payload) {
                                self.tables.count(&k.reversed(), Dir::Down, payload.len());
                            }
                        }
                        NetVerdict::ToTun
                    }
                    Mode::Anchor => self.anchor_uplink(t, payload, now),
                }
            }
        }
    }

    fn control(
        &self,
        tunnel: Option<TunnelId>,
        from: SocketAddr,
        kind: ControlKind,
        payload: &mut [u8],
        body_len: usize,
        now: Instant,
    ) -> NetVerdict {
        if kind == ControlKind::KeepaliveRequest && self.answer_keepalives && tunnel.is_some() {
            // Echo the body unchanged with kind = reply (CONVENTIONS.md keepalive).
            if let Some(k) = payload.get_mut(1) {
                *k = u8::from(ControlKind::KeepaliveReply);
            }
            self.stats
                .keepalive_answered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return NetVerdict::Reply;
        }
        let body = payload
            .get(CONTROL_HEADER_LEN..CONTROL_HEADER_LEN + body_len)
            .unwrap_or(&[])
            .to_vec();
        match self.events.try_send(Event::ControlFrame {
            tunnel,
            from,
            kind,
            body,
            received: now,
        }) {
            Ok(()) => {
                self.stats
                    .control_rx
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                NetVerdict::Consumed
            }
            Err(_) => NetVerdict::Drop(DropReason::ControlQueueFull),
        }
    }

    fn anchor_uplink(&self, t: TunnelId, payload: &mut [u8], now: Instant) -> NetVerdict {
        let Some(host) = self.tables.host_by_tunnel(t) else {
            return NetVerdict::Drop(DropReason::NoTunnel);
        };
        // DESIGN.md 6: forwarded only if the inner source is that host's VIPA.
        match pkt::ip_src(payload) {
            Some(src) if src == host.vipa => {}
            Some(_) => return NetVerdict::Drop(DropReason::SpoofedSource),
            None => return NetVerdict::Drop(DropReason::Malformed),
        }
        let Some(key) = pkt::flow_key(payload) else {
            return NetVerdict::Drop(DropReason::Malformed);
        };
        // Learn: the flow's tunnel is the one its last valid packet came in on. A full table
        // does not stop forwarding (counted; downlink then uses the host's last tunnel).
        if self.tables.learn(key, t, payload.len()).is_err() {
            self.stats.drop_packet(DropReason::PaftFull);
        }
        if host.last_tunnel.load(std::sync::atomic::Ordering::Relaxed) != t {
            host.last_tunnel
                .store(t, std::sync::atomic::Ordering::Relaxed);
        }
        if let Err(r) = self.nat.outbound(host.vipa, payload, now) {
            return NetVerdict::Drop(r);
        }
        NetVerdict::ToTun
    }
}

/// IPv6 link-local unicast (fe80::/10) or link-local-scope multicast (ff02::/16).
fn link_scoped(a: &std::net::IpAddr) -> bool {
    match a {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xffc0) == 0xfe80 || (s & 0xff0f) == 0xff02
        }
        std::net::IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::control::KernelNat;
    use crate::tables::TunnelSocket;
    use crossbeam_channel::Receiver;

    pub(crate) fn udp_packet(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p[28..].copy_from_slice(payload);
        p
    }

    pub(crate) fn forwarder(mode: Mode, hold: bool) -> (Forwarder, Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let f = Forwarder {
            mode,
            shard: 0,
            tables: Arc::new(Tables::new(1000)),
            stats: Arc::new(ShardStats::default()),
            events: tx,
            nat: Arc::new(KernelNat),
            answer_keepalives: mode == Mode::Anchor,
            hold,
        };
        (f, rx)
    }

    fn add(f: &Forwarder, id: u32, remote: &str) {
        let remote: SocketAddr = remote.parse().unwrap();
        f.tables.add_tunnel(Tunnel::new(
            id,
            TunnelSocket::Shared,
            "198.18.2.1:1800".parse().unwrap(),
            remote,
        ));
    }

    const VIPA: [u8; 4] = [100, 64, 0, 2];
    const CH: [u8; 4] = [198, 18, 3, 1];

    #[test]
    fn mobile_default_new_flow_and_handover() {
        let (f, ev) = forwarder(Mode::Mobile, false);
        let mut p = udp_packet(VIPA, CH, 4000, 53, b"x");
        // No default yet: dropped, but NewFlow raised once.
        assert!(matches!(
            f.on_tun(&mut p, Instant::now()),
            TunVerdict::Drop(DropReason::NoTunnel)
        ));
        assert!(matches!(ev.try_recv(), Ok(Event::NewFlow { .. })));
        add(&f, 1, "198.18.2.1:1800");
        add(&f, 2, "198.18.2.1:1800");
        f.tables.set_default(Some(1));
        assert!(matches!(f.on_tun(&mut p, Instant::now()), TunVerdict::Send(t) if t.id == 1));
        assert!(ev.try_recv().is_err(), "one NewFlow per flow");
        let key = pkt::flow_key(&p).unwrap();
        // The answer, from the tunnel: counted on the flow, toward the host.
        let mut answer = udp_packet(CH, VIPA, 53, 4000, b"answer");
        assert_eq!(
            f.on_net(
                Some(1),
                "198.18.2.1:1800".parse().unwrap(),
                &mut answer,
                Instant::now()
            ),
            NetVerdict::ToTun
        );
        let snap = f.tables.flows(10);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].up.0, 2, "two packets up (the first one dropped)");
        assert_eq!(snap[0].down, (1, answer.len() as u64));
        f.tables.set_flow(key, Some(2));
        assert!(matches!(f.on_tun(&mut p, Instant::now()), TunVerdict::Send(t) if t.id == 2));
        // A draining tunnel is not used for new sends: back to the default.
        f.tables.tunnel(2).unwrap().set_state(TunnelState::Draining);
        assert!(matches!(f.on_tun(&mut p, Instant::now()), TunVerdict::Send(t) if t.id == 1));
        let mut bad = vec![0x45, 0, 0];
        assert!(matches!(
            f.on_tun(&mut bad, Instant::now()),
            TunVerdict::Drop(DropReason::Malformed)
        ));
        // The kernel's router solicitation on the TUN (fe80:: -> ff02::2, ICMPv6 133) stays
        // on its link.
        let mut rs = vec![0u8; 48];
        rs[0] = 0x60;
        rs[4..6].copy_from_slice(&8u16.to_be_bytes());
        rs[6] = 58;
        rs[7] = 255;
        rs[8] = 0xfe;
        rs[9] = 0x80;
        rs[23] = 1;
        rs[24] = 0xff;
        rs[25] = 0x02;
        rs[39] = 2;
        rs[40] = 133;
        assert!(matches!(
            f.on_tun(&mut rs, Instant::now()),
            TunVerdict::Drop(DropReason::LinkLocal)
        ));
    }

    #[test]
    fn mobile_counts_written_frames_as_their_datagrams() {
        use wire::offload::{VirtioNetHdr, VNET_HDR_LEN};
        let (f, _ev) = forwarder(Mode::Mobile, false);
        add(&f, 1, "198.18.2.1:1800");
        f.tables.set_default(Some(1));
        // A super-packet CH:80 -> VIPA:4000 of 250 payload bytes in 100-byte segments.
        let mut sp = vec![0u8; 40 + 250];
        sp[0] = 0x45;
        sp[2..4].copy_from_slice(&290u16.to_be_bytes());
        sp[8] = 64;
        sp[9] = 6;
        sp[12..16].copy_from_slice(&CH);
        sp[16..20].copy_from_slice(&VIPA);
        sp[20..22].copy_from_slice(&80u16.to_be_bytes());
        sp[22..24].copy_from_slice(&4000u16.to_be_bytes());
        sp[32] = 5 << 4;
        // The flow (host-outbound), known to the PAFT.
        let key = pkt::flow_key(&sp).unwrap().reversed();
        f.tables.insert_new(key, NO_TUNNEL).unwrap();
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 40,
            gso_size: 100,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut frame = vec![0u8; VNET_HDR_LEN];
        hdr.emit(&mut frame).unwrap();
        frame.extend_from_slice(&sp);
        f.count_tun_frame(&frame);
        // A plain frame (one packet) and garbage.
        let mut single = vec![0u8; VNET_HDR_LEN];
        single.extend_from_slice(&sp[..60]);
        single[VNET_HDR_LEN + 2..VNET_HDR_LEN + 4].copy_from_slice(&60u16.to_be_bytes());
        f.count_tun_frame(&single);
        f.count_tun_frame(&[1, 2, 3]);
        f.count_tun_frame(&frame[..VNET_HDR_LEN + 30]);
        let snap = f.tables.flows(10);
        // 3 datagrams of 140, 140 and 90 bytes, then one of 60.
        assert_eq!(snap[0].down, (4, 370 + 60));
        assert_eq!(snap[0].key, key);
        // A UDP super-packet (USO): 8-byte headers.
        let mut u = udp_packet(CH, VIPA, 53, 4001, &[7u8; 250]);
        let ukey = pkt::flow_key(&u).unwrap().reversed();
        f.tables.insert_new(ukey, NO_TUNNEL).unwrap();
        let uhdr = VirtioNetHdr {
            gso_type: VirtioNetHdr::GSO_UDP_L4,
            hdr_len: 28,
            csum_offset: 6,
            ..hdr
        };
        let mut uframe = vec![0u8; VNET_HDR_LEN];
        uhdr.emit(&mut uframe).unwrap();
        uframe.append(&mut u);
        f.count_tun_frame(&uframe);
        let down: Vec<_> = f
            .tables
            .flows(10)
            .into_iter()
            .map(|s| (s.key, s.down))
            .collect();
        assert!(down.contains(&(ukey, (3, 278 + 2 * 28))), "{down:?}");
        // At the anchor frames are not counted this way.
        let (a, _e) = forwarder(Mode::Anchor, false);
        a.tables.insert_new(key, NO_TUNNEL).unwrap();
        a.count_tun_frame(&frame);
        assert_eq!(a.tables.flows(10)[0].down, (0, 0));
    }

    #[test]
    fn mobile_hold_then_release() {
        let (f, ev) = forwarder(Mode::Mobile, true);
        add(&f, 1, "198.18.2.1:1800");
        add(&f, 2, "198.18.2.1:1800");
        f.tables.set_default(Some(1));
        let mut p = udp_packet(VIPA, CH, 4000, 53, b"x");
        let TunVerdict::Hold(key) = f.on_tun(&mut p, Instant::now()) else {
            panic!("expected hold")
        };
        assert!(matches!(ev.try_recv(), Ok(Event::NewFlow { .. })));
        assert!(f.release(&key, false).is_none(), "still pending");
        f.tables.set_flow(key, Some(2));
        assert!(matches!(f.release(&key, false), Some(TunVerdict::Send(t)) if t.id == 2));
        // Another flow times out to the default.
        let mut q = udp_packet(VIPA, CH, 4001, 53, b"x");
        let TunVerdict::Hold(k2) = f.on_tun(&mut q, Instant::now()) else {
            panic!("expected hold")
        };
        assert!(matches!(f.release(&k2, true), Some(TunVerdict::Send(t)) if t.id == 1));
        assert!(matches!(f.on_tun(&mut q, Instant::now()), TunVerdict::Send(t) if t.id == 1));
    }

    #[test]
    fn anchor_spoof_learn_and_downlink() {
        let (f, ev) = forwarder(Mode::Anchor, false);
        add(&f, 10, "198.18.0.1:40000");
        add(&f, 11, "198.18.1.1:40001");
        f.tables
            .bind_host(1, "100.64.0.2".parse().unwrap(), vec![10, 11]);
        let now = Instant::now();
        let wlan: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let umts: SocketAddr = "198.18.1.1:40001".parse().unwrap();
        let mut up = udp_packet(VIPA, CH, 5000, 7, b"hello");
        assert_eq!(f.on_net(None, umts, &mut up, now), NetVerdict::ToTun);
        // Spoofed source.
        let mut spoof = udp_packet([100, 64, 0, 3], CH, 5000, 7, b"x");
        assert_eq!(
            f.on_net(None, wlan, &mut spoof, now),
            NetVerdict::Drop(DropReason::SpoofedSource)
        );
        // Unknown source address: no tunnel.
        assert_eq!(
            f.on_net(None, "198.18.9.9:1".parse().unwrap(), &mut up, now),
            NetVerdict::Drop(DropReason::NoTunnel)
        );
        // Malformed payloads.
        for bad in [
            &[][..],
            &[0x17, 0, 0][..],
            &[0x45, 0][..],
            &[0, 9, 0, 0][..],
        ] {
            let mut b = bad.to_vec();
            assert!(matches!(
                f.on_net(None, wlan, &mut b, now),
                NetVerdict::Drop(_)
            ));
        }
        // Downlink reply follows the learned tunnel (11).
        let mut down = udp_packet(CH, VIPA, 7, 5000, b"hi");
        assert!(matches!(f.on_tun(&mut down, now), TunVerdict::Send(t) if t.id == 11));
        // The flow moves when its next packet comes in on 10.
        assert_eq!(f.on_net(None, wlan, &mut up, now), NetVerdict::ToTun);
        assert!(matches!(f.on_tun(&mut down, now), TunVerdict::Send(t) if t.id == 10));
        // Unknown flow towards the host: its last tunnel.
        let mut other = udp_packet(CH, VIPA, 9, 9, b"");
        assert!(matches!(f.on_tun(&mut other, now), TunVerdict::Send(t) if t.id == 10));
        // Unknown VIPA: no tunnel.
        let mut nobody = udp_packet(CH, [100, 64, 0, 9], 9, 9, b"");
        assert!(matches!(
            f.on_tun(&mut nobody, now),
            TunVerdict::Drop(DropReason::NoTunnel)
        ));
        assert!(ev.try_recv().is_err());
    }

    fn udp6_packet(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let src: std::net::Ipv6Addr = src.parse().unwrap();
        let dst: std::net::Ipv6Addr = dst.parse().unwrap();
        let ulen = 8 + payload.len();
        let mut p = vec![0u8; 40 + ulen];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p[40..42].copy_from_slice(&sport.to_be_bytes());
        p[42..44].copy_from_slice(&dport.to_be_bytes());
        p[44..46].copy_from_slice(&(ulen as u16).to_be_bytes());
        p[48..].copy_from_slice(payload);
        p
    }

    #[test]
    fn ipv6_both_modes() {
        let (m, _ev) = forwarder(Mode::Mobile, false);
        add(&m, 1, "198.18.2.1:1800");
        m.tables.set_default(Some(1));
        let mut p = udp6_packet("fd00::2", "2001:db8::1", 4000, 53, b"v6");
        assert!(matches!(m.on_tun(&mut p, Instant::now()), TunVerdict::Send(t) if t.id == 1));
        assert_eq!(
            m.on_net(
                Some(1),
                "198.18.2.1:1800".parse().unwrap(),
                &mut p,
                Instant::now()
            ),
            NetVerdict::ToTun
        );

        let (a, _ev) = forwarder(Mode::Anchor, false);
        add(&a, 10, "198.18.0.1:40000");
        a.tables.bind_host(1, "fd00::2".parse().unwrap(), vec![10]);
        let from: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        assert_eq!(
            a.on_net(None, from, &mut p, Instant::now()),
            NetVerdict::ToTun
        );
        let mut spoof = udp6_packet("fd00::3", "2001:db8::1", 4000, 53, b"v6");
        assert_eq!(
            a.on_net(None, from, &mut spoof, Instant::now()),
            NetVerdict::Drop(DropReason::SpoofedSource)
        );
        let mut down = udp6_packet("2001:db8::1", "fd00::2", 53, 4000, b"r");
        assert!(matches!(a.on_tun(&mut down, Instant::now()), TunVerdict::Send(t) if t.id == 10));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        let (m, _e1) = forwarder(Mode::Mobile, true);
        let (a, _e2) = forwarder(Mode::Anchor, false);
        add(&a, 10, "198.18.0.1:40000");
        a.tables
            .bind_host(1, "100.64.0.2".parse().unwrap(), vec![10]);
        let from: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..200), |mut b| {
                let _ = m.on_tun(&mut b, Instant::now());
                let _ = m.on_net(Some(1), from, &mut b, Instant::now());
                let _ = a.on_net(None, from, &mut b, Instant::now());
                let _ = a.on_tun(&mut b, Instant::now());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn blocked_flows_are_dropped_and_counted() {
        let (f, _ev) = forwarder(Mode::Mobile, false);
        add(&f, 1, "198.18.2.1:1800");
        f.tables.set_default(Some(1));
        let mut p = udp_packet(VIPA, CH, 1000, 53, b"x");
        let key = pkt::flow_key(&p).unwrap();
        f.tables.set_flow(key, Some(crate::BLOCKED));
        assert!(matches!(
            f.on_tun(&mut p, Instant::now()),
            TunVerdict::Drop(DropReason::PolicyWait)
        ));
        // Placed on a tunnel again: it flows.
        f.tables.set_flow(key, Some(1));
        assert!(matches!(f.on_tun(&mut p, Instant::now()), TunVerdict::Send(t) if t.id == 1));
    }

    #[test]
    fn control_frames_and_keepalive() {
        let (f, ev) = forwarder(Mode::Anchor, false);
        add(&f, 10, "198.18.0.1:40000");
        let from: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let mut ka = pkt::control_frame(ControlKind::KeepaliveRequest, &[7; 16]).unwrap();
        assert_eq!(
            f.on_net(None, from, &mut ka, Instant::now()),
            NetVerdict::Reply
        );
        assert_eq!(ka[1], 2);
        assert_eq!(&ka[4..], &[7; 16]);
        // Signalling from an address with no tunnel yet (tunnel setup) goes up.
        let mut sip =
            pkt::control_frame(ControlKind::Signalling, b"MESSAGE sip:an SIP/2.0\r\n\r\n").unwrap();
        let unknown: SocketAddr = "198.18.1.1:5".parse().unwrap();
        assert_eq!(
            f.on_net(None, unknown, &mut sip, Instant::now()),
            NetVerdict::Consumed
        );
        match ev.try_recv() {
            Ok(Event::ControlFrame {
                tunnel: None,
                from,
                kind: ControlKind::Signalling,
                body,
                ..
            }) => {
                assert_eq!(from, unknown);
                assert!(body.starts_with(b"MESSAGE"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Mobile: keepalive replies go to the control thread with a timestamp.
        let (m, mev) = forwarder(Mode::Mobile, false);
        let mut rep = pkt::control_frame(ControlKind::KeepaliveReply, &[1; 16]).unwrap();
        assert_eq!(
            m.on_net(Some(3), from, &mut rep, Instant::now()),
            NetVerdict::Consumed
        );
        assert!(matches!(
            mev.try_recv(),
            Ok(Event::ControlFrame {
                tunnel: Some(3),
                kind: ControlKind::KeepaliveReply,
                ..
            })
        ));
    }
}

/// Bench access to the per-packet path (not a stable API).
pub(crate) mod bench_api {
    use super::*;
    use crate::control::KernelNat;
    use crate::tables::TunnelSocket;

    /// A forwarder over fresh tables, for benches.
    pub struct BenchForwarder(Forwarder, crossbeam_channel::Receiver<Event>);

    /// Outcome summary.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        /// Sent into this tunnel.
        Tunnel(u32),
        /// To the TUN.
        Tun,
        /// Anything else.
        Other,
    }

    impl BenchForwarder {
        /// `mobile`: mobile host mode, else anchor. Tunnels 1 and 2 exist; at the anchor host 1
        /// (VIPA `vipa`) owns them, with peer addresses `peers`.
        pub fn new(mobile: bool, vipa: std::net::IpAddr, peers: [SocketAddr; 2]) -> BenchForwarder {
            Self::with_nat(mobile, vipa, peers, Arc::new(KernelNat))
        }

        /// Same, with a NAT hook.
        pub fn with_nat(
            mobile: bool,
            vipa: std::net::IpAddr,
            peers: [SocketAddr; 2],
            nat: Arc<dyn NatHook>,
        ) -> BenchForwarder {
            let (tx, rx) = crossbeam_channel::bounded(1 << 16);
            let mode = if mobile { Mode::Mobile } else { Mode::Anchor };
            let tables = Arc::new(Tables::new(1 << 22));
            for (i, p) in peers.iter().enumerate() {
                tables.add_tunnel(Tunnel::new(i as u32 + 1, TunnelSocket::Shared, *p, *p));
            }
            tables.set_default(Some(1));
            tables.bind_host(1, vipa, vec![1, 2]);
            BenchForwarder(
                Forwarder {
                    mode,
                    shard: 0,
                    tables,
                    stats: Arc::new(ShardStats::default()),
                    events: tx,
                    nat,
                    answer_keepalives: true,
                    hold: false,
                },
                rx,
            )
        }
        /// Puts a flow (from this packet) on `tunnel`.
        pub fn set_flow(&self, pkt: &[u8], tunnel: u32) {
            if let Some(k) = pkt::flow_key(pkt) {
                self.0.tables.set_flow(k, Some(tunnel));
            }
        }
        /// Inserts `n` flows `vipa:(port) -> 198.18.x.y:443` on tunnel 1 or 2 (for table-size
        /// benches); returns their keys.
        pub fn populate(&self, vipa: std::net::IpAddr, n: u32) -> Vec<FlowKey> {
            (0..n)
                .map(|i| {
                    let k = FlowKey {
                        proto: wire::IpProtocol::Tcp,
                        src: vipa,
                        dst: std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                            0xc612_0000 | (i >> 14),
                        )),
                        src_port: (i & 0x3fff) as u16 + 1024,
                        dst_port: 443,
                    };
                    self.0.tables.set_flow(k, Some(1 + (i & 1)));
                    k
                })
                .collect()
        }
        /// PAFT lookup only; returns the tunnel id (0 if none).
        pub fn route(&self, key: &FlowKey) -> u32 {
            match self.0.tables.route(key, Dir::Up, 64) {
                Route::Tunnel(t) => t,
                _ => 0,
            }
        }
        /// TUN -> tunnel decision.
        pub fn on_tun(&self, pkt: &mut [u8]) -> Outcome {
            match self.0.on_tun(pkt, Instant::now()) {
                TunVerdict::Send(t) => Outcome::Tunnel(t.id),
                _ => Outcome::Other,
            }
        }
        /// Tunnel -> TUN decision.
        pub fn on_net(&self, from: SocketAddr, payload: &mut [u8]) -> Outcome {
            while self.1.try_recv().is_ok() {}
            match self.0.on_net(None, from, payload, Instant::now()) {
                NetVerdict::ToTun => Outcome::Tun,
                _ => Outcome::Other,
            }
        }
    }
}
