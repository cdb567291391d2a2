//! A modified store is detected, never served: with the Coordinator stopped, one byte of
//! a manifest, a policy, a transition or the latest pointer is flipped; a Coordinator
//! started on that store refuses to recover from it or refuses to serve it, with an error
//! that names what is wrong, and never writes the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Secrets, StoredHistory};
use contrast_history::FsStore;
use contrast_testkit::{Deployment, TempDir};
use tonic::Code;

/// What the Coordinator must say about a tampered store.
#[derive(Debug)]
enum Refusal {
    /// Recover fails with this code and a message containing all of these.
    Recover(Code, Vec<String>),
    /// Recover succeeds (the active state is intact), GetManifests fails like this.
    GetManifests(Code, Vec<String>),
}

/// One tampering: which key, which byte.
struct Case {
    name: &'static str,
    key: String,
    /// The byte to flip; negative counts from the end.
    offset: isize,
    refusal: Refusal,
}

fn hex_key(class: &str, hash: &[u8; 32]) -> String {
    format!("{class}/{}", hex::encode(hash))
}

fn strings(needles: &[&str]) -> Vec<String> {
    needles.iter().map(|s| (*s).to_string()).collect()
}

fn cases(deployment: &Deployment, good: &StoredHistory) -> Vec<Case> {
    let (latest_hash, latest) = good.chain[0];
    let (first_hash, first) = good.chain[1];
    let mismatch = |key: &str| {
        vec![
            format!("{key}: hash mismatch"),
            "the store was modified".into(),
        ]
    };
    let latest_manifest = hex_key("manifests", &latest.manifest_hash);
    let first_manifest = hex_key("manifests", &first.manifest_hash);
    let web_policy = hex_key("policies", &deployment.policy_hash("web"));
    let coordinator_policy = hex_key("policies", &deployment.policy_hash("coordinator"));
    let latest_transition = hex_key("transitions", &latest_hash);
    let first_transition = hex_key("transitions", &first_hash);
    let mut flipped_hash = latest_hash;
    flipped_hash[0] ^= 0x01;
    let signature = strings(&["not signed with its key", "tampered"]);
    vec![
        Case {
            name: "the active manifest",
            refusal: Refusal::Recover(Code::Internal, mismatch(&latest_manifest)),
            key: latest_manifest,
            offset: 200,
        },
        Case {
            name: "an earlier manifest",
            refusal: Refusal::GetManifests(Code::Internal, mismatch(&first_manifest)),
            key: first_manifest,
            offset: -2,
        },
        Case {
            name: "the web policy",
            refusal: Refusal::GetManifests(Code::Internal, mismatch(&web_policy)),
            key: web_policy,
            offset: 0,
        },
        Case {
            name: "the Coordinator policy",
            refusal: Refusal::GetManifests(Code::Internal, mismatch(&coordinator_policy)),
            key: coordinator_policy,
            offset: 10,
        },
        Case {
            name: "the latest transition (its manifest hash)",
            refusal: Refusal::Recover(Code::Internal, mismatch(&latest_transition)),
            key: latest_transition.clone(),
            offset: 5,
        },
        Case {
            name: "the latest transition (its previous hash)",
            refusal: Refusal::Recover(Code::Internal, mismatch(&latest_transition)),
            key: latest_transition,
            offset: 40,
        },
        Case {
            name: "the first transition",
            refusal: Refusal::Recover(Code::Internal, mismatch(&first_transition)),
            key: first_transition,
            offset: 63,
        },
        Case {
            name: "the latest pointer's signature value",
            key: contrast_history::LATEST_KEY.into(),
            offset: -1,
            refusal: Refusal::Recover(Code::PermissionDenied, signature),
        },
        Case {
            name: "the latest pointer's signed generation",
            key: contrast_history::LATEST_KEY.into(),
            offset: 40,
            refusal: Refusal::Recover(
                Code::PermissionDenied,
                strings(&["not signed with its key", "tampered"]),
            ),
        },
        Case {
            name: "the latest pointer's signature encoding",
            key: contrast_history::LATEST_KEY.into(),
            // After the hash, the format byte and the generation: the DER tag.
            offset: 41,
            refusal: Refusal::Recover(
                Code::Internal,
                strings(&["not a DER ECDSA P-384 signature", "the store was modified"]),
            ),
        },
        Case {
            name: "the latest pointer's transition hash",
            key: contrast_history::LATEST_KEY.into(),
            offset: 0,
            refusal: Refusal::Recover(
                Code::Internal,
                vec![format!(
                    "{}: not found",
                    hex_key("transitions", &flipped_hash)
                )],
            ),
        },
    ]
}

