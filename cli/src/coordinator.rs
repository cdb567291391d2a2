//! What `set`, `verify` and `recover` share: the workspace files, attesting the
//! Coordinator against the manifest, retrying while it is unavailable, and hints for
//! refusals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use contrast_atls::{ClientOptions, ReferenceValidator, ValidatorSet, Verifiers};
use contrast_manifest::{Manifest, ManifestDocument};
use rustls::pki_types::PrivateKeyDer;
use tonic::transport::Channel;

/// File names in the workspace (docs/protocol.md §9.1).
pub(crate) mod files {
    /// The manifest.
    pub(crate) const MANIFEST: &str = "manifest.json";
    /// The workload owner key.
    pub(crate) const WORKLOAD_OWNER_KEY: &str = "workload-owner.pem";
    /// The seed share owner key.
    pub(crate) const SEEDSHARE_OWNER_KEY: &str = "seedshare-owner.pem";
    /// The encrypted seed shares.
    pub(crate) const SEED_SHARES: &str = "seed-shares.json";
    /// The root CA certificate.
    pub(crate) const ROOT_CA: &str = "coordinator-root-ca.pem";
    /// The mesh CA certificate.
    pub(crate) const MESH_CA: &str = "mesh-ca.pem";
    /// The verification output directory.
    pub(crate) const VERIFY_DIR: &str = "verify";
    /// The latest transition hash, inside the verify directory.
    pub(crate) const LATEST_TRANSITION: &str = "latest-transition";
    /// The generation of the latest transition (decimal), inside the verify directory.
    pub(crate) const LATEST_GENERATION: &str = "latest-generation";
    /// The blob to sign for a signed update.
    pub(crate) const NEXT_TRANSITION: &str = "next-transition";
}

/// Flags of every command that talks to the Coordinator.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// The Coordinator's user API, host:port.
    #[arg(short = 'c', long = "coordinator")]
    pub coordinator: Option<String>,
    /// The manifest whose reference values attest the Coordinator [default:
    /// manifest.json in the workspace].
    #[arg(short = 'm', long)]
    pub manifest: Option<PathBuf>,
    /// The Coordinator's policy hash (64 hex), instead of the manifest's coordinator entry.
    #[arg(long)]
    pub coordinator_policy_hash: Option<String>,
    /// How long to wait for the Coordinator to become available, in seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// The simulator's key directory: accept the simulator's evidence for the simulated
    /// platforms (Sim-SNP, Sim-TDX) of the manifest.
    #[arg(long, env = "CONTRAST_SIMULATOR_DIR")]
    pub simulator_dir: Option<PathBuf>,
    /// Where the Coordinator's collateral comes from when its evidence does not carry it.
    #[command(flatten)]
    pub fetching: crate::collateral::CollateralArgs,
}

/// The workspace: where the files a command reads and writes by default live
/// (`--workspace-dir`, a global flag given before or after the subcommand, as in
/// Contrast). A path the user gives is taken as given, relative to the current directory.
#[derive(Debug, Clone)]
pub(crate) struct WorkspaceArgs {
    /// The directory.
    pub workspace_dir: PathBuf,
}

impl Default for WorkspaceArgs {
    fn default() -> Self {
        WorkspaceArgs {
            workspace_dir: PathBuf::from("."),
        }
    }
}

impl WorkspaceArgs {
    /// `name` inside the workspace (absolute paths stay as they are).
    pub(crate) fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.workspace_dir.join(name)
    }

    /// The path the user gave, as given; else the default `name` in the workspace.
    pub(crate) fn resolve(&self, given: Option<&Path>, name: &str) -> PathBuf {
        given.map_or_else(|| self.path(name), Path::to_path_buf)
    }
}

impl ConnectArgs {
    /// The manifest: `-m` as given, else manifest.json in the workspace.
    pub(crate) fn manifest_path(&self, workspace: &WorkspaceArgs) -> PathBuf {
        workspace.resolve(self.manifest.as_deref(), files::MANIFEST)
    }
}

/// The manifest file: its bytes as written (what is hashed and sent) with the decoded,
/// validated manifest.
pub(crate) fn load_manifest(path: &Path) -> anyhow::Result<ManifestDocument> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the manifest {} (run contrast generate first)",
            path.display()
        )
    })?;
    let document = ManifestDocument::parse(bytes)
        .with_context(|| format!("{}: not a valid manifest", path.display()))?;
    if let Err(errors) = document.manifest().validate() {
        bail!("{}: {errors}", path.display());
    }
    Ok(document)
}

/// Writes a public file atomically, mode 0644, creating its directory.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    contrast_atomic_file::write_creating_dir(path, bytes, 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

