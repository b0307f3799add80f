//! TUN offloads in user space, sans-IO: the `virtio_net_hdr` that precedes every packet on a
//! TUN opened with `IFF_VNET_HDR`, TCP and UDP segmentation of the super-packets the kernel
//! hands us (TSO, USO, for one `sendmsg` with `UDP_SEGMENT` into the tunnel) and TCP (and,
//! optionally, UDP) coalescing of the packets that come out of the tunnel (GRO, for one TUN
//! write).
//!
//! No I/O, no allocation: every function writes into a buffer the caller provides. Nothing
//! here panics on any input; malformed packets give a typed [`Error`] (segmentation) or pass
//! through untouched (coalescing).
//!
//! The data plane wiring (reading/writing the TUN, `UDP_SEGMENT`/`UDP_GRO`, fallbacks) is not
//! here: see issue 9.
//!
//! ## Segmentation ([`segment`])
//!
//! Output layout contract: segment `i` starts at `i * stride` in the output buffer, every
//! segment except the last is exactly `stride` bytes (IP header + TCP or UDP header +
//! `gso_size` payload bytes), the last is `stride` bytes or fewer, and the segments are back
//! to back, so `out[..segments.len]` can go out in one `sendmsg` with `UDP_SEGMENT = stride`
//! (in groups of at most the kernel's 64/128-segment limit: any prefix of `k * stride` bytes
//! is itself a valid batch). Each segment is a complete IP packet with a valid IPv4 header
//! checksum and a full TCP or UDP checksum.
//!
//! ## Coalescing ([`Coalescer`])
//!
//! Packets are pushed one at a time; consecutive in-order segments of one TCP flow are merged
//! into a super-packet with a `NEEDS_CSUM` + `GSO_TCPV4/6` header (with [`Coalescer::udp`],
//! same-size datagrams of one UDP flow into a `GSO_UDP_L4` one), anything else is copied
//! through with a `GSO_NONE` header. Each output frame is `[virtio_net_hdr][IP packet]`,
//! ready for one `write` to the TUN.

use core::net::IpAddr;

use crate::checksum;
use crate::{ipv4, ipv6, tcp, Error, IpProtocol, Result};

/// Size of `struct virtio_net_hdr` (without `num_buffers`), the TUN's default vnet header.
pub const VNET_HDR_LEN: usize = 10;

/// Largest super-packet the [`Coalescer`] builds (IPv4 total length / the 64 KB GSO bound).
pub const MAX_SUPER_PACKET: usize = 65_535;

/// Most frames one [`Coalescer`] batch holds before [`Coalescer::push`] asks for a drain.
pub const MAX_FRAMES: usize = 128;

/// Most datagrams the coalescer merges into one UDP super-packet (the kernel refuses more
/// than 128 segments per UDP GSO packet; 64 keeps older kernels' limit).
pub const MAX_UDP_SEGMENTS: usize = 64;

/// Offset of the checksum field in the TCP header (`csum_offset` for TCP).
const TCP_CSUM_OFFSET: usize = 16;

// linux/virtio_net.h (virtio 1.0 section 5.1.6):
//   struct virtio_net_hdr {
//   #define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
//   #define VIRTIO_NET_HDR_F_DATA_VALID 2
//       __u8 flags;
//   #define VIRTIO_NET_HDR_GSO_NONE 0 / TCPV4 1 / UDP 3 / TCPV6 4 / UDP_L4 5 / ECN 0x80
//       __u8 gso_type;
//       __virtio16 hdr_len; gso_size; csum_start; csum_offset;
//   };
// "__virtio16" is little-endian for virtio 1.0 devices; a TUN uses the host's byte order
// unless TUNSETVNETLE/BE says otherwise, which is little-endian on x86 and arm64. On a
// big-endian host the caller must issue TUNSETVNETLE.
/// The 10-byte `struct virtio_net_hdr` (linux/virtio_net.h), read and written little-endian.
///
/// The fields are kept raw (a value this crate does not know survives a parse/emit round
/// trip); [`gso`](Self::gso) gives the typed GSO kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*` bits ([`Self::F_NEEDS_CSUM`], [`Self::F_DATA_VALID`]).
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` value, possibly with [`Self::GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (a hint; this module computes header lengths itself).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    /// Where checksumming starts (the transport header), from the start of the packet.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start` (16 for TCP, 6 for UDP).
    pub csum_offset: u16,
}

