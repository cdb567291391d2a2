//! The hardware seam of the guest: one trait, [`EvidenceIssuer`], with a real side
//! (configfs-tsm, then the legacy `/dev/sev-guest` ioctl) and a simulated side (the
//! software vendors of `contrast-simulator`). Callers pick with [`select`] (the guest
//! binaries' settings), [`detect`] or [`simulated_snp`]/[`simulated_tdx`]; nothing else in
//! the guest touches hardware.
//!
//! One test-only issuer sits in between: [`SimulatedSignatureTsmIssuer`] takes the report
//! body through the real kernel's configfs-tsm from the QEMU tests' fake provider and has
//! the simulated AMD sign it. [`detect`] never returns it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Which TEE made the evidence: the platforms' one.
pub use contrast_platforms::Tee;

use contrast_atls::Verifiers;
use contrast_attestation::snp::SnpEndorsements;
#[cfg(feature = "simulated")]
use contrast_simulator::SimError;
use contrast_tee_ioctl::{
    DEFAULT_TDX_GUEST_PATH, SevGuest, SevGuestError, TdxGuest, TdxGuestError,
};

use crate::Provider;
use crate::configfs_tsm::{ConfigfsTsm, ConfigfsTsmError, ReportRequest, TsmReport};
#[cfg(feature = "simulated")]
pub use crate::simulated::{
    FakeTsmError, SimulatedSignatureTsmIssuer, SimulatedSnpIssuer, SimulatedTdxIssuer,
    simulated_signature_tsm, simulated_snp, simulated_tdx,
};
use crate::snp_cert_table::{self, CertKind, CertTableEntry, CertTableError};

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

impl Evidence {
    /// The SEV-SNP certificates that came with the evidence, as the verifier takes them:
    /// VCEK or VLEK, ASK, ARK and CRL; other entries of the host's table are ignored.
    pub fn snp_endorsements(&self) -> SnpEndorsements {
        let mut endorsements = SnpEndorsements::default();
        for entry in &self.certificates {
            let der = Some(entry.der.clone());
            match entry.kind {
                CertKind::Vcek | CertKind::Vlek => endorsements.vek = der,
                CertKind::Ask => endorsements.ask = der,
                CertKind::Ark => endorsements.ark = der,
                CertKind::Crl => endorsements.crl = der,
                CertKind::Other(_) => {}
            }
        }
        endorsements
    }
}

/// A report of this VM's own launch-time fields, read through a channel the host cannot
/// answer for: what the guest may trust without checking a signature.
///
/// On SEV-SNP the attestation report comes from the AMD secure processor as an encrypted,
/// sequence-numbered guest message (SEV-SNP ABI chapter 7), so the host can delay it but not
/// forge it. On TDX the quote is made by the host's quote service and proves nothing to the
/// guest until verified; the TDREPORT comes from the TDX module (`TDG.MR.REPORT` into
/// private memory) and is what the guest reads instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalReport {
    /// An SEV-SNP attestation report (1184 bytes) from the secure processor.
    Snp(Vec<u8>),
    /// A TDREPORT (1024 bytes) from the TDX module.
    TdReport(Vec<u8>),
}

