//! Finding and removing what a containerd's pods leave behind: shim processes and their
//! children (reparented away from containerd), mounts, shim sockets, runc state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::CRI_NAMESPACE;

/// Where containerd 1.6 shims put their sockets, whatever containerd's own paths.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// runc's state for handlers without a `Root` option (runc shims under other names).
const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";

/// A running shim of one containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimProcess {
    /// Its process id.
    pub pid: u32,
    /// Its command line, arguments separated by spaces.
    pub command: String,
}

/// What is left of a containerd's pods (see [`crate::Containerd::leftovers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Shims started for this containerd (`-address` is its socket) still running.
    pub shims: Vec<ShimProcess>,
    /// Mount points under the containerd's directory (rootfs overlays, sandbox shm).
    pub mounts: Vec<PathBuf>,
    /// Shim sockets in `/run/containerd/s` of this containerd's sandboxes and containers.
    pub sockets: Vec<PathBuf>,
    /// Task bundles (`state/io.containerd.runtime.v2.task/k8s.io/<id>`).
    pub bundles: Vec<PathBuf>,
    /// runc's state of containers (`runc/k8s.io/<id>`, and `/run/containerd/runc/k8s.io/<id>`
    /// of this containerd's containers).
    pub runc_states: Vec<PathBuf>,
}

impl Leftovers {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.shims.is_empty()
            && self.mounts.is_empty()
            && self.sockets.is_empty()
            && self.bundles.is_empty()
            && self.runc_states.is_empty()
    }
}

pub(crate) fn leftovers(dir: &Path, socket: &Path, runc_root: &Path, log: &Path) -> Leftovers {
    let ids = known_ids(log);
    let mut runc_states = entries(&runc_root.join(CRI_NAMESPACE));
    runc_states.extend(default_runc_states(&ids).filter(|path| path.exists()));
    Leftovers {
        shims: shim_processes(socket),
        mounts: mounts_under(dir),
        sockets: shim_sockets(socket, &ids)
            .filter(|path| path.exists())
            .collect(),
        bundles: entries(&bundle_dir(dir)),
        runc_states,
    }
}

fn bundle_dir(dir: &Path) -> PathBuf {
    dir.join("state")
        .join("io.containerd.runtime.v2.task")
        .join(CRI_NAMESPACE)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = read.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    paths
}

