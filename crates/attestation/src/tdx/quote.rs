//! The Intel TDX DCAP quote, versions 4 and 5 (TD report 1.0 and 1.5 bodies).
//!
//! Parsing only reads and bounds-checks; [`super::verify_quote`] checks the signatures.
//! The quote is kept as received: the quote signature covers its exact bytes.

use std::fmt;

const TD10_BODY_LEN: usize = 584;
const TD15_BODY_LEN: usize = 648;
const QE_REPORT_LEN: usize = 384;
/// TEE type of TDX in the quote header.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type ECDSA-256 with P-256.
const AK_TYPE_ECDSA_P256: u16 = 2;
/// Certification data: the QE report with its signature, auth data and PCK data.
const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data: the PCK certificate chain, PEM.
const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Intel's quoting enclave vendor ID.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// A quote that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The quote ends before a field.
    #[error("the TDX quote ends at byte {len}, inside {field} (bytes {start}..{end})")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        start: usize,
        /// Where it ends.
        end: usize,
        /// The quote's length.
        len: usize,
    },
    /// A header or structure field with a value this code does not accept.
    #[error("TDX quote {field} is {actual}, expected {expected}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// What it is.
        actual: String,
        /// What it must be.
        expected: &'static str,
    },
}

/// The TD report body: the measurements and attributes of the trust domain.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TdReport {
    /// TEE_TCB_SVN: the TDX module's SVNs.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM: signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: [u8; 48],
    /// SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES (bit 0: DEBUG).
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD: measurement of the initial TD (firmware).
    pub mr_td: [u8; 48],
    /// MRCONFIGID: set by the host (Contrast: the policy hash in its first 32 bytes).
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..RTMR3.
    pub rtmrs: [[u8; 48]; 4],
    /// REPORTDATA, chosen by the TD.
    pub report_data: [u8; 64],
    /// TD report 1.5 only: TEE_TCB_SVN2.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TD report 1.5 only: MRSERVICETD.
    pub mr_service_td: Option<[u8; 48]>,
}

impl fmt::Debug for TdReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdReport")
            .field("mr_td", &hex::encode(self.mr_td))
            .field("td_attributes", &hex::encode(self.td_attributes))
            .finish_non_exhaustive()
    }
}

impl TdReport {
    /// Whether the TD runs in debug mode (TDATTRIBUTES bit 0): the host can read it.
    pub fn is_debug(&self) -> bool {
        self.td_attributes[0] & 1 != 0
    }
}

/// A parsed TDX quote, borrowing nothing: the raw bytes are kept.
#[derive(Clone, PartialEq, Eq)]
pub struct TdxQuote {
    raw: Vec<u8>,
    /// Quote format version (4 or 5).
    pub version: u16,
    /// The header's QE SVN: written by the enclave itself (Intel's TDX QE writes 0). The
    /// QE's authenticated SVN is [`QeIdentity::isv_svn`].
    pub qe_svn: u16,
    /// SVN of the provisioning certification enclave (header).
    pub pce_svn: u16,
    /// Quoting enclave vendor ID.
    pub qe_vendor_id: [u8; 16],
    /// The TD report body.
    pub td_report: TdReport,
    /// End of the signed region (header and body).
    signed_len: usize,
    /// ECDSA P-256 signature over the signed region, `r ‖ s` big-endian.
    pub signature: [u8; 64],
    /// The attestation key, raw `x ‖ y`.
    pub attestation_key: [u8; 64],
    /// The quoting enclave's report (SGX report body).
    pub qe_report: [u8; QE_REPORT_LEN],
    /// The PCK's signature over the QE report, `r ‖ s` big-endian.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed with the attestation key into the QE report data.
    pub qe_auth_data: Vec<u8>,
    /// The PCK certificate chain (PEM: leaf, intermediate CA, root CA).
    pub pck_chain_pem: Vec<u8>,
}

