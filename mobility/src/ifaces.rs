//! Which access interfaces are usable for a tunnel, from the kernel's link and address
//! events ([`crate::netlink::NetEvent`]).
//!
//! An interface is usable when it is up with carrier and holds an IPv4 address. The tracker
//! reports only changes of the interfaces it watches, so the daemon opens a tunnel when one
//! becomes usable (or its address changes: a new DHCP lease behind a new NAT) and closes it
//! when it stops being usable.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::netlink::NetEvent;

/// A change of a watched interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceChange {
    /// Usable with this address (first time, or with a new address).
    Usable {
        /// Interface name.
        name: String,
        /// Its IPv4 address.
        addr: Ipv4Addr,
    },
    /// No longer usable (down, no carrier, address gone, or removed).
    Unusable {
        /// Interface name.
        name: String,
    },
}

#[derive(Debug, Default, Clone)]
struct Link {
    name: Option<String>,
    up: bool,
    addrs: Vec<Ipv4Addr>,
}

/// Tracks interfaces by index. See the module doc.
#[derive(Debug, Default)]
pub struct Interfaces {
    watched: Vec<String>,
    ignored: Vec<String>,
    links: HashMap<u32, Link>,
    /// What was last reported for each watched name.
    reported: HashMap<String, Option<Ipv4Addr>>,
}

impl Interfaces {
    /// Watches the interfaces named in `watched`; when it is empty, every interface but
    /// loopback and those in `ignored` (the host's own TUN must be there).
    pub fn new(watched: Vec<String>, ignored: Vec<String>) -> Self {
        Interfaces {
            watched,
            ignored,
            ..Default::default()
        }
    }

    /// Whether `name` is one the host may open tunnels on.
    pub fn watches(&self, name: &str) -> bool {
        if self.watched.is_empty() {
            name != "lo" && !self.ignored.iter().any(|i| i == name)
        } else {
            self.watched.iter().any(|w| w == name)
        }
    }

    /// The current usable address of `name`, if any.
    pub fn usable_addr(&self, name: &str) -> Option<Ipv4Addr> {
        self.reported.get(name).copied().flatten()
    }

    /// Feeds one kernel event; returns the changes of watched interfaces it causes.
    pub fn handle(&mut self, e: &NetEvent) -> Vec<IfaceChange> {
        match e {
            NetEvent::Link {
                index,
                name,
                usable,
            } => {
                let l = self.links.entry(*index).or_default();
                if name.is_some() {
                    l.name.clone_from(name);
                }
                l.up = *usable;
            }
            NetEvent::LinkRemoved { index, .. } => {
                if let Some(mut l) = self.links.remove(index) {
                    l.up = false;
                    l.addrs.clear();
                    return self.report(l.name.as_deref(), None);
                }
            }
            NetEvent::AddrAdded { index, addr, .. } => {
                let l = self.links.entry(*index).or_default();
                if !l.addrs.contains(addr) {
                    l.addrs.push(*addr);
                }
            }
            NetEvent::AddrRemoved { index, addr, .. } => {
                if let Some(l) = self.links.get_mut(index) {
                    l.addrs.retain(|a| a != addr);
                }
            }
            NetEvent::DumpDone | NetEvent::Error(_) => return Vec::new(),
        }
        let index = match e {
            NetEvent::Link { index, .. }
            | NetEvent::AddrAdded { index, .. }
            | NetEvent::AddrRemoved { index, .. } => *index,
            _ => return Vec::new(),
        };
        let Some(l) = self.links.get(&index) else {
            return Vec::new();
        };
        let now = if l.up { l.addrs.first().copied() } else { None };
        let name = l.name.clone();
        self.report(name.as_deref(), now)
    }

    fn report(&mut self, name: Option<&str>, now: Option<Ipv4Addr>) -> Vec<IfaceChange> {
        let Some(name) = name else {
            return Vec::new();
        };
        if !self.watches(name) {
            return Vec::new();
        }
        let before = self.reported.get(name).copied().flatten();
        if before == now {
            return Vec::new();
        }
        self.reported.insert(name.to_owned(), now);
        let mut out = Vec::new();
        if before.is_some() {
            out.push(IfaceChange::Unusable {
                name: name.to_owned(),
            });
        }
        if let Some(addr) = now {
            out.push(IfaceChange::Usable {
                name: name.to_owned(),
                addr,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, usable: bool) -> NetEvent {
        NetEvent::Link {
            index,
            name: Some(name.into()),
            usable,
        }
    }

    fn addr(index: u32, a: [u8; 4], added: bool) -> NetEvent {
        let addr = Ipv4Addr::from(a);
        if added {
            NetEvent::AddrAdded {
                index,
                addr,
                prefix: 24,
            }
        } else {
            NetEvent::AddrRemoved {
                index,
                addr,
                prefix: 24,
            }
        }
    }

    #[test]
    fn lifecycle() {
        let mut t = Interfaces::new(vec!["wlan0".into(), "umts0".into()], Vec::new());
        assert!(t.handle(&link(3, "wlan0", true)).is_empty()); // no address yet
        let c = t.handle(&addr(3, [192, 168, 100, 25], true));
        assert_eq!(
            c,
            vec![IfaceChange::Usable {
                name: "wlan0".into(),
                addr: Ipv4Addr::new(192, 168, 100, 25)
            }]
        );
        // Repeated state: nothing.
        assert!(t.handle(&link(3, "wlan0", true)).is_empty());
        // Down: unusable; up again: usable again.
        assert_eq!(
            t.handle(&link(3, "wlan0", false)),
            vec![IfaceChange::Unusable {
                name: "wlan0".into()
            }]
        );
        assert_eq!(t.handle(&link(3, "wlan0", true)).len(), 1);
        // New address (new lease): unusable then usable with the new one.
        t.handle(&addr(3, [192, 168, 100, 25], false));
        let c = t.handle(&addr(3, [192, 168, 100, 77], true));
        assert_eq!(
            c,
            vec![IfaceChange::Usable {
                name: "wlan0".into(),
                addr: Ipv4Addr::new(192, 168, 100, 77)
            }]
        );
        // Unwatched interfaces are ignored.
        t.handle(&link(9, "eth9", true));
        assert!(t.handle(&addr(9, [10, 0, 0, 1], true)).is_empty());
        // Removal.
        assert_eq!(
            t.handle(&NetEvent::LinkRemoved {
                index: 3,
                name: None
            }),
            vec![IfaceChange::Unusable {
                name: "wlan0".into()
            }]
        );
        assert_eq!(t.usable_addr("wlan0"), None);
    }

    #[test]
    fn watch_all_but_loopback() {
        let mut t = Interfaces::new(Vec::new(), vec!["upmt0".into()]);
        t.handle(&link(1, "lo", true));
        assert!(t.handle(&addr(1, [127, 0, 0, 1], true)).is_empty());
        t.handle(&link(5, "upmt0", true));
        assert!(t.handle(&addr(5, [100, 64, 0, 2], true)).is_empty());
        assert!(t.handle(&addr(1, [127, 0, 0, 1], true)).is_empty());
        t.handle(&link(2, "eth0", true));
        assert_eq!(t.handle(&addr(2, [10, 10, 10, 25], true)).len(), 1);
    }
}
