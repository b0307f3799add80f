//! Every protocol constant in one place (WireGuard keeps its in `messages.h`).
//!
//! Timer values follow RFC 3261 §17.1.1.1 and Table 4 (§A) for an unreliable transport (UDP).

use std::time::Duration;

/// RFC 3261 §17.1.1.1: "T1 is an estimate of the round-trip time (RTT), and it defaults to
/// 500 ms."
pub const T1: Duration = Duration::from_millis(500);
/// RFC 3261 Table 4: "The maximum retransmit interval for non-INVITE requests and INVITE
/// responses" = 4 s.
pub const T2: Duration = Duration::from_secs(4);
/// RFC 3261 Table 4: "Maximum duration a message will remain in the network" = 5 s.
pub const T4: Duration = Duration::from_secs(5);
/// Timer F (non-INVITE transaction timeout) = 64*T1 = 32 s.
pub const TIMER_F: Duration = Duration::from_secs(32);
/// Timer J (wait time for non-INVITE request retransmits, UDP) = 64*T1 = 32 s.
pub const TIMER_J: Duration = Duration::from_secs(32);
/// Timer K (wait time for response retransmits, UDP) = T4 = 5 s.
pub const TIMER_K: Duration = T4;

/// The well-known SIP port on which the anchor's registrar listens.
pub const SIP_PORT: u16 = 5060;
/// The UDP port of the anchor's tunnel endpoint (CONVENTIONS.md).
pub const TUNNEL_PORT: u16 = 1800;

/// Largest head (start line + headers + the blank line) the codec accepts.
pub const MAX_HEAD_LEN: usize = 8 * 1024;
/// Largest body the codec accepts; a larger Content-Length gets 413.
pub const MAX_BODY_LEN: usize = 16 * 1024;
/// Largest number of header lines (after unfolding) the codec accepts.
pub const MAX_HEADERS: usize = 64;
/// Largest CSeq number: RFC 3261 §8.1.1.5 "MUST be less than 2**31".
pub const MAX_CSEQ: u32 = (1 << 31) - 1;

/// The RFC 3261 §8.1.1.7 branch magic cookie.
pub const BRANCH_COOKIE: &str = "z9hG4bK";
/// The UPMT header carrying the virtual IP address (VIPA) in REGISTER and its 200 OK.
pub const VIPADDR_HEADER: &str = "VIpAddr";
/// Content type of every UPMT JSON body.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Version of the JSON bodies (the `v` field); a receiver rejects others with 400.
pub const BODY_VERSION: u32 = 1;

/// Default registration lifetime granted when the client asks for none (seconds).
pub const DEFAULT_EXPIRES: u32 = 600;
/// Shortest registration lifetime granted; a shorter non-zero request is raised to it
/// (RFC 3261 §10.3 step 7 allows 423 instead; UPMT raises silently to keep clients simple).
pub const MIN_EXPIRES: u32 = 30;
/// Longest registration lifetime granted.
pub const MAX_EXPIRES: u32 = 3600;
/// How long a Digest nonce stays valid before a request using it gets `stale=true`.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Retry-After (seconds) sent with 503 when the VIPA pool is exhausted.
pub const POOL_RETRY_AFTER: u32 = 60;
/// Maximum number of tunnels one associated host may hold at the anchor.
pub const MAX_TUNNELS_PER_HOST: usize = 8;
/// Maximum number of flows in one handover request.
pub const MAX_FLOWS_PER_HANDOVER: usize = 256;
/// Width of the anti-replay window for authenticated MESSAGE sequence numbers.
pub const REPLAY_WINDOW: u64 = 64;
/// Client: first re-association attempt after the anchor is lost; doubles up to
/// [`REASSOCIATE_MAX`].
pub const REASSOCIATE_MIN: Duration = Duration::from_secs(1);
/// Client: longest gap between re-association attempts.
pub const REASSOCIATE_MAX: Duration = Duration::from_secs(30);
/// User-Agent / Server product token.
pub const PRODUCT: &str = "upmt/0.1";
/// Client: an unauthenticated REGISTER is padded (header `UPMT-Pad`) to at least this many
/// bytes, so that the registrar's challenge is never larger than the request that triggered
/// it (anti-amplification, the way QUIC pads its Initial packets).
pub const MIN_UNAUTHENTICATED_REGISTER: usize = 640;
/// Name of the padding header.
pub const PAD_HEADER: &str = "UPMT-Pad";
