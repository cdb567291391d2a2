//! Checking a verified SEV-SNP report against the manifest's SNP reference values.

use contrast_manifest::{HexString, SnpGuestPolicy, SnpReferenceValues};
use contrast_platforms::Platform;

use super::report::TcbVersion;
use super::verify::VerifiedSnpReport;
use crate::explain::{
    Mismatch, Refusal, binding_mismatches, decode_hex, first_accepting, hex_field, or_missing,
    trust_anchor_mismatch,
};

/// What is expected of a report besides the reference values.
#[derive(Debug, Clone, Default)]
pub struct SnpExpectations {
    /// REPORT_DATA the verifier computed (aTLS: SHA-512 of key and nonce).
    pub report_data: Option<[u8; 64]>,
    /// Accepted HOST_DATA values (the manifest's policy hashes); `None` skips the check.
    pub host_data: Option<Vec<[u8; 32]>>,
    /// The VMPL the report must come from (0 unless a paravisor is in between).
    pub vmpl: u32,
    /// Accept a guest launched with debugging allowed (testing only).
    pub allow_debug: bool,
}

/// Checks `verified` against every entry; `Ok` gives the index of the first that accepts.
pub fn check_snp_reference_values(
    verified: &VerifiedSnpReport,
    entries: &[SnpReferenceValues],
    expect: &SnpExpectations,
) -> Result<usize, Refusal> {
    let report = &verified.report;
    let common = binding_mismatches(
        ("REPORT_DATA", expect.report_data, report.report_data()),
        ("HOST_DATA", expect.host_data.as_deref(), report.host_data()),
    );
    first_accepting(
        common,
        entries,
        |index, entry| {
            format!(
                "snp[{index}] ({}, {})",
                or_missing(&entry.platform, "no platform given"),
                or_missing(&entry.product_name, "no product given")
            )
        },
        |entry| entry_mismatches(verified, entry, expect),
    )
}

fn entry_mismatches(
    verified: &VerifiedSnpReport,
    entry: &SnpReferenceValues,
    expect: &SnpExpectations,
) -> Vec<Mismatch> {
    let report = &verified.report;
    let mut out = Vec::new();

    out.extend(trust_anchor_mismatch(
        &entry.platform,
        verified.simulated,
        "AMD's root",
        Platform::SimSnp,
    ));

    if entry.product_name != verified.product.name() {
        out.push(Mismatch::new(
            "product (ProductName)",
            &entry.product_name,
            verified.product.name(),
            "these reference values are for another CPU generation",
        ));
    }

    match decode_hex::<48>(&entry.trusted_measurement) {
        Some(expected) if expected == report.measurement() => {}
        expected => out.push(Mismatch::new(
            "MEASUREMENT (TrustedMeasurement)",
            expected.map_or_else(|| format!("{} (not 48 bytes of hex)", entry.trusted_measurement), |e| hex_field(&e)),
            hex_field(&report.measurement()),
            "the VM booted other firmware, kernel, initrd, command line or vCPU count than the reference values were computed for",
        )),
    }

    check_policy(
        report.policy(),
        &entry.guest_policy,
        expect.allow_debug,
        &mut out,
    );

    if report.vmpl() != expect.vmpl {
        out.push(Mismatch::new(
            "VMPL",
            expect.vmpl.to_string(),
            report.vmpl().to_string(),
            "the report was requested from another privilege level than the guest kernel's",
        ));
    }

    check_tcb(verified, entry, &mut out);
    check_platform_info(report.platform_info(), entry, &mut out);

    let minimum = entry.minimum_mitigation_vector;
    if minimum != 0 {
        for (field, vector) in [
            (
                "LAUNCH_MIT_VECTOR (MinimumMitigationVector)",
                report.launch_mitigation_vector(),
            ),
            (
                "CURRENT_MIT_VECTOR (MinimumMitigationVector)",
                report.current_mitigation_vector(),
            ),
        ] {
            match vector {
                Some(v) if v & minimum == minimum => {}
                Some(v) => out.push(Mismatch::new(
                    field,
                    format!("all bits of {minimum:#x}"),
                    format!("{v:#x}"),
                    "the host lacks mitigations the reference values require: update its firmware",
                )),
                None => out.push(Mismatch::new(
                    field,
                    format!("all bits of {minimum:#x}"),
                    format!("none (report version {})", report.version()),
                    "only report version 5 and later carry mitigation vectors: update the host's SNP firmware",
                )),
            }
        }
    }

    if let Some(allowed) = entry
        .allowed_chip_ids
        .as_ref()
        .filter(|ids| !ids.is_empty())
    {
        let chip_id = report.chip_id();
        if !allowed
            .iter()
            .any(|id| decode_hex::<64>(id) == Some(chip_id))
        {
            out.push(Mismatch::new(
                "CHIP_ID (AllowedChipIDs)",
                format!("one of the {} AllowedChipIDs", allowed.len()),
                hex_field(&chip_id),
                "the workload runs on a machine that is not in the allow-list",
            ));
        }
    }

    if entry
        .platform
        .parse::<Platform>()
        .is_ok_and(Platform::uses_snp_id_blocks)
    {
        check_id_block(report, entry, &mut out);
    }
    out
}

