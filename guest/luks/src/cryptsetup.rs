//! The calls into libcryptsetup: format, header copy, load-and-validate, keyslot check,
//! activation.

use std::path::{Path, PathBuf};
use std::sync::Once;

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{
    CryptKdf, CryptLogLevel, EncryptionFormat, KeyslotsSize, MetadataSize,
};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either,
    LibcryptErr,
};

use crate::error::LuksError;
use crate::header::{self, Profile};
use crate::private_dir::PrivateDir;
use crate::secret::Passphrase;

/// libcryptsetup prints to stdout/stderr unless given a log callback; forward to tracing.
fn forward_log(level: CryptLogLevel, msg: &str, _usrdata: Option<&mut ()>) {
    match level {
        CryptLogLevel::Error => tracing::warn!(target: "libcryptsetup", "{msg}"),
        CryptLogLevel::Normal => tracing::info!(target: "libcryptsetup", "{msg}"),
        CryptLogLevel::Verbose => tracing::debug!(target: "libcryptsetup", "{msg}"),
        CryptLogLevel::Debug | CryptLogLevel::DebugJson => {
            tracing::trace!(target: "libcryptsetup", "{msg}");
        }
    }
}

libcryptsetup_rs::c_logging_callback!(forward_log_c, (), forward_log);

/// Routes libcryptsetup's messages to `tracing` (once per process; every function here
/// calls it). Call it before using libcryptsetup directly.
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| libcryptsetup_rs::set_log_callback::<()>(Some(forward_log_c), None));
}

fn utf8(path: &Path) -> Result<&str, LuksError> {
    path.to_str().ok_or_else(|| LuksError::NonUtf8Path {
        path: path.to_owned(),
    })
}

/// The keyslot KDF (and digest): PBKDF2-SHA256 at libcryptsetup's minimum, no benchmark.
fn our_pbkdf() -> CryptPbkdfType {
    CryptPbkdfType {
        type_: CryptKdf::Pbkdf2,
        hash: Some(String::from("sha256")),
        time_ms: 0,
        iterations: header::PBKDF2_ITERATIONS,
        max_memory_kb: 0,
        parallel_threads: 0,
        flags: CryptPbkdf::NO_BENCHMARK,
    }
}

/// Formats `device` with our profile and puts `passphrase` into keyslot 0.
///
/// libcryptsetup writes the header only after dm-integrity has formatted the data area
/// (which needs the kernel's device-mapper), then adds the keyslot; if this process dies
/// in between, the device has a header without keyslot, which [`load`] refuses.
pub(crate) fn format(device: &Path, passphrase: &Passphrase) -> Result<(), LuksError> {
    init_logging();
    utf8(device)?;
    let fail = |step: &'static str| {
        move |source| LuksError::Format {
            device: device.to_owned(),
            step,
            source,
        }
    };
    let mut cd = CryptInit::init(device).map_err(fail("opening the device"))?;
    let keyslots_size =
        KeyslotsSize::try_from(header::KEYSLOTS_SIZE).map_err(fail("setting the metadata size"))?;
    cd.settings_handle()
        .set_metadata_size(MetadataSize::Kb16, keyslots_size)
        .map_err(fail("setting the metadata size"))?;
    let pbkdf = our_pbkdf();
    cd.settings_handle()
        .set_pbkdf_type(&pbkdf)
        .map_err(fail("setting the keyslot KDF"))?;
    let params = CryptParamsLuks2 {
        pbkdf: Some(pbkdf),
        integrity: Some(String::from(header::INTEGRITY)),
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: header::SECTOR_SIZE,
        label: None,
        subsystem: None,
    };
    let mut params_ref: CryptParamsLuks2Ref<'_> = (&params)
        .try_into()
        .map_err(fail("preparing the parameters"))?;
    cd.context_handle()
        .format(
            EncryptionFormat::Luks2,
            (header::CIPHER, header::CIPHER_MODE),
            None,
            Either::Right(header::VOLUME_KEY_SIZE as usize),
            Some(&mut params_ref),
        )
        .map_err(fail("writing the LUKS2 header and dm-integrity superblock"))?;
    cd.keyslot_handle()
        .add_by_key(
            Some(0),
            None,
            passphrase.as_bytes(),
            CryptVolumeKey::empty(),
        )
        .map_err(fail("adding keyslot 0"))?;
    tracing::info!(device = %device.display(), "formatted (LUKS2, hmac(sha256) integrity, pbkdf2 keyslot)");
    Ok(())
}

/// A copy of a device's LUKS2 header (binary headers, JSON areas, keyslot areas) in a
/// private directory; removed with the directory on drop.
#[derive(Debug)]
pub struct HeaderCopy {
    dir: PrivateDir,
    path: PathBuf,
}

