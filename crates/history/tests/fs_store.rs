//! FsStore on a real directory: layout, tampering on disk, compare-and-swap under
//! concurrency (threads and processes), and crash leftovers.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;

use contrast_history::{
    FsStore, History, HistoryError, LATEST_KEY, LatestTransition, Store, StoreError, Transition,
    ZERO_HASH, transition_hash_of,
};
use p384::ecdsa::SigningKey;

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[0x5a; 48]).unwrap()
}

fn open(dir: &Path) -> History<FsStore> {
    History::new(FsStore::open(dir).unwrap())
}

/// Files in `dir` (recursively) whose name starts with `.tmp-`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.extend(temp_files(&entry.path()));
        } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            found.push(entry.path());
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn layout_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nested/store");
    let h = open(&root);
    let manifest = b"{\"Policies\":{}}\n";
    let latest = h.append_manifest(manifest, None, &signing_key()).unwrap();
    let policy = h.set_policy(b"policy document").unwrap();

    let manifest_hash = Transition::for_manifest(manifest, ZERO_HASH).manifest_hash;
    let manifest_file = root.join("manifests").join(hex::encode(manifest_hash));
    assert_eq!(fs::read(&manifest_file).unwrap(), manifest);
    let transition_file = root
        .join("transitions")
        .join(hex::encode(latest.transition_hash));
    assert_eq!(
        fs::read(&transition_file).unwrap(),
        Transition::for_manifest(manifest, ZERO_HASH).to_bytes()
    );
    assert_eq!(
        fs::read(root.join("transitions/latest")).unwrap(),
        latest.to_bytes()
    );
    assert_eq!(
        fs::read(root.join("policies").join(hex::encode(policy))).unwrap(),
        b"policy document"
    );
    assert_eq!(
        h.store().path_of(LATEST_KEY).unwrap(),
        root.join("transitions/latest")
    );

    for file in [&manifest_file, &transition_file] {
        assert_eq!(mode(file), 0o644, "{}", file.display());
    }
    for d in ["manifests", "transitions", "policies"] {
        assert_eq!(mode(&root.join(d)), 0o755, "{d}");
    }
    assert!(temp_files(&root).is_empty());

    // A second store on the same directory reads everything back, verified.
    let again = open(&root);
    assert_eq!(
        again.get_latest(signing_key().verifying_key()).unwrap(),
        Some(latest.clone())
    );
    assert_eq!(again.get_manifest(manifest_hash).unwrap(), manifest);
    assert_eq!(again.get_policy(policy).unwrap(), b"policy document");
    assert_eq!(again.walk(latest.transition_hash).unwrap().len(), 1);
}

#[test]
fn store_operations() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    assert!(!store.has("a/b").unwrap());
    let err = store.get("a/b").unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { key } if key == "a/b"),
        "{err}"
    );
    store.set("a/b", b"one").unwrap();
    assert!(store.has("a/b").unwrap());
    assert_eq!(store.get("a/b").unwrap(), b"one");
    store.set("a/b", b"").unwrap();
    assert_eq!(store.get("a/b").unwrap(), b"");

    // Compare-and-swap: absent ≡ empty old; mismatches are conflicts and change nothing.
    assert!(
        store
            .compare_and_swap("c/d", b"x", b"1")
            .unwrap_err()
            .is_conflict()
    );
    assert!(!store.has("c/d").unwrap());
    store.compare_and_swap("c/d", b"", b"1").unwrap();
    let err = store.compare_and_swap("c/d", b"", b"2").unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key } if key == "c/d"),
        "{err}"
    );
    assert!(err.to_string().contains("changed since last read"), "{err}");
    assert!(
        store
            .compare_and_swap("c/d", b"0", b"2")
            .unwrap_err()
            .is_conflict()
    );
    assert_eq!(store.get("c/d").unwrap(), b"1");
    store.compare_and_swap("c/d", b"1", b"2").unwrap();
    assert_eq!(store.get("c/d").unwrap(), b"2");
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn refuses_keys_that_would_leave_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("store")).unwrap();
    for key in [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a/.lock",
        "a",
        ".lock/x",
        "a/b/c",
    ] {
        assert!(
            matches!(store.set(key, b"v"), Err(StoreError::InvalidKey { .. })),
            "{key}"
        );
        assert!(
            matches!(store.get(key), Err(StoreError::InvalidKey { .. })),
            "{key}"
        );
        assert!(
            matches!(store.has(key), Err(StoreError::InvalidKey { .. })),
            "{key}"
        );
        assert!(
            matches!(
                store.compare_and_swap(key, b"", b"v"),
                Err(StoreError::InvalidKey { .. })
            ),
            "{key}"
        );
    }
    assert!(!dir.path().join("x").exists());
}

