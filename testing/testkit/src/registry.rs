//! A real OCI registry for tests: Debian's `docker-registry` on loopback, images built by
//! hand (reproducible bytes, known digests) and pushed with `skopeo`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary (Debian package `docker-registry`).
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
/// skopeo (Debian package `skopeo`).
pub const SKOPEO: &str = "/usr/bin/skopeo";

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer media type.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(digest.as_ref()))
}

/// Fails the test, naming the Debian package, when a tool is missing.
pub fn require_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package `{package}` (apt-get install {package}); these tests need a real registry and skopeo"
    );
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------
// A real registry.

/// A running `docker-registry` in a temp dir; killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `user:password` when it wants basic auth (the pushes here use it).
    credentials: Option<String>,
    _dir: tempfile::TempDir,
}

/// How to run the registry.
#[derive(Debug, Default)]
pub struct RegistrySetup {
    /// `(user, password)` for htpasswd basic auth.
    pub basic_auth: Option<(String, String)>,
    /// `(certificate PEM, key PEM)` to serve HTTPS.
    pub tls: Option<(String, String)>,
    /// Listen on all the host's addresses (for guests on a pod network, which reach the
    /// host at their gateway), not only on 127.0.0.1.
    pub listen_any: bool,
}

impl Registry {
    /// Starts a registry and waits until it answers.
    pub fn start(setup: RegistrySetup) -> Registry {
        require_tool(DOCKER_REGISTRY, "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}:{port}\n  secret: contrast-registry-test\n",
            storage.display(),
            if setup.listen_any {
                "0.0.0.0"
            } else {
                "127.0.0.1"
            },
        );
        if let Some((cert, key)) = &setup.tls {
            std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), key).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            ));
        }
        if let Some((user, password)) = &setup.basic_auth {
            // Cost 4: the registry checks the hash on every request.
            let hash = bcrypt::hash(password, 4).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: contrast-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = Registry {
            child: Some(child),
            port,
            credentials: setup
                .basic_auth
                .as_ref()
                .map(|(user, password)| format!("{user}:{password}")),
            _dir: dir,
        };
        registry.wait_ready(setup.tls.is_some());
        registry
    }

    /// Waits for `GET /v2/` to answer (200, or 401 with auth); over TLS, for the port.
    fn wait_ready(&mut self, tls: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self._dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry exited with {status}: {log}");
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                if tls {
                    return;
                }
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.0 401") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not become ready"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes a one-layer image whose config section is `config_section` (JSON) as
    /// `<repo>:v1`, building its OCI layout under `scratch`; returns the reference.
    pub fn push_image(&self, scratch: &Path, repo: &str, config_section: &str) -> String {
        let image = TestImage::with_config_section("amd64", config_section, repo);
        let layout = scratch.join(repo.replace('/', "_"));
        write_layout(
            &layout,
            "v1",
            (OCI_MANIFEST, &image.manifest),
            &[&image.config, &image.layer],
        );
        let target = format!("{}/{repo}:v1", self.host());
        push(&layout, "v1", &target, &self.push_args());
        target
    }

    /// skopeo's arguments for pushing here: the credentials if it wants them.
    pub fn push_args(&self) -> Vec<&str> {
        match &self.credentials {
            Some(credentials) => vec!["--dest-creds", credentials],
            None => Vec::new(),
        }
    }

    /// Where the registry stores blobs and manifests (`docker/registry/v2/blobs/…`):
    /// tests change stored content there, as an attacker with the registry's disk could.
    pub fn storage_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("storage")
    }

    /// The stored bytes of blob `digest` (`sha256:…`).
    pub fn blob_path(&self, digest: &str) -> std::path::PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Kills the registry.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Images built by hand: reproducible bytes, known digests.

