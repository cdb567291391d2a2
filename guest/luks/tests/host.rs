//! Host tests on image files: header validation, keyslot checks, the format decision, and
//! the cryptsetup CLI as a second opinion. Activation and mounting need device-mapper and
//! run in the QEMU tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use contrast_luks::{
    DeviceState, HeaderError, LuksError, Profile, WorkloadSecret, check, cryptsetup,
    format_if_empty, header, probe,
};
use libcryptsetup_rs::consts::flags::CryptPbkdf;
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat};
use libcryptsetup_rs::{CryptInit, CryptPbkdfType, TokenInput};
use serde_json::{Value, json};
use support::{Image, Kind, changed, image, leaves, read_metadata, rewrite_metadata, set_path};

fn secret(seed: u8) -> WorkloadSecret {
    let mut bytes = [0u8; 64];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_add(u8::try_from(i).unwrap());
    }
    WorkloadSecret::from_bytes(bytes)
}

fn ours_for(secret: &WorkloadSecret) -> Image {
    // The derived key depends on the device path, which is only known once the image
    // exists: make the image, then format it for its own path.
    let img = Image::empty(4 << 20);
    let passphrase = secret
        .keyslot_passphrase(img.path.to_str().unwrap())
        .unwrap();
    support::synthesize(&img.path, Kind::Ours, passphrase.as_bytes());
    img
}

fn contrast_for(secret: &WorkloadSecret) -> Image {
    image(Kind::ContrastFast, secret.contrast_passphrase().as_bytes())
}

