//! The SEV-SNP extended-report certificate table (GHCB specification 56421): what
//! configfs-tsm returns in `auxblob` for `sev_guest`, and what `SNP_GET_EXT_REPORT` writes
//! to its certificate buffer.
//!
//! Layout: entries of 24 bytes, `{GUID (16 bytes), offset (u32 LE), length (u32 LE)}`,
//! ended by an all-zero entry; then the DER certificates, each at its `offset` from the
//! start of the table. Bytes after the last certificate (page padding) are ignored.
//!
//! # GUID byte order
//!
//! The table holds each GUID in the order its text is written (RFC 4122, "big-endian"):
//! `c0b406a4-a803-4952-…` is stored as `c0 b4 06 a4 a8 03 49 52 …`. That is how the
//! tools that build these tables store them (the kernel's `uuid_t`, libuuid's `uuid_parse`
//! in AMD's host tooling, Go's `uuid.UUID` in go-sev-guest), not the mixed-endian EFI
//! `GUID` layout (`a4 06 b4 c0 03 a8 52 49 …`). The reference notes give only the textual
//! GUIDs, so this choice rests on those tools; a table in the other order would parse with
//! every entry as [`CertKind::Other`], and a verifier would then find no VCEK.

use std::collections::HashSet;
use std::fmt;

/// Size of one table entry.
pub const ENTRY_LEN: usize = 24;

/// A GUID, as the 16 bytes the table holds (in textual order, see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID, which only the terminator entry may carry.
    pub const NIL: Guid = Guid([0; 16]);
    /// `c0b406a4-a803-4952-9743-3fb6014cd0ae`: AMD Root Key.
    pub const ARK: Guid = Guid([
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ]);
    /// `4ab7b379-bbac-4fe4-a02f-05aef327c782`: AMD SEV Key (ASK), or ASVK in a VLEK chain.
    pub const ASK: Guid = Guid([
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ]);
    /// `63da758d-e664-4564-adc5-f4b93be8accd`: Versioned Chip Endorsement Key.
    pub const VCEK: Guid = Guid([
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ]);
    /// `a8074bc2-a25a-483e-aae6-39c045a0b8a1`: Versioned Loaded Endorsement Key.
    pub const VLEK: Guid = Guid([
        0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
        0xa1,
    ]);
    /// `92f81bc3-5811-4d3d-97ff-d19f88dc67ea`: certificate revocation list.
    pub const CRL: Guid = Guid([
        0x92, 0xf8, 0x1b, 0xc3, 0x58, 0x11, 0x4d, 0x3d, 0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67,
        0xea,
    ]);
}

impl fmt::Display for Guid {
    /// The textual form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// What a table entry holds, from its GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key, or ASVK (the same GUID): the intermediate for a VCEK or a VLEK.
    Ask,
    /// Versioned Chip Endorsement Key: the chip's report-signing certificate.
    Vcek,
    /// Versioned Loaded Endorsement Key: the cloud provider's report-signing certificate.
    Vlek,
    /// Certificate revocation list.
    Crl,
    /// A GUID not listed above (for example go-sev-guest's extra platform information).
    /// Never one of the GUIDs above: [`CertKind::from_guid`] maps those to their kinds.
    Other(Guid),
}

impl CertKind {
    /// The kind an entry's GUID names.
    pub fn from_guid(guid: Guid) -> CertKind {
        match guid {
            Guid::ARK => CertKind::Ark,
            Guid::ASK => CertKind::Ask,
            Guid::VCEK => CertKind::Vcek,
            Guid::VLEK => CertKind::Vlek,
            Guid::CRL => CertKind::Crl,
            other => CertKind::Other(other),
        }
    }

    /// The GUID the table uses for this kind.
    pub fn guid(self) -> Guid {
        match self {
            CertKind::Ark => Guid::ARK,
            CertKind::Ask => Guid::ASK,
            CertKind::Vcek => Guid::VCEK,
            CertKind::Vlek => Guid::VLEK,
            CertKind::Crl => Guid::CRL,
            CertKind::Other(guid) => guid,
        }
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertKind::Ark => f.write_str("ARK"),
            CertKind::Ask => f.write_str("ASK/ASVK"),
            CertKind::Vcek => f.write_str("VCEK"),
            CertKind::Vlek => f.write_str("VLEK"),
            CertKind::Crl => f.write_str("CRL"),
            CertKind::Other(guid) => write!(f, "GUID {guid}"),
        }
    }
}

/// One certificate (or CRL) from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    /// What it is.
    pub kind: CertKind,
    /// Its DER bytes, unparsed.
    pub der: Vec<u8>,
}

