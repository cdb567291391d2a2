//! The initdata document: the in-guest parser reads back the exact policy, the hash is
//! SHA-256 of the bytes, the annotation is deterministic and decodes to the document.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read as _;

use base64::Engine as _;
use contrast_initdata::INITDATA_ANNOTATION;

/// Text that needs every kind of escaping.
const AWKWARD: &str = "package agent_policy\n\
    # \"quoted\" and 'single' and \"\"\"triple\"\"\" quotes, a back\\slash, \\\" and \\n as text\n\
    x := \"grüße, 日本語, emoji 🦀\"\n\
    tab\there, CR\r\nLF, NUL\u{0}, ESC\u{1b}, DEL\u{7f}, U+2028\u{2028}\n\
    ends with a backslash \\\n\
    \"\"\"";

fn policies() -> Vec<String> {
    vec![
        String::new(),
        "package agent_policy\n".to_owned(),
        AWKWARD.to_owned(),
        format!("{AWKWARD}\n"),
        "\n\nstarts with newlines".to_owned(),
        "\"".to_owned(),
        "\\".to_owned(),
        common::Case::load("web.json").policy(),
    ]
}

#[test]
fn the_toml_crate_reads_back_the_exact_policy() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Document {
        version: String,
        algorithm: String,
        data: std::collections::BTreeMap<String, String>,
    }
    for policy in policies() {
        let doc = contrast_policy::initdata(&policy);
        let text = std::str::from_utf8(doc.as_bytes()).unwrap();
        let parsed: Document = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.version, "0.1.0");
        assert_eq!(parsed.algorithm, "sha256");
        assert_eq!(parsed.data.len(), 1);
        assert_eq!(parsed.data["policy.rego"], policy, "{text}");
    }
}

#[test]
fn the_guests_initdata_check_reads_back_the_exact_policy() {
    for policy in policies() {
        let doc = contrast_policy::initdata(&policy);
        let parsed = contrast_initdata::Initdata::parse(doc.as_bytes().to_vec()).unwrap();
        assert_eq!(parsed.policy(), Some(policy.as_str()));
        assert_eq!(parsed.algorithm(), contrast_initdata::Algorithm::Sha256);
        assert_eq!(parsed.digest(), doc.policy_hash());
    }
}

#[test]
fn the_guests_initdata_check_reads_back_further_entries_exactly() {
    for policy in policies() {
        let data = std::collections::BTreeMap::from([
            ("contrast-coordinator.json".to_owned(), AWKWARD.to_owned()),
            (format!("{AWKWARD} as a key"), policy.clone()),
        ]);
        let doc = contrast_policy::initdata_with_data(&policy, &data).unwrap();
        let parsed = contrast_initdata::Initdata::parse(doc.as_bytes().to_vec())
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(doc.as_bytes())));
        assert_eq!(parsed.policy(), Some(policy.as_str()));
        assert_eq!(parsed.data().len(), 3);
        for (key, value) in &data {
            assert_eq!(parsed.data().get(key), Some(value), "{key:?}");
        }
        assert_eq!(parsed.digest(), doc.policy_hash());
        // The annotation's shared compressed prefix still decodes to the whole document.
        let gzip = base64::engine::general_purpose::STANDARD
            .decode(doc.annotation_value())
            .unwrap();
        let mut toml = Vec::new();
        flate2::read::GzDecoder::new(gzip.as_slice())
            .read_to_end(&mut toml)
            .unwrap();
        assert_eq!(toml, doc.as_bytes());
    }
}

#[test]
fn known_answer() {
    // The bytes, and their SHA-256 through GNU coreutils' sha256sum (printf '%s' ... | sha256sum).
    let doc = contrast_policy::initdata("package agent_policy\n");
    assert_eq!(
        doc.as_bytes(),
        b"version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = \"\"\"\npackage agent_policy\n\"\"\"\n"
    );
    assert_eq!(
        hex::encode(doc.policy_hash()),
        "4dab6aecfbb54c5969b0265cc381b487a6e08210d3be6c163dfa9c38695e12e2"
    );
}

