//! `cargo xtask tidy`: the workspace's layering rules, checked from `cargo metadata` and the
//! members' manifests (ARCHITECTURE.md, "Layers").
//!
//! - `crates/` is the core: it depends on nothing above it (no host, guest or tool crate).
//! - `guest/` (what runs in the pod VM) depends on the core only, never on a host crate.
//! - Host parts (cli, coordinator, runtime-installer, firmware-refs, image, port-forwarder,
//!   shim) depend on the core and each other, never on a guest crate.
//! - `testing/` crates are dev-dependencies only, except for other test tools.
//! - Tools (quickstart, qemu-tests, xtask) may use anything.
//! - A member used by another member is named in `[workspace.dependencies]`, and used
//!   through it (`workspace = true`), so each crate has one path and one version.
//! - The simulator is a dev-dependency or an optional one (behind a `simulated` feature):
//!   no core, host or guest crate links it unconditionally, so shipped binaries hold none.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Where a workspace member sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Layer {
    Core,
    Guest,
    Host,
    Testing,
    Tool,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Core => "core (crates/)",
            Layer::Guest => "guest (guest/)",
            Layer::Host => "host",
            Layer::Testing => "testing (testing/)",
            Layer::Tool => "tool",
        })
    }
}

/// The host parts, by their directory.
const HOST_DIRS: &[&str] = &[
    "cli",
    "coordinator",
    "runtime-installer",
    "firmware-refs",
    "image",
    "port-forwarder",
    "shim",
];
/// Test and project tools, by their directory.
const TOOL_DIRS: &[&str] = &["quickstart", "qemu-tests", "xtask"];

/// The layer of a member whose manifest is at `relative` (to the workspace root).
pub(crate) fn layer_of(relative: &Path) -> Option<Layer> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "crates" => Some(Layer::Core),
        "guest" => Some(Layer::Guest),
        "testing" => Some(Layer::Testing),
        dir if HOST_DIRS.contains(&dir) => Some(Layer::Host),
        dir if TOOL_DIRS.contains(&dir) => Some(Layer::Tool),
        _ => None,
    }
}

/// A dependency's kind, as the manifest section names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Normal,
    Dev,
    Build,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Normal => "[dependencies]",
            Kind::Dev => "[dev-dependencies]",
            Kind::Build => "[build-dependencies]",
        })
    }
}

/// One member's dependency on another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) kind: Kind,
    /// Whether the manifest says `workspace = true`.
    pub(crate) through_workspace: bool,
    /// Whether the manifest says `optional = true` (a feature turns it on).
    pub(crate) optional: bool,
}

/// The crate only tests, the quickstart and `simulated` features may link.
const SIMULATOR: &str = "contrast-simulator";

/// The workspace as the rules see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Workspace {
    pub(crate) layers: BTreeMap<String, Layer>,
    pub(crate) edges: Vec<Edge>,
    /// The members named in `[workspace.dependencies]`.
    pub(crate) workspace_dependencies: BTreeSet<String>,
}

/// Every broken rule, one line each.
pub(crate) fn check(workspace: &Workspace) -> Vec<String> {
    let mut problems = Vec::new();
    for edge in &workspace.edges {
        if edge.from == edge.to {
            continue; // a self dev-dependency turning on test features
        }
        let (Some(&from), Some(&to)) = (
            workspace.layers.get(&edge.from),
            workspace.layers.get(&edge.to),
        ) else {
            continue;
        };
        let refused = match (from, to) {
            (Layer::Core, Layer::Host | Layer::Guest | Layer::Tool) => {
                Some("the core depends on nothing above it")
            }
            (Layer::Host, Layer::Guest) => {
                Some("host parts depend on the core, never on guest crates")
            }
            (Layer::Guest, Layer::Host | Layer::Tool) => {
                Some("guest crates depend on the core only")
            }
            (Layer::Core | Layer::Guest | Layer::Host, Layer::Testing)
                if edge.kind != Kind::Dev =>
            {
                Some("test support is a dev-dependency only")
            }
            (Layer::Core | Layer::Guest | Layer::Host, _)
                if edge.to == SIMULATOR && edge.kind != Kind::Dev && !edge.optional =>
            {
                Some(
                    "the simulator is a dev-dependency or optional behind a `simulated` \
                     feature, so shipped binaries hold none",
                )
            }
            _ => None,
        };
        if let Some(rule) = refused {
            problems.push(format!(
                "{} ({from}) depends on {} ({to}) in {}: {rule}",
                edge.from, edge.to, edge.kind
            ));
        }
        if !workspace.workspace_dependencies.contains(&edge.to) {
            problems.push(format!(
                "{} depends on {}, which [workspace.dependencies] of the root Cargo.toml does \
                 not name: add it there",
                edge.from, edge.to
            ));
        } else if !edge.through_workspace {
            problems.push(format!(
                "{} names {} with its own path in {}: use `{}.workspace = true`",
                edge.from, edge.to, edge.kind, edge.to
            ));
        }
    }
    problems
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
    workspace_members: Vec<String>,
    workspace_root: String,
}

