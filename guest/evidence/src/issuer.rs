//! The hardware seam of the guest: one trait, [`EvidenceIssuer`], with a real side
//! (configfs-tsm, then the legacy `/dev/sev-guest` ioctl) and a simulated side (the
//! software vendors of `contrast-simulator`). Callers pick with [`detect`] or
//! [`simulated_snp`]/[`simulated_tdx`]; nothing else in the guest touches hardware.

use std::sync::Arc;

use contrast_guest_ioctl::{SevGuest, SevGuestError};
use contrast_simulator::{SimError, SimulatedAmd, SimulatedIntel, SnpReportSpec, TdxQuoteSpec};

use crate::Provider;
use crate::configfs_tsm::{ConfigfsTsm, ConfigfsTsmError, ReportRequest};
use crate::snp_cert_table::{self, CertKind, CertTableEntry, CertTableError};

/// Which TEE made the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    /// AMD SEV-SNP: the evidence is an attestation report.
    Snp,
    /// Intel TDX: the evidence is a DCAP quote.
    Tdx,
}

/// Evidence bound to 64 bytes of report data.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The TEE.
    pub tee: Tee,
    /// The report or quote, as the hardware (or simulator) produced it.
    pub raw: Vec<u8>,
    /// Certificates that came with it (SNP: VCEK/VLEK, ASK, ARK, CRL), if any.
    pub certificates: Vec<CertTableEntry>,
    /// Whether the simulator made it.
    pub simulated: bool,
}

/// Why no evidence could be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// configfs-tsm failed.
    #[error(transparent)]
    ConfigfsTsm(#[from] ConfigfsTsmError),
    /// The SEV-SNP ioctl failed.
    #[error(transparent)]
    SevGuest(#[from] SevGuestError),
    /// The host's certificate table is malformed.
    #[error("the host's SNP certificate table: {0}")]
    CertTable(#[from] CertTableError),
    /// The simulator failed.
    #[error(transparent)]
    Simulator(#[from] SimError),
    /// No interface to TEE hardware was found.
    #[error(
        "not running in a confidential VM: configfs-tsm: {configfs}; /dev/sev-guest: {sev_guest} \
         (on a machine without SEV-SNP or TDX, use a simulated platform)"
    )]
    NoTee {
        /// Why configfs-tsm was not usable.
        configfs: String,
        /// Why the SEV-SNP device was not usable.
        sev_guest: String,
    },
}

/// Something that issues evidence for report data.
pub trait EvidenceIssuer: Send + Sync {
    /// Evidence whose report data is `report_data`.
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError>;
    /// A name for logs: `configfs-tsm`, `sev-guest`, `simulated-snp`, …
    fn name(&self) -> &'static str;
}

/// The kernel's configfs-tsm interface.
#[derive(Debug, Default)]
pub struct ConfigfsTsmIssuer(pub ConfigfsTsm);

impl EvidenceIssuer for ConfigfsTsmIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let report = self.0.issue(&ReportRequest::new(*report_data))?;
        let (tee, certificates) = match report.provider {
            Provider::SevGuest => (Tee::Snp, snp_cert_table::parse(&report.auxblob)?),
            Provider::TdxGuest => (Tee::Tdx, Vec::new()),
        };
        Ok(Evidence {
            tee,
            raw: report.outblob,
            certificates,
            simulated: false,
        })
    }

    fn name(&self) -> &'static str {
        "configfs-tsm"
    }
}

/// The legacy `/dev/sev-guest` extended-report ioctl (kernels before configfs-tsm).
#[derive(Debug)]
pub struct SevGuestIssuer(pub SevGuest);

impl EvidenceIssuer for SevGuestIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let report = self.0.get_ext_report(report_data, 0)?;
        Ok(Evidence {
            tee: Tee::Snp,
            raw: report.report,
            certificates: snp_cert_table::parse(&report.certs)?,
            simulated: false,
        })
    }

    fn name(&self) -> &'static str {
        "sev-guest"
    }
}

/// Finds the hardware interface: configfs-tsm first, then `/dev/sev-guest`. TDX quotes
/// come only through configfs-tsm (the TDREPORT ioctl gives no quote).
pub fn detect() -> Result<Box<dyn EvidenceIssuer>, IssueError> {
    let configfs = ConfigfsTsm::default();
    let configfs_reason = match std::fs::metadata(configfs.report_root()) {
        Ok(_) => return Ok(Box::new(ConfigfsTsmIssuer(configfs))),
        Err(e) => format!("{}: {e}", configfs.report_root().display()),
    };
    match SevGuest::open_default() {
        Ok(device) => Ok(Box::new(SevGuestIssuer(device))),
        Err(e) => Err(IssueError::NoTee {
            configfs: configfs_reason,
            sev_guest: e.to_string(),
        }),
    }
}

/// Issues simulated SEV-SNP reports: the template's fields, the caller's report data,
/// signed by the simulated AMD, with the VCEK, ASK and ARK attached as a real host would.
pub struct SimulatedSnpIssuer {
    amd: Arc<SimulatedAmd>,
    template: SnpReportSpec,
}

impl std::fmt::Debug for SimulatedSnpIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedSnpIssuer")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// A simulated SEV-SNP issuer (host data, measurement, … from `template`).
pub fn simulated_snp(amd: Arc<SimulatedAmd>, template: SnpReportSpec) -> SimulatedSnpIssuer {
    SimulatedSnpIssuer { amd, template }
}

impl EvidenceIssuer for SimulatedSnpIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let spec = SnpReportSpec {
            report_data: *report_data,
            ..self.template.clone()
        };
        let signed = self.amd.report(&spec)?;
        let certificates = [
            (CertKind::Vcek, signed.vcek_der),
            (CertKind::Ask, signed.ask_der),
            (CertKind::Ark, signed.ark_der),
        ]
        .into_iter()
        .map(|(kind, der)| CertTableEntry { kind, der })
        .collect();
        Ok(Evidence {
            tee: Tee::Snp,
            raw: signed.report,
            certificates,
            simulated: true,
        })
    }

    fn name(&self) -> &'static str {
        "simulated-snp"
    }
}

/// Issues simulated TDX quotes: the template's fields, the caller's report data.
pub struct SimulatedTdxIssuer {
    intel: Arc<SimulatedIntel>,
    template: TdxQuoteSpec,
}

impl std::fmt::Debug for SimulatedTdxIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedTdxIssuer")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// A simulated TDX issuer (MRCONFIGID, MRTD, … from `template`).
pub fn simulated_tdx(intel: Arc<SimulatedIntel>, template: TdxQuoteSpec) -> SimulatedTdxIssuer {
    SimulatedTdxIssuer { intel, template }
}

impl EvidenceIssuer for SimulatedTdxIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let spec = TdxQuoteSpec {
            report_data: *report_data,
            ..self.template.clone()
        };
        Ok(Evidence {
            tee: Tee::Tdx,
            raw: self.intel.quote(&spec)?,
            certificates: Vec::new(),
            simulated: true,
        })
    }

    fn name(&self) -> &'static str {
        "simulated-tdx"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_configfs_is_a_clear_error_from_the_issuer() {
        let dir = std::env::temp_dir().join(format!("no-tsm-{}", std::process::id()));
        let issuer = ConfigfsTsmIssuer(ConfigfsTsm::new(&dir));
        let err = issuer.issue(&[0; 64]).unwrap_err();
        assert!(
            matches!(
                err,
                IssueError::ConfigfsTsm(ConfigfsTsmError::NotAvailable { .. })
            ),
            "{err}"
        );
        assert_eq!(issuer.name(), "configfs-tsm");
    }
}
