//! The protobuf messages of the two attestation documents, declared by hand with prost's
//! derive macros (no build.rs, no protoc).
//!
//! Field numbers and types follow `proto/sevsnp.proto` of google/go-sev-guest (package
//! `sevsnp`) and `proto/tdx.proto` of google/go-tdx-guest (package `tdx`). Fields are
//! declared in field-number order, so prost writes them in the order Go's protobuf
//! runtime does; deprecated fields are kept so that their numbers stay taken.

use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------
// sevsnp (go-sev-guest)
// ---------------------------------------------------------------------------------------

/// `sevsnp.Attestation`: the SNP attestation document.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Attestation {
    #[prost(message, optional, tag = "1")]
    pub(crate) report: Option<Report>,
    #[prost(message, optional, tag = "2")]
    pub(crate) certificate_chain: Option<CertificateChain>,
    #[prost(message, optional, tag = "3")]
    pub(crate) product: Option<SevProduct>,
}

/// `sevsnp.Report`: the ATTESTATION_REPORT, field by field.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Report {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) guest_svn: u32,
    #[prost(uint64, tag = "3")]
    pub(crate) policy: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) family_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) image_id: Vec<u8>,
    #[prost(uint32, tag = "6")]
    pub(crate) vmpl: u32,
    #[prost(uint32, tag = "7")]
    pub(crate) signature_algo: u32,
    #[prost(uint64, tag = "8")]
    pub(crate) current_tcb: u64,
    #[prost(uint64, tag = "9")]
    pub(crate) platform_info: u64,
    /// KEY_INFO: author_key_en (bit 0), mask_chip_key (bit 1), signing_key (bits 2–4).
    #[prost(uint32, tag = "10")]
    pub(crate) signer_info: u32,
    #[prost(bytes = "vec", tag = "11")]
    pub(crate) report_data: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    pub(crate) measurement: Vec<u8>,
    #[prost(bytes = "vec", tag = "13")]
    pub(crate) host_data: Vec<u8>,
    #[prost(bytes = "vec", tag = "14")]
    pub(crate) id_key_digest: Vec<u8>,
    #[prost(bytes = "vec", tag = "15")]
    pub(crate) author_key_digest: Vec<u8>,
    #[prost(bytes = "vec", tag = "16")]
    pub(crate) report_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "17")]
    pub(crate) report_id_ma: Vec<u8>,
    #[prost(uint64, tag = "18")]
    pub(crate) reported_tcb: u64,
    #[prost(bytes = "vec", tag = "19")]
    pub(crate) chip_id: Vec<u8>,
    #[prost(uint64, tag = "20")]
    pub(crate) committed_tcb: u64,
    #[prost(uint32, tag = "21")]
    pub(crate) current_build: u32,
    #[prost(uint32, tag = "22")]
    pub(crate) current_minor: u32,
    #[prost(uint32, tag = "23")]
    pub(crate) current_major: u32,
    #[prost(uint32, tag = "24")]
    pub(crate) committed_build: u32,
    #[prost(uint32, tag = "25")]
    pub(crate) committed_minor: u32,
    #[prost(uint32, tag = "26")]
    pub(crate) committed_major: u32,
    #[prost(uint64, tag = "27")]
    pub(crate) launch_tcb: u64,
    /// The whole 512-byte signature area (r, s, reserved).
    #[prost(bytes = "vec", tag = "28")]
    pub(crate) signature: Vec<u8>,
    /// CPUID(1).EAX form of the report's family, model and stepping (version 3 and later).
    #[prost(uint32, tag = "29")]
    pub(crate) cpuid1eax_fms: u32,
    #[prost(uint64, tag = "30")]
    pub(crate) launch_mit_vector: u64,
    #[prost(uint64, tag = "31")]
    pub(crate) current_mit_vector: u64,
}

/// `sevsnp.CertificateChain`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CertificateChain {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) vcek_cert: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) ask_cert: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) ark_cert: Vec<u8>,
    /// Deprecated in the .proto; never written, ignored when read.
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) firmware_cert: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) vlek_cert: Vec<u8>,
    /// `map<string, bytes>`; a BTreeMap so the encoding is deterministic.
    #[prost(btree_map = "string, bytes", tag = "7")]
    pub(crate) extras: BTreeMap<String, Vec<u8>>,
}

