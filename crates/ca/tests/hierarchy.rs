//! The CA's certificates as a relying party sees them: parsed with x509-parser, signatures
//! checked with aws-lc-rs, and the chains checked with `openssl verify`.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING,
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _, UnparsedPublicKey,
};
use contrast_attestation::claims::Claim;
use contrast_attestation::{der, pem};
use contrast_ca::{Ca, CaError, generate_mesh_key};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer as _, X509Certificate};

const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
const YEAR: i64 = 365 * 24 * 3600;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn cn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut cns = name.iter_common_name();
    let value = cns.next().unwrap().as_str().unwrap().to_owned();
    assert!(cns.next().is_none(), "one CN only");
    value
}

/// Whether `cert`'s signature verifies under `issuer`'s (P-384) public key.
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        ECDSA_WITH_SHA384
    );
    UnparsedPublicKey::new(
        &ECDSA_P384_SHA384_ASN1,
        issuer.public_key().subject_public_key.data.as_ref(),
    )
    .verify(
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
    )
    .is_ok()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn spki(alg: &'static EcdsaSigningAlgorithm) -> Vec<u8> {
    let key = EcdsaKeyPair::generate(alg).unwrap();
    key.public_key().as_der().unwrap().as_ref().to_vec()
}

fn p256_spki() -> Vec<u8> {
    spki(&ECDSA_P256_SHA256_ASN1_SIGNING)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The leaf and the intermediate of a PEM chain, as DER.
fn chain(pem_chain: &str) -> Vec<Vec<u8>> {
    pem::decode_all(pem_chain, "CERTIFICATE").unwrap()
}

fn skid<'a>(cert: &'a X509Certificate<'_>) -> &'a [u8] {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        })
        .unwrap()
}

fn akid<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0)
            }
            _ => None,
        })
}

fn p384_point(key: &p384::SecretKey) -> Vec<u8> {
    key.public_key().to_sec1_bytes().to_vec()
}

#[test]
fn ca_certificates_have_the_specified_fields() {
    let root_key = generate_mesh_key().unwrap();
    let mesh_key = generate_mesh_key().unwrap();
    let before = now();
    let ca = Ca::new(&root_key, &mesh_key).unwrap();
    let after = now();

    let root = parse(ca.root_ca_der());
    let intermediate = parse(ca.intermediate_der());
    let mesh = parse(ca.mesh_ca_der());

    for (cert, subject, issuer) in [
        (&root, "system:coordinator:root", "system:coordinator:root"),
        (
            &intermediate,
            "system:coordinator:intermediate",
            "system:coordinator:root",
        ),
        (
            &mesh,
            "system:coordinator:intermediate",
            "system:coordinator:intermediate",
        ),
    ] {
        assert_eq!(cert.version().0, 2, "{subject}: X.509 v3");
        assert_eq!(cn(cert.subject()), subject);
        assert_eq!(cn(cert.issuer()), issuer);
        assert!(cert.is_ca(), "{subject}");
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_cert_sign(), "{subject}");
        assert_eq!(
            ku.flags, 0b10_0001,
            "{subject}: exactly digitalSignature|keyCertSign"
        );
        assert!(cert.extended_key_usage().unwrap().is_none());
        let validity = cert.validity();
        let not_before = validity.not_before.timestamp();
        let not_after = validity.not_after.timestamp();
        assert!(
            (before - 3600 - 1..=after - 3600).contains(&not_before),
            "{subject}"
        );
        assert!(
            (10 * YEAR..=10 * YEAR + 3 * 24 * 3600).contains(&(not_after - not_before - 3600)),
            "{subject}: ten calendar years"
        );
        // A positive INTEGER below 2^128: at most 16 octets, or 17 with a leading zero.
        let serial = cert.raw_serial();
        assert!(serial.len() <= 16 || (serial.len() == 17 && serial[0] == 0));
        assert!(serial[0] & 0x80 == 0);
    }

    assert_eq!(
        root.public_key().subject_public_key.data.as_ref(),
        p384_point(&root_key)
    );
    assert_eq!(
        intermediate.public_key().subject_public_key.data.as_ref(),
        p384_point(&mesh_key)
    );
    assert_eq!(mesh.public_key().raw, intermediate.public_key().raw);
    assert_eq!(ca.mesh_key().to_bytes(), mesh_key.to_bytes());

    assert!(signed_by(&root, &root));
    assert!(signed_by(&intermediate, &root));
    assert!(signed_by(&mesh, &mesh));
    assert!(!signed_by(&intermediate, &mesh));
    assert!(!signed_by(&mesh, &root));

    // The intermediate names the root's key; self-signed certificates carry no AKID.
    assert_eq!(akid(&intermediate), Some(skid(&root)));
    assert_eq!(skid(&intermediate), skid(&mesh));
    assert!(akid(&root).is_none() && akid(&mesh).is_none());
    assert_ne!(root.raw_serial(), intermediate.raw_serial());
    assert_ne!(intermediate.raw_serial(), mesh.raw_serial());

    // PEM and DER agree.
    for (pem_text, der) in [
        (ca.root_ca_pem(), ca.root_ca_der()),
        (ca.intermediate_pem(), ca.intermediate_der()),
        (ca.mesh_ca_pem(), ca.mesh_ca_der()),
    ] {
        assert_eq!(
            pem::decode_all(pem_text, "CERTIFICATE").unwrap(),
            vec![der.to_vec()]
        );
        assert!(pem_text.ends_with("-----END CERTIFICATE-----\n"));
    }
}

