//! `contrast policy check`: would the Kata agent serve this request under this policy, and
//! if not, which checks failed with what the policy expects and what the request carries.
//! The agent itself only says "CreateContainerRequest is blocked by policy".

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;

use crate::resources;

/// Flags of `contrast policy check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The request as the Kata agent logs it (JSON), or `{"kind": "<Request>", "request":
    /// {…}}` as genpolicy's test cases write it.
    pub request: PathBuf,
    /// The request's type, when the file holds the request alone.
    #[arg(long = "type", default_value = "CreateContainerRequest")]
    pub request_type: String,
    /// The policy: a Rego file, or an initdata document (as in verify/ or the annotation,
    /// decoded).
    #[arg(long, conflicts_with = "resources")]
    pub policy: Option<PathBuf>,
    /// Resource files or directories whose initdata annotations carry the policies.
    #[arg(long, num_args = 1..)]
    pub resources: Vec<PathBuf>,
    /// Which of the resources' policies (64 hex), when they carry more than one.
    #[arg(long)]
    pub policy_hash: Option<String>,
}

/// Runs the check; `Ok(true)` when the request is allowed.
pub(crate) fn run(args: &CheckArgs) -> anyhow::Result<bool> {
    let (request_type, request) = read_request(&args.request, &args.request_type)?;
    let policy = read_policy(args)?;
    let explanation = contrast_policy::explain(&policy, &request_type, &request)
        .with_context(|| format!("evaluating {}", args.request.display()))?;
    if explanation.evaluation.allowed {
        crate::print(&format!("allow: the policy allows this {request_type}"));
        return Ok(true);
    }
    crate::print(&format!("deny: the policy refuses this {request_type}"));
    for line in &explanation.evaluation.prints {
        crate::print(&format!("  the policy says: {line}"));
    }
    if let Some(target) = &explanation.target {
        crate::print(&format!("  checked against {target}:"));
    }
    for failed in &explanation.failed {
        crate::print(&format!("  {} failed", failed.check));
        crate::print(&format!("    expected: {}", failed.expected));
        crate::print(&format!("    actual:   {}", failed.actual));
    }
    Ok(false)
}

/// The request and its type.
fn read_request(path: &Path, request_type: &str) -> anyhow::Result<(String, Value)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the request {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON request", path.display()))?;
    match (value.get("kind"), value.get("request")) {
        (Some(Value::String(kind)), Some(request)) => Ok((kind.clone(), request.clone())),
        _ if value.is_object() => Ok((request_type.to_owned(), value)),
        _ => bail!("{}: the request must be a JSON object", path.display()),
    }
}

/// The Rego policy the flags name.
fn read_policy(args: &CheckArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.policy {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the policy {}", path.display()))?;
        return policy_text(bytes).with_context(|| path.display().to_string());
    }
    if args.resources.is_empty() {
        bail!("give the policy with --policy FILE or --resources PATHS");
    }
    let policies = resources::policies(&args.resources)?;
    let document = match &args.policy_hash {
        Some(hash) => policies
            .get(&hash.to_ascii_lowercase())
            .with_context(|| {
                format!(
                    "no policy with hash {hash} in the resources; they carry {}",
                    list(policies.keys())
                )
            })?
            .clone(),
        None => match policies.len() {
            1 => policies.into_values().next().unwrap_or_default(),
            0 => bail!("the resources carry no policy annotation"),
            _ => bail!(
                "the resources carry {} policies: name one with --policy-hash ({})",
                policies.len(),
                list(policies.keys())
            ),
        },
    };
    policy_text(document)
}

fn list<'a>(hashes: impl Iterator<Item = &'a String>) -> String {
    hashes.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// The Rego of a policy document: an initdata document's `policy.rego`, or Rego text.
fn policy_text(bytes: Vec<u8>) -> anyhow::Result<String> {
    if let Ok(initdata) = contrast_initdata::Initdata::parse(bytes.clone()) {
        return initdata
            .policy()
            .map(str::to_owned)
            .context("the initdata document carries no policy.rego");
    }
    String::from_utf8(bytes).context("the policy is neither an initdata document nor Rego text")
}
