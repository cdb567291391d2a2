//! `contrast`: the command-line tool of a Contrast deployment.

mod attestation_check;
mod coordinator;
mod recover;
mod resources;
mod set;
mod time;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Make a Kubernetes deployment confidential and verify it.
#[derive(Debug, Parser)]
#[command(name = "contrast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with TEE evidence.
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Set the manifest at the Coordinator (or, with --dry-run, write the blob to sign).
    Set(set::SetArgs),
    /// Attest the Coordinator and write its manifest history to verify/.
    Verify(verify::VerifyArgs),
    /// Give a Coordinator in recovery mode its secret seed back.
    Recover(recover::RecoverArgs),
}

#[derive(Debug, Subcommand)]
enum AttestationCommand {
    /// Verify a SEV-SNP report or TDX quote offline and explain the verdict. Exits 0 only
    /// when the evidence is valid.
    Check(attestation_check::CheckArgs),
}

/// Writes a line to standard output: the command's result.
#[allow(clippy::print_stdout)] // the binary's output
fn print(line: &str) {
    println!("{line}");
}

#[allow(clippy::print_stderr)] // the binary's error report
fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match &cli.command {
        Command::Attestation(AttestationCommand::Check(args)) => attestation_check::run(args),
        Command::Set(args) => online(set::run(args)),
        Command::Verify(args) => online(verify::run(args)),
        Command::Recover(args) => online(recover::run(args)),
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
