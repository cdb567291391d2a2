//! Where containerd's configuration lives and which unit runs it: per-platform defaults,
//! overridden by the optional ConfigMap `contrast-node-installer-target-config`
//! (docs/runtime.md §2), mounted as a directory with one file per key.

use std::fs;
use std::io;
use std::path::Path;

use contrast_platforms::Platform;

use crate::InstallError;

/// The key naming the containerd configuration (host path; relative to the host root).
pub const CONTAINERD_CONFIG_PATH_KEY: &str = "containerd-config-path";
/// The key listing systemd units (comma, space or newline separated; the first one that
/// exists is restarted; empty means no restart).
pub const SYSTEMD_UNIT_NAME_KEY: &str = "systemd-unit-name";
/// The key turning the restart off (`false`) or on (`true`, the default).
pub const RESTART_SYSTEMD_UNIT_KEY: &str = "restart-systemd-unit";

/// Where to patch and what to restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// The containerd configuration as an absolute host path; `.tmpl` means a K3s/RKE2
    /// template.
    pub containerd_config_path: String,
    /// Units to try, in order; the first that exists is restarted. Empty: no restart.
    pub systemd_units: Vec<String>,
}

impl TargetConfig {
    /// The defaults of `platform`: K3s and RKE2 keep containerd's configuration as a
    /// template under `/var/lib/rancher` and run it inside their server or agent unit.
    pub fn defaults(platform: Platform) -> Self {
        let (path, units): (&str, &[&str]) = match platform {
            Platform::K3sQemuSnp | Platform::K3sQemuSnpGpu | Platform::K3sQemuTdx => (
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
                &["k3s.service", "k3s-agent.service"],
            ),
            Platform::Rke2QemuTdx => (
                "/var/lib/rancher/rke2/agent/etc/containerd/config.toml.tmpl",
                &["rke2-server.service", "rke2-agent.service"],
            ),
            _ => ("/etc/containerd/config.toml", &["containerd.service"]),
        };
        TargetConfig {
            containerd_config_path: path.to_owned(),
            systemd_units: units.iter().map(|u| (*u).to_owned()).collect(),
        }
    }

    /// The defaults with the overrides found in `dir` (a mounted ConfigMap). A missing
    /// directory means no overrides; unknown keys are refused (a typo must not be
    /// ignored). Kubernetes' own entries (`..data`, `..<timestamp>`) are skipped.
    pub fn load(dir: &Path, platform: Platform) -> Result<Self, InstallError> {
        let mut config = Self::defaults(platform);
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(config),
            Err(source) => {
                return Err(InstallError::Io {
                    operation: "listing the target configuration",
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        let mut names: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| InstallError::Io {
                operation: "listing the target configuration",
                path: dir.to_path_buf(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        let mut restart = true;
        for name in names {
            let path = dir.join(&name);
            let bad = |reason: String| InstallError::TargetConfig {
                key: name.clone(),
                reason,
            };
            let text = fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
            let value = text.trim();
            match name.as_str() {
                CONTAINERD_CONFIG_PATH_KEY => {
                    if value.is_empty() {
                        return Err(bad("empty; give the path relative to the host root, e.g. etc/containerd/config.toml".into()));
                    }
                    config.containerd_config_path = format!("/{}", value.trim_start_matches('/'));
                }
                SYSTEMD_UNIT_NAME_KEY => {
                    config.systemd_units = value
                        .split([',', ' ', '\n', '\t'])
                        .filter(|unit| !unit.is_empty())
                        .map(|unit| check_unit(unit).map_err(&bad))
                        .collect::<Result<_, _>>()?;
                }
                RESTART_SYSTEMD_UNIT_KEY => {
                    restart = match value {
                        "true" => true,
                        "false" => false,
                        other => return Err(bad(format!("{other:?}; expected true or false"))),
                    };
                }
                _ => {
                    return Err(bad(format!(
                        "unknown key; expected {CONTAINERD_CONFIG_PATH_KEY}, {SYSTEMD_UNIT_NAME_KEY} or {RESTART_SYSTEMD_UNIT_KEY}"
                    )));
                }
            }
        }
        if !restart {
            config.systemd_units.clear();
        }
        Ok(config)
    }
}

/// A unit name goes on systemctl's command line: it must not look like an option.
fn check_unit(unit: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c);
    if unit.starts_with('-') || !unit.chars().all(allowed) {
        return Err(format!("{unit:?} is not a systemd unit name"));
    }
    Ok(unit.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn defaults_per_platform() {
        let metal = TargetConfig::defaults(Platform::MetalQemuSnp);
        assert_eq!(metal.containerd_config_path, "/etc/containerd/config.toml");
        assert_eq!(metal.systemd_units, ["containerd.service"]);
        let k3s = TargetConfig::defaults(Platform::K3sQemuTdx);
        assert!(
            k3s.containerd_config_path
                .ends_with("k3s/agent/etc/containerd/config.toml.tmpl")
        );
        assert_eq!(k3s.systemd_units, ["k3s.service", "k3s-agent.service"]);
        let rke2 = TargetConfig::defaults(Platform::Rke2QemuTdx);
        assert_eq!(
            rke2.systemd_units,
            ["rke2-server.service", "rke2-agent.service"]
        );
    }

    #[test]
    fn a_missing_directory_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            TargetConfig::load(&dir.path().join("absent"), Platform::AksClhSnp).unwrap(),
            TargetConfig::defaults(Platform::AksClhSnp)
        );
    }

    /// Laid out as the kubelet mounts a ConfigMap: keys are links into `..data`.
    #[test]
    fn reads_a_mounted_config_map() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2025_01_01_00_00_00.000000000");
        fs::create_dir(&data).unwrap();
        fs::write(
            data.join("containerd-config-path"),
            "var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl\n",
        )
        .unwrap();
        fs::write(
            data.join("systemd-unit-name"),
            "k3s-agent.service, k3s.service",
        )
        .unwrap();
        symlink(data.file_name().unwrap(), dir.path().join("..data")).unwrap();
        for key in ["containerd-config-path", "systemd-unit-name"] {
            symlink(format!("..data/{key}"), dir.path().join(key)).unwrap();
        }
        let config = TargetConfig::load(dir.path(), Platform::MetalQemuSnp).unwrap();
        assert_eq!(
            config.containerd_config_path,
            "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl"
        );
        assert_eq!(config.systemd_units, ["k3s-agent.service", "k3s.service"]);
    }

    #[test]
    fn an_empty_unit_list_or_false_turns_restarts_off() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("systemd-unit-name"), "\n").unwrap();
        assert!(
            TargetConfig::load(dir.path(), Platform::MetalQemuSnp)
                .unwrap()
                .systemd_units
                .is_empty()
        );
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("restart-systemd-unit"), "false").unwrap();
        assert!(
            TargetConfig::load(dir.path(), Platform::MetalQemuSnp)
                .unwrap()
                .systemd_units
                .is_empty()
        );
    }

    #[test]
    fn refusals() {
        let cases = [
            ("containerd-config-pth", "x", "unknown key"),
            ("containerd-config-path", " ", "empty"),
            ("systemd-unit-name", "--now", "not a systemd unit name"),
            ("systemd-unit-name", "a;reboot", "not a systemd unit name"),
            ("restart-systemd-unit", "yes", "expected true or false"),
        ];
        for (key, value, message) in cases {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(key), value).unwrap();
            let err = TargetConfig::load(dir.path(), Platform::MetalQemuSnp).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(message) && text.contains(key),
                "{key}: {text}"
            );
        }
    }
}
