//! A fake node for the installer: a temporary host root, the installer image's files,
//! a command recorder instead of systemd, a small HTTP server, and containerd 1.6 itself
//! as the oracle for every configuration we write.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use contrast_platforms::{Platform, RuntimeHandler};
use contrast_runtime_installer::config::FileSpec;
use contrast_runtime_installer::{
    CommandOutput, CommandRunner, HostRoot, InstallConfig, Installation, TargetConfig,
};
use toml_edit::{DocumentMut, Item};

/// The installer image's files and the host root they go to.
pub(crate) struct FakeNode {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) host: PathBuf,
    pub(crate) image: PathBuf,
}

impl FakeNode {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        let image = dir.path().join("image");
        fs::create_dir_all(&host).unwrap();
        fs::create_dir_all(&image).unwrap();
        FakeNode { dir, host, image }
    }

    /// Puts `content` into the installer image as `name`; returns its file URL.
    pub(crate) fn image_file(&self, name: &str, content: &[u8]) -> String {
        let path = self.image.join(name);
        fs::write(&path, content).unwrap();
        format!("file://{}", path.display())
    }

    /// Writes a host file (creating directories).
    pub(crate) fn host_file(&self, host_path: &str, content: &str) -> PathBuf {
        let path = self.local(host_path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    pub(crate) fn local(&self, host_path: &str) -> PathBuf {
        self.host.join(host_path.trim_start_matches('/'))
    }

    pub(crate) fn installation(&self, platform: Platform, files: Vec<FileSpec>) -> Installation {
        Installation {
            platform,
            handler: handler(platform),
            host_root: HostRoot::new(&self.host),
            config: InstallConfig {
                files,
                qemu_extra_kernel_params: None,
                debug_runtime: false,
            },
            target: TargetConfig::defaults(platform),
            kernel_params: None,
            snp_id_block: None,
            imagepuller_config: None,
            dry_run: false,
        }
    }

    /// Inode, modification time and size of every file under the host root.
    pub(crate) fn snapshot(&self) -> BTreeMap<PathBuf, (u64, i64, i64, u64)> {
        let mut out = BTreeMap::new();
        walk(&self.host, &mut |path| {
            let m = fs::symlink_metadata(path).unwrap();
            out.insert(
                path.to_path_buf(),
                (m.ino(), m.mtime(), m.mtime_nsec(), m.size()),
            );
        });
        out
    }

    /// Every file under the host root, relative.
    pub(crate) fn host_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.host, &mut |path| {
            out.push(path.strip_prefix(&self.host).unwrap().display().to_string())
        });
        out.sort();
        out
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

pub(crate) fn handler(platform: Platform) -> RuntimeHandler {
    let mut digest = [0u8; 32];
    digest[..4].copy_from_slice(&[0x1a, 0x2b, 0x3c, 0x4d]);
    RuntimeHandler::new(platform, &digest)
}

pub(crate) fn sri(algorithm: &'static digest::Algorithm, content: &[u8]) -> String {
    let name = if algorithm == &digest::SHA256 {
        "sha256"
    } else if algorithm == &digest::SHA384 {
        "sha384"
    } else {
        "sha512"
    };
    format!(
        "{name}-{}",
        BASE64.encode(digest::digest(algorithm, content).as_ref())
    )
}

pub(crate) fn spec(url: &str, path: &str, executable: bool, integrity: Option<String>) -> FileSpec {
    FileSpec {
        url: url.to_owned(),
        path: path.to_owned(),
        executable,
        integrity,
    }
}

/// Records host commands; answers `systemctl show --property=LoadState` from `loaded`.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) commands: Vec<String>,
    pub(crate) loaded: Vec<String>,
}

impl Recorder {
    pub(crate) fn restarts(&self) -> Vec<String> {
        self.commands
            .iter()
            .filter(|c| c.contains("systemctl restart"))
            .cloned()
            .collect()
    }
}

impl CommandRunner for Recorder {
    fn run(&mut self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
        self.commands.push(format!("{program} {}", args.join(" ")));
        let unit = args.last().copied().unwrap_or_default().to_owned();
        let stdout = if args.contains(&"show") {
            if self.loaded.contains(&unit) {
                "loaded\n".to_owned()
            } else {
                "not-found\n".to_owned()
            }
        } else {
            String::new()
        };
        Ok(CommandOutput {
            success: true,
            stdout,
            stderr: String::new(),
        })
    }
}

/// Serves fixed bodies on 127.0.0.1 until the test ends: path → (status, body).
pub(crate) fn http_server(routes: Vec<(&'static str, u16, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let routes = Arc::clone(&routes);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("/");
                let (status, body) = routes
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map(|(_, s, b)| (*s, b.clone()))
                    .unwrap_or((404, b"not found".to_vec()));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    format!("http://{addr}")
}

/// `containerd --config <file> config dump` from the Debian package (containerd 1.6.20):
/// containerd's own reading of the file. It drops unknown keys silently, so a key we
/// wrote that is missing here is a key containerd would never see.
pub(crate) fn containerd_dump(config: &Path) -> DocumentMut {
    let binary = Path::new("/usr/bin/containerd");
    assert!(
        binary.exists(),
        "/usr/bin/containerd is missing: these tests check every containerd configuration \
         with the real containerd; install the Debian package `containerd` \
         (cargo xtask test does)"
    );
    let output = Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "containerd refused {}: {}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().parse().unwrap()
}

pub(crate) fn runtime<'a>(doc: &'a DocumentMut, plugin: &str, name: &str) -> &'a Item {
    doc.get("plugins")
        .and_then(|p| p.get(plugin))
        .and_then(|p| p.get("containerd"))
        .and_then(|p| p.get("runtimes"))
        .and_then(|p| p.get(name))
        .unwrap_or_else(|| panic!("runtime {name} missing under {plugin}:\n{doc}"))
}

pub(crate) fn strings(item: &Item) -> Vec<String> {
    item.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Asserts the runtime entry of `handler` (with base dir and Kata configuration file) is
/// in `doc` under `plugin`, and runc too.
pub(crate) fn assert_runtime(doc: &DocumentMut, plugin: &str, handler: &str, kata_file: &str) {
    let base = format!("/opt/edgeless/{handler}");
    let ours = runtime(doc, plugin, handler);
    // Version 3 (containerd 2) names the runtime; version 2 names the shim's path, which
    // containerd 1.6 runs (it ignores runtime_path).
    let runtime_type = if plugin == "io.containerd.cri.v1.runtime" {
        "io.containerd.contrast-cc.v2".to_owned()
    } else {
        format!("{base}/bin/containerd-shim-contrast-cc-v2")
    };
    assert_eq!(ours["runtime_type"].as_str(), Some(runtime_type.as_str()));
    assert_eq!(
        ours["runtime_path"].as_str(),
        Some(format!("{base}/bin/containerd-shim-contrast-cc-v2").as_str())
    );
    assert_eq!(strings(&ours["pod_annotations"]), ["io.katacontainers.*"]);
    assert_eq!(
        ours["privileged_without_host_devices"].as_bool(),
        Some(true)
    );
    assert_eq!(
        ours["options"]["ConfigPath"].as_str(),
        Some(format!("{base}/etc/{kata_file}").as_str())
    );
    assert_eq!(
        runtime(doc, plugin, "runc")["runtime_type"].as_str(),
        Some("io.containerd.runc.v2")
    );
}

pub(crate) const CRI_V2: &str = "io.containerd.grpc.v1.cri";
pub(crate) const CRI_V3: &str = "io.containerd.cri.v1.runtime";
