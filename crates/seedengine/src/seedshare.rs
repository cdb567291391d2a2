//! Seed shares: the seed encrypted to each seedshare owner (docs/protocol.md §3.2).
//!
//! Each entry of the manifest's `SeedshareOwnerPubKeys` (hex of a PKCS#1 DER RSA public
//! key) gets the seed encrypted with RSA-OAEP, SHA-256 as hash and MGF1 hash, label ASCII
//! `seedshare` ([`SEED_SHARE_LABEL`]). The salt is not encrypted. The Coordinator returns the
//! [`SeedShareDocument`] once, on the first SetManifest; the CLI stores it as
//! `seed-shares.json` ([`SeedShareDocument::to_json`]) and `contrast recover` decrypts the
//! share for the user's key ([`decrypt_seed_share`]).
//!
//! RSA-OAEP runs on aws-lc-rs (the project's crypto provider, with OAEP labels and a
//! constant-time decryption); the `rsa` crate only parses and encodes PKCS#1/PKIX, the same
//! parser the manifest validator uses for these keys.

use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use contrast_go_json::{newline_indent, write_go_string};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::SeedEngineError;
use crate::engine::check_seed_and_salt;
use crate::keys::{SeedshareOwnerKey, oaep_public_key};

/// The OAEP label of seed shares.
pub const SEED_SHARE_LABEL: &[u8] = b"seedshare";

/// The seed encrypted to one owner (`userapi.SeedShare`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedShare {
    /// The owner's key as the manifest lists it: hex of the PKCS#1 DER public key.
    pub public_key: String,
    /// RSA-OAEP-SHA256 ciphertext of the seed (label `seedshare`).
    pub encrypted_seed: Vec<u8>,
}

/// All seed shares and the salt (`userapi.SeedShareDocument`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedShareDocument {
    /// One share per seedshare owner, in manifest order.
    pub seed_shares: Vec<SeedShare>,
    /// The seed engine's salt, in the clear.
    pub salt: Vec<u8>,
}

/// Encrypts `seed` to every owner (hex of a PKCS#1 DER RSA public key, as in the manifest's
/// `SeedshareOwnerPubKeys`). A bad entry is an error naming its index. Each share keeps the
/// owner's string as given.
pub fn encrypt_seed_shares<S: AsRef<str>>(
    seed: &[u8],
    salt: &[u8],
    owners: &[S],
) -> Result<SeedShareDocument, SeedEngineError> {
    check_seed_and_salt(seed.len(), salt.len())?;
    let mut seed_shares = Vec::with_capacity(owners.len());
    for (index, owner) in owners.iter().enumerate() {
        let owner = owner.as_ref();
        let der = hex::decode(owner).map_err(|e| SeedEngineError::OwnerKeyNotHex {
            index,
            reason: e.to_string(),
        })?;
        let key = oaep_public_key(&der)
            .map_err(|reason| SeedEngineError::OwnerKeyInvalid { index, reason })?;
        let mut ciphertext = vec![0u8; key.ciphertext_size()];
        let len = key
            .encrypt(
                &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                seed,
                &mut ciphertext,
                Some(SEED_SHARE_LABEL),
            )
            .map_err(|_| SeedEngineError::SeedShareEncrypt { index })?
            .len();
        ciphertext.truncate(len);
        seed_shares.push(SeedShare {
            public_key: owner.to_string(),
            encrypted_seed: ciphertext,
        });
    }
    Ok(SeedShareDocument {
        seed_shares,
        salt: salt.to_vec(),
    })
}

/// Decrypts the share of `owner`: the first share whose `PublicKey` is the hex of the
/// owner's PKCS#1 DER public key (hex compared case-insensitively). Returns the seed and
/// the salt, both checked as [`crate::SeedEngine::new`] would.
pub fn decrypt_seed_share(
    doc: &SeedShareDocument,
    owner: &SeedshareOwnerKey,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), SeedEngineError> {
    let own = owner.public_key_pkcs1_der();
    let share = doc
        .seed_shares
        .iter()
        .find(|share| hex::decode(&share.public_key).is_ok_and(|der| der == own))
        .ok_or_else(|| SeedEngineError::NoMatchingSeedShare {
            shares: doc.seed_shares.len(),
            public_key_prefix: owner.public_key_hex().chars().take(32).collect(),
        })?;
    let seed = owner.decrypt_oaep(&share.encrypted_seed, SEED_SHARE_LABEL)?;
    check_seed_and_salt(seed.len(), doc.salt.len())?;
    Ok((seed, doc.salt.clone()))
}

