//! The `initdata-check` binary with the simulated issuer: for each decision, its exit
//! status, its one log line and the policy file it leaves for the Kata agent.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Workspace, simulator_dir};

use contrast_initdata_check::source::{MAX_COMPRESSED_LEN, encode_header_form, gzip};
use contrast_initdata_check::{Algorithm, deny_all};

const BINARY: &str = env!("CARGO_BIN_EXE_initdata-check");

const POLICY: &str = "package agent_policy\n\ndefault CreateContainerRequest := true\n";

impl Workspace {
    fn policy_out(&self) -> PathBuf {
        self.path("run/measured-cfg/policy.rego")
    }

    fn initdata_out(&self) -> PathBuf {
        self.path("run/measured-cfg/initdata.toml")
    }
}

fn document(algorithm: &str) -> String {
    common::document(algorithm, POLICY)
}

struct Run {
    code: Option<i32>,
    log: String,
    policy: Option<String>,
    /// The verified document left for the Initializer.
    document: Option<Vec<u8>>,
}

impl Run {
    /// The one line logged.
    fn line(&self) -> &str {
        let lines: Vec<&str> = self.log.lines().collect();
        assert_eq!(lines.len(), 1, "one decision line: {:?}", self.log);
        lines[0]
    }

    fn assert_refused(&self, says: &str) {
        assert_eq!(self.code, Some(1), "{}", self.log);
        let line = self.line();
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains("initdata refused: installed a deny-all policy"),
            "{line}"
        );
        assert!(line.contains(says), "{line}");
        let policy = self.policy.as_deref().unwrap();
        assert!(policy.contains("package agent_policy\n"), "{policy}");
        assert!(policy.contains("default AllowRequestsFailingPolicy := false\n"));
        assert!(policy.contains("default CreateContainerRequest := false\n"));
        assert!(!policy.contains(":= true"), "{policy}");
        let message = policy
            .lines()
            .find_map(|l| l.strip_prefix("message := "))
            .unwrap();
        let message: String = serde_json::from_str(message).unwrap();
        assert!(
            message.starts_with("Contrast initdata check failed: "),
            "{message}"
        );
        assert!(message.contains(says), "{message}");
        // The file is exactly the deny-all policy for the logged reason.
        let reason = message
            .strip_prefix("Contrast initdata check failed: ")
            .unwrap();
        assert_eq!(policy, deny_all(reason));
        assert_eq!(self.document, None, "a refused document is not left behind");
    }
}

fn run(ws: &Workspace, args: &[&str], host_data: Option<&str>, tee: &str) -> Run {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .arg("--policy-out")
        .arg(ws.policy_out())
        .arg("--initdata-out")
        .arg(ws.initdata_out())
        .env("CONTRAST_LOG_LEVEL", "info")
        .env("CONTRAST_SIMULATOR_DIR", simulator_dir())
        .env("CONTRAST_SIMULATED_TEE", tee)
        .env_remove("CONTRAST_SIMULATED_HOST_DATA")
        .env_remove("CONTRAST_POLICY_OUT")
        .env_remove("CONTRAST_INITDATA_OUT");
    if let Some(host_data) = host_data {
        command.env("CONTRAST_SIMULATED_HOST_DATA", host_data);
    }
    let output = command.output().unwrap();
    assert!(output.stdout.is_empty(), "nothing on stdout");
    Run {
        code: output.status.code(),
        log: String::from_utf8(output.stderr).unwrap(),
        policy: std::fs::read_to_string(ws.policy_out()).ok(),
        document: std::fs::read(ws.initdata_out()).ok(),
    }
}

fn device(ws: &Workspace, bytes: &[u8]) -> String {
    let path = ws.path("virtio-initdata");
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

fn sha256_hex(toml: &str) -> String {
    hex::encode(Algorithm::Sha256.digest(toml.as_bytes()))
}

#[test]
fn match_on_snp_installs_the_policy() {
    let ws = Workspace::new("match-snp");
    let toml = document("sha256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 4096));
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex(&toml)), "snp");
    assert_eq!(run.code, Some(0), "{}", run.log);
    let line = run.line();
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("initdata verified: installed its policy"),
        "{line}"
    );
    assert!(
        line.contains(&format!("digest={}", sha256_hex(&toml))),
        "{line}"
    );
    assert!(line.contains("tee=Snp"), "{line}");
    assert!(
        line.contains("issuer=\"simulated-snp\"") || line.contains("issuer=simulated-snp"),
        "{line}"
    );
    assert_eq!(run.policy.as_deref(), Some(POLICY));
    // The verified document's exact bytes are left for the Initializer.
    assert_eq!(run.document.as_deref(), Some(toml.as_bytes()));
}

