//! The VIPA pool: addresses from a CIDR, handed out to associated hosts.
//!
//! Freed addresses go to the back of a FIFO and new hosts take from the front, so an
//! address stays unused as long as possible after its owner leaves; a returning host asks
//! for its previous address (remembered per identity, or carried in the refresh's `VIpAddr`)
//! and gets it back if nobody took it meanwhile.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// Network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

/// Error parsing an [`Ipv4Cidr`] or building a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/len`.
    #[error("not an IPv4 prefix a.b.c.d/len: {0}")]
    Syntax(String),
    /// Host bits set in the address.
    #[error("host bits set in {0}")]
    HostBits(String),
    /// The pool prefix must be between /8 and /30.
    #[error("pool prefix length must be 8..=30, got {0}")]
    PoolSize(u8),
}

impl Ipv4Cidr {
    /// The netmask as a u32.
    pub fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError::Syntax(s.to_owned());
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        let c = Ipv4Cidr { addr, len };
        if u32::from(addr) & !c.mask() != 0 {
            return Err(CidrError::HostBits(s.to_owned()));
        }
        Ok(c)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The pool. Network, broadcast and the first host address (kept for the anchor's side of
/// the VIPA network) are never handed out.
#[derive(Debug, Clone)]
pub struct VipaPool {
    cidr: Ipv4Cidr,
    free: VecDeque<u32>,
    owner: HashMap<u32, String>,
    capacity: usize,
}

impl VipaPool {
    /// A pool over `cidr` (prefix /8 to /30).
    pub fn new(cidr: Ipv4Cidr) -> Result<VipaPool, CidrError> {
        if !(8..=30).contains(&cidr.len) {
            return Err(CidrError::PoolSize(cidr.len));
        }
        let base = u32::from(cidr.addr);
        let size = 1u32 << (32 - u32::from(cidr.len));
        let free: VecDeque<u32> = (base + 2..base + size - 1).collect();
        let capacity = free.len();
        Ok(VipaPool {
            cidr,
            free,
            owner: HashMap::new(),
            capacity,
        })
    }

    /// The pool's prefix.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// Addresses that can be handed out in total.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Addresses in use.
    pub fn in_use(&self) -> usize {
        self.owner.len()
    }

    fn assignable(&self, ip: u32) -> bool {
        let base = u32::from(self.cidr.addr);
        let size = 1u32 << (32 - u32::from(self.cidr.len));
        self.cidr.contains(Ipv4Addr::from(ip)) && ip >= base + 2 && ip < base + size - 1
    }

    /// Allocates an address for `owner`: `preferred` if it is in the pool and free (or
    /// already `owner`'s), else the longest-free address. `None` when exhausted.
    pub fn allocate(&mut self, owner: &str, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(p) = preferred.map(u32::from).filter(|p| self.assignable(*p)) {
            match self.owner.get(&p) {
                Some(o) if o == owner => return Some(Ipv4Addr::from(p)),
                Some(_) => {}
                None => {
                    self.owner.insert(p, owner.to_owned());
                    // Its FIFO entry goes stale; compact when stale entries pile up.
                    if self.free.len() > 2 * self.capacity {
                        self.compact();
                    }
                    return Some(Ipv4Addr::from(p));
                }
            }
        }
        while let Some(ip) = self.free.pop_front() {
            if let std::collections::hash_map::Entry::Vacant(e) = self.owner.entry(ip) {
                e.insert(owner.to_owned());
                return Some(Ipv4Addr::from(ip));
            }
        }
        None
    }

    /// Returns `ip` to the pool (no-op if it was not allocated).
    pub fn release(&mut self, ip: Ipv4Addr) {
        let ip = u32::from(ip);
        if self.owner.remove(&ip).is_some() {
            self.free.push_back(ip);
        }
    }

    /// Who holds `ip`.
    pub fn owner(&self, ip: Ipv4Addr) -> Option<&str> {
        self.owner.get(&u32::from(ip)).map(String::as_str)
    }

    fn compact(&mut self) {
        let owner = &self.owner;
        let mut seen = std::collections::HashSet::new();
        self.free
            .retain(|ip| !owner.contains_key(ip) && seen.insert(*ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse() {
        let c: Ipv4Cidr = "100.64.0.0/16".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(100, 64, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(100, 65, 0, 1)));
        assert!("100.64.0.1/16".parse::<Ipv4Cidr>().is_err());
        assert!("100.64.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("x/1".parse::<Ipv4Cidr>().is_err());
        assert_eq!(c.to_string(), "100.64.0.0/16");
    }

    #[test]
    fn allocate_prefer_release_exhaust() {
        let mut p = VipaPool::new("10.0.0.0/29".parse().unwrap()).unwrap();
        assert_eq!(p.capacity(), 5); // .2 .. .6
        let a = p.allocate("a", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.allocate("a", Some(a)), Some(a));
        assert_eq!(p.allocate("b", Some(a)), Some(Ipv4Addr::new(10, 0, 0, 3)));
        p.release(a);
        // A returning "a" gets its old address back even though it is at the FIFO's end.
        assert_eq!(p.allocate("a", Some(a)), Some(a));
        for _ in 0..3 {
            assert!(p.allocate("x", None).is_some());
        }
        assert_eq!(p.allocate("y", None), None);
        assert_eq!(p.in_use(), 5);
        assert_eq!(p.allocate("y", Some(Ipv4Addr::new(10, 0, 0, 7))), None); // broadcast
    }
}
