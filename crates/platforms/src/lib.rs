//! The platforms a deployment can run on, and the runtime handler names derived from them.
//!
//! A platform fixes the TEE (SEV-SNP or TDX), the hypervisor and the Kubernetes flavour.
//! Users type platforms in any case (`--reference-values metal-qemu-snp`); they are printed
//! the way Contrast prints them (`Metal-QEMU-SNP`). The simulated platforms `Sim-SNP` and
//! `Sim-TDX` run without TEE hardware: their evidence is signed by a locally generated
//! "vendor" root and must never be trusted by a real deployment.
//!
//! Runtime handler names have the form `contrast-cc-<platform, lowercase>-<8 hex>`, where
//! the 8 hex characters identify the installed runtime (see [`RuntimeHandler`]).

use std::fmt;
use std::str::FromStr;

pub mod kata;

/// The node installer's image as its DaemonSet runs it: where the image keeps its program,
/// its install configuration and the SNP ID blocks. The release builds the image with
/// them, the shipped resources name them, the installer reads them.
pub mod node_installer {
    /// The installer program (the image's entrypoint).
    pub const PROGRAM: &str = "/usr/bin/runtime-installer";
    /// The install configuration: the files to install, the measured kernel command line.
    pub const INSTALL_CONFIG: &str = "/config/contrast-node-install.json";
    /// The SNP ID blocks per product line (QEMU SEV-SNP platforms).
    pub const SNP_ID_BLOCKS: &str = "/config/snp-id-blocks.json";

    // What the installer puts in a runtime's directory on the node
    // (`/opt/edgeless/<handler>/`), as the Kata configuration names it.
    /// The shim containerd starts for the runtime.
    pub const SHIM: &str = "bin/containerd-shim-contrast-cc-v2";
    /// The guest kernel (a bzImage).
    pub const KERNEL: &str = "share/kata-kernel";
    /// The guest initrd (gzip'd; Contrast's is zstd and named `kata-initrd.zst`).
    pub const INITRD: &str = "share/kata-initrd.gz";
    /// The guest's dm-verity root filesystem.
    pub const ROOTFS: &str = "share/kata-containers.img";

    /// The firmware (OVMF) a QEMU VM of `tee` boots.
    pub fn firmware(tee: super::Tee) -> &'static str {
        match tee {
            super::Tee::Snp => "snp/share/OVMF.fd",
            super::Tee::Tdx => "tdx/share/OVMF.fd",
        }
    }
}

/// The trusted execution environment a platform runs workloads in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tee {
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tee::Snp => "SNP",
            Tee::Tdx => "TDX",
        })
    }
}

/// An AMD EPYC product line with SEV-SNP. It selects the AMD root key, the TCB layout, the
/// length of the chip's hardware ID and the SNP ID block of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnpProduct {
    /// 3rd generation EPYC (family 19h, Zen 3).
    Milan,
    /// 4th generation EPYC (family 19h, Zen 4; Bergamo and Siena included).
    Genoa,
    /// 5th generation EPYC (family 1Ah, Zen 5): TCB with FMC, 8-byte hardware ID.
    Turin,
}

impl SnpProduct {
    /// Every product line, oldest first.
    pub const ALL: [SnpProduct; 3] = [SnpProduct::Milan, SnpProduct::Genoa, SnpProduct::Turin];

