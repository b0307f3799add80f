//! The strict parser. See the module doc of [`crate::codec`] for what it enforces.

use super::header::{is_token, split_comma_list, NameAddr, Via};
use super::{CSeq, Head, Header, Message, Method, Request, Response};
use crate::consts::{MAX_BODY_LEN, MAX_CSEQ, MAX_HEADERS, MAX_HEAD_LEN};

/// Why a datagram is not an acceptable SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The datagram is empty or only whitespace (e.g. a CRLF keep-alive).
    #[error("empty datagram")]
    Empty,
    /// The head is larger than `MAX_HEAD_LEN` or does not end with CRLF CRLF.
    #[error("head too long or not terminated")]
    BadFraming,
    /// A line of the head is not UTF-8.
    #[error("head is not UTF-8")]
    NotUtf8,
    /// The start line is neither a request line nor a status line.
    #[error("malformed start line")]
    BadStartLine,
    /// The SIP version is not SIP/2.0 (RFC 3261 §8.2.2: 505).
    #[error("SIP version not supported")]
    BadVersion,
    /// A header line has no colon or an invalid name.
    #[error("malformed header line")]
    BadHeaderLine,
    /// More than `MAX_HEADERS` header lines.
    #[error("too many headers")]
    TooManyHeaders,
    /// A required header is missing.
    #[error("missing required header {0}")]
    Missing(&'static str),
    /// A header that must appear once appears more often.
    #[error("duplicate header {0}")]
    Duplicate(&'static str),
    /// A header value does not parse.
    #[error("malformed header {0}")]
    BadHeaderValue(&'static str),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    /// The datagram holds fewer body bytes than Content-Length (RFC 3261 §18.3).
    #[error("body shorter than Content-Length")]
    Truncated,
    /// The body is larger than `MAX_BODY_LEN` (413).
    #[error("body too large")]
    BodyTooLarge,
    /// Syntactically valid but unknown method (501).
    #[error("unknown method")]
    UnknownMethod,
    /// Request-URI scheme other than sip/sips (416).
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
}

impl ParseErrorKind {
    /// The status code and reason phrase the server answers with (RFC 3261 §8.2, §21).
    pub fn status(self) -> (u16, &'static str) {
        match self {
            ParseErrorKind::BadVersion => (505, "Version Not Supported"),
            ParseErrorKind::BodyTooLarge => (413, "Request Entity Too Large"),
            ParseErrorKind::UnknownMethod => (501, "Not Implemented"),
            ParseErrorKind::UnsupportedScheme => (416, "Unsupported URI Scheme"),
            ParseErrorKind::CSeqMismatch => (400, "CSeq Method Mismatch"),
            ParseErrorKind::Truncated => (400, "Body Shorter Than Content-Length"),
            ParseErrorKind::TooManyHeaders => (400, "Too Many Headers"),
            ParseErrorKind::Missing(_) => (400, "Missing Required Header"),
            ParseErrorKind::Duplicate(_) => (400, "Duplicate Header"),
            ParseErrorKind::BadHeaderValue(_) => (400, "Malformed Header"),
            _ => (400, "Bad Request"),
        }
    }
}

/// The raw request headers needed to address an error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyContext {
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
}

/// A datagram the codec rejects. [`ParseError::reply`] gives the error response, when the
/// datagram was a request with enough headers to address one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// What is wrong.
    pub kind: ParseErrorKind,
    ctx: Option<Box<ReplyContext>>,
}

