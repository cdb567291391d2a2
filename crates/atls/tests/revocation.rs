//! An SEV-SNP report is accepted only with a current CRL of AMD's: the one its host
//! carried, or one the verifier's collateral source fetched. A revoked VCEK is refused
//! both ways, and a report whose revocation cannot be checked is refused, saying so.
//! (The simulated vendor's evidence: the validator is the same code as for AMD's.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use contrast_atls::unix_now as now;
use std::sync::{Arc, Mutex, OnceLock};

use contrast_atls::{Issuer, ReferenceValidator, Validator, Verifiers};
use contrast_attestation::collateral::{CollateralSource, CollateralSourceError};
use contrast_attestation::snp::{
    SnpEndorsements, SnpProduct, SnpTrustAnchor, suggested_reference_values, verify_report,
};
use contrast_attestation::tdx::{TdxCollateral, TdxTrustAnchor};
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::{Evidence, EvidenceIssuer, IssueError, simulated_snp};
use contrast_evidence::snp_cert_table::{CertKind, CertTableEntry};
use contrast_simulator::{SimulatedAmd, SimulatedIntel, SnpReportSpec};

fn amd() -> Arc<SimulatedAmd> {
    static AMD: OnceLock<Arc<SimulatedAmd>> = OnceLock::new();
    AMD.get_or_init(|| Arc::new(SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap()))
        .clone()
}

/// The simulated VCEKs' serial number (AMD's VCEKs all have serial 0 too).
const VCEK_SERIAL: &[u8] = &[0];

/// A CRL of the simulated ARK revoking `serials`, current now.
fn crl(serials: &[&[u8]]) -> Vec<u8> {
    amd()
        .crl(SnpProduct::Milan, serials, now() - 3600, now() + 3600)
        .unwrap()
}

/// A host that hands over the simulated evidence with its CRL replaced (`None`: left out).
struct Host {
    crl: Option<Vec<u8>>,
}

impl EvidenceIssuer for Host {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let mut spec = SnpReportSpec::new(SnpProduct::Milan);
        spec.report_data = *report_data;
        let mut evidence = simulated_snp(amd(), spec).issue(report_data)?;
        evidence.certificates.retain(|e| e.kind != CertKind::Crl);
        if let Some(der) = &self.crl {
            evidence.certificates.push(CertTableEntry {
                kind: CertKind::Crl,
                der: der.clone(),
            });
        }
        Ok(evidence)
    }

    fn name(&self) -> &'static str {
        "test-host"
    }
}

/// A collateral source that hands out one CRL (or fails), and counts its calls.
#[derive(Debug, Default)]
struct Kds {
    crl: Option<Vec<u8>>,
    calls: Mutex<usize>,
}

impl CollateralSource for Kds {
    fn snp_endorsements(
        &self,
        _report: &[u8],
        mut carried: SnpEndorsements,
        _anchor: &SnpTrustAnchor,
        _now: i64,
    ) -> Result<SnpEndorsements, CollateralSourceError> {
        *self.calls.lock().unwrap() += 1;
        if carried.crl.is_none() {
            carried.crl = Some(self.crl.clone().ok_or("KDS answered HTTP 503")?);
        }
        Ok(carried)
    }

    fn tdx_collateral(
        &self,
        _quote: &[u8],
        _anchor: &TdxTrustAnchor,
        _now: i64,
    ) -> Result<Option<TdxCollateral>, CollateralSourceError> {
        Ok(None)
    }
}

fn verifiers() -> Verifiers {
    let tdx = SimulatedIntel::generate(Default::default())
        .unwrap()
        .trust_anchor();
    Verifiers::real().with_simulated(amd().trust_anchor(), tdx)
}

fn validator(verifiers: Verifiers) -> ReferenceValidator {
    let signed = amd()
        .report(&SnpReportSpec::new(SnpProduct::Milan))
        .unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(signed.vcek_der),
        ask: Some(signed.ask_der),
        ark: Some(signed.ark_der),
        crl: None,
    };
    let verified =
        verify_report(&signed.report, &endorsements, &amd().trust_anchor(), now()).unwrap();
    ReferenceValidator::new(
        verifiers,
        vec![suggested_reference_values(&verified)],
        Vec::new(),
        None,
    )
}

/// What the validator says about the host's evidence.
fn check(host: Host, verifiers: Verifiers) -> Result<String, String> {
    let report_data = [7; 64];
    let issuer = DocumentIssuer::new(Arc::new(host));
    let (oid, document) = issuer.issue(&report_data).unwrap();
    validator(verifiers)
        .validate(oid, &document, &report_data)
        .map(|peer| peer.validator)
        .map_err(|rejection| rejection.reason)
}

#[test]
fn a_report_with_a_current_crl_from_its_host_is_accepted() {
    let host = Host {
        crl: Some(crl(&[&[0x77]])),
    };
    assert_eq!(check(host, verifiers()).unwrap(), "snp[0]");
}

#[test]
fn revoked_vcek_is_refused_with_the_hosts_crl() {
    let host = Host {
        crl: Some(crl(&[VCEK_SERIAL])),
    };
    let source = Arc::new(Kds::default());
    let reason = check(host, verifiers().with_simulated_collateral(source.clone())).unwrap_err();
    assert!(reason.contains("revoked"), "{reason}");
    assert_eq!(*source.calls.lock().unwrap(), 1);
}

#[test]
fn revoked_vcek_is_refused_with_a_fetched_crl() {
    let source = Arc::new(Kds {
        crl: Some(crl(&[VCEK_SERIAL])),
        ..Default::default()
    });
    let reason = check(
        Host { crl: None },
        verifiers().with_simulated_collateral(source),
    )
    .unwrap_err();
    assert!(reason.contains("revoked"), "{reason}");
}

#[test]
fn a_report_whose_crl_is_fetched_is_accepted() {
    let source = Arc::new(Kds {
        crl: Some(crl(&[])),
        ..Default::default()
    });
    let accepted = check(
        Host { crl: None },
        verifiers().with_simulated_collateral(source),
    );
    assert_eq!(accepted.unwrap(), "snp[0]");
}

#[test]
fn a_report_without_a_crl_and_no_source_is_refused_saying_why() {
    let reason = check(Host { crl: None }, verifiers()).unwrap_err();
    assert!(reason.contains("without AMD's CRL"), "{reason}");
    assert!(reason.contains("revocation cannot be checked"), "{reason}");
}

#[test]
fn a_source_that_cannot_fetch_the_crl_is_a_refusal_naming_it() {
    let source = Arc::new(Kds::default());
    let reason = check(
        Host { crl: None },
        verifiers().with_simulated_collateral(source),
    )
    .unwrap_err();
    assert!(
        reason.contains("SNP collateral: KDS answered HTTP 503"),
        "{reason}"
    );
}

#[test]
fn a_crl_past_its_next_update_is_refused() {
    let stale = amd()
        .crl(SnpProduct::Milan, &[], now() - 7200, now() - 3600)
        .unwrap();
    let reason = check(Host { crl: Some(stale) }, verifiers()).unwrap_err();
    assert!(reason.contains("next update"), "{reason}");
}

#[test]
fn without_a_crl_a_report_is_accepted_only_when_the_verifier_is_told_to() {
    let accepted = check(Host { crl: None }, verifiers().accept_snp_without_crl(true));
    assert_eq!(accepted.unwrap(), "snp[0]");
}
