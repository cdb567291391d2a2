//! `firmware-refs`: launch measurements and the embedded reference values.
//!
//! stdout carries only the result (a digest, or JSON); errors go to stderr with exit
//! status 1 (2 for usage errors).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool reports

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Parser, Subcommand};
use contrast_firmware_refs::reference_values::{
    ImageArtifacts, QEMU_GUEST_POLICY, encode_embedded, image_entries, simulated_entries,
};
use contrast_firmware_refs::{
    DirectBoot, DirectBootFiles, MrtdOrder, Ovmf, SnpLaunchConfig, VcpuType, VmmType, id_blocks,
    mrtd, parse_ccel_table, parse_event_log, replay, rtmrs, snp_launch_digest_files,
};
use contrast_platforms::Platform;

#[derive(Parser)]
#[command(
    name = "firmware-refs",
    about = "Launch measurements and reference values",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The SEV-SNP launch digest (as sev-snp-measure --mode snp), 96 hex characters.
    SnpLaunchDigest {
        /// The OVMF image (loaded with -bios; ends at 4 GiB).
        #[arg(long)]
        ovmf: PathBuf,
        /// Number of vCPUs.
        #[arg(long)]
        vcpus: u32,
        /// QEMU vCPU model (EPYC, EPYC-v1…v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, …);
        /// required for QEMU.
        #[arg(long)]
        vcpu_type: Option<String>,
        /// QEMU, ec2 or gce.
        #[arg(long, default_value = "QEMU")]
        vmm_type: String,
        /// Kernel for measured direct boot (needs an OVMF with SNP_KERNEL_HASHES).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Initrd (with --kernel).
        #[arg(long, requires = "kernel")]
        initrd: Option<PathBuf>,
        /// Kernel command line (with --kernel).
        #[arg(long, requires = "kernel")]
        append: Option<String>,
        /// VMSA SEV_FEATURES, hex (0x prefix optional).
        #[arg(long, default_value = "0x1", value_parser = parse_hex_u64)]
        guest_features: u64,
    },
    /// Contrast's ID block, ID auth block (base64) and ID-key digest (hex), as JSON.
    SnpIdBlock {
        /// The launch digest, 96 hex characters.
        #[arg(long)]
        launch_digest: String,
        /// The 64-bit guest policy, hex (0x prefix optional).
        #[arg(long, default_value = "0x30000", value_parser = parse_hex_u64)]
        policy: u64,
    },
    /// The ID blocks of an image directory's SNP launch digests, per product line, as the
    /// runtime installer's --snp-id-blocks reads them:
    /// `{"Milan": {"idBlock", "idAuth", "idKeyDigest"}, …}`.
    SnpIdBlocks {
        /// Directory with ovmf-snp.fd, kernel, initrd, cmdline.
        #[arg(long)]
        image_dir: PathBuf,
        /// Output file (written atomically); stdout if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// TDX MRTD from the TDVF metadata of a unified OVMF image, 96 hex characters.
    TdxMrtd {
        /// The OVMF image.
        #[arg(long)]
        ovmf: PathBuf,
        /// two-pass (QEMU 8, Contrast) or single-pass (QEMU 9+).
        #[arg(long, default_value = "two-pass")]
        order: MrtdOrder,
    },
    /// TDX RTMR0–3 of a direct boot, one 96-hex line each.
    TdxRtmr {
        /// The OVMF image.
        #[arg(long)]
        ovmf: PathBuf,
        /// The bzImage.
        #[arg(long)]
        kernel: PathBuf,
        /// The initrd.
        #[arg(long)]
        initrd: PathBuf,
        /// The kernel command line.
        #[arg(long, default_value = "")]
        append: String,
    },
    /// Replays a CCEL event log to RTMR0–3, one 96-hex line each.
    ReplayCcel {
        /// The event log (the ACPI CCEL log area).
        #[arg(long)]
        log: PathBuf,
        /// The ACPI CCEL table: checked, and the log is cut to its log area length.
        #[arg(long)]
        table: Option<PathBuf>,
    },
    /// Writes the reference values keyed by runtime handler: the simulated platforms
    /// always, the QEMU platforms from an image directory when given.
    ReferenceValues {
        /// Directory with ovmf-snp.fd and/or ovmf-tdx.fd, kernel, initrd, cmdline.
        #[arg(long)]
        image_dir: Option<PathBuf>,
        /// Output file (written atomically); stdout if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_hex_u64(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).map_err(|e| format!("{s:?} is not a 64-bit hex number: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn run(command: Command) -> Result<String> {
    Ok(match command {
        Command::SnpLaunchDigest {
            ovmf,
            vcpus,
            vcpu_type,
            vmm_type,
            kernel,
            initrd,
            append,
            guest_features,
        } => {
            let boot = kernel.as_deref().map(|kernel| DirectBootFiles {
                kernel,
                initrd: initrd.as_deref(),
                append: append.as_deref(),
            });
            let config = SnpLaunchConfig {
                vcpus,
                vcpu_type: vcpu_type.map(|t| t.parse::<VcpuType>()).transpose()?,
                vmm: vmm_type.parse::<VmmType>()?,
                guest_features,
                kernel_hashes: None,
            };
            let digest = snp_launch_digest_files(&ovmf, boot, &config)
                .with_context(|| format!("measuring {}", ovmf.display()))?;
            hex::encode(digest)
        }
        Command::SnpIdBlock {
            launch_digest,
            policy,
        } => {
            let mut digest = [0u8; 48];
            hex::decode_to_slice(&launch_digest, &mut digest)
                .context("--launch-digest must be 96 hex characters")?;
            let blocks = id_blocks(&digest, policy)?;
            format!(
                "{{\n  \"idBlock\": \"{}\",\n  \"idAuth\": \"{}\",\n  \"idKeyDigest\": \"{}\"\n}}",
                BASE64.encode(blocks.id_block),
                BASE64.encode(&blocks.id_auth),
                hex::encode(blocks.id_key_digest)
            )
        }
        Command::SnpIdBlocks { image_dir, out } => {
            let entries = image_entries(&ImageArtifacts { dir: image_dir })?;
            let snp = entries
                .iter()
                .find(|(handler, _)| handler.platform() == Platform::MetalQemuSnp)
                .map(|(_, values)| values.snp.clone())
                .context("the image directory has no ovmf-snp.fd: no SNP launch digests")?;
            let mut products = Vec::new();
            for entry in &snp {
                let mut digest = [0u8; 48];
                hex::decode_to_slice(&entry.trusted_measurement.0, &mut digest)
                    .context("a launch digest that is not 96 hex characters")?;
                let blocks = id_blocks(&digest, QEMU_GUEST_POLICY)?;
                products.push(format!(
                    "  \"{}\": {{\n    \"idBlock\": \"{}\",\n    \"idAuth\": \"{}\",\n    \"idKeyDigest\": \"{}\"\n  }}",
                    entry.product_name,
                    BASE64.encode(blocks.id_block),
                    BASE64.encode(&blocks.id_auth),
                    hex::encode(blocks.id_key_digest)
                ));
            }
            let json = format!("{{\n{}\n}}\n", products.join(",\n"));
            match out {
                Some(path) => {
                    contrast_atomic_file::write(&path, json.as_bytes(), 0o644)?;
                    return Ok(String::new());
                }
                None => json.trim_end().to_owned(),
            }
        }
        Command::TdxMrtd { ovmf, order } => hex::encode(mrtd(&Ovmf::read(&ovmf)?, order)?),
        Command::TdxRtmr {
            ovmf,
            kernel,
            initrd,
            append,
        } => {
            let (kernel, initrd) = (read(&kernel)?, read(&initrd)?);
            let boot = DirectBoot {
                kernel: &kernel,
                initrd: &initrd,
                cmdline: &append,
            };
            rtmrs(&Ovmf::read(&ovmf)?, &boot)?
                .map(hex::encode)
                .join("\n")
        }
        Command::ReplayCcel { log, table } => {
            let mut log = read(&log)?;
            if let Some(table) = table {
                let table = parse_ccel_table(&read(&table)?)?;
                let area = usize::try_from(table.log_area_length).unwrap_or(usize::MAX);
                if log.len() > area {
                    log.truncate(area);
                }
            }
            replay(&parse_event_log(&log)?).map(hex::encode).join("\n")
        }
        Command::ReferenceValues { image_dir, out } => {
            let mut entries = simulated_entries();
            if let Some(dir) = image_dir {
                entries.extend(image_entries(&ImageArtifacts { dir })?);
            }
            let bytes = encode_embedded(&entries);
            match out {
                Some(path) => {
                    contrast_atomic_file::write(&path, &bytes, 0o644)?;
                    return Ok(String::new());
                }
                None => String::from_utf8(bytes)?.trim_end().to_owned(),
            }
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(out) if out.is_empty() => ExitCode::SUCCESS,
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_features_are_hex_with_or_without_prefix() {
        assert_eq!(parse_hex_u64("0x21"), Ok(0x21));
        assert_eq!(parse_hex_u64("21"), Ok(0x21));
        assert!(parse_hex_u64("0xzz").is_err());
    }
}
