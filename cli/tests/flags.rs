//! Flags spelled and refused as Contrast's CLI spells and refuses them.

#![allow(clippy::unwrap_used)]

use std::process::Command;

const CONTRAST: &str = env!("CARGO_BIN_EXE_contrast");

fn contrast(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(CONTRAST)
        .args(args)
        .current_dir(dir)
        .env_remove("CONTRAST_LOG_LEVEL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_invalid_log_level_is_an_error_naming_the_levels() {
    let dir = contrast_testkit::TempDir::new("flags");
    let (ok, stderr) = contrast(
        dir.path(),
        &["--log-level", "chatty", "runtime", "--platform", "Sim-SNP"],
    );
    assert!(!ok);
    assert!(stderr.contains("chatty"), "{stderr}");
    assert!(stderr.contains("debug"), "{stderr}");
    let (ok, stderr) = contrast(
        dir.path(),
        &["--log-level", "DEBUG", "runtime", "--platform", "Sim-SNP"],
    );
    assert!(ok, "{stderr}");
}

#[test]
fn port_forwarder_is_a_flag_of_coordinator_not_of_runtime() {
    let dir = contrast_testkit::TempDir::new("flags");
    let (ok, stderr) = contrast(
        dir.path(),
        &["runtime", "--platform", "Sim-SNP", "--port-forwarder"],
    );
    assert!(!ok);
    assert!(stderr.contains("--port-forwarder"), "{stderr}");
    let (ok, stderr) = contrast(
        dir.path(),
        &["coordinator", "--platform", "Sim-SNP", "--port-forwarder"],
    );
    assert!(ok, "{stderr}");
}

#[test]
fn add_workload_owner_key_and_disable_updates_exclude_each_other() {
    let dir = contrast_testkit::TempDir::new("flags");
    let (ok, stderr) = contrast(
        dir.path(),
        &[
            "generate",
            "-w",
            "other.pem",
            "--disable-updates",
            "resources",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn recover_accepts_and_ignores_a_workload_owner_key() {
    let dir = contrast_testkit::TempDir::new("flags");
    let (ok, stderr) = contrast(
        dir.path(),
        &[
            "recover",
            "--workload-owner-key",
            "workload-owner.pem",
            "-c",
            "127.0.0.1:1",
        ],
    );
    // It fails for want of a manifest, not because of the flag.
    assert!(!ok);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert!(stderr.contains("manifest"), "{stderr}");
}

/// `--version` says what this build deploys, as Contrast's does: every image the shipped
/// resources and `generate` name, and for each platform the runtime handler `contrast
/// runtime` installs, or that this build has none.
#[test]
fn version_names_the_images_and_each_platforms_runtime_handler() {
    let run = |args: &[&str]| {
        let output = Command::new(CONTRAST).args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (ok, text) = run(&["--version"]);
    assert!(ok);
    let version = env!("CARGO_PKG_VERSION");
    assert!(text.starts_with(&format!("contrast {version}\n")), "{text}");
    let images = |yaml: &str| -> Vec<String> {
        yaml.lines()
            .filter_map(|line| line.trim().strip_prefix("image: "))
            .map(|image| image.trim_matches('"').to_owned())
            .collect()
    };
    let mut named = 0;
    for platform in contrast_platforms::Platform::ALL {
        let name = platform.name();
        let section = text
            .split(&format!("reference values for {name} platform:\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section for {name}:\n{text}"));
        let section = section.split("\nreference values for").next().unwrap();
        let (installed, runtime) = run(&["runtime", "--platform", name]);
        if !installed {
            assert!(
                section.starts_with("    none in this build"),
                "{name}: {section}"
            );
            continue;
        }
        let handler = runtime
            .lines()
            .find_map(|line| line.strip_prefix("handler: "))
            .unwrap();
        assert!(
            section.starts_with(&format!(
                "    runtime handler:{}{handler}\n",
                " ".repeat(10)
            )),
            "{name}: {section}"
        );
        let (_, coordinator) = run(&["coordinator", "--platform", name]);
        for image in images(&runtime).into_iter().chain(images(&coordinator)) {
            assert!(
                text.contains(&format!("\n    {image}\n")),
                "{image}:\n{text}"
            );
            named += 1;
        }
    }
    assert!(
        named > 0,
        "no platform of this build installs anything:\n{text}"
    );
    for injected in ["initializer", "service-mesh-proxy"] {
        assert!(
            text.contains(&format!("/{injected}:v{version}\n")),
            "{injected}:\n{text}"
        );
    }
    let (ok, short) = run(&["-V"]);
    assert!(ok);
    assert_eq!(short, format!("contrast {version}\n"));
}

/// examples/coordinator.yml is what `contrast coordinator --platform sim-snp` prints (the
/// quickstart runs it as a pod): a change to the Coordinator's resources shows here.
#[test]
fn the_example_coordinator_is_what_contrast_coordinator_prints() {
    let dir = contrast_testkit::TempDir::new("flags");
    let output = Command::new(CONTRAST)
        .args(["coordinator", "--platform", "sim-snp"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/coordinator.yml");
    let example = std::fs::read_to_string(&example).unwrap();
    let resources: String = example
        .lines()
        .skip_while(|line| line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        resources == String::from_utf8_lossy(&output.stdout),
        "examples/coordinator.yml is not what `contrast coordinator --platform sim-snp` prints; \
         write it again with that command (keeping its first comment line)"
    );
}
