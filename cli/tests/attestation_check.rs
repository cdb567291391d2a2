//! `contrast attestation check` on real evidence, run as a user runs it.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::PathBuf;
use std::process::{Command, Output};

fn vector(path: &str) -> String {
    format!(
        "{}/../crates/attestation/tests/data/{path}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `contrast` offline: the checks of given evidence ask no vendor service.
fn contrast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_contrast"))
        .env("CONTRAST_OFFLINE", "1")
        .args(args)
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("contrast-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn tdx_sample_with_collateral_is_valid_and_up_to_date() {
    let out = contrast(&[
        "attestation",
        "check",
        &vector("tdx/dcapqvl-quote-v4.dat"),
        "--collateral",
        &vector("tdx/dcapqvl-quote-v4-collateral.json"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let result = json(&out);
    assert_eq!(result["valid"], true);
    assert_eq!(result["TCB status"], "UpToDate");
    assert_eq!(result["quote version"], 4);
}

#[test]
fn suggested_values_round_trip_into_an_accepting_reference() {
    let base = [
        "attestation",
        "check",
        &vector("snp/trustee-milan-v2-report.bin"),
        "--vcek",
        &vector("snp/trustee-milan-v2-vcek.der"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ];
    let out = contrast(&base);
    assert_eq!(out.status.code(), Some(0));
    let suggested = json(&out)["suggested reference values"].clone();
    assert_eq!(suggested["snp"][0]["ProductName"], "Milan");
    let file = temp_file("rv.json", suggested.to_string().as_bytes());
    let mut with_values = base.to_vec();
    with_values.extend(["--reference-values", file.to_str().unwrap()]);
    let out = contrast(&with_values);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["accepted_by"], "ReferenceValues.snp[0]");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_debug_report_is_refused_with_the_field_named_unless_allowed() {
    let base = [
        "attestation",
        "check",
        &vector("snp/gosevguest-milan-v2-report.bin"),
        "--vcek",
        &vector("snp/gosevguest-milan-v2-vcek.der"),
        "--cert-chain",
        &vector("snp/gosevguest-milan-ask-ark.pem"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ];
    let suggested = json(&contrast(&base))["suggested reference values"].clone();
    let file = temp_file("debug-rv.json", suggested.to_string().as_bytes());
    let mut args = base.to_vec();
    args.extend(["--reference-values", file.to_str().unwrap()]);
    let out = contrast(&args);
    assert_eq!(out.status.code(), Some(1));
    let refusal = &json(&out)["refusal"];
    assert_eq!(
        refusal["entries"][0]["mismatches"][0]["field"],
        "POLICY.DEBUG (GuestPolicy)"
    );
    args.push("--allow-debug");
    assert_eq!(contrast(&args).status.code(), Some(0));
    std::fs::remove_file(file).unwrap();
}

#[test]
fn azure_hcl_and_vlek_evidence_are_recognised() {
    let out = contrast(&[
        "attestation",
        "check",
        &vector("snp/trustee-azure-milan-hcl-report.bin"),
        "--vcek",
        &vector("snp/trustee-azure-milan-vcek.pem"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["azure HCL wrapper"], true);
    let out = contrast(&[
        "attestation",
        "check",
        &vector("snp/trustee-milan-v3-vlek-report.bin"),
        "--vcek",
        &vector("snp/trustee-milan-v3-vlek.der"),
        "--cert-chain",
        &vector("snp/gosevguest-milan-asvk-ark.pem"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["signed by"], "VLEK");
}

#[test]
fn text_output_gives_the_verdict_and_the_explanation() {
    let out = contrast(&[
        "attestation",
        "check",
        &vector("snp/trustee-milan-v2-report.bin"),
        "--vcek",
        &vector("snp/trustee-milan-v2-vcek.der"),
        "--now",
        "2031-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict: INVALID"), "{text}");
    assert!(
        text.contains("VCEK/VLEK certificate is valid from"),
        "{text}"
    );
}

#[test]
fn unusable_input_is_an_error_that_says_what_is_expected() {
    let junk = temp_file("junk.bin", b"not evidence");
    let out = contrast(&["attestation", "check", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a raw SEV-SNP report (1184 bytes), an Azure HCL report"),
        "{err}"
    );
    let out = contrast(&[
        "attestation",
        "check",
        &vector("tdx/dcapqvl-quote-v4.dat"),
        "--now",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected RFC 3339"));
    let out = contrast(&["attestation", "check", "/nonexistent/report.bin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read the evidence /nonexistent/report.bin")
    );
    std::fs::remove_file(junk).unwrap();
}

#[test]
fn a_manifest_checks_host_data_against_its_policies() {
    let manifest = format!(
        "{}/../crates/manifest/tests/data/contrast-gen1-manifest.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = contrast(&[
        "attestation",
        "check",
        &vector("snp/trustee-milan-v2-report.bin"),
        "--vcek",
        &vector("snp/trustee-milan-v2-vcek.der"),
        "--manifest",
        &manifest,
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let refusal = &json(&out)["refusal"];
    assert_eq!(refusal["common"][0]["field"], "HOST_DATA");
    assert!(
        refusal["common"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("run contrast generate, then contrast set")
    );
}

#[test]
fn a_crl_is_read_as_der_or_pem_and_a_bad_one_is_refused() {
    let base = [
        "attestation",
        "check",
        &vector("snp/trustee-milan-v2-report.bin"),
        "--vcek",
        &vector("snp/trustee-milan-v2-vcek.der"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
        "--crl",
    ];
    let garbage = temp_file("crl.der", &[0x30, 0x03, 0x02, 0x01, 0x01]);
    let mut args = base.to_vec();
    args.push(garbage.to_str().unwrap());
    let out = contrast(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json(&out)["refusal"]["text"]
            .as_str()
            .unwrap()
            .starts_with("the CRL is not usable")
    );

    let no_block = temp_file(
        "crl.pem",
        b"-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n",
    );
    let mut args = base.to_vec();
    args.push(no_block.to_str().unwrap());
    let out = contrast(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no X509 CRL block"));
    std::fs::remove_file(garbage).unwrap();
    std::fs::remove_file(no_block).unwrap();
}

fn snp_document(crl: Option<Vec<u8>>) -> Vec<u8> {
    use contrast_attestation::document::encode_snp;
    use contrast_attestation::snp::{SnpEndorsements, SnpProduct};
    let report = std::fs::read(vector("snp/trustee-milan-v2-report.bin")).unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(std::fs::read(vector("snp/trustee-milan-v2-vcek.der")).unwrap()),
        crl,
        ..Default::default()
    };
    encode_snp(&report, &endorsements, Some(SnpProduct::Milan)).unwrap()
}

#[test]
fn an_snp_attestation_document_is_checked_with_the_certificates_it_carries() {
    let file = temp_file("snp-document.pb", &snp_document(None));
    let base = [
        "attestation",
        "check",
        file.to_str().unwrap(),
        "--now",
        "2025-06-25T00:00:00Z",
    ];
    let mut args = base.to_vec();
    args.extend(["--output", "json"]);
    let out = contrast(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result = json(&out);
    assert_eq!(result["input"], "Contrast attestation document (SNP)");
    assert_eq!(result["certificates from"], "document");
    assert_eq!(result["CRL from"], "none");
    assert_eq!(result["product named by the document"], "Milan");
    assert_eq!(result["signed by"], "VCEK");
    assert_eq!(
        result["suggested reference values"]["snp"][0]["ProductName"],
        "Milan"
    );

    // Text output names the input first.
    let out = contrast(&base);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("input: Contrast attestation document (SNP)\n"),
        "{text}"
    );

    // Certificates on the command line replace the document's: this VCEK is another
    // chip's, so the report is refused.
    let other_vcek = vector("snp/gosevguest-milan-v2-vcek.der");
    let mut args = base.to_vec();
    args.extend(["--vcek", &other_vcek, "--output", "json"]);
    let out = contrast(&args);
    assert_eq!(out.status.code(), Some(1));
    let result = json(&out);
    assert_eq!(result["certificates from"], "command line");
    assert_eq!(result["input"], "Contrast attestation document (SNP)");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn the_crl_comes_from_the_document_unless_one_is_given() {
    // Not a CRL: the refusal shows which one was checked.
    let file = temp_file("snp-document-crl.pb", &snp_document(Some(vec![0x30, 0x00])));
    let base = [
        "attestation",
        "check",
        file.to_str().unwrap(),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ];
    let out = contrast(&base);
    assert_eq!(out.status.code(), Some(1));
    let result = json(&out);
    assert_eq!(result["CRL from"], "document");
    assert!(
        result["refusal"]["text"]
            .as_str()
            .unwrap()
            .starts_with("the CRL is not usable")
    );

    let garbage = temp_file("document-crl.der", &[0x30, 0x03, 0x02, 0x01, 0x01]);
    let mut args = base.to_vec();
    args.extend(["--crl", garbage.to_str().unwrap()]);
    let result = json(&contrast(&args));
    assert_eq!(result["CRL from"], "command line");
    assert_eq!(result["valid"], false);
    std::fs::remove_file(file).unwrap();
    std::fs::remove_file(garbage).unwrap();
}

#[test]
fn a_tdx_attestation_document_is_checked_like_its_quote() {
    let quote = std::fs::read(vector("tdx/dcapqvl-quote-v4.dat")).unwrap();
    let document = contrast_attestation::document::encode_tdx(&quote).unwrap();
    let file = temp_file("tdx-document.pb", &document);
    let out = contrast(&[
        "attestation",
        "check",
        file.to_str().unwrap(),
        "--collateral",
        &vector("tdx/dcapqvl-quote-v4-collateral.json"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result = json(&out);
    assert_eq!(result["input"], "Contrast attestation document (TDX)");
    assert_eq!(result["TCB status"], "UpToDate");
    assert_eq!(result["quote version"], 4);

    // The raw quote is named as such.
    let out = contrast(&[
        "attestation",
        "check",
        &vector("tdx/dcapqvl-quote-v4.dat"),
        "--now",
        "2025-06-25T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(json(&out)["input"], "raw TDX quote");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_malformed_attestation_document_is_unusable_input_with_the_field_named() {
    // An SNP-shaped document whose report is empty.
    let file = temp_file("empty-report.pb", &[0x0a, 0x00]);
    let out = contrast(&["attestation", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a Contrast attestation document (SNP) that cannot be read"),
        "{err}"
    );
    assert!(
        err.contains("report.family_id is 0 bytes, expected 16"),
        "{err}"
    );
    // A truncated document is not recognised as one; the error lists what is accepted.
    let document = snp_document(None);
    let truncated = temp_file("truncated.pb", &document[..document.len() - 1]);
    let out = contrast(&["attestation", "check", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("or a Contrast attestation document"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(file).unwrap();
    std::fs::remove_file(truncated).unwrap();
}

/// `contrast` with `env` set (the cache directory of the test).
fn contrast_with(env: &[(&str, &std::path::Path)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_contrast"));
    command.env_remove("CONTRAST_OFFLINE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.args(args).output().unwrap()
}

/// A report alone: its VCEK and chain come from KDS (here a local one with the real
/// certificates), are cached once the report verified with them, and a second run needs
/// no KDS.
#[test]
fn a_report_without_a_vcek_is_checked_with_kds_certificates_then_from_the_cache() {
    use contrast_testkit::kds::{Fault, LocalKds};
    let cache = contrast_testkit::TempDir::new("kds-cache");
    let env = [("CONTRAST_CACHE_DIR", cache.path())];
    let report = vector("snp/trustee-milan-v2-report.bin");
    let mut kds = LocalKds::start(Fault::None);
    let url = kds.url().to_owned();
    let run = |extra: &[&str]| {
        // The local KDS has no AMD-signed CRL to serve (none can be made here).
        let mut args = vec![
            "attestation",
            "check",
            &report,
            "--kds-url",
            &url,
            "--crl-optional",
            "--now",
            "2025-06-25T00:00:00Z",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        contrast_with(&env, &args)
    };
    let out = run(&[]);
    assert!(out.status.success(), "{out:?}");
    let facts = json(&out);
    assert_eq!(facts["valid"], true, "{facts:#}");
    assert_eq!(facts["certificates from"], "KDS (or its cache)");
    assert_eq!(
        kds.requests(),
        3,
        "the VCEK, the chain, the CRL (none served)"
    );

    kds.stop();
    let out = run(&[]);
    assert!(
        out.status.success(),
        "the cache serves a second run: {out:?}"
    );
    assert_eq!(json(&out)["valid"], true);

    // --offline fetches nothing: the VCEK is missing.
    let out = run(&["--offline"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no VCEK given"), "{text}");
    assert!(json(&out).get("KDS").is_none(), "nothing fetched");
}

/// Why KDS gave no certificates for the real Milan report, when it behaves as `fault`
/// (the check refuses the report and says why in the `KDS` fact).
fn kds_refusal(fault: contrast_testkit::kds::Fault) -> String {
    let cache = contrast_testkit::TempDir::new("kds-cache");
    let kds = contrast_testkit::kds::LocalKds::start(fault);
    let out = contrast_with(
        &[("CONTRAST_CACHE_DIR", cache.path())],
        &[
            "attestation",
            "check",
            &vector("snp/trustee-milan-v2-report.bin"),
            "--kds-url",
            kds.url(),
            "--now",
            "2025-06-25T00:00:00Z",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let facts = json(&out);
    assert_eq!(facts["valid"], false);
    facts["KDS"].as_str().unwrap().to_owned()
}

/// By default a report is checked only with a current CRL: a KDS that serves none gets a
/// refusal that says so.
#[test]
fn without_a_crl_from_kds_the_report_is_refused_by_default() {
    let reason = kds_refusal(contrast_testkit::kds::Fault::None);
    assert!(reason.contains("/vcek/v1/Milan/crl"), "{reason}");
    assert!(reason.contains("accepted only with a current"), "{reason}");
}

#[test]
fn a_failing_kds_is_named_in_the_refusal() {
    let reason = kds_refusal(contrast_testkit::kds::Fault::ServerError);
    assert!(reason.contains("/vcek/v1/Milan/"), "{reason}");
    assert!(reason.contains("answered HTTP 500"), "{reason}");
}

/// A quote alone: its collateral comes from PCS (a local one with the real collateral), so
/// the TCB status is printed; a second run needs no PCS.
#[test]
fn a_quote_without_collateral_gets_its_tcb_status_from_pcs_then_from_the_cache() {
    use contrast_testkit::pcs::{Fault, LocalPcs};
    let cache = contrast_testkit::TempDir::new("pcs-cache");
    let env = [("CONTRAST_CACHE_DIR", cache.path())];
    let quote = vector("tdx/dcapqvl-quote-v4.dat");
    let mut pcs = LocalPcs::start(Fault::None);
    let url = pcs.url().to_owned();
    let run = || {
        contrast_with(
            &env,
            &[
                "attestation",
                "check",
                &quote,
                "--pcs-url",
                &url,
                "--now",
                "2025-06-25T00:00:00Z",
                "--output",
                "json",
            ],
        )
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    let facts = json(&out);
    assert_eq!(facts["TCB status"], "UpToDate", "{facts:#}");
    assert_eq!(facts["collateral from"], "PCS (or its cache)");

    pcs.stop();
    let out = run();
    assert!(
        out.status.success(),
        "the cache serves a second run: {out:?}"
    );
    assert_eq!(json(&out)["TCB status"], "UpToDate");
}
