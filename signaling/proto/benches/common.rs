//! Shared setup for the registrar benches: N users, one nonce each, authenticated REGISTER
//! datagrams built outside the timed section.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use signaling_proto::auth::{ha1, request_digest, Algorithm, Authorization, Challenge};
use signaling_proto::credentials::Credentials;
use signaling_proto::registrar::{Registrar, RegistrarConfig};
use signaling_proto::Path;

pub struct Bench {
    pub registrar: Registrar,
    pub now: Instant,
    pub users: Vec<(String, String, String)>, // (user, nonce, ha1)
    pub alg: Algorithm,
    pub counter: u64,
}

pub fn src(i: usize) -> Path {
    let a: SocketAddr = format!("198.18.{}.{}:5060", (i / 250) % 250, 1 + i % 250)
        .parse()
        .unwrap();
    Path::Udp(a)
}

pub fn unauthenticated(user: &str, branch: u64) -> Vec<u8> {
    format!(
        "REGISTER sip:upmt SIP/2.0\r\nVia: SIP/2.0/UDP mh.invalid;branch=z9hG4bK{branch:016x};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@upmt>;tag=1\r\nTo: <sip:{user}@upmt>\r\n\
         Call-ID: {user}-c@mh.invalid\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@mh.invalid>;expires=3600\r\n\
         Expires: 3600\r\nUser-Agent: upmt/0.1\r\nUPMT-Pad: {}\r\nContent-Length: 0\r\n\r\n",
        "0".repeat(300)
    )
    .into_bytes()
}

pub fn authenticated(
    user: &str,
    nonce: &str,
    ha1_hex: &str,
    alg: Algorithm,
    nc: u32,
    branch: u64,
) -> Vec<u8> {
    let uri = "sip:upmt";
    let ncs = format!("{nc:08x}");
    let resp = request_digest(alg, ha1_hex, nonce, Some((&ncs, "cn")), "REGISTER", uri);
    let auth = Authorization::encode_client(alg, user, "upmt", nonce, uri, &resp, nc, "cn", None);
    format!(
        "REGISTER sip:upmt SIP/2.0\r\nVia: SIP/2.0/UDP mh.invalid;branch=z9hG4bK{branch:016x};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@upmt>;tag=1\r\nTo: <sip:{user}@upmt>\r\n\
         Call-ID: {user}-c@mh.invalid\r\nCSeq: {} REGISTER\r\nContact: <sip:{user}@mh.invalid>;expires=3600\r\n\
         Expires: 3600\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n",
        nc + 1
    )
    .into_bytes()
}

#[allow(clippy::disallowed_methods)]
pub fn setup(n: usize, alg: Algorithm) -> Bench {
    let now = Instant::now();
    let mut creds = Credentials::new("upmt");
    for i in 0..n {
        creds.add_password(&format!("u{i}"), &format!("p{i}"));
    }
    let cfg = RegistrarConfig {
        algorithms: vec![alg],
        // 100k hosts do not fit in the default /16 (65533 addresses).
        pool: "100.64.0.0/14".parse().unwrap(),
        rate_limit: None,
        nonce_lifetime: Duration::from_secs(1 << 30),
        max_expires: 1 << 30,
        ..RegistrarConfig::default()
    };
    let mut registrar = Registrar::new(
        now,
        cfg,
        creds,
        Box::new(rand::rngs::StdRng::seed_from_u64(1)),
    )
    .unwrap();
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let user = format!("u{i}");
        registrar.handle_datagram(now, src(i), &unauthenticated(&user, i as u64));
        let t = registrar.poll_transmit(now).unwrap();
        let text = String::from_utf8(t.payload).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate: "))
            .unwrap();
        let ch = Challenge::parse(&line["WWW-Authenticate: ".len()..]).unwrap();
        users.push((
            user.clone(),
            ch.nonce,
            ha1(alg, &user, "upmt", &format!("p{i}")),
        ));
    }
    Bench {
        registrar,
        now,
        users,
        alg,
        counter: 1 << 32,
    }
}

impl Bench {
    /// The next authenticated REGISTER (round-robin over users, nc increasing).
    pub fn next_request(&mut self) -> (Path, Vec<u8>) {
        let n = self.users.len() as u64;
        let k = self.counter - (1 << 32);
        let i = (k % n) as usize;
        let nc = (k / n + 1) as u32;
        self.counter += 1;
        let (u, nonce, h1) = &self.users[i];
        (
            src(i),
            authenticated(u, nonce, h1, self.alg, nc, self.counter),
        )
    }

    /// Feeds one datagram and drains the reply; advances virtual time by `step`.
    pub fn feed(&mut self, path: Path, data: &[u8], step: Duration) -> usize {
        self.now += step;
        self.registrar.handle_timeout(self.now);
        self.registrar.handle_datagram(self.now, path, data);
        let mut n = 0;
        while let Some(t) = self.registrar.poll_transmit(self.now) {
            n += t.payload.len();
        }
        while self.registrar.poll_event().is_some() {}
        n
    }
}