/// The GSO kind of a [`VirtioNetHdr`], without the ECN bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gso {
    /// `VIRTIO_NET_HDR_GSO_NONE`: a single packet.
    None,
    /// `VIRTIO_NET_HDR_GSO_TCPV4`: TCP over IPv4 super-packet.
    TcpV4,
    /// `VIRTIO_NET_HDR_GSO_UDP`: UFO (IPv4 fragmentation of a big UDP datagram).
    Udp,
    /// `VIRTIO_NET_HDR_GSO_TCPV6`: TCP over IPv6 super-packet.
    TcpV6,
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`: USO (UDP segmentation).
    UdpL4,
    /// A value linux/virtio_net.h does not define.
    Unknown(u8),
}

impl VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is partial (holds only the
    /// pseudo-header sum) and must be completed from `csum_start` to the end.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
    pub const F_DATA_VALID: u8 = 2;
    /// `VIRTIO_NET_HDR_GSO_NONE`.
    pub const GSO_NONE: u8 = 0;
    /// `VIRTIO_NET_HDR_GSO_TCPV4`.
    pub const GSO_TCPV4: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_UDP`.
    pub const GSO_UDP: u8 = 3;
    /// `VIRTIO_NET_HDR_GSO_TCPV6`.
    pub const GSO_TCPV6: u8 = 4;
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`.
    pub const GSO_UDP_L4: u8 = 5;
    /// `VIRTIO_NET_HDR_GSO_ECN`: the TCP super-packet has CWR set (on its first segment).
    pub const GSO_ECN: u8 = 0x80;

    /// Reads a header from the first [`VNET_HDR_LEN`] bytes of `buf` (the rest is ignored).
    pub fn parse(buf: &[u8]) -> Result<VirtioNetHdr> {
        let b: &[u8; VNET_HDR_LEN] = buf
            .get(..VNET_HDR_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(Error::Truncated)?;
        Ok(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_le_bytes([b[2], b[3]]),
            gso_size: u16::from_le_bytes([b[4], b[5]]),
            csum_start: u16::from_le_bytes([b[6], b[7]]),
            csum_offset: u16::from_le_bytes([b[8], b[9]]),
        })
    }

    /// Splits a TUN read (`[virtio_net_hdr][packet]`) into the header and the packet.
    pub fn split(buf: &[u8]) -> Result<(VirtioNetHdr, &[u8])> {
        let hdr = VirtioNetHdr::parse(buf)?;
        Ok((hdr, buf.get(VNET_HDR_LEN..).unwrap_or(&[])))
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let b = buf.get_mut(..VNET_HDR_LEN).ok_or(Error::BufferTooSmall)?;
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        Ok(())
    }

    /// The GSO kind (ECN bit masked off).
    pub fn gso(&self) -> Gso {
        match self.gso_type & !Self::GSO_ECN {
            Self::GSO_NONE => Gso::None,
            Self::GSO_TCPV4 => Gso::TcpV4,
            Self::GSO_UDP => Gso::Udp,
            Self::GSO_TCPV6 => Gso::TcpV6,
            Self::GSO_UDP_L4 => Gso::UdpL4,
            other => Gso::Unknown(other),
        }
    }

    /// True if [`Self::F_NEEDS_CSUM`] is set.
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }

    /// True if [`Self::GSO_ECN`] is set.
    pub fn ecn(&self) -> bool {
        self.gso_type & Self::GSO_ECN != 0
    }
}

// Linux skb_checksum_help(): "csum = skb_checksum(skb, offset, skb->len - offset, 0); ...
// *(__sum16 *)(skb->data + offset) = csum_fold(csum) ?: CSUM_MANGLED_0;" The field already
// holds the (uncomplemented) pseudo-header sum, so summing from csum_start over it completes
// the checksum. A result of 0 goes out as 0xffff (the same number in one's complement; needed
// for UDP, RFC 768).
/// Completes a partial checksum in place (`NEEDS_CSUM` without GSO): sums `packet` from
/// `csum_start` to its end (the checksum field holds the pseudo-header sum) and writes the
/// complement at `csum_start + csum_offset`. Does nothing without `NEEDS_CSUM`.
///
/// `packet` must be exactly the packet (no trailing bytes). Errors with
/// [`Error::Malformed`] if the checksum field lies outside the packet.
pub fn complete_checksum(hdr: &VirtioNetHdr, packet: &mut [u8]) -> Result<()> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > packet.len() {
        return Err(Error::Malformed("virtio: checksum field beyond the packet"));
    }
    let covered = packet.get(start..).unwrap_or(&[]);
    let c = checksum::udp_nonzero(!checksum::sum(covered));
    if let Some(f) = packet.get_mut(field..field + 2) {
        f.copy_from_slice(&c.to_be_bytes());
    }
    Ok(())
}

/// Where [`segment`] put its segments (see the module docs for the layout contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segments {
    /// Number of segments (at least 1).
    pub count: usize,
    /// Distance between segment starts, and the size of every segment but the last: the
    /// `UDP_SEGMENT` value. For a `GSO_NONE` packet, the packet's length.
    pub stride: usize,
    /// Total bytes written (`(count - 1) * stride + ` the last segment's length).
    pub len: usize,
}

impl Segments {
    /// Byte range of each segment in the output buffer.
    pub fn ranges(&self) -> impl Iterator<Item = core::ops::Range<usize>> + '_ {
        (0..self.count).map(move |i| {
            let start = i * self.stride;
            start..(start + self.stride).min(self.len)
        })
    }
}

/// Facts about a TCP (TSO) or UDP (USO) super-packet, validated.
#[derive(Debug, Clone, Copy)]
struct Tso {
    v4: bool,
    /// UDP segmentation (`GSO_UDP_L4`) rather than TCP.
    udp: bool,
    /// Offset of the TCP/UDP header.
    l4: usize,
    /// IP headers + TCP/UDP header.
    hdrs: usize,
    /// End of the IP packet (its stated length).
    end: usize,
    mss: usize,
}

impl Tso {
    fn payload_len(&self) -> usize {
        self.end - self.hdrs
    }

    fn count(&self) -> usize {
        self.payload_len().div_ceil(self.mss).max(1)
    }

    fn stride(&self) -> usize {
        self.hdrs + self.mss
    }

    fn out_len(&self) -> usize {
        let last = self.payload_len() - (self.count() - 1) * self.mss;
        (self.count() - 1) * self.stride() + self.hdrs + last
    }
}

/// Offset of the checksum field in the UDP header.
const UDP_CSUM_OFFSET: usize = 6;

fn parse_tso(hdr: &VirtioNetHdr, packet: &[u8]) -> Result<Tso> {
    let want = match hdr.gso() {
        Gso::TcpV4 | Gso::TcpV6 => IpProtocol::Tcp,
        Gso::UdpL4 => IpProtocol::Udp,
        Gso::None => return Err(Error::Malformed("virtio: not a GSO packet")),
        Gso::Udp => return Err(Error::Unsupported("virtio: UFO (IP fragmentation)")),
        Gso::Unknown(_) => return Err(Error::Malformed("virtio: unknown gso_type")),
    };
    let udp = want == IpProtocol::Udp;
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(Error::Malformed("virtio: gso_size 0"));
    }
    // GSO_UDP_L4 says nothing of the IP version: the packet does.
    let v4 = match hdr.gso() {
        Gso::TcpV4 => true,
        Gso::TcpV6 => false,
        _ => packet.first().map(|b| b >> 4) == Some(4),
    };
    let (l4, end) = if v4 {
        let ip = ipv4::Packet::new_checked(packet)?;
        if ip.protocol() != want || ip.is_fragment() {
            return Err(Error::Malformed(
                "virtio: GSO packet is not IPv4 with the gso_type's transport",
            ));
        }
        (ip.header_len(), usize::from(ip.total_len()))
    } else {
        let ip = ipv6::Packet::new_checked(packet)?;
        let w = ip.walk()?;
        if w.protocol != want || w.fragment.is_some() {
            return Err(Error::Malformed(
                "virtio: GSO packet is not IPv6 with the gso_type's transport",
            ));
        }
        (w.offset, ip.total_len())
    };
    let seg = packet.get(l4..end).ok_or(Error::Truncated)?;
    let (l4_len, csum_offset) = if udp {
        let u = crate::udp::Packet::new_checked(seg)?;
        if usize::from(u.len()) != seg.len() {
            return Err(Error::Malformed(
                "virtio: UDP length does not match the packet",
            ));
        }
        (crate::udp::HEADER_LEN, UDP_CSUM_OFFSET)
    } else {
        (tcp::Packet::new_checked(seg)?.header_len(), TCP_CSUM_OFFSET)
    };
    if hdr.needs_csum()
        && (usize::from(hdr.csum_start) != l4 || usize::from(hdr.csum_offset) != csum_offset)
    {
        return Err(Error::Malformed(
            "virtio: csum_start/csum_offset do not point at the transport checksum",
        ));
    }
    Ok(Tso {
        v4,
        udp,
        l4,
        hdrs: l4 + l4_len,
        end,
        mss,
    })
}

/// Bytes [`segment`] will write for this packet (to size the output buffer).
pub fn segmented_len(hdr: &VirtioNetHdr, packet: &[u8]) -> Result<usize> {
    match hdr.gso() {
        Gso::None => Ok(packet.len()),
        _ => Ok(parse_tso(hdr, packet)?.out_len()),
    }
}

// Linux tcp_gso_segment() (net/ipv4/tcp_offload.c): every segment but the last loses FIN
// and PSH ("th->fin = th->psh = 0"), every segment but the first loses CWR ("th->cwr = 0"),
// sequence numbers advance by the MSS, and inet_gso_segment() gives IPv4 segments
// incrementing ids ("iph->id = htons(id++)") with their own length and header checksum.
/// Splits a packet read from the TUN (`packet`, after its `hdr`) into wire-ready packets in
/// `out`, laid out as the module docs say.
///
/// * `GSO_TCPV4`/`GSO_TCPV6`: TSO. Each segment gets its IPv4 total length, id (the
///   super-packet's, plus the segment index), header checksum, or IPv6 payload length, its
///   sequence number, FIN/PSH only on the last segment, CWR only on the first, and a full
///   TCP checksum (computed from scratch: the partial checksum in the input is not used).
///   `hdr_len` is ignored (header lengths come from the packet). Trailing bytes after the IP
///   length are ignored.
/// * `GSO_NONE`: one segment, a copy of `packet`, its partial checksum completed if
///   `NEEDS_CSUM` ([`complete_checksum`]).
/// * `GSO_UDP_L4`: USO. Each datagram gets the IP fields as for TSO, its UDP length and a
///   full UDP checksum (0 goes out as 0xffff).
/// * `GSO_UDP` (UFO, IP fragmentation of one big datagram): [`Error::Unsupported`].
///
/// Errors: [`Error::BufferTooSmall`] if `out` is shorter than [`segmented_len`];
/// [`Error::Malformed`]/[`Error::Truncated`] for a packet that does not match its header.
pub fn segment(hdr: &VirtioNetHdr, packet: &[u8], out: &mut [u8]) -> Result<Segments> {
    if hdr.gso() == Gso::None {
        let len = packet.len();
        let dst = out.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(packet);
        complete_checksum(hdr, dst)?;
        return Ok(Segments {
            count: 1,
            stride: len,
            len,
        });
    }
    let t = parse_tso(hdr, packet)?;
    let total = t.out_len();
    if out.len() < total {
        return Err(Error::BufferTooSmall);
    }
    let headers = packet.get(..t.hdrs).ok_or(Error::Truncated)?;
    let payload = packet.get(t.hdrs..t.end).ok_or(Error::Truncated)?;
    let (src, dst, base_id): (IpAddr, IpAddr, u16) = if t.v4 {
        let ip = ipv4::Packet::new_unchecked(headers);
        (ip.src_addr().into(), ip.dst_addr().into(), ip.ident())
    } else {
        let ip = ipv6::Packet::new_unchecked(headers);
        (ip.src_addr().into(), ip.dst_addr().into(), 0)
    };
    let (base_seq, flags) = if t.udp {
        (0, 0)
    } else {
        let th = tcp::Packet::new_unchecked(headers.get(t.l4..).unwrap_or(&[]));
        (th.seq_number(), th.flags().0)
    };
    let count = t.count();
    let stride = t.stride();
    for (i, chunk) in payload
        .chunks(t.mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let off = i * stride;
        let seg_len = t.hdrs + chunk.len();
        let seg = out
            .get_mut(off..off + seg_len)
            .ok_or(Error::BufferTooSmall)?;
        let (h, p) = seg.split_at_mut(t.hdrs);
        h.copy_from_slice(headers);
        p.copy_from_slice(chunk);
        // Segment lengths never exceed the super-packet's, whose length fields fit in 16 bits.
        if t.v4 {
            let len = u16::try_from(seg_len).map_err(|_| Error::Malformed("ipv4: length"))?;
            let mut ip = ipv4::Packet::new_unchecked(&mut seg[..]);
            ip.set_total_len(len);
            ip.set_ident(base_id.wrapping_add(i as u16));
            ip.fill_checksum();
        } else {
            let len = u16::try_from(seg_len - ipv6::HEADER_LEN)
                .map_err(|_| Error::Malformed("ipv6: length"))?;
            ipv6::Packet::new_unchecked(&mut seg[..]).set_payload_len(len);
        }
        if t.udp {
            // Linux __udp_gso_segment(): each datagram its own length and full checksum.
            let len = u16::try_from(seg_len - t.l4).map_err(|_| Error::Malformed("udp: length"))?;
            let mut u = crate::udp::Packet::new_unchecked(seg.get_mut(t.l4..).unwrap_or(&mut []));
            u.set_len(len);
            u.fill_checksum(src, dst);
            continue;
        }
        let mut f = flags;
        if i != 0 {
            f &= !tcp::Flags::CWR.0;
        }
        if i + 1 != count {
            f &= !(tcp::Flags::FIN.0 | tcp::Flags::PSH.0);
        }
        let mut tcp = tcp::Packet::new_unchecked(seg.get_mut(t.l4..).unwrap_or(&mut []));
        tcp.set_seq_number(base_seq.wrapping_add((i * t.mss) as u32));
        tcp.set_flags(tcp::Flags(f));
        tcp.fill_checksum(src, dst);
    }
    Ok(Segments {
        count,
        stride,
        len: total,
    })
}

/// What [`Coalescer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pushed {
    /// Appended to the open super-packet of its flow.
    Appended,
    /// Started a new frame that later segments of its flow may extend.
    Started,
    /// Copied as a frame of its own (`GSO_NONE`): not TCP, or not coalescible.
    PassedThrough,
}

