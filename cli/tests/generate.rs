//! `contrast generate` against a real OCI registry (Debian's docker-registry, filled with
//! skopeo): mutations, policies, manifest, idempotence, the offline cache, Kubernetes'
//! schemas, the refusals; then `contrast set` of the generated deployment at a
//! simulated Coordinator whose policy hash comes from the generated YAML.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use contrast_manifest::{COORDINATOR_INITDATA_KEY, Manifest};
use contrast_testkit::registry::{Registry, RegistrySetup};
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, random_loopback};

const CONTRAST: &str = env!("CARGO_BIN_EXE_contrast");

fn contrast(workspace: &Path, args: &[&str]) -> Output {
    common::run_logged(
        Command::new(CONTRAST).current_dir(workspace).env(
            "CONTRAST_SIMULATOR_DIR",
            contrast_testkit::shared_simulator_dir(),
        ),
        args,
    )
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &Output, needles: &[&str]) {
    assert!(!output.status.success(), "expected a refusal");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
}

const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    contrast.edgeless.systems/servicemesh-ingress: "web#8080#false"
    contrast.edgeless.systems/servicemesh-egress: "api#127.137.0.1:8081#api:8081"
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      runtimeClassName: contrast-cc
      containers:
        - name: web
          image: REGISTRY/shop/web:v1
          env:
            - name: GREETING
              valueFrom:
                configMapKeyRef: {name: web-config, key: greeting}
          ports:
            - containerPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: "yes"
  mode: "0777"
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  annotations:
    contrast.edgeless.systems/workload-secret-id: shop-db
    contrast.edgeless.systems/secure-pv: "disk:state"
spec:
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      runtimeClassName: contrast-cc
      containers:
        - name: db
          image: REGISTRY/shop/db:v1
          volumeMounts:
            - name: state
              mountPath: /var/lib/db
  volumeClaimTemplates:
    - metadata: {name: disk}
      spec:
        accessModes: [ReadWriteOnce]
        volumeMode: Block
        resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - port: 8080
"#;

struct Setup {
    registry: Registry,
    workspace: TempDir,
    _scratch: TempDir,
}

fn setup() -> Setup {
    let registry = Registry::start(RegistrySetup::default());
    let scratch = TempDir::new("images");
    let app = r#"{"Env":["PATH=/usr/bin:/bin"],"Entrypoint":["/bin/app"],"Cmd":["serve"],"WorkingDir":"/srv"}"#;
    registry.push_image(scratch.path(), "shop/web", app);
    registry.push_image(scratch.path(), "shop/db", app);
    let initializer = registry.push_image(
        scratch.path(),
        "contrast/initializer",
        r#"{"Env":["PATH=/bin"],"Entrypoint":["/bin/initializer"]}"#,
    );
    let mesh = registry.push_image(
        scratch.path(),
        "contrast/service-mesh-proxy",
        r#"{"Env":["PATH=/bin"],"Entrypoint":["/bin/service-mesh"]}"#,
    );
    let coordinator = registry.push_image(
        scratch.path(),
        "contrast/coordinator",
        r#"{"Env":["PATH=/bin"],"Entrypoint":["/bin/coordinator"]}"#,
    );
    let workspace = TempDir::new("generate");
    let version = env!("CARGO_PKG_VERSION");
    std::fs::write(
        workspace.path().join("replacements.txt"),
        format!(
            "# our images, from the test registry\n\
             ghcr.io/contrast-rs/initializer:v{version}={initializer}\n\
             ghcr.io/contrast-rs/service-mesh-proxy:v{version}={mesh}\n\
             ghcr.io/contrast-rs/coordinator:v{version}={coordinator}\n"
        ),
    )
    .unwrap();
    let resources = workspace.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    std::fs::write(
        resources.join("app.yml"),
        APP.replace("REGISTRY", &registry.host()),
    )
    .unwrap();
    let coordinator_yaml = ok(&contrast(
        workspace.path(),
        &["coordinator", "--platform", "sim-snp"],
    ));
    std::fs::write(resources.join("coordinator.yml"), coordinator_yaml).unwrap();
    Setup {
        registry,
        workspace,
        _scratch: scratch,
    }
}

fn generate(setup: &Setup, extra: &[&str]) -> Output {
    let host = setup.registry.host();
    let mut args = vec![
        "generate",
        "--reference-values",
        "sim-snp",
        "--insecure-registry",
        &host,
        "--image-replacements",
        "replacements.txt",
    ];
    args.extend_from_slice(extra);
    args.push("resources/");
    contrast(setup.workspace.path(), &args)
}

fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

/// Kubernetes' own schemas (kubernetes-validate, 1.33, strict) accept `files`.
fn kubernetes_validate<'a>(files: impl IntoIterator<Item = &'a PathBuf>) {
    let files: Vec<&PathBuf> = files.into_iter().collect();
    contrast_testkit::kubernetes_validate(&files, "1.33.0");
}

