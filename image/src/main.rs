//! `contrast-image`: builds the guest image (see the library's documentation).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use contrast_platforms::Tee;

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
    /// Download the firmware a release ships (the Debian packages pinned in
    /// contrast_image::firmware) as ovmf-snp.fd and ovmf-tdx.fd, for `firmware-refs
    /// reference-values --image-dir` and the node installer.
    #[arg(long, conflicts_with_all = ["ovmf_snp", "ovmf_snp_stand_in", "ovmf_tdx"])]
    debian_firmware: bool,
    /// The Debian archive to download it from.
    #[arg(long, default_value = contrast_image::firmware::DEBIAN_MIRROR)]
    debian_mirror: String,
    /// Copy this OVMF (an AmdSevX64 build) as ovmf-snp.fd.
    #[arg(long, conflicts_with = "ovmf_snp_stand_in")]
    ovmf_snp: Option<PathBuf>,
    /// Copy this file as ovmf-snp.fd, recorded as a stand-in for a firmware (a test
    /// fixture): its reference values are not production values and no node gets it.
    #[arg(long)]
    ovmf_snp_stand_in: Option<PathBuf>,
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
    let mut firmware = contrast_image::firmware::FirmwareRecord::new();
    if args.debian_firmware {
        for pin in &contrast_image::firmware::DEBIAN_FIRMWARE {
            contrast_image::firmware::fetch_debian(
                &mut firmware,
                &args.out,
                pin,
                &args.debian_mirror,
            )?;
        }
    }
    for (tee, source, stand_in) in [
        (Tee::Snp, args.ovmf_snp, false),
        (Tee::Snp, args.ovmf_snp_stand_in, true),
        (Tee::Tdx, args.ovmf_tdx, false),
    ] {
        if let Some(source) = source {
            contrast_image::firmware::add_local(&mut firmware, &args.out, tee, &source, stand_in)?;
        }
    }
    if !firmware.is_empty() {
        contrast_image::firmware::write_record(&args.out, &firmware)?;
    }
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    }
    Ok(())
}
