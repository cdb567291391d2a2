//! OVMF images: the GUID-keyed footer table near the end of the image, the SEV metadata
//! ("ASEV") it points to, and the TDVF descriptor ("TDVF") for TDX.
//!
//! Every offset read from the image is bounds-checked: a truncated or crafted image gives
//! an [`OvmfError`] naming the structure, never a panic.

use std::fmt;
use std::ops::Range;
use std::path::Path;

/// A GUID as OVMF stores it (mixed-endian, the byte order of `uuid.bytes_le`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The GUID of the canonical text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    /// Only for constants: a malformed literal fails to compile.
    pub(crate) const fn from_text(text: &str) -> Guid {
        let s = text.as_bytes();
        assert!(s.len() == 36, "GUID text must have 36 characters");
        // Byte i of the big-endian form starts at this character.
        const STARTS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        // The first three fields are stored little-endian.
        const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            let at = STARTS[ORDER[i]];
            out[i] = nibble(s[at]) << 4 | nibble(s[at + 1]);
            i += 1;
        }
        Guid(out)
    }
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("GUID text has a non-hex character"),
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]
        )?;
        write!(f, "{}-{}", hex::encode(&b[8..10]), hex::encode(&b[10..]))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The footer entry that closes the table.
pub const TABLE_FOOTER_GUID: Guid = Guid::from_text("96b582de-1fb2-45f7-baea-a366c55a082d");
/// SEV-ES reset block: the AP reset EIP.
pub const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::from_text("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// Offset (from the end) of the SEV metadata.
pub const SEV_METADATA_GUID: Guid = Guid::from_text("dc886566-984a-4798-a75e-5585a7bf67cc");
/// GPA and size of the SEV kernel hashes table.
pub const SEV_HASH_TABLE_RV_GUID: Guid = Guid::from_text("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// Offset (from the end) of the TDVF descriptor.
pub const TDX_METADATA_OFFSET_GUID: Guid = Guid::from_text("e47a6535-984a-4798-865e-4685a7bf8ec2");

/// The footer table ends this many bytes before the end of the image.
const TABLE_END_FROM_IMAGE_END: usize = 32;
/// u16 size + GUID.
const ENTRY_HEADER_LEN: usize = 18;
const FOUR_GIB: u64 = 1 << 32;

/// Something wrong with an OVMF image.
#[derive(Debug, thiserror::Error)]
pub enum OvmfError {
    /// The image could not be read.
    #[error("reading the OVMF image {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The image has no footer table, so it carries neither SEV nor TDX metadata.
    #[error(
        "the OVMF image has no GUID footer table (GUID {TABLE_FOOTER_GUID} 50 bytes before its end): \
         it is not an OVMF build for confidential VMs; use the unified OVMF.fd of a build with SEV/TDX support"
    )]
    NoFooterTable,
    /// The footer table is inconsistent.
    #[error("the OVMF footer table is malformed: {0}; the image is truncated or not OVMF")]
    BadFooterTable(String),
    /// The same GUID appears twice in the footer table.
    #[error("the OVMF footer table has GUID {0} twice; refusing to guess which one counts")]
    DuplicateEntry(Guid),
    /// A footer entry is shorter than its fields.
    #[error("the OVMF footer entry {guid} has {len} data bytes, expected at least {needed}")]
    ShortEntry {
        /// The entry.
        guid: Guid,
        /// Its data length.
        len: usize,
        /// What it must have.
        needed: usize,
    },
    /// No SEV metadata: the firmware cannot launch an SEV-SNP guest.
    #[error(
        "the OVMF image has no SEV metadata (footer GUID {SEV_METADATA_GUID}): it cannot launch an \
         SEV-SNP guest, and its launch digest would be meaningless; use an OVMF build with SEV \
         support (e.g. Debian's OVMF.fd or OVMF_CODE.fd, not OVMF_CODE_4M.fd, or the AmdSevX64 build)"
    )]
    NoSevMetadata,
    /// The SEV metadata is malformed.
    #[error("the OVMF SEV metadata (\"ASEV\") is malformed: {0}")]
    BadSevMetadata(String),
    /// An SEV metadata section of a type this tool does not know.
    #[error(
        "OVMF SEV metadata section {index} has unknown type {section_type:#x}; known types are \
         1 (SNP_SEC_MEM), 2 (SNP_SECRETS), 3 (CPUID), 4 (SVSM_CAA) and 0x10 (SNP_KERNEL_HASHES)"
    )]
    UnknownSevSection {
        /// Position in the metadata.
        index: usize,
        /// The type found.
        section_type: u32,
    },
    /// No SEV-ES reset block, so the APs' start address is unknown.
    #[error(
        "the OVMF image has no SEV-ES reset block (footer GUID {SEV_ES_RESET_BLOCK_GUID}): the \
         application processors' reset address is unknown; use an OVMF build with SEV support"
    )]
    NoResetBlock,
    /// No TDVF descriptor: the firmware cannot launch a TD.
    #[error(
        "the OVMF image has no TDX metadata (footer GUID {TDX_METADATA_OFFSET_GUID}): it cannot \
         launch a TDX guest; use the unified OVMF.fd of a build with TDX support"
    )]
    NoTdvfMetadata,
    /// The TDVF descriptor is malformed.
    #[error("the OVMF TDX metadata (\"TDVF\") is malformed: {0}")]
    BadTdvfMetadata(String),
}

