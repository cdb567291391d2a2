//! Contrast's SEV-SNP ID block and ID authentication block (docs/attestation.md §2):
//! made by firmware-refs for the runtime installer, checked by the reference-value check.
//!
//! The ID block names the expected launch digest and guest policy. Nobody holds an ID key:
//! the ID auth block carries the fixed signature r = 2, s = 1, and the "ID key" is a public
//! key recovered from that signature over SHA-384(ID block) (SEC 1 §4.1.6). Only that key
//! verifies the signature for this very block, so a report's ID_KEY_DIGEST pins the launch
//! digest and policy without any private key existing.

use aws_lc_rs::digest::{self, SHA384};
use p384::elliptic_curve::ops::Reduce;
use p384::elliptic_curve::point::DecompressPoint;
use p384::elliptic_curve::sec1::ToSec1Point;
use p384::elliptic_curve::subtle::Choice;
use p384::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

/// Length of the ID block.
pub const ID_BLOCK_LEN: usize = 0x60;
/// Length of the ID authentication block.
pub const ID_AUTH_LEN: usize = 0x1000;
/// Length of the serialized ID key (curve, Qx, Qy, reserved).
pub const ID_KEY_LEN: usize = 0x404;
/// The fixed signature's r and s (little-endian in the block).
pub const FIXED_R: u8 = 2;
/// See [`FIXED_R`].
pub const FIXED_S: u8 = 1;

/// The ID key could not be recovered from the fixed signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdBlockError {
    /// x = r is not the x coordinate of a curve point (cannot happen for r = 2 on P-384;
    /// reported rather than assumed).
    #[error("the fixed signature's r = {FIXED_R} is not the x coordinate of a P-384 point")]
    NoCurvePoint,
    /// The recovered point is the identity.
    #[error(
        "public key recovery gave the point at infinity for this ID block; change the policy or digest"
    )]
    Identity,
}

/// The ID block, ID auth block and ID-key digest for one launch digest and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdBlocks {
    /// The 96-byte ID block.
    pub id_block: [u8; ID_BLOCK_LEN],
    /// The 4096-byte ID authentication block.
    pub id_auth: Vec<u8>,
    /// The recovered ID public key, uncompressed SEC1 (0x04 ‖ X ‖ Y, big-endian).
    pub id_key_sec1: [u8; 97],
    /// SHA-384 of the serialized ID key: the report's ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
}

/// The ID block: LD ‖ FAMILY_ID (0x01, …) ‖ IMAGE_ID (0x02, …) ‖ VERSION 1 ‖ GUEST_SVN 2 ‖
/// POLICY, little-endian.
pub fn id_block(launch_digest: &[u8; 48], policy: u64) -> [u8; ID_BLOCK_LEN] {
    let mut block = [0u8; ID_BLOCK_LEN];
    block[..0x30].copy_from_slice(launch_digest);
    block[0x30] = 0x01;
    block[0x40] = 0x02;
    block[0x50..0x54].copy_from_slice(&1u32.to_le_bytes());
    block[0x54..0x58].copy_from_slice(&2u32.to_le_bytes());
    block[0x58..0x60].copy_from_slice(&policy.to_le_bytes());
    block
}

/// The serialized ID key: curve 2 (P-384), then X and Y little-endian, each padded to
/// 72 bytes, then reserved zeros. `sec1` is an uncompressed point.
pub fn serialize_id_key(sec1: &[u8; 97]) -> [u8; ID_KEY_LEN] {
    let mut key = [0u8; ID_KEY_LEN];
    key[..4].copy_from_slice(&2u32.to_le_bytes());
    for (i, b) in sec1[1..49].iter().rev().enumerate() {
        key[4 + i] = *b;
    }
    for (i, b) in sec1[49..97].iter().rev().enumerate() {
        key[0x4c + i] = *b;
    }
    key
}

/// SHA-384 of a serialized ID key.
pub fn id_key_digest(sec1: &[u8; 97]) -> [u8; 48] {
    let mut out = [0u8; 48];
    out.copy_from_slice(digest::digest(&SHA384, &serialize_id_key(sec1)).as_ref());
    out
}

