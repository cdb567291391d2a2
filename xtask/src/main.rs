//! Project tasks, run as `cargo xtask <task>`.
//!
//! `cargo xtask test` is the one test command (README.md, `.ci/run`): it installs what the
//! tests need on a fresh Debian machine, then runs the format check, clippy with warnings
//! as errors, the crypto-provider guard and every test.

#![allow(clippy::print_stderr)] // a command-line task reports on stderr

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

mod tidy;

/// Debian packages the build and the tests use, each with a shell test that shows it is
/// there. Later issues add theirs (QEMU, containerd, …) here, and only here.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    // sha256sum: the manifest tests check our hash against an independent tool.
    ("coreutils", "command -v sha256sum"),
    // openssl: cross-checks of certificates, signatures and keys (s_client, s_server,
    // verify, dgst -sign as users sign manifest updates: docs/protocol.md §8.2).
    ("openssl", "command -v openssl"),
    // iptables: the service mesh's redirect rules (IPv4 and IPv6), applied in network
    // namespaces the test creates.
    (
        "iptables",
        "command -v iptables-restore && command -v ip6tables-restore",
    ),
    // LUKS: libcryptsetup-rs links libcryptsetup and runs bindgen (libclang); the tests
    // cross-check headers and keys with the cryptsetup CLI.
    ("libcryptsetup-dev", "test -e /usr/include/libcryptsetup.h"),
    (
        "libclang-dev",
        "ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1",
    ),
    ("clang", "command -v clang"),
    ("pkg-config", "command -v pkg-config"),
    (
        "cryptsetup-bin",
        "test -x /usr/sbin/cryptsetup || command -v cryptsetup",
    ),
    // firmware-refs measures Debian's OVMF builds (OVMF.fd, OVMF_CODE.fd).
    ("ovmf", "test -e /usr/share/ovmf/OVMF.fd"),
    // An independent Authenticode hash for firmware-refs' RTMR1 (the kernel's PE hash).
    ("osslsigncode", "command -v osslsigncode"),
    // runtime-installer: every containerd config we write is checked by containerd itself.
    ("containerd", "command -v containerd"),
    // testing/cri: pods through a private containerd's CRI (runc for the harness's own
    // test; our shim for the QEMU pods), images imported with ctr.
    ("runc", "command -v runc"),
    // testing/cri: the pod network of the containerd pods (CNI's bridge and host-local).
    (
        "containernetworking-plugins",
        "test -x /usr/lib/cni/bridge && test -x /usr/lib/cni/host-local",
    ),
    // contrast generate resolves images against a real registry, filled with skopeo.
    ("docker-registry", "command -v docker-registry"),
    ("skopeo", "command -v skopeo"),
    // The Python cross-check tools live in a virtual environment (see PYTHON_TOOLS).
    ("python3-venv", "python3 -m venv --help"),
    // image/: the guest image's userland and the tools that build it reproducibly.
    (
        "busybox-static",
        "test -x /bin/busybox && /bin/busybox --list | grep -qx insmod",
    ),
    ("erofs-utils", "command -v mkfs.erofs"),
    ("kmod", "command -v modprobe"),
    ("e2fsprogs", "test -x /usr/sbin/mke2fs"),
    ("zstd", "command -v zstd"),
    ("xz-utils", "command -v xz"),
    ("binutils", "command -v strip"),
    ("cpio", "command -v cpio"),
    (
        "ca-certificates",
        "test -e /etc/ssl/certs/ca-certificates.crt",
    ),
    // The agent's OCI runtime, carried in the image.
    ("crun", "test -x /usr/bin/crun"),
    // The agent's network test reads the kernel back with iproute2's `ip -json`.
    ("iproute2", "command -v ip"),
    // qemu-tests: kbuild for the test-only TSM provider module.
    ("make", "command -v make"),
];

/// The Debian release whose backports carry the guest kernel and a QEMU new enough for it.
const BACKPORTS: &str = "bookworm-backports";

