//! The guest firmware (OVMF) an image's reference values are computed from and the node
//! installer ships, and where each came from: the image directory's `firmware.json`.
//!
//! The launch measurement covers the firmware, so the firmware measured must be the one the
//! node boots, byte for byte. A release takes it from Debian packages pinned here by the
//! package's SHA-256 (as the archive's `Packages` index lists it) and the firmware file's
//! SHA-256 ([`DEBIAN_FIRMWARE`]):
//!
//! - SEV-SNP: `ovmf-amdsev`, edk2's `OvmfPkg/AmdSev/AmdSevX64.dsc`, the build with the
//!   kernel-hashes table that measured direct boot needs. Only Debian unstable has it.
//! - TDX: `ovmf`'s `OVMF.fd`, edk2's `OvmfPkg/OvmfPkgX64.dsc` (TDX "Config-A"), from
//!   bookworm. Debian's `ovmf-inteltdx` (`IntelTdxX64.dsc`, Config-B, as Contrast uses) has
//!   Microsoft's Secure Boot keys enrolled, which refuses our direct-booted kernel.
//!
//! A firmware given by path is recognised as a pinned package's by its digest (bookworm's
//! `/usr/share/ovmf/OVMF.fd` is the TDX pin's file); any other is recorded as a local file.
//! A test fixture that is no bootable firmware is recorded as a stand-in: reference values
//! computed from it are not production values, and the node installer does not ship it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use contrast_platforms::Tee;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// A firmware file in a pinned Debian package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebianFirmware {
    /// The TEE whose VMs boot it.
    pub tee: Tee,
    /// The binary package.
    pub package: &'static str,
    /// Its version.
    pub version: &'static str,
    /// The Debian suite it was pinned from (where to look for a newer version).
    pub suite: &'static str,
    /// The package file, relative to the archive's root.
    pub pool_path: &'static str,
    /// SHA-256 of the package file, hex.
    pub deb_sha256: &'static str,
    /// The firmware's path inside the package.
    pub path: &'static str,
    /// SHA-256 of the firmware, hex.
    pub sha256: &'static str,
}

/// Debian's archive.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The firmware a release measures and ships. Debian removes a superseded version from
/// unstable's pool: then [`fetch_debian`] fails with the package's URL, and the pin is
/// updated here (the reference values change with it).
pub const DEBIAN_FIRMWARE: [DebianFirmware; 2] = [
    DebianFirmware {
        tee: Tee::Snp,
        package: "ovmf-amdsev",
        version: "2026.08+ds-2",
        suite: "sid",
        pool_path: "pool/main/e/edk2/ovmf-amdsev_2026.08+ds-2_all.deb",
        deb_sha256: "92c9b6d15e4eeb371938c3f99080c1a8fc057dfd6bc0509d37f8b615e9edebfb",
        path: "usr/share/ovmf/OVMF.amdsev.fd",
        sha256: "3e4fd0b3fe3b2dbe481c3d9e99418a034174f26cbe1f55aa212b0f18c12d2d6f",
    },
    DebianFirmware {
        tee: Tee::Tdx,
        package: "ovmf",
        version: "2022.11-6+deb12u2",
        suite: "bookworm",
        pool_path: "pool/main/e/edk2/ovmf_2022.11-6+deb12u2_all.deb",
        deb_sha256: "e73d3d1a8799f7f6fc16b73501d913edcdd86237556fbff30693e747e6dc262e",
        path: "usr/share/ovmf/OVMF.fd",
        sha256: "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773",
    },
];

/// The pinned firmware of `tee`.
pub fn debian_firmware(tee: Tee) -> &'static DebianFirmware {
    match tee {
        Tee::Snp => &DEBIAN_FIRMWARE[0],
        Tee::Tdx => &DEBIAN_FIRMWARE[1],
    }
}

/// The firmware record in an image directory.
pub const FIRMWARE_RECORD: &str = "firmware.json";

/// The image directory's file of `tee`'s firmware (the names `firmware-refs
/// reference-values --image-dir` reads).
pub fn image_file(tee: Tee) -> &'static str {
    match tee {
        Tee::Snp => "ovmf-snp.fd",
        Tee::Tdx => "ovmf-tdx.fd",
    }
}

