//! `luks-helper`: the secure mount of an encrypted persistent volume.
//!
//! - `format-or-open --device D --mount-point M --secret-file F`: format on first use,
//!   validate the header, open and mount.
//! - `check --device D --secret-file F`: validate the header and the keyslot without
//!   activating (works without device-mapper). Prints the profile.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use contrast_luks::{SecureMount, WorkloadSecret, check, private_dir};

/// The secure mount of an encrypted persistent volume keyed by the workload secret.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Format the device if it has no LUKS header, validate, open and mount it.
    FormatOrOpen {
        /// The block device; its path is part of the key derivation.
        #[arg(long)]
        device: PathBuf,
        /// Where to mount the file system.
        #[arg(long, default_value = "/state")]
        mount_point: PathBuf,
        /// The workload secret (128 lowercase hex characters).
        #[arg(long, default_value = "/contrast/secrets/workload-secret-seed")]
        secret_file: PathBuf,
        /// Base of the private header directory (a tmpfs); default $XDG_RUNTIME_DIR or /run.
        #[arg(long)]
        header_dir: Option<PathBuf>,
    },
    /// Validate the header and check the keyslot, without activating anything.
    Check {
        /// The block device or image file; its path is part of the key derivation.
        #[arg(long)]
        device: PathBuf,
        /// The workload secret (128 lowercase hex characters).
        #[arg(long)]
        secret_file: PathBuf,
        /// Base of the private header directory (a tmpfs); default $XDG_RUNTIME_DIR or /run.
        #[arg(long)]
        header_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTRAST_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match args.command {
        Cmd::FormatOrOpen {
            device,
            mount_point,
            secret_file,
            header_dir,
        } => {
            let secret = WorkloadSecret::read_file(&secret_file)?;
            contrast_luks::create_lock_dir()?;
            let mut mount = SecureMount::new(device, mount_point);
            if let Some(base) = header_dir {
                mount.header_dir_base = base;
            }
            let outcome = mount.run(&secret)?;
            tracing::info!(?outcome, "done");
        }
        Cmd::Check {
            device,
            secret_file,
            header_dir,
        } => {
            let secret = WorkloadSecret::read_file(&secret_file)?;
            let base = header_dir.unwrap_or_else(private_dir::default_base);
            let profile = check(&device, &secret, &base)?;
            #[allow(clippy::print_stdout)]
            {
                println!(
                    "ok: {} opens with the workload secret ({profile})",
                    device.display()
                );
            }
        }
    }
    Ok(())
}
