//! `contrast set`: make the manifest active at the Coordinator (docs/protocol.md
//! §9.3, §8).
//!
//! Authorization is by the workload owner key in the TLS handshake, or by a detached
//! signature (`-s`) over the blob `set --dry-run` writes to `next-transition`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use contrast_api::userapi::SetManifestRequest;
use contrast_api::userapi::user_api_client::UserApiClient;
use contrast_history::{ZERO_HASH, next_transition_hash};
use contrast_manifest::Manifest;
use contrast_seedengine::SeedShareDocument;

use crate::coordinator::{self, ConnectArgs, WorkspaceArgs, files};
use crate::resources;
use crate::verified::{self, VerifiedTransition};

/// What to do when a set from a workspace with no recorded history meets one.
const UNRECORDED_HISTORY_HINT: &str = "this workspace records no verified history (no \
     verify/latest-transition), so the set expected a new Coordinator. If the manifests are \
     yours (an update from another machine), run contrast verify first: it checks them and \
     records where the history ends; then set again. If you expected a new Coordinator, do \
     not use this one.";

/// `contrast set` flags.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Set from the global `--workspace-dir`.
    #[arg(skip)]
    pub workspace: WorkspaceArgs,
    /// The workload owner key: presented to the Coordinator, or (with -s) the public key
    /// the signature is checked with (a private or a public key PEM).
    /// [default: workload-owner.pem in the workspace]
    #[arg(short = 'w', long)]
    pub workload_owner_key: Option<PathBuf>,
    /// Write the blob to sign to `next-transition` and stop, without contacting the
    /// Coordinator.
    #[arg(long)]
    pub dry_run: bool,
    /// A detached signature (DER) of `next-transition`, made with the workload owner key.
    #[arg(short = 's', long = "signature")]
    pub signature: Option<PathBuf>,
    /// The latest transition hash (hex) the Coordinator must hold; default:
    /// verify/latest-transition (written by verify and set), else none (a first set).
    #[arg(long)]
    pub latest_transition: Option<String>,
    /// The Kubernetes YAML files or directories with the policy annotations.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// A first set must start the history: the Coordinator returns a seed share for every
/// seed share owner of the manifest. Without them, the manifest did not land as the first
/// one (a Coordinator that does not check PreviousTransitionHash, and someone set a
/// manifest before): do not report success.
fn check_first_set_shares(
    manifest: &Manifest,
    doc: Option<&contrast_api::userapi::SeedShareDocument>,
) -> anyhow::Result<()> {
    let Some(doc) = doc else {
        bail!(
            "the Coordinator answered a first set without seed shares: the manifest did not \
             start a new history, so someone else's manifest may come before it. Do not use \
             this deployment; inspect it with contrast verify"
        );
    };
    for owner in manifest.seedshare_owner_pub_keys.iter().flatten() {
        let shared = doc
            .seed_shares
            .iter()
            .any(|share| share.public_key.eq_ignore_ascii_case(owner.as_str()));
        if !shared {
            bail!(
                "the Coordinator answered a first set without a seed share for the \
                 SeedshareOwnerPubKeys entry {}: do not use this deployment",
                owner.as_str()
            );
        }
    }
    Ok(())
}

