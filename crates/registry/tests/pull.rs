//! Guest pull: layers applied with whiteouts, links resolved inside the root, and a pull
//! from the real registry (Debian's `docker-registry`, filled by `skopeo`) that refuses
//! content the registry changed.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use contrast_registry::layer::{self, LayerError};
use contrast_registry::{RegistryError, Resolver, ResolverOptions};
use contrast_testkit::registry::{LayeredImage, Registry, RegistrySetup};

/// A tar stream built entry by entry.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_400_000_000);
        header.set_size(0);
        header
    }

    fn dir(mut self, path: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Directory, 0o755);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    fn file(self, path: &str, content: &str) -> Tar {
        self.file_owned(path, content, 0o644, 0, 0)
    }

    fn file_owned(mut self, path: &str, content: &str, mode: u32, uid: u64, gid: u64) -> Tar {
        let mut h = Tar::header(tar::EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(content.len() as u64);
        self.0
            .append_data(&mut h, path, content.as_bytes())
            .unwrap();
        self
    }

    fn symlink(mut self, path: &str, target: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Symlink, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn hardlink(mut self, path: &str, target: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Link, 0o644);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    /// A raw entry whose name the builder would refuse (`..`).
    fn raw_file(mut self, name: &str, content: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Regular, 0o644);
        h.set_size(content.len() as u64);
        let bytes = h.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.0.append(&h, content.as_bytes()).unwrap();
        self
    }

    fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn apply(root: &Path, tar: &[u8]) -> Result<layer::LayerStats, LayerError> {
    layer::apply(root, "application/vnd.oci.image.layer.v1.tar", tar)
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path)).ok()
}

fn base() -> Vec<u8> {
    Tar::new()
        .dir("etc")
        .file("etc/a", "a")
        .file("etc/b", "b")
        .dir("opt/x")
        .file("opt/x/old", "old")
        .dir("opt/x/sub")
        .file("opt/x/sub/deep", "deep")
        .dir("usr/lib")
        .file("usr/lib/libc.so", "libc")
        .symlink("lib", "usr/lib")
        .file("replaced", "a file that becomes a directory")
        .build()
}

#[test]
fn layers_apply_in_order_with_whiteouts() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    apply(&root, &base()).unwrap();
    let upper = Tar::new()
        .file("etc/.wh.a", "")
        .file("opt/x/.wh..wh..opq", "")
        .file("opt/x/new", "new")
        // Through the lower layer's symlink: lands in usr/lib.
        .file("lib/extra.so", "extra")
        .hardlink("etc/b-link", "etc/b")
        .dir("replaced")
        .file("replaced/inside", "now a directory")
        .file_owned("srv/secret", "s", 0o600, 1000, 2000)
        .build();
    let stats = apply(&root, &upper).unwrap();
    assert_eq!(stats.whiteouts, 2);

    assert_eq!(read(&root, "etc/a"), None, "the whiteout removes etc/a");
    assert_eq!(read(&root, "etc/b").as_deref(), Some("b"));
    assert_eq!(read(&root, "opt/x/new").as_deref(), Some("new"));
    assert_eq!(
        read(&root, "opt/x/old"),
        None,
        "the opaque directory hides old"
    );
    assert!(!root.join("opt/x/sub").exists(), "and everything below it");
    assert_eq!(read(&root, "usr/lib/extra.so").as_deref(), Some("extra"));
    assert!(
        std::fs::symlink_metadata(root.join("lib"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let b = std::fs::metadata(root.join("etc/b")).unwrap();
    let link = std::fs::metadata(root.join("etc/b-link")).unwrap();
    assert_eq!(b.ino(), link.ino(), "a hard link, not a copy");
    assert_eq!(
        read(&root, "replaced/inside").as_deref(),
        Some("now a directory")
    );
    let secret = std::fs::metadata(root.join("srv/secret")).unwrap();
    assert_eq!(secret.permissions().mode() & 0o7777, 0o600);
    assert_eq!((secret.uid(), secret.gid()), (1000, 2000));
}

#[test]
fn an_opaque_whiteout_after_new_entries_keeps_them() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    apply(&root, &base()).unwrap();
    let upper = Tar::new()
        .file("opt/x/sub/fresh", "fresh")
        .file("opt/x/first", "first")
        .file("opt/x/.wh..wh..opq", "")
        .build();
    apply(&root, &upper).unwrap();
    assert_eq!(read(&root, "opt/x/first").as_deref(), Some("first"));
    assert_eq!(read(&root, "opt/x/sub/fresh").as_deref(), Some("fresh"));
    assert_eq!(read(&root, "opt/x/old"), None);
    assert_eq!(
        read(&root, "opt/x/sub/deep"),
        None,
        "lower content below a kept directory goes"
    );
}

#[test]
fn a_parent_component_is_refused_and_nothing_lands_outside() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let evil = Tar::new().raw_file("../escaped", "x").build();
    let err = apply(&root, &evil).unwrap_err();
    assert!(matches!(err, LayerError::OutsideRoot { .. }), "{err}");
    assert!(!work.path().join("escaped").exists());
}

