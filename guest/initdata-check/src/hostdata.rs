//! The host data the TEE reports and how an initdata digest maps onto it.
//!
//! The Kata runtime puts the initdata digest into the field the hardware measures at
//! launch: SEV-SNP `HOST_DATA` (32 bytes) or TDX `MRCONFIGID` (48 bytes). A digest of
//! another length is fitted the way Kata's runtime fits it (`adjust_digest` in
//! kata-types' `initdata.rs`; docs/protocol.md §10.4): cut to the field's length when
//! longer, zero-padded when shorter. So SHA-256 fills HOST_DATA exactly and the first 32
//! bytes of MRCONFIGID (then 16 zero bytes), SHA-384 fills MRCONFIGID exactly and is cut
//! to 32 bytes on SNP, SHA-512 is cut on both. We compare the whole field: the padding
//! must be zero too, so the host cannot put anything of its own there.
//!
//! The field is read from a [`LocalReport`], never from evidence made for remote
//! verifiers, and is not signature-checked here. On SEV-SNP that is the attestation
//! report: the channel to the AMD secure processor (encrypted, sequence-numbered guest
//! messages, SEV-SNP ABI chapter 7) is out of the host's reach. On TDX it is the TDREPORT
//! from the TDX module (`TDG.MR.REPORT` into private memory), not the quote: configfs-tsm's
//! TDX quote is what the host's quote service returns, so a host could answer with a
//! made-up quote whose MRCONFIGID matches initdata of its choosing.

use contrast_attestation::snp::SnpReport;
use contrast_attestation::tdx::LocalTdReport;
use contrast_evidence::issuer::{LocalReport, Tee};

pub use contrast_initdata::disk::{SNP_HOST_DATA_LEN, TDX_MR_CONFIG_ID_LEN};

/// The launch-time host data of this VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostData {
    /// Which TEE reported it.
    pub tee: Tee,
    /// `HOST_DATA` (32 bytes) or `MRCONFIGID` (48 bytes).
    pub field: Vec<u8>,
}

impl HostData {
    /// The field's name as the hardware documentation spells it.
    pub fn field_name(&self) -> &'static str {
        field_name(self.tee)
    }
}

fn field_name(tee: Tee) -> &'static str {
    match tee {
        Tee::Snp => "HOST_DATA",
        Tee::Tdx => "MRCONFIGID",
    }
}

/// Why the host data could not be read, or does not match.
#[derive(Debug, thiserror::Error)]
pub enum HostDataError {
    /// The SEV-SNP report does not parse.
    #[error("the SEV-SNP report from the hardware does not parse")]
    Report(#[from] contrast_attestation::snp::ReportError),
    /// The TDREPORT does not parse.
    #[error("the TDREPORT from the TDX module does not parse")]
    TdReport(#[from] contrast_attestation::tdx::TdReportError),
    /// The evidence carries other report data than requested: it is not the answer to
    /// this request.
    #[error(
        "the {tee} evidence carries report data {found}, not the nonce {requested} this check \
         asked for: the evidence provider returned a stale or foreign report"
    )]
    StaleEvidence {
        /// The TEE.
        tee: Tee,
        /// The nonce, hex.
        requested: String,
        /// What the report carries, hex.
        found: String,
    },
    /// The digest does not match.
    #[error(
        "initdata digest mismatch: the {algorithm} digest of the initdata, fitted to {field}, \
         is {expected}, but the {tee} hardware reports {field} {actual}; the host attached \
         other initdata than the VM was launched with"
    )]
    Mismatch {
        /// The TEE.
        tee: Tee,
        /// `HOST_DATA` or `MRCONFIGID`.
        field: &'static str,
        /// The initdata's algorithm.
        algorithm: &'static str,
        /// The fitted digest, hex.
        expected: String,
        /// The reported field, hex.
        actual: String,
    },
}

