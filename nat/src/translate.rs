//! Per-packet translation: parse just enough of the IPv4 packet, look the mapping up, and
//! rewrite addresses, ports/identifiers and checksums in place.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use papaya::Guard;

use crate::csum::{patch, patch_udp, rd16, wr16, wr_addr, Delta};
use crate::mapping::{Dir, InEntry, Key, Mapping, Proto, TcpFlags, TcpState};
use crate::table::{FragEntry, FragKey, Nat};
use crate::verdict::{DropReason, Verdict};

use DropReason::{Malformed, NoMapping};

/// IPv4 header offsets.
mod field {
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC: usize = 12;
    pub(super) const DST: usize = 16;
}

/// Offsets inside the transport header.
mod l4 {
    pub(super) const SPORT: usize = 0;
    pub(super) const DPORT: usize = 2;
    pub(super) const UDP_CSUM: usize = 6;
    pub(super) const TCP_FLAGS: usize = 13;
    pub(super) const TCP_CSUM: usize = 16;
    pub(super) const ICMP_CSUM: usize = 2;
    pub(super) const ICMP_ID: usize = 4;
    pub(super) const UDP_MIN: usize = 8;
    pub(super) const TCP_MIN: usize = 20;
    pub(super) const ICMP_MIN: usize = 8;
}

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// The IPv4 header fields the NAT needs (validated: `ihl <= total <= buffer length`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ip4 {
    pub(crate) ihl: usize,
    pub(crate) total: usize,
    pub(crate) proto: u8,
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) ident: u16,
    pub(crate) frag_off: u16,
    pub(crate) more_frags: bool,
}

/// Parses and length-checks an IPv4 header (RFC 791 §3.1) with `wire::ipv4::Packet`.
/// Never panics: after `check_len` succeeded no getter of the view panics (wire's contract).
#[inline]
pub(crate) fn parse_ip4(b: &[u8]) -> Result<Ip4, DropReason> {
    let first = *b.first().ok_or(Malformed)?;
    if first >> 4 != 4 {
        return Err(DropReason::NotIpv4);
    }
    let p = wire::ipv4::Packet::new_checked(b).map_err(|_| Malformed)?;
    Ok(Ip4 {
        ihl: p.header_len(),
        total: usize::from(p.total_len()),
        proto: *b.get(9).ok_or(Malformed)?,
        src: p.src_addr(),
        dst: p.dst_addr(),
        ident: p.ident(),
        frag_off: p.frag_offset(),
        more_frags: p.more_frags(),
    })
}

/// The transport fields of a first fragment or whole datagram.
#[derive(Clone, Copy, Debug)]
struct Ports {
    proto: Proto,
    /// Source port, or the echo identifier.
    sport: u16,
    /// Destination port, or the echo identifier too.
    dport: u16,
    tcp: TcpFlags,
}

/// What the transport header says.
enum L4 {
    /// TCP, UDP or an ICMP echo request/reply.
    Flow(Ports),
    /// An ICMP error (the quote starts 8 bytes into the ICMP message).
    IcmpError,
}

