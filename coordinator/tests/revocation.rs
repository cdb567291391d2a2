//! SEV-SNP revocation on the Coordinator's paths, with the simulated vendor's KDS: a
//! workload whose host hands over the chain but no CRL gets its certificate only once the
//! Coordinator fetched a CRL that does not revoke it; a revoked VCEK is refused with the
//! host's CRL and with a fetched one; and the Coordinator's own certificate table, which
//! its host left empty, is completed from KDS, so a client without a collateral source
//! attests it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use contrast_atls::unix_now as now;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use contrast_atls::Issuer;
use contrast_attestation::snp::SnpProduct;
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::{
    Evidence, EvidenceIssuer, IssueError, SimulatedCertTable, simulated_snp,
};
use contrast_evidence::snp_cert_table::{CertKind, CertTableEntry};
use contrast_simulator::SnpReportSpec;
use contrast_simulator::kds::SimulatedKds;
use contrast_testkit::serve::Background;
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, new_mesh_cert, random_loopback};

/// A Coordinator whose simulated host hands over no certificate table, with `kds`.
fn start(deployment: &Deployment, store: &Path, kds: &Background) -> CoordinatorProcess {
    let extra = ["--kds-url", kds.url(), "--simulated-cert-table", "none"].map(str::to_owned);
    let mut process = CoordinatorProcess::start(
        Path::new(common::COORDINATOR),
        deployment,
        store,
        random_loopback(),
        &extra,
    );
    process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    process
}

/// The web workload's issuer, its host handing over `table`.
fn workload(deployment: &Deployment, table: SimulatedCertTable) -> Arc<dyn Issuer> {
    let mut spec = SnpReportSpec::new(SnpProduct::Milan);
    spec.host_data = deployment.policy_hash("web");
    Arc::new(DocumentIssuer::new(Arc::new(
        simulated_snp(deployment.amd.clone(), spec).with_cert_table(table),
    )))
}

/// The web workload's host carrying `crl` in a full table.
struct HostWithCrl {
    deployment_amd: Arc<contrast_simulator::SimulatedAmd>,
    host_data: [u8; 32],
    crl: Vec<u8>,
}

impl EvidenceIssuer for HostWithCrl {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let mut spec = SnpReportSpec::new(SnpProduct::Milan);
        spec.host_data = self.host_data;
        let mut evidence = simulated_snp(self.deployment_amd.clone(), spec)
            .with_cert_table(SimulatedCertTable::Chain)
            .issue(report_data)?;
        evidence.certificates.push(CertTableEntry {
            kind: CertKind::Crl,
            der: self.crl.clone(),
        });
        Ok(evidence)
    }

    fn name(&self) -> &'static str {
        "host-with-crl"
    }
}

#[tokio::test]
async fn a_workload_is_served_once_its_crl_is_fetched_and_the_coordinator_completes_its_own_table()
{
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let kds = Background::serve(SimulatedKds::new(deployment.amd.clone()).router());
    let mut process = start(&deployment, store.path(), &kds);

    // The client has no collateral source and needs a CRL: the Coordinator's table, empty
    // from its host, was completed from KDS.
    let validators = common::coordinator_validators(&deployment);
    let mut client = common::client(&process.user_addr(), &validators, None).await;
    common::first_set(&mut client, &deployment, &deployment.manifest.encode()).await;

    let served = new_mesh_cert(
        &process.mesh_addr(),
        workload(&deployment, SimulatedCertTable::Chain),
    )
    .await;
    assert!(served.is_ok(), "{served:?}");
    let served = new_mesh_cert(
        &process.mesh_addr(),
        workload(&deployment, SimulatedCertTable::None),
    )
    .await;
    assert!(served.is_ok(), "a host without a table: {served:?}");
    process.kill();
}

#[tokio::test]
async fn revoked_vcek_is_refused_on_the_mesh_api_with_and_without_a_host_crl() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let simulated_kds = SimulatedKds::new(deployment.amd.clone());
    // The chip's VCEK (serial 0, as all of AMD's) is revoked before anyone asks.
    simulated_kds.revoke(&[0]);
    let kds = Background::serve(simulated_kds.router());
    let mut process = start(&deployment, store.path(), &kds);
    contrast_testkit::set_manifest(&deployment, &process.user_addr())
        .await
        .unwrap();

    // Without a host CRL: the Coordinator fetches the revoking one.
    let refused = new_mesh_cert(
        &process.mesh_addr(),
        workload(&deployment, SimulatedCertTable::Chain),
    )
    .await
    .unwrap_err();
    assert!(refused.contains("revoked"), "{refused}");

    // With the host's CRL, which revokes it.
    let revoking = deployment
        .amd
        .crl(SnpProduct::Milan, &[&[0]], now() - 60, now() + 3600)
        .unwrap();
    let host = HostWithCrl {
        deployment_amd: deployment.amd.clone(),
        host_data: deployment.policy_hash("web"),
        crl: revoking,
    };
    let refused = new_mesh_cert(
        &process.mesh_addr(),
        Arc::new(DocumentIssuer::new(Arc::new(host))),
    )
    .await
    .unwrap_err();
    assert!(refused.contains("revoked"), "{refused}");
    process.kill();
}
