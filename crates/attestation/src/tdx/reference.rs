//! Checking a verified TDX quote against the manifest's TDX reference values.

use contrast_manifest::{HexString, TdxReferenceValues};
use contrast_platforms::Platform;

use super::pck::pck_platform;
use super::verify::VerifiedTdxQuote;
use crate::explain::{
    Mismatch, Refusal, binding_mismatches, decode_hex, first_accepting, hex_field, or_missing,
    trust_anchor_mismatch,
};

/// What is expected of a quote besides the reference values.
#[derive(Debug, Clone, Default)]
pub struct TdxExpectations {
    /// REPORTDATA the verifier computed.
    pub report_data: Option<[u8; 64]>,
    /// Accepted MRCONFIGID[0..32] values (the manifest's policy hashes).
    pub host_data: Option<Vec<[u8; 32]>>,
    /// Accept a TD launched in debug mode (testing only).
    pub allow_debug: bool,
    /// Accept a TCB status of OutOfDate (never Revoked).
    pub allow_out_of_date: bool,
}

/// Checks `verified` against every entry; `Ok` gives the index of the first that accepts.
pub fn check_tdx_reference_values(
    verified: &VerifiedTdxQuote,
    entries: &[TdxReferenceValues],
    expect: &TdxExpectations,
) -> Result<usize, Refusal> {
    let td = &verified.quote.td_report;
    let mut host_data = [0; 32];
    host_data.copy_from_slice(&td.mr_config_id[..32]);
    let mut common = binding_mismatches(
        ("REPORTDATA", expect.report_data, td.report_data),
        ("MRCONFIGID", expect.host_data.as_deref(), host_data),
    );
    if let Some(tcb) = &verified.tcb
        && tcb.is_refused_by_default()
        && !(expect.allow_out_of_date && tcb.status != "Revoked")
    {
        common.push(Mismatch::new(
            "TCB status",
            "UpToDate (or SWHardeningNeeded/ConfigurationNeeded)",
            &tcb.status,
            format!(
                "the host's TDX module or microcode has known vulnerabilities ({}): update the host",
                if tcb.advisory_ids.is_empty() { "no advisory listed".to_owned() } else { tcb.advisory_ids.join(", ") }
            ),
        ));
    }

    first_accepting(
        common,
        entries,
        |index, entry| {
            format!(
                "tdx[{index}] ({})",
                or_missing(&entry.platform, "no platform given")
            )
        },
        |entry| entry_mismatches(verified, entry, expect),
    )
}

/// Compares a fixed-size field; an entry value that is not `N` bytes of hex never matches.
fn check_equal<const N: usize>(
    out: &mut Vec<Mismatch>,
    field: &str,
    expected: &HexString,
    actual: &[u8; N],
    hint: &str,
) {
    if decode_hex::<N>(expected).as_ref() != Some(actual) {
        let expected = if expected.is_empty() {
            "(not filled in)".to_owned()
        } else {
            expected.to_string()
        };
        out.push(Mismatch::new(field, expected, hex_field(actual), hint));
    }
}

