//! SIP message codec: a strict, minimal parser and an emitter for the subset UPMT uses.
//!
//! The layers above see only validated types ([`Request`], [`Response`]); "parse, don't
//! validate". What the codec enforces (RFC 3261 §7, §8.2, §18.3, §20, §25):
//! - the head (start line + headers) fits in [`MAX_HEAD_LEN`] and ends with CRLF CRLF;
//!   at most [`MAX_HEADERS`] header lines; each line UTF-8; folded lines are unfolded;
//! - `SIP/2.0` only (505 otherwise); a method is a token; an unknown one gets 501;
//! - the request URI scheme is `sip`/`sips` (416 otherwise);
//! - Via (top one with a `branch`), From, To, Call-ID, CSeq and, in requests, Max-Forwards
//!   are present once each (Via may repeat); the CSeq method equals the request method;
//! - Content-Length frames the body: a shorter datagram is 400, extra bytes are discarded
//!   (§18.3), more than [`MAX_BODY_LEN`] is 413. Without Content-Length (allowed on UDP)
//!   the body runs to the end of the datagram.
//!
//! Errors carry enough of the request (raw Via/From/To/Call-ID/CSeq) to build the error
//! response ([`ParseError::reply`]); when even that is missing the datagram is dropped.
//!
//! Why not rsip: rsip 0.4 (the workspace's listed SIP crate) does not panic on the inputs we
//! tried, but it accepts a Content-Length that disagrees with the body, a CSeq whose method
//! differs from the request's, an overflowing Content-Length, and it cannot represent an
//! unknown method (so 501 and 400 are indistinguishable). Its Digest code parses
//! nonce-count as decimal. Every check above had to be written here anyway; rsip is kept as
//! a test oracle (what we emit must parse in rsip too).

mod header;
mod parse;

use std::fmt::{self, Write as _};

pub use header::{parse_params, split_comma_list, NameAddr, Via};
pub use parse::{parse, ParseError, ParseErrorKind, ReplyContext};

use crate::consts::PRODUCT;
pub use crate::consts::{MAX_BODY_LEN, MAX_HEADERS, MAX_HEAD_LEN};

/// A SIP method. Unknown tokens are kept so the server can answer 501.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// REGISTER (association, refresh, de-registration).
    Register,
    /// MESSAGE (tunnel setup, handover).
    Message,
    /// OPTIONS (liveness probe).
    Options,
    /// INVITE (not supported by UPMT: 405).
    Invite,
    /// ACK (never answered).
    Ack,
    /// BYE (405).
    Bye,
    /// CANCEL (405).
    Cancel,
    /// Any other syntactically valid method token (501).
    Other(String),
}

impl Method {
    /// Maps a token to a method (case-sensitive, RFC 3261 §7.1).
    pub fn from_token(s: &str) -> Method {
        match s {
            "REGISTER" => Method::Register,
            "MESSAGE" => Method::Message,
            "OPTIONS" => Method::Options,
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Register => "REGISTER",
            Method::Message => "MESSAGE",
            Method::Options => "OPTIONS",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Other(s) => s,
        }
    }

    /// Whether the codec knows this method (an unknown one is answered 501).
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Other(_))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CSeq header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2^31.
    pub seq: u32,
    /// Method; equals the request's method.
    pub method: Method,
}

/// A header other than the ones [`Head`] keeps in typed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Name as received (compact forms expanded to the full name).
    pub name: String,
    /// Value, trimmed, with folding unfolded.
    pub value: String,
}

/// The headers every request and response carries, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Via values, topmost first, one per comma-separated value.
    pub vias: Vec<String>,
    /// The topmost Via, parsed; it has a branch.
    pub via: Via,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Call-ID.
    pub call_id: String,
    /// CSeq.
    pub cseq: CSeq,
    /// Max-Forwards (required in requests).
    pub max_forwards: Option<u32>,
    /// Content-Type, if any.
    pub content_type: Option<String>,
    /// All other headers, in order.
    pub headers: Vec<Header>,
}

