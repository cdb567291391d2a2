//! C2SP deterministic ECDSA key generation (<https://c2sp.org/det-keygen>).
//!
//! Contrast derives its root CA and transaction signing keys with `filippo.io/keygen`'s
//! `ECDSA(P384, seed)`, which is this algorithm; the same seed must give the same key here,
//! or recovering a Coordinator from an existing seed would fail.
//!
//! For a curve with order *n* of *qlen* bits (*nlen* = ⌈*qlen*/8⌉ bytes):
//!
//! 1. *personalization* = `det ECDSA key gen ` ‖ curve name (`P-224`, `P-256`, `P-384`,
//!    `P-521`).
//! 2. Instantiate HMAC_DRBG with SHA-256 (SP 800-90A Rev. 1, 10.1.2.3) from the seed, no
//!    nonce: *K* = 0x00×32, *V* = 0x01×32;
//!    *K* = HMAC(*K*, *V* ‖ 0x00 ‖ seed ‖ personalization), *V* = HMAC(*K*, *V*);
//!    *K* = HMAC(*K*, *V* ‖ 0x01 ‖ seed ‖ personalization), *V* = HMAC(*K*, *V*).
//! 3. Generate: *temp* = concatenation of *V* = HMAC(*K*, *V*) blocks until it holds at
//!    least *nlen* bytes (two blocks for P-384).
//! 4. *d* = bits2int(*temp*) (RFC 6979 §2.3.2): the leftmost *qlen* bits as a big-endian
//!    integer (P-384: the first 48 bytes; P-521: the first 66 bytes shifted right by 7).
//! 5. P-256 only, if *d* ≥ *n*: *K* = HMAC(*K*, *V* ‖ 0x00), *V* = HMAC(*K*, *V*), and
//!    steps 3–4 once more.
//! 6. *d* = 0 or *d* ≥ *n* is a fatal error (negligible chance: a hardware or
//!    implementation fault), not a reason to loop.
//!
//! This is FIPS 186-5 A.2.2 (key pair generation by rejection sampling) with HMAC_DRBG.
//! The seed must be at least 16 bytes ([`MIN_DET_KEYGEN_SEED_LEN`]).

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::SeedEngineError;

/// The shortest seed the C2SP specification allows (128 bits).
pub const MIN_DET_KEYGEN_SEED_LEN: usize = 16;

/// The curves C2SP det-keygen is defined for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetKeygenCurve {
    /// NIST P-224 (secp224r1).
    P224,
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1), the curve of Contrast's seed-derived keys.
    P384,
    /// NIST P-521 (secp521r1).
    P521,
}

impl DetKeygenCurve {
    /// The curve's name as it appears in the personalization string (`P-384`).
    pub fn name(self) -> &'static str {
        match self {
            DetKeygenCurve::P224 => "P-224",
            DetKeygenCurve::P256 => "P-256",
            DetKeygenCurve::P384 => "P-384",
            DetKeygenCurve::P521 => "P-521",
        }
    }

    /// The bit length of the group order.
    fn order_bits(self) -> usize {
        match self {
            DetKeygenCurve::P224 => 224,
            DetKeygenCurve::P256 => 256,
            DetKeygenCurve::P384 => 384,
            DetKeygenCurve::P521 => 521,
        }
    }

    /// The group order, big-endian, ⌈bits/8⌉ bytes (SP 800-186).
    fn order(self) -> &'static [u8] {
        match self {
            DetKeygenCurve::P224 => &P224_ORDER,
            DetKeygenCurve::P256 => &P256_ORDER,
            DetKeygenCurve::P384 => &P384_ORDER,
            DetKeygenCurve::P521 => &P521_ORDER,
        }
    }

    /// The length of a private scalar in bytes.
    pub fn scalar_len(self) -> usize {
        self.order_bits().div_ceil(8)
    }
}

