//! The QEMU harness: boots the guest image on the real Debian kernel under QEMU (TCG) and
//! decides pass or fail from markers on the serial console.
//!
//! - [`image`] builds the image once (per input fingerprint, shared by all test processes
//!   through a lock file) from the workspace's binaries.
//! - [`Vm`] describes one boot: the test selected by `contrast.test=<name>` on the kernel
//!   command line, a payload of files (a cpio archive on a read-only virtio disk with the
//!   serial `contrast-test`; the image's init unpacks it into `/run/test` and runs
//!   `run.sh <name>`), values under `opt/` in fw_cfg, extra virtio disks, and a per-boot
//!   timeout after which QEMU is killed.
//! - [`Console`] is what the guest printed; [`Console::expect_pass`] looks for
//!   `CONTRAST-TEST-PASS <name>` and otherwise returns an error carrying the whole console.
//!   QEMU exits 0 after a guest panic as after a clean power-off, so its exit status
//!   decides nothing.
//!
//! - [`images`] builds container images of this machine's files for guest pull, and
//!   [`node`] is a simulated Kubernetes node: containerd with our shim, a pod network and a
//!   registry.
//!
//! Test-only pieces never enter the image: they travel in the payload, and the image's init
//! looks at the payload only when the (measured) kernel command line says `contrast.test=`.

pub mod images;
pub mod node;

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use contrast_image::{ImageManifest, KERNEL_VERSION};

/// Result markers the guest prints (one per line).
pub const PASS_MARKER: &str = "CONTRAST-TEST-PASS";
/// See [`PASS_MARKER`].
pub const FAIL_MARKER: &str = "CONTRAST-TEST-FAIL";
/// The initramfs prints this when it refuses to boot.
pub const BOOT_FAIL_MARKER: &str = "CONTRAST-BOOT-FAIL";

/// Guest shell lines that put the simulator's keys (see [`Vm::simulator`]) into `/run/sim`
/// with the owner-only mode the simulator's key store expects.
pub const GUEST_SIMULATOR_SETUP: &str = r#"mkdir -p /run/sim
for key in /run/test/sim-*; do
    cp "$key" "/run/sim/${key#/run/test/sim-}"
    chmod 0600 "/run/sim/${key#/run/test/sim-}"
done
"#;

/// What went wrong in the harness (not in the guest).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Building the workspace's binaries failed.
    #[error("cargo build --workspace --bins failed: {0}")]
    Cargo(String),
    /// The image build failed.
    #[error("building the guest image")]
    Image(#[from] contrast_image::ImageError),
    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel module build failed.
    #[error("building the test-only fake TSM module failed: {0}")]
    Module(String),
    /// The guest did not pass.
    #[error("{0}")]
    Guest(Box<GuestFailure>),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A boot that did not end with the expected marker, with everything the guest printed.
#[derive(Debug)]
pub struct GuestFailure {
    /// The test name.
    pub test: String,
    /// Why the harness calls it a failure.
    pub reason: String,
    /// The serial console.
    pub console: String,
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest test {}: {}\n----- guest console -----\n{}\n----- end of guest console -----",
            self.test, self.reason, self.console
        )
    }
}

/// The debug profile's directory of the target directory the test runs from
/// (`target/<profile>/deps/<test>` → `target/debug`): the guest binaries are always the
/// debug build the test command makes, also when a benchmark runs in release.
pub fn profile_dir() -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(io_err("finding the test executable"))?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    if !dir.ends_with("debug") {
        dir.pop();
        dir.push("debug");
    }
    Ok(dir)
}

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The directory with kernel, vmlinux, initrd, rootfs.img, cmdline.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: ImageManifest,
}

