//! The LUKS helper in the guest, on the real kernel's dm-crypt and dm-integrity: a volume
//! formatted in one boot reopens in the next with its data (first through Contrast's
//! `initializer cryptsetup`, held until SIGTERM, then the helper); a header the host changed
//! between boots is refused and not formatted over; the wrong workload secret is refused.
//!
//! The disk is a sparse file on the host, attached as `/dev/vdb`; the workload secret
//! travels in the payload (`/run/test/secret…`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use contrast_qemu_tests::{Console, Vm, image, tempdir};
use sha2::{Digest as _, Sha256};

/// Size of the test disk (sparse): our profile's data starts at 1 MiB, and dm-integrity
/// and ext4 need a few MiB more.
const DISK_SIZE: u64 = 64 << 20;

/// The text the first boot writes and the second reads back.
const CONTENT: &str = "written in the first boot";

/// Shell functions every guest script starts with. `open DEVICE SECRET` runs the helper
/// with its output in /run/out and on the console and returns its exit status; `map`
/// is the mapping name the helper uses for /dev/vdb at /run/state (SHA-256 of device
/// and mount point, first 8 bytes in hex).
const PRELUDE: &str = r#"
name=$1
export NO_COLOR=1
fail() {
    echo "CONTRAST-TEST-FAIL $name: $*"
    echo "--- dmesg (tail) ---"; dmesg | tail -n 30
    exit 1
}
mkdir -p /run/state
open() {
    luks-helper format-or-open --device "$1" --mount-point /run/state --secret-file "$2" >/run/out 2>&1
    rc=$?
    sed 's/^/[luks-helper] /' /run/out
    return $rc
}
map=$(printf '%s%s' /dev/vdb /run/state | sha256sum | cut -c1-16)
close() {
    umount /run/state || fail "umount /run/state"
    cryptsetup close "$map" || fail "cryptsetup close $map"
    [ -e "/dev/mapper/$map" ] && fail "/dev/mapper/$map is still there after close"
    return 0
}
"#;

/// Boot 1: formats the empty disk with secret `secret` (our profile, hmac(sha256)
/// integrity), writes a file, closes.
const FORMAT_AND_WRITE: &str = r#"
open /dev/vdb /run/test/secret || fail "format-or-open of the empty disk failed (exit $rc)"
grep -q 'formatted (LUKS2' /run/out || fail "the helper did not say it formatted the empty disk"
grep -q "^/dev/mapper/$map /run/state ext4 rw" /proc/mounts || fail "/dev/mapper/$map is not mounted read-write at /run/state: $(cat /proc/mounts)"
status=$(cryptsetup status "$map")
echo "$status"
echo "$status" | grep -q 'integrity: hmac(sha256)' || fail "the mapping has no hmac(sha256) integrity"
echo "$status" | grep -q 'cipher:  *aes-xts-plain64' || fail "the mapping's cipher is not aes-xts-plain64"
echo "__CONTENT__" > /run/state/hello.txt || fail "writing to the volume"
sync
close
cryptsetup isLuks /dev/vdb || fail "/dev/vdb is not LUKS after formatting"
echo "CONTRAST-STEP mapping=$map"
echo "CONTRAST-TEST-PASS $name"
"#;

/// Boot 2 of the reopen test: same disk, same secret. First Contrast's `initializer
/// cryptsetup -d -m` with the secret where the Initializer writes it: it mounts the
/// volume, holds it until SIGTERM, then unmounts and closes it; then the helper reopens
/// it and reads what both wrote.
const REOPEN_AND_READ: &str = r#"
mkdir -p /run/contrast/secrets
cp /run/test/secret /run/contrast/secrets/workload-secret-seed
CONTRAST_SECRETS_DIR=/run/contrast initializer cryptsetup -d /dev/vdb -m /run/state >/run/init.log 2>&1 &
pid=$!
i=0
while ! grep -q " /run/state " /proc/mounts; do
    kill -0 "$pid" 2>/dev/null || { cat /run/init.log; fail "initializer cryptsetup exited before mounting"; }
    i=$((i + 1)); [ "$i" -le 600 ] || fail "initializer cryptsetup did not mount in 60 s"
    sleep 0.1
