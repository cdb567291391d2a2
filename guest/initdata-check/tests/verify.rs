//! `verify` and `check_and_install` against simulated SEV-SNP and TDX evidence: the
//! digest-to-field mapping per algorithm, and every way the evidence can fail.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, OnceLock};

use common::{Workspace, simulator_dir};
use contrast_evidence::issuer::{
    Evidence, EvidenceIssuer, IssueError, LocalReport, Tee, simulated_snp, simulated_tdx,
};
use contrast_initdata_check::source::encode_header_form;
use contrast_initdata_check::{
    Algorithm, CheckError, Decision, HostDataError, InitdataSource, check_and_install, deny_all,
    verify,
};
use contrast_simulator::{SimulatedAmd, SimulatedIntel, Simulator, SnpReportSpec, TdxQuoteSpec};

type Vendors = (Arc<SimulatedAmd>, Arc<SimulatedIntel>);

fn vendors() -> &'static Vendors {
    static VENDORS: OnceLock<Vendors> = OnceLock::new();
    VENDORS.get_or_init(|| {
        let Simulator { amd, intel } = Simulator::open(simulator_dir()).unwrap();
        (Arc::new(amd), Arc::new(intel))
    })
}

fn snp(host_data: [u8; 32]) -> impl EvidenceIssuer {
    let mut spec = SnpReportSpec::new(contrast_attestation::snp::SnpProduct::Milan);
    spec.host_data = host_data;
    simulated_snp(vendors().0.clone(), spec)
}

fn tdx(mr_config_id: [u8; 48]) -> impl EvidenceIssuer {
    let spec = TdxQuoteSpec {
        mr_config_id,
        ..TdxQuoteSpec::default()
    };
    simulated_tdx(vendors().1.clone(), spec)
}

/// The document on a device image (with sector padding), in a workspace.
fn write_document(name: &str, toml: &str) -> (Workspace, InitdataSource) {
    let ws = Workspace::new(name);
    let path = ws.path("virtio-initdata");
    std::fs::write(&path, encode_header_form(toml.as_bytes(), 300)).unwrap();
    (ws, InitdataSource::Device(path))
}

fn document(algorithm: &str) -> String {
    common::document(
        algorithm,
        "package agent_policy\ndefault CreateContainerRequest := true\n",
    )
}

#[test]
fn snp_sha256_match() {
    let toml = document("sha256");
    let (_dir, source) = write_document("snp-match", &toml);
    let digest: [u8; 32] = Algorithm::Sha256
        .digest(toml.as_bytes())
        .try_into()
        .unwrap();
    let verified = verify(&source, &snp(digest)).unwrap();
    assert_eq!(verified.tee, Tee::Snp);
    assert_eq!(verified.digest, digest);
    assert_eq!(verified.issuer, "simulated-snp");
    assert!(
        verified
            .policy()
            .contains("default CreateContainerRequest := true")
    );
}

#[test]
fn snp_mismatch() {
    let toml = document("sha256");
    let (_dir, source) = write_document("snp-mismatch", &toml);
    let err = verify(&source, &snp([9; 32])).unwrap_err();
    assert!(
        matches!(
            err,
            CheckError::HostData(HostDataError::Mismatch { tee: Tee::Snp, .. })
        ),
        "{err}"
    );
}

#[test]
fn tdx_sha256_is_zero_padded_and_sha384_fills_the_field() {
    let toml = document("sha-256");
    let (_dir, source) = write_document("tdx-256", &toml);
    let mut field = [0; 48];
    field[..32].copy_from_slice(&Algorithm::Sha256.digest(toml.as_bytes()));
    assert_eq!(verify(&source, &tdx(field)).unwrap().tee, Tee::Tdx);
    field[40] = 1;
    assert!(matches!(
        verify(&source, &tdx(field)),
        Err(CheckError::HostData(HostDataError::Mismatch { .. }))
    ));

    let toml = document("sha384");
    let (_dir, source) = write_document("tdx-384", &toml);
    let field: [u8; 48] = Algorithm::Sha384
        .digest(toml.as_bytes())
        .try_into()
        .unwrap();
    assert_eq!(verify(&source, &tdx(field)).unwrap().digest, field);
}

#[test]
fn sha512_is_cut_to_the_field() {
    let toml = document("sha512");
    let (_dir, source) = write_document("sha512", &toml);
    let digest = Algorithm::Sha512.digest(toml.as_bytes());
    let snp_field: [u8; 32] = digest[..32].try_into().unwrap();
    verify(&source, &snp(snp_field)).unwrap();
    let tdx_field: [u8; 48] = digest[..48].try_into().unwrap();
    verify(&source, &tdx(tdx_field)).unwrap();
}

#[test]
fn a_document_without_a_policy_is_refused_before_asking_the_hardware() {
    let toml = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = \"\"\n";
    let (_dir, source) = write_document("no-policy", toml);
    let digest: [u8; 32] = Algorithm::Sha256
        .digest(toml.as_bytes())
        .try_into()
        .unwrap();
    let err = verify(&source, &snp(digest)).unwrap_err();
    assert!(matches!(err, CheckError::NoPolicy), "{err}");
}

struct StaleIssuer<I>(I);
impl<I: EvidenceIssuer> EvidenceIssuer for StaleIssuer<I> {
    fn issue(&self, _report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        self.0.issue(&[0; 64])
    }
    fn name(&self) -> &'static str {
        "stale"
    }
    fn local_report(&self, _report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        self.0.local_report(&[0; 64])
    }
}