/// One TEE's firmware in an image directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Firmware {
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Where it came from.
    pub source: FirmwareSource,
}

/// Where a firmware came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum FirmwareSource {
    /// A pinned Debian package's file ([`DEBIAN_FIRMWARE`]).
    DebianPackage {
        /// The binary package.
        package: String,
        /// Its version.
        version: String,
        /// SHA-256 of the package file, hex.
        deb_sha256: String,
        /// The file's path in the package.
        path: String,
    },
    /// A file given by path that is no pinned package's: it boots, but a release cannot
    /// say how to get it again.
    LocalFile {
        /// Where it was copied from.
        path: String,
    },
    /// A test fixture standing in for a firmware: not bootable, never shipped.
    StandIn {
        /// Where it was copied from.
        path: String,
    },
}

impl FirmwareSource {
    /// Whether the node installer ships it.
    pub fn ships(&self) -> bool {
        !matches!(self, FirmwareSource::StandIn { .. })
    }
}

impl std::fmt::Display for FirmwareSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FirmwareSource::DebianPackage {
                package,
                version,
                path,
                ..
            } => write!(f, "Debian package {package} {version}, /{path}"),
            FirmwareSource::LocalFile { path } => write!(f, "the local file {path}"),
            FirmwareSource::StandIn { path } => write!(f, "a stand-in ({path})"),
        }
    }
}

