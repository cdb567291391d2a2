//! The measured, reproducible guest image.
//!
//! [`build`] turns the guest binaries and a pinned Debian kernel into the artifacts a
//! confidential VM boots, in one output directory:
//!
//! | file | what |
//! |---|---|
//! | `kernel` | the Debian bzImage, as packaged (measured: SNP kernel hashes, TDX RTMR1) |
//! | `vmlinux` | the ELF inside it, for fast PVH boots in tests (same code) |
//! | `initrd` | a small gzip'd newc initramfs: busybox, veritysetup, modules, [`INITRAMFS_INIT`] |
//! | `rootfs.img` | an erofs root filesystem with the dm-verity hash tree appended |
//! | `cmdline` | the kernel command line, carrying the root hash |
//! | `manifest.json` | [`ImageManifest`]: digests of all of the above |
//!
//! The chain of trust: the launch measurement covers the kernel, the initrd and the command
//! line; the command line carries the dm-verity root hash; the initramfs opens the root
//! filesystem only through dm-verity with that hash, so every block read from `rootfs.img`
//! is checked against the measurement. The host can change the disk, but any changed block
//! reads as an I/O error.
//!
//! Reproducibility: the same inputs give the same bytes. The cpio archive is written here
//! with fixed owners, times and inode numbers; the gzip header has no time or name; erofs
//! gets a fixed time, owner and UUID; the verity salt is derived from the filesystem image
//! and the verity UUID is fixed. The build reads only local files (the Debian packages the
//! test command installs) and needs no network.

pub mod cpio;
pub mod firmware;
mod host;
pub mod oci;
pub mod release;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use host::{ToolError, shared_libraries, strip};

/// The pinned guest kernel: Debian bookworm-backports' 6.12 build.
pub const KERNEL_VERSION: &str = "6.12.95+deb12-amd64";

/// The Debian package that ships [`KERNEL_VERSION`].
pub const KERNEL_PACKAGE: &str = "linux-image-6.12.95+deb12-amd64";

/// The guest programs the root filesystem carries in `/usr/bin`.
pub const GUEST_BINARIES: [&str; 5] = [
    "contrast-agent",
    "initializer",
    "service-mesh",
    "luks-helper",
    "initdata-check",
];

/// Where the image keeps the registries' root certificates (Debian's `ca-certificates`),
/// relative to the root; the agent reads only these.
pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// mke2fs (also named `mkfs.ext4`), which formats a secure volume, and its configuration.
pub const MKE2FS: &str = "usr/sbin/mke2fs";
/// mke2fs's configuration (the ext4 defaults).
pub const MKE2FS_CONF: &str = "etc/mke2fs.conf";
/// What mounts and unmounts a secure volume's file system in a container.
pub const MOUNT_TOOLS: [&str; 2] = ["usr/bin/mount", "usr/bin/umount"];
/// What the secure-pv Initializer's startup probe runs (`test -f /done`, as `contrast
/// generate` writes it).
pub const STARTUP_PROBE_TOOL: &str = "usr/bin/test";

/// The packages of [`GUEST_BINARIES`], in the same order.
pub const GUEST_PACKAGES: [&str; 5] = [
    "contrast-agent",
    "contrast-initializer",
    "contrast-service-mesh",
    "contrast-luks",
    "contrast-initdata-check",
];

/// The packages whose binaries ship: the image's ([`GUEST_PACKAGES`]), and those of the
/// Coordinator's and the port-forwarder's release images.
pub const SHIPPED_PACKAGES: [&str; 9] = [
    "contrast-agent",
    "contrast-initializer",
    "contrast-service-mesh",
    "contrast-luks",
    "contrast-initdata-check",
    "contrast-coordinator",
    "contrast-port-forwarder",
    "contrast-runtime-installer",
    "contrast-shim",
];

/// `cargo build` of the shipped binaries as they ship: release profile, default features
/// only. Built alone, so nothing else in the workspace (the quickstart, the tests' self
/// dev-dependencies) turns on the `simulated` feature; the binaries land in
/// `<target>/release`.
pub fn shipped_build(cargo: &std::ffi::OsStr) -> std::process::Command {
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--release", "--locked", "--bins"]);
    for package in SHIPPED_PACKAGES {
        command.args(["-p", package]);
    }
    command
}

