//! ID block known answers: the ID key recovered from the fixed signature, checked by ECDSA
//! verification and by a second, textbook implementation; the ID key encoding checked
//! against snp-create-id-block and the `sev` crate's known answer.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use aws_lc_rs::digest::{SHA384, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{data, python, python_tool, run};
use contrast_firmware_refs::id_blocks;
use contrast_firmware_refs::idblock::{id_key_digest, recover_fixed_signature_keys};
use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::{Signature, VerifyingKey};

/// Public-key recovery (SEC 1 §4.1.6) with affine P-384 arithmetic on Python integers:
/// prints the ID block and the ID-key digest of the first key by (X, Y).
const PYTHON_RECOVERY: &str = r#"
import hashlib, struct, sys
p = 2**384 - 2**128 - 2**96 + 2**32 - 1
n = int('ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973', 16)
b = int('b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef', 16)
G = (int('aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7', 16),
     int('3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f', 16))
def add(P, Q):
    if P is None: return Q
    if Q is None: return P
    if P[0] == Q[0] and (P[1] + Q[1]) % p == 0: return None
    if P == Q: l = (3 * P[0] * P[0] - 3) * pow(2 * P[1], -1, p) % p
    else: l = (Q[1] - P[1]) * pow(Q[0] - P[0], -1, p) % p
    x = (l * l - P[0] - Q[0]) % p
    return (x, (l * (P[0] - x) - P[1]) % p)
def mul(k, P):
    R = None
    while k:
        if k & 1: R = add(R, P)
        P = add(P, P); k >>= 1
    return R
ld, policy = bytes.fromhex(sys.argv[1]), int(sys.argv[2], 0)
block = ld + bytes([1]) + bytes(15) + bytes([2]) + bytes(15) + struct.pack('<IIQ', 1, 2, policy)
z = int.from_bytes(hashlib.sha384(block).digest(), 'big')
r, s = 2, 1
y = pow((r**3 - 3*r + b) % p, (p + 1) // 4, p)
assert y * y % p == (r**3 - 3*r + b) % p
rinv = pow(r, -1, n)
keys = sorted(add(mul(s * rinv % n, (r, yy)), mul((-z * rinv) % n, G)) for yy in (y, p - y))
x, y = keys[0]
key = struct.pack('<I', 2) + x.to_bytes(72, 'little') + y.to_bytes(72, 'little') + bytes(0x404 - 148)
print(block.hex())
print(hashlib.sha384(key).hexdigest())
"#;

const LD: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30";

fn launch_digest(text: &str) -> [u8; 48] {
    hex::decode(text).unwrap().try_into().unwrap()
}

#[test]
fn id_block_known_answer() {
    let blocks = id_blocks(&launch_digest(LD), 0x30000).unwrap();
    assert_eq!(
        hex::encode(blocks.id_block),
        format!(
            "{LD}01{}02{}010000000200000000000300 00000000",
            "00".repeat(15),
            "00".repeat(15)
        )
        .replace(' ', "")
    );
    // Derived with the textbook recovery below and checked in.
    assert_eq!(
        hex::encode(blocks.id_key_digest),
        "509a5e09cffe0f5dd47d401e719f2d1b72a5e5bd8f3a92ffd9b3a436c3f461102b2e8ed95579e467e112f98a5adea4d3"
    );
}

#[test]
fn recovery_agrees_with_a_second_implementation() {
    for (ld, policy) in [
        (LD.to_owned(), 0x30000u64),
        ("ab".repeat(48), 0x30000),
        ("00".repeat(48), 0x31f1f),
        ("ff".repeat(48), 0x20000),
    ] {
        let blocks = id_blocks(&launch_digest(&ld), policy).unwrap();
        let out = run(Command::new(python())
            .arg("-c")
            .arg(PYTHON_RECOVERY)
            .arg(&ld)
            .arg(format!("{policy:#x}")));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                hex::encode(blocks.id_block),
                hex::encode(blocks.id_key_digest)
            ],
            "{ld} {policy:#x}"
        );

        // ECDSA verification (u1·G + u2·Q) accepts the fixed signature under the key.
        let hash = digest(&SHA384, &blocks.id_block);
        let mut r = [0u8; 48];
        r[47] = 2;
        let mut s = [0u8; 48];
        s[47] = 1;
        let signature = Signature::from_scalars(r, s).unwrap();
        let key = VerifyingKey::from_sec1_bytes(&blocks.id_key_sec1).unwrap();
        key.verify_prehash(hash.as_ref(), &signature).unwrap();
        // The auth block carries that signature and key.
        assert_eq!(&blocks.id_auth[0x40..0x41], &[2]);
        assert_eq!(&blocks.id_auth[0x88..0x89], &[1]);
        let keys = recover_fixed_signature_keys(&hash.as_ref().try_into().unwrap()).unwrap();
        assert_eq!(keys[0], blocks.id_key_sec1);
    }
}

#[test]
fn id_key_encoding_matches_snp_create_id_block() {
    // The public point is the last 97 bytes of the PKCS#8 key (SEC1 public key field).
    let pem = std::fs::read_to_string(data("test_id_key.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = BASE64.decode(body).unwrap();
    let point: [u8; 97] = der[der.len() - 97..].try_into().unwrap();
    assert_eq!(point[0], 4);
    let ours = BASE64.encode(id_key_digest(&point));
    // virtee/sev tests/id-block.rs: the ID-key digest of this key.
    assert_eq!(
        ours,
        "WfssaG36T+9J84M5qndckAUcKNVzg93DuvO160sUlt87DbvcuuX+J2d6ZEggdz/i"
    );
    let tool = python_tool("snp-create-id-block");
    let key = data("test_id_key.pem");
    let out = run(Command::new(tool)
        .args(["--measurement", &BASE64.encode([7u8; 48])])
        .arg("--idkey")
        .arg(&key)
        .arg("--authorkey")
        .arg(&key));
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("id_key_hash: "))
        .unwrap();
    assert_eq!(line, ours);
}