#[test]
fn a_whiteout_of_the_directory_itself_or_its_parent_is_refused() {
    for whiteout in [
        ".wh.",
        ".wh..",
        ".wh...",
        "etc/.wh.",
        "etc/.wh..",
        "etc/.wh...",
    ] {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("rootfs");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(work.path().join("beside-the-root"), "kept").unwrap();
        apply(&root, &base()).unwrap();
        let layer = Tar::new()
            .file("etc/keep", "kept")
            .file(whiteout, "")
            .build();
        let err = apply(&root, &layer).unwrap_err();
        assert!(
            matches!(err, LayerError::OutsideRoot { .. }),
            "{whiteout}: {err}"
        );
        assert!(root.join("etc").exists(), "{whiteout}");
        assert!(work.path().join("beside-the-root").exists(), "{whiteout}");
    }
}

#[test]
fn symbolic_links_never_lead_out_of_the_root() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let lower = Tar::new()
        .symlink("absolute", "/")
        .symlink("relative", "../../..")
        .symlink("hop", "relative/etc")
        .build();
    apply(&root, &lower).unwrap();
    let upper = Tar::new()
        .file("absolute/etc/one", "1")
        .file("relative/etc/two", "2")
        .file("hop/three", "3")
        .build();
    apply(&root, &upper).unwrap();
    // All three land in the root's own etc, none next to it.
    for name in ["one", "two", "three"] {
        assert!(root.join("etc").join(name).exists(), "{name}");
        assert!(!work.path().join("etc").join(name).exists(), "{name}");
    }
    // A loop is an error, not a hang.
    let looping = Tar::new()
        .symlink("loop-a", "loop-b")
        .symlink("loop-b", "loop-a")
        .file("loop-a/x", "x")
        .build();
    let err = apply(&root, &looping).unwrap_err();
    assert!(matches!(err, LayerError::LinkLoop { .. }), "{err}");
}

#[test]
fn hard_links_only_to_files_of_the_image() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(work.path().join("host-file"), "host").unwrap();
    for target in ["../host-file", "missing", "etc"] {
        let tar = Tar::new().dir("etc").hardlink("link", target).build();
        let err = apply(&root, &tar).unwrap_err();
        assert!(
            matches!(err, LayerError::HardLink { .. }),
            "{target}: {err}"
        );
    }
}

