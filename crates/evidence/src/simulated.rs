//! The simulated issuers: evidence in the real formats, signed by the simulator's vendors.
//! Only in builds with the `simulated` feature (tests, the quickstart): the measured image
//! and the release images are built without it, so they issue and accept hardware evidence
//! only.

use std::path::Path;
use std::sync::Arc;

use contrast_attestation::snp::{ReportError, SnpProduct, SnpReport};
use contrast_simulator::{
    SimulatedAmd, SimulatedIntel, SimulatedSnpReport, SnpReportSpec, TdxQuoteSpec,
};

use crate::configfs_tsm::{ConfigfsTsm, ConfigfsTsmError, FakeTestProviderReport, ReportRequest};
use crate::issuer::{
    Evidence, EvidenceIssuer, IssueError, IssuerSettings, LocalReport, SelectError,
    SimulatedCertTable, SimulatedTee, Tee,
};
use crate::snp_cert_table::{CertKind, CertTableEntry};

/// Issues simulated SEV-SNP reports: the template's fields, the caller's report data,
/// signed by the simulated AMD, with the VCEK, ASK and ARK attached as a real host would.
pub struct SimulatedSnpIssuer {
    amd: Arc<SimulatedAmd>,
    template: SnpReportSpec,
    cert_table: SimulatedCertTable,
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
    SimulatedSnpIssuer {
        amd,
        template,
        cert_table: SimulatedCertTable::Full,
    }
}

impl SimulatedSnpIssuer {
    /// Hand over only `table` with each report (the full table by default).
    pub fn with_cert_table(mut self, table: SimulatedCertTable) -> Self {
        self.cert_table = table;
        self
    }
}

impl EvidenceIssuer for SimulatedSnpIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let spec = SnpReportSpec {
            report_data: *report_data,
            ..self.template.clone()
        };
        let mut evidence = simulated_snp_evidence(self.amd.report(&spec)?);
        match self.cert_table {
            SimulatedCertTable::Full => {}
            SimulatedCertTable::Chain => evidence.certificates.retain(|e| e.kind != CertKind::Crl),
            SimulatedCertTable::None => evidence.certificates.clear(),
        }
        Ok(evidence)
    }

    fn name(&self) -> &'static str {
        "simulated-snp"
    }

    fn local_report(&self, report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        Ok(LocalReport::Snp(self.issue(report_data)?.raw))
    }
}

/// A simulated report with the VCEK, ASK, ARK and CRL attached, as a host attaches them.
fn simulated_snp_evidence(signed: SimulatedSnpReport) -> Evidence {
    let certificates = [
        (CertKind::Vcek, signed.vcek_der),
        (CertKind::Ask, signed.ask_der),
        (CertKind::Ark, signed.ark_der),
        (CertKind::Crl, signed.crl_der),
    ]
    .into_iter()
    .map(|(kind, der)| CertTableEntry { kind, der })
    .collect();
    Evidence {
        tee: Tee::Snp,
        raw: signed.report,
        certificates,
        simulated: true,
    }
}

/// Why the fake TSM provider's report body could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum FakeTsmError {
    /// The outblob is not the size of an SEV-SNP report.
    #[error(
        "the fake TSM provider's outblob is {len} bytes, not the 1184 of an SEV-SNP report \
         body: load the fake_tsm.ko built from qemu-tests/fake-tsm"
    )]
    BodyLength {
        /// The outblob's length.
        len: usize,
    },
    /// The outblob is not laid out like an SEV-SNP report.
    #[error("the fake TSM provider's outblob is not an SEV-SNP report body")]
    Body(#[from] ReportError),
    /// The body binds other REPORT_DATA than was asked for.
    #[error(
        "the fake TSM provider's report binds REPORT_DATA {found}, but {requested} was \
         requested: the kernel or provider mixed up report requests"
    )]
    ReportDataMismatch {
        /// The requested report data (hex).
        requested: String,
        /// The report data in the body (hex).
        found: String,
    },
}

/// TEST ONLY (QEMU tests): SEV-SNP evidence whose fields come through the real kernel's
/// configfs-tsm from the fake provider [`crate::configfs_tsm::FAKE_TEST_PROVIDER`]
/// (`qemu-tests/fake-tsm`), and
/// whose signature comes from the simulated AMD.
///
/// The kernel's report body supplies MEASUREMENT, HOST_DATA, POLICY and VMPL; the simulated
/// AMD signs a Milan report with those fields and the requested report data, and attaches
/// the VCEK, ASK and ARK like [`SimulatedSnpIssuer`]. The evidence is marked simulated and
/// verifies only against the simulator's trust anchor. Only the fake provider is accepted:
/// on a real `sev_guest` or `tdx_guest` this issuer refuses to run.
pub struct SimulatedSignatureTsmIssuer {
    pub(crate) tsm: ConfigfsTsm,
    amd: Arc<SimulatedAmd>,
}

impl std::fmt::Debug for SimulatedSignatureTsmIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedSignatureTsmIssuer")
            .field("tsm", &self.tsm)
            .finish_non_exhaustive()
    }
}

/// The test-only issuer that signs the fake TSM provider's report bodies from `tsm` with
/// `amd` (see [`SimulatedSignatureTsmIssuer`]).
pub fn simulated_signature_tsm(
    tsm: ConfigfsTsm,
    amd: Arc<SimulatedAmd>,
) -> SimulatedSignatureTsmIssuer {
    SimulatedSignatureTsmIssuer { tsm, amd }
}

