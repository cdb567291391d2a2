//! The SNP attestation document: go-sev-guest's `sevsnp.Attestation`.
//!
//! The report is carried field by field, as go-sev-guest's `ReportToProto` splits it, and
//! rebuilt as its `ReportToAbiBytes` does: every byte of the 1184-byte report is either a
//! field of `sevsnp.Report` or reserved (and zero). Version-dependent parts:
//! * CPUID family, model and stepping (bytes 0x188..0x18B) exist from version 3 on and
//!   travel as `cpuid1eax_fms`, the CPUID(1).EAX form (extended family in bits 27..20,
//!   extended model 19..16, family 11..8, model 7..4, stepping 3..0); a version 2 report
//!   has reserved bytes there.
//! * The mitigation vectors (0x1F8, 0x200) are carried whatever the version, as the
//!   current go-sev-guest does; older reports have zeros there.
//! * The 512-byte signature area travels whole; only r and s (0x90 bytes) may be non-zero.

use prost::Message;

use super::proto::{Attestation, CertificateChain, Report, SevProduct, UInt32Value};
use super::{DocumentError, fits, fixed, protobuf_error};
use crate::snp::{REPORT_SIZE, SIGNED_LEN, SigningKey, SnpEndorsements, SnpProduct, SnpReport};

/// The key of AMD's CRL in the certificate chain's `extras`, as Contrast's issuer puts it.
pub const CRL_EXTRAS_KEY: &str = "00569ee4-e480-4fba-bbf4-45b629901180";

const MESSAGE: &str = "sevsnp.Attestation";

/// Offset of the signature area; the signature's r and s take its first 0x90 bytes.
const SIGNATURE_OFFSET: usize = SIGNED_LEN;
const SIGNATURE_RS_LEN: usize = 0x90;
/// KEY_INFO bits 5..31 are reserved.
const SIGNER_INFO_RESERVED: u32 = !0x1f;

/// A decoded SNP attestation document.
#[derive(Debug, Clone)]
pub struct SnpDocument {
    /// The 1184-byte report, rebuilt from the document's fields.
    pub report: Vec<u8>,
    /// The certificates (the VCEK or VLEK, by the report's signing key) and the CRL the
    /// document carries.
    pub endorsements: SnpEndorsements,
    /// The product line the issuer named, if it named a known one (not authenticated: the
    /// verifier takes the product line from the report and the certificates).
    pub product: Option<SnpProduct>,
}

/// The reserved byte ranges of a report of `version`: zero in every report the firmware
/// makes, and without a field in the document.
fn reserved_ranges(version: u32) -> [(usize, usize); 6] {
    let cpuid_end = if version >= 3 { 0x18B } else { 0x188 };
    [
        (0x4C, 0x50),
        (cpuid_end, 0x1A0),
        (0x1EB, 0x1EC),
        (0x1EF, 0x1F0),
        (0x208, SIGNATURE_OFFSET),
        (SIGNATURE_OFFSET + SIGNATURE_RS_LEN, REPORT_SIZE),
    ]
}

/// CPUID(1).EAX of a family, model and stepping: family 0xF and above is 0xF plus the
/// extended family; the model's high nibble is the extended model.
fn fms_to_cpuid1_eax(family: u8, model: u8, stepping: u8) -> u32 {
    let (extended_family, family_id) = if family >= 0xf {
        (family - 0xf, 0xf)
    } else {
        (0, family)
    };
    u32::from(extended_family) << 20
        | u32::from(model >> 4) << 16
        | u32::from(family_id) << 8
        | u32::from(model & 0xf) << 4
        | u32::from(stepping & 0xf)
}

/// The family, model and stepping in a CPUID(1).EAX value.
fn fms_from_cpuid1_eax(eax: u32) -> (u8, u8, u8) {
    let nibble = |shift: u32| ((eax >> shift) & 0xf) as u8;
    let extended_family = ((eax >> 20) & 0xff) as u8;
    (
        extended_family.wrapping_add(nibble(8)),
        nibble(16) << 4 | nibble(4),
        nibble(0),
    )
}