#[test]
fn evidence_for_another_nonce_is_refused() {
    let toml = document("sha256");
    let (_dir, source) = write_document("stale", &toml);
    let digest: [u8; 32] = Algorithm::Sha256
        .digest(toml.as_bytes())
        .try_into()
        .unwrap();
    let err = verify(&source, &StaleIssuer(snp(digest))).unwrap_err();
    assert!(
        matches!(
            err,
            CheckError::HostData(HostDataError::StaleEvidence { tee: Tee::Snp, .. })
        ),
        "{err}"
    );
    let mut field = [0; 48];
    field[..32].copy_from_slice(&digest);
    let err = verify(&source, &StaleIssuer(tdx(field))).unwrap_err();
    assert!(
        matches!(
            err,
            CheckError::HostData(HostDataError::StaleEvidence { tee: Tee::Tdx, .. })
        ),
        "{err}"
    );
}

struct BrokenIssuer;
impl EvidenceIssuer for BrokenIssuer {
    fn issue(&self, _report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        Err(IssueError::NoTee {
            configfs: "absent".into(),
            sev_guest: "absent".into(),
        })
    }
    fn name(&self) -> &'static str {
        "broken"
    }
    fn local_report(&self, report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        self.issue(report_data).map(|e| LocalReport::Snp(e.raw))
    }
}

struct GarbageIssuer(Tee);
impl EvidenceIssuer for GarbageIssuer {
    fn issue(&self, _report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        unreachable!("the initdata check asks for local reports only")
    }
    fn name(&self) -> &'static str {
        "garbage"
    }
    fn local_report(&self, _report_data: &[u8; 64]) -> Result<LocalReport, IssueError> {
        Ok(match self.0 {
            Tee::Snp => LocalReport::Snp(vec![0; 100]),
            Tee::Tdx => LocalReport::TdReport(vec![0; 100]),
        })
    }
}

#[test]
fn hardware_failures_are_refusals() {
    let (_dir, source) = write_document("hw", &document("sha256"));
    let err = verify(&source, &BrokenIssuer).unwrap_err();
    assert!(matches!(err, CheckError::Evidence(_)), "{err}");
    let err = verify(&source, &GarbageIssuer(Tee::Snp)).unwrap_err();
    assert!(
        matches!(err, CheckError::HostData(HostDataError::Report(_))),
        "{err}"
    );
    let err = verify(&source, &GarbageIssuer(Tee::Tdx)).unwrap_err();
    assert!(
        matches!(err, CheckError::HostData(HostDataError::TdReport(_))),
        "{err}"
    );
}

#[test]
fn check_and_install_writes_the_policy_or_the_denial() {
    let toml = document("sha256");
    let (dir, source) = write_document("install", &toml);
    let policy_path = dir.path("measured-cfg/policy.rego");
    let digest: [u8; 32] = Algorithm::Sha256
        .digest(toml.as_bytes())
        .try_into()
        .unwrap();

    let decision = check_and_install(&source, &snp(digest), &policy_path).unwrap();
    assert!(matches!(decision, Decision::Accepted(_)));
    assert_eq!(
        std::fs::read_to_string(&policy_path).unwrap(),
        "package agent_policy\ndefault CreateContainerRequest := true\n"
    );

    let decision = check_and_install(&source, &snp([0; 32]), &policy_path).unwrap();
    let Decision::Refused(reason) = decision else {
        panic!("accepted a mismatch")
    };
    let written = std::fs::read_to_string(&policy_path).unwrap();
    assert_eq!(written, deny_all(&contrast_platforms::error_chain(&reason)));
    assert!(written.contains("initdata digest mismatch"), "{written}");
}

/// On TDX, configfs-tsm's outblob is the quote the VMM's quote service returns: the host
/// makes it. A host that answers with a made-up quote (zeroed signatures, the MRCONFIGID of
/// permissive initdata of its choosing) must not get that initdata's policy installed.
struct HostForgedQuoteIssuer;
impl EvidenceIssuer for HostForgedQuoteIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let toml = document("sha256");
        let mut mr_config_id = [0; 48];
        mr_config_id[..32].copy_from_slice(&Algorithm::Sha256.digest(toml.as_bytes()));
        let mut quote = vendors()
            .1
            .quote(&TdxQuoteSpec {
                mr_config_id,
                report_data: *report_data,
                ..TdxQuoteSpec::default()
            })
            .unwrap();
        let signed_len = contrast_attestation::tdx::TdxQuote::parse(&quote)
            .unwrap()
            .signed_bytes()
            .len();
        // The quote signature and, after the attestation key, the QE report signature.
        quote[signed_len + 4..signed_len + 4 + 64].fill(0);
        let qe_signature = signed_len + 4 + 128 + 6 + 384;
        quote[qe_signature..qe_signature + 64].fill(0);
        Ok(Evidence {
            tee: Tee::Tdx,
            raw: quote,
            certificates: Vec::new(),
            simulated: false,
        })
    }
    fn name(&self) -> &'static str {
        "host-forged-quote"
    }
}

#[test]
fn tdx_initdata_check_ignores_a_quote_the_host_forged() {
    let toml = document("sha256");
    let (dir, source) = write_document("tdx-forged-quote", &toml);
    let policy_path = dir.path("measured-cfg/policy.rego");
    let decision = check_and_install(&source, &HostForgedQuoteIssuer, &policy_path).unwrap();
    let Decision::Refused(reason) = decision else {
        panic!("installed the policy of initdata that a host-made quote vouched for")
    };
    let written = std::fs::read_to_string(&policy_path).unwrap();
    assert_eq!(written, deny_all(&contrast_platforms::error_chain(&reason)));
    assert!(
        !written.contains("default CreateContainerRequest := true"),
        "{written}"
    );
    assert!(
        matches!(
            reason,
            CheckError::Evidence(IssueError::NoLocalReport {
                issuer: "host-forged-quote"
            })
        ),
        "{reason}"
    );
}
