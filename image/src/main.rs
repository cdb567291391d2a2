//! `contrast-image`: builds the guest image (see the library's documentation).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// Builds the measured guest image: kernel, initrd, dm-verity root filesystem, command line.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The directory with the guest binaries (default: the directory of this program, e.g.
    /// target/debug after `cargo build --workspace --bins`).
    #[arg(long)]
    binaries: Option<PathBuf>,
    /// Where the artifacts go.
    #[arg(long, short)]
    out: PathBuf,
    /// Copy this OVMF (an AmdSevX64 build) as ovmf-snp.fd, for `firmware-refs
    /// reference-values --image-dir`.
    #[arg(long)]
    ovmf_snp: Option<PathBuf>,
    /// Copy this OVMF (a build with TDX metadata) as ovmf-tdx.fd.
    #[arg(long)]
    ovmf_tdx: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTRAST_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let binaries = match args.binaries {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("finding this program's directory")?
            .parent()
            .context("this program has no parent directory")?
            .to_path_buf(),
    };
    let config = contrast_image::BuildConfig {
        binaries,
        out: args.out.clone(),
        system_root: PathBuf::from("/"),
    };
    let manifest = contrast_image::build(&config)?;
    for (source, name) in [
        (args.ovmf_snp, "ovmf-snp.fd"),
        (args.ovmf_tdx, "ovmf-tdx.fd"),
    ] {
        if let Some(source) = source {
            let target = args.out.join(name);
            std::fs::copy(&source, &target)
                .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
        }
    }
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    }
    Ok(())
}
