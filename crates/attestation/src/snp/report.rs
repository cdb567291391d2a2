//! The SEV-SNP attestation report (SNP ABI spec 56860, report versions 2 to 5).
//!
//! The report is kept as the exact bytes received: the signature is checked over
//! bytes 0x000..0x2A0 of those bytes, never over a re-encoding.

use std::fmt;

/// Size of an attestation report.
pub const REPORT_SIZE: usize = 0x4A0;
/// The signed part of the report: everything before the signature.
pub const SIGNED_LEN: usize = 0x2A0;

/// Offset of the SNP report inside an Azure HCL report.
const HCL_REPORT_OFFSET: usize = 32;
const HCL_MAGIC: &[u8; 4] = b"HCLA";

pub use contrast_platforms::SnpProduct;

/// A TCB version: the security patch levels of the firmware components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcbVersion {
    /// Firmware (FMC) SPL: Turin only.
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the 8-byte TCB_VERSION, whose layout depends on the product.
    pub fn from_bytes(bytes: [u8; 8], product: SnpProduct) -> Self {
        match product {
            SnpProduct::Turin => TcbVersion {
                fmc: Some(bytes[0]),
                bootloader: bytes[1],
                tee: bytes[2],
                snp: bytes[3],
                microcode: bytes[7],
            },
            SnpProduct::Milan | SnpProduct::Genoa => TcbVersion {
                fmc: None,
                bootloader: bytes[0],
                tee: bytes[1],
                snp: bytes[6],
                microcode: bytes[7],
            },
        }
    }

    /// Encodes the TCB_VERSION for `product` (the inverse of [`TcbVersion::from_bytes`]).
    pub fn to_bytes(self, product: SnpProduct) -> [u8; 8] {
        match product {
            SnpProduct::Turin => [
                self.fmc.unwrap_or(0),
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ],
            SnpProduct::Milan | SnpProduct::Genoa => [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ],
        }
    }

    /// Whether every component is at least the one in `minimum`.
    pub fn meets(&self, minimum: &TcbVersion) -> bool {
        self.bootloader >= minimum.bootloader
            && self.tee >= minimum.tee
            && self.snp >= minimum.snp
            && self.microcode >= minimum.microcode
            && self.fmc.unwrap_or(0) >= minimum.fmc.unwrap_or(0)
    }
}

impl fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// Which key signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key: per chip and TCB, certified by the ASK.
    Vcek,
    /// Versioned Loaded Endorsement Key: per cloud provider, certified by the ASVK.
    Vlek,
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
        })
    }
}

/// A report that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not 1184 bytes (and not an Azure HCL report holding one).
    #[error(
        "an SEV-SNP report is {REPORT_SIZE} bytes, got {0}; pass the raw report (or an Azure HCL report)"
    )]
    Size(usize),
    /// A report version this code does not know.
    #[error("SEV-SNP report version {0} is not supported; versions 2 to 5 are")]
    Version(u32),
    /// A signature algorithm other than ECDSA P-384 with SHA-384.
    #[error(
        "SEV-SNP report signature algorithm {0} is not supported; only 1 (ECDSA P-384 with SHA-384) is"
    )]
    SignatureAlgorithm(u32),
    /// The report is unsigned or names a reserved signing key.
    #[error(
        "SEV-SNP report signing key {0} is not a VCEK (0) or VLEK (1): the report is unsigned or malformed"
    )]
    SigningKey(u32),
}

/// An SEV-SNP attestation report, as the exact bytes received.
#[derive(Clone, PartialEq, Eq)]
pub struct SnpReport {
    raw: Box<[u8; REPORT_SIZE]>,
}

impl fmt::Debug for SnpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpReport")
            .field("version", &self.version())
            .field("measurement", &hex::encode(self.measurement()))
            .field("host_data", &hex::encode(self.host_data()))
            .finish_non_exhaustive()
    }
}

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

