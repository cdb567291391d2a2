//! The SEV-SNP launch digest of an OVMF guest, byte-identical to sev-snp-measure 0.0.13
//! (`--mode snp`).
//!
//! The digest folds one 0x70-byte PAGE_INFO per page into a running SHA-384 (SNP ABI,
//! SNP_LAUNCH_UPDATE): every 4 KiB page of the image, then the SEV metadata sections (zero,
//! secrets and CPUID pages, or the page holding the kernel hashes table), then one VMSA per
//! vCPU. The cost is one SHA-384 over the image plus two compression blocks per page.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use aws_lc_rs::digest::{self, SHA256, SHA384};

use crate::ovmf::{Guid, Ovmf, OvmfError, SevSection, SevSectionType};
use crate::vmsa::{BSP_EIP, VmmType, vmsa_page};

const PAGE: usize = 4096;
/// The RMP records VMSA pages at GPA -1, page aligned, bits above 51 cleared.
const VMSA_GPA: u64 = 0xffff_ffff_f000;

const PAGE_NORMAL: u8 = 0x01;
const PAGE_VMSA: u8 = 0x02;
const PAGE_ZERO: u8 = 0x03;
const PAGE_UNMEASURED: u8 = 0x04;
const PAGE_SECRETS: u8 = 0x05;
const PAGE_CPUID: u8 = 0x06;

/// Something that keeps a launch digest from being computed.
#[derive(Debug, thiserror::Error)]
pub enum SnpError {
    /// The OVMF image is unusable.
    #[error(transparent)]
    Ovmf(#[from] OvmfError),
    /// No vCPUs.
    #[error("vcpus is 0; a guest needs at least one vCPU")]
    NoVcpus,
    /// A vCPU type name that sev-snp-measure does not know.
    #[error(
        "unknown vCPU type {given:?}; known types: {}",
        VcpuType::known_names()
    )]
    UnknownVcpuType {
        /// What was given.
        given: String,
    },
    /// QEMU puts the CPUID signature into the VMSA, so it must be known.
    #[error("a QEMU guest's VMSA holds the vCPU signature: give a vCPU type (e.g. EPYC-Milan)")]
    MissingVcpuType,
    /// The image size is not whole pages.
    #[error("the OVMF image is {0} bytes, not a multiple of 4096: it cannot be mapped as pages")]
    ImageNotWholePages(usize),
    /// A metadata section that is not whole pages.
    #[error("OVMF SEV metadata section at GPA {gpa:#x} has size {size:#x}, not a multiple of 4096")]
    SectionNotWholePages {
        /// The section's GPA.
        gpa: u32,
        /// Its size.
        size: u32,
    },
    /// A kernel was given but the firmware cannot measure it.
    #[error(
        "a kernel was given, but the OVMF SEV metadata has no SNP_KERNEL_HASHES section: this \
         firmware cannot measure a kernel, initrd and command line (Debian's OVMF cannot); use \
         the AmdSevX64 OVMF build, or measure without --kernel/--initrd/--append"
    )]
    NoKernelHashesSection,
    /// The kernel hashes section or table is inconsistent.
    #[error("the OVMF kernel hashes table is unusable: {0}")]
    BadKernelHashesTable(String),
    /// An input file could not be read.
    #[error("reading the {what} {path}")]
    Read {
        /// `kernel` or `initrd`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A QEMU vCPU model and its CPUID(1).EAX signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuType {
    name: &'static str,
    signature: u32,
}

/// The CPUID(1).EAX signature of family/model/stepping (AMD CPUID specification #25481).
pub const fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    family_high << 20
        | ((model >> 4) & 0xf) << 16
        | family_low << 8
        | (model & 0xf) << 4
        | (stepping & 0xf)
}

const EPYC: u32 = cpu_signature(23, 1, 2);
const ROME: u32 = cpu_signature(23, 49, 0);
const MILAN: u32 = cpu_signature(25, 1, 1);
const GENOA: u32 = cpu_signature(25, 17, 0);
const TURIN: u32 = cpu_signature(26, 0, 0);