/// A malformed table, or entries that cannot form one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertTableError {
    /// The input ends before the all-zero terminator entry.
    #[error(
        "the certificate table ({len} bytes) ends after {entries} entries without the all-zero \
         terminator entry: the host supplied a truncated table"
    )]
    Unterminated {
        /// Input length.
        len: usize,
        /// Complete entries before the end.
        entries: usize,
    },
    /// An entry has the nil GUID but is not all zero.
    #[error(
        "certificate table entry {index} has the nil GUID but offset {offset} and length \
         {length}: only the all-zero terminator may have the nil GUID"
    )]
    NilGuid {
        /// Position of the entry (0-based).
        index: usize,
        /// Its offset.
        offset: u32,
        /// Its length.
        length: u32,
    },
    /// An entry has length 0.
    #[error("certificate table entry {index} ({kind}) has length 0: a certificate cannot be empty")]
    Empty {
        /// Position of the entry (0-based).
        index: usize,
        /// Its kind.
        kind: CertKind,
    },
    /// An entry points into the entries themselves.
    #[error(
        "certificate table entry {index} ({kind}) starts at byte {offset}, inside the entries \
         (which end at byte {entries_end})"
    )]
    OverlapsEntries {
        /// Position of the entry (0-based).
        index: usize,
        /// Its kind.
        kind: CertKind,
        /// Its offset.
        offset: u32,
        /// Where the entries (terminator included) end.
        entries_end: usize,
    },
    /// An entry points past the end of the input.
    #[error(
        "certificate table entry {index} ({kind}) claims bytes {offset}..{end}, but the table \
         is {len} bytes: the host supplied a truncated table"
    )]
    OutOfRange {
        /// Position of the entry (0-based).
        index: usize,
        /// Its kind.
        kind: CertKind,
        /// Its offset.
        offset: u32,
        /// Its offset plus its length.
        end: u64,
        /// Input length.
        len: usize,
    },
    /// Two entries have the same GUID, so which one counts would be ambiguous.
    #[error("certificate table entry {index} repeats {kind}: a table holds each kind once")]
    Duplicate {
        /// Position of the second entry (0-based).
        index: usize,
        /// The repeated kind.
        kind: CertKind,
    },
    /// The certificates to build a table from do not fit 32-bit offsets.
    #[error(
        "the certificates need {size} bytes, more than a certificate table's 32-bit offsets reach"
    )]
    TooLarge {
        /// The size the table would need.
        size: u128,
    },
}

/// Parses a certificate table. An empty input (no certificates from the host) gives an
/// empty list.
pub fn parse(table: &[u8]) -> Result<Vec<CertTableEntry>, CertTableError> {
    if table.is_empty() {
        return Ok(Vec::new());
    }
    let mut raw_entries = Vec::new();
    loop {
        let index = raw_entries.len();
        let Some((guid, offset, length)) = read_entry(table, index) else {
            return Err(CertTableError::Unterminated {
                len: table.len(),
                entries: index,
            });
        };
        if guid == Guid::NIL {
            if offset == 0 && length == 0 {
                break;
            }
            return Err(CertTableError::NilGuid {
                index,
                offset,
                length,
            });
        }
        raw_entries.push((CertKind::from_guid(guid), offset, length));
    }
    // The entries plus the terminator; no overflow, as they were all read from `table`.
    let entries_end = (raw_entries.len() + 1) * ENTRY_LEN;

    let mut seen = HashSet::new();
    let mut entries = Vec::with_capacity(raw_entries.len());
    for (index, (kind, offset, length)) in raw_entries.into_iter().enumerate() {
        if !seen.insert(kind) {
            return Err(CertTableError::Duplicate { index, kind });
        }
        if length == 0 {
            return Err(CertTableError::Empty { index, kind });
        }
        let start = offset as usize;
        if start < entries_end {
            return Err(CertTableError::OverlapsEntries {
                index,
                kind,
                offset,
                entries_end,
            });
        }
        let end = u64::from(offset) + u64::from(length);
        let out_of_range = || CertTableError::OutOfRange {
            index,
            kind,
            offset,
            end,
            len: table.len(),
        };
        let end_index = usize::try_from(end).map_err(|_| out_of_range())?;
        let der = table.get(start..end_index).ok_or_else(out_of_range)?;
        entries.push(CertTableEntry {
            kind,
            der: der.to_vec(),
        });
    }
    Ok(entries)
}

