//! Reference tests of the TUN offloads (`wire::offload`, issue 9): TCP segmentation of
//! virtio super-packets and TCP coalescing for TUN writes.
//!
//! Every packet here is built byte by byte by [`P::build`], and every checksum is recomputed
//! by the tests' own RFC 1071 sum (`refsum`: [`fold`], [`sum`]) with its own pseudo-header,
//! never by calling `wire::checksum` (the `offload_util::check_segment` cross-check, which
//! does use it, comes on top). Two fixtures (`FIXTURE_V4`, `FIXTURE_V6`) were computed by a separate
//! Python implementation and are pasted as hex.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod offload_util;
mod refsum;

use hex_literal::hex;
use proptest::prelude::*;
use wire::offload::{
    segment, segmented_len, Coalescer, Gso, Pushed, Segments, VirtioNetHdr, MAX_FRAMES,
    MAX_SUPER_PACKET, VNET_HDR_LEN,
};
use wire::Error;

use offload_util::check_segment;
use refsum::{fold, sum};

// TCP flag bits (RFC 9293 section 3.1, RFC 3168 for ECE/CWR).
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;

/// TCP timestamps (kind 8, RFC 7323) after two NOPs.
const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 100, 0, 0, 0, 50];

// IPv6 extension header numbers.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;
/// An 8-byte option header body: a 4-byte PadN (type 1, length 4) after the two bytes of
/// next header and length.
const PADN_BODY: [u8; 6] = [1, 4, 0, 0, 0, 0];

// ---------------------------------------------------------------------------------------
// Independent Internet checksum (RFC 1071).

/// The TCP pseudo-header, unfolded.
fn pseudo(v6: bool, src: &[u8], dst: &[u8], tcp_len: usize) -> u64 {
    refsum::pseudo(v6, src, dst, tcp_len, 6)
}

// ---------------------------------------------------------------------------------------
// Reference packet builder and reader.

/// What goes into the TCP checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csum {
    /// The full checksum.
    Full,
    /// The uncomplemented pseudo-header sum (`NEEDS_CSUM`, as the kernel hands out TSO).
    Partial,
    /// This value, whatever it means.
    Raw(u16),
}

/// A TCP packet over IPv4 or IPv6, every field explicit.
#[derive(Debug, Clone)]
struct P {
    v6: bool,
    // IPv4
    src4: [u8; 4],
    dst4: [u8; 4],
    tos: u8,
    ident: u16,
    df: bool,
    /// The low 14 bits of the flags/fragment word: MF (0x2000) and the fragment offset.
    frag: u16,
    ttl: u8,
    ip_opts: Vec<u8>,
    // IPv6
    src6: [u8; 16],
    dst6: [u8; 16],
    tclass: u8,
    flow: u32,
    /// Extension headers in order: (its type, its bytes after next header and length).
    ext: Vec<(u8, Vec<u8>)>,
    // TCP
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    tcp_opts: Vec<u8>,
    payload: Vec<u8>,
}

impl P {
    fn v4(payload_len: usize) -> P {
        P {
            v6: false,
            src4: [192, 0, 2, 1],
            dst4: [198, 51, 100, 2],
            tos: 0,
            ident: 0x1000,
            df: true,
            frag: 0,
            ttl: 64,
            ip_opts: Vec::new(),
            src6: [0; 16],
            dst6: [0; 16],
            tclass: 0,
            flow: 0,
            ext: Vec::new(),
            sport: 40000,
            dport: 5201,
            seq: 1_000_000,
            ack: 0x0bad_cafe,
            flags: ACK,
            window: 502,
            urgent: 0,
            tcp_opts: TS.to_vec(),
            payload: pattern(payload_len, 0),
        }
    }

    fn v6(payload_len: usize) -> P {
        let mut src6 = [0u8; 16];
        src6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let mut dst6 = src6;
        src6[15] = 1;
        dst6[15] = 2;
        P {
            v6: true,
            src6,
            dst6,
            tclass: 0,
            flow: 0x12345,
            ..P::v4(payload_len)
        }
    }

    fn ip_hdr_len(&self) -> usize {
        if self.v6 {
            40 + self.ext.iter().map(|(_, b)| 2 + b.len()).sum::<usize>()
        } else {
            20 + self.ip_opts.len()
        }
    }

    fn tcp_hdr_len(&self) -> usize {
        20 + self.tcp_opts.len()
    }

    /// IP headers + TCP header (`hdr_len`).
    fn hdrs(&self) -> usize {
        self.ip_hdr_len() + self.tcp_hdr_len()
    }

    /// The packet, byte by byte.
    fn build(&self, csum: Csum) -> Vec<u8> {
        assert_eq!(self.tcp_opts.len() % 4, 0, "TCP options pad to 32 bits");
        assert_eq!(self.ip_opts.len() % 4, 0, "IPv4 options pad to 32 bits");
        let mut t = Vec::new();
        t.extend_from_slice(&self.sport.to_be_bytes());
        t.extend_from_slice(&self.dport.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.push(((self.tcp_hdr_len() / 4) as u8) << 4);
        t.push(self.flags);
        t.extend_from_slice(&self.window.to_be_bytes());
        t.extend_from_slice(&[0, 0]);
        t.extend_from_slice(&self.urgent.to_be_bytes());
        t.extend_from_slice(&self.tcp_opts);
        t.extend_from_slice(&self.payload);
        let ph = if self.v6 {
            pseudo(true, &self.src6, &self.dst6, t.len())
        } else {
            pseudo(false, &self.src4, &self.dst4, t.len())
        };
        let c = match csum {
            Csum::Full => !fold(sum(&t, ph)),
            Csum::Partial => fold(ph),
            Csum::Raw(v) => v,
        };
        t[16..18].copy_from_slice(&c.to_be_bytes());

        let mut p = Vec::new();
        if self.v6 {
            let word = (6u32 << 28) | (u32::from(self.tclass) << 20) | (self.flow & 0xf_ffff);
            p.extend_from_slice(&word.to_be_bytes());
            let plen = self.ip_hdr_len() - 40 + t.len();
            p.extend_from_slice(&(plen as u16).to_be_bytes());
            p.push(self.ext.first().map_or(6, |e| e.0));
            p.push(self.ttl);
            p.extend_from_slice(&self.src6);
            p.extend_from_slice(&self.dst6);
            for (i, (_, body)) in self.ext.iter().enumerate() {
                assert_eq!((2 + body.len()) % 8, 0, "extension headers are 8n bytes");
                p.push(self.ext.get(i + 1).map_or(6, |e| e.0));
                p.push(if self.ext[i].0 == FRAGMENT {
                    0 // reserved byte
                } else {
                    ((2 + body.len()) / 8 - 1) as u8
                });
                p.extend_from_slice(body);
            }
        } else {
            let ihl = self.ip_hdr_len() / 4;
            p.push(0x40 | ihl as u8);
            p.push(self.tos);
            p.extend_from_slice(&((self.ip_hdr_len() + t.len()) as u16).to_be_bytes());
            p.extend_from_slice(&self.ident.to_be_bytes());
            let ff = if self.df { 0x4000 } else { 0 } | self.frag;
            p.extend_from_slice(&ff.to_be_bytes());
            p.push(self.ttl);
            p.push(6);
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&self.src4);
            p.extend_from_slice(&self.dst4);
            p.extend_from_slice(&self.ip_opts);
            let hc = !fold(sum(&p, 0));
            p[10..12].copy_from_slice(&hc.to_be_bytes());
        }
        p.extend_from_slice(&t);
        p
    }

    /// The virtio header the kernel gives a TSO read of this packet.
    fn tso(&self, mss: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: if self.v6 {
                VirtioNetHdr::GSO_TCPV6
            } else {
                VirtioNetHdr::GSO_TCPV4
            },
            hdr_len: self.hdrs() as u16,
            gso_size: mss,
            csum_start: self.ip_hdr_len() as u16,
            csum_offset: 16,
        }
    }

    /// The next in-order segment of this flow, with `len` payload bytes.
    fn next(&self, len: usize) -> P {
        let mut n = self.clone();
        n.seq = self.seq.wrapping_add(self.payload.len() as u32);
        n.ident = self.ident.wrapping_add(1);
        n.payload = pattern(len, n.seq);
        n
    }
}

/// Deterministic payload bytes, different for different `salt`s.
fn pattern(len: usize, salt: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(salt.wrapping_mul(7)) as u8
                ^ 0x5a
        })
        .collect()
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Fields read back from a packet by offsets, independently of `wire`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Read {
    v6: bool,
    /// IPv4 total length, or 40 + IPv6 payload length.
    total_len: usize,
    /// IPv4 identification.
    ident: Option<u16>,
    l4: usize,
    seq: u32,
    ack: u32,
    flags: u8,
    tcp_opts: Vec<u8>,
    payload: Vec<u8>,
}

