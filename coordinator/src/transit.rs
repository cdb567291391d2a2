//! The transit engine on port 8200 (docs/protocol.md §6.6): the `encrypt` and `decrypt`
//! endpoints of Vault's and OpenBao's transit secrets engine, so that Vault or OpenBao can
//! auto-unseal from the Coordinator (their `seal "transit"` stanza) and workloads can
//! encrypt data under keys only the Coordinator holds.
//!
//! * Clients authenticate with their mesh certificate: mutual TLS under the current
//!   manifest's mesh CA. The server certificate is a mesh certificate too, for
//!   [`SERVER_NAME`] and the SANs of the Coordinator's policies.
//! * A key name is the caller's workload secret ID (its certificate's extension
//!   `1.3.9901.3.1`); any other name is refused.
//! * Key version `v` of `name` is the first 32 bytes of the workload secret for the ID
//!   `"{v}_{name}"` (Contrast's derivation): keys follow from the seed, survive manifest
//!   updates and recovery, and need no state. AES-256-GCM with a random 12-byte nonce; a
//!   ciphertext reads `vault:v{v}:` and then base64 of nonce ‖ ciphertext ‖ tag.
//!
//! Work before authentication is bounded: connections are limited as the attestation
//! API's, a handshake must finish within [`HANDSHAKE_TIMEOUT`], and no request is read
//! before the client certificate has been verified.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::{IncomingStream, Listener as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use contrast_atls::StreamWith;
use contrast_manifest::Manifest;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

use crate::Coordinator;
use crate::http::{HTTP_CONNECTION_LIMITS, LimitedListener, LimitedStream};
use crate::state::{State, StateGuard};

/// The DNS name the server certificate always carries (the Service's name; OpenBao's
/// seal configuration addresses `https://coordinator:8200`).
pub const SERVER_NAME: &str = "coordinator";

/// How long a client may take for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body read (Vault's transit requests carry keys and small secrets).
pub const MAX_BODY: usize = 4 << 20;

/// Connections whose handshake finished, waiting for the HTTP server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// The key derivation's output that is the AES-256 key.
const KEY_LEN: usize = 32;

/// The GCM tag.
const TAG_LEN: usize = 16;

/// The transit engine's routes.
pub fn router(coordinator: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/v1/transit/encrypt/{name}", post(encrypt).put(encrypt))
        .route("/v1/transit/decrypt/{name}", post(decrypt).put(decrypt))
        .fallback(|| async {
            TransitError::new(
                StatusCode::NOT_FOUND,
                "the Coordinator's transit engine serves /v1/transit/encrypt/<name> and \
                 /v1/transit/decrypt/<name> only",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(coordinator)
}

/// What a request knows about its connection: who the client certificate names, and under
/// which mesh CA it was verified.
#[derive(Debug, Clone)]
pub struct TransitPeer {
    workload_secret_id: Option<String>,
    mesh_ca: Arc<[u8]>,
}

impl Connected<IncomingStream<'_, TransitListener>> for TransitPeer {
    fn connect_info(stream: IncomingStream<'_, TransitListener>) -> Self {
        stream.io().attached.clone()
    }
}

/// The client's workload secret ID: the UTF-8 content of the DER OCTET STRING in extension
/// `1.3.9901.3.1` of its leaf certificate, if it has one.
pub fn workload_secret_id(leaf_der: &[u8]) -> Result<Option<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let Some(extension) = cert
        .extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == contrast_attestation::oid::WORKLOAD_SECRET_ID)
    else {
        return Ok(None);
    };
    let (_, octets) = x509_parser::der_parser::der::parse_der_octetstring(extension.value)
        .map_err(|e| format!("extension {}: not an OCTET STRING: {e}", extension.oid))?;
    let bytes = octets
        .as_slice()
        .map_err(|e| format!("extension {}: {e}", extension.oid))?;
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| format!("extension {}: not UTF-8", extension.oid))
}

/// A ready state and the TLS server configuration made for it.
type StateConfig = (Arc<State>, Arc<rustls::ServerConfig>);

/// The server side of TLS: a certificate and client verifier per state, rebuilt when the
/// manifest changes.
struct TransitTls {
    guard: Arc<StateGuard>,
    /// A P-256 key of this process (the certificate changes, the key does not).
    signing_key: Arc<dyn SigningKey>,
    spki_der: Vec<u8>,
    current: Mutex<Option<StateConfig>>,
}

