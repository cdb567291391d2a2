//! kata-containers' genpolicy peer suite (`tests/data/genpolicy`, see its PROVENANCE.md):
//! for every case, the policy our generate code makes from the case's pod.yaml decides the
//! case's requests (real agent requests, in the Kata agent's JSON), in order, on one agent
//! state, and each verdict must be genpolicy's.
//!
//! What the cases do not carry comes from `suite.json`: the image configs, the platform
//! where it is not Metal-QEMU-SNP, and the changes made to requests that carry test-data
//! artifacts (each with its reason; a changed request keeps genpolicy's verdict).

// Refusals and the tally go to stderr (`--no-capture` shows them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use contrast_kube_resources::workload::{config_inputs, for_each_workload};
use contrast_kube_resources::yaml::{Node, parse_documents};
use contrast_policy::{AgentPolicy, ImageConfig, PodInput};
use serde_json::Value;

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/genpolicy")
}

#[derive(serde::Deserialize)]
struct Suite {
    platforms: BTreeMap<String, String>,
    /// Runtime settings of a case's policy that are not its platform's, and why.
    #[serde(default)]
    runtimes: BTreeMap<String, RuntimeSettings>,
    images: BTreeMap<String, ImageConfig>,
    changes: Vec<Change>,
    /// The verdicts that are not genpolicy's yet, and why; the test fails on any other
    /// disagreement and on a listed one that has gone (so the list only shrinks).
    known: Vec<Known>,
    /// For each request both refuse (`"<case> #<index>"`), the checks of ours that must be
    /// among the failed ones: the field the case is about, so that an agreement is not
    /// one for another reason. Every request both refuse has an entry.
    refusals: BTreeMap<String, Vec<String>>,
}

/// A request genpolicy and we both refuse, and the checks of ours that failed.
struct Refusal {
    key: String,
    kind: String,
    checks: Vec<String>,
}

/// The settings of a runtime genpolicy's defaults describe and no platform of ours runs.
#[derive(serde::Deserialize)]
struct RuntimeSettings {
    /// `emptydir_mode`: `shared-fs` or `block-encrypted`.
    emptydir_mode: String,
    /// `block_device_driver`: `virtio-scsi` or `virtio-blk`.
    block_device_driver: String,
    why: String,
}

impl RuntimeSettings {
    fn apply(&self, runtime: &mut contrast_platforms::kata::KataRuntime) {
        use contrast_platforms::kata::{BlockDeviceDriver, EmptyDirMode};
        assert!(
            !self.why.trim().is_empty(),
            "suite.json: runtime settings need a reason"
        );
        runtime.emptydir_mode = [EmptyDirMode::SharedFs, EmptyDirMode::BlockEncrypted]
            .into_iter()
            .find(|mode| mode.config_value() == self.emptydir_mode)
            .unwrap_or_else(|| panic!("suite.json: emptydir_mode {:?}", self.emptydir_mode));
        runtime.block_device_driver = [BlockDeviceDriver::VirtioScsi, BlockDeviceDriver::VirtioBlk]
            .into_iter()
            .find(|driver| driver.config_value() == self.block_device_driver)
            .unwrap_or_else(|| {
                panic!(
                    "suite.json: block_device_driver {:?}",
                    self.block_device_driver
                )
            });
    }
}

#[derive(serde::Deserialize)]
struct Known {
    case: String,
    requests: Vec<usize>,
    why: String,
}

/// A change to some of a case's requests, and why.
#[derive(serde::Deserialize)]
struct Change {
    case: String,
    /// Indexes into the case's testcases.json.
    requests: Vec<usize>,
    /// JSON pointer → new value (the parent must exist; `/-` appends to an array).
    #[serde(default)]
    set: BTreeMap<String, Value>,
    /// JSON pointers to remove.
    #[serde(default)]
    remove: Vec<String>,
    /// New container and sandbox IDs, put wherever the old ones stand (whole strings and
    /// path segments).
    #[serde(default)]
    ids: Option<Ids>,
    /// Fill what the request leaves out (absent or null fields, and the empty arrays at
    /// these pointers) from the request a faithful runtime sends for the same container
    /// (`expected_requests`), the case's own fields kept.
    #[serde(default)]
    complete: Option<Vec<String>>,
    /// Put the faithful request's `image_guest_pull` storage first among the storages (a
    /// request trimmed to its other storages).
    #[serde(default)]
    image_storage: bool,
    why: String,
}

