//! Adding the runtime handler to containerd's `config.toml` (docs/runtime.md §5,
//! docs/environment.md §3).
//!
//! The file is edited, not re-serialised: the user's comments, order and formatting stay
//! as they are, and a second run produces the same bytes. Version 2 files keep the CRI
//! plugin at `plugins."io.containerd.grpc.v1.cri"`, version 3 (containerd 2) at
//! `plugins."io.containerd.cri.v1.runtime"`. A file without `version` is version 1,
//! which containerd reads with other table names; it is refused rather than guessed at.
//!
//! Declaring any runtime replaces containerd's default runtime map, so a file that
//! declares none gets `runc` (containerd's default) next to ours: otherwise the CRI plugin
//! would not load at all.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike, Value};

use crate::InstallError;
use crate::fetch::io_error;
use crate::hostpath::{HostRoot, join_host};
use crate::kata::RuntimeKind;

/// The runtime type of Contrast's shim (`containerd-shim-contrast-cc-v2`).
pub const RUNTIME_TYPE: &str = "io.containerd.contrast-cc.v2";

/// The CRI plugin of version 2 files.
pub const CRI_PLUGIN_V2: &str = "io.containerd.grpc.v1.cri";
/// The CRI runtime plugin of version 3 files.
pub const CRI_PLUGIN_V3: &str = "io.containerd.cri.v1.runtime";

/// What a new file starts from when the host has none (containerd ran on defaults).
const BASE_CONFIG: &str = "# Created by the Contrast runtime installer: the host had no containerd configuration.\n\
version = 2\n";

/// The runtime entry to add.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeEntry<'a> {
    /// The runtime handler name (the table key).
    pub handler: &'a str,
    /// The runtime base directory as a host path.
    pub base_dir: &'a str,
    /// Which Kata configuration the shim reads.
    pub kind: RuntimeKind,
    /// GPU platforms also pass CDI annotations.
    pub gpu: bool,
}

impl RuntimeEntry<'_> {
    /// The shim's host path.
    pub fn runtime_path(&self) -> String {
        join_host(self.base_dir, &[contrast_platforms::node_installer::SHIM])
    }

    /// The Kata configuration's host path.
    pub fn config_path(&self) -> String {
        join_host(self.base_dir, &["etc", self.kind.config_file_name()])
    }

    /// The pod annotations the shim may see.
    pub fn pod_annotations(&self) -> Vec<&'static str> {
        let mut annotations = vec!["io.katacontainers.*"];
        if self.gpu {
            annotations.push("cdi.k8s.io/*");
        }
        annotations
    }

    /// The snapshotter (AKS only: the tardev snapshotter, one per handler).
    pub fn snapshotter(&self) -> Option<String> {
        (self.kind == RuntimeKind::ClhSnp).then(|| format!("tardev-{}", self.handler))
    }
}

/// A containerd configuration version this installer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    /// containerd 1.x layout.
    V2,
    /// containerd 2.x layout.
    V3,
}

impl ConfigVersion {
    /// The entry's `runtime_type` in this layout. containerd 2 finds the shim by
    /// `runtime_path`; containerd 1.6 ignores `runtime_path` and looks the runtime name up
    /// on its PATH, where the shim is not, but takes an absolute path as the type (1.7
    /// takes either), so a version 2 file names the shim's path there too
    /// (docs/runtime.md §5).
    pub fn runtime_type(self, entry: &RuntimeEntry<'_>) -> String {
        match self {
            ConfigVersion::V2 => entry.runtime_path(),
            ConfigVersion::V3 => RUNTIME_TYPE.to_owned(),
        }
    }

    /// The CRI plugin that holds `containerd.runtimes`.
    pub fn cri_plugin(self) -> &'static str {
        match self {
            ConfigVersion::V2 => CRI_PLUGIN_V2,
            ConfigVersion::V3 => CRI_PLUGIN_V3,
        }
    }
}

