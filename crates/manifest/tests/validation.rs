//! Every validation and decoding rule, each with a failing example and its exact error text.
//! Each case edits the valid golden manifest in one way.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_manifest::{
    DecodeError, ErrorKind, HexString, Manifest, PolicyEntry, ReferenceValues, Svn,
};

const GEN1: &str = include_str!("data/contrast-gen1-manifest.json");
const RSA_1024: &str = include_str!("data/rsa1024-pkcs1.hex");
const RSA_2048_SPKI: &str = include_str!("data/rsa2048-spki.hex");

const COORDINATOR: &str = "2a5c2a2c866250bf7299b24d4ddcdaf55677b2322c255d0c6c84bf92f569ead5";
const WEB: &str = "42addda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404";

fn golden() -> Manifest {
    Manifest::decode(GEN1.as_bytes()).unwrap()
}

fn policy<'a>(m: &'a mut Manifest, hash: &str) -> &'a mut PolicyEntry {
    m.policies.get_mut(&HexString::from(hash)).unwrap()
}

type Edit = fn(&mut Manifest);

/// (what the case breaks, the edit, the full error text expected; a text ending in `…`
/// is a prefix).
const VALIDATION_CASES: &[(&str, Edit, &str)] = &[
    (
        "policy hash is not hex",
        |m| {
            let entry = m.policies.remove(&HexString::from(WEB)).unwrap();
            m.policies
                .insert(HexString::from(format!("zz{}", &WEB[2..])), entry);
        },
        "Policies[\"zzaddda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404\"]: 'z' is not a hex digit; expected 32 bytes as 64 lowercase hex characters",
    ),
    (
        "policy hash is too short",
        |m| {
            let entry = m.policies.remove(&HexString::from(WEB)).unwrap();
            m.policies.insert(HexString::from("42ad"), entry);
        },
        "Policies[\"42ad\"]: has 4 hex characters, expected 32 bytes as 64 lowercase hex characters",
    ),
    (
        "policy hash in uppercase (would never match HOST_DATA)",
        |m| {
            let entry = m.policies.remove(&HexString::from(WEB)).unwrap();
            m.policies
                .insert(HexString::from(WEB.to_uppercase()), entry);
        },
        "Policies[\"42ADDDA40EEDFEE91A598264FA67431583CFD0E9DAEEE4E1856DB444B4AA1404\"]: uses uppercase hex; write it in lowercase (32 bytes as 64 lowercase hex characters)",
    ),
    (
        "unknown role",
        |m| policy(m, WEB).role = "x".into(),
        "Policies[\"42addda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404\"].Role: unknown role \"x\"; expected \"coordinator\" or no role at all",
    ),
    (
        "the node-installer role is defined by Contrast but not admitted",
        |m| policy(m, WEB).role = "contrast-node-installer".into(),
        "Policies[\"42addda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404\"].Role: unknown role \"contrast-node-installer\"; expected \"coordinator\" or no role at all",
    ),
    (
        "no coordinator policy",
        |m| policy(m, COORDINATOR).role = String::new(),
        "Policies: expected exactly 1 policy with role 'coordinator', got 0; the Coordinator's policy must be in the manifest once (contrast generate adds it from the Coordinator's deployment)",
    ),
    (
        "two coordinator policies",
        |m| policy(m, WEB).role = "coordinator".into(),
        "Policies: expected exactly 1 policy with role 'coordinator', got 2; the Coordinator's policy must be in the manifest once (contrast generate adds it from the Coordinator's deployment)",
    ),
    (
        "a SAN with white space",
        |m| policy(m, WEB).sans = Some(vec!["web".into(), "we b".into()]),
        "Policies[\"42addda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404\"].SANs[1]: \"we b\" is not a DNS name, IP address or URI: remove it or fix it",
    ),
    (
        "no reference values at all",
        |m| m.reference_values = ReferenceValues::default(),
        "ReferenceValues: no snp or tdx entry: the manifest would accept no workload; generate it with `contrast generate --reference-values <platform>` for a supported platform",
    ),
    (
        "unknown platform",
        |m| m.reference_values.snp[0].platform = "Metal-QEMU-SEV".into(),
        "ReferenceValues.snp[0].Platform: unknown platform \"Metal-QEMU-SEV\"; expected one of: aks-clh-snp, k3s-qemu-snp, k3s-qemu-snp-gpu, k3s-qemu-tdx, rke2-qemu-tdx, metal-qemu-snp, metal-qemu-snp-gpu, metal-qemu-tdx, sim-snp, sim-tdx",
    ),
    (
        "a TDX platform on an SNP entry",
        |m| m.reference_values.snp[1].platform = "Metal-QEMU-TDX".into(),
        "ReferenceValues.snp[1].Platform: Metal-QEMU-TDX is a TDX platform, but this is a SNP entry: move the entry or fix the platform",
    ),
    (
        "simulated and real platforms mixed",
        |m| m.reference_values.tdx[0].platform = "sim-tdx".into(),
        "ReferenceValues: mixes simulated platforms (Sim-TDX) with real ones (Metal-QEMU-SNP); a manifest is either for the simulator or for real hardware: remove one kind",
    ),
    (
        "simulated platform mixed with an entry that names no platform",
        |m| {
            m.reference_values.snp[0].platform = "Sim-SNP".into();
            m.reference_values.snp[1].platform = String::new();
            m.reference_values.tdx.clear();
        },
        "ReferenceValues: mixes simulated platforms (Sim-SNP) with real ones ((no Platform: real hardware)); a manifest is either for the simulator or for real hardware: remove one kind",
    ),
    (
        "unknown SNP product",
        |m| m.reference_values.snp[0].product_name = "Naples".into(),
        "ReferenceValues.snp[0].ProductName: unknown product name \"Naples\"; expected one of Milan, Genoa, Turin",
    ),
    (
        "launch measurement of the wrong length",
        |m| m.reference_values.snp[0].trusted_measurement = HexString::from("00".repeat(32)),
        "ReferenceValues.snp[0].TrustedMeasurement: has 64 hex characters, expected 48 bytes as 96 lowercase hex characters",
    ),
    (
        "launch measurement missing",
        |m| m.reference_values.snp[0].trusted_measurement = HexString::default(),
        "ReferenceValues.snp[0].TrustedMeasurement: is empty, expected 48 bytes as 96 lowercase hex characters",
    ),
    (
        "minimum TCB not filled in",
        |m| m.reference_values.snp[0].minimum_tcb.tee_version = None,
        "ReferenceValues.snp[0].MinimumTCB.TEEVersion: not filled in: the lowest PSP OS (TEE) SVN your hardware may report; it depends on your machines, so contrast generate cannot know it (read it from a report, e.g. with snphost)",
    ),
    (
        "Turin without an FMC version",
        |m| m.reference_values.snp[1].product_name = "Turin".into(),
        "ReferenceValues.snp[1].MinimumTCB.FMCVersion: not filled in: the lowest firmware (FMC) SVN your Turin hardware may report",
    ),
    (
        "an FMC version on Milan",
        |m| m.reference_values.snp[0].minimum_tcb.fmc_version = Some(Svn(1)),
        "ReferenceValues.snp[0].MinimumTCB.FMCVersion: only Turin reports an FMC version, but ProductName is \"Milan\": remove FMCVersion",
    ),
    (
        "guest policy ABI major changed",
        |m| m.reference_values.snp[0].guest_policy.abi_major = 1,
        "ReferenceValues.snp[0].GuestPolicy.ABIMajor: is 1, must be 0: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy ABI minor neither bare metal nor AKS",
        |m| m.reference_values.snp[0].guest_policy.abi_minor = 5,
        "ReferenceValues.snp[0].GuestPolicy.ABIMinor: is 5, must be 0 (bare metal) or 31 (AKS): this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy without SMT",
        |m| m.reference_values.snp[0].guest_policy.smt = false,
        "ReferenceValues.snp[0].GuestPolicy.SMT: must be true: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy allows a migration agent",
        |m| m.reference_values.snp[0].guest_policy.migrate_ma = true,
        "ReferenceValues.snp[0].GuestPolicy.MigrateMA: must be false: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy allows debugging",
        |m| m.reference_values.snp[0].guest_policy.debug = true,
        "ReferenceValues.snp[0].GuestPolicy.Debug: must be false: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy single socket",
        |m| m.reference_values.snp[0].guest_policy.single_socket = true,
        "ReferenceValues.snp[0].GuestPolicy.SingleSocket: must be false: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy allows CXL",
        |m| m.reference_values.snp[0].guest_policy.cxl_allowed = true,
        "ReferenceValues.snp[0].GuestPolicy.CXLAllowed: must be false: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy requires AES-256-XTS",
        |m| m.reference_values.snp[0].guest_policy.mem_aes_256_xts = true,
        "ReferenceValues.snp[0].GuestPolicy.MemAES256XTS: must be false: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy requires RAPL disabled",
        |m| m.reference_values.snp[0].guest_policy.rapl_dis = true,
        "ReferenceValues.snp[0].GuestPolicy.RAPLDis: must be false: this field is fixed by the runtime and must not be changed",
    ),
    (
        "guest policy requires ciphertext hiding",
        |m| {
            m.reference_values.snp[0]
                .guest_policy
                .ciphertext_hiding_dram = true
        },
        "ReferenceValues.snp[0].GuestPolicy.CipherTextHidingDRAM: must be false: this field is fixed by the runtime and must not be changed",
    ),
    (
        "chip ID of the wrong length",
        |m| {
            m.reference_values.snp[1].allowed_chip_ids = Some(vec![HexString::from("ab".repeat(8))])
        },
        "ReferenceValues.snp[1].AllowedChipIDs[0]: has 16 hex characters, expected 64 bytes as 128 lowercase hex characters",
    ),
    (
        "MRTD not hex",
        |m| m.reference_values.tdx[0].mr_td = HexString::from("g".repeat(96)),
        "ReferenceValues.tdx[0].MrTd: 'g' is not a hex digit; expected 48 bytes as 96 lowercase hex characters",
    ),
    (
        "RTMR3 (the fourth, named 1-based as Contrast does) of the wrong length",
        |m| m.reference_values.tdx[0].rtmrs[3] = HexString::from("00"),
        "ReferenceValues.tdx[0].RTMR[4]: has 2 hex characters, expected 48 bytes as 96 lowercase hex characters",
    ),
    (
        "minimum QE SVN not filled in",
        |m| m.reference_values.tdx[0].minimum_qe_svn = None,
        "ReferenceValues.tdx[0].MinimumQeSvn: not filled in: the lowest quoting enclave SVN to accept (0 accepts any)",
    ),
    (
        "minimum PCE SVN not filled in",
        |m| m.reference_values.tdx[0].minimum_pce_svn = None,
        "ReferenceValues.tdx[0].MinimumPceSvn: not filled in: the lowest provisioning certification enclave SVN to accept (0 accepts any)",
    ),
    (
        "minimum TEE TCB SVN not filled in",
        |m| m.reference_values.tdx[0].minimum_tee_tcb_svn = HexString::default(),
        "ReferenceValues.tdx[0].MinimumTeeTcbSvn: not filled in: 16 bytes as 32 lowercase hex characters; it depends on your hardware, so contrast generate cannot know it",
    ),
    (
        "MRSEAM not filled in",
        |m| m.reference_values.tdx[0].mr_seam = HexString::default(),
        "ReferenceValues.tdx[0].MrSeam: not filled in: 48 bytes as 96 lowercase hex characters; it depends on your hardware, so contrast generate cannot know it",
    ),
    (
        "MRSEAM filled in wrongly is an error, not a value to fill in",
        |m| m.reference_values.tdx[0].mr_seam = HexString::from("00".repeat(47)),
        "ReferenceValues.tdx[0].MrSeam: has 94 hex characters, expected 48 bytes as 96 lowercase hex characters",
    ),
    (
        "TD attributes of the wrong length",
        |m| m.reference_values.tdx[0].td_attributes = HexString::from("00000010"),
        "ReferenceValues.tdx[0].TdAttributes: has 8 hex characters, expected 8 bytes as 16 lowercase hex characters",
    ),
    (
        "XFAM missing",
        |m| m.reference_values.tdx[0].xfam = HexString::default(),
        "ReferenceValues.tdx[0].Xfam: is empty, expected 8 bytes as 16 lowercase hex characters",
    ),
    (
        "PIID of the wrong length",
        |m| m.reference_values.tdx[0].allowed_piids = Some(vec![HexString::from("00".repeat(17))]),
        "ReferenceValues.tdx[0].AllowedPIIDs[0]: has 34 hex characters, expected 16 bytes as 32 lowercase hex characters",
    ),
    (
        "workload owner key digest of the wrong length",
        |m| m.workload_owner_key_digests = Some(vec![HexString::from("ab".repeat(48))]),
        "WorkloadOwnerKeyDigests[0]: has 96 hex characters, expected 32 bytes as 64 lowercase hex characters",
    ),
    (
        "seed-share owner key not hex",
        |m| m.seedshare_owner_pub_keys = Some(vec![HexString::from("not hex")]),
        "SeedshareOwnerPubKeys[0]: is not hex; expected the hex of a PKCS#1 DER RSA public key",
    ),
    (
        "seed-share owner key in SubjectPublicKeyInfo instead of PKCS#1 form",
        |m| m.seedshare_owner_pub_keys = Some(vec![HexString::from(RSA_2048_SPKI.trim())]),
        // The parser's own words follow in parentheses; only our part is pinned here.
        "SeedshareOwnerPubKeys[0]: is not a PKCS#1 DER RSA public key (…",
    ),
    (
        "seed-share owner key too small",
        |m| m.seedshare_owner_pub_keys = Some(vec![HexString::from(RSA_1024.trim())]),
        "SeedshareOwnerPubKeys[0]: RSA key has 1024 bits; seed shares need at least 2048",
    ),
];

