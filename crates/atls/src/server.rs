//! The accepting side: reads the client's nonce from the ClientHello, presents a
//! certificate with evidence bound to it, and asks for a client certificate with its own
//! nonce in the request's distinguished names.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::cert;
use crate::client::HandshakeSignatures;
use crate::issuer::{IssuanceQueue, Issuer};
use crate::key::TlsKey;
use crate::validator::{PeerAttestation, ValidatorSet};
use crate::{ALPN_H2, AtlsError, NONCE_LEN, SERVER_HANDSHAKE_TIMEOUT};

/// Where a server gets the validators for the next handshake: fixed, or rebuilt from the
/// current state (the Coordinator checks initializers against its active manifest).
pub trait ValidatorSource: Send + Sync + Debug {
    /// The validators for a handshake starting now.
    fn current(&self) -> ValidatorSet;
}

impl ValidatorSource for ValidatorSet {
    fn current(&self) -> ValidatorSet {
        self.clone()
    }
}

/// How a server accepts.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Our evidence for clients; `None` serves an unattested certificate.
    pub issuer: Option<Arc<dyn Issuer>>,
    /// Checks clients' evidence; when the set is empty a client certificate is requested
    /// but optional (authentication by public key).
    pub validators: Arc<dyn ValidatorSource>,
    /// ALPN protocols we speak after the handshake.
    pub alpn: Vec<Vec<u8>>,
    /// Limit for a client's handshake.
    pub timeout: Duration,
    /// Complete the handshake with a client whose evidence was refused (its certificate's
    /// self-signature and the handshake signature still must verify) and hand the reason
    /// to the application in [`PeerInfo::refusal`], so it can answer with an error the
    /// client can read. TLS 1.3 clients never learn why a server aborted a handshake.
    pub defer_refusal: bool,
    /// How many handshakes may be in progress.
    pub limits: ConnectionLimits,
    /// Where our evidence is issued (off the async workers, bounded); servers that share
    /// one share its limits.
    pub issuance: Arc<IssuanceQueue>,
}

/// Caps on connections in progress (for an aTLS server: from accepting the connection to
/// the end of its handshake). Every handshake costs the server an evidence issuance before
/// the client has proven anything, so connections over a cap are closed at once, before
/// any work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Over all peers.
    pub total: usize,
    /// From one IP address. An initializer makes one handshake at a time; this leaves room
    /// for nodes whose pods share an address.
    pub per_peer: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            total: 256,
            per_peer: 32,
        }
    }
}

impl ServerOptions {
    /// Serve gRPC (`h2`) with `issuer`, not attesting clients.
    pub fn new(issuer: Option<Arc<dyn Issuer>>) -> Self {
        ServerOptions {
            issuer,
            validators: Arc::new(ValidatorSet::none()),
            alpn: vec![ALPN_H2.to_vec()],
            timeout: SERVER_HANDSHAKE_TIMEOUT,
            defer_refusal: false,
            limits: ConnectionLimits::default(),
            issuance: Arc::new(IssuanceQueue::default()),
        }
    }

    /// See [`ServerOptions::limits`].
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// See [`ServerOptions::issuance`].
    pub fn with_issuance(mut self, issuance: Arc<IssuanceQueue>) -> Self {
        self.issuance = issuance;
        self
    }

    /// See [`ServerOptions::defer_refusal`].
    pub fn with_deferred_refusal(mut self) -> Self {
        self.defer_refusal = true;
        self
    }

    /// Require and check client evidence with `validators`.
    pub fn with_validators(mut self, validators: Arc<dyn ValidatorSource>) -> Self {
        self.validators = validators;
        self
    }
}

/// What a finished server handshake established about the client.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The client certificate's public key (SubjectPublicKeyInfo DER), if it sent one.
    pub public_key_der: Option<Vec<u8>>,
    /// The validator's verdict, when the client was attested.
    pub attestation: Option<PeerAttestation>,
    /// Why the client's evidence was refused, when the server defers refusals.
    pub refusal: Option<String>,
}

/// The connections in progress, per peer and in all.
#[derive(Debug, Default)]
struct ConnectionCounts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// Admits connections within [`ConnectionLimits`].
#[derive(Debug)]
pub struct ConnectionLimiter {
    limits: ConnectionLimits,
    counts: Arc<Mutex<ConnectionCounts>>,
}

impl ConnectionLimiter {
    /// A limiter with nothing admitted yet.
    pub fn new(limits: ConnectionLimits) -> Self {
        ConnectionLimiter {
            limits,
            counts: Arc::default(),
        }
    }

    /// A place for a connection from `peer` within the limits, or why there is none. Call
    /// it before spending anything on the connection; close the connection if refused.
    pub fn admit(&self, peer: Option<SocketAddr>) -> Result<ConnectionSlot, AtlsError> {
        let ip = peer.map(|a| a.ip().to_canonical());
        let mut counts = crate::lock(&self.counts);
        if counts.total >= self.limits.total {
            return Err(AtlsError::Busy(format!(
                "{} connections are in progress, the limit",
                counts.total
            )));
        }
        if let Some(ip) = ip {
            let count = counts.per_peer.get(&ip).copied().unwrap_or(0);
            if count >= self.limits.per_peer {
                return Err(AtlsError::Busy(format!(
                    "{ip} has {count} connections in progress, the limit per peer"
                )));
            }
            counts.per_peer.insert(ip, count + 1);
        }
        counts.total += 1;
        Ok(ConnectionSlot {
            counts: self.counts.clone(),
            peer: ip,
        })
    }
}