impl ParseError {
    /// The error response to send back, or `None` when the datagram must be dropped
    /// (not a request, or Via/From/To/Call-ID/CSeq unusable). The response echoes only
    /// request headers, so it is never much larger than the request.
    pub fn reply(&self, to_tag: &str) -> Option<Vec<u8>> {
        let ctx = self.ctx.as_deref()?;
        let (status, reason) = self.kind.status();
        let mut s = format!("SIP/2.0 {status} {reason}\r\n");
        // All Via values on one line, comma-separated: never longer than they came in.
        s.push_str("Via: ");
        s.push_str(&ctx.vias.join(","));
        s.push_str("\r\n");
        s.push_str("From: ");
        s.push_str(&ctx.from);
        s.push_str("\r\nTo: ");
        s.push_str(&ctx.to);
        if !ctx.to.contains(";tag=") {
            s.push_str(";tag=");
            s.push_str(to_tag);
        }
        s.push_str("\r\nCall-ID: ");
        s.push_str(&ctx.call_id);
        s.push_str("\r\nCSeq: ");
        s.push_str(&ctx.cseq);
        s.push_str("\r\n");
        match self.kind {
            ParseErrorKind::BodyTooLarge => {}
            ParseErrorKind::UnknownMethod => {
                s.push_str("Allow: REGISTER, MESSAGE, OPTIONS\r\n");
            }
            _ => {}
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        Some(s.into_bytes())
    }
}

fn err(kind: ParseErrorKind) -> ParseError {
    ParseError { kind, ctx: None }
}

fn find_crlfcrlf(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Expands a compact header form (RFC 3261 §7.3.3) and canonicalises the names the codec
/// handles itself.
fn canonical_name(name: &str) -> Option<&'static str> {
    const NAMES: [(&str, &str); 16] = [
        ("v", "Via"),
        ("via", "Via"),
        ("f", "From"),
        ("from", "From"),
        ("t", "To"),
        ("to", "To"),
        ("i", "Call-ID"),
        ("call-id", "Call-ID"),
        ("cseq", "CSeq"),
        ("max-forwards", "Max-Forwards"),
        ("l", "Content-Length"),
        ("content-length", "Content-Length"),
        ("c", "Content-Type"),
        ("content-type", "Content-Type"),
        ("m", "Contact"),
        ("k", "Supported"),
    ];
    NAMES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Status {
        code: u16,
        reason: &'a str,
    },
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseErrorKind> {
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut it = line.splitn(3, ' ');
        let version = it.next().unwrap_or("");
        let code = it.next().unwrap_or("");
        let reason = it.next().unwrap_or("");
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(ParseErrorKind::BadVersion);
        }
        let code: u16 = match code.len() {
            3 if code.bytes().all(|b| b.is_ascii_digit()) => {
                code.parse().map_err(|_| ParseErrorKind::BadStartLine)?
            }
            _ => return Err(ParseErrorKind::BadStartLine),
        };
        if !(100..=699).contains(&code) {
            return Err(ParseErrorKind::BadStartLine);
        }
        return Ok(StartLine::Status { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let mut it = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(ParseErrorKind::BadStartLine);
    };
    if !is_token(method) || uri.is_empty() {
        return Err(ParseErrorKind::BadStartLine);
    }
    Ok(StartLine::Request {
        method,
        uri,
        version,
    })
}

fn is_sip_version(v: &str) -> Result<(), ParseErrorKind> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else if v.len() > 4 && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")) {
        Err(ParseErrorKind::BadVersion)
    } else {
        Err(ParseErrorKind::BadStartLine)
    }
}

fn parse_cseq(v: &str) -> Option<CSeq> {
    let mut it = v.split_ascii_whitespace();
    let (Some(num), Some(method), None) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    if num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
        return None;
    }
    let seq: u64 = num.parse().ok()?;
    if seq > u64::from(MAX_CSEQ) {
        return None;
    }
    Some(CSeq {
        seq: u32::try_from(seq).ok()?,
        method: Method::from_token(method),
    })
}

fn parse_decimal(v: &str, max: u64) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| *n <= max)
}