impl Image {
    /// An artifact's path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Holds an exclusive lock on a file while alive (test processes run in parallel).
struct LockFile(std::fs::File);

impl LockFile {
    fn acquire(path: &Path) -> Result<Self, HarnessError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        file.lock()
            .map_err(io_err(format!("locking {}", path.display())))?;
        Ok(LockFile(file))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Builds the workspace's binaries (a no-op when they are current) and the image from
/// them, once per set of inputs; later calls, also from other test processes, reuse it.
pub fn image() -> Result<Image, HarnessError> {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_shared_image().map_err(|e| contrast_platforms::error_chain(&e)))
        .clone()
        .map_err(|e| HarnessError::Io {
            what: "the shared guest image".into(),
            source: std::io::Error::other(e),
        })
}

fn build_shared_image() -> Result<Image, HarnessError> {
    let profile = profile_dir()?;
    let base = profile.join("qemu-tests");
    let _lock = LockFile::acquire(&base.join("image.lock"))?;
    build_workspace_binaries()?;
    let fingerprint = input_fingerprint(&profile)?;
    let dir = base.join("image");
    let stamp = dir.join("fingerprint");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(fingerprint.as_str())
        && let Ok(json) = std::fs::read(dir.join("manifest.json"))
        && let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&json)
    {
        return Ok(Image { dir, manifest });
    }
    let _ = std::fs::remove_file(&stamp);
    let manifest = contrast_image::build(&contrast_image::BuildConfig {
        binaries: profile.clone(),
        out: dir.clone(),
        system_root: PathBuf::from("/"),
    })?;
    std::fs::write(&stamp, &fingerprint).map_err(io_err("writing the image fingerprint"))?;
    Ok(Image { dir, manifest })
}