/// Reads `pkt` and checks its checksums from scratch: the IPv4 header sums to 0xffff and
/// its checksum field equals a recompute with the field zeroed; the TCP checksum likewise,
/// with the pseudo-header.
fn read_verified(pkt: &[u8]) -> Read {
    let v6 = pkt[0] >> 4 == 6;
    let (l4, total_len, ident, src, dst) = if v6 {
        let total = 40 + usize::from(be16(pkt, 4));
        let (mut nh, mut off) = (pkt[6], 40);
        while matches!(nh, HOP_BY_HOP | ROUTING | DEST_OPTS) {
            nh = pkt[off];
            off += (usize::from(pkt[off + 1]) + 1) * 8;
        }
        assert_eq!(nh, 6, "upper layer is TCP");
        (off, total, None, &pkt[8..24], &pkt[24..40])
    } else {
        assert_eq!(pkt[0] >> 4, 4, "version");
        let ihl = usize::from(pkt[0] & 0xf) * 4;
        assert_eq!(pkt[9], 6, "protocol TCP");
        assert_eq!(fold(sum(&pkt[..ihl], 0)), 0xffff, "IPv4 header checksum");
        let mut h = pkt[..ihl].to_vec();
        h[10..12].fill(0);
        assert_eq!(be16(pkt, 10), !fold(sum(&h, 0)), "IPv4 header checksum");
        let total = usize::from(be16(pkt, 2));
        (ihl, total, Some(be16(pkt, 4)), &pkt[12..16], &pkt[16..20])
    };
    assert_eq!(total_len, pkt.len(), "IP length covers exactly the packet");
    let t = &pkt[l4..];
    let ph = pseudo(v6, src, dst, t.len());
    assert_eq!(fold(sum(t, ph)), 0xffff, "TCP checksum");
    let mut tz = t.to_vec();
    tz[16..18].fill(0);
    assert_eq!(be16(t, 16), !fold(sum(&tz, ph)), "TCP checksum recompute");
    let thl = usize::from(t[12] >> 4) * 4;
    Read {
        v6,
        total_len,
        ident,
        l4,
        seq: be32(t, 4),
        ack: be32(t, 8),
        flags: t[13],
        tcp_opts: t[20..thl].to_vec(),
        payload: t[thl..].to_vec(),
    }
}

/// Segments `pkt`, checks the layout contract (segment `i` at `i * stride`, all but the last
/// exactly `stride` bytes, `len` = `segmented_len`, one byte less of output is
/// `BufferTooSmall`) and returns the segments.
fn seg(hdr: &VirtioNetHdr, pkt: &[u8]) -> (Segments, Vec<Vec<u8>>) {
    let need = segmented_len(hdr, pkt).unwrap();
    let mut out = vec![0xa5u8; need + 64];
    let s = segment(hdr, pkt, &mut out).unwrap();
    assert_eq!(s.len, need, "segmented_len");
    assert!(s.count >= 1);
    let ranges: Vec<_> = s.ranges().collect();
    assert_eq!(ranges.len(), s.count);
    for (i, r) in ranges.iter().enumerate() {
        assert_eq!(r.start, i * s.stride, "segment {i} start");
        if i + 1 < s.count {
            assert_eq!(r.len(), s.stride, "segment {i} is a full stride");
        } else {
            assert!(r.len() <= s.stride && r.end == s.len, "last segment");
        }
    }
    assert!(
        out[need..].iter().all(|&b| b == 0xa5),
        "nothing written past len"
    );
    if need > 0 {
        let mut short = vec![0u8; need - 1];
        assert_eq!(
            segment(hdr, pkt, &mut short),
            Err(Error::BufferTooSmall),
            "one byte short"
        );
    }
    let segs = ranges.into_iter().map(|r| out[r].to_vec()).collect();
    (s, segs)
}

/// The segments a super-packet must give (the reference model of `tcp_gso_segment`).
fn expected_segments(sup: &P, mss: usize) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = if sup.payload.is_empty() {
        vec![&[]]
    } else {
        sup.payload.chunks(mss).collect()
    };
    let n = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut s = sup.clone();
            s.payload = c.to_vec();
            s.seq = sup.seq.wrapping_add((i * mss) as u32);
            s.ident = sup.ident.wrapping_add(i as u16);
            if i != 0 {
                s.flags &= !CWR;
            }
            if i + 1 != n {
                s.flags &= !(FIN | PSH);
            }
            s.build(Csum::Full)
        })
        .collect()
}

/// Segments `sup` (built with a partial checksum) and checks every segment against
/// [`expected_segments`], byte for byte and through [`read_verified`] and `check_segment`.
fn seg_reference(sup: &P, mss: u16) -> Vec<Read> {
    let (s, segs) = seg(&sup.tso(mss), &sup.build(Csum::Partial));
    let want = expected_segments(sup, usize::from(mss));
    assert_eq!(s.count, want.len(), "segment count");
    assert_eq!(s.stride, sup.hdrs() + usize::from(mss), "stride");
    let mut reads = Vec::new();
    for (i, (got, want)) in segs.iter().zip(&want).enumerate() {
        assert_eq!(hexs(got), hexs(want), "segment {i}");
        check_segment(got);
        reads.push(read_verified(got));
    }
    reads
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Segmentation: fixtures.

/// IPv4 192.0.2.1 -> 198.51.100.2, id 0xfffe, DF, TCP 40000 -> 5201, seq 0xfffffffa, ack 1,
/// ACK|PSH|FIN|CWR, window 256, payload "abcdefghij", MSS 4: three segments, the sequence
/// number and the IPv4 id both wrap, CWR on the first, PSH|FIN on the last. Computed by an
/// independent Python script.
const FIXTURE_V4: [&[u8]; 3] = [
    &hex!(
        "4500002cfffe400040064e96c0000201c63364029c401451fffffffa00000001509001004cc5000061626364"
    ),
    &hex!(
        "4500002cffff400040064e95c0000201c63364029c401451fffffffe00000001501001004539000065666768"
    ),
    &hex!("4500002a0000400040064e97c0000201c63364029c401451000000020000000150190100a8930000696a"),
];

/// IPv6 2001:db8::1 -> 2001:db8::2, flow label 0x12345, TCP seq 100, ack 7, ACK|PSH,
/// window 512, payload "abcdefghi", MSS 6: a full segment and a short one.
const FIXTURE_V6: [&[u8]; 2] = [
    &hex!("60012345001a064020010db800000000000000000000000120010db80000000000000000000000029c40145100000064000000075010020077300000616263646566"),
    &hex!("600123450017064020010db800000000000000000000000120010db80000000000000000000000029c4014510000006a0000000750180200d0e90000676869"),
];

#[test]
fn segment_matches_python_fixture_v4() {
    let mut sup = P::v4(0);
    sup.ident = 0xfffe;
    sup.seq = 0xffff_fffa;
    sup.ack = 1;
    sup.flags = ACK | PSH | FIN | CWR;
    sup.window = 256;
    sup.tcp_opts.clear();
    sup.payload = b"abcdefghij".to_vec();
    let hdr = sup.tso(4);
    let (s, segs) = seg(&hdr, &sup.build(Csum::Partial));
    assert_eq!(
        s,
        Segments {
            count: 3,
            stride: 44,
            len: 44 + 44 + 42
        }
    );
    for (i, (got, want)) in segs.iter().zip(FIXTURE_V4).enumerate() {
        assert_eq!(hexs(got), hexs(want), "segment {i}");
    }
    // Our own builder agrees with the fixture (so the other tests' references are sound).
    for (got, want) in expected_segments(&sup, 4).iter().zip(FIXTURE_V4) {
        assert_eq!(hexs(got), hexs(want));
    }
}

#[test]
fn segment_matches_python_fixture_v6() {
    let mut sup = P::v6(0);
    sup.seq = 100;
    sup.ack = 7;
    sup.flags = ACK | PSH;
    sup.window = 512;
    sup.tcp_opts.clear();
    sup.payload = b"abcdefghi".to_vec();
    let (s, segs) = seg(&sup.tso(6), &sup.build(Csum::Partial));
    assert_eq!(
        s,
        Segments {
            count: 2,
            stride: 66,
            len: 66 + 63
        }
    );
    for (i, (got, want)) in segs.iter().zip(FIXTURE_V6).enumerate() {
        assert_eq!(hexs(got), hexs(want), "segment {i}");
    }
    for (got, want) in expected_segments(&sup, 6).iter().zip(FIXTURE_V6) {
        assert_eq!(hexs(got), hexs(want));
    }
}

// ---------------------------------------------------------------------------------------
// Segmentation: sizes.

#[test]
fn segment_exact_multiple_of_mss() {
    let mut sup = P::v4(3 * 1448);
    sup.flags = ACK | PSH;
    let r = seg_reference(&sup, 1448);
    assert_eq!(r.len(), 3);
    for (i, s) in r.iter().enumerate() {
        assert_eq!(s.total_len, 20 + 32 + 1448, "segment {i} total length");
        assert_eq!(s.payload.len(), 1448);
        assert_eq!(s.seq, 1_000_000 + 1448 * i as u32);
        assert_eq!(s.ident, Some(0x1000 + i as u16));
        assert_eq!(s.ack, 0x0bad_cafe);
    }
    assert_eq!(
        r.iter().map(|s| s.flags).collect::<Vec<_>>(),
        [ACK, ACK, ACK | PSH]
    );
    let all: Vec<u8> = r.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(all, sup.payload);
}

#[test]
fn segment_last_short_segment() {
    let sup = P::v4(2 * 1000 + 1);
    let r = seg_reference(&sup, 1000);
    assert_eq!(
        r.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        [1000, 1000, 1]
    );
    assert_eq!(r[2].total_len, 20 + 32 + 1);
    assert_eq!(r[2].seq, 1_000_000 + 2000);
    assert_eq!(r[2].ident, Some(0x1002));
}

#[test]
fn segment_super_packet_of_one_segment() {
    let mut sup = P::v4(1448);
    sup.flags = ACK | PSH | CWR | FIN;
    let r = seg_reference(&sup, 1448);
    assert_eq!(r.len(), 1);
    // The only segment is both first and last: it keeps CWR, PSH and FIN.
    assert_eq!(r[0].flags, ACK | PSH | CWR | FIN);
    assert_eq!((r[0].seq, r[0].ident), (1_000_000, Some(0x1000)));
    assert_eq!(r[0].payload, sup.payload);
}

#[test]
fn segment_payload_smaller_than_mss() {
    let sup = P::v6(100);
    let (s, segs) = seg(&sup.tso(1440), &sup.build(Csum::Partial));
    // The stride is still headers + MSS (the UDP_SEGMENT value); the one segment is shorter.
    assert_eq!(
        s,
        Segments {
            count: 1,
            stride: 40 + 32 + 1440,
            len: 40 + 32 + 100
        }
    );
    assert_eq!(segs[0], sup.build(Csum::Full));
    assert_eq!(read_verified(&segs[0]).total_len, 172);
}

#[test]
fn segment_empty_payload_gives_one_header_only_segment() {
    // A FIN alone as a "super-packet": one segment of headers, FIN kept.
    let mut sup = P::v4(0);
    sup.flags = ACK | FIN;
    let r = seg_reference(&sup, 1448);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].flags, r[0].payload.len()), (ACK | FIN, 0));
}

