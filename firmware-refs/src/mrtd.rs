//! TDX MRTD: the TDX module's build-time measurement of the TDVF sections of an OVMF image
//! (docs/attestation.md §3.1; TDX module ABI, TDH.MEM.PAGE.ADD and TDH.MR.EXTEND).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{self, SHA384};

use crate::ovmf::{Ovmf, OvmfError, TDVF_ATTR_MR_EXTEND, TDVF_ATTR_PAGE_AUG, TdvfSection};

const PAGE: u64 = 4096;
const CHUNK: usize = 256;

/// The order in which the VMM adds and extends a section's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MrtdOrder {
    /// All pages of a section are added, then all its chunks extended (QEMU 8, and what
    /// Contrast's tdx-measure computes). The default.
    #[default]
    TwoPass,
    /// Each page is added and then its 16 chunks extended (QEMU ≥ 9).
    SinglePass,
}

impl fmt::Display for MrtdOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MrtdOrder::TwoPass => "two-pass",
            MrtdOrder::SinglePass => "single-pass",
        })
    }
}

/// An order name that is not `two-pass` or `single-pass`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown MRTD order {0:?}; expected two-pass (QEMU 8, Contrast) or single-pass (QEMU 9+)")]
pub struct UnknownMrtdOrder(pub String);

impl FromStr for MrtdOrder {
    type Err = UnknownMrtdOrder;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "two-pass" => Ok(MrtdOrder::TwoPass),
            "single-pass" => Ok(MrtdOrder::SinglePass),
            _ => Err(UnknownMrtdOrder(s.to_owned())),
        }
    }
}

/// Something that keeps MRTD from being computed.
#[derive(Debug, thiserror::Error)]
pub enum MrtdError {
    /// The image is unusable.
    #[error(transparent)]
    Ovmf(#[from] OvmfError),
    /// A section that is not whole pages, or extended data that is not whole chunks.
    #[error("TDVF section {index} (GPA {gpa:#x}): {what} {size:#x} is not a multiple of {unit:#x}")]
    Misaligned {
        /// Position in the descriptor.
        index: usize,
        /// Its GPA.
        gpa: u64,
        /// Which size.
        what: &'static str,
        /// The size.
        size: u64,
        /// The unit it must be a multiple of.
        unit: u64,
    },
}

/// The 128-byte record of one TDX module operation on `gpa`.
fn record(op: &[u8], gpa: u64) -> [u8; 128] {
    let mut r = [0u8; 128];
    r[..op.len()].copy_from_slice(op);
    r[16..24].copy_from_slice(&gpa.to_le_bytes());
    r
}

fn check(index: usize, s: &TdvfSection) -> Result<(), MrtdError> {
    let misaligned = |what, size, unit| MrtdError::Misaligned {
        index,
        gpa: s.memory_address,
        what,
        size,
        unit,
    };
    if !s.memory_data_size.is_multiple_of(PAGE) || !s.memory_address.is_multiple_of(PAGE) {
        return Err(misaligned(
            "memory size or address",
            s.memory_data_size,
            PAGE,
        ));
    }
    if s.attributes & TDVF_ATTR_MR_EXTEND != 0 {
        if !(s.raw_data_size as usize).is_multiple_of(CHUNK) {
            return Err(misaligned(
                "raw data size",
                s.raw_data_size.into(),
                CHUNK as u64,
            ));
        }
        if u64::from(s.raw_data_size) > s.memory_data_size {
            return Err(misaligned(
                "raw data size (larger than memory)",
                s.raw_data_size.into(),
                PAGE,
            ));
        }
    }
    Ok(())
}

/// MRTD of a TD launched with `ovmf`. Sections with the PAGE_AUG attribute are added after
/// launch and do not count; sections with MR_EXTEND have their image data extended.
pub fn mrtd(ovmf: &Ovmf, order: MrtdOrder) -> Result<[u8; 48], MrtdError> {
    let sections = ovmf.tdvf_sections()?;
    let mut ctx = digest::Context::new(&SHA384);
    for (index, s) in sections.iter().enumerate() {
        check(index, s)?;
        if s.attributes & TDVF_ATTR_PAGE_AUG != 0 {
            continue;
        }
        let extended: &[u8] = if s.attributes & TDVF_ATTR_MR_EXTEND != 0 {
            // Checked by Ovmf::tdvf_sections.
            ovmf.section_data(s).unwrap_or_default()
        } else {
            &[]
        };
        let pages = (0..s.memory_data_size / PAGE).map(|i| s.memory_address + i * PAGE);
        let extend = |ctx: &mut digest::Context, gpa: u64, chunk: &[u8]| {
            ctx.update(&record(b"MR.EXTEND", gpa));
            ctx.update(chunk);
        };
        match order {
            MrtdOrder::TwoPass => {
                for gpa in pages {
                    ctx.update(&record(b"MEM.PAGE.ADD", gpa));
                }
                for (i, chunk) in extended.chunks_exact(CHUNK).enumerate() {
                    extend(&mut ctx, s.memory_address + (i * CHUNK) as u64, chunk);
                }
            }
            MrtdOrder::SinglePass => {
                let mut chunks = extended.chunks_exact(CHUNK).enumerate();
                for gpa in pages {
                    ctx.update(&record(b"MEM.PAGE.ADD", gpa));
                    for (i, chunk) in chunks.by_ref().take(PAGE as usize / CHUNK) {
                        extend(&mut ctx, s.memory_address + (i * CHUNK) as u64, chunk);
                    }
                }
            }
        }
    }
    let mut out = [0u8; 48];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}
