//! TCP segments (RFC 9293), with the MSS option (read, write and clamp in place).
//!
//! See the crate docs for the panic contract of views.

use core::net::IpAddr;

use crate::checksum;
use crate::ipv4::{be16, be32, put16, put32};
use crate::{Error, IpProtocol, Result};

mod field {
    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) const SRC_PORT: Field = 0..2;
    pub(crate) const DST_PORT: Field = 2..4;
    pub(crate) const SEQ_NUM: Field = 4..8;
    pub(crate) const ACK_NUM: Field = 8..12;
    pub(crate) const DATA_OFF: usize = 12;
    pub(crate) const FLAGS: usize = 13;
    pub(crate) const WIN_SIZE: Field = 14..16;
    pub(crate) const CHECKSUM: Field = 16..18;
    pub(crate) const URGENT: Field = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Option kinds (RFC 9293 section 3.2).
mod opt {
    pub(crate) const END: u8 = 0;
    pub(crate) const NOP: u8 = 1;
    pub(crate) const MSS: u8 = 2;
}

/// TCP control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// FIN.
    pub const FIN: Flags = Flags(0x01);
    /// SYN.
    pub const SYN: Flags = Flags(0x02);
    /// RST.
    pub const RST: Flags = Flags(0x04);
    /// PSH.
    pub const PSH: Flags = Flags(0x08);
    /// ACK.
    pub const ACK: Flags = Flags(0x10);
    /// URG.
    pub const URG: Flags = Flags(0x20);
    /// ECE (RFC 3168).
    pub const ECE: Flags = Flags(0x40);
    /// CWR (RFC 3168).
    pub const CWR: Flags = Flags(0x80);

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// A read/write view of a TCP segment (header and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks (see the crate's panic contract).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and runs [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the fixed header and the whole header its data offset
    /// states (>= 20). The segment is the whole buffer: pass exactly the IP payload.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed("tcp: data offset below 5"));
        }
        if data.len() < hl {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Control bits.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    /// FIN set.
    pub fn fin(&self) -> bool {
        self.flags().contains(Flags::FIN)
    }

    /// SYN set.
    pub fn syn(&self) -> bool {
        self.flags().contains(Flags::SYN)
    }

    /// RST set.
    pub fn rst(&self) -> bool {
        self.flags().contains(Flags::RST)
    }

    /// PSH set.
    pub fn psh(&self) -> bool {
        self.flags().contains(Flags::PSH)
    }

    /// ACK set.
    pub fn ack(&self) -> bool {
        self.flags().contains(Flags::ACK)
    }

    /// URG set.
    pub fn urg(&self) -> bool {
        self.flags().contains(Flags::URG)
    }

    /// Window.
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options bytes (possibly empty; clamped to the buffer).
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The payload (after the header, to the end of the buffer).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// Offset (from the start of the segment) of the 2-byte MSS value, if the options hold
    /// a well-formed MSS option before any malformed one.
    fn mss_offset(&self) -> Option<usize> {
        let opts = self.options();
        let mut i = 0;
        while let Some(&kind) = opts.get(i) {
            match kind {
                opt::END => return None,
                opt::NOP => i += 1,
                _ => {
                    let len = usize::from(*opts.get(i + 1)?);
                    if len < 2 || i + len > opts.len() {
                        return None;
                    }
                    if kind == opt::MSS {
                        return (len == 4).then_some(HEADER_LEN + i + 2);
                    }
                    i += len;
                }
            }
        }
        None
    }

    /// The Maximum Segment Size option (RFC 9293 section 3.7.1), if present and well formed.
    pub fn mss(&self) -> Option<u16> {
        let off = self.mss_offset()?;
        let b = self.buffer.as_ref().get(off..off + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Verifies the checksum with the pseudo-header of `src`/`dst`.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let d = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Tcp, d.len() as u32);
        checksum::combine(&[ph, checksum::sum(d)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (checksum untouched).
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port (checksum untouched).
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::SEQ_NUM, v);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::ACK_NUM, v);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let off = (len / 4).min(15) as u8;
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (off << 4);
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, f: Flags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    /// Sets the window.
    pub fn set_window_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::WIN_SIZE, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Mutable options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..hl)
            .unwrap_or(&mut [])
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer.as_mut().get_mut(hl..).unwrap_or(&mut [])
    }

    /// Overwrites the value of the existing MSS option and patches the checksum
    /// incrementally (RFC 1624; the value may sit at an odd offset, so the update covers the
    /// aligned words around it). Returns `false` (segment untouched) if there is no
    /// well-formed MSS option.
    pub fn set_mss(&mut self, mss: u16) -> bool {
        let Some(off) = self.mss_offset() else {
            return false;
        };
        // Aligned window of whole 16-bit words covering [off, off + 2).
        let start = off & !1;
        let end = (off + 2 + 1) & !1;
        let csum = self.checksum();
        let data = self.buffer.as_mut();
        let Some(window) = data.get_mut(start..end) else {
            return false;
        };
        let old_sum = checksum::sum(window);
        let Some(value) = window.get_mut(off - start..off - start + 2) else {
            return false;
        };
        value.copy_from_slice(&mss.to_be_bytes());
        let new_sum = checksum::sum(window);
        self.set_checksum(checksum::update_sum(csum, old_sum, new_sum));
        true
    }

    /// MSS clamping: if the segment has an MSS option above `max`, lowers it to `max`
    /// (checksum patched) and returns the old value. Used on SYNs in both directions so TCP
    /// segments fit the tunnel MTU.
    pub fn clamp_mss(&mut self, max: u16) -> Option<u16> {
        let old = self.mss()?;
        if old <= max {
            return None;
        }
        self.set_mss(max).then_some(old)
    }

    /// Computes and writes the checksum (pseudo-header of `src`/`dst`; the segment is the
    /// whole buffer).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let d = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, IpProtocol::Tcp, d.len() as u32);
        let c = !checksum::combine(&[ph, checksum::sum(d)]);
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// High-level description of a TCP header (only the MSS option is represented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control bits.
    pub flags: Flags,
    /// Window.
    pub window_len: u16,
    /// MSS option, if any.
    pub mss: Option<u16>,
    /// Payload length.
    pub payload_len: usize,
}

