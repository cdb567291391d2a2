//! Seed shares and owner keys against files written by other implementations
//! (OpenSSL keys, a seed-shares.json encrypted with Python's `cryptography`; see
//! tests/data/PROVENANCE.md).
#![allow(clippy::unwrap_used)]

use contrast_seedengine::keys::{
    SeedshareOwnerKey, WorkloadOwnerKey, seedshare_owner_public_key_hex,
};
use contrast_seedengine::{
    SeedEngine, SeedEngineError, SeedShareDocument, decrypt_seed_share, encrypt_seed_shares,
};
use p384::pkcs8::der::pem::{LineEnding, encode_string};

const OWNER_A_PEM: &str = include_str!("data/seedshare-owner-a.pem");
const OWNER_A_PUB_PEM: &str = include_str!("data/seedshare-owner-a.pub.pem");
const OWNER_A_PUB_HEX: &str = include_str!("data/seedshare-owner-a.pub.hex");
const OWNER_B_PEM: &str = include_str!("data/seedshare-owner-b.pem");
const OWNER_B_PKCS8_PEM: &str = include_str!("data/seedshare-owner-b.pkcs8.pem");
const OWNER_B_PUB_HEX: &str = include_str!("data/seedshare-owner-b.pub.hex");
const WORKLOAD_OWNER_PEM: &str = include_str!("data/workload-owner.pem");
const WORKLOAD_OWNER_DIGEST: &str = include_str!("data/workload-owner.digest");
const SEED_SHARES_JSON: &[u8] = include_bytes!("data/seed-shares.json");

fn owner_a() -> SeedshareOwnerKey {
    SeedshareOwnerKey::from_pem(OWNER_A_PEM.as_bytes()).unwrap()
}

fn owner_b() -> SeedshareOwnerKey {
    SeedshareOwnerKey::from_pem(OWNER_B_PEM.as_bytes()).unwrap()
}

fn fixture_seed() -> Vec<u8> {
    (0x40u8..0x80).collect()
}

fn fixture_salt() -> Vec<u8> {
    (0xe0u8..=0xff).collect()
}

#[test]
fn seedshare_owner_key_from_openssl() {
    let a = owner_a();
    assert_eq!(a.public_key_hex(), OWNER_A_PUB_HEX);
    assert_eq!(hex::encode(a.public_key_pkcs1_der()), OWNER_A_PUB_HEX);
    // PKCS#1 PEM is written back byte for byte (OpenSSL and Go both write canonical DER).
    assert_eq!(&*a.to_pem().unwrap(), OWNER_A_PEM);
    let debug = format!("{a:?}");
    assert!(debug.contains("4096"), "{debug}");
    assert!(!debug.contains(&hex::encode(&a.pkcs1_der()[100..116])));

    // PKCS#8 input is read and written back as PKCS#1.
    let b = SeedshareOwnerKey::from_pem(OWNER_B_PKCS8_PEM.as_bytes()).unwrap();
    assert_eq!(b.public_key_hex(), OWNER_B_PUB_HEX);
    assert_eq!(&*b.to_pem().unwrap(), OWNER_B_PEM);
}

#[test]
fn seedshare_owner_key_refusals() {
    let err = SeedshareOwnerKey::from_pem(WORKLOAD_OWNER_PEM.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("`EC PRIVATE KEY`"), "{err}");
    let err = SeedshareOwnerKey::from_pem(OWNER_A_PUB_PEM.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("`PUBLIC KEY`"), "{err}");
    let garbage = encode_string("RSA PRIVATE KEY", LineEnding::LF, &[0x30, 0x03, 2, 1, 0]).unwrap();
    let err = SeedshareOwnerKey::from_pem(garbage.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("PKCS#1"), "{err}");
    // An EC key in PKCS#8 is not an RSA key.
    let ec_pkcs8 = WorkloadOwnerKey::from_pem(WORKLOAD_OWNER_PEM.as_bytes())
        .unwrap()
        .pkcs8_der()
        .unwrap();
    let ec_pem = encode_string("PRIVATE KEY", LineEnding::LF, &ec_pkcs8).unwrap();
    let err = SeedshareOwnerKey::from_pem(ec_pem.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("not an RSA key"), "{err}");
}

