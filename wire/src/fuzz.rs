//! Fuzzing entry points, shared by the cargo-fuzz targets in `fuzz/` and the stable tests
//! that replay the committed corpus (`tests/corpus.rs`).
//!
//! These functions exist to be called on arbitrary bytes. They must never panic except when
//! an invariant of this crate is broken, which is what a fuzzer reports.

use core::net::IpAddr;

use crate::{icmpv4, icmpv6, ip, ipv4, ipv6, rewrite, tcp, tunnel, udp, FlowKey};

/// Largest packet [`parse_all`] copies to its stack buffer for rewrite checks.
const MAX_COPY: usize = 2048;

/// Runs every parser and view of the crate over `data`, as an IP packet, as a transport
/// segment and as a tunnel payload, and checks invariants:
///
/// * every getter of every checked view runs;
/// * a `Repr` that parses re-emits to bytes that parse to the same `Repr`;
/// * after an address/port rewrite, a packet whose checksums verified still verifies
///   (incremental update == full recompute), and its flow key shows the new endpoint.
pub fn parse_all(data: &[u8]) {
    let _ = tunnel::Payload::classify(data);
    let _ = tunnel::Keepalive::parse(data);
    let _ = FlowKey::from_ip_packet(data);
    let _ = FlowKey::from_icmp_error(data);
    let _ = FlowKey::from_quoted(data);
    views_ip(data);
    views_transport(data, None);
    rewrite_invariants(data);
    icmp_error_invariants(data);
}

/// An ICMP error built about `data` quotes the same flow that `data` has.
fn icmp_error_invariants(data: &[u8]) {
    let Ok(key) = FlowKey::from_ip_packet(data) else {
        return;
    };
    let mut out = [0u8; icmpv6::MIN_MTU];
    let built = match key.src {
        IpAddr::V4(_) => icmpv4::emit_frag_needed(&mut out, [198, 18, 0, 254].into(), data, 576),
        IpAddr::V6(_) => icmpv6::emit_packet_too_big(
            &mut out,
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xff].into(),
            data,
            1280,
        ),
    };
    let Ok(n) = built else {
        return;
    };
    let Some(err) = out.get_mut(..n) else {
        return;
    };
    let outer = FlowKey::from_ip_packet(err);
    assert!(outer.is_ok(), "a built icmp error parses");
    if let Ok(quoted) = FlowKey::from_icmp_error(err) {
        assert_eq!(
            quoted, key,
            "the quoted flow is the offending packet's flow"
        );
    }
    icmp_translation_invariants(err);
    // And the input itself, if it is an error.
    if data.len() <= MAX_COPY {
        let mut buf = [0u8; MAX_COPY];
        if let Some(copy) = buf.get_mut(..data.len()) {
            copy.copy_from_slice(data);
            icmp_translation_invariants(copy);
        }
    }
}

/// Translating an ICMP error keeps its checksums valid and moves the quoted endpoint.
fn icmp_translation_invariants(err: &mut [u8]) {
    let Ok(before) = FlowKey::from_icmp_error(err) else {
        return;
    };
    let was_ok = icmp_checksums_ok(err);
    let new_addr = match before.src {
        IpAddr::V4(_) => IpAddr::from([100, 64, 0, 9]),
        IpAddr::V6(_) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 9]),
    };
    if rewrite::rewrite_icmp_error(err, rewrite::Side::Dst, new_addr, 4242).is_err() {
        return;
    }
    if was_ok {
        assert!(
            icmp_checksums_ok(err),
            "icmp error translation keeps checksums valid"
        );
    }
    if let Ok(after) = FlowKey::from_icmp_error(err) {
        assert_eq!(after.src, new_addr, "quoted source translated");
        assert_eq!(after.dst, before.dst, "quoted destination kept");
    }
}

/// Outer IPv4 header checksum and the ICMP checksum verify.
fn icmp_checksums_ok(data: &[u8]) -> bool {
    let Ok(p) = ip::Packet::new_checked(data) else {
        return false;
    };
    let Ok(t) = p.transport() else {
        return false;
    };
    let Some(seg) = data.get(t.offset..t.end) else {
        return false;
    };
    match &p {
        ip::Packet::V4(v4) => {
            v4.verify_checksum()
                && icmpv4::Packet::new_checked(seg).is_ok_and(|i| i.verify_checksum())
        }
        ip::Packet::V6(v6) => icmpv6::Packet::new_checked(seg)
            .is_ok_and(|i| i.verify_checksum(v6.src_addr(), v6.dst_addr())),
    }
}