    /// The name AMD uses in certificates and KDS paths, and the manifest's `ProductName`.
    pub fn name(self) -> &'static str {
        match self {
            SnpProduct::Milan => "Milan",
            SnpProduct::Genoa => "Genoa",
            SnpProduct::Turin => "Turin",
        }
    }

    /// Parses a product name as AMD writes it, also the VCEK's stepping form (`Milan-B0`).
    pub fn from_name(name: &str) -> Option<Self> {
        let base = name.split('-').next().unwrap_or(name);
        SnpProduct::ALL.into_iter().find(|p| p.name() == base)
    }

    /// The product line of a CPUID family and model (a v3+ report carries them; so does
    /// `/proc/cpuinfo`).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0f) => Some(SnpProduct::Milan),
            (0x19, 0x10..=0x1f | 0xa0..=0xaf) => Some(SnpProduct::Genoa),
            (0x1a, 0x00..=0x11) => Some(SnpProduct::Turin),
            _ => None,
        }
    }

    /// Length of the hardware ID that identifies a chip in its VCEK (`CHIP_ID` prefix).
    pub fn hw_id_len(self) -> usize {
        match self {
            SnpProduct::Turin => 8,
            SnpProduct::Milan | SnpProduct::Genoa => 64,
        }
    }
}

impl fmt::Display for SnpProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no SEV-SNP product line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SNP product {0:?}; expected milan, genoa or turin")]
pub struct UnknownSnpProduct(pub String);

impl FromStr for SnpProduct {
    type Err = UnknownSnpProduct;

    /// A product name in any case (`milan`, `Genoa`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SnpProduct::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownSnpProduct(s.to_owned()))
    }
}

/// A deployment platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// Azure Kubernetes Service, Cloud Hypervisor, SEV-SNP (nested CVM).
    AksClhSnp,
    /// K3s on bare metal, QEMU, SEV-SNP.
    K3sQemuSnp,
    /// K3s on bare metal, QEMU, SEV-SNP with a confidential GPU.
    K3sQemuSnpGpu,
    /// K3s on bare metal, QEMU, TDX.
    K3sQemuTdx,
    /// RKE2 on bare metal, QEMU, TDX.
    Rke2QemuTdx,
    /// Any Kubernetes on bare metal, QEMU, SEV-SNP.
    MetalQemuSnp,
    /// Any Kubernetes on bare metal, QEMU, SEV-SNP with a confidential GPU.
    MetalQemuSnpGpu,
    /// Any Kubernetes on bare metal, QEMU, TDX.
    MetalQemuTdx,
    /// Simulated SEV-SNP: real report format, locally generated signing root.
    SimSnp,
    /// Simulated TDX: real quote format, locally generated signing root.
    SimTdx,
}

impl Platform {
    /// Every platform, in a stable order (real ones first).
    pub const ALL: [Platform; 10] = [
        Platform::AksClhSnp,
        Platform::K3sQemuSnp,
        Platform::K3sQemuSnpGpu,
        Platform::K3sQemuTdx,
        Platform::Rke2QemuTdx,
        Platform::MetalQemuSnp,
        Platform::MetalQemuSnpGpu,
        Platform::MetalQemuTdx,
        Platform::SimSnp,
        Platform::SimTdx,
    ];

