//! The CLI notices a manifest history it did not make: a first manifest set by someone
//! else before the user's `set`, a history replaced under a manifest the user verified,
//! and an older signed latest pointer replayed by the store's owner before a recovery.
//! Real binaries on loopback, simulated TEEs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{contrast, ok, refused, start};
use contrast_manifest::HexString;
use contrast_seedengine::keys::WorkloadOwnerKey;
use contrast_testkit::{Deployment, TempDir};

/// Someone without the user's keys: their own workspace (manifest and owner key) next to
/// the user's, using the user's resources. Their manifest is the user's with their own
/// owner key added, so the user's keys stay listed.
struct Attacker {
    dir: TempDir,
}

impl Attacker {
    fn new(deployment: &Deployment) -> Self {
        let dir = TempDir::new("attacker");
        let key = WorkloadOwnerKey::generate().unwrap();
        std::fs::write(
            dir.path().join("workload-owner.pem"),
            key.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
        let mut manifest = deployment.manifest.clone();
        manifest
            .workload_owner_key_digests
            .get_or_insert_with(Vec::new)
            .push(HexString::from_bytes(
                &hex::decode(key.digest_hex()).unwrap(),
            ));
        manifest.validate().unwrap();
        let attacker = Attacker { dir };
        attacker.write_manifest(&manifest.encode());
        attacker
    }

    fn write_manifest(&self, bytes: &[u8]) {
        std::fs::write(self.dir.path().join("manifest.json"), bytes).unwrap();
    }

    /// `contrast set` from the attacker's workspace with the user's resources.
    fn set(&self, deployment: &Deployment, addr: &str) {
        let workspace = self.dir.path().to_str().unwrap();
        ok(&contrast(
            deployment,
            &["set", "--workspace-dir", workspace, "-c", addr, "resources"],
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_set_refused_when_another_manifest_came_first() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();

    // The attacker is first; their manifest lists the user's owner key too.
    Attacker::new(&deployment).set(&deployment, &addr);

    // The user's set expects an empty history and must not land as generation 2.
    refused(
        &contrast(&deployment, &["set", "-c", &addr, "resources"]),
        &["FailedPrecondition", "expected no manifest history"],
    );
    assert!(!deployment.path("seed-shares.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_refuses_a_history_that_does_not_extend_the_verified_one() {
    let deployment = Deployment::new(&["web"]);
    let first_store = TempDir::new("store");
    let mut coordinator = start(&deployment, first_store.path());
    let addr = coordinator.user_addr();
    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    let verified = std::fs::read_to_string(deployment.path("verify/latest-transition")).unwrap();
    coordinator.kill();

    // A fresh Coordinator (empty store) where the attacker sets their manifest, then the
    // user's manifest on top, authorised by their own key: the active manifest is the
    // user's, byte for byte.
    let second_store = TempDir::new("store");
    let coordinator = start(&deployment, second_store.path());
    let addr = coordinator.user_addr();
    let attacker = Attacker::new(&deployment);
    attacker.set(&deployment, &addr);
    attacker.write_manifest(&std::fs::read(deployment.path("manifest.json")).unwrap());
    attacker.set(&deployment, &addr);

    refused(
        &contrast(&deployment, &["verify", "-c", &addr]),
        &["does not contain the transition", verified.trim()],
    );
    // What the user verified is kept, not replaced by the foreign history.
    assert_eq!(
        std::fs::read_to_string(deployment.path("verify/latest-transition")).unwrap(),
        verified
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_older_latest_pointer_refused_at_recover_and_verify() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let mut coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    let pointer = store.path().join("transitions/latest");

    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    let generation_1 = std::fs::read(&pointer).unwrap();
    // The same manifest again (a mesh CA rotation): generation 2 has the same active
    // manifest, so only the history tells the two apart.
    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    coordinator.kill();

    // The store's owner puts the older, validly signed pointer back.
    std::fs::write(&pointer, &generation_1).unwrap();
    let coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    refused(
        &contrast(&deployment, &["recover", "-c", &addr]),
        &["rolled back", "generation 1", "generation 2"],
    );

    // Recovered by someone without the workspace's verified state, the Coordinator
    // serves generation 1; the user's verify refuses it.
    let verify = deployment.path("verify");
    let aside = deployment.path("verify-aside");
    std::fs::rename(&verify, &aside).unwrap();
    let recovered = ok(&contrast(&deployment, &["recover", "-c", &addr]));
    assert!(recovered.contains("generation 1"), "{recovered}");
    std::fs::remove_dir_all(&verify).ok();
    std::fs::rename(&aside, &verify).unwrap();
    refused(
        &contrast(&deployment, &["verify", "-c", &addr]),
        &["rolled back", "generation 1", "generation 2"],
    );
}

/// An update from a workspace that has not verified the deployment (the owner's second
/// machine): the set expects a first set and is refused, saying what to do; after
/// `contrast verify` there, the update lands.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_from_a_workspace_without_a_verified_history_says_to_verify_first() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));

    // The same keys and resources, without what this workspace verified or set.
    std::fs::remove_dir_all(deployment.path("verify")).unwrap();
    refused(
        &contrast(&deployment, &["set", "-c", &addr, "resources"]),
        &[
            "expected no manifest history",
            "records no verified history",
            "run contrast verify first",
        ],
    );
    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    let output = ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    assert!(!output.contains("seed-shares"), "{output}");
}