#[test]
fn the_root_key_alone_decides_the_root_public_key() {
    let root_key = generate_mesh_key().unwrap();
    let first = Ca::new(&root_key, &generate_mesh_key().unwrap()).unwrap();
    let second = Ca::new(&root_key, &generate_mesh_key().unwrap()).unwrap();
    let (a, b) = (parse(first.root_ca_der()), parse(second.root_ca_der()));
    assert_eq!(a.public_key().raw, b.public_key().raw);
    // A new certificate each time (serial, validity), the same key.
    assert_ne!(a.raw_serial(), b.raw_serial());
    // The intermediate of one verifies under the root of the other.
    assert!(signed_by(&parse(second.intermediate_der()), &a));

    let other = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    assert_ne!(
        parse(other.root_ca_der()).public_key().raw,
        a.public_key().raw
    );
}

#[test]
fn mesh_certificate_fields_and_chains() {
    let ca = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    let subject_spki = p256_spki();
    let claims = vec![
        Claim {
            oid: vec![1, 3, 9901, 2, 1, 1],
            value: der::uint_u64(3),
        },
        Claim {
            oid: vec![1, 3, 9901, 2, 1, 5],
            value: der::boolean(false),
        },
        Claim {
            oid: vec![1, 3, 9901, 2, 1, 22],
            value: der::octet_string(&[0xab; 48]),
        },
    ];
    let before = now();
    let pem_chain = ca
        .new_mesh_cert(
            &strings(&["web", "*"]),
            &claims,
            Some("my-workload-secret"),
            &subject_spki,
        )
        .unwrap();
    let after = now();

    assert!(pem_chain.ends_with(ca.intermediate_pem()));
    let ders = chain(&pem_chain);
    assert_eq!(ders.len(), 2);
    assert_eq!(ders[1], ca.intermediate_der());
    let leaf = parse(&ders[0]);
    let mesh = parse(ca.mesh_ca_der());
    let intermediate = parse(ca.intermediate_der());
    let root = parse(ca.root_ca_der());

    // Chains: leaf → mesh CA, and leaf → intermediate → root.
    assert!(signed_by(&leaf, &mesh));
    assert!(signed_by(&leaf, &intermediate));
    assert!(signed_by(&intermediate, &root));
    assert!(!signed_by(&leaf, &root));
    assert_eq!(leaf.issuer().as_raw(), mesh.subject().as_raw());
    assert_eq!(leaf.issuer().as_raw(), intermediate.subject().as_raw());
    assert_eq!(akid(&leaf), Some(skid(&mesh)));

    assert_eq!(cn(leaf.subject()), "web");
    assert_eq!(cn(leaf.issuer()), "system:coordinator:intermediate");
    assert_eq!(leaf.public_key().raw, &subject_spki[..]);
    assert!(!leaf.is_ca());
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert_eq!(ku.flags, 1, "digitalSignature only");
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && eku.server_auth && !eku.any && eku.other.is_empty());
    let validity = leaf.validity();
    let not_before = validity.not_before.timestamp();
    assert!((before - 3600 - 1..=after - 3600).contains(&not_before));
    assert!(
        (YEAR..=YEAR + 24 * 3600).contains(&(validity.not_after.timestamp() - not_before - 3600)),
        "one calendar year"
    );

    for claim in &claims {
        let dotted = claim
            .oid
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(".");
        let ext = leaf
            .iter_extensions()
            .find(|ext| ext.oid.to_id_string() == dotted)
            .unwrap_or_else(|| panic!("claim {dotted} missing"));
        assert_eq!(ext.value, &claim.value[..], "{dotted}");
        assert!(!ext.critical, "{dotted}");
    }
    let secret_id = leaf
        .iter_extensions()
        .find(|ext| ext.oid.to_id_string() == "1.3.9901.3.1")
        .unwrap();
    assert!(!secret_id.critical);
    let mut expected = vec![0x04, 18];
    expected.extend_from_slice(b"my-workload-secret");
    assert_eq!(secret_id.value, &expected[..]);

    // Standard extensions + 3 claims + workload secret ID, each once.
    let oids: Vec<String> = leaf
        .iter_extensions()
        .map(|e| e.oid.to_id_string())
        .collect();
    let mut unique = oids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), oids.len(), "{oids:?}");
    assert!(leaf.extensions_map().is_ok());
}

