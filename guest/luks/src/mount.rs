//! The mapping name, mkfs.ext4 and mount.

use std::path::Path;
use std::process::Command;

use aws_lc_rs::digest;

use crate::error::LuksError;

/// Contrast's mapping name: hex of the first 8 bytes of SHA-256(device path ‖ mount
/// point) (docs/protocol.md §12.2), so a volume keeps its name across restarts.
pub fn mapping_name(device: &str, mount_point: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(device.as_bytes());
    ctx.update(mount_point.as_bytes());
    let hash = ctx.finish();
    hex::encode(hash.as_ref().get(..8).unwrap_or_default())
}

/// Runs `program args…`; a non-zero exit is an error carrying its standard error.
pub(crate) fn run(program: &Path, args: &[&str]) -> Result<(), LuksError> {
    let name = program.display().to_string();
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LuksError::Spawn {
            program: name.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LuksError::Command {
            program: name,
            args: args.join(" "),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Undoes the octal escapes the kernel writes in /proc/self/mountinfo (`\040` for space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escape {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Linux's `major:minor` of a `dev_t` (glibc's `gnu_dev_major`/`gnu_dev_minor`).
pub(crate) fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Whether the device `major:minor` is mounted at `mount_point`, per a mountinfo table.
/// The mount point itself may be a mount of something else (Kubernetes mounts the
/// emptyDir there), so only a line with our device counts.
pub(crate) fn is_mounted_in(mountinfo: &str, mount_point: &str, device: (u64, u64)) -> bool {
    let wanted = mount_point.trim_end_matches('/');
    let wanted = if wanted.is_empty() { "/" } else { wanted };
    let wanted_dev = format!("{}:{}", device.0, device.1);
    mountinfo.lines().any(|line| {
        let mut fields = line.split(' ');
        let dev = fields.nth(2);
        let point = fields.nth(1);
        dev == Some(wanted_dev.as_str()) && point.is_some_and(|p| unescape_mountinfo(p) == wanted)
    })
}

/// Whether the block device `mapped` is mounted at `mount_point` now.
pub(crate) fn is_mounted(mapped: &Path, mount_point: &str) -> Result<bool, LuksError> {
    use std::os::unix::fs::MetadataExt as _;
    let rdev = std::fs::metadata(mapped)
        .map_err(|source| LuksError::MountInfo { source })?
        .rdev();
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| LuksError::MountInfo { source })?;
    Ok(is_mounted_in(&table, mount_point, major_minor(rdev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_name_is_contrasts() {
        // SHA-256("/dev/csi0/state") computed with coreutils sha256sum.
        assert_eq!(mapping_name("/dev/csi0", "/state"), "7bfcd783e98dd63a");
        assert_eq!(mapping_name("/dev/csi0", "/state").len(), 16);
    }

    #[test]
    fn mountinfo_lookup() {
        let table = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                     30 22 0:40 / /state rw - tmpfs tmpfs rw\n\
                     35 30 253:0 / /state rw,relatime - ext4 /dev/mapper/abc rw\n\
                     36 22 253:1 / /with\\040space rw - ext4 /dev/mapper/def rw\n";
        assert!(is_mounted_in(table, "/state", (253, 0)));
        assert!(is_mounted_in(table, "/state/", (253, 0)));
        assert!(is_mounted_in(table, "/with space", (253, 1)));
        assert!(is_mounted_in(table, "/", (8, 1)));
        // The emptyDir (0:40) at /state is not our device; another device is not ours.
        assert!(!is_mounted_in(table, "/state", (253, 1)));
        assert!(!is_mounted_in(table, "/stat", (253, 0)));
        assert!(!is_mounted_in(table, "/state/sub", (253, 0)));
    }

    #[test]
    fn dev_t_split() {
        // makedev(253, 0) and makedev(259, 70000) as glibc encodes them.
        assert_eq!(major_minor(0xfd00), (253, 0));
        let dev = (70000u64 & 0xff) | ((259u64 & 0xfff) << 8) | ((70000u64 & !0xff) << 12);
        assert_eq!(major_minor(dev), (259, 70000));
    }

    #[test]
    fn failing_command_reports_stderr() {
        let err = run(Path::new("sh"), &["-c", "echo broken >&2; exit 3"]);
        match err {
            Err(LuksError::Command { stderr, .. }) => assert_eq!(stderr, "broken"),
            other => panic!("expected a command error, got {other:?}"),
        }
        assert!(matches!(
            run(Path::new("/nonexistent/mkfs"), &[]),
            Err(LuksError::Spawn { .. })
        ));
    }
}
