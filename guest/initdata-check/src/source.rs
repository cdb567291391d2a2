//! Where the initdata comes from. The Kata runtime hands it to the guest on a small
//! virtio block device (docs/protocol.md §10.3): the magic `initdata` (8 bytes), the
//! length of what follows as a little-endian u64, then the gzip-compressed TOML; the
//! rest of the device is padding. Everything on it is chosen by the host, so every length
//! is checked before anything is allocated or decompressed.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use contrast_initdata::disk::IMAGEPULLER_MAGIC;
pub use contrast_initdata::disk::{HEADER_LEN, MAGIC, encode_header_form, gzip};

/// The largest compressed blob read. The Kata agent's policy engine loads at most
/// 16 MiB of policy, so more initdata than that cannot be a working pod.
pub const MAX_COMPRESSED_LEN: u64 = 16 << 20;

/// The largest TOML document accepted after decompression (the same bound; it stops a
/// small gzip bomb from exhausting the VM's memory).
pub const MAX_DOCUMENT_LEN: u64 = 16 << 20;

/// The device Contrast's runtime attaches (its serial is `initdata`).
pub const DEFAULT_DEVICE: &str = "/dev/disk/by-id/virtio-initdata";

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Where to read the initdata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitdataSource {
    /// A block device (or an image file) in the header form: magic, length, gzip.
    Device(PathBuf),
    /// A file: the header form if it starts with the magic, a gzip blob if it starts
    /// with gzip's magic, plain TOML otherwise.
    File(PathBuf),
}

impl InitdataSource {
    /// The path read.
    pub fn path(&self) -> &Path {
        match self {
            InitdataSource::Device(path) | InitdataSource::File(path) => path,
        }
    }

    /// Reads the initdata: the TOML document's bytes, decompressed.
    pub fn read(&self) -> Result<Vec<u8>, SourceError> {
        let path = self.path();
        let mut file = File::open(path).map_err(|e| SourceError::open(path, e))?;
        match self {
            InitdataSource::Device(_) => read_header_form(&mut file, path),
            InitdataSource::File(_) => {
                let mut start = Vec::with_capacity(HEADER_LEN);
                (&mut file)
                    .take(HEADER_LEN as u64)
                    .read_to_end(&mut start)
                    .map_err(|e| SourceError::read(path, e))?;
                let header_form = start.starts_with(MAGIC);
                let gzipped = start.starts_with(&GZIP_MAGIC);
                let mut whole = io::Cursor::new(start).chain(file);
                if header_form {
                    read_header_form(&mut whole, path)
                } else if gzipped {
                    let blob = read_limited(&mut whole, MAX_COMPRESSED_LEN, path, "gzip blob")?;
                    gunzip(&blob, path)
                } else {
                    read_limited(&mut whole, MAX_DOCUMENT_LEN, path, "initdata document")
                }
            }
        }
    }
}

/// Why the initdata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Nothing at the path.
    #[error(
        "no initdata at {path}: it does not exist (the pod needs a Contrast runtime class and \
         the initdata annotation that `contrast generate` writes)"
    )]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("reading the initdata from {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The device does not start with its magic.
    #[error("{path} is not {device}: it starts with {found} instead of the magic {expected:?}")]
    BadMagic {
        /// The path.
        path: PathBuf,
        /// The device it should be.
        device: &'static str,
        /// The first bytes, hex.
        found: String,
        /// The magic, as text.
        expected: String,
    },
    /// The device ends before its header or before the length its header declares.
    #[error(
        "the device {path} is truncated: the {part} needs {needed} bytes, the device has \
         {available}"
    )]
    Truncated {
        /// The path.
        path: PathBuf,
        /// `header` or `gzip blob`.
        part: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes there.
        available: u64,
    },
    /// A length exceeds its bound.
    #[error("the {part} in {path} is larger than the {limit}-byte limit ({size} bytes)")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// What is too large.
        part: &'static str,
        /// Its size (or a lower bound of it).
        size: u64,
        /// The bound.
        limit: u64,
    },
    /// The blob is not valid gzip.
    #[error("the blob in {path} is not valid gzip")]
    Gzip {
        /// The path.
        path: PathBuf,
        /// The decoder's error.
        source: io::Error,
    },
}