#[test]
fn without_workload_secret_id_there_is_no_extension() {
    let ca = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    for id in [None, Some("")] {
        let ders = chain(
            &ca.new_mesh_cert(&strings(&["web"]), &[], id, &p256_spki())
                .unwrap(),
        );
        let leaf = parse(&ders[0]);
        assert!(
            leaf.iter_extensions()
                .all(|ext| ext.oid.to_id_string() != "1.3.9901.3.1"),
            "{id:?}"
        );
    }
}

#[test]
fn sans_are_split_into_ip_uri_and_dns() {
    let ca = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    let entries = strings(&[
        "10.1.2.3",
        "2001:db8::1",
        "spiffe://cluster.local/ns/default/sa/web",
        "web.default.svc",
        "*",
        "::ffff:192.0.2.7",
    ]);
    let ders = chain(&ca.new_mesh_cert(&entries, &[], None, &p256_spki()).unwrap());
    let leaf = parse(&ders[0]);
    assert_eq!(cn(leaf.subject()), "web.default.svc");
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(!san.critical);
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("dns {dns}"),
            GeneralName::URI(uri) => format!("uri {uri}"),
            GeneralName::IPAddress(bytes) => {
                let ip: IpAddr = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).unwrap().into(),
                    16 => <[u8; 16]>::try_from(*bytes).unwrap().into(),
                    n => panic!("IP SAN of {n} bytes"),
                };
                format!("ip{} {ip}", bytes.len())
            }
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "dns web.default.svc",
            "dns *",
            "ip4 10.1.2.3",
            "ip16 2001:db8::1",
            "ip4 192.0.2.7",
            "uri spiffe://cluster.local/ns/default/sa/web",
        ]
    );
}

#[test]
fn a_lone_wildcard_is_the_subject_cn() {
    let ca = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    let ders = chain(
        &ca.new_mesh_cert(&strings(&["*"]), &[], None, &p256_spki())
            .unwrap(),
    );
    let leaf = parse(&ders[0]);
    assert_eq!(cn(leaf.subject()), "*");
}

#[test]
fn refuses_sans_without_dns_name() {
    let ca = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    let err = ca
        .new_mesh_cert(
            &strings(&["10.0.0.1", "spiffe://x/y"]),
            &[],
            None,
            &p256_spki(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::NoDnsSan), "{err}");
    assert!(
        err.to_string()
            .contains("the policy's SANs contain no DNS name")
    );
}

#[test]
fn refuses_a_malformed_subject_key() {
    let ca = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    let mut spki = p256_spki();
    spki.truncate(spki.len() - 1);
    let err = ca
        .new_mesh_cert(&strings(&["web"]), &[], None, &spki)
        .unwrap_err();
    assert!(matches!(err, CaError::SubjectPublicKey { .. }), "{err}");
}

#[test]
fn accepts_p384_and_rsa_subject_keys() {
    let ca = Ca::new(&generate_mesh_key().unwrap(), &generate_mesh_key().unwrap()).unwrap();
    let rsa = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    for subject_spki in [
        spki(&ECDSA_P384_SHA384_ASN1_SIGNING),
        rsa.public_key().as_der().unwrap().as_ref().to_vec(),
    ] {
        let ders = chain(
            &ca.new_mesh_cert(&strings(&["web"]), &[], None, &subject_spki)
                .unwrap(),
        );
        let leaf = parse(&ders[0]);
        assert_eq!(leaf.public_key().raw, &subject_spki[..]);
        assert!(signed_by(&leaf, &parse(ca.mesh_ca_der())));
    }
}

#[test]
fn a_leaf_does_not_verify_under_another_mesh_key() {
    let root_key = generate_mesh_key().unwrap();
    let first = Ca::new(&root_key, &generate_mesh_key().unwrap()).unwrap();
    let second = Ca::new(&root_key, &generate_mesh_key().unwrap()).unwrap();
    let ders = chain(
        &first
            .new_mesh_cert(&strings(&["web"]), &[], None, &p256_spki())
            .unwrap(),
    );
    let leaf = parse(&ders[0]);
    assert!(signed_by(&leaf, &parse(first.mesh_ca_der())));
    assert!(!signed_by(&leaf, &parse(second.mesh_ca_der())));
    assert!(!signed_by(&leaf, &parse(second.intermediate_der())));
}