/// Process ids in `/proc`.
fn pids() -> Vec<u32> {
    let Ok(read) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    read.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

fn command_line(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// The shims whose `-address` is `socket`.
pub(crate) fn shim_processes(socket: &Path) -> Vec<ShimProcess> {
    let socket = socket.to_string_lossy();
    pids()
        .into_iter()
        .filter_map(|pid| {
            let args = command_line(pid)?;
            let program = Path::new(args.first()?).file_name()?.to_string_lossy();
            let ours = program.starts_with("containerd-shim")
                && args
                    .windows(2)
                    .any(|pair| pair[0] == "-address" && pair[1] == socket);
            ours.then(|| ShimProcess {
                pid,
                command: args.join(" "),
            })
        })
        .collect()
}

/// The parent and the state of `pid` (from `/proc/<pid>/stat`).
fn parent_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((parent, state))
}

fn alive(pid: u32) -> bool {
    matches!(parent_and_state(pid), Some((_, state)) if state != 'Z' && state != 'X')
}

/// Kills the shims and every process below them (containers, execs), children first,
/// and waits briefly for them to be gone.
pub(crate) fn kill_process_trees(shims: &[ShimProcess]) {
    if shims.is_empty() {
        return;
    }
    let parents: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|pid| Some((pid, parent_and_state(pid)?.0)))
        .collect();
    let mut doomed: Vec<u32> = shims.iter().map(|shim| shim.pid).collect();
    let mut index = 0;
    while index < doomed.len() {
        let parent = doomed[index];
        for (pid, _) in parents.iter().filter(|(_, p)| *p == parent) {
            if !doomed.contains(pid) {
                doomed.push(*pid);
            }
        }
        index += 1;
    }
    doomed.reverse();
    let mut kill = Command::new("kill");
    kill.arg("-KILL").args(doomed.iter().map(u32::to_string));
    match kill.output() {
        Ok(output) if !output.status.success() => tracing::warn!(
            stderr = %String::from_utf8_lossy(&output.stderr),
            "kill of leftover shim processes failed"
        ),
        Err(error) => tracing::warn!(%error, "could not run kill"),
        Ok(_) => {}
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while doomed.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points under `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mount_point(point)))
        .filter(|point| point.starts_with(dir))
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo writes space, tab, newline and backslash as `\` and three octal digits.
fn unescape_mount_point(escaped: &str) -> String {
    let mut out = Vec::with_capacity(escaped.len());
    let bytes = escaped.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes
            .get(index + 1..index + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything under `dir` (lazily if a plain unmount fails).
pub fn unmount_under(dir: &Path) {
    for point in mounts_under(dir) {
        let plain = Command::new("umount").arg(&point).output();
        if matches!(&plain, Ok(output) if output.status.success()) {
            continue;
        }
        match Command::new("umount").arg("-l").arg(&point).output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => tracing::warn!(
                mount = %point.display(),
                stderr = %String::from_utf8_lossy(&output.stderr),
                "could not unmount"
            ),
            Err(error) => tracing::warn!(%error, "could not run umount"),
        }
    }
}

/// The ids of this containerd's sandboxes and containers (and, harmlessly, of its
/// images): every 64-hex-digit word in containerd's log and every task bundle's name.
pub(crate) fn known_ids(log: &Path) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = BTreeSet::new();
    if let Ok(bytes) = std::fs::read(log) {
        let text = String::from_utf8_lossy(&bytes);
        ids.extend(
            text.split(|c: char| !c.is_ascii_hexdigit())
                .filter(|word| word.len() == 64)
                .map(str::to_owned),
        );
    }
    if let Some(dir) = log.parent() {
        ids.extend(
            entries(&bundle_dir(dir))
                .iter()
                .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned())),
        );
    }
    ids
}

/// The shim sockets of `ids`: containerd 1.6 names them by sha256 of
/// `<containerd socket>/<namespace>/<id>`.
fn shim_sockets<'a>(
    socket: &'a Path,
    ids: &'a BTreeSet<String>,
) -> impl Iterator<Item = PathBuf> + 'a {
    ids.iter().map(move |id| {
        let key = socket.join(CRI_NAMESPACE).join(id);
        let hash = Sha256::digest(key.to_string_lossy().as_bytes());
        Path::new(SHIM_SOCKET_DIR).join(hex::encode(hash))
    })
}

fn default_runc_states(ids: &BTreeSet<String>) -> impl Iterator<Item = PathBuf> + '_ {
    ids.iter()
        .map(|id| Path::new(DEFAULT_RUNC_ROOT).join(CRI_NAMESPACE).join(id))
}

/// Removes what killed shims of `ids` left outside the containerd's directory: their
/// sockets and runc's state of their containers in the default root.
pub(crate) fn remove_outside_state(socket: &Path, ids: &BTreeSet<String>) {
    for path in shim_sockets(socket, ids) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, socket = %path.display(), "could not remove"),
        }
    }
    for path in default_runc_states(ids) {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, state = %path.display(), "could not remove"),
        }
    }
}

/// Removes a network link of the host (a pod network's bridge CNI left); quiet when it is
/// already gone.
pub(crate) fn remove_link(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "del", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Removes the CNI network namespaces (`/var/run/netns/cni-*`) that hold an address
/// starting with `prefix` (a test's own pod subnet, such as `10.201.7.`).
pub(crate) fn remove_pod_namespaces(prefix: &str) {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("cni-") {
            continue;
        }
        let Ok(out) = std::process::Command::new("ip")
            .args(["-n", &name, "-o", "-4", "addr", "show"])
            .output()
        else {
            continue;
        };
        if String::from_utf8_lossy(&out.stdout).contains(&format!("inet {prefix}")) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mount_point(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mount_point(r"/plain\0"), r"/plain\0");
    }
}