/// The open super-packet: always the last frame of the arena.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Start of the IP packet in the arena (its vnet header is just before).
    start: usize,
    /// A UDP super-packet (USO) rather than a TCP one.
    udp: bool,
    v4: bool,
    l4: usize,
    hdrs: usize,
    gso_size: usize,
    segs: usize,
    next_seq: u32,
    last_id: u16,
    dont_frag: bool,
    psh: bool,
    /// A short or PSH segment was appended: nothing more may follow.
    closed: bool,
}

/// A coalescing candidate: an unfragmented TCP packet with payload, no SYN/FIN/RST/URG,
/// valid checksums, IPv4 without options or IPv6 without extension headers; or (when UDP
/// coalescing is on) such a UDP datagram with payload and a non-zero, valid checksum.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    udp: bool,
    v4: bool,
    l4: usize,
    hdrs: usize,
    payload_len: usize,
    seq: u32,
    ident: u16,
    dont_frag: bool,
    flags: u8,
}

fn candidate(pkt: &[u8], udp_on: bool) -> Option<Candidate> {
    let wanted = |p: IpProtocol| p == IpProtocol::Tcp || (udp_on && p == IpProtocol::Udp);
    let (v4, l4, src, dst, ident, dont_frag, proto) = match pkt.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(pkt).ok()?;
            if ip.header_len() != ipv4::HEADER_LEN
                || usize::from(ip.total_len()) != pkt.len()
                || ip.is_fragment()
                || !wanted(ip.protocol())
                || !ip.verify_checksum()
            {
                return None;
            }
            let (s, d): (IpAddr, IpAddr) = (ip.src_addr().into(), ip.dst_addr().into());
            let id = ip.ident();
            (
                true,
                ipv4::HEADER_LEN,
                s,
                d,
                id,
                ip.dont_frag(),
                ip.protocol(),
            )
        }
        6 => {
            let ip = ipv6::Packet::new_checked(pkt).ok()?;
            if !wanted(ip.next_header()) || ip.total_len() != pkt.len() {
                return None;
            }
            let (s, d): (IpAddr, IpAddr) = (ip.src_addr().into(), ip.dst_addr().into());
            (false, ipv6::HEADER_LEN, s, d, 0, true, ip.next_header())
        }
        _ => return None,
    };
    if proto == IpProtocol::Udp {
        let udp = crate::udp::Packet::new_checked(pkt.get(l4..)?).ok()?;
        let payload_len = usize::from(udp.len()).checked_sub(crate::udp::HEADER_LEN)?;
        // A zero checksum (IPv4: none sent) would come out computed after segmentation:
        // not byte-exact, so such datagrams pass through. A bad one is not laundered.
        if l4 + usize::from(udp.len()) != pkt.len()
            || payload_len == 0
            || udp.checksum() == 0
            || !udp.verify_checksum(src, dst)
        {
            return None;
        }
        return Some(Candidate {
            udp: true,
            v4,
            l4,
            hdrs: l4 + crate::udp::HEADER_LEN,
            payload_len,
            seq: 0,
            ident,
            dont_frag,
            flags: 0,
        });
    }
    let tcp = tcp::Packet::new_checked(pkt.get(l4..)?).ok()?;
    let flags = tcp.flags().0;
    let forbidden = tcp::Flags::SYN.0 | tcp::Flags::FIN.0 | tcp::Flags::RST.0 | tcp::Flags::URG.0;
    let payload_len = tcp.payload().len();
    // Coalescing recomputes the checksum: verify first, so a corrupt segment is not laundered
    // (it passes through and the kernel drops it), as the kernel's GRO does.
    if flags & forbidden != 0 || payload_len == 0 || !tcp.verify_checksum(src, dst) {
        return None;
    }
    Some(Candidate {
        udp: false,
        v4,
        l4,
        hdrs: l4 + tcp.header_len(),
        payload_len,
        seq: tcp.seq_number(),
        ident,
        dont_frag,
        flags,
    })
}

