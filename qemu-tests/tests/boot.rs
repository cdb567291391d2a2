//! The measured boot chain: the image boots and its root filesystem is mounted through
//! dm-verity; a one-byte change in the root filesystem image makes the guest refuse it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use contrast_qemu_tests::{BOOT_FAIL_MARKER, Vm, image, tempdir};

const CHECK_VERITY_ROOT: &str = r#"
fail() { echo "CONTRAST-TEST-FAIL $1: $2"; exit 1; }
grep -q '^/dev/mapper/root / erofs ro' /proc/mounts || fail "$1" "/ is not the read-only erofs on /dev/mapper/root: $(cat /proc/mounts)"
for dm in /sys/block/dm-*; do
    [ "$(cat $dm/dm/name)" = root ] || continue
    case "$(cat $dm/dm/uuid)" in
        CRYPT-VERITY-*) echo "CONTRAST-STEP verity=$(cat $dm/dm/uuid)" ;;
        *) fail "$1" "the root mapping is not dm-verity: $(cat $dm/dm/uuid)" ;;
    esac
    found=1
done
[ -n "$found" ] || fail "$1" "no device-mapper device named root"
# Writing is impossible: the mapping is read-only.
touch /probe 2>/dev/null && fail "$1" "the root filesystem is writable"
echo "CONTRAST-STEP uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "CONTRAST-TEST-PASS $1"
"#;

#[test]
fn the_image_boots_with_its_root_filesystem_through_dm_verity() {
    let image = image().unwrap();
    let console = Vm::new(&image, "verity-root")
        .script(CHECK_VERITY_ROOT)
        .boot()
        .unwrap();
    console.expect_pass().unwrap();
    assert!(
        console.contains("root filesystem verified"),
        "{}",
        console.text
    );
    let uuid = console.step_value("verity").unwrap();
    assert!(uuid.starts_with("CRYPT-VERITY-"), "{uuid}");
}

#[test]
fn a_one_byte_change_in_the_root_filesystem_is_refused() {
    let image = image().unwrap();
    let dir = tempdir("tampered-rootfs").unwrap();
    let tampered = dir.join("rootfs.img");
    let mut bytes = std::fs::read(image.path("rootfs.img")).unwrap();
    // The release file, which the initramfs reads before it switches root.
    let needle = b"contrast guest image ";
    let hits: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "the release text should occur once in the image"
    );
    bytes[hits[0] + 9] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();

    let console = Vm::new(&image, "verity-tampered")
        .script("echo \"CONTRAST-TEST-PASS $1\"\n")
        .rootfs(&tampered)
        .boot()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        console.expect_pass().is_err(),
        "a tampered root filesystem booted:\n{}",
        console.text
    );
    let refusal: Vec<&str> = console.marked(BOOT_FAIL_MARKER).collect();
    assert!(
        refusal
            .iter()
            .any(|r| r.contains("does not match the root hash")),
        "expected the initramfs to refuse the root filesystem:\n{}",
        console.text
    );
    assert!(
        console.contains("is corrupted"),
        "expected dm-verity to report the corrupted block:\n{}",
        console.text
    );
    assert!(!console.contains("contrast-guest: up"), "{}", console.text);
}