/// Kernel modules loaded at boot (with their dependencies, resolved from the kernel's
/// `modules.dep`). The initramfs loads them all up front: it has no `request_module` helper.
pub const MODULES: &[&str] = &[
    // the root filesystem
    "virtio_blk",
    "dm_verity",
    "erofs",
    // configfs-tsm (the real providers, sev-guest and tdx-guest, bind only on TEE hardware)
    "configfs",
    "tsm",
    "sev-guest",
    "tdx-guest",
    // secure-pv: LUKS2 with dm-integrity, ext4 on top
    "dm_crypt",
    "dm_integrity",
    "xts",
    "authenc",
    "aesni_intel",
    "algif_skcipher",
    "algif_hash",
    "ext4",
    "crc32c_generic",
    // the pod's block volumes, as the QEMU platforms' runtime attaches them (virtio-scsi)
    "virtio_scsi",
    "sd_mod",
    // networking and values from the host (QEMU fw_cfg)
    "virtio_net",
    "qemu_fw_cfg",
    // the agent's vsock (pulls in vsock and the common virtio transport)
    "vmw_vsock_virtio_transport",
    // netfilter for iptables (nft backend): the pod's default-deny rules and the mesh
    // sidecar's TPROXY redirect, IPv4 and IPv6
    "nf_tables",
    "nft_compat",
    "nft_ct",
    "xt_conntrack",
    "xt_tcpudp",
    "xt_TPROXY",
];

/// iptables as the guest runs it: Debian's nft-backed multi-call binary, under the names
/// the default-deny rules (the image's init, the Initializer) and the mesh sidecar call.
pub const IPTABLES_BINARY: &str = "usr/sbin/xtables-nft-multi";
/// The names of [`IPTABLES_BINARY`] in `usr/sbin`.
pub const IPTABLES_NAMES: [&str; 4] = [
    "iptables",
    "ip6tables",
    "iptables-restore",
    "ip6tables-restore",
];
/// The iptables extensions the rules use (`-j` standard targets, `-m conntrack`,
/// `-p tcp --dport`, `-j TPROXY`). iptables loads them at run time, so they are listed
/// here rather than found by `ldd`.
pub const XTABLES_EXTENSIONS: [&str; 4] = [
    "usr/lib/x86_64-linux-gnu/xtables/libxt_standard.so",
    "usr/lib/x86_64-linux-gnu/xtables/libxt_conntrack.so",
    "usr/lib/x86_64-linux-gnu/xtables/libxt_tcp.so",
    "usr/lib/x86_64-linux-gnu/xtables/libxt_TPROXY.so",
];

/// The initramfs `/init`.
pub const INITRAMFS_INIT: &str = include_str!("initramfs-init.sh");

/// The root filesystem's `/sbin/init`.
pub const ROOTFS_INIT: &str = include_str!("rootfs-init.sh");

/// The builder's own sources: a cached image is current only if these are unchanged.
pub const BUILDER_SOURCES: [&str; 5] = [
    include_str!("lib.rs"),
    include_str!("host.rs"),
    include_str!("cpio.rs"),
    INITRAMFS_INIT,
    ROOTFS_INIT,
];

/// The base of the kernel command line. Tuned for quick boots: a serial console, no
/// reboot on panic (the VM stops), and initcalls that only cost time in a guest skipped.
pub const BASE_CMDLINE: &str = "console=ttyS0 panic=-1 quiet mitigations=off \
     initcall_blacklist=crypto_kdf108_init,jent_mod_init,bpf_tcp_ca_kfunc_init,bpf_dummy_struct_ops_init";

/// The fixed filesystem and verity UUIDs (reproducibility; nothing identifies images by
/// them, the root hash does).
const EROFS_UUID: &str = "c0a7a5e0-0000-4000-8000-000000000001";
const VERITY_UUID: &str = "c0a7a5e0-0000-4000-8000-000000000002";

