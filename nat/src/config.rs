//! NAT configuration: public addresses, port range, filtering mode, timeouts and caps.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// Inbound filtering behaviour (RFC 4787 §5, RFC 5382 §4.3).
///
/// Mapping is always endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1); this only
/// decides which remote endpoints may send *to* an existing mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filtering {
    /// Any remote endpoint may send to a live mapping (RFC 4787 §5 "Endpoint-Independent
    /// Filtering"): best application transparency, weakest protection.
    EndpointIndependent,
    /// Only remote addresses the host has sent to (any port) may reach the mapping
    /// ("Address-Dependent Filtering"). The default, see [`NatConfig::filtering`].
    AddressDependent,
    /// Only the exact remote address *and* port the host has sent to ("Address and
    /// Port-Dependent Filtering"). ICMP queries have no port and behave as address-dependent.
    AddressAndPortDependent,
}

/// Idle timeouts per protocol and TCP state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// UDP mapping idle timeout. RFC 4787 REQ-5: "MUST NOT expire in less than two
    /// minutes ... RECOMMENDED ... 5 minutes or more". Default 5 min.
    pub udp: Duration,
    /// TCP established idle timeout. RFC 5382 REQ-5: "MUST NOT be less than 2 hours 4
    /// minutes". Default 2 h 4 min.
    pub tcp_established: Duration,
    /// TCP transitory (partially open, half or fully closed, reset) idle timeout.
    /// RFC 5382 REQ-5: "MUST NOT be less than 4 minutes". Default 4 min.
    pub tcp_transitory: Duration,
    /// ICMP query (echo) mapping timeout. RFC 5508 REQ-1: "MUST NOT expire ... in less than
    /// 60 seconds". Default 60 s.
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            udp: Duration::from_secs(5 * 60),
            tcp_established: Duration::from_secs(2 * 3600 + 4 * 60),
            tcp_transitory: Duration::from_secs(4 * 60),
            icmp: Duration::from_secs(60),
        }
    }
}

/// Configuration of a [`crate::Nat`].
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Public addresses of the anchor's NAT pool (at least one). A host's mappings all use
    /// the same public address ("Paired" pooling, RFC 4787 REQ-2), chosen by a hash of its VIPA.
    pub public_addrs: Vec<Ipv4Addr>,
    /// Public ports (and ICMP echo identifiers) the allocator may hand out. Default
    /// `1024..=65535`. A host's own port is kept when it lies in the range and is free.
    pub port_range: RangeInclusive<u16>,
    /// Inbound filtering. Default [`Filtering::AddressDependent`]: RFC 4787 REQ-8 recommends
    /// endpoint-independent filtering when transparency matters most and address-dependent
    /// when "a more stringent filtering behavior is most important". The anchor is one public
    /// address shared by many mobile hosts, like a carrier-grade NAT (RFC 6888), so we take
    /// the stringent one that still lets STUN/ICE hole punching work (both sides send first).
    pub filtering: Filtering,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Most mappings one host (VIPA) may hold (RFC 6888 REQ-4 "limit the number of ports
    /// ... per subscriber"). Default 4096.
    pub max_mappings_per_host: usize,
    /// Most mappings in the whole table. Default 2 097 152.
    pub max_mappings: usize,
    /// Most remote endpoints remembered per mapping for filtering; when full the least
    /// recently used one is forgotten. Default 256. Unused with endpoint-independent filtering.
    pub max_permissions_per_mapping: usize,
    /// Most IPv4 datagrams whose later fragments are being tracked at once. Default 4096.
    pub max_fragments: usize,
    /// How long a datagram's fragment state is kept after its first fragment. Default 30 s
    /// (Linux `ipfrag_time`).
    pub fragment_timeout: Duration,
    /// Seed for the keyed table hash and for port randomisation (sans-IO: the caller supplies
    /// randomness; use a random value in production).
    pub seed: u64,
}

impl NatConfig {
    /// A configuration with the documented defaults for the given public addresses.
    pub fn new(public_addrs: Vec<Ipv4Addr>) -> Self {
        Self {
            public_addrs,
            port_range: 1024..=65535,
            filtering: Filtering::AddressDependent,
            timeouts: Timeouts::default(),
            max_mappings_per_host: 4096,
            max_mappings: 2 * 1024 * 1024,
            max_permissions_per_mapping: 256,
            max_fragments: 4096,
            fragment_timeout: Duration::from_secs(30),
            seed: 0x5eed_0f0a_7000_0001_u64,
        }
    }

    /// Checks the configuration against the RFC minimums.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.public_addrs.is_empty() {
            return Err(ConfigError::NoPublicAddress);
        }
        if self.port_range.is_empty() {
            return Err(ConfigError::EmptyPortRange);
        }
        let t = &self.timeouts;
        if t.udp < Duration::from_secs(120) {
            return Err(ConfigError::TimeoutTooShort("udp", 120));
        }
        if t.tcp_established < Duration::from_secs(2 * 3600 + 4 * 60) {
            return Err(ConfigError::TimeoutTooShort("tcp_established", 7440));
        }
        if t.tcp_transitory < Duration::from_secs(240) {
            return Err(ConfigError::TimeoutTooShort("tcp_transitory", 240));
        }
        if t.icmp < Duration::from_secs(60) {
            return Err(ConfigError::TimeoutTooShort("icmp", 60));
        }
        if self.max_mappings == 0 || self.max_mappings_per_host == 0 {
            return Err(ConfigError::ZeroCap);
        }
        Ok(())
    }
}

/// An invalid [`NatConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `public_addrs` is empty.
    #[error("the NAT needs at least one public address")]
    NoPublicAddress,
    /// `port_range` holds no port.
    #[error("the NAT port range is empty")]
    EmptyPortRange,
    /// A timeout is below its RFC minimum (field name, minimum in seconds).
    #[error("timeout {0} is below the RFC minimum of {1} s")]
    TimeoutTooShort(&'static str, u64),
    /// `max_mappings` or `max_mappings_per_host` is zero.
    #[error("mapping caps must be at least 1")]
    ZeroCap,
}
