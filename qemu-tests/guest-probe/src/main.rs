//! `qemu-guest-probe`: test-only checks run inside the QEMU guest (never part of the image).
//!
//! Each subcommand prints one marker line, `CONTRAST-TEST-PASS <name>` or
//! `CONTRAST-TEST-FAIL <name>: <reason>` (see `notes/qemu-design.md`), and exits 0 or 1.
//! Progress goes to the console as `CONTRAST-STEP` lines.
//!
//! - `tsm-no-provider`: `tsm` loaded, no provider: every hardware path fails with ENXIO,
//!   "not running in a confidential VM".
//! - `tsm-abi --host-data HEX`: with `fake_tsm.ko` loaded: the report ABI by hand
//!   (generation, commit at close), our client against it (binding, concurrent writers,
//!   retries, cleanup, concurrent requests).
//! - `snp-tsm-issue --simulator-dir DIR --host-data HEX`: the `snp-tsm` issuer's evidence
//!   verifies against the simulator's trust anchor and carries the module's HOST_DATA.

// The markers are this program's output.
#![allow(clippy::print_stdout)]

mod abi;
mod common;
mod snp_tsm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Test-only checks inside the QEMU guest.
#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    test: Test,
}

#[derive(Debug, Subcommand)]
enum Test {
    /// configfs-tsm without a provider: our issuers fail with "not running in a confidential VM".
    TsmNoProvider,
    /// configfs-tsm with fake_tsm.ko: the kernel ABI and our client against it.
    TsmAbi {
        /// The host_data parameter fake_tsm.ko was loaded with (64 hex characters).
        #[arg(long)]
        host_data: String,
    },
    /// The snp-tsm issuer: the fake provider's body through the kernel, simulated signature.
    SnpTsmIssue {
        /// The simulator's key directory.
        #[arg(long)]
        simulator_dir: PathBuf,
        /// The host_data parameter fake_tsm.ko was loaded with (64 hex characters).
        #[arg(long)]
        host_data: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (name, outcome) = match &args.test {
        Test::TsmNoProvider => ("tsm-no-provider", abi::no_provider()),
        Test::TsmAbi { host_data } => ("tsm-abi", abi::with_fake_provider(host_data)),
        Test::SnpTsmIssue {
            simulator_dir,
            host_data,
        } => ("snp-tsm-issue", snp_tsm::issue(simulator_dir, host_data)),
    };
    match outcome {
        Ok(()) => {
            println!("CONTRAST-TEST-PASS {name}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line: the harness reads the marker line by line.
            let reason = format!("{e:#}").replace(['\n', '\r'], " ");
            println!("CONTRAST-TEST-FAIL {name}: {reason}");
            ExitCode::FAILURE
        }
    }
}