/// Adds (or updates) `entry` in the configuration text `existing`; `None` (or a blank
/// file) starts from a minimal version 2 file. `file` names the file in errors.
pub fn patch_config(
    existing: Option<&str>,
    file: &str,
    entry: &RuntimeEntry<'_>,
) -> Result<String, InstallError> {
    let text = match existing {
        Some(text) if !text.trim().is_empty() => text,
        _ => BASE_CONFIG,
    };
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| {
                let mut message = e.to_string();
                if file.ends_with(".tmpl") {
                    message.push_str(
                        "\n(a template with {{ … }} directives cannot be edited here: add the runtime to it by hand, or point containerd-config-path elsewhere)",
                    );
                }
                InstallError::ContainerdParse {
                    path: file.to_owned(),
                    message,
                }
            })?;
    let version = detect_version(&doc, file)?;
    let not_a_table = |key: String| InstallError::ContainerdNotATable {
        path: file.to_owned(),
        key,
    };

    let plugin = version.cri_plugin();
    let runtimes_key = format!("plugins.\"{plugin}\".containerd.runtimes");
    let runtimes = descend(
        doc.as_item_mut(),
        &["plugins", plugin, "containerd", "runtimes"],
    )
    .ok_or_else(|| not_a_table(runtimes_key.clone()))?;

    // Declaring a runtime drops containerd's default map; keep the default runtime.
    let declares_others = runtimes
        .as_table_like()
        .is_some_and(|t| t.iter().any(|(key, _)| key != entry.handler));
    if !declares_others {
        let runc =
            child(runtimes, "runc").ok_or_else(|| not_a_table(format!("{runtimes_key}.runc")))?;
        let runc = runc
            .as_table_like_mut()
            .ok_or_else(|| not_a_table(format!("{runtimes_key}.runc")))?;
        set_value(runc, "runtime_type", "io.containerd.runc.v2".into());
    }

    let handler_key = format!("{runtimes_key}.{}", entry.handler);
    let handler_item =
        child(runtimes, entry.handler).ok_or_else(|| not_a_table(handler_key.clone()))?;
    {
        let handler = handler_item
            .as_table_like_mut()
            .ok_or_else(|| not_a_table(handler_key.clone()))?;
        set_value(handler, "runtime_type", version.runtime_type(entry).into());
        set_value(handler, "runtime_path", entry.runtime_path().into());
        set_value(
            handler,
            "pod_annotations",
            Value::Array(entry.pod_annotations().into_iter().collect()),
        );
        set_value(handler, "privileged_without_host_devices", true.into());
        if let Some(snapshotter) = entry.snapshotter() {
            set_value(handler, "snapshotter", snapshotter.into());
        }
    }
    let options = child(handler_item, "options")
        .ok_or_else(|| not_a_table(format!("{handler_key}.options")))?;
    let options = options
        .as_table_like_mut()
        .ok_or_else(|| not_a_table(format!("{handler_key}.options")))?;
    set_value(options, "ConfigPath", entry.config_path().into());

    if let Some(snapshotter) = entry.snapshotter() {
        let key = format!("proxy_plugins.{snapshotter}");
        let proxy = descend(doc.as_item_mut(), &["proxy_plugins", &snapshotter])
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| not_a_table(key))?;
        set_value(proxy, "type", "snapshot".into());
        set_value(
            proxy,
            "address",
            format!("/run/containerd/tardev-snapshotter-{}.sock", entry.handler).into(),
        );
    }
    Ok(doc.to_string())
}

fn detect_version(doc: &DocumentMut, file: &str) -> Result<ConfigVersion, InstallError> {
    match doc.get("version") {
        None => Err(InstallError::ContainerdVersion1 {
            path: file.to_owned(),
        }),
        Some(item) => match item.as_integer() {
            Some(2) => Ok(ConfigVersion::V2),
            Some(3) => Ok(ConfigVersion::V3),
            _ => Err(InstallError::ContainerdUnsupportedVersion {
                path: file.to_owned(),
                version: item.to_string().trim().to_owned(),
            }),
        },
    }
}

