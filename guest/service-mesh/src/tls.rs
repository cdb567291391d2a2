//! The TLS configurations built from the files the Initializer writes
//! (docs/protocol.md §4.3): `mesh-ca.pem` is the only trust anchor, `certChain.pem`
//! (leaf, then intermediate) and `key.pem` are the workload's identity, presented on both
//! sides.
//!
//! Peer verification is what Contrast's Envoy configuration does: the peer's chain must
//! lead to the mesh CA (webpki path building, validity, key usage for the side); names are
//! not checked. Envoy's upstream TLS context has only a trusted CA and no SAN matcher, and
//! Contrast treats DNS as untrusted (the default SANs contain `*`): the identity the mesh
//! proves is "holds a certificate of this manifest generation". Workload certificates of
//! another generation chain to the same root but not to this mesh CA, and are refused.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use zeroize::Zeroizing;

/// Directory the Initializer writes the mesh credentials to.
pub const DEFAULT_TLS_DIR: &str = "/contrast/tls-config";
/// File name of the mesh CA certificate.
pub const MESH_CA_FILE: &str = "mesh-ca.pem";
/// File name of the workload certificate chain.
pub const CERT_CHAIN_FILE: &str = "certChain.pem";
/// File name of the workload private key.
pub const KEY_FILE: &str = "key.pem";

/// Where the three credential files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The mesh CA certificate (PEM), the only trust anchor.
    pub mesh_ca: PathBuf,
    /// The workload certificate chain (PEM), leaf first.
    pub cert_chain: PathBuf,
    /// The workload private key (PEM).
    pub key: PathBuf,
}

impl TlsPaths {
    /// The Initializer's file names inside `dir`.
    pub fn in_dir(dir: &Path) -> TlsPaths {
        TlsPaths {
            mesh_ca: dir.join(MESH_CA_FILE),
            cert_chain: dir.join(CERT_CHAIN_FILE),
            key: dir.join(KEY_FILE),
        }
    }
}

/// Why the credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error(
        "reading {path}; the Initializer writes it (is the contrast-secrets volume \
         mounted and did the Initializer finish?)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM block of the expected kind.
    #[error("{file}: {reason}")]
    Pem {
        /// Which file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The private key cannot be used for signing.
    #[error("{KEY_FILE}: the private key cannot be used: {reason}")]
    Key {
        /// The library's words.
        reason: String,
    },
    /// The private key does not belong to the leaf certificate.
    #[error(
        "{KEY_FILE} is not the key of the first certificate in {CERT_CHAIN_FILE} ({reason}); \
         both must come from the same Initializer run"
    )]
    KeyMismatch {
        /// The library's words.
        reason: String,
    },
    /// A mesh CA certificate cannot be a trust anchor.
    #[error("{MESH_CA_FILE}: certificate {index} cannot be used as a trust anchor: {reason}")]
    TrustAnchor {
        /// Position in the file, from 1.
        index: usize,
        /// The library's words.
        reason: String,
    },
    /// The workload certificate does not chain to the mesh CA (or has expired), so every
    /// peer would refuse it.
    #[error(
        "{CERT_CHAIN_FILE} does not chain to {MESH_CA_FILE} ({reason}); peers would refuse \
         this certificate — are the files from the same manifest generation?"
    )]
    NotFromMeshCa {
        /// The library's words.
        reason: String,
    },
    /// rustls refused to build a configuration.
    #[error("building the {what} TLS configuration: {reason}")]
    Config {
        /// Which configuration.
        what: &'static str,
        /// The library's words.
        reason: String,
    },
}

/// Whether an ingress listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A mesh client certificate is required.
    Required,
    /// A client certificate is requested and verified if presented, not required (Envoy's
    /// `require_client_certificate: false` with a validation context).
    Optional,
}

/// The TLS configurations of one set of credentials: both ingress server configurations
/// and the egress client configuration.
#[derive(Clone)]
pub struct MeshTls {
    mtls_server: Arc<ServerConfig>,
    tls_server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    leaf: CertificateDer<'static>,
}

impl fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshTls")
            .field("leaf_der_len", &self.leaf.len())
            .finish_non_exhaustive()
    }
}