/// Validators that accept the Coordinator of `manifest`.
pub(crate) fn coordinator_validators(
    manifest: &Manifest,
    args: &ConnectArgs,
) -> anyhow::Result<ValidatorSet> {
    let source = args.fetching.source()?;
    let mut verifiers = Verifiers::real()
        .with_collateral(source)
        .accept_snp_without_crl(args.fetching.crl_optional);
    if let Some(dir) = &args.simulator_dir {
        // The simulator's public roots only: the CLI verifies, it never simulates.
        let (snp, tdx) = contrast_attestation::simulated_anchors::load(dir)?;
        verifiers = verifiers
            .with_simulated(snp, tdx)
            .with_simulated_collateral(args.fetching.simulated_source()?);
    }
    let validator = match &args.coordinator_policy_hash {
        Some(text) => {
            let hash: [u8; 32] = hex::decode(text)
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("--coordinator-policy-hash must be 64 hex characters")?;
            ReferenceValidator::new(
                verifiers,
                manifest.reference_values.snp.clone(),
                manifest.reference_values.tdx.clone(),
                Some(vec![hash]),
            )
        }
        None => ReferenceValidator::for_coordinator(verifiers, manifest).context(
            "the manifest has no policy with role coordinator: run contrast generate over \
             the Coordinator's YAML too, or give --coordinator-policy-hash",
        )?,
    };
    Ok(ValidatorSet::new(vec![Arc::new(validator)]))
}

/// The Coordinator's address from `-c`.
pub(crate) fn address(args: &ConnectArgs) -> anyhow::Result<String> {
    let address = args
        .coordinator
        .clone()
        .context("give the Coordinator's address with -c host:1313")?;
    if !address.contains(':') {
        return Ok(format!("{address}:{}", contrast_api::ports::USER_API));
    }
    Ok(address)
}

/// Connects to the Coordinator with aTLS, retrying while it cannot be reached (with a
/// progress line) until the timeout. A refused attestation is not retried.
pub(crate) async fn connect(
    args: &ConnectArgs,
    validators: ValidatorSet,
    client_key: Option<PrivateKeyDer<'static>>,
) -> anyhow::Result<Channel> {
    let address = address(args)?;
    let mut options = ClientOptions::new(validators);
    if let Some(key) = client_key {
        options = options.with_client_key(key);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match contrast_atls::grpc::channel(&address, options.clone()).await {
            Ok((channel, _)) => return Ok(channel),
            Err(e) if retryable(&e) && Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                progress(&format!(
                    "Waiting for the Coordinator at {address} (attempt {attempt}, {left} s left): {e}"
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                let hint = attestation_hint(&e);
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("connecting to the Coordinator at {address}{hint}"));
            }
        }
    }
}

fn retryable(e: &contrast_atls::AtlsError) -> bool {
    matches!(
        e,
        contrast_atls::AtlsError::Io(_) | contrast_atls::AtlsError::Timeout { .. }
    )
}

/// Retries `call` while the Coordinator answers Unavailable, until the timeout.
pub(crate) async fn retry_unavailable<T, F, Fut>(
    args: &ConnectArgs,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        match call().await {
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                progress(&format!(
                    "The Coordinator is unavailable, retrying: {}",
                    status.message()
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

fn attestation_hint(e: &contrast_atls::AtlsError) -> &'static str {
    if matches!(
        e,
        contrast_atls::AtlsError::Refused {
            policy_mismatch: true,
            ..
        }
    ) {
        "\nhint: the Coordinator's policy is not the one in the manifest: it runs another \
         version, or contrast generate was not run over its YAML"
    } else {
        ""
    }
}

/// A progress line on standard error (the result goes to standard output).
#[allow(clippy::print_stderr)]
pub(crate) fn progress(line: &str) {
    eprintln!("{line}");
}

/// A gRPC error with the hints of docs/protocol.md §8.3.
pub(crate) fn status_error(status: tonic::Status, permission_hint: &str) -> anyhow::Error {
    let mut message = format!("{:?}: {}", status.code(), status.message());
    if status.code() == tonic::Code::PermissionDenied && !permission_hint.is_empty() {
        message.push_str("\nhint: ");
        message.push_str(permission_hint);
    }
    anyhow::anyhow!(message)
}

/// The workload owner key as a TLS client key, if its file exists.
pub(crate) fn workload_owner_client_key(
    path: &Path,
) -> anyhow::Result<
    Option<(
        PrivateKeyDer<'static>,
        contrast_seedengine::keys::WorkloadOwnerKey,
    )>,
> {
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let key = contrast_seedengine::keys::WorkloadOwnerKey::from_pem(&pem)
        .with_context(|| format!("{}: not a workload owner key", path.display()))?;
    let der = key.pkcs8_der()?;
    Ok(Some((PrivateKeyDer::Pkcs8(der.to_vec().into()), key)))
}

/// Warns (on stderr) when `key`, read from `path`, is not among the manifest's workload
/// owner keys: the Coordinator will refuse what it signs or presents.
pub(crate) fn warn_unless_owner(
    manifest: &Manifest,
    key: &contrast_seedengine::keys::WorkloadOwnerKey,
    path: &Path,
) {
    let listed = manifest
        .workload_owner_key_digests
        .iter()
        .flatten()
        .any(|d| d.as_str().eq_ignore_ascii_case(&key.digest_hex()));
    if !listed {
        progress(&format!(
            "warning: {} is not a workload owner key of this manifest",
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_hint_follows_the_refusal_not_its_words() {
        let refused = |policy_mismatch| contrast_atls::AtlsError::Refused {
            nonce_hex: "00".to_owned(),
            reasons: vec!["HOST_DATA differs".to_owned()],
            policy_mismatch,
        };
        assert!(attestation_hint(&refused(true)).contains("hint:"));
        assert_eq!(attestation_hint(&refused(false)), "");
        let timeout = contrast_atls::AtlsError::Timeout {
            peer: "MRCONFIGID".to_owned(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(attestation_hint(&timeout), "");
    }
}
