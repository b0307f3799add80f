//! Test harness: one anchor (registrar) and N mobile hosts (clients) joined by a virtual
//! network with a virtual clock, loss and latency knobs (quinn-proto `tests/util.rs`,
//! quiche `test_utils::Pipe`). `drive_*` jumps the clock to the earliest `poll_timeout()`.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use signaling_proto::client::{self, Client, ClientConfig};
use signaling_proto::credentials::Credentials;
use signaling_proto::registrar::{self, Registrar, RegistrarConfig};
use signaling_proto::{Path, Transmit};

/// Direction of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Mobile host `i` to the anchor.
    ToAnchor(usize),
    /// Anchor to mobile host `i`.
    ToMh(usize),
}

/// A datagram that left an endpoint (whether or not it was dropped).
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Duration,
    pub dir: Dir,
    pub dropped: bool,
    pub bytes: Vec<u8>,
}

impl Sent {
    pub fn first_line(&self) -> String {
        let s = String::from_utf8_lossy(&self.bytes);
        s.lines().next().unwrap_or("").to_owned()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

pub type DropFn = Box<dyn FnMut(Dir, &[u8]) -> bool>;

pub struct Pair {
    pub epoch: Instant,
    pub now: Instant,
    pub anchor: Registrar,
    pub mhs: Vec<Client>,
    pub anchor_sip: SocketAddr,
    pub anchor_tunnel: SocketAddr,
    pub latency: Duration,
    pub drop: Option<DropFn>,
    pub log: Vec<Sent>,
    pub anchor_events: Vec<registrar::Event>,
    pub mh_events: Vec<Vec<client::Event>>,
    in_flight: Vec<(Instant, Dir, Path, Vec<u8>)>,
}

#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    Instant::now()
}

pub const USERS: [(&str, &str); 4] = [
    ("mh1", "pw1"),
    ("mh2", "pw2"),
    ("mh3", "pw3"),
    ("mh4", "pw4"),
];

pub fn creds() -> Credentials {
    let mut c = Credentials::new("upmt");
    for (u, p) in USERS {
        c.add_password(u, p);
    }
    c
}

impl Pair {
    /// An anchor with `cfg` and `n` clients (users mh1.., right passwords).
    pub fn new(cfg: RegistrarConfig, n: usize) -> Pair {
        let epoch = base_instant();
        let anchor = Registrar::new(
            epoch,
            cfg,
            creds(),
            Box::new(rand::rngs::StdRng::seed_from_u64(1)),
        )
        .unwrap();
        let anchor_sip: SocketAddr = "198.18.2.1:5060".parse().unwrap();
        let mut p = Pair {
            epoch,
            now: epoch,
            anchor,
            mhs: Vec::new(),
            anchor_sip,
            anchor_tunnel: "198.18.2.1:1800".parse().unwrap(),
            latency: Duration::from_millis(10),
            drop: None,
            log: Vec::new(),
            anchor_events: Vec::new(),
            mh_events: Vec::new(),
            in_flight: Vec::new(),
        };
        for (u, pw) in USERS.iter().take(n) {
            p.add_client(u, pw);
        }
        p
    }

    pub fn default_pair() -> Pair {
        Pair::new(RegistrarConfig::default(), 1)
    }

    pub fn add_client(&mut self, user: &str, password: &str) -> usize {
        let i = self.mhs.len();
        let mut cfg = ClientConfig::new(user, password, "upmt", self.anchor_sip);
        cfg.expires = 120;
        let seed = 100 + i as u64;
        self.mhs.push(Client::new(
            cfg,
            Box::new(rand::rngs::StdRng::seed_from_u64(seed)),
        ));
        self.mh_events.push(Vec::new());
        i
    }

    pub fn mh(&mut self) -> &mut Client {
        &mut self.mhs[0]
    }

    /// The MH `i`'s SIP address as the anchor sees it (after its local NAT).
    pub fn mh_sip_addr(i: usize) -> SocketAddr {
        format!("198.18.0.{}:{}", 1 + i, 30000 + i).parse().unwrap()
    }