impl fmt::Debug for TdxQuote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdxQuote")
            .field("version", &self.version)
            .field("td_report", &self.td_report)
            .finish_non_exhaustive()
    }
}

/// A bounds-checked reader over the quote bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(QuoteError::Truncated {
                field,
                start: self.pos,
                end: self.pos.saturating_add(len),
                len: self.bytes.len(),
            });
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], QuoteError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        self.array::<2>(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        self.array::<4>(field).map(u32::from_le_bytes)
    }
}

fn unsupported(
    field: &'static str,
    actual: impl fmt::Display,
    expected: &'static str,
) -> QuoteError {
    QuoteError::Unsupported {
        field,
        actual: actual.to_string(),
        expected,
    }
}

impl TdxQuote {
    /// Parses a quote. Bytes after the certification data (zero padding) are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        let mut c = Cursor { bytes, pos: 0 };
        let version = c.u16("header version")?;
        let ak_type = c.u16("attestation key type")?;
        let tee_type = c.u32("TEE type")?;
        let qe_svn = c.u16("QE SVN")?;
        let pce_svn = c.u16("PCE SVN")?;
        let qe_vendor_id = c.array::<16>("QE vendor ID")?;
        c.take(20, "header user data")?;
        if ak_type != AK_TYPE_ECDSA_P256 {
            return Err(unsupported(
                "attestation key type",
                ak_type,
                "2 (ECDSA P-256)",
            ));
        }
        if tee_type != TEE_TYPE_TDX {
            return Err(unsupported(
                "TEE type",
                format!("{tee_type:#x}"),
                "0x81 (TDX)",
            ));
        }
        let body_len = match version {
            4 => TD10_BODY_LEN,
            5 => {
                let body_type = c.u16("body type")?;
                let body_size = c.u32("body size")?;
                let len = match body_type {
                    2 => TD10_BODY_LEN,
                    3 => TD15_BODY_LEN,
                    other => {
                        return Err(unsupported(
                            "body type",
                            other,
                            "2 (TD report 1.0) or 3 (TD report 1.5)",
                        ));
                    }
                };
                if usize::try_from(body_size).ok() != Some(len) {
                    return Err(unsupported(
                        "body size",
                        body_size,
                        "584 for body type 2, 648 for type 3",
                    ));
                }
                len
            }
            other => return Err(unsupported("version", other, "4 or 5")),
        };
        let td_report = TdReport {
            tee_tcb_svn: c.array("TEE_TCB_SVN")?,
            mr_seam: c.array("MRSEAM")?,
            mr_signer_seam: c.array("MRSIGNERSEAM")?,
            seam_attributes: c.array("SEAMATTRIBUTES")?,
            td_attributes: c.array("TDATTRIBUTES")?,
            xfam: c.array("XFAM")?,
            mr_td: c.array("MRTD")?,
            mr_config_id: c.array("MRCONFIGID")?,
            mr_owner: c.array("MROWNER")?,
            mr_owner_config: c.array("MROWNERCONFIG")?,
            rtmrs: [
                c.array("RTMR0")?,
                c.array("RTMR1")?,
                c.array("RTMR2")?,
                c.array("RTMR3")?,
            ],
            report_data: c.array("REPORTDATA")?,
            tee_tcb_svn2: if body_len == TD15_BODY_LEN {
                Some(c.array("TEE_TCB_SVN2")?)
            } else {
                None
            },
            mr_service_td: if body_len == TD15_BODY_LEN {
                Some(c.array("MRSERVICETD")?)
            } else {
                None
            },
        };
        let signed_len = c.pos;

