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