/// Every initdata annotation in the YAML files: (decoded TOML, sha256 hex).
fn annotated_policies(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, bytes) in read_tree(dir) {
        let text = String::from_utf8(bytes).unwrap();
        for document in contrast_kube_resources::parse_documents(&text).unwrap() {
            let json = document.to_json();
            let template = if json["kind"] == "Pod" {
                &json
            } else {
                &json["spec"]["template"]
            };
            let Some(value) = template["metadata"]["annotations"]
                [contrast_initdata::INITDATA_ANNOTATION]
                .as_str()
            else {
                continue;
            };
            let toml =
                String::from_utf8(contrast_initdata::decode_annotation_value(value).unwrap())
                    .unwrap();
            let hash = hex::encode(contrast_testkit::sha256(toml.as_bytes()));
            eprintln!(
                "{}: {} policy {hash}",
                path.display(),
                json["metadata"]["name"]
            );
            out.push((toml, hash));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_then_set_at_a_simulated_coordinator() {
    let mut setup = setup();
    let workspace = setup.workspace.path().to_owned();
    let resources = workspace.join("resources");

    let stdout = ok(&generate(&setup, &[]));
    assert!(stdout.contains("Deployment/web"), "{stdout}");
    assert!(stdout.contains("service mesh"), "{stdout}");
    assert!(stdout.contains("secure-pv"), "{stdout}");
    assert!(stdout.contains("StatefulSet/coordinator"), "{stdout}");

    // The manifest: one entry per workload, roles, names, secret IDs, owner keys.
    let manifest =
        Manifest::decode(&std::fs::read(workspace.join("manifest.json")).unwrap()).unwrap();
    manifest.validate().unwrap();
    assert_eq!(manifest.policies.len(), 3);
    let policies = annotated_policies(&resources);
    assert_eq!(policies.len(), 3);
    let mut by_name = BTreeMap::new();
    for (hash, entry) in &manifest.policies {
        assert!(
            policies.iter().any(|(_, h)| h == hash.as_str()),
            "{hash:?} not annotated"
        );
        let name = entry.sans.as_ref().unwrap()[0].clone();
        assert_eq!(entry.sans.as_ref().unwrap()[1], "*");
        by_name.insert(name, entry.clone());
    }
    assert_eq!(
        by_name["web"].workload_secret_id,
        "apps/v1/Deployment/default/web"
    );
    assert_eq!(by_name["db"].workload_secret_id, "shop-db");
    assert_eq!(by_name["coordinator"].role, "coordinator");
    assert_eq!(
        manifest.workload_owner_key_digests.as_ref().unwrap().len(),
        1
    );
    assert_eq!(manifest.seedshare_owner_pub_keys.as_ref().unwrap().len(), 1);
    for key in ["workload-owner.pem", "seedshare-owner.pem"] {
        let mode = std::fs::metadata(workspace.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // Every generated policy admits what a faithful runtime sends for its pod.
    let text = std::fs::read_to_string(resources.join("app.yml")).unwrap();
    assert!(text.contains("runtimeClassName: contrast-cc-sim-snp-"));
    assert!(
        text.contains("greeting: \"yes\""),
        "quoted values stay quoted"
    );
    assert!(text.contains("mode: \"0777\""));

    // Idempotent: a second run writes the same bytes.
    let before = read_tree(&resources);
    let manifest_before = std::fs::read(workspace.join("manifest.json")).unwrap();
    ok(&generate(&setup, &[]));
    assert_eq!(read_tree(&resources), before, "second run changed the YAML");
    assert_eq!(
        std::fs::read(workspace.join("manifest.json")).unwrap(),
        manifest_before
    );

    // The cache makes a run without the registry possible.
    setup.registry.stop();
    ok(&generate(&setup, &["--offline"]));
    assert_eq!(read_tree(&resources), before);

    // Kubernetes' own schemas accept what we wrote.
    kubernetes_validate(before.keys());

    // The generated deployment is accepted by a Coordinator whose HOST_DATA is the
    // Coordinator policy hash from the generated YAML.
    let coordinator_hash = manifest
        .coordinator_policy_hashes()
        .next()
        .unwrap()
        .as_str()
        .to_owned();
    let simulator = Deployment::new(&[]);
    let store = TempDir::new("store");
    let binary = contrast_testkit::coordinator_binary(CONTRAST);
    let mut coordinator = CoordinatorProcess::start(
        &binary,
        &simulator,
        store.path(),
        random_loopback(),
        &["--simulated-host-data".to_owned(), coordinator_hash],
    );
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    ok(&contrast(
        &workspace,
        &["set", "-c", &coordinator.user_addr(), "resources/"],
    ));
    ok(&contrast(
        &workspace,
        &["verify", "-c", &coordinator.user_addr()],
    ));
}

/// The Coordinator every workload's initdata names: its policy hash and the manifest's
/// reference values, read back by the guest's initdata parser; the Coordinator's own
/// initdata names none. A second run writes the same documents.
#[test]
fn every_workload_initdata_names_the_coordinator() {
    let setup = setup();
    let workspace = setup.workspace.path();
    let resources = workspace.join("resources");
    ok(&generate(&setup, &[]));
    let manifest =
        Manifest::decode(&std::fs::read(workspace.join("manifest.json")).unwrap()).unwrap();
    let coordinator_hash = manifest
        .coordinator_policy_hashes()
        .next()
        .unwrap()
        .as_str()
        .to_owned();
    let expected = String::from_utf8(manifest.coordinator_trust().unwrap().encode()).unwrap();
    let policies = annotated_policies(&resources);
    assert_eq!(policies.len(), 3);
    let mut workloads = 0;
    for (toml, hash) in &policies {
        let doc = contrast_initdata::Initdata::parse(toml.as_bytes().to_vec()).unwrap();
        assert!(doc.policy().is_some(), "{toml}");
        let entry = doc.data().get(COORDINATOR_INITDATA_KEY);
        if *hash == coordinator_hash {
            assert_eq!(entry, None, "the Coordinator's initdata cannot name itself");
            continue;
        }
        workloads += 1;
        let entry = entry.unwrap_or_else(|| panic!("{hash} names no Coordinator:\n{toml}"));
        assert_eq!(*entry, expected);
        let named = Manifest::decode(entry.as_bytes()).unwrap();
        assert_eq!(
            named
                .coordinator_policy_hashes()
                .map(|h| h.as_str().to_owned())
                .collect::<Vec<_>>(),
            vec![coordinator_hash.clone()]
        );
        assert_eq!(named.policies.len(), 1, "only the Coordinator's policy");
        assert_eq!(named.reference_values, manifest.reference_values);
        assert!(!named.reference_values.snp.is_empty());
    }
    assert_eq!(workloads, 2);
    ok(&generate(&setup, &[]));
    assert_eq!(annotated_policies(&resources), policies);
}

#[test]
fn refusals_name_what_is_wrong() {
    let setup = setup();
    let resources = setup.workspace.path().join("resources");
    let app = resources.join("app.yml");
    let original = std::fs::read_to_string(&app).unwrap();

    // An image that does not exist: the error names image and registry.
    std::fs::write(&app, original.replace("shop/db:v1", "shop/db:v2")).unwrap();
    let output = generate(&setup, &[]);
    refused(&output, &["shop/db:v2", &setup.registry.host()]);

    // A malformed service-mesh annotation names the annotation and the entry.
    std::fs::write(&app, original.replace("web#8080#false", "web#80x#false")).unwrap();
    refused(
        &generate(&setup, &[]),
        &["Deployment/web", "servicemesh-ingress", "web#80x#false"],
    );

    // A plain-HTTP registry is not used unless named.
    std::fs::write(&app, &original).unwrap();
    let output = contrast(
        setup.workspace.path(),
        &[
            "generate",
            "--reference-values",
            "sim-snp",
            "--image-replacements",
            "replacements.txt",
            "resources/",
        ],
    );
    refused(&output, &["--insecure-registry"]);

    // Nothing confidential at all.
    std::fs::write(&app, original.replace("contrast-cc", "runc")).unwrap();
    std::fs::remove_file(resources.join("coordinator.yml")).unwrap();
    refused(
        &generate(&setup, &[]),
        &["no workload with runtimeClassName contrast-cc"],
    );

    // An unknown platform lists the known ones.
    refused(
        &contrast(
            setup.workspace.path(),
            &["generate", "--reference-values", "qemu-snp", "resources/"],
        ),
        &["unknown platform", "metal-qemu-snp"],
    );
    // Nothing was written by the refused runs.
    assert!(!setup.workspace.path().join("manifest.json").exists());
}

#[test]
fn output_file_manifest_update_and_collisions() {
    let setup = setup();
    let workspace = setup.workspace.path();
    let resources = workspace.join("resources");
    let inputs = read_tree(&resources);

    // --output: one combined file, the inputs untouched.
    ok(&generate(&setup, &["--output", "combined.yml"]));
    assert_eq!(
        read_tree(&resources),
        inputs,
        "inputs changed despite --output"
    );
    let combined = std::fs::read_to_string(workspace.join("combined.yml")).unwrap();
    let documents = contrast_kube_resources::parse_documents(&combined).unwrap();
    assert_eq!(
        documents.len(),
        4 + 6,
        "app.yml and coordinator.yml documents"
    );
    assert!(combined.contains(contrast_initdata::INITDATA_ANNOTATION));

    // An existing manifest is updated, not replaced: values the user set stay.
    let path = workspace.join("manifest.json");
    let mut manifest = Manifest::decode(&std::fs::read(&path).unwrap()).unwrap();
    manifest.reference_values.snp[0]
        .minimum_tcb
        .microcode_version = Some(contrast_manifest::Svn(200));
    std::fs::write(&path, manifest.encode()).unwrap();
    ok(&generate(&setup, &[]));
    let updated = Manifest::decode(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        updated.reference_values.snp[0]
            .minimum_tcb
            .microcode_version,
        Some(contrast_manifest::Svn(200))
    );
    assert_eq!(updated.policies.len(), 3);

    // --disable-updates: no workload owner key in the manifest.
    ok(&generate(&setup, &["--disable-updates"]));
    let immutable = Manifest::decode(&std::fs::read(&path).unwrap()).unwrap();
    assert!(immutable.workload_owner_key_digests.is_none());

    // -w with a public key only (a key kept in an HSM): the manifest lists the digest the
    // private key has.
    let owner = std::fs::read(workspace.join("workload-owner.pem")).unwrap();
    let public = contrast_seedengine::keys::workload_owner_public_key_der(&owner).unwrap();
    std::fs::write(
        workspace.join("owner.pub"),
        contrast_attestation::pem::encode("PUBLIC KEY", &public),
    )
    .unwrap();
    ok(&generate(&setup, &["-w", "owner.pub"]));
    let with_public = Manifest::decode(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        with_public.workload_owner_key_digests.unwrap(),
        vec![contrast_manifest::HexString(
            contrast_seedengine::keys::WorkloadOwnerKey::from_pem(&owner)
                .unwrap()
                .digest_hex()
        )]
    );

    // The same workload twice (same name, namespace and spec): a policy hash collision.
    let app = std::fs::read_to_string(resources.join("app.yml")).unwrap();
    std::fs::write(resources.join("copy.yml"), &app).unwrap();
    let before = read_tree(&resources);
    refused(&generate(&setup, &[]), &["policy hash collision"]);
    assert_eq!(read_tree(&resources), before, "a refused run wrote YAML");
}

/// `--calculate-pod-memory`: each confidential pod's pod-level memory limit is its
/// distinct images' layers, compressed (as skopeo reads the manifests) and uncompressed
/// (the stored blobs gunzipped here), plus its containers' limits (the Initializer runs
/// before the others; the mesh sidecar runs with the app). A second run offline gives the
/// same bytes (the sizes come from the cache), and Kubernetes' schemas accept the field.
#[test]
fn pod_memory_from_the_images_and_the_limits() {
    use std::io::Read as _;
    let mut setup = setup();
    ok(&generate(&setup, &["--calculate-pod-memory"]));
    let resources = setup.workspace.path().join("resources");
    let text = std::fs::read_to_string(resources.join("app.yml")).unwrap();
    let documents = contrast_kube_resources::parse_documents(&text).unwrap();
    let web = documents
        .iter()
        .map(|d| d.to_json())
        .find(|d| d["metadata"]["name"] == "web")
        .unwrap();
    let spec = &web["spec"]["template"]["spec"];
    let mut images: Vec<String> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().unwrap().iter())
        .map(|c| c["image"].as_str().unwrap().to_owned())
        .collect();
    images.sort();
    images.dedup();
    assert_eq!(
        images.len(),
        3,
        "web, the Initializer, the mesh: {images:?}"
    );
    let mut expected = 50u64 << 20; // the mesh sidecar's 50Mi beside the app (no limit)
    for image in &images {
        // skopeo takes a digest without the tag.
        let (name, digest) = image.split_once('@').unwrap();
        let repository = match name.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => repository,
            _ => name,
        };
        let manifest = contrast_testkit::registry::skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{repository}@{digest}"),
        ]);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            let digest = layer["digest"].as_str().unwrap();
            let blob = std::fs::read(setup.registry.blob_path(digest)).unwrap();
            assert_eq!(layer["size"].as_u64().unwrap(), blob.len() as u64);
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(blob.as_slice())
                .read_to_end(&mut unpacked)
                .unwrap();
            expected += blob.len() as u64 + unpacked.len() as u64;
        }
    }
    assert_eq!(
        spec["resources"],
        serde_json::json!({
            "limits": {"memory": expected.to_string()},
            "requests": {"memory": expected.to_string()},
        }),
        "{text}"
    );

    let before = read_tree(&resources);
    setup.registry.stop();
    ok(&generate(&setup, &["--calculate-pod-memory", "--offline"]));
    assert_eq!(
        read_tree(&resources),
        before,
        "the offline run changed the YAML"
    );

    // Kubernetes' schemas have pod-level resources (1.32 and later).
    kubernetes_validate(before.keys());
}