/// Go's archive/tar (containerd) reads an empty number field as 0; so does this.
#[test]
fn empty_number_fields_read_as_zero() {
    let work = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(2);
    // uid and gid left as the header starts them: all NUL.
    builder.append_data(&mut header, "f", &b"ok"[..]).unwrap();
    apply(work.path(), &builder.into_inner().unwrap()).unwrap();
    let meta = std::fs::metadata(work.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}

#[test]
fn zstd_layers_are_refused_by_name() {
    let work = tempfile::tempdir().unwrap();
    let err = layer::apply(
        work.path(),
        "application/vnd.oci.image.layer.v1.tar+zstd",
        b"",
    )
    .unwrap_err();
    assert!(err.to_string().contains("tar+zstd"), "{err}");
}

// ---------------------------------------------------------------------------------------
// From the real registry.

fn resolver(registry: &Registry) -> Resolver {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let docker_config = tempfile::tempdir().unwrap();
    Resolver::new(ResolverOptions {
        insecure_registries: vec![registry.host()],
        docker_config_dir: Some(docker_config.path().to_owned()),
        ..ResolverOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn pulls_a_pinned_image_layer_by_layer() {
    let registry = Registry::start(RegistrySetup::default());
    let work = tempfile::tempdir().unwrap();
    let upper = Tar::new()
        .file("etc/.wh.a", "")
        .file("bin/app", "#!/bin/sh\necho app\n")
        .build();
    let image = LayeredImage::new(r#"{"Cmd":["/bin/app"]}"#, &[base(), upper]);
    let reference = image.push(&registry, work.path(), "guest/app", "v1");
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let pulled = resolver(&registry).pull(&reference, &root).await.unwrap();
    assert_eq!(pulled.layers.len(), 2);
    assert_eq!(pulled.image.digest, image.digest());
    assert_eq!(pulled.image.config.cmd, Some(vec!["/bin/app".to_owned()]));
    assert_eq!(
        read(&root, "bin/app").as_deref(),
        Some("#!/bin/sh\necho app\n")
    );
    assert_eq!(read(&root, "etc/a"), None);
    assert_eq!(read(&root, "etc/b").as_deref(), Some("b"));

    // A tag is not a pin.
    let tagged = format!("{}/guest/app:v1", registry.host());
    let err = resolver(&registry).pull(&tagged, &root).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotPinned { .. }), "{err}");
}

#[tokio::test]
async fn a_layer_changed_in_the_registry_is_refused_before_it_is_applied() {
    let registry = Registry::start(RegistrySetup::default());
    let work = tempfile::tempdir().unwrap();
    let upper = Tar::new().file("bin/app", "the real app").build();
    let image = LayeredImage::new(r#"{"Cmd":["/bin/app"]}"#, &[base(), upper]);
    let reference = image.push(&registry, work.path(), "guest/tampered", "v1");
    // Whoever has the registry's disk swaps the top layer for one of the same size.
    let evil = LayeredImage::new(
        "{}",
        &[Tar::new().file("bin/app", "a backdoored app").build()],
    );
    let stored = registry.blob_path(&contrast_testkit::registry::sha256(&image.layers[1]));
    let mut swapped = evil.layers[0].clone();
    swapped.resize(image.layers[1].len(), 0);
    std::fs::write(&stored, &swapped).unwrap();

    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let err = resolver(&registry)
        .pull(&reference, &root)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("layer"), "{err}");
    assert_eq!(
        read(&root, "bin/app"),
        None,
        "nothing of the changed layer is applied"
    );
}

/// An HTTPS registry on 127.0.0.1 with a self-signed certificate (`setup` adds the rest)
/// holding a one-layer image at `repo`.
struct TlsRegistry {
    key: rcgen::CertifiedKey<rcgen::KeyPair>,
    registry: Registry,
    work: tempfile::TempDir,
    /// The image's reference, pinned.
    reference: String,
}

fn tls_registry(repo: &str, setup: RegistrySetup) -> TlsRegistry {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let registry = Registry::start(RegistrySetup {
        tls: Some((key.cert.pem(), key.signing_key.serialize_pem())),
        ..setup
    });
    let work = tempfile::tempdir().unwrap();
    let image = LayeredImage::new("{}", &[base()]);
    let reference = image.push(&registry, work.path(), repo, "v1");
    TlsRegistry {
        key,
        registry,
        work,
        reference,
    }
}

/// The guest trusts only its image's bundle: an HTTPS registry whose certificate is in the
/// bundle serves the pull, one whose certificate is not is refused, and a bundle without
/// certificates is an error at once.
#[tokio::test]
async fn https_registries_only_under_the_given_roots() {
    let TlsRegistry {
        key,
        registry: _registry,
        work,
        reference,
    } = tls_registry("guest/tls", RegistrySetup::default());
    let options = |bundle: &Path| ResolverOptions {
        docker_config_dir: Some(work.path().to_owned()),
        root_certificates: Some(bundle.to_owned()),
        ..ResolverOptions::default()
    };

    let trusted = work.path().join("trusted.pem");
    std::fs::write(&trusted, key.cert.pem()).unwrap();
    let root = work.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    Resolver::new(options(&trusted))
        .unwrap()
        .pull(&reference, &root)
        .await
        .unwrap();
    assert_eq!(read(&root, "etc/b").as_deref(), Some("b"));

    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let untrusted = work.path().join("untrusted.pem");
    std::fs::write(&untrusted, other.cert.pem()).unwrap();
    let err = Resolver::new(options(&untrusted))
        .unwrap()
        .resolve(&reference)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connection { .. }), "{err}");

    let empty = work.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = Resolver::new(options(&empty)).err().unwrap();
    assert!(err.to_string().contains("no certificate"), "{err}");
}

/// The guest's registry credentials and trust come from the image puller config: a
/// private HTTPS registry serves the pull with its entry (credentials, and its CA under
/// `ca-certs` though the guest's bundle does not hold it); without credentials, or with
/// wrong ones, the refusal says where they go.
#[tokio::test]
async fn a_private_registry_through_the_image_puller_config() {
    use base64::Engine as _;
    let TlsRegistry {
        key,
        registry,
        work,
        reference,
    } = tls_registry(
        "private/app",
        RegistrySetup {
            basic_auth: Some(("puller".to_owned(), "pull:secret".to_owned())),
            ..RegistrySetup::default()
        },
    );
    let host = registry.host();
    // The guest's own bundle does not hold the registry's certificate.
    let bundle = work.path().join("bundle.pem");
    let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).unwrap();
    std::fs::write(&bundle, other.cert.pem()).unwrap();
    let credentials = base64::engine::general_purpose::STANDARD.encode("puller:pull:secret");
    let ca = key.cert.pem();
    let entry = format!("[registries.\"{host}\"]\n");
    let pull = |toml: String| {
        let reference = reference.clone();
        let bundle = bundle.clone();
        let root = work.path().join(format!("rootfs-{}", toml.len()));
        async move {
            std::fs::create_dir_all(&root).unwrap();
            let config = contrast_registry::PullerConfig::parse(&toml, "imagepuller.toml")?;
            Resolver::new(ResolverOptions {
                root_certificates: Some(bundle),
                puller_config: Some(config),
                ..ResolverOptions::default()
            })?
            .pull(&reference, &root)
            .await
            .map(|_| root)
        }
    };

    let root = pull(format!(
        "{entry}auth = \"{credentials}\"\nca-certs = '''\n{ca}'''\n"
    ))
    .await
    .unwrap();
    assert_eq!(read(&root, "etc/b").as_deref(), Some("b"));

    // Its CA alone: the registry wants credentials, and the refusal says where they go
    // (into that entry: a new one for the host would not have its CA).
    let err = pull(format!("[registries.\".\"]\nca-certs = '''\n{ca}'''\n"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("registries.\".\" in the image puller config imagepuller.toml applies to {host} but has no credentials")),
        "{text}"
    );
    assert!(
        text.contains("contrast-node-installer-imagepuller-config"),
        "{text}"
    );

    // Wrong credentials: named by their entry.
    let err = pull(format!(
        "{entry}username = \"puller\"\npassword = \"wrong\"\ninsecure-skip-verify = true\n"
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("were not accepted"), "{err}");

    // Credentials without the CA: the guest's bundle decides, and refuses; another
    // registry's insecure-skip-verify and CA do not reach this one.
    let err = pull(format!(
        "{entry}auth = \"{credentials}\"\n[registries.\"other.example\"]\n\
         insecure-skip-verify = true\n[registries.\"third.example\"]\nca-certs = '''\n{ca}'''\n"
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, RegistryError::Connection { .. }), "{err}");
}

/// A CONNECT proxy on loopback that tunnels to whatever it is asked for and counts the
/// tunnels.
async fn connect_proxy() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut client = tokio::io::BufReader::new(client);
                let mut line = String::new();
                client.read_line(&mut line).await.ok()?;
                let target = line.strip_prefix("CONNECT ")?.split(' ').next()?.to_owned();
                loop {
                    let mut header = String::new();
                    client.read_line(&mut header).await.ok()?;
                    if header == "\r\n" || header.is_empty() {
                        break;
                    }
                }
                let mut upstream = tokio::net::TcpStream::connect(target).await.ok()?;
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut client = client.into_inner();
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .ok()?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream)
                    .await
                    .ok()
            });
        }
    });
    (address, tunnels)
}

