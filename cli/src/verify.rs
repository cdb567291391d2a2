//! `contrast verify`: attest the Coordinator, fetch the manifest history and write it to
//! `verify/` (docs/protocol.md §9.4); fails when the active manifest is not the local
//! one, or when the history does not contain the transition this workspace verified or
//! set last (a rolled back or replaced history).

use anyhow::{Context as _, bail};
use clap::Args;
use contrast_api::userapi::GetManifestsRequest;
use contrast_api::userapi::user_api_client::UserApiClient;
use contrast_history::ZERO_HASH;

use crate::coordinator::{self, ConnectArgs, WorkspaceArgs, files};
use crate::verified::{self, VerifiedTransition};

/// `contrast verify` flags.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Set from the global `--workspace-dir`.
    #[arg(skip)]
    pub workspace: WorkspaceArgs,
}

pub(crate) async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let manifest_path = args.connect.manifest_path(&args.workspace);
    let document = coordinator::load_manifest(&manifest_path)?;
    let validators = coordinator::coordinator_validators(document.manifest(), &args.connect)?;
    let channel = coordinator::connect(&args.connect, validators, None).await?;
    let client = UserApiClient::new(channel);
    let response = coordinator::retry_unavailable(&args.connect, || {
        let mut client = client.clone();
        async move { client.get_manifests(GetManifestsRequest {}).await }
    })
    .await
    .map_err(|status| coordinator::status_error(status, ""))?
    .into_inner();

    // The history must hash to the transition the Coordinator signed.
    let chain = verified::transition_chain(&response.manifests);
    let recomputed = chain.last().copied().unwrap_or(ZERO_HASH);
    let latest = response
        .latest_transition
        .as_ref()
        .map(|l| l.transition_hash.clone())
        .unwrap_or_default();
    if latest != recomputed {
        bail!(
            "the Coordinator's manifest history does not hash to its latest transition \
             ({} != {}): do not trust this deployment",
            hex::encode(&latest),
            hex::encode(recomputed)
        );
    }
    let generation = chain.len() as u64;
    let signed_generation = response
        .latest_transition
        .as_ref()
        .map_or(0, |l| l.generation);
    if signed_generation != 0 && signed_generation != generation {
        bail!(
            "the Coordinator signed its latest transition as generation {signed_generation}, \
             but its history has {generation} manifests: do not trust this deployment"
        );
    }
    // It must also contain what this workspace verified or set before: a history that
    // was rolled back or started by someone else is refused before anything is written.
    let known = verified::read(&args.workspace)?;
    if let Some(known) = &known {
        verified::check_extends(&chain, known)?;
    }

    let dir = args.workspace.path(files::VERIFY_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    coordinator::write_public(&dir.join(files::ROOT_CA), &response.root_ca)?;
    coordinator::write_public(&dir.join(files::MESH_CA), &response.mesh_ca)?;
    for (index, manifest) in response.manifests.iter().enumerate() {
        coordinator::write_public(&dir.join(format!("manifest.{index}.json")), manifest)?;
    }
    for policy in &response.policies {
        let hash = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            policy,
        ));
        coordinator::write_public(&dir.join(format!("policy.{hash}.rego")), policy)?;
    }

    match response.manifests.last() {
        Some(active) if active.as_slice() == document.raw() => {}
        Some(_) => bail!(
            "the Coordinator's active manifest differs from {}: see {}/manifest.{}.json",
            manifest_path.display(),
            dir.display(),
            response.manifests.len() - 1
        ),
        None => bail!("the Coordinator returned no manifests"),
    }
    let now = VerifiedTransition {
        transition: recomputed,
        generation: Some(generation),
    };
    verified::write(&args.workspace, &now)?;
    let since = match known {
        Some(known) if known.transition != ZERO_HASH => {
            format!(
                "; it extends the one verified before ({})",
                known.describe()
            )
        }
        _ => "; no earlier verified transition to compare with, this one is recorded".into(),
    };
    crate::print(&format!(
        "Verified: the Coordinator enforces {} ({}{since}). Wrote {}.",
        manifest_path.display(),
        now.describe(),
        dir.display()
    ));
    Ok(())
}
