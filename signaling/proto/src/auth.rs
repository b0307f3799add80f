//! HTTP Digest for SIP (RFC 3261 §22.4, RFC 7616) with SHA-256 and MD5, `qop=auth`, and the
//! UPMT session key and MESSAGE authentication derived from it.
//!
//! Written here rather than taken from rsip, whose Digest code parses nonce-count as decimal
//! and ignores the body for auth-int. Comparisons of secrets use `subtle`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::codec::split_comma_list;

type HmacSha256 = Hmac<Sha256>;

/// A Digest algorithm (RFC 7616 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// `SHA-256` (preferred).
    #[serde(rename = "SHA-256")]
    Sha256,
    /// `MD5` (RFC 2617 compatibility; SIPp and most SIP phones).
    #[serde(rename = "MD5")]
    Md5,
}

impl Algorithm {
    /// The token used in headers.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Parses the token (case-insensitive); absent means MD5 (RFC 7616 §3.3).
    pub fn from_name(s: Option<&str>) -> Option<Algorithm> {
        match s {
            None => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// `H(data)` as lowercase hex (RFC 7616 §3.4.1).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
            Algorithm::Md5 => hex(&Md5::digest(data)),
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// `HA1 = H(username ":" realm ":" password)` (RFC 7616 §3.4.2), hex.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{user}:{realm}:{password}").as_bytes())
}

/// The request-digest (RFC 7616 §3.4.1 with `qop=auth`; RFC 2069 form without qop):
/// `KD(HA1, nonce:nc:cnonce:qop:H(method:uri))`.
pub fn request_digest(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
    let data = match qop {
        Some((nc, cnonce)) => format!("{ha1_hex}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
        None => format!("{ha1_hex}:{nonce}:{ha2}"),
    };
    alg.hash_hex(data.as_bytes())
}

/// Parses `Digest k=v, k="v", ...` into lowercase keys and unquoted values.
fn parse_digest_params(value: &str) -> Option<HashMap<String, String>> {
    let rest = value.trim();
    let scheme_end = rest.find(char::is_whitespace)?;
    if !rest[..scheme_end].eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut map = HashMap::new();
    for item in split_comma_list(&rest[scheme_end..]) {
        if item.is_empty() {
            continue;
        }
        let (k, v) = item.split_once('=')?;
        let v = v.trim();
        let v = match v.strip_prefix('"') {
            Some(q) => unescape_quoted(q.strip_suffix('"')?),
            None => v.to_owned(),
        };
        if map.insert(k.trim().to_ascii_lowercase(), v).is_some() {
            return None; // RFC 7616 §3.4: each directive at most once
        }
    }
    Some(map)
}

fn unescape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        if esc || c != '\\' {
            out.push(c);
            esc = false;
        } else {
            esc = true;
        }
    }
    out
}

/// The `Authorization` header of a request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`.
    pub uri: String,
    /// `response` (hex).
    pub response: String,
    /// `algorithm`.
    pub algorithm: Algorithm,
    /// `nc` and `cnonce` when `qop=auth`.
    pub qop: Option<(u32, String)>,
    /// `nc` as received (8 hex digits), needed to recompute the digest.
    pub nc_raw: String,
    /// `opaque`, if any.
    pub opaque: Option<String>,
}

impl Authorization {
    /// Parses the header value; `None` if it is not a usable Digest response.
    ///
    /// RFC 7616 §3.4: "nc: ... the hexadecimal count of the number of requests" — parsed
    /// as 8 hex digits (not decimal).
    pub fn parse(value: &str) -> Option<Authorization> {
        let mut m = parse_digest_params(value)?;
        let algorithm = Algorithm::from_name(m.get("algorithm").map(String::as_str))?;
        let qop = match m.get("qop").map(String::as_str) {
            None => None,
            Some("auth") => {
                let nc = m.get("nc")?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let n = u32::from_str_radix(nc, 16).ok()?;
                Some((n, m.remove("cnonce").filter(|c| !c.is_empty())?))
            }
            Some(_) => return None, // auth-int unsupported
        };
        Some(Authorization {
            username: m.remove("username")?,
            realm: m.remove("realm")?,
            nonce: m.remove("nonce")?,
            uri: m.remove("uri")?,
            response: m.remove("response")?,
            algorithm,
            nc_raw: m.remove("nc").unwrap_or_default(),
            qop,
            opaque: m.remove("opaque"),
        })
    }

