//! Configuration files of the two daemons (TOML).
//!
//! Every option is documented here and in `examples/`; unknown keys are refused
//! (`deny_unknown_fields`), and [`AnchorConfig::load`] / [`MobileConfig::load`] validate
//! everything at start, so a typo stops the daemon with a message naming the key, rather
//! than a half-working anchor.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A configuration error: which file, and what is wrong in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this daemon (syntax, unknown key, wrong type).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A value is well-formed but not usable.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, dotted (`nat.public`).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// An IPv4 prefix such as `100.64.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub len: u8,
}

impl Ipv4Cidr {
    /// The number of addresses in the prefix.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = self.mask();
        u32::from(ip) & mask == u32::from(self.addr)
    }

    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a CIDR prefix (expected a.b.c.d/len)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("`{l}` is not a prefix length (0..=32)"))?;
        let cidr = Ipv4Cidr { addr, len };
        if u32::from(addr) & !cidr.mask() != 0 {
            return Err(format!(
                "`{s}` has host bits set (did you mean {}/{len}?)",
                Ipv4Addr::from(u32::from(addr) & cidr.mask())
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An inclusive port range such as `"1024-65535"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not a port range (expected FIRST-LAST)"))?;
        let first: u16 = a.trim().parse().map_err(|_| format!("bad port `{a}`"))?;
        let last: u16 = b.trim().parse().map_err(|_| format!("bad port `{b}`"))?;
        if first == 0 || first > last {
            return Err(format!("`{s}`: need 1 <= FIRST <= LAST"));
        }
        Ok(PortRange { first, last })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who translates the mobile hosts' traffic at the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatMode {
    /// UPMT's own NAPT (the `nat` crate) in the data plane; the public address is routed to
    /// the anchor's TUN.
    Upmt,
    /// The kernel's nftables masquerade on the anchor's uplink, for comparison.
    Kernel,
}

/// NAT filtering behaviour (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// Any external host may send to a mapping (REQ-8's recommendation for transparency).
    EndpointIndependent,
    /// Only hosts the internal endpoint has sent to.
    AddressDependent,
    /// Only the exact host:port the internal endpoint has sent to.
    AddressAndPortDependent,
}

/// `upmt anchor` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorConfig {
    /// SIP registrar and tunnel broker.
    pub sip: AnchorSip,
    /// Tunnel endpoint.
    #[serde(default)]
    pub tunnel: AnchorTunnel,
    /// Virtual IP addresses handed to mobile hosts.
    #[serde(default)]
    pub vipa: VipaConfig,
    /// NAT of VIPA traffic to the public address.
    pub nat: AnchorNat,
    /// Data plane.
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    /// Control socket (`upmt status`, `upmt handover`).
    #[serde(default = "default_anchor_control")]
    pub control: ControlConfig,
    /// Per-host limits.
    #[serde(default)]
    pub limits: AnchorLimits,
}

/// `[sip]` of the anchor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorSip {
    /// UDP address of the registrar (default `0.0.0.0:5060`).
    #[serde(default = "default_sip_listen")]
    pub listen: SocketAddr,
    /// Credentials file (relative paths are relative to the configuration file).
    pub credentials: PathBuf,
    /// Longest registration granted, seconds (a client asking more gets this).
    #[serde(default = "default_max_expires")]
    pub max_expires_s: u32,
    /// Shortest registration accepted, seconds (less is answered 423 Interval Too Brief).
    #[serde(default = "default_min_expires")]
    pub min_expires_s: u32,
    /// Requests per second accepted from one source address before 503.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_source: u32,
    /// Digest algorithms offered in challenges, most preferred first (`"SHA-256"`, `"MD5"`).
    /// Clients answer one of them; SIPp 3.6 answers only the first and only MD5.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

impl AnchorSip {
    /// The configured Digest algorithms (validated at load).
    pub fn digest_algorithms(&self) -> Vec<signaling_proto::auth::Algorithm> {
        self.algorithms
            .iter()
            .filter_map(|a| signaling_proto::auth::Algorithm::from_name(Some(a)))
            .collect()
    }
}

/// `[tunnel]` of the anchor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorTunnel {
    /// UDP address tunnels end on (the paper's port 1800).
    #[serde(default = "default_tunnel_listen")]
    pub listen: SocketAddr,
}

impl Default for AnchorTunnel {
    fn default() -> Self {
        AnchorTunnel {
            listen: default_tunnel_listen(),
        }
    }
}

/// `[vipa]` of the anchor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipaConfig {
    /// The pool VIPAs are taken from (default `100.64.0.0/16`).
    #[serde(default = "default_pool")]
    pub pool: Ipv4Cidr,
}

impl Default for VipaConfig {
    fn default() -> Self {
        VipaConfig {
            pool: default_pool(),
        }
    }
}

/// `[nat]` of the anchor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorNat {
    /// `"upmt"` (default) or `"kernel"`.
    #[serde(default = "default_nat_mode")]
    pub mode: NatMode,
    /// Public addresses correspondent hosts see.
    pub public: Vec<Ipv4Addr>,
    /// Ports handed out when the host's own port is taken.
    #[serde(default = "default_ports")]
    pub ports: PortRange,
    /// Filtering behaviour.
    #[serde(default = "default_filtering")]
    pub filtering: Filtering,
    /// UDP mapping lifetime, seconds (RFC 4787 REQ-5: at least 120; default 300).
    #[serde(default = "default_udp_timeout")]
    pub udp_timeout_s: u32,
    /// Established TCP lifetime, seconds (RFC 5382 REQ-5: at least 7440; default 7440).
    #[serde(default = "default_tcp_timeout")]
    pub tcp_established_timeout_s: u32,
    /// TCP transitory lifetime, seconds (RFC 5382: 240).
    #[serde(default = "default_tcp_transitory")]
    pub tcp_transitory_timeout_s: u32,
    /// ICMP query lifetime, seconds (RFC 5508: 60).
    #[serde(default = "default_icmp_timeout")]
    pub icmp_timeout_s: u32,
    /// Mappings one host may hold (RFC 6888 REQ-4).
    #[serde(default = "default_per_host")]
    pub max_mappings_per_host: u32,
    /// Mappings in all.
    #[serde(default = "default_max_mappings")]
    pub max_mappings: u32,
    /// In kernel mode: the interface the masquerade applies on (the anchor's uplink).
    #[serde(default)]
    pub uplink: Option<String>,
}

/// `[dataplane]` of either daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Shards (threads); 0 = one per core.
    #[serde(default)]
    pub shards: usize,
    /// Use io_uring (`false` forces the batched readv/recvmmsg/sendmmsg fallback).
    #[serde(default = "yes")]
    pub io_uring: bool,
    /// The TUN device's name.
    #[serde(default)]
    pub tun: Option<String>,
    /// Path MTU of the access networks; the TUN gets this minus the 28-byte tunnel overhead.
    #[serde(default = "default_path_mtu")]
    pub path_mtu: u16,
    /// Pin shard threads to cores.
    #[serde(default = "yes")]
    pub pin: bool,
    /// The CPUs shard threads are pinned to (shard `i` on `cpus[i % len]`; with `shards = 0`,
    /// one shard per CPU listed). Empty: shard `i` on core `i`. Give two daemons sharing a
    /// machine different CPUs.
    #[serde(default)]
    pub cpus: Vec<usize>,
    /// TUN segmentation offload and UDP GSO/GRO (io_uring only; each part falls back on its
    /// own when the kernel refuses it). `false` moves every packet one by one.
    #[serde(default = "yes")]
    pub offload: bool,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            shards: 0,
            io_uring: true,
            tun: None,
            path_mtu: default_path_mtu(),
            pin: true,
            cpus: Vec::new(),
            offload: true,
        }
    }
}

/// `[control]` of either daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Unix socket path of the control interface (default:
    /// [`crate::control::default_socket`] for the daemon's role).
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

/// `[limits]` of the anchor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorLimits {
    /// Associated hosts in all.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: u32,
    /// Tunnels one host may hold.
    #[serde(default = "default_max_tunnels")]
    pub max_tunnels_per_host: u32,
    /// Flows one host may have in the PAFT.
    #[serde(default = "default_max_flows")]
    pub max_flows_per_host: u32,
    /// A tunnel that received nothing (not even a keepalive) for this long is removed,
    /// seconds (its host replaced it, or its NAT mapping changed). Keep it well above the
    /// mobile hosts' keepalive interval.
    #[serde(default = "default_tunnel_idle")]
    pub tunnel_idle_s: u32,
}

impl Default for AnchorLimits {
    fn default() -> Self {
        AnchorLimits {
            max_hosts: default_max_hosts(),
            max_tunnels_per_host: default_max_tunnels(),
            max_flows_per_host: default_max_flows(),
            tunnel_idle_s: default_tunnel_idle(),
        }
    }
}

/// `upmt mobile` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileConfig {
    /// The anchor to associate with.
    pub anchor: MobileAnchor,
    /// Who this host is.
    pub identity: Identity,
    /// The access interfaces tunnels may use (none = every interface with a default route).
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    /// Data plane.
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    /// Keepalive and path probing.
    #[serde(default)]
    pub keepalive: KeepaliveConfig,
    /// Per-application policy file (relative to this file).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Control socket.
    #[serde(default = "default_mobile_control")]
    pub control: ControlConfig,
    /// The UPMT-aware SOCKS5 proxy (absent: no proxy).
    #[serde(default)]
    pub socks: Option<SocksConfig>,
}

/// `[socks]` of the mobile host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocksConfig {
    /// Where applications connect (keep it on loopback).
    #[serde(default = "default_socks")]
    pub listen: SocketAddr,
}

fn default_socks() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1080))
}

/// `[anchor]` of the mobile host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileAnchor {
    /// The anchor's SIP address (UDP).
    pub sip: SocketAddrV4,
    /// The anchor's tunnel address (UDP).
    pub tunnel: SocketAddrV4,
    /// Registration lifetime asked for, seconds.
    #[serde(default = "default_expires")]
    pub expires_s: u32,
}

/// `[identity]` of the mobile host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// SIP user (the host's identity at the anchor, e.g. `alice`).
    pub user: String,
    /// Password, inline (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password on its first line (relative to this file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// SIP domain (default: the anchor's address).
    #[serde(default)]
    pub domain: Option<String>,
}

/// One `[[interface]]` of the mobile host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Interface name (`wlan0`).
    pub name: String,
    /// Relative cost of sending over it (policies prefer cheaper paths).
    #[serde(default)]
    pub cost: u32,
    /// Path MTU of this access network when smaller than `dataplane.path_mtu`; the TUN's MTU
    /// is the smallest path MTU less 28 bytes, so TCP segments fit every tunnel.
    #[serde(default)]
    pub mtu: Option<u16>,
}

/// `[keepalive]` of the mobile host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveConfig {
    /// Interval on an idle, healthy path, milliseconds (holds NAT pinholes: keep it under
    /// the shortest UDP timeout of the local NATs).
    #[serde(default = "default_idle_ms")]
    pub idle_interval_ms: u64,
    /// Interval while a real-time flow rides the path or the path is in doubt, ms.
    #[serde(default = "default_fast_ms")]
    pub fast_interval_ms: u64,
    /// Replies missing before a path is declared down.
    #[serde(default = "default_lost")]
    pub lost_before_down: u32,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            idle_interval_ms: default_idle_ms(),
            fast_interval_ms: default_fast_ms(),
            lost_before_down: default_lost(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_sip_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5060))
}
fn default_tunnel_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1800))
}
fn default_max_expires() -> u32 {
    3600
}
fn default_min_expires() -> u32 {
    30
}
fn default_rate_limit() -> u32 {
    50
}
fn default_algorithms() -> Vec<String> {
    vec!["SHA-256".to_owned(), "MD5".to_owned()]
}
fn default_pool() -> Ipv4Cidr {
    Ipv4Cidr {
        addr: Ipv4Addr::new(100, 64, 0, 0),
        len: 16,
    }
}
fn default_nat_mode() -> NatMode {
    NatMode::Upmt
}
fn default_ports() -> PortRange {
    PortRange {
        first: 1024,
        last: 65535,
    }
}
fn default_filtering() -> Filtering {
    Filtering::EndpointIndependent
}
fn default_udp_timeout() -> u32 {
    300
}
fn default_tcp_timeout() -> u32 {
    7440
}
fn default_tcp_transitory() -> u32 {
    240
}
fn default_icmp_timeout() -> u32 {
    60
}
fn default_per_host() -> u32 {
    4096
}
fn default_max_mappings() -> u32 {
    1_048_576
}
fn default_path_mtu() -> u16 {
    1500
}
fn default_anchor_control() -> ControlConfig {
    ControlConfig { socket: None }
}
fn default_mobile_control() -> ControlConfig {
    ControlConfig { socket: None }
}
fn default_max_hosts() -> u32 {
    100_000
}
fn default_max_tunnels() -> u32 {
    8
}
fn default_max_flows() -> u32 {
    4096
}
fn default_tunnel_idle() -> u32 {
    90
}
fn default_expires() -> u32 {
    600
}
fn default_idle_ms() -> u64 {
    5_000
}
fn default_fast_ms() -> u64 {
    50
}
fn default_lost() -> u32 {
    3
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Resolves `p` against the directory of the configuration file `base`.
fn relative_to(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn invalid(path: &Path, key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key,
        message: message.into(),
    }
}

impl AnchorConfig {
    /// Reads and validates an anchor configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut c: AnchorConfig = read_toml(path)?;
        c.sip.credentials = relative_to(path, &c.sip.credentials);
        c.validate(path)?;
        Ok(c)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if !self.sip.credentials.is_file() {
            return Err(invalid(
                path,
                "sip.credentials",
                format!("no credentials file at {}", self.sip.credentials.display()),
            ));
        }
        if self.sip.min_expires_s == 0 || self.sip.min_expires_s > self.sip.max_expires_s {
            return Err(invalid(
                path,
                "sip.min_expires_s",
                "need 0 < min_expires_s <= max_expires_s",
            ));
        }
        if self.sip.algorithms.is_empty()
            || self
                .sip
                .algorithms
                .iter()
                .any(|a| signaling_proto::auth::Algorithm::from_name(Some(a)).is_none())
        {
            return Err(invalid(
                path,
                "sip.algorithms",
                "a non-empty list of \"SHA-256\" and/or \"MD5\"",
            ));
        }
        if self.vipa.pool.len > 30 {
            return Err(invalid(path, "vipa.pool", "the pool needs at least a /30"));
        }
        if self.nat.public.is_empty() {
            return Err(invalid(path, "nat.public", "at least one public address"));
        }
        if let Some(p) = self
            .nat
            .public
            .iter()
            .find(|p| self.vipa.pool.contains(**p))
        {
            return Err(invalid(
                path,
                "nat.public",
                format!("{p} is inside the VIPA pool {}", self.vipa.pool),
            ));
        }
        if self.nat.udp_timeout_s < 120 {
            return Err(invalid(
                path,
                "nat.udp_timeout_s",
                "RFC 4787 REQ-5: at least 120 s",
            ));
        }
        if self.nat.tcp_established_timeout_s < 7440 {
            return Err(invalid(
                path,
                "nat.tcp_established_timeout_s",
                "RFC 5382 REQ-5: at least 7440 s (2 h 4 min)",
            ));
        }
        if self.nat.max_mappings_per_host == 0 || self.nat.max_mappings == 0 {
            return Err(invalid(path, "nat.max_mappings", "must be positive"));
        }
        if self.nat.mode == NatMode::Kernel && self.nat.uplink.is_none() {
            return Err(invalid(
                path,
                "nat.uplink",
                "kernel NAT mode needs the uplink interface to masquerade on",
            ));
        }
        validate_dataplane(path, &self.dataplane)?;
        if self.limits.tunnel_idle_s < 10 {
            return Err(invalid(path, "limits.tunnel_idle_s", "at least 10 s"));
        }
        if self.limits.max_hosts == 0 || self.limits.max_tunnels_per_host == 0 {
            return Err(invalid(path, "limits", "limits must be positive"));
        }
        Ok(())
    }
}

fn validate_dataplane(path: &Path, d: &DataplaneConfig) -> Result<(), ConfigError> {
    if !(576..=9000).contains(&d.path_mtu) {
        return Err(invalid(path, "dataplane.path_mtu", "between 576 and 9000"));
    }
    if let Some(t) = &d.tun {
        validate_ifname(path, "dataplane.tun", t)?;
    }
    if d.shards > 64 {
        return Err(invalid(path, "dataplane.shards", "at most 64"));
    }
    if !d.cpus.is_empty() && !d.pin {
        return Err(invalid(path, "dataplane.cpus", "needs pin = true"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if d.cpus.len() > 1024 || !d.cpus.iter().all(|c| *c < 4096 && seen.insert(*c)) {
        return Err(invalid(
            path,
            "dataplane.cpus",
            "distinct CPU numbers (below 4096, at most 1024 of them)",
        ));
    }
    Ok(())
}

fn validate_ifname(path: &Path, key: &'static str, name: &str) -> Result<(), ConfigError> {
    // IFNAMSIZ is 16 including the NUL.
    if name.is_empty()
        || name.len() > 15
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(invalid(
            path,
            key,
            format!("`{name}` is not an interface name (1-15 of [A-Za-z0-9._-])"),
        ));
    }
    Ok(())
}

impl MobileConfig {
    /// Reads and validates a mobile host configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut c: MobileConfig = read_toml(path)?;
        if let Some(p) = &c.identity.password_file {
            c.identity.password_file = Some(relative_to(path, p));
        }
        if let Some(p) = &c.policy {
            c.policy = Some(relative_to(path, p));
        }
        c.validate(path)?;
        Ok(c)
    }

    /// The password, from the file or inline.
    pub fn password(&self) -> Result<String, ConfigError> {
        match (&self.identity.password, &self.identity.password_file) {
            (Some(p), None) => Ok(p.clone()),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f).map_err(|source| ConfigError::Read {
                    path: f.clone(),
                    source,
                })?;
                Ok(text.lines().next().unwrap_or("").trim_end().to_owned())
            }
            _ => Err(invalid(
                Path::new("(mobile configuration)"),
                "identity.password",
                "give exactly one of password and password_file",
            )),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if self.identity.user.is_empty()
            || !self
                .identity
                .user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                path,
                "identity.user",
                "1 or more of [A-Za-z0-9._-]",
            ));
        }
        match (&self.identity.password, &self.identity.password_file) {
            (Some(_), None) => {}
            (None, Some(f)) if f.is_file() => {}
            (None, Some(f)) => {
                return Err(invalid(
                    path,
                    "identity.password_file",
                    format!("no file at {}", f.display()),
                ))
            }
            _ => {
                return Err(invalid(
                    path,
                    "identity.password",
                    "give exactly one of password and password_file",
                ))
            }
        }
        let mut seen = std::collections::HashSet::new();
        for i in &self.interfaces {
            validate_ifname(path, "interface.name", &i.name)?;
            if !seen.insert(i.name.as_str()) {
                return Err(invalid(
                    path,
                    "interface.name",
                    format!("`{}` is listed twice", i.name),
                ));
            }
            if let Some(m) = i.mtu {
                if !(576..=9000).contains(&m) {
                    return Err(invalid(path, "interface.mtu", "between 576 and 9000"));
                }
            }
        }
        validate_dataplane(path, &self.dataplane)?;
        let k = &self.keepalive;
        if k.fast_interval_ms == 0 || k.fast_interval_ms > k.idle_interval_ms {
            return Err(invalid(
                path,
                "keepalive.fast_interval_ms",
                "need 0 < fast_interval_ms <= idle_interval_ms",
            ));
        }
        if k.lost_before_down == 0 {
            return Err(invalid(path, "keepalive.lost_before_down", "at least 1"));
        }
        if let Some(p) = &self.policy {
            if !p.is_file() {
                return Err(invalid(
                    path,
                    "policy",
                    format!("no policy file at {}", p.display()),
                ));
            }
        }
        if let Some(sc) = &self.socks {
            if !sc.listen.ip().is_loopback() {
                return Err(invalid(
                    path,
                    "socks.listen",
                    "keep the proxy on a loopback address (it has no authentication)",
                ));
            }
        }
        if self.anchor.expires_s < 30 {
            return Err(invalid(path, "anchor.expires_s", "at least 30 s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("upmt-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn cidr_parse() {
        let c: Ipv4Cidr = "100.64.0.0/16".parse().unwrap();
        assert_eq!(c.size(), 65536);
        assert!(c.contains(Ipv4Addr::new(100, 64, 3, 4)));
        assert!(!c.contains(Ipv4Addr::new(100, 65, 0, 1)));
        assert!("100.64.0.1/16".parse::<Ipv4Cidr>().is_err());
        assert!("100.64.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("100.64.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("0.0.0.0/0"
            .parse::<Ipv4Cidr>()
            .unwrap()
            .contains(Ipv4Addr::BROADCAST));
    }

    #[test]
    fn examples_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let a = AnchorConfig::load(&root.join("anchor.toml")).unwrap();
        assert_eq!(a.tunnel.listen.port(), 1800);
        assert_eq!(a.nat.public, vec![Ipv4Addr::new(198, 18, 2, 100)]);
        use signaling_proto::auth::Algorithm;
        assert_eq!(
            a.sip.digest_algorithms(),
            vec![Algorithm::Sha256, Algorithm::Md5]
        );
        let m = MobileConfig::load(&root.join("mobile.toml")).unwrap();
        assert_eq!(m.interfaces.len(), 2);
        assert!(!m.password().unwrap().is_empty());
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let d = tmpdir("unknown");
        write(&d, "creds", "");
        let p = write(
            &d,
            "a.toml",
            "[sip]\ncredentials = \"creds\"\nlisten_typo = \"1.2.3.4:5\"\n[nat]\npublic = [\"198.18.2.100\"]\n",
        );
        let e = AnchorConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("listen_typo"), "{e}");
    }

    #[test]
    fn digest_algorithms_are_checked() {
        use signaling_proto::auth::Algorithm;
        let d = tmpdir("algorithms");
        write(&d, "creds", "");
        let load = |name: &str, algos: &str| {
            let p = write(
                &d,
                name,
                &format!(
                    "[sip]\ncredentials = \"creds\"\nalgorithms = {algos}\n[nat]\npublic = [\"198.18.2.100\"]\n"
                ),
            );
            AnchorConfig::load(&p)
        };
        let a = load("md5.toml", "[\"md5\", \"SHA-256\"]").unwrap();
        assert_eq!(
            a.sip.digest_algorithms(),
            vec![Algorithm::Md5, Algorithm::Sha256]
        );
        for (i, bad) in ["[]", "[\"SHA-512\"]", "[\"MD5\", \"\"]"]
            .iter()
            .enumerate()
        {
            let e = load(&format!("bad{i}.toml"), bad).unwrap_err().to_string();
            assert!(e.contains("sip.algorithms"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let d = tmpdir("bad");
        write(&d, "creds", "");
        let cases = [
            ("[vipa]\npool = \"100.64.0.1/16\"\n", "host bits"),
            ("[nat]\npublic = []\n", "nat.public"),
            ("[nat]\npublic = [\"100.64.0.9\"]\n", "inside the VIPA pool"),
            (
                "[nat]\npublic = [\"198.18.2.100\"]\nudp_timeout_s = 30\n",
                "REQ-5",
            ),
            (
                "[nat]\npublic = [\"198.18.2.100\"]\nmode = \"kernel\"\n",
                "nat.uplink",
            ),
            ("[dataplane]\ncpus = [1, 1]\n", "dataplane.cpus"),
            ("[dataplane]\ncpus = [1]\npin = false\n", "needs pin"),
            ("[dataplane]\ncpus = [99999]\n", "dataplane.cpus"),
        ];
        for (i, (tail, want)) in cases.iter().enumerate() {
            let mut text = String::from("[sip]\ncredentials = \"creds\"\n");
            if !tail.starts_with("[nat]") {
                text.push_str("[nat]\npublic = [\"198.18.2.100\"]\n");
            }
            text.push_str(tail);
            let p = write(&d, &format!("a{i}.toml"), &text);
            let e = AnchorConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "case {i}: {e}");
        }
        let p = write(
            &d,
            "nocreds.toml",
            "[sip]\ncredentials = \"missing\"\n[nat]\npublic = [\"198.18.2.100\"]\n",
        );
        let e = AnchorConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("sip.credentials"), "{e}");
    }

    #[test]
    fn mobile_validation() {
        let d = tmpdir("mobile");
        let base = "[anchor]\nsip = \"198.18.2.1:5060\"\ntunnel = \"198.18.2.1:1800\"\n";
        let p = write(
            &d,
            "m1.toml",
            &format!("{base}[identity]\nuser = \"alice\"\n"),
        );
        assert!(MobileConfig::load(&p)
            .unwrap_err()
            .to_string()
            .contains("identity.password"));
        let p = write(
            &d,
            "m2.toml",
            &format!(
                "{base}[identity]\nuser = \"alice\"\npassword = \"x\"\n[[interface]]\nname = \"wlan0\"\n[[interface]]\nname = \"wlan0\"\n"
            ),
        );
        assert!(MobileConfig::load(&p)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let p = write(
            &d,
            "m3.toml",
            &format!(
                "{base}[identity]\nuser = \"alice\"\npassword = \"x\"\n[[interface]]\nname = \"this-name-is-far-too-long\"\n"
            ),
        );
        assert!(MobileConfig::load(&p)
            .unwrap_err()
            .to_string()
            .contains("interface name"));
    }
}
