//! Against real peers: Debian's `docker-registry` (distribution 2.8) on loopback, filled by
//! `skopeo copy` from OCI layouts built here byte by byte; and small in-test HTTP servers
//! for what a real registry does not do (lie about content, answer slowly).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use contrast_registry::{RegistryError, ResolvedImage, Resolver, ResolverOptions};
use contrast_testkit::registry::{
    OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Registry, RegistrySetup, TestImage, index_of, push, sha256,
    skopeo_digest, write_layout,
};

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn options(insecure: &[&str], docker_config_dir: &Path) -> ResolverOptions {
    ResolverOptions {
        insecure_registries: insecure.iter().map(|s| s.to_string()).collect(),
        docker_config_dir: Some(docker_config_dir.to_path_buf()),
        ..ResolverOptions::default()
    }
}

fn assert_config(image: &ResolvedImage, marker: &str, architecture: &str) {
    let config = &image.config;
    assert_eq!(
        config.env,
        [
            "PATH=/usr/local/bin:/usr/bin".to_owned(),
            format!("MARKER={marker}")
        ]
    );
    assert_eq!(
        config.entrypoint,
        Some(vec!["/bin/app".to_owned(), "--flag".to_owned()])
    );
    assert_eq!(config.cmd, Some(vec!["serve".to_owned()]));
    assert_eq!(config.working_dir.as_deref(), Some("/srv/app"));
    assert_eq!(config.user.as_deref(), Some("1000:2000"));
    assert_eq!(config.volumes, ["/cache", "/data"]);
    assert_eq!(config.os, "linux");
    assert_eq!(config.architecture, architecture);
}

/// One pushed single-platform image: (registry, image, workdir).
fn registry_with_image(tag: &str) -> (Registry, TestImage, tempfile::TempDir) {
    let registry = Registry::start(RegistrySetup::default());
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::new("amd64", "single");
    let layout = work.path().join("layout");
    write_layout(
        &layout,
        tag,
        (OCI_MANIFEST, &image.manifest),
        &[&image.config, &image.layer],
    );
    push(&layout, tag, &format!("{}/app:{tag}", registry.host()), &[]);
    (registry, image, work)
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn resolves_a_tag_to_the_digest_skopeo_sees_and_reads_the_config() {
    init();
    let (registry, image, work) = registry_with_image("v1");
    let host = registry.host();
    let reference = format!("{host}/app:v1");
    let expected = skopeo_digest(&reference, &[]);
    assert_eq!(
        expected,
        image.digest(),
        "skopeo pushed the manifest unchanged"
    );

    let resolver = Resolver::new(options(&[&host], work.path())).unwrap();
    let resolved = resolver.resolve(&reference).await.unwrap();
    assert_eq!(resolved.digest, expected);
    assert_eq!(resolved.manifest_digest, expected);
    assert!(!resolved.is_index);
    assert_eq!(resolved.reference, reference);
    assert_eq!(resolved.pinned, format!("{reference}@{expected}"));
    assert_eq!(resolved.config.digest, sha256(&image.config));
    assert_eq!(resolved.layers.len(), 1);
    assert_eq!(resolved.layers[0].digest, sha256(&image.layer));
    assert_eq!(resolved.layers[0].size, image.layer.len() as u64);
    assert_eq!(resolved.layers[0].media_type, OCI_LAYER);
    assert_config(&resolved, "single", "amd64");

    // Pinned by digest (with and without tag): fetched by digest and verified; the pin
    // replaces the digest and keeps the tag.
    let by_digest = resolver
        .resolve(&format!("{host}/app@{expected}"))
        .await
        .unwrap();
    assert_eq!(by_digest.digest, expected);
    assert_eq!(by_digest.config, resolved.config);
    let stale = format!("sha256:{}", "0".repeat(64));
    let tag_and_digest = format!("{host}/app:v1@{expected}");
    let resolved_tag_and_digest = resolver.resolve(&tag_and_digest).await.unwrap();
    assert_eq!(resolved_tag_and_digest.pinned, tag_and_digest);
    assert_eq!(resolved_tag_and_digest.reference, tag_and_digest);
    // A digest that does not exist: not found, naming image and registry.
    let missing = format!("{host}/app:v1@{stale}");
    let err = resolver.resolve(&missing).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RegistryError::RegistryAnswer { .. }),
        "{message}"
    );
    assert!(
        message.contains(&missing) && message.contains(&host),
        "{message}"
    );
    assert!(message.contains("check that the digest"), "{message}");
}