impl SimulatedSignatureTsmIssuer {
    pub(crate) fn issue_from(
        &self,
        report_data: &[u8; 64],
        fetch: impl FnOnce(&ReportRequest) -> Result<FakeTestProviderReport, ConfigfsTsmError>,
    ) -> Result<Evidence, IssueError> {
        let body = fetch(&ReportRequest::new(*report_data))?.outblob;
        let spec = spec_from_fake_body(&body, report_data)?;
        Ok(simulated_snp_evidence(self.amd.report(&spec)?))
    }
}

/// The report to sign: the body's fields that the VM's launch fixes, the requested report
/// data, everything else as a Milan machine of the simulator reports it.
fn spec_from_fake_body(body: &[u8], report_data: &[u8; 64]) -> Result<SnpReportSpec, FakeTsmError> {
    if body.len() != contrast_attestation::snp::REPORT_SIZE {
        return Err(FakeTsmError::BodyLength { len: body.len() });
    }
    let report = SnpReport::from_bytes(body)?;
    if report.report_data() != *report_data {
        return Err(FakeTsmError::ReportDataMismatch {
            requested: hex::encode(report_data),
            found: hex::encode(report.report_data()),
        });
    }
    let mut spec = SnpReportSpec::new(SnpProduct::Milan);
    spec.report_data = *report_data;
    spec.host_data = report.host_data();
    spec.measurement = report.measurement();
    spec.policy = report.policy();
    spec.vmpl = report.vmpl();
    Ok(spec)
}

impl EvidenceIssuer for SimulatedSignatureTsmIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        self.issue_from(report_data, |request| {
            self.tsm.issue_from_fake_test_provider(request)
        })
    }

    fn name(&self) -> &'static str {
        "simulated-signature-tsm"
    }

    fn local_report(&self, report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        Ok(LocalReport::Snp(self.issue(report_data)?.raw))
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

    /// The simulated TDX module's TDREPORT for the template: the same launch fields as the
    /// quotes, without the quote service.
    fn local_report(&self, report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        let spec = TdxQuoteSpec {
            report_data: *report_data,
            ..self.template.clone()
        };
        Ok(LocalReport::TdReport(self.intel.td_report(&spec).to_vec()))
    }
}

/// Parses host data given as hex: `lengths` bytes are accepted.
fn host_data(
    settings: &IssuerSettings,
    tee: &'static str,
    expected: &'static str,
    lengths: &[usize],
) -> Result<Vec<u8>, SelectError> {
    let error = |found: String| SelectError::HostData {
        tee,
        expected,
        found,
    };
    let text = settings
        .simulated_host_data
        .as_deref()
        .ok_or_else(|| error(String::new()))?;
    let bytes = hex::decode(text).map_err(|e| error(format!(", got {text:?} ({e})")))?;
    if !lengths.contains(&bytes.len()) {
        return Err(error(format!(", got {} hex characters", text.len())));
    }
    Ok(bytes)
}

/// The simulated issuer of `settings` with the simulator's keys in `dir`.
pub(crate) fn select(
    settings: &IssuerSettings,
    dir: &Path,
    tee: SimulatedTee,
) -> Result<Box<dyn EvidenceIssuer>, SelectError> {
    // Check the cheap settings before opening (and maybe creating) the key directory.
    if settings.simulated_cert_table != SimulatedCertTable::Full {
        match tee {
            SimulatedTee::Snp => {}
            SimulatedTee::Tdx => return Err(SelectError::CertTableNotUsed { tee: "tdx" }),
            SimulatedTee::SnpTsm => return Err(SelectError::CertTableNotUsed { tee: "snp-tsm" }),
        }
    }
    let host_data = match tee {
        SimulatedTee::Snp => host_data(settings, "snp", "64 hex characters", &[32])?,
        SimulatedTee::Tdx => host_data(
            settings,
            "tdx",
            "64 hex characters (the first 32 bytes of MRCONFIGID) or 96 (all of it)",
            &[32, 48],
        )?,
        SimulatedTee::SnpTsm if settings.simulated_host_data.is_some() => {
            return Err(SelectError::HostDataNotUsed);
        }
        SimulatedTee::SnpTsm => Vec::new(),
    };
    let simulator =
        contrast_simulator::Simulator::open(dir).map_err(|source| SelectError::OpenSimulator {
            dir: dir.to_owned(),
            source,
        })?;
    Ok(match tee {
        SimulatedTee::Snp => {
            let mut spec = SnpReportSpec::new(SnpProduct::Milan);
            spec.host_data.copy_from_slice(&host_data);
            Box::new(
                simulated_snp(Arc::new(simulator.amd), spec)
                    .with_cert_table(settings.simulated_cert_table),
            )
        }
        SimulatedTee::Tdx => {
            let mut spec = TdxQuoteSpec::default();
            spec.mr_config_id[..host_data.len()].copy_from_slice(&host_data);
            Box::new(simulated_tdx(Arc::new(simulator.intel), spec))
        }
        SimulatedTee::SnpTsm => Box::new(simulated_signature_tsm(
            ConfigfsTsm::default(),
            Arc::new(simulator.amd),
        )),
    })
}