    /// Encodes a client response with `qop=auth`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_client(
        alg: Algorithm,
        user: &str,
        realm: &str,
        nonce: &str,
        uri: &str,
        response: &str,
        nc: u32,
        cnonce: &str,
        opaque: Option<&str>,
    ) -> String {
        let mut s = format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}, qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\"",
            alg.name()
        );
        if let Some(o) = opaque {
            let _ = write!(s, ", opaque=\"{o}\"");
        }
        s
    }
}

/// A `WWW-Authenticate` challenge, parsed (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm`.
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth`.
    pub qop_auth: bool,
    /// `stale=true`: the credentials were right, the nonce expired.
    pub stale: bool,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
}

impl Challenge {
    /// Parses one challenge; `None` for other schemes or unknown algorithms.
    pub fn parse(value: &str) -> Option<Challenge> {
        let mut m = parse_digest_params(value)?;
        let algorithm = Algorithm::from_name(m.get("algorithm").map(String::as_str))?;
        let qop_auth = m
            .get("qop")
            .is_some_and(|q| q.split(',').any(|t| t.trim() == "auth"));
        Some(Challenge {
            realm: m.remove("realm")?,
            nonce: m.remove("nonce")?,
            algorithm,
            qop_auth,
            stale: m
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            opaque: m.remove("opaque"),
        })
    }

    /// Encodes a server challenge with `qop="auth"` (RFC 7616 §3.3).
    pub fn encode(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
        let mut s = format!(
            "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
            alg.name()
        );
        if stale {
            s.push_str(", stale=true");
        }
        s
    }
}

/// Result of checking a nonce the client echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Issued by us and still fresh.
    Fresh,
    /// Issued by us but older than the lifetime: answer 401 with `stale=true`.
    Stale,
    /// Not ours (forged or from a previous secret).
    Invalid,
}

/// Stateless nonces: `hex(issued_ms[6] || random[6] || HMAC(secret, issued_ms || random)[..12])`
/// (48 hex digits).
/// Unauthenticated requests cost no state; the nonce-count table is only written after a
/// successful authentication.
#[derive(Debug)]
pub struct Nonces {
    secret: [u8; 32],
    epoch: Instant,
    lifetime: Duration,
    /// Highest nonce-count seen per nonce, with the nonce's expiry (RFC 7616 §3.4.5).
    counts: HashMap<String, (u32, Instant)>,
    next_purge: Instant,
}

impl Nonces {
    /// A nonce factory with a random secret; `epoch` is any instant not later than the
    /// first `now` passed in.
    pub fn new(epoch: Instant, lifetime: Duration, rng: &mut dyn RngCore) -> Nonces {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Nonces {
            secret,
            epoch,
            lifetime,
            counts: HashMap::new(),
            next_purge: epoch + lifetime,
        }
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable_hmac());
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Issues a fresh nonce.
    pub fn issue(&self, now: Instant, rng: &mut dyn RngCore) -> String {
        let ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let mut raw = [0u8; 24];
        raw[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        rng.fill_bytes(&mut raw[6..12]);
        let mac = self.mac(&raw[..12]);
        raw[12..].copy_from_slice(&mac[..12]);
        hex(&raw)
    }

    /// Checks a nonce's integrity and age.
    pub fn check(&self, now: Instant, nonce: &str) -> NonceStatus {
        let Some(raw) = unhex(nonce).filter(|r| r.len() == 24) else {
            return NonceStatus::Invalid;
        };
        let (data, tag) = raw.split_at(12);
        let mac = self.mac(data);
        if !bool::from(mac[..12].ct_eq(tag)) {
            return NonceStatus::Invalid;
        }
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&data[..6]);
        let issued = self.epoch + Duration::from_millis(u64::from_be_bytes(ms));
        if now.saturating_duration_since(issued) > self.lifetime || issued > now {
            NonceStatus::Stale
        } else {
            NonceStatus::Fresh
        }
    }

    /// Records nonce-count `nc` for `nonce`; false if it is not larger than the last one
    /// (a replay). RFC 7616 §3.4.5 lets the server detect replays with nc.
    pub fn check_count(&mut self, now: Instant, nonce: &str, nc: u32) -> bool {
        // Purge expired entries at most once per lifetime/4, so the scan is amortised.
        if now >= self.next_purge {
            self.counts.retain(|_, (_, exp)| *exp > now);
            self.next_purge = now + self.lifetime / 4;
        }
        match self.counts.get_mut(nonce) {
            Some((last, _)) if nc <= *last => false,
            Some((last, _)) => {
                *last = nc;
                true
            }
            None => {
                self.counts
                    .insert(nonce.to_owned(), (nc, now + self.lifetime * 2));
                true
            }
        }
    }

    /// Number of nonces whose count is tracked.
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // HMAC accepts keys of any length; this branch cannot be taken. Returning a fixed-key
    // MAC keeps the code panic-free even so.
    HmacSha256::new(&Default::default())
}

/// Constant-time equality of two hex digests.
pub fn digest_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The UPMT session key: `HMAC-SHA256(key = HA1 (hex text), "upmt-session-key" 0x00 nonce
/// 0x00 cnonce)`. Both ends know HA1; nonce and cnonce come from the REGISTER that was
/// accepted. See docs/PROTOCOL.md, "Authentication of MESSAGE requests".
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    key: [u8; 32],
    /// Key identifier: hex of the first 8 bytes of `HMAC(key, "kid")`.
    pub kid: String,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SessionKey {
    /// Derives the key.
    pub fn derive(ha1_hex: &str, nonce: &str, cnonce: &str) -> SessionKey {
        let mut m = <HmacSha256 as Mac>::new_from_slice(ha1_hex.as_bytes())
            .unwrap_or_else(|_| unreachable_hmac());
        m.update(b"upmt-session-key\0");
        m.update(nonce.as_bytes());
        m.update(b"\0");
        m.update(cnonce.as_bytes());
        let key: [u8; 32] = m.finalize().into_bytes().into();
        let mut k =
            <HmacSha256 as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable_hmac());
        k.update(b"kid");
        let kid = hex(&k.finalize().into_bytes()[..8]);
        SessionKey { key, kid }
    }

    /// `HMAC-SHA256(key, user 0x00 method 0x00 seq(u64 BE) body)`, hex.
    pub fn mac(&self, user: &str, method: &str, seq: u64, body: &[u8]) -> String {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_hmac());
        m.update(user.as_bytes());
        m.update(b"\0");
        m.update(method.as_bytes());
        m.update(b"\0");
        m.update(&seq.to_be_bytes());
        m.update(body);
        hex(&m.finalize().into_bytes())
    }

    /// Checks a MAC in constant time.
    pub fn verify(&self, user: &str, method: &str, seq: u64, body: &[u8], mac: &str) -> bool {
        digest_eq(
            &self.mac(user, method, seq, body),
            &mac.to_ascii_lowercase(),
        )
    }
}

