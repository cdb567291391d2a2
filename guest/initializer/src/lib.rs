//! The initializer (contrast-protocol.md §10.1, §4.4): the first init container of every
//! confidential pod. It makes a fresh P-256 key, proves the pod to the Coordinator over
//! mutual aTLS (the evidence carries the pod's policy hash), and writes what the
//! Coordinator returns where the pod's containers read it:
//!
//! | path (under the shared volume) | mode | content |
//! |---|---|---|
//! | `tls-config/mesh-ca.pem` | 0444 | the mesh CA certificate |
//! | `tls-config/certChain.pem` | 0444 | the workload certificate, then the intermediate CA |
//! | `tls-config/key.pem` | 0400 | the workload key, PKCS#8 PEM |
//! | `tls-config/coordinator-root-ca.pem` | 0444 | the root CA certificate |
//! | `secrets/workload-secret-seed` | 0400 | the workload secret, lowercase hex (if the policy has a secret ID) |
//!
//! then the done marker (0644). Every file is written atomically (temporary file in the
//! same directory, fsync, rename, fsync the directory), so a container never reads half a
//! certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contrast_api::meshapi::mesh_api_client::MeshApiClient;
use contrast_api::meshapi::{NewMeshCertRequest, NewMeshCertResponse};
use contrast_atls::{ClientOptions, Issuer, ValidatorSet};
use zeroize::Zeroizing;

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum InitializerError {
    /// The aTLS connection failed.
    #[error("connecting to the Coordinator at {addr}: {source}")]
    Connect {
        /// The mesh API address.
        addr: String,
        /// What failed.
        source: contrast_atls::AtlsError,
    },
    /// The Coordinator refused or failed the request.
    #[error("the Coordinator answered {code:?}: {message}")]
    Refused {
        /// The gRPC code.
        code: tonic::Code,
        /// Its message (for a refused attestation: what differs).
        message: String,
    },
    /// The answer lacks something.
    #[error("the Coordinator's answer has no {0}")]
    Incomplete(&'static str),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key could not be made.
    #[error("generating the workload key: {0}")]
    Key(String),
}

/// Where the files go.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The shared volume (`/contrast`).
    pub root: PathBuf,
    /// The done marker (`/done`).
    pub done: PathBuf,
}

impl Layout {
    /// `tls-config/<name>` in the volume.
    pub fn tls(&self, name: &str) -> PathBuf {
        self.root.join("tls-config").join(name)
    }

    /// `secrets/<name>` in the volume.
    pub fn secret(&self, name: &str) -> PathBuf {
        self.root.join("secrets").join(name)
    }
}

/// The mesh API address for `COORDINATOR_HOST` (a host, or host:port).
pub fn mesh_address(host: &str) -> String {
    if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        && !host.ends_with(']')
    {
        host.to_string()
    } else {
        format!("{host}:{}", contrast_api::ports::MESH_API)
    }
}

/// A workload key: P-256, generated in the pod, never leaves it.
pub struct WorkloadKey {
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkloadKey(P-256)")
    }
}

impl WorkloadKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, InitializerError> {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|key| WorkloadKey { key })
            .map_err(|e| InitializerError::Key(e.to_string()))
    }

    fn pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    fn der(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        rustls::pki_types::PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }
}