#[test]
fn the_same_policy_gives_the_same_bytes_hash_and_annotation() {
    let policy = common::Case::load("web.json").policy();
    let a = contrast_policy::initdata(&policy);
    let b = contrast_policy::initdata(&policy);
    assert_eq!(a, b);
    assert_eq!(a.policy_hash(), b.policy_hash());
    assert_eq!(a.annotation_value(), b.annotation_value());
    let other = contrast_policy::initdata(&format!("{policy} "));
    assert_ne!(a.policy_hash(), other.policy_hash());
    assert_ne!(a.annotation_value(), other.annotation_value());
}

#[test]
fn the_annotation_is_base64_of_gzip_of_the_document() {
    assert_eq!(
        INITDATA_ANNOTATION,
        "io.katacontainers.config.hypervisor.cc_init_data"
    );
    // A generated policy (its shared start is compressed once) and others.
    for policy in policies() {
        let doc = contrast_policy::initdata(&policy);
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(doc.annotation_value())
            .unwrap();
        // gzip magic, deflate, no flags, mtime 0, unknown OS.
        assert_eq!(&compressed[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&compressed[4..8], &[0, 0, 0, 0]);
        assert_eq!(compressed[9], 255);
        // One gzip member (a multi-member reader is not needed).
        let mut toml = Vec::new();
        let mut decoder = flate2::bufread::GzDecoder::new(compressed.as_slice());
        decoder.read_to_end(&mut toml).unwrap();
        assert_eq!(toml, doc.as_bytes());
        assert!(
            decoder.into_inner().is_empty(),
            "trailing bytes after the member"
        );
        // And it compresses: policies repeat a lot.
        if doc.as_bytes().len() > 1000 {
            assert!(compressed.len() < doc.as_bytes().len() / 2);
        }
    }
}

/// The reader of annotation values (`contrast set`, the quickstart) gives back the exact
/// document, and refuses what is not base64, not gzip, or too large, saying what to do.
#[test]
fn annotation_values_decode_to_the_document_and_bad_ones_are_refused() {
    use contrast_initdata::{AnnotationError, MAX_INITDATA_LEN, decode_annotation_value};
    for policy in policies() {
        let doc = contrast_policy::initdata(&policy);
        let value = doc.annotation_value();
        assert_eq!(decode_annotation_value(&value).unwrap(), doc.as_bytes());
        // YAML folding may break the value into lines.
        let folded: String = value
            .as_bytes()
            .chunks(76)
            .map(|line| format!("{}\n", String::from_utf8_lossy(line)))
            .collect();
        assert_eq!(decode_annotation_value(&folded).unwrap(), doc.as_bytes());
    }
    let err = decode_annotation_value("!!!").unwrap_err();
    assert!(matches!(err, AnnotationError::NotBase64(_)), "{err}");
    assert!(
        err.to_string().contains("run contrast generate again"),
        "{err}"
    );
    let not_gzip = base64::engine::general_purpose::STANDARD.encode(b"version = 1");
    let err = decode_annotation_value(&not_gzip).unwrap_err();
    assert!(matches!(err, AnnotationError::NotGzip(_)), "{err}");

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &vec![b'#'; MAX_INITDATA_LEN as usize + 1]).unwrap();
    let bomb = base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap());
    let err = decode_annotation_value(&bomb).unwrap_err();
    assert!(matches!(err, AnnotationError::TooLarge), "{err}");
}

#[test]
fn generating_is_fast() {
    // The CLI generates 1,000 workloads in under 2 s all told, so a pod's policy,
    // document and annotation must take well under a millisecond (in release builds;
    // this bound leaves room for unoptimised test builds and busy machines).
    let case = common::Case::load("web.json");
    let input = case.input();
    let rounds = 200;
    let start = std::time::Instant::now();
    let mut total = 0;
    for _ in 0..rounds {
        let policy = contrast_policy::policy_rego(&input).unwrap();
        let doc = contrast_policy::initdata(&policy);
        total += doc.annotation_value().len() + doc.policy_hash()[0] as usize;
    }
    let per_pod = start.elapsed() / rounds;
    assert!(total > 0);
    assert!(
        per_pod < std::time::Duration::from_millis(10),
        "{per_pod:?} per pod"
    );
    eprintln!("{per_pod:?} per pod");
}