#[tokio::test]
async fn an_index_resolves_to_its_own_digest_and_the_platform_manifest() {
    init();
    let registry = Registry::start(RegistrySetup::default());
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let arm = TestImage::new("arm64", "arm64");
    let amd = TestImage::new("amd64", "amd64");
    // arm64 first: picking the first entry would be wrong.
    let index = index_of(&[("arm64", &arm), ("amd64", &amd)]);
    let layout = work.path().join("layout");
    write_layout(
        &layout,
        "multi",
        (OCI_INDEX, &index),
        &[
            &arm.manifest,
            &arm.config,
            &arm.layer,
            &amd.manifest,
            &amd.config,
            &amd.layer,
        ],
    );
    let reference = format!("{host}/multi:v2");
    push(
        &layout,
        "multi",
        &reference,
        &["--all", "--preserve-digests"],
    );
    let index_digest = skopeo_digest(&reference, &[]);
    assert_eq!(index_digest, sha256(&index));

    let resolver = Resolver::new(options(&[&host], work.path())).unwrap();
    let resolved = resolver.resolve(&reference).await.unwrap();
    assert!(resolved.is_index);
    assert_eq!(resolved.digest, index_digest);
    assert_eq!(resolved.manifest_digest, amd.digest());
    assert_eq!(resolved.pinned, format!("{reference}@{index_digest}"));
    assert_eq!(resolved.config.digest, sha256(&amd.config));
    assert_config(&resolved, "amd64", "amd64");

    // Another platform from the same index.
    let arm_resolver = Resolver::new(ResolverOptions {
        platform: ("linux".to_owned(), "arm64".to_owned()),
        ..options(&[&host], work.path())
    })
    .unwrap();
    let resolved = arm_resolver.resolve(&reference).await.unwrap();
    assert_eq!(resolved.digest, index_digest);
    assert_eq!(resolved.manifest_digest, arm.digest());
    assert_config(&resolved, "arm64", "arm64");

    // A platform the index lacks: the error lists what there is.
    let s390x = Resolver::new(ResolverOptions {
        platform: ("linux".to_owned(), "s390x".to_owned()),
        ..options(&[&host], work.path())
    })
    .unwrap();
    let err = s390x.resolve(&reference).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RegistryError::PlatformNotFound { .. }),
        "{message}"
    );
    assert!(
        message.contains("linux/s390x")
            && message.contains("linux/arm64, linux/amd64")
            && message.contains(&host)
            && message.contains(&reference),
        "{message}"
    );
}

