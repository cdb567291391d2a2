//! `contrast`: the command-line tool of a Contrast deployment.

mod attestation_check;
mod time;

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
    let result = match &cli.command {
        Command::Attestation(AttestationCommand::Check(args)) => attestation_check::run(args),
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
