//! The seed engine: every long-lived Coordinator secret derived from one seed and salt.
//!
//! The Coordinator generates a 64-byte seed and a 32-byte salt on the first SetManifest
//! ([`SeedEngine::generate`]); seedshare owners get the seed back encrypted and return it
//! with the salt to recover a Coordinator ([`SeedEngine::new`]).
//!
//! Derivation (as Contrast's `seedengine.New`): `derive(secret, info)` is HKDF-SHA256
//! (RFC 5869) with IKM = `secret`, salt = the 32-byte salt, info = the ASCII string below,
//! and an output as long as `secret` (64 bytes for a 64-byte seed).
//!
//! | output | IKM | info |
//! |---|---|---|
//! | pod state seed | seed | `POD STATE SECRET` |
//! | history seed (unused by Contrast so far) | seed | `HISTORY SECRET` |
//! | transaction signing seed | seed | `TRANSACTION SIGNING SECRET` |
//! | root CA seed | seed | `ROOT CA SEED` |
//! | workload secret | pod state seed | `WORKLOAD SECRET ID: <id>` (id non-empty) |
//!
//! The root CA key and the transaction signing key are P-384 keys generated from their
//! seeds with C2SP det-keygen ([`crate::det_keygen`]). The mesh CA key is deliberately not
//! derived (a seed holder must not be able to forge mesh certificates offline); see
//! [`crate::keys::random_p384`].

use aws_lc_rs::{hkdf, rand};
use zeroize::Zeroizing;

use crate::SeedEngineError;
use crate::det_keygen::p384_from_seed;

/// The length of a seed the Coordinator generates (`SecretSeedSize`).
pub const SEED_LEN: usize = 64;
/// The shortest seed accepted: the SHA-256 output length, as in Contrast.
pub const MIN_SEED_LEN: usize = 32;
/// The length of the salt (`SecretSeedSaltSize`): the SHA-256 output length.
pub const SALT_LEN: usize = 32;
/// HKDF-SHA256 produces at most 255 blocks, and every derivation is as long as its IKM.
const MAX_SEED_LEN: usize = 255 * 32;

const INFO_POD_STATE: &str = "POD STATE SECRET";
const INFO_HISTORY: &str = "HISTORY SECRET";
const INFO_TRANSACTION_SIGNING: &str = "TRANSACTION SIGNING SECRET";
const INFO_ROOT_CA: &str = "ROOT CA SEED";
const INFO_WORKLOAD_PREFIX: &str = "WORKLOAD SECRET ID: ";

/// The seed, the salt and everything derived from them. Secrets are wiped on drop; the
/// `Debug` output shows only lengths and public keys.
pub struct SeedEngine {
    seed: Zeroizing<Vec<u8>>,
    salt: [u8; SALT_LEN],
    pod_state_seed: Zeroizing<Vec<u8>>,
    history_seed: Zeroizing<Vec<u8>>,
    transaction_signing_seed: Zeroizing<Vec<u8>>,
    root_ca_seed: Zeroizing<Vec<u8>>,
    root_ca_key: p384::SecretKey,
    transaction_signing_key: p384::ecdsa::SigningKey,
}

impl SeedEngine {
    /// Builds the engine from a seed (at least 32 bytes) and a salt (exactly 32 bytes).
    pub fn new(seed: &[u8], salt: &[u8]) -> Result<SeedEngine, SeedEngineError> {
        check_seed_and_salt(seed.len(), salt.len())?;
        let salt: [u8; SALT_LEN] = salt
            .try_into()
            .map_err(|_| SeedEngineError::SaltLength { len: salt.len() })?;

        let pod_state_seed = derive(seed, &salt, INFO_POD_STATE.as_bytes())?;
        let history_seed = derive(seed, &salt, INFO_HISTORY.as_bytes())?;
        let transaction_signing_seed = derive(seed, &salt, INFO_TRANSACTION_SIGNING.as_bytes())?;
        let root_ca_seed = derive(seed, &salt, INFO_ROOT_CA.as_bytes())?;
        let transaction_signing_key =
            p384::ecdsa::SigningKey::from(p384_from_seed(&transaction_signing_seed)?);
        let root_ca_key = p384_from_seed(&root_ca_seed)?;

        Ok(SeedEngine {
            seed: Zeroizing::new(seed.to_vec()),
            salt,
            pod_state_seed,
            history_seed,
            transaction_signing_seed,
            root_ca_seed,
            root_ca_key,
            transaction_signing_key,
        })
    }