#[test]
fn owner_public_key_hex_from_any_pem_form() {
    let want = OWNER_A_PUB_HEX;
    // PKIX `PUBLIC KEY` (what `openssl rsa -pubout` writes) is converted to PKCS#1.
    assert_eq!(
        seedshare_owner_public_key_hex(OWNER_A_PUB_PEM.as_bytes()).unwrap(),
        want
    );
    // A private key gives its public key.
    assert_eq!(
        seedshare_owner_public_key_hex(OWNER_A_PEM.as_bytes()).unwrap(),
        want
    );
    let pkcs1 = hex::decode(want).unwrap();
    // `RSA PUBLIC KEY` (PKCS#1), and PKCS#1 bytes under `PUBLIC KEY` (Contrast takes the
    // block as-is).
    for label in ["RSA PUBLIC KEY", "PUBLIC KEY"] {
        let pem_text = encode_string(label, LineEnding::LF, &pkcs1).unwrap();
        assert_eq!(
            seedshare_owner_public_key_hex(pem_text.as_bytes()).unwrap(),
            want
        );
    }
    assert_eq!(
        seedshare_owner_public_key_hex(OWNER_B_PKCS8_PEM.as_bytes()).unwrap(),
        OWNER_B_PUB_HEX
    );
}

#[test]
fn owner_public_key_hex_refusals() {
    let err = seedshare_owner_public_key_hex(WORKLOAD_OWNER_PEM.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("`EC PRIVATE KEY`"), "{err}");
    let ec_public = WorkloadOwnerKey::from_pem(WORKLOAD_OWNER_PEM.as_bytes())
        .unwrap()
        .public_key_der()
        .to_vec();
    let pem_text = encode_string("PUBLIC KEY", LineEnding::LF, &ec_public).unwrap();
    let err = seedshare_owner_public_key_hex(pem_text.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("not an RSA public key"), "{err}");
    // A well-formed but tiny RSA key cannot carry a seed share.
    let tiny = encode_string(
        "RSA PUBLIC KEY",
        LineEnding::LF,
        &hex::decode("3007020200ff020103").unwrap(),
    )
    .unwrap();
    assert!(seedshare_owner_public_key_hex(tiny.as_bytes()).is_err());
    assert!(seedshare_owner_public_key_hex(b"").is_err());
}

#[test]
fn decrypts_a_document_written_by_another_implementation() {
    let doc = SeedShareDocument::from_json(SEED_SHARES_JSON).unwrap();
    assert_eq!(doc.seed_shares.len(), 2);
    // Byte-compatible writer: re-encoding gives the file back exactly.
    assert_eq!(doc.to_json(), SEED_SHARES_JSON);
    for owner in [owner_a(), owner_b()] {
        let (seed, salt) = decrypt_seed_share(&doc, &owner).unwrap();
        assert_eq!(&seed[..], &fixture_seed()[..]);
        assert_eq!(salt, fixture_salt());
    }
}

#[test]
fn encrypt_then_decrypt_through_the_json_file() {
    let engine = SeedEngine::generate().unwrap();
    let owners = [OWNER_A_PUB_HEX.to_string(), OWNER_B_PUB_HEX.to_uppercase()];
    let doc = encrypt_seed_shares(engine.seed(), engine.salt(), &owners).unwrap();
    // The PublicKey is the owner string as given; ciphertexts are modulus-sized.
    assert_eq!(doc.seed_shares[0].public_key, owners[0]);
    assert_eq!(doc.seed_shares[1].public_key, owners[1]);
    assert_eq!(doc.seed_shares[0].encrypted_seed.len(), 512);
    assert_eq!(doc.seed_shares[1].encrypted_seed.len(), 256);

    let read = SeedShareDocument::from_json(&doc.to_json()).unwrap();
    assert_eq!(read, doc);
    for owner in [owner_a(), owner_b()] {
        let (seed, salt) = decrypt_seed_share(&read, &owner).unwrap();
        assert_eq!(&seed[..], engine.seed());
        let recovered = SeedEngine::new(&seed, &salt).unwrap();
        assert_eq!(
            recovered.root_ca_key().to_bytes(),
            engine.root_ca_key().to_bytes()
        );
    }
}

