//! The release's firmware comes from a Debian archive, checked against its pins: packages
//! built with Debian's dpkg-deb, served over HTTP on the loopback as an archive's pool
//! serves them.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use contrast_image::firmware::{
    DebianFirmware, FirmwareRecord, FirmwareSource, fetch_debian, read_record, write_record,
};
use contrast_image::{ImageError, firmware};
use contrast_platforms::Tee;
use contrast_testkit::TempDir;
use contrast_testkit::serve::Background;
use sha2::{Digest as _, Sha256};

/// A Debian package with `files` (path → content), built by dpkg-deb.
fn deb(dir: &Path, package: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let root = dir.join(format!("{package}-root"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.com>\n\
             Description: test firmware\n"
        ),
    )
    .unwrap();
    for (path, content) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    let out = dir.join(format!("{package}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(&root)
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    std::fs::read(out).unwrap()
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Serves `body` at the pool path of `pool_path` until dropped.
fn archive(pool_path: &'static str, body: Vec<u8>) -> Background {
    let app = axum::Router::new().route(
        &format!("/debian/{pool_path}"),
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    Background::serve(app)
}

const FIRMWARE: &[u8] = b"an AmdSevX64 build, as far as this test knows";
const POOL_PATH: &str = "pool/main/e/edk2/ovmf-test_1_all.deb";

fn pin(deb: &[u8]) -> DebianFirmware {
    DebianFirmware {
        tee: Tee::Snp,
        package: "ovmf-test",
        version: "1",
        suite: "sid",
        pool_path: POOL_PATH,
        deb_sha256: Box::leak(hex_sha256(deb).into_boxed_str()),
        path: FIRMWARE_PATH,
        sha256: Box::leak(hex_sha256(FIRMWARE).into_boxed_str()),
    }
}

/// A fetch of a pin made from a package with `pinned` files, from an archive that serves
/// that package, or one with `served` files instead.
struct Fetch {
    image: TempDir,
    record: FirmwareRecord,
    result: Result<(), ImageError>,
    pin: DebianFirmware,
}

fn fetch(pinned: &[(&str, &[u8])], served: Option<&[(&str, &[u8])]>) -> Fetch {
    let work = TempDir::new("firmware-packages");
    let package = deb(work.path(), "ovmf-test", pinned);
    let pin = pin(&package);
    let body = match served {
        Some(files) => deb(work.path(), "ovmf-other", files),
        None => package,
    };
    let server = archive(POOL_PATH, body);
    let image = TempDir::new("firmware-image");
    let mut record = FirmwareRecord::new();
    let result = fetch_debian(
        &mut record,
        image.path(),
        &pin,
        &format!("{}/debian/", server.url()),
    );
    Fetch {
        image,
        record,
        result,
        pin,
    }
}

const FIRMWARE_PATH: &str = "usr/share/ovmf/OVMF.amdsev.fd";

#[test]
fn a_pinned_package_gives_its_firmware_and_a_record_naming_it() {
    let Fetch {
        image,
        record,
        result,
        pin,
    } = fetch(
        &[
            (FIRMWARE_PATH, FIRMWARE),
            ("usr/share/doc/ovmf-test/README", b"readme"),
        ],
        None,
    );
    result.unwrap();
    write_record(image.path(), &record).unwrap();
    assert_eq!(
        std::fs::read(image.path().join("ovmf-snp.fd")).unwrap(),
        FIRMWARE
    );
    // Only the firmware and its record stay: the package file is gone.
    let mut names: Vec<_> = std::fs::read_dir(image.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["firmware.json", "ovmf-snp.fd"]);
    let read = read_record(image.path()).unwrap();
    let (firmware, _) = &read[&Tee::Snp];
    assert_eq!(firmware.sha256, hex_sha256(FIRMWARE));
    assert_eq!(
        firmware.source,
        FirmwareSource::DebianPackage {
            package: "ovmf-test".to_owned(),
            version: "1".to_owned(),
            deb_sha256: pin.deb_sha256.to_owned(),
            path: pin.path.to_owned(),
        }
    );
    assert!(firmware.source.ships());
}

#[test]
fn another_package_than_the_pinned_one_is_refused_and_nothing_is_written() {
    // The archive serves a package with other firmware under the pinned name.
    let other: &[(&str, &[u8])] = &[(FIRMWARE_PATH, b"a firmware of the host's choosing")];
    let Fetch {
        image,
        record,
        result,
        ..
    } = fetch(&[(FIRMWARE_PATH, FIRMWARE)], Some(other));
    let err = result.unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(matches!(err, ImageError::FirmwareDownload { .. }), "{text}");
    assert!(text.contains("ovmf-test 1"), "{text}");
    assert!(text.contains("integrity mismatch"), "{text}");
    assert!(record.is_empty());
    assert_eq!(std::fs::read_dir(image.path()).unwrap().count(), 0);
}

#[test]
fn a_package_debian_no_longer_carries_says_to_update_the_pin() {
    let server = archive("pool/elsewhere.deb", Vec::new());
    let image = TempDir::new("firmware-gone");
    let mut record = FirmwareRecord::new();
    let err = fetch_debian(
        &mut record,
        image.path(),
        &firmware::DEBIAN_FIRMWARE[0],
        &format!("{}/debian", server.url()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ovmf-amdsev 2026.08+ds-2"), "{err}");
    assert!(err.contains("DEBIAN_FIRMWARE"), "{err}");
    assert_eq!(std::fs::read_dir(image.path()).unwrap().count(), 0);
}

#[test]
fn a_package_without_the_pinned_file_is_refused_naming_the_path() {
    let Fetch { image, result, .. } = fetch(&[("usr/share/OVMF/OVMF_CODE_4M.fd", FIRMWARE)], None);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("has no /usr/share/ovmf/OVMF.amdsev.fd"),
        "{err}"
    );
    assert!(!image.path().join("ovmf-snp.fd").exists());
}

#[test]
fn a_pinned_package_whose_firmware_is_not_the_pinned_file_is_refused() {
    let work = TempDir::new("firmware-file-pin");
    let package = deb(work.path(), "ovmf-test", &[(FIRMWARE_PATH, FIRMWARE)]);
    // The package's digest is right, the file's pin is another file's.
    let pin = DebianFirmware {
        sha256: Box::leak(hex_sha256(b"another build").into_boxed_str()),
        ..pin(&package)
    };
    let server = archive(POOL_PATH, package);
    let image = TempDir::new("firmware-file-pin-image");
    let mut record = FirmwareRecord::new();
    let err = fetch_debian(
        &mut record,
        image.path(),
        &pin,
        &format!("{}/debian", server.url()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("correct the pin in DEBIAN_FIRMWARE"), "{err}");
    assert!(record.is_empty());
    assert!(!image.path().join("ovmf-snp.fd").exists());
}