    /// A new engine from a fresh random 64-byte seed and 32-byte salt.
    pub fn generate() -> Result<SeedEngine, SeedEngineError> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut seed[..]).map_err(|_| SeedEngineError::Random)?;
        rand::fill(&mut salt).map_err(|_| SeedEngineError::Random)?;
        SeedEngine::new(&seed[..], &salt)
    }

    /// The secret seed.
    pub fn seed(&self) -> &[u8] {
        &self.seed
    }

    /// The salt (not secret; stored beside the seed shares).
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// The pod state seed (IKM of the workload secrets).
    pub fn pod_state_seed(&self) -> &[u8] {
        &self.pod_state_seed
    }

    /// The history seed (derived like Contrast does; Contrast does not use it yet).
    pub fn history_seed(&self) -> &[u8] {
        &self.history_seed
    }

    /// The seed of the transaction signing key.
    pub fn transaction_signing_seed(&self) -> &[u8] {
        &self.transaction_signing_seed
    }

    /// The seed of the root CA key.
    pub fn root_ca_seed(&self) -> &[u8] {
        &self.root_ca_seed
    }

    /// The root CA's P-384 key (deterministic from the seed and salt).
    pub fn root_ca_key(&self) -> &p384::SecretKey {
        &self.root_ca_key
    }

    /// The P-384 key that signs history transitions, as an ECDSA signing key
    /// (deterministic from the seed and salt).
    pub fn transaction_signing_key(&self) -> &p384::ecdsa::SigningKey {
        &self.transaction_signing_key
    }

    /// The workload secret for `workload_secret_id` (as long as the seed).
    pub fn workload_secret(
        &self,
        workload_secret_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SeedEngineError> {
        if workload_secret_id.is_empty() {
            return Err(SeedEngineError::EmptyWorkloadSecretId);
        }
        let info = format!("{INFO_WORKLOAD_PREFIX}{workload_secret_id}");
        derive(&self.pod_state_seed, &self.salt, info.as_bytes())
    }
}

impl std::fmt::Debug for SeedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedEngine")
            .field("seed_len", &self.seed.len())
            .field("salt", &hex::encode(self.salt))
            .finish_non_exhaustive()
    }
}

/// The length checks of [`SeedEngine::new`], shared with seed-share decryption.
pub(crate) fn check_seed_and_salt(seed_len: usize, salt_len: usize) -> Result<(), SeedEngineError> {
    if salt_len != SALT_LEN {
        return Err(SeedEngineError::SaltLength { len: salt_len });
    }
    if seed_len < MIN_SEED_LEN {
        return Err(SeedEngineError::SeedTooShort {
            len: seed_len,
            min: MIN_SEED_LEN,
        });
    }
    if seed_len > MAX_SEED_LEN {
        return Err(SeedEngineError::SeedTooLong {
            len: seed_len,
            max: MAX_SEED_LEN,
        });
    }
    Ok(())
}