/// What went wrong while building the image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A host tool failed or is missing.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// An artifact could not be written.
    #[error(transparent)]
    Write(#[from] contrast_atomic_file::WriteError),
    /// Pushing to the registry failed.
    #[error(transparent)]
    Registry(#[from] contrast_registry::RegistryError),
    /// A `reference-values.json` for the release does not read as one.
    #[error(
        "the reference values {path}: {reason} (give the file firmware-refs \
         reference-values wrote)"
    )]
    ReferenceValues {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The node installer's guest image is not a built image directory.
    #[error(
        "the guest image {path}: {reason} (give the directory `cargo xtask image` built, \
         target/image)"
    )]
    GuestImage {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An OCI layout does not read as one.
    #[error("the OCI layout's {path}: {reason}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A guest binary is missing from the binaries directory.
    #[error(
        "the guest binary {path} does not exist: build the workspace's binaries first \
         (cargo build --workspace --bins) or pass --binaries DIR"
    )]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The kernel package is not installed.
    #[error(
        "the guest kernel {path} is not installed: apt-get install {KERNEL_PACKAGE} \
         (from bookworm-backports; cargo xtask test installs it)"
    )]
    MissingKernel {
        /// The expected bzImage.
        path: PathBuf,
    },
    /// The bzImage is not in the format we can unpack.
    #[error("the kernel image {path}: {reason}")]
    Kernel {
        /// The bzImage.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A firmware is not what its pin or record says.
    #[error("the {tee} firmware: {reason}")]
    Firmware {
        /// The TEE whose firmware it is.
        tee: contrast_platforms::Tee,
        /// What is wrong.
        reason: String,
    },
    /// A pinned firmware package could not be downloaded.
    #[error(
        "downloading Debian package {package} {version} from {url} (if Debian {suite} no \
         longer carries this version, pin the current one in contrast_image::firmware::\
         DEBIAN_FIRMWARE; the reference values change with it)"
    )]
    FirmwareDownload {
        /// The package.
        package: &'static str,
        /// Its pinned version.
        version: &'static str,
        /// The suite it was pinned from.
        suite: &'static str,
        /// Where it was looked for.
        url: String,
        /// Why it failed.
        source: Box<contrast_runtime_installer::InstallError>,
    },
    /// A Debian package has no file at the path looked for.
    #[error("the Debian package {deb} has no /{path}")]
    NotInPackage {
        /// The package file.
        deb: PathBuf,
        /// The path inside it.
        path: String,
    },
    /// veritysetup's output had no root hash.
    #[error("veritysetup format printed no root hash: {output}")]
    NoRootHash {
        /// What it printed.
        output: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to build from.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The directory holding [`GUEST_BINARIES`] (e.g. `target/debug`).
    pub binaries: PathBuf,
    /// Where the artifacts go (created; existing artifacts are replaced).
    pub out: PathBuf,
    /// The root of the installed system to take the kernel, modules and tools from (`/`).
    pub system_root: PathBuf,
}

/// The digests and command line of a built image (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageManifest {
    /// The kernel release ([`KERNEL_VERSION`]).
    pub kernel_version: String,
    /// The full kernel command line.
    pub cmdline: String,
    /// The dm-verity root hash of `rootfs.img` (hex).
    pub root_hash: String,
    /// Where the hash tree starts in `rootfs.img` (bytes).
    pub hash_offset: u64,
    /// SHA-256 (hex) of every artifact, by file name.
    pub sha256: BTreeMap<String, String>,
}

/// Builds the image into `config.out` and returns its manifest.
pub fn build(config: &BuildConfig) -> Result<ImageManifest, ImageError> {
    fs::create_dir_all(&config.out).map_err(io(&config.out))?;
    let work = config.out.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(io(&work))?;
    }
    fs::create_dir_all(&work).map_err(io(&work))?;
    let system = &config.system_root;

    let bzimage = system.join(format!("boot/vmlinuz-{KERNEL_VERSION}"));
    if !bzimage.exists() {
        return Err(ImageError::MissingKernel { path: bzimage });
    }
    let kernel = fs::read(&bzimage).map_err(io(&bzimage))?;
    let vmlinux = host::unpack_bzimage(&bzimage, &kernel)?;
    write_file(&config.out.join("kernel"), &kernel)?;
    write_file(&config.out.join("vmlinux"), &vmlinux)?;

    let rootfs = build_rootfs(config, &work)?;
    let verity = host::verity_format(&rootfs, VERITY_UUID)?;
    let rootfs_img = config.out.join("rootfs.img");
    fs::rename(&rootfs, &rootfs_img).map_err(io(&rootfs_img))?;

    let initrd = build_initramfs(system)?;
    write_file(&config.out.join("initrd"), &initrd)?;

    let cmdline = format!(
        "{BASE_CMDLINE} contrast.verity.root_hash={} contrast.verity.hash_offset={}",
        verity.root_hash, verity.hash_offset
    );
    write_file(&config.out.join("cmdline"), cmdline.as_bytes())?;

    let mut sha256 = BTreeMap::new();
    for name in ["kernel", "vmlinux", "initrd", "rootfs.img", "cmdline"] {
        let path = config.out.join(name);
        sha256.insert(name.to_owned(), hex::encode(sha256_file(&path)?));
    }
    let manifest = ImageManifest {
        kernel_version: KERNEL_VERSION.to_owned(),
        cmdline,
        root_hash: verity.root_hash,
        hash_offset: verity.hash_offset,
        sha256,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ImageError::Io {
        path: config.out.join("manifest.json"),
        source: e.into(),
    })?;
    write_file(&config.out.join("manifest.json"), &json)?;
    fs::remove_dir_all(&work).map_err(io(&work))?;
    tracing::info!(out = %config.out.display(), root_hash = %manifest.root_hash, "image built");
    Ok(manifest)
}