impl MeshTls {
    /// Reads and checks the three files.
    pub fn load(paths: &TlsPaths) -> Result<MeshTls, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let mesh_ca = read(&paths.mesh_ca)?;
        let cert_chain = read(&paths.cert_chain)?;
        let key = Zeroizing::new(read(&paths.key)?);
        MeshTls::from_pem(&mesh_ca, &cert_chain, &key)
    }

    /// Builds the configurations from the files' contents.
    ///
    /// Checks that the key belongs to the leaf and that the chain leads to the mesh CA now
    /// (a certificate every peer would refuse is an error here, not a failure per peer).
    pub fn from_pem(
        mesh_ca_pem: &[u8],
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<MeshTls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

        let roots = Arc::new(trust_anchors(mesh_ca_pem)?);
        let chain = certificates(cert_chain_pem, CERT_CHAIN_FILE)?;
        let key =
            Zeroizing::new(
                PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
                    file: KEY_FILE,
                    reason: format!("no private key: {e}"),
                })?,
            );
        // Borrowing loader: the only copy of the key DER stays in the zeroizing wrapper.
        let signing_key =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| {
                TlsError::Key {
                    reason: e.to_string(),
                }
            })?;
        let certified = CertifiedKey::new(chain.clone(), signing_key);
        certified.keys_match().map_err(|e| TlsError::KeyMismatch {
            reason: e.to_string(),
        })?;
        let certified = Arc::new(certified);

        let algorithms = provider.signature_verification_algorithms;
        let leaf = chain.first().cloned().ok_or(TlsError::Pem {
            file: CERT_CHAIN_FILE,
            reason: "no certificate".into(),
        })?;
        let parsed = ParsedCertificate::try_from(&leaf).map_err(|e| TlsError::NotFromMeshCa {
            reason: e.to_string(),
        })?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            chain.get(1..).unwrap_or_default(),
            UnixTime::now(),
            algorithms.all,
        )
        .map_err(|e| TlsError::NotFromMeshCa {
            reason: e.to_string(),
        })?;

        let server = |client_auth: ClientAuth| -> Result<Arc<ServerConfig>, TlsError> {
            let what = match client_auth {
                ClientAuth::Required => "ingress (client certificate required)",
                ClientAuth::Optional => "ingress (client certificate optional)",
            };
            let config_error = |reason: String| TlsError::Config { what, reason };
            let builder =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let builder = match client_auth {
                ClientAuth::Required => builder,
                ClientAuth::Optional => builder.allow_unauthenticated(),
            };
            let verifier = builder.build().map_err(|e| config_error(e.to_string()))?;
            let config = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| config_error(e.to_string()))?
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));
            Ok(Arc::new(config))
        };
        let mtls_server = server(ClientAuth::Required)?;
        let tls_server = server(ClientAuth::Optional)?;

        let verifier = Arc::new(MeshServerVerifier { roots, algorithms });
        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config {
                what: "egress",
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        // Envoy's upstream context sets no SNI; the peer proxy does not look at it.
        client.enable_sni = false;

        Ok(MeshTls {
            mtls_server,
            tls_server,
            client: Arc::new(client),
            leaf,
        })
    }

    /// The server configuration for an ingress listener.
    pub fn server_config(&self, client_auth: ClientAuth) -> Arc<ServerConfig> {
        match client_auth {
            ClientAuth::Required => self.mtls_server.clone(),
            ClientAuth::Optional => self.tls_server.clone(),
        }
    }

    /// The client configuration for egress connections: the workload certificate as client
    /// certificate, the mesh CA as the only trust anchor, no name check, no SNI.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// The workload (leaf) certificate presented to peers.
    pub fn leaf_certificate(&self) -> &CertificateDer<'static> {
        &self.leaf
    }
}

fn certificates(pem: &[u8], file: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            file,
            reason: format!("unreadable PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            file,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn trust_anchors(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in certificates(pem, MESH_CA_FILE)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsError::TrustAnchor {
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Server verification for egress: the chain must lead to the mesh CA; the name is not
/// checked (see the module documentation).
#[derive(Debug)]
struct MeshServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