/// The type of an SEV metadata section (edk2 `OvmfSevMetadata.asm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SevSectionType {
    /// Memory the firmware accepts itself (measured as zero pages).
    SnpSecMem,
    /// The secrets page.
    SnpSecrets,
    /// The CPUID page.
    Cpuid,
    /// The SVSM calling area.
    SvsmCaa,
    /// The page holding the kernel, initrd and command line hashes.
    SnpKernelHashes,
}

/// One SEV metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevSection {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What the section is.
    pub section_type: SevSectionType,
}

/// TDVF section type: the configuration firmware volume (UEFI variables).
pub const TDVF_SECTION_CFV: u32 = 1;
/// TDVF attribute: the VMM extends the section's content into MRTD.
pub const TDVF_ATTR_MR_EXTEND: u32 = 1;
/// TDVF attribute: the pages are added after launch (TDH.MEM.PAGE.AUG), not measured.
pub const TDVF_ATTR_PAGE_AUG: u32 = 2;

/// One TDVF section (TDX Virtual Firmware Design Guide, TDVF descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's data in the image.
    pub data_offset: u32,
    /// Size of the section's data in the image.
    pub raw_data_size: u32,
    /// Guest physical address.
    pub memory_address: u64,
    /// Size in guest memory.
    pub memory_data_size: u64,
    /// Section type (0 BFV, 1 CFV, 2 TD_HOB, 3 TEMP_MEM, …).
    pub section_type: u32,
    /// Attribute bits ([`TDVF_ATTR_MR_EXTEND`], [`TDVF_ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

/// A parsed OVMF image.
#[derive(Clone)]
pub struct Ovmf {
    data: Vec<u8>,
    /// Footer table entries: GUID → range of the entry's data in `data`.
    entries: Vec<(Guid, Range<usize>)>,
}