done
content=$(cat /run/state/hello.txt) || fail "initializer cryptsetup: the file written in the first boot is missing"
[ "$content" = "__CONTENT__" ] || fail "initializer cryptsetup read back '$content'"
echo "by the initializer" > /run/state/second.txt || fail "writing through initializer cryptsetup"
sync
kill -TERM "$pid"
wait "$pid" || { cat /run/init.log; fail "initializer cryptsetup failed on SIGTERM"; }
sed 's/^/[initializer] /' /run/init.log
grep -q " /run/state " /proc/mounts && fail "initializer cryptsetup left /run/state mounted"
[ -e "/dev/mapper/$map" ] && fail "initializer cryptsetup left /dev/mapper/$map open"
open /dev/vdb /run/test/secret || fail "reopening the volume failed (exit $rc)"
grep -q 'formatted (LUKS2' /run/out && fail "the helper formatted a disk that has a LUKS header"
grep -q 'secure mount ready' /run/out || fail "the helper did not report the mount ready"
content=$(cat /run/state/hello.txt) || fail "the file written in the first boot is missing"
[ "$content" = "__CONTENT__" ] || fail "read back '$content', expected '__CONTENT__'"
[ "$(cat /run/state/second.txt)" = "by the initializer" ] || fail "the initializer's file is missing"
close
echo "CONTRAST-TEST-PASS $name"
"#;

/// Boot 2 of the header test: /dev/vdb's header lost its integrity section (checksums
/// fixed, so libcryptsetup accepts it), /dev/vdc's header JSON is corrupted in both
/// copies. Both must be refused, with a message, and nothing may be activated.
const TAMPERED_HEADERS: &str = r#"
open /dev/vdb /run/test/secret && fail "the helper opened a header without integrity protection"
grep -q 'segments.0.integrity' /run/out || fail "the refusal of /dev/vdb does not name segments.0.integrity"
grep -q 'refusing to open it' /run/out || fail "the refusal of /dev/vdb does not say it refuses"
grep -q 'formatted (LUKS2' /run/out && fail "the helper formatted /dev/vdb"
cp /run/out /run/out-vdb
mkdir -p /run/other
luks-helper format-or-open --device /dev/vdc --mount-point /run/other --secret-file /run/test/secret >/run/out 2>&1 && fail "the helper opened a header with broken checksums"
sed 's/^/[luks-helper] /' /run/out
grep -q 'refusing to format over it' /run/out || fail "the refusal of /dev/vdc does not say it will not format"
grep -q 'formatted (LUKS2' /run/out && fail "the helper formatted /dev/vdc"
for m in /dev/mapper/*; do
    case "${m##*/}" in control|root) ;; *) fail "a mapping was activated: $m" ;; esac
done
grep -q -e /run/state -e /run/other /proc/mounts && fail "something is mounted: $(cat /proc/mounts)"
echo "CONTRAST-TEST-PASS $name"
"#;

/// One boot: format with secret A and write; secret B is refused (and changes no byte of
/// the disk); secret A still opens it and reads the file.
const WRONG_SECRET: &str = r#"
open /dev/vdb /run/test/secret || fail "format-or-open of the empty disk with secret A failed (exit $rc)"
grep -q 'formatted (LUKS2' /run/out || fail "the helper did not format the empty disk"
echo "__CONTENT__" > /run/state/hello.txt || fail "writing to the volume"
sync
close
before=$(sha256sum /dev/vdb | cut -d' ' -f1)
open /dev/vdb /run/test/wrong-secret && fail "the helper opened the volume with secret B"
grep -q 'the workload secret does not open /dev/vdb' /run/out || fail "the refusal does not say the secret does not open the volume"
grep -q 'formatted (LUKS2' /run/out && fail "the helper formatted over the volume with secret B"
[ -e "/dev/mapper/$map" ] && fail "/dev/mapper/$map was activated with secret B"
grep -q /run/state /proc/mounts && fail "/run/state is mounted after the refusal"
after=$(sha256sum /dev/vdb | cut -d' ' -f1)
[ "$before" = "$after" ] || fail "the disk changed when secret B was refused ($before -> $after)"
echo "CONTRAST-STEP disk-unchanged=$after"
open /dev/vdb /run/test/secret || fail "secret A no longer opens the volume after the refusal (exit $rc)"
content=$(cat /run/state/hello.txt) || fail "the file is gone after the refusal"
[ "$content" = "__CONTENT__" ] || fail "read back '$content', expected '__CONTENT__'"
close
echo "CONTRAST-TEST-PASS $name"
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}{}", body.replace("__CONTENT__", CONTENT))
}