/// The child table `key` of `parent`, created when missing: an implicit table (no header
/// of its own until it gets keys) under a table, an inline table inside an inline one.
fn child<'a>(parent: &'a mut Item, key: &str) -> Option<&'a mut Item> {
    let inline = parent.is_inline_table();
    let table = parent.as_table_like_mut()?;
    if !table.contains_key(key) {
        let new = if inline {
            Item::Value(Value::InlineTable(InlineTable::new()))
        } else {
            let mut table = Table::new();
            table.set_implicit(true);
            Item::Table(table)
        };
        table.insert(key, new);
    }
    let item = table.get_mut(key)?;
    item.is_table_like().then_some(item)
}

fn descend<'a>(mut item: &'a mut Item, path: &[&str]) -> Option<&'a mut Item> {
    for key in path {
        item = child(item, key)?;
    }
    Some(item)
}

/// Sets `key` unless it already holds the value, keeping the existing entry's decoration.
fn set_value(table: &mut dyn TableLike, key: &str, value: Value) {
    if let Some(existing) = table.get_mut(key).and_then(Item::as_value_mut) {
        if same_value(existing, &value) {
            return;
        }
        let decor = existing.decor().clone();
        *existing = value;
        *existing.decor_mut() = decor;
        return;
    }
    table.insert(key, Item::Value(value));
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.value() == b.value(),
        (Value::Boolean(a), Value::Boolean(b)) => a.value() == b.value(),
        (Value::Integer(a), Value::Integer(b)) => a.value() == b.value(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(a, b)| same_value(a, b))
        }
        _ => false,
    }
}

/// What [`Plan::commit`] did to the containerd configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOutcome {
    /// The file already had the entry.
    Unchanged,
    /// The file was written; `backup` holds the previous content (local path).
    Written {
        /// The backup of the file replaced, if there was one.
        backup: Option<PathBuf>,
    },
    /// Dry run: the file would be written.
    WouldWrite,
}

/// The patched configuration, computed before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    target: PathBuf,
    existing: Option<String>,
    content: String,
}

impl Plan {
    /// Reads and patches the configuration at `host_path` under `root`. A `.tmpl` path
    /// is a K3s/RKE2 template: while it does not exist, the rendered file next to it
    /// (same name without `.tmpl`) is the starting point, and the template is written.
    pub fn new(
        root: &HostRoot,
        host_path: &str,
        entry: &RuntimeEntry<'_>,
    ) -> Result<Self, InstallError> {
        let target = root.resolve(host_path)?;
        let existing = read_optional(&target)?;
        let source = match (&existing, host_path.strip_suffix(".tmpl")) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(rendered_path)) => {
                let rendered = read_optional(&root.resolve(rendered_path)?)?;
                if rendered.is_none() {
                    return Err(InstallError::TemplateWithoutRendered {
                        template: host_path.to_owned(),
                        rendered: rendered_path.to_owned(),
                    });
                }
                rendered
            }
            (None, None) => None,
        };
        let content = patch_config(source.as_deref(), host_path, entry)?;
        Ok(Plan {
            target,
            existing,
            content,
        })
    }

    /// The configuration's content after the patch.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// Whether the file's bytes change.
    pub fn changes(&self) -> bool {
        self.existing.as_deref() != Some(self.content.as_str())
    }

    /// Writes the file if its bytes change, after a backup `<file>.<now>.bak` (mode
    /// 0600) of the previous content; the file keeps its mode (new files get 0644).
    pub fn commit(&self, dry_run: bool, now: u64) -> Result<PatchOutcome, InstallError> {
        if !self.changes() {
            return Ok(PatchOutcome::Unchanged);
        }
        if dry_run {
            return Ok(PatchOutcome::WouldWrite);
        }
        let target = &self.target;
        let (mode, backup) = match &self.existing {
            Some(old) => {
                let mode = fs::metadata(target)
                    .map_err(io_error("inspecting", target))?
                    .permissions()
                    .mode()
                    & 0o7777;
                let mut name = target.clone().into_os_string();
                name.push(format!(".{now}.bak"));
                let backup = PathBuf::from(name);
                // The file may hold registry credentials: the backup is for root only.
                contrast_atomic_file::write(&backup, old.as_bytes(), 0o600)?;
                (mode, Some(backup))
            }
            None => (0o644, None),
        };
        contrast_atomic_file::write_creating_dir(target, self.content.as_bytes(), mode)?;
        Ok(PatchOutcome::Written { backup })
    }
}