pub(crate) async fn run(args: &SetArgs) -> anyhow::Result<()> {
    let manifest_path = args.connect.manifest_path(&args.workspace);
    let document = coordinator::load_manifest(&manifest_path)?;
    let manifest = document.manifest();
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

    // No --latest-transition and nothing verified or set from this workspace: the set
    // expects an empty history, which an update from another workspace does not meet.
    let recorded = verified::read(&args.workspace)?;
    let unrecorded = args.latest_transition.is_none() && recorded.is_none();
    let previous = verified::latest_or_first(recorded, args.latest_transition.as_deref())?;
    if args.dry_run {
        let next = hex::encode(next_transition_hash(document.raw(), previous.transition));
        let out = args.workspace.path(files::NEXT_TRANSITION);
        coordinator::write_public(&out, next.as_bytes())?;
        crate::print(&format!(
            "Wrote {} (transition after {}). Sign it with the workload owner key:\n  \
             openssl dgst -sha256 -sign <workload-owner-key> -out transition.sig {}",
            out.display(),
            hex::encode(previous.transition),
            out.display()
        ));
        return Ok(());
    }

    let owner_path = args.workspace.resolve(
        args.workload_owner_key.as_deref(),
        files::WORKLOAD_OWNER_KEY,
    );
    // Always sent, on both authorisation paths: the Coordinator refuses the update if its
    // history does not end here (for a first set: if it has any history).
    let mut request = SetManifestRequest {
        manifest: document.raw().to_vec(),
        policies,
        previous_transition_hash: previous.transition.to_vec(),
        ..Default::default()
    };
    let mut client_key = None;
    let permission_hint;
    if let Some(signature) = &args.signature {
        let signature_path = signature.clone();
        request.signature = std::fs::read(&signature_path)
            .with_context(|| format!("reading the signature {}", signature_path.display()))?;
        request.signer_public_key = signer_public_key(&owner_path)?;
        permission_hint = "Ensure the signature is valid and corresponds to the latest \
                           transition hash (run contrast verify, then set --dry-run and sign again)";
    } else {
        match coordinator::workload_owner_client_key(&owner_path)? {
            Some((der, key)) => {
                coordinator::warn_unless_owner(manifest, &key, &owner_path);
                client_key = Some(der);
                permission_hint = "Ensure you are using a trusted workload owner key";
            }
            None => {
                permission_hint = "Specify a workload owner key with --workload-owner-key";
            }
        }
    }

    let validators = coordinator::coordinator_validators(manifest, &args.connect)?;
    let channel = coordinator::connect(&args.connect, validators, client_key).await?;
    let mut client = UserApiClient::new(channel);
    let response = coordinator::retry_unavailable(&args.connect, || {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.set_manifest(request).await }
    })
    .await
    .map_err(|status| {
        let history_differs = status.code() == tonic::Code::FailedPrecondition;
        let error = coordinator::status_error(status, permission_hint);
        if unrecorded && history_differs {
            anyhow::anyhow!("{error}\nhint: {UNRECORDED_HISTORY_HINT}")
        } else {
            error
        }
    })?
    .into_inner();
    let _ = &mut client;

    let first_set = previous.transition == ZERO_HASH;
    if first_set {
        check_first_set_shares(manifest, response.seed_shares_doc.as_ref())?;
    }
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
        contrast_atomic_file::write(&path, &doc.to_json(), 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
        crate::print(&format!(
            "Wrote {}: keep it; with the seed share owner key it recovers the Coordinator",
            path.display()
        ));
    }
    // The Coordinator checked that its history ended at `previous`, so it now ends here.
    let now = VerifiedTransition {
        transition: next_transition_hash(document.raw(), previous.transition),
        generation: previous.generation.map(|g| g.saturating_add(1)),
    };
    verified::write(&args.workspace, &now)?;
    crate::print(&format!(
        "Manifest set ({}). The mesh CA was rotated: restart workloads to get new \
         certificates.",
        now.describe()
    ));
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
    contrast_seedengine::keys::workload_owner_public_key_der(&pem)
        .with_context(|| format!("{}: not a workload owner key", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use contrast_api::userapi::{SeedShare, SeedShareDocument};
    use contrast_manifest::HexString;

    use super::*;

    fn manifest_with_owners(owners: &[&str]) -> Manifest {
        Manifest {
            seedshare_owner_pub_keys: Some(
                owners
                    .iter()
                    .map(|o| HexString::from_bytes(&hex::decode(o).unwrap()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn doc(owners: &[&str]) -> SeedShareDocument {
        SeedShareDocument {
            seed_shares: owners
                .iter()
                .map(|o| SeedShare {
                    public_key: (*o).to_string(),
                    encrypted_seed: vec![1; 512],
                })
                .collect(),
            salt: vec![2; 32],
        }
    }

    #[test]
    fn first_set_without_seed_shares_refused() {
        let manifest = manifest_with_owners(&["aa01"]);
        let err = check_first_set_shares(&manifest, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("without seed shares"), "{err}");
        assert!(err.contains("Do not use this deployment"), "{err}");
    }

    #[test]
    fn first_set_missing_an_owners_share_refused() {
        let manifest = manifest_with_owners(&["aa01", "bb02"]);
        let err = check_first_set_shares(&manifest, Some(&doc(&["aa01"])))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bb02"), "{err}");
    }

    #[test]
    fn first_set_with_every_share_accepted() {
        let manifest = manifest_with_owners(&["aa01", "bb02"]);
        check_first_set_shares(&manifest, Some(&doc(&["BB02", "aa01"]))).unwrap();
        // No seed share owners: an empty document is all there is to return.
        check_first_set_shares(&manifest_with_owners(&[]), Some(&doc(&[]))).unwrap();
    }
}
