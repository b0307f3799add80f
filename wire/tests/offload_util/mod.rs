//! Reference packets for the offload tests, built with wire's `Repr` types and views.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::offload::VirtioNetHdr;
use wire::{checksum, ipv4, ipv6, tcp, IpProtocol};

/// TCP timestamps option (RFC 7323) padded with two NOPs: 12 bytes.
pub const TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

/// A TCP packet over IPv4 or IPv6.
#[derive(Debug, Clone)]
pub struct Spec {
    pub v6: bool,
    pub opts: Vec<u8>,
    pub payload: Vec<u8>,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub sport: u16,
}

impl Spec {
    pub fn new(v6: bool, payload_len: usize) -> Spec {
        Spec {
            v6,
            opts: TIMESTAMPS.to_vec(),
            payload: (0..payload_len).map(|i| (i * 31 + 7) as u8).collect(),
            seq: 0xffff_f000, // wraps within the first 64 KB
            ack: 0x1234_5678,
            flags: tcp::Flags::ACK.0 | tcp::Flags::PSH.0,
            ident: 0xfffe, // wraps after two segments
            dont_frag: true,
            sport: 40000,
        }
    }

    pub fn addrs(&self) -> (IpAddr, IpAddr) {
        if self.v6 {
            (
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
            )
        } else {
            (
                Ipv4Addr::new(198, 18, 0, 1).into(),
                Ipv4Addr::new(198, 18, 1, 2).into(),
            )
        }
    }

    pub fn l4(&self) -> usize {
        if self.v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        }
    }

    pub fn hdrs(&self) -> usize {
        self.l4() + tcp::HEADER_LEN + self.opts.len()
    }

    /// The packet; with `partial` the TCP checksum field holds the pseudo-header sum only (as
    /// the kernel hands out `NEEDS_CSUM` packets), otherwise the full checksum.
    pub fn build(&self, partial: bool) -> Vec<u8> {
        let tcp_len = tcp::HEADER_LEN + self.opts.len() + self.payload.len();
        let l4 = self.l4();
        let mut buf = vec![0u8; l4 + tcp_len];
        let (src, dst) = self.addrs();
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let r = ipv4::Repr {
                    src_addr: s,
                    dst_addr: d,
                    protocol: IpProtocol::Tcp,
                    payload_len: tcp_len,
                    ttl: 64,
                    ident: self.ident,
                    dont_frag: self.dont_frag,
                    dscp_ecn: 0,
                };
                r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
                    .unwrap();
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let r = ipv6::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp_len,
                    hop_limit: 64,
                };
                r.emit(&mut ipv6::Packet::new_unchecked(&mut buf[..]))
                    .unwrap();
            }
            _ => unreachable!(),
        }
        let mut t = tcp::Packet::new_unchecked(&mut buf[l4..]);
        t.set_src_port(self.sport);
        t.set_dst_port(5201);
        t.set_seq_number(self.seq);
        t.set_ack_number(self.ack);
        t.set_header_len(tcp::HEADER_LEN + self.opts.len());
        t.set_flags(tcp::Flags(self.flags));
        t.set_window_len(502);
        t.set_urgent_at(0);
        t.options_mut().copy_from_slice(&self.opts);
        t.payload_mut().copy_from_slice(&self.payload);
        if partial {
            let ph = checksum::pseudo_header(src, dst, IpProtocol::Tcp, tcp_len as u32);
            t.set_checksum(ph);
        } else {
            t.fill_checksum(src, dst);
        }
        buf
    }

    /// The virtio header the kernel gives a TSO read of this packet.
    pub fn tso_hdr(&self, mss: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: if self.v6 {
                VirtioNetHdr::GSO_TCPV6
            } else {
                VirtioNetHdr::GSO_TCPV4
            },
            hdr_len: self.hdrs() as u16,
            gso_size: mss,
            csum_start: self.l4() as u16,
            csum_offset: 16,
        }
    }
}

/// What a segment says about itself, after full verification (panics on any defect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub ident: Option<u16>,
    pub seq: u32,
    pub flags: u8,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Checks an IP/TCP packet completely: lengths, IPv4 header checksum (full recompute and
/// `verify_checksum`), TCP checksum (full recompute and `verify_checksum`).
pub fn check_segment(pkt: &[u8]) -> Seg {
    let (src, dst, l4, ident): (IpAddr, IpAddr, usize, Option<u16>) = match pkt[0] >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(pkt).unwrap();
            assert_eq!(usize::from(ip.total_len()), pkt.len());
            assert!(ip.verify_checksum());
            let mut copy = ip.header().to_vec();
            let field = u16::from_be_bytes([copy[10], copy[11]]);
            copy[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(checksum::checksum(&copy), field, "ipv4 header checksum");
            ipv4::Repr::parse(&ip).unwrap();
            (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.header_len(),
                Some(ip.ident()),
            )
        }
        6 => {
            let ip = ipv6::Packet::new_checked(pkt).unwrap();
            assert_eq!(ip.total_len(), pkt.len());
            let (proto, off) = ip.transport().unwrap();
            assert_eq!(proto, IpProtocol::Tcp);
            (ip.src_addr().into(), ip.dst_addr().into(), off, None)
        }
        v => panic!("not IP: version {v}"),
    };
    let t = tcp::Packet::new_checked(&pkt[l4..]).unwrap();
    assert!(t.verify_checksum(src, dst), "tcp verify_checksum");
    let mut copy = pkt[l4..].to_vec();
    let field = u16::from_be_bytes([copy[16], copy[17]]);
    copy[16..18].copy_from_slice(&[0, 0]);
    let ph = checksum::pseudo_header(src, dst, IpProtocol::Tcp, copy.len() as u32);
    assert_eq!(
        !checksum::combine(&[ph, checksum::sum(&copy)]),
        field,
        "tcp full recompute"
    );
    tcp::Repr::parse(&t, src, dst).unwrap();
    Seg {
        ident,
        seq: t.seq_number(),
        flags: t.flags().0,
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
    }
}