#[tokio::test]
async fn docker_schema_2_images_resolve_too() {
    init();
    let registry = Registry::start(RegistrySetup::default());
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::new("amd64", "docker");
    let layout = work.path().join("layout");
    write_layout(
        &layout,
        "d",
        (OCI_MANIFEST, &image.manifest),
        &[&image.config, &image.layer],
    );
    let reference = format!("{host}/docker-format:v1");
    // skopeo converts to Docker's media types: a different manifest, a different digest.
    push(&layout, "d", &reference, &["--format", "v2s2"]);
    let expected = skopeo_digest(&reference, &[]);
    assert_ne!(expected, image.digest());

    let resolver = Resolver::new(options(&[&host], work.path())).unwrap();
    let resolved = resolver.resolve(&reference).await.unwrap();
    assert_eq!(resolved.digest, expected);
    assert_eq!(
        resolved.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_config(&resolved, "docker", "amd64");
}

#[tokio::test]
async fn the_cache_makes_the_second_run_offline() {
    init();
    let (mut registry, image, work) = registry_with_image("v1");
    let host = registry.host();
    let reference = format!("{host}/app:v1");
    let cache_path = work.path().join("layers-cache.json");
    let cached = |offline: bool| ResolverOptions {
        cache_path: Some(cache_path.clone()),
        offline,
        ..options(&[&host], work.path())
    };

    let online = Resolver::new(cached(false)).unwrap();
    let first = online.resolve(&reference).await.unwrap();
    online.save_cache().unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
    assert_eq!(file["version"], 1);
    assert_eq!(file["tags"][&reference], image.digest());
    assert!(file["images"][format!("{host}/app@{}", image.digest())].is_object());

    registry.stop();

    let offline = Resolver::new(cached(true)).unwrap();
    assert_eq!(offline.resolve(&reference).await.unwrap(), first);
    // The pinned form written by --pin-images is answered offline too.
    let pinned = offline.resolve(&first.pinned).await.unwrap();
    assert_eq!(pinned.digest, first.digest);
    assert_eq!(pinned.config, first.config);
    // Online mode answers from the cache without asking the (stopped) registry.
    let cache_first = Resolver::new(cached(false)).unwrap();
    assert_eq!(cache_first.resolve(&reference).await.unwrap(), first);

    // A miss offline names the image, the registry and the cache.
    let err = offline
        .resolve(&format!("{host}/app:v2"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RegistryError::NotCached { .. }), "{message}");
    assert!(
        message.contains(&format!("{host}/app:v2"))
            && message.contains(&host)
            && message.contains("layers-cache.json"),
        "{message}"
    );
    // The stopped registry online (not in the cache): a connection error naming it.
    let err = cache_first
        .resolve(&format!("{host}/app:v2"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connection { .. }), "{err}");

    // A tampered entry is detected (content re-hashed), warned about and not believed.
    let mut file = file;
    let key = format!("{host}/app@{}", image.digest());
    let tampered_config = image
        .config
        .iter()
        .map(|&b| if b == b'1' { b'0' } else { b })
        .collect::<Vec<u8>>();
    file["images"][&key]["config"] = base64::engine::general_purpose::STANDARD
        .encode(&tampered_config)
        .into();
    std::fs::write(&cache_path, serde_json::to_vec(&file).unwrap()).unwrap();
    let (logs, offline) = capture_warnings(|| Resolver::new(cached(true)).unwrap());
    let err = with_warnings(&logs, offline.resolve(&reference))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("unusable") && message.contains("config"),
        "{message}"
    );
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("WARN") && logged.contains(&key), "{logged}");
}