/// Packages from [`BACKPORTS`] (docs/environment.md §1): QEMU 10 and the pinned 6.12 guest
/// kernel with its headers (the test-only kernel module is built against them). The kernel
/// version is pinned by contrast-image; its reference values depend on it.
const BACKPORTS_PACKAGES: &[(&str, &str)] = &[
    (
        "qemu-system-x86",
        "dpkg-query -W -f '${Version}' qemu-system-x86 2>/dev/null | grep -q bpo",
    ),
    (
        "linux-image-6.12.95+deb12-amd64",
        "test -e /boot/vmlinuz-6.12.95+deb12-amd64",
    ),
    (
        "linux-headers-6.12.95+deb12-amd64",
        "test -e /lib/modules/6.12.95+deb12-amd64/build/Makefile",
    ),
];

/// Python tools the tests compare against, installed from PyPI into a virtual environment
/// under the target directory; tests find them through `CONTRAST_PYTHON_TOOLS`.
const PYTHON_TOOLS: &[&str] = &[
    // The reference for SNP launch digests (firmware-refs must be byte-identical).
    "sev-snp-measure==0.0.13",
    // Kubernetes' own schemas for every YAML the CLI emits.
    "kubernetes-validate==1.37.0",
    // A Vault client library: the Coordinator's transit engine is tested with it.
    "hvac==2.4.0",
];

