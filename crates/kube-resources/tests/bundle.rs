//! The shipped resources: golden files per platform, a lossless round trip through the
//! typed Kubernetes API structs (k8s-openapi), and Kubernetes' own schemas
//! (kubernetes-validate, oldest and newest supported versions).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use contrast_kube_resources::bundle::{self, BundleImages};
use contrast_kube_resources::{Node, emit_documents, parse_documents};
use contrast_platforms::{Platform, RuntimeHandler};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn bundles() -> Vec<(String, Vec<Node>)> {
    let images = BundleImages::for_version("0.0.0-test");
    let mut out = Vec::new();
    for platform in Platform::ALL {
        let handler = RuntimeHandler::new(platform, &[0xab; 32]);
        let name = platform.name().to_ascii_lowercase();
        out.push((
            format!("runtime-{name}.yml"),
            bundle::runtime(platform, &handler, &images),
        ));
        let mut coordinator = bundle::coordinator(platform, &handler, &images);
        coordinator.push(bundle::port_forwarder(&images, 1313));
        out.push((format!("coordinator-{name}.yml"), coordinator));
    }
    out
}

/// Compares with the checked-in files; `UPDATE_GOLDEN=1` rewrites them.
#[test]
fn golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (file, documents) in bundles() {
        let text = emit_documents(&documents);
        let path = golden_dir().join(&file);
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            text, golden,
            "{file} differs; review and run with UPDATE_GOLDEN=1"
        );
        // The emitted text reads back to the same tree.
        assert_eq!(parse_documents(&text).unwrap(), documents, "{file}");
    }
}

fn typed_round_trip<T>(value: &serde_json::Value) -> serde_json::Value
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(value.clone()).unwrap();
    serde_json::to_value(&typed).unwrap()
}

/// Every document survives k8s-openapi's typed structs unchanged: no field we emit is
/// unknown to Kubernetes or has the wrong type.
#[test]
fn round_trip_through_k8s_openapi_types() {
    use k8s_openapi::api::{apps, core, node, rbac};
    for (file, documents) in bundles() {
        for document in &documents {
            let json = document.to_json();
            let kind = json["kind"].as_str().unwrap().to_owned();
            let back = match kind.as_str() {
                "RuntimeClass" => typed_round_trip::<node::v1::RuntimeClass>(&json),
                "DaemonSet" => typed_round_trip::<apps::v1::DaemonSet>(&json),
                "StatefulSet" => typed_round_trip::<apps::v1::StatefulSet>(&json),
                "Service" => typed_round_trip::<core::v1::Service>(&json),
                "ServiceAccount" => typed_round_trip::<core::v1::ServiceAccount>(&json),
                "Pod" => typed_round_trip::<core::v1::Pod>(&json),
                "Role" => typed_round_trip::<rbac::v1::Role>(&json),
                "RoleBinding" => typed_round_trip::<rbac::v1::RoleBinding>(&json),
                other => panic!("{file}: no typed check for kind {other}"),
            };
            assert_eq!(back, json, "{file}: {kind} changed in the typed round trip");
        }
    }
}

/// The Python tools directory (`cargo xtask test` installs them).
fn python_tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTRAST_PYTHON_TOOLS") {
        let path = Path::new(&dir).join(name);
        if path.exists() {
            return path;
        }
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} not found in CONTRAST_PYTHON_TOOLS or PATH: run `cargo xtask test`, which \
             installs it, or pip install kubernetes-validate"
        )
    })
}

#[test]
fn kubernetes_schemas_accept_every_resource() {
    let tool = python_tool("kubernetes-validate");
    let files: Vec<PathBuf> = bundles()
        .into_iter()
        .map(|(file, _)| golden_dir().join(file))
        .collect();
    for version in ["1.33.0", "1.37.0"] {
        let output = Command::new(&tool)
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kubernetes-validate {version}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every node installer mounts the optional Secret with the image puller's registry
/// credentials read-only at the directory the installer reads by default.
#[test]
fn node_installer_mounts_the_optional_imagepuller_secret() {
    let images = BundleImages::for_version("0.0.0-test");
    for platform in Platform::ALL {
        let handler = RuntimeHandler::new(platform, &[0xab; 32]);
        let daemon_set = bundle::runtime(platform, &handler, &images)
            .iter()
            .map(Node::to_json)
            .find(|doc| doc["kind"] == "DaemonSet")
            .unwrap();
        let spec = &daemon_set["spec"]["template"]["spec"];
        let volumes = spec["volumes"].as_array().unwrap();
        let volume = volumes
            .iter()
            .find(|v| v["name"] == "imagepuller-config")
            .unwrap_or_else(|| panic!("{platform}: no imagepuller-config volume"));
        assert_eq!(
            volume["secret"],
            serde_json::json!({
                "secretName": bundle::IMAGEPULLER_CONFIG_SECRET,
                "optional": true,
            }),
            "{platform}"
        );
        assert_eq!(
            bundle::IMAGEPULLER_CONFIG_SECRET,
            "contrast-node-installer-imagepuller-config"
        );
        let installer = &spec["initContainers"][0];
        assert_eq!(installer["name"], "installer", "{platform}");
        let mount = installer["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "imagepuller-config")
            .unwrap_or_else(|| panic!("{platform}: installer does not mount it"));
        assert_eq!(mount["mountPath"], "/imagepuller-config", "{platform}");
        assert_eq!(mount["readOnly"], true, "{platform}");
    }
}
