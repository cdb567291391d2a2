//! A container's statistics as containerd reads them.

/// The agent's cgroup statistics in containerd's cgroup v1 metrics (what the Kata shim
/// reports too, and the CRI reads for a container's CPU and memory).
pub(crate) fn cgroup_metrics(
    stats: Option<&contrast_agent_protocol::proto::agent::CgroupStats>,
) -> containerd_shim_protos::cgroups::metrics::Metrics {
    use containerd_shim_protos::cgroups::metrics::{
        CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
    };
    let mut metrics = Metrics::new();
    let Some(stats) = stats else {
        return metrics;
    };
    if let Some(cpu) = stats.cpu_stats.as_ref().and_then(|c| c.cpu_usage.as_ref()) {
        let mut usage = CPUUsage::new();
        usage.total = cpu.total_usage;
        usage.kernel = cpu.usage_in_kernelmode;
        usage.user = cpu.usage_in_usermode;
        usage.per_cpu = cpu.percpu_usage.clone();
        let mut stat = CPUStat::new();
        stat.usage = Some(usage).into();
        metrics.cpu = Some(stat).into();
    }
    if let Some(memory) = stats.memory_stats.as_ref() {
        let mut stat = MemoryStat::new();
        stat.cache = memory.cache;
        if let Some(usage) = memory.usage.as_ref() {
            let mut entry = MemoryEntry::new();
            entry.usage = usage.usage;
            entry.max = usage.max_usage;
            entry.failcnt = usage.failcnt;
            entry.limit = usage.limit;
            stat.usage = Some(entry).into();
        }
        stat.total_inactive_file = memory
            .stats
            .get("total_inactive_file")
            .copied()
            .unwrap_or_default();
        metrics.memory = Some(stat).into();
    }
    if let Some(pids) = stats.pids_stats.as_ref() {
        let mut stat = PidsStat::new();
        stat.current = pids.current;
        stat.limit = pids.limit;
        metrics.pids = Some(stat).into();
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_statistics_become_cgroup_metrics() {
        use contrast_agent_protocol::proto::agent::{
            CgroupStats, CpuStats, CpuUsage, MemoryData, MemoryStats,
        };
        let mut usage = CpuUsage::new();
        usage.total_usage = 7;
        usage.usage_in_usermode = 5;
        let mut cpu = CpuStats::new();
        cpu.cpu_usage = Some(usage).into();
        let mut data = MemoryData::new();
        data.usage = 4096;
        data.limit = 1 << 20;
        let mut memory = MemoryStats::new();
        memory.usage = Some(data).into();
        memory.stats.insert("total_inactive_file".into(), 1024);
        let mut stats = CgroupStats::new();
        stats.cpu_stats = Some(cpu).into();
        stats.memory_stats = Some(memory).into();
        let metrics = cgroup_metrics(Some(&stats));
        assert_eq!(metrics.cpu.usage.total, 7);
        assert_eq!(metrics.cpu.usage.user, 5);
        assert_eq!(metrics.memory.usage.usage, 4096);
        assert_eq!(metrics.memory.usage.limit, 1 << 20);
        assert_eq!(metrics.memory.total_inactive_file, 1024);
        assert!(metrics.pids.is_none());
        assert_eq!(cgroup_metrics(None), Default::default());
    }
}