/// The `UPMT-Auth` header of an authenticated MESSAGE: `kid=<hex16>, seq=<u64>, mac=<hex64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAuth {
    /// Key identifier.
    pub kid: String,
    /// Sequence number (starts at 1, strictly increasing per key).
    pub seq: u64,
    /// HMAC, hex.
    pub mac: String,
}

impl MessageAuth {
    /// Header name.
    pub const HEADER: &'static str = "UPMT-Auth";

    /// Parses the header value.
    pub fn parse(v: &str) -> Option<MessageAuth> {
        let (mut kid, mut seq, mut mac) = (None, None, None);
        for item in v.split(',') {
            let (k, val) = item.trim().split_once('=')?;
            match k.trim() {
                "kid" => kid = Some(val.trim().to_owned()),
                "seq" => seq = val.trim().parse::<u64>().ok(),
                "mac" => mac = Some(val.trim().to_owned()),
                _ => {}
            }
        }
        Some(MessageAuth {
            kid: kid?,
            seq: seq.filter(|s| *s > 0)?,
            mac: mac?,
        })
    }

    /// Encodes the header value.
    pub fn encode(&self) -> String {
        format!("kid={}, seq={}, mac={}", self.kid, self.seq, self.mac)
    }
}

/// Sliding anti-replay window over sequence numbers (RFC 4303 §3.4.3 style): accepts a
/// number once, and only if it is newer than `top - REPLAY_WINDOW`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    bitmap: u64,
}

