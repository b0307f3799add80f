//! Sans-IO UPMT signalling over SIP.
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