/// `[extra-env]`'s HTTPS_PROXY carries every pull through the proxy (CONNECT), NO_PROXY
/// exempts the registry, and a proxy that is not there fails the pull.
#[tokio::test]
async fn pulls_go_through_the_image_puller_configs_proxy() {
    let TlsRegistry {
        key,
        registry: _registry,
        work,
        reference,
    } = tls_registry("proxied/app", RegistrySetup::default());
    let (proxy, tunnels) = connect_proxy().await;
    let ca = key.cert.pem();
    let pull = |extra_env: String| {
        let reference = reference.clone();
        let root = work.path().join(format!("rootfs-{}", extra_env.len()));
        let toml = format!("[registries.\".\"]\nca-certs = '''\n{ca}'''\n[extra-env]\n{extra_env}");
        async move {
            std::fs::create_dir_all(&root).unwrap();
            let config = contrast_registry::PullerConfig::parse(&toml, "imagepuller.toml")?;
            Resolver::new(ResolverOptions {
                puller_config: Some(config),
                ..ResolverOptions::default()
            })?
            .pull(&reference, &root)
            .await
            .map(|_| root)
        }
    };

    let root = pull(format!("HTTPS_PROXY = \"{proxy}\"\n")).await.unwrap();
    assert_eq!(read(&root, "etc/b").as_deref(), Some("b"));
    let through = tunnels.load(std::sync::atomic::Ordering::SeqCst);
    assert!(through >= 1, "the pull did not use the proxy");

    pull(format!(
        "HTTPS_PROXY = \"{proxy}\"\nNO_PROXY = \"127.0.0.1\"\n"
    ))
    .await
    .unwrap();
    assert_eq!(
        tunnels.load(std::sync::atomic::Ordering::SeqCst),
        through,
        "NO_PROXY still went through the proxy"
    );

    let closed = format!(
        "http://127.0.0.1:{}",
        contrast_testkit::registry::free_port()
    );
    let err = pull(format!("HTTPS_PROXY = \"{closed}\"\n"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connection { .. }), "{err}");
}