#[derive(Deserialize)]
struct MetaPackage {
    id: String,
    name: String,
    manifest_path: String,
}

/// Reads the workspace at `root` (`cargo metadata` for the members, their manifests for
/// how each dependency is named).
pub(crate) fn load(root: &Path) -> Result<Workspace> {
    let output = std::process::Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    let root = Path::new(&metadata.workspace_root);
    let mut workspace = Workspace::default();
    let mut manifests = Vec::new();
    for package in &metadata.packages {
        if !metadata.workspace_members.contains(&package.id) {
            continue;
        }
        let manifest = Path::new(&package.manifest_path);
        let relative = manifest.strip_prefix(root).unwrap_or(manifest);
        let layer = layer_of(relative).with_context(|| {
            format!(
                "{} ({}) is in no layer: put it under crates/, guest/ or testing/, or list \
                 its directory in xtask/src/tidy.rs",
                package.name,
                relative.display()
            )
        })?;
        workspace.layers.insert(package.name.clone(), layer);
        manifests.push((package.name.clone(), manifest.to_owned()));
    }
    let root_manifest: toml::Table = read_toml(&root.join("Cargo.toml"))?;
    workspace.workspace_dependencies = root_manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table)
        .map(|deps| {
            deps.keys()
                .filter(|name| workspace.layers.contains_key(*name))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for (name, manifest) in manifests {
        let table = read_toml(&manifest)?;
        for (section, kind) in [
            ("dependencies", Kind::Normal),
            ("dev-dependencies", Kind::Dev),
            ("build-dependencies", Kind::Build),
        ] {
            let Some(deps) = table.get(section).and_then(toml::Value::as_table) else {
                continue;
            };
            for (dep, spec) in deps {
                let to = spec
                    .get("package")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(dep)
                    .to_owned();
                if !workspace.layers.contains_key(&to) {
                    continue;
                }
                let through_workspace = spec
                    .get("workspace")
                    .and_then(toml::Value::as_bool)
                    .unwrap_or(false);
                let optional = spec
                    .get("optional")
                    .and_then(toml::Value::as_bool)
                    .unwrap_or(false);
                workspace.edges.push(Edge {
                    from: name.clone(),
                    to,
                    kind,
                    through_workspace,
                    optional,
                });
            }
        }
    }
    Ok(workspace)
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The task: refuses the workspace when a rule is broken.
pub(crate) fn tidy() -> Result<()> {
    // The workspace cargo finds from here, as the other steps do: a path compiled into the
    // binary would name wherever it was built (a shared target directory serves several
    // checkouts).
    let here = std::env::current_dir().context("reading the current directory")?;
    let workspace = load(&here)?;
    let problems = check(&workspace);
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "the workspace breaks its layering rules (ARCHITECTURE.md, \"Layers\"):\n  {}",
        problems.join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: &str, to: &str, kind: Kind) -> Edge {
        Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            kind,
            through_workspace: true,
            optional: false,
        }
    }

    fn workspace(edges: Vec<Edge>) -> Workspace {
        let layers = [
            ("core-a", Layer::Core),
            ("core-b", Layer::Core),
            ("guest-a", Layer::Guest),
            ("host-a", Layer::Host),
            ("testkit", Layer::Testing),
            ("tool-a", Layer::Tool),
            (SIMULATOR, Layer::Core),
        ];
        Workspace {
            workspace_dependencies: layers.iter().map(|(n, _)| (*n).to_owned()).collect(),
            layers: layers.into_iter().map(|(n, l)| (n.to_owned(), l)).collect(),
            edges,
        }
    }

    #[test]
    fn allowed_edges_pass() {
        let ws = workspace(vec![
            edge("core-a", "core-b", Kind::Normal),
            edge("guest-a", "core-a", Kind::Normal),
            edge("host-a", "core-a", Kind::Normal),
            edge("host-a", "testkit", Kind::Dev),
            edge("tool-a", "guest-a", Kind::Normal),
            edge("tool-a", "testkit", Kind::Normal),
            edge("core-a", "core-a", Kind::Dev),
        ]);
        assert_eq!(check(&ws), Vec::<String>::new());
    }

    #[test]
    fn a_core_or_host_crate_on_a_guest_crate_is_refused() {
        for (from, kind) in [
            ("core-a", Kind::Normal),
            ("core-a", Kind::Dev),
            ("host-a", Kind::Normal),
            ("host-a", Kind::Dev),
            ("host-a", Kind::Build),
        ] {
            let problems = check(&workspace(vec![edge(from, "guest-a", kind)]));
            assert_eq!(problems.len(), 1, "{from} {kind}: {problems:?}");
            assert!(
                problems[0].contains("guest-a (guest (guest/))"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn the_core_on_a_host_crate_and_a_guest_on_a_host_crate_are_refused() {
        let problems = check(&workspace(vec![
            edge("core-a", "host-a", Kind::Normal),
            edge("guest-a", "host-a", Kind::Normal),
        ]));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn testkit_outside_dev_dependencies_is_refused() {
        for from in ["core-a", "guest-a", "host-a"] {
            for kind in [Kind::Normal, Kind::Build] {
                let problems = check(&workspace(vec![edge(from, "testkit", kind)]));
                assert_eq!(problems.len(), 1, "{from} {kind}: {problems:?}");
                assert!(problems[0].contains("dev-dependency only"), "{problems:?}");
            }
        }
    }

    #[test]
    fn the_simulator_outside_dev_and_optional_dependencies_is_refused() {
        for from in ["core-a", "guest-a", "host-a"] {
            let problems = check(&workspace(vec![edge(from, SIMULATOR, Kind::Normal)]));
            assert_eq!(problems.len(), 1, "{from}: {problems:?}");
            assert!(problems[0].contains("simulated"), "{problems:?}");
            let mut optional = edge(from, SIMULATOR, Kind::Normal);
            optional.optional = true;
            assert_eq!(check(&workspace(vec![optional])), Vec::<String>::new());
            let dev = edge(from, SIMULATOR, Kind::Dev);
            assert_eq!(check(&workspace(vec![dev])), Vec::<String>::new());
        }
        let tool = edge("tool-a", SIMULATOR, Kind::Normal);
        assert_eq!(check(&workspace(vec![tool])), Vec::<String>::new());
    }

    #[test]
    fn a_member_missing_from_workspace_dependencies_is_refused() {
        let mut ws = workspace(vec![edge("host-a", "core-a", Kind::Normal)]);
        ws.workspace_dependencies.remove("core-a");
        let problems = check(&ws);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("[workspace.dependencies]"),
            "{problems:?}"
        );

        let mut ws = workspace(vec![edge("host-a", "core-a", Kind::Normal)]);
        ws.edges[0].through_workspace = false;
        let problems = check(&ws);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("core-a.workspace = true"),
            "{problems:?}"
        );
    }

    #[test]
    fn layers_follow_the_directories() {
        assert_eq!(
            layer_of(Path::new("crates/atls/Cargo.toml")),
            Some(Layer::Core)
        );
        assert_eq!(
            layer_of(Path::new("guest/initializer/Cargo.toml")),
            Some(Layer::Guest)
        );
        assert_eq!(layer_of(Path::new("cli/Cargo.toml")), Some(Layer::Host));
        assert_eq!(
            layer_of(Path::new("testing/testkit/Cargo.toml")),
            Some(Layer::Testing)
        );
        assert_eq!(
            layer_of(Path::new("qemu-tests/guest-probe/Cargo.toml")),
            Some(Layer::Tool)
        );
        assert_eq!(layer_of(Path::new("elsewhere/x/Cargo.toml")), None);
    }

    /// The real workspace keeps the rules, and a core → guest edge added to it is refused.
    #[test]
    fn the_workspace_keeps_the_rules_and_an_added_core_to_guest_edge_breaks_them() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut ws = load(&root).unwrap();
        assert_eq!(check(&ws), Vec::<String>::new());
        assert!(
            ws.edges
                .contains(&edge("contrast-cli", "contrast-atls", Kind::Normal)),
            "the manifests' edges are read: {:?}",
            ws.edges
        );
        assert_eq!(ws.layers.get("contrast-atls"), Some(&Layer::Core));
        assert_eq!(ws.layers.get("contrast-initializer"), Some(&Layer::Guest));
        ws.edges
            .push(edge("contrast-atls", "contrast-initializer", Kind::Normal));
        let problems = check(&ws);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("contrast-atls (core (crates/)) depends on contrast-initializer"),
            "{problems:?}"
        );
    }
}