fn u32_at(raw: &[u8; REPORT_SIZE], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&raw[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(raw: &[u8; REPORT_SIZE], offset: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&raw[offset..offset + 8]);
    u64::from_le_bytes(word)
}

/// Splits a report into `sevsnp.Report`, refusing what the fields cannot carry.
fn report_to_proto(raw: &[u8; REPORT_SIZE]) -> Result<Report, DocumentError> {
    let version = u32_at(raw, 0x00);
    for (start, end) in reserved_ranges(version) {
        if raw[start..end].iter().any(|b| *b != 0) {
            return Err(DocumentError::ReservedBytes { start, end });
        }
    }
    let signer_info = u32_at(raw, 0x48);
    if signer_info & SIGNER_INFO_RESERVED != 0 {
        return Err(DocumentError::NotRepresentable {
            field: "KEY_INFO",
            actual: format!("{signer_info:#x}"),
            why: "its bits 5 to 31 are reserved; Contrast's verifiers refuse them",
        });
    }
    let cpuid1eax_fms = if version >= 3 {
        let (family, model, stepping) = (raw[0x188], raw[0x189], raw[0x18A]);
        if stepping > 0xf {
            return Err(DocumentError::NotRepresentable {
                field: "CPUID_STEP",
                actual: format!("{stepping:#x}"),
                why: "cpuid1eax_fms holds a stepping of 4 bits",
            });
        }
        fms_to_cpuid1_eax(family, model, stepping)
    } else {
        0
    };
    let bytes = |start: usize, len: usize| raw[start..start + len].to_vec();
    Ok(Report {
        version,
        guest_svn: u32_at(raw, 0x04),
        policy: u64_at(raw, 0x08),
        family_id: bytes(0x10, 16),
        image_id: bytes(0x20, 16),
        vmpl: u32_at(raw, 0x30),
        signature_algo: u32_at(raw, 0x34),
        current_tcb: u64_at(raw, 0x38),
        platform_info: u64_at(raw, 0x40),
        signer_info,
        report_data: bytes(0x50, 64),
        measurement: bytes(0x90, 48),
        host_data: bytes(0xC0, 32),
        id_key_digest: bytes(0xE0, 48),
        author_key_digest: bytes(0x110, 48),
        report_id: bytes(0x140, 32),
        report_id_ma: bytes(0x160, 32),
        reported_tcb: u64_at(raw, 0x180),
        chip_id: bytes(0x1A0, 64),
        committed_tcb: u64_at(raw, 0x1E0),
        current_build: raw[0x1E8].into(),
        current_minor: raw[0x1E9].into(),
        current_major: raw[0x1EA].into(),
        committed_build: raw[0x1EC].into(),
        committed_minor: raw[0x1ED].into(),
        committed_major: raw[0x1EE].into(),
        launch_tcb: u64_at(raw, 0x1F0),
        signature: bytes(SIGNATURE_OFFSET, REPORT_SIZE - SIGNATURE_OFFSET),
        cpuid1eax_fms,
        launch_mit_vector: u64_at(raw, 0x1F8),
        current_mit_vector: u64_at(raw, 0x200),
    })
}

/// Rebuilds the 1184-byte report from `sevsnp.Report`; reserved bytes are zero.
fn report_from_proto(r: &Report) -> Result<Vec<u8>, DocumentError> {
    let mut raw = vec![0u8; REPORT_SIZE];
    let mut put = |offset: usize, bytes: &[u8]| {
        raw[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(0x00, &r.version.to_le_bytes());
    put(0x04, &r.guest_svn.to_le_bytes());
    put(0x08, &r.policy.to_le_bytes());
    put(0x10, &fixed::<16>(&r.family_id, "report.family_id")?);
    put(0x20, &fixed::<16>(&r.image_id, "report.image_id")?);
    put(0x30, &r.vmpl.to_le_bytes());
    put(0x34, &r.signature_algo.to_le_bytes());
    put(0x38, &r.current_tcb.to_le_bytes());
    put(0x40, &r.platform_info.to_le_bytes());
    if r.signer_info & SIGNER_INFO_RESERVED != 0 {
        return Err(DocumentError::FieldValue {
            field: "report.signer_info",
            actual: format!("{:#x}", r.signer_info),
            expected: "bits 5 to 31 zero (they are reserved)",
        });
    }
    put(0x48, &r.signer_info.to_le_bytes());
    put(0x50, &fixed::<64>(&r.report_data, "report.report_data")?);
    put(0x90, &fixed::<48>(&r.measurement, "report.measurement")?);
    put(0xC0, &fixed::<32>(&r.host_data, "report.host_data")?);
    put(
        0xE0,
        &fixed::<48>(&r.id_key_digest, "report.id_key_digest")?,
    );
    put(
        0x110,
        &fixed::<48>(&r.author_key_digest, "report.author_key_digest")?,
    );
    put(0x140, &fixed::<32>(&r.report_id, "report.report_id")?);
    put(0x160, &fixed::<32>(&r.report_id_ma, "report.report_id_ma")?);
    put(0x180, &r.reported_tcb.to_le_bytes());
    if r.version >= 3 {
        let (family, model, stepping) = fms_from_cpuid1_eax(r.cpuid1eax_fms);
        // One encoding per value: bits that go-sev-guest would drop are refused.
        if fms_to_cpuid1_eax(family, model, stepping) != r.cpuid1eax_fms {
            return Err(DocumentError::FieldValue {
                field: "report.cpuid1eax_fms",
                actual: format!("{:#010x}", r.cpuid1eax_fms),
                expected: "the CPUID(1).EAX form of a family, model and stepping (reserved bits zero, family below 0xF without extended family)",
            });
        }
        put(0x188, &[family, model, stepping]);
    } else if r.cpuid1eax_fms != 0 {
        return Err(DocumentError::FieldValue {
            field: "report.cpuid1eax_fms",
            actual: format!("{:#010x}", r.cpuid1eax_fms),
            expected: "0 in a version 2 report, which has no CPUID fields",
        });
    }
    put(0x1A0, &fixed::<64>(&r.chip_id, "report.chip_id")?);
    put(0x1E0, &r.committed_tcb.to_le_bytes());
    let byte = |value: u32, field: &'static str| fits(value, 8, field).map(|v| v as u8);
    put(
        0x1E8,
        &[
            byte(r.current_build, "report.current_build")?,
            byte(r.current_minor, "report.current_minor")?,
            byte(r.current_major, "report.current_major")?,
        ],
    );
    put(
        0x1EC,
        &[
            byte(r.committed_build, "report.committed_build")?,
            byte(r.committed_minor, "report.committed_minor")?,
            byte(r.committed_major, "report.committed_major")?,
        ],
    );
    put(0x1F0, &r.launch_tcb.to_le_bytes());
    put(0x1F8, &r.launch_mit_vector.to_le_bytes());
    put(0x200, &r.current_mit_vector.to_le_bytes());
    let signature = fixed::<{ REPORT_SIZE - SIGNATURE_OFFSET }>(&r.signature, "report.signature")?;
    if signature[SIGNATURE_RS_LEN..].iter().any(|b| *b != 0) {
        return Err(DocumentError::FieldValue {
            field: "report.signature",
            actual: "non-zero after r and s".into(),
            expected: "zero bytes after r and s (offsets 0x90..0x200 are reserved)",
        });
    }
    put(SIGNATURE_OFFSET, &signature);
    Ok(raw)
}

fn product_number(product: SnpProduct) -> i32 {
    match product {
        SnpProduct::Milan => 1,
        SnpProduct::Genoa => 2,
        SnpProduct::Turin => 3,
    }
}

fn product_from_number(number: i32) -> Option<SnpProduct> {
    match number {
        1 => Some(SnpProduct::Milan),
        2 => Some(SnpProduct::Genoa),
        3 => Some(SnpProduct::Turin),
        _ => None,
    }
}

/// Puts a raw 1184-byte report, its certificates and CRL, and the product line into a
/// `sevsnp.Attestation`, as Contrast's SNP issuer does: the VEK goes into `vcek_cert` or
/// `vlek_cert` by the report's signing key, the CRL into `extras` under
/// [`CRL_EXTRAS_KEY`], and the product carries a machine stepping of 0 (Contrast's issuer
/// forces it, as the host's CPUID stepping cannot be trusted). A chain is written only if
/// there is something in it.
pub fn encode_snp(
    report: &[u8],
    endorsements: &SnpEndorsements,
    product: Option<SnpProduct>,
) -> Result<Vec<u8>, DocumentError> {
    let raw: &[u8; REPORT_SIZE] = report
        .try_into()
        .map_err(|_| DocumentError::ReportSize(report.len()))?;
    let signing_key = SnpReport::from_bytes(report)?.signing_key()?;
    let report = report_to_proto(raw)?;

    let mut chain = CertificateChain::default();
    let vek = endorsements.vek.clone().unwrap_or_default();
    match signing_key {
        SigningKey::Vcek => chain.vcek_cert = vek,
        SigningKey::Vlek => chain.vlek_cert = vek,
    }
    chain.ask_cert = endorsements.ask.clone().unwrap_or_default();
    chain.ark_cert = endorsements.ark.clone().unwrap_or_default();
    if let Some(crl) = &endorsements.crl {
        chain.extras.insert(CRL_EXTRAS_KEY.to_owned(), crl.clone());
    }
    let certificate_chain = (chain != CertificateChain::default()).then_some(chain);

    let product = product.map(|product| SevProduct {
        name: product_number(product),
        stepping: 0,
        machine_stepping: Some(UInt32Value { value: 0 }),
    });
    Ok(Attestation {
        report: Some(report),
        certificate_chain,
        product,
    }
    .encode_to_vec())
}

/// Reads a `sevsnp.Attestation`: the rebuilt report, the endorsements it carries, and the
/// product it names. The report is not verified here; pass it to
/// [`crate::snp::verify_report`], which checks the signature over the rebuilt bytes.
pub fn decode_snp_document(document: &[u8]) -> Result<SnpDocument, DocumentError> {
    let attestation = Attestation::decode(document).map_err(|e| protobuf_error(MESSAGE, e))?;
    let report_fields = attestation
        .report
        .as_ref()
        .ok_or(DocumentError::MissingField { field: "report" })?;
    let report = report_from_proto(report_fields)?;

    let mut chain = attestation.certificate_chain.unwrap_or_default();
    let present = |bytes: Vec<u8>| (!bytes.is_empty()).then_some(bytes);
    // SIGNING_KEY 1 is the VLEK; anything else but 0 the verifier refuses anyway.
    let vek = if (report_fields.signer_info >> 2) & 7 == 1 {
        chain.vlek_cert
    } else {
        chain.vcek_cert
    };
    Ok(SnpDocument {
        report,
        endorsements: SnpEndorsements {
            vek: present(vek),
            ask: present(chain.ask_cert),
            ark: present(chain.ark_cert),
            crl: chain.extras.remove(CRL_EXTRAS_KEY).and_then(present),
        },
        product: attestation
            .product
            .and_then(|product| product_from_number(product.name)),
    })
}

/// Reads a `sevsnp.Attestation` into the rebuilt 1184-byte report and its endorsements
/// (see [`decode_snp_document`]).
pub fn decode_snp(document: &[u8]) -> Result<(Vec<u8>, SnpEndorsements), DocumentError> {
    decode_snp_document(document).map(|d| (d.report, d.endorsements))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::wire::{int_field, len_field};

    /// A report with a distinct value in every field, version 3 (Milan, CPUID 19/01/01).
    fn sample_report() -> Vec<u8> {
        let mut r = vec![0u8; REPORT_SIZE];
        let mut put = |offset: usize, bytes: &[u8]| {
            r[offset..offset + bytes.len()].copy_from_slice(bytes);
        };
        put(0x00, &3u32.to_le_bytes());
        put(0x04, &7u32.to_le_bytes());
        put(0x08, &0x30000u64.to_le_bytes());
        put(0x10, &[0x01; 16]);
        put(0x20, &[0x02; 16]);
        put(0x30, &1u32.to_le_bytes());
        put(0x34, &1u32.to_le_bytes());
        put(0x38, &[3, 0, 0, 0, 0, 0, 8, 115]);
        put(0x40, &3u64.to_le_bytes());
        put(0x48, &3u32.to_le_bytes()); // author key, masked chip ID, VCEK
        put(0x50, &[0x03; 64]);
        put(0x90, &[0x04; 48]);
        put(0xC0, &[0x05; 32]);
        put(0xE0, &[0x06; 48]);
        put(0x110, &[0x07; 48]);
        put(0x140, &[0x08; 32]);
        put(0x160, &[0x09; 32]);
        put(0x180, &[3, 0, 0, 0, 0, 0, 8, 114]);
        put(0x188, &[0x19, 0x01, 0x01]);
        put(0x1A0, &[0x0a; 64]);
        put(0x1E0, &[3, 0, 0, 0, 0, 0, 8, 113]);
        put(0x1E8, &[4, 55, 1]);
        put(0x1EC, &[3, 54, 1]);
        put(0x1F0, &[3, 0, 0, 0, 0, 0, 7, 112]);
        put(0x1F8, &5u64.to_le_bytes());
        put(0x200, &6u64.to_le_bytes());
        put(0x2A0, &[0x0b; 0x90]);
        r
    }

    #[test]
    fn encoding_matches_the_field_numbers_of_sevsnp_proto() {
        let le64 = |b: [u8; 8]| u64::from_le_bytes(b);
        let mut signature = vec![0x0b; 0x90];
        signature.resize(512, 0);
        let report = [
            int_field(1, 3),
            int_field(2, 7),
            int_field(3, 0x30000),
            len_field(4, &[0x01; 16]),
            len_field(5, &[0x02; 16]),
            int_field(6, 1),
            int_field(7, 1),
            int_field(8, le64([3, 0, 0, 0, 0, 0, 8, 115])),
            int_field(9, 3),
            int_field(10, 3),
            len_field(11, &[0x03; 64]),
            len_field(12, &[0x04; 48]),
            len_field(13, &[0x05; 32]),
            len_field(14, &[0x06; 48]),
            len_field(15, &[0x07; 48]),
            len_field(16, &[0x08; 32]),
            len_field(17, &[0x09; 32]),
            int_field(18, le64([3, 0, 0, 0, 0, 0, 8, 114])),
            len_field(19, &[0x0a; 64]),
            int_field(20, le64([3, 0, 0, 0, 0, 0, 8, 113])),
            int_field(21, 4),
            int_field(22, 55),
            int_field(23, 1),
            int_field(24, 3),
            int_field(25, 54),
            int_field(26, 1),
            int_field(27, le64([3, 0, 0, 0, 0, 0, 7, 112])),
            len_field(28, &signature),
            int_field(29, 0x00A0_0F11), // Milan B1's CPUID(1).EAX
            int_field(30, 5),
            int_field(31, 6),
        ]
        .concat();
        let mut extras_entry = len_field(1, CRL_EXTRAS_KEY.as_bytes());
        extras_entry.extend(len_field(2, b"crl"));
        let chain = [
            len_field(1, b"vcek"),
            len_field(2, b"ask"),
            len_field(3, b"ark"),
            len_field(7, &extras_entry),
        ]
        .concat();
        // name = 2 (Genoa), machine_stepping present and 0.
        let product = [int_field(1, 2), len_field(3, &[])].concat();
        let expected = [
            len_field(1, &report),
            len_field(2, &chain),
            len_field(3, &product),
        ]
        .concat();

        let endorsements = SnpEndorsements {
            vek: Some(b"vcek".to_vec()),
            ask: Some(b"ask".to_vec()),
            ark: Some(b"ark".to_vec()),
            crl: Some(b"crl".to_vec()),
        };
        let document =
            encode_snp(&sample_report(), &endorsements, Some(SnpProduct::Genoa)).unwrap();
        assert_eq!(hex::encode(&document), hex::encode(&expected));

        let decoded = decode_snp_document(&document).unwrap();
        assert_eq!(decoded.report, sample_report());
        assert_eq!(decoded.endorsements.vek.as_deref(), Some(&b"vcek"[..]));
        assert_eq!(decoded.endorsements.ask.as_deref(), Some(&b"ask"[..]));
        assert_eq!(decoded.endorsements.ark.as_deref(), Some(&b"ark"[..]));
        assert_eq!(decoded.endorsements.crl.as_deref(), Some(&b"crl"[..]));
        assert_eq!(decoded.product, Some(SnpProduct::Genoa));
    }

    #[test]
    fn cpuid_conversion_matches_known_processors() {
        // CPUID(1).EAX of Milan B1, Genoa B1 and Turin C1 as the processors report them.
        for (eax, fms) in [
            (0x00A0_0F11, (0x19, 0x01, 1)),
            (0x00A1_0F11, (0x19, 0x11, 1)),
            (0x00B0_0F21, (0x1a, 0x02, 1)),
            (0x0000_0F00, (0x0f, 0x00, 0)),
            (0x0000_0E25, (0x0e, 0x02, 5)),
        ] {
            assert_eq!(fms_from_cpuid1_eax(eax), fms, "{eax:#x}");
            assert_eq!(fms_to_cpuid1_eax(fms.0, fms.1, fms.2), eax);
        }
    }

    #[test]
    fn a_vlek_report_puts_its_key_into_vlek_cert_and_reads_it_back() {
        let mut report = sample_report();
        report[0x48] = 1 << 2; // SIGNING_KEY = VLEK
        let endorsements = SnpEndorsements {
            vek: Some(b"vlek".to_vec()),
            ..Default::default()
        };
        let document = encode_snp(&report, &endorsements, None).unwrap();
        let attestation = Attestation::decode(document.as_slice()).unwrap();
        let chain = attestation.certificate_chain.unwrap();
        assert_eq!(chain.vlek_cert, b"vlek");
        assert!(chain.vcek_cert.is_empty() && chain.extras.is_empty());
        assert_eq!(attestation.product, None);
        let (rebuilt, decoded) = decode_snp(&document).unwrap();
        assert_eq!(rebuilt, report);
        assert_eq!(decoded.vek.as_deref(), Some(&b"vlek"[..]));
        assert_eq!(decoded.ask, None);
    }

    #[test]
    fn no_endorsements_means_no_chain() {
        let document = encode_snp(&sample_report(), &SnpEndorsements::default(), None).unwrap();
        let attestation = Attestation::decode(document.as_slice()).unwrap();
        assert_eq!(attestation.certificate_chain, None);
        let decoded = decode_snp_document(&document).unwrap();
        assert!(decoded.endorsements.vek.is_none() && decoded.endorsements.crl.is_none());
        assert_eq!(decoded.product, None);
    }

    #[test]
    fn every_version_round_trips() {
        for version in 2u32..=5 {
            let mut report = sample_report();
            report[0..4].copy_from_slice(&version.to_le_bytes());
            if version == 2 {
                report[0x188..0x18B].fill(0);
            }
            let document = encode_snp(&report, &SnpEndorsements::default(), None).unwrap();
            assert_eq!(
                decode_snp(&document).unwrap().0,
                report,
                "version {version}"
            );
        }
    }

    #[test]
    fn encoding_refuses_what_the_document_cannot_carry() {
        assert_eq!(
            encode_snp(&[0; 100], &SnpEndorsements::default(), None),
            Err(DocumentError::ReportSize(100))
        );
        let mut report = sample_report();
        report[0..4].copy_from_slice(&6u32.to_le_bytes());
        assert_eq!(
            encode_snp(&report, &SnpEndorsements::default(), None),
            Err(DocumentError::Report(crate::snp::ReportError::Version(6)))
        );
        // Every reserved range, at its first and last byte; version 2 has no CPUID bytes.
        for version in [2u32, 3] {
            for (start, end) in reserved_ranges(version) {
                for offset in [start, end - 1] {
                    let mut report = sample_report();
                    report[0..4].copy_from_slice(&version.to_le_bytes());
                    if version == 2 {
                        report[0x188..0x18B].fill(0);
                    }
                    report[offset] = 0x80;
                    assert_eq!(
                        encode_snp(&report, &SnpEndorsements::default(), None),
                        Err(DocumentError::ReservedBytes { start, end }),
                        "version {version}, offset {offset:#x}"
                    );
                }
            }
        }
        let mut report = sample_report();
        report[0x18A] = 0x10;
        let err = encode_snp(&report, &SnpEndorsements::default(), None).unwrap_err();
        assert!(
            matches!(
                err,
                DocumentError::NotRepresentable {
                    field: "CPUID_STEP",
                    ..
                }
            ),
            "{err}"
        );
        let mut report = sample_report();
        report[0x48] = 0x20;
        let err = encode_snp(&report, &SnpEndorsements::default(), None).unwrap_err();
        assert!(err.to_string().contains("KEY_INFO is 0x20"), "{err}");
    }

    type Change = fn(&mut Report);

    fn document_with(change: impl FnOnce(&mut Report)) -> Vec<u8> {
        let document = encode_snp(&sample_report(), &SnpEndorsements::default(), None).unwrap();
        let mut attestation = Attestation::decode(document.as_slice()).unwrap();
        change(attestation.report.as_mut().unwrap());
        attestation.encode_to_vec()
    }

    #[test]
    fn every_fixed_size_field_of_the_wrong_length_is_refused_by_name() {
        type Field = fn(&mut Report) -> &mut Vec<u8>;
        let fields: [(&str, Field, usize); 11] = [
            ("report.family_id", |r| &mut r.family_id, 16),
            ("report.image_id", |r| &mut r.image_id, 16),
            ("report.report_data", |r| &mut r.report_data, 64),
            ("report.measurement", |r| &mut r.measurement, 48),
            ("report.host_data", |r| &mut r.host_data, 32),
            ("report.id_key_digest", |r| &mut r.id_key_digest, 48),
            ("report.author_key_digest", |r| &mut r.author_key_digest, 48),
            ("report.report_id", |r| &mut r.report_id, 32),
            ("report.report_id_ma", |r| &mut r.report_id_ma, 32),
            ("report.chip_id", |r| &mut r.chip_id, 64),
            ("report.signature", |r| &mut r.signature, 512),
        ];
        for (name, field, expected) in fields {
            for actual in [0, expected - 1, expected + 1] {
                let document = document_with(|r| field(r).resize(actual, 0));
                assert_eq!(
                    decode_snp(&document).unwrap_err(),
                    DocumentError::FieldLength {
                        field: name,
                        actual,
                        expected
                    }
                );
            }
        }
    }

    #[test]
    fn values_the_report_cannot_hold_are_refused() {
        let cases: [(Change, &str); 10] = [
            (|r| r.current_build = 256, "report.current_build is 256"),
            (|r| r.current_minor = 300, "report.current_minor is 300"),
            (|r| r.current_major = 1 << 20, "report.current_major"),
            (|r| r.committed_build = 256, "report.committed_build"),
            (|r| r.committed_minor = 256, "report.committed_minor"),
            (|r| r.committed_major = 256, "report.committed_major"),
            (|r| r.signer_info = 1 << 5, "report.signer_info is 0x20"),
            // Bits go-sev-guest would drop (reserved, stepping above 4 bits).
            (
                |r| r.cpuid1eax_fms |= 1 << 28,
                "report.cpuid1eax_fms is 0x10a00f11",
            ),
            (|r| r.cpuid1eax_fms |= 1 << 12, "report.cpuid1eax_fms"),
            (
                |r| r.signature[0x1ff] = 1,
                "report.signature is non-zero after r and s",
            ),
        ];
        for (change, message) in cases {
            let err = decode_snp(&document_with(change)).unwrap_err();
            assert!(err.to_string().contains(message), "{err} / {message}");
        }
        // A family below 0xF with an extended family is not the canonical form either.
        let err = decode_snp(&document_with(|r| r.cpuid1eax_fms = 0x0010_0E10)).unwrap_err();
        assert!(err.to_string().contains("cpuid1eax_fms"), "{err}");
        // A version 2 report has no CPUID bytes.
        let err = decode_snp(&document_with(|r| r.version = 2)).unwrap_err();
        assert!(err.to_string().contains("0 in a version 2 report"), "{err}");
    }

    #[test]
    fn missing_and_garbled_documents_are_refused() {
        assert_eq!(
            decode_snp(&Attestation::default().encode_to_vec()).unwrap_err(),
            DocumentError::MissingField { field: "report" }
        );
        let document = encode_snp(&sample_report(), &SnpEndorsements::default(), None).unwrap();
        for len in [1, 2, 3, 100, document.len() - 1] {
            let err = decode_snp(&document[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    DocumentError::Protobuf {
                        message: "sevsnp.Attestation",
                        ..
                    }
                ),
                "{len}: {err}"
            );
        }
        let err = decode_snp(&[0x0a, 0x03, 0x08, 0x80]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the attestation document is not a valid protobuf sevsnp.Attestation"),
            "{err}"
        );
        // A wire type that does not match the field (report as a varint).
        assert!(matches!(
            decode_snp(&[0x08, 0x01]).unwrap_err(),
            DocumentError::Protobuf { .. }
        ));
    }

    #[test]
    fn unknown_product_names_are_no_product() {
        for (name, product) in [
            (0, None),
            (3, Some(SnpProduct::Turin)),
            (4, None),
            (-1, None),
        ] {
            let document = encode_snp(&sample_report(), &SnpEndorsements::default(), None).unwrap();
            let mut attestation = Attestation::decode(document.as_slice()).unwrap();
            attestation.product = Some(SevProduct {
                name,
                stepping: 0,
                machine_stepping: None,
            });
            let decoded = decode_snp_document(&attestation.encode_to_vec()).unwrap();
            assert_eq!(decoded.product, product, "{name}");
        }
    }

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/data/snp/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn changing_any_report_field_breaks_the_signature() {
        use crate::snp::{SnpTrustAnchor, SnpVerifier};
        const JUNE_2025: i64 = 1_748_736_000;
        let chain = |name: &str| {
            crate::pem::decode_all(&String::from_utf8(vector(name)).unwrap(), "CERTIFICATE")
                .unwrap()
        };
        let vcek_chain = chain("gosevguest-milan-ask-ark.pem");
        let vlek_chain = chain("gosevguest-milan-asvk-ark.pem");
        // A version 2 report (VCEK) and a version 3 one (VLEK, with CPUID).
        let vectors = [
            (
                "gosevguest-milan-v2-report.bin",
                "gosevguest-milan-v2-vcek.der",
                &vcek_chain,
            ),
            (
                "trustee-milan-v3-vlek-report.bin",
                "trustee-milan-v3-vlek.der",
                &vlek_chain,
            ),
        ];
        let changes: [Change; 31] = [
            |r| r.version ^= 1,
            |r| r.guest_svn ^= 1,
            |r| r.policy ^= 1,
            |r| r.family_id[0] ^= 1,
            |r| r.image_id[15] ^= 1,
            |r| r.vmpl ^= 1,
            |r| r.signature_algo ^= 1,
            |r| r.current_tcb ^= 1,
            |r| r.platform_info ^= 1,
            |r| r.signer_info ^= 1,
            |r| r.report_data[63] ^= 1,
            |r| r.measurement[0] ^= 1,
            |r| r.host_data[31] ^= 1,
            |r| r.id_key_digest[0] ^= 1,
            |r| r.author_key_digest[0] ^= 1,
            |r| r.report_id[0] ^= 1,
            |r| r.report_id_ma[0] ^= 1,
            |r| r.reported_tcb ^= 1 << 56,
            |r| r.chip_id[0] ^= 1,
            |r| r.committed_tcb ^= 1,
            |r| r.current_build ^= 1,
            |r| r.current_minor ^= 1,
            |r| r.current_major ^= 1,
            |r| r.committed_build ^= 1,
            |r| r.committed_minor ^= 1,
            |r| r.committed_major ^= 1,
            |r| r.launch_tcb ^= 1,
            |r| r.signature[0] ^= 1,
            |r| r.cpuid1eax_fms ^= 1,
            |r| r.launch_mit_vector ^= 1,
            |r| r.current_mit_vector ^= 1,
        ];
        let verifier = SnpVerifier::new(SnpTrustAnchor::amd());
        for (report_file, vek_file, chain) in vectors {
            let report = vector(report_file);
            let endorsements = SnpEndorsements {
                vek: Some(vector(vek_file)),
                ask: Some(chain[0].clone()),
                ark: Some(chain[1].clone()),
                crl: None,
            };
            let document = encode_snp(&report, &endorsements, Some(SnpProduct::Milan)).unwrap();
            let (rebuilt, decoded) = decode_snp(&document).unwrap();
            assert_eq!(rebuilt, report);
            verifier.verify(&rebuilt, &decoded, JUNE_2025).unwrap();
            for (index, change) in changes.iter().enumerate() {
                let mut attestation = Attestation::decode(document.as_slice()).unwrap();
                change(attestation.report.as_mut().unwrap());
                // Refused when decoded (a version 2 report has no CPUID) or when verified.
                if let Ok((rebuilt, decoded)) = decode_snp(&attestation.encode_to_vec()) {
                    assert_ne!(rebuilt, report);
                    assert!(
                        verifier.verify(&rebuilt, &decoded, JUNE_2025).is_err(),
                        "{report_file}: field {} changed, still verifies",
                        index + 1
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_carriable_report_round_trips(
            mut raw in proptest::collection::vec(proptest::prelude::any::<u8>(), REPORT_SIZE),
            version in 2u32..=5,
            vlek in proptest::prelude::any::<bool>(),
        ) {
            raw[0..4].copy_from_slice(&version.to_le_bytes());
            raw[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
            let signer_info = u32::from(raw[0x48] & 3) | u32::from(vlek) << 2;
            raw[0x48..0x4C].copy_from_slice(&signer_info.to_le_bytes());
            if version >= 3 {
                raw[0x18A] &= 0xf;
            }
            for (start, end) in reserved_ranges(version) {
                raw[start..end].fill(0);
            }
            let endorsements = SnpEndorsements { vek: Some(vec![1]), ..Default::default() };
            let document = encode_snp(&raw, &endorsements, Some(SnpProduct::Milan)).unwrap();
            let decoded = decode_snp_document(&document).unwrap();
            proptest::prop_assert_eq!(decoded.report, raw);
            proptest::prop_assert_eq!(decoded.endorsements.vek, Some(vec![1]));
        }
    }
}
