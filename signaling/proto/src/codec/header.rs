//! Typed views of the header values the codec validates: Via, name-addr (From/To),
//! generic `;param=value` lists and comma-separated lists (RFC 3261 §20, §25.1).

use std::fmt;
use std::net::SocketAddr;

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Whether `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Splits `s` on commas that are outside double quotes and angle brackets.
pub fn split_comma_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ',' if !in_quote && !in_angle => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

/// Parses `;name[=value]` parameters (the leading `;` optional). Values may be quoted;
/// quotes are removed. Returns `None` on an empty name.
pub fn parse_params(s: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for part in s.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()).to_owned())),
            None => (part, None),
        };
        if !is_token(name) {
            return None;
        }
        out.push((name.to_ascii_lowercase(), value));
    }
    Some(out)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// The topmost Via header value, parsed (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport, e.g. `UDP`.
    pub transport: String,
    /// sent-by host.
    pub host: String,
    /// sent-by port, if given.
    pub port: Option<u16>,
    /// The `branch` parameter (required by UPMT).
    pub branch: String,
    /// Whether `rport` was requested (RFC 3581).
    pub rport: bool,
}

impl Via {
    /// Parses one Via value: `SIP/2.0/UDP host[:port];branch=...`.
    pub fn parse(s: &str) -> Option<Via> {
        let (proto, rest) = split_sent_protocol(s)?;
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        let (host, port) = split_host_port(sent_by)?;
        let params = parse_params(params)?;
        let branch = params
            .iter()
            .find(|(n, _)| n == "branch")
            .and_then(|(_, v)| v.clone())
            .filter(|b| is_token(b))?;
        let rport = params.iter().any(|(n, _)| n == "rport");
        Some(Via {
            transport: proto,
            host: host.to_owned(),
            port,
            branch,
            rport,
        })
    }
}

/// `SIP / 2.0 / UDP` with optional LWS around the slashes.
fn split_sent_protocol(s: &str) -> Option<(String, &str)> {
    let mut rest = s.trim_start();
    let mut parts = Vec::with_capacity(3);
    for i in 0..3 {
        let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let tok = &rest[..end];
        if !is_token(tok) {
            return None;
        }
        parts.push(tok);
        rest = rest[end..].trim_start();
        if i < 2 {
            rest = rest.strip_prefix('/')?.trim_start();
        }
    }
    match parts.as_slice() {
        [name, version, transport] if name.eq_ignore_ascii_case("SIP") && *version == "2.0" => {
            Some((transport.to_ascii_uppercase(), rest))
        }
        _ => None,
    }
}

/// `host[:port]`, host being a name, IPv4 or `[IPv6]`.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &s[..end + 2];
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c));
    if !host_ok {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.trim().parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// Adds `received=<ip>` and fills `rport=<port>` in a raw Via value (RFC 3581 §4; RFC 3261
/// §18.2.1 makes `received` optional when the host matches; it is always added here).
pub(crate) fn stamp_received(raw: &str, src: SocketAddr) -> String {
    let mut out = String::with_capacity(raw.len() + 32);
    for (i, part) in raw.split(';').enumerate() {
        let p = part.trim();
        if i > 0
            && (p.eq_ignore_ascii_case("rport") || p.to_ascii_lowercase().starts_with("rport="))
        {
            out.push_str(";rport=");
            out.push_str(&src.port().to_string());
            continue;
        }
        if i > 0 && p.to_ascii_lowercase().starts_with("received=") {
            continue;
        }
        if i > 0 {
            out.push(';');
        }
        out.push_str(part);
    }
    out.push_str(";received=");
    out.push_str(&src.ip().to_string());
    out
}

/// A `name-addr` or `addr-spec` with parameters: the value of From, To or Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted, if any.
    pub display: Option<String>,
    /// The URI, e.g. `sip:alice@upmt.example`.
    pub uri: String,
    /// The `tag` parameter.
    pub tag: Option<String>,
    /// Other header parameters, raw (`;expires=60`), in order, without `tag`.
    pub params: String,
}

impl NameAddr {
    /// A name-addr for `uri` without display name or parameters.
    pub fn new(uri: impl Into<String>, tag: Option<String>) -> NameAddr {
        NameAddr {
            display: None,
            uri: uri.into(),
            tag,
            params: String::new(),
        }
    }

    /// Parses `"Display" <uri>;params`, `Display <uri>;params` or `uri;params`.
    pub fn parse(s: &str) -> Option<NameAddr> {
        let s = s.trim();
        let (display, uri, rest) = if let Some(lt) = find_unquoted(s, '<') {
            let display = s[..lt].trim();
            let after = &s[lt + 1..];
            let gt = after.find('>')?;
            let display = if display.is_empty() {
                None
            } else if let Some(q) = display.strip_prefix('"').and_then(|d| d.strip_suffix('"')) {
                Some(unescape(q))
            } else if display.contains('"') {
                return None;
            } else {
                Some(display.to_owned())
            };
            (display, after[..gt].trim(), &after[gt + 1..])
        } else {
            // RFC 3261 §20.10: without <>, parameters belong to the header.
            match s.find(';') {
                Some(i) => (None, s[..i].trim(), &s[i..]),
                None => (None, s, ""),
            }
        };
        // RFC 3261 §25.1: a URI has no whitespace, quotes or angle brackets (and an addr-spec
        // outside <> no comma).
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>\"".contains(c);
        if uri.is_empty() || uri.contains(bad_char) || !uri.contains(':') {
            return None;
        }
        let rest = rest.trim();
        if !rest.is_empty() && !rest.starts_with(';') {
            return None;
        }
        let params = parse_params(rest)?;
        let mut tag = None;
        let mut other = String::new();
        for (n, v) in params {
            if n == "tag" {
                tag = Some(v.filter(|t| is_token(t))?);
            } else {
                other.push(';');
                other.push_str(&n);
                if let Some(v) = v {
                    other.push('=');
                    other.push_str(&v);
                }
            }
        }
        Some(NameAddr {
            display,
            uri: uri.to_owned(),
            tag,
            params: other,
        })
    }

    /// The user part of a `sip:user@host` URI.
    pub fn user(&self) -> Option<&str> {
        let rest = self
            .uri
            .strip_prefix("sip:")
            .or_else(|| self.uri.strip_prefix("sips:"))?;
        let (user, _) = rest.split_once('@')?;
        let user = user.split(':').next().unwrap_or(user);
        (!user.is_empty()).then_some(user)
    }

    /// The value of a non-tag header parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        parse_params(&self.params)?
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v)
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        if esc || c != '\\' {
            out.push(c);
            esc = false;
        } else {
            esc = true;
        }
    }
    out
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            c if c == needle && !in_quote => return Some(i),
            _ => {}
        }
    }
    None
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)?;
        if let Some(t) = &self.tag {
            write!(f, ";tag={t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_variants() {
        let v = Via::parse("SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK77;rport").unwrap();
        assert_eq!(v.host, "1.2.3.4");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, "z9hG4bK77");
        assert!(v.rport);
        let v = Via::parse("SIP / 2.0 / udp [::1]:5;branch=\"z9hG4bKx\"").unwrap();
        assert_eq!(v.host, "[::1]");
        assert_eq!(v.transport, "UDP");
        assert!(Via::parse("SIP/2.0/UDP h").is_none());
        assert!(Via::parse("SIP/3.0/UDP h;branch=x").is_none());
        assert!(Via::parse("SIP/2.0/UDP h:99999;branch=x").is_none());
        assert!(Via::parse("SIP/2.0/UDP [::1;branch=x").is_none());
    }

    #[test]
    fn name_addr_variants() {
        let n = NameAddr::parse("\"A, b\" <sip:alice@upmt;transport=udp>;tag=abc;x=1").unwrap();
        assert_eq!(n.display.as_deref(), Some("A, b"));
        assert_eq!(n.uri, "sip:alice@upmt;transport=udp");
        assert_eq!(n.tag.as_deref(), Some("abc"));
        assert_eq!(n.user(), Some("alice"));
        assert_eq!(n.param("x").as_deref(), Some("1"));
        let n = NameAddr::parse("sip:bob@h;tag=9").unwrap();
        assert_eq!(n.uri, "sip:bob@h");
        assert_eq!(n.tag.as_deref(), Some("9"));
        assert!(NameAddr::parse("<sip:x@y").is_none());
        assert!(NameAddr::parse("").is_none());
        let again = NameAddr::parse(&n.to_string()).unwrap();
        assert_eq!(again, n);
    }

    #[test]
    fn received_stamp() {
        let src: SocketAddr = "198.18.0.1:4000".parse().unwrap();
        assert_eq!(
            stamp_received("SIP/2.0/UDP h;branch=z9hG4bK1;rport", src),
            "SIP/2.0/UDP h;branch=z9hG4bK1;rport=4000;received=198.18.0.1"
        );
    }

    #[test]
    fn comma_lists() {
        assert_eq!(
            split_comma_list("a, \"b,c\" <x,y>, d"),
            vec!["a", "\"b,c\" <x,y>", "d"]
        );
    }
}
