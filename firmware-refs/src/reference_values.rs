//! The embedded reference values (docs/attestation.md §1): runtime handler →
//! `ReferenceValues`, computed from the guest image's artifacts and, always, for the
//! simulated platforms.
//!
//! The runtime handler's 8 hex characters are the first four bytes of
//! `SHA-256("contrast-runtime-id/v1\0" ‖ entry ‖ for each artifact by name: name ‖ 0 ‖
//! SHA-256(artifact))`, where `entry` is the platform's reference values as encoded in the
//! file: a changed image or changed values give a new handler.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{self, SHA256};
use contrast_manifest::{
    HexString, ReferenceValues, SnpGuestPolicy, SnpPlatformInfo, SnpReferenceValues, SnpTcb, Svn,
    TdxReferenceValues,
};
use contrast_platforms::{Platform, RuntimeHandler};

use crate::mrtd::{MrtdError, MrtdOrder, mrtd};
use crate::ovmf::{Ovmf, OvmfError};
use crate::rtmr::{DirectBoot, RtmrError, rtmrs};
use crate::snp::{KernelHashes, SnpError, SnpLaunchConfig, VcpuType, snp_launch_digest};

/// The guest policy Contrast launches QEMU guests with: SMT allowed, nothing else.
pub const QEMU_GUEST_POLICY: u64 = 0x30000;
/// TD attributes of Contrast's TDs: SEPT_VE_DISABLE (bit 28).
pub const TD_ATTRIBUTES: &str = "0000001000000000";
/// XFAM of Contrast's TDs.
pub const XFAM: &str = "e702060000000000";