impl SourceError {
    fn open(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            SourceError::Missing {
                path: path.to_owned(),
            }
        } else {
            SourceError::read(path, source)
        }
    }

    fn read(path: &Path, source: io::Error) -> Self {
        SourceError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Reads up to `limit` bytes, refusing more.
fn read_limited(
    reader: &mut impl Read,
    limit: u64,
    path: &Path,
    part: &'static str,
) -> Result<Vec<u8>, SourceError> {
    let mut out = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| SourceError::read(path, e))?;
    if out.len() as u64 > limit {
        return Err(SourceError::TooLarge {
            path: path.to_owned(),
            part,
            size: out.len() as u64,
            limit,
        });
    }
    Ok(out)
}

/// Reads the header form from the start of `reader` and decompresses the blob. Bytes
/// after the declared length are the device's padding and are not read.
pub fn read_header_form(reader: &mut impl Read, path: &Path) -> Result<Vec<u8>, SourceError> {
    read_header_form_with((MAGIC, "an initdata device"), reader, path)
}

/// Reads the image puller config's device (the header form under its magic, within the
/// same bounds); the content is the host's and unmeasured, so only its size is trusted
/// to be bounded.
pub fn read_imagepuller_device(path: &Path) -> Result<Vec<u8>, SourceError> {
    let mut file = File::open(path).map_err(|e| SourceError::open(path, e))?;
    read_header_form_with(
        (IMAGEPULLER_MAGIC, "an image puller config device"),
        &mut file,
        path,
    )
}

/// [`read_header_form`] for a device under `magic` (and what the device is, for errors).
fn read_header_form_with(
    (magic, device): (&[u8; 8], &'static str),
    reader: &mut impl Read,
    path: &Path,
) -> Result<Vec<u8>, SourceError> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    reader
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(|e| SourceError::read(path, e))?;
    let magic_len = header.len().min(magic.len());
    if header[..magic_len] != magic[..magic_len] {
        return Err(SourceError::BadMagic {
            path: path.to_owned(),
            device,
            found: hex::encode(&header[..magic_len]),
            expected: String::from_utf8_lossy(magic).into_owned(),
        });
    }
    let Ok(header) = <[u8; HEADER_LEN]>::try_from(header.as_slice()) else {
        return Err(SourceError::Truncated {
            path: path.to_owned(),
            part: "header",
            needed: HEADER_LEN as u64,
            available: header.len() as u64,
        });
    };
    let mut length = [0; 8];
    length.copy_from_slice(&header[8..]);
    let length = u64::from_le_bytes(length);
    if length > MAX_COMPRESSED_LEN {
        return Err(SourceError::TooLarge {
            path: path.to_owned(),
            part: "gzip blob",
            size: length,
            limit: MAX_COMPRESSED_LEN,
        });
    }
    let mut blob = Vec::new();
    reader
        .take(length)
        .read_to_end(&mut blob)
        .map_err(|e| SourceError::read(path, e))?;
    if (blob.len() as u64) < length {
        return Err(SourceError::Truncated {
            path: path.to_owned(),
            part: "gzip blob",
            needed: length,
            available: blob.len() as u64,
        });
    }
    gunzip(&blob, path)
}

