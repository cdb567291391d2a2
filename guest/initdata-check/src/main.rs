//! `initdata-check`: runs in the pod VM before the Kata agent. It reads the pod's
//! initdata, compares its digest with the host data the TEE reports, and installs the
//! initdata's policy for the agent, or, on any doubt, a policy that refuses every
//! request and carries the reason to the runtime.
//!
//! With `--imagepuller-device` it also copies the image puller config (the node's registry
//! credentials, unmeasured) from its device to where the agent's pulls read it, as
//! Contrast's initdata processor does; that copy never changes the decision.
//!
//! Exit status: 0 the initdata was verified and its policy installed; 1 it was refused
//! and the deny-all policy installed; 2 no policy could be installed (or the arguments
//! are wrong). Each run logs exactly one decision line to stderr (and, with
//! `--imagepuller-device`, one line about that copy).
//!
//! Contrast's own `initdata-processor` always exits 0 so that the agent starts and
//! reports the deny-all message; here the status tells the init system too. A unit that
//! starts the agent should order itself after this check without requiring its success
//! (the deny-all policy already stops every workload), and must not start the agent on
//! status 2.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use contrast_evidence::issuer::{EvidenceIssuer, IssuerSettings, select};
use contrast_initdata_check::policy::DEFAULT_POLICY_PATH;
use contrast_initdata_check::source::DEFAULT_DEVICE;
use contrast_initdata_check::{
    CheckError, DEFAULT_INITDATA_OUT, Decision, InitdataSource, install, verify, write_policy,
};
use contrast_platforms::error_chain;

/// Checks the pod's initdata against the TEE's host data and installs the agent policy.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A file with the initdata: the device's header form (magic `initdata`), a gzip
    /// blob, or the plain TOML document.
    #[arg(long, conflicts_with = "device")]
    initdata: Option<PathBuf>,
    /// The initdata block device: magic `initdata`, u64 little-endian length, gzip blob
    /// [default: /dev/disk/by-id/virtio-initdata].
    #[arg(long)]
    device: Option<PathBuf>,
    /// Where the Kata agent reads its policy.
    #[arg(long, env = "CONTRAST_POLICY_OUT", default_value = DEFAULT_POLICY_PATH)]
    policy_out: PathBuf,
    /// Where the verified initdata document is written (for the Initializer); only
    /// when it was verified.
    #[arg(long, env = "CONTRAST_INITDATA_OUT", default_value = DEFAULT_INITDATA_OUT)]
    initdata_out: PathBuf,
    /// The image puller config's device (magic `imgpullr`, the initdata device's layout),
    /// if the runtime attached one.
    #[arg(long)]
    imagepuller_device: Option<PathBuf>,
    /// Where the image puller config is left for the agent.
    #[arg(long, default_value = contrast_initdata::disk::GUEST_IMAGEPULLER_CONFIG)]
    imagepuller_out: PathBuf,
    #[command(flatten)]
    issuer: IssuerSettings,
}

impl Args {
    fn source(&self) -> InitdataSource {
        match (&self.initdata, &self.device) {
            (Some(file), _) => InitdataSource::File(file.clone()),
            (None, Some(device)) => InitdataSource::Device(device.clone()),
            (None, None) => InitdataSource::Device(PathBuf::from(DEFAULT_DEVICE)),
        }
    }
}

fn issuer(args: &Args) -> anyhow::Result<Arc<dyn EvidenceIssuer>> {
    Ok(Arc::from(select(&args.issuer)?))
}

/// Leaves the image puller config for the agent (readable by root only: credentials); on
/// failure the reason, which every pull then gives.
fn copy_imagepuller_config(device: &std::path::Path, out: &std::path::Path) {
    let result = contrast_initdata_check::source::read_imagepuller_device(device)
        .map_err(|e| error_chain(&e))
        .and_then(|config| {
            contrast_atomic_file::write_creating_dir(out, &config, 0o600)
                .map_err(|e| format!("writing {}: {}", out.display(), e.source))
        });
    match result {
        Ok(()) => tracing::info!(
            device = %device.display(),
            config = %out.display(),
            "image puller config from the node (unmeasured: registry credentials only)"
        ),
        Err(error) => {
            let marker = contrast_initdata::disk::imagepuller_error_path(out);
            let text = format!("{}: {error}", device.display());
            // Without the marker the pulls are anonymous; this line still says why.
            let _ = contrast_atomic_file::write_creating_dir(&marker, text.as_bytes(), 0o600);
            tracing::error!(
                device = %device.display(),
                %error,
                "image puller config unusable: every pull fails with this reason"
            );
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTRAST_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    if let Some(device) = &args.imagepuller_device {
        copy_imagepuller_config(device, &args.imagepuller_out);
    }
    let source = args.source();
    let decision = match issuer(&args) {
        Ok(issuer) => match verify(&source, issuer.as_ref()) {
            Ok(verified) => Decision::Accepted(verified),
            Err(reason) => Decision::Refused(reason),
        },
        Err(e) => Decision::Refused(CheckError::IssuerSetup(format!("{e:#}"))),
    };
    if let Err(e) = install(&decision, &args.policy_out) {
        tracing::error!(
            source = %source.path().display(),
            error = %error_chain(&e),
            "initdata check could not install any policy"
        );
        return ExitCode::from(2);
    }
    if let Decision::Accepted(verified) = &decision {
        // The document parsed, so it is UTF-8.
        let text = String::from_utf8_lossy(verified.initdata.as_bytes());
        if let Err(e) = write_policy(&args.initdata_out, &text) {
            tracing::error!(
                source = %source.path().display(),
                path = %e.path.display(),
                error = %e.source,
                "initdata verified, but the document could not be left for the Initializer"
            );
            return ExitCode::from(2);
        }
    }
    match decision {
        Decision::Accepted(verified) => {
            tracing::info!(
                source = %source.path().display(),
                tee = ?verified.tee,
                issuer = verified.issuer,
                algorithm = %verified.initdata.algorithm(),
                digest = %hex::encode(&verified.digest),
                policy = %args.policy_out.display(),
                document = %args.initdata_out.display(),
                "initdata verified: installed its policy"
            );
            ExitCode::SUCCESS
        }
        Decision::Refused(reason) => {
            // One line per decision, whatever the parser's message looks like.
            let reason = error_chain(&reason).replace(['\n', '\r'], " ");
            tracing::error!(
                source = %source.path().display(),
                policy = %args.policy_out.display(),
                reason = %reason,
                "initdata refused: installed a deny-all policy"
            );
            ExitCode::from(1)
        }
    }
}