/// Something that keeps the reference values from being computed.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceValuesError {
    /// An artifact could not be read.
    #[error("reading the image artifact {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The image directory lacks a file.
    #[error(
        "the image directory has no {0}; it needs ovmf-snp.fd and/or ovmf-tdx.fd, kernel, initrd and cmdline"
    )]
    Missing(String),
    /// The command line is not UTF-8.
    #[error("{0} is not UTF-8 text")]
    CmdlineNotText(String),
    /// An OVMF image is unusable.
    #[error("{file}")]
    Ovmf {
        /// The file.
        file: String,
        /// Why.
        source: OvmfError,
    },
    /// The SNP launch digest failed.
    #[error("ovmf-snp.fd")]
    Snp(#[from] SnpError),
    /// MRTD failed.
    #[error("ovmf-tdx.fd")]
    Mrtd(#[from] MrtdError),
    /// The RTMRs failed.
    #[error("RTMRs")]
    Rtmr(#[from] RtmrError),
}

/// The artifacts of a guest image directory: `ovmf-snp.fd` (an AmdSevX64 build, for SNP
/// with measured direct boot), `ovmf-tdx.fd` (a build with TDX metadata), `kernel`
/// (bzImage), `initrd` and `cmdline` (one line; a trailing newline is dropped).
#[derive(Debug, Clone)]
pub struct ImageArtifacts {
    /// The directory.
    pub dir: PathBuf,
}

const ARTIFACTS: [&str; 5] = ["cmdline", "initrd", "kernel", "ovmf-snp.fd", "ovmf-tdx.fd"];

fn read(path: &Path) -> Result<Vec<u8>, ReferenceValuesError> {
    std::fs::read(path).map_err(|source| ReferenceValuesError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&SHA256, data).as_ref());
    out
}

/// The reference values of the simulated SEV-SNP platform: what `contrast-simulator`'s
/// default Milan report carries (zero launch digest, policy 0x30000, TCB bl 3, tee 0,
/// snp 8, ucode 115, SMT enabled).
pub fn sim_snp() -> SnpReferenceValues {
    SnpReferenceValues {
        platform: Platform::SimSnp.name().to_owned(),
        product_name: "Milan".to_owned(),
        trusted_measurement: HexString::from_bytes(&[0; 48]),
        minimum_tcb: SnpTcb {
            bootloader_version: Some(Svn(3)),
            tee_version: Some(Svn(0)),
            snp_version: Some(Svn(8)),
            microcode_version: Some(Svn(115)),
            ..Default::default()
        },
        guest_policy: SnpGuestPolicy::from_bits(QEMU_GUEST_POLICY).unwrap_or_default(),
        platform_info: SnpPlatformInfo::from_bits(1),
        ..Default::default()
    }
}

/// The reference values of the simulated TDX platform: what `contrast-simulator`'s default
/// quote carries (MRTD 0x7d…, RTMRs zero, MRSEAM 0x5e…, TEE TCB SVN 03 00 05 …, QE SVN 8,
/// PCE SVN 13).
pub fn sim_tdx() -> TdxReferenceValues {
    let mut tee_tcb_svn = [0u8; 16];
    tee_tcb_svn[..3].copy_from_slice(&[3, 0, 5]);
    TdxReferenceValues {
        platform: Platform::SimTdx.name().to_owned(),
        mr_td: HexString::from_bytes(&[0x7d; 48]),
        rtmrs: std::array::from_fn(|_| HexString::from_bytes(&[0; 48])),
        minimum_qe_svn: Some(8),
        minimum_pce_svn: Some(13),
        minimum_tee_tcb_svn: HexString::from_bytes(&tee_tcb_svn),
        mr_seam: HexString::from_bytes(&[0x5e; 48]),
        td_attributes: TD_ATTRIBUTES.into(),
        xfam: XFAM.into(),
        ..Default::default()
    }
}

/// The SNP entries (one per product, 1 vCPU) of a QEMU guest; MinimumTCB is left for the
/// user, as it depends on the machines.
pub fn qemu_snp(ovmf: &Ovmf, hashes: &KernelHashes) -> Result<Vec<SnpReferenceValues>, SnpError> {
    [("Milan", VcpuType::MILAN), ("Genoa", VcpuType::GENOA)]
        .into_iter()
        .map(|(product, vcpu_type)| {
            let mut config = SnpLaunchConfig::qemu(1, vcpu_type);
            config.kernel_hashes = Some(*hashes);
            Ok(SnpReferenceValues {
                product_name: product.to_owned(),
                trusted_measurement: HexString::from_bytes(&snp_launch_digest(ovmf, &config)?),
                guest_policy: SnpGuestPolicy::from_bits(QEMU_GUEST_POLICY).unwrap_or_default(),
                platform_info: SnpPlatformInfo::from_bits(1),
                ..Default::default()
            })
        })
        .collect()
}

/// The TDX entry of a QEMU guest; MrSeam and MinimumTeeTcbSvn are left for the user.
pub fn qemu_tdx(
    ovmf: &Ovmf,
    boot: &DirectBoot<'_>,
) -> Result<TdxReferenceValues, ReferenceValuesError> {
    Ok(TdxReferenceValues {
        mr_td: HexString::from_bytes(&mrtd(ovmf, MrtdOrder::TwoPass)?),
        rtmrs: rtmrs(ovmf, boot)?.map(|r| HexString::from_bytes(&r)),
        minimum_qe_svn: Some(0),
        minimum_pce_svn: Some(0),
        td_attributes: TD_ATTRIBUTES.into(),
        xfam: XFAM.into(),
        ..Default::default()
    })
}

/// The handler of `platform` whose runtime carries `values` and the artifacts with these
/// SHA-256 digests (name, digest; any order).
pub fn runtime_handler(
    platform: Platform,
    values: &ReferenceValues,
    artifacts: &[(&str, [u8; 32])],
) -> RuntimeHandler {
    let mut sorted = artifacts.to_vec();
    sorted.sort();
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(b"contrast-runtime-id/v1\0");
    ctx.update(&values.encode());
    for (name, digest) in sorted {
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(&digest);
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(ctx.finish().as_ref());
    RuntimeHandler::new(platform, &id)
}

/// The entries for the simulated platforms.
pub fn simulated_entries() -> Vec<(RuntimeHandler, ReferenceValues)> {
    let snp = ReferenceValues {
        snp: vec![sim_snp()],
        ..Default::default()
    };
    let tdx = ReferenceValues {
        tdx: vec![sim_tdx()],
        ..Default::default()
    };
    vec![
        (runtime_handler(Platform::SimSnp, &snp, &[]), snp),
        (runtime_handler(Platform::SimTdx, &tdx, &[]), tdx),
    ]
}

/// The entries of the bare-metal QEMU platforms from an image directory: SNP platforms if
/// it has `ovmf-snp.fd`, TDX platforms if it has `ovmf-tdx.fd`.
pub fn image_entries(
    image: &ImageArtifacts,
) -> Result<Vec<(RuntimeHandler, ReferenceValues)>, ReferenceValuesError> {
    let path = |name: &str| image.dir.join(name);
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    for name in ARTIFACTS {
        if path(name).exists() {
            files.push((name, read(&path(name))?));
        }
    }
    let get = |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.as_slice())
    };
    let need = |name: &str| get(name).ok_or_else(|| ReferenceValuesError::Missing(name.to_owned()));
    if get("ovmf-snp.fd").is_none() && get("ovmf-tdx.fd").is_none() {
        return Err(ReferenceValuesError::Missing(
            "ovmf-snp.fd or ovmf-tdx.fd".into(),
        ));
    }
    let (kernel, initrd) = (need("kernel")?, need("initrd")?);
    let cmdline = std::str::from_utf8(need("cmdline")?)
        .map_err(|_| ReferenceValuesError::CmdlineNotText(path("cmdline").display().to_string()))?;
    let cmdline = cmdline.strip_suffix('\n').unwrap_or(cmdline);
    let digests: Vec<(&str, [u8; 32])> = files.iter().map(|(n, d)| (*n, sha256(d))).collect();
    let parse = |name: &str, data: &[u8]| {
        Ovmf::parse(data.to_vec()).map_err(|source| ReferenceValuesError::Ovmf {
            file: name.to_owned(),
            source,
        })
    };

    let mut out = Vec::new();
    if let Some(data) = get("ovmf-snp.fd") {
        let ovmf = parse("ovmf-snp.fd", data)?;
        let hashes = KernelHashes::new(kernel, Some(initrd), Some(cmdline));
        let entries = qemu_snp(&ovmf, &hashes)?;
        for platform in [Platform::MetalQemuSnp, Platform::K3sQemuSnp] {
            let values = ReferenceValues {
                snp: entries.clone(),
                ..Default::default()
            };
            out.push((runtime_handler(platform, &values, &digests), values));
        }
    }
    if let Some(data) = get("ovmf-tdx.fd") {
        let ovmf = parse("ovmf-tdx.fd", data)?;
        let boot = DirectBoot {
            kernel,
            initrd,
            cmdline,
        };
        let entry = qemu_tdx(&ovmf, &boot)?;
        for platform in [
            Platform::MetalQemuTdx,
            Platform::K3sQemuTdx,
            Platform::Rke2QemuTdx,
        ] {
            let values = ReferenceValues {
                tdx: vec![entry.clone()],
                ..Default::default()
            };
            out.push((runtime_handler(platform, &values, &digests), values));
        }
    }
    Ok(out)
}

