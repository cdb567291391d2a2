//! Device-mapper for the containers that can use it: the secure-pv Initializer formats,
//! opens and mounts its volume with cryptsetup (dm-crypt over dm-integrity) inside its
//! own container.
//!
//! libdevmapper finds no udev in a container, so it makes `/dev/mapper/control` and the
//! mapped disks' nodes itself (mknod); the device cgroup must then let the container read
//! and write them. The Kata agent applies no device filter under cgroup v2 at all (its
//! cgroup library has no devices controller there), while crun applies one from the
//! spec's rules. The runtime sends no rules (it drops them, and the policy requires none),
//! so the agent adds these two, after the policy check, and only for a container with
//! CAP_SYS_ADMIN: the device-mapper ioctls need it, so no other container could use them,
//! and every other container keeps crun's default list.

use std::path::Path;

use crate::proto::oci;

/// The capability the device-mapper ioctls require.
const SYS_ADMIN: &str = "CAP_SYS_ADMIN";
/// The misc devices' character major (`/dev/mapper/control` is one of them).
const MISC_MAJOR: i64 = 10;
/// The name device-mapper registers, in `/proc/misc` and `/proc/devices`.
const NAME: &str = "device-mapper";

/// The numbers device-mapper has in this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMapper {
    /// The minor of its control node (character, major 10).
    pub control_minor: i64,
    /// The block major of the disks it maps.
    pub block_major: i64,
}

impl DeviceMapper {
    /// Reads them from `proc` (`/proc/misc` and the block section of `/proc/devices`);
    /// `None` when the kernel has no device-mapper.
    pub fn read(proc: &Path) -> Option<DeviceMapper> {
        let misc = std::fs::read_to_string(proc.join("misc")).ok()?;
        let devices = std::fs::read_to_string(proc.join("devices")).ok()?;
        let numbered = |line: &str| {
            let (number, name) = line.trim().split_once(' ')?;
            (name.trim() == NAME).then(|| number.parse().ok()).flatten()
        };
        let control_minor = misc.lines().find_map(numbered)?;
        let block_major = devices
            .lines()
            .skip_while(|line| !line.starts_with("Block devices:"))
            .find_map(numbered)?;
        Some(DeviceMapper {
            control_minor,
            block_major,
        })
    }

    /// Adds the rules that let the container of `spec` use device-mapper, if it holds
    /// CAP_SYS_ADMIN; returns whether it did.
    pub fn allow(&self, spec: &mut oci::Spec) -> bool {
        let sys_admin = spec
            .Process
            .as_ref()
            .and_then(|p| p.Capabilities.as_ref())
            .is_some_and(|caps| caps.Effective.iter().any(|c| c == SYS_ADMIN));
        if !sys_admin {
            return false;
        }
        let rule = |type_: &str, major: i64, minor: i64| {
            let mut rule = oci::LinuxDeviceCgroup::new();
            rule.Allow = true;
            rule.Type = type_.to_owned();
            rule.Major = major;
            rule.Minor = minor;
            rule.Access = "rwm".to_owned();
            rule
        };
        let devices = &mut spec
            .Linux
            .mut_or_insert_default()
            .Resources
            .mut_or_insert_default()
            .Devices;
        devices.push(rule("c", MISC_MAJOR, self.control_minor));
        // -1: every minor (the OCI spec's wildcard), one per mapped disk.
        devices.push(rule("b", self.block_major, -1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISC: &str = "236 device-mapper\n183 hw_random\n  1 psaux\n";
    const DEVICES: &str = "Character devices:\n  1 mem\n 10 misc\n253 device-mapper\n\n\
                           Block devices:\n  7 loop\n  8 sd\n252 device-mapper\n254 virtblk\n";

    fn proc_dir(misc: &str, devices: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("misc"), misc).unwrap();
        std::fs::write(dir.path().join("devices"), devices).unwrap();
        dir
    }

    fn spec_with_caps(effective: &[&str]) -> oci::Spec {
        let mut caps = oci::LinuxCapabilities::new();
        caps.Effective = effective.iter().map(|c| (*c).to_owned()).collect();
        let mut process = oci::Process::new();
        process.Capabilities = Some(caps).into();
        let mut spec = oci::Spec::new();
        spec.Process = Some(process).into();
        spec
    }

    #[test]
    fn the_numbers_come_from_proc_and_the_block_section_decides_the_major() {
        let proc = proc_dir(MISC, DEVICES);
        assert_eq!(
            DeviceMapper::read(proc.path()),
            Some(DeviceMapper {
                control_minor: 236,
                block_major: 252,
            })
        );
        for (misc, devices) in [
            ("183 hw_random\n", DEVICES),
            (MISC, "Block devices:\n  8 sd\n"),
            // A character device of that name is not the block major.
            (MISC, "Character devices:\n253 device-mapper\n"),
        ] {
            assert_eq!(DeviceMapper::read(proc_dir(misc, devices).path()), None);
        }
    }

    #[test]
    fn only_a_container_with_sys_admin_gets_device_mapper() {
        let dm = DeviceMapper {
            control_minor: 236,
            block_major: 252,
        };
        let mut plain = spec_with_caps(&["CAP_CHOWN", "CAP_MKNOD"]);
        assert!(!dm.allow(&mut plain));
        assert!(plain.Linux.is_none());
        let mut privileged = spec_with_caps(&["CAP_MKNOD", SYS_ADMIN]);
        assert!(dm.allow(&mut privileged));
        let rules: Vec<_> = privileged
            .Linux
            .Resources
            .Devices
            .iter()
            .map(|r| {
                (
                    r.Allow,
                    r.Type.as_str(),
                    r.Major,
                    r.Minor,
                    r.Access.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rules,
            [(true, "c", 10, 236, "rwm"), (true, "b", 252, -1, "rwm")]
        );
    }
}
