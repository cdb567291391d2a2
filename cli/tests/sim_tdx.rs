//! The Coordinator on simulated TDX, through the real binaries: `contrast set` and `verify`
//! attest its quotes, and the Coordinator attests a TD's, each with collateral (TCB info,
//! QE identity, CRLs) from the simulated Intel's PCS. Without that collateral both refuse.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{contrast_with_cache as contrast, ok, refused, start_with};
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::simulated_tdx;
use contrast_platforms::Platform;
use contrast_simulator::TdxQuoteSpec;
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, new_mesh_cert};

/// A Coordinator for `deployment` that fetches TDX collateral from `pcs_url`.
fn start(deployment: &Deployment, pcs_url: &str) -> (CoordinatorProcess, TempDir) {
    let store = TempDir::new("store");
    let extra = ["--pcs-url".to_owned(), pcs_url.to_owned()];
    (start_with(deployment, store.path(), &extra), store)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sim_tdx_coordinator_is_set_and_verified_and_certifies_its_tds_with_the_pcss_collateral()
{
    let deployment = Deployment::on(Platform::SimTdx, &["web"]);
    assert!(deployment.manifest.reference_values.snp.is_empty());
    let mut pcs = deployment.simulated_pcs();
    let (coordinator, _store) = start(&deployment, pcs.url());
    let addr = coordinator.user_addr();

    let cache = TempDir::new("cache");
    ok(&contrast(
        &deployment,
        &cache,
        &["set", "-c", &addr, "--pcs-url", pcs.url(), "resources"],
    ));
    // The CLI evaluated the Coordinator's TCB with the PCS's collateral and cached it.
    // (`pcs/tdx/<FMSPC>-<CA>.json`, the collateral crate's cache layout.)
    let cached = std::fs::read_dir(cache.path().join("pcs/tdx"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert!(cached > 0, "no TDX collateral cached");

    // A TD of the web workload gets its certificate; the chain is the mesh CA's.
    let (_, cert) = new_mesh_cert(&coordinator.mesh_addr(), deployment.issuer("web"))
        .await
        .unwrap();
    assert_eq!(
        cert.mesh_ca_cert,
        std::fs::read(deployment.path("mesh-ca.pem")).unwrap()
    );
    assert_eq!(
        String::from_utf8(cert.cert_chain)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    // A TD whose MRCONFIGID names no policy of the manifest gets nothing.
    let mut stranger = TdxQuoteSpec::default();
    stranger.mr_config_id[..32].copy_from_slice(&[0x5a; 32]);
    let stranger = Arc::new(DocumentIssuer::new(Arc::new(simulated_tdx(
        deployment.intel.clone(),
        stranger,
    ))));
    new_mesh_cert(&coordinator.mesh_addr(), stranger)
        .await
        .unwrap_err();
    coordinator.wait_for_log(&hex::encode([0x5a; 32]));

    ok(&contrast(
        &deployment,
        &cache,
        &["verify", "-c", &addr, "--pcs-url", pcs.url()],
    ));
    assert_eq!(
        std::fs::read(deployment.path("verify").join("manifest.0.json")).unwrap(),
        std::fs::read(deployment.path("manifest.json")).unwrap()
    );

    // A Coordinator that cannot get the collateral for a TD refuses it, saying so (set up
    // by a CLI that can).
    let dead_url = {
        let mut dead = deployment.simulated_pcs();
        let url = dead.url().to_owned();
        dead.stop();
        url
    };
    let (without, _store) = start(&deployment, &dead_url);
    // A new deployment, not the one verified above.
    std::fs::remove_file(deployment.path("verify").join("latest-transition")).unwrap();
    ok(&contrast(
        &deployment,
        &cache,
        &[
            "set",
            "-c",
            &without.user_addr(),
            "--pcs-url",
            pcs.url(),
            "resources",
        ],
    ));
    new_mesh_cert(&without.mesh_addr(), deployment.issuer("web"))
        .await
        .unwrap_err();
    without.wait_for_log("TDX collateral");

    // Without the collateral, the CLI refuses too: a fresh cache, the PCS gone.
    let url = pcs.url().to_owned();
    pcs.stop();
    let fresh = TempDir::new("cache");
    refused(
        &contrast(
            &deployment,
            &fresh,
            &["verify", "-c", &addr, "--pcs-url", &url],
        ),
        &["TDX collateral"],
    );
}