impl fmt::Debug for Ovmf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ovmf")
            .field("len", &self.data.len())
            .field(
                "entries",
                &self.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

pub(crate) fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(crate) fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(crate) fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        data.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

impl Ovmf {
    /// Reads and parses the image at `path`.
    pub fn read(path: &Path) -> Result<Ovmf, OvmfError> {
        let data = std::fs::read(path).map_err(|source| OvmfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ovmf::parse(data)
    }

    /// Parses the footer table of an image.
    pub fn parse(data: Vec<u8>) -> Result<Ovmf, OvmfError> {
        let bad = |m: &str| OvmfError::BadFooterTable(m.to_owned());
        let footer_at = data
            .len()
            .checked_sub(TABLE_END_FROM_IMAGE_END + ENTRY_HEADER_LEN)
            .ok_or(OvmfError::NoFooterTable)?;
        if data[footer_at + 2..footer_at + ENTRY_HEADER_LEN] != TABLE_FOOTER_GUID.0 {
            return Err(OvmfError::NoFooterTable);
        }
        let total = usize::from(u16_at(&data, footer_at).ok_or(OvmfError::NoFooterTable)?);
        let table_len = total
            .checked_sub(ENTRY_HEADER_LEN)
            .ok_or_else(|| bad("its size is smaller than the footer entry"))?;
        let table_start = footer_at
            .checked_sub(table_len)
            .ok_or_else(|| bad("its size runs past the start of the image"))?;
        // Entries are walked backwards from the footer: [data][u16 size][GUID].
        let mut end = footer_at;
        let mut entries: Vec<(Guid, Range<usize>)> = Vec::new();
        while end > table_start {
            if end - table_start < ENTRY_HEADER_LEN {
                return Err(bad("it has bytes before its first entry that are no entry"));
            }
            let header = end - ENTRY_HEADER_LEN;
            let size = usize::from(u16_at(&data, header).ok_or_else(|| bad("truncated"))?);
            let mut guid = [0; 16];
            guid.copy_from_slice(&data[header + 2..end]);
            let guid = Guid(guid);
            if size < ENTRY_HEADER_LEN || size > end - table_start {
                return Err(OvmfError::BadFooterTable(format!(
                    "entry {guid} has size {size}, outside {ENTRY_HEADER_LEN}..={}",
                    end - table_start
                )));
            }
            if entries.iter().any(|(g, _)| *g == guid) {
                return Err(OvmfError::DuplicateEntry(guid));
            }
            entries.push((guid, end - size..header));
            end -= size;
        }
        Ok(Ovmf { data, entries })
    }

    /// The image bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The GPA of the first byte: the image ends at 4 GiB.
    pub fn gpa(&self) -> u64 {
        FOUR_GIB.saturating_sub(self.data.len() as u64)
    }

    /// The data of footer entry `guid`, if present.
    pub fn entry(&self, guid: Guid) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(g, _)| *g == guid)
            .map(|(_, range)| &self.data[range.clone()])
    }

    /// The first `count` (1 or 2) u32s of entry `guid`; `None` if the entry is absent.
    fn entry_u32s(&self, guid: Guid, count: usize) -> Result<Option<[u32; 2]>, OvmfError> {
        let Some(data) = self.entry(guid) else {
            return Ok(None);
        };
        if data.len() < 4 * count {
            return Err(OvmfError::ShortEntry {
                guid,
                len: data.len(),
                needed: 4 * count,
            });
        }
        let second = if count > 1 { u32_at(data, 4) } else { None };
        Ok(Some([u32_at(data, 0).unwrap_or(0), second.unwrap_or(0)]))
    }

    /// The SEV-ES AP reset EIP.
    pub fn sev_es_reset_eip(&self) -> Result<u32, OvmfError> {
        self.entry_u32s(SEV_ES_RESET_BLOCK_GUID, 1)?
            .map(|[eip, _]| eip)
            .ok_or(OvmfError::NoResetBlock)
    }

    /// GPA and size of the SEV kernel hashes table; `None` if the image has none (a GPA of
    /// zero means the build does not support kernel hashes).
    pub fn sev_hashes_table(&self) -> Result<Option<(u32, u32)>, OvmfError> {
        Ok(self
            .entry_u32s(SEV_HASH_TABLE_RV_GUID, 2)?
            .map(|[gpa, size]| (gpa, size))
            .filter(|&(gpa, _)| gpa != 0))
    }

    /// The 16-byte header of a metadata block that a footer entry locates by its offset
    /// from the image end (SEV `ASEV`, TDX `TDVF`): its start and its size and count fields,
    /// after checking the signature and version 1.
    fn metadata_header(
        &self,
        guid: Guid,
        signature: &[u8; 4],
        missing: OvmfError,
        bad: impl Fn(String) -> OvmfError,
    ) -> Result<(usize, [u32; 2]), OvmfError> {
        let [offset, _] = self.entry_u32s(guid, 1)?.ok_or(missing)?;
        let start = self
            .data
            .len()
            .checked_sub(offset as usize)
            .ok_or_else(|| {
                bad(format!(
                    "offset {offset:#x} from the end is before the image"
                ))
            })?;
        let header = self
            .data
            .get(start..start.saturating_add(16))
            .filter(|h| h.len() == 16)
            .ok_or_else(|| bad(format!("header at {start:#x} runs past the end")))?;
        if &header[..4] != signature {
            return Err(bad(format!(
                "no {:?} signature at {start:#x}",
                String::from_utf8_lossy(signature)
            )));
        }
        let [size, version, count] = [4, 8, 12].map(|at| u32_at(header, at).unwrap_or(0));
        if version != 1 {
            return Err(bad(format!("version {version}, expected 1")));
        }
        Ok((start, [size, count]))
    }

    /// The SEV metadata sections in image order; refuses an image without them.
    pub fn sev_sections(&self) -> Result<Vec<SevSection>, OvmfError> {
        let bad = |m: String| OvmfError::BadSevMetadata(m);
        let (start, [size, count]) =
            self.metadata_header(SEV_METADATA_GUID, b"ASEV", OvmfError::NoSevMetadata, bad)?;
        let items = (size as usize)
            .checked_sub(16)
            .and_then(|len| self.data.get(start + 16..(start + 16).checked_add(len)?))
            .ok_or_else(|| bad(format!("size {size} runs outside the image")))?;
        if (count as usize).saturating_mul(12) > items.len() {
            return Err(bad(format!(
                "{count} sections do not fit in its {size} bytes"
            )));
        }
        (0..count as usize)
            .map(|index| {
                let field = |k: usize| u32_at(items, index * 12 + 4 * k).unwrap_or(0);
                let section_type = match field(2) {
                    1 => SevSectionType::SnpSecMem,
                    2 => SevSectionType::SnpSecrets,
                    3 => SevSectionType::Cpuid,
                    4 => SevSectionType::SvsmCaa,
                    0x10 => SevSectionType::SnpKernelHashes,
                    other => {
                        return Err(OvmfError::UnknownSevSection {
                            index,
                            section_type: other,
                        });
                    }
                };
                Ok(SevSection {
                    gpa: field(0),
                    size: field(1),
                    section_type,
                })
            })
            .collect()
    }

    /// The TDVF sections in image order; refuses an image without them and sections whose
    /// data lies outside the image.
    pub fn tdvf_sections(&self) -> Result<Vec<TdvfSection>, OvmfError> {
        let bad = |m: String| OvmfError::BadTdvfMetadata(m);
        let (start, [_, count]) = self.metadata_header(
            TDX_METADATA_OFFSET_GUID,
            b"TDVF",
            OvmfError::NoTdvfMetadata,
            bad,
        )?;
        let table = self
            .data
            .get(start + 16..)
            .filter(|t| t.len() / 32 >= count as usize)
            .ok_or_else(|| bad(format!("{count} sections run past the end of the image")))?;
        let sections: Vec<TdvfSection> = table
            .chunks_exact(32)
            .take(count as usize)
            .map(|s| TdvfSection {
                data_offset: u32_at(s, 0).unwrap_or(0),
                raw_data_size: u32_at(s, 4).unwrap_or(0),
                memory_address: u64_at(s, 8).unwrap_or(0),
                memory_data_size: u64_at(s, 16).unwrap_or(0),
                section_type: u32_at(s, 24).unwrap_or(0),
                attributes: u32_at(s, 28).unwrap_or(0),
            })
            .collect();
        for (i, s) in sections.iter().enumerate() {
            if self.section_data(s).is_none() {
                return Err(bad(format!(
                    "section {i}: data {:#x}+{:#x} lies outside the {:#x}-byte image (a split \
                     OVMF_CODE file? use the unified OVMF.fd)",
                    s.data_offset,
                    s.raw_data_size,
                    self.data.len()
                )));
            }
        }
        Ok(sections)
    }

    /// The image bytes of a TDVF section.
    pub fn section_data(&self, section: &TdvfSection) -> Option<&[u8]> {
        let start = section.data_offset as usize;
        self.data
            .get(start..start.checked_add(section.raw_data_size as usize)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn guid_text_round_trips_in_ovmf_byte_order() {
        // uuid.UUID("96b582de-…").bytes_le
        assert_eq!(
            hex::encode(TABLE_FOOTER_GUID.0),
            "de82b596b21ff745baeaa366c55a082d"
        );
        assert_eq!(
            TABLE_FOOTER_GUID.to_string(),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
    }

    /// An image with a footer table of `entries` (GUID, data), image size `len`.
    pub(crate) fn image(len: usize, entries: &[(Guid, Vec<u8>)]) -> Vec<u8> {
        let mut table = Vec::new();
        for (guid, data) in entries {
            table.extend_from_slice(data);
            table.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
            table.extend_from_slice(&guid.0);
        }
        table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&TABLE_FOOTER_GUID.0);
        let mut out = vec![0u8; len];
        let end = len - 32;
        out[end - table.len()..end].copy_from_slice(&table);
        out
    }

    #[test]
    fn footer_table_refusals() {
        assert!(matches!(
            Ovmf::parse(vec![0; 4096]),
            Err(OvmfError::NoFooterTable)
        ));
        assert!(matches!(
            Ovmf::parse(vec![0; 10]),
            Err(OvmfError::NoFooterTable)
        ));

        let eip = (SEV_ES_RESET_BLOCK_GUID, 0x80b004u32.to_le_bytes().to_vec());
        let ok = Ovmf::parse(image(4096, std::slice::from_ref(&eip))).unwrap();
        assert_eq!(ok.sev_es_reset_eip().unwrap(), 0x80b004);
        assert!(matches!(ok.sev_sections(), Err(OvmfError::NoSevMetadata)));
        assert!(matches!(ok.tdvf_sections(), Err(OvmfError::NoTdvfMetadata)));

        let twice = image(4096, &[eip.clone(), eip.clone()]);
        assert!(matches!(
            Ovmf::parse(twice),
            Err(OvmfError::DuplicateEntry(g)) if g == SEV_ES_RESET_BLOCK_GUID
        ));

        // An entry whose size claims more than the table holds.
        let mut bad = image(4096, std::slice::from_ref(&eip));
        let entry_size_at = 4096 - 32 - 18 - 18;
        bad[entry_size_at..entry_size_at + 2].copy_from_slice(&200u16.to_le_bytes());
        assert!(matches!(
            Ovmf::parse(bad),
            Err(OvmfError::BadFooterTable(_))
        ));

        // A table size larger than the image.
        let mut huge = image(4096, &[]);
        huge[4096 - 50..4096 - 48].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            Ovmf::parse(huge),
            Err(OvmfError::BadFooterTable(_))
        ));

        let short = image(4096, &[(SEV_ES_RESET_BLOCK_GUID, vec![1, 2])]);
        assert!(matches!(
            Ovmf::parse(short).unwrap().sev_es_reset_eip(),
            Err(OvmfError::ShortEntry { needed: 4, .. })
        ));
    }

    #[test]
    fn sev_metadata_refusals() {
        let with_metadata = |asev: &[u8]| {
            let mut img = image(8192, &[(SEV_METADATA_GUID, 4096u32.to_le_bytes().to_vec())]);
            img[4096..4096 + asev.len()].copy_from_slice(asev);
            Ovmf::parse(img).unwrap().sev_sections()
        };
        let header = |size: u32, version: u32, count: u32| {
            let mut h = b"ASEV".to_vec();
            for v in [size, version, count] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            h
        };
        let mut good = header(28, 1, 1);
        good.extend_from_slice(&[0, 0, 0x80, 0, 0, 0x10, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            with_metadata(&good).unwrap(),
            vec![SevSection {
                gpa: 0x800000,
                size: 0x1000,
                section_type: SevSectionType::SnpSecrets
            }]
        );
        let mut unknown = good.clone();
        unknown[24] = 7;
        assert!(matches!(
            with_metadata(&unknown),
            Err(OvmfError::UnknownSevSection {
                index: 0,
                section_type: 7
            })
        ));
        for bad in [
            b"XSEV"
                .iter()
                .copied()
                .chain(good[4..].iter().copied())
                .collect(),
            header(28, 2, 1),
            header(28, 1, 2),
            header(0xffff_0000, 1, 1),
            header(8, 1, 0),
        ] {
            assert!(
                matches!(with_metadata(&bad), Err(OvmfError::BadSevMetadata(_))),
                "{}",
                hex::encode(&bad)
            );
        }
    }
}
