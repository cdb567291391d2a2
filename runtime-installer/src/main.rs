//! `runtime-installer`: installs Contrast's confidential runtime on the node it runs on.
//!
//! Run by the DaemonSet's init container with the host's root at `/host`. Prints one line
//! per action on stdout; errors go to stderr with exit status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use contrast_platforms::{Platform, RuntimeHandler};
use contrast_runtime_installer::kata::RuntimeKind;
use contrast_runtime_installer::snp::{SnpProduct, select_id_block};
use contrast_runtime_installer::{
    HostRoot, ImagePullerConfig, InstallConfig, Installation, SystemRunner, TargetConfig, install,
};

#[derive(Parser, Debug)]
#[command(
    name = "runtime-installer",
    about = "Installs Contrast's confidential runtime on this node",
    version
)]
struct Cli {
    /// The platform, e.g. Metal-QEMU-SNP (any letter case).
    #[arg(long, env = "CONTRAST_PLATFORM")]
    platform: String,
    /// The runtime handler to install, contrast-cc-<platform>-<8 hex>.
    #[arg(long, env = "CONTRAST_RUNTIME_HANDLER")]
    runtime_handler: String,
    /// Where the host's root file system is mounted.
    #[arg(long, env = "CONTRAST_HOST_ROOT", default_value = "/host")]
    host_root: PathBuf,
    /// The install configuration (files to fetch, kernel parameters).
    #[arg(
        long,
        env = "CONTRAST_INSTALL_CONFIG",
        default_value = contrast_platforms::node_installer::INSTALL_CONFIG
    )]
    config: PathBuf,
    /// The mounted ConfigMap contrast-node-installer-target-config (files
    /// containerd-config-path, systemd-unit-name); a missing directory means defaults.
    #[arg(
        long,
        env = "CONTRAST_TARGET_CONFIG_DIR",
        default_value = "/target-config"
    )]
    target_config_dir: PathBuf,
    /// The mounted Secret contrast-node-installer-imagepuller-config (file
    /// contrast-imagepuller.toml: registry credentials for pulls in the pod VM); a missing
    /// file means anonymous pulls only.
    #[arg(
        long,
        env = "CONTRAST_IMAGEPULLER_CONFIG_DIR",
        default_value = "/imagepuller-config"
    )]
    imagepuller_config_dir: PathBuf,
    /// The guest kernel command line, exactly as measured. Default: the install
    /// configuration's QemuExtraKernelParams, else the guest image's base command line.
    #[arg(long, env = "CONTRAST_KERNEL_PARAMS")]
    kernel_params: Option<String>,
    /// SNP ID blocks per product line (JSON: {"Milan": {"idBlock", "idAuth"}, …}); QEMU
    /// SNP platforms.
    #[arg(long, env = "CONTRAST_SNP_ID_BLOCKS")]
    snp_id_blocks: Option<PathBuf>,
    /// The host's SNP product line (milan, genoa, turin); default: read from
    /// /proc/cpuinfo.
    #[arg(long, env = "CONTRAST_SNP_PRODUCT")]
    snp_product: Option<SnpProduct>,
    /// Report what would change; change nothing.
    #[arg(long, env = "CONTRAST_DRY_RUN")]
    dry_run: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

#[allow(clippy::print_stderr)] // the binary's error report
fn report(e: &anyhow::Error) -> ExitCode {
    eprintln!("runtime-installer: {e:#}");
    ExitCode::FAILURE
}

#[allow(clippy::print_stdout)] // the binary's output: one line per action
fn run(cli: Cli) -> Result<()> {
    let platform: Platform = cli.platform.parse()?;
    let handler: RuntimeHandler = cli.runtime_handler.parse().context("--runtime-handler")?;
    let kind = RuntimeKind::for_platform(platform)?;
    let config = InstallConfig::read(&cli.config)?;
    let target = TargetConfig::load(&cli.target_config_dir, platform)?;
    let imagepuller_config = ImagePullerConfig::load(&cli.imagepuller_config_dir)?;
    let snp_id_block = match (&cli.snp_id_blocks, kind) {
        (Some(file), RuntimeKind::QemuSnp) => {
            let product = match cli.snp_product {
                Some(product) => product,
                None => detect_product()?,
            };
            let json = std::fs::read(file)
                .with_context(|| format!("reading SNP ID blocks {}", file.display()))?;
            Some(select_id_block(
                &json,
                &file.display().to_string(),
                product,
            )?)
        }
        (Some(_), _) => bail!("--snp-id-blocks is for QEMU SNP platforms, not {platform}"),
        (None, _) => None,
    };
    let installation = Installation {
        platform,
        handler,
        host_root: HostRoot::new(cli.host_root),
        config,
        target,
        kernel_params: cli.kernel_params,
        snp_id_block,
        imagepuller_config,
        dry_run: cli.dry_run,
    };
    for action in install(&installation, &mut SystemRunner)? {
        println!("{action}");
    }
    Ok(())
}

fn detect_product() -> Result<SnpProduct> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
    contrast_runtime_installer::snp::product_from_cpuinfo(&cpuinfo).context(
        "this host's CPU is not an SEV-SNP product line (Milan, Genoa, Turin); pass --snp-product",
    )
}