#[test]
fn segment_mss_one() {
    let sup = P::v6(5);
    let r = seg_reference(&sup, 1);
    assert_eq!(r.len(), 5);
    for (i, s) in r.iter().enumerate() {
        assert_eq!(s.payload, [sup.payload[i]]);
        assert_eq!(s.total_len, 40 + 32 + 1);
    }
}

#[test]
fn segment_largest_ipv4_super_packet() {
    // 65535 bytes of IPv4 at MSS 1448: 45 full segments and a short one.
    let sup = P::v4(65535 - 52);
    let r = seg_reference(&sup, 1448);
    assert_eq!(r.len(), 46);
    assert_eq!(r[45].payload.len(), 65535 - 52 - 45 * 1448);
}

// ---------------------------------------------------------------------------------------
// Segmentation: flags.

#[test]
fn segment_psh_fin_last_cwr_first_ece_everywhere() {
    let mut sup = P::v4(4 * 500);
    sup.flags = ACK | PSH | FIN | CWR | ECE;
    let r = seg_reference(&sup, 500);
    assert_eq!(
        r.iter().map(|s| s.flags).collect::<Vec<_>>(),
        [ACK | ECE | CWR, ACK | ECE, ACK | ECE, ACK | ECE | PSH | FIN]
    );
}

#[test]
fn segment_without_psh_sets_no_psh() {
    let sup = P::v6(3 * 100);
    let r = seg_reference(&sup, 100);
    assert!(r.iter().all(|s| s.flags == ACK));
}

#[test]
fn segment_gso_ecn_bit_accepted() {
    let mut sup = P::v4(300);
    sup.flags = ACK | CWR;
    let mut hdr = sup.tso(100);
    hdr.gso_type |= VirtioNetHdr::GSO_ECN;
    let (_, segs) = seg(&hdr, &sup.build(Csum::Partial));
    assert_eq!(segs, expected_segments(&sup, 100));
    assert_eq!(read_verified(&segs[0]).flags, ACK | CWR);
    assert_eq!(read_verified(&segs[1]).flags, ACK);
}

