//! Launch measurements (SNP launch digest and ID block, TDX MRTD and RTMRs) and the
//! reference values the CLI embeds.
//!
//! * [`ovmf`]: the OVMF footer table, SEV metadata and TDVF descriptor.
//! * [`snp`], [`vmsa`]: the SEV-SNP launch digest, byte-identical to sev-snp-measure 0.0.13
//!   (`--mode snp`), including measured direct boot through the SEV hashes table. Unlike
//!   the Python tool, firmware without SEV metadata is refused.
//! * [`idblock`]: Contrast's ID block, ID auth block and ID-key digest (fixed signature,
//!   recovered key); its home is `contrast_attestation::snp::idblock`, where the verifier
//!   derives the expected ID-key digest from the same code.
//! * [`mrtd`], [`rtmr`], [`ccel`]: TDX MRTD from the TDVF sections, RTMR0–3 of a direct
//!   boot as Contrast computes them, and replay of a CCEL event log.
//! * [`reference_values`]: the `reference-values.json` keyed by runtime handler, computed from
//!   an image (the CLI embeds it through `contrast-reference-values`).

pub mod ccel;
pub use contrast_attestation::snp::idblock;
pub mod mrtd;
pub mod ovmf;
pub mod reference_values;
pub mod rtmr;
pub mod snp;
pub mod vmsa;

pub use ccel::{CcelError, CcelEvent, parse_ccel_table, parse_event_log, replay};
pub use idblock::{IdBlockError, IdBlocks, id_blocks};
pub use mrtd::{MrtdError, MrtdOrder, mrtd};
pub use ovmf::{Ovmf, OvmfError};
pub use reference_values::ReferenceValuesError;
pub use rtmr::{DirectBoot, RtmrError, rtmrs};
pub use snp::{
    DirectBootFiles, KernelHashes, SnpError, SnpLaunchConfig, VcpuType, snp_launch_digest,
    snp_launch_digest_files,
};
pub use vmsa::VmmType;
