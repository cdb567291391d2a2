//! The dialing side: sends its nonce in ALPN, checks the server's evidence against it, and
//! answers a certificate request with its own key (and evidence, when it has an issuer)
//! bound to the server's nonce.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, ResolvesClientCert};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::cert;
use crate::issuer::Issuer;
use crate::key::TlsKey;
use crate::validator::{PeerAttestation, ValidatorSet};
use crate::{ALPN_H2, ALPN_NONCE_PREFIX, AtlsError, CLIENT_HANDSHAKE_TIMEOUT, NONCE_LEN};

/// How a client dials.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Checks the server's evidence; empty means the server is not attested (the
    /// initializer does not check the Coordinator, the Coordinator checks it).
    pub validators: ValidatorSet,
    /// Our evidence for the server (mutual aTLS), if any.
    pub issuer: Option<Arc<dyn Issuer>>,
    /// Our TLS key (workload owner key, seed share owner key, the initializer's key); a
    /// fresh P-256 key when `None`.
    pub client_key: Option<Arc<ClientKey>>,
    /// Limit for TCP connect plus handshake.
    pub timeout: Duration,
}

impl ClientOptions {
    /// Check the server with `validators`; no client evidence, a fresh key.
    pub fn new(validators: ValidatorSet) -> Self {
        ClientOptions {
            validators,
            issuer: None,
            client_key: None,
            timeout: CLIENT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Present `key` as our TLS key.
    pub fn with_client_key(mut self, key: PrivateKeyDer<'static>) -> Self {
        self.client_key = Some(Arc::new(ClientKey(key)));
        self
    }

    /// Attest ourselves with `issuer` when the server asks.
    pub fn with_issuer(mut self, issuer: Arc<dyn Issuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }
}

/// What a finished client handshake established about the server.
#[derive(Debug, Clone)]
pub struct ClientSession {
    /// The server's public key (SubjectPublicKeyInfo DER).
    pub server_public_key_der: Vec<u8>,
    /// The validator's verdict, when the server was attested.
    pub server_attestation: Option<PeerAttestation>,
}

/// Connects to `addr` and completes an aTLS handshake.
pub async fn connect(
    addr: &str,
    options: &ClientOptions,
) -> Result<(TlsStream<TcpStream>, ClientSession), AtlsError> {
    let provider = crate::provider();
    let nonce = crate::new_nonce()?;
    let verifier = Arc::new(ServerVerifier {
        validators: options.validators.clone(),
        nonce,
        signatures: HandshakeSignatures(provider.clone()),
        session: Mutex::new(None),
    });
    let resolver = Arc::new(ClientCertResolver::new(options)?);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_cert_resolver(resolver.clone());
    // Every connection is attested afresh: resuming would skip the evidence.
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![
        format!("{ALPN_NONCE_PREFIX}{}", hex::encode(nonce)).into_bytes(),
        ALPN_H2.to_vec(),
    ];
    let connector = TlsConnector::from(Arc::new(config));
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        // The name is not checked (aTLS authenticates by evidence, not by name).
        let name =
            ServerName::try_from("contrast-atls").map_err(|e| AtlsError::Nonce(e.to_string()))?;
        Ok::<_, AtlsError>(connector.connect(name, tcp).await?)
    };
    let result = match tokio::time::timeout(options.timeout, handshake).await {
        Ok(result) => result,
        Err(_) => {
            return Err(AtlsError::Timeout {
                peer: addr.to_string(),
                timeout: options.timeout,
            });
        }
    };
    let session = crate::lock(&verifier.session).take();
    let stream = match result {
        Ok(stream) => stream,
        // Prefer our own account of what went wrong over rustls's alert text: the
        // verifier's refusal travels in the error, the certificate resolver's (which
        // rustls gives no error channel) is kept beside it.
        Err(e) => {
            if let Some(ours) = crate::lock(&resolver.error).take() {
                return Err(ours);
            }
            return Err(e.or_verifier_refusal());
        }
    };
    match session {
        Some(session) => Ok((stream, session)),
        None => Err(AtlsError::Certificate(
            "the server presented no certificate".into(),
        )),
    }
}

/// Checks the server certificate against our nonce. A refusal goes to rustls as the typed
/// error ([`AtlsError::into_rustls`]); what an accepted certificate established is kept
/// for after the handshake.
#[derive(Debug)]
struct ServerVerifier {
    validators: ValidatorSet,
    nonce: [u8; NONCE_LEN],
    signatures: HandshakeSignatures,
    session: Mutex<Option<ClientSession>>,
}

impl ServerVerifier {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<ClientSession, AtlsError> {
        let peer = cert::parse_and_verify(end_entity, crate::unix_now())?;
        let server_attestation = if self.validators.is_empty() {
            None
        } else {
            let expected = crate::report_data(&peer.public_key_der, &self.nonce);
            Some(
                self.validators
                    .validate(&peer.documents, &expected, &self.nonce)?,
            )
        };
        Ok(ClientSession {
            server_public_key_der: peer.public_key_der,
            server_attestation,
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let session = self.check(end_entity).map_err(AtlsError::into_rustls)?;
        *crate::lock(&self.session) = Some(session);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// The handshake-signature checks both sides share: the peer's certificate key signs the
/// handshake transcript, checked with the provider's algorithms.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeSignatures(pub(crate) Arc<CryptoProvider>);

impl HandshakeSignatures {
    pub(crate) fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(crate) fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(crate) fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client's TLS key as given (DER): never printed, and zeroized when the last clone of
/// the options that hold it is dropped.
pub struct ClientKey(PrivateKeyDer<'static>);

impl Drop for ClientKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

/// Answers the server's certificate request: our key, with evidence bound to the nonce the
/// server put into the request's distinguished names.
#[derive(Debug)]
struct ClientCertResolver {
    key: TlsKey,
    issuer: Option<Arc<dyn Issuer>>,
    error: Mutex<Option<AtlsError>>,
}

impl ClientCertResolver {
    fn new(options: &ClientOptions) -> Result<Self, AtlsError> {
        let key = match &options.client_key {
            Some(key) => TlsKey::load(&key.0)?,
            None => TlsKey::generate()?,
        };
        Ok(ClientCertResolver {
            key,
            issuer: options.issuer.clone(),
            error: Mutex::new(None),
        })
    }

    fn certified_key(&self, root_hint_subjects: &[&[u8]]) -> Result<CertifiedKey, AtlsError> {
        let document = match &self.issuer {
            None => None,
            Some(issuer) => {
                let nonce = cert::nonce_from_names(root_hint_subjects).ok_or_else(|| {
                    AtlsError::Nonce(
                        "the server's certificate request carries no aTLS nonce; \
                         is it an aTLS server?"
                            .into(),
                    )
                })?;
                Some(issuer.issue(&crate::report_data(self.key.spki(), &nonce))?)
            }
        };
        let der = cert::build(&self.key, document)?;
        Ok(CertifiedKey::new(vec![der], self.key.signing_key()))
    }
}

impl ResolvesClientCert for ClientCertResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        match self.certified_key(root_hint_subjects) {
            Ok(key) => Some(Arc::new(key)),
            Err(e) => {
                tracing::warn!(
                    error = %contrast_platforms::error_chain(&e),
                    "cannot answer the aTLS certificate request"
                );
                *crate::lock(&self.error) = Some(e);
                None
            }
        }
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal reaches rustls as the typed error, not as its text, and comes back out of
    /// the handshake's error as that error.
    #[test]
    fn a_refused_certificate_travels_to_rustls_as_the_typed_error() {
        let verifier = ServerVerifier {
            validators: ValidatorSet::new(Vec::new()),
            nonce: [0; NONCE_LEN],
            signatures: HandshakeSignatures(crate::provider()),
            session: Mutex::new(None),
        };
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        let name = ServerName::try_from("contrast-atls").unwrap();
        let err = verifier
            .verify_server_cert(&garbage, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        let rustls::Error::Other(other) = &err else {
            panic!("not rustls' Other error: {err:?}");
        };
        assert!(
            matches!(
                other.0.downcast_ref::<AtlsError>(),
                Some(AtlsError::Certificate(_))
            ),
            "{err:?}"
        );
        assert!(crate::lock(&verifier.session).is_none());

        // As tokio-rustls returns it: rustls' error inside an io::Error.
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, err.clone());
        assert!(matches!(
            AtlsError::Io(io).or_verifier_refusal(),
            AtlsError::Certificate(_)
        ));
        assert!(matches!(
            AtlsError::Tls(err).or_verifier_refusal(),
            AtlsError::Certificate(_)
        ));
        // Anything else stays as it was.
        assert!(matches!(
            AtlsError::Tls(rustls::Error::General("x".into())).or_verifier_refusal(),
            AtlsError::Tls(_)
        ));
    }
}
