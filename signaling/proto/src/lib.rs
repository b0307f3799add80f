//! Sans-IO UPMT signalling over SIP: the anchor's registrar and tunnel broker
//! ([`registrar::Registrar`]) and the mobile host's client ([`client::Client`]).
//!
//! Layer: control plane. This crate contains no networking code and never reads the clock or
//! the OS random source (enforced by `clippy.toml`): every input is a datagram with its
//! [`Path`] and an `Instant`, every output is a [`Transmit`] or an event, and randomness
//! comes from the `rand::RngCore` you pass in. The `signaling` crate has a blocking UDP
//! driver; the daemons drive these types from their own loops.
//!
//! Vocabulary (quinn-proto): `handle_datagram(now, path, bytes)` for each datagram,
//! `handle_timeout(now)` when `poll_timeout()` is reached, then drain `poll_transmit(now)`
//! and `poll_event()` after every `handle_*` call. Signalling travels on plain UDP (the
//! anchor's port 5060) or inside a tunnel as a control frame of kind 0x03 ([`framing`]);
//! the [`Path`] says which, and replies go back the way their request came.
//!
//! Modules: [`codec`] (strict SIP parser/emitter), [`transaction`] + [`timer`] (RFC 3261 §17
//! non-INVITE transactions), [`auth`] (Digest, session key, MESSAGE MAC, replay window),
//! [`body`] (JSON bodies), [`pool`] (VIPA pool), [`credentials`], [`rate`], [`consts`].
//! The wire format is specified in `docs/PROTOCOL.md`.
//!
//! A complete association, both ends sans-IO, datagrams carried by hand:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rand::SeedableRng;
//! use signaling_proto::client::{self, Client, ClientConfig};
//! use signaling_proto::credentials::Credentials;
//! use signaling_proto::registrar::{Registrar, RegistrarConfig};
//! use signaling_proto::Path;
//!
//! # #[allow(clippy::disallowed_methods)]
//! let mut now = Instant::now(); // the driver's clock; tests use a virtual one
//! let mut creds = Credentials::new("upmt");
//! creds.add_password("mh1", "secret");
//! let rng = |seed| Box::new(rand::rngs::StdRng::seed_from_u64(seed));
//! let mut anchor = Registrar::new(now, RegistrarConfig::default(), creds, rng(1)).unwrap();
//! let anchor_addr = "198.18.2.1:5060".parse().unwrap();
//! let mh_addr = "198.18.0.1:40000".parse().unwrap(); // as the anchor sees it (NAT)
//! let mut mh = Client::new(ClientConfig::new("mh1", "secret", "upmt", anchor_addr), rng(2));
//!
//! mh.associate(now);
//! let vipa = loop {
//!     while let Some(t) = mh.poll_transmit(now) {
//!         anchor.handle_datagram(now, Path::Udp(mh_addr), &t.payload);
//!     }
//!     while let Some(t) = anchor.poll_transmit(now) {
//!         mh.handle_datagram(now, Path::Udp(anchor_addr), &t.payload);
//!     }
//!     if let Some(client::Event::Associated { vipa, .. }) = mh.poll_event() {
//!         break vipa;
//!     }
//!     now += Duration::from_millis(10);
//!     mh.handle_timeout(now);
//!     anchor.handle_timeout(now);
//! };
//! assert_eq!(anchor.vipa_of("mh1"), Some(vipa));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod body;
pub mod client;
pub mod codec;
pub mod consts;
pub mod credentials;
pub mod framing;
pub mod path;
pub mod pool;
pub mod rate;
pub mod registrar;
pub mod timer;
pub mod transaction;

pub use path::{Path, Transmit};
