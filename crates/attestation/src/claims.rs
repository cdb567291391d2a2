//! The claims a mesh certificate carries about the evidence its holder proved: one X.509
//! extension per report field, under `1.3.9901.2.1.N` (SNP) and `1.3.9901.2.2.N` (TDX),
//! with DER INTEGER, BOOLEAN or OCTET STRING values (docs/attestation.md §4).
//!
//! Built only from verified evidence, so a certificate never states what was not checked.

use crate::der;
use crate::snp::VerifiedSnpReport;
use crate::tdx::VerifiedTdxQuote;

/// The SNP claim arc.
pub const SNP_ARC: [u64; 5] = [1, 3, 9901, 2, 1];
/// The TDX claim arc.
pub const TDX_ARC: [u64; 5] = [1, 3, 9901, 2, 2];

/// One claim: an extension OID and its DER value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The extension's OID arcs.
    pub oid: Vec<u64>,
    /// The DER-encoded value (the extension's extnValue content).
    pub value: Vec<u8>,
}

fn claim(arc: &[u64; 5], n: u64, value: Vec<u8>) -> Claim {
    let mut oid = arc.to_vec();
    oid.push(n);
    Claim { oid, value }
}

/// The claims of a verified SEV-SNP report.
pub fn snp_claims(verified: &VerifiedSnpReport) -> Vec<Claim> {
    let r = &verified.report;
    let int = |v: u64| der::uint_u64(v);
    let bytes = |b: &[u8]| der::octet_string(b);
    let policy = r.policy();
    let bit = |n: u32| der::boolean(policy & (1 << n) != 0);
    let info = r.platform_info();
    // Current, reported, committed and launch TCB, each as bootloader, SNP, TEE, microcode.
    let tcb = |t: crate::snp::TcbVersion| {
        [t.bootloader, t.snp, t.tee, t.microcode].map(|v| int(v.into()))
    };
    let (cur_build, cur_minor, cur_major) = r.current_version();
    let (com_build, com_minor, com_major) = r.committed_version();
    let signing_key = u64::from(r.key_info() >> 2 & 7);

    let mut values: Vec<(u64, Vec<u8>)> = vec![
        (1, int(r.version().into())),
        (2, int(r.guest_svn().into())),
        (3, int(policy >> 8 & 0xff)),
        (4, int(policy & 0xff)),
        (5, bit(19)),
        (6, bit(18)),
        (7, bit(16)),
        (8, bit(20)),
        (9, bytes(&r.family_id())),
        (10, bytes(&r.image_id())),
        (11, int(r.vmpl().into())),
    ];
    values.extend((12..=15).zip(tcb(verified.current_tcb)));
    values.extend([
        (16, der::boolean(info & 1 != 0)),
        (17, der::boolean(info & 2 != 0)),
        (18, der::boolean(r.author_key_en())),
        (19, der::boolean(r.mask_chip_key())),
        (20, int(signing_key)),
        (21, bytes(&r.report_data())),
        (22, bytes(&r.measurement())),
        (23, bytes(&r.host_data())),
        (24, bytes(&r.id_key_digest())),
        (25, bytes(&r.author_key_digest())),
        (26, bytes(&r.report_id())),
        (27, bytes(&r.report_id_ma())),
    ]);
    values.extend((28..=31).zip(tcb(verified.reported_tcb)));
    values.push((32, bytes(&r.chip_id())));
    values.extend((33..=36).zip(tcb(verified.committed_tcb)));
    values.extend([
        (37, int(cur_build.into())),
        (38, int(cur_minor.into())),
        (39, int(cur_major.into())),
        (40, int(com_build.into())),
        (41, int(com_minor.into())),
        (42, int(com_major.into())),
    ]);
    values.extend((43..=46).zip(tcb(verified.launch_tcb)));
    values
        .into_iter()
        .map(|(n, value)| claim(&SNP_ARC, n, value))
        .collect()
}

/// The claims of a verified TDX quote.
pub fn tdx_claims(verified: &VerifiedTdxQuote) -> Vec<Claim> {
    let q = &verified.quote;
    let td = &q.td_report;
    let raw = q.as_bytes();
    let int = |v: u64| der::uint_u64(v);
    let bytes = |b: &[u8]| der::octet_string(b);
    let le16 = |at: usize| {
        raw.get(at..at + 2)
            .map_or(0, |b| u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let le32 = |at: usize| {
        raw.get(at..at + 4).map_or(0, |b| {
            u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        })
    };
    let qe = &q.qe_report;
    let signed_len = q.signed_bytes().len();
    // Offsets in the signature data: length, signature, key, then type and size of the
    // certification data, then the QE report certification data.
    let cert_data_at = signed_len + 4 + 128;
    let auth_len = q.qe_auth_data.len();
    let pck_type_at = cert_data_at + 6 + 384 + 64 + 2 + auth_len;
    let signature_data_end = signed_len + 4 + usize::try_from(le32(signed_len)).unwrap_or(0);
    let extra = raw.get(signature_data_end..).unwrap_or_default();

    let mut values: Vec<(u64, Vec<u8>)> = vec![
        (1, int(q.version.into())),
        (2, int(le16(2))),
        (3, int(le32(4))),
        (4, int(q.qe_svn.into())),
        (5, int(q.pce_svn.into())),
        (6, bytes(&q.qe_vendor_id)),
        (7, bytes(raw.get(28..48).unwrap_or_default())),
        (8, bytes(&td.tee_tcb_svn)),
        (9, bytes(&td.mr_seam)),
        (10, bytes(&td.mr_signer_seam)),
        (11, bytes(&td.seam_attributes)),
        (12, bytes(&td.td_attributes)),
        (13, bytes(&td.xfam)),
        (14, bytes(&td.mr_td)),
        (15, bytes(&td.mr_config_id)),
        (16, bytes(&td.mr_owner)),
        (17, bytes(&td.mr_owner_config)),
    ];
    values.extend((18..=21).zip(td.rtmrs.iter().map(|r| bytes(r))));
    values.extend([
        (22, bytes(&td.report_data)),
        (23, int(le32(signed_len))),
        (24, bytes(&q.signature)),
        (25, bytes(&q.attestation_key)),
        (26, int(le16(cert_data_at))),
        (27, int(le32(cert_data_at + 2))),
        (29, bytes(&qe[0..16])),
        (
            30,
            int(u64::from(u32::from_le_bytes([
                qe[16], qe[17], qe[18], qe[19],
            ]))),
        ),
        (31, bytes(&qe[20..48])),
        (32, bytes(&qe[48..64])),
        (33, bytes(&qe[64..96])),
        (34, bytes(&qe[96..128])),
        (35, bytes(&qe[128..160])),
        (36, bytes(&qe[160..256])),
        (37, int(u64::from(u16::from_le_bytes([qe[256], qe[257]])))),
        (38, int(u64::from(u16::from_le_bytes([qe[258], qe[259]])))),
        (39, bytes(&qe[260..320])),
        (40, bytes(&qe[320..384])),
        (41, bytes(&q.qe_report_signature)),
        (42, int(auth_len as u64)),
        (43, bytes(&q.qe_auth_data)),
        (44, int(le16(pck_type_at))),
        (45, int(q.pck_chain_pem.len() as u64)),
        (46, bytes(&q.pck_chain_pem)),
        (47, bytes(extra)),
    ]);
    values
        .into_iter()
        .map(|(n, value)| claim(&TDX_ARC, n, value))
        .collect()
}
