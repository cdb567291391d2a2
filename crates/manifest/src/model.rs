//! The manifest's types, field by field as Contrast (Gen-1) writes them.

use std::collections::BTreeMap;
use std::fmt;

use crate::codec::{JsonValue, json_struct};
use crate::error::DecodeError;
use crate::json::Json;

/// A hex-encoded byte string. Manifests use lowercase hex; validation enforces it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HexString(pub String);

impl HexString {
    /// Lowercase hex of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        HexString(hex::encode(bytes))
    }

    /// The decoded bytes, or `None` if the text is not hex.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        hex::decode(&self.0).ok()
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is empty (a value not filled in).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for HexString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for HexString {
    fn from(s: String) -> Self {
        HexString(s)
    }
}

impl From<&str> for HexString {
    fn from(s: &str) -> Self {
        HexString(s.to_owned())
    }
}

impl AsRef<str> for HexString {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl JsonValue for HexString {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        String::from_json(value, path).map(HexString)
    }
    fn to_json(&self) -> Json {
        Json::String(self.0.clone())
    }
    fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

/// A security version number, 0..=255.
///
/// Contrast decodes SVNs as JSON floats and range-checks them; we accept the same
/// integers (also written as `3.0`) and refuse fractions instead of truncating them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Svn(pub u8);

impl JsonValue for Svn {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        let Json::Number(n) = value else {
            return Err(DecodeError::new(
                path,
                format!("expected an SVN from 0 to 255, got {}", value.kind()),
            ));
        };
        n.as_f64()
            .filter(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v))
            // In range and integral, so the conversion is exact.
            .map(|v| Svn(v as u8))
            .ok_or_else(|| {
                DecodeError::new(path, format!("expected an SVN from 0 to 255, got {n}"))
            })
    }
    fn to_json(&self) -> Json {
        Json::Number(u64::from(self.0).into())
    }
    fn is_default(&self) -> bool {
        self.0 == 0
    }
}

/// The role of a policy: a plain workload has none.
pub const ROLE_COORDINATOR: &str = "coordinator";

json_struct! {
    /// The Coordinator manifest: which workloads (by policy hash) and which TEE
    /// configurations make up the deployment, and who may change it.
    pub struct Manifest {
        /// Policy hash (SNP `HOST_DATA`, TDX `MRCONFIGID[..32]`; 64 lowercase hex) → entry.
        ["Policies", Always]
        pub policies: BTreeMap<HexString, PolicyEntry>,
        /// The accepted TEE configurations.
        ["ReferenceValues", Always]
        pub reference_values: ReferenceValues,
        /// SHA-256 of the PKIX DER of each ECDSA key that may set the next manifest.
        /// `None` is written as `null`; empty means updates are disabled.
        ["WorkloadOwnerKeyDigests", Always]
        pub workload_owner_key_digests: Option<Vec<HexString>>,
        /// PKCS#1 DER (hex) of each RSA key the seed is shared with. Empty means the
        /// deployment cannot be recovered.
        ["SeedshareOwnerPubKeys", Always]
        pub seedshare_owner_pub_keys: Option<Vec<HexString>>,
    }
}

json_struct! {
    /// What the manifest says about one workload policy.
    pub struct PolicyEntry {
        /// Names for the workload certificate: DNS names, IP addresses or URIs.
        ["SANs", Always]
        pub sans: Option<Vec<String>>,
        /// Input to the workload-secret derivation (empty: none).
        ["WorkloadSecretID", OmitEmpty]
        pub workload_secret_id: String,
        /// `""` for a workload, [`ROLE_COORDINATOR`] for the Coordinator.
        ["Role", OmitEmpty]
        pub role: String,
    }
}

impl PolicyEntry {
    /// Whether this is the Coordinator's policy.
    pub fn is_coordinator(&self) -> bool {
        self.role == ROLE_COORDINATOR
    }
}

json_struct! {
    /// The accepted TEE configurations; evidence is accepted if any entry matches.
    pub struct ReferenceValues {
        /// SEV-SNP configurations.
        ["snp", OmitEmpty]
        pub snp: Vec<SnpReferenceValues>,
        /// TDX configurations.
        ["tdx", OmitEmpty]
        pub tdx: Vec<TdxReferenceValues>,
    }
}