    /// The name as Contrast prints it, e.g. `Metal-QEMU-SNP`.
    pub fn name(self) -> &'static str {
        match self {
            Platform::AksClhSnp => "AKS-CLH-SNP",
            Platform::K3sQemuSnp => "K3s-QEMU-SNP",
            Platform::K3sQemuSnpGpu => "K3s-QEMU-SNP-GPU",
            Platform::K3sQemuTdx => "K3s-QEMU-TDX",
            Platform::Rke2QemuTdx => "RKE2-QEMU-TDX",
            Platform::MetalQemuSnp => "Metal-QEMU-SNP",
            Platform::MetalQemuSnpGpu => "Metal-QEMU-SNP-GPU",
            Platform::MetalQemuTdx => "Metal-QEMU-TDX",
            Platform::SimSnp => "Sim-SNP",
            Platform::SimTdx => "Sim-TDX",
        }
    }

    /// The TEE the platform's workloads run in.
    pub fn tee(self) -> Tee {
        match self {
            Platform::AksClhSnp
            | Platform::K3sQemuSnp
            | Platform::K3sQemuSnpGpu
            | Platform::MetalQemuSnp
            | Platform::MetalQemuSnpGpu
            | Platform::SimSnp => Tee::Snp,
            Platform::K3sQemuTdx
            | Platform::Rke2QemuTdx
            | Platform::MetalQemuTdx
            | Platform::SimTdx => Tee::Tdx,
        }
    }

    /// Whether evidence on this platform comes from the simulator rather than hardware.
    pub fn is_simulated(self) -> bool {
        matches!(self, Platform::SimSnp | Platform::SimTdx)
    }

    /// Whether the platform's runtime launches pod VMs with Contrast's SEV-SNP ID block
    /// (the QEMU SEV-SNP platforms), so that verifiers require its ID-key digest.
    pub fn uses_snp_id_blocks(self) -> bool {
        matches!(
            self,
            Platform::K3sQemuSnp
                | Platform::K3sQemuSnpGpu
                | Platform::MetalQemuSnp
                | Platform::MetalQemuSnpGpu
        )
    }

    /// Memory of a pod VM when the pod does not ask for more, in MiB.
    pub fn default_vm_memory_mib(self) -> u32 {
        match self {
            Platform::AksClhSnp => 256,
            Platform::K3sQemuSnpGpu | Platform::MetalQemuSnpGpu => 1024,
            _ => 512,
        }
    }

    /// Memory Kubernetes must account per pod besides the VM: shim (70 MiB) and VMM
    /// (100 MiB), plus the VM's default memory. Used as the RuntimeClass overhead.
    pub fn runtime_class_overhead_mib(self) -> u32 {
        self.default_vm_memory_mib() + 170
    }

    fn lowercase_name(self) -> String {
        self.name().to_ascii_lowercase()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A platform or runtime handler name that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text names no known platform.
    #[error("unknown platform {given:?}; expected one of: {}", known_platforms())]
    UnknownPlatform {
        /// What was given.
        given: String,
    },
    /// A runtime handler name without the `contrast-cc-` prefix.
    #[error(
        "runtime handler {given:?} does not start with \"contrast-cc-\"; expected contrast-cc-<platform>-<8 hex>"
    )]
    MissingHandlerPrefix {
        /// What was given.
        given: String,
    },
    /// A runtime handler name whose last part is not 8 lowercase hex characters.
    #[error(
        "runtime handler {given:?} does not end in -<8 lowercase hex>; expected contrast-cc-<platform>-<8 hex>"
    )]
    BadHandlerHash {
        /// What was given.
        given: String,
    },
    /// A runtime handler name whose middle part is not a platform.
    #[error(
        "runtime handler {given:?} names an unknown platform {platform:?}; expected one of: {}",
        known_platforms()
    )]
    BadHandlerPlatform {
        /// What was given.
        given: String,
        /// The part between the prefix and the hash.
        platform: String,
    },
}

fn known_platforms() -> String {
    Platform::ALL
        .iter()
        .map(|p| p.lowercase_name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Platform {
    type Err = ParseError;

    /// Parses a platform name in any letter case (`metal-qemu-snp`, `Metal-QEMU-SNP`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseError::UnknownPlatform {
                given: s.to_owned(),
            })
    }
}

const HANDLER_PREFIX: &str = "contrast-cc-";

/// A runtime handler (and RuntimeClass) name: `contrast-cc-<platform>-<8 hex>`.
///
/// The 8 hex characters identify the installed runtime: they are the first four bytes of
/// a SHA-256 that the firmware-refs tool computes over the platform's reference values and
/// the digests of the installed artifacts, so a changed guest image gets a new handler and
/// old and new runtimes can be installed side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuntimeHandler {
    platform: Platform,
    runtime_id: [u8; 4],
}

impl RuntimeHandler {
    /// The handler for `platform` whose runtime is identified by `runtime_digest`
    /// (only its first four bytes are used).
    pub fn new(platform: Platform, runtime_digest: &[u8; 32]) -> Self {
        let mut runtime_id = [0; 4];
        runtime_id.copy_from_slice(&runtime_digest[..4]);
        RuntimeHandler {
            platform,
            runtime_id,
        }
    }