impl Repr {
    /// Parses a segment, verifying its checksum with `src`/`dst`.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, src: IpAddr, dst: IpAddr) -> Result<Repr> {
        p.check_len()?;
        if p.src_port() == 0 || p.dst_port() == 0 {
            return Err(Error::Malformed("tcp: port 0"));
        }
        if !p.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            mss: p.mss(),
            payload_len: p.payload().len(),
        })
    }

    /// Header length when emitted.
    pub const fn header_len(&self) -> usize {
        if self.mss.is_some() {
            HEADER_LEN + 4
        } else {
            HEADER_LEN
        }
    }

    /// Header plus payload length.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header into a buffer of exactly [`buffer_len`](Self::buffer_len) bytes (the
    /// segment is the whole buffer), zeroing the checksum. Fill the payload, then call
    /// [`Packet::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        if p.buffer.as_ref().len() != self.buffer_len() {
            return Err(Error::BufferTooSmall);
        }
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.buffer.as_mut()[field::DATA_OFF] = 0;
        p.set_header_len(self.header_len());
        p.set_flags(self.flags);
        p.set_window_len(self.window_len);
        p.set_checksum(0);
        p.set_urgent_at(0);
        if let Some(mss) = self.mss {
            let o = p.options_mut();
            if let Some(o) = o.get_mut(..4) {
                o.copy_from_slice(&[opt::MSS, 4, (mss >> 8) as u8, mss as u8]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use hex_literal::hex;

    use super::*;

    // A real SYN captured from Linux: 10.0.2.15:44346 -> 93.184.216.34:80, options
    // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    const SYN: [u8; 40] = hex!(
        "ad3a0050 5b2e9f2a 00000000 a002faf0 0000 0000"
        "020405b4 0402080a 9b1a6e3c 00000000 01030307"
    );
    fn addrs() -> (IpAddr, IpAddr) {
        (
            Ipv4Addr::new(10, 0, 2, 15).into(),
            Ipv4Addr::new(93, 184, 216, 34).into(),
        )
    }

    fn syn() -> Vec<u8> {
        let mut v = SYN.to_vec();
        let (s, d) = addrs();
        Packet::new_unchecked(&mut v[..]).fill_checksum(s, d);
        v
    }

    #[test]
    fn parse_syn() {
        let v = syn();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.src_port(), 44346);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.header_len(), 40);
        assert!(p.syn() && !p.ack());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.mss(), Some(1460));
        let (s, d) = addrs();
        assert!(p.verify_checksum(s, d));
        let r = Repr::parse(&p, s, d).unwrap();
        assert_eq!(r.mss, Some(1460));
        assert_eq!(r.flags, Flags::SYN);
    }

    #[test]
    fn clamp_mss_keeps_checksum_valid() {
        let mut v = syn();
        let (s, d) = addrs();
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        assert_eq!(p.clamp_mss(1500), None);
        assert_eq!(p.clamp_mss(1432), Some(1460));
        assert_eq!(p.mss(), Some(1432));
        assert!(p.verify_checksum(s, d));
    }

    #[test]
    fn mss_at_odd_offset() {
        // NOP, then MSS at option offset 1 (value at odd offset 23), then 3 NOPs.
        let mut v =
            hex!("ad3a0050 5b2e9f2a 00000000 7002faf0 0000 0000 01020405 b4010101").to_vec();
        let (s, d) = addrs();
        Packet::new_unchecked(&mut v[..]).fill_checksum(s, d);
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        assert_eq!(p.mss(), Some(1460));
        assert!(p.set_mss(1200));
        assert_eq!(p.mss(), Some(1200));
        assert!(p.verify_checksum(s, d));
    }

    #[test]
    fn malformed_options_have_no_mss() {
        // Option kind 8 with length 0: the walk stops.
        let v = hex!("ad3a0050 5b2e9f2a 00000000 6002faf0 0000 0000 08000204");
        let mut v = v.to_vec();
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        assert_eq!(p.mss(), None);
        assert!(!p.set_mss(1));
    }

    #[test]
    fn bad_lengths() {
        let v = syn();
        assert_eq!(Packet::new_checked(&v[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&v[..39]).unwrap_err(), Error::Truncated);
        let mut b = v.clone();
        b[12] = 0x40;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
    }
}