/// `sevsnp.SevProduct`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SevProduct {
    /// The `SevProductName` enum (an int32 on the wire): 0 unknown, 1 Milan, 2 Genoa,
    /// 3 Turin.
    #[prost(int32, tag = "1")]
    pub(crate) name: i32,
    /// Deprecated in the .proto; never written.
    #[prost(uint32, tag = "2")]
    pub(crate) stepping: u32,
    #[prost(message, optional, tag = "3")]
    pub(crate) machine_stepping: Option<UInt32Value>,
}

/// `google.protobuf.UInt32Value`: a uint32 whose presence is visible.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UInt32Value {
    #[prost(uint32, tag = "1")]
    pub(crate) value: u32,
}

// ---------------------------------------------------------------------------------------
// tdx (go-tdx-guest)
// ---------------------------------------------------------------------------------------

/// `tdx.QuoteV4`: the TDX attestation document.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct QuoteV4 {
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<Header>,
    #[prost(message, optional, tag = "2")]
    pub(crate) td_quote_body: Option<TdQuoteBody>,
    #[prost(uint32, tag = "3")]
    pub(crate) signed_data_size: u32,
    #[prost(message, optional, tag = "4")]
    pub(crate) signed_data: Option<Ecdsa256BitQuoteV4AuthData>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) extra_bytes: Vec<u8>,
}

/// `tdx.Header`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Header {
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) attestation_key_type: u32,
    #[prost(uint32, tag = "3")]
    pub(crate) tee_type: u32,
    /// go-tdx-guest fills this with header bytes 10..12.
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) qe_svn: Vec<u8>,
    /// go-tdx-guest fills this with header bytes 8..10.
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) pce_svn: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) qe_vendor_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub(crate) user_data: Vec<u8>,
}

/// `tdx.TDQuoteBody`: the TD report 1.0 body.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TdQuoteBody {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) tee_tcb_svn: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) mr_seam: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) mr_signer_seam: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) seam_attributes: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) td_attributes: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) xfam: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub(crate) mr_td: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    pub(crate) mr_config_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "9")]
    pub(crate) mr_owner: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub(crate) mr_owner_config: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "11")]
    pub(crate) rtmrs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "12")]
    pub(crate) report_data: Vec<u8>,
}

/// `tdx.Ecdsa256BitQuoteV4AuthData`: the quote signature data.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Ecdsa256BitQuoteV4AuthData {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) ecdsa_attestation_key: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub(crate) certification_data: Option<CertificationData>,
}

/// `tdx.CertificationData`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CertificationData {
    #[prost(uint32, tag = "1")]
    pub(crate) certificate_data_type: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) size: u32,
    #[prost(message, optional, tag = "3")]
    pub(crate) qe_report_certification_data: Option<QeReportCertificationData>,
}

/// `tdx.QEReportCertificationData`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct QeReportCertificationData {
    #[prost(message, optional, tag = "1")]
    pub(crate) qe_report: Option<EnclaveReport>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) qe_report_signature: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub(crate) qe_auth_data: Option<QeAuthData>,
    #[prost(message, optional, tag = "4")]
    pub(crate) pck_certificate_chain_data: Option<PckCertificateChainData>,
}

/// `tdx.PCKCertificateChainData`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PckCertificateChainData {
    #[prost(uint32, tag = "1")]
    pub(crate) certificate_data_type: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) size: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) pck_cert_chain: Vec<u8>,
}

/// `tdx.QeAuthData`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct QeAuthData {
    #[prost(uint32, tag = "1")]
    pub(crate) parsed_data_size: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) data: Vec<u8>,
}

/// `tdx.EnclaveReport`: the quoting enclave's SGX report.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EnclaveReport {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) cpu_svn: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub(crate) misc_select: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) reserved1: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) attributes: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) mr_enclave: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) reserved2: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub(crate) mr_signer: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    pub(crate) reserved3: Vec<u8>,
    #[prost(uint32, tag = "9")]
    pub(crate) isv_prod_id: u32,
    #[prost(uint32, tag = "10")]
    pub(crate) isv_svn: u32,
    #[prost(bytes = "vec", tag = "11")]
    pub(crate) reserved4: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    pub(crate) report_data: Vec<u8>,
}
