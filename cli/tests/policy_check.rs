//! `contrast policy check`: the verdict of the policy for a request the Kata agent got,
//! and for a refusal each failed check with the expected and the actual value.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use contrast_policy::{ImageConfig, PodInput};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Pod {
    spec: Value,
    images: BTreeMap<String, ImageConfig>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

fn pod() -> Pod {
    let image = format!("docker.io/library/nginx@{DIGEST}");
    let spec = json!({
        "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
        "containers": [{
            "name": "web",
            "image": image,
            "args": ["nginx", "-g", "daemon off;"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
        }],
    });
    let config = ImageConfig {
        digest: DIGEST.to_owned(),
        entrypoint: vec!["/docker-entrypoint.sh".to_owned()],
        working_dir: "/".to_owned(),
        ..ImageConfig::default()
    };
    Pod {
        spec,
        images: BTreeMap::from([(image, config)]),
    }
}

impl Pod {
    fn input(&self) -> PodInput<'_> {
        PodInput {
            generate_name: false,
            name: "web",
            namespace: "shop",
            pod_spec: &self.spec,
            labels: &NO_LABELS,
            runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
            images: &self.images,
            config_maps: &[],
            secrets: &[],
        }
    }
}

fn contrast(args: &[&str]) -> Output {
    common::run_logged(&mut Command::new(env!("CARGO_BIN_EXE_contrast")), args)
}

/// The policy's resource file, and the runtime's CreateContainerRequest for `web`.
fn setup(dir: &std::path::Path) -> (String, Value) {
    let pod = pod();
    let policy = contrast_policy::policy_rego(&pod.input()).unwrap();
    let initdata = contrast_policy::initdata(&policy);
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n    {}: {}\nspec: {}\n",
        contrast_initdata::INITDATA_ANNOTATION,
        initdata.annotation_value(),
        pod.spec
    );
    std::fs::write(dir.join("web.yaml"), yaml).unwrap();
    let request = contrast_policy::expected_requests(&pod.input())
        .unwrap()
        .into_iter()
        .find(|(name, r)| {
            name == "CreateContainerRequest"
                && r["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] == "web"
        })
        .unwrap()
        .1;
    (hex::encode(initdata.policy_hash()), request)
}