impl VcpuType {
    /// The vCPU types sev-snp-measure 0.0.13 knows, in its order.
    pub const KNOWN: [VcpuType; 16] = [
        VcpuType::new("EPYC", EPYC),
        VcpuType::new("EPYC-v1", EPYC),
        VcpuType::new("EPYC-v2", EPYC),
        VcpuType::new("EPYC-IBPB", EPYC),
        VcpuType::new("EPYC-v3", EPYC),
        VcpuType::new("EPYC-v4", EPYC),
        VcpuType::new("EPYC-Rome", ROME),
        VcpuType::new("EPYC-Rome-v1", ROME),
        VcpuType::new("EPYC-Rome-v2", ROME),
        VcpuType::new("EPYC-Rome-v3", ROME),
        VcpuType::new("EPYC-Milan", MILAN),
        VcpuType::new("EPYC-Milan-v1", MILAN),
        VcpuType::new("EPYC-Milan-v2", MILAN),
        VcpuType::new("EPYC-Genoa", GENOA),
        VcpuType::new("EPYC-Genoa-v1", GENOA),
        VcpuType::new("EPYC-Turin", TURIN),
    ];
    /// EPYC-Milan.
    pub const MILAN: VcpuType = VcpuType::KNOWN[10];
    /// EPYC-Genoa.
    pub const GENOA: VcpuType = VcpuType::KNOWN[13];

    const fn new(name: &'static str, signature: u32) -> Self {
        VcpuType { name, signature }
    }

    /// The QEMU model name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The CPUID signature (QEMU puts it in the VMSA's RDX).
    pub fn signature(&self) -> u32 {
        self.signature
    }