/// Parses one datagram into a validated [`Message`].
///
/// Never panics; every rejection is a [`ParseError`] (see [`ParseError::reply`]).
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(err(ParseErrorKind::Empty));
    }
    let head_end = match find_crlfcrlf(buf.get(..MAX_HEAD_LEN + 4).unwrap_or(buf)) {
        Some(i) => i,
        None => return Err(err(ParseErrorKind::BadFraming)),
    };
    let (head, after) = buf.split_at(head_end);
    let rest = after.get(4..).unwrap_or(&[]);

    // Lines, each UTF-8; folded lines (RFC 3261 §7.3.1) appended to the previous one.
    let mut lines: Vec<String> = Vec::new();
    let mut not_utf8 = false;
    for raw in head.split(|b| *b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            not_utf8 = true;
            continue;
        };
        // RFC 3261 §25.1: header text is TEXT-UTF8 / LWS; no control characters (a bare
        // CR, NUL, ...).
        if line
            .chars()
            .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
        {
            not_utf8 = true;
            continue;
        }
        let n = lines.len();
        match (line.starts_with([' ', '\t']), lines.last_mut()) {
            (true, Some(prev)) if n > 1 => {
                prev.push(' ');
                prev.push_str(line.trim());
            }
            (true, _) => return Err(err(ParseErrorKind::BadHeaderLine)),
            (false, _) => lines.push(line.to_owned()),
        }
    }
    let Some((start, header_lines)) = lines.split_first() else {
        return Err(err(ParseErrorKind::BadStartLine));
    };
    let start = parse_start_line(start).map_err(err)?;
    let is_request = matches!(start, StartLine::Request { .. });

    // Headers.
    let mut first_error: Option<ParseErrorKind> = not_utf8.then_some(ParseErrorKind::NotUtf8);
    let note = |e: ParseErrorKind, first: &mut Option<ParseErrorKind>| {
        if first.is_none() {
            *first = Some(e);
        }
    };
    if header_lines.len() > MAX_HEADERS {
        note(ParseErrorKind::TooManyHeaders, &mut first_error);
    }
    let mut vias: Vec<String> = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq, mut max_fwd, mut clen, mut ctype) =
        (None, None, None, None, None, None, None);
    let mut headers = Vec::new();
    for line in header_lines.iter().take(MAX_HEADERS + 8) {
        let Some((name, value)) = line.split_once(':') else {
            note(ParseErrorKind::BadHeaderLine, &mut first_error);
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        let value = value.trim();
        if !is_token(name) {
            note(ParseErrorKind::BadHeaderLine, &mut first_error);
            continue;
        }
        let slot = match canonical_name(name) {
            Some("Via") => {
                // Empty list elements (`a,,b`) are ignored (RFC 7230 §7 list rule).
                vias.extend(
                    split_comma_list(value)
                        .into_iter()
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned),
                );
                continue;
            }
            Some("From") => (&mut from, "From"),
            Some("To") => (&mut to, "To"),
            Some("Call-ID") => (&mut call_id, "Call-ID"),
            Some("CSeq") => (&mut cseq, "CSeq"),
            Some("Max-Forwards") => (&mut max_fwd, "Max-Forwards"),
            Some("Content-Length") => (&mut clen, "Content-Length"),
            Some("Content-Type") => (&mut ctype, "Content-Type"),
            Some(canon) => {
                headers.push(Header {
                    name: canon.to_owned(),
                    value: value.to_owned(),
                });
                continue;
            }
            None => {
                headers.push(Header {
                    name: name.to_owned(),
                    value: value.to_owned(),
                });
                continue;
            }
        };
        if slot.0.is_some() {
            note(ParseErrorKind::Duplicate(slot.1), &mut first_error);
        } else {
            *slot.0 = Some(value.to_owned());
        }
    }

    // Enough to address a reply? Only if the headers a response copies are themselves
    // well-formed (a reply echoing a broken Via could not be routed or parsed).
    let usable = vias.first().is_some_and(|v| Via::parse(v).is_some())
        && from.as_deref().and_then(NameAddr::parse).is_some()
        && to.as_deref().and_then(NameAddr::parse).is_some()
        && call_id
            .as_deref()
            .is_some_and(|c| !c.is_empty() && !c.contains(char::is_whitespace))
        && cseq.as_deref().is_some_and(|c| {
            // Syntactically `digits token`, even if out of range (RFC 4475 "scalar02" still
            // deserves its 400).
            let mut it = c.split_ascii_whitespace();
            matches!((it.next(), it.next(), it.next()),
                (Some(n), Some(m), None) if n.bytes().all(|b| b.is_ascii_digit()) && is_token(m))
        });
    let ctx = match (&from, &to, &call_id, &cseq) {
        (Some(f), Some(t), Some(c), Some(s)) if is_request && usable => {
            Some(Box::new(ReplyContext {
                vias: vias.clone(),
                from: f.clone(),
                to: t.clone(),
                call_id: c.clone(),
                cseq: s.clone(),
            }))
        }
        _ => None,
    };
    let fail = |kind: ParseErrorKind| ParseError {
        kind,
        ctx: ctx.clone(),
    };

    if let StartLine::Request { version, .. } = &start {
        is_sip_version(version).map_err(fail)?;
    }
    if let Some(e) = first_error {
        return Err(fail(e));
    }

    let via = match vias.first() {
        None => return Err(fail(ParseErrorKind::Missing("Via"))),
        Some(v) => Via::parse(v).ok_or_else(|| fail(ParseErrorKind::BadHeaderValue("Via")))?,
    };
    let from = from
        .ok_or_else(|| fail(ParseErrorKind::Missing("From")))
        .and_then(|v| {
            NameAddr::parse(&v).ok_or_else(|| fail(ParseErrorKind::BadHeaderValue("From")))
        })?;
    let to = to
        .ok_or_else(|| fail(ParseErrorKind::Missing("To")))
        .and_then(|v| {
            NameAddr::parse(&v).ok_or_else(|| fail(ParseErrorKind::BadHeaderValue("To")))
        })?;
    let call_id = call_id.ok_or_else(|| fail(ParseErrorKind::Missing("Call-ID")))?;
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(fail(ParseErrorKind::BadHeaderValue("Call-ID")));
    }
    let cseq = cseq
        .ok_or_else(|| fail(ParseErrorKind::Missing("CSeq")))
        .and_then(|v| parse_cseq(&v).ok_or_else(|| fail(ParseErrorKind::BadHeaderValue("CSeq"))))?;
    let max_forwards = match max_fwd {
        Some(v) => Some(
            parse_decimal(&v, 255)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| fail(ParseErrorKind::BadHeaderValue("Max-Forwards")))?,
        ),
        None if is_request => return Err(fail(ParseErrorKind::Missing("Max-Forwards"))),
        None => None,
    };

    // RFC 3261 §18.3 framing.
    let body = match clen {
        Some(v) => {
            let n = parse_decimal(&v, u64::from(u32::MAX))
                .ok_or_else(|| fail(ParseErrorKind::BadHeaderValue("Content-Length")))?;
            let n = usize::try_from(n).map_err(|_| fail(ParseErrorKind::BodyTooLarge))?;
            if n > MAX_BODY_LEN {
                return Err(fail(ParseErrorKind::BodyTooLarge));
            }
            rest.get(..n)
                .ok_or_else(|| fail(ParseErrorKind::Truncated))?
        }
        None if rest.len() > MAX_BODY_LEN => return Err(fail(ParseErrorKind::BodyTooLarge)),
        None => rest,
    };
    let content_type = match ctype {
        Some(ct) if ct.is_empty() => {
            return Err(fail(ParseErrorKind::BadHeaderValue("Content-Type")))
        }
        other => other,
    };

    let head = Head {
        vias,
        via,
        from,
        to,
        call_id,
        cseq,
        max_forwards,
        content_type,
        headers,
    };
    match start {
        StartLine::Request { method, uri, .. } => {
            let method = Method::from_token(method);
            if !method.is_known() {
                return Err(fail(ParseErrorKind::UnknownMethod));
            }
            if head.cseq.method != method {
                return Err(fail(ParseErrorKind::CSeqMismatch));
            }
            let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
                (s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips"))
                    && !rest.is_empty()
            });
            if !scheme_ok {
                return Err(fail(ParseErrorKind::UnsupportedScheme));
            }
            Ok(Message::Request(Request {
                method,
                uri: uri.to_owned(),
                head,
                body: body.to_vec(),
            }))
        }
        StartLine::Status { code, reason } => Ok(Message::Response(Response {
            status: code,
            reason: reason.to_owned(),
            head,
            body: body.to_vec(),
        })),
    }
}