impl LocalReport {
    /// The TEE that made it.
    pub fn tee(&self) -> Tee {
        match self {
            LocalReport::Snp(_) => Tee::Snp,
            LocalReport::TdReport(_) => Tee::Tdx,
        }
    }
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
    #[error("the host's SNP certificate table")]
    CertTable(#[from] CertTableError),
    /// The simulator failed.
    #[cfg(feature = "simulated")]
    #[error(transparent)]
    Simulator(#[from] SimError),
    /// The test-only fake TSM provider's body is unusable.
    #[cfg(feature = "simulated")]
    #[error(transparent)]
    FakeTsm(#[from] FakeTsmError),
    /// The TDX guest device failed.
    #[error(transparent)]
    TdxGuest(#[from] TdxGuestError),
    /// configfs-tsm answered with a TDX quote, but there is no TDREPORT to read: the quote
    /// comes from the host and cannot tell the guest its own launch fields.
    #[error(
        "this TDX guest has no {device}: the TDREPORT cannot be read, and the quote from \
         configfs-tsm is made by the host's quote service, so it cannot vouch for this VM's \
         launch fields (load the tdx_guest driver)"
    )]
    NoTdReport {
        /// The TDX guest device looked for.
        device: PathBuf,
    },
    /// The issuer has no channel for a [`LocalReport`].
    #[error(
        "the {issuer} evidence issuer cannot read this VM's launch fields through a channel \
         the host cannot answer for"
    )]
    NoLocalReport {
        /// The issuer's name.
        issuer: &'static str,
    },
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
    /// Evidence whose report data is `report_data`, for a remote verifier.
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError>;
    /// A name for logs: `configfs-tsm`, `sev-guest`, `simulated-snp`, …
    fn name(&self) -> &'static str;
    /// This VM's own report for `report_data`, for checks inside the guest (see
    /// [`LocalReport`]). Issuers without such a channel refuse.
    fn local_report(&self, report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        let _ = report_data;
        Err(IssueError::NoLocalReport {
            issuer: self.name(),
        })
    }
}

/// The kernel's configfs-tsm interface, with `/dev/tdx_guest` for the TDREPORT on TDX.
#[derive(Debug)]
pub struct ConfigfsTsmIssuer {
    /// The configfs-tsm report directory.
    pub tsm: ConfigfsTsm,
    /// The TDX guest device (`/dev/tdx_guest`).
    pub tdx_guest: PathBuf,
}

impl Default for ConfigfsTsmIssuer {
    fn default() -> Self {
        ConfigfsTsmIssuer::new(ConfigfsTsm::default())
    }
}

impl ConfigfsTsmIssuer {
    /// An issuer on `tsm`, with the TDX guest device at its default path.
    pub fn new(tsm: ConfigfsTsm) -> Self {
        ConfigfsTsmIssuer {
            tsm,
            tdx_guest: PathBuf::from(DEFAULT_TDX_GUEST_PATH),
        }
    }

