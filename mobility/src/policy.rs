//! Per-application policy: the paper's MM Overall Control Entity, as a sans-IO engine.
//!
//! A [`Policy`] (parsed from TOML, format in `docs/POLICY.md`) says, per application, which
//! interfaces its flows may ride and in what order, which they must never ride, the path
//! quality they need, and whether they are real-time; rules match flows by destination
//! address, port and protocol (like the paper's iptables-style rules) and give them another
//! policy. The [`Engine`] turns that and the measured paths into decisions: where a new flow
//! goes ([`Engine::decide`]) and which applications must move after paths change
//! ([`Engine::reevaluate`]).
//!
//! Every policy (an `[app.NAME]`, an inline `[[rule]]`, or `[default]`) is a *class*; all
//! flows of a class ride the same interface, so a decision and a move are per class.
//!
//! Hysteresis, so a flapping link does not bounce flows:
//! - a path over a class's threshold (RTT, loss, jitter; or in doubt: a keepalive missing) is
//!   left at once by a real-time class, after `degrade_ms` by the others; a path that is
//!   down is left at once by everyone;
//! - a path counts as good again only under `threshold * (1 - margin_pct/100)`;
//! - a class leaves a working path for a more preferred one only after that one has been
//!   continuously good for `hold_down_ms` (so at most one move back per hold-down);
//! - a class with no working path takes the best usable one at once (nothing to protect);
//! - a class with no allowed path usable at all *waits* ([`Decision::Wait`]) rather than
//!   spilling onto a forbidden interface.
//!
//! Sans-IO: time is an argument; [`Engine::poll_timeout`] says when a hold-down or a
//! degradation delay runs out, i.e. when [`Engine::reevaluate`] may have news.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use mobility::policy::{Decision, Engine, FlowMatchInput, Policy};
//! use mobility::{PathState, Quality};
//!
//! let policy = Policy::parse(r#"
//!     [app.backup]
//!     interfaces = ["wlan0"]
//!     never = ["umts0"]
//! "#)?;
//! let mut engine = Engine::new(policy, &[("wlan0", 1), ("umts0", 10)]);
//! let up = |rtt| Quality { state: PathState::Up, rtt_ms: Some(rtt), jitter_ms: None,
//!                          loss_pct: 0.0, sent: 1, received: 1, lost: 0 };
//! let t = Instant::now();
//! engine.set_paths(t, &[("wlan0", up(20.0)), ("umts0", up(90.0))]);
//!
//! // First packet of a new flow of `backup` (as classified by appclass).
//! let flow = FlowMatchInput { proto: 6, dst: "198.18.3.1".parse()?, dst_port: 443 };
//! let p = engine.decide(t, Some("backup"), &flow);
//! assert_eq!(p.decision, Decision::Tunnel("wlan0".into()));
//!
//! // wlan0's tunnel goes down: backup waits rather than use umts0.
//! engine.set_path(t + Duration::from_secs(1), "wlan0", None);
//! let moves = engine.reevaluate(t + Duration::from_secs(1));
//! assert_eq!(moves[0].to, Decision::Wait);
//! // The daemon calls `reevaluate` again after every path change and at `poll_timeout()`.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::probe::{PathState, Quality};

/// Name of the default class.
pub const DEFAULT_CLASS: &str = "default";

// ---------------------------------------------------------------------------------------
// Policy (validated)
// ---------------------------------------------------------------------------------------

/// A validated policy file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// For flows of applications without a section, and flows no rule matches.
    pub default: ClassPolicy,
    /// Per application (`[app.NAME]`).
    pub apps: BTreeMap<String, ClassPolicy>,
    /// `[[rule]]`s, first match wins.
    pub rules: Vec<Rule>,
    /// Anti-flapping settings.
    pub hysteresis: Hysteresis,
}

/// One entry of an ordered interface list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IfaceChoice {
    /// This interface.
    Named(String),
    /// Every other interface, cheapest first.
    Any,
}

/// Path quality a class needs; `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Limits {
    /// Largest smoothed RTT, ms.
    pub max_rtt_ms: Option<f64>,
    /// Largest keepalive loss, percent.
    pub max_loss_pct: Option<f64>,
    /// Largest jitter, ms.
    pub max_jitter_ms: Option<f64>,
}

