//! `contrast sign`: Contrast's command for a signed manifest update, the same blob as
//! `set --dry-run`. With `--prepare` it writes the next transition hash (hex) to `--out`
//! for an external signer (an HSM); without, it signs that hash with the workload owner
//! key (ECDSA, SHA-256 over the hex text, DER) and writes the signature to `--out`, for
//! `set -s`. Paths the user gives are taken as given; the defaults are in the workspace.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use contrast_history::next_transition_hash;

use crate::coordinator::{self, WorkspaceArgs, files};
use crate::verified;

/// `contrast sign` flags (Contrast's names).
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// Set from the global `--workspace-dir`.
    #[arg(skip)]
    pub workspace: WorkspaceArgs,
    /// The manifest to sign [default: manifest.json in the workspace].
    #[arg(short = 'm', long)]
    pub manifest: Option<PathBuf>,
    /// The workload owner key (private) [default: workload-owner.pem in the workspace].
    #[arg(long)]
    pub workload_owner_key: Option<PathBuf>,
    /// The latest transition hash (hex) the Coordinator holds; default:
    /// verify/latest-transition (written by verify and set), else none (a first set).
    #[arg(long)]
    pub latest_transition: Option<String>,
    /// Write the next transition hash for an external signer instead of signing it.
    #[arg(long)]
    pub prepare: bool,
    /// Where the signature (or, with --prepare, the next transition hash) goes.
    #[arg(long, required = true)]
    pub out: PathBuf,
}

pub(crate) fn run(args: &SignArgs) -> anyhow::Result<bool> {
    let manifest_path = args
        .workspace
        .resolve(args.manifest.as_deref(), files::MANIFEST);
    let document = coordinator::load_manifest(&manifest_path)?;
    let previous = verified::latest_or_first(
        verified::read(&args.workspace)?,
        args.latest_transition.as_deref(),
    )?;
    let next = hex::encode(next_transition_hash(document.raw(), previous.transition));
    if args.prepare {
        coordinator::write_public(&args.out, next.as_bytes())?;
        crate::print(&format!(
            "Next transition hash written to {}.",
            args.out.display()
        ));
        return Ok(true);
    }
    let key_path = args.workspace.resolve(
        args.workload_owner_key.as_deref(),
        files::WORKLOAD_OWNER_KEY,
    );
    let Some((_, key)) = coordinator::workload_owner_client_key(&key_path)? else {
        anyhow::bail!(
            "no workload owner key at {}; give it with --workload-owner-key, or sign the \
             output of --prepare with your own tool",
            key_path.display()
        );
    };
    coordinator::warn_unless_owner(document.manifest(), &key, &key_path);
    let signature = key
        .sign_sha256(next.as_bytes())
        .context("signing the transition hash")?;
    coordinator::write_public(&args.out, &signature)
        .with_context(|| format!("after signing transition {next}"))?;
    crate::print(&format!(
        "Transition hash signed and signature written to {}.",
        args.out.display()
    ));
    Ok(true)
}