#[test]
fn segment_copies_syn_rst_urg_to_every_segment() {
    // The documented rule touches only FIN, PSH and CWR (as Linux tcp_gso_segment); any
    // other flag, and the urgent pointer, are copied to every segment unchanged. The kernel
    // never hands out such super-packets; the point is that nothing breaks.
    let mut sup = P::v4(3 * 64);
    sup.flags = SYN | RST | URG | ACK | PSH;
    sup.urgent = 7;
    let r = seg_reference(&sup, 64);
    assert_eq!(
        r.iter().map(|s| s.flags).collect::<Vec<_>>(),
        [
            SYN | RST | URG | ACK,
            SYN | RST | URG | ACK,
            SYN | RST | URG | ACK | PSH
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Segmentation: IPv6, options, wrap-around.

#[test]
fn segment_ipv6_payload_length_per_segment() {
    let mut sup = P::v6(2 * 1420 + 700);
    sup.flags = ACK | PSH;
    sup.tclass = 0x2e;
    sup.ttl = 3;
    let r = seg_reference(&sup, 1420);
    assert_eq!(
        r.iter().map(|s| s.total_len - 40).collect::<Vec<_>>(),
        [32 + 1420, 32 + 1420, 32 + 700],
        "IPv6 payload lengths"
    );
    assert!(r.iter().all(|s| s.v6 && s.ident.is_none()));
}

#[test]
fn segment_ipv6_with_extension_headers() {
    let mut sup = P::v6(2 * 600 + 10);
    sup.ext = vec![
        (HOP_BY_HOP, PADN_BODY.to_vec()),
        (DEST_OPTS, PADN_BODY.to_vec()),
    ];
    sup.flags = ACK | PSH;
    assert_eq!(sup.ip_hdr_len(), 56);
    let r = seg_reference(&sup, 600);
    assert_eq!(r.len(), 3);
    for s in &r {
        assert_eq!(s.l4, 56);
    }
    // The payload length counts the extension headers.
    assert_eq!(r[2].total_len, 56 + 32 + 10);

    // csum_start must point at the TCP header, past the extension headers.
    let mut hdr = sup.tso(600);
    hdr.csum_start = 40;
    assert!(matches!(
        segment(&hdr, &sup.build(Csum::Partial), &mut [0u8; 4096]),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn segment_refuses_ipv6_fragment() {
    let mut sup = P::v6(300);
    sup.ext = vec![(FRAGMENT, vec![0, 1, 0, 0, 0, 9])]; // offset 0, M=1, id 9
    let mut out = [0u8; 4096];
    assert!(matches!(
        segment(&sup.tso(100), &sup.build(Csum::Partial), &mut out),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn segment_refuses_ipv4_fragments() {
    let mut out = [0u8; 4096];
    for frag in [0x2000, 0x0001, 0x2010] {
        let mut sup = P::v4(300);
        sup.df = false;
        sup.frag = frag;
        assert!(
            matches!(
                segment(&sup.tso(100), &sup.build(Csum::Partial), &mut out),
                Err(Error::Malformed(_))
            ),
            "fragment word {frag:#x}"
        );
    }
}

#[test]
fn segment_ipv4_options_and_tcp_timestamps_on_every_segment() {
    let mut sup = P::v4(3 * 512 + 3);
    // Router Alert (RFC 2113) and NOP, NOP, EOL, padding: 8 bytes of IPv4 options.
    sup.ip_opts = vec![0x94, 4, 0, 0, 1, 1, 0, 0];
    sup.flags = ACK | PSH;
    let mut hdr = sup.tso(512);
    assert_eq!(hdr.csum_start, 28);
    let r = seg_reference(&sup, 512);
    assert_eq!(r.len(), 4);
    for (i, s) in r.iter().enumerate() {
        assert_eq!(s.l4, 28, "IHL 7");
        assert_eq!(s.tcp_opts, TS, "segment {i} keeps the timestamps");
        assert_eq!(s.ident, Some(0x1000 + i as u16));
    }
    // The segments carry the options bytes themselves too.
    let (_, segs) = seg(&sup.tso(512), &sup.build(Csum::Partial));
    for s in &segs {
        assert_eq!(s[0], 0x47);
        assert_eq!(&s[20..28], &[0x94, 4, 0, 0, 1, 1, 0, 0]);
    }
    // hdr_len is a hint only: a wrong one changes nothing.
    hdr.hdr_len = 3;
    assert_eq!(seg(&hdr, &sup.build(Csum::Partial)).1, segs);
}

#[test]
fn segment_tcp_options_of_forty_bytes() {
    let mut sup = P::v6(1000);
    // MSS, SACK permitted, window scale, timestamps, NOPs: 40 bytes (data offset 15).
    let mut opts = vec![2, 4, 0x05, 0xa0, 4, 2, 3, 3, 7, 1];
    opts.extend_from_slice(&[8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
    opts.resize(40, 1);
    sup.tcp_opts = opts.clone();
    let r = seg_reference(&sup, 333);
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|s| s.tcp_opts == opts));
}

#[test]
fn segment_sequence_number_wraps() {
    let mut sup = P::v6(4 * 1000);
    sup.seq = u32::MAX - 1499;
    let r = seg_reference(&sup, 1000);
    assert_eq!(
        r.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [u32::MAX - 1499, u32::MAX - 499, 500, 1500]
    );
}

#[test]
fn segment_ipv4_id_wraps() {
    let mut sup = P::v4(4 * 100);
    sup.ident = 0xfffe;
    let r = seg_reference(&sup, 100);
    assert_eq!(
        r.iter().map(|s| s.ident.unwrap()).collect::<Vec<_>>(),
        [0xfffe, 0xffff, 0x0000, 0x0001]
    );
    // Without DF the ids increment the same way.
    sup.df = false;
    sup.ident = 0xffff;
    let r = seg_reference(&sup, 100);
    assert_eq!(
        r.iter().map(|s| s.ident.unwrap()).collect::<Vec<_>>(),
        [0xffff, 0, 1, 2]
    );
}

#[test]
fn segment_ignores_the_input_checksum_and_trailing_bytes() {
    let sup = P::v4(1000);
    let want = expected_segments(&sup, 300);
    // Whatever is in the TCP checksum field (partial, full, garbage) and without NEEDS_CSUM.
    for c in [Csum::Partial, Csum::Full, Csum::Raw(0xdead)] {
        let mut hdr = sup.tso(300);
        assert_eq!(seg(&hdr, &sup.build(c)).1, want, "{c:?}");
        hdr.flags = 0;
        assert_eq!(seg(&hdr, &sup.build(c)).1, want, "{c:?} without NEEDS_CSUM");
    }
    // A broken IPv4 header checksum is rewritten too.
    let mut pkt = sup.build(Csum::Partial);
    pkt[10] ^= 0xff;
    assert_eq!(seg(&sup.tso(300), &pkt).1, want);
    // Bytes past the IP length (link padding) are not payload.
    let mut pkt = sup.build(Csum::Partial);
    pkt.extend_from_slice(&[0xee; 7]);
    assert_eq!(seg(&sup.tso(300), &pkt).1, want);
    let mut sup6 = P::v6(1000);
    sup6.flags = ACK | PSH;
    let mut pkt = sup6.build(Csum::Partial);
    pkt.extend_from_slice(&[0xee; 9]);
    assert_eq!(seg(&sup6.tso(300), &pkt).1, expected_segments(&sup6, 300));
}

// ---------------------------------------------------------------------------------------
// Segmentation: GSO_NONE and errors.

#[test]
fn segment_gso_none_passes_through() {
    let p = P::v4(700).build(Csum::Full);
    let hdr = VirtioNetHdr::default();
    let (s, segs) = seg(&hdr, &p);
    assert_eq!(
        s,
        Segments {
            count: 1,
            stride: p.len(),
            len: p.len()
        }
    );
    assert_eq!(segs, std::slice::from_ref(&p));
    // Not even IP: copied as is (GSO_NONE means "one packet", whatever it is).
    let junk = [0xffu8, 1, 2, 3, 4];
    assert_eq!(seg(&hdr, &junk).1, [junk.to_vec()]);
    assert_eq!(seg(&hdr, &[]).0.len, 0);
    // gso_size is meaningless without GSO.
    let h2 = VirtioNetHdr { gso_size: 3, ..hdr };
    assert_eq!(seg(&h2, &p).1, [p]);
}

#[test]
fn segment_gso_none_completes_a_partial_checksum() {
    for sup in [P::v4(333), P::v6(333)] {
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            csum_start: sup.ip_hdr_len() as u16,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        let (_, segs) = seg(&hdr, &sup.build(Csum::Partial));
        assert_eq!(segs, [sup.build(Csum::Full)]);
        read_verified(&segs[0]);
    }
    // The checksum field beyond the packet: a typed error.
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::F_NEEDS_CSUM,
        csum_start: 60,
        csum_offset: 16,
        ..VirtioNetHdr::default()
    };
    assert!(matches!(
        segment(&hdr, &[0x45; 70], &mut [0u8; 100]),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn segment_buffer_too_small() {
    let sup = P::v4(3000);
    let pkt = sup.build(Csum::Partial);
    for n in [
        0,
        1,
        51,
        52 + 1000,
        segmented_len(&sup.tso(1000), &pkt).unwrap() - 1,
    ] {
        assert_eq!(
            segment(&sup.tso(1000), &pkt, &mut vec![0u8; n]),
            Err(Error::BufferTooSmall),
            "{n} bytes"
        );
    }
    assert_eq!(
        segment(
            &VirtioNetHdr::default(),
            &pkt,
            &mut vec![0u8; pkt.len() - 1]
        ),
        Err(Error::BufferTooSmall)
    );
}

/// `segment` and `segmented_len` both give `err` (`segment` with a big enough buffer).
fn assert_refused(hdr: &VirtioNetHdr, pkt: &[u8], what: &str) -> Error {
    let mut out = vec![0u8; 1 << 17];
    let e = segment(hdr, pkt, &mut out).expect_err(what);
    assert_eq!(
        segmented_len(hdr, pkt),
        Err(e),
        "{what}: segmented_len agrees"
    );
    e
}

#[test]
fn segment_refuses_bad_virtio_headers() {
    let sup = P::v4(3000);
    let pkt = sup.build(Csum::Partial);
    let base = sup.tso(1000);
    let mut h = base;
    h.gso_size = 0;
    assert!(matches!(
        assert_refused(&h, &pkt, "gso_size 0"),
        Error::Malformed(_)
    ));
    let h = VirtioNetHdr {
        gso_type: VirtioNetHdr::GSO_UDP,
        ..base
    };
    assert!(matches!(
        assert_refused(&h, &pkt, "UFO"),
        Error::Unsupported(_)
    ));
    // USO is segmented (tests/uso.rs), but not on a TCP packet.
    let h = VirtioNetHdr {
        gso_type: VirtioNetHdr::GSO_UDP_L4,
        ..base
    };
    assert!(matches!(
        assert_refused(&h, &pkt, "USO on TCP"),
        Error::Malformed(_)
    ));
    for t in [2, 6, 0x7f, 0x82] {
        let h = VirtioNetHdr {
            gso_type: t,
            ..base
        };
        assert_eq!(h.gso(), Gso::Unknown(t & 0x7f));
        assert!(matches!(
            assert_refused(&h, &pkt, "unknown gso_type"),
            Error::Malformed(_)
        ));
    }
    // The wrong family for the packet.
    let h = VirtioNetHdr {
        gso_type: VirtioNetHdr::GSO_TCPV6,
        ..base
    };
    assert!(matches!(
        assert_refused(&h, &pkt, "TCPV6 on IPv4"),
        Error::Malformed(_)
    ));
    let six = P::v6(3000);
    let h = VirtioNetHdr {
        gso_type: VirtioNetHdr::GSO_TCPV4,
        ..six.tso(1000)
    };
    assert!(matches!(
        assert_refused(&h, &six.build(Csum::Partial), "TCPV4 on IPv6"),
        Error::Malformed(_)
    ));
    // NEEDS_CSUM pointing elsewhere than the TCP checksum.
    for (start, off) in [(0, 16), (21, 16), (20, 6), (20, 17)] {
        let h = VirtioNetHdr {
            csum_start: start,
            csum_offset: off,
            ..base
        };
        assert!(matches!(
            assert_refused(&h, &pkt, "csum_start/offset"),
            Error::Malformed(_)
        ));
    }
}

#[test]
fn segment_refuses_malformed_packets() {
    let sup = P::v4(3000);
    let good = sup.build(Csum::Partial);
    let hdr = sup.tso(1000);
    let truncated = |e: Error| e == Error::Truncated;
    let malformed = |e: Error| matches!(e, Error::Malformed(_));

    assert!(truncated(assert_refused(&hdr, &[], "empty")));
    assert!(truncated(assert_refused(
        &hdr,
        &good[..19],
        "IPv4 header cut"
    )));
    assert!(truncated(assert_refused(
        &hdr,
        &good[..good.len() - 1],
        "IP length beyond the buffer"
    )));
    // Not TCP.
    let mut p = good.clone();
    p[9] = 17;
    assert!(malformed(assert_refused(&hdr, &p, "UDP")));
    // IHL 4, and IHL beyond the total length.
    let mut p = good.clone();
    p[0] = 0x44;
    assert!(malformed(assert_refused(&hdr, &p, "IHL 4")));
    let mut p = good[..40].to_vec();
    p[0] = 0x4f;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    assert!(malformed(assert_refused(&hdr, &p, "IHL 15 > total 40")));
    // A TCP header that does not fit in the IP length.
    let mut p = good[..20 + 19].to_vec();
    p[2..4].copy_from_slice(&39u16.to_be_bytes());
    assert!(truncated(assert_refused(&hdr, &p, "19 bytes of TCP")));
    // TCP data offset 4, and 15 beyond the segment.
    let mut p = good.clone();
    p[20 + 12] = 4 << 4;
    assert!(malformed(assert_refused(&hdr, &p, "data offset 4")));
    let mut p = good[..20 + 40].to_vec();
    p[2..4].copy_from_slice(&60u16.to_be_bytes());
    p[20 + 12] = 15 << 4;
    assert!(truncated(assert_refused(&hdr, &p, "data offset 15 > 40")));
    // Version 6 with a TCPV4 header, and garbage.
    let mut p = good.clone();
    p[0] = 0x65;
    assert!(malformed(assert_refused(&hdr, &p, "version 6")));

    let six = P::v6(3000);
    let good6 = six.build(Csum::Partial);
    let h6 = six.tso(1000);
    assert!(truncated(assert_refused(
        &h6,
        &good6[..39],
        "IPv6 header cut"
    )));
    assert!(truncated(assert_refused(
        &h6,
        &good6[..good6.len() - 1],
        "IPv6 payload length beyond the buffer"
    )));
    let mut p = good6.clone();
    p[6] = 17;
    assert!(malformed(assert_refused(&h6, &p, "IPv6 UDP")));
    let mut p = good6.clone();
    p[6] = 59; // No Next Header
    assert!(malformed(assert_refused(&h6, &p, "IPv6 no next header")));
    // A jumbogram-style payload length 0: no room for TCP.
    let mut p = good6.clone();
    p[4..6].fill(0);
    assert!(truncated(assert_refused(&h6, &p, "IPv6 payload length 0")));
}

// ---------------------------------------------------------------------------------------
// Coalescing.

/// One frame from the coalescer: its virtio header (read by hand, little-endian) and packet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    hdr: VirtioNetHdr,
    pkt: Vec<u8>,
}

fn parse_frame(f: &[u8]) -> Frame {
    let le = |at: usize| u16::from_le_bytes([f[at], f[at + 1]]);
    let hdr = VirtioNetHdr {
        flags: f[0],
        gso_type: f[1],
        hdr_len: le(2),
        gso_size: le(4),
        csum_start: le(6),
        csum_offset: le(8),
    };
    assert_eq!(VirtioNetHdr::parse(f), Ok(hdr));
    Frame {
        hdr,
        pkt: f[VNET_HDR_LEN..].to_vec(),
    }
}

/// Pushes every packet into a roomy coalescer, flushes, returns what `push` said and the
/// frames.
fn coalesce(pkts: &[Vec<u8>]) -> (Vec<Pushed>, Vec<Frame>) {
    let room: usize = pkts.iter().map(|p| p.len() + VNET_HDR_LEN).sum();
    let mut c = Coalescer::new(vec![0u8; room]);
    let pushed = pkts.iter().map(|p| c.push(p).unwrap()).collect();
    c.flush();
    let frames = c.frames().map(parse_frame).collect();
    (pushed, frames)
}

/// A frame holding one packet unchanged (zero header).
fn single(pkt: &[u8]) -> Frame {
    Frame {
        hdr: VirtioNetHdr::default(),
        pkt: pkt.to_vec(),
    }
}

/// The frame that coalescing `segs` (in order, one run) must give: the first segment's
/// headers, all payloads, PSH if any segment had it, partial checksum, GSO header.
fn merged(segs: &[P]) -> Frame {
    let mut sup = segs[0].clone();
    sup.payload = segs.iter().flat_map(|s| s.payload.clone()).collect();
    sup.flags |= segs.iter().fold(0, |f, s| f | s.flags) & PSH;
    let gso = if sup.v6 {
        VirtioNetHdr::GSO_TCPV6
    } else {
        VirtioNetHdr::GSO_TCPV4
    };
    let ecn = if segs[0].flags & CWR != 0 {
        VirtioNetHdr::GSO_ECN
    } else {
        0
    };
    Frame {
        hdr: VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: gso | ecn,
            hdr_len: sup.hdrs() as u16,
            gso_size: segs[0].payload.len() as u16,
            csum_start: sup.ip_hdr_len() as u16,
            csum_offset: 16,
        },
        pkt: sup.build(Csum::Partial),
    }
}

/// `n` in-order segments of `len` payload bytes, starting from `first`.
fn run(first: P, n: usize, len: usize) -> Vec<P> {
    let mut v = vec![first];
    while v.len() < n {
        let next = v[v.len() - 1].next(len);
        v.push(next);
    }
    v
}

fn built(ps: &[P]) -> Vec<Vec<u8>> {
    ps.iter().map(|p| p.build(Csum::Full)).collect()
}

#[test]
fn coalesce_consecutive_segments_v4() {
    let mut segs = run(P::v4(1448), 4, 1448);
    let last = segs[3].next(100);
    segs.push(last);
    segs[4].flags |= PSH;
    let (pushed, frames) = coalesce(&built(&segs));
    assert_eq!(pushed[0], Pushed::Started);
    assert!(pushed[1..].iter().all(|&p| p == Pushed::Appended));
    assert_eq!(frames, [merged(&segs)]);
    // Field by field, by hand.
    let f = &frames[0];
    assert_eq!(f.hdr.flags, VirtioNetHdr::F_NEEDS_CSUM);
    assert_eq!(f.hdr.gso_type, VirtioNetHdr::GSO_TCPV4);
    assert_eq!(
        (
            f.hdr.hdr_len,
            f.hdr.gso_size,
            f.hdr.csum_start,
            f.hdr.csum_offset
        ),
        (52, 1448, 20, 16)
    );
    let p = &f.pkt;
    assert_eq!(usize::from(be16(p, 2)), 52 + 4 * 1448 + 100);
    assert_eq!(p.len(), 52 + 4 * 1448 + 100);
    assert_eq!(be16(p, 4), 0x1000, "the first segment's id");
    assert_eq!(fold(sum(&p[..20], 0)), 0xffff, "IPv4 header checksum");
    assert_eq!(be32(p, 24), 1_000_000, "the first segment's seq");
    assert_eq!(p[33], ACK | PSH);
    let ph = pseudo(false, &p[12..16], &p[16..20], p.len() - 20);
    assert_eq!(be16(p, 36), fold(ph), "partial checksum: pseudo-header sum");
    assert_eq!(&p[40..52], &TS);
}

#[test]
fn coalesce_consecutive_segments_v6_and_exact_multiple() {
    // No short segment and no PSH: the run stays open until flush, no PSH added.
    let segs = run(P::v6(1000), 3, 1000);
    let (pushed, frames) = coalesce(&built(&segs));
    assert_eq!(
        pushed,
        [Pushed::Started, Pushed::Appended, Pushed::Appended]
    );
    assert_eq!(frames, [merged(&segs)]);
    let f = &frames[0];
    assert_eq!(f.hdr.gso_type, VirtioNetHdr::GSO_TCPV6);
    assert_eq!((f.hdr.csum_start, f.hdr.gso_size), (40, 1000));
    assert_eq!(
        usize::from(be16(&f.pkt, 4)),
        32 + 3000,
        "IPv6 payload length"
    );
    assert_eq!(f.pkt[53], ACK);
}

#[test]
fn coalesce_single_packet_is_unchanged_with_zero_header() {
    let p = P::v4(500).build(Csum::Full);
    let (pushed, frames) = coalesce(std::slice::from_ref(&p));
    assert_eq!(pushed, [Pushed::Started]);
    assert_eq!(frames, [single(&p)]);
    let (_, frames) = coalesce(&[P::v6(1).build(Csum::Full)]);
    assert_eq!(frames[0].hdr, VirtioNetHdr::default());
}

#[test]
fn coalesce_sequence_gap_and_retransmission_split() {
    let segs = run(P::v4(1000), 2, 1000);
    let mut gap = segs[1].next(1000);
    gap.seq = gap.seq.wrapping_add(1);
    let mut dup = segs[1].clone(); // retransmission of the second segment
    dup.ident = segs[1].ident.wrapping_add(1);
    let mut pkts = built(&segs);
    pkts.push(gap.build(Csum::Full));
    pkts.push(dup.build(Csum::Full));
    let (pushed, frames) = coalesce(&pkts);
    assert_eq!(
        pushed,
        [
            Pushed::Started,
            Pushed::Appended,
            Pushed::Started,
            Pushed::Started
        ]
    );
    assert_eq!(frames, [merged(&segs), single(&pkts[2]), single(&pkts[3])]);
}

#[test]
fn coalesce_sequence_wraps() {
    let mut first = P::v4(1000);
    first.seq = u32::MAX - 1499;
    let segs = run(first, 4, 1000);
    assert_eq!(segs[2].seq, 500);
    let (_, frames) = coalesce(&built(&segs));
    assert_eq!(frames, [merged(&segs)]);
}

#[test]
fn coalesce_ipv4_id_rules() {
    // Without DF, ids must increment by one (0xffff -> 0 included).
    let mut first = P::v4(800);
    first.df = false;
    first.ident = 0xfffe;
    let segs = run(first, 3, 800);
    assert_eq!(segs[2].ident, 0);
    assert_eq!(coalesce(&built(&segs)).1, [merged(&segs)]);
    let mut bad = segs.clone();
    bad[2].ident = 5;
    let pk = built(&bad);
    assert_eq!(coalesce(&pk).1, [merged(&bad[..2]), single(&pk[2])]);
    // With DF the id does not matter (RFC 6864: it is meaningless on atomic datagrams).
    let mut df = segs.clone();
    for (s, id) in df.iter_mut().zip([9, 9, 3]) {
        s.df = true;
        s.ident = id;
    }
    assert_eq!(coalesce(&built(&df)).1, [merged(&df)]);
}

#[test]
fn coalesce_different_flows_are_not_merged() {
    let a = run(P::v4(1000), 3, 1000);
    let mut b0 = P::v4(1000);
    b0.sport = 40001;
    b0.seq = a[1].seq; // seq alone would fit
    let mut pk = built(&a[..2]);
    pk.push(b0.build(Csum::Full));
    pk.push(a[2].build(Csum::Full));
    // Only the newest run is open: an interleaved flow closes it.
    let (pushed, frames) = coalesce(&pk);
    assert_eq!(
        pushed,
        [
            Pushed::Started,
            Pushed::Appended,
            Pushed::Started,
            Pushed::Started
        ]
    );
    assert_eq!(frames, [merged(&a[..2]), single(&pk[2]), single(&pk[3])]);

    // Each field that names the flow, changed on the second segment alone.
    let tweaks: Vec<(&str, fn(&mut P))> = vec![
        ("src addr", |p| p.src4[3] ^= 1),
        ("dst addr", |p| p.dst4[0] ^= 1),
        ("src port", |p| p.sport ^= 1),
        ("dst port", |p| p.dport ^= 1),
    ];
    for (what, f) in tweaks {
        let mut s = run(P::v4(1000), 2, 1000);
        f(&mut s[1]);
        let pk = built(&s);
        assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])], "{what}");
    }
    let mut s = run(P::v6(1000), 2, 1000);
    s[1].dst6[15] = 9;
    let pk = built(&s);
    assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])], "v6 dst");
    // IPv4 then IPv6.
    let pk = vec![
        P::v4(1000).build(Csum::Full),
        P::v6(1000).next(1000).build(Csum::Full),
    ];
    assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])], "family");
}