/// On platforms whose runtime launches VMs with Contrast's ID block, ID_KEY_DIGEST must be
/// the digest of the key recovered for the reference measurement and the launch policy
/// (the firmware accepts the block only for that launch digest and policy), and no author
/// key may be present. A VM launched without the ID block, or with another, is refused.
fn check_id_block(report: &super::SnpReport, entry: &SnpReferenceValues, out: &mut Vec<Mismatch>) {
    // A measurement that does not decode is already a mismatch of its own.
    let Some(measurement) = decode_hex::<48>(&entry.trusted_measurement) else {
        return;
    };
    match super::idblock::id_blocks(&measurement, report.policy()) {
        Ok(blocks) if blocks.id_key_digest == report.id_key_digest() => {}
        Ok(blocks) => out.push(Mismatch::new(
            "ID_KEY_DIGEST",
            hex_field(&blocks.id_key_digest),
            hex_field(&report.id_key_digest()),
            "the VM was not launched with the runtime's ID block for the reference measurement: the node's runtime installation is not ours (install it with --snp-id-blocks)",
        )),
        Err(e) => out.push(Mismatch::new(
            "ID_KEY_DIGEST",
            "the digest of the ID key for the reference measurement",
            hex_field(&report.id_key_digest()),
            e.to_string(),
        )),
    }
    if report.author_key_en() || report.author_key_digest() != [0; 48] {
        out.push(Mismatch::new(
            "AUTHOR_KEY_DIGEST",
            "no author key",
            hex_field(&report.author_key_digest()),
            "Contrast's ID block has no author key: the VM was launched with an ID block of someone else's",
        ));
    }
}

fn check_policy(bits: u64, expected: &SnpGuestPolicy, allow_debug: bool, out: &mut Vec<Mismatch>) {
    let Some(actual) = SnpGuestPolicy::from_bits(bits) else {
        out.push(Mismatch::new(
            "POLICY (GuestPolicy)",
            format!("{:#x}", expected.to_bits()),
            format!("{bits:#x}"),
            "the policy has reserved bits wrong: the report is malformed",
        ));
        return;
    };
    let mut field = |name: &str, expected: String, actual: String, hint: &str| {
        out.push(Mismatch::new(
            format!("POLICY.{name} (GuestPolicy)"),
            expected,
            actual,
            hint,
        ));
    };
    if (actual.abi_major, actual.abi_minor) < (expected.abi_major, expected.abi_minor) {
        field(
            "ABI",
            format!("at least {}.{}", expected.abi_major, expected.abi_minor),
            format!("{}.{}", actual.abi_major, actual.abi_minor),
            "the VM accepts older SNP firmware than the reference values",
        );
    }
    // Bits that permit something: the report may set them only where the entry does.
    let permissions = [
        (
            "SMT",
            actual.smt,
            expected.smt,
            "the VM may share cores with other VMs",
        ),
        (
            "MIGRATE_MA",
            actual.migrate_ma,
            expected.migrate_ma,
            "a migration agent may export the VM's memory",
        ),
        (
            "CXL_ALLOW",
            actual.cxl_allowed,
            expected.cxl_allowed,
            "the VM may use CXL memory",
        ),
    ];
    for (name, actual, expected, hint) in permissions {
        if actual && !expected {
            field(name, "not allowed".into(), "allowed".into(), hint);
        }
    }
    if actual.debug && !(expected.debug || allow_debug) {
        field(
            "DEBUG",
            "not allowed".into(),
            "allowed".into(),
            "the VM was launched with debugging allowed, so the host can read its memory (accept only for tests, with --allow-debug)",
        );
    }
    // Bits that require something: the report must set them where the entry does.
    let requirements = [
        (
            "SINGLE_SOCKET",
            actual.single_socket,
            expected.single_socket,
        ),
        (
            "MEM_AES_256_XTS",
            actual.mem_aes_256_xts,
            expected.mem_aes_256_xts,
        ),
        ("RAPL_DIS", actual.rapl_dis, expected.rapl_dis),
        (
            "CIPHERTEXT_HIDING",
            actual.ciphertext_hiding_dram,
            expected.ciphertext_hiding_dram,
        ),
        (
            "PAGE_SWAP_DISABLE",
            actual.page_swap_disable,
            expected.page_swap_disable,
        ),
    ];
    for (name, actual, expected) in requirements {
        if expected && !actual {
            field(
                name,
                "required".into(),
                "not set".into(),
                "the VM was launched without a protection the reference values require",
            );
        }
    }
}

