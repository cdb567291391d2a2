//! A container's cgroup v2 files, read for StatsContainer and GetOOMEvent. crun puts each
//! container in `<cgroup root>/contrast/<ID>/container` (the agent's `cgroupsPath`) and
//! removes that cgroup as soon as the container's process ends; the agent reads the
//! parent, `contrast/<ID>`, whose counters (memory.events, cpu.stat, …) are hierarchical
//! and outlive the process, so an OOM kill is still seen after crun cleaned up. The agent
//! removes the parent with the container.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::proto::agent::{
    CgroupStats, CpuStats, CpuUsage, MemoryData, MemoryStats, PidsStats, ThrottlingData,
};

/// Where cgroup v2 is mounted in the guest.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup path (`cgroupsPath`) of container `id`.
pub fn cgroup_path(id: &str) -> String {
    format!("/contrast/{id}/container")
}

/// The directory whose counters the agent reads for container `id`: the parent of its
/// cgroup, under `root`.
pub fn cgroup_dir(root: &Path, id: &str) -> PathBuf {
    root.join("contrast").join(id)
}

/// Removes container `id`'s parent cgroup (empty once crun deleted the container).
pub fn remove(root: &Path, id: &str) {
    let dir = cgroup_dir(root, id);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir(&dir)
    {
        tracing::warn!(cgroup = %dir.display(), error = %e, "removing the container's cgroup");
    }
}

/// `key value` lines of a cgroup file.
fn flat_keyed(dir: &Path, file: &str) -> HashMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A single-value cgroup file; `max` is `u64::MAX`.
fn single(dir: &Path, file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    match text.trim() {
        "max" => Some(u64::MAX),
        value => value.parse().ok(),
    }
}

/// The statistics the Kata protocol carries, from cgroup v2 (times in nanoseconds, as
/// the protocol has them from cgroup v1).
pub fn stats(dir: &Path) -> CgroupStats {
    let cpu = flat_keyed(dir, "cpu.stat");
    let memory = flat_keyed(dir, "memory.stat");
    let events = flat_keyed(dir, "memory.events");
    let micros = |key: &str| cpu.get(key).copied().unwrap_or(0).saturating_mul(1000);
    let mut out = CgroupStats::new();
    let mut cpu_stats = CpuStats::new();
    let mut usage = CpuUsage::new();
    usage.total_usage = micros("usage_usec");
    usage.usage_in_usermode = micros("user_usec");
    usage.usage_in_kernelmode = micros("system_usec");
    cpu_stats.cpu_usage = Some(usage).into();
    let mut throttling = ThrottlingData::new();
    throttling.periods = cpu.get("nr_periods").copied().unwrap_or(0);
    throttling.throttled_periods = cpu.get("nr_throttled").copied().unwrap_or(0);
    throttling.throttled_time = micros("throttled_usec");
    cpu_stats.throttling_data = Some(throttling).into();
    out.cpu_stats = Some(cpu_stats).into();

    let mut memory_stats = MemoryStats::new();
    let mut usage = MemoryData::new();
    usage.usage = single(dir, "memory.current").unwrap_or(0);
    usage.max_usage = single(dir, "memory.peak").unwrap_or(0);
    // The limit is the container's own (crun sets it on the child while it runs).
    usage.limit = single(&dir.join("container"), "memory.max")
        .or_else(|| single(dir, "memory.max"))
        .unwrap_or(u64::MAX);
    usage.failcnt = events.get("max").copied().unwrap_or(0);
    memory_stats.usage = Some(usage).into();
    memory_stats.cache = memory.get("file").copied().unwrap_or(0);
    memory_stats.use_hierarchy = true;
    memory_stats.stats = memory;
    out.memory_stats = Some(memory_stats).into();

    let mut pids = PidsStats::new();
    pids.current = single(dir, "pids.current").unwrap_or(0);
    pids.limit = single(dir, "pids.max").unwrap_or(0);
    out.pids_stats = Some(pids).into();
    out
}

/// How often the cgroup's OOM killer struck (`memory.events`, `oom_kill`).
pub fn oom_kills(dir: &Path) -> u64 {
    flat_keyed(dir, "memory.events")
        .get("oom_kill")
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Files in the format of a 6.12 kernel's cgroup v2.
    #[test]
    fn stats_and_oom_kills_from_cgroup_v2_files() {
        let dir = std::env::temp_dir().join(format!("agent-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, content) in [
            (
                "cpu.stat",
                "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 4\n\
                 nr_throttled 1\nthrottled_usec 30\n",
            ),
            ("memory.current", "1048576\n"),
            ("memory.peak", "2097152\n"),
            ("memory.max", "max\n"),
            ("memory.stat", "anon 524288\nfile 4096\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
        ] {
            std::fs::write(dir.join(file), content).unwrap();
        }
        let stats = stats(&dir);
        let cpu = stats.cpu_stats.cpu_usage.as_ref().unwrap();
        assert_eq!(
            (
                cpu.total_usage,
                cpu.usage_in_usermode,
                cpu.usage_in_kernelmode
            ),
            (2_500_000, 2_000_000, 500_000)
        );
        let throttling = stats.cpu_stats.throttling_data.as_ref().unwrap();
        assert_eq!(throttling.throttled_time, 30_000);
        let memory = stats.memory_stats.as_ref().unwrap();
        let usage = memory.usage.as_ref().unwrap();
        assert_eq!(
            (usage.usage, usage.max_usage, usage.limit, usage.failcnt),
            (1_048_576, 2_097_152, u64::MAX, 3)
        );
        assert_eq!(memory.cache, 4096);
        assert_eq!(memory.stats.get("anon"), Some(&524_288));
        assert_eq!(stats.pids_stats.current, 2);
        assert_eq!(oom_kills(&dir), 1);
        assert_eq!(oom_kills(&dir.join("missing")), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