#[test]
fn open_fails_clearly_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = FsStore::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// Flips each byte of `path` (both the low and the high bit), then truncates and extends
/// it; `read` must fail every time and succeed again once the file is restored.
fn tamper_every_byte<T: std::fmt::Debug>(
    path: &Path,
    read: impl Fn() -> Result<T, HistoryError>,
    check_error: impl Fn(&HistoryError),
) {
    let original = fs::read(path).unwrap();
    assert!(!original.is_empty());
    let mut variants = Vec::new();
    for i in 0..original.len() {
        for mask in [0x01, 0x80] {
            let mut v = original.clone();
            v[i] ^= mask;
            variants.push((format!("byte {i} ^ {mask:#04x}"), v));
        }
    }
    variants.push((
        "truncated by one".into(),
        original[..original.len() - 1].to_vec(),
    ));
    variants.push(("emptied".into(), Vec::new()));
    let mut longer = original.clone();
    longer.push(0);
    variants.push(("extended by one".into(), longer));

    for (what, bytes) in variants {
        fs::write(path, &bytes).unwrap();
        match read() {
            Ok(value) => panic!("{}: {what}: accepted, returned {value:?}", path.display()),
            Err(err) => check_error(&err),
        }
    }
    fs::write(path, &original).unwrap();
    read().unwrap();
}

fn assert_hash_mismatch(key: &str) -> impl Fn(&HistoryError) {
    let key = key.to_owned();
    move |err| {
        assert!(
            matches!(err, HistoryError::HashMismatch { key: k, .. } if *k == key),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.starts_with(&format!("{key}: hash mismatch: stored content hashes to ")));
        assert!(text.ends_with("; the store was modified"), "{text}");
    }
}

#[test]
fn tampered_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let key = signing_key();
    let first = h
        .append_manifest(b"{\"first\":true}\n", None, &key)
        .unwrap();
    let latest = h
        .append_manifest(b"{\"second\":true}\n", Some(&first), &key)
        .unwrap();
    let policy = h.set_policy(b"initdata document").unwrap();
    let walk = h.walk(latest.transition_hash).unwrap();
    let manifest_hash = walk[0].1.manifest_hash;

    let manifest_key = format!("manifests/{}", hex::encode(manifest_hash));
    tamper_every_byte(
        &h.store().path_of(&manifest_key).unwrap(),
        || h.get_manifest(manifest_hash),
        assert_hash_mismatch(&manifest_key),
    );

    let policy_key = format!("policies/{}", hex::encode(policy));
    tamper_every_byte(
        &h.store().path_of(&policy_key).unwrap(),
        || h.get_policy(policy),
        assert_hash_mismatch(&policy_key),
    );

    // The older transition: reading it and walking through it both fail.
    let old_key = format!("transitions/{}", hex::encode(first.transition_hash));
    tamper_every_byte(
        &h.store().path_of(&old_key).unwrap(),
        || h.get_transition(first.transition_hash),
        assert_hash_mismatch(&old_key),
    );
    tamper_every_byte(
        &h.store().path_of(&old_key).unwrap(),
        || h.walk(latest.transition_hash),
        assert_hash_mismatch(&old_key),
    );

    tamper_every_byte(
        &h.store().path_of(LATEST_KEY).unwrap(),
        || h.get_latest(key.verifying_key()),
        |err| {
            assert!(
                matches!(
                    err,
                    HistoryError::LatestSignatureInvalid { .. }
                        | HistoryError::LatestSignatureEncoding { .. }
                        | HistoryError::LatestTooShort { .. }
                        | HistoryError::LatestFormat { .. }
                ),
                "{err}"
            );
            assert!(err.to_string().starts_with("transitions/latest: "), "{err}");
        },
    );
}

