//! Errors. Each says what was being done, names the input or header field, and what to do.

use std::path::PathBuf;

use libcryptsetup_rs::LibcryptErr;

use crate::header::Profile;

/// The workload secret could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The text is not 128 characters long.
    #[error(
        "the workload secret must be 128 lowercase hex characters (64 bytes, no newline), \
         found {len} bytes; pass the Initializer's workload-secret-seed file"
    )]
    Length {
        /// Length found.
        len: usize,
    },
    /// A character is not lowercase hex.
    #[error(
        "the workload secret has a character that is not lowercase hex at byte {position}; \
         pass the Initializer's workload-secret-seed file unchanged"
    )]
    NotLowerHex {
        /// Byte offset of the pair with the bad character.
        position: usize,
    },
    /// The file could not be read.
    #[error("reading the workload secret {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's content is not a workload secret.
    #[error("workload secret file {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        source: Box<SecretError>,
    },
    /// HKDF refused the output length (cannot happen for 32 bytes).
    #[error("deriving the keyslot passphrase failed")]
    Derive,
}

/// The header's JSON metadata is not one of the accepted profiles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The metadata does not decode: an unknown or missing field, or a value of the wrong type.
    #[error(
        "LUKS2 header metadata at `{path}`: {message}; this header was not written by \
         contrast-luks or Contrast, refusing to open it"
    )]
    Decode {
        /// JSON path of the field: the unknown field itself, the object missing a field,
        /// or the field of the wrong type (`.` for the top level).
        path: String,
        /// The decoder's message (names an unknown field).
        message: String,
    },
    /// A field has a value neither profile allows.
    #[error(
        "LUKS2 header field `{field}` is {found}, expected {expected}; this header does not \
         match the contrast-luks or Contrast profile, refusing to open it"
    )]
    Field {
        /// JSON path of the field.
        field: String,
        /// What the profile requires.
        expected: String,
        /// What the header holds.
        found: String,
    },
}

impl HeaderError {
    /// The JSON path of the refused field.
    pub fn field(&self) -> &str {
        match self {
            HeaderError::Decode { path, .. } => path,
            HeaderError::Field { field, .. } => field,
        }
    }
}

/// Errors of formatting, checking and opening a volume.
#[derive(Debug, thiserror::Error)]
pub enum LuksError {
    /// The workload secret.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A path that is not UTF-8 (libcryptsetup and the key label need text).
    #[error("the path {path:?} is not UTF-8; use a UTF-8 device path and mount point")]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// Reading the device to look for a LUKS header failed. Nothing was formatted.
    #[error(
        "reading {device} at offset {offset} to look for a LUKS header failed; \
         nothing was formatted, check that the device is attached and readable"
    )]
    Probe {
        /// The device.
        device: PathBuf,
        /// Offset being read.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// The private directory for the header copy.
    #[error(
        "creating the private header directory {path}; the base directory must \
         exist and be writable (a tmpfs such as /run)"
    )]
    PrivateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Formatting failed; the device may hold a partial header.
    #[error(
        "formatting {device} (LUKS2, aes-xts-plain64, hmac(sha256) integrity) failed while \
         {step}; formatting integrity needs the kernel's device-mapper \
         (dm-integrity, dm-crypt) and exclusive access to the device"
    )]
    Format {
        /// The device.
        device: PathBuf,
        /// What was being done.
        step: &'static str,
        /// libcryptsetup's error.
        source: LibcryptErr,
    },
    /// `check` was asked about a device without a LUKS header.
    #[error("{device} has no LUKS header; it has not been formatted yet")]
    NotLuks {
        /// The device.
        device: PathBuf,
    },
    /// Copying the header to the private directory failed.
    #[error(
        "copying the LUKS2 header of {device} failed; the header is damaged or \
         not LUKS2 (LUKS1 volumes are not supported), refusing to format over it"
    )]
    HeaderCopy {
        /// The device.
        device: PathBuf,
        /// libcryptsetup's error.
        source: LibcryptErr,
    },
    /// libcryptsetup refused the header copy, or could not dump its metadata.
    #[error(
        "loading the LUKS2 header copy of {device} failed while {step}; the \
         header is damaged, refusing to open it"
    )]
    HeaderLoad {
        /// The device.
        device: PathBuf,
        /// What was being done.
        step: &'static str,
        /// libcryptsetup's error.
        source: LibcryptErr,
    },
    /// The header's metadata is not an accepted profile.
    #[error("{device}")]
    Header {
        /// The device.
        device: PathBuf,
        /// What is wrong.
        source: HeaderError,
    },
    /// The passphrase does not open keyslot 0.
    #[error(
        "the workload secret does not open {device} ({profile} profile): either the \
         workload secret differs from the one the volume was formatted with (another \
         WorkloadSecretID or seed) or, for our profile, the device path differs, or the \
         keyslot was tampered with"
    )]
    KeyslotRefused {
        /// The device.
        device: PathBuf,
        /// The header's profile.
        profile: Profile,
    },
    /// The keyslot check failed for another reason.
    #[error("checking keyslot 0 of {device} failed")]
    Keyslot {
        /// The device.
        device: PathBuf,
        /// libcryptsetup's error.
        source: LibcryptErr,
    },
    /// Activating the dm-crypt mapping failed.
    #[error(
        "activating /dev/mapper/{name} failed; activation needs the kernel's \
         device-mapper (dm-crypt, dm-integrity) and /run/cryptsetup for locking"
    )]
    Activate {
        /// The mapping name.
        name: String,
        /// libcryptsetup's error.
        source: LibcryptErr,
    },
    /// libcryptsetup's locking directory could not be created.
    #[error("creating libcryptsetup's locking directory /run/cryptsetup")]
    LockDir {
        /// What the file system said.
        source: std::io::Error,
    },
    /// Removing the dm-crypt mapping failed.
    #[error("closing /dev/mapper/{name} failed; is its file system still mounted?")]
    Deactivate {
        /// The mapping name.
        name: String,
        /// libcryptsetup's error.
        source: LibcryptErr,
    },
    /// A mapping of our name exists although the device had no LUKS header.
    #[error(
        "/dev/mapper/{name} exists although the device had no LUKS header and was just \
         formatted; it maps something else: close it (cryptsetup close {name}) and retry"
    )]
    StaleMapping {
        /// The mapping name.
        name: String,
    },
    /// An external program (mkfs.ext4, mount) could not be started.
    #[error("running {program}; is it installed?")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An external program failed.
    #[error("{program} {args} failed ({status}): {stderr}")]
    Command {
        /// The program.
        program: String,
        /// Its arguments.
        args: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// Reading the mount table failed.
    #[error("reading /proc/self/mountinfo")]
    MountInfo {
        /// The I/O error.
        source: std::io::Error,
    },
    /// Initialising the first block of a new volume failed.
    #[error(
        "initialising the first block of the new volume {mapped}; the volume has a \
         LUKS header but no file system yet, and the next start formats it again"
    )]
    FirstBlock {
        /// The mapped device.
        mapped: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