/// The entry at `index`, if the input holds all of it.
fn read_entry(table: &[u8], index: usize) -> Option<(Guid, u32, u32)> {
    let start = index.checked_mul(ENTRY_LEN)?;
    let bytes = table.get(start..start.checked_add(ENTRY_LEN)?)?;
    let (guid, rest) = bytes.split_first_chunk::<16>()?;
    let (offset, rest) = rest.split_first_chunk::<4>()?;
    let (length, _) = rest.split_first_chunk::<4>()?;
    Some((
        Guid(*guid),
        u32::from_le_bytes(*offset),
        u32::from_le_bytes(*length),
    ))
}

/// Builds a table holding `entries` in the given order, certificates right after the
/// terminator entry. Refuses what [`parse`] would refuse (empty certificates, the nil GUID,
/// a kind twice) and tables beyond 32-bit offsets.
pub fn build(entries: &[CertTableEntry]) -> Result<Vec<u8>, CertTableError> {
    let mut seen = HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        // Normalise, so that `Other(Guid::VCEK)` counts as the VCEK.
        let kind = CertKind::from_guid(entry.kind.guid());
        if kind.guid() == Guid::NIL {
            return Err(CertTableError::NilGuid {
                index,
                offset: 0,
                length: u32::try_from(entry.der.len()).unwrap_or(u32::MAX),
            });
        }
        if !seen.insert(kind) {
            return Err(CertTableError::Duplicate { index, kind });
        }
        if entry.der.is_empty() {
            return Err(CertTableError::Empty { index, kind });
        }
    }
    let positions = layout(entries.iter().map(|entry| entry.der.len()))?;

    let mut table = Vec::new();
    for (entry, (offset, length)) in entries.iter().zip(&positions) {
        table.extend_from_slice(&entry.kind.guid().0);
        table.extend_from_slice(&offset.to_le_bytes());
        table.extend_from_slice(&length.to_le_bytes());
    }
    table.extend_from_slice(&[0; ENTRY_LEN]);
    for entry in entries {
        table.extend_from_slice(&entry.der);
    }
    Ok(table)
}