/// A connection's place within the [`ConnectionLimits`]; given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: Arc<Mutex<ConnectionCounts>>,
    peer: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = crate::lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(peer) = self.peer
            && let Some(count) = counts.per_peer.get_mut(&peer)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_peer.remove(&peer);
            }
        }
    }
}

/// An aTLS server: one P-256 key for its lifetime, a fresh certificate per handshake.
#[derive(Debug)]
pub struct AtlsServer {
    options: ServerOptions,
    limiter: ConnectionLimiter,
    key: TlsKey,
    provider: Arc<CryptoProvider>,
}

impl AtlsServer {
    /// A server with a fresh key.
    pub fn new(options: ServerOptions) -> Result<Self, AtlsError> {
        let provider = crate::provider();
        let key = TlsKey::generate()?;
        Ok(AtlsServer {
            limiter: ConnectionLimiter::new(options.limits),
            options,
            key,
            provider,
        })
    }

    /// A place for a handshake with `peer` within [`ServerOptions::limits`], or why there
    /// is none. Call it before spending anything on the connection; close it if refused.
    pub fn admit(&self, peer: Option<SocketAddr>) -> Result<ConnectionSlot, AtlsError> {
        self.limiter.admit(peer)
    }

    /// Runs the handshake on an accepted connection if the limits allow it.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, PeerInfo), AtlsError> {
        let slot = self.admit(tcp.peer_addr().ok())?;
        self.accept_admitted(tcp, slot).await
    }

    /// Runs the handshake on a connection admitted with [`AtlsServer::admit`].
    pub async fn accept_admitted(
        &self,
        tcp: TcpStream,
        slot: ConnectionSlot,
    ) -> Result<(TlsStream<TcpStream>, PeerInfo), AtlsError> {
        let _slot = slot;
        let remote_addr = tcp.peer_addr().ok();
        let peer = remote_addr.map_or_else(|| "a client".to_string(), |a| a.to_string());
        match tokio::time::timeout(self.options.timeout, self.handshake(tcp)).await {
            Ok(Ok((stream, mut info))) => {
                info.remote_addr = remote_addr;
                Ok((stream, info))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AtlsError::Timeout {
                peer,
                timeout: self.options.timeout,
            }),
        }
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, PeerInfo), AtlsError> {
        tcp.set_nodelay(true)?;
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
        let client_nonce = {
            let hello = start.client_hello();
            cert::client_nonce(hello.alpn().into_iter().flatten(), hello.server_name())?
        };
        let document = match &self.options.issuer {
            Some(issuer) => Some(
                self.options
                    .issuance
                    .issue(
                        issuer.clone(),
                        crate::report_data(self.key.spki(), &client_nonce),
                    )
                    .await?,
            ),
            None => None,
        };
        let config = self.config_for(document)?;
        let verifier = config.1;
        let result = start.into_stream(Arc::new(config.0)).await;
        let peer = crate::lock(&verifier.peer).take();
        let stream = match result {
            Ok(stream) => stream,
            // The verifier's refusal travels in the error; prefer it to rustls's alert.
            Err(e) => return Err(AtlsError::from(e).or_verifier_refusal()),
        };
        Ok((stream, peer.unwrap_or_default()))
    }

    fn config_for(
        &self,
        document: Option<(&'static str, Vec<u8>)>,
    ) -> Result<(ServerConfig, Arc<ClientVerifier>), AtlsError> {
        let certificate = cert::build(&self.key, document)?;
        let certified = Arc::new(CertifiedKey::new(vec![certificate], self.key.signing_key()));
        let server_nonce = crate::new_nonce()?;
        let validators = self.options.validators.current();
        let verifier = Arc::new(ClientVerifier {
            mandatory: !validators.is_empty(),
            defer_refusal: self.options.defer_refusal,
            validators,
            nonce: server_nonce,
            names: vec![DistinguishedName::from(cert::nonce_name(&server_nonce))],
            signatures: HandshakeSignatures(self.provider.clone()),
            peer: Mutex::new(None),
        });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(FixedCertificate(certified)));
        config.alpn_protocols = self.options.alpn.clone();
        // Every connection is attested afresh: no tickets, no resumption.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok((config, verifier))
    }
}

#[derive(Debug)]
struct FixedCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Checks a client certificate against this handshake's server nonce.
#[derive(Debug)]
struct ClientVerifier {
    validators: ValidatorSet,
    mandatory: bool,
    defer_refusal: bool,
    nonce: [u8; NONCE_LEN],
    names: Vec<DistinguishedName>,
    signatures: HandshakeSignatures,
    /// What an accepted client certificate established (a refusal goes to rustls as the
    /// typed error, [`AtlsError::into_rustls`]).
    peer: Mutex<Option<PeerInfo>>,
}

impl ClientVerifier {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<PeerInfo, AtlsError> {
        let peer = cert::parse_and_verify(end_entity, crate::unix_now())?;
        let mut refusal = None;
        let attestation = if self.validators.is_empty() {
            None
        } else {
            let expected = crate::report_data(&peer.public_key_der, &self.nonce);
            match self
                .validators
                .validate(&peer.documents, &expected, &self.nonce)
            {
                Ok(attestation) => Some(attestation),
                Err(e) if self.defer_refusal => {
                    tracing::info!(error = %e, "client attestation refused");
                    refusal = Some(e.to_string());
                    None
                }
                Err(e) => return Err(e),
            }
        };
        Ok(PeerInfo {
            remote_addr: None,
            public_key_der: Some(peer.public_key_der),
            attestation,
            refusal,
        })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.names
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let peer = self.check(end_entity).map_err(AtlsError::into_rustls)?;
        *crate::lock(&self.peer) = Some(peer);
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}
