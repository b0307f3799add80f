//! The UPMT-aware SOCKS5 proxy: a second way for applications into per-application mobility
//! (the first is the TUN with classification of legacy applications).
//!
//! An application that speaks SOCKS connects to the proxy (on `127.0.0.1`) and names itself
//! with the RFC 1929 user name (`curl -x socks5h://video@127.0.0.1:1080 ...`), or is named
//! by its process through [`FlowHook::app_of_client`]. The proxy opens the outgoing socket
//! bound to the host's VIPA, tells the mobile daemon which application the new flow belongs
//! to ([`FlowHook::register`]) *before* the first packet leaves, and relays.
//!
//! Supported: CONNECT and UDP ASSOCIATE (RFC 1928 sections 4-7), IPv4, IPv6 and domain
//! names; BIND is refused with reply 0x07, UDP fragments are dropped (section 7 allows it).
//! Parsing (`proto`) is sans-IO and never panics; the server (`server`) uses blocking
//! sockets with a thread per client and a cap on clients.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod proto;
pub mod server;

pub use server::{FlowHook, Proto, Proxy, ProxyConfig, ProxyStats};
