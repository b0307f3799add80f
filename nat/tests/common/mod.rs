//! Packet builders and checksum verifiers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;

pub const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 100);
pub const PUBLIC2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 101);
pub const H1: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub const H2: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
pub const CH: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
pub const CH2: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);

pub const UDP: u8 = 17;
pub const TCP: u8 = 6;
pub const ICMP: u8 = 1;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

/// RFC 1071 sum, independent of the crate's incremental code.
pub fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = it.remainder() {
        acc += u64::from(u16::from_be_bytes([*b, 0]));
    }
    acc
}

pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

pub fn checksum(data: &[u8]) -> u16 {
    !fold(ones_sum(data, 0))
}

pub fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u64 {
    let mut a = ones_sum(&src.octets(), 0);
    a = ones_sum(&dst.octets(), a);
    a + u64::from(proto) + len as u64
}

pub fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    !fold(ones_sum(seg, pseudo(src, dst, proto, seg.len())))
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_frag(src, dst, proto, 0x1234, false, 0, payload)
}

pub fn ipv4_frag(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    mf: bool,
    offset8: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    let ff = (u16::from(mf) << 13) | offset8;
    p[6..8].copy_from_slice(&ff.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..].copy_from_slice(payload);
    p
}

pub fn udp_seg(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    data: &[u8],
    csum: bool,
) -> Vec<u8> {
    let len = 8 + data.len();
    let mut s = vec![0u8; len];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    s[8..].copy_from_slice(data);
    if csum {
        let mut c = l4_checksum(src, dst, UDP, &s);
        if c == 0 {
            c = 0xffff;
        }
        s[6..8].copy_from_slice(&c.to_be_bytes());
    }
    s
}

pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    ipv4(
        src,
        dst,
        UDP,
        &udp_seg(src, dst, sport, dport, b"hello upmt", true),
    )
}

pub fn tcp_seg(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut s = vec![0u8; 20 + data.len()];
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s[4..8].copy_from_slice(&1000u32.to_be_bytes());
    s[12] = 5 << 4;
    s[13] = flags;
    s[14..16].copy_from_slice(&65535u16.to_be_bytes());
    s[20..].copy_from_slice(data);
    let c = l4_checksum(src, dst, TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    ipv4(
        src,
        dst,
        TCP,
        &tcp_seg(src, dst, sport, dport, flags, b"data"),
    )
}

pub fn icmp_msg(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn echo(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    ipv4(src, dst, ICMP, &icmp_msg(ty, 0, rest, b"pingpingping"))
}

/// An ICMP error from `from` to `to` quoting `quoted` (truncated to `quote_len` bytes).
pub fn icmp_error(
    from: Ipv4Addr,
    to: Ipv4Addr,
    ty: u8,
    code: u8,
    quoted: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    let q = &quoted[..quote_len.min(quoted.len())];
    ipv4(from, to, ICMP, &icmp_msg(ty, code, [0, 0, 0x05, 0xdc], q))
}

pub fn src(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[12], p[13], p[14], p[15])
}
pub fn dst(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[16], p[17], p[18], p[19])
}
pub fn sport(p: &[u8]) -> u16 {
    let h = usize::from(p[0] & 0xf) * 4;
    u16::from_be_bytes([p[h], p[h + 1]])
}
pub fn dport(p: &[u8]) -> u16 {
    let h = usize::from(p[0] & 0xf) * 4;
    u16::from_be_bytes([p[h + 2], p[h + 3]])
}
pub fn icmp_id(p: &[u8]) -> u16 {
    let h = usize::from(p[0] & 0xf) * 4;
    u16::from_be_bytes([p[h + 4], p[h + 5]])
}

/// Verifies the IPv4 header checksum and, for a whole datagram, the transport checksum,
/// by full recompute. Returns a description of the first failure.
pub fn verify(p: &[u8]) -> Result<(), String> {
    let h = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if fold(ones_sum(&p[..h], 0)) != 0xffff {
        return Err("ip header checksum".into());
    }
    let ff = u16::from_be_bytes([p[6], p[7]]);
    if ff & 0x3fff != 0 {
        return Ok(()); // a fragment: the transport checksum covers the whole datagram
    }
    let seg = &p[h..total];
    let (s, d) = (src(p), dst(p));
    let ok = match p[9] {
        UDP => {
            let c = u16::from_be_bytes([seg[6], seg[7]]);
            c == 0 || fold(ones_sum(seg, pseudo(s, d, UDP, seg.len()))) == 0xffff
        }
        TCP => fold(ones_sum(seg, pseudo(s, d, TCP, seg.len()))) == 0xffff,
        ICMP => fold(ones_sum(seg, 0)) == 0xffff,
        _ => true,
    };
    if !ok {
        return Err(format!("transport checksum (proto {})", p[9]));
    }
    Ok(())
}