/// The policy of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassPolicy {
    /// Interfaces in order of preference.
    pub interfaces: Vec<IfaceChoice>,
    /// Interfaces the class must never use.
    pub never: Vec<String>,
    /// Interfaces costing more than this are never used.
    pub max_cost: Option<u32>,
    /// Quality conditions.
    pub limits: Limits,
    /// Real-time: its paths are probed fast and it leaves a degraded path at once.
    pub realtime: bool,
}

impl Default for ClassPolicy {
    fn default() -> Self {
        ClassPolicy {
            interfaces: vec![IfaceChoice::Any],
            never: Vec::new(),
            max_cost: None,
            limits: Limits::default(),
            realtime: false,
        }
    }
}

/// Anti-flapping settings (`[hysteresis]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hysteresis {
    /// How long a path must be good before a class moves back to it.
    pub hold_down: Duration,
    /// Margin under a threshold for a path to count as good again (fraction, 0.2 = 20%).
    pub margin: f64,
    /// How long a non-real-time class stays on a path over its thresholds (or in doubt).
    pub degrade: Duration,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            hold_down: Duration::from_secs(5),
            margin: 0.2,
            degrade: Duration::from_secs(2),
        }
    }
}

/// A `[[rule]]`: flows it matches follow `target`'s policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// The rule's name (its class name when it carries its own policy).
    pub name: String,
    /// Only flows of this application.
    pub app: Option<String>,
    /// Only this IP protocol number.
    pub proto: Option<u8>,
    /// Only destinations in this prefix.
    pub dst: Option<Cidr>,
    /// Only destination ports in this inclusive range.
    pub dst_port: Option<(u16, u16)>,
    /// The policy matched flows follow.
    pub target: RuleTarget,
}

/// What a rule gives its flows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    /// The policy of application `[app.NAME]` (class NAME).
    Use(String),
    /// Its own policy (class = the rule's name).
    Inline(ClassPolicy),
}

/// An address prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a host prefix).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l.trim().parse::<u8>().ok().filter(|l| *l <= max)?,
            None => max,
        };
        Some(Cidr { addr, len })
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// TOML syntax, an unknown key, or a value of the wrong type (the message gives the
    /// line and column).
    #[error("policy file: {0}")]
    Syntax(String),
    /// A value that parses but makes no sense; `at` names the place (`app.video.never`).
    #[error("policy file: {at}: {msg}")]
    Invalid {
        /// Where (`app.NAME.key`, `rule[N].key`, `default.key`).
        at: String,
        /// What is wrong.
        msg: String,
    },
}

