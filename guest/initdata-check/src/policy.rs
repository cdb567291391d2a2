//! Installing the policy the Kata agent enforces: the verified initdata's, or the deny-all
//! policy ([`deny_all`]) when the initdata cannot be trusted.

use std::path::{Path, PathBuf};

pub use contrast_initdata::agent_policy::{AGENT_REQUESTS, MAX_REASON_LEN, deny_all};

/// Where Contrast's guest puts the verified policy for its Kata agent:
/// `/run/measured-cfg/policy.rego` (Contrast's `initdata-processor` writes every
/// `[data]` entry of the verified initdata into `/run/measured-cfg`).
pub const DEFAULT_POLICY_PATH: &str = "/run/measured-cfg/policy.rego";

/// Why a policy could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the agent policy to {path} (the Kata agent must not start without it)")]
pub struct PolicyWriteError {
    /// The policy path.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Writes `policy` to `path` atomically (`contrast_atomic_file`: a temporary file in the
/// same directory, fsync, rename, fsync of the directory), mode 0644, creating the
/// directory (0755) if needed: the agent never reads half a policy.
pub fn write_policy(path: &Path, policy: &str) -> Result<(), PolicyWriteError> {
    contrast_atomic_file::write_creating_dir(path, policy.as_bytes(), 0o644).map_err(|e| {
        PolicyWriteError {
            path: path.to_owned(),
            source: e.source,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn writes_atomically_with_mode_0644() {
        let dir = std::env::temp_dir().join(format!("initdata-policy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("measured-cfg/policy.rego");
        write_policy(&path, "first").unwrap();
        write_policy(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["policy.rego"]);

        // A path whose parent is a file cannot be written; the error names the path.
        let blocked = dir.join("measured-cfg/policy.rego/inner");
        let err = write_policy(&blocked, "x").unwrap_err();
        assert!(err.to_string().contains("inner"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
