//! Manifest validation: every problem, with its JSON path, in document order.

use contrast_platforms::{Platform, SnpProduct, Tee};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;

use crate::codec::{JsonStruct, Slot, join_path};
use crate::error::{ErrorKind, ValidationErrors};
use crate::model::{
    HexString, Manifest, PolicyEntry, ROLE_COORDINATOR, ReferenceValues, SnpReferenceValues,
    TdxReferenceValues,
};

/// Smallest seed-share owner key we accept. The seed is encrypted to these keys.
const MIN_SEEDSHARE_KEY_BITS: u32 = 2048;

/// Whether an empty value is something the user must fill in, or simply wrong.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IfEmpty {
    FillIn,
    Invalid,
}

pub(crate) fn validate_manifest(manifest: &Manifest, errs: &mut ValidationErrors) {
    check_unknown_fields(manifest, "", errs);

    let mut coordinators = 0;
    for (hash, entry) in &manifest.policies {
        let path = format!("Policies[{}]", json_quote(hash.as_str()));
        check_hex(errs, &path, hash, 32, IfEmpty::Invalid);
        check_policy_entry(entry, &path, errs);
        coordinators += usize::from(entry.is_coordinator());
    }
    if coordinators != 1 {
        let message = format!(
            "expected exactly 1 policy with role 'coordinator', got {coordinators}; \
             the Coordinator's policy must be in the manifest once (contrast generate adds \
             it from the Coordinator's deployment)"
        );
        if coordinators == 0 {
            errs.no_coordinator_at("Policies", message);
        } else {
            errs.invalid_at("Policies", message);
        }
    }

    check_reference_values(&manifest.reference_values, "ReferenceValues", errs);

    for (i, digest) in manifest
        .workload_owner_key_digests
        .iter()
        .flatten()
        .enumerate()
    {
        let path = format!("WorkloadOwnerKeyDigests[{i}]");
        check_hex(errs, &path, digest, 32, IfEmpty::Invalid);
    }

    for (i, key) in manifest
        .seedshare_owner_pub_keys
        .iter()
        .flatten()
        .enumerate()
    {
        check_seedshare_owner_key(key, &format!("SeedshareOwnerPubKeys[{i}]"), errs);
    }
}

fn check_policy_entry(entry: &PolicyEntry, path: &str, errs: &mut ValidationErrors) {
    check_unknown_fields(entry, path, errs);
    if !entry.role.is_empty() && entry.role != ROLE_COORDINATOR {
        errs.invalid_at(
            join_path(path, "Role"),
            format!(
                "unknown role {:?}; expected \"coordinator\" or no role at all",
                entry.role
            ),
        );
    }
    for (i, san) in entry.sans.iter().flatten().enumerate() {
        if san.trim().is_empty() || san.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errs.invalid_at(
                join_path(path, &format!("SANs[{i}]")),
                format!("{san:?} is not a DNS name, IP address or URI: remove it or fix it"),
            );
        }
    }
}

fn check_reference_values(values: &ReferenceValues, path: &str, errs: &mut ValidationErrors) {
    check_unknown_fields(values, path, errs);
    if values.snp.is_empty() && values.tdx.is_empty() {
        errs.invalid_at(
            path,
            "no snp or tdx entry: the manifest would accept no workload; generate it with \
             `contrast generate --reference-values <platform>` for a supported platform",
        );
    }
    for (i, entry) in values.snp.iter().enumerate() {
        check_snp(entry, &join_path(path, &format!("snp[{i}]")), errs);
    }
    for (i, entry) in values.tdx.iter().enumerate() {
        check_tdx(entry, &join_path(path, &format!("tdx[{i}]")), errs);
    }

    // Simulated evidence is signed by a local root: a manifest that also accepts real
    // hardware would let anyone with the simulator impersonate a real workload.
    let platforms = values
        .snp
        .iter()
        .map(|e| e.platform.as_str())
        .chain(values.tdx.iter().map(|e| e.platform.as_str()));
    let (mut simulated, mut real) = (Vec::new(), Vec::new());
    for name in platforms {
        match name.parse::<Platform>() {
            Ok(p) if p.is_simulated() => simulated.push(p.name()),
            Ok(p) => real.push(p.name()),
            Err(_) if name.is_empty() => real.push("(no Platform: real hardware)"),
            Err(_) => {} // reported on the entry
        }
    }
    if !simulated.is_empty() && !real.is_empty() {
        simulated.sort_unstable();
        simulated.dedup();
        real.sort_unstable();
        real.dedup();
        errs.invalid_at(
            path,
            format!(
                "mixes simulated platforms ({}) with real ones ({}); a manifest is either for \
                 the simulator or for real hardware: remove one kind",
                simulated.join(", "),
                real.join(", ")
            ),
        );
    }
}

