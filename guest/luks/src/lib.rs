//! The LUKS helper: an authenticated encrypted volume keyed by the workload secret
//! (docs/protocol.md §12.2, done right).
//!
//! - **Key**: the keyslot passphrase is derived from the workload secret with HKDF-SHA256
//!   under a label naming the purpose and the device path ([`secret`] documents it). The
//!   secret is 512 random bits, so the keyslot uses PBKDF2 at libcryptsetup's minimum
//!   (1000 iterations) instead of a slow KDF.
//! - **Authenticated encryption** as Contrast does it: LUKS2, aes-xts-plain64 with
//!   hmac(sha256) integrity (dm-integrity tags), 4096-byte sectors, so the host cannot
//!   swap or corrupt sectors unnoticed.
//! - **Format only when the device clearly has no LUKS header** ([`probe()`]): every place a
//!   LUKS header can start has been read and holds no magic. A read error is an error.
//! - **Before opening**: the header is copied into a fresh private directory (mode 0700)
//!   on a tmpfs, libcryptsetup loads the copy as a detached header, we decode the metadata
//!   it loaded strictly and accept exactly our profile or Contrast's ([`header`]), check
//!   the keyslot, and activate from that same loaded context: no check-then-use gap.
//!   mkfs.ext4 runs on a volume this run formatted; then it is mounted.
//!
//! Formatting dm-integrity and activating need the kernel's device-mapper. Without it
//! (build machines), everything up to the keyslot check works on image files; see the
//! crate's README.

pub mod cryptsetup;
pub mod error;
pub mod header;
pub mod mount;
pub mod private_dir;
pub mod probe;
pub mod secret;

use std::path::{Path, PathBuf};

pub use error::{HeaderError, LuksError, SecretError};
pub use header::Profile;
pub use mount::mapping_name;
pub use probe::{DeviceState, probe};
pub use secret::{Passphrase, WorkloadSecret};

/// Where activated mappings appear.
const MAPPER_DIR: &str = "/dev/mapper";

fn utf8(path: &Path) -> Result<&str, LuksError> {
    path.to_str().ok_or_else(|| LuksError::NonUtf8Path {
        path: path.to_owned(),
    })
}

/// The passphrase a header of `profile` on `device` is opened with: our HKDF-derived key,
/// or Contrast's hex workload secret.
pub fn passphrase_for(
    profile: Profile,
    secret: &WorkloadSecret,
    device: &Path,
) -> Result<Passphrase, LuksError> {
    match profile {
        Profile::Ours => Ok(secret.keyslot_passphrase(utf8(device)?)?),
        Profile::Contrast => Ok(secret.contrast_passphrase()),
    }
}

/// Formats `device` with our profile if (and only if) [`probe()`] finds no LUKS header.
/// Returns whether it formatted.
pub fn format_if_empty(device: &Path, secret: &WorkloadSecret) -> Result<bool, LuksError> {
    match probe(device)? {
        DeviceState::LuksHeader { offset } => {
            tracing::debug!(device = %device.display(), offset, "LUKS header present, not formatting");
            Ok(false)
        }
        DeviceState::NoLuksHeader => {
            let passphrase = secret.keyslot_passphrase(utf8(device)?)?;
            cryptsetup::format(device, &passphrase)?;
            Ok(true)
        }
    }
}

/// Validates the header of `device` and checks that the workload secret opens its
/// keyslot, without activating anything. The header copy lives in a private directory
/// under `header_dir_base` while this runs.
pub fn check(
    device: &Path,
    secret: &WorkloadSecret,
    header_dir_base: &Path,
) -> Result<Profile, LuksError> {
    if probe(device)? == DeviceState::NoLuksHeader {
        return Err(LuksError::NotLuks {
            device: device.to_owned(),
        });
    }
    let copy = cryptsetup::copy_header(device, header_dir_base)?;
    let mut volume = cryptsetup::load(&copy, device)?;
    let passphrase = passphrase_for(volume.profile(), secret, device)?;
    volume.check_keyslot(&passphrase)?;
    Ok(volume.profile())
}

/// libcryptsetup's compiled-in locking directory; it must exist for locking to work.
pub const LOCK_DIR: &str = "/run/cryptsetup";

/// Creates [`LOCK_DIR`] (and `/run`, which a container's image may lack).
pub fn create_lock_dir() -> Result<(), LuksError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(LOCK_DIR)
        .map_err(|source| LuksError::LockDir { source })
}

/// The secure mount: format on first use, validate, open and mount.
#[derive(Debug, Clone)]
pub struct SecureMount {
    /// The block device (`/dev/csi0`); its path is the key's device identity.
    pub device: PathBuf,
    /// Where the file system is mounted (`/state`).
    pub mount_point: PathBuf,
    /// Base of the private header directory; a tmpfs (default: [`private_dir::default_base`]).
    pub header_dir_base: PathBuf,
    /// The mkfs.ext4 program.
    pub mkfs: PathBuf,
    /// The mount program.
    pub mount: PathBuf,
}

