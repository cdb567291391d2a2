//! Block devices found in a sysfs tree in a directory, laid out as the kernel lays out a
//! virtio-scsi disk (`/sys/block/sda` → `…/host0/target0:0:0/0:0:0:1/block/sda`) and a
//! virtio-blk disk behind a PCI bridge, and given to a container's spec.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use contrast_agent::device::{BlockDevice, DeviceError, apply, find};
use contrast_agent::proto::agent::Device;
use contrast_agent::proto::oci;
use contrast_testkit::TempDir;

fn device(type_: &str, id: &str) -> Device {
    let mut device = Device::new();
    device.type_ = type_.to_owned();
    device.id = id.to_owned();
    device.container_path = "/dev/csi0".to_owned();
    device
}

/// A disk `name` (`major:minor`) whose device directory is `devices/<path>/block/<name>`.
fn disk(sysfs: &Path, path: &str, name: &str, numbers: &str) {
    let dir = sysfs.join("devices").join(path).join("block").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dev"), format!("{numbers}\n")).unwrap();
    std::fs::create_dir_all(sysfs.join("block")).unwrap();
    std::os::unix::fs::symlink(
        Path::new("../devices").join(path).join("block").join(name),
        sysfs.join("block").join(name),
    )
    .unwrap();
}

const SCSI_HOST: &str = "pci0000:00/0000:00:03.0/virtio1/host0";

#[tokio::test]
async fn a_scsi_disk_is_found_by_target_and_lun() {
    let dir = TempDir::new("agent-devices");
    let sysfs = dir.0.join("sys");
    disk(
        &sysfs,
        &format!("{SCSI_HOST}/target0:0:0/0:0:0:0"),
        "sda",
        "8:0",
    );
    disk(
        &sysfs,
        &format!("{SCSI_HOST}/target0:0:0/0:0:0:1"),
        "sdb",
        "8:16",
    );
    disk(&sysfs, "pci0000:00/0000:00:04.0/virtio2", "vda", "254:0");
    // The scan request reaches every SCSI host.
    let scan = sysfs.join("class/scsi_host/host0");
    std::fs::create_dir_all(&scan).unwrap();

    let found = find(&sysfs, &device("scsi", "0:1"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        found,
        BlockDevice {
            name: "sdb".to_owned(),
            major: 8,
            minor: 16
        }
    );
    assert_eq!(std::fs::read_to_string(scan.join("scan")).unwrap(), "0 0 1");
    // LUN 10 is not LUN 1.
    let missing = find(&sysfs, &device("scsi", "0:10"), Duration::from_millis(100)).await;
    assert!(
        matches!(missing, Err(DeviceError::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_virtio_blk_disk_is_found_by_its_pci_path_through_a_bridge() {
    let dir = TempDir::new("agent-devices");
    let sysfs = dir.0.join("sys");
    // Slot 02 of the root bus is a bridge to bus 01; the disk is slot 00 there.
    let bridge = sysfs.join("devices/pci0000:00/0000:00:02.0");
    std::fs::create_dir_all(bridge.join("pci_bus/0000:01")).unwrap();
    disk(
        &sysfs,
        "pci0000:00/0000:00:02.0/0000:01:00.0/virtio3",
        "vdb",
        "254:16",
    );
    // A disk directly on the root bus at slot 00, which "02/00" must not find.
    disk(&sysfs, "pci0000:00/0000:00:00.0/virtio0", "vda", "254:0");

    let found = find(&sysfs, &device("blk", "02/00"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (found.name.as_str(), found.major, found.minor),
        ("vdb", 254, 16)
    );
    let root = find(&sysfs, &device("blk", "00"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(root.name, "vda");
}

#[tokio::test]
async fn addresses_and_types_the_agent_cannot_resolve_are_refused() {
    let dir = TempDir::new("agent-devices");
    let sysfs = dir.0.join("sys");
    std::fs::create_dir_all(sysfs.join("block")).unwrap();
    for (type_, id) in [
        ("scsi", "1"),
        ("scsi", "0:x"),
        ("blk", "2/0"),
        ("blk", "02/zz"),
        ("blk", ""),
    ] {
        let result = find(&sysfs, &device(type_, id), Duration::ZERO).await;
        assert!(
            matches!(result, Err(DeviceError::BadAddress { .. })),
            "{type_} {id}: {result:?}"
        );
    }
    // The host would name the guest node itself.
    for type_ in ["mmioblk", "nvdimm", "vfio-pci"] {
        let result = find(&sysfs, &device(type_, "/dev/vda"), Duration::ZERO).await;
        let Err(error) = result else {
            panic!("{type_} was served");
        };
        assert!(matches!(error, DeviceError::Unsupported { .. }));
        assert!(error.to_string().contains("/dev/csi0"), "{error}");
    }
}

#[test]
fn the_container_gets_the_guests_numbers_and_a_cgroup_rule_for_them() {
    let found = BlockDevice {
        name: "sdb".to_owned(),
        major: 8,
        minor: 16,
    };
    // The runtime's entry carries the host's numbers.
    let mut spec = oci::Spec::new();
    let mut host = oci::LinuxDevice::new();
    host.Path = "/dev/csi0".to_owned();
    host.Type = "b".to_owned();
    host.Major = 259;
    host.Minor = 3;
    host.FileMode = 0o600;
    spec.Linux.mut_or_insert_default().Devices.push(host);
    apply(&mut spec, "/dev/csi0", &found);
    let linux = spec.Linux.as_ref().unwrap();
    assert_eq!(linux.Devices.len(), 1);
    let entry = &linux.Devices[0];
    assert_eq!((entry.Major, entry.Minor, entry.FileMode), (8, 16, 0o600));
    let rules = &linux.Resources.as_ref().unwrap().Devices;
    assert_eq!(rules.len(), 1);
    assert!(rules[0].Allow);
    assert_eq!(
        (
            rules[0].Type.as_str(),
            rules[0].Major,
            rules[0].Minor,
            rules[0].Access.as_str()
        ),
        ("b", 8, 16, "rwm")
    );

    // Without an entry, one is added.
    let mut spec = oci::Spec::new();
    apply(&mut spec, "/dev/csi0", &found);
    let entry = &spec.Linux.as_ref().unwrap().Devices[0];
    assert_eq!(
        (
            entry.Path.as_str(),
            entry.Type.as_str(),
            entry.Major,
            entry.Minor
        ),
        ("/dev/csi0", "b", 8, 16)
    );
}