fn matches_expected(actual: &str, expected: &str) -> bool {
    match expected.strip_suffix('…') {
        Some(prefix) => actual.starts_with(prefix),
        None => actual == expected,
    }
}

#[test]
fn every_rule_refuses_its_example_with_the_expected_text() {
    golden().validate().expect("the golden manifest is valid");
    let mut failures = Vec::new();
    for (what, edit, expected) in VALIDATION_CASES {
        let mut manifest = golden();
        edit(&mut manifest);
        match manifest.validate() {
            Ok(()) => failures.push(format!("{what}: accepted")),
            Err(errs) if !matches_expected(&errs.to_string(), expected) => failures.push(format!(
                "{what}:\n    got:      {errs}\n    expected: {expected}"
            )),
            Err(_) => {}
        }
        // The edit survives an encode/decode round trip and is still refused.
        let again = Manifest::decode(&manifest.encode()).unwrap();
        assert_eq!(again, manifest, "{what}: round trip changed the manifest");
        assert!(
            again.validate().is_err(),
            "{what}: accepted after a round trip"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_problems_are_reported_together_in_document_order() {
    let mut m = golden();
    policy(&mut m, WEB).role = "x".into();
    m.reference_values.snp[0].minimum_tcb.bootloader_version = None;
    m.reference_values.snp[0].guest_policy.debug = true;
    m.reference_values.tdx[0].mr_seam = HexString::default();
    let errs = m.validate().unwrap_err();
    let paths: Vec<_> = errs.0.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        paths,
        [
            (
                "Policies[\"42addda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404\"].Role",
                ErrorKind::Invalid
            ),
            (
                "ReferenceValues.snp[0].MinimumTCB.BootloaderVersion",
                ErrorKind::ExpectedMissing
            ),
            (
                "ReferenceValues.snp[0].GuestPolicy.Debug",
                ErrorKind::Invalid
            ),
            ("ReferenceValues.tdx[0].MrSeam", ErrorKind::ExpectedMissing),
        ]
    );
    assert!(!errs.only_expected_missing());
    assert_eq!(errs.invalid().count(), 2);
    assert_eq!(errs.expected_missing().count(), 2);
}

#[test]
fn a_manifest_without_a_coordinator_has_its_own_kind() {
    let mut m = golden();
    policy(&mut m, COORDINATOR).role = String::new();
    let errs = m.validate().unwrap_err();
    let kinds: Vec<_> = errs.0.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(kinds, [("Policies", ErrorKind::NoCoordinator)]);
    assert_eq!(
        errs.invalid().count(),
        1,
        "still wrong for everyone but generate"
    );
    // Two Coordinators are simply wrong.
    let mut m = golden();
    policy(&mut m, WEB).role = "coordinator".into();
    let errs = m.validate().unwrap_err();
    let kinds: Vec<_> = errs.0.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(kinds, [("Policies", ErrorKind::Invalid)]);
}

#[test]
fn values_left_for_the_user_are_told_apart_from_wrong_ones() {
    // What `contrast generate` writes for bare-metal platforms: everything but the
    // hardware-dependent values.
    let mut m = golden();
    m.reference_values.snp[0].minimum_tcb = Default::default();
    m.reference_values.tdx[0].mr_seam = HexString::default();
    m.reference_values.tdx[0].minimum_tee_tcb_svn = HexString::default();
    let errs = m.validate().unwrap_err();
    assert!(errs.only_expected_missing(), "{errs}");
    let to_fill: Vec<_> = errs.expected_missing().map(|e| e.path.as_str()).collect();
    assert_eq!(
        to_fill,
        [
            "ReferenceValues.snp[0].MinimumTCB.BootloaderVersion",
            "ReferenceValues.snp[0].MinimumTCB.TEEVersion",
            "ReferenceValues.snp[0].MinimumTCB.SNPVersion",
            "ReferenceValues.snp[0].MinimumTCB.MicrocodeVersion",
            "ReferenceValues.tdx[0].MinimumTeeTcbSvn",
            "ReferenceValues.tdx[0].MrSeam",
        ]
    );

    // Purging drops the entries that are only incomplete and keeps the complete one.
    m.reference_values.purge_empty();
    assert_eq!(m.reference_values.snp.len(), 1);
    assert_eq!(m.reference_values.snp[0].product_name, "Genoa");
    assert!(m.reference_values.tdx.is_empty());
    m.validate().unwrap();

    // An entry with a wrong value is kept, so the error reaches the user.
    let mut m = golden();
    m.reference_values.tdx[0].mr_seam = HexString::default();
    m.reference_values.tdx[0].xfam = HexString::from("zz");
    m.reference_values.purge_empty();
    assert_eq!(m.reference_values.tdx.len(), 1);
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let text = GEN1
        .replacen(
            "\"Policies\": {",
            "\"WorkloadOwnerPubKeys\": [],\n  \"Policies\": {",
            1,
        )
        .replacen("\"AllowedChipIDs\": null", "\"AllowedChipID\": []", 1)
        .replacen("\"SMT\": true,", "\"SMT\": true, \"SEV\": 1,", 1);
    let m = Manifest::decode(text.as_bytes()).unwrap();
    let errs = m.validate().unwrap_err();
    let found: Vec<_> = errs.0.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        found,
        [
            ("[\"WorkloadOwnerPubKeys\"]", ErrorKind::UnknownField),
            (
                "ReferenceValues.snp[0][\"AllowedChipID\"]",
                ErrorKind::UnknownField
            ),
            (
                "ReferenceValues.snp[0].GuestPolicy[\"SEV\"]",
                ErrorKind::UnknownField
            ),
        ]
    );
    assert!(
        errs.0[1].message.starts_with("unknown field; remove it or fix its spelling (known here: Platform, ProductName, TrustedMeasurement,"),
        "{}",
        errs.0[1].message
    );
    // Nothing the user wrote is lost on re-encoding, not even the unknown members.
    assert_eq!(Manifest::decode(&m.encode()).unwrap().encode(), m.encode());
    assert!(
        String::from_utf8(m.encode())
            .unwrap()
            .contains("\"AllowedChipID\": []")
    );
}

/// (what is wrong, text edit of the golden file, expected decode error).
type TextEdit = fn(&str) -> String;

const DECODE_CASES: &[(&str, TextEdit, &str)] = &[
    (
        "not JSON",
        |s| s.replacen('{', "{{", 1),
        "manifest is not valid JSON: key must be a string at line 1 column 2",
    ),
    (
        "trailing data after the document",
        |s| format!("{s}{{}}"),
        "manifest is not valid JSON: trailing characters at line 124 column 1",
    ),
    (
        "a field given twice in different letter case",
        |s| {
            s.replacen(
                "\"ProductName\": \"Milan\",",
                "\"ProductName\": \"Milan\", \"productName\": \"Genoa\",",
                1,
            )
        },
        "ReferenceValues.snp[0].ProductName: given twice (as \"ProductName\" and \"productName\"); keys are matched case-insensitively and Contrast's decoder would silently keep the last one: remove one of them",
    ),
    (
        "Rtmrs and its old spelling Rtrms both given",
        |s| s.replacen("\"MinimumQeSvn\"", "\"Rtrms\": [], \"MinimumQeSvn\"", 1),
        "ReferenceValues.tdx[0].Rtmrs: given twice (as \"Rtmrs\" and \"Rtrms\"); keys are matched case-insensitively and Contrast's decoder would silently keep the last one: remove one of them",
    ),
    (
        "a policy given twice",
        |s| {
            s.replacen(
            "\"Policies\": {",
            "\"Policies\": {\"42addda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404\": {\"SANs\": null},",
            1,
        )
        },
        "Policies[\"42addda40eedfee91a598264fa67431583cfd0e9daeee4e1856db444b4aa1404\"]: given twice; Contrast's decoder would silently keep the last one: remove one",
    ),
    (
        "a key given twice, once with Go's long-s folding (U+017F binds to 's')",
        |s| s.replacen("\"SANs\": [", "\"\u{17f}ANs\": [], \"SANs\": [", 1),
        "Policies[\"00554f51a9b4947570b955ffd6252223c1fd843c0f9da6bccdf6fdd54dcc618a\"].SANs: given twice (as \"\u{17f}ANs\" and \"SANs\"); keys are matched case-insensitively and Contrast's decoder would silently keep the last one: remove one of them",
    ),
    (
        "a string where a number belongs",
        |s| {
            s.replacen(
                "\"MicrocodeVersion\": 115",
                "\"MicrocodeVersion\": \"115\"",
                1,
            )
        },
        "ReferenceValues.snp[0].MinimumTCB.MicrocodeVersion: expected an SVN from 0 to 255, got a string",
    ),
    (
        "an SVN out of range",
        |s| s.replacen("\"MicrocodeVersion\": 115", "\"MicrocodeVersion\": 256", 1),
        "ReferenceValues.snp[0].MinimumTCB.MicrocodeVersion: expected an SVN from 0 to 255, got 256",
    ),
    (
        "a negative integer",
        |s| {
            s.replacen(
                "\"MinimumMitigationVector\": 0",
                "\"MinimumMitigationVector\": -1",
                1,
            )
        },
        "ReferenceValues.snp[0].MinimumMitigationVector: expected an integer from 0 to 18446744073709551615, got -1",
    ),
    (
        "QE SVN beyond 16 bits",
        |s| s.replacen("\"MinimumQeSvn\": 0", "\"MinimumQeSvn\": 65536", 1),
        "ReferenceValues.tdx[0].MinimumQeSvn: expected an integer from 0 to 65535, got 65536",
    ),
    (
        "three RTMRs instead of four",
        |s| {
            let start = s.find("\"Rtmrs\": [").unwrap();
            let first_end = s[start..].find("\",").unwrap() + start + 2;
            format!("{}{}", &s[..start + "\"Rtmrs\": [".len()], &s[first_end..])
        },
        "ReferenceValues.tdx[0].Rtmrs: expected an array of 4 elements, got 3",
    ),
    (
        "a boolean as a string",
        |s| s.replacen("\"SMT\": true", "\"SMT\": \"true\"", 1),
        "ReferenceValues.snp[0].GuestPolicy.SMT: expected true or false, got a string",
    ),
    (
        "null where a string belongs",
        |s| s.replacen("\"ProductName\": \"Milan\"", "\"ProductName\": null", 1),
        "ReferenceValues.snp[0].ProductName: expected a string, got null",
    ),
    (
        "the top level is not an object",
        |_| "[]".to_owned(),
        "manifest: expected an object, got an array",
    ),
];

#[test]
fn malformed_manifests_are_refused_with_the_path_and_the_reason() {
    let mut failures = Vec::new();
    for (what, edit, expected) in DECODE_CASES {
        match Manifest::decode(edit(GEN1).as_bytes()) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) if e.to_string() != *expected => failures.push(format!(
                "{what}:\n    got:      {e}\n    expected: {expected}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(matches!(
        Manifest::decode(b"{"),
        Err(DecodeError::Syntax { .. })
    ));
}