        let signature_data_len = c.u32("signature data length")?;
        let signature_data = c.take(
            usize::try_from(signature_data_len).unwrap_or(usize::MAX),
            "signature data",
        )?;
        let mut s = Cursor {
            bytes: signature_data,
            pos: 0,
        };
        let signature = s.array::<64>("quote signature")?;
        let attestation_key = s.array::<64>("attestation key")?;
        let cert_type = s.u16("certification data type")?;
        if cert_type != CERT_TYPE_QE_REPORT {
            return Err(unsupported(
                "certification data type",
                cert_type,
                "6 (QE report certification data)",
            ));
        }
        let cert_size = s.u32("certification data size")?;
        let cert_data = s.take(
            usize::try_from(cert_size).unwrap_or(usize::MAX),
            "certification data",
        )?;
        let mut q = Cursor {
            bytes: cert_data,
            pos: 0,
        };
        let qe_report = q.array::<QE_REPORT_LEN>("QE report")?;
        let qe_report_signature = q.array::<64>("QE report signature")?;
        let auth_len = q.u16("QE auth data size")?;
        let qe_auth_data = q.take(usize::from(auth_len), "QE auth data")?.to_vec();
        let inner_type = q.u16("PCK certification data type")?;
        if inner_type != CERT_TYPE_PCK_CHAIN {
            return Err(unsupported(
                "PCK certification data type",
                inner_type,
                "5 (PCK certificate chain)",
            ));
        }
        let chain_len = q.u32("PCK certificate chain size")?;
        let pck_chain_pem = q
            .take(
                usize::try_from(chain_len).unwrap_or(usize::MAX),
                "PCK certificate chain",
            )?
            .to_vec();

        Ok(TdxQuote {
            raw: bytes.to_vec(),
            version,
            qe_svn,
            pce_svn,
            qe_vendor_id,
            td_report,
            signed_len,
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            pck_chain_pem,
        })
    }

    /// The bytes as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The bytes the attestation key signed: header and body.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..self.signed_len]
    }

    /// REPORTDATA of the QE report (SGX report body offset 320).
    pub fn qe_report_data(&self) -> [u8; 64] {
        let mut out = [0; 64];
        out.copy_from_slice(&self.qe_report[320..384]);
        out
    }

    /// The fields of the QE report (an SGX report body) that identify the quoting enclave.
    pub fn qe_identity(&self) -> QeIdentity {
        let r = &self.qe_report;
        let mut misc_select = [0; 4];
        misc_select.copy_from_slice(&r[16..20]);
        let mut attributes = [0; 16];
        attributes.copy_from_slice(&r[48..64]);
        let mut mr_enclave = [0; 32];
        mr_enclave.copy_from_slice(&r[64..96]);
        let mut mr_signer = [0; 32];
        mr_signer.copy_from_slice(&r[128..160]);
        QeIdentity {
            misc_select: u32::from_le_bytes(misc_select),
            attributes,
            mr_enclave,
            mr_signer,
            isv_prod_id: u16::from_le_bytes([r[256], r[257]]),
            isv_svn: u16::from_le_bytes([r[258], r[259]]),
        }
    }
}

/// What the QE report (an SGX report body, signed by the PCK) says about the enclave that
/// made the quote. Unlike the quote header's `qe_svn`, which the enclave writes as it likes
/// (Intel's TDX QE writes 0), these fields come from the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QeIdentity {
    /// MISCSELECT (SGX report body offset 16).
    pub misc_select: u32,
    /// ATTRIBUTES (offset 48); bit 1 of the first byte is DEBUG.
    pub attributes: [u8; 16],
    /// MRENCLAVE (offset 64): changes with every QE release.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER (offset 128): the hash of the key that signed the enclave.
    pub mr_signer: [u8; 32],
    /// ISVPRODID (offset 256): 2 for Intel's TDX QE.
    pub isv_prod_id: u16,
    /// ISVSVN (offset 258): the QE's security version.
    pub isv_svn: u16,
}

impl QeIdentity {
    /// Whether the enclave runs in debug mode (ATTRIBUTES.DEBUG): its memory is readable.
    pub fn is_debug(&self) -> bool {
        self.attributes[0] & 0x02 != 0
    }
}