/// The file's text, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, InstallError> {
    match fs::read(path) {
        Ok(bytes) => {
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| InstallError::ContainerdParse {
                    path: path.display().to_string(),
                    message: "the file is not UTF-8".into(),
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::Io {
            operation: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HANDLER: &str = "contrast-cc-metal-qemu-snp-1a2b3c4d";
    const BASE: &str = "/opt/edgeless/contrast-cc-metal-qemu-snp-1a2b3c4d";

    fn entry() -> RuntimeEntry<'static> {
        RuntimeEntry {
            handler: HANDLER,
            base_dir: BASE,
            kind: RuntimeKind::QemuSnp,
            gpu: false,
        }
    }

    fn runtime<'a>(doc: &'a DocumentMut, plugin: &str, name: &str) -> &'a Item {
        &doc["plugins"][plugin]["containerd"]["runtimes"][name]
    }

    #[test]
    fn adds_the_runtime_and_runc_to_a_bare_v2_file() {
        let out = patch_config(Some("version = 2\n"), "c", &entry()).unwrap();
        let doc: DocumentMut = out.parse().unwrap();
        let ours = runtime(&doc, CRI_PLUGIN_V2, HANDLER);
        // containerd 1.6 runs the shim named by an absolute runtime_type (it ignores
        // runtime_path); 1.7 takes either.
        let shim = format!("{BASE}/bin/containerd-shim-contrast-cc-v2");
        assert_eq!(ours["runtime_type"].as_str(), Some(shim.as_str()));
        assert_eq!(ours["runtime_path"].as_str(), Some(shim.as_str()));
        assert_eq!(
            ours["options"]["ConfigPath"].as_str(),
            Some(format!("{BASE}/etc/configuration-qemu-snp.toml").as_str())
        );
        assert_eq!(
            ours["privileged_without_host_devices"].as_bool(),
            Some(true)
        );
        assert!(ours.get("snapshotter").is_none());
        assert_eq!(
            runtime(&doc, CRI_PLUGIN_V2, "runc")["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
        // No empty headers for the tables on the way.
        assert!(!out.contains("[plugins]\n"), "{out}");
        assert!(!out.contains("containerd.runtimes]\n"), "{out}");
        // A second patch changes nothing.
        assert_eq!(patch_config(Some(&out), "c", &entry()).unwrap(), out);
    }

    #[test]
    fn keeps_user_settings_comments_and_other_runtimes() {
        let user = r#"# node config, managed by hand
version = 2
oom_score = -999 # keep me

[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
  endpoint = ["https://mirror.example.com"]

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "crun"

  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
      BinaryName = "/usr/bin/crun"
      SystemdCgroup = true
"#;
        let out = patch_config(Some(user), "c", &entry()).unwrap();
        assert!(out.starts_with(user), "user text kept verbatim:\n{out}");
        let doc: DocumentMut = out.parse().unwrap();
        assert!(
            doc["plugins"][CRI_PLUGIN_V2]["containerd"]["runtimes"]
                .get("runc")
                .is_none(),
            "runc is added only when no runtime is declared"
        );
        assert_eq!(
            runtime(&doc, CRI_PLUGIN_V2, HANDLER)["runtime_path"].as_str(),
            runtime(&doc, CRI_PLUGIN_V2, HANDLER)["runtime_type"].as_str(),
        );
    }

    #[test]
    fn updates_an_outdated_entry_in_place() {
        let old = format!(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{HANDLER}]\nruntime_type = \"io.containerd.contrast-cc.v2\"  # ours\n\
             runtime_path = \"/old/shim\"\nextra = 1\n"
        );
        let out = patch_config(Some(&old), "c", &entry()).unwrap();
        assert!(
            out.contains(&format!(
                "runtime_type = \"{BASE}/bin/containerd-shim-contrast-cc-v2\"  # ours\n"
            )),
            "the value is replaced, the comment kept: {out}"
        );
        assert!(
            out.contains(&format!(
                "runtime_path = \"{BASE}/bin/containerd-shim-contrast-cc-v2\""
            )),
            "{out}"
        );
        assert!(!out.contains("/old/shim"), "{out}");
        assert!(out.contains("extra = 1"), "{out}");
    }

    #[test]
    fn version_3_uses_the_cri_runtime_plugin() {
        let out = patch_config(Some("version = 3\n"), "c", &entry()).unwrap();
        let doc: DocumentMut = out.parse().unwrap();
        assert_eq!(
            runtime(&doc, CRI_PLUGIN_V3, HANDLER)["runtime_type"].as_str(),
            Some(RUNTIME_TYPE)
        );
        assert!(doc["plugins"].get(CRI_PLUGIN_V2).is_none());
    }

    #[test]
    fn inline_tables_are_extended_inline() {
        let user = "version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = { containerd = { runtimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } } } }\n";
        let out = patch_config(Some(user), "c", &entry()).unwrap();
        let doc: DocumentMut = out.parse().unwrap();
        assert_eq!(
            runtime(&doc, CRI_PLUGIN_V2, HANDLER)["options"]["ConfigPath"].as_str(),
            Some(format!("{BASE}/etc/configuration-qemu-snp.toml").as_str())
        );
        assert_eq!(patch_config(Some(&out), "c", &entry()).unwrap(), out);
    }

    #[test]
    fn aks_adds_the_tardev_snapshotter() {
        let aks = RuntimeEntry {
            kind: RuntimeKind::ClhSnp,
            handler: "contrast-cc-aks-clh-snp-1a2b3c4d",
            ..entry()
        };
        let out = patch_config(Some("version = 2\n"), "c", &aks).unwrap();
        let doc: DocumentMut = out.parse().unwrap();
        let ours = runtime(&doc, CRI_PLUGIN_V2, aks.handler);
        assert_eq!(
            ours["snapshotter"].as_str(),
            Some("tardev-contrast-cc-aks-clh-snp-1a2b3c4d")
        );
        let proxy = &doc["proxy_plugins"]["tardev-contrast-cc-aks-clh-snp-1a2b3c4d"];
        assert_eq!(proxy["type"].as_str(), Some("snapshot"));
        assert_eq!(
            proxy["address"].as_str(),
            Some("/run/containerd/tardev-snapshotter-contrast-cc-aks-clh-snp-1a2b3c4d.sock")
        );
    }

    #[test]
    fn gpu_passes_cdi_annotations() {
        let gpu = RuntimeEntry {
            gpu: true,
            ..entry()
        };
        let doc: DocumentMut = patch_config(None, "c", &gpu).unwrap().parse().unwrap();
        let annotations: Vec<_> = runtime(&doc, CRI_PLUGIN_V2, HANDLER)["pod_annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(annotations, ["io.katacontainers.*", "cdi.k8s.io/*"]);
    }

    #[test]
    fn refuses_version_1_other_versions_and_broken_files() {
        let err = patch_config(Some("[plugins.cri]\n"), "/etc/c.toml", &entry()).unwrap_err();
        assert!(
            matches!(err, InstallError::ContainerdVersion1 { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("version = 2"), "{err}");
        for text in ["version = 4\n", "version = \"2\"\n"] {
            let err = patch_config(Some(text), "c", &entry()).unwrap_err();
            assert!(
                matches!(err, InstallError::ContainerdUnsupportedVersion { .. }),
                "{err}"
            );
        }
        let err = patch_config(Some("version = 2\n[plugins\n"), "c", &entry()).unwrap_err();
        assert!(matches!(err, InstallError::ContainerdParse { .. }), "{err}");
        let err = patch_config(
            Some("{{ template \"base\" . }}\n"),
            "config.toml.tmpl",
            &entry(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("by hand"), "{err}");
        let err = patch_config(Some("version = 2\nplugins = 1\n"), "c", &entry()).unwrap_err();
        assert!(
            matches!(err, InstallError::ContainerdNotATable { .. }),
            "{err}"
        );
    }
}