/// One file in a ustar archive with fixed owner and mtime, gzip with mtime 0.
pub fn layer_tar_gz(name: &str, content: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut header = [0u8; 512];
    let put = |header: &mut [u8; 512], at: usize, value: &[u8]| {
        header[at..at + value.len()].copy_from_slice(value);
    };
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000644\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(
        &mut header,
        124,
        format!("{:011o}\0", content.len()).as_bytes(),
    );
    put(&mut header, 136, b"14000000000\0"); // 2014-ish, fixed
    put(&mut header, 148, b"        ");
    header[156] = b'0';
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    put(&mut header, 148, format!("{checksum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (tar, gz.finish().unwrap())
}

/// A single-platform image: manifest, config and one layer.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The config bytes.
    pub config: Vec<u8>,
    /// The gzip layer bytes.
    pub layer: Vec<u8>,
}

impl TestImage {
    /// An image with a fixed config (Env with `MARKER=<marker>`, Entrypoint, Cmd, ...).
    pub fn new(architecture: &str, marker: &str) -> TestImage {
        let (tar, layer) = layer_tar_gz("app.txt", format!("hello from {marker}\n").as_bytes());
        let section = format!(
            r#"{{"Env":["PATH=/usr/local/bin:/usr/bin","MARKER={marker}"],"Entrypoint":["/bin/app","--flag"],"Cmd":["serve"],"WorkingDir":"/srv/app","User":"1000:2000","Volumes":{{"/data":{{}},"/cache":{{}}}}}}"#
        );
        TestImage::with_config(architecture, &section, &tar, layer)
    }

    /// An image whose config section (`"config": {...}`) is `config_section` (JSON).
    pub fn with_config_section(
        architecture: &str,
        config_section: &str,
        marker: &str,
    ) -> TestImage {
        let (tar, layer) = layer_tar_gz("app.txt", format!("hello from {marker}\n").as_bytes());
        TestImage::with_config(architecture, config_section, &tar, layer)
    }

    fn with_config(architecture: &str, section: &str, tar: &[u8], layer: Vec<u8>) -> TestImage {
        let config = format!(
            r#"{{"architecture":"{architecture}","os":"linux","config":{section},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256(tar)
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{}","size":{}}}]}}"#,
            sha256(&config),
            config.len(),
            sha256(&layer),
            layer.len()
        )
        .into_bytes();
        TestImage {
            manifest,
            config,
            layer,
        }
    }

    /// The manifest digest.
    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }
}

/// An OCI index of `(architecture, image)` entries.
pub fn index_of(images: &[(&str, &TestImage)]) -> Vec<u8> {
    let entries: Vec<String> = images
        .iter()
        .map(|(architecture, image)| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"{architecture}","os":"linux"}}}}"#,
                image.digest(),
                image.manifest.len()
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

/// Writes an OCI layout with `top` (media type, bytes) under `tag` and all `blobs`.
pub fn write_layout(dir: &Path, tag: &str, top: (&str, &[u8]), blobs: &[&[u8]]) {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).unwrap();
    for blob in blobs.iter().chain([&top.1]) {
        let digest = sha256(blob);
        std::fs::write(blob_dir.join(digest.trim_start_matches("sha256:")), blob).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            top.0,
            sha256(top.1),
            top.1.len()
        ),
    )
    .unwrap();
}

/// Runs skopeo (insecure policy), returning stdout; fails the test on error.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    require_tool(SKOPEO, "skopeo");
    let output = Command::new(SKOPEO)
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Pushes a layout with skopeo; `extra` e.g. `--all`, `--dest-creds u:p`, `--format v2s2`.
pub fn push(layout: &Path, tag: &str, target: &str, extra: &[&str]) {
    let source = format!("oci:{}:{tag}", layout.display());
    let destination = format!("docker://{target}");
    let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&source);
    args.push(&destination);
    skopeo(&args);
}

/// The digest skopeo sees: SHA-256 of `skopeo inspect --raw`.
pub fn skopeo_digest(target: &str, extra: &[&str]) -> String {
    let destination = format!("docker://{target}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&destination);
    sha256(&skopeo(&args))
}

/// An image with several gzip'd layers (given as tar streams), pushed as `<repo>:<tag>`.
#[derive(Debug, Clone)]
pub struct LayeredImage {
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The config bytes.
    pub config: Vec<u8>,
    /// The gzip'd layers, bottom first.
    pub layers: Vec<Vec<u8>>,
}

impl LayeredImage {
    /// An amd64 image whose config section is `config_section` and whose layers are `tars`.
    pub fn new(config_section: &str, tars: &[Vec<u8>]) -> LayeredImage {
        let layers: Vec<Vec<u8>> = tars
            .iter()
            .map(|tar| {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                gz.write_all(tar).unwrap();
                gz.finish().unwrap()
            })
            .collect();
        let diff_ids: Vec<String> = tars.iter().map(|t| format!("\"{}\"", sha256(t))).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{config_section},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        )
        .into_bytes();
        let descriptors: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"{OCI_LAYER}","digest":"{}","size":{}}}"#,
                    sha256(l),
                    l.len()
                )
            })
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}},"layers":[{}]}}"#,
            sha256(&config),
            config.len(),
            descriptors.join(",")
        )
        .into_bytes();
        LayeredImage {
            manifest,
            config,
            layers,
        }
    }

    /// The manifest digest.
    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// Pushes it to `registry` as `<repo>:<tag>` through an OCI layout under `scratch`;
    /// returns `host/repo@digest`.
    pub fn push(&self, registry: &Registry, scratch: &Path, repo: &str, tag: &str) -> String {
        let layout = scratch.join(format!("{}-{tag}", repo.replace('/', "_")));
        let mut blobs: Vec<&[u8]> = vec![&self.config];
        blobs.extend(self.layers.iter().map(Vec::as_slice));
        write_layout(&layout, tag, (OCI_MANIFEST, &self.manifest), &blobs);
        push(
            &layout,
            tag,
            &format!("{}/{repo}:{tag}", registry.host()),
            &registry.push_args(),
        );
        format!("{}/{repo}@{}", registry.host(), self.digest())
    }
}