/// `firmware.json`: TEE (`SNP`, `TDX`) → its firmware.
pub type FirmwareRecord = BTreeMap<String, Firmware>;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Copies `from` into `image_dir` as `tee`'s firmware; a pinned package's file (by its
/// digest) is recorded as that package's, unless it is a `stand_in`.
pub fn add_local(
    record: &mut FirmwareRecord,
    image_dir: &Path,
    tee: Tee,
    from: &Path,
    stand_in: bool,
) -> Result<(), ImageError> {
    let data = std::fs::read(from).map_err(crate::io(from))?;
    let sha256 = sha256_hex(&data);
    let pin = debian_firmware(tee);
    let path = from.display().to_string();
    let source = if stand_in {
        FirmwareSource::StandIn { path }
    } else if sha256 == pin.sha256 {
        pinned_source(pin)
    } else {
        FirmwareSource::LocalFile { path }
    };
    contrast_atomic_file::write(&image_dir.join(image_file(tee)), &data, 0o644)?;
    record.insert(tee.to_string(), Firmware { sha256, source });
    Ok(())
}

fn pinned_source(pin: &DebianFirmware) -> FirmwareSource {
    FirmwareSource::DebianPackage {
        package: pin.package.to_owned(),
        version: pin.version.to_owned(),
        deb_sha256: pin.deb_sha256.to_owned(),
        path: pin.path.to_owned(),
    }
}

/// Downloads `pin`'s package (one of [`DEBIAN_FIRMWARE`]) from `mirror` (a Debian
/// archive's root), checks the package's and the firmware's digests and puts the firmware
/// into `image_dir` as its TEE's. Nothing is written unless both digests match.
pub fn fetch_debian(
    record: &mut FirmwareRecord,
    image_dir: &Path,
    pin: &DebianFirmware,
    mirror: &str,
) -> Result<(), ImageError> {
    use contrast_runtime_installer::config::{Source, Sri, SriAlgorithm};
    let tee = pin.tee;
    let url = format!("{}/{}", mirror.trim_end_matches('/'), pin.pool_path);
    let deb = image_dir.join(format!("{}.deb", pin.package));
    let integrity = Sri {
        algorithm: SriAlgorithm::Sha256,
        digest: hex::decode(pin.deb_sha256).unwrap_or_default(),
    };
    contrast_runtime_installer::fetch::fetch(
        &Source::Http(url.clone()),
        &deb,
        Some(&integrity),
        0o644,
        &mut None,
        false,
    )
    .map_err(|source| ImageError::FirmwareDownload {
        package: pin.package,
        version: pin.version,
        suite: pin.suite,
        url,
        source: Box::new(source),
    })?;
    let data = crate::host::deb_file(&deb, pin.path);
    let _ = std::fs::remove_file(&deb);
    let data = data?;
    let sha256 = sha256_hex(&data);
    if sha256 != pin.sha256 {
        // The package's digest matched, so the pin itself is inconsistent.
        return Err(ImageError::Firmware {
            tee,
            reason: format!(
                "/{} in {} {} has SHA-256 {sha256}, not the pinned {}: correct the pin in \
                 DEBIAN_FIRMWARE",
                pin.path, pin.package, pin.version, pin.sha256
            ),
        });
    }
    contrast_atomic_file::write(&image_dir.join(image_file(tee)), &data, 0o644)?;
    record.insert(
        tee.to_string(),
        Firmware {
            sha256,
            source: pinned_source(pin),
        },
    );
    Ok(())
}

/// Writes `firmware.json` into `image_dir`.
pub fn write_record(image_dir: &Path, record: &FirmwareRecord) -> Result<(), ImageError> {
    let mut json = serde_json::to_vec_pretty(record).unwrap_or_default();
    json.push(b'\n');
    contrast_atomic_file::write(&image_dir.join(FIRMWARE_RECORD), &json, 0o644)?;
    Ok(())
}

/// An image directory's firmware, each file checked against its record; empty when the
/// directory has no `firmware.json` (an image built without firmware).
pub fn read_record(image_dir: &Path) -> Result<BTreeMap<Tee, (Firmware, PathBuf)>, ImageError> {
    let path = image_dir.join(FIRMWARE_RECORD);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(ImageError::Io { path, source }),
    };
    let invalid = |reason: String| ImageError::GuestImage {
        path: path.clone(),
        reason,
    };
    let record: FirmwareRecord = serde_json::from_slice(&text)
        .map_err(|e| invalid(format!("not a firmware record: {e}")))?;
    let mut firmware = BTreeMap::new();
    for (name, entry) in record {
        let tee = match name.as_str() {
            "SNP" => Tee::Snp,
            "TDX" => Tee::Tdx,
            other => return Err(invalid(format!("unknown TEE {other:?} (SNP or TDX)"))),
        };
        let file = image_dir.join(image_file(tee));
        let data = std::fs::read(&file).map_err(crate::io(&file))?;
        let actual = sha256_hex(&data);
        if actual != entry.sha256 {
            return Err(invalid(format!(
                "{} has SHA-256 {actual}, but the record says {}: the firmware changed after \
                 the image was built; build the image and its reference values again",
                image_file(tee),
                entry.sha256
            )));
        }
        firmware.insert(tee, (entry, file));
    }
    Ok(firmware)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_pins_are_hex_digests_of_the_tee_they_are_listed_for() {
        for tee in [Tee::Snp, Tee::Tdx] {
            let pin = debian_firmware(tee);
            assert_eq!(pin.tee, tee);
            for digest in [pin.deb_sha256, pin.sha256] {
                assert_eq!(hex::decode(digest).unwrap().len(), 32, "{digest}");
            }
            assert!(
                pin.pool_path
                    .ends_with(&format!("{}_{}_all.deb", pin.package, pin.version)),
                "{}",
                pin.pool_path
            );
        }
    }

    #[test]
    fn a_local_file_is_recognised_as_a_pinned_package_only_by_its_digest() {
        let dir = contrast_testkit::TempDir::new("firmware-record");
        let other = dir.path().join("other.fd");
        std::fs::write(&other, b"some firmware").unwrap();
        let mut record = FirmwareRecord::new();
        add_local(&mut record, dir.path(), Tee::Tdx, &other, false).unwrap();
        add_local(&mut record, dir.path(), Tee::Snp, &other, true).unwrap();
        write_record(dir.path(), &record).unwrap();
        let read = read_record(dir.path()).unwrap();
        assert!(matches!(
            read[&Tee::Tdx].0.source,
            FirmwareSource::LocalFile { .. }
        ));
        assert!(!read[&Tee::Snp].0.source.ships());
        // A changed file is refused, naming it.
        std::fs::write(dir.path().join("ovmf-tdx.fd"), b"changed").unwrap();
        let err = read_record(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ovmf-tdx.fd has SHA-256"), "{err}");
    }
}
