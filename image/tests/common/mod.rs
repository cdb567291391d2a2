//! The shipped binaries, built as they ship, for the tests of this crate.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use contrast_image::shipped_build;

/// `target`: the directory this test binary sits under (`<target>/debug/deps/<test>`).
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("test binary under <target>/<profile>/deps")
        .to_owned()
}

pub(crate) fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Builds the shipped binaries (once per test process) and returns `<target>/release`.
pub(crate) fn shipped() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = target_dir();
            let status = shipped_build(&cargo())
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building the shipped binaries: {status}");
            target.join("release")
        })
        .clone()
}