impl HeaderCopy {
    /// The copy.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The private directory holding it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Copies the LUKS2 header of `device` into a new private directory under `base`.
pub fn copy_header(device: &Path, base: &Path) -> Result<HeaderCopy, LuksError> {
    init_logging();
    utf8(device)?;
    let dir = PrivateDir::create(base)?;
    let path = dir.path().join("header");
    utf8(&path)?;
    // When libcryptsetup refuses the header, name the field our validator refuses.
    let fail = |source| match header::diagnose(device) {
        Some(field) => LuksError::Header {
            device: device.to_owned(),
            source: field,
        },
        None => LuksError::HeaderCopy {
            device: device.to_owned(),
            source,
        },
    };
    let mut cd = CryptInit::init(device).map_err(fail)?;
    cd.backup_handle()
        .header_backup(Some(EncryptionFormat::Luks2), &path)
        .map_err(fail)?;
    Ok(HeaderCopy { dir, path })
}

/// A volume whose header copy libcryptsetup has loaded and we have validated. Keyslot
/// check and activation use this same context, so they use exactly the metadata that was
/// validated.
pub struct LoadedVolume {
    cd: CryptDevice,
    device: PathBuf,
    profile: Profile,
}

impl std::fmt::Debug for LoadedVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedVolume")
            .field("device", &self.device)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Loads the header copy as the detached header of `device`, dumps the metadata
/// libcryptsetup loaded, and validates it.
pub fn load(copy: &HeaderCopy, device: &Path) -> Result<LoadedVolume, LuksError> {
    init_logging();
    utf8(device)?;
    let fail = |step: &'static str| {
        move |source| match header::diagnose(copy.path()) {
            Some(field) => LuksError::Header {
                device: device.to_owned(),
                source: field,
            },
            None => LuksError::HeaderLoad {
                device: device.to_owned(),
                step,
                source,
            },
        }
    };
    let mut cd = CryptInit::init_with_data_device(Either::Right((copy.path(), device)))
        .map_err(fail("opening the header copy"))?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(fail("loading the header copy"))?;
    let metadata = cd
        .status_handle()
        .dump_json()
        .map_err(fail("dumping the metadata"))?;
    let profile = header::validate(&metadata).map_err(|source| LuksError::Header {
        device: device.to_owned(),
        source,
    })?;
    Ok(LoadedVolume {
        cd,
        device: device.to_owned(),
        profile,
    })
}

impl LoadedVolume {
    /// The header's profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn keyslot_error(&self, source: LibcryptErr) -> LuksError {
        // libcryptsetup answers a passphrase that opens no keyslot with EPERM.
        match &source {
            LibcryptErr::IOError(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                LuksError::KeyslotRefused {
                    device: self.device.clone(),
                    profile: self.profile,
                }
            }
            _ => LuksError::Keyslot {
                device: self.device.clone(),
                source,
            },
        }
    }

    /// Checks that `passphrase` opens keyslot 0 and yields the volume key the digest
    /// names, without activating anything (works without device-mapper).
    pub fn check_keyslot(&mut self, passphrase: &Passphrase) -> Result<(), LuksError> {
        let result = self.cd.activate_handle().activate_by_passphrase(
            None,
            Some(0),
            passphrase.as_bytes(),
            CryptActivate::empty(),
        );
        result.map(|_| ()).map_err(|e| self.keyslot_error(e))
    }

    /// Activates the dm-crypt (with dm-integrity) mapping `/dev/mapper/<name>`.
    pub fn activate(&mut self, name: &str, passphrase: &Passphrase) -> Result<(), LuksError> {
        let result = self.cd.activate_handle().activate_by_passphrase(
            Some(name),
            Some(0),
            passphrase.as_bytes(),
            CryptActivate::empty(),
        );
        match result {
            Ok(_) => Ok(()),
            Err(source) => match self.keyslot_error(source) {
                LuksError::Keyslot { source, .. } => Err(LuksError::Activate {
                    name: name.to_owned(),
                    source,
                }),
                refused => Err(refused),
            },
        }
    }
}

/// Removes the mapping `/dev/mapper/<name>` (and its dm-integrity layer), as `cryptsetup
/// close` does, without the cryptsetup program (the Initializer's image has the library
/// only).
pub fn deactivate(name: &str) -> Result<(), LuksError> {
    init_logging();
    let failed = |source| LuksError::Deactivate {
        name: name.to_owned(),
        source,
    };
    let mut cd = CryptInit::init_by_name_and_header(name, None).map_err(failed)?;
    cd.activate_handle()
        .deactivate(name, CryptDeactivate::empty())
        .map_err(failed)
}