impl TransitTls {
    fn new(guard: Arc<StateGuard>) -> anyhow::Result<Self> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| anyhow::anyhow!("generating the transit engine's TLS key"))?;
        let spki_der = key
            .public_key()
            .as_der()
            .map_err(|_| anyhow::anyhow!("encoding the transit engine's public key"))?
            .as_ref()
            .to_vec();
        let pkcs8 = key
            .to_pkcs8v1()
            .map_err(|_| anyhow::anyhow!("encoding the transit engine's TLS key"))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()));
        let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)?;
        Ok(TransitTls {
            guard,
            signing_key,
            spki_der,
            current: Mutex::new(None),
        })
    }

    /// The ready state and the server configuration for it; `None` without a ready state.
    fn current(&self) -> Result<Option<StateConfig>, String> {
        let Some(state) = self.guard.active() else {
            return Ok(None);
        };
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached, config)) = current.as_ref()
            && Arc::ptr_eq(cached, &state)
        {
            return Ok(Some((state, config.clone())));
        }
        let config = self.config(&state)?;
        *current = Some((state.clone(), config.clone()));
        Ok(Some((state, config)))
    }

    fn config(&self, state: &State) -> Result<Arc<rustls::ServerConfig>, String> {
        let chain_pem = state
            .ca()
            .new_mesh_cert(&server_sans(state.manifest()), &[], None, &self.spki_der)
            .map_err(|e| {
                format!(
                    "issuing the transit engine's certificate: {}",
                    contrast_platforms::error_chain(&e)
                )
            })?;
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("reading the transit engine's certificate: {e}"))?;
        let certified = CertifiedKey::new(chain, self.signing_key.clone());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(state.ca().mesh_ca_der().to_vec()))
            .map_err(|e| format!("the mesh CA as client root: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("the client verifier: {e}"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("the TLS configuration: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// [`SERVER_NAME`], then the SANs of the manifest's Coordinator policies.
fn server_sans(manifest: &Manifest) -> Vec<String> {
    let mut sans = vec![SERVER_NAME.to_owned()];
    let coordinator_sans = manifest
        .policies
        .values()
        .filter(|entry| entry.is_coordinator())
        .flat_map(|entry| entry.sans.iter().flatten());
    for san in coordinator_sans {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    sans
}

/// Accepts TCP connections within [`HTTP_CONNECTION_LIMITS`], runs their TLS handshakes
/// concurrently, and hands the HTTP server those that finished.
#[derive(Debug)]
pub struct TransitListener {
    accepted: mpsc::Receiver<(TransitStream, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TransitListener {
    /// Serves TLS on `listener` with the certificates of `guard`'s ready state.
    pub fn new(listener: TcpListener, guard: Arc<StateGuard>) -> anyhow::Result<Self> {
        let local_addr = listener.local_addr()?;
        let tls = Arc::new(TransitTls::new(guard)?);
        let mut limited = LimitedListener::new(listener, HTTP_CONNECTION_LIMITS);
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = limited.accept() => accepted,
                };
                let tls = tls.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, &tls)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %addr, error = %e, "transit engine connection refused")
                        }
                        Err(_) => {
                            tracing::debug!(peer = %addr, "transit engine handshake timed out")
                        }
                    }
                });
            }
        });
        Ok(TransitListener {
            accepted,
            local_addr,
        })
    }
}

impl axum::serve::Listener for TransitListener {
    type Io = TransitStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended only because this receiver was closed.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn handshake(stream: LimitedStream, tls: &TransitTls) -> Result<TransitStream, String> {
    let Some((state, config)) = tls.current()? else {
        return Err("the Coordinator has no ready state (no manifest, or in recovery)".into());
    };
    let stream = TlsAcceptor::from(config)
        .accept(stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no client certificate")?;
    let peer = TransitPeer {
        workload_secret_id: workload_secret_id(leaf)?,
        mesh_ca: Arc::from(state.ca().mesh_ca_der()),
    };
    Ok(TransitStream {
        stream,
        attached: peer,
    })
}

/// A connection whose client certificate was verified, with what it says.
pub type TransitStream = StreamWith<TlsStream<LimitedStream>, TransitPeer>;

/// A refusal in Vault's error form: `{"errors": [message]}`.
#[derive(Debug)]
struct TransitError {
    status: StatusCode,
    message: String,
    /// The connection's certificate is no longer valid: make the client reconnect.
    close: bool,
}

impl TransitError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        TransitError {
            status,
            message: message.into(),
            close: false,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for TransitError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "errors": [self.message] }))).into_response();
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The encrypt request's fields (Vault's names). Vault's other options are refused by
/// name rather than ignored.
#[derive(Deserialize)]
struct EncryptRequest {
    plaintext: Option<String>,
    #[serde(default)]
    key_version: Option<u32>,
    associated_data: Option<String>,
    #[serde(flatten)]
    unsupported: Unsupported,
}

