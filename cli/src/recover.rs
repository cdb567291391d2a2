//! `contrast recover`: give a Coordinator in recovery mode its seed back (docs/protocol.md
//! §9.5). The seed share is decrypted locally with the seed share owner key, which also
//! authenticates the call.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use contrast_api::userapi::RecoverRequest;
use contrast_api::userapi::user_api_client::UserApiClient;
use contrast_seedengine::keys::SeedshareOwnerKey;
use contrast_seedengine::{SeedShareDocument, decrypt_seed_share};
use rustls::pki_types::PrivateKeyDer;

use crate::coordinator::{self, ConnectArgs, WorkspaceArgs, files};
use crate::verified;

/// `contrast recover` flags.
#[derive(Debug, Args)]
pub(crate) struct RecoverArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Set from the global `--workspace-dir`.
    #[arg(skip)]
    pub workspace: WorkspaceArgs,
    /// The seed share owner's private key.
    #[arg(long)]
    pub seedshare_owner_key: Option<PathBuf>,
    /// The seed shares written by the first contrast set.
    #[arg(long = "seed")]
    pub seed_shares: Option<PathBuf>,
    /// Recover even if a ready Coordinator peer exists (it keeps the old mesh CA).
    #[arg(long)]
    pub force: bool,
    /// Accepted and ignored, as Contrast's recover does (scripts pass it): recovery is
    /// authorised by the seed share owner key.
    #[arg(long, hide = true)]
    pub workload_owner_key: Option<PathBuf>,
}

pub(crate) async fn run(args: &RecoverArgs) -> anyhow::Result<()> {
    let manifest_path = args.connect.manifest_path(&args.workspace);
    let document = coordinator::load_manifest(&manifest_path)?;
    let manifest = document.manifest();
    let key_path = args.workspace.resolve(
        args.seedshare_owner_key.as_deref(),
        files::SEEDSHARE_OWNER_KEY,
    );
    let key = SeedshareOwnerKey::from_pem(
        &std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?,
    )
    .with_context(|| format!("{}: not a seed share owner key", key_path.display()))?;
    let shares_path = args
        .workspace
        .resolve(args.seed_shares.as_deref(), files::SEED_SHARES);
    let shares = SeedShareDocument::from_json(
        &std::fs::read(&shares_path)
            .with_context(|| format!("reading {}", shares_path.display()))?,
    )
    .with_context(|| format!("{}", shares_path.display()))?;
    let (seed, salt) = decrypt_seed_share(&shares, &key)
        .with_context(|| format!("decrypting the seed share in {}", shares_path.display()))?;

    let validators = coordinator::coordinator_validators(manifest, &args.connect)?;
    let client_key = PrivateKeyDer::Pkcs1(key.pkcs1_der().to_vec().into());
    let channel = coordinator::connect(&args.connect, validators, Some(client_key)).await?;
    let client = UserApiClient::new(channel);
    // The Coordinator refuses a store whose history does not contain what this workspace
    // verified last: an older signed pointer put back by the store's owner.
    let known = verified::read(&args.workspace)?;
    match &known {
        Some(known) => coordinator::progress(&format!(
            "The recovered history must contain the transition verified last ({}).",
            known.describe()
        )),
        None => coordinator::progress(
            "warning: no verified transition in verify/ (run contrast verify while the \
             Coordinator is ready): the recovered history is not checked against one",
        ),
    }
    let request = RecoverRequest {
        seed: seed.to_vec(),
        salt,
        force: args.force,
        expected_transition_hash: known.map(|k| k.transition.to_vec()).unwrap_or_default(),
        expected_generation: known.and_then(|k| k.generation).unwrap_or(0),
    };
    let response = coordinator::retry_unavailable(&args.connect, || {
        let mut client = client.clone();
        let request = request.clone();
        async move { client.recover(request).await }
    })
    .await
    .map_err(|status| {
        coordinator::status_error(
            status,
            "Ensure the seed share owner key is the one listed in the manifest",
        )
    })?
    .into_inner();
    crate::print(&format!(
        "Coordinator recovered at generation {} (transition {}). Workloads get certificates \
         from a new mesh CA: restart them.",
        response.generation,
        hex::encode(&response.transition_hash)
    ));
    Ok(())
}