#[test]
fn decrypt_refusals() {
    let doc = SeedShareDocument::from_json(SEED_SHARES_JSON).unwrap();

    // Only owner b's share: owner a has none.
    let only_b = SeedShareDocument {
        seed_shares: vec![doc.seed_shares[1].clone()],
        salt: doc.salt.clone(),
    };
    let err = decrypt_seed_share(&only_b, &owner_a()).unwrap_err();
    assert!(
        matches!(err, SeedEngineError::NoMatchingSeedShare { shares: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&OWNER_A_PUB_HEX[..32]), "{err}");

    // A share listed for owner a but encrypted to owner b does not decrypt.
    let mut swapped = SeedShareDocument {
        seed_shares: vec![doc.seed_shares[0].clone()],
        salt: doc.salt.clone(),
    };
    swapped.seed_shares[0].encrypted_seed = doc.seed_shares[1].encrypted_seed.clone();
    let err = decrypt_seed_share(&swapped, &owner_a()).unwrap_err();
    assert!(matches!(err, SeedEngineError::SeedShareDecrypt), "{err}");

    // A flipped ciphertext bit does not decrypt.
    let mut tampered = doc.clone();
    tampered.seed_shares[0].encrypted_seed[100] ^= 1;
    assert!(matches!(
        decrypt_seed_share(&tampered, &owner_a()).unwrap_err(),
        SeedEngineError::SeedShareDecrypt
    ));

    // RSA-OAEP-SHA256 to the right key but without the `seedshare` label does not decrypt.
    let (_, spki) = p384::pkcs8::der::pem::decode_vec(OWNER_A_PUB_PEM.as_bytes()).unwrap();
    let public = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(
        aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki).unwrap(),
    )
    .unwrap();
    let mut ciphertext = vec![0u8; public.ciphertext_size()];
    public
        .encrypt(
            &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
            &fixture_seed(),
            &mut ciphertext,
            None,
        )
        .unwrap();
    let mut unlabelled = doc.clone();
    unlabelled.seed_shares[0].encrypted_seed = ciphertext;
    assert!(matches!(
        decrypt_seed_share(&unlabelled, &owner_a()).unwrap_err(),
        SeedEngineError::SeedShareDecrypt
    ));

    // A salt of the wrong length is refused before it reaches the Coordinator.
    let mut wrong_salt = doc.clone();
    wrong_salt.salt.pop();
    assert!(matches!(
        decrypt_seed_share(&wrong_salt, &owner_a()).unwrap_err(),
        SeedEngineError::SaltLength { len: 31 }
    ));
}

#[test]
fn generated_seedshare_owner_key_round_trips() {
    // The only RSA-4096 generation in the tests.
    let key = SeedshareOwnerKey::generate().unwrap();
    let pem_text = key.to_pem().unwrap();
    assert!(pem_text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    let back = SeedshareOwnerKey::from_pem(pem_text.as_bytes()).unwrap();
    assert_eq!(back.public_key_hex(), key.public_key_hex());
    // RSA-4096 PKCS#1 public key: 526 bytes of DER.
    assert_eq!(key.public_key_pkcs1_der().len(), 526);
    let doc = encrypt_seed_shares(&[5; 64], &[6; 32], &[key.public_key_hex()]).unwrap();
    let (seed, _) = decrypt_seed_share(&doc, &back).unwrap();
    assert_eq!(&seed[..], &[5; 64]);
    let fixture = SeedShareDocument::from_json(SEED_SHARES_JSON).unwrap();
    assert!(matches!(
        decrypt_seed_share(&fixture, &key).unwrap_err(),
        SeedEngineError::NoMatchingSeedShare { shares: 2, .. }
    ));
}

#[test]
fn workload_owner_key_from_openssl() {
    let key = WorkloadOwnerKey::from_pem(WORKLOAD_OWNER_PEM.as_bytes()).unwrap();
    // SHA-256 over the PKIX DER, as `openssl ec -pubout -outform DER | sha256sum` gives.
    assert_eq!(key.digest_hex(), WORKLOAD_OWNER_DIGEST);
    assert_eq!(hex::encode(key.digest()), WORKLOAD_OWNER_DIGEST);
    // SEC1 with curve OID and public key: OpenSSL's file comes back byte for byte.
    assert_eq!(&*key.to_pem().unwrap(), WORKLOAD_OWNER_PEM);
}

#[test]
fn workload_owner_key_must_be_p384() {
    let err = WorkloadOwnerKey::from_pem(include_bytes!("data/ec-p256.pem")).unwrap_err();
    assert!(err.to_string().contains("P-384"), "{err}");
    let err = WorkloadOwnerKey::from_pem(OWNER_B_PKCS8_PEM.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("P-384"), "{err}");
    let err = WorkloadOwnerKey::from_pem(OWNER_A_PEM.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("`RSA PRIVATE KEY`"), "{err}");
    assert!(
        contrast_seedengine::keys::p384_from_sec1_pem(include_bytes!("data/ec-p256.pem")).is_err()
    );
}