/// Decompresses a gzip blob (all members, as Go's reader does; anything after the last
/// member that is not another member is an error) to at most [`MAX_DOCUMENT_LEN`] bytes.
pub fn gunzip(blob: &[u8], path: &Path) -> Result<Vec<u8>, SourceError> {
    let mut out = Vec::new();
    MultiGzDecoder::new(blob)
        .take(MAX_DOCUMENT_LEN + 1)
        .read_to_end(&mut out)
        .map_err(|source| SourceError::Gzip {
            path: path.to_owned(),
            source,
        })?;
    if out.len() as u64 > MAX_DOCUMENT_LEN {
        return Err(SourceError::TooLarge {
            path: path.to_owned(),
            part: "decompressed document",
            size: out.len() as u64,
            limit: MAX_DOCUMENT_LEN,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &[u8] = b"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n";

    fn path() -> &'static Path {
        Path::new("/dev/test")
    }

    #[test]
    fn the_header_form_round_trips_and_ignores_padding() {
        for padding in [0, 1, 511] {
            let device = encode_header_form(TOML, padding);
            assert_eq!(&device[..8], b"initdata");
            let len = u64::from_le_bytes(device[8..16].try_into().unwrap());
            assert_eq!(device.len() as u64, 16 + len + padding as u64);
            assert_eq!(
                read_header_form(&mut device.as_slice(), path()).unwrap(),
                TOML
            );
        }
    }

    #[test]
    fn the_length_is_little_endian() {
        // A hand-made header: magic, 0x0000000000000103 little-endian, then 0x103 bytes.
        let blob = gzip(TOML);
        let mut device = b"initdata".to_vec();
        device.extend_from_slice(&(blob.len() as u64).to_le_bytes());
        assert_eq!(device[8], (blob.len() & 0xff) as u8);
        assert_eq!(device[15], 0);
        device.extend_from_slice(&blob);
        assert_eq!(
            read_header_form(&mut device.as_slice(), path()).unwrap(),
            TOML
        );
    }

    #[test]
    fn refuses_a_wrong_magic() {
        let mut device = encode_header_form(TOML, 0);
        device[0] = b'I';
        let err = read_header_form(&mut device.as_slice(), path()).unwrap_err();
        assert!(
            matches!(&err, SourceError::BadMagic { found, .. } if found == &hex::encode(b"Initdata")),
            "{err}"
        );
        let err = read_header_form(&mut [0u8; 16].as_slice(), path()).unwrap_err();
        assert!(matches!(err, SourceError::BadMagic { .. }), "{err}");
    }

    #[test]
    fn refuses_a_truncated_header() {
        for len in [0, 3, 8, 15] {
            let device = &encode_header_form(TOML, 0)[..len];
            let err = read_header_form(&mut &device[..], path()).unwrap_err();
            assert!(
                matches!(
                    err,
                    SourceError::Truncated { part: "header", needed: 16, available, .. }
                        if available == len as u64
                ),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn refuses_a_truncated_blob() {
        let device = encode_header_form(TOML, 0);
        let short = &device[..device.len() - 1];
        let err = read_header_form(&mut &short[..], path()).unwrap_err();
        let declared = (device.len() - 16) as u64;
        assert!(
            matches!(
                err,
                SourceError::Truncated { part: "gzip blob", needed, available, .. }
                    if needed == declared && available == declared - 1
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_declared_length_over_the_limit_before_reading_it() {
        let mut device = b"initdata".to_vec();
        device.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = read_header_form(&mut device.as_slice(), path()).unwrap_err();
        assert!(
            matches!(
                err,
                SourceError::TooLarge {
                    size: u64::MAX,
                    limit: MAX_COMPRESSED_LEN,
                    ..
                }
            ),
            "{err}"
        );
        let mut device = b"initdata".to_vec();
        device.extend_from_slice(&(MAX_COMPRESSED_LEN + 1).to_le_bytes());
        assert!(matches!(
            read_header_form(&mut device.as_slice(), path()),
            Err(SourceError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_a_gzip_bomb() {
        let bomb = vec![b' '; MAX_DOCUMENT_LEN as usize + 1];
        let device = encode_header_form(&bomb, 0);
        assert!(device.len() < 1 << 20, "compresses well");
        let err = read_header_form(&mut device.as_slice(), path()).unwrap_err();
        assert!(
            matches!(
                err,
                SourceError::TooLarge {
                    part: "decompressed document",
                    ..
                }
            ),
            "{err}"
        );
        // Exactly at the limit is accepted.
        let full = vec![b' '; MAX_DOCUMENT_LEN as usize];
        let device = encode_header_form(&full, 0);
        assert_eq!(
            read_header_form(&mut device.as_slice(), path())
                .unwrap()
                .len(),
            full.len()
        );
    }

    #[test]
    fn refuses_a_blob_that_is_not_gzip() {
        let mut device = b"initdata".to_vec();
        device.extend_from_slice(&(TOML.len() as u64).to_le_bytes());
        device.extend_from_slice(TOML);
        let err = read_header_form(&mut device.as_slice(), path()).unwrap_err();
        assert!(matches!(err, SourceError::Gzip { .. }), "{err}");
    }

    #[test]
    fn refuses_garbage_after_the_gzip_member_inside_the_declared_length() {
        let mut blob = gzip(TOML);
        blob.extend_from_slice(b"trailing");
        let mut device = b"initdata".to_vec();
        device.extend_from_slice(&(blob.len() as u64).to_le_bytes());
        device.extend_from_slice(&blob);
        let err = read_header_form(&mut device.as_slice(), path()).unwrap_err();
        assert!(matches!(err, SourceError::Gzip { .. }), "{err}");
    }

    #[test]
    fn concatenated_gzip_members_decompress_to_their_concatenation() {
        let mut blob = gzip(b"version = \"0.1.0\"\n");
        blob.extend_from_slice(&gzip(b"algorithm = \"sha256\"\n[data]\n"));
        assert_eq!(gunzip(&blob, path()).unwrap(), TOML);
    }

    mod files {
        use super::*;

        struct Dir(PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        fn dir(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("initdata-source-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        #[test]
        fn a_file_may_be_the_header_form_gzip_or_plain_toml() {
            let dir = dir("forms");
            for (name, bytes) in [
                ("device.img", encode_header_form(TOML, 100)),
                ("initdata.toml.gz", gzip(TOML)),
                ("initdata.toml", TOML.to_vec()),
            ] {
                let path = dir.0.join(name);
                std::fs::write(&path, bytes).unwrap();
                assert_eq!(InitdataSource::File(path).read().unwrap(), TOML, "{name}");
            }
        }

        #[test]
        fn the_imagepuller_device_has_its_own_magic() {
            let dir = dir("imagepuller");
            let config = b"[registries.\"ghcr.io\"]\nauth = \"YTpi\"\n";
            let device = dir.0.join("virtio-imagepuller");
            let imagepuller = contrast_initdata::disk::device_image_with(IMAGEPULLER_MAGIC, config);
            std::fs::write(&device, &imagepuller).unwrap();
            assert_eq!(read_imagepuller_device(&device).unwrap(), config);
            // Neither device reads as the other.
            let err = InitdataSource::Device(device.clone()).read().unwrap_err();
            assert!(matches!(err, SourceError::BadMagic { .. }), "{err}");
            std::fs::write(&device, contrast_initdata::disk::device_image(config)).unwrap();
            let err = read_imagepuller_device(&device).unwrap_err();
            assert!(err.to_string().contains("\"imgpullr\""), "{err}");
        }

        #[test]
        fn a_device_must_have_the_header() {
            let dir = dir("device");
            let path = dir.0.join("plain.toml");
            std::fs::write(&path, TOML).unwrap();
            let err = InitdataSource::Device(path).read().unwrap_err();
            assert!(matches!(err, SourceError::BadMagic { .. }), "{err}");
        }

        #[test]
        fn a_missing_path_says_so() {
            let dir = dir("missing");
            for source in [
                InitdataSource::Device(dir.0.join("virtio-initdata")),
                InitdataSource::File(dir.0.join("initdata.toml")),
            ] {
                let err = source.read().unwrap_err();
                assert!(matches!(err, SourceError::Missing { .. }), "{err}");
                assert!(err.to_string().contains("does not exist"), "{err}");
            }
        }

        #[test]
        fn a_plain_file_over_the_limit_is_refused() {
            let dir = dir("large");
            let path = dir.0.join("initdata.toml");
            std::fs::write(&path, vec![b'#'; MAX_DOCUMENT_LEN as usize + 1]).unwrap();
            let err = InitdataSource::File(path).read().unwrap_err();
            assert!(matches!(err, SourceError::TooLarge { .. }), "{err}");
        }

        #[test]
        fn a_short_plain_file_is_read_whole() {
            let dir = dir("short");
            let path = dir.0.join("tiny.toml");
            std::fs::write(&path, b"a = 1").unwrap();
            assert_eq!(InitdataSource::File(path).read().unwrap(), b"a = 1");
        }
    }
}