/// Both public keys for which (r = 2, s = 1) is a valid signature over `hash`, sorted by
/// (X, Y) as unsigned big-endian integers.
pub fn recover_fixed_signature_keys(hash: &[u8; 48]) -> Result<[[u8; 97]; 2], IdBlockError> {
    let r = Scalar::from(u64::from(FIXED_R));
    let s = Scalar::from(u64::from(FIXED_S));
    // r is below the order and the field prime, so x = r exactly.
    let mut x = FieldBytes::default();
    x[47] = FIXED_R;
    let r_inv = Option::<Scalar>::from(r.invert()).ok_or(IdBlockError::NoCurvePoint)?;
    // A 384-bit digest is reduced modulo n, as in signing.
    let z = <Scalar as Reduce<FieldBytes>>::reduce(hash.into());
    let u1 = -(z * r_inv);
    let u2 = s * r_inv;
    let mut keys = [[0u8; 97]; 2];
    for (odd, key) in [false, true].into_iter().zip(keys.iter_mut()) {
        let point =
            Option::<AffinePoint>::from(AffinePoint::decompress(&x, Choice::from(u8::from(odd))))
                .ok_or(IdBlockError::NoCurvePoint)?;
        // Q = r⁻¹ (s·R − z·G)
        let q = (ProjectivePoint::GENERATOR * u1 + ProjectivePoint::from(point) * u2).to_affine();
        let encoded = q.to_sec1_point(false);
        *key = encoded
            .as_bytes()
            .try_into()
            .map_err(|_| IdBlockError::Identity)?;
    }
    // X then Y big-endian: byte order equals numeric order.
    keys.sort();
    Ok(keys)
}

/// The ID block, ID auth block and ID-key digest Contrast derives for `launch_digest` and
/// the 64-bit guest `policy`. Deterministic: no key exists.
pub fn id_blocks(launch_digest: &[u8; 48], policy: u64) -> Result<IdBlocks, IdBlockError> {
    let block = id_block(launch_digest, policy);
    let mut hash = [0u8; 48];
    hash.copy_from_slice(digest::digest(&SHA384, &block).as_ref());
    let [id_key, _] = recover_fixed_signature_keys(&hash)?;

    let mut auth = vec![0u8; ID_AUTH_LEN];
    auth[0..4].copy_from_slice(&1u32.to_le_bytes()); // ID_KEY_ALGO: ECDSA P-384 SHA-384
    // AUTH_KEY_ALGO stays 0: no author key.
    auth[0x40] = FIXED_R; // ID_BLOCK_SIG.R, little-endian, 72 bytes
    auth[0x40 + 0x48] = FIXED_S; // ID_BLOCK_SIG.S
    auth[0x240..0x240 + ID_KEY_LEN].copy_from_slice(&serialize_id_key(&id_key));
    Ok(IdBlocks {
        id_block: block,
        id_auth: auth,
        id_key_sec1: id_key,
        id_key_digest: id_key_digest(&id_key),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use p384::ecdsa::signature::hazmat::PrehashVerifier;
    use p384::ecdsa::{Signature, VerifyingKey};

    fn fixed_signature() -> Signature {
        let mut r = [0u8; 48];
        r[47] = FIXED_R;
        let mut s = [0u8; 48];
        s[47] = FIXED_S;
        Signature::from_scalars(r, s).unwrap()
    }

    #[test]
    fn both_recovered_keys_verify_the_fixed_signature() {
        // Second method: ECDSA verification (u1·G + u2·Q, x mod n == r) with p384's
        // verifier accepts (2, 1) under each recovered key and no other digest.
        let blocks = id_blocks(&[0x11; 48], 0x30000).unwrap();
        let mut hash = [0u8; 48];
        hash.copy_from_slice(digest::digest(&SHA384, &blocks.id_block).as_ref());
        let keys = recover_fixed_signature_keys(&hash).unwrap();
        assert_ne!(keys[0], keys[1]);
        assert!(keys[0] < keys[1]);
        for key in keys {
            let vk = VerifyingKey::from_sec1_bytes(&key).unwrap();
            vk.verify_prehash(&hash, &fixed_signature()).unwrap();
            let mut other = hash;
            other[0] ^= 1;
            assert!(vk.verify_prehash(&other, &fixed_signature()).is_err());
        }
        assert_eq!(blocks.id_key_sec1, keys[0]);
    }

    #[test]
    fn blocks_have_the_layout_of_the_snp_abi() {
        let blocks = id_blocks(&[0xab; 48], 0x30000).unwrap();
        let b = &blocks.id_block;
        assert_eq!(&b[..48], &[0xab; 48]);
        assert_eq!(b[0x30], 1);
        assert_eq!(b[0x40], 2);
        assert_eq!(
            &b[0x50..0x60],
            &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0]
        );
        let a = &blocks.id_auth;
        assert_eq!(a.len(), 4096);
        assert_eq!(&a[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(a[0x40], 2);
        assert_eq!(a[0x88], 1);
        assert_eq!(&a[0x240..0x244], &[2, 0, 0, 0]);
        let key = &a[0x240..0x644];
        assert_eq!(
            digest::digest(&SHA384, key).as_ref(),
            &blocks.id_key_digest[..]
        );
        // X little-endian at 0x244: its first byte is the last of the big-endian X.
        assert_eq!(key[4], blocks.id_key_sec1[48]);
        assert!(a[0x644..].iter().all(|&x| x == 0));
    }
}