#[test]
fn content_moved_between_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let a = h.set_manifest(b"manifest a").unwrap();
    let b = h.set_manifest(b"manifest b").unwrap();
    let path_a = h
        .store()
        .path_of(&format!("manifests/{}", hex::encode(a)))
        .unwrap();
    let path_b = h
        .store()
        .path_of(&format!("manifests/{}", hex::encode(b)))
        .unwrap();
    fs::copy(&path_b, &path_a).unwrap();
    assert!(matches!(
        h.get_manifest(a),
        Err(HistoryError::HashMismatch { .. })
    ));
    assert_eq!(h.get_manifest(b).unwrap(), b"manifest b");
}

#[test]
fn pointer_signed_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let latest = h.append_manifest(b"m", None, &signing_key()).unwrap();
    let forger = SigningKey::from_slice(&[0x11; 48]).unwrap();
    let forged = LatestTransition::sign(latest.transition_hash, 1, &forger).unwrap();
    fs::write(h.store().path_of(LATEST_KEY).unwrap(), forged.to_bytes()).unwrap();
    let err = h.get_latest(signing_key().verifying_key()).unwrap_err();
    assert!(
        matches!(err, HistoryError::LatestSignatureInvalid { .. }),
        "{err}"
    );
}

#[test]
fn latest_pointer_conflict_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    let key = signing_key();
    let first = a.append_manifest(b"m0", None, &key).unwrap();
    // b read the pointer before a's second update ...
    let seen_by_b = b.get_latest(key.verifying_key()).unwrap().unwrap();
    assert_eq!(seen_by_b, first);
    let second = a.append_manifest(b"m1", Some(&first), &key).unwrap();
    // ... so its update is refused and the pointer keeps a's value.
    let err = b
        .append_manifest(b"m1-b", Some(&seen_by_b), &key)
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(b.get_latest(key.verifying_key()).unwrap(), Some(second));
}

/// Appends `count` manifests named `<tag>-<n>`, retrying lost races; returns the number of
/// lost races.
fn append_with_retries(h: &History<impl Store>, tag: &str, count: usize) -> usize {
    let key = signing_key();
    let mut conflicts = 0;
    let mut done = 0;
    while done < count {
        let old = h.get_latest(key.verifying_key()).unwrap();
        let manifest = format!("{tag}-{done}");
        match h.append_manifest(manifest.as_bytes(), old.as_ref(), &key) {
            Ok(_) => done += 1,
            Err(e) if e.is_conflict() => conflicts += 1,
            Err(e) => panic!("{tag}: {e}"),
        }
    }
    conflicts
}

/// The chain is linear and holds exactly the expected manifests, once each.
fn assert_linear_chain(dir: &Path, expected: &HashSet<String>) {
    let h = open(dir);
    let latest = h
        .get_latest(signing_key().verifying_key())
        .unwrap()
        .unwrap();
    let walk = h.walk(latest.transition_hash).unwrap();
    assert_eq!(walk.len(), expected.len(), "lost or duplicated updates");
    let mut seen = HashSet::new();
    for (_, t) in &walk {
        let manifest = String::from_utf8(h.get_manifest(t.manifest_hash).unwrap()).unwrap();
        assert!(
            expected.contains(&manifest),
            "unexpected manifest {manifest}"
        );
        assert!(
            seen.insert(manifest.clone()),
            "manifest {manifest} applied twice"
        );
    }
    // Replaying the manifests oldest first gives the signed head.
    let oldest_first: Vec<Vec<u8>> = walk
        .iter()
        .rev()
        .map(|(_, t)| h.get_manifest(t.manifest_hash).unwrap())
        .collect();
    assert_eq!(
        transition_hash_of(oldest_first.iter().map(Vec::as_slice)),
        latest.transition_hash
    );
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
}