fn check_tcb(verified: &VerifiedSnpReport, entry: &SnpReferenceValues, out: &mut Vec<Mismatch>) {
    let tcb = &entry.minimum_tcb;
    let (Some(bl), Some(tee), Some(snp), Some(ucode)) = (
        tcb.bootloader_version,
        tcb.tee_version,
        tcb.snp_version,
        tcb.microcode_version,
    ) else {
        out.push(Mismatch::new(
            "MinimumTCB",
            "all four SVNs filled in",
            "some are empty",
            "fill in MinimumTCB in the manifest (the values below show what this machine reports)",
        ));
        return;
    };
    let minimum = TcbVersion {
        fmc: tcb.fmc_version.map(|s| s.0),
        bootloader: bl.0,
        tee: tee.0,
        snp: snp.0,
        microcode: ucode.0,
    };
    // Provisional firmware is allowed to be newer; what counts is every TCB the report
    // names, the committed one included.
    for (field, actual) in [
        ("CURRENT_TCB (MinimumTCB)", verified.current_tcb),
        ("COMMITTED_TCB (MinimumTCB)", verified.committed_tcb),
        ("LAUNCH_TCB (MinimumTCB)", verified.launch_tcb),
        ("REPORTED_TCB (MinimumTCB)", verified.reported_tcb),
    ] {
        if !actual.meets(&minimum) {
            out.push(Mismatch::new(
                field,
                format!("at least {minimum}"),
                actual.to_string(),
                "the host's firmware is older than the manifest's MinimumTCB: update the host, or lower MinimumTCB if you trust it",
            ));
        }
    }
}

fn check_platform_info(bits: u64, entry: &SnpReferenceValues, out: &mut Vec<Mismatch>) {
    let expected = &entry.platform_info;
    let bit = |n: u32| bits & (1 << n) != 0;
    if bit(0) && !expected.smt_enabled {
        out.push(Mismatch::new(
            "PLATFORM_INFO.SMT_EN (PlatformInfo)",
            "SMT disabled",
            "SMT enabled",
            "the host runs with SMT on, which the reference values do not allow",
        ));
    }
    let requirements = [
        ("TSME_EN", 1, expected.tsme_enabled),
        ("ECC_EN", 2, expected.ecc_enabled),
        ("RAPL_DIS", 3, expected.rapl_disabled),
        (
            "CIPHERTEXT_HIDING_EN",
            4,
            expected.ciphertext_hiding_dram_enabled,
        ),
        ("ALIAS_CHECK_COMPLETE", 5, expected.alias_check_complete),
        ("SEV_TIO_EN", 7, expected.tio_enabled),
    ];
    for (name, n, required) in requirements {
        if required && !bit(n) {
            out.push(Mismatch::new(
                format!("PLATFORM_INFO.{name} (PlatformInfo)"),
                "set",
                "not set",
                "the host lacks a platform feature the reference values require",
            ));
        }
    }
}

/// The reference values under which `verified` would be accepted: what a user would put
/// into a manifest for this machine (after checking it is one they trust).
pub fn suggested_reference_values(verified: &VerifiedSnpReport) -> SnpReferenceValues {
    use contrast_manifest::{SnpPlatformInfo, SnpTcb, Svn};
    let report = &verified.report;
    // The lowest of the TCBs the report names, per component, so all four checks pass.
    let tcbs = [
        verified.current_tcb,
        verified.committed_tcb,
        verified.launch_tcb,
        verified.reported_tcb,
    ];
    let lowest = |f: fn(&TcbVersion) -> u8| tcbs.iter().map(f).min().unwrap_or(0);
    let mut policy = SnpGuestPolicy::from_bits(report.policy()).unwrap_or_default();
    // Never suggest debugging.
    policy.debug = false;
    SnpReferenceValues {
        platform: if verified.simulated {
            Platform::SimSnp.name().to_owned()
        } else {
            String::new()
        },
        product_name: verified.product.name().to_owned(),
        trusted_measurement: HexString::from_bytes(&report.measurement()),
        minimum_tcb: SnpTcb {
            bootloader_version: Some(Svn(lowest(|t| t.bootloader))),
            tee_version: Some(Svn(lowest(|t| t.tee))),
            snp_version: Some(Svn(lowest(|t| t.snp))),
            microcode_version: Some(Svn(lowest(|t| t.microcode))),
            fmc_version: verified
                .reported_tcb
                .fmc
                .map(|_| Svn(lowest(|t| t.fmc.unwrap_or(0)))),
            ..Default::default()
        },
        guest_policy: policy,
        platform_info: SnpPlatformInfo::from_bits(report.platform_info()),
        minimum_mitigation_vector: 0,
        allowed_chip_ids: None,
        ..Default::default()
    }
}
