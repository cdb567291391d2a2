//! The `snp-tsm` issuer end to end: kernel body, simulated signature, SNP verifier.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use contrast_attestation::snp::verify_report;
use contrast_evidence::issuer::{IssuerSettings, Tee, select};

use crate::common::{ensure_configfs, expect_no_report_dirs, fresh_report_data, host_data, step};

/// Where the kernel shows fake_tsm's parameters.
const MODULE_PARAMETERS: &str = "/sys/module/fake_tsm/parameters";

/// `snp-tsm-issue`.
pub(crate) fn issue(simulator_dir: &Path, host_data_hex: &str) -> anyhow::Result<()> {
    let host_data = host_data(host_data_hex)?;
    ensure_configfs()?;
    let parameter = std::fs::read_to_string(Path::new(MODULE_PARAMETERS).join("host_data"))
        .context("reading fake_tsm's host_data parameter: is fake_tsm.ko loaded?")?;
    ensure!(
        parameter.trim().eq_ignore_ascii_case(host_data_hex.trim()),
        "fake_tsm was loaded with host_data {}, but the test expects {host_data_hex}",
        parameter.trim()
    );
    let measurement = std::fs::read_to_string(Path::new(MODULE_PARAMETERS).join("measurement"))
        .context("reading fake_tsm's measurement parameter")?;
    let measurement = hex::decode(measurement.trim()).context("fake_tsm's measurement")?;

    step("select(--simulated-tee snp-tsm)");
    let issuer = select(&IssuerSettings {
        simulator_dir: Some(simulator_dir.to_path_buf()),
        simulated_tee: "snp-tsm".to_owned(),
        simulated_host_data: None,
        ..IssuerSettings::default()
    })
    .context("selecting the snp-tsm issuer")?;
    ensure!(
        issuer.name() == "simulated-signature-tsm",
        "snp-tsm selected {}",
        issuer.name()
    );
    let report_data = fresh_report_data(0x77);
    let evidence = issuer
        .issue(&report_data)
        .context("issuing snp-tsm evidence")?;
    expect_no_report_dirs("the snp-tsm request")?;
    ensure!(
        evidence.tee == Tee::Snp,
        "evidence is {:?}, not SNP",
        evidence.tee
    );
    ensure!(
        evidence.simulated,
        "snp-tsm evidence is not marked simulated"
    );

    step("verifying against the simulator's trust anchor");
    let simulator = contrast_simulator::Simulator::open(simulator_dir)
        .with_context(|| format!("opening the simulator at {}", simulator_dir.display()))?;
    let endorsements = evidence.snp_endorsements();
    ensure!(endorsements.vek.is_some(), "the evidence carries no VCEK");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let now = i64::try_from(now).context("the clock is out of range")?;
    let verified = verify_report(
        &evidence.raw,
        &endorsements,
        &simulator.amd.trust_anchor(),
        now,
    )
    .context("the SNP verifier refused the snp-tsm evidence")?;
    ensure!(
        verified.simulated,
        "verified, but not as simulated evidence"
    );
    let report = &verified.report;
    ensure!(
        report.report_data() == report_data,
        "REPORT_DATA {} is not the requested {}",
        hex::encode(report.report_data()),
        hex::encode(report_data)
    );
    ensure!(
        report.host_data() == host_data,
        "HOST_DATA {} is not the module's {}",
        hex::encode(report.host_data()),
        hex::encode(host_data)
    );
    if report.measurement()[..] != measurement[..] {
        bail!(
            "MEASUREMENT {} is not the module's {}",
            hex::encode(report.measurement()),
            hex::encode(&measurement)
        );
    }
    step(&format!(
        "verified: {:?}, host data {}",
        verified.product,
        hex::encode(report.host_data())
    ));
    Ok(())
}