/// Reads the transport header at `ip.ihl`. The whole minimal header must be in this
/// (first) fragment (RFC 1858 tiny-fragment rule), else `Malformed`.
#[inline]
fn parse_l4(b: &[u8], ip: &Ip4, dir: Dir) -> Result<L4, DropReason> {
    let proto = Proto::from_ip_proto(ip.proto).ok_or(DropReason::UnsupportedProtocol)?;
    let at = ip.ihl;
    let len = ip.total - ip.ihl;
    let need = match proto {
        Proto::Udp => l4::UDP_MIN,
        Proto::Tcp => l4::TCP_MIN,
        Proto::Icmp => l4::ICMP_MIN,
    };
    if len < need {
        return Err(Malformed);
    }
    let w = |o: usize| rd16(b, at + o).ok_or(Malformed);
    match proto {
        Proto::Udp => Ok(L4::Flow(Ports {
            proto,
            sport: w(l4::SPORT)?,
            dport: w(l4::DPORT)?,
            tcp: TcpFlags::default(),
        })),
        Proto::Tcp => Ok(L4::Flow(Ports {
            proto,
            sport: w(l4::SPORT)?,
            dport: w(l4::DPORT)?,
            tcp: TcpFlags::from_byte(*b.get(at + l4::TCP_FLAGS).ok_or(Malformed)?),
        })),
        Proto::Icmp => {
            let ty = *b.get(at).ok_or(Malformed)?;
            match (ty, dir) {
                (ICMP_ECHO_REQUEST, Dir::Out) | (ICMP_ECHO_REPLY, Dir::In) => {
                    let id = w(l4::ICMP_ID)?;
                    Ok(L4::Flow(Ports {
                        proto,
                        sport: id,
                        dport: id,
                        tcp: TcpFlags::default(),
                    }))
                }
                // RFC 5508 / RFC 792: destination unreachable, source quench, time
                // exceeded, parameter problem. Redirects are never translated.
                (3 | 4 | 11 | 12, _) => Ok(L4::IcmpError),
                _ => Err(DropReason::UnsupportedIcmp),
            }
        }
    }
}

/// Rewrites the IPv4 source and/or destination address, patching the header checksum, and
/// adds the pseudo-header change to `l4`.
#[inline]
fn rewrite_addrs(
    b: &mut [u8],
    ip: &Ip4,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    l4d: &mut Delta,
) -> Option<()> {
    let mut d = Delta::default();
    if src != ip.src {
        d.u32(u32::from(ip.src), u32::from(src));
        wr_addr(b, field::SRC, src)?;
    }
    if dst != ip.dst {
        d.u32(u32::from(ip.dst), u32::from(dst));
        wr_addr(b, field::DST, dst)?;
    }
    patch(b, field::CHECKSUM, d)?;
    *l4d = d;
    Some(())
}

/// Rewrites a whole datagram (or first fragment): addresses, ports or echo id, checksums.
#[inline]
fn rewrite_flow(
    b: &mut [u8],
    ip: &Ip4,
    p: &Ports,
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
) -> Option<()> {
    let mut d = Delta::default();
    rewrite_addrs(b, ip, src, dst, &mut d)?;
    let at = ip.ihl;
    match p.proto {
        Proto::Icmp => {
            // ICMPv4 has no pseudo-header: only the identifier counts (RFC 792).
            let mut d = Delta::default();
            let (old, new) = if sport != p.sport {
                (p.sport, sport)
            } else {
                (p.dport, dport)
            };
            d.word(old, new);
            wr16(b, at + l4::ICMP_ID, new)?;
            patch(b, at + l4::ICMP_CSUM, d)?;
        }
        Proto::Udp | Proto::Tcp => {
            if sport != p.sport {
                d.word(p.sport, sport);
                wr16(b, at + l4::SPORT, sport)?;
            }
            if dport != p.dport {
                d.word(p.dport, dport);
                wr16(b, at + l4::DPORT, dport)?;
            }
            if p.proto == Proto::Udp {
                patch_udp(b, at + l4::UDP_CSUM, d)?;
            } else {
                patch(b, at + l4::TCP_CSUM, d)?;
            }
        }
    }
    Some(())
}

impl Nat {
    /// Translates a packet that host `host_vipa` sent into its tunnel (VIPA -> Internet).
    ///
    /// Creates the mapping on the first packet of a flow (the only step that may take a
    /// lock), refreshes it, tracks TCP state and filtering permissions, and rewrites the
    /// packet in place. Returns [`Verdict::ToInternet`], [`Verdict::Hairpin`] when the
    /// destination is one of our own public mappings, or [`Verdict::Drop`] (counted).
    /// Thread-safe (`&self`); any shard may call it for any host.
    pub fn translate_outbound(&self, now: Instant, host_vipa: Ipv4Addr, pkt: &mut [u8]) -> Verdict {
        self.pin().translate_outbound(now, host_vipa, pkt)
    }

