//! The policies of a deployment, read from its Kubernetes YAML: every initdata annotation
//! (`io.katacontainers.config.hypervisor.cc_init_data`: base64 of gzip of the initdata
//! TOML) and every Gen-0 policy annotation (`io.katacontainers.config.agent.policy`: base64
//! of the Rego text). A policy's hash is SHA-256 of the decoded document.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use contrast_initdata::INITDATA_ANNOTATION;
use contrast_kube_resources::{Node, parse_documents};
/// The policy annotation (Gen-0).
pub(crate) const POLICY_ANNOTATION: &str = "io.katacontainers.config.agent.policy";

/// Policy documents by lowercase hex SHA-256.
pub(crate) type Policies = BTreeMap<String, Vec<u8>>;

/// The YAML files under `paths` (files as given, directories recursively), sorted.
pub(crate) fn yaml_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect(path, &mut out).with_context(|| format!("reading {}", path.display()))?;
        } else if path.exists() {
            out.push(path.clone()); // a file named explicitly counts whatever its name
        } else {
            bail!("{}: no such file or directory", path.display());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every policy annotated in the YAML under `paths`.
pub(crate) fn policies(paths: &[PathBuf]) -> anyhow::Result<Policies> {
    let mut found = Policies::new();
    for file in yaml_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        // The reader generate uses: Kubernetes' YAML semantics, duplicate keys refused.
        let documents = parse_documents(&text)
            .with_context(|| format!("{}: not valid YAML", file.display()))?;
        for document in &documents {
            let mut annotations = Vec::new();
            find_annotations(document, &mut annotations);
            for (key, value) in annotations {
                let policy = decode_annotation(key, value)
                    .with_context(|| format!("{}: annotation {key}", file.display()))?;
                let hash = hex::encode(aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    &policy,
                ));
                found.insert(hash, policy);
            }
        }
    }
    Ok(found)
}

/// Finds policy annotations anywhere in a resource (pods, templates, job templates).
fn find_annotations<'a>(node: &'a Node, out: &mut Vec<(&'static str, &'a str)>) {
    match node {
        Node::Map(map) => {
            for (key, child) in map.iter() {
                if key == "annotations"
                    && let Some(annotations) = child.as_map()
                {
                    for name in [INITDATA_ANNOTATION, POLICY_ANNOTATION] {
                        if let Some(text) = annotations.get(name).and_then(Node::as_str) {
                            out.push((name, text));
                        }
                    }
                }
                find_annotations(child, out);
            }
        }
        Node::Seq(items) => {
            for item in items {
                find_annotations(item, out);
            }
        }
        _ => {}
    }
}

fn decode_annotation(key: &str, value: &str) -> anyhow::Result<Vec<u8>> {
    if key == POLICY_ANNOTATION {
        let compact: String = value.split_whitespace().collect();
        return STANDARD
            .decode(compact)
            .context("not base64; run contrast generate again");
    }
    Ok(contrast_initdata::decode_annotation_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gzip_b64(data: &[u8]) -> String {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        STANDARD.encode(encoder.finish().unwrap())
    }

    #[test]
    fn finds_initdata_and_policy_annotations_in_all_documents() {
        let dir = std::env::temp_dir().join(format!("contrast-resources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      annotations:\n        {INITDATA_ANNOTATION}: {}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: old\n  annotations:\n    {POLICY_ANNOTATION}: {}\n",
            gzip_b64(b"version = \"0.1.0\"\n"),
            STANDARD.encode(b"package agent_policy\n")
        );
        std::fs::write(dir.join("app.yaml"), yaml).unwrap();
        std::fs::write(dir.join("notes.txt"), "not yaml").unwrap();
        let found = policies(std::slice::from_ref(&dir)).unwrap();
        let hash = |b: &[u8]| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b));
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[&hash(b"version = \"0.1.0\"\n")],
            b"version = \"0.1.0\"\n"
        );
        assert_eq!(
            found[&hash(b"package agent_policy\n")],
            b"package agent_policy\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// set reads YAML as generate does: a key given twice is refused, not resolved.
    #[test]
    fn a_key_given_twice_is_refused_with_the_file_named() {
        let dir =
            std::env::temp_dir().join(format!("contrast-resources-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = STANDARD.encode(b"package agent_policy\n");
        let yaml = format!(
            "metadata:\n  annotations:\n    {POLICY_ANNOTATION}: {policy}\n    \
             {POLICY_ANNOTATION}: {policy}\n"
        );
        std::fs::write(dir.join("twice.yaml"), yaml).unwrap();
        let err = format!("{:#}", policies(std::slice::from_ref(&dir)).unwrap_err());
        assert!(
            err.contains("twice.yaml") && err.contains("not valid YAML"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_annotations_are_refused_with_the_file_named() {
        let dir =
            std::env::temp_dir().join(format!("contrast-resources-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = format!("metadata:\n  annotations:\n    {INITDATA_ANNOTATION}: \"!!!\"\n");
        std::fs::write(dir.join("bad.yml"), yaml).unwrap();
        let err = format!("{:#}", policies(std::slice::from_ref(&dir)).unwrap_err());
        assert!(
            err.contains("bad.yml") && err.contains("not base64"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