/// The cryptsetup CLI: from PATH, or /usr/sbin where Debian puts it (not in a normal
/// user's PATH).
fn cryptsetup_cli(args: &[&str]) -> std::process::Output {
    let program = ["/usr/sbin/cryptsetup", "/sbin/cryptsetup"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("cryptsetup");
    Command::new(program)
        .args(args)
        .output()
        .expect("the cryptsetup CLI (Debian package cryptsetup-bin) is installed")
}

/// The JSON path the validator must name for a changed leaf: list elements are named by
/// their list.
fn expected_field(metadata: &Value, path: &str) -> String {
    if let Some((parent, last)) = path.rsplit_once('.')
        && last.parse::<usize>().is_ok()
    {
        let mut node = metadata;
        for part in parent.split('.') {
            node = &node[part];
        }
        if node.is_array() {
            return parent.to_owned();
        }
    }
    path.to_owned()
}

#[test]
fn our_header_matches_the_profile_and_cryptsetups_own_dump() {
    let s = secret(1);
    let img = ours_for(&s);
    let dump = cryptsetup_cli(&[
        "luksDump",
        "--dump-json-metadata",
        img.path.to_str().unwrap(),
    ]);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let cli: Value = serde_json::from_slice(&dump.stdout).unwrap();
    assert_eq!(cli, read_metadata(&img.path));
    assert_eq!(
        header::validate_text(std::str::from_utf8(&dump.stdout).unwrap()).unwrap(),
        Profile::Ours
    );
    // The pinned layout is what libcryptsetup computes for our sizes.
    assert_eq!(
        cli["keyslots"]["0"]["area"]["offset"],
        json!(header::KEYSLOT_AREA_OFFSET.to_string())
    );
    assert_eq!(
        cli["keyslots"]["0"]["area"]["size"],
        json!(header::KEYSLOT_AREA_SIZE.to_string())
    );
    assert_eq!(
        cli["segments"]["0"]["offset"],
        json!(header::DATA_OFFSET.to_string())
    );
    assert_eq!(
        cli["digests"]["0"]["iterations"],
        json!(header::PBKDF2_ITERATIONS)
    );
}

#[test]
fn check_accepts_our_profile_with_the_derived_key() {
    let s = secret(2);
    let img = ours_for(&s);
    let base = img.header_base();
    assert_eq!(check(&img.path, &s, &base).unwrap(), Profile::Ours);
    // The private header copy is gone afterwards.
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
}

#[test]
fn check_accepts_contrasts_profile_with_the_hex_secret() {
    let s = secret(3);
    let img = contrast_for(&s);
    assert_eq!(
        check(&img.path, &s, &img.header_base()).unwrap(),
        Profile::Contrast
    );
}

#[test]
fn wrong_workload_secret_is_refused() {
    let img = ours_for(&secret(4));
    let err = check(&img.path, &secret(5), &img.header_base()).unwrap_err();
    assert!(
        matches!(
            err,
            LuksError::KeyslotRefused {
                profile: Profile::Ours,
                ..
            }
        ),
        "{err}"
    );
    let img = contrast_for(&secret(4));
    let err = check(&img.path, &secret(5), &img.header_base()).unwrap_err();
    assert!(
        matches!(
            err,
            LuksError::KeyslotRefused {
                profile: Profile::Contrast,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn our_key_is_bound_to_the_device_path() {
    let s = secret(6);
    let img = ours_for(&s);
    let other = img.dir.path().join("other-name.img");
    std::fs::hard_link(&img.path, &other).unwrap();
    let err = check(&other, &s, &img.header_base()).unwrap_err();
    assert!(matches!(err, LuksError::KeyslotRefused { .. }), "{err}");
}

/// Rewrites one field of a copy of `img` and runs the whole check on it.
fn check_with_field_changed(
    img: &Image,
    s: &WorkloadSecret,
    path: &str,
    value: Value,
) -> Result<Profile, LuksError> {
    // Same path as the original (the key is bound to it): mutate in place, restore after.
    let original = std::fs::read(&img.path).unwrap();
    rewrite_metadata(&img.path, |m| set_path(m, path, value));
    let result = check(&img.path, s, &img.header_base());
    std::fs::write(&img.path, original).unwrap();
    result
}

/// Fields that hold random values: no profile pins them, the keyslot check refuses a
/// change.
const RANDOM_FIELDS: [&str; 3] = ["keyslots.0.kdf.salt", "digests.0.salt", "digests.0.digest"];

#[test]
fn every_field_of_our_header_changed_on_its_own_is_refused_naming_it() {
    let s = secret(7);
    let img = ours_for(&s);
    let metadata = read_metadata(&img.path);
    let all = leaves(&metadata);
    assert!(all.len() >= 30, "{all:?}");
    for (path, value) in all {
        let new = changed(&value);
        let mut edited = metadata.clone();
        set_path(&mut edited, &path, new.clone());
        let validated = header::validate(&edited);
        if RANDOM_FIELDS.contains(&path.as_str()) {
            assert_eq!(validated, Ok(Profile::Ours), "{path}");
            let err = check_with_field_changed(&img, &s, &path, new).unwrap_err();
            assert!(
                matches!(err, LuksError::KeyslotRefused { .. }),
                "{path}: {err}"
            );
            continue;
        }
        // The validator names the field on its own...
        let err = validated.expect_err(&path);
        assert_eq!(
            err.field(),
            expected_field(&metadata, &path),
            "{path}: {err}"
        );
        // ...and the whole check refuses it: by our validator (naming the field) unless
        // libcryptsetup already refused to load it.
        // ...and so does the whole check, also where libcryptsetup refuses the header first.
        match check_with_field_changed(&img, &s, &path, new).unwrap_err() {
            LuksError::Header { source, .. } => {
                assert_eq!(
                    source.field(),
                    expected_field(&metadata, &path),
                    "{path}: {source}"
                );
            }
            other => panic!("{path}: unexpected {other}"),
        }
    }
}

/// Values Contrast's format benchmarks; accepted within bounds, so a small change is
/// caught by the keyslot check (the KDF no longer yields the key).
const BENCHMARKED_FIELDS: [&str; 3] = [
    "keyslots.0.kdf.time",
    "keyslots.0.kdf.cpus",
    "digests.0.iterations",
];

#[test]
fn every_field_of_contrasts_header_changed_on_its_own_is_refused_naming_it() {
    let s = secret(8);
    let img = contrast_for(&s);
    let metadata = read_metadata(&img.path);
    for (path, value) in leaves(&metadata) {
        let new = changed(&value);
        let result = check_with_field_changed(&img, &s, &path, new.clone());
        if RANDOM_FIELDS.contains(&path.as_str()) || BENCHMARKED_FIELDS.contains(&path.as_str()) {
            let err = result.unwrap_err();
            assert!(
                matches!(err, LuksError::KeyslotRefused { .. }),
                "{path}: {err}"
            );
            continue;
        }
        match result {
            Ok(p) => panic!("{path} changed to {new} was accepted as {p:?}"),
            Err(LuksError::Header { source, .. }) => {
                assert_eq!(
                    source.field(),
                    expected_field(&metadata, &path),
                    "{path}: {source}"
                );
            }
            Err(other) => panic!("{path}: unexpected {other}"),
        }
    }
}

#[test]
fn a_second_keyslot_is_refused() {
    let s = secret(9);
    // Contrast's layout has room for a second keyslot: add it the regular way.
    let img = contrast_for(&s);
    {
        let mut cd = CryptInit::init(&img.path).unwrap();
        cd.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .unwrap();
        cd.settings_handle()
            .set_pbkdf_type(&CryptPbkdfType {
                type_: CryptKdf::Pbkdf2,
                hash: Some("sha256".into()),
                time_ms: 0,
                iterations: 1000,
                max_memory_kb: 0,
                parallel_threads: 0,
                flags: CryptPbkdf::NO_BENCHMARK,
            })
            .unwrap();
        let slot = cd
            .keyslot_handle()
            .add_by_passphrase(None, s.contrast_passphrase().as_bytes(), b"second")
            .unwrap();
        assert_eq!(slot, 1);
    }
    let err = check(&img.path, &s, &img.header_base()).unwrap_err();
    match err {
        LuksError::Header {
            source: HeaderError::Field { field, .. },
            ..
        } => {
            assert_eq!(field, "keyslots");
        }
        other => panic!("unexpected {other}"),
    }

    // Our layout has no room for one; a second keyslot written into the metadata is
    // refused by the validator (and libcryptsetup refuses the overlapping area).
    let img = ours_for(&s);
    let mut metadata = read_metadata(&img.path);
    let slot = metadata["keyslots"]["0"].clone();
    metadata["keyslots"]["1"] = slot;
    metadata["digests"]["0"]["keyslots"] = json!(["0", "1"]);
    assert_eq!(header::validate(&metadata).unwrap_err().field(), "keyslots");
    rewrite_metadata(&img.path, |m| *m = metadata);
    match check(&img.path, &s, &img.header_base()).unwrap_err() {
        LuksError::Header { source, .. } => assert_eq!(source.field(), "keyslots"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_token_is_refused() {
    let s = secret(10);
    let img = ours_for(&s);
    {
        let mut cd = CryptInit::init(&img.path).unwrap();
        cd.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .unwrap();
        let token = json!({"type": "contrast-test", "keyslots": ["0"]});
        cd.token_handle()
            .json_set(TokenInput::AddToken(&token))
            .unwrap();
    }
    let err = check(&img.path, &s, &img.header_base()).unwrap_err();
    match err {
        LuksError::Header {
            source: HeaderError::Field { field, .. },
            ..
        } => {
            assert_eq!(field, "tokens");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_header_without_integrity_is_refused() {
    // cryptsetup's own format without --integrity (what Contrast's Gen-0 wrote).
    let s = secret(11);
    let img = Image::empty(32 << 20);
    let key = img.dir.path().join("key");
    std::fs::write(&key, s.contrast_passphrase().as_bytes()).unwrap();
    let out = cryptsetup_cli(&[
        "luksFormat",
        "--type=luks2",
        "--cipher=aes-xts-plain64",
        "--pbkdf=argon2id",
        "--pbkdf-force-iterations=4",
        "--pbkdf-memory=10240",
        "--sector-size=4096",
        "--batch-mode",
        &format!("--key-file={}", key.display()),
        img.path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = check(&img.path, &s, &img.header_base()).unwrap_err();
    match err {
        LuksError::Header { source, .. } => {
            // The 64-byte volume key is the first difference to either profile.
            assert_eq!(source.field(), "keyslots.0.key_size", "{source}");
        }
        other => panic!("unexpected {other}"),
    }
    // A header that differs from ours only in lacking integrity protection.
    let mut metadata = read_metadata(&ours_for(&s).path);
    metadata["segments"]["0"]
        .as_object_mut()
        .unwrap()
        .remove("integrity");
    assert_eq!(
        header::validate(&metadata).unwrap_err().field(),
        "segments.0.integrity"
    );
}

#[test]
fn luks1_is_refused_and_never_formatted() {
    let s = secret(12);
    let img = Image::empty(8 << 20);
    let key = img.dir.path().join("key");
    std::fs::write(&key, b"luks1 passphrase").unwrap();
    let out = cryptsetup_cli(&[
        "luksFormat",
        "--type=luks1",
        "--pbkdf-force-iterations=1000",
        "--batch-mode",
        &format!("--key-file={}", key.display()),
        img.path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::fs::read(&img.path).unwrap();
    assert!(!format_if_empty(&img.path, &s).unwrap());
    assert_eq!(std::fs::read(&img.path).unwrap(), before);
    let err = check(&img.path, &s, &img.header_base()).unwrap_err();
    assert!(matches!(err, LuksError::HeaderCopy { .. }), "{err}");
}

#[test]
fn a_luks_device_is_never_formatted_even_with_its_primary_header_gone() {
    let s = secret(13);
    let img = ours_for(&s);
    let before = std::fs::read(&img.path).unwrap();
    assert!(!format_if_empty(&img.path, &s).unwrap());
    assert_eq!(std::fs::read(&img.path).unwrap(), before);

    // Wipe the primary binary header: the secondary copy (at the header size, 16 KiB)
    // still makes it a LUKS device.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&img.path)
        .unwrap();
    file.write_all_at(&[0u8; 4096], 0).unwrap();
    assert_eq!(
        probe(&img.path).unwrap(),
        DeviceState::LuksHeader { offset: 16384 }
    );
    let before = std::fs::read(&img.path).unwrap();
    assert!(!format_if_empty(&img.path, &s).unwrap());
    assert_eq!(std::fs::read(&img.path).unwrap(), before);
}

#[test]
fn an_unreadable_device_is_an_error_not_a_format() {
    let s = secret(14);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert!(matches!(
        format_if_empty(&missing, &s),
        Err(LuksError::Probe { .. })
    ));
    assert!(!missing.exists());
    assert!(matches!(
        format_if_empty(dir.path(), &s),
        Err(LuksError::Probe { .. })
    ));
}

#[test]
fn check_on_an_empty_device_says_it_is_not_formatted() {
    let img = Image::empty(4 << 20);
    let err = check(&img.path, &secret(15), &img.header_base()).unwrap_err();
    assert!(matches!(err, LuksError::NotLuks { .. }), "{err}");
}

/// Formatting needs device-mapper (dm-integrity). Where there is none, formatting fails
/// before a header is written, so the next start formats again instead of finding a
/// half-made volume; where there is, the result passes our own check.
#[test]
fn format_writes_our_profile_or_fails_cleanly_without_device_mapper() {
    let s = secret(16);
    let img = Image::empty(64 << 20);
    match format_if_empty(&img.path, &s) {
        Ok(formatted) => {
            assert!(formatted);
            assert_eq!(
                check(&img.path, &s, &img.header_base()).unwrap(),
                Profile::Ours
            );
        }
        Err(err) => {
            assert!(
                matches!(
                    err,
                    LuksError::Format {
                        step: "writing the LUKS2 header and dm-integrity superblock",
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(probe(&img.path).unwrap(), DeviceState::NoLuksHeader);
        }
    }
}

#[test]
fn the_keyslot_is_checked_from_the_private_copy_not_the_device() {
    let s = secret(17);
    let img = ours_for(&s);
    let copy = cryptsetup::copy_header(&img.path, &img.header_base()).unwrap();
    let mode = std::fs::metadata(copy.dir()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let mut volume = cryptsetup::load(&copy, &img.path).unwrap();
    // The host rewrites the device's header and keyslot area after the copy was taken.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&img.path)
        .unwrap();
    file.write_all_at(&vec![0u8; 1 << 20], 0).unwrap();
    let passphrase = s.keyslot_passphrase(img.path.to_str().unwrap()).unwrap();
    volume.check_keyslot(&passphrase).unwrap();
    drop(volume);
    let dir = copy.dir().to_owned();
    drop(copy);
    assert!(!dir.exists());
}

fn write_key_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn cryptsetup_cli_accepts_our_derived_key_on_our_header() {
    let s = secret(18);
    let img = ours_for(&s);
    let device = img.path.to_str().unwrap();
    let key = s.keyslot_passphrase(device).unwrap();
    let key_file = write_key_file(img.dir.path(), "derived.key", key.as_bytes());
    let out = cryptsetup_cli(&[
        "open",
        "--test-passphrase",
        &format!("--key-file={}", key_file.display()),
        device,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let wrong = secret(19).keyslot_passphrase(device).unwrap();
    let wrong_file = write_key_file(img.dir.path(), "wrong.key", wrong.as_bytes());
    let out = cryptsetup_cli(&[
        "open",
        "--test-passphrase",
        &format!("--key-file={}", wrong_file.display()),
        device,
    ]);
    // Exit status 2: no key available with this passphrase.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cryptsetup_cli_accepts_the_secret_file_on_contrasts_header() {
    let s = secret(20);
    let img = contrast_for(&s);
    // The Initializer's secret file itself is Contrast's key file.
    let seed = write_key_file(
        img.dir.path(),
        "workload-secret-seed",
        s.contrast_passphrase().as_bytes(),
    );
    assert_eq!(
        WorkloadSecret::read_file(&seed).unwrap().as_bytes(),
        s.as_bytes()
    );
    let out = cryptsetup_cli(&[
        "open",
        "--test-passphrase",
        &format!("--key-file={}", seed.display()),
        img.path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The secure mount up to activation. Without device-mapper (build machines) it must stop
/// at activation, after validating header and keyslot, and never run mkfs or mount; with
/// device-mapper it is the QEMU tests' job (it would mount).
#[test]
fn secure_mount_stops_at_activation_without_device_mapper() {
    if Path::new("/sys/module/dm_mod").exists() {
        return;
    }
    let s = secret(21);
    let img = ours_for(&s);
    let mut mount = contrast_luks::SecureMount::new(&img.path, img.dir.path().join("state"));
    mount.header_dir_base = img.header_base();
    // Programs that would fail loudly if they were run.
    mount.mkfs = img.dir.path().join("no-mkfs");
    mount.mount = img.dir.path().join("no-mount");
    let err = mount.run(&s).unwrap_err();
    assert!(matches!(err, LuksError::Activate { .. }), "{err}");
    assert_eq!(std::fs::read_dir(img.header_base()).unwrap().count(), 0);

    // A wrong secret is refused before activation is tried.
    let err = mount.run(&secret(22)).unwrap_err();
    assert!(matches!(err, LuksError::KeyslotRefused { .. }), "{err}");

    // An empty device: formatting fails without device-mapper, nothing else runs.
    let empty = Image::empty(16 << 20);
    let mut mount = contrast_luks::SecureMount::new(&empty.path, empty.dir.path().join("state"));
    mount.header_dir_base = empty.header_base();
    let err = mount.run(&s).unwrap_err();
    assert!(matches!(err, LuksError::Format { .. }), "{err}");
}

/// Closing a mapping that does not exist fails and names it, with what to check; nothing
/// else is touched (the real close runs in the QEMU secure-pv test).
#[test]
fn closing_a_mapping_that_is_not_there_is_refused_naming_it() {
    let name = "contrast-test-no-such-mapping";
    let err = cryptsetup::deactivate(name).unwrap_err();
    assert!(matches!(err, LuksError::Deactivate { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("/dev/mapper/{name}")), "{text}");
    assert!(text.contains("still mounted"), "{text}");
}