fn invalid(at: impl Into<String>, msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        at: at.into(),
        msg: msg.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Option<RawClass>,
    hysteresis: Option<RawHysteresis>,
    #[serde(default)]
    app: BTreeMap<String, RawClass>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    interfaces: Option<Vec<String>>,
    never: Option<Vec<String>>,
    max_cost: Option<u32>,
    max_rtt_ms: Option<f64>,
    max_loss_pct: Option<f64>,
    max_jitter_ms: Option<f64>,
    realtime: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHysteresis {
    hold_down_ms: Option<u64>,
    margin_pct: Option<f64>,
    degrade_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPort {
    One(i64),
    Range(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    app: Option<String>,
    proto: Option<String>,
    dst: Option<String>,
    dst_port: Option<RawPort>,
    #[serde(rename = "use")]
    use_: Option<String>,
    interfaces: Option<Vec<String>>,
    never: Option<Vec<String>>,
    max_cost: Option<u32>,
    max_rtt_ms: Option<f64>,
    max_loss_pct: Option<f64>,
    max_jitter_ms: Option<f64>,
    realtime: Option<bool>,
}

impl RawRule {
    fn class(&self) -> Option<RawClass> {
        let c = RawClass {
            interfaces: self.interfaces.clone(),
            never: self.never.clone(),
            max_cost: self.max_cost,
            max_rtt_ms: self.max_rtt_ms,
            max_loss_pct: self.max_loss_pct,
            max_jitter_ms: self.max_jitter_ms,
            realtime: self.realtime,
        };
        let any = c.interfaces.is_some()
            || c.never.is_some()
            || c.max_cost.is_some()
            || c.max_rtt_ms.is_some()
            || c.max_loss_pct.is_some()
            || c.max_jitter_ms.is_some()
            || c.realtime.is_some();
        any.then_some(c)
    }
}

impl Policy {
    /// Parses and validates a policy file. Errors name the key at fault.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string().trim().into()))?;
        let default = class_policy(DEFAULT_CLASS, raw.default.unwrap_or_default())?;
        let mut apps = BTreeMap::new();
        for (name, c) in raw.app {
            if !valid_class_name(&name) {
                return Err(invalid(
                    format!("app.{name}"),
                    "application names are 1 to 64 of A-Z a-z 0-9 . _ -",
                ));
            }
            if name == DEFAULT_CLASS {
                return Err(invalid(
                    "app.default",
                    "\"default\" is reserved: use the [default] section",
                ));
            }
            let p = class_policy(&format!("app.{name}"), c)?;
            apps.insert(name, p);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in raw.rule.into_iter().enumerate() {
            let at = format!("rule[{i}]");
            let rule = parse_rule(&at, i, r, &apps)?;
            if rules.iter().any(|o| o.name == rule.name) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("rule name {:?} used twice", rule.name),
                ));
            }
            if matches!(rule.target, RuleTarget::Inline(_))
                && (apps.contains_key(&rule.name) || rule.name == DEFAULT_CLASS)
            {
                return Err(invalid(
                    format!("{at}.name"),
                    format!(
                        "{:?} is already an application or the default policy",
                        rule.name
                    ),
                ));
            }
            rules.push(rule);
        }
        let hysteresis = match raw.hysteresis {
            None => Hysteresis::default(),
            Some(h) => {
                let d = Hysteresis::default();
                let margin_pct = h.margin_pct.unwrap_or(d.margin * 100.0);
                if !(0.0..100.0).contains(&margin_pct) {
                    return Err(invalid(
                        "hysteresis.margin_pct",
                        format!("{margin_pct} is not in [0, 100)"),
                    ));
                }
                Hysteresis {
                    hold_down: h.hold_down_ms.map_or(d.hold_down, Duration::from_millis),
                    margin: margin_pct / 100.0,
                    degrade: h.degrade_ms.map_or(d.degrade, Duration::from_millis),
                }
            }
        };
        Ok(Policy {
            default,
            apps,
            rules,
            hysteresis,
        })
    }

    /// Every interface the policy names (to check against the mobile host's
    /// configuration).
    pub fn interfaces(&self) -> Vec<&str> {
        let classes = std::iter::once(&self.default)
            .chain(self.apps.values())
            .chain(self.rules.iter().filter_map(|r| match &r.target {
                RuleTarget::Inline(p) => Some(p),
                RuleTarget::Use(_) => None,
            }));
        let mut out: Vec<&str> = Vec::new();
        for p in classes {
            for i in &p.interfaces {
                if let IfaceChoice::Named(n) = i {
                    out.push(n);
                }
            }
            out.extend(p.never.iter().map(String::as_str));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Refuses interfaces not in `known` (the mobile host's `[[interface]]` names).
    pub fn check_interfaces(&self, known: &[&str]) -> Result<(), PolicyError> {
        match self.interfaces().into_iter().find(|i| !known.contains(i)) {
            Some(i) => Err(invalid(
                "interfaces",
                format!(
                    "{i:?} is not an interface of the mobile host (known: {})",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// The policy of class `class` (an application, an inline rule, or `default`).
    pub fn class(&self, class: &str) -> Option<&ClassPolicy> {
        if class == DEFAULT_CLASS {
            return Some(&self.default);
        }
        self.apps.get(class).or_else(|| {
            self.rules.iter().find_map(|r| match &r.target {
                RuleTarget::Inline(p) if r.name == class => Some(p),
                _ => None,
            })
        })
    }

    /// The class a flow of `app` follows: the first matching rule's, else the
    /// application's, else `default`.
    pub fn class_of<'a>(&'a self, app: Option<&str>, flow: &FlowMatchInput) -> &'a str {
        for r in &self.rules {
            if r.matches(app, flow) {
                return match &r.target {
                    RuleTarget::Use(c) => c,
                    RuleTarget::Inline(_) => &r.name,
                };
            }
        }
        match app.and_then(|a| self.apps.get_key_value(a)) {
            Some((name, _)) => name,
            None => DEFAULT_CLASS,
        }
    }
}

impl Rule {
    /// Whether a flow of `app` matches.
    pub fn matches(&self, app: Option<&str>, flow: &FlowMatchInput) -> bool {
        self.app.as_deref().is_none_or(|a| Some(a) == app)
            && self.proto.is_none_or(|p| p == flow.proto)
            && self.dst.is_none_or(|c| c.contains(flow.dst))
            && self
                .dst_port
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&flow.dst_port))
    }
}

fn valid_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_iface_name(name: &str) -> bool {
    // Linux IFNAMSIZ is 16 with the NUL; no '/', no whitespace, not "." or "..".
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

fn class_policy(at: &str, c: RawClass) -> Result<ClassPolicy, PolicyError> {
    let mut interfaces = Vec::new();
    match c.interfaces {
        None => interfaces.push(IfaceChoice::Any),
        Some(list) if list.is_empty() => {
            return Err(invalid(
                format!("{at}.interfaces"),
                "empty list: name interfaces, or \"any\"",
            ))
        }
        Some(list) => {
            for i in list {
                let choice = if i == "any" {
                    IfaceChoice::Any
                } else if valid_iface_name(&i) {
                    IfaceChoice::Named(i.clone())
                } else {
                    return Err(invalid(
                        format!("{at}.interfaces"),
                        format!("{i:?} is not an interface name (or \"any\")"),
                    ));
                };
                if interfaces.contains(&choice) {
                    return Err(invalid(
                        format!("{at}.interfaces"),
                        format!("{i:?} listed twice"),
                    ));
                }
                interfaces.push(choice);
            }
        }
    }
    let mut never = Vec::new();
    for n in c.never.unwrap_or_default() {
        if n == "any" {
            return Err(invalid(
                format!("{at}.never"),
                "\"any\" cannot be forbidden (that would forbid everything)",
            ));
        }
        if !valid_iface_name(&n) {
            return Err(invalid(
                format!("{at}.never"),
                format!("{n:?} is not an interface name"),
            ));
        }
        if interfaces.contains(&IfaceChoice::Named(n.clone())) {
            return Err(invalid(
                format!("{at}.never"),
                format!("{n:?} is both preferred (interfaces) and forbidden (never)"),
            ));
        }
        if !never.contains(&n) {
            never.push(n);
        }
    }
    let limit = |key: &str, v: Option<f64>, max: f64| -> Result<Option<f64>, PolicyError> {
        match v {
            Some(x) if !(x.is_finite() && x > 0.0 && x <= max) => Err(invalid(
                format!("{at}.{key}"),
                format!("{x} is not in (0, {max}]"),
            )),
            v => Ok(v),
        }
    };
    Ok(ClassPolicy {
        interfaces,
        never,
        max_cost: c.max_cost,
        limits: Limits {
            max_rtt_ms: limit("max_rtt_ms", c.max_rtt_ms, 600_000.0)?,
            max_loss_pct: limit("max_loss_pct", c.max_loss_pct, 100.0)?,
            max_jitter_ms: limit("max_jitter_ms", c.max_jitter_ms, 600_000.0)?,
        },
        realtime: c.realtime.unwrap_or(false),
    })
}

fn parse_rule(
    at: &str,
    i: usize,
    r: RawRule,
    apps: &BTreeMap<String, ClassPolicy>,
) -> Result<Rule, PolicyError> {
    let known = || {
        if apps.is_empty() {
            "none defined".to_owned()
        } else {
            apps.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    let name = match r.name.clone() {
        Some(n) if valid_class_name(&n) => n,
        Some(n) => {
            return Err(invalid(
                format!("{at}.name"),
                format!("{n:?}: names are 1 to 64 of A-Z a-z 0-9 . _ -"),
            ))
        }
        None => format!("rule-{i}"),
    };
    if let Some(a) = &r.app {
        if !apps.contains_key(a) {
            return Err(invalid(
                format!("{at}.app"),
                format!("unknown application {a:?} (applications: {})", known()),
            ));
        }
    }
    let proto = match r.proto.as_deref() {
        None | Some("any") => None,
        Some("tcp") => Some(6),
        Some("udp") => Some(17),
        Some("icmp") => Some(1),
        Some("icmpv6") => Some(58),
        Some(p) => match p.parse::<u8>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(invalid(
                    format!("{at}.proto"),
                    format!("{p:?}: use tcp, udp, icmp, icmpv6, any or a protocol number"),
                ))
            }
        },
    };
    let dst = match &r.dst {
        None => None,
        Some(s) => Some(Cidr::parse(s).ok_or_else(|| {
            invalid(
                format!("{at}.dst"),
                format!("{s:?} is not an address or prefix (a.b.c.d/n)"),
            )
        })?),
    };
    let dst_port = match &r.dst_port {
        None => None,
        Some(p) => Some(parse_ports(p).ok_or_else(|| {
            invalid(
                format!("{at}.dst_port"),
                "use a port (443) or an inclusive range (\"5000-5100\") within 0-65535",
            )
        })?),
    };
    if dst_port.is_some() && !matches!(proto, Some(6) | Some(17)) {
        return Err(invalid(
            format!("{at}.dst_port"),
            "a port match needs proto = \"tcp\" or \"udp\"",
        ));
    }
    let inline = r.class();
    let target = match (&r.use_, inline) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                at,
                "give either `use` (an application's policy) or policy keys, not both",
            ))
        }
        (Some(u), None) if u == DEFAULT_CLASS => RuleTarget::Use(DEFAULT_CLASS.to_owned()),
        (Some(u), None) => {
            if !apps.contains_key(u) {
                return Err(invalid(
                    format!("{at}.use"),
                    format!("unknown application {u:?} (applications: {})", known()),
                ));
            }
            RuleTarget::Use(u.clone())
        }
        (None, Some(c)) => RuleTarget::Inline(class_policy(at, c)?),
        (None, None) => {
            return Err(invalid(
                at,
                "a rule needs `use = \"APP\"` or policy keys (interfaces, never, ...)",
            ))
        }
    };
    if r.app.is_none() && proto.is_none() && dst.is_none() && dst_port.is_none() {
        return Err(invalid(
            at,
            "a rule needs at least one match (app, proto, dst, dst_port); for every flow use [default]",
        ));
    }
    Ok(Rule {
        name,
        app: r.app,
        proto,
        dst,
        dst_port,
        target,
    })
}

fn parse_ports(p: &RawPort) -> Option<(u16, u16)> {
    match p {
        RawPort::One(n) => u16::try_from(*n).ok().map(|n| (n, n)),
        RawPort::Range(s) => {
            let (lo, hi) = match s.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let n = s.trim().parse().ok()?;
                    (n, n)
                }
            };
            (lo <= hi).then_some((lo, hi))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------

/// What a rule can match in a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowMatchInput {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub proto: u8,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port (0 when the protocol has none).
    pub dst_port: u16,
}

/// Where a class's flows go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Through the tunnel on this interface.
    Tunnel(String),
    /// No allowed interface is usable: hold (queue briefly or drop and count) until one is.
    Wait,
}