    /// The local report: the TDREPORT where the TDX guest device exists, else the SEV-SNP
    /// report from configfs-tsm; never a TDX quote.
    fn local_report_from(
        &self,
        report_data: &[u8; 64],
        fetch: impl FnOnce(&ReportRequest) -> Result<TsmReport, ConfigfsTsmError>,
    ) -> Result<LocalReport, IssueError> {
        match TdxGuest::open(&self.tdx_guest) {
            Ok(device) => {
                return Ok(LocalReport::TdReport(
                    device.get_report0(report_data)?.to_vec(),
                ));
            }
            Err(TdxGuestError::NoDevice { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let evidence = ConfigfsTsmIssuer::issue_from(report_data, fetch)?;
        match evidence.tee {
            Tee::Snp => Ok(LocalReport::Snp(evidence.raw)),
            Tee::Tdx => Err(IssueError::NoTdReport {
                device: self.tdx_guest.clone(),
            }),
        }
    }

    fn issue_from(
        report_data: &[u8; 64],
        fetch: impl FnOnce(&ReportRequest) -> Result<TsmReport, ConfigfsTsmError>,
    ) -> Result<Evidence, IssueError> {
        let report = fetch(&ReportRequest::new(*report_data))?;
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
}

impl EvidenceIssuer for ConfigfsTsmIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        ConfigfsTsmIssuer::issue_from(report_data, |request| self.tsm.issue(request))
    }

    fn name(&self) -> &'static str {
        "configfs-tsm"
    }

    fn local_report(&self, report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        self.local_report_from(report_data, |request| self.tsm.issue(request))
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

    fn local_report(&self, report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        Ok(LocalReport::Snp(self.0.get_report(report_data, 0)?))
    }
}

/// Finds the hardware interface: configfs-tsm first, then `/dev/sev-guest`. TDX quotes
/// come only through configfs-tsm (the TDREPORT ioctl gives no quote).
pub fn detect() -> Result<Box<dyn EvidenceIssuer>, IssueError> {
    let configfs = ConfigfsTsm::default();
    let configfs_reason = match std::fs::metadata(configfs.report_root()) {
        Ok(_) => return Ok(Box::new(ConfigfsTsmIssuer::new(configfs))),
        Err(e) => format!("{}: {e}", configfs.report_root().display()),
    };
    match SevGuest::open_default() {
        Ok(device) => Ok(Box::new(SevGuestIssuer(device))),
        Err(e) => Err(IssueError::NoTee {
            configfs: configfs_reason,
            sev_guest: contrast_platforms::error_chain(&e),
        }),
    }
}

/// The simulated TEE named by the guest binaries' `--simulated-tee` (`CONTRAST_SIMULATED_TEE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedTee {
    /// `snp`: a simulated SEV-SNP report ([`SimulatedSnpIssuer`]).
    Snp,
    /// `tdx`: a simulated TDX quote ([`SimulatedTdxIssuer`]).
    Tdx,
    /// `snp-tsm` (QEMU tests only): the fake TSM provider's body through the real kernel,
    /// signed by the simulated AMD ([`SimulatedSignatureTsmIssuer`]).
    SnpTsm,
}

impl SimulatedTee {
    /// Its name, as `--simulated-tee` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SimulatedTee::Snp => "snp",
            SimulatedTee::Tdx => "tdx",
            SimulatedTee::SnpTsm => "snp-tsm",
        }
    }
}

impl FromStr for SimulatedTee {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "snp" => Ok(SimulatedTee::Snp),
            "tdx" => Ok(SimulatedTee::Tdx),
            "snp-tsm" => Ok(SimulatedTee::SnpTsm),
            other => Err(SelectError::UnknownSimulatedTee(other.to_owned())),
        }
    }
}

/// How the guest binaries (`initializer`, `initdata-check`) get evidence: their flags and
/// environment variables (one definition, flattened into each binary's arguments),
/// unparsed, so that every binary refuses them the same way. Without a simulator
/// directory, TEE hardware ([`detect`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IssuerSettings {
    /// Use the simulator whose keys are in this directory instead of TEE hardware
    /// (Sim-SNP, Sim-TDX; builds with the `simulated` feature only).
    #[arg(long, env = "CONTRAST_SIMULATOR_DIR")]
    pub simulator_dir: Option<PathBuf>,
    /// The simulated TEE: snp, tdx, or snp-tsm (QEMU tests only: the fake TSM provider's
    /// report through the kernel's configfs-tsm, signed by the simulator). Ignored without
    /// a simulator directory, except that snp-tsm then fails.
    #[arg(long, env = "CONTRAST_SIMULATED_TEE", default_value = "snp")]
    pub simulated_tee: String,
    /// HOST_DATA / MRCONFIGID of the simulated VM: 64 hex characters (SNP; on TDX the
    /// first 32 bytes, then zeros) or 96 (the whole TDX MRCONFIGID). Required for snp and
    /// tdx, refused with snp-tsm, where the kernel's provider supplies it.
    #[arg(long, env = "CONTRAST_SIMULATED_HOST_DATA")]
    pub simulated_host_data: Option<String>,
    /// What the simulated host puts into the SEV-SNP certificate table (simulated snp
    /// only): the rest must come from the simulated vendor's KDS, as on real hosts.
    #[arg(
        long,
        env = "CONTRAST_SIMULATED_CERT_TABLE",
        value_enum,
        default_value_t
    )]
    pub simulated_cert_table: SimulatedCertTable,
}