#[test]
fn a_refusal_names_each_failed_check_with_expected_and_actual() {
    let dir = contrast_testkit::TempDir::new("policy-check");
    let (hash, request) = setup(dir.path());
    let resources = dir.path().join("web.yaml");

    // The request the runtime sends is allowed.
    std::fs::write(dir.path().join("ok.json"), request.to_string()).unwrap();
    let out = contrast(&[
        "policy",
        "check",
        dir.path().join("ok.json").to_str().unwrap(),
        "--resources",
        resources.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("allow"));

    // A host that changes the command is refused, and told where.
    let mut attacked = request.clone();
    attacked["OCI"]["Process"]["Args"] = json!(["/bin/sh", "-c", "id"]);
    let wrapped = json!({"kind": "CreateContainerRequest", "request": attacked});
    std::fs::write(dir.path().join("attack.json"), wrapped.to_string()).unwrap();
    let out = contrast(&[
        "policy",
        "check",
        dir.path().join("attack.json").to_str().unwrap(),
        "--resources",
        resources.to_str().unwrap(),
        "--policy-hash",
        &hash,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("deny"), "{stdout}");
    assert!(stdout.contains("checked against container web"), "{stdout}");
    assert!(stdout.contains("  args failed"), "{stdout}");
    assert!(
        stdout.contains(r#"actual:   ["/bin/sh","-c","id"]"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("expected: {}", request["OCI"]["Process"]["Args"])),
        "{stdout}"
    );
    assert!(!stdout.contains("cwd failed"), "{stdout}");
}

#[test]
fn the_policy_must_be_named_when_the_resources_carry_several_or_none() {
    let dir = contrast_testkit::TempDir::new("policy-check");
    let (_, request) = setup(dir.path());
    std::fs::write(dir.path().join("req.json"), request.to_string()).unwrap();
    let out = contrast(&[
        "policy",
        "check",
        dir.path().join("req.json").to_str().unwrap(),
        "--resources",
        dir.path().join("web.yaml").to_str().unwrap(),
        "--policy-hash",
        &"ab".repeat(32),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no policy with hash"),
        "{out:?}"
    );
    let out = contrast(&[
        "policy",
        "check",
        dir.path().join("req.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `--policy` takes the policy as Rego text or as the initdata document that carries it;
/// a document without a policy is refused.
#[test]
fn the_policy_is_read_from_a_rego_file_or_an_initdata_document() {
    let dir = contrast_testkit::TempDir::new("policy-check-file");
    let (_, request) = setup(dir.path());
    let pod = pod();
    let policy = contrast_policy::policy_rego(&pod.input()).unwrap();
    std::fs::write(dir.path().join("policy.rego"), &policy).unwrap();
    std::fs::write(
        dir.path().join("initdata.toml"),
        contrast_policy::initdata(&policy).as_bytes(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("empty.toml"),
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("req.json"), request.to_string()).unwrap();
    let req = dir.path().join("req.json");
    for file in ["policy.rego", "initdata.toml"] {
        let out = contrast(&[
            "policy",
            "check",
            req.to_str().unwrap(),
            "--policy",
            dir.path().join(file).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{file}: {out:?}");
    }
    let out = contrast(&[
        "policy",
        "check",
        req.to_str().unwrap(),
        "--policy",
        dir.path().join("empty.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("carries no policy.rego"),
        "{out:?}"
    );
}

/// An exec is decided with the state the sandbox's earlier requests left: checked alone it
/// targets no container; after the agent's policy log of the pod's creation it is allowed.
#[test]
fn an_exec_is_checked_after_the_requests_of_the_policy_log() {
    let dir = contrast_testkit::TempDir::new("policy-check");
    setup(dir.path());
    let resources = dir.path().join("web.yaml");
    let requests = contrast_policy::expected_requests(&pod().input()).unwrap();
    let exec = requests
        .iter()
        .find(|(name, _)| name == "ExecProcessRequest")
        .unwrap()
        .1
        .clone();
    let alone = json!({"kind": "ExecProcessRequest", "request": exec});
    std::fs::write(dir.path().join("exec.json"), alone.to_string()).unwrap();
    let out = contrast(&[
        "policy",
        "check",
        dir.path().join("exec.json").to_str().unwrap(),
        "--resources",
        resources.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("was not created"));

    // The agent's log: each request, and after a stateful allow its answer.
    let mut log = String::new();
    for (kind, request) in requests.iter().filter(|(k, _)| k != "ExecProcessRequest") {
        log.push_str(&json!({"kind": kind, "request": request}).to_string());
        log.push('\n');
        if kind == "CreateContainerRequest" {
            let answer = json!({"allowed": true, "ops": []});
            log.push_str(&json!({"kind": kind, "request": answer}).to_string());
            log.push('\n');
        }
    }
    log.push_str(&alone.to_string());
    log.push('\n');
    std::fs::write(dir.path().join("policy.jsonl"), log).unwrap();
    let out = contrast(&[
        "policy",
        "check",
        dir.path().join("policy.jsonl").to_str().unwrap(),
        "--resources",
        resources.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let earlier = requests.len() - 1;
    assert!(
        stdout.contains(&format!(
            "decided the {earlier} earlier requests first ({earlier} allowed)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("allow: the policy allows this ExecProcessRequest"),
        "{stdout}"
    );
}

/// A real agent request genpolicy's own suite refuses (a sysctl the pod does not set, in
/// kata-containers' `createcontainer/sysctls` case, copied into the policy crate's test
/// data), checked against the policy our generate code makes of the case's pod: the
/// refusal names the sysctls check with both values; the case's allowed twin is allowed.
#[test]
fn a_request_genpolicys_suite_refuses_is_refused_naming_the_check() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/policy/tests/data/genpolicy");
    let case = data.join("cases/createcontainer/sysctls");
    let mut documents = contrast_kube_resources::yaml::parse_documents(
        &std::fs::read_to_string(case.join("pod.yaml")).unwrap(),
    )
    .unwrap();
    let suite: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("suite.json")).unwrap()).unwrap();
    let mut policy = None;
    contrast_kube_resources::workload::for_each_workload(&mut documents, |mut workload| {
        let name = workload.name.clone();
        let spec = contrast_kube_resources::yaml::Node::Map(workload.pod_spec()?.clone()).to_json();
        let image = spec["containers"][0]["image"].as_str().unwrap().to_owned();
        let config: ImageConfig = serde_json::from_value(suite["images"][&image].clone()).unwrap();
        let images = BTreeMap::from([(image, config)]);
        let input = PodInput {
            generate_name: false,
            name: &name,
            namespace: "",
            pod_spec: &spec,
            labels: &NO_LABELS,
            runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
            images: &images,
            config_maps: &[],
            secrets: &[],
        };
        policy = Some(contrast_policy::policy_rego(&input).unwrap());
        Ok::<(), contrast_kube_resources::workload::WorkloadError>(())
    })
    .unwrap();
    let dir = contrast_testkit::TempDir::new("policy-check-peer");
    let policy_file = dir.path().join("policy.rego");
    std::fs::write(&policy_file, policy.unwrap()).unwrap();
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(case.join("testcases.json")).unwrap())
            .unwrap();
    let check = |n: usize| {
        // The test case as genpolicy's suite writes it: description, verdict, kind, request.
        let file = dir.path().join(format!("case-{n}.json"));
        std::fs::write(&file, cases[n].to_string()).unwrap();
        contrast(&[
            "policy",
            "check",
            file.to_str().unwrap(),
            "--policy",
            policy_file.to_str().unwrap(),
        ])
    };
    assert_eq!(cases[0]["allowed"], true);
    let out = check(0);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(cases[1]["allowed"], false);
    let out = check(1);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("checked against the pause container"),
        "{stdout}"
    );
    assert!(stdout.contains("  sysctls failed"), "{stdout}");
    let expected = stdout
        .lines()
        .skip_while(|l| !l.contains("sysctls failed"))
        .nth(1)
        .unwrap_or_default();
    let actual = stdout
        .lines()
        .skip_while(|l| !l.contains("sysctls failed"))
        .nth(2)
        .unwrap_or_default();
    assert!(expected.contains("net.ipv4.ip_forward"), "{stdout}");
    assert!(
        actual.contains("net.ipv4.conf.all.src_valid_mark"),
        "{stdout}"
    );
    // Only the sysctl differs from the allowed twin.
    assert_eq!(stdout.matches(" failed").count(), 1, "{stdout}");
}