/// Crates that would bring a second crypto provider or OpenSSL into a binary
/// (docs/dependencies.md §1: one provider, aws-lc-rs).
const FORBIDDEN_CRATES: &[&str] = &["ring", "openssl-sys", "native-tls"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["test"] => test(),
        ["tidy"] => tidy::tidy(),
        ["quickstart"] => quickstart(false),
        ["quickstart", "--containerd"] => quickstart(true),
        ["image"] => image(false),
        ["image", "--debian-firmware"] => image(true),
        ["release", rest @ ..] => release(rest),
        ["install-deps"] => install_debian_packages(),
        _ => {
            usage();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage() {
    eprintln!(
        "usage: cargo xtask <task>\n\n\
         tasks:\n  \
         quickstart [--containerd]\n                \
         install what it needs, then run the whole lifecycle on this machine; with\n                \
         --containerd the pods run on containerd, each in its VM (QEMU, our shim and agent)\n  \
         image [--debian-firmware]\n                \
         build the guest image into target/image, compute its reference values and\n                \
         SNP ID blocks, and build a CLI that embeds them (target/embedded/debug/contrast);\n                \
         with --debian-firmware, from the firmware a release ships (the pinned Debian\n                \
         packages, downloaded), else from a stand-in for SNP and the installed OVMF.fd\n  \
         release --registry HOST[:PORT]/PREFIX --out DIR [--insecure-registry] [--stand-in-firmware]\n                \
         build the shipped binaries, the guest image with the pinned Debian firmware (offline:\n                \
         a stand-in, never production values) and the container images (Coordinator,\n                \
         Initializer, service-mesh proxy, port-forwarder, node installer), push them, and\n                \
         write an OCI layout, release.json and a CLI that deploys them by digest to DIR\n  \
         test          install what the tests need, then fmt check, clippy -D warnings, tidy, all tests\n  \
         tidy          check the workspace's layering rules (core, host, guest, testing)\n  \
         install-deps  only install the Debian packages the tests need"
    );
}

fn test() -> Result<()> {
    let started = Instant::now();
    step("this checkout's build", forget_other_checkouts)?;
    step("system packages", install_debian_packages)?;
    step("toolchain components", ensure_toolchain_components)?;
    step("cargo fmt --check", || {
        run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
    })?;
    step("cargo clippy -D warnings", || {
        run(Command::new("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("tidy (layers)", tidy::tidy)?;
    step("one crypto provider", check_crypto_provider)?;
    let python_tools = step_with("python tools", install_python_tools)?;
    step("crates.io tools", install_cargo_tools)?;
    // Built alone (release, default features), as they ship; a test inspects them.
    step("shipped binaries", build_shipped_binaries)?;
    // The release test's report (release.json, reproducibility, sizes): a passing test's
    // output is not shown, and this is what a reader of the CI log wants to see of it.
    let release_report = target_dir().join("tmp/release-report.txt");
    let _ = std::fs::remove_file(&release_report);
    step("tests", || run_tests(&python_tools))?;
    match std::fs::read_to_string(&release_report) {
        Ok(report) => eprintln!("xtask: the release test's report\n{report}"),
        Err(e) => eprintln!(
            "xtask: no release report at {}: {e}",
            release_report.display()
        ),
    }
    step("quickstart", || run_quickstart(false))?;
    step("quickstart --containerd", || run_quickstart(true))?;
    eprintln!("xtask: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// A target directory shared with another checkout (CI's cache serves several) holds the
/// workspace members' binaries built there, and cargo counts them as fresh here: it keys
/// members by their path inside the workspace and compares modification times. What they
/// compiled in with `env!("CARGO_MANIFEST_DIR")` (test data, the image's scripts) would
/// name the other checkout. So unless the target directory was last used from here, the
/// members' artifacts are cleaned (`cargo clean -p`; the dependencies stay built).
fn forget_other_checkouts() -> Result<()> {
    // The workspace cargo finds from here (xtask may run from a subdirectory).
    let located = Command::new("cargo")
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .context("running cargo locate-project")?;
    anyhow::ensure!(
        located.status.success(),
        "cargo locate-project failed: {}",
        String::from_utf8_lossy(&located.stderr)
    );
    let manifest = PathBuf::from(String::from_utf8_lossy(&located.stdout).trim());
    let root = manifest
        .parent()
        .context("the workspace manifest has no directory")?
        .canonicalize()
        .context("resolving the workspace directory")?;
    // Without CARGO_TARGET_DIR, cargo builds into the workspace's target/.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let marker = target.join("contrast-checkout");
    let here = root.to_string_lossy().into_owned();
    let last = std::fs::read_to_string(&marker).unwrap_or_default();
    if last == here {
        return Ok(());
    }
    // Also when it names no checkout: built before this check existed, or by hand.
    let last = if last.is_empty() {
        "elsewhere"
    } else {
        last.as_str()
    };
    eprintln!(
        "xtask: the target directory was last built from {last}: rebuilding this checkout's crates"
    );
    let mut clean = Command::new("cargo");
    clean.arg("clean");
    for member in tidy::load(&root)?.layers.keys() {
        clean.args(["-p", member]);
    }
    run(clean.current_dir(&root))?;
    std::fs::create_dir_all(&target).context("creating the target directory")?;
    std::fs::write(&marker, &here).with_context(|| format!("writing {}", marker.display()))
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    step_with(name, f)
}

fn step_with<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("xtask: == {name}");
    let started = Instant::now();
    let value = f().with_context(|| format!("step {name:?} failed"))?;
    eprintln!("xtask: == {name}: ok ({:.1?})", started.elapsed());
    Ok(value)
}

/// The target directory cargo uses (CARGO_TARGET_DIR or ./target).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// Creates (once) a virtual environment with [`PYTHON_TOOLS`]; returns its `bin` directory.
fn install_python_tools() -> Result<PathBuf> {
    let venv = std::path::absolute(target_dir().join("python-tools"))
        .context("cannot resolve the target directory")?;
    let bin = venv.join("bin");
    // What the environment holds, written once pip succeeded: a changed list reinstalls.
    let installed = venv.join("contrast-tools.txt");
    let wanted = PYTHON_TOOLS.join("\n");
    if std::fs::read_to_string(&installed).is_ok_and(|have| have == wanted) {
        return Ok(bin);
    }
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    let mut pip = Command::new(bin.join("pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check"]);
    pip.args(PYTHON_TOOLS);
    run(&mut pip)?;
    std::fs::write(&installed, wanted)
        .with_context(|| format!("writing {}", installed.display()))?;
    Ok(bin)
}

/// Programs from crates.io the tests run, as `cargo install` specs and binary names:
/// the QEMU tests' user-space vsock backend (docs/environment.md §7; no /dev/vhost-vsock
/// here). Installed once into `<target>/tools/bin`, where the harness looks for it.
const CARGO_TOOLS: &[(&str, &str)] = &[("vhost-device-vsock@0.3.0", "vhost-device-vsock")];

fn install_cargo_tools() -> Result<()> {
    let root = std::path::absolute(target_dir().join("tools"))
        .context("cannot resolve the target directory")?;
    for (spec, binary) in CARGO_TOOLS {
        if root.join("bin").join(binary).exists() {
            continue;
        }
        run(Command::new("cargo")
            .args(["install", "--locked", "--quiet", spec, "--root"])
            .arg(&root)
            // Its own build directory: the workspace's release build stays as it is.
            .arg("--target-dir")
            .arg(root.join("build")))?;
        // Only the binary is needed; its build takes room on a shared disk.
        let _ = std::fs::remove_dir_all(root.join("build"));
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the missing packages with apt-get; says nothing when all are there.
fn install_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, probe)| !succeeds(Command::new("sh").args(["-c", probe])))
        .map(|(package, _)| *package)
        .collect();
    let missing_backports: Vec<&str> = BACKPORTS_PACKAGES
        .iter()
        .filter(|(_, probe)| !succeeds(Command::new("sh").args(["-c", probe])))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() && missing_backports.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {}",
        missing
            .iter()
            .chain(&missing_backports)
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let sudo = if is_root() { None } else { Some("sudo") };
    if !missing_backports.is_empty() {
        ensure_backports_source(sudo)?;
    }
    let apt = |args: &[&str]| {
        let mut command = match sudo {
            Some(sudo) => {
                let mut c = Command::new(sudo);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run(&mut apt(&["-qq", "update"]))?;
    if !missing.is_empty() {
        let mut install = apt(&["-qq", "install", "-y", "--no-install-recommends"]);
        install.args(&missing);
        run(&mut install)?;
    }
    if !missing_backports.is_empty() {
        let mut install = apt(&[
            "-qq",
            "install",
            "-y",
            "--no-install-recommends",
            "-t",
            BACKPORTS,
        ]);
        install.args(&missing_backports);
        run(&mut install)?;
    }
    Ok(())
}

/// Adds bookworm-backports beside the configured Debian sources, with the same mirror and
/// keyring (docs/environment.md §1). Returns whether a source was added.
fn ensure_backports_source(sudo: Option<&str>) -> Result<bool> {
    let target = std::path::Path::new("/etc/apt/sources.list.d/backports.sources");
    if target.exists() {
        return Ok(false);
    }
    let configured = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .context("reading /etc/apt/sources.list.d/debian.sources to find the Debian mirror")?;
    let uris = configured
        .lines()
        .find(|l| l.starts_with("URIs:") && !l.contains("security"))
        .context("no URIs: line for the Debian mirror in debian.sources")?;
    let content = format!(
        "Types: deb\n{uris}\nSuites: {BACKPORTS}\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    let staged = std::env::temp_dir().join("contrast-backports.sources");
    std::fs::write(&staged, content).context("writing the backports source")?;
    let mut install = match sudo {
        Some(sudo) => {
            let mut c = Command::new(sudo);
            c.arg("install");
            c
        }
        None => Command::new("install"),
    };
    run(install.args(["-m", "0644"]).arg(&staged).arg(target))?;
    Ok(true)
}

/// The project's main job: the whole lifecycle with a simulated TEE (quickstart/); on
/// containerd, with the tools the node needs (vhost-device-vsock, from crates.io).
fn quickstart(on_containerd: bool) -> Result<()> {
    step("this checkout's build", forget_other_checkouts)?;
    step("system packages", install_debian_packages)?;
    if on_containerd {
        step("crates.io tools", install_cargo_tools)?;
        step("quickstart --containerd", || run_quickstart(true))
    } else {
        step("quickstart", || run_quickstart(false))
    }
}

/// Builds the guest image into `target/image` with its reference values and SNP ID blocks
/// (see [`image`] for the firmware); returns the directory.
fn guest_image(debian_firmware: bool) -> Result<PathBuf> {
    step("system packages", install_debian_packages)?;
    let debug = std::path::absolute(target_dir().join("debug"))
        .context("cannot resolve the target directory")?;
    let out = std::path::absolute(target_dir().join("image"))
        .context("cannot resolve the target directory")?;
    step("image tools", || {
        run(Command::new("cargo").args(["build", "--workspace", "--bins", "--locked"]))
    })?;
    step("shipped binaries", build_shipped_binaries)?;
    let release = std::path::absolute(target_dir().join("release"))
        .context("cannot resolve the target directory")?;
    step("guest image", || {
        let mut build = Command::new(debug.join("contrast-image"));
        build.arg("--binaries").arg(&release).arg("--out").arg(&out);
        if debian_firmware {
            build.arg("--debian-firmware");
        } else {
            build
                .arg("--ovmf-snp-stand-in")
                .arg("firmware-refs/tests/data/ovmf_AmdSev_suffix.bin")
                .arg("--ovmf-tdx")
                .arg("/usr/share/ovmf/OVMF.fd");
        }
        run(&mut build)
    })?;
    let values = out.join("reference-values.json");
    step("reference values", || {
        run(Command::new(debug.join("firmware-refs"))
            .args(["reference-values", "--image-dir"])
            .arg(&out)
            .arg("--out")
            .arg(&values))
    })?;
    step("SNP ID blocks", || {
        run(Command::new(debug.join("firmware-refs"))
            .args(["snp-id-blocks", "--image-dir"])
            .arg(&out)
            .arg("--out")
            .arg(out.join("snp-id-blocks.json")))
    })?;
    Ok(out)
}

/// The guest image, its reference values and a CLI whose `contrast generate
/// --reference-values <platform>` embeds them. The firmware measured: with
/// `debian_firmware`, the Debian packages a release ships (contrast_image::firmware,
/// downloaded); else, offline, a stand-in for SNP (the AmdSevX64 OVMF fixture: bookworm has
/// no OVMF with the kernel-hashes table) and the installed OVMF.fd for TDX (the TDX pin's
/// file, when bookworm's package is that version).
fn image(debian_firmware: bool) -> Result<()> {
    let out = guest_image(debian_firmware)?;
    let values = out.join("reference-values.json");
    // A target directory of its own: the embedded values are a build input, and the
    // everyday build must keep the checked-in ones.
    step("CLI with the image's reference values", || {
        run(Command::new("cargo")
            .args(["build", "--locked", "-p", "contrast-cli", "--target-dir"])
            .arg(target_dir().join("embedded"))
            .env("CONTRAST_REFERENCE_VALUES", &values))
    })?;
    eprintln!(
        "xtask: image in {}; CLI with its reference values: {}",
        out.display(),
        target_dir().join("embedded/debug/contrast").display()
    );
    Ok(())
}

/// `cargo xtask release`: the shipped binaries, then their images pushed and written out.
fn release(args: &[&str]) -> Result<()> {
    let mut registry = None;
    let mut out = None;
    let mut insecure_registry = false;
    let mut stand_in_firmware = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--registry" => registry = rest.next().map(|v| (*v).to_owned()),
            "--out" => out = rest.next().map(PathBuf::from),
            "--insecure-registry" => insecure_registry = true,
            "--stand-in-firmware" => stand_in_firmware = true,
            other => anyhow::bail!(
                "release: unknown argument {other:?}; usage: cargo xtask release --registry \
                 HOST[:PORT]/PREFIX --out DIR [--insecure-registry] [--stand-in-firmware]"
            ),
        }
    }
    let (Some(registry), Some(out)) = (registry, out) else {
        anyhow::bail!("release: give --registry HOST[:PORT]/PREFIX and --out DIR");
    };
    // The guest image from this commit, measured with the firmware the node installer
    // ships (the pinned Debian packages; offline, a stand-in that release.json names).
    let image = guest_image(!stand_in_firmware)?;
    let config = contrast_image::release::ReleaseConfig {
        binaries: std::path::absolute(target_dir().join("release"))
            .context("cannot resolve the target directory")?,
        registry,
        insecure_registry,
        out: std::path::absolute(&out).context("cannot resolve --out")?,
        reference_values: Some(image.join("reference-values.json")),
        guest_image: Some(image.clone()),
    };
    let release = step_with("images", || Ok(contrast_image::release::release(&config)?))?;
    let sizes = contrast_image::oci::layout_sizes(&config.out.join("oci"))?;
    for (component, image) in &release.images {
        let size = sizes
            .get(component)
            .map_or_else(String::new, |size| format!(" ({size})"));
        eprintln!("xtask: {component}: {image}{size}");
    }
    let release_json = config.out.join("release.json");
    // The target directory `cargo xtask image` builds its CLI in: the embedded files are
    // build inputs, and the everyday build keeps the development ones.
    let embedded = target_dir().join("embedded");
    step("CLI with the release's images", || {
        let mut cargo = Command::new("cargo");
        cargo
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "contrast-cli",
                "--target-dir",
            ])
            .arg(&embedded)
            .env("CONTRAST_RELEASE", &release_json)
            .env(
                "CONTRAST_REFERENCE_VALUES",
                image.join("reference-values.json"),
            );
        run(&mut cargo)?;
        std::fs::copy(
            embedded.join("release/contrast"),
            config.out.join("contrast"),
        )
        .context("copying the release CLI")?;
        Ok(())
    })?;
    eprintln!(
        "xtask: {} and the CLI that deploys it, {}",
        release_json.display(),
        config.out.join("contrast").display()
    );
    Ok(())
}

/// The binaries that ship, without the `simulated` feature, into `<target>/release`.
fn build_shipped_binaries() -> Result<()> {
    run(&mut contrast_image::shipped_build(std::ffi::OsStr::new(
        "cargo",
    )))
}

fn run_quickstart(on_containerd: bool) -> Result<()> {
    // Build the whole workspace's binaries, as the tests do: `cargo run -p` alone would
    // unify features differently and rebuild half the dependency tree.
    run(Command::new("cargo").args(["build", "--workspace", "--bins", "--locked"]))?;
    let quickstart = std::path::absolute(target_dir().join("debug").join("quickstart"))
        .context("cannot resolve the target directory")?;
    let mut command = Command::new(quickstart);
    if on_containerd {
        command.arg("--containerd");
    }
    run(&mut command)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn ensure_toolchain_components() -> Result<()> {
    for (probe, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        if !succeeds(Command::new("cargo").args([probe, "--version"])) {
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

fn check_crypto_provider() -> Result<()> {
    let output = Command::new("cargo")
        .args([
            "tree",
            "--workspace",
            "--locked",
            "-e",
            "normal,build",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--prefix",
            "none",
        ])
        .output()
        .context("cannot run cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| FORBIDDEN_CRATES.contains(name))
        .collect();
    if !found.is_empty() {
        bail!(
            "a second crypto provider or OpenSSL is compiled in: {} (see docs/dependencies.md: \
             use aws-lc-rs features only)",
            found.join(", ")
        );
    }
    Ok(())
}

fn run_tests(python_tools: &std::path::Path) -> Result<()> {
    let cargo = || {
        let mut command = Command::new("cargo");
        command.env("CONTRAST_PYTHON_TOOLS", python_tools);
        command
    };
    // Cross-component tests run the workspace's binaries (the coordinator from the CLI's
    // tests, for instance): build them all first, whichever package's tests need them.
    run(cargo().args(["build", "--workspace", "--bins", "--locked"]))?;
    if succeeds(cargo().args(["nextest", "--version"])) {
        // nextest does not run doc tests; run them first so the run closes on nextest's
        // summary of all tests.
        run(cargo().args(["test", "--workspace", "--doc", "--locked"]))?;
        run(cargo().args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]))
    } else {
        run(cargo().args(["test", "--workspace", "--locked", "--no-fail-fast"]))
    }
}