#[tokio::test]
async fn a_missing_tag_or_repository_names_image_and_registry() {
    init();
    let (registry, _image, work) = registry_with_image("v1");
    let host = registry.host();
    let resolver = Resolver::new(options(&[&host], work.path())).unwrap();

    let missing_tag = format!("{host}/app:nope");
    let err = resolver.resolve(&missing_tag).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RegistryError::RegistryAnswer { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("image \"{missing_tag}\""))
            && message.contains(&format!("registry {host} answered MANIFEST_UNKNOWN"))
            && message.contains("check that the tag \"nope\" exists"),
        "{message}"
    );

    let missing_repository = format!("{host}/other:v1");
    let message = resolver
        .resolve(&missing_repository)
        .await
        .unwrap_err()
        .to_string();
    // distribution 2.8 answers MANIFEST_UNKNOWN here too (others say NAME_UNKNOWN).
    assert!(
        message.contains(&format!("image \"{missing_repository}\""))
            && message.contains(&format!("registry {host} answered"))
            && (message.contains("MANIFEST_UNKNOWN") || message.contains("NAME_UNKNOWN")),
        "{message}"
    );

    // Malformed references never reach the registry.
    let err = resolver
        .resolve(&format!("{host}/App:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::InvalidReference { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("lowercase"), "{err}");
}

#[tokio::test]
async fn plain_http_only_for_listed_registries() {
    init();
    let (registry, image, work) = registry_with_image("v1");
    let host = registry.host();
    let reference = format!("{host}/app:v1");

    let strict = Resolver::new(options(&[], work.path())).unwrap();
    let err = strict.resolve(&reference).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RegistryError::Connection { .. }), "{message}");
    assert!(
        message.contains(&reference)
            && message.contains("plain HTTP")
            && message.contains(&format!("--insecure-registry {host}")),
        "{message}"
    );

    // Another registry listed does not make this one plain HTTP.
    let other = Resolver::new(options(&["127.0.0.1:1"], work.path())).unwrap();
    assert!(other.resolve(&reference).await.is_err());

    let allowed = Resolver::new(options(&[&host], work.path())).unwrap();
    assert_eq!(
        allowed.resolve(&reference).await.unwrap().digest,
        image.digest()
    );

    // Entries must be host[:port].
    for bad in ["http://127.0.0.1:5000", "127.0.0.1:5000/v2", ""] {
        let err = Resolver::new(options(&[bad], work.path())).unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidOptions(_)),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_not_an_insecure_registry_case() {
    init();
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let registry = Registry::start(RegistrySetup {
        tls: Some((key.cert.pem(), key.signing_key.serialize_pem())),
        ..RegistrySetup::default()
    });
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let resolver = Resolver::new(options(&[], work.path())).unwrap();
    let err = resolver
        .resolve(&format!("{host}/app:v1"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RegistryError::Connection { .. }), "{message}");
    assert!(
        message.contains("certificate") && message.contains("does not help"),
        "{message}"
    );
    assert!(
        !message.contains(&format!("--insecure-registry {host}")),
        "{message}"
    );

    // Listing an HTTPS registry as plain HTTP: told to remove it.
    let listed = Resolver::new(options(&[&host], work.path())).unwrap();
    let message = listed
        .resolve(&format!("{host}/app:v1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("remove it from --insecure-registry"),
        "{message}"
    );
}

#[tokio::test]
async fn basic_auth_with_docker_config_credentials() {
    init();
    let registry = Registry::start(RegistrySetup {
        basic_auth: Some(("tester".to_owned(), "s3cret:pass".to_owned())),
        ..RegistrySetup::default()
    });
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::new("amd64", "private");
    let layout = work.path().join("layout");
    write_layout(
        &layout,
        "p",
        (OCI_MANIFEST, &image.manifest),
        &[&image.config, &image.layer],
    );
    let reference = format!("{host}/private/app:v1");
    push(
        &layout,
        "p",
        &reference,
        &["--dest-creds", "tester:s3cret:pass"],
    );

    let write_config = |dir: &Path, json: String| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
    };
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // "auth" (base64 of user:password; the password has a ':').
    let good = work.path().join("good");
    write_config(
        &good,
        format!(
            r#"{{"auths": {{"http://{host}/v2/": {{"auth": "{}"}}}}}}"#,
            encode("tester:s3cret:pass")
        ),
    );
    let resolver = Resolver::new(options(&[&host], &good)).unwrap();
    let resolved = resolver.resolve(&reference).await.unwrap();
    assert_eq!(resolved.digest, image.digest());
    assert_config(&resolved, "private", "amd64");

    // username/password fields.
    let fields = work.path().join("fields");
    write_config(
        &fields,
        format!(
            r#"{{"auths": {{"{host}": {{"username": "tester", "password": "s3cret:pass"}}}}}}"#
        ),
    );
    let resolver = Resolver::new(options(&[&host], &fields)).unwrap();
    assert_eq!(
        resolver.resolve(&reference).await.unwrap().digest,
        image.digest()
    );

    // No credentials: unauthorized, with the hint where to put them.
    let none = work.path().join("none");
    std::fs::create_dir_all(&none).unwrap();
    let resolver = Resolver::new(options(&[&host], &none)).unwrap();
    let err = resolver.resolve(&reference).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RegistryError::Unauthorized { .. }),
        "{message}"
    );
    assert!(
        message.contains(&reference)
            && message.contains(&host)
            && message.contains("no credentials")
            && message.contains("auths")
            && message.contains(&none.join("config.json").display().to_string()),
        "{message}"
    );

    // Wrong password: unauthorized, saying the credentials were not accepted.
    let wrong = work.path().join("wrong");
    write_config(
        &wrong,
        format!(
            r#"{{"auths": {{"{host}": {{"auth": "{}"}}}}}}"#,
            encode("tester:nope")
        ),
    );
    let resolver = Resolver::new(options(&[&host], &wrong)).unwrap();
    let err = resolver.resolve(&reference).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RegistryError::Unauthorized { .. }),
        "{message}"
    );
    assert!(message.contains("not accepted"), "{message}");
    assert!(
        !message.contains("nope"),
        "the password must not appear: {message}"
    );

    // A credential helper for this registry: refused, not silently anonymous.
    let helper = work.path().join("helper");
    write_config(
        &helper,
        format!(r#"{{"credHelpers": {{"{host}": "secretservice"}}}}"#),
    );
    let resolver = Resolver::new(options(&[&host], &helper)).unwrap();
    let err = resolver.resolve(&reference).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::CredentialHelper { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not supported"), "{err}");

    // A corrupt docker config: an error naming the file, at construction.
    let corrupt = work.path().join("corrupt");
    write_config(&corrupt, "{".to_owned());
    let err = Resolver::new(options(&[&host], &corrupt)).unwrap_err();
    assert!(matches!(err, RegistryError::DockerConfig { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
}

// ---------------------------------------------------------------------------------------
// In-test registries that lie or dawdle.

/// Path → (content type, body).
type Routes = HashMap<String, (String, Vec<u8>)>;

#[derive(Clone, Default)]
struct FakeRegistry {
    routes: Arc<Mutex<Routes>>,
    /// Delay for manifest requests.
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl FakeRegistry {
    fn route(&self, path: &str, content_type: &str, body: &[u8]) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (content_type.to_owned(), body.to_vec()));
    }

    /// Serves `image` honestly under `repository:tag` and by digest.
    fn serve_image(&self, repository: &str, tag: &str, image: &TestImage) {
        for reference in [tag.to_owned(), image.digest()] {
            self.route(
                &format!("/v2/{repository}/manifests/{reference}"),
                OCI_MANIFEST,
                &image.manifest,
            );
        }
        self.route(
            &format!("/v2/{repository}/blobs/{}", sha256(&image.config)),
            "application/octet-stream",
            &image.config,
        );
    }

    async fn start(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().fallback(fake_handler).with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        host
    }
}

async fn fake_handler(
    axum::extract::State(fake): axum::extract::State<FakeRegistry>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let path = uri.path().to_owned();
    if path == "/v2/" {
        return (axum::http::StatusCode::OK, "{}").into_response();
    }
    let is_manifest = path.contains("/manifests/");
    if is_manifest {
        let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(fake.delay).await;
        fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    let found = fake.routes.lock().unwrap().get(&path).cloned();
    match found {
        Some((content_type, body)) => {
            ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => (
            axum::http::StatusCode::NOT_FOUND,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/json".to_owned(),
            )],
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
            .into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_lies_about_content_is_refused() {
    init();
    let work = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let honest = TestImage::new("amd64", "honest");
    let other = TestImage::new("amd64", "other");

    // 1. A digest-pinned reference answered with other bytes.
    fake.route(
        &format!("/v2/pinned/manifests/{}", honest.digest()),
        OCI_MANIFEST,
        &other.manifest,
    );
    // 2. A tag whose manifest names a config the registry replaces.
    fake.route("/v2/config/manifests/v1", OCI_MANIFEST, &honest.manifest);
    fake.route(
        &format!("/v2/config/blobs/{}", sha256(&honest.config)),
        "application/octet-stream",
        &other.config,
    );
    // 3. An index whose platform manifest is swapped.
    let index = index_of(&[("amd64", &honest)]);
    fake.route("/v2/index/manifests/v1", OCI_INDEX, &index);
    fake.route(
        &format!("/v2/index/manifests/{}", honest.digest()),
        OCI_MANIFEST,
        &other.manifest,
    );
    // 4. A config longer than its descriptor says.
    let mut long_config = honest.config.clone();
    long_config.extend_from_slice(&[b' '; 4096]);
    fake.route("/v2/long/manifests/v1", OCI_MANIFEST, &honest.manifest);
    fake.route(
        &format!("/v2/long/blobs/{}", sha256(&honest.config)),
        "application/octet-stream",
        &long_config,
    );
    let host = fake.clone().start().await;
    let resolver = Resolver::new(options(&[&host], work.path())).unwrap();

    for (reference, what) in [
        (format!("{host}/pinned@{}", honest.digest()), "manifest"),
        (format!("{host}/config:v1"), "config"),
        (format!("{host}/index:v1"), "platform manifest"),
    ] {
        let err = resolver.resolve(&reference).await.unwrap_err();
        let message = err.to_string();
        match &err {
            RegistryError::DigestMismatch {
                image,
                registry,
                what: got,
                ..
            } => {
                assert_eq!(image, &reference);
                assert_eq!(registry, &host);
                assert_eq!(got, what, "{message}");
            }
            other => panic!("{reference}: expected a digest mismatch, got {other}"),
        }
        assert!(
            message.contains(&reference) && message.contains(&host),
            "{message}"
        );
    }
    let err = resolver
        .resolve(&format!("{host}/long:v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::InvalidContent { .. } | RegistryError::DigestMismatch { .. }
        ),
        "{err}"
    );

    // Nothing unverified reached the cache.
    let cache_path = work.path().join("cache.json");
    let cached = Resolver::new(ResolverOptions {
        cache_path: Some(cache_path.clone()),
        ..options(&[&host], work.path())
    })
    .unwrap();
    assert!(cached.resolve(&format!("{host}/config:v1")).await.is_err());
    cached.save_cache().unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
    assert_eq!(file["images"], serde_json::json!({}));
    assert_eq!(file["tags"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_all_deduplicates_and_bounds_concurrency() {
    init();
    let work = tempfile::tempdir().unwrap();
    let fake = FakeRegistry {
        delay: Duration::from_millis(250),
        ..FakeRegistry::default()
    };
    let images: Vec<TestImage> = (0..6)
        .map(|i| TestImage::new("amd64", &format!("image-{i}")))
        .collect();
    for (i, image) in images.iter().enumerate() {
        fake.serve_image(&format!("app{i}"), "v1", image);
    }
    let host = fake.clone().start().await;
    let resolver = Resolver::new(ResolverOptions {
        concurrency: 2,
        ..options(&[&host], work.path())
    })
    .unwrap();

    let mut references: Vec<String> = (0..6).map(|i| format!("{host}/app{i}:v1")).collect();
    references.push(format!("{host}/app0:v1")); // the same string again
    references.push(format!("{host}/app1:v1@{}", images[1].digest())); // pinned: other content key
    references.push("Not A Reference".to_owned());
    let calls = Mutex::new(Vec::new());
    let results = resolver
        .resolve_all(&references, |done, total| {
            calls.lock().unwrap().push((done, total))
        })
        .await;

    assert_eq!(results.len(), 8, "one result per distinct input");
    for (i, image) in images.iter().enumerate() {
        let (input, result) = &results[i];
        assert_eq!(input, &references[i]);
        let resolved = result.as_ref().unwrap();
        assert_eq!(resolved.digest, image.digest());
        assert_eq!(resolved.config.env[1], format!("MARKER=image-{i}"));
    }
    assert_eq!(results[6].1.as_ref().unwrap().digest, images[1].digest());
    assert!(matches!(
        results[7].1,
        Err(RegistryError::InvalidReference { .. })
    ));

    let calls = calls.into_inner().unwrap();
    let total = 7; // 6 tags + 1 digest reference
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert_eq!(
        fake.max_in_flight.load(Ordering::SeqCst),
        2,
        "at most (and, with slow answers, exactly) 2 manifest requests at a time"
    );

    // Spellings of the same content share one resolution; errors name each spelling.
    let fresh = Resolver::new(ResolverOptions {
        concurrency: 3,
        ..options(&[&host], work.path())
    })
    .unwrap();
    let results = fresh
        .resolve_all(
            &[format!("{host}/gone:v1"), format!("{host}/gone")],
            |_, _| {},
        )
        .await;
    assert_eq!(results.len(), 2);
    // `gone` means `gone:latest`: two contents; both errors name their own spelling.
    for (input, result) in &results {
        let message = result.as_ref().unwrap_err().to_string();
        assert!(message.contains(&format!("image \"{input}\"")), "{message}");
    }
    let same = fresh
        .resolve_all(
            &[format!("{host}/app3:v1"), format!("{host}/app3:v1")],
            |_, _| {},
        )
        .await;
    assert_eq!(same.len(), 1);

    assert!(matches!(
        Resolver::new(ResolverOptions {
            concurrency: 0,
            ..ResolverOptions::default()
        }),
        Err(RegistryError::InvalidOptions(_))
    ));
}

#[tokio::test]
async fn a_corrupt_cache_file_is_ignored_with_a_warning() {
    init();
    let (registry, image, work) = registry_with_image("v1");
    let host = registry.host();
    let cache_path = work.path().join("layers-cache.json");
    for corrupt in [
        &b"{\"version\": 1, \"images\": ["[..],
        br#"{"version": 99}"#,
    ] {
        std::fs::write(&cache_path, corrupt).unwrap();
        let (logs, resolver) = capture_warnings(|| {
            Resolver::new(ResolverOptions {
                cache_path: Some(cache_path.clone()),
                ..options(&[&host], work.path())
            })
            .unwrap()
        });
        let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        assert!(
            logged.contains("WARN")
                && logged.contains("ignoring the image cache file")
                && logged.contains("layers-cache.json"),
            "{logged}"
        );
        let resolved = resolver.resolve(&format!("{host}/app:v1")).await.unwrap();
        assert_eq!(resolved.digest, image.digest());
        resolver.save_cache().unwrap();
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
        assert_eq!(file["version"], 1, "the corrupt file is replaced");
    }

    // Offline with a corrupt cache: a miss, not a crash.
    std::fs::write(&cache_path, b"garbage").unwrap();
    let resolver = Resolver::new(ResolverOptions {
        cache_path: Some(cache_path.clone()),
        offline: true,
        ..options(&[&host], work.path())
    })
    .unwrap();
    assert!(matches!(
        resolver.resolve(&format!("{host}/app:v1")).await,
        Err(RegistryError::NotCached { .. })
    ));
}

#[tokio::test]
async fn refresh_tags_notices_a_moved_tag() {
    init();
    let (registry, first, work) = registry_with_image("v1");
    let host = registry.host();
    let reference = format!("{host}/app:v1");
    let cache_path = work.path().join("layers-cache.json");
    let make = |refresh_tags: bool| {
        Resolver::new(ResolverOptions {
            cache_path: Some(cache_path.clone()),
            refresh_tags,
            ..options(&[&host], work.path())
        })
        .unwrap()
    };
    let resolver = make(false);
    assert_eq!(
        resolver.resolve(&reference).await.unwrap().digest,
        first.digest()
    );
    resolver.save_cache().unwrap();

    // Move the tag.
    let moved = TestImage::new("amd64", "moved");
    let layout = work.path().join("moved");
    write_layout(
        &layout,
        "v1",
        (OCI_MANIFEST, &moved.manifest),
        &[&moved.config, &moved.layer],
    );
    push(&layout, "v1", &reference, &[]);

    // The cache keeps the old digest (documented) ...
    assert_eq!(
        make(false).resolve(&reference).await.unwrap().digest,
        first.digest()
    );
    // ... until tags are refreshed.
    let refreshing = make(true);
    assert_eq!(
        refreshing.resolve(&reference).await.unwrap().digest,
        moved.digest()
    );
    refreshing.save_cache().unwrap();
    assert_eq!(
        make(false).resolve(&reference).await.unwrap().digest,
        moved.digest()
    );

    assert!(matches!(
        Resolver::new(ResolverOptions {
            offline: true,
            refresh_tags: true,
            ..ResolverOptions::default()
        }),
        Err(RegistryError::InvalidOptions(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Capturing warnings.

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn subscriber(logs: &Arc<Mutex<Vec<u8>>>) -> impl tracing::Subscriber + Send + Sync + 'static {
    let buffer = Buffer(logs.clone());
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || buffer.clone())
        .finish()
}

/// Runs `f` with warnings captured.
fn capture_warnings<T>(f: impl FnOnce() -> T) -> (Arc<Mutex<Vec<u8>>>, T) {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let value = tracing::subscriber::with_default(subscriber(&logs), f);
    (logs, value)
}

/// Polls `future` with warnings captured into `logs`.
async fn with_warnings<F: std::future::Future>(logs: &Arc<Mutex<Vec<u8>>>, future: F) -> F::Output {
    use tracing::instrument::WithSubscriber as _;
    future.with_subscriber(subscriber(logs)).await
}