    fn known_names() -> String {
        VcpuType::KNOWN.map(|t| t.name).join(", ")
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl FromStr for VcpuType {
    type Err = SnpError;

    /// Parses a model name in any letter case (`EPYC-Milan`, `epyc-v4`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VcpuType::KNOWN
            .into_iter()
            .find(|t| t.name.eq_ignore_ascii_case(s))
            .ok_or_else(|| SnpError::UnknownVcpuType {
                given: s.to_owned(),
            })
    }
}

const HASH_TABLE_GUID: Guid = Guid::from_text("9438d606-4f22-4cc9-b479-a793d411fd21");
const KERNEL_ENTRY_GUID: Guid = Guid::from_text("4de79437-abd2-427f-b835-d5b172d2045b");
const INITRD_ENTRY_GUID: Guid = Guid::from_text("44baf731-3a2f-4bd7-9af1-41e29169781d");
const CMDLINE_ENTRY_GUID: Guid = Guid::from_text("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
/// Header (GUID + u16) and three entries of GUID + u16 + SHA-256.
const HASH_TABLE_LEN: usize = 18 + 3 * 50;
/// Length of the SEV hashes table as QEMU writes it, padded to 16 bytes.
pub const PADDED_HASH_TABLE_LEN: usize = HASH_TABLE_LEN.next_multiple_of(16);

/// The SHA-256 digests of kernel, initrd and command line that QEMU puts into the SEV
/// hashes table for measured direct boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelHashes {
    /// SHA-256 of the kernel file as is.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of nothing when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line and its terminating NUL.
    pub cmdline: [u8; 32],
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&SHA256);
    parts.iter().for_each(|p| ctx.update(p));
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn sha256_file(what: &'static str, path: &Path) -> Result<[u8; 32], SnpError> {
    let read_err = |source| SnpError::Read {
        what,
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut ctx = digest::Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => ctx.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

impl KernelHashes {
    /// The hashes of in-memory inputs. A missing or empty command line is hashed as the
    /// single NUL QEMU passes.
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, append: Option<&str>) -> Self {
        KernelHashes {
            kernel: sha256(&[kernel]),
            initrd: sha256(&[initrd.unwrap_or_default()]),
            cmdline: sha256(&[append.unwrap_or_default().as_bytes(), b"\0"]),
        }
    }

    /// The hashes of files, read in chunks.
    pub fn from_files(
        kernel: &Path,
        initrd: Option<&Path>,
        append: Option<&str>,
    ) -> Result<Self, SnpError> {
        Ok(KernelHashes {
            kernel: sha256_file("kernel", kernel)?,
            initrd: match initrd {
                Some(path) => sha256_file("initrd", path)?,
                None => sha256(&[]),
            },
            cmdline: sha256(&[append.unwrap_or_default().as_bytes(), b"\0"]),
        })
    }

    /// The padded SEV hashes table (QEMU `PaddedSevHashTable`): entries in the order
    /// command line, initrd, kernel.
    pub fn table(&self) -> [u8; PADDED_HASH_TABLE_LEN] {
        let mut out = [0u8; PADDED_HASH_TABLE_LEN];
        out[..16].copy_from_slice(&HASH_TABLE_GUID.0);
        out[16..18].copy_from_slice(&(HASH_TABLE_LEN as u16).to_le_bytes());
        let entries = [
            (CMDLINE_ENTRY_GUID, &self.cmdline),
            (INITRD_ENTRY_GUID, &self.initrd),
            (KERNEL_ENTRY_GUID, &self.kernel),
        ];
        for (i, (guid, hash)) in entries.into_iter().enumerate() {
            let at = 18 + 50 * i;
            out[at..at + 16].copy_from_slice(&guid.0);
            out[at + 16..at + 18].copy_from_slice(&50u16.to_le_bytes());
            out[at + 18..at + 50].copy_from_slice(hash);
        }
        out
    }
}

/// What besides the firmware goes into the launch digest.
#[derive(Debug, Clone)]
pub struct SnpLaunchConfig {
    /// Number of vCPUs (one VMSA each).
    pub vcpus: u32,
    /// The vCPU model; required for QEMU, unused by EC2 and GCE.
    pub vcpu_type: Option<VcpuType>,
    /// The VMM.
    pub vmm: VmmType,
    /// SEV_FEATURES of the VMSAs (sev-snp-measure's `--guest-features`, default 0x1).
    pub guest_features: u64,
    /// Measured direct boot: the kernel hashes table.
    pub kernel_hashes: Option<KernelHashes>,
}

impl SnpLaunchConfig {
    /// A QEMU guest with `vcpus` vCPUs of `vcpu_type`, guest features 0x1, no kernel.
    pub fn qemu(vcpus: u32, vcpu_type: VcpuType) -> Self {
        SnpLaunchConfig {
            vcpus,
            vcpu_type: Some(vcpu_type),
            vmm: VmmType::Qemu,
            guest_features: 0x1,
            kernel_hashes: None,
        }
    }
}

/// The running launch digest (the guest context's LD).
#[derive(Debug, Clone, Copy)]
struct LaunchDigest([u8; 48]);

impl LaunchDigest {
    fn update(&mut self, page_type: u8, gpa: u64, contents: &[u8; 48]) {
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.0);
        info[48..96].copy_from_slice(contents);
        info[0x60..0x62].copy_from_slice(&0x70u16.to_le_bytes());
        info[0x62] = page_type;
        // IMI_PAGE and the VMPL permissions stay zero.
        info[0x68..0x70].copy_from_slice(&gpa.to_le_bytes());
        self.0
            .copy_from_slice(digest::digest(&SHA384, &info).as_ref());
    }

    fn update_measured(&mut self, page_type: u8, gpa: u64, page: &[u8]) {
        let mut contents = [0u8; 48];
        contents.copy_from_slice(digest::digest(&SHA384, page).as_ref());
        self.update(page_type, gpa, &contents);
    }

    fn update_empty(&mut self, page_type: u8, gpa: u32, size: u32) -> Result<(), SnpError> {
        if !(size as usize).is_multiple_of(PAGE) {
            return Err(SnpError::SectionNotWholePages { gpa, size });
        }
        for offset in (0..u64::from(size)).step_by(PAGE) {
            self.update(page_type, u64::from(gpa) + offset, &[0; 48]);
        }
        Ok(())
    }
}

/// The page holding the hashes table at its offset within the page.
fn kernel_hashes_page(
    ovmf: &Ovmf,
    section_gpa: u32,
    section_size: u32,
    hashes: &KernelHashes,
) -> Result<[u8; PAGE], SnpError> {
    let bad = |m: String| SnpError::BadKernelHashesTable(m);
    if section_size as usize != PAGE {
        return Err(bad(format!(
            "the SNP_KERNEL_HASHES section has size {section_size:#x}, expected one page"
        )));
    }
    let (table_gpa, _) = ovmf.sev_hashes_table()?.ok_or_else(|| {
        bad("the footer has no SEV hashes table address (GUID 7255371f-…)".to_owned())
    })?;
    if table_gpa & !0xfff != section_gpa {
        return Err(bad(format!(
            "the table at GPA {table_gpa:#x} is not in the SNP_KERNEL_HASHES page at {section_gpa:#x}"
        )));
    }
    let offset = (table_gpa & 0xfff) as usize;
    let mut page = [0u8; PAGE];
    page.get_mut(offset..offset + PADDED_HASH_TABLE_LEN)
        .ok_or_else(|| {
            bad(format!(
                "the table at page offset {offset:#x} does not fit in the page"
            ))
        })?
        .copy_from_slice(&hashes.table());
    Ok(page)
}

/// SHA-384 of every page of `data`. The page hashes are independent (only the PAGE_INFO
/// chain is sequential), so they are computed on all cores.
fn page_hashes(data: &[u8]) -> Vec<[u8; 48]> {
    let pages = data.len() / PAGE;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below a few hundred pages a thread costs more than it saves.
    let per_thread = pages.div_ceil(threads).max(256);
    let hash_all = |part: &[u8]| -> Vec<[u8; 48]> {
        part.chunks_exact(PAGE)
            .map(|page| {
                let mut h = [0u8; 48];
                h.copy_from_slice(digest::digest(&SHA384, page).as_ref());
                h
            })
            .collect()
    };
    let parts: Vec<&[u8]> = data[..pages * PAGE].chunks(per_thread * PAGE).collect();
    if parts.len() <= 1 {
        return hash_all(data);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| scope.spawn(|| hash_all(part)))
            .collect();
        // A hashing thread cannot panic; should it, hash that part here.
        handles
            .into_iter()
            .zip(&parts)
            .flat_map(|(h, part)| h.join().unwrap_or_else(|_| hash_all(part)))
            .collect()
    })
}

