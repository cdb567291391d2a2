//! `contrast`: the command-line tool of a Contrast deployment.

mod attestation_check;
mod bundle;
mod collateral;
mod coordinator;
mod generate;
mod policy_check;
mod recover;
mod resources;
mod set;
mod sign;
mod verified;
mod verify;
mod version;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Make a Kubernetes deployment confidential and verify it.
#[derive(Debug, Parser)]
#[command(name = "contrast", version, about)]
struct Cli {
    /// Log level on standard error: error, warn, info, debug or trace.
    #[arg(
        long,
        global = true,
        default_value = "warn",
        env = "CONTRAST_LOG_LEVEL",
        value_parser = clap::builder::PossibleValuesParser::new(["error", "warn", "info", "debug", "trace"]),
        ignore_case = true
    )]
    log_level: String,
    /// The directory the default files are in (manifest.json, keys, verify/, …); paths
    /// given on the command line are taken as given.
    #[arg(long, global = true, default_value = ".")]
    workspace_dir: std::path::PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with TEE evidence.
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Make the confidential workloads of Kubernetes YAML ready for Contrast: runtime
    /// class, Initializer, service mesh, policies; and write the manifest.
    Generate(generate::GenerateArgs),
    /// Print the RuntimeClass and node-installer DaemonSet for a platform.
    Runtime(bundle::BundleArgs),
    /// Print the Coordinator's resources (StatefulSet, Services, RBAC) for a platform.
    Coordinator(bundle::CoordinatorBundleArgs),
    /// Set the manifest at the Coordinator (or, with --dry-run, write the blob to sign).
    Set(set::SetArgs),
    /// Sign the manifest's next transition hash with the workload owner key (or, with
    /// --prepare, write it for an external signer), for `set -s`.
    Sign(sign::SignArgs),
    /// Attest the Coordinator and write its manifest history to verify/.
    Verify(verify::VerifyArgs),
    /// Give a Coordinator in recovery mode its secret seed back.
    Recover(recover::RecoverArgs),
    /// Work with Kata agent policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Evaluate a request the Kata agent got against a policy, and for a refusal say
    /// which checks failed, with expected and actual values. Exits 0 only when allowed.
    Check(policy_check::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum AttestationCommand {
    /// Verify a SEV-SNP report or TDX quote offline and explain the verdict. Exits 0 only
    /// when the evidence is valid.
    Check(attestation_check::CheckArgs),
}

/// Writes text to standard output as it is: the command's result.
#[allow(clippy::print_stdout)] // the binary's output
fn print_raw(text: &str) {
    print!("{text}");
}

/// Writes a line to standard output: the command's result.
#[allow(clippy::print_stdout)] // the binary's output
fn print(line: &str) {
    println!("{line}");
}

#[allow(clippy::print_stderr)] // the binary's error report
fn main() -> ExitCode {
    // `--version` says what this build deploys (`-V` only the version). The text lives as
    // long as the process, as clap's `&'static str` wants.
    let command = Cli::command().long_version(&*version::long_version().leak());
    let mut cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    let workspace = coordinator::WorkspaceArgs {
        workspace_dir: cli.workspace_dir.clone(),
    };
    match &mut cli.command {
        Command::Generate(args) => args.workspace = workspace,
        Command::Set(args) => args.workspace = workspace,
        Command::Sign(args) => args.workspace = workspace,
        Command::Verify(args) => args.workspace = workspace,
        Command::Recover(args) => args.workspace = workspace,
        Command::Attestation(_)
        | Command::Runtime(_)
        | Command::Coordinator(_)
        | Command::Policy(_) => {}
    }
    // One of the five levels (clap refuses anything else), in any letter case.
    let filter = tracing_subscriber::EnvFilter::new(cli.log_level.to_ascii_lowercase());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match &cli.command {
        Command::Attestation(AttestationCommand::Check(args)) => attestation_check::run(args),
        Command::Runtime(args) => bundle::runtime(args),
        Command::Coordinator(args) => bundle::coordinator(args),
        Command::Generate(args) => online(generate::run(args)),
        Command::Set(args) => online(set::run(args)),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => online(verify::run(args)),
        Command::Recover(args) => online(recover::run(args)),
        Command::Policy(PolicyCommand::Check(args)) => policy_check::run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("contrast: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a command that talks to the Coordinator; its success means exit status 0.
fn online(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(command)?;
    Ok(true)
}