/// What a simulated host hands over with an SEV-SNP report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SimulatedCertTable {
    /// The VCEK, ASK, ARK and the line's CRL.
    #[default]
    Full,
    /// The VCEK, ASK and ARK, no CRL (what most hosts hand over).
    Chain,
    /// Nothing (a bare-metal host without a certificate table).
    None,
}

/// Why [`select`] could not set up an issuer.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// No TEE hardware interface (see [`detect`]).
    #[error(transparent)]
    Hardware(#[from] IssueError),
    /// `--simulated-tee` names no simulated TEE.
    #[error("--simulated-tee {0:?} (CONTRAST_SIMULATED_TEE): use snp, tdx or snp-tsm")]
    UnknownSimulatedTee(String),
    /// `snp-tsm` was asked for without a simulator to sign.
    #[error(
        "--simulated-tee snp-tsm needs --simulator-dir (CONTRAST_SIMULATOR_DIR): the simulated \
         AMD signs the fake TSM provider's report"
    )]
    SnpTsmWithoutSimulator,
    /// A simulated VM needs host data and none (or a malformed one) was given.
    #[error(
        "a simulated {tee} VM needs --simulated-host-data (CONTRAST_SIMULATED_HOST_DATA): \
         {expected}{found}"
    )]
    HostData {
        /// `snp` or `tdx`.
        tee: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What was wrong with the given value (empty when none was given).
        found: String,
    },
    /// Host data was given for `snp-tsm`, where the kernel's provider supplies it.
    #[error(
        "--simulated-host-data (CONTRAST_SIMULATED_HOST_DATA) is not used with --simulated-tee \
         snp-tsm: HOST_DATA comes from the kernel's TSM provider (fake_tsm's host_data \
         parameter); unset it"
    )]
    HostDataNotUsed,
    /// A certificate table shape was given for a TEE whose evidence has no such table.
    #[error(
        "--simulated-cert-table (CONTRAST_SIMULATED_CERT_TABLE) shapes the certificate table of \
         a simulated snp report; --simulated-tee {tee} has none, so it would be ignored; unset it"
    )]
    CertTableNotUsed {
        /// `tdx` or `snp-tsm`.
        tee: &'static str,
    },
    /// A simulator directory was given to a build without the simulator.
    #[error(
        "--simulator-dir (CONTRAST_SIMULATOR_DIR) is set, but this build has no simulator: it \
         issues and accepts TEE hardware evidence only; unset it (simulated platforms need a \
         build with the `simulated` feature)"
    )]
    NotSimulated,
    /// The simulator's public roots could not be read.
    #[error(transparent)]
    Anchors(#[from] contrast_attestation::simulated_anchors::AnchorError),
    /// The simulator's key directory could not be opened.
    #[cfg(feature = "simulated")]
    #[error("opening the simulator at {dir}")]
    OpenSimulator {
        /// The directory.
        dir: PathBuf,
        /// Why it failed.
        source: SimError,
    },
}

/// The issuer the guest binaries' settings ask for: TEE hardware ([`detect`]) without a
/// simulator directory, else the simulated TEE of `settings.simulated_tee`.
pub fn select(settings: &IssuerSettings) -> Result<Box<dyn EvidenceIssuer>, SelectError> {
    let tee: SimulatedTee = settings.simulated_tee.parse()?;
    let Some(dir) = settings.simulator_dir.as_deref() else {
        if tee == SimulatedTee::SnpTsm {
            return Err(SelectError::SnpTsmWithoutSimulator);
        }
        return Ok(detect()?);
    };
    simulated_issuer(settings, dir, tee)
}

#[cfg(feature = "simulated")]
fn simulated_issuer(
    settings: &IssuerSettings,
    dir: &Path,
    tee: SimulatedTee,
) -> Result<Box<dyn EvidenceIssuer>, SelectError> {
    crate::simulated::select(settings, dir, tee)
}