impl Head {
    /// The first header named `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every header named `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    fn encode_common(&self, out: &mut String, body_len: usize) {
        for v in &self.vias {
            let _ = write!(out, "Via: {v}\r\n");
        }
        if let Some(mf) = self.max_forwards {
            let _ = write!(out, "Max-Forwards: {mf}\r\n");
        }
        let _ = write!(out, "From: {}\r\n", self.from);
        let _ = write!(out, "To: {}\r\n", self.to);
        let _ = write!(out, "Call-ID: {}\r\n", self.call_id);
        let _ = write!(out, "CSeq: {} {}\r\n", self.cseq.seq, self.cseq.method);
        for h in &self.headers {
            let _ = write!(out, "{}: {}\r\n", h.name, h.value);
        }
        if let Some(ct) = &self.content_type {
            let _ = write!(out, "Content-Type: {ct}\r\n");
        }
        let _ = write!(out, "Content-Length: {body_len}\r\n\r\n");
    }
}

/// A validated SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method (known or not).
    pub method: Method,
    /// Request-URI (scheme `sip` or `sips`).
    pub uri: String,
    /// Headers.
    pub head: Head,
    /// Body, exactly Content-Length bytes.
    pub body: Vec<u8>,
}

/// A validated SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers.
    pub head: Head,
    /// Body, exactly Content-Length bytes.
    pub body: Vec<u8>,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Request {
    /// Serialises the request (Content-Length always present).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(512 + self.body.len());
        let _ = write!(s, "{} {} SIP/2.0\r\n", self.method, self.uri);
        self.head.encode_common(&mut s, self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

impl Response {
    /// Serialises the response (Content-Length always present).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(384 + self.body.len());
        let _ = write!(s, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        self.head.encode_common(&mut s, self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// Builds a response to `req` (RFC 3261 §8.2.6.2): Via, From, Call-ID and CSeq copied,
    /// To copied with `to_tag` added when it has none. If the top Via has `rport`, its
    /// value and `received` are filled in from `src` (RFC 3581 §4).
    pub fn to_request(
        req: &Request,
        status: u16,
        reason: &str,
        to_tag: &str,
        src: Option<std::net::SocketAddr>,
    ) -> Response {
        let mut vias = req.head.vias.clone();
        if let (Some(src), Some(top)) = (src, vias.first_mut()) {
            *top = header::stamp_received(top, src);
        }
        let mut to = req.head.to.clone();
        if to.tag.is_none() && status != 100 {
            to.tag = Some(to_tag.to_owned());
        }
        Response {
            status,
            reason: reason.to_owned(),
            head: Head {
                vias,
                via: req.head.via.clone(),
                from: req.head.from.clone(),
                to,
                call_id: req.head.call_id.clone(),
                cseq: req.head.cseq.clone(),
                max_forwards: None,
                content_type: None,
                headers: vec![Header {
                    name: "Server".into(),
                    value: PRODUCT.into(),
                }],
            },
            body: Vec::new(),
        }
    }

    /// Appends a header.
    pub fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.head.headers.push(Header {
            name: name.to_owned(),
            value: value.into(),
        });
    }

    /// Sets a JSON body.
    pub fn set_json_body(&mut self, body: Vec<u8>) {
        self.head.content_type = Some(crate::consts::CONTENT_TYPE_JSON.into());
        self.body = body;
    }
}

impl Message {
    /// Serialises the message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.encode(),
            Message::Response(r) => r.encode(),
        }
    }
}

/// The fuzzing invariants, as a plain function (run by `fuzz/fuzz_targets/sip_parse.rs`
/// under libFuzzer and by the stable corpus replay and property tests):
/// parsing never panics; a parsed message re-encodes to bytes that parse to the same value;
/// an error reply is a 4xx/5xx response no more than 64 bytes larger than the input.
/// Returns a description of the first violated invariant.
pub fn check_invariants(data: &[u8]) -> Result<(), String> {
    match parse(data) {
        Ok(msg) => {
            let again = parse(&msg.encode());
            if again.as_ref() != Ok(&msg) {
                return Err(format!(
                    "re-encoding changed the message: {msg:?} -> {again:?}"
                ));
            }
        }
        Err(e) => {
            if let Some(reply) = e.reply("fuzz") {
                if !(reply.starts_with(b"SIP/2.0 4") || reply.starts_with(b"SIP/2.0 5")) {
                    return Err("error reply is not 4xx/5xx".into());
                }
                if reply.len() > data.len() + 64 {
                    return Err(format!(
                        "error reply {} bytes for {} input",
                        reply.len(),
                        data.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The standard reason phrase of the status codes UPMT sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        481 => "Call/Transaction Does Not Exist",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests;
