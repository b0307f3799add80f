//! Root engine tests: real TUN devices and UDP sockets in network namespaces this test creates.
//!
//! ```text
//!            w0 192.168.100.25/24 ---- aw0 192.168.100.1/24
//!   [mh]                                                  [an] ac0 198.18.3.254/24 ---- c0 198.18.3.1/24 [ch]
//!   upmt0 = 100.64.0.2                                         lo 198.18.2.1 (tunnel port 1800)
//!            u0 10.10.10.25/24   ---- au0 10.10.10.1/24        upmt0: 100.64.0.0/16 routed here,
//!                                                              nftables masquerade on ac0
//! ```
//! Two tunnels from mh (over w0 and u0, `SO_BINDTODEVICE`) to 198.18.2.1:1800. The test is the
//! control side of both engines (no signalling): it adds tunnels, binds the host, moves flows.
//! Namespaces are `u<pid>-<n>-{mh,an,ch}`, removed by a Drop guard even on failure.
//! Prerequisites (root, `ip`, `nft`, `ping`) are checked first; missing ones FAIL the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command as Proc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::{
    control_frame, Backend, Command, ControlKind, DropReason, Engine, EngineConfig, Event, FlowKey,
    Mode, StatsSnapshot,
};

static SEQ: AtomicUsize = AtomicUsize::new(0);

const VIPA: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
const CH: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
const AN_TUNNEL: &str = "198.18.2.1:1800";

fn require_prereqs() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "root_engine tests need root (network namespaces, TUN)"
    );
    for tool in ["ip", "nft", "ping"] {
        let ok = Proc::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "root_engine tests need `{tool}` in PATH (apt-get install iproute2 nftables iputils-ping)");
    }
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "root_engine tests need /dev/net/tun"
    );
}