/// Reads the host data out of this VM's local report and checks that the report answers
/// `nonce`.
pub fn from_local_report(
    report: &LocalReport,
    nonce: &[u8; 64],
) -> Result<HostData, HostDataError> {
    let (report_data, field) = match report {
        LocalReport::Snp(raw) => {
            let report = SnpReport::from_bytes(raw)?;
            (report.report_data(), report.host_data().to_vec())
        }
        LocalReport::TdReport(raw) => {
            let report = LocalTdReport::parse(raw)?;
            (report.report_data, report.mr_config_id.to_vec())
        }
    };
    if &report_data != nonce {
        return Err(HostDataError::StaleEvidence {
            tee: report.tee(),
            requested: hex::encode(nonce),
            found: hex::encode(report_data),
        });
    }
    Ok(HostData {
        tee: report.tee(),
        field,
    })
}

/// The field a TEE holds for `digest`: cut to the field's length or zero-padded, as the
/// Kata runtime fits it.
pub fn fit_digest(digest: &[u8], tee: Tee) -> Vec<u8> {
    let len = match tee {
        Tee::Snp => SNP_HOST_DATA_LEN,
        Tee::Tdx => TDX_MR_CONFIG_ID_LEN,
    };
    contrast_initdata::disk::launch_field(digest, len)
}

/// Checks that `digest` (made with `algorithm`) is what the host data holds.
pub fn check(digest: &[u8], algorithm: &'static str, host: &HostData) -> Result<(), HostDataError> {
    let expected = fit_digest(digest, host.tee);
    if expected == host.field {
        return Ok(());
    }
    Err(HostDataError::Mismatch {
        tee: host.tee,
        field: host.field_name(),
        algorithm,
        expected: hex::encode(expected),
        actual: hex::encode(&host.field),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_fills_host_data_and_the_front_of_mrconfigid() {
        let digest: Vec<u8> = (1..=32).collect();
        assert_eq!(fit_digest(&digest, Tee::Snp), digest);
        let tdx = fit_digest(&digest, Tee::Tdx);
        assert_eq!(tdx.len(), 48);
        assert_eq!(&tdx[..32], &digest[..]);
        assert_eq!(&tdx[32..], &[0; 16]);
    }

    #[test]
    fn longer_digests_are_cut() {
        let sha384: Vec<u8> = (1..=48).collect();
        assert_eq!(fit_digest(&sha384, Tee::Tdx), sha384);
        assert_eq!(fit_digest(&sha384, Tee::Snp), &sha384[..32]);
        let sha512: Vec<u8> = (1..=64).collect();
        assert_eq!(fit_digest(&sha512, Tee::Tdx), &sha512[..48]);
        assert_eq!(fit_digest(&sha512, Tee::Snp), &sha512[..32]);
    }

    #[test]
    fn check_accepts_the_fitted_digest_only() {
        let digest = [7u8; 32];
        let mut field = vec![7u8; 32];
        field.resize(48, 0);
        let host = HostData {
            tee: Tee::Tdx,
            field: field.clone(),
        };
        check(&digest, "sha256", &host).unwrap();

        // Non-zero padding is refused although the first 32 bytes match.
        field[47] = 1;
        let host = HostData {
            tee: Tee::Tdx,
            field,
        };
        let err = check(&digest, "sha256", &host).unwrap_err();
        assert!(
            matches!(
                &err,
                HostDataError::Mismatch {
                    field: "MRCONFIGID",
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(&hex::encode([7u8; 32])), "{text}");
        assert!(
            text.ends_with("the host attached other initdata than the VM was launched with"),
            "{text}"
        );
    }

    #[test]
    fn check_refuses_another_digest_and_names_both() {
        let host = HostData {
            tee: Tee::Snp,
            field: vec![1; 32],
        };
        let err = check(&[2; 32], "sha256", &host).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("HOST_DATA"), "{text}");
        assert!(text.contains(&hex::encode([1u8; 32])), "{text}");
        assert!(text.contains(&hex::encode([2u8; 32])), "{text}");
    }
}