#[test]
fn coalesce_differing_header_fields_are_not_merged() {
    let tweaks: Vec<(&str, bool, fn(&mut P))> = vec![
        ("ttl", false, |p| p.ttl -= 1),
        ("tos/ecn", false, |p| p.tos = 3),
        ("df", false, |p| p.df = false),
        ("hop limit", true, |p| p.ttl -= 1),
        ("traffic class", true, |p| p.tclass = 1),
        ("flow label", true, |p| p.flow ^= 1),
        ("ack", false, |p| p.ack += 1),
        ("window", false, |p| p.window += 1),
        ("ece", false, |p| p.flags |= ECE),
        ("tsval", false, |p| p.tcp_opts[7] += 1),
        ("tsecr", true, |p| p.tcp_opts[11] += 1),
        ("options length", false, |p| p.tcp_opts.clear()),
        ("options kind", true, |p| p.tcp_opts[0] = 0), // EOL instead of NOP
    ];
    for (what, v6, f) in tweaks {
        let first = if v6 { P::v6(1000) } else { P::v4(1000) };
        let mut s = run(first, 3, 1000);
        f(&mut s[1]);
        f(&mut s[2]);
        let pk = built(&s);
        // The changed segments start their own run.
        assert_eq!(coalesce(&pk).1, [single(&pk[0]), merged(&s[1..])], "{what}");
    }
    // Same TCP options on every segment merge (timestamps kept once in the head).
    let s = run(P::v6(1000), 2, 1000);
    assert_eq!(coalesce(&built(&s)).1, [merged(&s)]);
}