/// What [`SecureMount::run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The device had no LUKS header and was formatted (and got a new file system).
    pub formatted: bool,
    /// The header's profile.
    pub profile: Profile,
    /// The mapping name (`/dev/mapper/<name>`).
    pub mapping: String,
    /// The mapping was activated by this run (false: it was active already).
    pub activated: bool,
    /// The file system was mounted by this run (false: it was mounted already).
    pub mounted: bool,
}

impl SecureMount {
    /// A secure mount of `device` at `mount_point` with the default header directory and
    /// programs from `PATH`.
    pub fn new(device: impl Into<PathBuf>, mount_point: impl Into<PathBuf>) -> Self {
        Self {
            device: device.into(),
            mount_point: mount_point.into(),
            header_dir_base: private_dir::default_base(),
            mkfs: PathBuf::from("mkfs.ext4"),
            mount: PathBuf::from("mount"),
        }
    }

    /// Formats if the device has no LUKS header, validates the header copy, checks the
    /// keyslot, activates (unless already active), creates the file system if this run
    /// formatted, and mounts (unless already mounted). Safe to run again after a restart.
    ///
    /// A first start interrupted between formatting and mkfs leaves a volume without file
    /// system: mounting then fails, and since it holds no data, removing its LUKS headers
    /// (`wipefs -a DEVICE`) lets the next start format it again.
    pub fn run(&self, secret: &WorkloadSecret) -> Result<Outcome, LuksError> {
        let device = utf8(&self.device)?;
        let mount_point = utf8(&self.mount_point)?;
        let mapping = mapping_name(device, mount_point);
        let mapped = Path::new(MAPPER_DIR).join(&mapping);

        let formatted = match probe(&self.device)? {
            DeviceState::LuksHeader { .. } => false,
            DeviceState::NoLuksHeader if mapped.exists() => {
                // A mapping of our name for a device without header maps something else;
                // never format or put a file system under it.
                return Err(LuksError::StaleMapping { name: mapping });
            }
            DeviceState::NoLuksHeader => {
                let passphrase = secret.keyslot_passphrase(device)?;
                cryptsetup::format(&self.device, &passphrase)?;
                true
            }
        };

        let copy = cryptsetup::copy_header(&self.device, &self.header_dir_base)?;
        let mut volume = cryptsetup::load(&copy, &self.device)?;
        let profile = volume.profile();
        let passphrase = passphrase_for(profile, secret, &self.device)?;
        volume.check_keyslot(&passphrase)?;
        let activated = if mapped.exists() {
            tracing::info!(
                mapping,
                "mapping already active (earlier run), not activating again"
            );
            false
        } else {
            volume.activate(&mapping, &passphrase)?;
            true
        };
        drop(volume);
        drop(copy);

        let mapped_str = utf8(&mapped)?;
        // Only a volume formatted by this run gets a file system. Its integrity tags are
        // not initialised (as with Contrast's --integrity-no-wipe), so unwritten sectors
        // read as I/O errors: probing for an existing file system cannot tell "new" from
        // "damaged", and a read error must never lead to mkfs.
        // mkfs's partial-block writes would read a never-written sector first and fail:
        // so block 0 (where the superblock lies) is written whole before mkfs, and the
        // file system gets no backup superblocks (they would sit in partial blocks too).
        // ext4's own blocks are 4096 bytes, the sector size, so later writes are whole.
        if formatted {
            zero_first_block(&mapped).map_err(|source| LuksError::FirstBlock {
                mapped: mapped_str.to_owned(),
                source,
            })?;
            mount::run(
                &self.mkfs,
                &[
                    "-q",
                    "-b",
                    "4096",
                    "-O",
                    "sparse_super2",
                    "-E",
                    "num_backup_sb=0",
                    mapped_str,
                ],
            )?;
        }
        let mounted = if mount::is_mounted(&mapped, mount_point)? {
            tracing::info!(mount_point, "already mounted");
            false
        } else {
            mount::run(&self.mount, &["-t", "ext4", mapped_str, mount_point])?;
            true
        };
        tracing::info!(device, mount_point, mapping, %profile, formatted, "secure mount ready");
        Ok(Outcome {
            formatted,
            profile,
            mapping,
            activated,
            mounted,
        })
    }
}

/// Writes one whole 4096-byte block of zeros at the start of `mapped` and syncs it, so
/// its integrity tag is valid before anything reads it.
fn zero_first_block(mapped: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut device = std::fs::OpenOptions::new().write(true).open(mapped)?;
    device.write_all(&[0u8; 4096])?;
    device.sync_all()
}