impl SeedShareDocument {
    /// `seed-shares.json` as Contrast writes it: Go's `json.MarshalIndent(doc, "", "  ")`
    /// of the protobuf struct, no trailing newline. Keys `SeedShares` (each
    /// `{"PublicKey": hex, "EncryptedSeed": base64}`) and `salt` (base64, standard
    /// alphabet, padded). The struct tags carry `omitempty`, so empty fields are left out.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = String::from("{");
        let mut first = true;
        if !self.seed_shares.is_empty() {
            member(&mut out, &mut first, 1, "SeedShares");
            out.push('[');
            for (i, share) in self.seed_shares.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(&mut out, 2);
                write_share(&mut out, share);
            }
            newline_indent(&mut out, 1);
            out.push(']');
        }
        if !self.salt.is_empty() {
            member(&mut out, &mut first, 1, "salt");
            write_go_string(&mut out, &BASE64.encode(&self.salt));
        }
        if !first {
            newline_indent(&mut out, 0);
        }
        out.push('}');
        out.into_bytes()
    }

    /// Reads `seed-shares.json`. Strict: keys as Contrast writes them (unknown or repeated
    /// keys, `null`, wrong types and trailing data are refused), `PublicKey` must be hex,
    /// `EncryptedSeed` and `salt` standard padded base64. Missing keys are empty, as Go
    /// reads them.
    pub fn from_json(bytes: &[u8]) -> Result<SeedShareDocument, SeedEngineError> {
        let MapOnly(raw): MapOnly<RawDocument> =
            serde_json::from_slice(bytes).map_err(|e| SeedEngineError::SeedShareJson {
                reason: format!("{e}; expected the seed-shares.json written by `contrast set`"),
            })?;
        let mut seed_shares = Vec::with_capacity(raw.seed_shares.len());
        for (i, MapOnly(share)) in raw.seed_shares.into_iter().enumerate() {
            if hex::decode(&share.public_key).is_err() {
                return Err(SeedEngineError::SeedShareJson {
                    reason: format!("SeedShares[{i}].PublicKey is not hex"),
                });
            }
            let encrypted_seed = decode_base64(&share.encrypted_seed, || {
                format!("SeedShares[{i}].EncryptedSeed")
            })?;
            seed_shares.push(SeedShare {
                public_key: share.public_key,
                encrypted_seed,
            });
        }
        let salt = decode_base64(&raw.salt, || "salt".to_string())?;
        Ok(SeedShareDocument { seed_shares, salt })
    }
}

fn decode_base64(text: &str, path: impl Fn() -> String) -> Result<Vec<u8>, SeedEngineError> {
    BASE64
        .decode(text)
        .map_err(|e| SeedEngineError::SeedShareJson {
            reason: format!("{} is not standard padded base64 ({e})", path()),
        })
}

// The serde derive refuses unknown and repeated fields by itself; key spelling is exact.
// `MapOnly` keeps it from also accepting an array of field values.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(rename = "SeedShares", default)]
    seed_shares: Vec<MapOnly<RawShare>>,
    #[serde(default)]
    salt: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShare {
    #[serde(rename = "PublicKey", default)]
    public_key: String,
    #[serde(rename = "EncryptedSeed", default)]
    encrypted_seed: String,
}

/// A struct read only from a JSON object.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(MapOnly)
    }
}

fn write_share(out: &mut String, share: &SeedShare) {
    out.push('{');
    let mut first = true;
    if !share.public_key.is_empty() {
        member(out, &mut first, 3, "PublicKey");
        // Hex never needs escaping; Go's escaping matters only for a key set by hand.
        write_go_string(out, &share.public_key);
    }
    if !share.encrypted_seed.is_empty() {
        member(out, &mut first, 3, "EncryptedSeed");
        write_go_string(out, &BASE64.encode(&share.encrypted_seed));
    }
    if !first {
        newline_indent(out, 2);
    }
    out.push('}');
}