#[test]
fn coalesce_psh_ends_a_run() {
    let mut s = run(P::v4(1000), 4, 1000);
    s[1].flags |= PSH;
    let pk = built(&s);
    let (pushed, frames) = coalesce(&pk);
    assert_eq!(
        pushed,
        [
            Pushed::Started,
            Pushed::Appended,
            Pushed::Started,
            Pushed::Appended
        ]
    );
    assert_eq!(frames, [merged(&s[..2]), merged(&s[2..])]);
    assert_eq!(
        frames[0].pkt[33],
        ACK | PSH,
        "PSH moves onto the super-packet"
    );
    assert_eq!(frames[1].pkt[33], ACK);

    // A PSH segment cannot start a run: it goes out alone.
    let mut s = run(P::v4(1000), 2, 1000);
    s[0].flags |= PSH;
    let pk = built(&s);
    let (pushed, frames) = coalesce(&pk);
    assert_eq!(pushed, [Pushed::PassedThrough, Pushed::Started]);
    assert_eq!(frames, [single(&pk[0]), single(&pk[1])]);
}

#[test]
fn coalesce_fin_syn_rst_urg_pass_through() {
    for flag in [FIN, SYN, RST, URG] {
        let mut s = run(P::v4(1000), 5, 1000);
        s[2].flags |= flag;
        if flag == URG {
            s[2].urgent = 10;
        }
        let pk = built(&s);
        let (pushed, frames) = coalesce(&pk);
        assert_eq!(
            pushed,
            [
                Pushed::Started,
                Pushed::Appended,
                Pushed::PassedThrough,
                Pushed::Started,
                Pushed::Appended
            ],
            "flag {flag:#x}"
        );
        assert_eq!(
            frames,
            [merged(&s[..2]), single(&pk[2]), merged(&s[3..])],
            "flag {flag:#x}"
        );
    }
}

#[test]
fn coalesce_cwr_only_on_the_first_segment() {
    let mut s = run(P::v4(1000), 3, 1000);
    s[0].flags |= CWR;
    let (_, frames) = coalesce(&built(&s));
    assert_eq!(frames, [merged(&s)]);
    assert_eq!(
        frames[0].hdr.gso_type,
        VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_ECN
    );
    assert_eq!(frames[0].pkt[33], ACK | CWR);
    // CWR on a later segment starts a new run (which has the ECN bit).
    let mut s = run(P::v6(1000), 4, 1000);
    s[2].flags |= CWR;
    let (_, frames) = coalesce(&built(&s));
    assert_eq!(frames, [merged(&s[..2]), merged(&s[2..])]);
    assert_eq!(frames[0].hdr.gso_type, VirtioNetHdr::GSO_TCPV6);
    assert_eq!(
        frames[1].hdr.gso_type,
        VirtioNetHdr::GSO_TCPV6 | VirtioNetHdr::GSO_ECN
    );
}

#[test]
fn coalesce_short_segment_ends_a_run_and_longer_is_refused() {
    let mut s = run(P::v4(1000), 2, 1000);
    let short = s[1].next(400);
    s.push(short);
    let after = s[2].next(1000);
    s.push(after);
    let pk = built(&s);
    let (pushed, frames) = coalesce(&pk);
    assert_eq!(
        pushed,
        [
            Pushed::Started,
            Pushed::Appended,
            Pushed::Appended,
            Pushed::Started
        ]
    );
    assert_eq!(frames, [merged(&s[..3]), single(&pk[3])]);
    assert_eq!(frames[0].hdr.gso_size, 1000);

    // A first segment shorter than the next: the longer one cannot join (gso_size is the
    // first segment's payload).
    let s = run(P::v4(400), 2, 1000);
    let pk = built(&s);
    assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])]);
}

#[test]
fn coalesce_pure_acks_and_non_tcp_pass_through() {
    let s = run(P::v4(1000), 2, 1000);
    let mut ack = s[1].next(0);
    ack.payload.clear();
    let mut udp = P::v4(30).build(Csum::Full);
    udp[9] = 17;
    let junk = vec![0x00, 1, 2];
    let mut pk = built(&s);
    pk.push(ack.build(Csum::Full));
    pk.push(udp);
    pk.push(junk);
    pk.push(vec![]);
    let (pushed, frames) = coalesce(&pk);
    assert_eq!(pushed[2..], [Pushed::PassedThrough; 4]);
    assert_eq!(
        frames,
        [
            merged(&s),
            single(&pk[2]),
            single(&pk[3]),
            single(&pk[4]),
            single(&pk[5])
        ]
    );
}

#[test]
fn coalesce_bad_checksums_pass_through_unchanged() {
    for v6 in [false, true] {
        let first = if v6 { P::v6(1000) } else { P::v4(1000) };
        let s = run(first, 3, 1000);
        let mut pk = built(&s);
        let at = s[1].ip_hdr_len() + 16;
        pk[1][at] ^= 0x40; // TCP checksum
        let (pushed, frames) = coalesce(&pk);
        assert_eq!(pushed[1], Pushed::PassedThrough);
        assert_eq!(frames, [single(&pk[0]), single(&pk[1]), single(&pk[2])]);
        // A corrupt first segment does not start a run either.
        let mut pk = built(&s);
        let last = pk[0].len() - 1;
        pk[0][last] ^= 1; // payload byte
        let (pushed, frames) = coalesce(&pk);
        assert_eq!(pushed[0], Pushed::PassedThrough);
        assert_eq!(frames, [single(&pk[0]), merged(&s[1..])]);
    }
    let s = run(P::v4(1000), 2, 1000);
    let mut pk = built(&s);
    pk[1][11] ^= 1; // IPv4 header checksum
    assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])]);
}