fn check_platform(platform: &str, tee: Tee, path: &str, errs: &mut ValidationErrors) {
    if platform.is_empty() {
        return; // Early Gen-1 manifests have no Platform.
    }
    match platform.parse::<Platform>() {
        Ok(p) if p.tee() == tee => {}
        Ok(p) => errs.invalid_at(
            join_path(path, "Platform"),
            format!(
                "{p} is a {} platform, but this is a {tee} entry: move the entry or fix the platform",
                p.tee()
            ),
        ),
        Err(e) => errs.invalid_at(join_path(path, "Platform"), e.to_string()),
    }
}

fn check_snp(entry: &SnpReferenceValues, path: &str, errs: &mut ValidationErrors) {
    check_unknown_fields(entry, path, errs);
    check_platform(&entry.platform, Tee::Snp, path, errs);

    let is_turin = entry.product_name == "Turin";
    if SnpProduct::ALL
        .iter()
        .all(|p| p.name() != entry.product_name)
    {
        errs.invalid_at(
            join_path(path, "ProductName"),
            format!(
                "unknown product name {:?}; expected one of {}",
                entry.product_name,
                SnpProduct::ALL.map(SnpProduct::name).join(", ")
            ),
        );
    }

    check_hex(
        errs,
        &join_path(path, "TrustedMeasurement"),
        &entry.trusted_measurement,
        48,
        IfEmpty::Invalid,
    );

    let tcb = &entry.minimum_tcb;
    let tcb_path = join_path(path, "MinimumTCB");
    check_unknown_fields(tcb, &tcb_path, errs);
    let svns = [
        ("BootloaderVersion", tcb.bootloader_version, "boot loader"),
        ("TEEVersion", tcb.tee_version, "PSP OS (TEE)"),
        ("SNPVersion", tcb.snp_version, "SNP firmware"),
        ("MicrocodeVersion", tcb.microcode_version, "microcode"),
    ];
    for (name, value, what) in svns {
        if value.is_none() {
            errs.missing_at(
                join_path(&tcb_path, name),
                format!(
                    "the lowest {what} SVN your hardware may report; it depends on your \
                     machines, so contrast generate cannot know it (read it from a report, \
                     e.g. with snphost)"
                ),
            );
        }
    }
    match (is_turin, tcb.fmc_version) {
        (true, None) => errs.missing_at(
            join_path(&tcb_path, "FMCVersion"),
            "the lowest firmware (FMC) SVN your Turin hardware may report",
        ),
        (false, Some(_)) if !entry.product_name.is_empty() => errs.invalid_at(
            join_path(&tcb_path, "FMCVersion"),
            format!(
                "only Turin reports an FMC version, but ProductName is {:?}: remove FMCVersion",
                entry.product_name
            ),
        ),
        _ => {}
    }

    let policy = &entry.guest_policy;
    let policy_path = join_path(path, "GuestPolicy");
    check_unknown_fields(policy, &policy_path, errs);
    let fixed = "this field is fixed by the runtime and must not be changed";
    if policy.abi_major != 0 {
        errs.invalid_at(
            join_path(&policy_path, "ABIMajor"),
            format!("is {}, must be 0: {fixed}", policy.abi_major),
        );
    }
    if policy.abi_minor != 0 && policy.abi_minor != 31 {
        errs.invalid_at(
            join_path(&policy_path, "ABIMinor"),
            format!(
                "is {}, must be 0 (bare metal) or 31 (AKS): {fixed}",
                policy.abi_minor
            ),
        );
    }
    if !policy.smt {
        errs.invalid_at(
            join_path(&policy_path, "SMT"),
            format!("must be true: {fixed}"),
        );
    }
    let must_be_false = [
        ("MigrateMA", policy.migrate_ma),
        ("Debug", policy.debug),
        ("SingleSocket", policy.single_socket),
        ("CXLAllowed", policy.cxl_allowed),
        ("MemAES256XTS", policy.mem_aes_256_xts),
        ("RAPLDis", policy.rapl_dis),
        ("CipherTextHidingDRAM", policy.ciphertext_hiding_dram),
    ];
    for (name, set) in must_be_false {
        if set {
            errs.invalid_at(
                join_path(&policy_path, name),
                format!("must be false: {fixed}"),
            );
        }
    }
    check_unknown_fields(&entry.platform_info, &join_path(path, "PlatformInfo"), errs);

    for (i, chip_id) in entry.allowed_chip_ids.iter().flatten().enumerate() {
        check_hex(
            errs,
            &join_path(path, &format!("AllowedChipIDs[{i}]")),
            chip_id,
            64,
            IfEmpty::Invalid,
        );
    }
}

