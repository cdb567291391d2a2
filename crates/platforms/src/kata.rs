//! How the Kata runtime of each platform is configured where the configuration shapes the
//! requests the agent gets: the node installer writes these settings into the runtime's
//! configuration, and the agent policy is generated to expect the requests they produce.
//! One place, so the two cannot drift apart.

use crate::Platform;

/// A path as the runtime cleans mount sources and destinations (Go's `filepath.Clean`): no
/// empty or `.` components, `..` resolved lexically (never above `/`), `.` for nothing.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            // Above the root stays at the root; a relative path keeps its leading `..`.
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// How a container's image reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagePull {
    /// The guest pulls the image itself (`experimental_force_guest_pull`): the agent gets an
    /// `image_guest_pull` storage naming the image, and the root is
    /// `/run/kata-containers/<container id>/rootfs`.
    InGuest,
    /// The tardev snapshotter on the node hands the guest dm-verity protected layers (AKS).
    TardevSnapshotter,
}

/// The hypervisor's block device driver (`block_device_driver`), which decides how the
/// agent is told about a block volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDeviceDriver {
    /// `virtio-scsi`: agent device type `scsi`, found by its SCSI address.
    VirtioScsi,
    /// `virtio-blk`: agent device type `blk`, found by its PCI path.
    VirtioBlk,
}

impl BlockDeviceDriver {
    /// The value of `block_device_driver` in the Kata configuration.
    pub fn config_value(self) -> &'static str {
        match self {
            BlockDeviceDriver::VirtioScsi => "virtio-scsi",
            BlockDeviceDriver::VirtioBlk => "virtio-blk",
        }
    }

    /// The agent device type the runtime sends for a block volume
    /// (kata_agent.go `appendBlockDevice`).
    pub fn agent_device_type(self) -> &'static str {
        match self {
            BlockDeviceDriver::VirtioScsi => "scsi",
            BlockDeviceDriver::VirtioBlk => "blk",
        }
    }
}

/// How the Kata runtime gives a pod its disk-backed emptyDir volumes
/// (`runtime.emptydir_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyDirMode {
    /// `shared-fs`: a directory of the guest's own (a `local` storage); what our runtime
    /// runs.
    SharedFs,
    /// `block-encrypted`: a disk image on the host, hot-plugged, which the agent formats
    /// under an ephemeral LUKS key (kata's confidential configuration templates' default,
    /// and genpolicy's). The policy admits its requests; our shim and agent do not run it.
    BlockEncrypted,
}

impl EmptyDirMode {
    /// The value of `emptydir_mode` in the Kata configuration.
    pub fn config_value(self) -> &'static str {
        match self {
            EmptyDirMode::SharedFs => "shared-fs",
            EmptyDirMode::BlockEncrypted => "block-encrypted",
        }
    }
}

/// The settings of a platform's Kata runtime that the agent policy depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KataRuntime {
    /// `hypervisor.shared_fs`: always `none` (no host file system in the guest; the runtime
    /// copies files in with CopyFile).
    pub shared_fs: &'static str,
    /// How images reach the guest.
    pub image_pull: ImagePull,
    /// `runtime.disable_guest_seccomp`: the runtime sends no seccomp profile.
    pub disable_guest_seccomp: bool,
    /// `hypervisor.disable_guest_selinux`: the runtime sends no SELinux label.
    pub disable_guest_selinux: bool,
    /// `hypervisor.block_device_driver`.
    pub block_device_driver: BlockDeviceDriver,
    /// `runtime.emptydir_mode`: how a disk-backed emptyDir reaches the guest.
    pub emptydir_mode: EmptyDirMode,
    /// `hypervisor.guest_hook_path`: OCI hooks in the guest (the GPU platforms' NVIDIA
    /// hooks); the runtime names it in CreateSandbox.
    pub guest_hook_path: Option<&'static str>,
}

impl Platform {
    /// The settings of this platform's Kata runtime. The simulated platforms have no node
    /// runtime; their pods are modelled on the bare-metal QEMU one.
    pub fn kata_runtime(self) -> KataRuntime {
        let qemu = KataRuntime {
            shared_fs: "none",
            image_pull: ImagePull::InGuest,
            disable_guest_seccomp: true,
            disable_guest_selinux: true,
            block_device_driver: BlockDeviceDriver::VirtioScsi,
            emptydir_mode: EmptyDirMode::SharedFs,
            guest_hook_path: None,
        };
        match self {
            Platform::AksClhSnp => KataRuntime {
                image_pull: ImagePull::TardevSnapshotter,
                block_device_driver: BlockDeviceDriver::VirtioBlk,
                ..qemu
            },
            Platform::K3sQemuSnpGpu | Platform::MetalQemuSnpGpu => KataRuntime {
                guest_hook_path: Some("/usr/share/oci/hooks"),
                ..qemu
            },
            Platform::K3sQemuSnp
            | Platform::K3sQemuTdx
            | Platform::Rke2QemuTdx
            | Platform::MetalQemuSnp
            | Platform::MetalQemuTdx
            | Platform::SimSnp
            | Platform::SimTdx => qemu,
        }
    }
}

#[cfg(test)]
mod path_tests {
    use super::clean_path;

    /// Go's `filepath.Clean` on the cases its documentation and tests give.
    #[test]
    fn cleans_like_go() {
        for (path, clean) in [
            ("/data/", "/data"),
            ("//a/./b/../c", "/a/c"),
            ("/", "/"),
            ("/../a", "/a"),
            ("", "."),
            ("a/../..", ".."),
            ("../a/./b", "../a/b"),
            ("a//b/", "a/b"),
        ] {
            assert_eq!(clean_path(path), clean, "{path:?}");
        }
    }
}
