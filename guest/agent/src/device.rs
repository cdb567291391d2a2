//! The pod's block devices (`volumeDevices`): the runtime names each by where it attached
//! it, and the agent finds the guest's disk there through sysfs, as the Kata agent does:
//! - `scsi`, id `<target>:<lun>`: the disk of that SCSI target and LUN (after asking every
//!   SCSI host to scan for it, as a hot-plugged disk may not be probed yet);
//! - `blk`, id a PCI path `<slot>/<slot>/…` (bridges first, from the root bus): the
//!   virtio-blk disk of the last device.
//!
//! Types whose guest node the host would name itself (`mmioblk`, `nvdimm`) are not served:
//! the policy refuses them too. The disk's major and minor numbers replace the host's in
//! the container's device list, and the container's device cgroup allows it (the runtime
//! sends no device rules). A disk that has not appeared within the wait is an error
//! naming the address.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::agent::Device;
use crate::proto::oci;

/// How long a device may take to appear after the runtime attached it.
pub const DEVICE_WAIT: Duration = Duration::from_secs(10);

/// A disk in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Its name in `/sys/block` (`sda`, `vdb`).
    pub name: String,
    /// Its major number.
    pub major: i64,
    /// Its minor number.
    pub minor: i64,
}

/// Why a device could not be given to a container.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A device type the agent does not serve.
    #[error(
        "device {container_path}: type {type_:?} is not served (only scsi and blk, whose \
         guest disk the agent finds itself)"
    )]
    Unsupported {
        /// The type sent.
        type_: String,
        /// The device's path in the container.
        container_path: String,
    },
    /// The address is not of the type's form.
    #[error("device {container_path}: {type_} address {id:?} is not {expected}")]
    BadAddress {
        /// The type.
        type_: String,
        /// The address sent.
        id: String,
        /// The form expected.
        expected: &'static str,
        /// The device's path in the container.
        container_path: String,
    },
    /// No disk appeared there.
    #[error("device {container_path}: no {type_} disk at {id} after {waited:?}")]
    NotFound {
        /// The type.
        type_: String,
        /// The address.
        id: String,
        /// How long the agent waited.
        waited: Duration,
        /// The device's path in the container.
        container_path: String,
    },
    /// sysfs could not be read.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeviceError + '_ {
    move |source| DeviceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where to look for a device.
enum Locator {
    /// SCSI target and LUN.
    Scsi(u32, u32),
    /// PCI slots from the root bus, each with function 0.
    Pci(Vec<u8>),
}

impl Locator {
    fn of(device: &Device) -> Result<Locator, DeviceError> {
        let bad = |expected| DeviceError::BadAddress {
            type_: device.type_.clone(),
            id: device.id.clone(),
            expected,
            container_path: device.container_path.clone(),
        };
        match device.type_.as_str() {
            "scsi" => {
                let (target, lun) = device
                    .id
                    .split_once(':')
                    .and_then(|(t, l)| Some((t.parse().ok()?, l.parse().ok()?)))
                    .ok_or_else(|| bad("<target>:<lun>"))?;
                Ok(Locator::Scsi(target, lun))
            }
            "blk" => {
                let slots = device
                    .id
                    .split('/')
                    .map(|slot| {
                        (slot.len() == 2)
                            .then(|| u8::from_str_radix(slot, 16).ok())
                            .flatten()
                            .filter(|s| *s < 32)
                    })
                    .collect::<Option<Vec<u8>>>()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| bad("a PCI path of two-digit hex slots (02/00)"))?;
                Ok(Locator::Pci(slots))
            }
            _ => Err(DeviceError::Unsupported {
                type_: device.type_.clone(),
                container_path: device.container_path.clone(),
            }),
        }
    }

    /// The disk's name, if it is there yet.
    fn find(&self, sysfs: &Path) -> Result<Option<String>, DeviceError> {
        match self {
            Locator::Scsi(target, lun) => scsi_disk(sysfs, *target, *lun),
            Locator::Pci(slots) => pci_disk(sysfs, slots),
        }
    }
}