/// A new flow's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The class the flow follows from now on (remember it with the flow: moves name
    /// classes).
    pub class: String,
    /// Where it goes.
    pub decision: Decision,
    /// Whether the class is real-time.
    pub realtime: bool,
}

/// A class whose flows must change path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The class (an application's name, an inline rule's name, or `default`).
    pub app: String,
    /// Where its flows were.
    pub from: Decision,
    /// Where they go now.
    pub to: Decision,
}

#[derive(Debug, Clone, Copy)]
struct PathInput {
    usable: bool,
    in_doubt: bool,
    rtt_ms: Option<f64>,
    loss_pct: f64,
    jitter_ms: Option<f64>,
}

impl PathInput {
    fn from_quality(q: &Quality) -> Self {
        PathInput {
            usable: q.state.usable(),
            in_doubt: q.state == PathState::Doubt,
            rtt_ms: q.rtt_ms,
            loss_pct: q.loss_pct,
            jitter_ms: q.jitter_ms,
        }
    }

    /// Over a limit (or in doubt).
    fn over(&self, l: &Limits) -> bool {
        let gt = |v: Option<f64>, max: Option<f64>| matches!((v, max), (Some(v), Some(m)) if v > m);
        self.in_doubt
            || gt(self.rtt_ms, l.max_rtt_ms)
            || gt(Some(self.loss_pct), l.max_loss_pct)
            || gt(self.jitter_ms, l.max_jitter_ms)
    }