/// Where one frame lies in the arena.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    start: usize,
    len: usize,
}

/// GRO in user space: merges consecutive in-order TCP segments of one flow into super-packets
/// for the TUN, into a caller-provided arena.
///
/// Rules (those of Linux `tcp_gro_receive`/`inet_gro_receive`): a segment extends the open
/// super-packet if it has the same IP header except length, id and checksum (IPv4 without
/// options, not fragmented; IPv6 without extension headers), the same ports, ACK number,
/// window, data offset and option bytes, the flags of the first segment (a first segment may
/// carry CWR, a later one PSH, which ends the super-packet), the next sequence number, a
/// payload of at most the first segment's size (a shorter one ends the super-packet), an
/// IPv4 id one above the previous one unless DF is set, valid checksums, and the total stays
/// within [`MAX_SUPER_PACKET`]. Packets with SYN, FIN, RST or URG, without payload, or not
/// TCP pass through (order is kept: they close the open super-packet first).
///
/// A frame of a single packet is written with a zero header (`GSO_NONE`, no flags) and the
/// packet unchanged; a merged frame with `NEEDS_CSUM`, `GSO_TCPV4`/`GSO_TCPV6` (plus
/// `GSO_ECN` if the first segment has CWR), `gso_size` = the first segment's payload,
/// `csum_start` = the TCP header, `csum_offset` = 16, and in the TCP checksum field the
/// uncomplemented pseudo-header sum over the whole TCP length, as the kernel expects
/// (`tcp_gso_segment` adjusts that partial sum per segment).
///
/// Use: per batch, [`push`](Self::push) every packet, [`flush`](Self::flush), write every
/// [`frames`](Self::frames) item to the TUN, [`clear`](Self::clear). If `push` returns
/// [`Error::BufferTooSmall`], the packet was not taken: flush, drain, clear, push it again.
/// An arena of at least `VNET_HDR_LEN + MAX_SUPER_PACKET` bytes always takes a packet of up
/// to 64 KB when empty.
#[derive(Debug)]
pub struct Coalescer<B: AsRef<[u8]> + AsMut<[u8]>> {
    arena: B,
    used: usize,
    frames: [Frame; MAX_FRAMES],
    count: usize,
    open: Option<Open>,
    udp: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Coalescer<B> {
    /// A coalescer writing its frames into `arena`.
    pub fn new(arena: B) -> Coalescer<B> {
        Coalescer {
            arena,
            used: 0,
            frames: [Frame::default(); MAX_FRAMES],
            count: 0,
            open: None,
            udp: false,
        }
    }

    /// Also merges UDP datagrams (off by default): consecutive datagrams of one flow with
    /// the same payload size (the last may be shorter, and ends the super-packet), the same
    /// IP header except length, id and checksum (an IPv4 id one above the previous one
    /// unless DF is set), non-zero valid checksums, at most [`MAX_UDP_SEGMENTS`] of them,
    /// within [`MAX_SUPER_PACKET`]. A merged frame is `GSO_UDP_L4` with `NEEDS_CSUM`,
    /// `csum_start` = the UDP header, `csum_offset` = 6, the UDP length of the whole, and in
    /// the checksum field the uncomplemented pseudo-header sum over that length (the kernel's
    /// `__udp_gso_segment` adjusts it per datagram). Turn it on only for a TUN that accepted
    /// `TUN_F_USO4|TUN_F_USO6`.
    pub fn udp(mut self, on: bool) -> Self {
        self.udp = on;
        self
    }

    /// Takes one packet (a whole IP packet, nothing after it). Never panics; see the type
    /// docs for what is merged. Errors only with [`Error::BufferTooSmall`] (arena or frame
    /// table full; the packet was not taken).
    pub fn push(&mut self, packet: &[u8]) -> Result<Pushed> {
        let cand = candidate(packet, self.udp);
        if let (Some(c), Some(o)) = (cand, self.open) {
            if self.extends(&o, &c, packet) {
                return self.append(o, c, packet);
            }
        }
        self.close_open();
        let need = VNET_HDR_LEN + packet.len();
        if self.count == MAX_FRAMES || self.arena.as_ref().len() - self.used < need {
            return Err(Error::BufferTooSmall);
        }
        let start = self.used;
        let dst = self
            .arena
            .as_mut()
            .get_mut(start..start + need)
            .ok_or(Error::BufferTooSmall)?;
        let (h, p) = dst.split_at_mut(VNET_HDR_LEN);
        h.fill(0);
        p.copy_from_slice(packet);
        self.frames[self.count] = Frame { start, len: need };
        self.count += 1;
        self.used += need;
        match cand {
            Some(c) if c.flags & tcp::Flags::PSH.0 == 0 => {
                self.open = Some(Open {
                    start: start + VNET_HDR_LEN,
                    udp: c.udp,
                    v4: c.v4,
                    l4: c.l4,
                    hdrs: c.hdrs,
                    gso_size: c.payload_len,
                    segs: 1,
                    next_seq: c.seq.wrapping_add(c.payload_len as u32),
                    last_id: c.ident,
                    dont_frag: c.dont_frag,
                    psh: false,
                    closed: false,
                });
                Ok(Pushed::Started)
            }
            _ => Ok(Pushed::PassedThrough),
        }
    }

    /// Does `c` (bytes `pkt`) extend the open super-packet `o`?
    fn extends(&self, o: &Open, c: &Candidate, pkt: &[u8]) -> bool {
        if c.udp != o.udp {
            return false;
        }
        if c.udp {
            return self.extends_udp(o, c, pkt);
        }
        let Some(head) = self.same_flow_head(o, c, pkt) else {
            return false;
        };
        if c.seq != o.next_seq || c.flags & tcp::Flags::CWR.0 != 0 {
            return false;
        }
        let same = |r: core::ops::Range<usize>| head.get(r.clone()) == pkt.get(r);
        let l4 = o.l4;
        // ACK number, data offset, window, options; flags apart from PSH and CWR.
        let tcp_same =
            same(l4 + 8..l4 + 13) && same(l4 + 14..l4 + 16) && same(l4 + tcp::HEADER_LEN..o.hdrs);
        let mask = !(tcp::Flags::PSH.0 | tcp::Flags::CWR.0);
        let head_flags = head.get(l4 + 13).copied().unwrap_or(0);
        tcp_same && (head_flags ^ c.flags) & mask == 0
    }

    /// [`Coalescer::extends`] for UDP (see [`Coalescer::udp`]): what both kinds check, and at
    /// most [`MAX_UDP_SEGMENTS`].
    fn extends_udp(&self, o: &Open, c: &Candidate, pkt: &[u8]) -> bool {
        o.segs < MAX_UDP_SEGMENTS && self.same_flow_head(o, c, pkt).is_some()
    }

    /// What TCP and UDP merging both need: the open super-packet takes more, `c` has its
    /// family, header length, at most its segment size, the next IPv4 id (unless DF), and the
    /// same IP header fields and ports. Returns the open super-packet's headers.
    fn same_flow_head(&self, o: &Open, c: &Candidate, pkt: &[u8]) -> Option<&[u8]> {
        if o.closed
            || c.v4 != o.v4
            || c.hdrs != o.hdrs
            || c.payload_len > o.gso_size
            || self.used - o.start + c.payload_len > MAX_SUPER_PACKET
            || (o.v4 && !o.dont_frag && c.ident != o.last_id.wrapping_add(1))
        {
            return None;
        }
        let head = self.arena.as_ref().get(o.start..o.start + o.hdrs)?;
        let same = |r: core::ops::Range<usize>| head.get(r.clone()) == pkt.get(r);
        // IPv4: version/IHL, DSCP/ECN, flags/fragment offset, TTL, protocol, addresses.
        // IPv6: version/traffic class/flow label, next header, hop limit, addresses.
        let ip_same = if o.v4 {
            same(0..2) && same(6..10) && same(12..20)
        } else {
            same(0..4) && same(6..40)
        };
        (ip_same && same(o.l4..o.l4 + 4)).then_some(head)
    }

    fn append(&mut self, mut o: Open, c: Candidate, pkt: &[u8]) -> Result<Pushed> {
        let payload = pkt.get(c.hdrs..).unwrap_or(&[]);
        let at = self.used;
        let dst = self
            .arena
            .as_mut()
            .get_mut(at..at + payload.len())
            .ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(payload);
        self.used += payload.len();
        if let Some(f) = self
            .count
            .checked_sub(1)
            .and_then(|i| self.frames.get_mut(i))
        {
            f.len += payload.len();
        }
        o.segs += 1;
        o.next_seq = o.next_seq.wrapping_add(payload.len() as u32);
        o.last_id = c.ident;
        let psh = c.flags & tcp::Flags::PSH.0 != 0;
        o.psh |= psh;
        o.closed = psh || c.payload_len < o.gso_size;
        self.open = Some(o);
        Ok(Pushed::Appended)
    }

    /// Finishes the open super-packet (lengths, IPv4 header checksum, PSH, partial TCP
    /// checksum, virtio header). Idempotent.
    fn close_open(&mut self) {
        let Some(o) = self.open.take() else {
            return;
        };
        if o.segs < 2 {
            return; // A single packet: unchanged, zero header already written.
        }
        let end = self.used;
        let total = end - o.start;
        let Some(pkt) = self.arena.as_mut().get_mut(o.start..end) else {
            return;
        };
        let (src, dst): (IpAddr, IpAddr) = if o.v4 {
            let mut ip = ipv4::Packet::new_unchecked(&mut pkt[..]);
            ip.set_total_len(total as u16);
            ip.fill_checksum();
            (ip.src_addr().into(), ip.dst_addr().into())
        } else {
            let mut ip = ipv6::Packet::new_unchecked(&mut pkt[..]);
            ip.set_payload_len((total - ipv6::HEADER_LEN) as u16);
            (ip.src_addr().into(), ip.dst_addr().into())
        };
        let Some(seg) = pkt.get_mut(o.l4..) else {
            return;
        };
        if o.udp {
            let udp_len = seg.len();
            let mut udp = crate::udp::Packet::new_unchecked(seg);
            udp.set_len(udp_len as u16);
            udp.set_checksum(checksum::pseudo_header(
                src,
                dst,
                IpProtocol::Udp,
                udp_len as u32,
            ));
            let hdr = VirtioNetHdr {
                flags: VirtioNetHdr::F_NEEDS_CSUM,
                gso_type: VirtioNetHdr::GSO_UDP_L4,
                hdr_len: o.hdrs as u16,
                gso_size: o.gso_size as u16,
                csum_start: o.l4 as u16,
                csum_offset: UDP_CSUM_OFFSET as u16,
            };
            if let Some(h) = self.arena.as_mut().get_mut(o.start - VNET_HDR_LEN..o.start) {
                let _ = hdr.emit(h);
            }
            return;
        }
        let tcp_len = seg.len() as u32;
        let mut tcp = tcp::Packet::new_unchecked(seg);
        let flags = tcp.flags();
        if o.psh {
            tcp.set_flags(flags | tcp::Flags::PSH);
        }
        tcp.set_checksum(checksum::pseudo_header(src, dst, IpProtocol::Tcp, tcp_len));
        let gso = if o.v4 {
            VirtioNetHdr::GSO_TCPV4
        } else {
            VirtioNetHdr::GSO_TCPV6
        };
        let ecn = if flags.contains(tcp::Flags::CWR) {
            VirtioNetHdr::GSO_ECN
        } else {
            0
        };
        // hdrs <= 60 + 60, l4 <= 40, gso_size <= 64 KB: all fit in 16 bits.
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: gso | ecn,
            hdr_len: o.hdrs as u16,
            gso_size: o.gso_size as u16,
            csum_start: o.l4 as u16,
            csum_offset: TCP_CSUM_OFFSET as u16,
        };
        if let Some(h) = self.arena.as_mut().get_mut(o.start - VNET_HDR_LEN..o.start) {
            let _ = hdr.emit(h);
        }
    }

