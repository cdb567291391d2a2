//! Object identifiers of the certificate profiles (dotted form, compared with
//! `Oid::to_id_string`). One list for the verifiers and the simulator, so the simulator
//! issues exactly what the verifiers read.

/// commonName.
pub const CN: &str = "2.5.4.3";
/// organizationName.
pub const O: &str = "2.5.4.10";
/// organizationalUnitName.
pub const OU: &str = "2.5.4.11";
/// basicConstraints.
pub const BASIC_CONSTRAINTS: &str = "2.5.29.19";
/// keyUsage.
pub const KEY_USAGE: &str = "2.5.29.15";
/// RSASSA-PSS, AMD's certificate signature algorithm.
pub const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
/// MGF1, a parameter of RSASSA-PSS.
pub const MGF1: &str = "1.2.840.113549.1.1.8";
/// SHA-384.
pub const SHA384: &str = "2.16.840.1.101.3.4.2.2";
/// ECDSA with SHA-256, Intel's certificate signature algorithm.
pub const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
/// An elliptic-curve public key.
pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// AMD VCEK/VLEK extension: structure version.
pub const AMD_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
/// AMD VCEK/VLEK extension: product name (IA5String, `Milan-B0`).
pub const AMD_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
/// AMD VCEK/VLEK extension: boot loader SPL.
pub const AMD_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
/// AMD VCEK/VLEK extension: TEE SPL.
pub const AMD_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
/// AMD VCEK/VLEK extension: SNP SPL.
pub const AMD_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
/// AMD VCEK/VLEK extensions: the reserved SPLs 4 to 7.
pub const AMD_RESERVED_SPLS: [&str; 4] = [
    "1.3.6.1.4.1.3704.1.3.4",
    "1.3.6.1.4.1.3704.1.3.5",
    "1.3.6.1.4.1.3704.1.3.6",
    "1.3.6.1.4.1.3704.1.3.7",
];
/// AMD VCEK/VLEK extension: microcode SPL.
pub const AMD_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
/// AMD VCEK/VLEK extension: FMC SPL (Turin).
pub const AMD_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
/// AMD VCEK extension: hardware ID (the chip ID, raw bytes).
pub const AMD_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

/// Intel PCK certificate: the SGX extension (a SEQUENCE of OID/value pairs under this arc).
pub const SGX_EXTENSION: &str = "1.2.840.113741.1.13.1";

/// aTLS: a Contrast SEV-SNP attestation document (go-sev-guest `Attestation` protobuf).
pub const ATLS_SNP: &str = "1.3.9901.2.1";
/// aTLS: a Contrast TDX attestation document (go-tdx-guest `QuoteV4` protobuf).
pub const ATLS_TDX: &str = "1.3.9901.2.2";
/// aTLS: a simulated SEV-SNP attestation document (same format as [`ATLS_SNP`]).
///
/// Simulated evidence lives under 2.999, the arc X.660 reserves for examples, outside
/// Contrast's 1.3.9901: a Contrast verifier never even looks at it, and ours accepts it
/// only on the simulated platforms.
pub const ATLS_SIMULATED_SNP: &str = "2.999.1313.1";
/// aTLS: a simulated TDX attestation document (same format as [`ATLS_TDX`]).
pub const ATLS_SIMULATED_TDX: &str = "2.999.1313.2";
/// Mesh certificates: the workload secret ID (DER OCTET STRING of its UTF-8 bytes).
pub const WORKLOAD_SECRET_ID: &str = "1.3.9901.3.1";