    /// Under every limit by the margin, and not in doubt.
    fn clean(&self, l: &Limits, margin: f64) -> bool {
        let under = |v: Option<f64>, max: Option<f64>| match (v, max) {
            (Some(v), Some(m)) => v <= m * (1.0 - margin),
            _ => true,
        };
        !self.in_doubt
            && under(self.rtt_ms, l.max_rtt_ms)
            && under(Some(self.loss_pct), l.max_loss_pct)
            && under(self.jitter_ms, l.max_jitter_ms)
    }
}

/// What a class thinks of one path.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    /// Working for this class (usable and within its limits, with hysteresis).
    ok: bool,
    /// Continuously usable and clean since.
    clean_since: Option<Instant>,
    /// Continuously over a limit since.
    over_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct ClassState {
    current: Option<Decision>,
    health: HashMap<String, Health>,
    pinned: Option<String>,
}

/// The policy engine. See the module doc. Owned by the mobile daemon's control thread
/// (`Send`, no interior locking).
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    costs: BTreeMap<String, u32>,
    paths: BTreeMap<String, PathInput>,
    classes: HashMap<String, ClassState>,
    pending: VecDeque<Move>,
    /// Latest time seen (deadlines at or before it are not reported again).
    now: Option<Instant>,
}

impl Engine {
    /// An engine for `policy`; `costs` are the interfaces' costs from the mobile host's
    /// configuration (an interface missing there costs 0).
    pub fn new(policy: Policy, costs: &[(&str, u32)]) -> Self {
        Engine {
            policy,
            costs: costs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
            paths: BTreeMap::new(),
            classes: HashMap::new(),
            pending: VecDeque::new(),
            now: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (`upmt policy reload`). Classes keep their current paths where
    /// the new policy still allows them; changes come out of [`Engine::reevaluate`]. A rule
    /// change can change a flow's class: re-[`decide`](Engine::decide) live flows.
    pub fn reload(&mut self, now: Instant, policy: Policy) {
        self.policy = policy;
        let policy = &self.policy;
        // A class gone from the policy has no decision any more (its flows get a new class
        // when re-decided); a pin survives while the new policy allows its interface.
        self.classes.retain(|c, _| policy.class(c).is_some());
        self.refresh(now);
    }

    /// Replaces the table of paths: every interface with a tunnel and its measured quality.
    /// Interfaces not listed have no usable path.
    pub fn set_paths(&mut self, now: Instant, paths: &[(&str, Quality)]) {
        self.paths = paths
            .iter()
            .map(|(n, q)| ((*n).to_owned(), PathInput::from_quality(q)))
            .collect();
        self.refresh(now);
    }

    /// Updates one path (`None`: its tunnel is gone).
    pub fn set_path(&mut self, now: Instant, iface: &str, quality: Option<Quality>) {
        match quality {
            Some(q) => {
                self.paths
                    .insert(iface.to_owned(), PathInput::from_quality(&q));
            }
            None => {
                self.paths.remove(iface);
            }
        }
        self.refresh(now);
    }

    /// Where a new flow of `app` (`None`: unclassified) goes. Also fixes the class's path
    /// if it had none yet.
    pub fn decide(&mut self, now: Instant, app: Option<&str>, flow: &FlowMatchInput) -> Placement {
        let class = self.policy.class_of(app, flow).to_owned();
        let realtime = self.policy.class(&class).is_some_and(|p| p.realtime);
        self.refresh_class(now, &class);
        let decision = self.update_class(now, &class);
        Placement {
            class,
            decision,
            realtime,
        }
    }

    /// Classes (that have flows, i.e. were decided for) whose path changes now, after path
    /// changes, a reload, or a hold-down running out. Call after [`Engine::set_paths`] and
    /// at [`Engine::poll_timeout`].
    pub fn reevaluate(&mut self, now: Instant) -> Vec<Move> {
        self.refresh(now);
        let mut names: Vec<String> = self.classes.keys().cloned().collect();
        names.sort_unstable();
        for c in names {
            self.update_class(now, &c);
        }
        self.pending.drain(..).collect()
    }

    /// When a hold-down or a degradation delay runs out (call [`Engine::reevaluate`] then).
    /// A move already queued by [`Engine::decide`] makes it "now".
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pending.is_empty() {
            return self.now;
        }
        let h = &self.policy.hysteresis;
        let mut next: Option<Instant> = None;
        for (class, st) in &self.classes {
            let realtime = self.policy.class(class).is_some_and(|p| p.realtime);
            for hl in st.health.values() {
                let t = match (hl.ok, hl.over_since, hl.clean_since) {
                    (true, Some(t), _) if !realtime => Some(t + h.degrade),
                    (true, None, Some(t)) => Some(t + h.hold_down),
                    _ => None,
                }
                .filter(|t| self.now.is_none_or(|n| *t > n));
                next = match (next, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        next
    }

    /// Whether application (class) `app` is real-time (its paths are probed fast).
    pub fn is_realtime(&self, app: &str) -> bool {
        self.policy.class(app).is_some_and(|p| p.realtime)
    }

    /// Interfaces carrying a real-time class now (probe them at the fast rate).
    pub fn realtime_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .classes
            .iter()
            .filter(|(c, _)| self.is_realtime(c))
            .filter_map(|(_, st)| match &st.current {
                Some(Decision::Tunnel(i)) => Some(i.clone()),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every class that has flows (was decided for) and its current decision, by name
    /// (for `upmt status` / `upmt policy show`).
    pub fn decisions(&self) -> Vec<(&str, &Decision)> {
        let mut out: Vec<(&str, &Decision)> = self
            .classes
            .iter()
            .filter_map(|(c, st)| st.current.as_ref().map(|d| (c.as_str(), d)))
            .collect();
        out.sort_unstable_by_key(|(c, _)| *c);
        out
    }

    /// The current decision of a class, if it has one.
    pub fn current(&self, class: &str) -> Option<&Decision> {
        self.classes.get(class).and_then(|s| s.current.as_ref())
    }

    /// Pins class `class` to `iface` (`upmt handover --app NAME --to IFACE`), or back to
    /// automatic with `None`. A pin never overrides `never`/`max_cost`; while the pinned
    /// interface is unusable the policy decides. The move comes out of
    /// [`Engine::reevaluate`].
    pub fn pin(&mut self, class: &str, iface: Option<&str>) -> Result<(), PolicyError> {
        let Some(p) = self.policy.class(class) else {
            return Err(invalid(class, "no such application or rule in the policy"));
        };
        if let Some(i) = iface {
            if !self.allowed(p).iter().any(|a| a == i) {
                return Err(invalid(
                    class,
                    format!(
                        "{i:?} is not allowed for it (never, max_cost or not a known interface)"
                    ),
                ));
            }
        }
        self.classes.entry(class.to_owned()).or_default().pinned = iface.map(str::to_owned);
        Ok(())
    }

    /// Allowed interfaces of a class, in order of preference.
    fn allowed(&self, p: &ClassPolicy) -> Vec<String> {
        let cost = |i: &str| self.costs.get(i).copied().unwrap_or(0);
        let permitted =
            |i: &str| !p.never.iter().any(|n| n == i) && p.max_cost.is_none_or(|m| cost(i) <= m);
        let named: Vec<&str> = p
            .interfaces
            .iter()
            .filter_map(|c| match c {
                IfaceChoice::Named(n) => Some(n.as_str()),
                IfaceChoice::Any => None,
            })
            .collect();
        let mut out = Vec::new();
        for c in &p.interfaces {
            match c {
                IfaceChoice::Named(n) => {
                    if permitted(n) && !out.contains(n) {
                        out.push(n.clone());
                    }
                }
                IfaceChoice::Any => {
                    let mut rest: Vec<&str> = self
                        .costs
                        .keys()
                        .chain(self.paths.keys())
                        .map(String::as_str)
                        .filter(|i| !named.contains(i) && permitted(i))
                        .collect();
                    rest.sort_unstable_by_key(|i| (cost(i), *i));
                    rest.dedup();
                    for i in rest {
                        if !out.iter().any(|o| o == i) {
                            out.push(i.to_owned());
                        }
                    }
                }
            }
        }
        out
    }

    fn refresh(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        let names: Vec<String> = self.classes.keys().cloned().collect();
        for c in names {
            self.refresh_class(now, &c);
        }
    }

    /// Updates a class's view of every path.
    fn refresh_class(&mut self, now: Instant, class: &str) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        let Some(p) = self.policy.class(class) else {
            return;
        };
        let h = self.policy.hysteresis;
        let degrade = if p.realtime {
            Duration::ZERO
        } else {
            h.degrade
        };
        let limits = p.limits;
        let st = self.classes.entry(class.to_owned()).or_default();
        st.health.retain(|i, _| self.paths.contains_key(i));
        for (iface, path) in &self.paths {
            let hl = st.health.entry(iface.clone()).or_default();
            if !path.usable {
                *hl = Health::default();
                continue;
            }
            let over = path.over(&limits);
            let clean = path.clean(&limits, h.margin);
            if over {
                hl.over_since.get_or_insert(now);
                hl.clean_since = None;
            } else {
                hl.over_since = None;
            }
            if clean {
                hl.clean_since.get_or_insert(now);
            }
            if hl.ok {
                if hl
                    .over_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= degrade)
                {
                    hl.ok = false;
                }
            } else if clean {
                hl.ok = true;
            }
        }
    }

    /// Recomputes a class's decision; queues a [`Move`] when it changes.
    fn update_class(&mut self, now: Instant, class: &str) -> Decision {
        let Some(p) = self.policy.class(class) else {
            return Decision::Wait;
        };
        let allowed = self.allowed(p);
        let hold_down = self.policy.hysteresis.hold_down;
        let st = self.classes.entry(class.to_owned()).or_default();
        let usable = |i: &String| self.paths.get(i).is_some_and(|p| p.usable);
        let working = |i: &String| st.health.get(i).is_some_and(|h| h.ok) && usable(i);
        let stable = |i: &String| {
            working(i)
                && st
                    .health
                    .get(i)
                    .and_then(|h| h.clean_since)
                    .is_some_and(|t| now.saturating_duration_since(t) >= hold_down)
        };
        let cur = match &st.current {
            Some(Decision::Tunnel(i)) if allowed.contains(i) => Some(i.clone()),
            _ => None,
        };
        let pinned = st
            .pinned
            .clone()
            .filter(|i| allowed.contains(i) && usable(i));
        let choice = if let Some(pin) = pinned {
            Some(pin)
        } else if let Some(c) = cur.as_ref().filter(|c| working(c)) {
            // On a working path: only a more preferred path, good for the hold-down, wins.
            let better = allowed
                .iter()
                .take_while(|i| *i != c)
                .find(|i| stable(i))
                .cloned();
            Some(better.unwrap_or_else(|| c.clone()))
        } else if let Some(w) = allowed.iter().find(|i| working(i)) {
            // No working path: the best working one, at once.
            Some(w.clone())
        } else if let Some(c) = cur.as_ref().filter(|c| usable(c)) {
            // Nothing meets the limits: stay where we are if it still carries traffic...
            Some(c.clone())
        } else {
            // ... or take the best usable allowed path.
            allowed.iter().find(|i| usable(i)).cloned()
        };
        let decision = choice.map_or(Decision::Wait, Decision::Tunnel);
        match &st.current {
            Some(prev) if *prev != decision => {
                self.pending.push_back(Move {
                    app: class.to_owned(),
                    from: prev.clone(),
                    to: decision.clone(),
                });
            }
            _ => {}
        }
        st.current = Some(decision.clone());
        decision
    }
}

#[cfg(test)]
mod tests;
