//! Deciding whether a device holds a LUKS header, without ever guessing.
//!
//! A device is formatted only when this probe has read every place a LUKS header can
//! start and found no magic there. LUKS2 keeps a second header copy at one of the
//! offsets below (the first header's size), so a device whose first header was
//! overwritten still counts as LUKS: libcryptsetup would recover it from the copy, and
//! formatting would destroy the data. Any read error other than the device ending
//! before an offset is an error, never "no header".

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use crate::error::LuksError;

/// Magic of a primary LUKS header (LUKS1 and LUKS2).
pub const PRIMARY_MAGIC: [u8; 6] = *b"LUKS\xba\xbe";
/// Magic of a secondary LUKS2 header.
pub const SECONDARY_MAGIC: [u8; 6] = *b"SKUL\xba\xbe";
/// Offsets of the secondary LUKS2 header: each allowed header size, 16 KiB to 4 MiB.
pub const SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
];

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// No LUKS magic at any header offset: the device may be formatted.
    NoLuksHeader,
    /// A LUKS magic at `offset` (0: primary header; otherwise a LUKS2 secondary header).
    LuksHeader {
        /// Where the magic was found.
        offset: u64,
    },
}

/// Reads every LUKS header location of `device`.
pub fn probe(device: &Path) -> Result<DeviceState, LuksError> {
    let file = File::open(device).map_err(|source| LuksError::Probe {
        device: device.to_owned(),
        offset: 0,
        source,
    })?;
    let candidates = std::iter::once((0u64, PRIMARY_MAGIC))
        .chain(SECONDARY_OFFSETS.map(|o| (o, SECONDARY_MAGIC)));
    for (offset, magic) in candidates {
        let mut found = [0u8; 6];
        match file.read_exact_at(&mut found, offset) {
            Ok(()) if found == magic => return Ok(DeviceState::LuksHeader { offset }),
            Ok(()) => {}
            // The device ends before this offset: no header can be there or further on.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(source) => {
                return Err(LuksError::Probe {
                    device: device.to_owned(),
                    offset,
                    source,
                });
            }
        }
    }
    Ok(DeviceState::NoLuksHeader)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn image(len: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let file = File::create(&path).unwrap();
        file.set_len(len).unwrap();
        (dir, path)
    }

    #[test]
    fn empty_device_has_no_header() {
        let (_dir, path) = image(8 << 20);
        assert_eq!(probe(&path).unwrap(), DeviceState::NoLuksHeader);
    }

    #[test]
    fn short_device_has_no_header() {
        let (_dir, path) = image(100);
        assert_eq!(probe(&path).unwrap(), DeviceState::NoLuksHeader);
    }

    #[test]
    fn primary_magic_is_found() {
        let (_dir, path) = image(8 << 20);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&PRIMARY_MAGIC, 0).unwrap();
        assert_eq!(probe(&path).unwrap(), DeviceState::LuksHeader { offset: 0 });
    }

    #[test]
    fn every_secondary_offset_is_found() {
        for offset in SECONDARY_OFFSETS {
            let (_dir, path) = image(8 << 20);
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all_at(&SECONDARY_MAGIC, offset).unwrap();
            assert_eq!(probe(&path).unwrap(), DeviceState::LuksHeader { offset });
        }
    }

    #[test]
    fn secondary_magic_at_the_primary_place_is_not_a_header_but_others_are_checked() {
        let (_dir, path) = image(8 << 20);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&SECONDARY_MAGIC, 0).unwrap();
        file.write_all_at(&PRIMARY_MAGIC, 0x4000).unwrap();
        assert_eq!(probe(&path).unwrap(), DeviceState::NoLuksHeader);
    }

    #[test]
    fn unreadable_device_is_an_error_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            probe(&missing),
            Err(LuksError::Probe { offset: 0, .. })
        ));
        // A directory opens but cannot be read: EISDIR, not "no header".
        assert!(matches!(probe(dir.path()), Err(LuksError::Probe { .. })));
    }
}