#[test]
fn the_same_mesh_key_issues_leaves_valid_under_either_ca() {
    // Peer recovery copies the mesh key: the mesh CA key stays the same.
    let root_key = generate_mesh_key().unwrap();
    let mesh_key = generate_mesh_key().unwrap();
    let first = Ca::new(&root_key, &mesh_key).unwrap();
    let second = Ca::new(&root_key, &mesh_key).unwrap();
    let ders = chain(
        &first
            .new_mesh_cert(&strings(&["web"]), &[], None, &p256_spki())
            .unwrap(),
    );
    assert!(signed_by(&parse(&ders[0]), &parse(second.mesh_ca_der())));
}

#[test]
fn debug_does_not_print_the_mesh_key() {
    let mesh_key = generate_mesh_key().unwrap();
    let ca = Ca::new(&generate_mesh_key().unwrap(), &mesh_key).unwrap();
    let debug = format!("{ca:?}");
    let hex: String = mesh_key
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!debug.to_lowercase().contains(&hex));
    assert!(debug.contains("[secret]"));
}

#[test]
fn generated_mesh_keys_differ() {
    let a = generate_mesh_key().unwrap();
    let b = generate_mesh_key().unwrap();
    assert_ne!(a.to_bytes(), b.to_bytes());
}

/// A scratch directory under the system temp dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "contrast-ca-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl_verify(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new("openssl")
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn openssl_verifies_both_chains() {
    let root_key = generate_mesh_key().unwrap();
    let ca = Ca::new(&root_key, &generate_mesh_key().unwrap()).unwrap();
    let other = Ca::new(&root_key, &generate_mesh_key().unwrap()).unwrap();
    let rsa = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let dir = ScratchDir::new();
    let mesh_ca = dir.write("mesh-ca.pem", ca.mesh_ca_pem());
    let root_ca = dir.write("root-ca.pem", ca.root_ca_pem());
    let intermediate = dir.write("intermediate.pem", ca.intermediate_pem());
    let other_mesh_ca = dir.write("other-mesh-ca.pem", other.mesh_ca_pem());

    for (name, subject_spki) in [
        ("p256", p256_spki()),
        ("p384", spki(&ECDSA_P384_SHA384_ASN1_SIGNING)),
        ("rsa", rsa.public_key().as_der().unwrap().as_ref().to_vec()),
    ] {
        let pem_chain = ca
            .new_mesh_cert(
                &strings(&["web", "*", "10.0.0.1"]),
                &[],
                Some("id"),
                &subject_spki,
            )
            .unwrap();
        let leaf_der = &chain(&pem_chain)[0];
        let leaf_pem = pem_chain.strip_suffix(ca.intermediate_pem()).unwrap();
        assert_eq!(&chain(leaf_pem)[0], leaf_der);
        let leaf = dir.write(&format!("leaf-{name}.pem"), leaf_pem);

        // Anchored at the mesh CA (one manifest generation).
        let (ok, out) = openssl_verify(&[
            "-partial_chain".as_ref(),
            "-CAfile".as_ref(),
            mesh_ca.as_os_str(),
            leaf.as_os_str(),
        ]);
        assert!(ok, "{name}, mesh CA: {out}");

        // Anchored at the root, through the intermediate (all generations).
        let (ok, out) = openssl_verify(&[
            "-CAfile".as_ref(),
            root_ca.as_os_str(),
            "-untrusted".as_ref(),
            intermediate.as_os_str(),
            leaf.as_os_str(),
        ]);
        assert!(ok, "{name}, root: {out}");

        // With the usages a TLS peer checks.
        for purpose in ["sslclient", "sslserver"] {
            let (ok, out) = openssl_verify(&[
                "-purpose".as_ref(),
                purpose.as_ref(),
                "-partial_chain".as_ref(),
                "-CAfile".as_ref(),
                mesh_ca.as_os_str(),
                leaf.as_os_str(),
            ]);
            assert!(ok, "{name}, {purpose}: {out}");
        }

        // Another generation's mesh CA does not anchor it.
        let (ok, out) = openssl_verify(&[
            "-partial_chain".as_ref(),
            "-CAfile".as_ref(),
            other_mesh_ca.as_os_str(),
            leaf.as_os_str(),
        ]);
        assert!(!ok, "{name}, other mesh CA accepted: {out}");

        // The root alone does not anchor the leaf (the intermediate is needed).
        let (ok, out) =
            openssl_verify(&["-CAfile".as_ref(), root_ca.as_os_str(), leaf.as_os_str()]);
        assert!(!ok, "{name}, root without intermediate accepted: {out}");
    }

    // The CA certificates themselves.
    let (ok, out) = openssl_verify(&[
        "-CAfile".as_ref(),
        root_ca.as_os_str(),
        intermediate.as_os_str(),
    ]);
    assert!(ok, "intermediate under root: {out}");
    let (ok, out) = openssl_verify(&["-CAfile".as_ref(), mesh_ca.as_os_str(), mesh_ca.as_os_str()]);
    assert!(ok, "mesh CA self-signed: {out}");
}
