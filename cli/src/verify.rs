//! `contrast verify`: attest the Coordinator, fetch the manifest history and write it to
//! `verify/` (contrast-protocol.md §9.5); fails when the active manifest is not the local
//! one.

use anyhow::{Context as _, bail};
use clap::Args;
use contrast_api::userapi::GetManifestsRequest;
use contrast_api::userapi::user_api_client::UserApiClient;
use contrast_history::transition_hash_of;

use crate::coordinator::{self, ConnectArgs, WorkspaceArgs, files};

/// `contrast verify` flags.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
}

pub(crate) async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let manifest_path = args.workspace.path(&args.connect.manifest);
    let (manifest_bytes, manifest) = coordinator::load_manifest(&manifest_path)?;
    let validators = coordinator::coordinator_validators(&manifest, &args.connect)?;
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
    let recomputed = transition_hash_of(response.manifests.iter().map(Vec::as_slice));
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
    coordinator::write_public(
        &dir.join(files::LATEST_TRANSITION),
        hex::encode(recomputed).as_bytes(),
    )?;

    match response.manifests.last() {
        Some(active) if *active == manifest_bytes => {}
        Some(_) => bail!(
            "the Coordinator's active manifest differs from {}: see {}/manifest.{}.json",
            manifest_path.display(),
            dir.display(),
            response.manifests.len() - 1
        ),
        None => bail!("the Coordinator returned no manifests"),
    }
    crate::print(&format!(
        "Verified: the Coordinator enforces {} ({} manifests in its history). Wrote {}.",
        manifest_path.display(),
        response.manifests.len(),
        dir.display()
    ));
    Ok(())
}