json_struct! {
    /// One accepted SEV-SNP configuration.
    pub struct SnpReferenceValues {
        /// The platform these values are for (`Metal-QEMU-SNP`); empty in old manifests.
        ["Platform", Always]
        pub platform: String,
        /// `Milan`, `Genoa` or `Turin`: selects the AMD root key.
        ["ProductName", Always]
        pub product_name: String,
        /// The launch digest, 48 bytes.
        ["TrustedMeasurement", Always]
        pub trusted_measurement: HexString,
        /// The lowest TCB accepted, compared with the reported, committed and launch TCB.
        ["MinimumTCB", Always]
        pub minimum_tcb: SnpTcb,
        /// The guest policy the VM must have been launched with.
        ["GuestPolicy", Always]
        pub guest_policy: SnpGuestPolicy,
        /// The platform features the report must show.
        ["PlatformInfo", Always]
        pub platform_info: SnpPlatformInfo,
        /// Mitigations that must be present in the launch and current mitigation vector.
        ["MinimumMitigationVector", Always]
        pub minimum_mitigation_vector: u64,
        /// Chips (64-byte CHIP_ID) allowed to run the workload; none means any chip.
        ["AllowedChipIDs", Always]
        pub allowed_chip_ids: Option<Vec<HexString>>,
        /// Number of vCPUs, informative only (the launch digest already depends on it).
        ["CPUs", WhenSet]
        pub cpus: u64,
    }
}

json_struct! {
    /// A minimum SEV-SNP TCB. A field left `null` must be filled in by the user.
    pub struct SnpTcb {
        /// Boot loader SVN.
        ["BootloaderVersion", Always]
        pub bootloader_version: Option<Svn>,
        /// PSP OS (TEE) SVN.
        ["TEEVersion", Always]
        pub tee_version: Option<Svn>,
        /// SNP firmware SVN.
        ["SNPVersion", Always]
        pub snp_version: Option<Svn>,
        /// Microcode SVN.
        ["MicrocodeVersion", Always]
        pub microcode_version: Option<Svn>,
        /// Firmware (FMC) SVN: Turin only.
        ["FMCVersion", WhenSet]
        pub fmc_version: Option<Svn>,
    }
}

json_struct! {
    /// The SEV-SNP guest policy, field by field (go-sev-guest `abi.SnpPolicy` names).
    pub struct SnpGuestPolicy {
        /// Minimum ABI minor version (bits 0–7).
        ["ABIMinor", Always]
        pub abi_minor: u8,
        /// Minimum ABI major version (bits 8–15).
        ["ABIMajor", Always]
        pub abi_major: u8,
        /// SMT allowed (bit 16).
        ["SMT", Always]
        pub smt: bool,
        /// Migration agent allowed (bit 18).
        ["MigrateMA", Always]
        pub migrate_ma: bool,
        /// Debugging allowed (bit 19).
        ["Debug", Always]
        pub debug: bool,
        /// Single socket only (bit 20).
        ["SingleSocket", Always]
        pub single_socket: bool,
        /// CXL memory allowed (bit 21).
        ["CXLAllowed", Always]
        pub cxl_allowed: bool,
        /// AES-256-XTS memory encryption required (bit 22).
        ["MemAES256XTS", Always]
        pub mem_aes_256_xts: bool,
        /// RAPL must be disabled (bit 23).
        ["RAPLDis", Always]
        pub rapl_dis: bool,
        /// Ciphertext hiding for DRAM required (bit 24).
        ["CipherTextHidingDRAM", Always]
        pub ciphertext_hiding_dram: bool,
        /// Page swap disabled (bit 25).
        ["PageSwapDisable", Always]
        pub page_swap_disable: bool,
    }
}

/// Bit 17 of the SNP guest policy is reserved and must be set.
const POLICY_RESERVED_ONE: u64 = 1 << 17;
/// Bits 26..63 of the SNP guest policy must be zero.
const POLICY_MBZ: u64 = !((1 << 26) - 1);