/// What the checks of a launch find in the image.
struct Checked {
    sections: Vec<SevSection>,
    ap_eip: u32,
    vcpu_sig: u32,
}

fn check(ovmf: &Ovmf, config: &SnpLaunchConfig, with_kernel: bool) -> Result<Checked, SnpError> {
    if config.vcpus == 0 {
        return Err(SnpError::NoVcpus);
    }
    let vcpu_sig = match (config.vcpu_type, config.vmm) {
        (Some(t), _) => t.signature,
        (None, VmmType::Qemu) => return Err(SnpError::MissingVcpuType),
        // EC2 and GCE put a fixed value into RDX.
        (None, _) => 0,
    };
    let sections = ovmf.sev_sections()?;
    let ap_eip = ovmf.sev_es_reset_eip()?;
    if !ovmf.data().len().is_multiple_of(PAGE) {
        return Err(SnpError::ImageNotWholePages(ovmf.data().len()));
    }
    if with_kernel
        && !sections
            .iter()
            .any(|s| s.section_type == SevSectionType::SnpKernelHashes)
    {
        return Err(SnpError::NoKernelHashesSection);
    }
    Ok(Checked {
        sections,
        ap_eip,
        vcpu_sig,
    })
}

/// The SEV-SNP launch digest of `ovmf` launched with `config`, as sev-snp-measure 0.0.13
/// `--mode snp` computes it. Unlike the Python tool, an image without SEV metadata is
/// refused.
pub fn snp_launch_digest(ovmf: &Ovmf, config: &SnpLaunchConfig) -> Result<[u8; 48], SnpError> {
    let checked = check(ovmf, config, config.kernel_hashes.is_some())?;
    fold(ovmf, &page_hashes(ovmf.data()), &checked, config)
}

/// The files of a measured direct boot.
#[derive(Debug, Clone, Copy)]
pub struct DirectBootFiles<'a> {
    /// The kernel.
    pub kernel: &'a Path,
    /// The initrd, if any.
    pub initrd: Option<&'a Path>,
    /// The command line, if any.
    pub append: Option<&'a str>,
}

/// As [`snp_launch_digest`] for files: the kernel and initrd are hashed on their own
/// threads while the firmware is read and its pages hashed. `config.kernel_hashes` is
/// replaced by the hashes of `boot`.
pub fn snp_launch_digest_files(
    ovmf: &Path,
    boot: Option<DirectBootFiles<'_>>,
    config: &SnpLaunchConfig,
) -> Result<[u8; 48], SnpError> {
    std::thread::scope(|scope| {
        let kernel = boot.map(|b| scope.spawn(move || sha256_file("kernel", b.kernel)));
        let initrd = boot
            .and_then(|b| b.initrd)
            .map(|path| scope.spawn(move || sha256_file("initrd", path)));
        let firmware = Ovmf::read(ovmf)?;
        let checked = check(&firmware, config, boot.is_some())?;
        let pages = page_hashes(firmware.data());
        let join = |handle: std::thread::ScopedJoinHandle<'_, Result<[u8; 32], SnpError>>| {
            handle.join().unwrap_or_else(|_| {
                Err(SnpError::Read {
                    what: "kernel or initrd",
                    path: String::new(),
                    source: std::io::Error::other("the hashing thread panicked"),
                })
            })
        };
        let mut config = config.clone();
        config.kernel_hashes = match (boot, kernel) {
            (Some(b), Some(kernel)) => Some(KernelHashes {
                kernel: join(kernel)?,
                initrd: match initrd {
                    Some(handle) => join(handle)?,
                    None => sha256(&[]),
                },
                cmdline: sha256(&[b.append.unwrap_or_default().as_bytes(), b"\0"]),
            }),
            _ => None,
        };
        fold(&firmware, &pages, &checked, &config)
    })
}