/// Writes an artifact atomically (a reader never sees half of one), world-readable.
fn write_file(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    contrast_atomic_file::write(path, data, 0o644).map_err(ImageError::from)
}

fn sha256_file(path: &Path) -> Result<[u8; 32], ImageError> {
    let data = fs::read(path).map_err(io(path))?;
    Ok(Sha256::digest(&data).into())
}

/// The root filesystem tree, staged in `work/rootfs` and packed with mkfs.erofs.
fn build_rootfs(config: &BuildConfig, work: &Path) -> Result<PathBuf, ImageError> {
    let root = work.join("rootfs");
    let mut tree = Tree::default();
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "mnt",
        "state", "contrast",
    ] {
        tree.dir(dir);
    }
    let system = &config.system_root;
    // busybox provides the shell and the small tools (mount, ip, insmod, …) in /bin.
    tree.file("bin/busybox", system.join("bin/busybox"), 0o755);
    for applet in host::busybox_applets(&system.join("bin/busybox"))? {
        tree.symlink(&format!("bin/{applet}"), "busybox");
    }
    let mut programs = Vec::new();
    for name in GUEST_BINARIES {
        let path = config.binaries.join(name);
        if !path.exists() {
            return Err(ImageError::MissingBinary { path });
        }
        let stripped = work.join(format!("{name}.stripped"));
        host::strip(&path, &stripped)?;
        tree.file(&format!("usr/bin/{name}"), stripped.clone(), 0o755);
        programs.push(path);
    }
    // The agent's OCI runtime (guest/agent/src/container: why crun).
    for tool in ["usr/sbin/cryptsetup", MKE2FS, "usr/bin/crun"] {
        let path = system.join(tool);
        tree.file(tool, path.clone(), 0o755);
        programs.push(path);
    }
    tree.symlink("usr/sbin/mkfs.ext4", "mke2fs");
    tree.file(IPTABLES_BINARY, system.join(IPTABLES_BINARY), 0o755);
    programs.push(system.join(IPTABLES_BINARY));
    for name in IPTABLES_NAMES {
        tree.symlink(&format!("usr/sbin/{name}"), "xtables-nft-multi");
    }
    for extension in XTABLES_EXTENSIONS {
        tree.file(extension, system.join(extension), 0o644);
        programs.push(system.join(extension));
    }
    tree.file(MKE2FS_CONF, system.join(MKE2FS_CONF), 0o644);
    // The agent's only trust anchors for registries (guest pull over HTTPS): Debian's
    // Mozilla bundle, measured with the rest of the root.
    tree.file(CA_BUNDLE, system.join(CA_BUNDLE), 0o644);
    tree.content("sbin/init", ROOTFS_INIT.as_bytes().to_vec(), 0o755);
    tree.content(
        "etc/contrast-image-release",
        format!(
            "contrast guest image {} (kernel {KERNEL_VERSION})\n",
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes(),
        0o644,
    );
    for library in host::shared_libraries(&programs)? {
        let inside = library.to_string_lossy().trim_start_matches('/').to_owned();
        tree.file(&inside, system.join(&inside), 0o755);
    }
    tree.materialise(&root)?;
    let image = work.join("rootfs.erofs");
    host::mkfs_erofs(&root, &image, EROFS_UUID)?;
    Ok(image)
}