#[test]
fn concurrent_threads_build_a_linear_chain() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let shared: Arc<History<Arc<dyn Store>>> =
        Arc::new(History::new(Arc::new(FsStore::open(dir.path()).unwrap())));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            // Half the threads share one store (the mutex serialises them), half open
            // their own (the lock file does).
            let h = if i % 2 == 0 {
                Arc::clone(&shared)
            } else {
                Arc::new(History::new(
                    Arc::new(FsStore::open(dir.path()).unwrap()) as Arc<dyn Store>
                ))
            };
            thread::spawn(move || append_with_retries(&h, &format!("thread{i}"), PER_THREAD))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let expected: HashSet<String> = (0..THREADS)
        .flat_map(|i| (0..PER_THREAD).map(move |n| format!("thread{i}-{n}")))
        .collect();
    assert_linear_chain(dir.path(), &expected);
}

const CHILD_DIR_ENV: &str = "CONTRAST_HISTORY_TEST_CHILD_DIR";
const CHILD_TAG_ENV: &str = "CONTRAST_HISTORY_TEST_CHILD_TAG";
const PER_PROCESS: usize = 10;

/// Run only as a child of `concurrent_processes_build_a_linear_chain`.
#[test]
#[ignore = "child process of concurrent_processes_build_a_linear_chain"]
fn child_process_appends() {
    let dir = std::env::var(CHILD_DIR_ENV).unwrap();
    let tag = std::env::var(CHILD_TAG_ENV).unwrap();
    let h = open(Path::new(&dir));
    append_with_retries(&h, &tag, PER_PROCESS);
}

#[test]
fn concurrent_processes_build_a_linear_chain() {
    const PROCESSES: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_appends",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR_ENV, dir.path())
                .env(CHILD_TAG_ENV, format!("process{i}"))
                .output_async()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The filter must have matched the child test, or nothing was exercised.
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let expected: HashSet<String> = (0..PROCESSES)
        .flat_map(|i| (0..PER_PROCESS).map(move |n| format!("process{i}-{n}")))
        .collect();
    assert_linear_chain(dir.path(), &expected);
}

/// `Command::output` blocks; spawn with piped output instead so the children run at once.
trait SpawnPiped {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn crash_leftovers_do_not_affect_reads_and_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key();
    let h = open(dir.path());
    let latest = h.append_manifest(b"the manifest", None, &key).unwrap();
    let manifest_hash = h.walk(latest.transition_hash).unwrap()[0].1.manifest_hash;

    // What a writer killed before its rename leaves: partial temporary files next to the
    // final ones, named as FsStore names them.
    let leftovers = [
        (
            dir.path().join("transitions/.tmp-latest-4000000-0"),
            latest.to_bytes()[..40].to_vec(),
        ),
        (
            dir.path().join("transitions/.tmp-latest-4000000-1"),
            Vec::new(),
        ),
        (
            dir.path()
                .join("manifests")
                .join(format!(".tmp-{}-4000000-2", hex::encode(manifest_hash))),
            b"the man".to_vec(),
        ),
    ];
    for (path, bytes) in &leftovers {
        fs::write(path, bytes).unwrap();
    }

    // The open store keeps reading the complete files, and writes next to the leftovers.
    assert_eq!(
        h.get_latest(key.verifying_key()).unwrap(),
        Some(latest.clone())
    );
    assert_eq!(h.get_manifest(manifest_hash).unwrap(), b"the manifest");
    let second = h.append_manifest(b"second", Some(&latest), &key).unwrap();

    // The next open removes them, and nothing else.
    let reopened = open(dir.path());
    for (path, _) in &leftovers {
        assert!(!path.exists(), "{} left behind", path.display());
    }
    assert_eq!(
        reopened.get_latest(key.verifying_key()).unwrap(),
        Some(second.clone())
    );
    assert_eq!(reopened.walk(second.transition_hash).unwrap().len(), 2);
    assert_eq!(
        reopened.get_manifest(manifest_hash).unwrap(),
        b"the manifest"
    );
}

#[test]
fn stale_temporary_name_of_this_process_is_skipped() {
    // A leftover with exactly the name the next write would pick (same pid, counter 0,
    // planted after open so it survives) must not make the write fail or be read.
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    fs::create_dir(dir.path().join("a")).unwrap();
    let planted = dir
        .path()
        .join(format!("a/.tmp-b-{}-0", std::process::id()));
    fs::write(&planted, b"garbage").unwrap();
    store.set("a/b", b"value").unwrap();
    assert_eq!(store.get("a/b").unwrap(), b"value");
    assert_eq!(fs::read(&planted).unwrap(), b"garbage");
}