/// Offsets and lengths of certificates with the given lengths, placed one after the other
/// right after the entries (one per certificate, plus the terminator).
fn layout(
    lengths: impl ExactSizeIterator<Item = usize>,
) -> Result<Vec<(u32, u32)>, CertTableError> {
    // u128 cannot overflow summing usize values from memory.
    let mut next = (lengths.len() as u128 + 1) * ENTRY_LEN as u128;
    let mut positions = Vec::with_capacity(lengths.len());
    for length in lengths {
        let end = next + length as u128;
        let (Ok(offset), Ok(length), Ok(_)) = (
            u32::try_from(next),
            u32::try_from(length),
            u32::try_from(end),
        ) else {
            return Err(CertTableError::TooLarge { size: end });
        };
        positions.push((offset, length));
        next = end;
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(kind: CertKind, der: &[u8]) -> CertTableEntry {
        CertTableEntry {
            kind,
            der: der.to_vec(),
        }
    }

    fn sample() -> Vec<CertTableEntry> {
        vec![
            entry(CertKind::Ark, b"ark der"),
            entry(CertKind::Ask, b"ask der bytes"),
            entry(CertKind::Vcek, b"vcek"),
        ]
    }

    /// Writes an entry's fields at `index` of a table.
    fn patch(table: &mut [u8], index: usize, guid: Guid, offset: u32, length: u32) {
        let start = index * ENTRY_LEN;
        table[start..start + 16].copy_from_slice(&guid.0);
        table[start + 16..start + 20].copy_from_slice(&offset.to_le_bytes());
        table[start + 20..start + 24].copy_from_slice(&length.to_le_bytes());
    }

    #[test]
    fn guids_match_their_textual_form() {
        assert_eq!(
            Guid::ARK.to_string(),
            "c0b406a4-a803-4952-9743-3fb6014cd0ae"
        );
        assert_eq!(
            Guid::ASK.to_string(),
            "4ab7b379-bbac-4fe4-a02f-05aef327c782"
        );
        assert_eq!(
            Guid::VCEK.to_string(),
            "63da758d-e664-4564-adc5-f4b93be8accd"
        );
        assert_eq!(
            Guid::VLEK.to_string(),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
        assert_eq!(
            Guid::CRL.to_string(),
            "92f81bc3-5811-4d3d-97ff-d19f88dc67ea"
        );
        assert_eq!(
            format!("{:?}", Guid::NIL),
            "Guid(00000000-0000-0000-0000-000000000000)"
        );
    }

    #[test]
    fn kinds_map_to_guids_and_back() {
        let other = Guid([0xec; 16]);
        for kind in [
            CertKind::Ark,
            CertKind::Ask,
            CertKind::Vcek,
            CertKind::Vlek,
            CertKind::Crl,
            CertKind::Other(other),
        ] {
            assert_eq!(CertKind::from_guid(kind.guid()), kind);
        }
        assert_eq!(CertKind::from_guid(Guid::VLEK), CertKind::Vlek);
    }

    #[test]
    fn builds_the_documented_layout() {
        let table = build(&sample()).unwrap();
        let entries_end = 4 * ENTRY_LEN;
        assert_eq!(&table[..16], &Guid::ARK.0);
        assert_eq!(&table[16..20], &(entries_end as u32).to_le_bytes());
        assert_eq!(&table[20..24], &7u32.to_le_bytes());
        assert_eq!(&table[24..40], &Guid::ASK.0);
        assert_eq!(&table[40..44], &(entries_end as u32 + 7).to_le_bytes());
        assert_eq!(&table[3 * ENTRY_LEN..entries_end], &[0; ENTRY_LEN]);
        assert_eq!(&table[entries_end..entries_end + 7], b"ark der");
        assert_eq!(table.len(), entries_end + 7 + 13 + 4);
    }

    #[test]
    fn parses_what_it_builds() {
        let entries = vec![
            entry(CertKind::Vlek, b"vlek"),
            entry(CertKind::Ask, b"asvk"),
            entry(CertKind::Ark, b"ark"),
            entry(CertKind::Crl, b"crl"),
            entry(CertKind::Other(Guid([0xec; 16])), b"platform info"),
        ];
        assert_eq!(parse(&build(&entries).unwrap()).unwrap(), entries);
        assert_eq!(parse(&build(&[]).unwrap()).unwrap(), []);
    }

    #[test]
    fn accepts_empty_input_padding_and_certificates_in_any_order() {
        assert_eq!(parse(&[]).unwrap(), []);
        // A zero-filled certificate buffer: the host supplied nothing.
        assert_eq!(parse(&[0; 4096]).unwrap(), []);

        let mut table = build(&sample()).unwrap();
        table.resize(4096, 0);
        assert_eq!(parse(&table).unwrap(), sample());

        // The ARK placed after the VCEK.
        let mut table = build(&sample()).unwrap();
        let ark_offset = table.len() as u32;
        table.extend_from_slice(b"second ark");
        patch(&mut table, 0, Guid::ARK, ark_offset, 10);
        assert_eq!(
            parse(&table).unwrap()[0],
            entry(CertKind::Ark, b"second ark")
        );
    }

    #[test]
    fn refuses_missing_terminator() {
        let table = build(&sample()).unwrap();
        // Cut inside the entries: every prefix up to the terminator's last byte.
        for len in 1..4 * ENTRY_LEN {
            let err = parse(&table[..len]).unwrap_err();
            assert_eq!(
                err,
                CertTableError::Unterminated {
                    len,
                    entries: len / ENTRY_LEN
                }
            );
        }
        assert!(
            parse(&table[..30])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    #[test]
    fn refuses_certificates_cut_off() {
        let table = build(&sample()).unwrap();
        let err = parse(&table[..table.len() - 1]).unwrap_err();
        assert_eq!(
            err,
            CertTableError::OutOfRange {
                index: 2,
                kind: CertKind::Vcek,
                offset: (table.len() - 4) as u32,
                end: table.len() as u64,
                len: table.len() - 1,
            }
        );
        assert!(err.to_string().contains("entry 2 (VCEK)"), "{err}");
    }

    #[test]
    fn refuses_offsets_and_lengths_out_of_range() {
        let clean = build(&sample()).unwrap();
        for (offset, length) in [
            (u32::MAX, 1),
            (u32::MAX, u32::MAX),
            (200, u32::MAX),
            (96, 1000),
        ] {
            let mut table = clean.clone();
            patch(&mut table, 1, Guid::ASK, offset, length);
            let err = parse(&table).unwrap_err();
            assert!(
                matches!(
                    err,
                    CertTableError::OutOfRange {
                        index: 1,
                        kind: CertKind::Ask,
                        ..
                    }
                ),
                "{offset} {length}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_entries_pointing_into_the_entries() {
        let mut table = build(&sample()).unwrap();
        patch(&mut table, 0, Guid::ARK, 0, 7);
        let err = parse(&table).unwrap_err();
        assert_eq!(
            err,
            CertTableError::OverlapsEntries {
                index: 0,
                kind: CertKind::Ark,
                offset: 0,
                entries_end: 4 * ENTRY_LEN
            }
        );
        // The terminator's bytes count as entries too.
        patch(&mut table, 0, Guid::ARK, 4 * ENTRY_LEN as u32 - 1, 2);
        assert!(matches!(
            parse(&table).unwrap_err(),
            CertTableError::OverlapsEntries { .. }
        ));
    }

    #[test]
    fn refuses_nil_guid_with_content() {
        let mut table = build(&sample()).unwrap();
        patch(&mut table, 1, Guid::NIL, 120, 4);
        assert_eq!(
            parse(&table).unwrap_err(),
            CertTableError::NilGuid {
                index: 1,
                offset: 120,
                length: 4
            }
        );
        // Terminator with a length.
        let mut table = build(&sample()).unwrap();
        patch(&mut table, 3, Guid::NIL, 0, 1);
        assert!(matches!(
            parse(&table).unwrap_err(),
            CertTableError::NilGuid { index: 3, .. }
        ));
    }

    #[test]
    fn refuses_empty_certificates() {
        let mut table = build(&sample()).unwrap();
        patch(&mut table, 2, Guid::VCEK, 100, 0);
        assert_eq!(
            parse(&table).unwrap_err(),
            CertTableError::Empty {
                index: 2,
                kind: CertKind::Vcek
            }
        );
        let err = build(&[entry(CertKind::Vcek, b"")]).unwrap_err();
        assert_eq!(
            err,
            CertTableError::Empty {
                index: 0,
                kind: CertKind::Vcek
            }
        );
    }

    #[test]
    fn refuses_duplicate_kinds() {
        let mut table = build(&sample()).unwrap();
        let (offset, length) = (4 * ENTRY_LEN as u32, 7);
        patch(&mut table, 2, Guid::ARK, offset, length);
        assert_eq!(
            parse(&table).unwrap_err(),
            CertTableError::Duplicate {
                index: 2,
                kind: CertKind::Ark
            }
        );
        let err = build(&[
            entry(CertKind::Vcek, b"a"),
            entry(CertKind::Other(Guid::VCEK), b"b"),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            CertTableError::Duplicate {
                index: 1,
                kind: CertKind::Vcek
            }
        );
    }

    #[test]
    fn build_refuses_the_nil_guid() {
        let err = build(&[entry(CertKind::Other(Guid::NIL), b"x")]).unwrap_err();
        assert!(
            matches!(err, CertTableError::NilGuid { index: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn layout_refuses_beyond_32_bit_offsets() {
        let max = u32::MAX as usize;
        // Fits exactly: the certificate ends at byte u32::MAX.
        assert_eq!(
            layout([max - 2 * ENTRY_LEN].into_iter()).unwrap(),
            [(2 * ENTRY_LEN as u32, (max - 2 * ENTRY_LEN) as u32)]
        );
        let err = layout([max - 2 * ENTRY_LEN + 1].into_iter()).unwrap_err();
        assert_eq!(
            err,
            CertTableError::TooLarge {
                size: u128::from(u32::MAX) + 1
            }
        );
        assert!(matches!(
            layout([max, 1].into_iter()),
            Err(CertTableError::TooLarge { .. })
        ));
    }

    #[test]
    fn single_byte_mutations_never_panic() {
        let table = build(&sample()).unwrap();
        for position in 0..table.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff, table[position] ^ 0x01] {
                let mut mutated = table.clone();
                mutated[position] = value;
                let _ = parse(&mutated);
                let _ = parse(&mutated[..position]);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_entries_round_trip(ders in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..64), 0..6)
        ) {
            let entries: Vec<_> = ders
                .into_iter()
                .enumerate()
                .map(|(i, der)| CertTableEntry { kind: CertKind::Other(Guid([i as u8 + 1; 16])), der })
                .collect();
            prop_assert_eq!(parse(&build(&entries).unwrap()).unwrap(), entries);
        }

        #[test]
        fn tables_with_arbitrary_entry_fields_never_panic(
            fields in proptest::collection::vec((any::<[u8; 16]>(), any::<u32>(), any::<u32>()), 0..6),
            tail in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut table = Vec::new();
            for (guid, offset, length) in &fields {
                table.extend_from_slice(guid);
                table.extend_from_slice(&(offset % 512).to_le_bytes());
                table.extend_from_slice(&(length % 512).to_le_bytes());
            }
            table.extend_from_slice(&[0; ENTRY_LEN]);
            table.extend_from_slice(&tail);
            let _ = parse(&table);
        }
    }
}