/// The initramfs: busybox, veritysetup and its libraries, the modules, `/init`.
fn build_initramfs(system: &Path) -> Result<Vec<u8>, ImageError> {
    let mut entries: BTreeMap<String, cpio::Entry> = BTreeMap::new();
    let mut add = |path: &str, permissions: u32, kind: cpio::EntryKind| {
        // Parents first; BTreeMap order puts "a" before "a/b".
        let mut parent = String::new();
        for component in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            entries
                .entry(parent.clone())
                .or_insert_with(|| cpio::Entry {
                    path: parent.clone(),
                    permissions: 0o755,
                    kind: cpio::EntryKind::Directory,
                });
        }
        entries.insert(
            path.to_owned(),
            cpio::Entry {
                path: path.to_owned(),
                permissions,
                kind,
            },
        );
    };
    let read = |path: &Path| fs::read(path).map_err(io(path));
    add(
        "init",
        0o755,
        cpio::EntryKind::File(INITRAMFS_INIT.as_bytes().to_vec()),
    );
    add("dev/console", 0o600, cpio::EntryKind::CharDevice(5, 1));
    for dir in ["proc", "sys", "sysroot", "run"] {
        add(dir, 0o755, cpio::EntryKind::Directory);
    }
    let busybox = system.join("bin/busybox");
    add("bin/busybox", 0o755, cpio::EntryKind::File(read(&busybox)?));
    for applet in host::busybox_applets(&busybox)? {
        add(
            &format!("bin/{applet}"),
            0o777,
            cpio::EntryKind::Symlink("busybox".into()),
        );
    }
    let veritysetup = system.join("usr/sbin/veritysetup");
    add(
        "bin/veritysetup",
        0o755,
        cpio::EntryKind::File(read(&veritysetup)?),
    );
    for library in host::shared_libraries(&[veritysetup])? {
        let inside = library.to_string_lossy().trim_start_matches('/').to_owned();
        add(
            &inside,
            0o755,
            cpio::EntryKind::File(read(&system.join(&inside))?),
        );
    }
    let mut order = String::new();
    for module in host::resolve_modules(system, KERNEL_VERSION, MODULES)? {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".xz").to_owned())
            .unwrap_or_default();
        add(
            &format!("lib/modules/{name}"),
            0o644,
            cpio::EntryKind::File(host::decompress_xz(&module)?),
        );
        order.push_str(&name);
        order.push('\n');
    }
    add(
        "lib/modules/order",
        0o644,
        cpio::EntryKind::File(order.into_bytes()),
    );

    let entries: Vec<cpio::Entry> = entries.into_values().collect();
    let mut archive = Vec::new();
    cpio::write(&mut archive, &entries).map_err(io(Path::new("initrd")))?;
    // No name and a zero time in the gzip header: the same archive, the same bytes.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&archive).map_err(io(Path::new("initrd")))?;
    gz.finish().map_err(io(Path::new("initrd")))
}

/// A root filesystem tree assembled in memory, then written to a staging directory with
/// the modes given here (not whatever the build machine's umask would give).
#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug)]
enum Node {
    Dir,
    Copy(PathBuf, u32),
    Content(Vec<u8>, u32),
    Symlink(String),
}

impl Tree {
    fn dir(&mut self, path: &str) {
        self.nodes.insert(path.to_owned(), Node::Dir);
    }
    fn file(&mut self, path: &str, source: PathBuf, mode: u32) {
        self.nodes.insert(path.to_owned(), Node::Copy(source, mode));
    }
    fn content(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.nodes
            .insert(path.to_owned(), Node::Content(data, mode));
    }
    fn symlink(&mut self, path: &str, target: &str) {
        // A real file of the same name wins over a busybox applet.
        self.nodes
            .entry(path.to_owned())
            .or_insert_with(|| Node::Symlink(target.to_owned()));
    }

