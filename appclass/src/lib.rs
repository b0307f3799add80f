//! Classification of legacy applications' flows for UPMT (issue 7): which application owns
//! the flow whose first packet the mobile host just read from `upmt0`, and the launcher that
//! tags a program as an application (`upmt run --app NAME -- CMD`).
//!
//! Layer: mobile-host control plane, beside `mobility`. It does I/O (a sock_diag netlink
//! socket, `/proc`, the cgroup2 file system) but keeps it small: the message format is
//! sans-IO in [`diag`], the cache logic runs over a [`Host`] trait that tests fake. It does
//! not touch packets, policies or tunnels.
//!
//! How a flow is named ([`Classifier::classify`]):
//! 1. `NETLINK_SOCK_DIAG` exact lookup of the 5-tuple (TCP in natural order, UDP reversed)
//!    gives the socket's uid, inode and cgroup id;
//! 2. a cgroup id under `upmt.apps/NAME` names application NAME (launched with
//!    [`launch::run_in_app`]);
//! 3. otherwise the inode leads to the owning process through `/proc/*/fd` (cached; on a
//!    miss the fds of recent owners first, then a full scan, rate-limited and
//!    negative-cached) and the process to its executable name, or to its `upmt.apps/NAME`
//!    cgroup when the cgroup mount is not visible.
//!
//! No background work: an idle classifier costs nothing.
//!
//! ```no_run
//! use appclass::{Classifier, Config, Flow, Proto};
//! let mut c = Classifier::new(Config::default())?;
//! let flow = Flow {
//!     proto: Proto::Tcp,
//!     src: "100.64.0.2:40000".parse().unwrap(), // VIPA:port, as read from upmt0
//!     dst: "198.18.3.1:80".parse().unwrap(),
//! };
//! if let Some(app) = c.classify(&flow) {
//!     println!("{} (pid {:?}, uid {})", app.name, app.pid, app.uid);
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::net::SocketAddr;

pub mod cgroup;
pub mod classify;
pub mod diag;
pub mod launch;
pub mod procfs;
pub mod sock;

pub use classify::{AppInfo, Classifier, Config, Host, LiveHost, NameSource, Source, Stats};
pub use diag::SockInfo;
pub use launch::run_in_app;

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A flow as its packets leave the host: `src` is the local end (VIPA:port on `upmt0`),
/// `dst` the remote end. Both of one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// TCP or UDP.
    pub proto: Proto,
    /// Local end.
    pub src: SocketAddr,
    /// Remote end.
    pub dst: SocketAddr,
}
