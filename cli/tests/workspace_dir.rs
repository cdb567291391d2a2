//! `--workspace-dir`, as Contrast has it: a global flag, before or after the subcommand,
//! for where the default files are; a path the user gives is taken as given, relative to
//! the current directory.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::process::Command;

use common::{CONTRAST, ok, refused, run_logged};
use contrast_history::{ZERO_HASH, next_transition_hash};
use contrast_testkit::{Deployment, TempDir};

#[test]
fn defaults_come_from_the_workspace_and_given_paths_as_given() {
    let deployment = Deployment::new(&["web"]);
    let workspace = deployment.workspace.path().display().to_string();
    // The current directory: another manifest of its own, no manifest.json.
    let cwd = TempDir::new("cwd");
    let mut other = deployment.manifest.clone();
    other
        .policies
        .values_mut()
        .for_each(|p| p.sans = Some(vec!["other".into()]));
    std::fs::write(cwd.path().join("other.json"), other.encode()).unwrap();
    let run = |args: &[&str]| {
        run_logged(
            Command::new(CONTRAST)
                .current_dir(cwd.path())
                .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir),
            args,
        )
    };
    let read = |name: &str| std::fs::read_to_string(cwd.path().join(name)).unwrap();
    let expected = |manifest: &[u8]| hex::encode(next_transition_hash(manifest, ZERO_HASH));

    // Before the subcommand and after it: the workspace's manifest.json.
    ok(&run(&[
        "--workspace-dir",
        &workspace,
        "sign",
        "--prepare",
        "--out",
        "a",
    ]));
    ok(&run(&[
        "sign",
        "--workspace-dir",
        &workspace,
        "--prepare",
        "--out",
        "b",
    ]));
    let workspace_manifest = std::fs::read(deployment.path("manifest.json")).unwrap();
    assert_eq!(read("a"), expected(&workspace_manifest));
    assert_eq!(read("b"), read("a"));

    // A manifest given on the command line: from the current directory.
    ok(&run(&[
        "--workspace-dir",
        &workspace,
        "sign",
        "--prepare",
        "-m",
        "other.json",
        "--out",
        "c",
    ]));
    assert_eq!(read("c"), expected(&other.encode()));
    assert_ne!(read("c"), read("a"));
    // Given as manifest.json, it is not looked up in the workspace.
    refused(
        &run(&[
            "--workspace-dir",
            &workspace,
            "sign",
            "--prepare",
            "-m",
            "manifest.json",
            "--out",
            "d",
        ]),
        &["reading the manifest manifest.json"],
    );
}
