//! The initdata check in the guest, against HOST_DATA from the real kernel's configfs-tsm
//! (the fake TSM provider's report body, signed by the simulated AMD): initdata whose
//! digest is the launch's HOST_DATA gets its policy installed; other initdata gets the
//! deny-all policy with a message naming both digests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use contrast_evidence::issuer::Tee;
use contrast_initdata_check::hostdata::{self, HostData};
use contrast_qemu_tests::{Console, Vm, fake_tsm_module, image, tempdir};

/// All cases in one boot: first without a TSM provider, then with the fake provider loaded
/// once with the launched document's digest as HOST_DATA. initdata-check logs go through a
/// file: on the console (a terminal) tracing would colour them.
const CHECK_INITDATA: &str = r#"
fail() { echo "CONTRAST-TEST-FAIL $1: $2"; exit 1; }
# The simulator keys, under their own names (the payload prefixes them with sim-).
mkdir -p /run/sim
for key in /run/test/sim-*; do
    cp "$key" "/run/sim/${key##*/sim-}" || fail "$1" "copying $key"
done
export CONTRAST_SIMULATED_TEE=snp-tsm CONTRAST_SIMULATOR_DIR=/run/sim

# Before the provider is loaded, configfs-tsm gives no report: refused, not accepted.
echo "CONTRAST-STEP case=no-provider"
initdata-check --initdata /run/test/initdata.toml --policy-out /run/no-provider/policy.rego 2>/run/no-provider.log
status=$?
cat /run/no-provider.log
echo "CONTRAST-STEP no-provider-exit=$status"
echo "CONTRAST-STEP no-provider-message=$(grep '^message := ' /run/no-provider/policy.rego)"

insmod /run/test/fake_tsm.ko host_data="$(cat /run/test/host_data)" measurement="$(cat /run/test/measurement)" \
    || fail "$1" "insmod fake_tsm.ko failed"

echo "CONTRAST-STEP case=matching"
initdata-check --initdata /run/test/initdata.toml --policy-out /run/matching/policy.rego 2>/run/matching.log
status=$?
cat /run/matching.log
echo "CONTRAST-STEP matching-exit=$status"
echo "CONTRAST-STEP matching-sha256=$(sha256sum /run/matching/policy.rego | cut -d' ' -f1)"

echo "CONTRAST-STEP case=mismatching"
initdata-check --initdata /run/test/initdata-other.toml --policy-out /run/mismatching/policy.rego 2>/run/mismatching.log
status=$?
cat /run/mismatching.log
echo "CONTRAST-STEP mismatching-exit=$status"
echo "CONTRAST-STEP mismatching-sha256=$(sha256sum /run/mismatching/policy.rego | cut -d' ' -f1)"
echo "CONTRAST-STEP mismatching-message=$(grep '^message := ' /run/mismatching/policy.rego)"
echo "CONTRAST-TEST-PASS $1"
"#;

fn step<'a>(console: &'a Console, key: &str) -> &'a str {
    console.step_value(key).unwrap_or_else(|| {
        panic!(
            "the guest printed no CONTRAST-STEP {key}=:\n{}",
            console.text
        )
    })
}

#[test]
fn initdata_check_installs_the_policy_only_for_the_launch_host_data() {
    let image = image().unwrap();
    let scratch = tempdir("initdata").unwrap();
    // The module path is shared with other test processes, which rebuild it in place.
    let module = scratch.join("fake_tsm.ko");
    std::fs::copy(fake_tsm_module().unwrap(), &module).unwrap();

    // A marker only this run knows, so no stale file can pass for the installed policy.
    let marker = hex::encode(contrast_testkit::sha256(
        scratch.to_string_lossy().as_bytes(),
    ));
    let policy = format!(
        "package agent_policy\n\ndefault CreateContainerRequest := true\n# qemu initdata test {marker}\n"
    );
    let launched = contrast_policy::initdata(&policy);
    let other = contrast_policy::initdata(&policy.replace(
        "CreateContainerRequest := true",
        "ExecProcessRequest := true",
    ));
    let launched_digest = launched.policy_hash();
    let other_digest = other.policy_hash();
    assert_ne!(launched_digest, other_digest);

    let mut vm = Vm::new(&image, "initdata-check")
        .script(CHECK_INITDATA)
        .file("fake_tsm.ko", &module)
        .content("host_data", hex::encode(launched_digest))
        .content("measurement", "0".repeat(96))
        .content("initdata.toml", launched.as_bytes().to_vec())
        .content("initdata-other.toml", other.as_bytes().to_vec())
        .timeout(Duration::from_secs(240));
    for key in simulator_keys(&contrast_testkit::shared_simulator_dir()) {
        let name = key.file_name().unwrap().to_str().unwrap().to_owned();
        vm = vm.file(&format!("sim-{name}"), key);
    }
    let console = vm.boot().unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
    console.expect_pass().unwrap();
    eprintln!("initdata boot took {:?}", console.elapsed);

    // No TSM provider yet: the report cannot be had, so the deny-all policy says why.
    assert_eq!(step(&console, "no-provider-exit"), "1", "{}", console.text);
    let message = step(&console, "no-provider-message");
    assert!(
        message.starts_with(
            "message := \"Contrast initdata check failed: asking the TEE for a report to read the host data: "
        ),
        "{message}"
    );

    // Matching initdata: exit 0, the document's policy byte for byte, one decision line.
    assert_eq!(step(&console, "matching-exit"), "0", "{}", console.text);
    assert_eq!(
        step(&console, "matching-sha256"),
        hex::encode(contrast_testkit::sha256(policy.as_bytes())),
        "the installed policy is not the initdata's:\n{}",
        console.text
    );
    assert!(
        console.contains("initdata verified: installed its policy"),
        "{}",
        console.text
    );
    assert!(
        console.contains("issuer=\"simulated-signature-tsm\"")
            || console.contains("issuer=simulated-signature-tsm"),
        "the check did not use the fake provider through configfs-tsm:\n{}",
        console.text
    );

    // Other initdata: exit 1, the deny-all policy guest/initdata writes for the mismatch.
    assert_eq!(step(&console, "mismatching-exit"), "1", "{}", console.text);
    let mismatch = hostdata::check(
        &other_digest,
        "sha256",
        &HostData {
            tee: Tee::Snp,
            field: launched_digest.to_vec(),
        },
    )
    .unwrap_err()
    .to_string();
    let deny_all = contrast_initdata_check::deny_all(&mismatch);
    assert_eq!(
        step(&console, "mismatching-sha256"),
        hex::encode(contrast_testkit::sha256(deny_all.as_bytes())),
        "the installed policy is not the deny-all policy for {mismatch:?}:\n{}",
        console.text
    );
    let message = step(&console, "mismatching-message");
    for needle in [
        "Contrast initdata check failed: initdata digest mismatch",
        &hex::encode(other_digest),
        &hex::encode(launched_digest),
        "HOST_DATA",
        "the host attached other initdata than the VM was launched with",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    assert!(
        console.contains("initdata refused: installed a deny-all policy"),
        "{}",
        console.text
    );
}

/// The simulator's key files (`*.p8`): the guest must sign under the same roots and must
/// not generate RSA-4096 keys under TCG.
fn simulator_keys(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut keys: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "p8"))
        .collect();
    keys.sort();
    assert!(!keys.is_empty(), "no simulator keys in {}", dir.display());
    keys
}