fn views_ip(data: &[u8]) {
    if let Ok(p) = ipv4::Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
            p.ident(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
        );
        let _ = (
            p.ttl(),
            p.protocol(),
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
        );
        let _ = (p.options(), p.header(), p.verify_checksum());
        if let Ok(r) = ipv4::Repr::parse(&p) {
            let mut buf = [0u8; MAX_COPY];
            if let Some(out) = buf.get_mut(..r.buffer_len()) {
                let mut q = ipv4::Packet::new_unchecked(out);
                if r.emit(&mut q).is_ok() {
                    assert_eq!(ipv4::Repr::parse(&q).ok(), Some(r), "ipv4 repr round trip");
                }
            }
        }
        views_transport(
            p.payload(),
            Some((p.src_addr().into(), p.dst_addr().into())),
        );
    }
    if let Ok(p) = ipv6::Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        );
        let _ = (
            p.next_header(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload(),
        );
        let _ = (p.transport(), p.fragment());
        if let Ok(w) = p.walk() {
            assert!(
                w.offset <= p.total_len(),
                "ipv6 walk stays inside the packet"
            );
            if let Some(seg) = data.get(w.offset..p.total_len()) {
                views_transport(seg, Some((p.src_addr().into(), p.dst_addr().into())));
            }
        }
        let _ = ipv6::Repr::parse(&p);
    }
    if let Ok(p) = ip::Packet::new_checked(data) {
        let _ = (p.src_addr(), p.dst_addr(), p.total_len(), p.transport());
    }
}

fn views_transport(seg: &[u8], addrs: Option<(IpAddr, IpAddr)>) {
    let (src, dst) = addrs.unwrap_or((
        IpAddr::from([192, 0, 2, 1]),
        IpAddr::from([198, 51, 100, 1]),
    ));
    if let Ok(p) = udp::Packet::new_checked(seg) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload(),
        );
        let _ = p.verify_checksum(src, dst);
        let _ = udp::Repr::parse(&p, src, dst);
    }
    if let Ok(p) = tcp::Packet::new_checked(seg) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.flags(),
        );
        let _ = (p.header_len(), p.window_len(), p.checksum(), p.urgent_at());
        let _ = (
            p.options(),
            p.payload(),
            p.mss(),
            p.verify_checksum(src, dst),
        );
        if let Ok(r) = tcp::Repr::parse(&p, src, dst) {
            let _ = r.buffer_len();
        }
        // MSS clamping keeps a valid checksum valid.
        if seg.len() <= MAX_COPY && p.verify_checksum(src, dst) {
            let mut buf = [0u8; MAX_COPY];
            if let Some(copy) = buf.get_mut(..seg.len()) {
                copy.copy_from_slice(seg);
                let mut q = tcp::Packet::new_unchecked(copy);
                if q.clamp_mss(536).is_some() {
                    assert!(
                        q.verify_checksum(src, dst),
                        "mss clamp keeps checksum valid"
                    );
                    assert_eq!(q.mss(), Some(536));
                }
            }
        }
    }
    if let Ok(p) = icmpv4::Packet::new_checked(seg) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq_no(),
        );
        let _ = (p.next_hop_mtu(), p.data(), p.quoted(), p.verify_checksum());
        if let Some(q) = p.quoted() {
            let _ = FlowKey::from_quoted(q);
        }
    }
    if let Ok(p) = icmpv6::Packet::new_checked(seg) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.echo_ident(),
            p.mtu(),
            p.data(),
        );
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
            let _ = p.verify_checksum(s, d);
        }
        if let Some(q) = p.quoted() {
            let _ = FlowKey::from_quoted(q);
        }
    }
}

/// True if the IP header checksum (v4) and the transport checksum verify.
fn checksums_ok(data: &[u8]) -> bool {
    let Ok(p) = ip::Packet::new_checked(data) else {
        return false;
    };
    if let ip::Packet::V4(v4) = &p {
        if !v4.verify_checksum() {
            return false;
        }
    }
    let Ok(t) = p.transport() else {
        return false;
    };
    if t.is_fragment {
        // A fragment's transport checksum covers the whole datagram: nothing to verify here.
        return true;
    }
    let Some(seg) = data.get(t.offset..t.end) else {
        return false;
    };
    let (src, dst) = (p.src_addr(), p.dst_addr());
    match t.protocol {
        crate::IpProtocol::Tcp => {
            tcp::Packet::new_checked(seg).is_ok_and(|s| s.verify_checksum(src, dst))
        }
        crate::IpProtocol::Udp => {
            udp::Packet::new_checked(seg).is_ok_and(|s| s.verify_checksum(src, dst))
        }
        _ => true,
    }
}

fn rewrite_invariants(data: &[u8]) {
    if data.len() > MAX_COPY {
        return;
    }
    let mut buf = [0u8; MAX_COPY];
    let Some(copy) = buf.get_mut(..data.len()) else {
        return;
    };
    copy.copy_from_slice(data);
    let was_ok = checksums_ok(copy);
    let Ok(before) = FlowKey::from_ip_packet(copy) else {
        return;
    };
    let new_addr = match before.src {
        IpAddr::V4(_) => IpAddr::from([198, 18, 2, 100]),
        IpAddr::V6(_) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x64]),
    };
    let new_port = before.src_port.wrapping_add(1);
    if rewrite::rewrite_src(copy, new_addr, new_port).is_ok() {
        if was_ok {
            assert!(checksums_ok(copy), "rewrite keeps checksums valid");
        }
        if let Ok(after) = FlowKey::from_ip_packet(copy) {
            assert_eq!(after.src, new_addr, "rewrite sets the source");
            assert_eq!(after.dst, before.dst, "rewrite keeps the destination");
        }
    }
}
