//! The emptyDir storage handlers on this machine's kernel (the tests run as root): where a
//! volume may lie, its mode and fsGroup, and that a tmpfs is mounted once and unmounted
//! with the sandbox.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use contrast_agent::proto::agent::Storage;
use contrast_agent::storage::{
    ContainerContext, EphemeralHandler, LocalHandler, Prepared, StorageError, StorageHandler,
};
use contrast_testkit::TempDir;

fn storage(driver: &str, mount_point: &str, options: &[&str]) -> Storage {
    let mut s = Storage::new();
    s.driver = driver.to_owned();
    s.source = driver.to_owned();
    s.fstype = if driver == "ephemeral" {
        "tmpfs"
    } else {
        "local"
    }
    .to_owned();
    s.mount_point = mount_point.to_owned();
    s.options = options.iter().map(|o| (*o).to_owned()).collect();
    s
}

fn context(run: &Path) -> ContainerContext {
    ContainerContext {
        container_id: "c1".to_owned(),
        bundle: run.join("c1"),
    }
}

fn is_mount_point(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_str()))
}

#[tokio::test]
async fn a_local_volume_is_a_directory_with_the_mode_and_fs_group_asked_for() {
    let dir = TempDir::new("agent-local");
    let run = dir.0.join("run");
    let handler = LocalHandler::new(run.clone());
    let sid = "a".repeat(64);
    let prepared = handler
        .add(
            &storage(
                "local",
                &format!("/run/kata-containers/shared/containers/{sid}/rootfs/local/cache"),
                &["mode=0777", "fsgid=2000"],
            ),
            &context(&run),
        )
        .await
        .unwrap();
    let path = run.join(format!("shared/containers/{sid}/rootfs/local/cache"));
    assert_eq!(prepared, Prepared::Volume { path: path.clone() });
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o2777,
        "mode and set-group-ID"
    );
    assert_eq!(meta.gid(), 2000);

    for outside in [
        "/etc/cron.d",
        "/run/kata-containers/sandbox/x",
        "/run/kata-containers/shared/containers/../../../etc",
        "/run/kata-containers/shared/containers",
    ] {
        let err = handler
            .add(&storage("local", outside, &[]), &context(&run))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::Invalid { .. }),
            "{outside}: {err}"
        );
    }
}

#[tokio::test]
async fn an_ephemeral_volume_is_one_tmpfs_until_the_sandbox_goes() {
    let dir = TempDir::new("agent-ephemeral");
    let run = dir.0.join("run");
    let handler = EphemeralHandler::new(run.clone());
    let volume = storage(
        "ephemeral",
        "/run/kata-containers/sandbox/ephemeral/scratch",
        &["fsgid=3000"],
    );
    let path = run.join("sandbox/ephemeral/scratch");
    handler.add(&volume, &context(&run)).await.unwrap();
    assert!(is_mount_point(&path));
    std::fs::write(path.join("kept"), "x").unwrap();
    // A second container of the pod shares it: no second mount over the first.
    handler.add(&volume, &context(&run)).await.unwrap();
    assert!(path.join("kept").exists());
    assert_eq!(std::fs::metadata(&path).unwrap().gid(), 3000);

    let err = handler
        .add(
            &storage("ephemeral", "/run/kata-containers/sandbox/shm", &[]),
            &context(&run),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Invalid { .. }), "{err}");

    handler.teardown();
    assert!(!is_mount_point(&path));
}