#[derive(Deserialize)]
struct DecryptRequest {
    ciphertext: Option<String>,
    associated_data: Option<String>,
    #[serde(flatten)]
    unsupported: Unsupported,
}

/// Vault options this engine does not implement: a request that relies on one must fail,
/// not silently get something else.
#[derive(Deserialize)]
struct Unsupported {
    batch_input: Option<serde_json::Value>,
    context: Option<serde_json::Value>,
    nonce: Option<serde_json::Value>,
}

impl Unsupported {
    fn refuse(&self) -> Result<(), TransitError> {
        for (name, value) in [
            ("batch_input", &self.batch_input),
            ("context", &self.context),
            ("nonce", &self.nonce),
        ] {
            if value.as_ref().is_some_and(|v| !v.is_null()) {
                return Err(TransitError::bad_request(format!(
                    "{name}: not supported by the Coordinator's transit engine (send one \
                     plaintext or ciphertext per request, without key derivation)"
                )));
            }
        }
        Ok(())
    }
}

async fn encrypt(
    AxumState(coordinator): AxumState<Arc<Coordinator>>,
    ConnectInfo(peer): ConnectInfo<TransitPeer>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TransitError> {
    let state = authorize(&coordinator, &peer, &name)?;
    let request: EncryptRequest = parse(&headers, &body)?;
    request.unsupported.refuse()?;
    let plaintext = Zeroizing::new(decode_base64(
        "plaintext",
        request.plaintext.as_deref().ok_or_else(|| {
            TransitError::bad_request("plaintext: missing (base64 of the data to encrypt)")
        })?,
    )?);
    let associated_data = optional_base64("associated_data", request.associated_data)?;
    let version = request.key_version.unwrap_or(0);
    let key = key(&state, version, &name)?;
    let mut sealed = Zeroizing::new(plaintext.to_vec());
    let nonce = key
        .seal_in_place_append_tag(Aad::from(associated_data.as_slice()), &mut *sealed)
        .map_err(|_| TransitError::new(StatusCode::INTERNAL_SERVER_ERROR, "encrypting failed"))?;
    let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
    blob.extend_from_slice(nonce.as_ref());
    blob.extend_from_slice(&sealed);
    let ciphertext = format!("vault:v{version}:{}", STANDARD.encode(&blob));
    Ok(axum::Json(json!({
        "data": { "ciphertext": ciphertext, "key_version": version }
    }))
    .into_response())
}

async fn decrypt(
    AxumState(coordinator): AxumState<Arc<Coordinator>>,
    ConnectInfo(peer): ConnectInfo<TransitPeer>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TransitError> {
    let state = authorize(&coordinator, &peer, &name)?;
    let request: DecryptRequest = parse(&headers, &body)?;
    request.unsupported.refuse()?;
    let ciphertext = request.ciphertext.as_deref().ok_or_else(|| {
        TransitError::bad_request(
            "ciphertext: missing (vault:v<N>:<base64>, as encrypt returned it)",
        )
    })?;
    let (version, blob) = parse_ciphertext(ciphertext)?;
    let associated_data = optional_base64("associated_data", request.associated_data)?;
    let key = key(&state, version, &name)?;
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| TransitError::bad_request("ciphertext: the nonce does not parse"))?;
    let mut opened = Zeroizing::new(sealed.to_vec());
    let plaintext = key
        .open_in_place(
            nonce,
            Aad::from(associated_data.as_slice()),
            opened.as_mut_slice(),
        )
        .map_err(|_| {
            TransitError::bad_request(format!(
                "ciphertext: does not decrypt under key version {version} of {name:?} with \
                 this associated_data (altered, or encrypted for another key)"
            ))
        })?;
    let plaintext = Zeroizing::new(STANDARD.encode(plaintext));
    Ok(axum::Json(json!({ "data": { "plaintext": *plaintext } })).into_response())
}

/// The ready state, if the client may use the key `name`.
fn authorize(
    coordinator: &Coordinator,
    peer: &TransitPeer,
    name: &str,
) -> Result<Arc<State>, TransitError> {
    let forbidden = |message: String| TransitError::new(StatusCode::FORBIDDEN, message);
    match &peer.workload_secret_id {
        None => {
            return Err(forbidden(format!(
                "permission denied: the client certificate carries no workload secret ID, \
                 so it may use no key (asked for {name:?})"
            )));
        }
        Some(id) if id != name => {
            return Err(forbidden(format!(
                "permission denied: key {name:?} belongs to another workload; this \
                 certificate's workload secret ID is {id:?}"
            )));
        }
        Some(_) => {}
    }
    let state = coordinator.guard.active().ok_or_else(|| {
        TransitError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Coordinator has no ready state (in recovery); try again",
        )
    })?;
    if state.ca().mesh_ca_der() != &*peer.mesh_ca {
        return Err(TransitError {
            close: true,
            ..forbidden(
                "permission denied: the manifest changed since this connection's handshake \
                 and its certificate is from the old mesh CA; reconnect with a certificate \
                 of the current manifest"
                    .to_owned(),
            )
        });
    }
    Ok(state)
}