/// A workload secret as the Initializer writes it: 128 lowercase hex characters.
fn workload_secret(label: &str) -> Vec<u8> {
    let first = Sha256::digest(format!("{label}/0").as_bytes());
    let second = Sha256::digest(format!("{label}/1").as_bytes());
    format!("{}{}", hex::encode(first), hex::encode(second)).into_bytes()
}

/// A scratch directory, removed when the test ends (also when it fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        Scratch(tempdir(name).unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn empty_disk(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(DISK_SIZE)
        .unwrap();
    path
}

fn file_digest(path: &Path) -> [u8; 32] {
    Sha256::digest(std::fs::read(path).unwrap()).into()
}

fn boot(vm: Vm) -> Console {
    let console = vm.boot().unwrap();
    // The helper's messages and the markers, for the test log (--nocapture).
    eprintln!("boot {} took {:?}", console.test, console.elapsed);
    for line in console.text.lines() {
        if line.contains("[luks-helper]") || line.starts_with("CONTRAST-") {
            eprintln!("  {line}");
        }
    }
    console.expect_pass().unwrap();
    console
}

/// The first boot of tests 1 and 2: format the empty disk and write the file.
fn format_and_write(disk: &Path, secret: &[u8], test: &str) {
    let image = image().unwrap();
    let console = boot(
        Vm::new(&image, test)
            .script(&script(FORMAT_AND_WRITE))
            .content("secret", secret)
            .disk(disk),
    );
    let mapping = console.step_value("mapping").unwrap();
    assert_eq!(mapping.len(), 16, "{}", console.text);
}

/// LUKS2 binary header fields (offsets into each header copy).
const HDR_SIZE_OFFSET: usize = 8;
const CSUM_ALG_OFFSET: usize = 72;
const CSUM_OFFSET: usize = 448;
const CSUM_LEN: usize = 64;
const BINARY_HEADER_LEN: usize = 4096;

/// Rewrites the JSON area of both header copies with `edit`; with `fix_checksums`, each
/// copy's SHA-256 checksum (over the whole copy, checksum field zeroed) is recomputed so
/// that libcryptsetup accepts the result.
fn rewrite_headers(disk: &Path, fix_checksums: bool, edit: impl Fn(&mut [u8])) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    let mut size = [0u8; 8];
    file.read_exact_at(&mut size, HDR_SIZE_OFFSET as u64)
        .unwrap();
    let hdr_size = u64::from_be_bytes(size);
    assert_eq!(hdr_size, 16 * 1024, "our profile's metadata size");
    for (offset, magic) in [(0, b"LUKS\xba\xbe"), (hdr_size, b"SKUL\xba\xbe")] {
        let mut copy = vec![0u8; usize::try_from(hdr_size).unwrap()];
        file.read_exact_at(&mut copy, offset).unwrap();
        assert_eq!(&copy[..6], magic, "header copy at {offset}");
        assert!(copy[CSUM_ALG_OFFSET..].starts_with(b"sha256\0"));
        edit(&mut copy[BINARY_HEADER_LEN..]);
        if fix_checksums {
            copy[CSUM_OFFSET..CSUM_OFFSET + CSUM_LEN].fill(0);
            let digest = Sha256::digest(&copy);
            copy[CSUM_OFFSET..CSUM_OFFSET + digest.len()].copy_from_slice(&digest);
        }
        file.write_all_at(&copy, offset).unwrap();
    }
    file.sync_all().unwrap();
}

