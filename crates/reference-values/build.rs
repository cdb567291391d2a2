//! Chooses the reference values the crate embeds: the checked-in file (simulated platforms
//! only), or the file `CONTRAST_REFERENCE_VALUES` names — what `firmware-refs
//! reference-values --image-dir` wrote for a built guest image (`cargo xtask image` does
//! both). A CLI built that way carries the image's values for the bare-metal platforms.
//! Likewise `release.json` from `CONTRAST_RELEASE` (`cargo xtask release`), or nothing.

// A build script reports its errors on stderr.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=CONTRAST_REFERENCE_VALUES");
    let source = match std::env::var_os("CONTRAST_REFERENCE_VALUES") {
        Some(path) => PathBuf::from(path),
        // Read at run time: a build script compiled in another checkout stays fresh here.
        None => match std::env::var_os("CARGO_MANIFEST_DIR") {
            Some(dir) => PathBuf::from(dir).join("assets/reference-values.json"),
            None => {
                eprintln!("CARGO_MANIFEST_DIR is not set: run this build script through cargo");
                std::process::exit(1);
            }
        },
    };
    println!("cargo:rerun-if-changed={}", source.display());
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        eprintln!("OUT_DIR is not set: run this build script through cargo");
        std::process::exit(1);
    };
    let out_dir = PathBuf::from(out_dir);
    embed_release(&out_dir);
    let target = out_dir.join("reference-values.json");
    if let Err(e) = std::fs::copy(&source, &target) {
        eprintln!(
            "cannot embed the reference values {}: {e} (CONTRAST_REFERENCE_VALUES must name a \
             file written by `firmware-refs reference-values`)",
            source.display()
        );
        std::process::exit(1);
    }
}

/// `release.json` from `CONTRAST_RELEASE` (what `cargo xtask release` wrote), or an empty
/// file: a development build names its images by tag.
fn embed_release(out_dir: &std::path::Path) {
    println!("cargo:rerun-if-env-changed=CONTRAST_RELEASE");
    let target = out_dir.join("release.json");
    let result = match std::env::var_os("CONTRAST_RELEASE") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
            std::fs::copy(&path, &target).map(|_| ())
        }
        None => std::fs::write(&target, ""),
    };
    if let Err(e) = result {
        eprintln!(
            "cannot embed the release {}: {e} (CONTRAST_RELEASE must name the release.json \
             `cargo xtask release` wrote)",
            target.display()
        );
        std::process::exit(1);
    }
}