    /// Translates a packet from the Internet addressed to a public address (Internet -> VIPA).
    ///
    /// Lock-free: one lookup (two when address-dependent filtering meets a remote that is
    /// not the mapping's first peer). Returns [`Verdict::Forward`] with the host to send it
    /// to, or [`Verdict::Drop`] (counted). ICMP errors about a translated flow are
    /// translated, quote included (RFC 5508).
    pub fn translate_inbound(&self, now: Instant, pkt: &mut [u8]) -> Verdict {
        self.pin().translate_inbound(now, pkt)
    }

    /// Enters the tables' reclamation epoch once for a batch of packets (saves a few ns per
    /// packet). Hold the [`Pinned`] for one batch only: memory of removed mappings is not
    /// reclaimed while any thread is pinned.
    pub fn pin(&self) -> Pinned<'_> {
        Pinned {
            nat: self,
            guard: self.out.guard(),
        }
    }
}

/// A [`Nat`] with its tables pinned by the calling thread (see [`Nat::pin`]); not `Send`.
pub struct Pinned<'a> {
    nat: &'a Nat,
    guard: papaya::LocalGuard<'a>,
}

impl std::fmt::Debug for Pinned<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").finish_non_exhaustive()
    }
}

impl Pinned<'_> {
    /// [`Nat::translate_outbound`] under this pin.
    pub fn translate_outbound(&self, now: Instant, host_vipa: Ipv4Addr, pkt: &mut [u8]) -> Verdict {
        match self.nat.outbound(now, host_vipa, pkt, &self.guard) {
            Ok(v) => v,
            Err(r) => self.nat.counters.drop(r),
        }
    }

    /// [`Nat::translate_inbound`] under this pin.
    pub fn translate_inbound(&self, now: Instant, pkt: &mut [u8]) -> Verdict {
        match self.nat.inbound(now, pkt, &self.guard) {
            Ok(v) => v,
            Err(r) => self.nat.counters.drop(r),
        }
    }
}

impl Nat {
    #[inline]
    fn outbound(
        &self,
        now: Instant,
        vipa: Ipv4Addr,
        b: &mut [u8],
        guard: &impl Guard,
    ) -> Result<Verdict, DropReason> {
        let ip = parse_ip4(b)?;
        if ip.src != vipa {
            return Err(DropReason::SpoofedSource);
        }
        let now_ms = self.now_ms(now);
        if ip.frag_off != 0 {
            return self.later_fragment(false, &ip, b, now_ms, guard);
        }
        let p = match parse_l4(b, &ip, Dir::Out)? {
            L4::Flow(p) => p,
            L4::IcmpError => return self.outbound_icmp_error(&ip, b, guard),
        };
        let remote = self.filter_remote(p.proto, ip.dst, p.dport);
        let m = self.outbound_mapping(
            now_ms,
            p.proto,
            (vipa, p.sport),
            TcpState::initial(p.tcp),
            remote,
            guard,
        )?;
        if p.proto == Proto::Tcp {
            self.on_tcp(&m.m, Dir::Out, p.tcp);
        }
        self.permit(p.proto, m, remote, guard);
        let (src, sport) = (m.public, m.pport);
        let (mut dst, mut dport) = (ip.dst, p.dport);
        let mut verdict = Verdict::ToInternet;
        if self.is_public(ip.dst) {
            // RFC 4787 REQ-9 (and RFC 5382 for TCP): hairpinning, with the external source
            // address and port ("External source IP address and port").
            let t = self.hairpin_target(&p, ip.dst, (src, sport), now_ms, guard)?;
            (dst, dport) = (t.vipa, t.vport);
            verdict = Verdict::Hairpin { to_vipa: t.vipa };
        }
        if p.proto == Proto::Icmp {
            dport = sport;
        }
        rewrite_flow(b, &ip, &p, (src, sport), (dst, dport)).ok_or(Malformed)?;
        if ip.more_frags {
            let key = FragKey::new(false, ip.src, ip.dst, ip.proto, ip.ident);
            let entry = FragEntry {
                created_ms: now_ms,
                new_src: src,
                new_dst: dst,
                verdict,
            };
            self.track_fragment(key, entry, guard);
        }
        Ok(verdict)
    }