/// Layer sizes for pod memory: the manifest's (compressed) and the tar stream's, measured
/// by pulling each layer once; then they come from the cache, also offline.
#[tokio::test]
async fn layer_sizes_are_measured_then_read_from_the_cache() {
    let mut registry = Registry::start(RegistrySetup::default());
    let work = tempfile::tempdir().unwrap();
    let tars = [
        base(),
        Tar::new().file("bin/app", &"x".repeat(100_000)).build(),
    ];
    let image = LayeredImage::new("{}", &tars);
    let reference = image.push(&registry, work.path(), "guest/sized", "v1");
    let cache = work.path().join("layers-cache.json");
    let docker_config = tempfile::tempdir().unwrap();
    let host = registry.host();
    let options = |offline: bool| ResolverOptions {
        insecure_registries: vec![host.clone()],
        docker_config_dir: Some(docker_config.path().to_owned()),
        cache_path: Some(cache.clone()),
        offline,
        ..ResolverOptions::default()
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let online = Resolver::new(options(false)).unwrap();
    let resolved = online.resolve(&reference).await.unwrap();
    let sizes = online.layer_sizes(&reference, &resolved).await.unwrap();
    let expected: Vec<(u64, u64)> = image
        .layers
        .iter()
        .zip(&tars)
        .map(|(blob, tar)| (blob.len() as u64, tar.len() as u64))
        .collect();
    let measured: Vec<(u64, u64)> = sizes
        .iter()
        .map(|s| (s.compressed, s.uncompressed))
        .collect();
    assert_eq!(measured, expected);
    online.save_cache().unwrap();

    registry.stop();
    let offline = Resolver::new(options(true)).unwrap();
    let resolved = offline.resolve(&reference).await.unwrap();
    assert_eq!(
        offline.layer_sizes(&reference, &resolved).await.unwrap(),
        sizes
    );
    // An image whose layer sizes were never measured: offline, that is an error naming it.
    let other = LayeredImage::new("{}", &[Tar::new().file("a", "a").build()]);
    let mut unmeasured = resolved.clone();
    unmeasured.layers[0].digest = contrast_testkit::registry::sha256(&other.layers[0]);
    let err = offline
        .layer_sizes(&reference, &unmeasured)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotCached { .. }), "{err}");
    assert!(err.to_string().contains("the size of its layer"), "{err}");
}
