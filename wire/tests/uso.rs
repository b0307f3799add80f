//! Reference tests of UDP segmentation (USO, `GSO_UDP_L4`) in `wire::offload::segment`:
//! super-packets built byte by byte here, every checksum recomputed by this file's own
//! RFC 1071 sum, never by `wire::checksum`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod refsum;

use proptest::prelude::*;
use refsum::{fold, sum};
use wire::offload::{segment, segmented_len, VirtioNetHdr};
use wire::Error;

/// The UDP pseudo-header, unfolded.
fn pseudo(v6: bool, src: &[u8], dst: &[u8], udp_len: usize) -> u64 {
    refsum::pseudo(v6, src, dst, udp_len, 17)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

const SRC4: [u8; 4] = [100, 64, 0, 2];
const DST4: [u8; 4] = [198, 18, 3, 1];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST6: [u8; 16] = [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(37) as u8 ^ 0xa5)
        .collect()
}

/// An IPv4 or IPv6 UDP super-packet as the kernel hands it over with USO: a valid IP header
/// for the whole, the UDP length of the whole, and the pseudo-header sum (not complemented)
/// in the UDP checksum field (`NEEDS_CSUM`).
fn super_packet(v6: bool, payload: &[u8], id: u16) -> (VirtioNetHdr, Vec<u8>) {
    let udp_len = 8 + payload.len();
    let mut p = Vec::new();
    let l4 = if v6 {
        p.push(0x60);
        p.extend_from_slice(&[0, 0, 0]);
        p.extend_from_slice(&(udp_len as u16).to_be_bytes());
        p.extend_from_slice(&[17, 64]);
        p.extend_from_slice(&SRC6);
        p.extend_from_slice(&DST6);
        40
    } else {
        let total = (20 + udp_len) as u16;
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
        p.extend_from_slice(&SRC4);
        p.extend_from_slice(&DST4);
        let c = !fold(sum(&p, 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        20
    };
    p.extend_from_slice(&4000u16.to_be_bytes());
    p.extend_from_slice(&5001u16.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let (s, d): (&[u8], &[u8]) = if v6 { (&SRC6, &DST6) } else { (&SRC4, &DST4) };
    p.extend_from_slice(&fold(pseudo(v6, s, d, udp_len)).to_be_bytes());
    p.extend_from_slice(payload);
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_UDP_L4,
        hdr_len: (l4 + 8) as u16,
        gso_size: 0,
        csum_start: l4 as u16,
        csum_offset: 6,
    };
    (hdr, p)
}

/// Segments with `gso_size` and checks every datagram against the super-packet; returns the
/// datagrams' payloads concatenated.
fn check(v6: bool, payload_len: usize, gso_size: u16) {
    let payload = pattern(payload_len);
    let (mut hdr, pkt) = super_packet(v6, &payload, 0xfffe);
    hdr.gso_size = gso_size;
    let need = segmented_len(&hdr, &pkt).unwrap();
    let mut out = vec![0u8; need];
    let s = segment(&hdr, &pkt, &mut out).unwrap();
    let l4 = if v6 { 40 } else { 20 };
    let mss = usize::from(gso_size);
    assert_eq!(s.count, payload_len.div_ceil(mss).max(1));
    assert_eq!(s.stride, l4 + 8 + mss);
    assert_eq!(s.len, need);
    let mut joined = Vec::new();
    for (i, r) in s.ranges().enumerate() {
        let d = &out[r.clone()];
        let chunk = &payload[i * mss..((i + 1) * mss).min(payload_len)];
        assert_eq!(d.len(), l4 + 8 + chunk.len(), "segment {i}");
        if v6 {
            assert_eq!(
                usize::from(be16(d, 4)),
                8 + chunk.len(),
                "v6 payload length"
            );
        } else {
            assert_eq!(usize::from(be16(d, 2)), d.len(), "v4 total length");
            assert_eq!(be16(d, 4), 0xfffeu16.wrapping_add(i as u16), "v4 id");
            assert_eq!(fold(sum(&d[..20], 0)), 0xffff, "v4 header checksum");
        }
        let u = &d[l4..];
        assert_eq!(be16(u, 0), 4000);
        assert_eq!(be16(u, 2), 5001);
        assert_eq!(usize::from(be16(u, 4)), u.len(), "UDP length");
        let (src, dst): (&[u8], &[u8]) = if v6 { (&SRC6, &DST6) } else { (&SRC4, &DST4) };
        assert_ne!(be16(u, 6), 0, "a computed 0 goes out as 0xffff");
        assert_eq!(
            fold(sum(u, pseudo(v6, src, dst, u.len()))),
            0xffff,
            "UDP checksum of segment {i}"
        );
        joined.extend_from_slice(&u[8..]);
    }
    assert_eq!(joined, payload);
}

#[test]
fn uso_ipv4_with_a_last_short_datagram() {
    check(false, 3000, 1200);
}

#[test]
fn uso_ipv4_exact_multiple_and_single() {
    check(false, 3600, 1200);
    check(false, 1000, 1200);
    check(false, 1, 1472);
}

#[test]
fn uso_ipv4_largest_super_packet() {
    check(false, 65_535 - 28, 1472);
}

#[test]
fn uso_ipv6() {
    check(true, 5000, 1232);
    check(true, 1232, 1232);
}

#[test]
fn uso_refuses_what_does_not_match_its_header() {
    let (mut hdr, pkt) = super_packet(false, &pattern(3000), 1);
    hdr.gso_size = 1200;
    let mut out = vec![0u8; 1 << 17];
    // UDP length not the packet's.
    let mut bad = pkt.clone();
    bad[24..26].copy_from_slice(&100u16.to_be_bytes());
    assert!(matches!(
        segment(&hdr, &bad, &mut out),
        Err(Error::Malformed(_))
    ));
    // Checksum offset of TCP on a UDP packet.
    let h = VirtioNetHdr {
        csum_offset: 16,
        ..hdr
    };
    assert!(matches!(
        segment(&h, &pkt, &mut out),
        Err(Error::Malformed(_))
    ));
    // Not UDP.
    let mut tcp = pkt.clone();
    tcp[9] = 6;
    assert!(segment(&hdr, &tcp, &mut out).is_err());
    // A buffer too small.
    let need = segmented_len(&hdr, &pkt).unwrap();
    assert_eq!(
        segment(&hdr, &pkt, &mut out[..need - 1]),
        Err(Error::BufferTooSmall)
    );
    // gso_size 0.
    let h = VirtioNetHdr { gso_size: 0, ..hdr };
    assert!(matches!(
        segment(&h, &pkt, &mut out),
        Err(Error::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn uso_any_size(v6 in any::<bool>(), len in 1usize..20_000, mss in 1u16..1500) {
        check(v6, len, mss);
    }

    #[test]
    fn uso_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), mss in 0u16..2000) {
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_UDP_L4,
            hdr_len: 28,
            gso_size: mss,
            csum_start: 20,
            csum_offset: 6,
        };
        let mut out = vec![0u8; 1 << 16];
        let _ = segment(&hdr, &bytes, &mut out);
        let _ = segmented_len(&hdr, &bytes);
    }
}

// ---- UDP coalescing (`Coalescer::udp`): datagrams back into the kernel's super-packet ----

use wire::offload::{Coalescer, Pushed, MAX_SUPER_PACKET, MAX_UDP_SEGMENTS, VNET_HDR_LEN};

/// The datagrams `segment` makes of the reference super-packet (checked by `check` above).
fn datagrams(v6: bool, payload: &[u8], gso_size: u16) -> (VirtioNetHdr, Vec<u8>, Vec<Vec<u8>>) {
    let (mut hdr, pkt) = super_packet(v6, payload, 0x1234);
    hdr.gso_size = gso_size;
    let mut out = vec![0u8; segmented_len(&hdr, &pkt).unwrap()];
    let s = segment(&hdr, &pkt, &mut out).unwrap();
    let d = s.ranges().map(|r| out[r].to_vec()).collect();
    (hdr, pkt, d)
}

fn coalesce(packets: &[Vec<u8>], udp: bool) -> Vec<Vec<u8>> {
    let mut c = Coalescer::new(vec![0u8; 4 * (VNET_HDR_LEN + MAX_SUPER_PACKET)]).udp(udp);
    for p in packets {
        c.push(p).unwrap();
    }
    c.flush();
    c.frames().map(<[u8]>::to_vec).collect()
}

/// Coalescing the datagrams gives back the reference super-packet byte for byte, with the
/// header the kernel expects (so that its segmentation gives back the datagrams).
fn round_trip(v6: bool, payload_len: usize, gso_size: u16) {
    let payload = pattern(payload_len);
    let (want_hdr, want_pkt, d) = datagrams(v6, &payload, gso_size);
    let frames = coalesce(&d, true);
    assert_eq!(frames.len(), 1, "one super-packet");
    let (hdr, pkt) = VirtioNetHdr::split(&frames[0]).unwrap();
    if d.len() == 1 {
        assert_eq!(
            hdr,
            VirtioNetHdr::default(),
            "a single datagram passes unchanged"
        );
        assert_eq!(pkt, &d[0][..]);
        return;
    }
    assert_eq!(hdr, want_hdr);
    assert_eq!(pkt, &want_pkt[..], "v6 {v6}, {payload_len} B in {gso_size}");
}

#[test]
fn udp_coalescing_rebuilds_the_super_packet() {
    round_trip(false, 10 * 1200 + 500, 1200);
    round_trip(false, 8 * 1000, 1000);
    round_trip(true, 5 * 1400 + 1, 1400);
    round_trip(false, 700, 1200);
    // The most datagrams one super-packet takes.
    round_trip(false, MAX_UDP_SEGMENTS * 1000, 1000);
}

#[test]
fn udp_coalescing_limits_and_refusals() {
    let payload = pattern(20 * 1000);
    let (_, _, d) = datagrams(false, &payload, 1000);
    // Off (the default): every datagram on its own.
    let f = coalesce(&d, false);
    assert_eq!(f.len(), d.len());
    assert!(f.iter().all(|f| f[..VNET_HDR_LEN].iter().all(|b| *b == 0)));
    // More than MAX_UDP_SEGMENTS: a second frame.
    let big = pattern((MAX_UDP_SEGMENTS + 1) * 900);
    let (_, _, many) = datagrams(false, &big, 900);
    let f = coalesce(&many, true);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1].len(), VNET_HDR_LEN + many[MAX_UDP_SEGMENTS].len());
    // A zero checksum (IPv4: none) or a bad one: passed through, never merged or fixed.
    let mut zero = d.clone();
    for p in &mut zero {
        p[26] = 0;
        p[27] = 0;
    }
    assert_eq!(
        coalesce(&zero, true),
        zero.iter().map(|p| framed(p)).collect::<Vec<_>>()
    );
    let mut bad = d.clone();
    bad[3][40] ^= 1;
    let f = coalesce(&bad, true);
    assert_eq!(f.len(), 3, "merged before, the bad one alone, merged after");
    assert_eq!(f[1], framed(&bad[3]));
    // A bigger datagram after a smaller one ends the super-packet; a gap in the IPv4 ids too.
    let (_, _, a) = datagrams(false, &pattern(3 * 500), 500);
    let (_, _, b) = datagrams(false, &pattern(3 * 800), 800);
    let mixed: Vec<Vec<u8>> = a.iter().chain(b.iter()).cloned().collect();
    assert_eq!(coalesce(&mixed, true).len(), 2);
    let no_df: Vec<Vec<u8>> = d
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p[6] = 0;
            p[10] = 0;
            p[11] = 0;
            let c = !fold(sum(&p[..20], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p
        })
        .collect();
    let mut c = Coalescer::new(vec![0u8; 4 * (VNET_HDR_LEN + MAX_SUPER_PACKET)]).udp(true);
    assert_eq!(c.push(&no_df[0]).unwrap(), Pushed::Started);
    assert_eq!(c.push(&no_df[1]).unwrap(), Pushed::Appended);
    assert_eq!(
        c.push(&no_df[3]).unwrap(),
        Pushed::Started,
        "id gap (DF clear)"
    );
    // With DF set the ids do not matter (as for TCP): d[3] follows d[1].
    let mut c = Coalescer::new(vec![0u8; 4 * (VNET_HDR_LEN + MAX_SUPER_PACKET)]).udp(true);
    c.push(&d[0]).unwrap();
    c.push(&d[1]).unwrap();
    assert_eq!(c.push(&d[3]).unwrap(), Pushed::Appended);
}

fn framed(p: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(p);
    f
}
