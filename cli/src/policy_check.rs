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
    /// {…}}` as genpolicy's test cases write it; or the agent's policy log (one such object
    /// per line, `/tmp/policy.jsonl` in a debug guest): the requests before the last are
    /// decided in order first, as the agent did, so the last is checked with the state
    /// they left (which container an exec targets).
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
    let mut requests = read_requests(&args.request, &args.request_type)?;
    let Some((request_type, request)) = requests.pop() else {
        bail!("{}: no request in the file", args.request.display());
    };
    let policy = read_policy(args)?;
    let mut agent = contrast_policy::AgentPolicy::new(&policy).context("loading the policy")?;
    if !requests.is_empty() {
        let mut allowed = 0;
        for (n, (kind, earlier)) in requests.iter().enumerate() {
            let e = agent.decide(kind, earlier).with_context(|| {
                format!("{}: request {} ({kind})", args.request.display(), n + 1)
            })?;
            allowed += usize::from(e.allowed);
        }
        crate::print(&format!(
            "decided the {} earlier requests first ({allowed} allowed)",
            requests.len()
        ));
    }
    let explanation = agent
        .explain(&request_type, &request)
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

/// The requests with their types: one JSON request, or the lines of the agent's policy
/// log.
fn read_requests(path: &Path, request_type: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the request {}", path.display()))?;
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        return match (value.get("kind"), value.get("request")) {
            (Some(Value::String(kind)), Some(request)) => Ok(vec![(kind.clone(), request.clone())]),
            _ if value.is_object() => Ok(vec![(request_type.to_owned(), value)]),
            _ => bail!("{}: the request must be a JSON object", path.display()),
        };
    }
    let mut requests = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: Value = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: neither one JSON request nor a policy log line",
                path.display(),
                n + 1
            )
        })?;
        let (Some(Value::String(kind)), Some(request)) = (value.get("kind"), value.get("request"))
        else {
            bail!(
                "{} line {}: a policy log line is {{\"kind\": …, \"request\": …}}",
                path.display(),
                n + 1
            );
        };
        // The agent logs a stateful answer ({allowed, ops}) under the request's kind too.
        let answer = request.as_object().is_some_and(|o| {
            o.get("allowed").is_some_and(Value::is_boolean)
                && o.keys().all(|k| k == "allowed" || k == "ops")
        });
        if !answer {
            requests.push((kind.clone(), request.clone()));
        }
    }
    Ok(requests)
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