/// One attempt: attest, ask for a certificate.
pub async fn request_certificate(
    addr: &str,
    key: &WorkloadKey,
    issuer: Arc<dyn Issuer>,
) -> Result<NewMeshCertResponse, InitializerError> {
    // The Initializer does not check the Coordinator: it only proves itself, and what it
    // receives is useless to anyone but the holder of its key.
    let options = ClientOptions::new(ValidatorSet::none())
        .with_issuer(issuer)
        .with_client_key(key.der());
    let (channel, _) = contrast_atls::grpc::channel(addr, options)
        .await
        .map_err(|source| InitializerError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let response = MeshApiClient::new(channel)
        .new_mesh_cert(NewMeshCertRequest {})
        .await
        .map_err(|status| InitializerError::Refused {
            code: status.code(),
            message: status.message().to_string(),
        })?
        .into_inner();
    if response.cert_chain.is_empty() {
        return Err(InitializerError::Incomplete("certificate chain"));
    }
    if response.mesh_ca_cert.is_empty() {
        return Err(InitializerError::Incomplete("mesh CA certificate"));
    }
    if response.root_ca_cert.is_empty() {
        return Err(InitializerError::Incomplete("root CA certificate"));
    }
    Ok(response)
}

/// Retries [`request_certificate`] every `interval` until it succeeds, logging each
/// failure in one line.
pub async fn obtain_certificate(
    addr: &str,
    key: &WorkloadKey,
    issuer: Arc<dyn Issuer>,
    interval: Duration,
) -> NewMeshCertResponse {
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match request_certificate(addr, key, issuer.clone()).await {
            Ok(response) => {
                tracing::info!(attempt, "received the workload certificate");
                return response;
            }
            Err(e) => {
                tracing::warn!(attempt, retry_in = ?interval, "{e}");
                tokio::time::sleep(interval).await;
            }
        }
    }
}

/// Writes the done marker (last, after the files and any encrypted mount).
pub fn write_done(layout: &Layout) -> Result<(), InitializerError> {
    write_atomic(&layout.done, b"", 0o644)
}

/// Writes the response's files (not the done marker).
pub fn write_files(
    layout: &Layout,
    key: &WorkloadKey,
    response: &NewMeshCertResponse,
) -> Result<(), InitializerError> {
    write_atomic(&layout.tls("mesh-ca.pem"), &response.mesh_ca_cert, 0o444)?;
    write_atomic(&layout.tls("certChain.pem"), &response.cert_chain, 0o444)?;
    write_atomic(&layout.tls("key.pem"), key.pkcs8_pem().as_bytes(), 0o400)?;
    write_atomic(
        &layout.tls("coordinator-root-ca.pem"),
        &response.root_ca_cert,
        0o444,
    )?;
    if !response.workload_secret.is_empty() {
        let hex = Zeroizing::new(hex::encode(&response.workload_secret));
        write_atomic(
            &layout.secret("workload-secret-seed"),
            hex.as_bytes(),
            0o400,
        )?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with `mode` so that readers see the old file or the whole new
/// one (the project's one atomic write), creating the directory first.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InitializerError> {
    let error = |source| InitializerError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    contrast_seedengine::keys::write_file_atomic(path, bytes, mode)
        .map_err(|e| error(std::io::Error::other(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_concurrent_reader_sees_the_old_or_the_whole_new_file_never_a_part() {
        let dir = std::env::temp_dir().join(format!("initializer-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("certChain.pem");
        let versions: Vec<Vec<u8>> = (0..50u8).map(|i| vec![b'a' + i % 26; 256 * 1024]).collect();
        write_atomic(&path, &versions[0], 0o444).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let content = std::fs::read(&path).unwrap();
                    assert_eq!(content.len(), 256 * 1024, "a partial file was visible");
                    assert!(content.iter().all(|b| *b == content[0]), "mixed content");
                    reads += 1;
                }
                reads
            })
        };
        for version in &versions[1..] {
            write_atomic(&path, version, 0o444).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mesh_address_adds_the_mesh_port_when_missing() {
        assert_eq!(mesh_address("coordinator-ready"), "coordinator-ready:7777");
        assert_eq!(mesh_address("10.0.0.1:7000"), "10.0.0.1:7000");
        assert_eq!(mesh_address("[::1]"), "[::1]:7777");
    }

    #[test]
    fn atomic_writes_set_the_mode_and_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("initializer-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("key.pem");
        write_atomic(&path, b"first", 0o400).unwrap();
        write_atomic(&path, b"second", 0o400).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        let names: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("key.pem")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