impl SnpGuestPolicy {
    /// The 64-bit POLICY value of the SNP ABI (reserved bit 17 set).
    pub fn to_bits(&self) -> u64 {
        let flags = [
            (self.smt, 16),
            (self.migrate_ma, 18),
            (self.debug, 19),
            (self.single_socket, 20),
            (self.cxl_allowed, 21),
            (self.mem_aes_256_xts, 22),
            (self.rapl_dis, 23),
            (self.ciphertext_hiding_dram, 24),
            (self.page_swap_disable, 25),
        ];
        flags.iter().filter(|(set, _)| *set).fold(
            u64::from(self.abi_minor) | u64::from(self.abi_major) << 8 | POLICY_RESERVED_ONE,
            |bits, (_, bit)| bits | 1 << bit,
        )
    }

    /// Reads a 64-bit POLICY value; `None` if bit 17 is clear or a bit above 25 is set.
    pub fn from_bits(bits: u64) -> Option<Self> {
        if bits & POLICY_RESERVED_ONE == 0 || bits & POLICY_MBZ != 0 {
            return None;
        }
        let bit = |n: u32| bits & (1 << n) != 0;
        Some(SnpGuestPolicy {
            abi_minor: (bits & 0xff) as u8,
            abi_major: (bits >> 8 & 0xff) as u8,
            smt: bit(16),
            migrate_ma: bit(18),
            debug: bit(19),
            single_socket: bit(20),
            cxl_allowed: bit(21),
            mem_aes_256_xts: bit(22),
            rapl_dis: bit(23),
            ciphertext_hiding_dram: bit(24),
            page_swap_disable: bit(25),
            layout: Default::default(),
        })
    }
}

json_struct! {
    /// The SEV-SNP PLATFORM_INFO the report must show (go-sev-guest `abi.SnpPlatformInfo`).
    pub struct SnpPlatformInfo {
        /// SMT enabled on the host (bit 0).
        ["SMTEnabled", Always]
        pub smt_enabled: bool,
        /// Transparent SME enabled (bit 1).
        ["TSMEEnabled", Always]
        pub tsme_enabled: bool,
        /// ECC memory (bit 2).
        ["ECCEnabled", Always]
        pub ecc_enabled: bool,
        /// RAPL disabled (bit 3).
        ["RAPLDisabled", Always]
        pub rapl_disabled: bool,
        /// Ciphertext hiding for DRAM enabled (bit 4).
        ["CiphertextHidingDRAMEnabled", Always]
        pub ciphertext_hiding_dram_enabled: bool,
        /// Alias check complete (bit 5).
        ["AliasCheckComplete", Always]
        pub alias_check_complete: bool,
        /// SEV-TIO enabled (bit 7).
        ["TIOEnabled", Always]
        pub tio_enabled: bool,
    }
}

/// PLATFORM_INFO bit of each flag (bit 6 is reserved).
const PLATFORM_INFO_BITS: [u32; 7] = [0, 1, 2, 3, 4, 5, 7];

impl SnpPlatformInfo {
    /// The flags of a 64-bit PLATFORM_INFO value (reserved and unknown bits ignored).
    pub fn from_bits(bits: u64) -> Self {
        let [smt, tsme, ecc, rapl, hiding, alias, tio] =
            PLATFORM_INFO_BITS.map(|n| bits & (1 << n) != 0);
        SnpPlatformInfo {
            smt_enabled: smt,
            tsme_enabled: tsme,
            ecc_enabled: ecc,
            rapl_disabled: rapl,
            ciphertext_hiding_dram_enabled: hiding,
            alias_check_complete: alias,
            tio_enabled: tio,
            layout: Default::default(),
        }
    }

    /// The 64-bit PLATFORM_INFO value with these bits set.
    pub fn to_bits(&self) -> u64 {
        [
            (self.smt_enabled, 0),
            (self.tsme_enabled, 1),
            (self.ecc_enabled, 2),
            (self.rapl_disabled, 3),
            (self.ciphertext_hiding_dram_enabled, 4),
            (self.alias_check_complete, 5),
            (self.tio_enabled, 7),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |bits, (_, bit)| bits | 1 << bit)
    }
}