fn sh(cmd: &str) {
    let out = Proc::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "command failed: {cmd}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh_ok(cmd: &str) -> bool {
    Proc::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        dataplane::sys::netns::enter(&ns).expect("enter netns");
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

struct Bed {
    mh: String,
    an: String,
    ch: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for ns in [&self.mh, &self.an, &self.ch] {
            let _ = Proc::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// How the anchor NATs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NatMode {
    /// nftables masquerade on ac0 (public address 198.18.3.254).
    Kernel,
    /// The `nat` crate inside the engine (public address 198.18.2.100, routed to the TUN).
    Napt,
}

impl Bed {
    fn new(nat: NatMode) -> Bed {
        let p = format!(
            "u{}-{}-",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let bed = Bed {
            mh: format!("{p}mh"),
            an: format!("{p}an"),
            ch: format!("{p}ch"),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (mh, an, ch) = (&bed.mh, &bed.an, &bed.ch);
        for ns in [mh, an, ch] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        }
        sh(&format!(
            "ip -n {mh} link add w0 type veth peer name aw0 netns {an}"
        ));
        sh(&format!(
            "ip -n {mh} link add u0 type veth peer name au0 netns {an}"
        ));
        sh(&format!(
            "ip -n {an} link add ac0 type veth peer name c0 netns {ch}"
        ));
        sh(&format!(
            "ip -n {mh} addr add 192.168.100.25/24 dev w0 && ip -n {mh} link set w0 up && \
             ip -n {mh} addr add 10.10.10.25/24 dev u0 && ip -n {mh} link set u0 up && \
             ip -n {mh} route add 198.18.2.1/32 via 192.168.100.1 dev w0 && \
             ip -n {mh} route add 198.18.2.1/32 via 10.10.10.1 dev u0 metric 100"
        ));
        sh(&format!(
            "ip -n {an} addr add 198.18.2.1/32 dev lo && \
             ip -n {an} addr add 192.168.100.1/24 dev aw0 && ip -n {an} link set aw0 up && \
             ip -n {an} addr add 10.10.10.1/24 dev au0 && ip -n {an} link set au0 up && \
             ip -n {an} addr add 198.18.3.254/24 dev ac0 && ip -n {an} link set ac0 up && \
             ip netns exec {an} sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0"
        ));
        if nat == NatMode::Kernel {
            sh(&format!(
            "ip netns exec {an} nft -f - <<'EOF'\ntable ip upmt_test {{\n chain post {{\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"ac0\" ip saddr 100.64.0.0/16 masquerade\n }}\n}}\nEOF"
            ));
        }
        sh(&format!(
            "ip -n {ch} addr add 198.18.3.1/24 dev c0 && ip -n {ch} link set c0 up && ip -n {ch} route add default via 198.18.3.254"
        ));
        bed
    }

    /// UDP echo on ch:7 and TCP echo on ch:9; records the UDP peers seen.
    fn start_echo(&self) -> Arc<Mutex<Vec<SocketAddr>>> {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (p2, stop) = (peers.clone(), self.stop.clone());
        let ns = self.ch.clone();
        std::thread::spawn(move || {
            dataplane::sys::netns::enter(&ns).unwrap();
            let s = UdpSocket::bind("198.18.3.1:7").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    p2.lock().unwrap().push(from);
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        });
        let (ns, stop) = (self.ch.clone(), self.stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            dataplane::sys::netns::enter(&ns).unwrap();
            let l = TcpListener::bind("198.18.3.1:9").unwrap();
            tx.send(()).unwrap();
            l.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || {
                            let mut b = vec![0u8; 65536];
                            while let Ok(n) = c.read(&mut b) {
                                if n == 0 || c.write_all(&b[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        rx.recv().unwrap();
        peers
    }
}

fn engine_in(ns: &str, cfg: EngineConfig) -> Engine {
    in_ns(ns, move || Engine::start(cfg).expect("engine start"))
}

fn wait_event(e: &Engine, what: &str, mut f: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(ev) = e.handle().events.recv_timeout(Duration::from_millis(50)) {
            if f(&ev) {
                return ev;
            }
        }
    }
    panic!("no event: {what}");
}

fn tunnel_counts(s: &StatsSnapshot, id: u32) -> ((u64, u64), (u64, u64)) {
    let t = s
        .tunnels
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("tunnel {id} in stats"));
    (t.tx, t.rx)
}

/// UDP echo round trip from mh: the payload must come back byte for byte.
fn udp_echo(ns: &str, local_port: u16, payload: Vec<u8>) -> bool {
    in_ns(ns, move || {
        let s = UdpSocket::bind(("0.0.0.0", local_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            s.send_to(&payload, (CH, 7)).unwrap();
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return buf[..n] == payload[..];
            }
        }
        false
    })
}

fn raw_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Offloads in a suite run: off, on, or on with the kernel made to refuse them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Off {
    No,
    On,
    Faults,
}

fn suite(backend: Backend, nat: NatMode, vnet_hdr: bool) {
    suite_with(backend, nat, vnet_hdr, Off::No)
}

/// Sum of one offload counter over both engines' shards.
/// From `port` on the mobile host, one 3000-byte send with `UDP_SEGMENT` 1200 to ch's UDP
/// echo, up to 3 times until the echo comes back whole: the sizes received, whether they
/// joined to the data, and the attempts it took.
fn gso_echo(mh: &str, port: u16) -> (Vec<usize>, bool, u32) {
    in_ns(mh, move || {
        use std::os::fd::AsFd;
        let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        s.connect((CH, 7)).unwrap();
        dataplane::sys::udp::set_udp_segment(s.as_fd(), 1200).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 253) as u8).collect();
        ask_until_whole(&s, &data, &data)
    })
}

/// Sends `request` on the connected `s` and collects datagrams until they join to `want`,
/// up to 3 times (a lost datagram: ask again): the sizes received last, whether they joined
/// to `want`, and the attempts it took.
fn ask_until_whole(s: &UdpSocket, request: &[u8], want: &[u8]) -> (Vec<usize>, bool, u32) {
    let mut buf = vec![0u8; 65536];
    let mut last = (Vec::new(), false, 0);
    for attempt in 1..=3 {
        s.send(request).unwrap();
        let (mut sizes, mut joined) = (Vec::new(), Vec::new());
        while joined.len() < want.len() {
            match s.recv(&mut buf) {
                Ok(n) => {
                    sizes.push(n);
                    joined.extend_from_slice(&buf[..n]);
                }
                Err(_) => break,
            }
        }
        last = (sizes, joined == want, attempt);
        if last.1 {
            break;
        }
    }
    last
}

fn offload_sum(engines: &[&Engine], f: impl Fn(&dataplane::OffloadSnapshot) -> u64) -> u64 {
    engines
        .iter()
        .flat_map(|e| e.handle().stats().shards)
        .map(|s| f(&s.offload))
        .sum()
}

/// TCP/UDP checksum errors a namespace's stack counted (`nstat -az`).
fn csum_errors(ns: &str) -> u64 {
    let out = Proc::new("ip")
        .args(["netns", "exec", ns, "nstat", "-az"])
        .output()
        .expect("nstat");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("CsumErrors"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn suite_with(backend: Backend, nat: NatMode, vnet_hdr: bool, off: Off) {
    require_prereqs();
    let bed = Bed::new(nat);
    let peers = bed.start_echo();

    // --- engines ---
    let mut acfg = EngineConfig::new(Mode::Anchor, "upmt0");
    acfg.shards = 2;
    acfg.backend = backend;
    acfg.listen = Some(AN_TUNNEL.parse().unwrap());
    acfg.vnet_hdr = vnet_hdr;
    acfg.offload = off != Off::No;
    acfg.offload_faults = dataplane::OffloadFaults {
        refuse_tun_offload: false,
        fail_gso_send: off == Off::Faults,
        // With offload on, the anchor's second UDP super-packet is refused by the kernel
        // (a bad header on purpose): the UDP section below sees a coalesced write succeed,
        // then the fallback to datagrams one by one.
        fail_udp_coalesced_write: off == Off::On,
    };
    let public = if nat == NatMode::Napt {
        Ipv4Addr::new(198, 18, 2, 100)
    } else {
        Ipv4Addr::new(198, 18, 3, 254)
    };
    if nat == NatMode::Napt {
        let n = nat::Nat::new(nat::NatConfig::new(vec![public])).unwrap();
        acfg.nat = Arc::new(dataplane::Napt(Arc::new(n)));
    }
    let an = engine_in(&bed.an, acfg.clone());
    assert_eq!(
        an.backend(),
        if backend == Backend::Poll {
            Backend::Poll
        } else {
            Backend::Uring
        }
    );
    sh(&format!(
        "ip -n {0} link set upmt0 mtu 1472 && ip -n {0} route add 100.64.0.0/16 dev upmt0",
        bed.an
    ));
    if nat == NatMode::Napt {
        sh(&format!(
            "ip -n {0} route add {public}/32 dev upmt0",
            bed.an
        ));
    }

    let mut mcfg = EngineConfig::new(Mode::Mobile, "upmt0");
    mcfg.shards = 2;
    mcfg.backend = backend;
    mcfg.vnet_hdr = vnet_hdr;
    mcfg.offload = off != Off::No;
    // Faults: the MH's TUN refuses TSO (vnet header, single packets, coalesced writes), and
    // the anchor's first GSO send per socket is refused (EINVAL) and falls back.
    mcfg.offload_faults = dataplane::OffloadFaults {
        refuse_tun_offload: off == Off::Faults,
        fail_udp_coalesced_write: false,
        fail_gso_send: false,
    };
    // First packets of a new flow wait (bounded) for the control side's placement.
    mcfg.new_flow_wait = Some(Duration::from_millis(150));
    let mh = engine_in(&bed.mh, mcfg.clone());
    sh(&format!(
        "ip -n {0} link set upmt0 mtu 1472 && ip -n {0} addr add 100.64.0.2/32 dev upmt0 && \
         ip -n {0} route add 198.18.3.0/24 dev upmt0 src 100.64.0.2",
        bed.mh
    ));

    // --- tunnels (the test plays both control threads) ---
    let remote: SocketAddr = AN_TUNNEL.parse().unwrap();
    let mut mh_locals = Vec::new();
    for (id, dev) in [(1u32, "w0"), (2, "u0")] {
        let src: Ipv4Addr = if id == 1 {
            Ipv4Addr::new(192, 168, 100, 25)
        } else {
            Ipv4Addr::new(10, 10, 10, 25)
        };
        mh.handle()
            .send(Command::AddTunnel {
                id,
                local: SocketAddr::new(IpAddr::V4(src), 0),
                device: Some(dev.into()),
                remote,
            })
            .unwrap();
        let ev = wait_event(
            &mh,
            "TunnelAdded",
            |e| matches!(e, Event::TunnelAdded { id: i, .. } if *i == id),
        );
        let Event::TunnelAdded { local, .. } = ev else {
            unreachable!()
        };
        mh_locals.push(local);
        an.handle()
            .send(Command::AddPeerTunnel { id, remote: local })
            .unwrap();
        wait_event(
            &an,
            "TunnelAdded (anchor)",
            |e| matches!(e, Event::TunnelAdded { id: i, .. } if *i == id),
        );
    }
    an.handle()
        .send(Command::BindHost {
            host: 1,
            vipa: IpAddr::V4(VIPA),
            tunnels: vec![1, 2],
        })
        .unwrap();
    mh.handle().send(Command::SetDefault(Some(1))).unwrap();
    std::thread::sleep(Duration::from_millis(50));

    // --- UDP of several sizes, unchanged end to end; ch sees only the NAT address ---
    for (port, len) in [(5001u16, 1usize), (5002, 100), (5003, 1444), (5004, 3000)] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        if !udp_echo(&bed.mh, port, payload) {
            panic!(
                "UDP echo of {len} bytes through the tunnel\nMH {:#?}\nAN {:#?}",
                mh.handle().stats(),
                an.handle().stats()
            );
        }
    }
    assert!(
        peers
            .lock()
            .unwrap()
            .iter()
            .all(|p| p.ip() == IpAddr::V4(public)),
        "ch sees only the NAT address {public}"
    );
    let m = mh.handle().stats();
    assert!(
        m.flows
            .iter()
            .any(|f| f.key.src_port == 5003 && f.key.dst_port == 7),
        "flow in the MH PAFT"
    );
    let a = an.handle().stats();
    assert!(
        a.flows
            .iter()
            .any(|f| f.key.src_port == 5003 && f.tunnel == Some(1)),
        "anchor learned the flow on tunnel 1"
    );

    // --- ICMP: plain, full MTU with DF, and fragmented ---
    for args in [
        "-c 2 -i 0.2",
        "-c 2 -i 0.2 -s 1444 -M do",
        "-c 2 -i 0.2 -s 3000",
    ] {
        assert!(
            sh_ok(&format!(
                "ip netns exec {} ping -q -W 2 {args} {CH}",
                bed.mh
            )),
            "ping {args}"
        );
    }
    // The full-MTU probe one byte too big is refused locally (TUN MTU 1472).
    assert!(!sh_ok(&format!(
        "ip netns exec {} ping -q -c 1 -W 1 -s 1445 -M do {CH}",
        bed.mh
    )));

    // --- TCP, 2 MB (offload: 24 MB) echoed byte-exact: both directions at once ---
    let csum0 = (csum_errors(&bed.ch), csum_errors(&bed.mh));
    let size = if off == Off::No {
        2_000_000u32
    } else {
        24_000_000
    };
    let ok = in_ns(&bed.mh, move || {
        let mut c =
            TcpStream::connect_timeout(&SocketAddr::from((CH, 9)), Duration::from_secs(3)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut w = c.try_clone().unwrap();
        let d2 = data.clone();
        let writer = std::thread::spawn(move || w.write_all(&d2).unwrap());
        let mut got = vec![0u8; data.len()];
        c.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        got == data
    });
    assert!(ok, "TCP echo byte-exact");
    assert_eq!(
        (csum_errors(&bed.ch), csum_errors(&bed.mh)),
        csum0,
        "no checksum errors at the correspondent or the mobile host"
    );
    if off != Off::No {
        let e = [&an, &mh];
        let tso_in = offload_sum(&e, |o| o.tso_in);
        let gso = offload_sum(&e, |o| o.gso_sends);
        let gro = offload_sum(&e, |o| o.gro_in);
        let coalesced = offload_sum(&e, |o| o.coalesced);
        let fallbacks = offload_sum(&e, |o| o.fallbacks);
        eprintln!(
            "offload {off:?}: tso_in {tso_in}, gso_sends {gso}, gro_in {gro}, coalesced {coalesced}, fallbacks {fallbacks}"
        );
        assert!(
            tso_in > 0 && gso > 0,
            "TCP super-packets segmented and sent with GSO"
        );
        assert!(
            gro > 0 && coalesced > 0,
            "GRO receives coalesced for the TUN"
        );
        if off == Off::Faults {
            // The MH's TUN offload refusal, and the anchor's refused GSO send per socket.
            assert!(fallbacks >= 2, "both fallbacks taken ({fallbacks})");
            let mh_tso: u64 = mh
                .handle()
                .stats()
                .shards
                .iter()
                .map(|s| s.offload.tso_in)
                .sum();
            assert_eq!(mh_tso, 0, "no super-packets from a TUN without TSO");
        } else {
            assert_eq!(fallbacks, 0);
        }
    }

    // --- UDP super-packets: an application sending with UDP_SEGMENT (as QUIC stacks do) ---
    // With offload the TUN hands the engine one USO super-packet per send, which it segments
    // into the tunnel; without, the kernel segments before the TUN. Either way ch gets (and
    // echoes) the datagrams the application meant, byte-exact.
    let uso0 = offload_sum(&[&mh], |o| o.uso_in);
    let coalesced0 = offload_sum(&[&an], |o| o.coalesced);
    let (sizes, exact, attempts) = gso_echo(&bed.mh, 6100);
    assert_eq!(
        (sizes, exact),
        (vec![1200, 1200, 600], true),
        "a UDP GSO send arrives as its datagrams, byte-exact"
    );
    let uso = offload_sum(&[&mh], |o| o.uso_in) - uso0;
    match off {
        Off::On => {
            assert!(
                uso > 0,
                "read as a USO super-packet and segmented by the engine"
            );
            // The anchor gets the send's datagrams in one GRO receive and writes them to its
            // TUN as one UDP super-packet, which the kernel segments toward ch.
            assert!(
                offload_sum(&[&an], |o| o.coalesced) > coalesced0,
                "UDP datagrams coalesced for the anchor's TUN"
            );
            assert_eq!(attempts, 1, "the coalesced write went through");
            // The anchor's next UDP super-packet is refused (fault injection): that send is
            // lost, the shard falls back to datagrams one by one, the retry arrives.
            let fb0 = offload_sum(&[&an], |o| o.fallbacks);
            let (sizes, exact, attempts) = gso_echo(&bed.mh, 6101);
            assert_eq!((sizes, exact), (vec![1200, 1200, 600], true));
            assert_eq!(attempts, 2, "the refused write's datagrams were lost once");
            assert_eq!(
                offload_sum(&[&an], |o| o.fallbacks),
                fb0 + 1,
                "one fallback for the refused coalesced write"
            );
        }
        Off::No | Off::Faults => assert_eq!(uso, 0, "no USO super-packets without the offload"),
    }

    // --- and downstream: ch answers with one UDP_SEGMENT send (a QUIC server's burst) ---
    // The anchor reads it from its TUN as a USO super-packet and sends it segmented in one
    // UDP GSO send; with offload the mobile host receives that in one GRO receive and
    // writes it to its TUN as one UDP super-packet, which the kernel hands to the
    // application as the datagrams ch meant.
    let mh_coalesced0 = offload_sum(&[&mh], |o| o.coalesced);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ch_ns = bed.ch.clone();
    let server = std::thread::spawn(move || {
        use std::os::fd::AsFd;
        dataplane::sys::netns::enter(&ch_ns).expect("enter ch");
        let s = UdpSocket::bind((CH, 6200)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut b = [0u8; 64];
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 11 % 251) as u8).collect();
        dataplane::sys::udp::set_udp_segment(s.as_fd(), 1200).unwrap();
        // One burst per request (the client retries on loss).
        while let Ok((_, peer)) = s.recv_from(&mut b) {
            s.send_to(&data, peer).unwrap();
        }
    });
    ready_rx.recv().unwrap();
    let got = in_ns(&bed.mh, || {
        let s = UdpSocket::bind(("0.0.0.0", 6201)).unwrap();
        s.connect((CH, 6200)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let want: Vec<u8> = (0..3000u32).map(|i| (i * 11 % 251) as u8).collect();
        let (sizes, exact, _) = ask_until_whole(&s, b"burst please", &want);
        (sizes, exact)
    });
    let _ = server.join();
    assert_eq!(
        got,
        (vec![1200, 1200, 600], true),
        "a UDP GSO burst from ch arrives at the application as its datagrams, byte-exact"
    );
    if off == Off::On {
        assert!(
            offload_sum(&[&mh], |o| o.coalesced) > mh_coalesced0,
            "the burst coalesced for the mobile host's TUN"
        );
    }

    // --- handover: a flow moved to tunnel 2 changes path on its next packet, both ways ---
    assert!(udp_echo(&bed.mh, 6000, b"before".to_vec()));
    let (m1_before, m2_before) = {
        let s = mh.handle().stats();
        (tunnel_counts(&s, 1), tunnel_counts(&s, 2))
    };
    let key = FlowKey {
        proto: wire::IpProtocol::Udp,
        src: IpAddr::V4(VIPA),
        dst: IpAddr::V4(CH),
        src_port: 6000,
        dst_port: 7,
    };
    mh.handle()
        .send(Command::SetFlow {
            key,
            tunnel: Some(2),
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        udp_echo(&bed.mh, 6000, b"after".to_vec()),
        "echo after handover"
    );
    let s = mh.handle().stats();
    let (m1_after, m2_after) = (tunnel_counts(&s, 1), tunnel_counts(&s, 2));
    assert_eq!(
        m1_after.0 .0, m1_before.0 .0,
        "nothing more sent on tunnel 1"
    );
    assert!(m2_after.0 .0 > m2_before.0 .0, "sent on tunnel 2");
    assert!(
        m2_after.1 .0 > m2_before.1 .0,
        "reply came back on tunnel 2 (anchor learned it)"
    );
    let a = an.handle().stats();
    assert!(
        a.flows.iter().any(|f| f.key == key && f.tunnel == Some(2)),
        "anchor PAFT moved the flow to tunnel 2"
    );

    // --- placement from the first packet: the control side answers NewFlow with SetFlow ---
    let (m1_before, m2_before) = {
        let s = mh.handle().stats();
        (tunnel_counts(&s, 1), tunnel_counts(&s, 2))
    };
    let ns = bed.mh.clone();
    let client = std::thread::spawn(move || udp_echo(&ns, 7000, b"first".to_vec()));
    let ev = wait_event(
        &mh,
        "NewFlow 7000",
        |e| matches!(e, Event::NewFlow { key, .. } if key.src_port == 7000),
    );
    let Event::NewFlow { key, .. } = ev else {
        unreachable!()
    };
    mh.handle()
        .send(Command::SetFlow {
            key,
            tunnel: Some(2),
        })
        .unwrap();
    assert!(client.join().unwrap(), "echo of a held flow");
    let s = mh.handle().stats();
    assert_eq!(
        tunnel_counts(&s, 1).0 .0,
        m1_before.0 .0,
        "the first packet did not take the default tunnel"
    );
    assert!(
        tunnel_counts(&s, 2).0 .0 > m2_before.0 .0,
        "the first packet took tunnel 2"
    );

    // --- keepalive from the MH: answered by the anchor's data plane, reply to MH control ---
    let body: Vec<u8> = (0..16u8).collect();
    mh.handle()
        .send(Command::SendControl {
            tunnel: 1,
            frame: control_frame(ControlKind::KeepaliveRequest, &body).unwrap(),
        })
        .unwrap();
    let ev = wait_event(&mh, "keepalive reply", |e| {
        matches!(
            e,
            Event::ControlFrame {
                kind: ControlKind::KeepaliveReply,
                ..
            }
        )
    });
    let Event::ControlFrame {
        tunnel, body: got, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((tunnel, got), (Some(1), body.clone()));

    // --- malformed, reserved, spoofed, signalling: from a second "host" socket ---
    let before = an.handle().stats();
    an.handle()
        .send(Command::AddPeerTunnel {
            id: 99,
            remote: "192.168.100.25:40099".parse().unwrap(),
        })
        .unwrap();
    an.handle()
        .send(Command::BindHost {
            host: 2,
            vipa: "100.64.0.9".parse().unwrap(),
            tunnels: vec![99],
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let ka_reply = in_ns(&bed.mh, move || {
        let s = UdpSocket::bind("192.168.100.25:40099").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let to: SocketAddr = AN_TUNNEL.parse().unwrap();
        // Spoofed: host 2 claims host 1's VIPA.
        s.send_to(&raw_udp(VIPA, CH, 1, 7, b"spoof"), to).unwrap();
        // Malformed: bad first byte, truncated IPv4, truncated control frame.
        s.send_to(&[0x17, 0, 0, 0], to).unwrap();
        s.send_to(&[0x45, 0, 0], to).unwrap();
        s.send_to(&[0, 3, 0, 50, b'x'], to).unwrap();
        // Reserved control kind.
        s.send_to(&[0, 9, 0, 0], to).unwrap();
        // Signalling goes to the control thread.
        s.send_to(
            &control_frame(ControlKind::Signalling, b"MESSAGE sip:an SIP/2.0\r\n\r\n").unwrap(),
            to,
        )
        .unwrap();
        // A keepalive is answered in place.
        s.send_to(
            &control_frame(ControlKind::KeepaliveRequest, &[9u8; 16]).unwrap(),
            to,
        )
        .unwrap();
        let mut b = [0u8; 100];
        let (n, _) = s.recv_from(&mut b).unwrap();
        b[..n].to_vec()
    });
    assert_eq!(
        ka_reply,
        control_frame(ControlKind::KeepaliveReply, &[9u8; 16]).unwrap()
    );
    let ev = wait_event(&an, "signalling frame", |e| {
        matches!(
            e,
            Event::ControlFrame {
                kind: ControlKind::Signalling,
                ..
            }
        )
    });
    assert!(matches!(
        ev,
        Event::ControlFrame {
            tunnel: Some(99),
            ..
        }
    ));
    std::thread::sleep(Duration::from_millis(100));
    let after = an.handle().stats();
    let d = |r| after.drops(r) - before.drops(r);
    for r in DropReason::ALL {
        if d(r) > 0 {
            eprintln!(
                "anchor drops during the bad-input phase: {} {}",
                r.name(),
                d(r)
            );
        }
    }
    assert_eq!(d(DropReason::SpoofedSource), 1, "spoofed counted");
    assert_eq!(d(DropReason::Malformed), 3, "malformed counted");
    assert_eq!(
        d(DropReason::ControlRejected),
        1,
        "reserved control kind counted"
    );

    // --- no busy polling: an idle engine makes (almost) no syscalls ---
    let s0: u64 = mh.handle().stats().shards.iter().map(|s| s.syscalls).sum();
    std::thread::sleep(Duration::from_millis(300));
    let s1: u64 = mh.handle().stats().shards.iter().map(|s| s.syscalls).sum();
    assert!(
        s1 - s0 < 10,
        "idle shards must sleep ({} syscalls in 300 ms)",
        s1 - s0
    );

    // --- removing tunnel 2 at the MH: its flows fall back to the default (tunnel 1) ---
    mh.handle().send(Command::RemoveTunnel { id: 2 }).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t1_before = tunnel_counts(&mh.handle().stats(), 1);
    assert!(
        udp_echo(&bed.mh, 6000, b"after removal".to_vec()),
        "flow of a removed tunnel uses the default"
    );
    let s = mh.handle().stats();
    assert!(
        s.tunnels.iter().all(|t| t.id != 2),
        "tunnel 2 gone from the table"
    );
    assert!(tunnel_counts(&s, 1).0 .0 > t1_before.0 .0);
    assert!(
        s.flows.iter().any(|f| f.key == key && f.tunnel.is_none()),
        "flow back on the default rule"
    );

    // --- re-adding tunnel 1 (same id, new socket and port): the old socket is retired ---
    mh.handle()
        .send(Command::AddTunnel {
            id: 1,
            local: "192.168.100.25:0".parse().unwrap(),
            device: Some("w0".into()),
            remote,
        })
        .unwrap();
    let Event::TunnelAdded {
        local: new_local, ..
    } = wait_event(&mh, "TunnelAdded again", |e| {
        matches!(e, Event::TunnelAdded { id: 1, .. })
    })
    else {
        unreachable!()
    };
    assert_ne!(new_local, mh_locals[0]);
    mh_locals[0] = new_local;
    an.handle()
        .send(Command::AddPeerTunnel {
            id: 1,
            remote: new_local,
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        udp_echo(&bed.mh, 6000, b"new socket".to_vec()),
        "echo over the re-added tunnel"
    );

    // --- anchor restart: ICMP port unreachable on the MH's connected sockets must not stop
    // its shards; traffic resumes once the anchor is back with its tunnels ---
    an.shutdown().unwrap();
    assert!(!udp_echo(&bed.mh, 6100, b"anchor down".to_vec()));
    let an = engine_in(&bed.an, acfg.clone());
    sh(&format!(
        "ip -n {0} link set upmt0 mtu 1472 && ip -n {0} route add 100.64.0.0/16 dev upmt0",
        bed.an
    ));
    if nat == NatMode::Napt {
        sh(&format!(
            "ip -n {0} route add {public}/32 dev upmt0",
            bed.an
        ));
    }
    for (i, local) in mh_locals.iter().enumerate() {
        an.handle()
            .send(Command::AddPeerTunnel {
                id: i as u32 + 1,
                remote: *local,
            })
            .unwrap();
    }
    an.handle()
        .send(Command::BindHost {
            host: 1,
            vipa: IpAddr::V4(VIPA),
            tunnels: vec![1, 2],
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        udp_echo(&bed.mh, 6101, b"anchor back".to_vec()),
        "traffic after the anchor restart"
    );
    while let Ok(ev) = mh.handle().events.try_recv() {
        assert!(
            !matches!(ev, Event::ShardFailed { .. } | Event::TunnelError { .. }),
            "unexpected {ev:?}"
        );
    }

    // --- clean shutdown, then the same TUN can be opened again at once ---
    mh.shutdown().unwrap();
    let mh2 = engine_in(&bed.mh, mcfg);
    mh2.shutdown().unwrap();
    an.shutdown().unwrap();
}

#[test]
fn engine_end_to_end_io_uring() {
    suite(Backend::Uring, NatMode::Kernel, false);
}

#[test]
fn engine_end_to_end_fallback() {
    suite(Backend::Poll, NatMode::Kernel, false);
}

#[test]
fn engine_end_to_end_io_uring_napt() {
    suite(Backend::Uring, NatMode::Napt, false);
}

#[test]
fn engine_end_to_end_offload() {
    // Issue 9: TSO on the TUN, UDP GSO sends, UDP GRO receives coalesced for the TUN; our
    // NAT at the anchor rewriting every segment.
    suite_with(Backend::Uring, NatMode::Napt, true, Off::On);
}

#[test]
fn engine_end_to_end_offload_fallbacks() {
    // The kernel refuses the MH's TUN offload and the anchor's first GSO send per socket
    // (real EINVALs, provoked): both sides fall back and forward correctly.
    suite_with(Backend::Uring, NatMode::Kernel, true, Off::Faults);
}

#[test]
fn engine_end_to_end_vnet_hdr() {
    // TUN opened with IFF_VNET_HDR (no offloads enabled): the engine skips the header on
    // read and writes a zeroed one in the receive buffer's headroom; both backends.
    suite(Backend::Uring, NatMode::Kernel, true);
    suite(Backend::Poll, NatMode::Kernel, true);
}

// ---------------------------------------------------------------------------------------------
// Figures (not a pass/fail test): iperf3 single TCP flow mh -> an -> ch through the engine
// (io_uring and fallback), through a naive one-packet-per-syscall relay, and through kernel
// routing, in the same run. Run with:
//   cargo test --release -p dataplane --test root_engine -- --ignored --nocapture figures
// ---------------------------------------------------------------------------------------------

fn iperf(bed: &Bed, secs: u32, extra: &str) -> f64 {
    // A run that could not start (server still busy with the previous one) is retried once.
    let r = iperf_once(bed, secs, extra);
    if r > 0.0 {
        return r;
    }
    std::thread::sleep(Duration::from_millis(500));
    iperf_once(bed, secs, extra)
}

fn iperf_once(bed: &Bed, secs: u32, extra: &str) -> f64 {
    let out = Proc::new("sh")
        .arg("-c")
        .arg(format!(
            "ip netns exec {} iperf3 -c {CH} -t {secs} -J {extra}",
            bed.mh
        ))
        .output()
        .expect("iperf3");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9
}

/// Small-packet rate: iperf3 UDP, 64-byte payloads, unlimited rate; received packets/s.
fn udp_pps(bed: &Bed, secs: u32) -> f64 {
    let out = Proc::new("sh")
        .arg("-c")
        .arg(format!(
            "ip netns exec {} iperf3 -c {CH} -u -b 0 -l 64 -t {secs} -J",
            bed.mh
        ))
        .output()
        .expect("iperf3");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let s = &v["end"]["sum"];
    let (p, l, t) = (
        s["packets"].as_f64().unwrap_or(0.0),
        s["lost_packets"].as_f64().unwrap_or(0.0),
        s["seconds"].as_f64().unwrap_or(1.0),
    );
    (p - l).max(0.0) / t.max(0.001)
}

/// Average ping RTT in ms (20 pings, 20 ms apart).
fn ping_ms(bed: &Bed) -> f64 {
    let out = Proc::new("sh")
        .arg("-c")
        .arg(format!(
            "ip netns exec {} ping -q -c 20 -i 0.02 {CH}",
            bed.mh
        ))
        .output()
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// TCP runs, small-packet rate and RTT for the path currently set up.
fn measure(bed: &Bed, secs: u32, runs: usize) -> (Vec<f64>, f64, f64) {
    let v: Vec<f64> = (0..runs).map(|_| iperf(bed, secs, "")).collect();
    let pps = udp_pps(bed, secs.min(3));
    let rtt = ping_ms(bed);
    (v, pps, rtt)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The naive relay: per direction one thread, one `read` + one `send_to` (or `recv` + `write`)
/// per packet, blocking.
fn naive_relay(bed: &Bed, mh_local: SocketAddr) -> Vec<std::thread::JoinHandle<()>> {
    use std::fs::File;
    let mut hs = Vec::new();
    for (ns, local, peer) in [
        (
            bed.mh.clone(),
            mh_local,
            AN_TUNNEL.parse::<SocketAddr>().unwrap(),
        ),
        (bed.an.clone(), AN_TUNNEL.parse().unwrap(), mh_local),
    ] {
        let stop = bed.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        hs.push(std::thread::spawn(move || {
            dataplane::sys::netns::enter(&ns).unwrap();
            let opts = dataplane::sys::tun::TunOptions {
                name: "upmt0".into(),
                vnet_hdr: false,
                nonblocking: false,
            };
            let t1 = File::from(dataplane::sys::tun::open_queue(&opts).unwrap());
            let t2 = t1.try_clone().unwrap();
            let s1 = UdpSocket::bind(local).unwrap();
            s1.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let s2 = s1.try_clone().unwrap();
            tx.send(()).unwrap();
            let st = stop.clone();
            std::thread::spawn(move || {
                let mut t2 = t2;
                let mut b = vec![0u8; 65536];
                while !st.load(Ordering::Relaxed) {
                    if let Ok(n) = s2.recv(&mut b) {
                        let _ = t2.write(&b[..n]);
                    }
                }
            });
            let mut t1 = t1;
            let mut b = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = t1.read(&mut b) {
                    let _ = s1.send_to(&b[..n], peer);
                }
            }
        }));
        rx.recv().unwrap();
    }
    hs
}

#[test]
#[ignore = "figures, not a test: run by hand (see comment above)"]
fn figures() {
    require_prereqs();
    assert!(sh_ok("command -v iperf3"), "figures need iperf3");
    let secs = 4;
    let runs = 3;
    let bed = Bed::new(NatMode::Kernel);
    let mut server = Proc::new("ip")
        .args(["netns", "exec", &bed.ch, "iperf3", "-s"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut report = Vec::new();

    // Kernel routing, same path (w0), no tunnel.
    sh(&format!(
        "ip -n {0} route replace 198.18.3.0/24 via 192.168.100.1 dev w0",
        bed.mh
    ));
    let (v, pps, rtt) = measure(&bed, secs, runs);
    report.push(format!(
        "kernel routing: TCP {v:.2?} Gb/s, median {:.2}; UDP 64 B {pps:.0} pkt/s; RTT {rtt:.3} ms",
        median(v.clone())
    ));
    sh(&format!("ip -n {0} route del 198.18.3.0/24", bed.mh));

    for (backend, offload) in [
        (Backend::Uring, true),
        (Backend::Uring, false),
        (Backend::Poll, false),
    ] {
        let mut acfg = EngineConfig::new(Mode::Anchor, "upmt0");
        acfg.offload = offload;
        acfg.shards = 1;
        acfg.cpus = vec![1]; // the MH engine's shard is on core 0
        let pin = std::env::var_os("UPMT_FIGURES_NOPIN").is_none();
        acfg.pin_cores = pin;
        acfg.backend = backend;
        acfg.listen = Some(AN_TUNNEL.parse().unwrap());
        let an = engine_in(&bed.an, acfg);
        sh(&format!(
            "ip -n {0} link set upmt0 mtu 1472 && ip -n {0} route replace 100.64.0.0/16 dev upmt0",
            bed.an
        ));
        let mut mcfg = EngineConfig::new(Mode::Mobile, "upmt0");
        mcfg.shards = 1;
        mcfg.backend = backend;
        mcfg.pin_cores = pin;
        mcfg.offload = offload;
        let mh = engine_in(&bed.mh, mcfg);
        sh(&format!(
            "ip -n {0} link set upmt0 mtu 1472 && ip -n {0} addr replace 100.64.0.2/32 dev upmt0 && \
             ip -n {0} route replace 198.18.3.0/24 dev upmt0 src 100.64.0.2",
            bed.mh
        ));
        mh.handle()
            .send(Command::AddTunnel {
                id: 1,
                local: "192.168.100.25:0".parse().unwrap(),
                device: Some("w0".into()),
                remote: AN_TUNNEL.parse().unwrap(),
            })
            .unwrap();
        let Event::TunnelAdded { local, .. } =
            wait_event(&mh, "tunnel", |e| matches!(e, Event::TunnelAdded { .. }))
        else {
            unreachable!()
        };
        an.handle()
            .send(Command::AddPeerTunnel {
                id: 1,
                remote: local,
            })
            .unwrap();
        an.handle()
            .send(Command::BindHost {
                host: 1,
                vipa: IpAddr::V4(VIPA),
                tunnels: vec![1],
            })
            .unwrap();
        mh.handle().send(Command::SetDefault(Some(1))).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let s0 = mh.handle().stats();
        let (v, pps, rtt) = measure(&bed, secs, runs);
        let s1 = mh.handle().stats();
        // Inner packets: a TCP super-packet read from the TUN counts as its segments.
        let pk = |s: &StatsSnapshot| {
            let segs: u64 = s
                .shards
                .iter()
                .map(|x| x.offload.tso_segments - x.offload.tso_in)
                .sum();
            s.total(|x| x.tun_rx).0 + segs + s.total(|x| x.net_rx).0
        };
        let sc = |s: &StatsSnapshot| s.shards.iter().map(|x| x.syscalls).sum::<u64>();
        let per_pkt = (sc(&s1) - sc(&s0)) as f64 / (pk(&s1) - pk(&s0)).max(1) as f64;
        report.push(format!(
            "engine {backend:?}{}: TCP {v:.2?} Gb/s, median {:.2}; UDP 64 B {pps:.0} pkt/s; RTT {rtt:.3} ms; MH syscalls/packet {per_pkt:.3}",
            if offload { " + offload" } else { "" },
            median(v.clone())
        ));
        if std::env::var_os("UPMT_FIGURES_DEBUG").is_some() {
            for (n, e) in [("mh", &mh), ("an", &an)] {
                let s = e.handle().stats();
                let drops: Vec<_> = DropReason::ALL
                    .iter()
                    .map(|r| (r.name(), s.drops(*r)))
                    .filter(|x| x.1 > 0)
                    .collect();
                println!(
                    "{n}: tun_rx {:?} tun_tx {:?} net_rx {:?} net_tx {:?} drops {drops:?}",
                    s.total(|x| x.tun_rx),
                    s.total(|x| x.tun_tx),
                    s.total(|x| x.net_rx),
                    s.total(|x| x.net_tx)
                );
            }
            for ns in [&bed.mh, &bed.an] {
                let o = Proc::new("sh").arg("-c").arg(format!("ip -n {ns} -s link show upmt0; ip netns exec {ns} nstat -az TcpRetransSegs UdpRcvbufErrors UdpSndbufErrors UdpInErrors 2>/dev/null")).output().unwrap();
                println!("{}", String::from_utf8_lossy(&o.stdout));
            }
        }
        mh.shutdown().unwrap();
        an.shutdown().unwrap();
    }

    // Naive relay on the same addresses (TUN queue length as the engine sets it).
    {
        let mh_local: SocketAddr = "192.168.100.25:41000".parse().unwrap();
        let hs = naive_relay(&bed, mh_local);
        sh(&format!("ip -n {0} link set upmt0 up mtu 1472 txqueuelen 4096 && ip -n {0} route replace 100.64.0.0/16 dev upmt0", bed.an));
        sh(&format!(
            "ip -n {0} link set upmt0 up mtu 1472 txqueuelen 4096 && ip -n {0} addr replace 100.64.0.2/32 dev upmt0 && \
             ip -n {0} route replace 198.18.3.0/24 dev upmt0 src 100.64.0.2",
            bed.mh
        ));
        std::thread::sleep(Duration::from_millis(100));
        let (v, pps, rtt) = measure(&bed, secs, runs);
        report.push(format!(
            "naive relay: TCP {v:.2?} Gb/s, median {:.2}; UDP 64 B {pps:.0} pkt/s; RTT {rtt:.3} ms",
            median(v.clone())
        ));
        // The relay threads block in read(2); they end with the process (not joined).
        bed.stop.store(true, Ordering::Relaxed);
        drop(hs);
    }

    let _ = server.kill();
    let _ = server.wait();
    println!("\n=== figures (iperf3 -t {secs}, single TCP flow, {runs} runs) ===");
    for r in &report {
        println!("{r}");
    }
}
