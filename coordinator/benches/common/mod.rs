//! What the Coordinator benchmarks share.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use contrast_coordinator::{Config, Ports};
use contrast_platforms::Platform;
use contrast_testkit::Deployment;

/// An in-process Coordinator on simulated SEV-SNP for `deployment`, with its filesystem
/// store in `store`, listening on `listen`, no peers, and simulated evidence that takes
/// `issue_delay`.
pub(crate) fn sim_snp_config(
    deployment: &Deployment,
    store: &Path,
    listen: IpAddr,
    issue_delay: Duration,
) -> Config {
    Config {
        store_dir: store.to_path_buf(),
        backend: contrast_coordinator::Backend::Filesystem,
        listen,
        ports: Ports::default(),
        platform: Platform::SimSnp,
        simulator_dir: Some(deployment.simulator_dir.clone()),
        simulated_host_data: deployment.policy_hash("coordinator"),
        peers: Vec::new(),
        recovery_interval: Duration::from_secs(3600),
        metrics: false,
        simulated_issue_delay: issue_delay,
        collateral: Default::default(),
        simulated_cert_table: Default::default(),
        simulated_tee: None,
    }
}