fn entry_mismatches(
    verified: &VerifiedTdxQuote,
    entry: &TdxReferenceValues,
    expect: &TdxExpectations,
) -> Vec<Mismatch> {
    let quote = &verified.quote;
    let td = &quote.td_report;
    let mut out = Vec::new();

    out.extend(trust_anchor_mismatch(
        &entry.platform,
        verified.simulated,
        "Intel's root",
        Platform::SimTdx,
    ));

    let firmware = "the TD booted other firmware, kernel, initrd or command line than the reference values were computed for";
    check_equal(&mut out, "MRTD (MrTd)", &entry.mr_td, &td.mr_td, firmware);
    for (i, (expected, actual)) in entry.rtmrs.iter().zip(&td.rtmrs).enumerate() {
        check_equal(
            &mut out,
            &format!("RTMR{i} (Rtmrs[{i}])"),
            expected,
            actual,
            firmware,
        );
    }
    check_equal(
        &mut out,
        "MRSEAM (MrSeam)",
        &entry.mr_seam,
        &td.mr_seam,
        "the host runs another TDX module than the manifest names: fill in MrSeam with this value if you trust it",
    );
    check_equal(
        &mut out,
        "XFAM (Xfam)",
        &entry.xfam,
        &td.xfam,
        "the TD was launched with other CPU extended features enabled",
    );

    // TD attributes must match exactly, except that --allow-debug tolerates DEBUG.
    let mut attributes = td.td_attributes;
    if td.is_debug() {
        if !expect.allow_debug {
            out.push(Mismatch::new(
                "TDATTRIBUTES.DEBUG (TdAttributes)",
                "not set",
                "set",
                "the TD runs in debug mode, so the host can read its memory (accept only for tests, with --allow-debug)",
            ));
        }
        attributes[0] &= !1;
    }
    check_equal(
        &mut out,
        "TDATTRIBUTES (TdAttributes)",
        &entry.td_attributes,
        &attributes,
        "the TD was launched with other attributes than the runtime sets",
    );

    for (field, minimum, actual, what) in [
        (
            // The QE report's ISVSVN, which the CPU writes; the header's QE SVN is the
            // enclave's own word (0 from Intel's TDX QE).
            "QE report ISVSVN (MinimumQeSvn)",
            entry.minimum_qe_svn,
            quote.qe_identity().isv_svn,
            "quoting enclave",
        ),
        (
            "PCE_SVN (MinimumPceSvn)",
            entry.minimum_pce_svn,
            quote.pce_svn,
            "provisioning certification enclave",
        ),
    ] {
        match minimum {
            None => out.push(Mismatch::new(field, "(not filled in)", actual.to_string(), format!("fill in the lowest {what} SVN to accept"))),
            Some(minimum) if actual < minimum => out.push(Mismatch::new(
                field,
                format!("at least {minimum}"),
                actual.to_string(),
                format!("the host's {what} is older than the manifest allows: update the host's DCAP software"),
            )),
            Some(_) => {}
        }
    }

    match decode_hex::<16>(&entry.minimum_tee_tcb_svn) {
        Some(minimum) if td.tee_tcb_svn.iter().zip(&minimum).all(|(a, m)| a >= m) => {}
        minimum => out.push(Mismatch::new(
            "TEE_TCB_SVN (MinimumTeeTcbSvn)",
            minimum.map_or_else(|| "(not filled in)".to_owned(), |m| format!("at least {} in every byte", hex_field(&m))),
            hex_field(&td.tee_tcb_svn),
            "the host's TDX module is older than the manifest allows: update it, or fill in this value if you trust it",
        )),
    }

    if let Some(allowed) = entry.allowed_piids.as_ref().filter(|p| !p.is_empty()) {
        let piid = pck_platform(&verified.pck_der).piid;
        if !piid.is_some_and(|piid| allowed.iter().any(|a| decode_hex::<16>(a) == Some(piid))) {
            out.push(Mismatch::new(
                "PIID (AllowedPIIDs)",
                format!("one of the {} AllowedPIIDs", allowed.len()),
                piid.map_or_else(
                    || "none in the PCK certificate".to_owned(),
                    |p| hex_field(&p),
                ),
                "the workload runs on a platform that is not in the allow-list",
            ));
        }
    }
    out
}

/// The reference values under which `verified` would be accepted: what a user would put
/// into a manifest for this machine (after checking it is one they trust).
pub fn suggested_tdx_reference_values(verified: &VerifiedTdxQuote) -> TdxReferenceValues {
    let quote = &verified.quote;
    let td = &quote.td_report;
    let mut attributes = td.td_attributes;
    attributes[0] &= !1; // never suggest debug mode
    TdxReferenceValues {
        platform: if verified.simulated {
            Platform::SimTdx.name().to_owned()
        } else {
            String::new()
        },
        mr_td: HexString::from_bytes(&td.mr_td),
        rtmrs: td.rtmrs.map(|r| HexString::from_bytes(&r)),
        minimum_qe_svn: Some(quote.qe_identity().isv_svn),
        minimum_pce_svn: Some(quote.pce_svn),
        minimum_tee_tcb_svn: HexString::from_bytes(&td.tee_tcb_svn),
        mr_seam: HexString::from_bytes(&td.mr_seam),
        td_attributes: HexString::from_bytes(&attributes),
        xfam: HexString::from_bytes(&td.xfam),
        allowed_piids: None,
        ..Default::default()
    }
}