/// Folds the firmware pages (by their hashes), the metadata sections and the VMSAs.
fn fold(
    ovmf: &Ovmf,
    page_hashes: &[[u8; 48]],
    checked: &Checked,
    config: &SnpLaunchConfig,
) -> Result<[u8; 48], SnpError> {
    let mut ld = LaunchDigest([0; 48]);
    let base = ovmf.gpa();
    for (i, hash) in page_hashes.iter().enumerate() {
        ld.update(PAGE_NORMAL, base + (i * PAGE) as u64, hash);
    }
    for s in &checked.sections {
        match s.section_type {
            SevSectionType::SnpSecMem if config.vmm == VmmType::Gce => {
                ld.update_empty(PAGE_UNMEASURED, s.gpa, s.size)?
            }
            SevSectionType::SnpSecMem | SevSectionType::SvsmCaa => {
                ld.update_empty(PAGE_ZERO, s.gpa, s.size)?
            }
            SevSectionType::SnpSecrets => ld.update(PAGE_SECRETS, s.gpa.into(), &[0; 48]),
            // EC2 measures the CPUID pages after all other sections.
            SevSectionType::Cpuid if config.vmm == VmmType::Ec2 => {}
            SevSectionType::Cpuid => ld.update(PAGE_CPUID, s.gpa.into(), &[0; 48]),
            SevSectionType::SnpKernelHashes => match &config.kernel_hashes {
                Some(hashes) => {
                    let page = kernel_hashes_page(ovmf, s.gpa, s.size, hashes)?;
                    ld.update_measured(PAGE_NORMAL, s.gpa.into(), &page);
                }
                None => ld.update_empty(PAGE_ZERO, s.gpa, s.size)?,
            },
        }
    }
    if config.vmm == VmmType::Ec2 {
        for s in checked
            .sections
            .iter()
            .filter(|s| s.section_type == SevSectionType::Cpuid)
        {
            ld.update(PAGE_CPUID, s.gpa.into(), &[0; 48]);
        }
    }

    let features = config.guest_features;
    let bsp = vmsa_page(BSP_EIP, features, checked.vcpu_sig, config.vmm);
    ld.update_measured(PAGE_VMSA, VMSA_GPA, &bsp);
    if config.vcpus > 1 {
        // Every AP has the same VMSA: hash it once.
        let ap = vmsa_page(checked.ap_eip, features, checked.vcpu_sig, config.vmm);
        let mut ap_hash = [0u8; 48];
        ap_hash.copy_from_slice(digest::digest(&SHA384, &ap).as_ref());
        for _ in 1..config.vcpus {
            ld.update(PAGE_VMSA, VMSA_GPA, &ap_hash);
        }
    }
    tracing::debug!(vcpus = config.vcpus, digest = %hex::encode(ld.0), "SNP launch digest");
    Ok(ld.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cpu_signatures_match_amd_cpuid_encoding() {
        assert_eq!(EPYC, 0x0080_0f12);
        assert_eq!(ROME, 0x0083_0f10);
        assert_eq!(MILAN, 0x00a0_0f11);
        assert_eq!(GENOA, 0x00a1_0f10);
        assert_eq!(TURIN, 0x00b0_0f00);
        assert_eq!("epyc-milan".parse::<VcpuType>().unwrap(), VcpuType::MILAN);
        assert_eq!(VcpuType::GENOA.name(), "EPYC-Genoa");
    }

    #[test]
    fn unknown_vcpu_type_lists_the_known_ones() {
        let err = "EPYC-Zen9".parse::<VcpuType>().unwrap_err().to_string();
        assert!(err.contains("\"EPYC-Zen9\""), "{err}");
        assert!(err.contains("EPYC-Milan-v2, EPYC-Genoa"), "{err}");
    }

    #[test]
    fn hashes_table_layout() {
        let h = KernelHashes::new(b"kernel", None, None);
        let table = h.table();
        assert_eq!(table.len(), 176);
        assert_eq!(&table[16..18], &168u16.to_le_bytes());
        // cmdline first: SHA-256 of a lone NUL.
        assert_eq!(
            hex::encode(&table[36..68]),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // empty initrd
        assert_eq!(
            hex::encode(&table[86..118]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(&table[168..], &[0; 8]);
        assert_eq!(
            KernelHashes::new(b"k", Some(b""), Some("")),
            KernelHashes::new(b"k", None, None)
        );
    }
}
