//! `initializer`: the first init container of a confidential pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use contrast_atls::Verifiers;
use contrast_evidence::issuer::{EvidenceIssuer, IssuerSettings, select};
use contrast_initializer::{
    Client, DEFAULT_INITDATA_PATH, Layout, WorkloadKey, mesh_address, write_done, write_files,
};

/// Attests the Coordinator the pod's initdata names, proves this pod to it, and writes
/// the pod's mesh certificate, key and workload secret to the shared volume.
#[derive(Debug, Parser)]
#[command(version, subcommand_negates_reqs = true)]
struct Args {
    /// The Coordinator (host or host:port; the mesh API port 7777 by default).
    #[arg(long, env = "COORDINATOR_HOST", required = true)]
    coordinator_host: Option<String>,
    /// The pod's initdata document, as the guest's initdata check left it (also the
    /// device's header form or the gzip blob). Its digest must be this VM's HOST_DATA /
    /// MRCONFIGID; its [data]."contrast-coordinator.json" names the Coordinator to trust.
    #[arg(long, env = "CONTRAST_INITDATA", default_value = DEFAULT_INITDATA_PATH)]
    initdata: PathBuf,
    /// The shared volume.
    #[arg(long, env = "CONTRAST_SECRETS_DIR", default_value = "/contrast")]
    secrets_dir: PathBuf,
    /// The marker written last, for startup probes.
    #[arg(long, env = "CONTRAST_DONE_FILE", default_value = "/done")]
    done_file: PathBuf,
    /// Seconds between attempts.
    #[arg(long, env = "CONTRAST_RETRY_INTERVAL", default_value_t = 5)]
    retry_interval: u64,
    #[command(flatten)]
    issuer: IssuerSettings,
    /// The device for an encrypted persistent volume (secure-pv).
    #[arg(long, env = "CRYPTSETUP_DEVICE")]
    cryptsetup_device: Option<PathBuf>,
    /// Where the encrypted volume is mounted.
    #[arg(long, env = "CONTRAST_STATE_DIR", default_value = "/state")]
    state_dir: PathBuf,
    /// The pod has no service-mesh sidecar (generate says so): once the certificate is
    /// written, the Initializer removes the pod VM's default-deny rules itself.
    #[arg(long, env = "CONTRAST_SERVICE_MESH_DISABLED")]
    service_mesh_disabled: bool,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

/// What the Initializer does besides its own run (Contrast's subcommands).
#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Write this pod's attestation document (report data all zero), base64, to stdout:
    /// what the Initializer would present in its aTLS handshake.
    Report,
    /// Open the encrypted volume on a device with this pod's workload secret (from the
    /// secrets directory the Initializer wrote), formatting it if it has no LUKS header,
    /// mount it, and keep it until SIGTERM; then unmount and close it.
    Cryptsetup {
        /// The block device.
        #[arg(short = 'd', long)]
        device_path: PathBuf,
        /// Where to mount the decrypted file system.
        #[arg(short = 'm', long)]
        mount_point: PathBuf,
    },
}

/// `initializer report`: the attestation document for all-zero report data, base64
/// (standard alphabet, no line breaks), as Contrast's `initializer report` writes it.
fn report(args: &Args) -> anyhow::Result<()> {
    use base64::Engine as _;
    use contrast_atls::Issuer as _;
    use std::io::Write as _;
    let issuer = contrast_evidence::DocumentIssuer::new(evidence_issuer(args)?);
    let (_, document) = issuer
        .issue(&[0; 64])
        .context("issuing this pod's attestation document")?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(
            base64::engine::general_purpose::STANDARD
                .encode(document)
                .as_bytes(),
        )
        .and_then(|()| stdout.flush())
        .context("writing the report to stdout")
}

/// `initializer cryptsetup`: the secure volume with the workload secret the Initializer
/// wrote, held until SIGTERM.
fn cryptsetup(
    args: &Args,
    device: &std::path::Path,
    mount_point: &std::path::Path,
) -> anyhow::Result<()> {
    let layout = Layout {
        root: args.secrets_dir.clone(),
        done: args.done_file.clone(),
    };
    let secret_file = layout.secret("workload-secret-seed");
    let secret = contrast_luks::WorkloadSecret::read_file(&secret_file).with_context(|| {
        format!(
            "reading the workload secret {} (written by the Initializer when the pod's \
             policy has a WorkloadSecretID)",
            secret_file.display()
        )
    })?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = open_volume(device, mount_point, &secret)?;
    runtime.block_on(terminated())?;
    tear_down(mount_point, &outcome)
}