impl SnpReport {
    /// Reads a raw 1184-byte report.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReportError> {
        let raw: [u8; REPORT_SIZE] = bytes
            .try_into()
            .map_err(|_| ReportError::Size(bytes.len()))?;
        let report = SnpReport { raw: Box::new(raw) };
        let version = report.version();
        if !(2..=5).contains(&version) {
            return Err(ReportError::Version(version));
        }
        let algorithm = le_u32(&report.raw[..], 0x34);
        if algorithm != 1 {
            return Err(ReportError::SignatureAlgorithm(algorithm));
        }
        report.signing_key()?;
        Ok(report)
    }

    /// Reads a raw report, or the report inside an Azure HCL report (at byte 32).
    pub fn from_bytes_or_hcl(bytes: &[u8]) -> Result<(Self, bool), ReportError> {
        if bytes.len() >= HCL_REPORT_OFFSET + REPORT_SIZE && bytes.starts_with(HCL_MAGIC) {
            let inner = &bytes[HCL_REPORT_OFFSET..HCL_REPORT_OFFSET + REPORT_SIZE];
            return SnpReport::from_bytes(inner).map(|r| (r, true));
        }
        SnpReport::from_bytes(bytes).map(|r| (r, false))
    }

    /// The bytes as received.
    pub fn as_bytes(&self) -> &[u8; REPORT_SIZE] {
        &self.raw
    }

    /// The signed bytes, 0x000..0x2A0.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..SIGNED_LEN]
    }

    fn field<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.raw[offset..offset + N]);
        out
    }

    /// Report format version (2, 3, 4 or 5).
    pub fn version(&self) -> u32 {
        le_u32(&self.raw[..], 0x00)
    }
    /// Guest SVN from the ID block.
    pub fn guest_svn(&self) -> u32 {
        le_u32(&self.raw[..], 0x04)
    }
    /// The guest policy the VM was launched with.
    pub fn policy(&self) -> u64 {
        le_u64(&self.raw[..], 0x08)
    }
    /// Family ID from the ID block.
    pub fn family_id(&self) -> [u8; 16] {
        self.field(0x10)
    }
    /// Image ID from the ID block.
    pub fn image_id(&self) -> [u8; 16] {
        self.field(0x20)
    }
    /// The VMPL that requested the report.
    pub fn vmpl(&self) -> u32 {
        le_u32(&self.raw[..], 0x30)
    }
    /// CURRENT_TCB, raw.
    pub fn current_tcb_raw(&self) -> [u8; 8] {
        self.field(0x38)
    }
    /// PLATFORM_INFO bits.
    pub fn platform_info(&self) -> u64 {
        le_u64(&self.raw[..], 0x40)
    }
    /// KEY_INFO (signer info) bits.
    pub fn key_info(&self) -> u32 {
        le_u32(&self.raw[..], 0x48)
    }
    /// Whether an author key was given in the ID block (KEY_INFO bit 0).
    pub fn author_key_en(&self) -> bool {
        self.key_info() & 1 != 0
    }
    /// Whether CHIP_ID is masked (zero) (KEY_INFO bit 1).
    pub fn mask_chip_key(&self) -> bool {
        self.key_info() & 2 != 0
    }
    /// The key that signed the report.
    pub fn signing_key(&self) -> Result<SigningKey, ReportError> {
        match self.key_info() >> 2 & 7 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            other => Err(ReportError::SigningKey(other)),
        }
    }
    /// REPORT_DATA, chosen by the guest.
    pub fn report_data(&self) -> [u8; 64] {
        self.field(0x50)
    }
    /// MEASUREMENT, the launch digest.
    pub fn measurement(&self) -> [u8; 48] {
        self.field(0x90)
    }
    /// HOST_DATA, set by the host at launch (Contrast: the policy hash).
    pub fn host_data(&self) -> [u8; 32] {
        self.field(0xC0)
    }
    /// SHA-384 of the ID key that signed the ID block.
    pub fn id_key_digest(&self) -> [u8; 48] {
        self.field(0xE0)
    }
    /// SHA-384 of the author key.
    pub fn author_key_digest(&self) -> [u8; 48] {
        self.field(0x110)
    }
    /// REPORT_ID.
    pub fn report_id(&self) -> [u8; 32] {
        self.field(0x140)
    }
    /// REPORT_ID_MA.
    pub fn report_id_ma(&self) -> [u8; 32] {
        self.field(0x160)
    }
    /// REPORTED_TCB (the TCB of the key that signed), raw.
    pub fn reported_tcb_raw(&self) -> [u8; 8] {
        self.field(0x180)
    }
    /// CPUID family, model and stepping (report version 3 and later).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version() >= 3).then(|| (self.raw[0x188], self.raw[0x189], self.raw[0x18A]))
    }
    /// CHIP_ID (zero when masked; on Turin only the first 8 bytes are set).
    pub fn chip_id(&self) -> [u8; 64] {
        self.field(0x1A0)
    }
    /// COMMITTED_TCB, raw.
    pub fn committed_tcb_raw(&self) -> [u8; 8] {
        self.field(0x1E0)
    }
    /// Current firmware version (build, minor, major).
    pub fn current_version(&self) -> (u8, u8, u8) {
        (self.raw[0x1E8], self.raw[0x1E9], self.raw[0x1EA])
    }
    /// Committed firmware version (build, minor, major).
    pub fn committed_version(&self) -> (u8, u8, u8) {
        (self.raw[0x1EC], self.raw[0x1ED], self.raw[0x1EE])
    }
    /// LAUNCH_TCB, raw.
    pub fn launch_tcb_raw(&self) -> [u8; 8] {
        self.field(0x1F0)
    }
    /// LAUNCH_MIT_VECTOR (report version 5 and later).
    pub fn launch_mitigation_vector(&self) -> Option<u64> {
        (self.version() >= 5).then(|| le_u64(&self.raw[..], 0x1F8))
    }
    /// CURRENT_MIT_VECTOR (report version 5 and later).
    pub fn current_mitigation_vector(&self) -> Option<u64> {
        (self.version() >= 5).then(|| le_u64(&self.raw[..], 0x200))
    }

    /// The signature as the fixed-size big-endian `r ‖ s` of ECDSA P-384, or `None` if a
    /// component does not fit 48 bytes (then no key can have made it).
    pub fn signature_fixed(&self) -> Option<[u8; 96]> {
        // R and S are 72-byte little-endian fields at 0x2A0 and 0x2E8.
        let mut fixed = [0u8; 96];
        for (i, offset) in [0x2A0, 0x2E8].into_iter().enumerate() {
            let component = &self.raw[offset..offset + 72];
            if component[48..].iter().any(|b| *b != 0) {
                return None;
            }
            for (j, byte) in component[..48].iter().rev().enumerate() {
                fixed[i * 48 + j] = *byte;
            }
        }
        Some(fixed)
    }

    /// The product the report says it comes from (v3+ CPUID), if it says.
    pub fn product_from_cpuid(&self) -> Option<SnpProduct> {
        self.cpuid()
            .and_then(|(family, model, _)| SnpProduct::from_cpuid(family, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(version: u32) -> Vec<u8> {
        let mut raw = vec![0u8; REPORT_SIZE];
        raw[0..4].copy_from_slice(&version.to_le_bytes());
        raw[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
        raw
    }

    #[test]
    fn refuses_wrong_size_version_algorithm_and_signer() {
        assert_eq!(
            SnpReport::from_bytes(&[0; 100]),
            Err(ReportError::Size(100))
        );
        assert_eq!(
            SnpReport::from_bytes(&report_with(1)),
            Err(ReportError::Version(1))
        );
        assert_eq!(
            SnpReport::from_bytes(&report_with(6)),
            Err(ReportError::Version(6))
        );
        let mut raw = report_with(2);
        raw[0x34] = 2;
        assert_eq!(
            SnpReport::from_bytes(&raw),
            Err(ReportError::SignatureAlgorithm(2))
        );
        let mut raw = report_with(2);
        raw[0x48] = 7 << 2;
        assert_eq!(SnpReport::from_bytes(&raw), Err(ReportError::SigningKey(7)));
        for version in 2..=5 {
            assert!(SnpReport::from_bytes(&report_with(version)).is_ok());
        }
    }

    #[test]
    fn tcb_layouts_round_trip() {
        let turin = [0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0x47];
        let tcb = TcbVersion::from_bytes(turin, SnpProduct::Turin);
        assert_eq!(
            tcb,
            TcbVersion {
                fmc: Some(0),
                bootloader: 1,
                tee: 0,
                snp: 2,
                microcode: 71
            }
        );
        assert_eq!(tcb.to_bytes(SnpProduct::Turin), turin);
        let milan = [3, 0, 0, 0, 0, 0, 8, 115];
        let tcb = TcbVersion::from_bytes(milan, SnpProduct::Milan);
        assert_eq!(
            (tcb.bootloader, tcb.snp, tcb.microcode, tcb.fmc),
            (3, 8, 115, None)
        );
        assert_eq!(tcb.to_bytes(SnpProduct::Milan), milan);
    }

    #[test]
    fn products_from_cpuid_and_names() {
        assert_eq!(SnpProduct::from_cpuid(0x19, 0x01), Some(SnpProduct::Milan));
        assert_eq!(SnpProduct::from_cpuid(0x19, 0x11), Some(SnpProduct::Genoa));
        assert_eq!(SnpProduct::from_cpuid(0x19, 0xa0), Some(SnpProduct::Genoa));
        assert_eq!(SnpProduct::from_cpuid(0x1a, 0x02), Some(SnpProduct::Turin));
        assert_eq!(SnpProduct::from_cpuid(0x17, 0x01), None);
        assert_eq!(SnpProduct::from_name("Milan-B0"), Some(SnpProduct::Milan));
        assert_eq!(SnpProduct::from_name("Genoa"), Some(SnpProduct::Genoa));
        assert_eq!(SnpProduct::from_name("Naples"), None);
    }

    #[test]
    fn oversized_signature_components_are_refused() {
        let mut raw = report_with(2);
        raw[0x2A0 + 48] = 1;
        let report = SnpReport::from_bytes(&raw).unwrap();
        assert_eq!(report.signature_fixed(), None);
    }
}