#[test]
fn match_on_tdx_with_sha384_fills_mrconfigid() {
    let ws = Workspace::new("match-tdx");
    let toml = document("sha-384");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let digest = hex::encode(Algorithm::Sha384.digest(toml.as_bytes()));
    let run = run(&ws, &["--device", &dev], Some(&digest), "tdx");
    assert_eq!(run.code, Some(0), "{}", run.log);
    assert!(run.line().contains("algorithm=sha384"), "{}", run.line());
    assert_eq!(run.policy.as_deref(), Some(POLICY));
}

#[test]
fn match_on_tdx_with_sha256_and_zero_padding() {
    let ws = Workspace::new("match-tdx-256");
    let toml = document("sha256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex(&toml)), "tdx");
    assert_eq!(run.code, Some(0), "{}", run.log);
    assert_eq!(run.policy.as_deref(), Some(POLICY));
}

#[test]
fn a_plain_toml_file_is_accepted_with_initdata() {
    let ws = Workspace::new("plain");
    let toml = document("sha256");
    let file = ws.path("initdata.toml");
    std::fs::write(&file, &toml).unwrap();
    let run = run(
        &ws,
        &["--initdata", file.to_str().unwrap()],
        Some(&sha256_hex(&toml)),
        "snp",
    );
    assert_eq!(run.code, Some(0), "{}", run.log);
    assert_eq!(run.policy.as_deref(), Some(POLICY));
}

#[test]
fn mismatch_installs_the_deny_all_policy() {
    let ws = Workspace::new("mismatch");
    let toml = document("sha256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let other = sha256_hex("other initdata");
    let run = run(&ws, &["--device", &dev], Some(&other), "snp");
    run.assert_refused("initdata digest mismatch");
    let line = run.line();
    assert!(line.contains(&sha256_hex(&toml)), "{line}");
    assert!(line.contains(&other), "{line}");
    assert!(line.contains("HOST_DATA"), "{line}");
}

#[test]
fn mismatch_in_the_tdx_padding_is_refused() {
    let ws = Workspace::new("mismatch-padding");
    let toml = document("sha256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let host_data = format!("{}{}", sha256_hex(&toml), "00".repeat(15) + "01");
    let run = run(&ws, &["--device", &dev], Some(&host_data), "tdx");
    run.assert_refused("MRCONFIGID");
}

#[test]
fn malformed_toml_is_refused() {
    let ws = Workspace::new("malformed");
    let toml = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data\n";
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex(toml)), "snp");
    run.assert_refused("not a valid initdata TOML document");
}

#[test]
fn unknown_algorithm_is_refused() {
    let ws = Workspace::new("algorithm");
    let toml = document("sha3-256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex(&toml)), "snp");
    run.assert_refused("initdata algorithm \"sha3-256\" is not supported");
}

#[test]
fn missing_device_is_refused() {
    let ws = Workspace::new("missing");
    let dev = ws.path("virtio-initdata");
    let run = run(
        &ws,
        &["--device", dev.to_str().unwrap()],
        Some(&sha256_hex("x")),
        "snp",
    );
    run.assert_refused("does not exist");
    assert!(run.line().contains("virtio-initdata"), "{}", run.line());
}

#[test]
fn truncated_device_header_is_refused() {
    let ws = Workspace::new("truncated");
    let dev = device(&ws, b"initdata\x10\x00");
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex("x")), "snp");
    run.assert_refused("truncated: the header needs 16 bytes, the device has 10");
}

#[test]
fn truncated_blob_is_refused() {
    let ws = Workspace::new("truncated-blob");
    let full = encode_header_form(document("sha256").as_bytes(), 0);
    let dev = device(&ws, &full[..full.len() - 5]);
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex("x")), "snp");
    run.assert_refused("truncated: the gzip blob needs");
}

