//! The initializer (docs/protocol.md §11.1, §4.3): the first init container of every
//! confidential pod. It makes a fresh P-256 key, attests the Coordinator and proves the
//! pod to it over mutual aTLS (the evidence carries the pod's policy hash), and writes
//! what the Coordinator returns where the pod's containers read it:
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
//!
//! # Which Coordinator
//!
//! Whatever answers at `COORDINATOR_HOST` is chosen by the host, so the Initializer
//! trusts only the Coordinator the pod's initdata names: `contrast generate` puts the
//! Coordinator's policy hashes and reference values into every workload's initdata
//! (`[data]."contrast-coordinator.json"`, a manifest document with only those). The
//! Initializer reads the initdata document, checks that its digest is the HOST_DATA /
//! MRCONFIGID of its own fresh evidence (so a file the host swapped is refused, wherever
//! it was read from), and dials with the validator `contrast set` uses. A server that is
//! not that Coordinator fails the handshake before the Initializer sends its evidence or
//! reads an answer, and nothing is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contrast_api::meshapi::mesh_api_client::MeshApiClient;
use contrast_api::meshapi::{NewMeshCertRequest, NewMeshCertResponse};
use contrast_atls::{AtlsError, ClientOptions, ReferenceValidator, ValidatorSet, Verifiers};
use contrast_atomic_file::write_creating_dir;
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::EvidenceIssuer;
use contrast_initdata_check::{CheckError, InitdataSource};
use contrast_manifest::{COORDINATOR_INITDATA_KEY, Manifest};
use zeroize::Zeroizing;

