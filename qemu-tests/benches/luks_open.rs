//! LUKS open time inside the guest (TCG): our keyslot profile (PBKDF2 at 1000 iterations,
//! keyed by the HKDF-derived passphrase) against cryptsetup's default keyslot KDF
//! (argon2id, benchmarked by `luksFormat`), with the same workload secret. Goal: ours
//! opens at least 10× faster. The process exits 1 when the goal is not met.
//!
//! One boot: `/dev/vdb` is formatted by `luks-helper` (our profile), `/dev/vdc` by
//! `cryptsetup luksFormat --type luks2` with our data segment (aes-xts-plain64,
//! hmac(sha256) integrity, 4 KiB sectors) and no KDF option, so only the keyslot differs.
//! Each is unlocked (`cryptsetup open --test-passphrase`) and opened and closed
//! (`cryptsetup open`, which also activates dm-integrity and dm-crypt) [`OPENS`] times;
//! the key file for ours is derived here on the host, independently of the helper
//! (HKDF-SHA256 as contrast-luks documents it), so a successful open also checks the
//! derivation. For context: the fixed cost of a cryptsetup call, of loading our header,
//! the PBKDF2 speed, and the helper's own open path (`luks-helper check`: header copy,
//! strict validation, keyslot check). Times come from `/proc/uptime` (10 ms resolution)
//! and are printed as `CONTRAST-STEP <key>=<seconds>`.
//!
//! Run: `cargo bench -p contrast-qemu-tests --bench luks_open` (builds the dependencies
//! with the release profile once), or `cargo bench --profile dev -p contrast-qemu-tests
//! --bench luks_open` to reuse the test build; the guest side is the same either way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Duration;

use contrast_qemu_tests::{Console, Vm, tempdir};
use sha2::{Digest as _, Sha256};

/// Opens per disk.
const OPENS: usize = 3;
/// The goal: argon2id open time / ours.
const GOAL: f64 = 10.0;
/// Sparse disk size: cryptsetup's default LUKS2 header and keyslots take 16 MiB.
const DISK_SIZE: u64 = 64 << 20;
/// As contrast-luks's secret module documents it.
const PASSPHRASE_LABEL_PREFIX: &str = "contrast-luks/v1/keyslot-passphrase:";

const SCRIPT: &str = r#"
name=$1
export NO_COLOR=1
fail() {
    echo "CONTRAST-TEST-FAIL $name: $*"
    dmesg | tail -n 20
    exit 1
}
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk "BEGIN { printf \"%.2f\", $2 - $1 }"; }
secret=/run/test/secret
mkdir -p /run/ours

