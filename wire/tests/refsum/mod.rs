//! An Internet checksum (RFC 1071) written for the tests, independent of `wire::checksum`,
//! so that the offload tests check wire's checksums against a second implementation.
#![allow(dead_code, unreachable_pub)]

/// One's-complement sum of big-endian 16-bit words (an odd last byte is padded with zero),
/// added to `acc`, not folded.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// End-around carry fold to 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The pseudo-header of a `proto` segment of `len` bytes (RFC 768, RFC 9293 section 3.1;
/// RFC 8200 section 8.1), unfolded.
pub fn pseudo(v6: bool, src: &[u8], dst: &[u8], len: usize, proto: u8) -> u64 {
    let mut ph = Vec::new();
    ph.extend_from_slice(src);
    ph.extend_from_slice(dst);
    if v6 {
        ph.extend_from_slice(&(len as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        ph.extend_from_slice(&[0, proto]);
        ph.extend_from_slice(&(len as u16).to_be_bytes());
    }
    sum(&ph, 0)
}