#[derive(serde::Deserialize)]
struct Ids {
    container: String,
    sandbox: String,
}

#[derive(serde::Deserialize)]
struct TestCase {
    description: String,
    allowed: bool,
    kind: String,
    request: Value,
}

/// The case directories (those holding a testcases.json), relative to `cases/`.
fn case_names() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.file_name().unwrap() == "testcases.json" {
                let case = dir.strip_prefix(root).unwrap();
                out.push(case.to_str().unwrap().to_owned());
            }
        }
    }
    let root = suite_dir().join("cases");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

/// The policy our generate code makes of the case's pod.yaml: the workload as
/// `contrast generate` reads it, its images pinned by digest as generate pins them.
/// The policy, and the requests a faithful runtime sends for the pod (to complete trimmed
/// requests with).
type Generated = (String, Vec<(String, Value)>);

fn case_policy(suite: &Suite, case: &str) -> Result<Generated, String> {
    let dir = suite_dir().join("cases").join(case);
    let mut documents =
        parse_documents(&std::fs::read_to_string(dir.join("pod.yaml")).unwrap()).unwrap();
    let mut config_documents = documents.clone();
    if let Ok(text) = std::fs::read_to_string(dir.join("config_map.yaml")) {
        config_documents.extend(parse_documents(&text).unwrap());
    }
    let (config_maps, secrets) = config_inputs(&config_documents);
    let platform: contrast_platforms::Platform = suite
        .platforms
        .get(case)
        .map_or("Metal-QEMU-SNP", String::as_str)
        .parse()
        .unwrap();
    let mut policies = Vec::new();
    for_each_workload(&mut documents, |mut workload| {
        let name = workload.name.clone();
        let generate_name = workload.generated_name;
        let namespace = if workload.namespace_given {
            workload.namespace.clone()
        } else {
            String::new()
        };
        let labels: BTreeMap<String, String> = workload
            .pod_template()
            .unwrap()
            .get("metadata")
            .and_then(Node::as_map)
            .and_then(|m| m.get("labels"))
            .and_then(Node::as_map)
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| Some((k.to_owned(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let mut spec = workload.pod_spec().unwrap().clone();
        let mut images = BTreeMap::new();
        for key in ["initContainers", "containers"] {
            for container in spec
                .get_mut(key)
                .and_then(Node::as_seq_mut)
                .into_iter()
                .flatten()
                .filter_map(Node::as_map_mut)
            {
                let image = container.str("image").unwrap().to_owned();
                let config = suite
                    .images
                    .get(&image)
                    .unwrap_or_else(|| panic!("{case}: suite.json has no image {image}"));
                let pinned = if image.contains('@') {
                    image.clone()
                } else {
                    format!("{image}@{}", config.digest)
                };
                container.insert("image", Node::str(&pinned));
                images.insert(pinned, config.clone());
            }
        }
        let spec = Node::Map(spec).to_json();
        let mut runtime = platform.kata_runtime();
        if let Some(settings) = suite.runtimes.get(case) {
            settings.apply(&mut runtime);
        }
        let input = PodInput {
            name: &name,
            generate_name,
            namespace: &namespace,
            pod_spec: &spec,
            labels: &labels,
            runtime,
            images: &images,
            config_maps: &config_maps,
            secrets: &secrets,
        };
        policies.push(
            contrast_policy::policy_rego(&input)
                .and_then(|policy| Ok((policy, contrast_policy::expected_requests(&input)?)))
                .map_err(|e| e.to_string()),
        );
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(policies.len(), 1, "{case}: one workload per case");
    policies.pop().unwrap()
}

fn apply(change: &Change, request: &mut Value, expected: &[(String, Value)]) {
    if let Some(ids) = &change.ids {
        set_ids(request, ids);
    }
    if change.image_storage {
        let base = faithful(request, expected, &change.case);
        let image = base["storages"]
            .as_array()
            .and_then(|storages| storages.iter().find(|s| s["driver"] == "image_guest_pull"))
            .unwrap_or_else(|| panic!("{}: no image storage to add", change.case))
            .clone();
        request["storages"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("{}: no storages", change.case))
            .insert(0, image);
    }
    if let Some(fill_empty) = &change.complete {
        complete(request, fill_empty, expected, &change.case);
    }
    for pointer in &change.remove {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let key = &key.replace("~1", "/").replace("~0", "~");
        let parent = request
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{}: no {parent} to remove from", change.case));
        let removed = match parent {
            Value::Object(map) => map.remove(key).is_some(),
            Value::Array(list) => {
                let index: usize = key.parse().unwrap();
                index < list.len() && {
                    list.remove(index);
                    true
                }
            }
            _ => false,
        };
        assert!(removed, "{}: nothing at {pointer} to remove", change.case);
    }
    for (pointer, value) in &change.set {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let key = &key.replace("~1", "/").replace("~0", "~");
        let parent = request
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{}: no {parent} to set in", change.case));
        match parent {
            Value::Object(map) => {
                map.insert(key.to_owned(), value.clone());
            }
            Value::Array(list) if key == "-" => list.push(value.clone()),
            Value::Array(list) => list[key.parse::<usize>().unwrap()] = value.clone(),
            _ => panic!("{}: {pointer} is not in an object or array", change.case),
        }
    }
}

fn sandbox_id(request: &Value) -> Option<String> {
    request
        .pointer("/OCI/Annotations/io.kubernetes.cri.sandbox-id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Puts the new IDs where the old ones stand: whole strings, path segments, and the
/// `<id>-…` prefix of a copied file's name; sets `container_id`, `exec_id` and the
/// sandbox-ID annotation.
fn set_ids(request: &mut Value, ids: &Ids) {
    let mut renames = Vec::new();
    if let Some(old) = request["container_id"].as_str().filter(|s| !s.is_empty()) {
        renames.push((old.to_owned(), ids.container.clone()));
    }
    if let Some(old) = sandbox_id(request).filter(|s| !s.is_empty()) {
        renames.push((old, ids.sandbox.clone()));
    }
    // Names that happen to equal a placeholder ID stay what they are.
    let names = [
        "/OCI/Annotations/io.kubernetes.cri.container-name",
        "/OCI/Annotations/io.kubernetes.cri.sandbox-name",
        "/OCI/Hostname",
    ];
    let kept: Vec<Option<Value>> = names.iter().map(|p| request.pointer(p).cloned()).collect();
    rename_strings(request, &renames);
    for (pointer, value) in names.iter().zip(kept) {
        if let (Some(slot), Some(value)) = (request.pointer_mut(pointer), value) {
            *slot = value;
        }
    }
    let object = request.as_object_mut().unwrap();
    object.insert("container_id".into(), ids.container.clone().into());
    object.insert("exec_id".into(), ids.container.clone().into());
    if let Some(annotations) = request
        .pointer_mut("/OCI/Annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.insert(
            "io.kubernetes.cri.sandbox-id".into(),
            ids.sandbox.clone().into(),
        );
    }
}

fn rename_strings(value: &mut Value, renames: &[(String, String)]) {
    match value {
        Value::String(s) => {
            let renamed: Vec<String> = s
                .split('/')
                .map(|segment| {
                    for (old, new) in renames {
                        if segment == old {
                            return new.clone();
                        }
                        if let Some(rest) = segment.strip_prefix(&format!("{old}-")) {
                            return format!("{new}-{rest}");
                        }
                    }
                    segment.to_owned()
                })
                .collect();
            *s = renamed.join("/");
        }
        Value::Array(list) => list.iter_mut().for_each(|v| rename_strings(v, renames)),
        Value::Object(map) => map.values_mut().for_each(|v| rename_strings(v, renames)),
        _ => {}
    }
}

/// The faithful request for the container `request` is about, with its IDs.
fn faithful(request: &Value, expected: &[(String, Value)], case: &str) -> Value {
    let annotation = |r: &Value, key: &str| {
        r.pointer(&format!("/OCI/Annotations/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let creates: Vec<&Value> = expected
        .iter()
        .filter(|(name, _)| name == "CreateContainerRequest")
        .map(|(_, r)| r)
        .collect();
    let sandbox =
        annotation(request, "io.kubernetes.cri.container-type").as_deref() == Some("sandbox");
    let name = annotation(request, "io.kubernetes.cri.container-name");
    let base = if sandbox {
        creates[0]
    } else {
        let containers = &creates[1..];
        match name {
            Some(name) => containers
                .iter()
                .find(|r| annotation(r, "io.kubernetes.cri.container-name").as_ref() == Some(&name))
                .unwrap_or_else(|| panic!("{case}: no container {name} in the pod")),
            None if containers.len() == 1 => containers[0],
            None => panic!("{case}: the request names no container and the pod has several"),
        }
    };
    let mut base = base.clone();
    // The GPUs' CDI annotations are what the GPU case is about: never filled in.
    if let Some(annotations) = base
        .pointer_mut("/OCI/Annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.retain(|key, _| !key.starts_with("cdi.k8s.io/"));
    }
    let renames = [
        (
            base["container_id"].as_str().unwrap().to_owned(),
            request["container_id"].as_str().unwrap().to_owned(),
        ),
        (
            sandbox_id(&base).unwrap(),
            sandbox_id(request).expect("a sandbox-id annotation"),
        ),
    ];
    rename_strings(&mut base, &renames);
    base
}

fn complete(request: &mut Value, fill_empty: &[String], expected: &[(String, Value)], case: &str) {
    let base = faithful(request, expected, case);
    for pointer in fill_empty {
        let empty = request
            .pointer(pointer)
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty));
        assert!(empty, "{case}: {pointer} is not empty");
        if let Some(v) = request.pointer_mut(pointer) {
            *v = Value::Null;
        }
    }
    merge(request, &base);
}

/// Fills absent and null fields of `over` from `base`, recursively through objects.
fn merge(over: &mut Value, base: &Value) {
    match (over, base) {
        (over @ Value::Null, base) => *over = base.clone(),
        (Value::Object(over), Value::Object(base)) => {
            for (key, value) in base {
                match over.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        over.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => {}
    }
}

/// One verdict that is not genpolicy's.
struct Disagreement {
    case: String,
    index: usize,
    description: String,
    genpolicy: bool,
    detail: String,
}

/// What one case gave: its number of requests, the verdicts that differ from genpolicy's,
/// and the refusals both make.
struct CaseOutcome {
    requests: usize,
    disagreements: Vec<Disagreement>,
    refusals: Vec<Refusal>,
}

fn run_case(suite: &Suite, case: &str) -> CaseOutcome {
    let policy = case_policy(suite, case);
    let path = suite_dir().join("cases").join(case).join("testcases.json");
    let cases: Vec<TestCase> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut disagreements = Vec::new();
    // Without a policy, generate fails and no pod runs: every request is refused.
    let (mut agent, expected) = match policy {
        Ok((policy, expected)) => (AgentPolicy::new(&policy).unwrap(), expected),
        Err(error) => {
            for (index, test) in cases.iter().enumerate().filter(|(_, t)| t.allowed) {
                disagreements.push(Disagreement {
                    case: case.to_owned(),
                    index,
                    description: test.description.clone(),
                    genpolicy: true,
                    detail: format!("no policy: {error}"),
                });
            }
            return CaseOutcome {
                requests: cases.len(),
                disagreements,
                refusals: Vec::new(),
            };
        }
    };
    let mut refusals = Vec::new();
    for (index, test) in cases.iter().enumerate() {
        let mut request = test.request.clone();
        for change in suite
            .changes
            .iter()
            .filter(|c| c.case == case && c.requests.contains(&index))
        {
            apply(change, &mut request, &expected);
        }
        let explanation = agent.explain(&test.kind, &request).unwrap();
        // `--no-capture` shows why each request was refused.
        if !explanation.evaluation.allowed {
            let checks: Vec<&str> = explanation
                .failed
                .iter()
                .map(|f| f.check.as_str())
                .collect();
            eprintln!(
                "{case} #{index} ({}): refused: {checks:?} {:?}",
                test.description, explanation.evaluation.prints
            );
        }
        if !explanation.evaluation.allowed && !test.allowed {
            // The checks the explanation names, and those a refusal's message lists.
            let mut checks: Vec<String> =
                explanation.failed.iter().map(|f| f.check.clone()).collect();
            for print in &explanation.evaluation.prints {
                if let Some((_, listed)) = print.split_once("fails these checks: ") {
                    checks.extend(listed.split(", ").map(str::to_owned));
                }
            }
            checks.sort();
            checks.dedup();
            refusals.push(Refusal {
                key: format!("{case} #{index}"),
                kind: test.kind.clone(),
                checks,
            });
        }
        if explanation.evaluation.allowed != test.allowed {
            let detail = if explanation.failed.is_empty() {
                format!("{:?}", explanation.evaluation.prints)
            } else {
                explanation
                    .failed
                    .iter()
                    .map(|f| format!("{}: expected {} actual {}", f.check, f.expected, f.actual))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            disagreements.push(Disagreement {
                case: case.to_owned(),
                index,
                description: test.description.clone(),
                genpolicy: test.allowed,
                detail,
            });
        }
    }
    CaseOutcome {
        requests: cases.len(),
        disagreements,
        refusals,
    }
}

#[test]
fn every_verdict_is_genpolicys() {
    let suite: Suite =
        serde_json::from_str(&std::fs::read_to_string(suite_dir().join("suite.json")).unwrap())
            .unwrap();
    for change in &suite.changes {
        assert!(
            !change.why.is_empty(),
            "{}: a change needs its reason",
            change.case
        );
    }
    let names = case_names();
    assert_eq!(names.len(), 22, "the suite has 22 cases");
    let mut requests = 0;
    let mut disagreements = Vec::new();
    let mut refusals = Vec::new();
    for case in &names {
        let outcome = run_case(&suite, case);
        requests += outcome.requests;
        disagreements.extend(outcome.disagreements);
        refusals.extend(outcome.refusals);
    }
    // Both refuse, and ours for the reason the case is about.
    let mut wrong_reasons = Vec::new();
    for refusal in &refusals {
        let Some(expected) = suite.refusals.get(&refusal.key) else {
            panic!(
                "{} ({}): refused by {:?}; suite.json's refusals must say which checks",
                refusal.key, refusal.kind, refusal.checks
            );
        };
        if expected.iter().any(|check| !refusal.checks.contains(check)) {
            wrong_reasons.push(format!(
                "{}: expected {expected:?} among {:?}",
                refusal.key, refusal.checks
            ));
        }
    }
    let stale: Vec<&String> = suite
        .refusals
        .keys()
        .filter(|key| !refusals.iter().any(|r| &&r.key == key))
        .collect();
    assert!(
        stale.is_empty(),
        "refusals for requests not refused: {stale:?}"
    );
    assert!(
        wrong_reasons.is_empty(),
        "refused, but not for the case's reason:\n{}",
        wrong_reasons.join("\n")
    );
    assert_eq!(requests, 108, "the suite has 108 requests");
    let known: Vec<(String, usize)> = suite
        .known
        .iter()
        .inspect(|k| {
            assert!(
                !k.why.is_empty(),
                "{}: a known disagreement needs its reason",
                k.case
            )
        })
        .flat_map(|k| k.requests.iter().map(|&i| (k.case.clone(), i)))
        .collect();
    let unexpected: Vec<String> = disagreements
        .iter()
        .filter(|d| !known.contains(&(d.case.clone(), d.index)))
        .map(|d| {
            format!(
                "{} #{} ({}): genpolicy {}, ours {}: {}",
                d.case,
                d.index,
                d.description,
                if d.genpolicy { "allows" } else { "denies" },
                if d.genpolicy { "denies" } else { "allows" },
                d.detail
            )
        })
        .collect();
    let gone: Vec<String> = known
        .iter()
        .filter(|(case, index)| {
            !disagreements
                .iter()
                .any(|d| &d.case == case && d.index == *index)
        })
        .map(|(case, index)| format!("{case} #{index}"))
        .collect();
    eprintln!(
        "{} of {requests} verdicts are genpolicy's; {} known disagreements",
        requests - disagreements.len(),
        known.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} verdicts differ from genpolicy's and are not in suite.json's known list:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        gone.is_empty(),
        "these now agree with genpolicy: remove them from suite.json's known list: {gone:?}"
    );
}