fn check_tdx(entry: &TdxReferenceValues, path: &str, errs: &mut ValidationErrors) {
    check_unknown_fields(entry, path, errs);
    check_platform(&entry.platform, Tee::Tdx, path, errs);
    check_hex(
        errs,
        &join_path(path, "MrTd"),
        &entry.mr_td,
        48,
        IfEmpty::Invalid,
    );
    for (i, rtmr) in entry.rtmrs.iter().enumerate() {
        // Contrast names RTMRs 1-based in its errors.
        let rtmr_path = join_path(path, &format!("RTMR[{}]", i + 1));
        check_hex(errs, &rtmr_path, rtmr, 48, IfEmpty::Invalid);
    }
    let svns = [
        ("MinimumQeSvn", entry.minimum_qe_svn, "quoting enclave"),
        (
            "MinimumPceSvn",
            entry.minimum_pce_svn,
            "provisioning certification enclave",
        ),
    ];
    for (name, value, what) in svns {
        if value.is_none() {
            errs.missing_at(
                join_path(path, name),
                format!("the lowest {what} SVN to accept (0 accepts any)"),
            );
        }
    }
    check_hex(
        errs,
        &join_path(path, "MinimumTeeTcbSvn"),
        &entry.minimum_tee_tcb_svn,
        16,
        IfEmpty::FillIn,
    );
    check_hex(
        errs,
        &join_path(path, "MrSeam"),
        &entry.mr_seam,
        48,
        IfEmpty::FillIn,
    );
    check_hex(
        errs,
        &join_path(path, "TdAttributes"),
        &entry.td_attributes,
        8,
        IfEmpty::Invalid,
    );
    check_hex(
        errs,
        &join_path(path, "Xfam"),
        &entry.xfam,
        8,
        IfEmpty::Invalid,
    );
    for (i, piid) in entry.allowed_piids.iter().flatten().enumerate() {
        check_hex(
            errs,
            &join_path(path, &format!("AllowedPIIDs[{i}]")),
            piid,
            16,
            IfEmpty::Invalid,
        );
    }
}

/// Checks that `value` is `len` bytes of lowercase hex.
fn check_hex(
    errs: &mut ValidationErrors,
    path: &str,
    value: &HexString,
    len: usize,
    if_empty: IfEmpty,
) {
    let text = value.as_str();
    let expected = format!("{len} bytes as {} lowercase hex characters", 2 * len);
    if text.is_empty() {
        match if_empty {
            IfEmpty::FillIn => errs.missing_at(
                path,
                format!(
                    "{expected}; it depends on your hardware, so contrast generate cannot know it"
                ),
            ),
            IfEmpty::Invalid => errs.invalid_at(path, format!("is empty, expected {expected}")),
        }
    } else if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        errs.invalid_at(
            path,
            format!("{bad:?} is not a hex digit; expected {expected}"),
        );
    } else if text.chars().any(|c| c.is_ascii_uppercase()) {
        errs.invalid_at(
            path,
            format!("uses uppercase hex; write it in lowercase ({expected})"),
        );
    } else if text.len() != 2 * len {
        errs.invalid_at(
            path,
            format!("has {} hex characters, expected {expected}", text.len()),
        );
    }
}