    fn materialise(&self, root: &Path) -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt as _;
        fs::create_dir_all(root).map_err(io(root))?;
        for (path, node) in &self.nodes {
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mode = match node {
                Node::Dir => {
                    fs::create_dir_all(&target).map_err(io(&target))?;
                    Some(0o755)
                }
                Node::Copy(source, mode) => {
                    fs::copy(source, &target).map_err(io(source))?;
                    Some(*mode)
                }
                Node::Content(data, mode) => {
                    fs::write(&target, data).map_err(io(&target))?;
                    Some(*mode)
                }
                Node::Symlink(link) => {
                    std::os::unix::fs::symlink(link, &target).map_err(io(&target))?;
                    None
                }
            };
            if let Some(mode) = mode {
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(io(&target))?;
            }
        }
        // Directories created as parents get the same mode as declared ones.
        for entry in walk(root)? {
            let meta = fs::symlink_metadata(&entry).map_err(io(&entry))?;
            if meta.is_dir() {
                fs::set_permissions(&entry, fs::Permissions::from_mode(0o755))
                    .map_err(io(&entry))?;
            }
        }
        Ok(())
    }
}

fn walk(root: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let mut out = vec![root.to_path_buf()];
    let mut index = 0;
    while index < out.len() {
        let dir = out[index].clone();
        index += 1;
        if !fs::symlink_metadata(&dir).map_err(io(&dir))?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            out.push(entry.map_err(io(&dir))?.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("image-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_system_without_the_pinned_kernel_is_refused_with_the_package_to_install() {
        let root = scratch("no-kernel");
        let err = build(&BuildConfig {
            binaries: root.clone(),
            out: root.join("out"),
            system_root: root.clone(),
        })
        .unwrap_err();
        assert!(matches!(err, ImageError::MissingKernel { .. }), "{err}");
        assert!(err.to_string().contains(KERNEL_PACKAGE), "{err}");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_missing_guest_binary_is_refused_before_anything_is_packed() {
        if !Path::new(&format!("/boot/vmlinuz-{KERNEL_VERSION}")).exists() {
            panic!("the pinned kernel is not installed: cargo xtask install-deps");
        }
        let root = scratch("no-binaries");
        let err = build(&BuildConfig {
            binaries: root.join("empty"),
            out: root.join("out"),
            system_root: PathBuf::from("/"),
        })
        .unwrap_err();
        assert!(matches!(err, ImageError::MissingBinary { .. }), "{err}");
        assert!(
            err.to_string().contains("cargo build --workspace --bins"),
            "{err}"
        );
        assert!(!root.join("out/rootfs.img").exists());
        fs::remove_dir_all(root).unwrap();
    }

    /// The test command installs the kernel this crate pins (xtask cannot depend on us).
    #[test]
    fn the_test_command_installs_the_pinned_kernel_and_its_headers() {
        let xtask =
            fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../xtask/src/main.rs"))
                .unwrap();
        for package in [
            KERNEL_PACKAGE.to_owned(),
            format!("linux-headers-{KERNEL_VERSION}"),
        ] {
            assert!(
                xtask.contains(&format!("\"{package}\"")),
                "xtask's BACKPORTS_PACKAGES does not install {package}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_a_bzimage_is_refused() {
        let err = host::unpack_bzimage(Path::new("k"), &[0u8; 4096]).unwrap_err();
        assert!(err.to_string().contains("setup header"), "{err}");
        let mut fake = vec![0u8; 4096];
        fake[0x202..0x206].copy_from_slice(b"HdrS");
        fake[0x248..0x24c].copy_from_slice(&0x10_0000u32.to_le_bytes());
        fake[0x24c..0x250].copy_from_slice(&16u32.to_le_bytes());
        let err = host::unpack_bzimage(Path::new("k"), &fake).unwrap_err();
        assert!(err.to_string().contains("outside the file"), "{err}");
    }

    #[test]
    fn the_library_closure_follows_ldd_and_adds_libgcc() {
        let libraries = host::shared_libraries(&[PathBuf::from("/usr/sbin/veritysetup")]).unwrap();
        let names: Vec<String> = libraries
            .iter()
            .map(|l| l.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for needed in [
            "libcryptsetup.so.12",
            "libc.so.6",
            "ld-linux-x86-64.so.2",
            "libgcc_s.so.1",
        ] {
            assert!(
                names.iter().any(|n| n == needed),
                "{needed} missing from {names:?}"
            );
        }
        // A static program needs nothing.
        assert!(
            host::shared_libraries(&[PathBuf::from("/bin/busybox")])
                .unwrap()
                .is_empty()
        );
    }
}