/// The request body as JSON; a Content-Type, if given, must be JSON (as Contrast's).
fn parse<'a, T: Deserialize<'a>>(headers: &HeaderMap, body: &'a [u8]) -> Result<T, TransitError> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let json = content_type
            .to_str()
            .is_ok_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(TransitError::bad_request(format!(
                "Content-Type {content_type:?}: send application/json"
            )));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        TransitError::bad_request(format!("the request body is not the expected JSON: {e}"))
    })
}

fn decode_base64(field: &str, value: &str) -> Result<Vec<u8>, TransitError> {
    STANDARD
        .decode(value)
        .map_err(|e| TransitError::bad_request(format!("{field}: not base64: {e}")))
}

fn optional_base64(field: &str, value: Option<String>) -> Result<Vec<u8>, TransitError> {
    value.map_or(Ok(Vec::new()), |value| decode_base64(field, &value))
}

/// `vault:v<N>:<base64 of nonce ‖ ciphertext ‖ tag>` → (N, the decoded bytes).
fn parse_ciphertext(ciphertext: &str) -> Result<(u32, Vec<u8>), TransitError> {
    let malformed = |why: &str| {
        TransitError::bad_request(format!(
            "ciphertext: {why} (expected vault:v<N>:<base64>, as encrypt returned it)"
        ))
    };
    let mut parts = ciphertext.splitn(3, ':');
    let (Some("vault"), Some(version), Some(encoded)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("no vault:v<N>: prefix"));
    };
    let version = version
        .strip_prefix('v')
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok())
        .ok_or_else(|| malformed("the key version is not v<N>"))?;
    let blob = STANDARD
        .decode(encoded)
        .map_err(|e| malformed(&format!("not base64: {e}")))?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(malformed(&format!(
            "{} bytes, shorter than a nonce and a tag ({})",
            blob.len(),
            NONCE_LEN + TAG_LEN
        )));
    }
    Ok((version, blob))
}

/// Key version `version` of `name`: the first 32 bytes of the workload secret for
/// `"{version}_{name}"`.
fn key(state: &State, version: u32, name: &str) -> Result<RandomizedNonceKey, TransitError> {
    let internal = |what: String| TransitError::new(StatusCode::INTERNAL_SERVER_ERROR, what);
    let secret = state
        .seed_engine()
        .workload_secret(&format!("{version}_{name}"))
        .map_err(|e| internal(format!("deriving the key: {e}")))?;
    let bytes = secret
        .get(..KEY_LEN)
        .ok_or_else(|| internal("the derived key is shorter than 32 bytes".to_owned()))?;
    RandomizedNonceKey::new(&AES_256_GCM, bytes)
        .map_err(|_| internal("the derived key is not an AES-256 key".to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ciphertexts_parse_only_in_vaults_form() {
        let blob = STANDARD.encode([7u8; NONCE_LEN + TAG_LEN]);
        assert_eq!(
            parse_ciphertext(&format!("vault:v12:{blob}")).unwrap(),
            (12, vec![7; NONCE_LEN + TAG_LEN])
        );
        for (input, why) in [
            ("vault:v1:AAAA", "shorter than a nonce and a tag"),
            (&format!("vault:1:{blob}"), "key version"),
            (&format!("vault:v:{blob}"), "key version"),
            (&format!("vault:v-1:{blob}"), "key version"),
            (&format!("vault:v99999999999:{blob}"), "key version"),
            (&format!("bao:v1:{blob}"), "prefix"),
            ("vault:v1", "prefix"),
            ("vault:v1:!!!!", "not base64"),
        ] {
            let err = parse_ciphertext(input).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{input}");
            assert!(err.message.contains(why), "{input}: {}", err.message);
            assert!(err.message.starts_with("ciphertext: "), "{}", err.message);
        }
    }

    #[test]
    fn unsupported_vault_options_are_refused_by_name() {
        let request: EncryptRequest =
            serde_json::from_str(r#"{"plaintext": "", "batch_input": [{"plaintext": ""}]}"#)
                .unwrap();
        let err = request.unsupported.refuse().unwrap_err();
        assert!(err.message.starts_with("batch_input: "), "{}", err.message);
        let request: EncryptRequest =
            serde_json::from_str(r#"{"plaintext": "", "context": null}"#).unwrap();
        request.unsupported.refuse().unwrap();
    }
}