# Ours, formatted (and mounted) by the helper, then closed again.
luks-helper format-or-open --device /dev/vdb --mount-point /run/ours --secret-file $secret 2>&1 | sed 's/^/[luks-helper] /'
grep -q " /run/ours " /proc/mounts && umount /run/ours
for m in /dev/mapper/*; do
    case "${m##*/}" in control|root|*_dif) ;; *) cryptsetup close "${m##*/}" ;; esac
done
cryptsetup isLuks /dev/vdb || fail "the helper did not format /dev/vdb"
cryptsetup luksDump /dev/vdb | grep -E 'PBKDF|Iterations|Memory|Threads|integrity|cipher'

# Argon2id: cryptsetup's default keyslot KDF (benchmarked, no KDF option given) with the
# same data segment as ours (cipher, hmac(sha256) integrity, 4 KiB sectors), so that only
# the keyslot differs; the same secret as the passphrase.
start=$(now)
cryptsetup luksFormat --type luks2 --batch-mode --cipher aes-xts-plain64 --integrity hmac-sha256 \
    --integrity-no-wipe --sector-size 4096 --key-file $secret /dev/vdc || fail "luksFormat of /dev/vdc"
echo "CONTRAST-STEP argon2id-format=$(elapsed $start $(now))"
echo "CONTRAST-STEP argon2id-kdf=$(cryptsetup luksDump /dev/vdc | awk '/PBKDF:|Time cost:|Memory:|Threads:/ { $1 = $1; printf "%s ", $0 }')"
echo "CONTRAST-STEP ours-kdf=$(cryptsetup luksDump /dev/vdb | awk '/PBKDF:|Iterations:/ { $1 = $1; printf "%s ", $0 }')"

# PBKDF2-SHA256 speed: ours runs 1000 iterations twice (keyslot, digest); the rest of its
# open is what every LUKS2 keyslot costs (header load, AF merge of 4000 stripes,
# keyslot-area decryption) and activation.
rate=$(cryptsetup benchmark --pbkdf pbkdf2 --hash sha256 | awk '/^PBKDF2-sha256/ { print $2 }')
echo "CONTRAST-STEP pbkdf2-sha256-per-second=$rate"
for i in $(seq 1 __OPENS__); do
    # What every cryptsetup call costs under TCG before any work.
    start=$(now)
    cryptsetup --version >/dev/null
    echo "CONTRAST-STEP cryptsetup-version-$i=$(elapsed $start $(now))"
    # Loading and printing the header: everything but the KDF.
    start=$(now)
    cryptsetup luksDump /dev/vdb >/dev/null || fail "luksDump of ours"
    echo "CONTRAST-STEP ours-dump-$i=$(elapsed $start $(now))"
    # Keyslot unlock only (no activation): the KDF and the digest check.
    start=$(now)
    cryptsetup open --test-passphrase --key-file /run/test/ours.key /dev/vdb || fail "test-passphrase of ours"
    echo "CONTRAST-STEP ours-unlock-$i=$(elapsed $start $(now))"
    start=$(now)
    cryptsetup open --test-passphrase --key-file $secret /dev/vdc || fail "test-passphrase of argon2id"
    echo "CONTRAST-STEP argon2id-unlock-$i=$(elapsed $start $(now))"
    # Full open: unlock and activate dm-integrity and dm-crypt.
    start=$(now)
    cryptsetup open --key-file /run/test/ours.key /dev/vdb bench-ours || fail "cryptsetup open of ours (host-derived key)"
    echo "CONTRAST-STEP ours-open-$i=$(elapsed $start $(now))"
    cryptsetup close bench-ours || fail "close ours"
    start=$(now)
    cryptsetup open --key-file $secret /dev/vdc bench-argon2id || fail "cryptsetup open of argon2id"
    echo "CONTRAST-STEP argon2id-open-$i=$(elapsed $start $(now))"
    cryptsetup close bench-argon2id || fail "close argon2id"
    start=$(now)
    luks-helper check --device /dev/vdb --secret-file $secret || fail "luks-helper check"
    echo "CONTRAST-STEP helper-check-$i=$(elapsed $start $(now))"
done
echo "CONTRAST-TEST-PASS $name"
"#;

/// A workload secret as the Initializer writes it: 128 lowercase hex characters.
fn workload_secret() -> String {
    let first = Sha256::digest(b"luks-open-bench/0");
    let second = Sha256::digest(b"luks-open-bench/1");
    format!("{}{}", hex::encode(first), hex::encode(second))
}

/// Our keyslot passphrase for `device`: HKDF-SHA256, empty salt, the decoded secret as
/// input key material, the label prefix and device path as info, 32 bytes.
fn our_passphrase(secret_hex: &str, device: &str) -> Vec<u8> {
    let ikm = hex::decode(secret_hex).unwrap();
    let hkdf = hkdf::Hkdf::<Sha256>::new(None, &ikm);
    let mut okm = vec![0u8; 32];
    hkdf.expand(
        format!("{PASSPHRASE_LABEL_PREFIX}{device}").as_bytes(),
        &mut okm,
    )
    .unwrap();
    okm
}

fn times(console: &Console, key: &str) -> Vec<f64> {
    (1..=OPENS)
        .map(|i| {
            console
                .step_value(&format!("{key}-{i}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}-{i} in the console:\n{}", console.text))
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The guest image, built from the dev-profile binaries.
///
/// `contrast_qemu_tests::image()` takes the guest binaries from the running profile's
/// directory, which under `cargo bench` is `target/release`, but builds them with
/// `cargo build --workspace --bins` (dev profile, `target/debug`): it would pick up
/// missing or stale release binaries. So the bench builds the dev binaries and its own
/// image from them (about two seconds), in a directory only it uses. Under the dev
/// profile the harness's image is used as it is.
fn main() -> ExitCode {
    // The harness takes the guest binaries from the debug build in either profile.
    let image = contrast_qemu_tests::image().unwrap();
    let dir = tempdir("luks-open-bench").unwrap();
    let mut vm = Vm::new(&image, "luks-open-bench")
        .script(&SCRIPT.replace("__OPENS__", &OPENS.to_string()))
        .timeout(Duration::from_secs(600));
    for name in ["ours.img", "argon2id.img"] {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(DISK_SIZE)
            .unwrap();
        vm = vm.disk(path);
    }
    let secret = workload_secret();
    let vm = vm
        .content("secret", secret.as_bytes())
        .content("ours.key", our_passphrase(&secret, "/dev/vdb"));
    let console = vm.boot().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    console.expect_pass().unwrap();

    let step = |key: &str| console.step_value(key).unwrap_or("?").to_owned();
    let row = |label: &str, key: &str| {
        let values = times(&console, key);
        println!("  {label:<48} {values:?} s, mean {:.2} s", mean(&values));
        mean(&values)
    };
    println!(
        "LUKS open in the guest (QEMU TCG), {OPENS} runs each, boot {:?}",
        console.elapsed
    );
    println!("  ours:     {}", step("ours-kdf"));
    println!("  argon2id: {}", step("argon2id-kdf"));
    println!("  argon2id luksFormat: {} s", step("argon2id-format"));
    if let Some(rate) = console
        .step_value("pbkdf2-sha256-per-second")
        .and_then(|v| v.parse::<f64>().ok())
    {
        println!(
            "  PBKDF2-sha256: {rate:.0} iterations/s: our 2 x 1000 iterations take {:.3} s",
            2000.0 / rate
        );
    }
    row("cryptsetup --version (fixed cost)", "cryptsetup-version");
    row("cryptsetup luksDump, ours (header load)", "ours-dump");
    let ours_unlock = row("keyslot unlock (--test-passphrase), ours", "ours-unlock");
    let argon2id_unlock = row(
        "keyslot unlock (--test-passphrase), argon2id",
        "argon2id-unlock",
    );
    let ours = row("cryptsetup open (unlock + activate), ours", "ours-open");
    let argon2id = row(
        "cryptsetup open (unlock + activate), argon2id",
        "argon2id-open",
    );
    row("luks-helper check (copy, validate, unlock)", "helper-check");
    let ratio = argon2id / ours;
    println!(
        "  ratio argon2id / ours: open {ratio:.1}x (goal >= {GOAL}x), unlock only {:.1}x",
        argon2id_unlock / ours_unlock
    );
    if ratio >= GOAL {
        ExitCode::SUCCESS
    } else {
        println!("  GOAL NOT MET");
        ExitCode::FAILURE
    }
}
