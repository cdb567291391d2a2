//! `contrast set`: make the manifest active at the Coordinator (seed 000, 001;
//! contrast-protocol.md §9.4, §8).
//!
//! Authorization is by the workload owner key in the TLS handshake, or by a detached
//! signature (`-s`) over the blob `set --dry-run` writes to `next-transition`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use contrast_api::userapi::SetManifestRequest;
use contrast_api::userapi::user_api_client::UserApiClient;
use contrast_history::{ZERO_HASH, next_transition_hash};
use contrast_seedengine::SeedShareDocument;

use crate::coordinator::{self, ConnectArgs, WorkspaceArgs, files};
use crate::resources;

/// `contrast set` flags.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// The workload owner key: presented to the Coordinator, or (with -s) the public key
    /// the signature is checked with (a private or a public key PEM).
    #[arg(short = 'w', long, default_value = files::WORKLOAD_OWNER_KEY)]
    pub workload_owner_key: PathBuf,
    /// Write the blob to sign to `next-transition` and stop, without contacting the
    /// Coordinator.
    #[arg(long)]
    pub dry_run: bool,
    /// A detached signature (DER) of `next-transition`, made with the workload owner key.
    #[arg(short = 's', long = "signature")]
    pub signature: Option<PathBuf>,
    /// The latest transition hash (hex); default: verify/latest-transition, else zeros.
    #[arg(long)]
    pub latest_transition: Option<String>,
    /// The Kubernetes YAML files or directories with the policy annotations.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// The latest transition the next one builds on.
fn latest_transition(args: &SetArgs) -> anyhow::Result<[u8; 32]> {
    let text = match &args.latest_transition {
        Some(text) => text.clone(),
        None => {
            let path = args
                .workspace
                .path(files::VERIFY_DIR)
                .join(files::LATEST_TRANSITION);
            match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ZERO_HASH),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
    };
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the latest transition must be 64 hex characters (run contrast verify)")
}

pub(crate) async fn run(args: &SetArgs) -> anyhow::Result<()> {
    let manifest_path = args.workspace.path(&args.connect.manifest);
    let (manifest_bytes, manifest) = coordinator::load_manifest(&manifest_path)?;
    let found = resources::policies(&args.paths)?;
    let mut policies = Vec::new();
    for hash in manifest.policies.keys() {
        let Some(policy) = found.get(&hash.as_str().to_ascii_lowercase()) else {
            bail!(
                "policy {} of the manifest is not in the resources given; run contrast \
                 generate over the same files",
                hash.as_str()
            );
        };
        policies.push(policy.clone());
    }
    if found.len() != manifest.policies.len() {
        bail!(
            "policy count mismatch: the resources have {} policies, the manifest {}; run \
             contrast generate over the same files",
            found.len(),
            manifest.policies.len()
        );
    }

    if args.dry_run {
        let previous = latest_transition(args)?;
        let next = hex::encode(next_transition_hash(&manifest_bytes, previous));
        let out = args.workspace.path(files::NEXT_TRANSITION);
        coordinator::write_public(&out, next.as_bytes())?;
        crate::print(&format!(
            "Wrote {} (transition after {}). Sign it with the workload owner key:\n  \
             openssl dgst -sha256 -sign <workload-owner-key> -out transition.sig {}",
            out.display(),
            hex::encode(previous),
            out.display()
        ));
        return Ok(());
    }

    let owner_path = args.workspace.path(&args.workload_owner_key);
    let mut request = SetManifestRequest {
        manifest: manifest_bytes.clone(),
        policies,
        ..Default::default()
    };
    let mut client_key = None;
    let permission_hint;
    if let Some(signature) = &args.signature {
        let signature_path = args.workspace.path(signature);
        request.signature = std::fs::read(&signature_path)
            .with_context(|| format!("reading the signature {}", signature_path.display()))?;
        request.signer_public_key = signer_public_key(&owner_path)?;
        request.previous_transition_hash = latest_transition(args)?.to_vec();
        permission_hint = "Ensure the signature is valid and corresponds to the latest \
                           transition hash (run contrast verify, then set --dry-run and sign again)";
    } else {
        match coordinator::workload_owner_client_key(&owner_path)? {
            Some((der, key)) => {
                let listed = manifest
                    .workload_owner_key_digests
                    .iter()
                    .flatten()
                    .any(|d| d.as_str().eq_ignore_ascii_case(&key.digest_hex()));
                if !listed {
                    coordinator::progress(&format!(
                        "warning: {} is not a workload owner key of this manifest",
                        owner_path.display()
                    ));
                }
                client_key = Some(der);
                permission_hint = "Ensure you are using a trusted workload owner key";
            }
            None => {
                permission_hint = "Specify a workload owner key with --workload-owner-key";
            }
        }
    }

    let validators = coordinator::coordinator_validators(&manifest, &args.connect)?;
    let channel = coordinator::connect(&args.connect, validators, client_key).await?;
    let mut client = UserApiClient::new(channel);
    let response = coordinator::retry_unavailable(&args.connect, || {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.set_manifest(request).await }
    })
    .await
    .map_err(|status| coordinator::status_error(status, permission_hint))?
    .into_inner();
    let _ = &mut client;

    coordinator::write_public(&args.workspace.path(files::ROOT_CA), &response.root_ca)?;
    coordinator::write_public(&args.workspace.path(files::MESH_CA), &response.mesh_ca)?;
    if let Some(doc) = response.seed_shares_doc {
        let doc = SeedShareDocument {
            seed_shares: doc
                .seed_shares
                .into_iter()
                .map(|s| contrast_seedengine::SeedShare {
                    public_key: s.public_key,
                    encrypted_seed: s.encrypted_seed,
                })
                .collect(),
            salt: doc.salt,
        };
        let path = args.workspace.path(files::SEED_SHARES);
        contrast_seedengine::keys::write_secret_file(&path, &doc.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
        crate::print(&format!(
            "Wrote {}: keep it; with the seed share owner key it recovers the Coordinator",
            path.display()
        ));
    }
    crate::print(
        "Manifest set. The mesh CA was rotated: restart workloads to get new certificates.",
    );
    Ok(())
}

/// The PKIX DER public key of the workload owner key file (private or public PEM).
fn signer_public_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "reading {} (with -s, give the workload owner's public or private key with \
             --workload-owner-key)",
            path.display()
        )
    })?;
    if let Ok(key) = contrast_seedengine::keys::WorkloadOwnerKey::from_pem(&pem) {
        return Ok(key.public_key_der().to_vec());
    }
    let blocks =
        contrast_attestation::pem::decode_all(&String::from_utf8_lossy(&pem), "PUBLIC KEY")
            .with_context(|| format!("{}: no PEM key", path.display()))?;
    blocks.into_iter().next().with_context(|| {
        format!(
            "{}: neither an EC private key nor a PUBLIC KEY",
            path.display()
        )
    })
}