    /// The MH `i`'s outer address of the tunnel on `link` as the anchor sees it.
    pub fn mh_link_addr(i: usize, link: u32) -> SocketAddr {
        format!("198.18.{}.{}:{}", link, 1 + i, 40000 + i)
            .parse()
            .unwrap()
    }

    fn route_from_mh(&self, i: usize, t: &Transmit) -> Path {
        match t.path {
            Path::Udp(_) => Path::Udp(Self::mh_sip_addr(i)),
            Path::Tunnel { link, .. } => Path::Tunnel {
                link: 0,
                remote: Self::mh_link_addr(i, link),
            },
        }
    }

    fn route_from_anchor(&self, t: &Transmit) -> Option<(usize, Path)> {
        for i in 0..self.mhs.len() {
            match t.path {
                Path::Udp(a) if a == Self::mh_sip_addr(i) => {
                    return Some((i, Path::Udp(self.anchor_sip)))
                }
                Path::Tunnel { remote, .. } => {
                    for link in 0..8 {
                        if remote == Self::mh_link_addr(i, link) {
                            return Some((
                                i,
                                Path::Tunnel {
                                    link,
                                    remote: self.anchor_tunnel,
                                },
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn send(&mut self, dir: Dir, path: Path, bytes: Vec<u8>) {
        let dropped = match &mut self.drop {
            Some(f) => f(dir, &bytes),
            None => false,
        };
        self.log.push(Sent {
            at: self.now - self.epoch,
            dir,
            dropped,
            bytes: bytes.clone(),
        });
        if !dropped {
            self.in_flight
                .push((self.now + self.latency, dir, path, bytes));
        }
    }

    /// Injects a raw datagram towards the anchor, as if from MH `i` over `path`
    /// (already translated to the anchor's view).
    pub fn inject_to_anchor(&mut self, path: Path, bytes: &[u8]) {
        self.anchor.handle_datagram(self.now, path, bytes);
    }

    fn flush(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.mhs.len() {
            while let Some(t) = self.mhs[i].poll_transmit(self.now) {
                let path = self.route_from_mh(i, &t);
                self.send(Dir::ToAnchor(i), path, t.payload);
                any = true;
            }
            while let Some(e) = self.mhs[i].poll_event() {
                self.mh_events[i].push(e);
            }
        }
        while let Some(t) = self.anchor.poll_transmit(self.now) {
            if let Some((i, path)) = self.route_from_anchor(&t) {
                self.send(Dir::ToMh(i), path, t.payload);
            }
            any = true;
        }
        while let Some(e) = self.anchor.poll_event() {
            self.anchor_events.push(e);
        }
        any
    }

    fn deliver_due(&mut self) -> bool {
        let now = self.now;
        let Some(idx) = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, f)| f.0 <= now)
            .min_by_key(|(_, f)| f.0)
            .map(|(i, _)| i)
        else {
            return false;
        };
        let (_, dir, path, bytes) = self.in_flight.remove(idx);
        match dir {
            Dir::ToAnchor(_) => self.anchor.handle_datagram(now, path, &bytes),
            Dir::ToMh(i) => self.mhs[i].handle_datagram(now, path, &bytes),
        }
        true
    }

    /// Runs the network until `until` (virtual time).
    pub fn drive_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.flush();
            if self.deliver_due() {
                continue;
            }
            let next = self
                .mhs
                .iter()
                .filter_map(|m| m.poll_timeout())
                .chain(self.anchor.poll_timeout())
                .chain(self.in_flight.iter().map(|f| f.0))
                .min();
            match next {
                Some(t) if t <= until => {
                    if t > self.now {
                        self.now = t;
                    }
                    for m in &mut self.mhs {
                        m.handle_timeout(self.now);
                    }
                    self.anchor.handle_timeout(self.now);
                }
                _ => {
                    self.now = until.max(self.now);
                    self.flush();
                    return;
                }
            }
        }
        panic!("drive_until: no progress (timer not cleared?)");
    }

    pub fn drive_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.drive_until(until);
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// Log entries whose first line starts with `prefix`.
    pub fn sent(&self, prefix: &str) -> Vec<&Sent> {
        self.log
            .iter()
            .filter(|s| s.first_line().starts_with(prefix))
            .collect()
    }
}