const P224_ORDER: [u8; 28] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x16, 0xa2,
    0xe0, 0xb8, 0xf0, 0x3e, 0x13, 0xdd, 0x29, 0x45, 0x5c, 0x5c, 0x2a, 0x3d,
];
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];
const P521_ORDER: [u8; 66] = [
    0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xfa, 0x51, 0x86, 0x87, 0x83, 0xbf, 0x2f, 0x96, 0x6b, 0x7f, 0xcc, 0x01, 0x48, 0xf7, 0x09,
    0xa5, 0xd0, 0x3b, 0xb5, 0xc9, 0xb8, 0x89, 0x9c, 0x47, 0xae, 0xbb, 0x6f, 0xb7, 0x1e, 0x91, 0x38,
    0x64, 0x09,
];

/// Derives a P-384 private key from `seed` (at least 16 bytes) with C2SP det-keygen.
pub fn p384_from_seed(seed: &[u8]) -> Result<p384::SecretKey, SeedEngineError> {
    let scalar = scalar_from_seed(DetKeygenCurve::P384, seed)?;
    // The range was checked already; p384 checks it again (0 < d < n) in constant time.
    p384::SecretKey::from_slice(&scalar)
        .map_err(|_| SeedEngineError::DetKeygenOutOfRange { curve: "P-384" })
}

