//! Helpers shared by the integration tests: the external tools and files they compare with.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's unified OVMF image.
pub const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// Debian's split code image.
pub const DEBIAN_OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";

/// A file of the Debian package `ovmf`; fails the test clearly if it is missing.
pub fn debian_ovmf(path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is missing: install the Debian package `ovmf` (cargo xtask test installs it)",
        path.display()
    );
    path
}

/// A file under tests/data.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A program of the PyPI package sev-snp-measure 0.0.13: from `$CONTRAST_PYTHON_TOOLS`,
/// else from PATH. Never skipped: a missing tool fails the test.
pub fn python_tool(name: &str) -> PathBuf {
    let from_env =
        std::env::var_os("CONTRAST_PYTHON_TOOLS").map(|dir| PathBuf::from(dir).join(name));
    let from_path = || {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    let tool = from_env
        .filter(|p| p.is_file())
        .or_else(from_path)
        .unwrap_or_else(|| {
            panic!(
                "{name} not found in $CONTRAST_PYTHON_TOOLS or PATH: run `cargo xtask test`, which \
             installs sev-snp-measure==0.0.13 from PyPI and sets CONTRAST_PYTHON_TOOLS"
            )
        });
    if name == "sev-snp-measure" {
        let version = run(Command::new(&tool).arg("--version"));
        assert!(
            version.trim().ends_with("0.0.13"),
            "{} is {version:?}; the tests compare with 0.0.13: run `cargo xtask test`",
            tool.display()
        );
    }
    tool
}

/// The Python interpreter next to the tools (it has the package's dependencies).
pub fn python() -> PathBuf {
    let tool = python_tool("sev-snp-measure");
    let sibling = tool.with_file_name("python3");
    if sibling.is_file() {
        sibling
    } else {
        PathBuf::from("python3")
    }
}

/// Runs `cmd`, asserts success, returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deterministic filler bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A small PE32+ image: headers, two sections listed out of file order, trailing data.
pub fn minimal_pe() -> Vec<u8> {
    let mut img = pattern(0x900, 7);
    img[..0x200].fill(0);
    img[..2].copy_from_slice(b"MZ");
    img[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    img[0x40..0x44].copy_from_slice(b"PE\0\0");
    let put16 =
        |img: &mut Vec<u8>, at: usize, v: u16| img[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |img: &mut Vec<u8>, at: usize, v: u32| img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut img, 0x44, 0x8664);
    put16(&mut img, 0x46, 2); // sections
    put16(&mut img, 0x54, 0xf0); // optional header size
    put16(&mut img, 0x56, 0x206);
    let opt = 0x58;
    put16(&mut img, opt, 0x20b);
    put32(&mut img, opt + 32, 0x1000);
    put32(&mut img, opt + 36, 0x200);
    put32(&mut img, opt + 56, 0x3000);
    put32(&mut img, opt + 60, 0x200); // SizeOfHeaders
    put32(&mut img, opt + 64, 0x1234_5678); // CheckSum: excluded
    put16(&mut img, opt + 68, 10);
    put32(&mut img, opt + 108, 16);
    let table = opt + 0xf0;
    for (i, (name, va, ptr, size)) in [
        (b".text\0\0\0", 0x2000u32, 0x400u32, 0x400u32),
        (b".setup\0\0", 0x1000, 0x200, 0x200),
    ]
    .into_iter()
    .enumerate()
    {
        let at = table + 40 * i;
        img[at..at + 8].copy_from_slice(name);
        put32(&mut img, at + 8, size);
        put32(&mut img, at + 12, va);
        put32(&mut img, at + 16, size);
        put32(&mut img, at + 20, ptr);
    }
    img
}