/// The disk of SCSI target `target`, LUN `lun` on channel 0 of any host: the entry of
/// `/sys/block` whose device path ends in `/<host>:0:<target>:<lun>/block/<name>`.
fn scsi_disk(sysfs: &Path, target: u32, lun: u32) -> Result<Option<String>, DeviceError> {
    let block = sysfs.join("block");
    for entry in std::fs::read_dir(&block).map_err(io(&block))? {
        let entry = entry.map_err(io(&block))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let components: Vec<String> = link
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [.., address, block_dir, last] = components.as_slice() else {
            continue;
        };
        let parts: Vec<&str> = address.split(':').collect();
        if block_dir == "block"
            && *last == name
            && parts.len() == 4
            && parts[0].bytes().all(|b| b.is_ascii_digit())
            && parts[1] == "0"
            && parts[2] == target.to_string()
            && parts[3] == lun.to_string()
        {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// The virtio-blk disk of the PCI device at `slots`: bridges are followed by the bus
/// each one opens (`pci_bus/`), from the root bus `0000:00`.
fn pci_disk(sysfs: &Path, slots: &[u8]) -> Result<Option<String>, DeviceError> {
    let mut dir = sysfs.join("devices/pci0000:00");
    let mut bus = "0000:00".to_owned();
    for (index, slot) in slots.iter().enumerate() {
        dir = dir.join(format!("{bus}:{slot:02x}.0"));
        if index + 1 < slots.len() {
            let buses = dir.join("pci_bus");
            let Ok(entries) = std::fs::read_dir(&buses) else {
                return Ok(None);
            };
            let mut names = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned());
            match names.next() {
                Some(next) => bus = next,
                None => return Ok(None),
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("virtio") {
            continue;
        }
        if let Ok(disks) = std::fs::read_dir(entry.path().join("block"))
            && let Some(disk) = disks.filter_map(Result::ok).next()
        {
            return Ok(Some(disk.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// The major and minor numbers of `/sys/block/<name>`.
fn numbers(sysfs: &Path, name: &str) -> Result<(i64, i64), DeviceError> {
    let path = sysfs.join("block").join(name).join("dev");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    text.trim()
        .split_once(':')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
        .ok_or_else(|| DeviceError::Io {
            path,
            source: std::io::Error::other(format!("{text:?} is not <major>:<minor>")),
        })
}

/// Finds `device` in the guest, waiting up to `wait` for it to appear.
pub async fn find(
    sysfs: &Path,
    device: &Device,
    wait: Duration,
) -> Result<BlockDevice, DeviceError> {
    let locator = Locator::of(device)?;
    if let Locator::Scsi(target, lun) = locator {
        scan_scsi(sysfs, target, lun);
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(name) = locator.find(sysfs)? {
            let (major, minor) = numbers(sysfs, &name)?;
            return Ok(BlockDevice { name, major, minor });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DeviceError::NotFound {
                type_: device.type_.clone(),
                id: device.id.clone(),
                waited: wait,
                container_path: device.container_path.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks every SCSI host to scan channel 0 for `target`/`lun` (what a hot-plugged disk
/// needs before it shows up). A host that refuses is skipped: the wait decides.
fn scan_scsi(sysfs: &Path, target: u32, lun: u32) {
    let Ok(hosts) = std::fs::read_dir(sysfs.join("class/scsi_host")) else {
        return;
    };
    for host in hosts.filter_map(Result::ok) {
        let _ = std::fs::write(host.path().join("scan"), format!("0 {target} {lun}"));
    }
}

/// Gives the container `found` at `container_path`: the guest's numbers in its device
/// list (replacing the host's, or added), and a device cgroup rule that allows it.
pub fn apply(spec: &mut oci::Spec, container_path: &str, found: &BlockDevice) {
    let linux = spec.Linux.mut_or_insert_default();
    match linux.Devices.iter_mut().find(|d| d.Path == container_path) {
        Some(entry) => {
            entry.Type = "b".to_owned();
            entry.Major = found.major;
            entry.Minor = found.minor;
        }
        None => {
            let mut entry = oci::LinuxDevice::new();
            entry.Path = container_path.to_owned();
            entry.Type = "b".to_owned();
            entry.Major = found.major;
            entry.Minor = found.minor;
            entry.FileMode = 0o660;
            linux.Devices.push(entry);
        }
    }
    let mut rule = oci::LinuxDeviceCgroup::new();
    rule.Allow = true;
    rule.Type = "b".to_owned();
    rule.Major = found.major;
    rule.Minor = found.minor;
    rule.Access = "rwm".to_owned();
    linux.Resources.mut_or_insert_default().Devices.push(rule);
}