/// Derives the private scalar *d* (big-endian, [`DetKeygenCurve::scalar_len`] bytes) for
/// `curve` from `seed` with C2SP det-keygen.
pub fn scalar_from_seed(
    curve: DetKeygenCurve,
    seed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SeedEngineError> {
    if seed.len() < MIN_DET_KEYGEN_SEED_LEN {
        return Err(SeedEngineError::DetKeygenSeedTooShort {
            len: seed.len(),
            min: MIN_DET_KEYGEN_SEED_LEN,
        });
    }
    let personalization = format!("det ECDSA key gen {}", curve.name());
    let mut drbg = HmacDrbg::instantiate(seed, personalization.as_bytes());

    let mut d = sample(&mut drbg, curve);
    if curve == DetKeygenCurve::P256 && !is_below(&d, curve.order()) {
        // Step 11: the only retry the specification has (d ≥ n has chance < 2⁻³² on P-256).
        drbg.update_without_data();
        d = sample(&mut drbg, curve);
    }
    if is_zero(&d) || !is_below(&d, curve.order()) {
        return Err(SeedEngineError::DetKeygenOutOfRange {
            curve: curve.name(),
        });
    }
    Ok(d)
}

/// Steps 8–10: generate ⌈nlen/32⌉ blocks and apply bits2int.
fn sample(drbg: &mut HmacDrbg, curve: DetKeygenCurve) -> Zeroizing<Vec<u8>> {
    let nlen = curve.scalar_len();
    let mut temp = Zeroizing::new(vec![0u8; nlen.div_ceil(BLOCK) * BLOCK]);
    drbg.generate(&mut temp);
    bits2int(&temp[..nlen], nlen * 8 - curve.order_bits())
}

/// The leftmost `bytes.len()*8 - shift` bits of `bytes` as a big-endian integer of the
/// same length: a right shift by `shift` (< 8) bits.
fn bits2int(bytes: &[u8], shift: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(bytes.to_vec());
    if shift == 0 {
        return out;
    }
    for i in (0..out.len()).rev() {
        let carry = if i > 0 {
            bytes[i - 1] << (8 - shift)
        } else {
            0
        };
        out[i] = (bytes[i] >> shift) | carry;
    }
    out
}

/// Whether the big-endian `value` is below `bound` (same length), without branching on
/// the secret bytes: the borrow out of `value - bound`.
fn is_below(value: &[u8], bound: &[u8]) -> bool {
    let mut borrow: u16 = 0;
    for (v, b) in value.iter().rev().zip(bound.iter().rev()) {
        let diff = u16::from(*v)
            .wrapping_sub(u16::from(*b))
            .wrapping_sub(borrow);
        borrow = (diff >> 8) & 1;
    }
    borrow == 1
}

fn is_zero(value: &[u8]) -> bool {
    value.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// SHA-256 output length, the DRBG's block.
const BLOCK: usize = 32;

/// HMAC_DRBG with SHA-256 (SP 800-90A Rev. 1, 10.1.2) as det-keygen uses it: no nonce,
/// no reseeding, no additional input.
struct HmacDrbg {
    key: Zeroizing<[u8; BLOCK]>,
    value: Zeroizing<[u8; BLOCK]>,
}

impl HmacDrbg {
    fn instantiate(seed: &[u8], personalization: &[u8]) -> HmacDrbg {
        let mut drbg = HmacDrbg {
            key: Zeroizing::new([0x00; BLOCK]),
            value: Zeroizing::new([0x01; BLOCK]),
        };
        drbg.update(&[seed, personalization]);
        drbg
    }

    /// HMAC_DRBG_Update with provided data (non-empty): two rounds.
    fn update(&mut self, provided: &[&[u8]]) {
        for separator in [0x00u8, 0x01] {
            let mut parts: Vec<&[u8]> = vec![&self.value[..], std::slice::from_ref(&separator)];
            parts.extend_from_slice(provided);
            let new_key = hmac_sha256(&self.key[..], &parts);
            *self.key = *new_key;
            self.value = hmac_sha256(&self.key[..], &[&self.value[..]]);
        }
    }

    /// HMAC_DRBG_Update with empty provided data: only the 0x00 round.
    fn update_without_data(&mut self) {
        let new_key = hmac_sha256(&self.key[..], &[&self.value[..], &[0x00]]);
        *self.key = *new_key;
        self.value = hmac_sha256(&self.key[..], &[&self.value[..]]);
    }

    /// Fills `out` (a multiple of the block length) with V = HMAC(K, V) blocks.
    fn generate(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(BLOCK) {
            self.value = hmac_sha256(&self.key[..], &[&self.value[..]]);
            chunk.copy_from_slice(&self.value[..chunk.len()]);
        }
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; BLOCK]> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut out = Zeroizing::new([0u8; BLOCK]);
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn refuses_a_seed_shorter_than_16_bytes() {
        let err = p384_from_seed(&[0x42; 15]).unwrap_err();
        assert!(matches!(
            err,
            SeedEngineError::DetKeygenSeedTooShort { len: 15, min: 16 }
        ));
        assert!(err.to_string().contains("15"), "{err}");
        assert!(scalar_from_seed(DetKeygenCurve::P256, &[]).is_err());
        assert!(p384_from_seed(&[0x42; 16]).is_ok());
    }

    #[test]
    fn orders_match_the_curve_implementation() {
        // n - 1 is the largest valid P-384 scalar, n itself is not.
        let mut n_minus_1 = P384_ORDER;
        n_minus_1[47] -= 1;
        assert!(p384::SecretKey::from_slice(&n_minus_1).is_ok());
        assert!(p384::SecretKey::from_slice(&P384_ORDER).is_err());
        for curve in [
            DetKeygenCurve::P224,
            DetKeygenCurve::P256,
            DetKeygenCurve::P384,
            DetKeygenCurve::P521,
        ] {
            assert_eq!(curve.order().len(), curve.scalar_len());
        }
    }

    #[test]
    fn range_checks() {
        assert!(is_below(&[0x00, 0x01], &[0x00, 0x02]));
        assert!(!is_below(&[0x00, 0x02], &[0x00, 0x02]));
        assert!(!is_below(&[0x01, 0x00], &[0x00, 0xff]));
        assert!(is_below(&[0x00, 0xff], &[0x01, 0x00]));
        assert!(is_zero(&[0, 0, 0]));
        assert!(!is_zero(&[0, 1, 0]));
    }

    #[test]
    fn bits2int_shifts_across_bytes() {
        assert_eq!(&bits2int(&[0xab, 0xcd], 0)[..], &[0xab, 0xcd]);
        // 0xabcd >> 7 = 0x0157
        assert_eq!(&bits2int(&[0xab, 0xcd], 7)[..], &[0x01, 0x57]);
    }

    #[test]
    fn different_seeds_give_different_keys() {
        let a = p384_from_seed(&[1; 32]).unwrap();
        let b = p384_from_seed(&[2; 32]).unwrap();
        assert_ne!(a.to_bytes(), b.to_bytes());
        assert_eq!(a.to_bytes(), p384_from_seed(&[1; 32]).unwrap().to_bytes());
    }
}