#[test]
fn coalesce_leaves_ipv4_options_ipv6_extensions_and_trailers_alone() {
    let mut s = run(P::v4(1000), 2, 1000);
    for p in &mut s {
        p.ip_opts = vec![1, 1, 1, 0];
    }
    let pk = built(&s);
    assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])]);

    let mut s = run(P::v6(1000), 2, 1000);
    for p in &mut s {
        p.ext = vec![(DEST_OPTS, PADN_BODY.to_vec())];
    }
    let pk = built(&s);
    assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])]);

    // Bytes past the IP length: not a whole packet, passed through whole.
    let s = run(P::v4(1000), 2, 1000);
    let mut pk = built(&s);
    pk[1].push(0);
    assert_eq!(coalesce(&pk).1, [single(&pk[0]), single(&pk[1])]);
}

#[test]
fn coalesce_stops_at_the_64k_bound() {
    // 52 + 45 * 1448 = 65212 <= 65535; a 46th segment would pass it.
    let s = run(P::v4(1448), 47, 1448);
    let (pushed, frames) = coalesce(&built(&s));
    assert_eq!(pushed[45], Pushed::Started);
    assert_eq!(frames, [merged(&s[..45]), merged(&s[45..])]);
    assert_eq!(usize::from(be16(&frames[0].pkt, 2)), 52 + 45 * 1448);
    assert!(frames[0].pkt.len() <= MAX_SUPER_PACKET);
    // IPv6: the same bound on the whole packet.
    let s = run(P::v6(1448), 46, 1448);
    let (_, frames) = coalesce(&built(&s));
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f.pkt.len() <= MAX_SUPER_PACKET));
}

#[test]
fn coalesce_frames_appear_after_flush_and_ranges_agree() {
    let s = run(P::v4(1000), 3, 1000);
    let pk = built(&s);
    let mut c = Coalescer::new(vec![0u8; 10_000]);
    assert!(c.is_empty());
    c.push(&pk[0]).unwrap();
    c.push(&pk[1]).unwrap();
    assert_eq!(c.frames().count(), 0, "the open run is not a frame yet");
    assert_eq!(c.len(), 1);
    c.flush();
    c.flush(); // idempotent
    assert_eq!(c.frames().count(), 1);
    // After a flush the run is closed: the next segment starts a new one.
    assert_eq!(c.push(&pk[2]).unwrap(), Pushed::Started);
    c.flush();
    let frames: Vec<Vec<u8>> = c.frames().map(<[u8]>::to_vec).collect();
    let ranges: Vec<_> = c.frame_ranges().collect();
    let arena = c.into_inner();
    assert_eq!(
        ranges
            .iter()
            .map(|r| arena[r.clone()].to_vec())
            .collect::<Vec<_>>(),
        frames
    );
    assert_eq!(parse_frame(&frames[0]), merged(&s[..2]));
    assert_eq!(parse_frame(&frames[1]), single(&pk[2]));
}

#[test]
fn coalesce_arena_and_frame_table_full() {
    let s = run(P::v4(1000), 3, 1000);
    let pk = built(&s);
    // Room for the first frame and half of the second segment's payload.
    let mut c = Coalescer::new(vec![0u8; VNET_HDR_LEN + pk[0].len() + 500]);
    assert_eq!(c.push(&pk[0]).unwrap(), Pushed::Started);
    assert_eq!(c.push(&pk[1]), Err(Error::BufferTooSmall));
    // Not taken; flush, drain, clear, push again.
    c.flush();
    assert_eq!(
        c.frames().map(parse_frame).collect::<Vec<_>>(),
        [single(&pk[0])]
    );
    c.clear();
    assert!(c.is_empty());
    assert_eq!(c.push(&pk[1]).unwrap(), Pushed::Started);
    c.flush();
    assert_eq!(
        c.frames().map(parse_frame).collect::<Vec<_>>(),
        [single(&pk[1])]
    );
    // An empty arena takes nothing, without panicking.
    let mut c = Coalescer::new(Vec::new());
    assert_eq!(c.push(&pk[0]), Err(Error::BufferTooSmall));
    assert_eq!(c.push(&[]), Err(Error::BufferTooSmall));

    // MAX_FRAMES frames, then BufferTooSmall.
    let mut c = Coalescer::new(vec![0u8; 1 << 20]);
    let ack = {
        let mut a = P::v4(0);
        a.payload.clear();
        a.build(Csum::Full)
    };
    for _ in 0..MAX_FRAMES {
        assert_eq!(c.push(&ack).unwrap(), Pushed::PassedThrough);
    }
    assert_eq!(c.push(&ack), Err(Error::BufferTooSmall));
    assert_eq!(c.frames().count(), MAX_FRAMES);
}