    /// The mapping a hairpinned packet goes to, after filtering.
    fn hairpin_target<'g>(
        &self,
        p: &Ports,
        dst: Ipv4Addr,
        (src, sport): (Ipv4Addr, u16),
        now_ms: u64,
        guard: &'g impl Guard,
    ) -> Result<&'g InEntry, DropReason> {
        if p.proto == Proto::Icmp {
            return Err(NoMapping); // an echo request to a public address maps to no host
        }
        let key = Key::new(p.proto, dst, p.dport);
        let t = self.lookup_in(key, guard).ok_or(NoMapping)?;
        if !self.permitted(key, t, self.filter_remote(p.proto, src, sport), guard) {
            return Err(DropReason::Filtered);
        }
        if p.proto == Proto::Tcp {
            t.m.touch(now_ms);
            self.on_tcp(&t.m, Dir::In, p.tcp);
        }
        Ok(t)
    }

    fn on_tcp(&self, m: &Arc<Mapping>, dir: Dir, flags: TcpFlags) {
        if let Some((old, new)) = m.on_tcp(dir, flags) {
            let t = &self.cfg.timeouts;
            if new.timeout(t) < old.timeout(t) {
                self.reschedule(m);
            }
        }
    }

    #[inline]
    fn inbound(
        &self,
        now: Instant,
        b: &mut [u8],
        guard: &impl Guard,
    ) -> Result<Verdict, DropReason> {
        let ip = parse_ip4(b)?;
        if !self.is_public(ip.dst) {
            return Err(DropReason::NotOurs);
        }
        let now_ms = self.now_ms(now);
        if ip.frag_off != 0 {
            return self.later_fragment(true, &ip, b, now_ms, guard);
        }
        let p = match parse_l4(b, &ip, Dir::In)? {
            L4::Flow(p) => p,
            L4::IcmpError => return self.inbound_icmp_error(&ip, b, guard),
        };
        let key = Key::new(p.proto, ip.dst, p.dport);
        let m = self.lookup_in(key, guard).ok_or(NoMapping)?;
        if !self.permitted(key, m, self.filter_remote(p.proto, ip.src, p.sport), guard) {
            return Err(DropReason::Filtered);
        }
        if p.proto == Proto::Tcp {
            // RFC 5382 (idle timeouts): the idle timer is the connection's; inbound segments count.
            // (RFC 4787 REQ-6: UDP is refreshed by outbound traffic only.)
            m.m.touch(now_ms);
            self.on_tcp(&m.m, Dir::In, p.tcp);
        }
        let sport = if p.proto == Proto::Icmp {
            m.vport
        } else {
            p.sport
        };
        rewrite_flow(b, &ip, &p, (ip.src, sport), (m.vipa, m.vport)).ok_or(Malformed)?;
        let verdict = Verdict::Forward { to_vipa: m.vipa };
        if ip.more_frags {
            let key = FragKey::new(true, ip.src, ip.dst, ip.proto, ip.ident);
            let entry = FragEntry {
                created_ms: now_ms,
                new_src: ip.src,
                new_dst: m.vipa,
                verdict,
            };
            self.track_fragment(key, entry, guard);
        }
        Ok(verdict)
    }

    /// A non-first fragment: it carries no transport header, so it follows its first
    /// fragment's translation (RFC 791 §3.2 ident/src/dst/proto).
    fn later_fragment(
        &self,
        inbound: bool,
        ip: &Ip4,
        b: &mut [u8],
        now_ms: u64,
        guard: &impl Guard,
    ) -> Result<Verdict, DropReason> {
        let key = FragKey::new(inbound, ip.src, ip.dst, ip.proto, ip.ident);
        let e = self
            .fragment(key, now_ms, guard)
            .ok_or(DropReason::FragmentNoState)?;
        let mut unused = Delta::default();
        rewrite_addrs(b, ip, e.new_src, e.new_dst, &mut unused).ok_or(Malformed)?;
        Ok(e.verdict)
    }

    /// RFC 5508 (ICMP error payload translation): an ICMP error from the Internet about a
    /// packet a host sent. The quote holds the packet as it left the NAT (source = public
    /// address:port); rewrite it back to the VIPA:port, with the inner IP header checksum,
    /// the inner transport checksum when the quote holds it, and the outer ICMP checksum.
    /// An error whose quoted packet matches no live mapping is dropped silently, errors are
    /// not filtered by their (router) source, and an error never refreshes a mapping
    /// (RFC 5508's requirements for ICMP error handling).
    fn inbound_icmp_error(
        &self,
        ip: &Ip4,
        b: &mut [u8],
        guard: &impl Guard,
    ) -> Result<Verdict, DropReason> {
        let q = self.quote(ip, b)?;
        if q.src != ip.dst {
            return Err(NoMapping);
        }
        let m = self
            .lookup_in(Key::new(q.ports.proto, q.src, q.ports.sport), guard)
            .ok_or(NoMapping)?;
        let (vipa, vport) = (m.vipa, m.vport);
        let outer_icmp = self
            .rewrite_quote(b, &q, Some((vipa, vport)), None)
            .ok_or(Malformed)?;
        let mut unused = Delta::default();
        rewrite_addrs(b, ip, ip.src, vipa, &mut unused).ok_or(Malformed)?;
        patch(b, ip.ihl + l4::ICMP_CSUM, outer_icmp).ok_or(Malformed)?;
        Ok(Verdict::Forward { to_vipa: vipa })
    }

    /// RFC 5508, outbound direction: a host reports an error about a packet it received
    /// through its mapping (e.g. port unreachable). The quote holds remote -> VIPA:port; make it
    /// remote -> public:port and send it from the public address.
    fn outbound_icmp_error(
        &self,
        ip: &Ip4,
        b: &mut [u8],
        guard: &impl Guard,
    ) -> Result<Verdict, DropReason> {
        let q = self.quote(ip, b)?;
        if q.dst != ip.src {
            return Err(NoMapping);
        }
        let m = self
            .lookup_out(Key::new(q.ports.proto, q.dst, q.ports.dport), guard)
            .ok_or(NoMapping)?;
        if m.m.is_dead() {
            return Err(NoMapping);
        }
        let (public, pport) = (m.public, m.pport);
        let outer_icmp = self
            .rewrite_quote(b, &q, None, Some((public, pport)))
            .ok_or(Malformed)?;
        let mut unused = Delta::default();
        rewrite_addrs(b, ip, public, ip.dst, &mut unused).ok_or(Malformed)?;
        patch(b, ip.ihl + l4::ICMP_CSUM, outer_icmp).ok_or(Malformed)?;
        Ok(Verdict::ToInternet)
    }

    /// Parses the packet quoted by an ICMP error.
    fn quote(&self, ip: &Ip4, b: &[u8]) -> Result<Quote, DropReason> {
        let at = ip.ihl + l4::ICMP_MIN;
        let end = ip.total;
        let inner = b.get(at..end).ok_or(Malformed)?;
        let view = wire::ipv4::Packet::new_unchecked(inner);
        view.check_header_len().map_err(|_| Malformed)?;
        let ihl = view.header_len();
        // RFC 792: the quote is the internet header plus the first 64 bits of data.
        if inner.len() < ihl + 8 {
            return Err(Malformed);
        }
        if view.frag_offset() != 0 {
            return Err(DropReason::UnsupportedIcmp); // quote of a later fragment: no ports
        }
        let proto = Proto::from_ip_proto(u8::from(view.protocol()))
            .ok_or(DropReason::UnsupportedProtocol)?;
        let t = ihl;
        let ports = match proto {
            Proto::Udp | Proto::Tcp => Ports {
                proto,
                sport: rd16(inner, t + l4::SPORT).ok_or(Malformed)?,
                dport: rd16(inner, t + l4::DPORT).ok_or(Malformed)?,
                tcp: TcpFlags::default(),
            },
            Proto::Icmp => {
                // only a quoted echo request (a host's ping) has a mapping
                if inner.get(t) != Some(&ICMP_ECHO_REQUEST) {
                    return Err(DropReason::UnsupportedIcmp);
                }
                let id = rd16(inner, t + l4::ICMP_ID).ok_or(Malformed)?;
                Ports {
                    proto,
                    sport: id,
                    dport: id,
                    tcp: TcpFlags::default(),
                }
            }
        };
        Ok(Quote {
            at,
            ihl,
            len: inner.len(),
            src: view.src_addr(),
            dst: view.dst_addr(),
            ports,
        })
    }

    /// Rewrites the quoted packet's source (inbound error) or destination (outbound
    /// error) endpoint. Returns the change to apply to the outer ICMP checksum, which
    /// covers every rewritten quote byte (RFC 792: checksum over the whole ICMP message).
    fn rewrite_quote(
        &self,
        b: &mut [u8],
        q: &Quote,
        new_src: Option<(Ipv4Addr, u16)>,
        new_dst: Option<(Ipv4Addr, u16)>,
    ) -> Option<Delta> {
        let at = q.at;
        let t = at + q.ihl;
        let mut outer = Delta::default();
        let mut inner_ip = Delta::default();
        let mut inner_l4 = Delta::default();
        let mut port_change: Option<(usize, u16, u16)> = None;
        if let Some((a, port)) = new_src {
            inner_ip.u32(u32::from(q.src), u32::from(a));
            outer.u32(u32::from(q.src), u32::from(a));
            wr_addr(b, at + field::SRC, a)?;
            let off = if q.ports.proto == Proto::Icmp {
                l4::ICMP_ID
            } else {
                l4::SPORT
            };
            port_change = Some((off, q.ports.sport, port));
        }
        if let Some((a, port)) = new_dst {
            inner_ip.u32(u32::from(q.dst), u32::from(a));
            outer.u32(u32::from(q.dst), u32::from(a));
            wr_addr(b, at + field::DST, a)?;
            port_change = Some((l4::DPORT, q.ports.dport, port));
        }
        // the inner IP header checksum
        let (o, n) = patch(b, at + field::CHECKSUM, inner_ip)?;
        outer.word(o, n);
        // the inner port / echo identifier
        if let Some((off, old, new)) = port_change {
            wr16(b, t + off, new)?;
            outer.word(old, new);
            inner_l4.word(old, new);
        }
        // the inner transport checksum, where the quote holds it
        let quote_l4 = q.len - q.ihl;
        match q.ports.proto {
            Proto::Udp => {
                inner_l4.add(inner_ip); // pseudo-header
                let (o, n) = patch_udp(b, t + l4::UDP_CSUM, inner_l4)?;
                outer.word(o, n);
            }
            Proto::Tcp if quote_l4 >= l4::TCP_CSUM + 2 => {
                inner_l4.add(inner_ip);
                let (o, n) = patch(b, t + l4::TCP_CSUM, inner_l4)?;
                outer.word(o, n);
            }
            Proto::Icmp => {
                let (o, n) = patch(b, t + l4::ICMP_CSUM, inner_l4)?;
                outer.word(o, n);
            }
            // Quote cut before the TCP checksum ends (RFC 792 only promises 8 bytes): left
            // as is; with one of its bytes missing no correct value exists.
            Proto::Tcp => {}
        }
        Some(outer)
    }
}

/// The packet quoted in an ICMP error.
#[derive(Clone, Copy, Debug)]
struct Quote {
    /// Offset of the quoted IP header in the buffer.
    at: usize,
    ihl: usize,
    /// Bytes of quote available (up to the outer total length).
    len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: Ports,
}
