//! OnlineCPUMem: the CPUs and memory the host hot-plugged into the VM, brought online
//! through sysfs as the Kata agent does it: CPUs until `nb_cpus` are online (retried
//! briefly: a hot-plugged CPU appears in sysfs when the guest has handled its ACPI event),
//! then every offline memory block unless the request is for CPUs only.
//!
//! The containers' cgroups need no update afterwards: on cgroup v2 a cgroup without its
//! own `cpuset.cpus` uses its parent's effective set, which grows with the new CPUs (the
//! Kata agent rewrites cgroup v1 cpusets here).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often, and how long apart, the CPUs' state is checked again (5 s in all, as the
/// Kata agent waits).
const CPU_TRIES: u32 = 100;
const CPU_RETRY: Duration = Duration::from_millis(50);

/// Why CPUs or memory could not be brought online.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// A sysfs file or directory could not be read or written.
    #[error("reading or writing {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// Fewer CPUs came online than the host asked for.
    #[error(
        "{online} CPU(s) online after {tries} tries, {wanted} asked for: the host did not \
         hot-plug that many"
    )]
    TooFewCpus {
        /// `nb_cpus`.
        wanted: u32,
        /// Online at the end.
        online: u32,
        /// Checks made.
        tries: u32,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HotplugError + '_ {
    move |source| HotplugError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The online CPUs: the `cpu<N>` entries whose `online` file says 1, and those without
/// one (the boot CPU cannot go offline). Counted from the files this module writes, so
/// that a retry never brings more online than asked (the Kata agent reads `cpu/online`,
/// which a real kernel updates before the write returns).
fn online_cpus(system: &Path) -> Result<u32, HotplugError> {
    let mut online = 0;
    for name in numbered_entries(&system.join("cpu"), "cpu")? {
        match std::fs::read_to_string(system.join("cpu").join(name).join("online")) {
            Ok(state) if state.trim() != "1" => {}
            _ => online += 1,
        }
    }
    Ok(online)
}

/// The entries of `dir` named `<prefix><number>`, by number.
fn numbered_entries(dir: &Path, prefix: &str) -> Result<Vec<String>, HotplugError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.strip_prefix(prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort_by_key(|name| name[prefix.len()..].parse::<u64>().unwrap_or(u64::MAX));
    Ok(names)
}

/// Writes `1` to the `online` file of up to `limit` offline entries of `dir` named
/// `<prefix><number>`; returns how many it brought online. An entry the kernel refuses
/// (a block that cannot go online) is skipped, as by the Kata agent.
fn online_entries(dir: &Path, prefix: &str, limit: Option<u32>) -> Result<u32, HotplugError> {
    let mut onlined = 0;
    for name in numbered_entries(dir, prefix)? {
        if limit.is_some_and(|limit| onlined >= limit) {
            break;
        }
        let online = dir.join(&name).join("online");
        // The boot CPU has no `online` file: it cannot go offline.
        let Ok(state) = std::fs::read_to_string(&online) else {
            continue;
        };
        if state.trim() == "0" && std::fs::write(&online, "1").is_ok() {
            onlined += 1;
        }
    }
    Ok(onlined)
}

/// Brings CPUs online until `wanted` are, checking again while the kernel catches up.
pub async fn online_cpus_until(system: &Path, wanted: u32) -> Result<(), HotplugError> {
    let mut online = online_cpus(system)?;
    for _ in 0..CPU_TRIES {
        if online >= wanted {
            return Ok(());
        }
        online_entries(&system.join("cpu"), "cpu", Some(wanted - online))?;
        online = online_cpus(system)?;
        if online >= wanted {
            return Ok(());
        }
        tokio::time::sleep(CPU_RETRY).await;
    }
    Err(HotplugError::TooFewCpus {
        wanted,
        online,
        tries: CPU_TRIES,
    })
}

/// Brings every offline memory block online; returns how many.
pub fn online_memory(system: &Path) -> Result<u32, HotplugError> {
    online_entries(&system.join("memory"), "memory", None)
}