#[test]
fn coalesced_frame_segments_back_to_its_segments() {
    // What the kernel does with our TUN write: segmenting the frame gives the wire packets
    // back exactly (ids increment, checksums full).
    for v6 in [false, true] {
        let first = if v6 { P::v6(1300) } else { P::v4(1300) };
        let mut s = run(first, 5, 1300);
        let last = s[4].next(7);
        s.push(last);
        s[0].flags |= CWR;
        s[5].flags |= PSH;
        let pk = built(&s);
        let (_, frames) = coalesce(&pk);
        assert_eq!(frames.len(), 1);
        let (_, back) = seg(&frames[0].hdr, &frames[0].pkt);
        assert_eq!(back, pk);
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

/// A random super-packet the coalescer can rebuild: no IPv4 options or IPv6 extension
/// headers, no FIN/SYN/RST/URG, at least one byte of payload.
fn arb_super() -> impl Strategy<Value = (P, u16)> {
    (
        any::<bool>(),
        1usize..12_000,
        1u16..=1500,
        any::<u32>(),
        any::<u16>(),
        any::<bool>(),
        prop::sample::select(vec![0u8, ACK, ACK | PSH, ACK | CWR, ACK | PSH | CWR | ECE]),
        0usize..=10,
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(v6, len, mss, seq, ident, df, flags, opt_words, tos, ack)| {
                let mut p = if v6 { P::v6(len) } else { P::v4(len) };
                p.seq = seq;
                p.ack = ack;
                p.ident = ident;
                p.df = df;
                p.flags = flags;
                p.tos = tos;
                p.tclass = tos;
                p.tcp_opts = (0..opt_words * 4)
                    .map(|i| if i % 4 == 3 { 0 } else { 1 })
                    .collect();
                p.payload = pattern(len, seq);
                (p, mss.max(len.div_ceil(128) as u16))
            },
        )
}

/// A packet stream for the coalescer: segments of a few flows with random departures from
/// the rules, checksums valid unless `corrupt`.
#[derive(Debug, Clone)]
struct Step {
    flow: u8,
    len: usize,
    seq_skip: u32,
    id_skip: u16,
    flags: u8,
    ttl_drop: u8,
    tsval: u8,
    corrupt: Option<(usize, u8)>,
}

fn arb_step() -> impl Strategy<Value = Step> {
    (
        0u8..3,
        prop::sample::select(vec![0usize, 1, 100, 999, 1000, 1000, 1000, 1000]),
        prop::sample::select(vec![0u32, 0, 0, 0, 1, u32::MAX]),
        prop::sample::select(vec![0u16, 0, 0, 1]),
        prop::sample::select(vec![
            ACK,
            ACK,
            ACK,
            ACK,
            ACK | PSH,
            ACK | CWR,
            ACK | FIN,
            ACK | ECE,
            SYN,
            RST | ACK,
            URG,
        ]),
        prop::sample::select(vec![0u8, 0, 0, 1]),
        prop::sample::select(vec![0u8, 0, 0, 1]),
        prop::option::weighted(0.1, (any::<usize>(), 1u8..=255)),
    )
        .prop_map(
            |(flow, len, seq_skip, id_skip, flags, ttl_drop, tsval, corrupt)| Step {
                flow,
                len,
                seq_skip,
                id_skip,
                flags,
                ttl_drop,
                tsval,
                corrupt,
            },
        )
}

/// Zeroes what the coalescer may legitimately change in a wire packet it merged and the
/// kernel resegments: both checksums (verified separately), the urgent pointer (meaningless
/// without URG, which is never merged; Linux GRO does not compare it either) and, under DF,
/// the IPv4 id (RFC 6864).
fn normalise(pkt: &[u8]) -> Vec<u8> {
    let mut p = pkt.to_vec();
    let l4 = if p[0] >> 4 == 4 {
        p[10..12].fill(0);
        if p[6] & 0x40 != 0 {
            p[4..6].fill(0);
        }
        20
    } else {
        40
    };
    p[l4 + 16..l4 + 18].fill(0);
    p[l4 + 18..l4 + 20].fill(0);
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Segment a random super-packet, then coalesce the segments: the same super-packet
    /// (headers, payload, partial checksum) and the virtio header the kernel would give.
    #[test]
    fn segment_then_coalesce_round_trips((sup, mss) in arb_super()) {
        let hdr = sup.tso(mss);
        let input = sup.build(Csum::Partial);
        let (s, segs) = seg(&hdr, &input);
        let want = expected_segments(&sup, usize::from(mss));
        prop_assert_eq!(&segs, &want);
        for x in &segs {
            let r = read_verified(x);
            prop_assert!(r.payload.len() <= usize::from(mss));
            prop_assert_eq!(&r.tcp_opts, &sup.tcp_opts);
            check_segment(x);
        }
        let (_, frames) = coalesce(&segs);
        prop_assert_eq!(frames.len(), 1);
        let f = &frames[0];
        if s.count == 1 {
            prop_assert_eq!(f, &single(&segs[0]));
        } else {
            let mut back = f.hdr;
            back.gso_type &= !VirtioNetHdr::GSO_ECN;
            let mut h = hdr;
            h.gso_type &= !VirtioNetHdr::GSO_ECN;
            prop_assert_eq!(back, h);
            prop_assert_eq!(f.hdr.ecn(), sup.flags & CWR != 0);
            prop_assert_eq!(normalise(&f.pkt), normalise(&input));
            // The partial checksums are the same number (0 and 0xffff are one in one's
            // complement).
            let l4 = sup.ip_hdr_len();
            let (a, b) = (be16(&f.pkt, l4 + 16), be16(&input, l4 + 16));
            prop_assert!(a == b || (a | b == 0xffff && a & b == 0));
            prop_assert_eq!(&f.pkt[l4 + 18..l4 + 20], &input[l4 + 18..l4 + 20]);
            prop_assert_eq!(&f.pkt[..12], &input[..12]);
        }
    }

    /// Coalescing a stream with random departures from the rules loses and garbles
    /// nothing: segmenting every frame gives back the pushed packets in order (up to what
    /// [`normalise`] lets change), with valid checksums.
    #[test]
    fn coalesce_then_segment_gives_the_stream_back(
        v6 in any::<bool>(),
        steps in prop::collection::vec(arb_step(), 1..40),
    ) {
        let mut flows: Vec<P> = (0..3u16)
            .map(|i| {
                let mut p = if v6 { P::v6(0) } else { P::v4(0) };
                p.sport = 40000 + i;
                p.df = i != 1;
                p
            })
            .collect();
        let mut pkts = Vec::new();
        for st in &steps {
            let f = &mut flows[usize::from(st.flow)];
            let mut p = f.next(st.len);
            p.seq = p.seq.wrapping_add(st.seq_skip);
            p.ident = p.ident.wrapping_add(st.id_skip);
            p.flags = st.flags;
            p.ttl -= st.ttl_drop;
            p.tcp_opts[7] = p.tcp_opts[7].wrapping_add(st.tsval);
            *f = p.clone();
            let mut b = p.build(Csum::Full);
            if let Some((at, x)) = st.corrupt {
                let at = at % b.len();
                b[at] ^= x;
            }
            pkts.push(b);
        }
        let (_, frames) = coalesce(&pkts);
        prop_assert!(frames.len() <= pkts.len());
        let mut back = Vec::new();
        for f in &frames {
            if f.hdr == VirtioNetHdr::default() {
                back.push(f.pkt.clone());
                continue;
            }
            prop_assert!(f.hdr.needs_csum());
            prop_assert!(f.pkt.len() <= MAX_SUPER_PACKET);
            let (_, segs) = seg(&f.hdr, &f.pkt);
            prop_assert!(segs.len() >= 2);
            for x in &segs {
                read_verified(x);
            }
            back.extend(segs);
        }
        prop_assert_eq!(back.len(), pkts.len());
        for (got, want) in back.iter().zip(&pkts) {
            if got != want {
                prop_assert_eq!(normalise(got), normalise(want));
            }
        }
    }

    /// `segment` and `segmented_len` never panic on arbitrary bytes; whatever they accept
    /// segments into valid packets.
    #[test]
    fn segment_arbitrary_bytes_no_panic(
        vnet in any::<[u8; VNET_HDR_LEN]>(),
        kind in prop::sample::select(vec![0u8, 1, 4, 0x81, 3, 5, 0xff]),
        pkt in prop::collection::vec(any::<u8>(), 0..200),
        out_len in 0usize..4096,
    ) {
        let mut hdr = VirtioNetHdr::parse(&vnet).unwrap();
        if kind != 0xff {
            hdr.gso_type = kind;
        }
        hdr.gso_size %= 64;
        check_segment_total(&hdr, &pkt, out_len)?;
    }

    /// The same on a valid super-packet with a few bytes changed (header fields, lengths,
    /// offsets: the interesting inputs), and on a random virtio header for it.
    #[test]
    fn segment_mutated_super_packet_no_panic(
        (sup, mss) in arb_super(),
        ext in any::<bool>(),
        flips in prop::collection::vec((0usize..80, any::<u8>()), 0..4),
        hdr_flip in prop::option::of((0usize..VNET_HDR_LEN, any::<u8>())),
        cut in prop::option::of(any::<usize>()),
    ) {
        let mut sup = sup;
        if ext && sup.v6 {
            sup.ext = vec![(HOP_BY_HOP, PADN_BODY.to_vec()), (ROUTING, vec![0; 14])];
        }
        let mut pkt = sup.build(Csum::Partial);
        for (at, x) in flips {
            if let Some(b) = pkt.get_mut(at) {
                *b ^= x;
            }
        }
        if let Some(c) = cut {
            pkt.truncate(c % (pkt.len() + 1));
        }
        let mut vnet = [0u8; VNET_HDR_LEN];
        sup.tso(mss).emit(&mut vnet).unwrap();
        if let Some((at, x)) = hdr_flip {
            vnet[at] ^= x;
        }
        let hdr = VirtioNetHdr::parse(&vnet).unwrap();
        let need = segmented_len(&hdr, &pkt).unwrap_or(0);
        check_segment_total(&hdr, &pkt, need)?;
        check_segment_total(&hdr, &pkt, need.saturating_sub(1))?;
    }

    /// The coalescer never panics on arbitrary packets and arenas; frames stay in the arena
    /// and a zero-header frame is a pushed packet, unchanged.
    #[test]
    fn coalesce_arbitrary_bytes_no_panic(
        pkts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..20),
        arena in 0usize..1500,
        v4_tcp in any::<bool>(),
        udp in any::<bool>(),
    ) {
        let mut c = Coalescer::new(vec![0u8; arena]).udp(udp);
        for p in &pkts {
            let mut p = p.clone();
            if v4_tcp && p.len() >= 20 {
                // Make the random bytes look more like IPv4/TCP (or UDP).
                p[0] = 0x45;
                p[9] = if udp { 17 } else { 6 };
            }
            if c.push(&p).is_err() {
                c.flush();
                check_frames(&c, &pkts)?;
                c.clear();
                let _ = c.push(&p);
            }
        }
        c.flush();
        check_frames(&c, &pkts)?;
    }
}

/// Runs `segment` with `out_len` bytes of output; if it succeeds, checks the layout and that
/// every TSO segment is a valid IP/TCP packet.
fn check_segment_total(
    hdr: &VirtioNetHdr,
    pkt: &[u8],
    out_len: usize,
) -> Result<(), TestCaseError> {
    let mut out = vec![0u8; out_len];
    let len = segmented_len(hdr, pkt);
    let Ok(s) = segment(hdr, pkt, &mut out) else {
        return Ok(());
    };
    prop_assert_eq!(len, Ok(s.len));
    prop_assert!(s.len <= out_len && s.count >= 1);
    let ranges: Vec<_> = s.ranges().collect();
    prop_assert_eq!(ranges.len(), s.count);
    prop_assert_eq!(ranges.last().map(|r| r.end), Some(s.len));
    if hdr.gso() != Gso::None {
        for r in ranges {
            read_verified(&out[r]);
        }
    }
    Ok(())
}

fn check_frames<B: AsRef<[u8]> + AsMut<[u8]>>(
    c: &Coalescer<B>,
    pkts: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    for f in c.frames() {
        prop_assert!(f.len() >= VNET_HDR_LEN);
        let fr = parse_frame(f);
        if fr.hdr == VirtioNetHdr::default() {
            let known = pkts.iter().any(|p| {
                let looks_like = |proto: u8| {
                    let mut q = p.clone();
                    if q.len() >= 20 {
                        q[0] = 0x45;
                        q[9] = proto;
                    }
                    q == fr.pkt
                };
                *p == fr.pkt || looks_like(6) || looks_like(17)
            });
            prop_assert!(known, "a pass-through frame that is none of the inputs");
        }
    }
    Ok(())
}