/// `cargo build --workspace --bins`, as the test command runs it (same features, so
/// nothing is rebuilt when the test command already built them).
fn build_workspace_binaries() -> Result<(), HarnessError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(cargo)
        .args(["build", "--workspace", "--bins", "--quiet"])
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("running cargo build"))?;
    if !output.status.success() {
        return Err(HarnessError::Cargo(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(())
}

/// Sizes and modification times of the binaries that go into the image, and the image
/// builder's version: when none changed, the cached image is current.
fn input_fingerprint(profile: &Path) -> Result<String, HarnessError> {
    let mut text = format!("builder {}\n", env!("CARGO_PKG_VERSION"));
    for source in contrast_image::BUILDER_SOURCES {
        text.push_str(source);
    }
    for name in contrast_image::GUEST_BINARIES {
        let path = profile.join(name);
        let meta = std::fs::metadata(&path).map_err(io_err(format!("{}", path.display())))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        text.push_str(&format!("{name} {} {modified}\n", meta.len()));
    }
    Ok(hex::encode(sha256(text.as_bytes())))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// Builds the test-only fake TSM provider module (qemu-tests/fake-tsm) with kbuild against
/// the pinned kernel's headers, once per process, in a directory of its own.
pub fn fake_tsm_module() -> Result<PathBuf, HarnessError> {
    static MODULE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| build_fake_tsm().map_err(|e| contrast_platforms::error_chain(&e)))
        .clone()
        .map_err(HarnessError::Module)
}

fn build_fake_tsm() -> Result<PathBuf, HarnessError> {
    let profile = profile_dir()?;
    let base = profile.join("qemu-tests");
    let _lock = LockFile::acquire(&base.join("fake-tsm.lock"))?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fake-tsm");
    let mut sources = Vec::new();
    for name in ["fake_tsm.c", "Kbuild"] {
        let content =
            std::fs::read(source.join(name)).map_err(io_err(format!("reading {name}")))?;
        sources.push((name, content));
    }
    // One directory per source version: a module another test process is reading is
    // never rebuilt under it.
    let digest = sha256(
        &sources
            .iter()
            .flat_map(|(_, c)| c.clone())
            .collect::<Vec<u8>>(),
    );
    let build = base.join(format!("fake-tsm-{}", hex::encode(&digest[..8])));
    let module = build.join("fake_tsm.ko");
    if module.exists() {
        return Ok(module);
    }
    let _ = std::fs::remove_dir_all(&build);
    std::fs::create_dir_all(&build).map_err(io_err("creating the module build directory"))?;
    for (name, content) in &sources {
        std::fs::write(build.join(name), content).map_err(io_err(format!("copying {name}")))?;
    }
    let headers = PathBuf::from(format!("/lib/modules/{KERNEL_VERSION}/build"));
    if !headers.exists() {
        return Err(HarnessError::Module(format!(
            "{} is missing: apt-get install linux-headers-{KERNEL_VERSION} (cargo xtask test installs it)",
            headers.display()
        )));
    }
    let output = Command::new("make")
        .arg("-C")
        .arg(&headers)
        .arg(format!("M={}", build.display()))
        .arg("modules")
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("running make"))?;
    if !output.status.success() || !module.exists() {
        return Err(HarnessError::Module(format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(module)
}

/// One boot of the guest image.
#[derive(Debug, Clone)]
pub struct Vm {
    image: Image,
    test: String,
    payload: Vec<(String, PayloadSource)>,
    disks: Vec<(PathBuf, Option<String>)>,
    scsi_disks: Vec<PathBuf>,
    rootfs: Option<PathBuf>,
    network: bool,
    forwards: Vec<(u16, u16)>,
    memory_mib: u32,
    timeout: Duration,
    fw_cfg_strings: Vec<(String, String)>,
    vsock: Option<PathBuf>,
}

#[derive(Debug, Clone)]
enum PayloadSource {
    File(PathBuf),
    Content(Vec<u8>),
}

/// What the guest printed, and how the boot ended.
#[derive(Debug, Clone)]
pub struct Console {
    /// The test name.
    pub test: String,
    /// The serial console (kernel messages and everything the guest's programs printed).
    pub text: String,
    /// Whether the harness had to kill QEMU.
    pub timed_out: bool,
    /// Whether the test stopped the VM ([`Vm::boot_until`]).
    pub stopped: bool,
    /// Wall time of the boot.
    pub elapsed: Duration,
}

impl Vm {
    /// A boot of `image` that runs the guest test `test` (its `run.sh` must be in the
    /// payload).
    pub fn new(image: &Image, test: &str) -> Self {
        Vm {
            image: image.clone(),
            test: test.to_owned(),
            payload: Vec::new(),
            disks: Vec::new(),
            scsi_disks: Vec::new(),
            rootfs: None,
            network: false,
            forwards: Vec::new(),
            memory_mib: 1024,
            timeout: Duration::from_secs(120),
            fw_cfg_strings: Vec::new(),
            vsock: None,
        }
    }

    /// Gives the guest `/run/test/<name>` with the content of the host file `path`.
    pub fn file(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.payload
            .push((name.to_owned(), PayloadSource::File(path.into())));
        self
    }

    /// Gives the guest `/run/test/<name>` with `content`.
    pub fn content(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.payload
            .push((name.to_owned(), PayloadSource::Content(content.into())));
        self
    }

    /// Gives the guest the simulator's key files (`/run/test/sim-<file>`);
    /// [`GUEST_SIMULATOR_SETUP`] in the guest script copies them to `/run/sim`.
    pub fn simulator(mut self, dir: &Path) -> Result<Self, HarnessError> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(io_err(format!("reading {}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".p8"))
            .collect();
        names.sort();
        for name in names {
            self = self.file(&format!("sim-{name}"), dir.join(&name));
        }
        Ok(self)
    }

    /// The guest's test script (`/run/test/run.sh`, run with the test name as `$1`).
    pub fn script(self, script: &str) -> Self {
        self.content("run.sh", script.as_bytes().to_vec())
    }

    /// A value under `opt/<name>` in fw_cfg (not a payload file: the guest reads it from
    /// `/sys/firmware/qemu_fw_cfg/by_name/opt/<name>/raw`).
    pub fn fw_cfg_string(mut self, name: &str, value: &str) -> Self {
        self.fw_cfg_strings
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// Attaches a raw disk image as the next virtio disk (`/dev/vdb`, `/dev/vdc`, …).
    pub fn disk(mut self, path: impl Into<PathBuf>) -> Self {
        self.disks.push((path.into(), None));
        self
    }

    /// A read-write virtio disk with this serial (the guest finds it by
    /// `/sys/block/vd*/serial`; the Kata runtime's initdata disk has the serial `initdata`).
    /// A writable disk image on a virtio-scsi controller, as the Kata runtime attaches a
    /// pod's block volume there: SCSI target 0, LUN 1 for the first, 2 for the next, …
    /// (the runtime's `0:1`, `0:2`, …).
    pub fn scsi_disk(mut self, path: impl Into<PathBuf>) -> Self {
        self.scsi_disks.push(path.into());
        self
    }

    pub fn disk_with_serial(mut self, path: impl Into<PathBuf>, serial: &str) -> Self {
        self.disks.push((path.into(), Some(serial.to_owned())));
        self
    }

    /// Boots from this root filesystem image instead of the image's own (a tampered copy).
    pub fn rootfs(mut self, path: impl Into<PathBuf>) -> Self {
        self.rootfs = Some(path.into());
        self
    }

    /// Gives the guest a network (QEMU user networking: the host's 127.0.0.1 is 10.0.2.2).
    pub fn network(mut self) -> Self {
        self.network = true;
        self
    }

    /// With [`Vm::network`]: the host's `127.0.0.1:<host_port>` forwards to the guest's
    /// TCP `port` on its interface (QEMU's `hostfwd`; the guest sees the connection come
    /// from 10.0.2.2).
    pub fn forward(mut self, host_port: u16, port: u16) -> Self {
        self.forwards.push((host_port, port));
        self
    }

    /// A virtio-vsock device (guest CID 3) served by `vhost-device-vsock` in user space
    /// (docs/environment.md §7): the host reaches guest port P through the Unix socket
    /// `<dir>/vm.vsock` with the hybrid-vsock handshake ([`connect_vsock`]). The console
    /// is mirrored to `<dir>/`[`CONSOLE_LOG`] as it comes, so the host can wait for the
    /// guest's listener before it connects.
    pub fn vsock(mut self, dir: impl Into<PathBuf>) -> Self {
        self.vsock = Some(dir.into());
        self
    }

    /// Kills QEMU after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Boots and returns the console once QEMU exits (or is killed at the timeout).
    pub fn boot(&self) -> Result<Console, HarnessError> {
        self.boot_until(&std::sync::atomic::AtomicBool::new(false))
    }

    /// Like [`Vm::boot`], and QEMU is also killed once `stop` is set (by a test that
    /// drives the guest from the host and has seen what it needs, such as an agent that
    /// refuses even the request that would end it).
    pub fn boot_until(
        &self,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Console, HarnessError> {
        let scratch = tempdir(&format!("qemu-{}", self.test))?;
        let result = self.boot_in(&scratch, stop);
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    fn boot_in(
        &self,
        scratch: &Path,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Console, HarnessError> {
        let mut command = Command::new("qemu-system-x86_64");
        command.args(["-accel", "tcg", "-m"]);
        command.arg(self.memory_mib.to_string());
        command.args([
            "-smp",
            "1",
            "-cpu",
            "max",
            "-no-reboot",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-bios",
            "/usr/share/qemu/qboot.rom",
        ]);
        // The ELF kernel boots through PVH (about a second quicker than the bzImage under
        // TCG); it is the same code the measured bzImage carries.
        command.arg("-kernel").arg(self.image.path("vmlinux"));
        command.arg("-initrd").arg(self.image.path("initrd"));
        let cmdline = format!(
            "{} contrast.test={}",
            self.image.manifest.cmdline, self.test
        );
        command.arg("-append").arg(cmdline);
        let rootfs = self
            .rootfs
            .clone()
            .unwrap_or_else(|| self.image.path("rootfs.img"));
        // Every disk is an explicit virtio-blk-pci device, so the guest's names follow the
        // order here: the root filesystem is /dev/vda, test disks /dev/vdb, …, the payload
        // last (QEMU places `if=virtio` drives after `-device` ones).
        command
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=root,readonly=on",
                rootfs.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=root"]);
        if !self.scsi_disks.is_empty() {
            command.args(["-device", "virtio-scsi-pci,id=scsi0"]);
        }
        for (index, disk) in self.scsi_disks.iter().enumerate() {
            command
                .arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=scsidisk{index},cache=unsafe",
                    disk.display()
                ))
                .arg("-device")
                .arg(format!(
                    "scsi-hd,drive=scsidisk{index},bus=scsi0.0,channel=0,scsi-id=0,lun={}",
                    index + 1
                ));
        }
        for (index, (disk, serial)) in self.disks.iter().enumerate() {
            let serial = serial
                .as_ref()
                .map_or_else(String::new, |s| format!(",serial={s}"));
            command
                .arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=disk{index},cache=unsafe",
                    disk.display()
                ))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=disk{index}{serial}"));
        }
        if self.network {
            let mut netdev = "user,id=n0".to_owned();
            for (host_port, port) in &self.forwards {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host_port}-:{port}"));
            }
            command
                .args(["-netdev", &netdev])
                .args(["-device", "virtio-net-pci,netdev=n0"]);
        }
        // The payload travels as a cpio archive on a read-only virtio disk (last, so test
        // disks keep their names /dev/vdb, …); the guest finds it by its serial. (fw_cfg
        // reads through sysfs are byte-wise port I/O: tens of seconds per MiB under TCG.)
        if !self.payload.is_empty() {
            let mut entries = Vec::new();
            for (name, source) in &self.payload {
                let content = match source {
                    PayloadSource::File(path) => std::fs::read(path).map_err(io_err(format!(
                        "reading the payload file {}",
                        path.display()
                    )))?,
                    PayloadSource::Content(content) => content.clone(),
                };
                entries.push(contrast_image::cpio::Entry {
                    path: name.clone(),
                    permissions: 0o755,
                    kind: contrast_image::cpio::EntryKind::File(content),
                });
            }
            let archive = scratch.join("payload.cpio");
            let mut bytes = Vec::new();
            contrast_image::cpio::write(&mut bytes, &entries)
                .map_err(io_err("writing the payload archive"))?;
            std::fs::write(&archive, &bytes).map_err(io_err("writing the payload archive"))?;
            command
                .arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=payload,readonly=on",
                    archive.display()
                ))
                .args([
                    "-device",
                    "virtio-blk-pci,drive=payload,serial=contrast-test",
                ]);
        }
        for (name, value) in &self.fw_cfg_strings {
            command
                .arg("-fw_cfg")
                .arg(format!("name=opt/{name},string={value}"));
        }
        let _backend = match &self.vsock {
            Some(dir) => {
                let backend = VsockBackend::start(scratch, dir)?;
                // The backend maps the guest's memory: it must be a shared memfd of the
                // VM's size, or QEMU only warns and the device stays dead.
                command
                    .arg("-object")
                    .arg(format!(
                        "memory-backend-memfd,id=mem,size={}M,share=on",
                        self.memory_mib
                    ))
                    .args(["-machine", "memory-backend=mem", "-chardev"])
                    .arg(format!(
                        "socket,id=vvsock,path={}",
                        backend.socket.display()
                    ))
                    .args(["-device", "vhost-user-vsock-pci,chardev=vvsock"]);
                Some(backend)
            }
            None => None,
        };
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::Io {
                what: "starting qemu-system-x86_64 (apt-get install qemu-system-x86 from \
                       bookworm-backports; cargo xtask test installs it)"
                    .into(),
                source: e,
            })?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let mut mirror = match &self.vsock {
            Some(dir) => Some(
                std::fs::File::create(dir.join(CONSOLE_LOG))
                    .map_err(io_err("creating the console mirror"))?,
            ),
            None => None,
        };
        let out_reader = std::thread::spawn(move || {
            use std::io::Write as _;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Some(Ok(n @ 1..)) = stdout.as_mut().map(|s| s.read(&mut chunk)) {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(file) = mirror.as_mut()
                    && file.write_all(&chunk[..n]).is_err()
                {
                    mirror = None;
                }
            }
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        });
        let mut timed_out = false;
        let mut stopped = false;
        loop {
            match child.try_wait().map_err(io_err("waiting for QEMU"))? {
                Some(_) => break,
                None if stop.load(std::sync::atomic::Ordering::SeqCst) => {
                    stopped = true;
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                None if started.elapsed() > self.timeout => {
                    timed_out = true;
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let elapsed = started.elapsed();
        let mut text = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
        let err = err_reader.join().unwrap_or_default();
        if !err.is_empty() {
            text.push_str("\n[qemu stderr] ");
            text.push_str(&String::from_utf8_lossy(&err));
        }
        // The serial console ends lines with CR LF.
        let text = text.replace("\r\n", "\n");
        Ok(Console {
            test: self.test.clone(),
            text,
            timed_out,
            stopped,
            elapsed,
        })
    }
}

/// The path of `vhost-device-vsock`: `$CONTRAST_VHOST_DEVICE_VSOCK`, else where the test
/// command installs it (`<target>/tools/bin`), else `PATH`.
fn vhost_device_vsock() -> PathBuf {
    if let Some(path) = std::env::var_os("CONTRAST_VHOST_DEVICE_VSOCK") {
        return PathBuf::from(path);
    }
    if let Ok(profile) = profile_dir()
        && let Some(target) = profile.parent()
    {
        let installed = target.join("tools/bin/vhost-device-vsock");
        if installed.exists() {
            return installed;
        }
    }
    PathBuf::from("vhost-device-vsock")
}

/// The vsock back end's log in the directory given to [`Vm::vsock`].
pub const VSOCK_BACKEND_LOG: &str = "vhost-device-vsock.log";

/// The console so far, in the directory given to [`Vm::vsock`].
pub const CONSOLE_LOG: &str = "console.log";

/// A running `vhost-device-vsock`, killed and reaped when dropped.
struct VsockBackend {
    child: std::process::Child,
    socket: PathBuf,
}

impl VsockBackend {
    fn start(scratch: &Path, dir: &Path) -> Result<Self, HarnessError> {
        let socket = scratch.join("vhost-vsock.sock");
        let uds = dir.join("vm.vsock");
        let _ = std::fs::remove_file(&uds);
        let binary = vhost_device_vsock();
        // Its log, for the test to show when the guest's port cannot be reached.
        let log = std::fs::File::create(dir.join(VSOCK_BACKEND_LOG))
            .map_err(io_err("creating the vsock back end's log"))?;
        let mut child = Command::new(&binary)
            .arg("--guest-cid=3")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--uds-path={}", uds.display()))
            // Required: with the default 64 KiB, guest packets over 32 KiB are dropped
            // and the connection hangs (docs/environment.md §7).
            .arg("--tx-buffer-size=16384")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!(
                "starting {} (cargo xtask test installs it: cargo install --locked \
                 vhost-device-vsock@0.3.0)",
                binary.display()
            )))?;
        let started = Instant::now();
        // QEMU exits at once when the backend's socket is not there yet.
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(HarnessError::Io {
                    what: format!("{} exited with {status} before listening", binary.display()),
                    source: std::io::Error::other("vhost-device-vsock exited"),
                });
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Io {
                    what: format!("{} did not create {}", binary.display(), socket.display()),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(VsockBackend { child, socket })
    }
}

impl Drop for VsockBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to guest vsock `port` through `<dir>/vm.vsock` (the hybrid-vsock handshake,
/// `contrast_shim::vm::hybrid_vsock`), retrying every 50 ms until the guest
/// listens or `deadline` passes. The stream is then the guest port's.
pub fn connect_vsock(
    dir: &Path,
    port: u32,
    deadline: Instant,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::io::Write as _;
    let uds = dir.join("vm.vsock");
    loop {
        let attempt = (|| {
            use contrast_shim::vm::hybrid_vsock;
            let mut stream = std::os::unix::net::UnixStream::connect(&uds)?;
            // An unanswered request is retried, not waited on forever (under load the
            // first ones can come before the guest's queues are up).
            stream.set_read_timeout(Some(hybrid_vsock::ANSWER_TIMEOUT))?;
            stream.write_all(hybrid_vsock::request(port).as_bytes())?;
            let mut answer = Vec::new();
            let mut byte = [0u8; 1];
            while !hybrid_vsock::answer_complete(&answer) {
                if stream.read(&mut byte)? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                answer.push(byte[0]);
            }
            hybrid_vsock::accepted(&answer)?;
            stream.set_read_timeout(None)?;
            Ok(stream)
        })();
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

impl Console {
    /// Lines that start with `marker`.
    pub fn marked<'a>(&'a self, marker: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.text
            .lines()
            .filter_map(move |l| l.trim_start().strip_prefix(marker))
            .map(str::trim)
    }

    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }

    /// A failure of this boot with `reason`, carrying the console.
    pub fn failure(&self, reason: impl Into<String>) -> HarnessError {
        HarnessError::Guest(Box::new(GuestFailure {
            test: self.test.clone(),
            reason: reason.into(),
            console: self.text.clone(),
        }))
    }

    /// Ok when the guest printed `CONTRAST-TEST-PASS <test>` and no failure marker.
    pub fn expect_pass(&self) -> Result<(), HarnessError> {
        if let Some(failed) = self.marked(FAIL_MARKER).next() {
            return Err(self.failure(format!("the guest reported a failure: {failed}")));
        }
        if let Some(refused) = self.marked(BOOT_FAIL_MARKER).next() {
            return Err(self.failure(format!("the guest refused to boot: {refused}")));
        }
        if self.marked(PASS_MARKER).any(|name| name == self.test) {
            return Ok(());
        }
        if self.timed_out {
            return Err(self.failure(format!(
                "no result after {:?}: QEMU was killed",
                self.elapsed
            )));
        }
        if self.contains("Kernel panic") {
            return Err(self.failure("the guest kernel panicked"));
        }
        Err(self.failure(format!("the guest printed no {PASS_MARKER} {}", self.test)))
    }

    /// The value printed as `CONTRAST-STEP <key>=<value>`, if any.
    pub fn step_value(&self, key: &str) -> Option<&str> {
        self.marked("CONTRAST-STEP")
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// A fresh scratch directory under the system temp dir.
pub fn tempdir(name: &str) -> Result<PathBuf, HarnessError> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("contrast-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(text: &str, timed_out: bool) -> Console {
        Console {
            test: "t".into(),
            text: text.into(),
            timed_out,
            stopped: false,
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn only_the_pass_marker_of_this_test_passes() {
        assert!(
            console("x\nCONTRAST-TEST-PASS t\n", false)
                .expect_pass()
                .is_ok()
        );
        assert!(
            console("CONTRAST-TEST-PASS other\n", false)
                .expect_pass()
                .is_err()
        );
        assert!(console("ok t\n", false).expect_pass().is_err());
    }

    #[test]
    fn a_failure_marker_wins_and_the_console_is_in_the_error() {
        let err = console(
            "CONTRAST-TEST-PASS t\nCONTRAST-TEST-FAIL t: broken\n",
            false,
        )
        .expect_pass()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("broken") && err.contains("guest console"),
            "{err}"
        );
        let err = console("CONTRAST-BOOT-FAIL no root\n", false)
            .expect_pass()
            .unwrap_err()
            .to_string();
        assert!(err.contains("refused to boot"), "{err}");
    }

    #[test]
    fn a_killed_or_panicked_guest_fails_with_its_reason() {
        let err = console("booting\n", true)
            .expect_pass()
            .unwrap_err()
            .to_string();
        assert!(err.contains("QEMU was killed"), "{err}");
        let err = console("Kernel panic - not syncing\n", false)
            .expect_pass()
            .unwrap_err()
            .to_string();
        assert!(err.contains("panicked"), "{err}");
    }

    #[test]
    fn step_values_are_read_from_markers() {
        let c = console("CONTRAST-STEP uptime=3.14\n", false);
        assert_eq!(c.step_value("uptime"), Some("3.14"));
        assert_eq!(c.step_value("other"), None);
    }
}