json_struct! {
    /// One accepted TDX configuration.
    pub struct TdxReferenceValues {
        /// The platform these values are for (`Metal-QEMU-TDX`); empty in old manifests.
        ["Platform", Always]
        pub platform: String,
        /// Measurement of the initial TD contents (firmware), 48 bytes.
        ["MrTd", Always]
        pub mr_td: HexString,
        /// RTMR0..RTMR3, 48 bytes each. Early Gen-1 manifests spell the key `Rtrms`.
        ["Rtmrs" | "Rtrms", Always]
        pub rtmrs: [HexString; 4],
        /// Lowest quoting enclave SVN accepted.
        ["MinimumQeSvn", Always]
        pub minimum_qe_svn: Option<u16>,
        /// Lowest provisioning certification enclave SVN accepted.
        ["MinimumPceSvn", Always]
        pub minimum_pce_svn: Option<u16>,
        /// Lowest TEE TCB SVN accepted, 16 bytes; depends on the host's TDX module.
        ["MinimumTeeTcbSvn", Always]
        pub minimum_tee_tcb_svn: HexString,
        /// Measurement of the TDX module, 48 bytes; depends on the host.
        ["MrSeam", Always]
        pub mr_seam: HexString,
        /// TD attributes, 8 bytes.
        ["TdAttributes", Always]
        pub td_attributes: HexString,
        /// Extended feature mask, 8 bytes.
        ["Xfam", Always]
        pub xfam: HexString,
        /// Platform instance IDs (16 bytes) allowed; none means any platform. A later
        /// addition: written only when set, so Gen-1 entries keep their field set.
        ["AllowedPIIDs", WhenSet]
        pub allowed_piids: Option<Vec<HexString>>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_policy_bits_match_the_snp_abi() {
        // QEMU's default policy: SMT allowed, reserved bit set.
        let qemu_default = SnpGuestPolicy::from_bits(0x30000).unwrap();
        assert!(qemu_default.smt);
        assert!(!qemu_default.debug);
        assert_eq!(qemu_default.to_bits(), 0x30000);

        // Every defined bit round-trips on its own.
        for bit in [16, 18, 19, 20, 21, 22, 23, 24, 25] {
            let bits = POLICY_RESERVED_ONE | 1 << bit;
            assert_eq!(
                SnpGuestPolicy::from_bits(bits).unwrap().to_bits(),
                bits,
                "bit {bit}"
            );
        }
        let abi = SnpGuestPolicy::from_bits(0x31f1f).unwrap();
        assert_eq!((abi.abi_major, abi.abi_minor), (0x1f, 0x1f));

        assert_eq!(
            SnpGuestPolicy::from_bits(0x10000),
            None,
            "reserved bit 17 clear"
        );
        assert_eq!(
            SnpGuestPolicy::from_bits(0x30000 | 1 << 26),
            None,
            "bit 26 set"
        );
    }

    #[test]
    fn platform_info_bits() {
        let info = SnpPlatformInfo {
            smt_enabled: true,
            tio_enabled: true,
            ..Default::default()
        };
        assert_eq!(info.to_bits(), 0b1000_0001);
        assert_eq!(SnpPlatformInfo::from_bits(0b1000_0001), info);
        assert_eq!(
            SnpPlatformInfo::from_bits(0b1011_1111).to_bits(),
            0b1011_1111
        );
    }

    #[test]
    fn svn_accepts_integers_and_refuses_fractions_and_range() {
        let parse = |s: &str| Svn::from_json(&Json::parse(s.as_bytes()).unwrap(), "x");
        assert_eq!(parse("3"), Ok(Svn(3)));
        assert_eq!(parse("3.0"), Ok(Svn(3)));
        assert_eq!(parse("255"), Ok(Svn(255)));
        for bad in ["256", "-1", "3.5", "\"3\"", "1e300"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("x: expected an SVN from 0 to 255"),
                "{bad}: {err}"
            );
        }
    }
}