impl ReplayWindow {
    /// Whether `seq` would be accepted (does not record it).
    pub fn check(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        let diff = self.top - seq;
        diff < crate::consts::REPLAY_WINDOW && self.bitmap & (1u64 << diff) == 0
    }

    /// Records `seq` (call after [`ReplayWindow::check`] and MAC verification).
    pub fn record(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            self.bitmap = if shift >= 64 { 0 } else { self.bitmap << shift };
            self.bitmap |= 1;
            self.top = seq;
        } else {
            let diff = self.top - seq;
            if diff < 64 {
                self.bitmap |= 1u64 << diff;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// RFC 7616 §3.9.1 example (SHA-256 and MD5, qop=auth, HTTP GET).
    #[test]
    fn rfc7616_vectors() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let uri = "/dir/index.html";
        for (alg, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let h1 = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            let r = request_digest(alg, &h1, nonce, Some(("00000001", cnonce)), "GET", uri);
            assert_eq!(r, expected, "{alg:?}");
        }
    }

    #[test]
    fn authorization_roundtrip_and_hex_nc() {
        let v = Authorization::encode_client(
            Algorithm::Sha256,
            "alice",
            "upmt",
            "n1",
            "sip:upmt",
            "abcd",
            0x1a,
            "c1",
            Some("o"),
        );
        let a = Authorization::parse(&v).unwrap();
        assert_eq!(a.qop, Some((0x1a, "c1".to_owned())));
        assert_eq!(a.nc_raw, "0000001a");
        assert_eq!(a.opaque.as_deref(), Some("o"));
        // nc is hex: "00000010" is 16, and a non-hex nc is refused.
        let a = Authorization::parse(
            "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"r\", qop=auth, nc=00000010, cnonce=\"c\"",
        )
        .unwrap();
        assert_eq!(a.qop.unwrap().0, 16);
        assert!(Authorization::parse(
            "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"r\", qop=auth, nc=0000001g, cnonce=\"c\""
        )
        .is_none());
        assert!(Authorization::parse("Basic abc").is_none());
        assert!(Authorization::parse("Digest username=\"a\", username=\"b\"").is_none());
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn nonces_fresh_stale_forged_and_counts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let t0 = Instant::now();
        let mut n = Nonces::new(t0, Duration::from_secs(300), &mut rng);
        let nonce = n.issue(t0, &mut rng);
        assert_eq!(
            n.check(t0 + Duration::from_secs(10), &nonce),
            NonceStatus::Fresh
        );
        assert_eq!(
            n.check(t0 + Duration::from_secs(301), &nonce),
            NonceStatus::Stale
        );
        let mut forged = nonce.clone().into_bytes();
        forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            n.check(t0, std::str::from_utf8(&forged).unwrap()),
            NonceStatus::Invalid
        );
        assert_eq!(n.check(t0, "zz"), NonceStatus::Invalid);
        assert!(n.check_count(t0, &nonce, 1));
        assert!(!n.check_count(t0, &nonce, 1));
        assert!(n.check_count(t0, &nonce, 2));
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(!w.check(0));
        for s in [1, 3, 2, 70] {
            assert!(w.check(s));
            w.record(s);
        }
        assert!(!w.check(2));
        assert!(!w.check(70));
        assert!(!w.check(5)); // 70 - 5 >= 64: too old
        assert!(w.check(69));
    }

    #[test]
    fn session_key_mac() {
        let k = SessionKey::derive("ha1", "n", "c");
        let k2 = SessionKey::derive("ha1", "n", "c2");
        assert_ne!(k.kid, k2.kid);
        let mac = k.mac("alice", "MESSAGE", 1, b"{}");
        assert!(k.verify("alice", "MESSAGE", 1, b"{}", &mac));
        assert!(!k.verify("alice", "MESSAGE", 2, b"{}", &mac));
        assert!(!k2.verify("alice", "MESSAGE", 1, b"{}", &mac));
        let h = MessageAuth {
            kid: k.kid.clone(),
            seq: 1,
            mac,
        };
        assert_eq!(MessageAuth::parse(&h.encode()), Some(h));
    }
}