/// Opens (formatting it first if it has no LUKS header) and mounts the volume on `device`.
fn open_volume(
    device: &std::path::Path,
    mount_point: &std::path::Path,
    secret: &contrast_luks::WorkloadSecret,
) -> anyhow::Result<contrast_luks::Outcome> {
    contrast_luks::create_lock_dir()?;
    contrast_luks::SecureMount::new(device, mount_point)
        .run(secret)
        .with_context(|| format!("setting up the encrypted volume on {}", device.display()))
}

/// Removes the pod VM's default-deny rules (IPv4, and IPv6 unless the kernel has none),
/// as the mesh sidecar would after installing its own rules.
fn remove_default_deny() -> anyhow::Result<()> {
    use contrast_netfilter::{Iptables, KernelIpv6};
    let lifted = Iptables::default()
        .lift_default_deny(KernelIpv6::probe())
        .context("removing the default-deny rules (the pod has no service mesh)")?;
    tracing::info!(ipv4 = ?lifted.ipv4, ipv6 = ?lifted.ipv6, "default-deny rules lifted");
    Ok(())
}

fn evidence_issuer(args: &Args) -> anyhow::Result<Arc<dyn EvidenceIssuer>> {
    let evidence: Arc<dyn EvidenceIssuer> = Arc::from(select(&args.issuer)?);
    tracing::info!(issuer = evidence.name(), "evidence issuer");
    Ok(evidence)
}

/// The roots the Coordinator's evidence is checked against: the vendors', and the
/// simulator's on simulated platforms (whose reference values refuse simulated evidence
/// for a real platform's entry).
fn verifiers(args: &Args) -> anyhow::Result<Verifiers> {
    Ok(contrast_evidence::issuer::verifiers(
        args.issuer.simulator_dir.as_deref(),
    )?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTRAST_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match &args.command {
        Some(Subcommand::Report) => return report(&args),
        Some(Subcommand::Cryptsetup {
            device_path,
            mount_point,
        }) => return cryptsetup(&args, device_path, mount_point),
        None => {}
    }
    // Required without a subcommand (clap enforces it).
    let Some(coordinator_host) = &args.coordinator_host else {
        bail!("COORDINATOR_HOST is not set");
    };
    let client = Client {
        addr: mesh_address(coordinator_host),
        initdata: args.initdata.clone(),
        evidence: evidence_issuer(&args)?,
        verifiers: verifiers(&args)?,
    };
    let key = WorkloadKey::generate()?;
    let layout = Layout {
        root: args.secrets_dir.clone(),
        done: args.done_file.clone(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let response = runtime
        .block_on(client.obtain_certificate(&key, Duration::from_secs(args.retry_interval.max(1))));
    write_files(&layout, &key, &response)?;
    tracing::info!(dir = %layout.root.display(), "wrote the workload certificate");
    if args.service_mesh_disabled {
        remove_default_deny()?;
    }
    let Some(device) = &args.cryptsetup_device else {
        write_done(&layout)?;
        return Ok(());
    };
    // secure-pv: the volume is keyed by the workload secret, mounted, and kept until the
    // pod stops (Kata would unmount a propagated mount when this container exits).
    let secret: [u8; 64] = response
        .workload_secret
        .as_slice()
        .try_into()
        .map_err(|_| {
            anyhow::anyhow!(
                "CRYPTSETUP_DEVICE={} needs a workload secret, but the Coordinator sent none: \
             give the workload a WorkloadSecretID",
                device.display()
            )
        })?;
    let secret = contrast_luks::WorkloadSecret::from_bytes(secret);
    let outcome = open_volume(device, &args.state_dir, &secret)?;
    write_done(&layout)?;
    runtime.block_on(terminated())?;
    tear_down(&args.state_dir, &outcome)
}

/// Waits for SIGTERM (or SIGINT).
async fn terminated() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Unmounts and closes what this run set up, so the volume is clean for the next start.
fn tear_down(state_dir: &std::path::Path, outcome: &contrast_luks::Outcome) -> anyhow::Result<()> {
    let run = |program: &str, args: &[&std::ffi::OsStr]| -> anyhow::Result<()> {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .with_context(|| format!("running {program}"))?;
        if !status.success() {
            bail!("{program} failed ({status})");
        }
        Ok(())
    };
    if outcome.mounted {
        run("umount", &[state_dir.as_os_str()])?;
    }
    if outcome.activated {
        contrast_luks::cryptsetup::deactivate(&outcome.mapping)?;
    }
    tracing::info!("encrypted volume unmounted and closed");
    Ok(())
}
