//! Helpers shared by the probes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use contrast_evidence::configfs_tsm::DEFAULT_REPORT_ROOT;

/// Where configfs is mounted.
const CONFIGFS: &str = "/sys/kernel/config";

/// A progress line on the console.
pub(crate) fn step(text: &str) {
    println!("CONTRAST-STEP {text}");
}

/// Mounts configfs at /sys/kernel/config unless it is mounted already, and checks that the
/// tsm module's report root is there.
pub(crate) fn ensure_configfs() -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        fields.nth(1) == Some(CONFIGFS) && fields.next() == Some("configfs")
    });
    if !mounted {
        step("mounting configfs at /sys/kernel/config");
        let status = std::process::Command::new("mount")
            .args(["-t", "configfs", "configfs", CONFIGFS])
            .status()
            .context("running mount")?;
        ensure!(status.success(), "mount -t configfs failed ({status})");
    }
    ensure!(
        Path::new(DEFAULT_REPORT_ROOT).is_dir(),
        "{DEFAULT_REPORT_ROOT} is missing: is the tsm module loaded?"
    );
    Ok(())
}

/// The names under the report root.
pub(crate) fn report_dirs() -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(DEFAULT_REPORT_ROOT)
        .with_context(|| format!("listing {DEFAULT_REPORT_ROOT}"))?
    {
        let entry = entry.with_context(|| format!("listing {DEFAULT_REPORT_ROOT}"))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Fails unless the report root is empty: our client must remove every directory.
pub(crate) fn expect_no_report_dirs(after: &str) -> anyhow::Result<()> {
    let left = report_dirs()?;
    if !left.is_empty() {
        bail!("after {after}, report directories remain under {DEFAULT_REPORT_ROOT}: {left:?}");
    }
    Ok(())
}

/// 32 bytes from 64 hex characters.
pub(crate) fn host_data(text: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| format!("--host-data {text:?}: 64 hex characters expected"))
}

/// Report data no other request of this boot uses: `tag`, a counter, the time.
pub(crate) fn fresh_report_data(tag: u8) -> [u8; 64] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut data = [tag; 64];
    data[..8].copy_from_slice(&count.to_le_bytes());
    data[8..24].copy_from_slice(&nanos.to_le_bytes());
    data
}