/// Removes `segments.0.integrity` from a JSON area: the host strips the integrity
/// protection so that it could change sectors unnoticed.
fn strip_integrity(json_area: &mut [u8]) {
    let end = json_area.iter().position(|&b| b == 0).unwrap();
    let mut metadata: serde_json::Value = serde_json::from_slice(&json_area[..end]).unwrap();
    let removed = metadata["segments"]["0"]
        .as_object_mut()
        .unwrap()
        .remove("integrity");
    assert!(removed.is_some(), "the header had no integrity section");
    let text = serde_json::to_vec(&metadata).unwrap();
    json_area.fill(0);
    json_area[..text.len()].copy_from_slice(&text);
}

#[test]
fn a_formatted_volume_reopens_in_a_second_boot_with_its_data() {
    let scratch = Scratch::new("luks-reopen");
    let dir = &scratch.0;
    let disk = empty_disk(dir, "disk.img");
    let secret = workload_secret("reopen");
    format_and_write(&disk, &secret, "luks-format");

    let image = image().unwrap();
    boot(
        Vm::new(&image, "luks-reopen")
            .script(&script(REOPEN_AND_READ))
            .content("secret", secret)
            .disk(&disk),
    );
}

#[test]
fn a_header_changed_on_the_host_is_refused_and_not_formatted_over() {
    let scratch = Scratch::new("luks-tampered");
    let dir = &scratch.0;
    let disk = empty_disk(dir, "disk.img");
    let secret = workload_secret("tampered");
    format_and_write(&disk, &secret, "luks-format-for-tampering");

    // Two copies of the formatted disk: one without integrity protection (checksums
    // fixed: only our validator can refuse it), one whose JSON no longer parses in
    // either header copy (libcryptsetup refuses it: the checksums no longer match).
    let stripped = dir.join("stripped.img");
    let corrupted = dir.join("corrupted.img");
    std::fs::copy(&disk, &stripped).unwrap();
    std::fs::copy(&disk, &corrupted).unwrap();
    rewrite_headers(&stripped, true, strip_integrity);
    rewrite_headers(&corrupted, false, |json| {
        assert_eq!(json[0], b'{');
        json[0] = b'[';
    });
    let stripped_before = file_digest(&stripped);
    let corrupted_before = file_digest(&corrupted);

    let image = image().unwrap();
    let console = boot(
        Vm::new(&image, "luks-tampered")
            .script(&script(TAMPERED_HEADERS))
            .content("secret", secret)
            .disk(&stripped)
            .disk(&corrupted),
    );
    // The refusals as the operator sees them.
    assert!(
        console.contains("segments.0.integrity")
            && console.contains("absent (no integrity protection)"),
        "{}",
        console.text
    );
    assert!(
        console.contains("refusing to format over it"),
        "{}",
        console.text
    );
    // Not one byte of either disk changed: nothing was formatted, repaired or written.
    assert_eq!(
        file_digest(&stripped),
        stripped_before,
        "the stripped disk changed"
    );
    assert_eq!(
        file_digest(&corrupted),
        corrupted_before,
        "the corrupted disk changed"
    );
}

#[test]
fn the_wrong_workload_secret_is_refused_and_nothing_is_formatted() {
    let scratch = Scratch::new("luks-wrong-secret");
    let dir = &scratch.0;
    let disk = empty_disk(dir, "disk.img");
    let image = image().unwrap();
    let console = boot(
        Vm::new(&image, "luks-wrong-secret")
            .script(&script(WRONG_SECRET))
            .content("secret", workload_secret("right"))
            .content("wrong-secret", workload_secret("wrong"))
            .disk(&disk),
    );
    assert!(
        console.step_value("disk-unchanged").is_some(),
        "{}",
        console.text
    );
    assert!(
        console.contains("either the workload secret differs"),
        "{}",
        console.text
    );
}
