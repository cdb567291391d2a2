//! The workload secret and the keyslot passphrases derived from it.
//!
//! The Initializer writes the workload secret as 128 lowercase hex characters (64 bytes,
//! no newline) to `/contrast/secrets/workload-secret-seed` (docs/protocol.md §4.3).
//!
//! Our keyslot passphrase is
//!
//! ```text
//! HKDF-SHA256(IKM = workload secret (64 bytes), salt = empty,
//!             info = "contrast-luks/v1/keyslot-passphrase:" ‖ device path (UTF-8))
//! ```
//!
//! with 32 bytes of output, used as raw bytes. The label names the purpose (the passphrase
//! of a LUKS keyslot, version 1 of this scheme) and the device identity: the device path
//! as configured (`/dev/csi0` for Contrast's secure-pv), not canonicalised, so that it stays
//! stable when the kernel names the device differently. A volume formatted for one path
//! therefore opens only at that path. The prefix is fixed and the path is everything after
//! it, so different paths never give the same label.
//!
//! The secret is 512 uniformly random bits, so the keyslot needs no slow KDF: stretching a
//! key that cannot be guessed only costs start-up time.
//!
//! Contrast's own volumes use the hex text of the secret itself as passphrase, stretched
//! with argon2id (docs/protocol.md §12.2): [`WorkloadSecret::contrast_passphrase`].

use std::fmt;
use std::path::Path;

use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use crate::error::SecretError;

/// Length of the workload secret in bytes.
pub const WORKLOAD_SECRET_LEN: usize = 64;

/// Length of our derived keyslot passphrase in bytes.
pub const PASSPHRASE_LEN: usize = 32;

/// The HKDF label prefix; the device path follows it.
pub const PASSPHRASE_LABEL_PREFIX: &str = "contrast-luks/v1/keyslot-passphrase:";

/// The workload secret: 64 bytes, zeroized on drop, never printed.
#[derive(Clone)]
pub struct WorkloadSecret(Zeroizing<[u8; WORKLOAD_SECRET_LEN]>);

impl fmt::Debug for WorkloadSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkloadSecret(<redacted>)")
    }
}

impl WorkloadSecret {
    /// Wraps 64 secret bytes.
    pub fn from_bytes(bytes: [u8; WORKLOAD_SECRET_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Decodes the secret file's text: exactly 128 lowercase hex characters. Upper case is
    /// refused because Contrast's passphrase is this text, and the Initializer writes lower
    /// case; accepting another spelling would give a different passphrase.
    pub fn from_hex(text: &[u8]) -> Result<Self, SecretError> {
        if text.len() != 2 * WORKLOAD_SECRET_LEN {
            return Err(SecretError::Length { len: text.len() });
        }
        let mut bytes = Zeroizing::new([0u8; WORKLOAD_SECRET_LEN]);
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(SecretError::NotLowerHex { position: 2 * i });
            };
            bytes[i] = (high << 4) | low;
        }
        Ok(Self(bytes))
    }

    /// Reads and decodes the secret file (see [`WorkloadSecret::from_hex`]).
    pub fn read_file(path: &Path) -> Result<Self, SecretError> {
        let text = Zeroizing::new(std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?);
        Self::from_hex(&text).map_err(|e| SecretError::File {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; WORKLOAD_SECRET_LEN] {
        &self.0
    }

    /// Our keyslot passphrase for the device at `device_identity` (see the module
    /// documentation for the derivation).
    pub fn keyslot_passphrase(&self, device_identity: &str) -> Result<Passphrase, SecretError> {
        struct Len;
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                PASSPHRASE_LEN
            }
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(self.0.as_slice());
        let info = [
            PASSPHRASE_LABEL_PREFIX.as_bytes(),
            device_identity.as_bytes(),
        ];
        let mut out = Zeroizing::new(vec![0u8; PASSPHRASE_LEN]);
        // HKDF-SHA256 refuses only outputs longer than 255 × 32 bytes.
        prk.expand(&info, Len)
            .and_then(|okm| okm.fill(&mut out))
            .map_err(|_| SecretError::Derive)?;
        Ok(Passphrase(out))
    }

    /// Contrast's passphrase: the secret's lowercase hex text, as in the secret file.
    pub fn contrast_passphrase(&self) -> Passphrase {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = Zeroizing::new(Vec::with_capacity(2 * WORKLOAD_SECRET_LEN));
        for byte in self.0.iter() {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        }
        Passphrase(out)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A keyslot passphrase: zeroized on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Passphrase(<{} bytes redacted>)", self.0.len())
    }
}

impl Passphrase {
    /// The passphrase bytes, as given to libcryptsetup (or written to a `--key-file`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secret() -> WorkloadSecret {
        let mut bytes = [0u8; 64];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap();
        }
        WorkloadSecret::from_bytes(bytes)
    }

    /// Known answer computed independently with Python's `hmac`/`hashlib` (RFC 5869
    /// HKDF-SHA256 written out by hand), see tests/data/PROVENANCE.md.
    #[test]
    fn keyslot_passphrase_known_answer() {
        let passphrase = secret().keyslot_passphrase("/dev/csi0").unwrap();
        assert_eq!(
            hex::encode(passphrase.as_bytes()),
            "9598a0d3ed5e1c4ad216d4bcf16c9d49290d419275aca5f54118f54d86631f02"
        );
    }

    #[test]
    fn passphrase_depends_on_device_identity() {
        let s = secret();
        assert_ne!(
            s.keyslot_passphrase("/dev/csi0").unwrap().as_bytes(),
            s.keyslot_passphrase("/dev/csi1").unwrap().as_bytes()
        );
        assert_eq!(
            s.keyslot_passphrase("/dev/csi0").unwrap().as_bytes().len(),
            32
        );
    }

    #[test]
    fn hex_round_trip_gives_contrast_passphrase() {
        let text: Vec<u8> = (0..64u8)
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect();
        let s = WorkloadSecret::from_hex(&text).unwrap();
        assert_eq!(s.as_bytes(), secret().as_bytes());
        assert_eq!(s.contrast_passphrase().as_bytes(), text.as_slice());
    }

    #[test]
    fn refuses_wrong_length_and_newline() {
        let mut text = vec![b'a'; 128];
        text.push(b'\n');
        assert!(matches!(
            WorkloadSecret::from_hex(&text),
            Err(SecretError::Length { len: 129 })
        ));
        assert!(matches!(
            WorkloadSecret::from_hex(&[b'a'; 64]),
            Err(SecretError::Length { len: 64 })
        ));
    }

    #[test]
    fn refuses_upper_case_and_non_hex() {
        let mut text = vec![b'a'; 128];
        text[7] = b'A';
        assert!(matches!(
            WorkloadSecret::from_hex(&text),
            Err(SecretError::NotLowerHex { position: 6 })
        ));
        text[7] = b'g';
        assert!(WorkloadSecret::from_hex(&text).is_err());
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let s = secret();
        let shown = format!("{s:?} {:?}", s.contrast_passphrase());
        assert!(!shown.contains("000102"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