/// Starts an object member at `depth`: separator, newline, indent, key, `": "`.
fn member(out: &mut String, first: &mut bool, depth: usize, key: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    newline_indent(out, depth);
    write_go_string(out, key);
    out.push_str(": ");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn doc() -> SeedShareDocument {
        SeedShareDocument {
            seed_shares: vec![
                SeedShare {
                    public_key: "3008020301000102010f".into(),
                    encrypted_seed: vec![0xfb, 0xff, 0x00, 0x01],
                },
                SeedShare {
                    public_key: "abcd".into(),
                    encrypted_seed: b"hello".to_vec(),
                },
            ],
            salt: (0u8..32).collect(),
        }
    }

    // Hand-written from Go's MarshalIndent rules: two-space indent, `": "`, no trailing
    // newline; base64 standard with padding (fb ff 00 01 → "+/8AAQ==").
    const GOLDEN: &str = r#"{
  "SeedShares": [
    {
      "PublicKey": "3008020301000102010f",
      "EncryptedSeed": "+/8AAQ=="
    },
    {
      "PublicKey": "abcd",
      "EncryptedSeed": "aGVsbG8="
    }
  ],
  "salt": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
}"#;

    #[test]
    fn writes_exactly_what_go_writes() {
        assert_eq!(String::from_utf8(doc().to_json()).unwrap(), GOLDEN);
        assert_eq!(
            SeedShareDocument::from_json(GOLDEN.as_bytes()).unwrap(),
            doc()
        );
    }

    #[test]
    fn omits_empty_fields_like_omitempty() {
        assert_eq!(SeedShareDocument::default().to_json(), b"{}");
        let only_salt = SeedShareDocument {
            seed_shares: vec![],
            salt: vec![1, 2, 3],
        };
        assert_eq!(
            String::from_utf8(only_salt.to_json()).unwrap(),
            "{\n  \"salt\": \"AQID\"\n}"
        );
        let empty_share = SeedShareDocument {
            seed_shares: vec![SeedShare {
                public_key: String::new(),
                encrypted_seed: vec![],
            }],
            salt: vec![],
        };
        assert_eq!(
            String::from_utf8(empty_share.to_json()).unwrap(),
            "{\n  \"SeedShares\": [\n    {}\n  ]\n}"
        );
        assert_eq!(
            SeedShareDocument::from_json(b"{}").unwrap(),
            SeedShareDocument::default()
        );
    }

    #[test]
    fn escapes_like_go() {
        let mut out = String::new();
        write_go_string(&mut out, "a<b>&\"\\\n\u{1}\u{2028}");
        assert_eq!(out, r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028""#);
    }

    #[test]
    fn from_json_refusals_name_the_problem() {
        let cases: [(&str, &str); 10] = [
            ("", "EOF"),
            ("[]", "expected a JSON object"),
            (
                r#"{"SeedShares": [["ab", "AA=="]]}"#,
                "expected a JSON object",
            ),
            (r#"{"salt": null}"#, "invalid type: null"),
            (r#"{"Salt": "AA=="}"#, "unknown field `Salt`"),
            (
                r#"{"salt": "AA==", "salt": "AA=="}"#,
                "duplicate field `salt`",
            ),
            (r#"{"salt": "AA"}"#, "salt is not standard padded base64"),
            (r#"{"salt": "AA=="} x"#, "trailing characters"),
            (
                r#"{"SeedShares": [{"PublicKey": "xyz", "EncryptedSeed": "AA=="}]}"#,
                "SeedShares[0].PublicKey is not hex",
            ),
            (
                r#"{"SeedShares": [{"PublicKey": "ab", "EncryptedSeed": "-_=="}]}"#,
                "SeedShares[0].EncryptedSeed is not standard padded base64",
            ),
        ];
        for (input, want) in cases {
            let err = SeedShareDocument::from_json(input.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{input}: {err}");
        }
        let err =
            SeedShareDocument::from_json(br#"{"SeedShares": [{"Owner": "ab"}]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `Owner`"), "{err}");
    }

    #[test]
    fn encrypt_refuses_bad_owners_naming_the_index() {
        let seed = [7u8; 64];
        let salt = [9u8; 32];
        let err = encrypt_seed_shares(&seed, &salt, &["zz"]).unwrap_err();
        assert!(matches!(
            err,
            SeedEngineError::OwnerKeyNotHex { index: 0, .. }
        ));
        assert!(err.to_string().contains("key 0"), "{err}");
        let err = encrypt_seed_shares(&seed, &salt, &["", "3000"]).unwrap_err();
        assert!(
            matches!(err, SeedEngineError::OwnerKeyInvalid { index: 0, .. }),
            "{err}"
        );
        // A valid PKCS#1 structure but far too small for OAEP: n = 0xff (8 bits), e = 3.
        let err = encrypt_seed_shares(&seed, &salt, &["3007020200ff020103"]).unwrap_err();
        assert!(
            matches!(err, SeedEngineError::OwnerKeyInvalid { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn encrypt_checks_seed_and_salt() {
        let none: [&str; 0] = [];
        assert!(matches!(
            encrypt_seed_shares(&[1; 64], &[2; 31], &none).unwrap_err(),
            SeedEngineError::SaltLength { len: 31 }
        ));
        assert!(matches!(
            encrypt_seed_shares(&[1; 16], &[2; 32], &none).unwrap_err(),
            SeedEngineError::SeedTooShort { len: 16, .. }
        ));
        let doc = encrypt_seed_shares(&[1; 64], &[2; 32], &none).unwrap();
        assert!(doc.seed_shares.is_empty());
        assert_eq!(doc.salt, vec![2; 32]);
    }
}