/// Without the simulator, a simulator directory is refused: this build trusts only
/// hardware.
#[cfg(not(feature = "simulated"))]
fn simulated_issuer(
    _settings: &IssuerSettings,
    _dir: &Path,
    _tee: SimulatedTee,
) -> Result<Box<dyn EvidenceIssuer>, SelectError> {
    Err(SelectError::NotSimulated)
}

/// The roots peers' evidence is checked against: the vendors', and with a simulator
/// directory also the simulator's public roots, read as every verifier reads them
/// ([`contrast_attestation::simulated_anchors`]; [`select`] has written them by then), for
/// the simulated platforms only (see [`contrast_atls::Verifiers::with_simulated`]). A build
/// without the simulator refuses a simulator directory.
pub fn verifiers(simulator_dir: Option<&Path>) -> Result<Verifiers, SelectError> {
    let verifiers = Verifiers::real();
    match simulator_dir {
        None => Ok(verifiers),
        Some(dir) if cfg!(feature = "simulated") => {
            let (snp, tdx) = contrast_attestation::simulated_anchors::load(dir)?;
            Ok(verifiers.with_simulated(snp, tdx))
        }
        Some(_) => Err(SelectError::NotSimulated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configfs_tsm::FAKE_TEST_PROVIDER;
    use crate::configfs_tsm::test_support::{FakeProvider, TempDir};
    use crate::snp_cert_table::Guid;
    use contrast_attestation::snp::verify_report;
    use contrast_attestation::snp::{ReportError, SnpProduct};
    use contrast_simulator::SimulatedAmd;
    use std::sync::Arc;
    use std::sync::OnceLock;

    const HOST_DATA: [u8; 32] = [0x11; 32];
    const MEASUREMENT: [u8; 48] = [0x22; 48];

    #[test]
    fn snp_endorsements_take_vcek_or_vlek_ask_ark_crl_and_ignore_other_entries() {
        let entry = |kind, der: &[u8]| CertTableEntry {
            kind,
            der: der.to_vec(),
        };
        let evidence = Evidence {
            tee: Tee::Snp,
            raw: Vec::new(),
            certificates: vec![
                entry(CertKind::Vlek, b"vlek"),
                entry(CertKind::Ask, b"ask"),
                entry(CertKind::Other(Guid([7; 16])), b"other"),
                entry(CertKind::Ark, b"ark"),
                entry(CertKind::Crl, b"crl"),
            ],
            simulated: false,
        };
        let endorsements = evidence.snp_endorsements();
        assert_eq!(endorsements.vek.as_deref(), Some(&b"vlek"[..]));
        assert_eq!(endorsements.ask.as_deref(), Some(&b"ask"[..]));
        assert_eq!(endorsements.ark.as_deref(), Some(&b"ark"[..]));
        assert_eq!(endorsements.crl.as_deref(), Some(&b"crl"[..]));
        let none = Evidence {
            certificates: Vec::new(),
            ..evidence
        };
        assert!(none.snp_endorsements().vek.is_none());
    }
    // SMT and the reserved bit, as QEMU's default, plus ABI minor 0x1f so that a copied
    // policy is told apart from the simulator's default.
    const POLICY: u64 = 0x3001f;

    /// What fake_tsm.ko writes: an unsigned SNP-shaped body (qemu-tests/fake-tsm).
    fn fake_tsm_body(inblob: &[u8]) -> Vec<u8> {
        let mut body = vec![0; 1184];
        body[0..4].copy_from_slice(&5u32.to_le_bytes());
        body[4..8].copy_from_slice(&1u32.to_le_bytes());
        body[8..16].copy_from_slice(&POLICY.to_le_bytes());
        body[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
        body[0x50..0x90].copy_from_slice(inblob);
        body[0x90..0xc0].copy_from_slice(&MEASUREMENT);
        body[0xc0..0xe0].copy_from_slice(&HOST_DATA);
        body[0x140..0x15b].copy_from_slice(b"CONTRAST-FAKE-TSM-NOT-A-TEE");
        body
    }

    fn amd() -> Arc<SimulatedAmd> {
        static AMD: OnceLock<Arc<SimulatedAmd>> = OnceLock::new();
        AMD.get_or_init(|| Arc::new(SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap()))
            .clone()
    }

    fn issue_through(
        root: &TempDir,
        fake: &FakeProvider,
        report_data: &[u8; 64],
    ) -> Result<Evidence, IssueError> {
        let issuer = simulated_signature_tsm(ConfigfsTsm::new(&root.0), amd());
        issuer.issue_from(report_data, |request| {
            issuer.tsm.issue_fake_for_test(request, fake)
        })
    }

    #[test]
    fn simulated_signature_tsm_signs_the_kernel_fields() {
        let root = TempDir::new("sig-tsm");
        let fake = FakeProvider {
            outblob_for: fake_tsm_body,
            has_privlevel: true,
            auxblob: None,
            ..FakeProvider::new(FAKE_TEST_PROVIDER)
        };
        let report_data = [0x33; 64];
        let evidence = issue_through(&root, &fake, &report_data).unwrap();
        assert_eq!(evidence.tee, Tee::Snp);
        assert!(evidence.simulated);
        let kinds: Vec<_> = evidence.certificates.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [CertKind::Vcek, CertKind::Ask, CertKind::Ark, CertKind::Crl]
        );
        let endorsements = evidence.snp_endorsements();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let verified =
            verify_report(&evidence.raw, &endorsements, &amd().trust_anchor(), now).unwrap();
        assert!(verified.simulated);
        assert_eq!(verified.report.report_data(), report_data);
        assert_eq!(verified.report.host_data(), HOST_DATA);
        assert_eq!(verified.report.measurement(), MEASUREMENT);
        assert_eq!(verified.report.policy(), POLICY);
        assert!(root.entries().is_empty());
        assert_eq!(
            simulated_signature_tsm(ConfigfsTsm::default(), amd()).name(),
            "simulated-signature-tsm"
        );
    }

    #[test]
    fn simulated_signature_tsm_refuses_other_providers() {
        let root = TempDir::new("sig-tsm-hw");
        for provider in ["sev_guest", "tdx_guest"] {
            let fake = FakeProvider {
                outblob_for: fake_tsm_body,
                ..FakeProvider::new(provider)
            };
            let err = issue_through(&root, &fake, &[0; 64]).unwrap_err();
            assert!(
                matches!(
                    err,
                    IssueError::ConfigfsTsm(ConfigfsTsmError::NotTheFakeTestProvider { .. })
                ),
                "{provider}: {err:?}"
            );
        }
    }

    #[test]
    fn simulated_signature_tsm_refuses_a_body_of_the_wrong_size() {
        let root = TempDir::new("sig-tsm-size");
        let fake = FakeProvider {
            outblob_for: |inblob| fake_tsm_body(inblob)[..1000].to_vec(),
            ..FakeProvider::new(FAKE_TEST_PROVIDER)
        };
        let err = issue_through(&root, &fake, &[0; 64]).unwrap_err();
        assert!(
            matches!(
                err,
                IssueError::FakeTsm(FakeTsmError::BodyLength { len: 1000 })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("1184"), "{err}");
    }

    #[test]
    fn simulated_signature_tsm_refuses_a_body_that_is_no_report() {
        let root = TempDir::new("sig-tsm-version");
        let fake = FakeProvider {
            outblob_for: |inblob| {
                let mut body = fake_tsm_body(inblob);
                body[0] = 1;
                body
            },
            ..FakeProvider::new(FAKE_TEST_PROVIDER)
        };
        let err = issue_through(&root, &fake, &[0; 64]).unwrap_err();
        assert!(
            matches!(
                err,
                IssueError::FakeTsm(FakeTsmError::Body(ReportError::Version(1)))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn simulated_signature_tsm_refuses_foreign_report_data() {
        let root = TempDir::new("sig-tsm-data");
        let fake = FakeProvider {
            outblob_for: |_| fake_tsm_body(&[0xee; 64]),
            ..FakeProvider::new(FAKE_TEST_PROVIDER)
        };
        let err = issue_through(&root, &fake, &[0x33; 64]).unwrap_err();
        assert!(
            matches!(
                err,
                IssueError::FakeTsm(FakeTsmError::ReportDataMismatch { .. })
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&"ee".repeat(64)) && text.contains(&"33".repeat(64)),
            "{text}"
        );
    }

    #[test]
    fn the_hardware_issuer_refuses_the_fake_provider() {
        let root = TempDir::new("hw-refuses-fake");
        let fake = FakeProvider {
            outblob_for: fake_tsm_body,
            ..FakeProvider::new(FAKE_TEST_PROVIDER)
        };
        let tsm = ConfigfsTsm::new(&root.0);
        let err =
            ConfigfsTsmIssuer::issue_from(&[0; 64], |request| tsm.issue_for_test(request, &fake))
                .unwrap_err();
        assert!(
            matches!(
                err,
                IssueError::ConfigfsTsm(ConfigfsTsmError::FakeTestProvider { .. })
            ),
            "{err:?}"
        );
        assert!(fake.writes.borrow().is_empty());
        assert!(root.entries().is_empty());
    }

    /// On TDX configfs-tsm's outblob is the host's quote service's answer; without the
    /// TDREPORT device the local report is refused, the quote never taken for it. On
    /// SEV-SNP the outblob (from the secure processor) is the local report.
    #[test]
    fn configfs_local_report_is_never_a_tdx_quote() {
        let root = TempDir::new("local-tdx");
        let tsm = ConfigfsTsm::new(&root.0);
        let issuer = ConfigfsTsmIssuer {
            tsm: ConfigfsTsm::new(&root.0),
            tdx_guest: root.0.join("no-tdx_guest"),
        };
        let fake = FakeProvider::new("tdx_guest");
        let err = issuer
            .local_report_from(&[0x44; 64], |request| tsm.issue_for_test(request, &fake))
            .unwrap_err();
        assert!(matches!(err, IssueError::NoTdReport { .. }), "{err:?}");
        assert!(err.to_string().contains("no-tdx_guest"), "{err}");

        let fake = FakeProvider::new("sev_guest");
        let fake = FakeProvider {
            auxblob: None,
            ..fake
        };
        let report = issuer
            .local_report_from(&[0x44; 64], |request| tsm.issue_for_test(request, &fake))
            .unwrap();
        let inblob = [0x44; 64];
        assert_eq!(report, LocalReport::Snp(FakeProvider::report_for(&inblob)));
        assert!(root.entries().iter().all(|p| p.ends_with("no-tdx_guest")));
    }

    /// A TDX guest device that fails (here: `/dev/null`, which has no TDX ioctl) is a
    /// failure of the local report, not a reason to fall back to the quote.
    #[test]
    fn configfs_local_report_does_not_fall_back_on_a_broken_tdx_device() {
        let root = TempDir::new("local-tdx-broken");
        let tsm = ConfigfsTsm::new(&root.0);
        let issuer = ConfigfsTsmIssuer {
            tsm: ConfigfsTsm::new(&root.0),
            tdx_guest: PathBuf::from("/dev/null"),
        };
        let fake = FakeProvider::new("tdx_guest");
        let err = issuer
            .local_report_from(&[0x44; 64], |request| tsm.issue_for_test(request, &fake))
            .unwrap_err();
        assert!(matches!(err, IssueError::TdxGuest(_)), "{err:?}");
        assert!(fake.writes.borrow().is_empty(), "configfs-tsm was asked");
    }

    fn settings(dir: Option<&str>, tee: &str, host_data: Option<&str>) -> IssuerSettings {
        IssuerSettings {
            simulator_dir: dir.map(PathBuf::from),
            simulated_tee: tee.to_owned(),
            simulated_host_data: host_data.map(str::to_owned),
            simulated_cert_table: SimulatedCertTable::Full,
        }
    }

    fn select_err(settings: &IssuerSettings) -> SelectError {
        match select(settings) {
            Ok(issuer) => panic!("selected {}", issuer.name()),
            Err(e) => e,
        }
    }

    #[test]
    fn select_refuses_unknown_tee() {
        for tee in ["sev", "SNP", "", "snp_tsm"] {
            let err = select_err(&settings(Some("/nonexistent"), tee, None));
            assert!(
                matches!(err, SelectError::UnknownSimulatedTee(_)),
                "{err:?}"
            );
            assert!(err.to_string().contains("use snp, tdx or snp-tsm"), "{err}");
        }
        assert_eq!(
            "snp-tsm".parse::<SimulatedTee>().unwrap(),
            SimulatedTee::SnpTsm
        );
    }

    #[test]
    fn select_refuses_snp_tsm_without_simulator() {
        let err = select_err(&settings(None, "snp-tsm", None));
        assert!(
            matches!(err, SelectError::SnpTsmWithoutSimulator),
            "{err:?}"
        );
        assert!(err.to_string().contains("--simulator-dir"), "{err}");
    }

    #[test]
    fn select_refuses_host_data_for_snp_tsm() {
        let err = select_err(&settings(
            Some("/nonexistent"),
            "snp-tsm",
            Some(&"00".repeat(32)),
        ));
        assert!(matches!(err, SelectError::HostDataNotUsed), "{err:?}");
        assert!(err.to_string().contains("fake_tsm's host_data"), "{err}");
    }

    #[test]
    fn select_refuses_a_certificate_table_for_a_tee_without_one() {
        for (tee, host_data) in [("tdx", Some("00".repeat(32))), ("snp-tsm", None)] {
            for table in [SimulatedCertTable::Chain, SimulatedCertTable::None] {
                let mut asked = settings(Some("/nonexistent"), tee, host_data.as_deref());
                asked.simulated_cert_table = table;
                let err = select_err(&asked);
                assert!(
                    matches!(err, SelectError::CertTableNotUsed { .. }),
                    "{tee}: {err:?}"
                );
                assert!(err.to_string().contains(tee), "{err}");
                assert!(err.to_string().contains("unset it"), "{err}");
            }
        }
    }

    #[test]
    fn select_refuses_missing_or_malformed_host_data() {
        // Refused before the (nonexistent) simulator directory is opened.
        for (tee, host_data) in [
            ("snp", None),
            ("snp", Some("zz".repeat(32))),
            ("snp", Some("00".repeat(48))),
            ("snp", Some("00".repeat(31))),
            ("tdx", None),
            ("tdx", Some("00".repeat(40))),
        ] {
            let err = select_err(&settings(Some("/nonexistent"), tee, host_data.as_deref()));
            assert!(
                matches!(err, SelectError::HostData { .. }),
                "{tee}: {err:?}"
            );
            assert!(err.to_string().contains("--simulated-host-data"), "{err}");
        }
    }

    #[test]
    fn select_reports_an_unusable_simulator_dir() {
        let root = TempDir::new("select-sim");
        let file = root.0.join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let dir = file.to_str().unwrap();
        let err = select_err(&settings(Some(dir), "snp", Some(&"00".repeat(32))));
        assert!(matches!(err, SelectError::OpenSimulator { .. }), "{err:?}");
        assert!(
            err.to_string().contains("opening the simulator at"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_configfs_is_a_clear_error_from_the_issuer() {
        let dir = std::env::temp_dir().join(format!("no-tsm-{}", std::process::id()));
        let issuer = ConfigfsTsmIssuer::new(ConfigfsTsm::new(&dir));
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
