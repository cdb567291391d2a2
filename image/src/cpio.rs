//! A deterministic writer of the "newc" cpio format the kernel unpacks as an initramfs.
//!
//! We write the archive ourselves rather than call `cpio`: every header field (inode
//! numbers, owners, times) is ours to fix, so the same tree gives the same bytes, and
//! device nodes (`/dev/console`) need no root on the build machine.

use std::io::{self, Write};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file with its content.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device (major, minor).
    CharDevice(u32, u32),
}

/// One archive member. Owners are always root and times always zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the archive, without a leading slash.
    pub path: String,
    /// Permission bits (0o755, 0o644, …).
    pub permissions: u32,
    /// What it is.
    pub kind: EntryKind,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes `entries` in the given order, then the trailer. Callers sort the entries (parents
/// before children) so the archive does not depend on how they were collected.
pub fn write(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    let mut offset = 0usize;
    for (index, entry) in entries.iter().enumerate() {
        let (mode, data): (u32, &[u8]) = match &entry.kind {
            EntryKind::Directory => (S_IFDIR, &[]),
            EntryKind::File(content) => (S_IFREG, content),
            EntryKind::Symlink(target) => (S_IFLNK, target.as_bytes()),
            EntryKind::CharDevice(..) => (S_IFCHR, &[]),
        };
        let (rdev_major, rdev_minor) = match entry.kind {
            EntryKind::CharDevice(major, minor) => (major, minor),
            _ => (0, 0),
        };
        let nlink = if entry.kind == EntryKind::Directory {
            2
        } else {
            1
        };
        let header = Header {
            ino: u32::try_from(index + 1).map_err(|_| too_big("entry count"))?,
            mode: mode | (entry.permissions & 0o7777),
            nlink,
            file_size: u32::try_from(data.len()).map_err(|_| too_big(&entry.path))?,
            rdev_major,
            rdev_minor,
        };
        offset += write_member(out, &header, &entry.path, data)?;
    }
    let trailer = Header {
        ino: 0,
        mode: 0,
        nlink: 1,
        file_size: 0,
        rdev_major: 0,
        rdev_minor: 0,
    };
    offset += write_member(out, &trailer, "TRAILER!!!", &[])?;
    // The kernel does not need it, but cpio(1) pads archives to 512 bytes; so do we.
    let tail = (512 - offset % 512) % 512;
    out.write_all(&vec![0; tail])
}

fn too_big(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} is too large for the newc cpio format (4 GiB)"),
    )
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    file_size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

fn write_member(out: &mut impl Write, h: &Header, name: &str, data: &[u8]) -> io::Result<usize> {
    let name_size = u32::try_from(name.len() + 1).map_err(|_| too_big(name))?;
    let fields = [
        h.ino,
        h.mode,
        0, // uid
        0, // gid
        h.nlink,
        0, // mtime
        h.file_size,
        0, // dev major
        0, // dev minor
        h.rdev_major,
        h.rdev_minor,
        name_size,
        0, // check (unused by newc)
    ];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for field in fields {
        header.push_str(&format!("{field:08X}"));
    }
    let mut written = 0;
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    written += header.len() + name.len() + 1;
    let pad = (4 - written % 4) % 4;
    out.write_all(&[0; 3][..pad])?;
    written += pad;
    out.write_all(data)?;
    written += data.len();
    let pad = (4 - data.len() % 4) % 4;
    out.write_all(&[0; 3][..pad])?;
    Ok(written + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry {
                path: "dev".into(),
                permissions: 0o755,
                kind: EntryKind::Directory,
            },
            Entry {
                path: "dev/console".into(),
                permissions: 0o600,
                kind: EntryKind::CharDevice(5, 1),
            },
            Entry {
                path: "init".into(),
                permissions: 0o755,
                kind: EntryKind::File(b"#!/bin/sh\necho hi\n".to_vec()),
            },
            Entry {
                path: "sh".into(),
                permissions: 0o777,
                kind: EntryKind::Symlink("busybox".into()),
            },
        ]
    }

    #[test]
    fn header_fields_are_fixed_width_hex_and_aligned() {
        let mut out = Vec::new();
        write(&mut out, &sample()).unwrap();
        assert_eq!(out.len() % 512, 0);
        assert!(out.starts_with(b"070701"));
        // First member: ino 1, directory mode 040755, nlink 2, name "dev\0" (110 + 4 bytes).
        let header = std::str::from_utf8(&out[..110]).unwrap();
        assert_eq!(&header[6..14], "00000001");
        assert_eq!(&header[14..22], "000041ED");
        assert_eq!(&header[38..46], "00000002");
        assert_eq!(&out[110..114], b"dev\0");
        let trailer = out.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
        assert_eq!((trailer - 110) % 4, 0, "every header starts 4-aligned");
    }

    #[test]
    fn the_same_entries_give_the_same_bytes() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write(&mut a, &sample()).unwrap();
        write(&mut b, &sample()).unwrap();
        assert_eq!(a, b);
    }

    /// GNU cpio reads what we write: names, types, link targets, device numbers, content.
    #[test]
    fn gnu_cpio_lists_and_extracts_the_archive() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("cpio(1) is needed for this cross-check: apt-get install cpio");
        }
        let mut archive = Vec::new();
        write(&mut archive, &sample()).unwrap();
        let dir = std::env::temp_dir().join(format!("cpio-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.cpio");
        std::fs::write(&path, &archive).unwrap();
        let listing = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -itv --quiet < {}", path.display()))
            .output()
            .unwrap();
        assert!(listing.status.success(), "{listing:?}");
        let text = String::from_utf8(listing.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" dev"));
        assert!(lines[1].starts_with("crw-------") && lines[1].contains("5,"));
        assert!(lines[2].starts_with("-rwxr-xr-x") && lines[2].ends_with(" init"));
        assert!(lines[3].starts_with("lrwxrwxrwx") && lines[3].ends_with("sh -> busybox"));
        let out = dir.join("x");
        std::fs::create_dir_all(&out).unwrap();
        let extract = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {} && cpio -id --quiet --no-absolute-filenames init < {}",
                out.display(),
                path.display()
            ))
            .status()
            .unwrap();
        assert!(extract.success());
        assert_eq!(
            std::fs::read(out.join("init")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
