//! `contrast set`/`verify` fetch what the Coordinator's evidence lacks: here a Coordinator
//! whose simulated host hands over the VCEK chain but no CRL, and whose own KDS cannot
//! complete it. The CLI refuses it offline, naming the missing CRL; with `--kds-url`
//! naming the simulated vendor's KDS it fetches the CRL, checks it and proceeds; and a KDS
//! whose CRL revokes the Coordinator's VCEK makes it refuse, naming the revocation.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{CONTRAST, contrast_with_cache as contrast, ok, refused};
use contrast_simulator::kds::SimulatedKds;
use contrast_testkit::kds::{Fault, LocalKds};
use contrast_testkit::serve::Background;
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, random_loopback};

#[test]
fn the_cli_fetches_the_crl_the_coordinators_evidence_lacks_and_refuses_a_revoked_vcek() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    // A KDS that knows none of the simulator's chips: the Coordinator cannot complete its
    // own table, and its evidence goes out with the chain only.
    let unhelpful = LocalKds::start(Fault::None);
    let extra = [
        "--simulated-cert-table",
        "chain",
        "--kds-url",
        unhelpful.url(),
    ]
    .map(str::to_owned);
    let binary = contrast_testkit::coordinator_binary(CONTRAST);
    let mut coordinator = CoordinatorProcess::start(
        &binary,
        &deployment,
        store.path(),
        random_loopback(),
        &extra,
    );
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    let addr = coordinator.user_addr();

    let cache = TempDir::new("cache");
    let offline = contrast(
        &deployment,
        &cache,
        &[
            "set",
            "-c",
            &addr,
            "--offline",
            "--timeout",
            "5",
            "resources",
        ],
    );
    refused(&offline, &["without AMD's CRL"]);

    let kds = Background::serve(SimulatedKds::new(deployment.amd.clone()).router());
    ok(&contrast(
        &deployment,
        &cache,
        &["set", "-c", &addr, "--kds-url", kds.url(), "resources"],
    ));
    assert!(
        cache.path().join("kds/crl/Milan.der").exists(),
        "the fetched CRL is kept"
    );

    let revoking = SimulatedKds::new(deployment.amd.clone());
    revoking.revoke(&[0]);
    let revoking = Background::serve(revoking.router());
    let fresh_cache = TempDir::new("cache");
    let revoked = contrast(
        &deployment,
        &fresh_cache,
        &[
            "verify",
            "-c",
            &addr,
            "--kds-url",
            revoking.url(),
            "--timeout",
            "5",
        ],
    );
    refused(&revoked, &["revoked"]);
    coordinator.kill();
}
