//! Chooses the reference values the crate embeds: the checked-in file (simulated platforms
//! only), or the file `CONTRAST_REFERENCE_VALUES` names — what `firmware-refs
//! reference-values --image-dir` wrote for a built guest image (`cargo xtask image` does
//! both). A CLI built that way carries the image's values for the bare-metal platforms.

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
    let target = PathBuf::from(out_dir).join("reference-values.json");
    if let Err(e) = std::fs::copy(&source, &target) {
        eprintln!(
            "cannot embed the reference values {}: {e} (CONTRAST_REFERENCE_VALUES must name a \
             file written by `firmware-refs reference-values`)",
            source.display()
        );
        std::process::exit(1);
    }
}