/// Where the guest's initdata check leaves the verified initdata document.
pub const DEFAULT_INITDATA_PATH: &str = contrast_initdata_check::DEFAULT_INITDATA_OUT;

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum InitializerError {
    /// The initdata could not be read, or this VM's evidence does not bind it.
    #[error(
        "the pod's initdata {path} cannot be trusted, so the Coordinator cannot be checked \
         (CONTRAST_INITDATA names the file the guest's initdata check verified)"
    )]
    Initdata {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        source: CheckError,
    },
    /// The initdata names no Coordinator.
    #[error(
        "the pod's initdata has no [data].\"{COORDINATOR_INITDATA_KEY}\" entry, so it names no \
         Coordinator to trust: run contrast generate over the Coordinator's YAML together \
         with the workloads"
    )]
    NoCoordinatorEntry,
    /// The initdata's Coordinator entry is unusable.
    #[error(
        "the pod's initdata entry [data].\"{COORDINATOR_INITDATA_KEY}\" {problem}: regenerate \
         the workload with contrast generate"
    )]
    CoordinatorEntry {
        /// What is wrong with it.
        problem: String,
    },
    /// The server is not the Coordinator the initdata names.
    #[error(
        "refusing the Coordinator at {addr}: it is not the Coordinator the pod's initdata \
         names (policy {policies}); nothing was sent to it or written"
    )]
    Untrusted {
        /// The mesh API address.
        addr: String,
        /// The Coordinator policy hashes the initdata names, comma-separated.
        policies: String,
        /// Why the handshake refused it.
        #[source]
        source: AtlsError,
    },
    /// The aTLS connection failed (the Coordinator is not reachable yet).
    #[error("connecting to the Coordinator at {addr}")]
    Connect {
        /// The mesh API address.
        addr: String,
        /// What failed.
        #[source]
        source: AtlsError,
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
    /// A file could not be written (the step and the path; the I/O error is its source).
    #[error(transparent)]
    Write(#[from] contrast_atomic_file::WriteError),
    /// The key could not be made.
    #[error("generating the workload key: {0}")]
    Key(String),
}

impl InitializerError {
    /// The error and its causes in one line, for the log.
    pub fn one_line(&self) -> String {
        contrast_platforms::error_chain(self).replace(['\n', '\r'], "; ")
    }
}

/// The Coordinator a pod trusts: the validator of the Coordinator its initdata names.
#[derive(Debug, Clone)]
pub struct TrustedCoordinator {
    validators: ValidatorSet,
    policies: String,
}

impl TrustedCoordinator {
    /// Reads the initdata at `path`, checks that its digest is the host data of fresh
    /// evidence from `evidence` (this VM's launch measured it), and returns the validator
    /// of the Coordinator its `[data]."contrast-coordinator.json"` entry names.
    pub fn from_initdata(
        path: &Path,
        evidence: &dyn EvidenceIssuer,
        verifiers: Verifiers,
    ) -> Result<Self, InitializerError> {
        let verified =
            contrast_initdata_check::verify(&InitdataSource::File(path.to_path_buf()), evidence)
                .map_err(|source| InitializerError::Initdata {
                    path: path.display().to_string(),
                    source,
                })?;
        let entry = verified
            .initdata
            .data()
            .get(COORDINATOR_INITDATA_KEY)
            .ok_or(InitializerError::NoCoordinatorEntry)?;
        Self::from_entry(entry, verifiers)
    }

    /// The validator for a `contrast-coordinator.json` entry (already bound by the
    /// initdata's digest).
    pub fn from_entry(entry: &str, verifiers: Verifiers) -> Result<Self, InitializerError> {
        let manifest =
            Manifest::decode(entry.as_bytes()).map_err(|e| InitializerError::CoordinatorEntry {
                problem: format!("is not a manifest document ({e})"),
            })?;
        let validator =
            ReferenceValidator::for_coordinator(verifiers, &manifest).ok_or_else(|| {
                InitializerError::CoordinatorEntry {
                    problem: "names no policy with role coordinator".to_owned(),
                }
            })?;
        if manifest.reference_values.snp.is_empty() && manifest.reference_values.tdx.is_empty() {
            return Err(InitializerError::CoordinatorEntry {
                problem: "has no reference values".to_owned(),
            });
        }
        let policies = manifest
            .coordinator_policy_hashes()
            .map(|h| h.as_str().to_owned())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(TrustedCoordinator {
            validators: ValidatorSet::new(vec![Arc::new(validator)]),
            policies,
        })
    }
}

/// What the Initializer dials with.
#[derive(Clone)]
pub struct Client {
    /// The mesh API address (`host:7777`).
    pub addr: String,
    /// The initdata document the guest's initdata check verified.
    pub initdata: PathBuf,
    /// This VM's evidence: for the initdata's binding and for mutual aTLS.
    pub evidence: Arc<dyn EvidenceIssuer>,
    /// The roots the Coordinator's evidence is checked against.
    pub verifiers: Verifiers,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("initdata", &self.initdata)
            .field("evidence", &self.evidence.name())
            .finish_non_exhaustive()
    }
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

impl Client {
    /// One attempt: check the initdata, attest the Coordinator it names while proving
    /// the pod, ask for a certificate.
    pub async fn request_certificate(
        &self,
        key: &WorkloadKey,
    ) -> Result<NewMeshCertResponse, InitializerError> {
        let coordinator = TrustedCoordinator::from_initdata(
            &self.initdata,
            self.evidence.as_ref(),
            self.verifiers.clone(),
        )?;
        let options = ClientOptions::new(coordinator.validators)
            .with_issuer(Arc::new(DocumentIssuer::new(self.evidence.clone())))
            .with_client_key(key.der());
        let (channel, _) = contrast_atls::grpc::channel(&self.addr, options)
            .await
            .map_err(|source| {
                let addr = self.addr.clone();
                if matches!(source, AtlsError::Io(_) | AtlsError::Timeout { .. }) {
                    InitializerError::Connect { addr, source }
                } else {
                    InitializerError::Untrusted {
                        addr,
                        policies: coordinator.policies.clone(),
                        source,
                    }
                }
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

    /// Retries [`Client::request_certificate`] every `interval` until it succeeds,
    /// logging each failure in one line.
    pub async fn obtain_certificate(
        &self,
        key: &WorkloadKey,
        interval: Duration,
    ) -> NewMeshCertResponse {
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match self.request_certificate(key).await {
                Ok(response) => {
                    tracing::info!(attempt, "received the workload certificate");
                    return response;
                }
                Err(e) => {
                    tracing::warn!(attempt, retry_in = ?interval, "{}", e.one_line());
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }
}

/// Writes the done marker (last, after the files and any encrypted mount).
pub fn write_done(layout: &Layout) -> Result<(), InitializerError> {
    write_creating_dir(&layout.done, b"", 0o644).map_err(InitializerError::from)
}

/// Writes the response's files (not the done marker).
pub fn write_files(
    layout: &Layout,
    key: &WorkloadKey,
    response: &NewMeshCertResponse,
) -> Result<(), InitializerError> {
    write_creating_dir(&layout.tls("mesh-ca.pem"), &response.mesh_ca_cert, 0o444)?;
    write_creating_dir(&layout.tls("certChain.pem"), &response.cert_chain, 0o444)?;
    write_creating_dir(&layout.tls("key.pem"), key.pkcs8_pem().as_bytes(), 0o400)?;
    write_creating_dir(
        &layout.tls("coordinator-root-ca.pem"),
        &response.root_ca_cert,
        0o444,
    )?;
    if !response.workload_secret.is_empty() {
        let hex = Zeroizing::new(hex::encode(&response.workload_secret));
        write_creating_dir(
            &layout.secret("workload-secret-seed"),
            hex.as_bytes(),
            0o400,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_entry_refusals_name_the_entry_and_what_is_missing() {
        let refused = |entry: &str| {
            TrustedCoordinator::from_entry(entry, Verifiers::real())
                .unwrap_err()
                .to_string()
        };
        let not_json = refused("{");
        assert!(not_json.contains("contrast-coordinator.json"), "{not_json}");
        assert!(not_json.contains("not a manifest document"), "{not_json}");

        let mut manifest = Manifest::default();
        let no_policy = refused(&String::from_utf8(manifest.encode()).unwrap());
        assert!(
            no_policy.contains("no policy with role coordinator"),
            "{no_policy}"
        );

        manifest.policies.insert(
            contrast_manifest::HexString::from_bytes(&[7; 32]),
            contrast_manifest::PolicyEntry {
                role: contrast_manifest::ROLE_COORDINATOR.to_owned(),
                ..Default::default()
            },
        );
        let trust = manifest.coordinator_trust().unwrap();
        let no_values = refused(&String::from_utf8(trust.encode()).unwrap());
        assert!(no_values.contains("has no reference values"), "{no_values}");
    }

    #[test]
    fn one_line_has_every_cause_and_no_line_break() {
        let e = InitializerError::Untrusted {
            addr: "10.0.0.1:7777".to_owned(),
            policies: "ab".to_owned(),
            source: AtlsError::Refused {
                nonce_hex: "00".to_owned(),
                reasons: vec!["HOST_DATA differs".to_owned(), "second".to_owned()],
                policy_mismatch: true,
            },
        };
        let line = e.one_line();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("refusing the Coordinator at 10.0.0.1:7777"),
            "{line}"
        );
        assert!(line.contains("HOST_DATA differs; second"), "{line}");
    }

    #[test]
    fn mesh_address_adds_the_mesh_port_when_missing() {
        assert_eq!(mesh_address("coordinator-ready"), "coordinator-ready:7777");
        assert_eq!(mesh_address("10.0.0.1:7000"), "10.0.0.1:7000");
        assert_eq!(mesh_address("[::1]"), "[::1]:7777");
    }
}
