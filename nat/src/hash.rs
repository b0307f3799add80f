//! A small keyed hasher for the fixed-size integer keys of the tables.
//!
//! Keys are packed integers (`u64` or `u128`), so SipHash (std's default, ~15-20 ns) is
//! needless on the per-packet path. We mix with MurmurHash3's 64-bit finaliser over
//! `seed ^ word`. The seed comes from [`crate::NatConfig::seed`]; this is not a
//! cryptographic PRF, but the keys are mostly chosen by the NAT itself (public ports) or by
//! authenticated hosts bounded by the per-host cap, which limits flooding attacks.

use std::hash::{BuildHasher, Hasher};

/// Builds [`KeyHasher`]s with one seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHashState(pub(crate) u64);

impl BuildHasher for KeyHashState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// The hasher: one finaliser round per 64-bit word.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHasher(u64);

/// MurmurHash3 `fmix64`: full avalanche of a 64-bit word.
#[inline]
pub(crate) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = fmix64(self.0 ^ x);
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}