/// HKDF-SHA256(IKM = `secret`, `salt`, `info`) with an output as long as `secret`.
fn derive(
    secret: &[u8],
    salt: &[u8; SALT_LEN],
    info: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SeedEngineError> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let info_parts = [info];
    let mut out = Zeroizing::new(vec![0u8; secret.len()]);
    prk.expand(&info_parts, Len(secret.len()))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| SeedEngineError::Hkdf { len: secret.len() })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hex_bytes(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // Contrast's own regression vectors ("Crypto-determinism regression test cases. DO NOT
    // CHANGE!"), from edgelesssys/contrast internal/seedengine/seedengine_test.go (commit
    // 0e56b53354118c479f8fa62f7d635dec867f661a). The keys are Go's
    // x509.MarshalECPrivateKey (SEC1 DER with curve OID and public key).
    struct ContrastCase {
        seed: &'static str,
        salt: &'static str,
        pod_state_seed: &'static str,
        history_seed: &'static str,
        root_ca_key_sec1: &'static str,
        transaction_signing_key_sec1: &'static str,
    }

    const CONTRAST_CASES: [ContrastCase; 2] = [
        ContrastCase {
            seed: "ccebed634ddee7535cd593e1e200b19b780f3906d8782207fa09c59e87a07cb3",
            salt: "8c1b1225c5f6cb7eef6dbd8f77a1e1e149de031d6e3718e660a8b04c8e2b0037",
            pod_state_seed: "e8d42dc81aea4b0d0749b75004f3bb2ad35fd827e05727ac19c31e106ddc2a1f",
            history_seed: "e0f4adb8326ed1bbf99b8291d7a90363113e2ac8ff9d030bcabe5e48b88bf0a6",
            root_ca_key_sec1: "3081a40201010430b17a061a04d93454c9530d247b336a9112a5209da0d0199929484cba350d25159f2ead15d2d1334d6c908dad63ce7ee4a00706052b81040022a16403620004b30650a5c9b1653038ee779d0cef9da66f7207adf6b2a055ddbd13545734b4ababe5f1e6a062ba1694654f2b886fd6ec488ef7742af5cb8a9abd8823981c987d1868ce8708b29baea7963ae4428c7ea29c5d181006b2566dc21f34892c23d482",
            transaction_signing_key_sec1: "3081a402010104305a58b771eef6bd6d2967b933ef3474e71bea849fd2b900f431dafe843d267b0b08875a95f4e442c6863663090c7c8576a00706052b81040022a16403620004f38a9990332aa58557780eff947e75c78a3486bbebce9f80d3e1f98f57b71ceaa207df91394d0eed25307d03ee460785db0afa958567089885e34ea693d861dfaa567fb34e6b3da51de25dfaf2a32aef01fb9d654f895712f1f4468281cd8ee9",
        },
        ContrastCase {
            seed: "1adb326866d5b1e04520d9475f6ff41d3370bec96bbb5045d8dd9d16b3c48274",
            salt: "0d2f1e0360d8476f836b8aa3dde3b1c58a361469a6e4f10cf9ed500a651c1c2b",
            pod_state_seed: "8964f1750fa69bd4107ffb055f3e093cd93064590f6c3ad459b66c3bb19231fd",
            history_seed: "03c95af2f666f44239a92d2cda3a14c3ad9ad776ef06fd97a8873457b9cff7f4",
            root_ca_key_sec1: "3081a402010104303362d867cd3dfa7db3ca6fb3920aa4a5f198ac05bf2eb0190983c969a7e4f47d94c7bc061551800faaecbc321f541d20a00706052b81040022a16403620004308baf73fc4ff32dc16eaae1cf9354ee6d768b6f7636506225f05d2fada7c55beed8d7987c62815de952449359db6baf4e65b311f3c3f191fba8a17e938f4fe88423d96fc5c6edd54bcaea7e9a3047047160243e8ad1d7e0491145694c55b050",
            transaction_signing_key_sec1: "3081a4020101043042ac864deb9da243469f13d6fae37576cfafbc9995bbd094b0e62873f4258099315ef7f2290f84e9163f44559f4a43a0a00706052b81040022a1640362000440d63497d354b85fd794575fe5916a581beeeee59bb63eb99dc3f44627af605040a9f50dfbd351e5b3c65f621e6fe5aedf2f170121201e5baf0e8b958bf8b0eacabe9e204bcd785fd73ae330c2ba8a321ce8aa2b73c52f606861250625cbcbe6",
        },
    ];

    #[test]
    fn matches_contrast_regression_vectors() {
        for case in &CONTRAST_CASES {
            let engine = SeedEngine::new(&hex_bytes(case.seed), &hex_bytes(case.salt)).unwrap();
            assert_eq!(hex::encode(engine.pod_state_seed()), case.pod_state_seed);
            assert_eq!(hex::encode(engine.history_seed()), case.history_seed);
            assert_eq!(
                hex::encode(&*engine.root_ca_key().to_sec1_der().unwrap()),
                case.root_ca_key_sec1
            );
            let tx = p384::SecretKey::from(engine.transaction_signing_key().as_nonzero_scalar());
            assert_eq!(
                hex::encode(&*tx.to_sec1_der().unwrap()),
                case.transaction_signing_key_sec1
            );
        }
    }

    #[test]
    fn matches_contrast_workload_secret_vectors() {
        // Same source as above (TestSeedEngine_DeriveWorkloadSecret).
        let engine = SeedEngine::new(
            &hex_bytes("9c7f285a46704602f8b6d9d4a89193579a979f144a9d8733fddd4f2bbcecd77f"),
            &hex_bytes("6227b2cae740349beaff040af74aa1566ac330e9b54ce0e58f8d5ee47281745a"),
        )
        .unwrap();
        for (id, want) in [
            (
                "workload-1",
                "87668b2d30e7538b5643e42bcc0f1a7b532833f47fcd1293f779d9f2abf9e708",
            ),
            (
                "emoji-pod ",
                "345f575cdd9fa8fbe61d35186266aaadd440a06db34beb52d85e3b678dc29e01",
            ),
            (
                "   ",
                "4874199bd19baf510bc5a5c71918c5263be4fb870efcf1bdd73e17249e3cb385",
            ),
            (
                "12345",
                "c5dfeb23e39da9807d6260e6825d8367b47052fcb6bb4c79624fc5936921a0d0",
            ),
        ] {
            assert_eq!(
                hex::encode(&*engine.workload_secret(id).unwrap()),
                want,
                "{id:?}"
            );
        }
    }

    // A 64-byte seed as the Coordinator generates. Expected values computed independently
    // with Python 3 (`python3 det_keygen.py engine` in tests/data/scripts/): HKDF written
    // out with hmac/hashlib (cross-checked against the `cryptography` package's HKDF), and
    // det-keygen written from the C2SP text (`det_keygen.py check` passes all 21 C2SP
    // vectors).
    const SEED_64: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
    const SALT: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

    #[test]
    fn derives_the_table_for_a_64_byte_seed() {
        let engine = SeedEngine::new(&hex_bytes(SEED_64), &hex_bytes(SALT)).unwrap();
        assert_eq!(engine.seed(), &hex_bytes(SEED_64)[..]);
        assert_eq!(&engine.salt()[..], &hex_bytes(SALT)[..]);
        assert_eq!(
            hex::encode(engine.pod_state_seed()),
            "de97c3cd9d0cc11488b0a858b321fceeddb95eb4e485f960a48d08a3de9a7ee7d29b89b9526bf56aa786180a5b6228655106e62619868994039b47b67cd95ac8"
        );
        assert_eq!(
            hex::encode(engine.history_seed()),
            "252744b8d7e0c046daf75c290f96760c02e76c47f442cd28acfa411ddaabc3fa7e43dd817baa5dca2bbf65d0d62996b58285e8445fb0db7da6e5bdb8c276a312"
        );
        assert_eq!(
            hex::encode(engine.transaction_signing_seed()),
            "a401135f389484a41e1a26bba8fe20b535d9331e5b61613efa48af7f5bb29c63c9bf0cd9358831c4affb5efe9203b01c6b35bf210b9973810dbd06ca22b985e5"
        );
        assert_eq!(
            hex::encode(engine.root_ca_seed()),
            "d53298b4d5dbe1cbc1d97d73fad0ceb602404313457c4730dfd014c6589af465c11aef22dbff8bff0ae46e54b4f7ef4423821e3434796263f170fcdf69feb692"
        );
        assert_eq!(
            hex::encode(engine.root_ca_key().to_bytes()),
            "720b7e6b1f014bcde2d60cc647a733579f45ad14b3630e537705a75bb9cee873f37aa7be7675451eadd8a669199a14ab"
        );
        assert_eq!(
            hex::encode(engine.transaction_signing_key().to_bytes()),
            "c3b08cb10594e61053f9d571adb4b45cf2492d8e7d71ebe8771e16f87ecb19c531e334c6496dad479f7dd5eeecb04ea7"
        );
        for (id, want) in [
            (
                "workload-1",
                "20ef29d0c15c7164057d394cc32f736fcf62350e1e34eeb0019a108db4a4a8bab60a02cc89a3c6ba3cfccc05d40230e2a8c648c9bb16ab0f57a32e506a461970",
            ),
            (
                "1_my-secret",
                "7d5ff31917a233a97d27f9fa252546d3762b1c2b88c3e1e3755033a46eb1cbf4c4978034ee9e2754fc6c0a2d0be83d0c26d85630855284af596dc3696c9c57db",
            ),
            (
                "été 😀",
                "d92856d1a3ed7e01b32dddce5fe49721b82add10cd7ba5197c1d8b1b4567873a26f1cd38babb390339be64d4e1ebeabee3eaca24beadc353f21e243a418d7635",
            ),
        ] {
            assert_eq!(
                hex::encode(&*engine.workload_secret(id).unwrap()),
                want,
                "{id:?}"
            );
        }
    }

    #[test]
    fn keys_are_deterministic_and_distinct() {
        let a = SeedEngine::new(&hex_bytes(SEED_64), &hex_bytes(SALT)).unwrap();
        let b = SeedEngine::new(&hex_bytes(SEED_64), &hex_bytes(SALT)).unwrap();
        assert_eq!(a.root_ca_key().to_bytes(), b.root_ca_key().to_bytes());
        assert_eq!(
            a.transaction_signing_key().to_bytes(),
            b.transaction_signing_key().to_bytes()
        );
        assert_ne!(
            a.root_ca_key().to_bytes(),
            a.transaction_signing_key().to_bytes()
        );
        // Another salt gives other keys.
        let mut salt = hex_bytes(SALT);
        salt[0] ^= 1;
        let c = SeedEngine::new(&hex_bytes(SEED_64), &salt).unwrap();
        assert_ne!(a.root_ca_key().to_bytes(), c.root_ca_key().to_bytes());
    }

    #[test]
    fn generate_gives_a_64_byte_seed_and_fresh_values() {
        let a = SeedEngine::generate().unwrap();
        let b = SeedEngine::generate().unwrap();
        assert_eq!(a.seed().len(), SEED_LEN);
        assert_eq!(a.pod_state_seed().len(), SEED_LEN);
        assert_ne!(a.seed(), b.seed());
        assert_ne!(a.salt(), b.salt());
        let again = SeedEngine::new(a.seed(), a.salt()).unwrap();
        assert_eq!(again.root_ca_key().to_bytes(), a.root_ca_key().to_bytes());
    }

    #[test]
    fn refuses_bad_lengths_naming_them() {
        let seed = hex_bytes(SEED_64);
        let err = SeedEngine::new(&seed, &[0; 31]).unwrap_err();
        assert!(matches!(err, SeedEngineError::SaltLength { len: 31 }));
        assert!(err.to_string().contains("salt") && err.to_string().contains("31"));
        assert!(SeedEngine::new(&seed, &[0; 33]).is_err());

        let err = SeedEngine::new(&seed[..31], &[0; 32]).unwrap_err();
        assert!(matches!(
            err,
            SeedEngineError::SeedTooShort { len: 31, min: 32 }
        ));
        assert!(err.to_string().contains("seed") && err.to_string().contains("31"));
        assert!(SeedEngine::new(&seed[..32], &[0; 32]).is_ok());

        let err = SeedEngine::new(&vec![7; MAX_SEED_LEN + 1], &[0; 32]).unwrap_err();
        assert!(matches!(err, SeedEngineError::SeedTooLong { .. }));
    }

    #[test]
    fn refuses_an_empty_workload_secret_id() {
        let engine = SeedEngine::new(&hex_bytes(SEED_64), &hex_bytes(SALT)).unwrap();
        let err = engine.workload_secret("").unwrap_err();
        assert!(matches!(err, SeedEngineError::EmptyWorkloadSecretId));
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let engine = SeedEngine::new(&hex_bytes(SEED_64), &hex_bytes(SALT)).unwrap();
        let debug = format!("{engine:?}");
        assert!(!debug.contains(&SEED_64[..16]), "{debug}");
        assert!(!debug.contains(&hex::encode(engine.pod_state_seed())[..16]));
        assert!(!debug.contains(&hex::encode(engine.root_ca_key().to_bytes())[..16]));
        assert!(debug.contains("seed_len: 64"), "{debug}");
    }
}