    /// Ends the batch's open super-packet, so that [`frames`](Self::frames) yields it.
    pub fn flush(&mut self) {
        self.close_open();
    }

    /// The finished frames (`[virtio_net_hdr][IP packet]` each), in push order. An open
    /// super-packet is not included until [`flush`](Self::flush).
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let n = self.count - usize::from(self.open.is_some());
        let arena = self.arena.as_ref();
        self.frames
            .iter()
            .take(n)
            .filter_map(move |f| arena.get(f.start..f.start + f.len))
    }

    /// Where the finished frames lie in the arena, in push order (the same frames as
    /// [`frames`](Self::frames), as byte ranges: for writes submitted asynchronously from the
    /// arena after the coalescer is gone).
    pub fn frame_ranges(&self) -> impl Iterator<Item = core::ops::Range<usize>> + '_ {
        let n = self.count - usize::from(self.open.is_some());
        let len = self.arena.as_ref().len();
        self.frames
            .iter()
            .take(n)
            .map(|f| f.start..f.start + f.len)
            .filter(move |r| r.end <= len)
    }

    /// Number of frames (the open one included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if nothing was pushed since the last [`clear`](Self::clear).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets every frame (after they were written), keeping the arena.
    pub fn clear(&mut self) {
        self.used = 0;
        self.count = 0;
        self.open = None;
    }

    /// Gives the arena back.
    pub fn into_inner(self) -> B {
        self.arena
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_hdr_round_trip() {
        let h = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.emit(&mut b).unwrap();
        // Little-endian on the wire: gso_size 1448 = 0x05a8.
        assert_eq!(b, [1, 0x81, 66, 0, 0xa8, 0x05, 20, 0, 16, 0]);
        assert_eq!(VirtioNetHdr::parse(&b).unwrap(), h);
        assert_eq!(h.gso(), Gso::TcpV4);
        assert!(h.ecn() && h.needs_csum());
        assert_eq!(VirtioNetHdr::parse(&b[..9]), Err(Error::Truncated));
        assert_eq!(h.emit(&mut [0u8; 9]), Err(Error::BufferTooSmall));
        let (h2, rest) = VirtioNetHdr::split(&b).unwrap();
        assert_eq!((h2, rest.len()), (h, 0));
        for (v, g) in [
            (0, Gso::None),
            (3, Gso::Udp),
            (4, Gso::TcpV6),
            (5, Gso::UdpL4),
        ] {
            let h = VirtioNetHdr {
                gso_type: v,
                ..VirtioNetHdr::default()
            };
            assert_eq!(h.gso(), g);
        }
        let h = VirtioNetHdr {
            gso_type: 9,
            ..VirtioNetHdr::default()
        };
        assert_eq!(h.gso(), Gso::Unknown(9));
    }

    #[test]
    fn complete_checksum_bounds() {
        let h = VirtioNetHdr {
            flags: VirtioNetHdr::F_NEEDS_CSUM,
            csum_start: 4,
            csum_offset: 4,
            ..VirtioNetHdr::default()
        };
        assert!(complete_checksum(&h, &mut [0u8; 9]).is_err());
        let mut b = [0u8; 10];
        complete_checksum(&h, &mut b).unwrap();
        // All zeros sum to 0, whose complement 0xffff is written.
        assert_eq!(&b[8..10], &[0xff, 0xff]);
        // Without NEEDS_CSUM nothing happens.
        let mut b = [0u8; 2];
        complete_checksum(&VirtioNetHdr::default(), &mut b).unwrap();
        assert_eq!(b, [0, 0]);
    }
}