/// Encodes the embedded file: an object keyed by runtime handler, sorted by key and
/// indented as Go's `json.MarshalIndent` writes a map, with a trailing newline.
pub fn encode_embedded(entries: &[(RuntimeHandler, ReferenceValues)]) -> Vec<u8> {
    let mut sorted: Vec<(String, &ReferenceValues)> =
        entries.iter().map(|(h, v)| (h.to_string(), v)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("{");
    for (i, (handler, values)) in sorted.iter().enumerate() {
        let encoded = String::from_utf8_lossy(&values.encode()).into_owned();
        let body = encoded.trim_end().replace('\n', "\n  ");
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        // Handler names are [a-z0-9-]: no escaping needed.
        out.push_str(&format!("\"{handler}\": {body}"));
    }
    out.push_str("\n}\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use contrast_manifest::EmbeddedReferenceValues;

    #[test]
    fn simulated_entries_decode_and_keep_their_handlers() {
        let entries = simulated_entries();
        let bytes = encode_embedded(&entries);
        let decoded = EmbeddedReferenceValues::decode(&bytes).unwrap();
        assert_eq!(decoded.0.len(), 2);
        for ((h, v), (dh, dv)) in entries.iter().zip(&decoded.0) {
            assert_eq!(h, dh);
            assert_eq!(v.encode(), dv.encode());
        }
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\n  \"contrast-cc-sim-snp-"), "{text}");
    }

    #[test]
    fn handler_changes_with_values_and_artifacts() {
        let values = simulated_entries().remove(0).1;
        let a = runtime_handler(Platform::SimSnp, &values, &[("kernel", [1; 32])]);
        let b = runtime_handler(Platform::SimSnp, &values, &[("kernel", [2; 32])]);
        let c = runtime_handler(Platform::SimSnp, &values, &[]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            runtime_handler(Platform::SimSnp, &values, &[("kernel", [1; 32])])
        );
    }

    #[test]
    fn missing_image_artifacts_are_named() {
        let dir = std::env::temp_dir().join(format!("firmware-refs-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = image_entries(&ImageArtifacts { dir: dir.clone() }).unwrap_err();
        assert!(
            err.to_string().contains("ovmf-snp.fd or ovmf-tdx.fd"),
            "{err}"
        );
        std::fs::write(dir.join("ovmf-tdx.fd"), b"x").unwrap();
        let err = image_entries(&ImageArtifacts { dir: dir.clone() }).unwrap_err();
        assert!(err.to_string().contains("no kernel"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