fn check_seedshare_owner_key(key: &HexString, path: &str, errs: &mut ValidationErrors) {
    let Some(der) = key.to_bytes() else {
        errs.invalid_at(
            path,
            "is not hex; expected the hex of a PKCS#1 DER RSA public key",
        );
        return;
    };
    if key.as_str().chars().any(|c| c.is_ascii_uppercase()) {
        errs.invalid_at(path, "uses uppercase hex; write it in lowercase");
    }
    match rsa::PublicKey::from_pkcs1_der(&der) {
        Err(e) => errs.invalid_at(
            path,
            format!(
                "is not a PKCS#1 DER RSA public key ({e}); `contrast generate` writes the \
                 right form from seedshare-owner.pem"
            ),
        ),
        Ok(rsa_key) if rsa_key.n().bit_width() < MIN_SEEDSHARE_KEY_BITS => errs.invalid_at(
            path,
            format!(
                "RSA key has {} bits; seed shares need at least {MIN_SEEDSHARE_KEY_BITS}",
                rsa_key.n().bit_width()
            ),
        ),
        Ok(_) => {}
    }
}

/// A key as a JSON string literal, for paths (`Policies["ab12…"]`).
pub(crate) fn json_quote(key: &str) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"))
}

/// Members that bind to no field: Contrast's decoder drops them silently, so a typo such
/// as `AllowedChipID` would quietly accept every chip. We refuse them.
fn check_unknown_fields<T: JsonStruct>(value: &T, path: &str, errs: &mut ValidationErrors) {
    for slot in value.layout().slots() {
        if let Slot::Unknown { key, .. } = slot {
            let known: Vec<_> = T::FIELDS.iter().map(|f| f.name).collect();
            errs.unknown_field_at(
                format!("{path}[{}]", json_quote(key)),
                format!(
                    "unknown field; remove it or fix its spelling (known here: {})",
                    known.join(", ")
                ),
            );
        }
    }
}

/// The path of the first member of `values` that binds to no field.
pub(crate) fn first_unknown_field(values: &ReferenceValues) -> Option<String> {
    let mut errs = ValidationErrors::default();
    check_reference_values(values, "", &mut errs);
    errs.0
        .into_iter()
        .find(|e| e.kind == ErrorKind::UnknownField)
        .map(|e| e.path)
}

/// Notes on what was read but will be written differently (old spellings).
pub(crate) fn alias_warnings(manifest: &Manifest) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, entry) in manifest.reference_values.tdx.iter().enumerate() {
        for slot in entry.layout.slots() {
            if let Slot::Field { name, key } = slot {
                let field = TdxReferenceValues::FIELDS.iter().find(|f| f.name == *name);
                if field.is_some_and(|f| f.aliases.iter().any(|a| a.eq_ignore_ascii_case(key))) {
                    warnings.push(format!(
                        "ReferenceValues.tdx[{i}].{key}: old spelling of {name}; read as {name}, \
                         and written as {name} from now on"
                    ));
                }
            }
        }
    }
    warnings
}

impl ReferenceValues {
    /// Drops entries whose only problems are values the user has not filled in yet, as
    /// Contrast does before it writes a manifest for platforms the user did not pick.
    pub fn purge_empty(&mut self) {
        fn keep(check: impl FnOnce(&mut ValidationErrors)) -> bool {
            let mut errs = ValidationErrors::default();
            check(&mut errs);
            errs.is_empty() || !errs.only_expected_missing()
        }
        self.snp.retain(|e| keep(|errs| check_snp(e, "", errs)));
        self.tdx.retain(|e| keep(|errs| check_tdx(e, "", errs)));
    }
}