    /// The platform the handler runs.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// The four bytes that identify the installed runtime.
    pub fn runtime_id(&self) -> [u8; 4] {
        self.runtime_id
    }
}

impl fmt::Display for RuntimeHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HANDLER_PREFIX}{}-", self.platform.lowercase_name())?;
        self.runtime_id
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl FromStr for RuntimeHandler {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest =
            s.strip_prefix(HANDLER_PREFIX)
                .ok_or_else(|| ParseError::MissingHandlerPrefix {
                    given: s.to_owned(),
                })?;
        let bad_hash = || ParseError::BadHandlerHash {
            given: s.to_owned(),
        };
        let (platform, hash) = rest.rsplit_once('-').ok_or_else(bad_hash)?;
        let runtime_id = parse_runtime_id(hash).ok_or_else(bad_hash)?;
        // Handler names are DNS labels: the platform part is lowercase there, always.
        let platform = Platform::ALL
            .into_iter()
            .find(|p| p.lowercase_name() == platform)
            .ok_or_else(|| ParseError::BadHandlerPlatform {
                given: s.to_owned(),
                platform: platform.to_owned(),
            })?;
        Ok(RuntimeHandler {
            platform,
            runtime_id,
        })
    }
}

fn parse_runtime_id(hash: &str) -> Option<[u8; 4]> {
    let bytes = hash.as_bytes();
    if bytes.len() != 8 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut id = [0; 4];
    for (slot, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(id)
}

/// An error and all its causes in one line, `: `-separated, as anyhow's `{:#}` prints
/// them: `reading the manifest m.json: No such file or directory (os error 2)`.
///
/// Our errors do not repeat their cause in their own message (the cause is their
/// [`source`](std::error::Error::source)), so wherever an error leaves as text (a log
/// field, a gRPC status, a message carried in a `String`) it goes through this, or the
/// cause is lost.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_as_contrast_prints_them_and_parse_in_any_case() {
        let table = [
            ("aks-clh-snp", Platform::AksClhSnp, "AKS-CLH-SNP", Tee::Snp),
            (
                "k3s-qemu-snp",
                Platform::K3sQemuSnp,
                "K3s-QEMU-SNP",
                Tee::Snp,
            ),
            (
                "k3s-qemu-snp-gpu",
                Platform::K3sQemuSnpGpu,
                "K3s-QEMU-SNP-GPU",
                Tee::Snp,
            ),
            (
                "k3s-qemu-tdx",
                Platform::K3sQemuTdx,
                "K3s-QEMU-TDX",
                Tee::Tdx,
            ),
            (
                "rke2-qemu-tdx",
                Platform::Rke2QemuTdx,
                "RKE2-QEMU-TDX",
                Tee::Tdx,
            ),
            (
                "metal-qemu-snp",
                Platform::MetalQemuSnp,
                "Metal-QEMU-SNP",
                Tee::Snp,
            ),
            (
                "metal-qemu-snp-gpu",
                Platform::MetalQemuSnpGpu,
                "Metal-QEMU-SNP-GPU",
                Tee::Snp,
            ),
            (
                "metal-qemu-tdx",
                Platform::MetalQemuTdx,
                "Metal-QEMU-TDX",
                Tee::Tdx,
            ),
            ("sim-snp", Platform::SimSnp, "Sim-SNP", Tee::Snp),
            ("sim-tdx", Platform::SimTdx, "Sim-TDX", Tee::Tdx),
        ];
        for (typed, platform, printed, tee) in table {
            assert_eq!(typed.parse::<Platform>(), Ok(platform));
            assert_eq!(printed.parse::<Platform>(), Ok(platform));
            assert_eq!(typed.to_uppercase().parse::<Platform>(), Ok(platform));
            assert_eq!(platform.to_string(), printed);
            assert_eq!(platform.tee(), tee);
        }
        assert_eq!(table.len(), Platform::ALL.len());
    }

    #[test]
    fn only_sim_platforms_are_simulated() {
        let simulated: Vec<_> = Platform::ALL
            .into_iter()
            .filter(|p| p.is_simulated())
            .collect();
        assert_eq!(simulated, [Platform::SimSnp, Platform::SimTdx]);
    }

    #[test]
    fn unknown_platform_lists_the_known_ones() {
        let err = "metal-qemu-sev".parse::<Platform>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown platform \"metal-qemu-sev\"; expected one of: aks-clh-snp, k3s-qemu-snp, \
             k3s-qemu-snp-gpu, k3s-qemu-tdx, rke2-qemu-tdx, metal-qemu-snp, metal-qemu-snp-gpu, \
             metal-qemu-tdx, sim-snp, sim-tdx"
        );
        assert!("".parse::<Platform>().is_err());
        assert!("metal-qemu-snp ".parse::<Platform>().is_err());
    }

    #[test]
    fn vm_memory_defaults() {
        assert_eq!(Platform::AksClhSnp.default_vm_memory_mib(), 256);
        assert_eq!(Platform::MetalQemuTdx.default_vm_memory_mib(), 512);
        assert_eq!(Platform::MetalQemuSnp.runtime_class_overhead_mib(), 682);
        assert_eq!(Platform::MetalQemuSnpGpu.default_vm_memory_mib(), 1024);
    }

    #[test]
    fn handler_names_round_trip() {
        let mut digest = [0u8; 32];
        digest[..4].copy_from_slice(&[0x1a, 0x2b, 0x3c, 0x4d]);
        digest[4] = 0xff; // beyond the four bytes that count
        for platform in Platform::ALL {
            let handler = RuntimeHandler::new(platform, &digest);
            let name = handler.to_string();
            assert_eq!(
                name,
                format!("contrast-cc-{}-1a2b3c4d", platform.name().to_lowercase())
            );
            assert_eq!(name.parse::<RuntimeHandler>(), Ok(handler));
            assert_eq!(handler.platform(), platform);
            assert_eq!(handler.runtime_id(), [0x1a, 0x2b, 0x3c, 0x4d]);
        }
        assert_eq!(
            "contrast-cc-metal-qemu-snp-1a2b3c4d"
                .parse::<RuntimeHandler>()
                .map(|h| h.platform()),
            Ok(Platform::MetalQemuSnp)
        );
    }

    #[test]
    fn malformed_handler_names_are_refused_with_the_reason() {
        let cases = [
            ("kata-cc-metal-qemu-snp-1a2b3c4d", "does not start with"),
            (
                "contrast-cc-metal-qemu-snp",
                "does not end in -<8 lowercase hex>",
            ),
            ("contrast-cc-metal-qemu-snp-1A2B3C4D", "does not end in"),
            ("contrast-cc-metal-qemu-snp-1a2b3c4", "does not end in"),
            ("contrast-cc-metal-qemu-snp-1a2b3c4d5", "does not end in"),
            ("contrast-cc-metal-qemu-snp-1a2b3c4g", "does not end in"),
            ("contrast-cc-1a2b3c4d", "does not end in"),
            (
                "contrast-cc-metal-qemu-sev-1a2b3c4d",
                "unknown platform \"metal-qemu-sev\"",
            ),
            (
                "contrast-cc-Metal-QEMU-SNP-1a2b3c4d",
                "unknown platform \"Metal-QEMU-SNP\"",
            ),
            ("contrast-cc--1a2b3c4d", "unknown platform \"\""),
        ];
        for (name, expected) in cases {
            let err = name.parse::<RuntimeHandler>().unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(
                err.contains(name),
                "{name}: error does not name the input: {err}"
            );
        }
    }

    #[test]
    fn error_chain_prints_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the manifest m.json")]
        struct Outer {
            #[source]
            source: std::io::Error,
        }
        let err = Outer {
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(
            error_chain(&err),
            "reading the manifest m.json: disk on fire"
        );
        assert_eq!(error_chain(&err.source), "disk on fire");
    }
}
