//! C2SP det-keygen known answers: every vector of FiloSottile/keygen's testdata/ecdsa.json
//! (tests/data/PROVENANCE.md).
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use contrast_seedengine::det_keygen::{DetKeygenCurve, p384_from_seed, scalar_from_seed};
use p384::pkcs8::DecodePrivateKey;

struct Vector {
    curve: DetKeygenCurve,
    seed: Vec<u8>,
    pkcs8: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("data/c2sp-det-keygen-ecdsa.json")).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            curve: match v["curve"].as_str().unwrap() {
                "secp224r1" => DetKeygenCurve::P224,
                "secp256r1" => DetKeygenCurve::P256,
                "secp384r1" => DetKeygenCurve::P384,
                "secp521r1" => DetKeygenCurve::P521,
                other => panic!("unknown curve {other}"),
            },
            seed: BASE64.decode(v["seed"].as_str().unwrap()).unwrap(),
            pkcs8: BASE64
                .decode(v["private_key_pkcs8"].as_str().unwrap())
                .unwrap(),
        })
        .collect()
}

/// The private scalar of a PKCS#8 EC key: PrivateKeyInfo.privateKey is an RFC 5915
/// ECPrivateKey, `SEQUENCE { INTEGER 1, OCTET STRING d, ... }`.
fn scalar_of(pkcs8: &[u8]) -> Vec<u8> {
    let info = p384::pkcs8::PrivateKeyInfoRef::try_from(pkcs8).unwrap();
    let ec = info.private_key.as_bytes();
    assert_eq!(ec[0], 0x30, "ECPrivateKey is a SEQUENCE");
    let header = if ec[1] & 0x80 == 0 {
        2
    } else {
        2 + usize::from(ec[1] & 0x7f)
    };
    let body = &ec[header..];
    assert_eq!(
        &body[..4],
        &[0x02, 0x01, 0x01, 0x04],
        "version 1, then OCTET STRING"
    );
    let len = usize::from(body[4]);
    body[5..5 + len].to_vec()
}

// Includes the P-256 seed b432f9be30890480298218510559aed7, whose first sample is ≥ n and
// which only matches if the single retry (C2SP step 11) is implemented.
#[test]
fn every_vector_matches() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 21);
    for v in &vectors {
        let want = scalar_of(&v.pkcs8);
        assert_eq!(want.len(), v.curve.scalar_len());
        let got = scalar_from_seed(v.curve, &v.seed).unwrap();
        assert_eq!(
            hex::encode(&*got),
            hex::encode(&want),
            "{:?} seed {}",
            v.curve,
            hex::encode(&v.seed)
        );
    }
}

#[test]
fn every_p384_vector_gives_the_same_key_pair() {
    let p384: Vec<_> = vectors()
        .into_iter()
        .filter(|v| v.curve == DetKeygenCurve::P384)
        .collect();
    assert_eq!(p384.len(), 5);
    for v in &p384 {
        let want = p384::SecretKey::from_pkcs8_der(&v.pkcs8).unwrap();
        let got = p384_from_seed(&v.seed).unwrap();
        assert_eq!(got.to_bytes(), want.to_bytes());
        // The vector's PKCS#8 carries the public key too; p384 checked it against d.
        assert_eq!(got.public_key(), want.public_key());
    }
}