#[test]
fn oversized_device_header_is_refused() {
    let ws = Workspace::new("oversized");
    let mut bytes = b"initdata".to_vec();
    bytes.extend_from_slice(&(MAX_COMPRESSED_LEN + 1).to_le_bytes());
    bytes.extend_from_slice(&gzip(b"version = \"0.1.0\"\n"));
    let dev = device(&ws, &bytes);
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex("x")), "snp");
    run.assert_refused(&format!(
        "larger than the {MAX_COMPRESSED_LEN}-byte limit ({} bytes)",
        MAX_COMPRESSED_LEN + 1
    ));
}

#[test]
fn a_device_without_the_magic_is_refused() {
    let ws = Workspace::new("magic");
    let toml = document("sha256");
    let dev = device(&ws, toml.as_bytes());
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex(&toml)), "snp");
    run.assert_refused("is not an initdata device");
}

#[test]
fn a_missing_simulated_host_data_is_refused_too() {
    let ws = Workspace::new("no-host-data");
    let toml = document("sha256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let run = run(&ws, &["--device", &dev], None, "snp");
    run.assert_refused("--simulated-host-data");
}

#[test]
fn no_policy_at_all_exits_2() {
    let ws = Workspace::new("unwritable");
    // The policy's directory is a file: nothing can be installed.
    std::fs::create_dir_all(ws.path("run")).unwrap();
    std::fs::write(ws.path("run/measured-cfg"), b"").unwrap();
    let toml = document("sha256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let run = run(&ws, &["--device", &dev], Some(&sha256_hex(&toml)), "snp");
    assert_eq!(run.code, Some(2), "{}", run.log);
    assert!(
        run.line().contains("could not install any policy"),
        "{}",
        run.line()
    );
}

#[test]
fn initdata_and_device_are_exclusive() {
    let ws = Workspace::new("exclusive");
    let run = run(&ws, &["--initdata", "a", "--device", "b"], None, "snp");
    assert_eq!(run.code, Some(2), "{}", run.log);
    assert!(run.log.contains("cannot be used with"), "{}", run.log);
    assert!(run.policy.is_none());
}

/// The image puller config's disk: copied for the agent, readable by root only; an
/// unusable one leaves the reason beside it instead (pulls then fail with it), and
/// neither changes the initdata decision.
#[test]
fn the_imagepuller_device_is_copied_or_its_fault_recorded() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new("imagepuller");
    let toml = document("sha256");
    let dev = device(&ws, &encode_header_form(toml.as_bytes(), 0));
    let out = ws.path("run/insecure-cfg/imagepuller.toml");
    let marker = contrast_initdata::disk::imagepuller_error_path(&out);
    let config = b"[registries.\"ghcr.io\"]\nauth = \"dTpw\"\n";
    let puller = ws.path("virtio-imagepuller");
    let run_with = |device_bytes: &[u8]| {
        std::fs::write(&puller, device_bytes).unwrap();
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&marker);
        let run = run(
            &ws,
            &[
                "--device",
                &dev,
                "--imagepuller-device",
                puller.to_str().unwrap(),
                "--imagepuller-out",
                out.to_str().unwrap(),
            ],
            Some(&sha256_hex(&toml)),
            "snp",
        );
        assert_eq!(run.code, Some(0), "{}", run.log);
        run
    };

    let run = run_with(&contrast_initdata::disk::device_image_with(
        contrast_initdata::disk::IMAGEPULLER_MAGIC,
        config,
    ));
    assert!(
        run.log.contains("image puller config from the node"),
        "{}",
        run.log
    );
    assert_eq!(std::fs::read(&out).unwrap(), config);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!marker.exists());

    // The initdata disk's layout under the wrong magic: no config, the reason instead.
    let run = run_with(&encode_header_form(config, 0));
    assert!(
        run.log.contains("image puller config unusable"),
        "{}",
        run.log
    );
    assert!(!out.exists());
    let reason = std::fs::read_to_string(&marker).unwrap();
    assert!(reason.contains("imgpullr"), "{reason}");
    assert!(!run.log.contains("dTpw"), "the credentials reached the log");
}