/// Every file of the store (without the lock file) by path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else if path.file_name().unwrap() != ".lock" {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

fn copy_store(from: &Path, to: &Path) {
    for (path, bytes) in snapshot(from) {
        let target = to.join(path.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

fn assert_names(case: &str, status: &tonic::Status, code: Code, needles: &[String]) {
    assert_eq!(status.code(), code, "{case}: {status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle.as_str()),
            "{case}: {needle:?} missing in {:?}",
            status.message()
        );
    }
}

/// A store with two manifests (so there is an earlier manifest and transition), and the
/// secrets to recover it.
async fn good_store(deployment: &Deployment, store: &Path) -> Secrets {
    let mut process = common::start(deployment, store);
    let validators = common::coordinator_validators(deployment);
    let mut owner = common::client(
        &process.user_addr(),
        &validators,
        Some(common::owner_key(deployment)),
    )
    .await;
    let first = common::manifest_variant(deployment, "first");
    let secrets = common::first_set(&mut owner, deployment, &first).await;
    let second = common::manifest_variant(deployment, "second");
    owner
        .set_manifest(common::set_request(deployment, &second))
        .await
        .unwrap();
    process.kill();
    let _ = std::fs::remove_file(&process.log);
    secrets
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tampered_blob_and_pointer_is_refused() {
    let deployment = Deployment::new(&["web"]);
    let validators = common::coordinator_validators(&deployment);
    let good = TempDir::new("tamper-good");
    let secrets = good_store(&deployment, good.path()).await;
    let good_history = common::read_store(good.path(), secrets.verifying_key()).unwrap();
    assert_eq!(good_history.manifests.len(), 2);
    let pristine = snapshot(good.path());

    for case in cases(&deployment, &good_history) {
        let store = TempDir::new("tampered");
        copy_store(good.path(), store.path());
        let path = FsStore::open(store.path())
            .unwrap()
            .path_of(&case.key)
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let offset = if case.offset < 0 {
            bytes.len() - case.offset.unsigned_abs()
        } else {
            case.offset.unsigned_abs()
        };
        bytes[offset] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let tampered = snapshot(store.path());

        let mut process = common::start_up(&deployment, store.path());
        let addr = process.user_addr();
        let recovered = common::recover(&addr, &validators, &deployment, &secrets).await;
        let mut client = common::client(&addr, &validators, None).await;
        let served = common::get_manifests(&mut client).await;
        let said = match &case.refusal {
            Refusal::Recover(code, needles) => {
                let status = recovered.expect_err(case.name);
                assert_names(case.name, &status, *code, needles);
                let not_served = served.expect_err(case.name);
                assert_names(
                    case.name,
                    &not_served,
                    Code::FailedPrecondition,
                    &strings(&["recovery mode"]),
                );
                // Not ready: no certificates for anyone.
                let probe =
                    contrast_testkit::http_get(&process.probe_addr(), "/probe/readiness").unwrap();
                assert_eq!(probe.0, 503, "{}: readiness {probe:?}", case.name);
                let mesh =
                    contrast_testkit::new_mesh_cert(&process.mesh_addr(), deployment.issuer("web"))
                        .await;
                assert!(mesh.is_err(), "{}: a workload got a certificate", case.name);
                format!("Recover: {:?}: {}", status.code(), status.message())
            }
            Refusal::GetManifests(code, needles) => {
                recovered.unwrap_or_else(|s| panic!("{}: recover: {s:?}", case.name));
                let status = served.expect_err(case.name);
                assert_names(case.name, &status, *code, needles);
                format!("GetManifests: {:?}: {}", status.code(), status.message())
            }
        };
        process.kill();
        assert_eq!(
            snapshot(store.path()),
            tampered,
            "{}: the Coordinator wrote the tampered store",
            case.name
        );
        eprintln!("{}: {said}", case.name);
        let _ = std::fs::remove_file(&process.log);
    }

    // The untampered store, never touched by the cases, recovers and serves its history.
    assert_eq!(snapshot(good.path()), pristine);
    let mut process = common::start_up(&deployment, good.path());
    let addr = process.user_addr();
    common::recover(&addr, &validators, &deployment, &secrets)
        .await
        .unwrap();
    process.wait_probe("/probe/readiness", 200, Duration::from_secs(10));
    let mut client = common::client(&addr, &validators, None).await;
    let served = common::get_manifests(&mut client).await.unwrap();
    common::assert_served_history(&served, &good_history);
    process.kill();
    let _ = std::fs::remove_file(&process.log);
}
