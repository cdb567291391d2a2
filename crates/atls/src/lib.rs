//! Attested TLS (docs/protocol.md §5) on rustls.
//!
//! A peer proves what it runs by putting an attestation document into an extension of its
//! self-signed TLS certificate. The document's report data is
//! `SHA-512(PKIX DER of the certificate's public key ‖ the other side's nonce)`, so it is
//! bound to this handshake's key and cannot be replayed to another client:
//!
//! * the client's nonce travels first in ALPN as `atls:v1:nonce:<hex>`, before `h2`;
//! * the server's nonce travels in the CertificateRequest, as the common name (standard
//!   base64) of the only distinguished name in `certificate_authorities`.
//!
//! Verification is one-sided (the client checks the server) or mutual (the server also
//! requires and checks a client certificate); a server without validators still requests
//! a certificate so that callers can authenticate by public key (workload owner, seed share
//! owner). [`grpc`] connects this to tonic clients and servers.

mod cert;
pub mod client;
pub mod grpc;
pub mod issuer;
mod key;
pub mod server;
pub mod stream;
pub mod validator;

use std::sync::Arc;
use std::time::Duration;

pub use cert::{PeerCertificate, attestation_extensions, verify_self_signed};
pub use client::{ClientOptions, ClientSession};
pub use issuer::{IssuanceQueue, Issuer};
pub use server::{
    AtlsServer, ConnectionLimiter, ConnectionLimits, ConnectionSlot, PeerInfo, ServerOptions,
    ValidatorSource,
};
pub use stream::StreamWith;
pub use validator::{
    PeerAttestation, ReferenceValidator, Rejection, Validator, ValidatorSet, Verifiers,
};

/// The ALPN prefix that carries the client's nonce (lowercase hex follows).
pub const ALPN_NONCE_PREFIX: &str = "atls:v1:nonce:";
/// The protocol gRPC speaks after the handshake.
pub const ALPN_H2: &[u8] = b"h2";
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 32;
/// How long a client waits for TCP connect plus handshake (Contrast: 30 s).
pub const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server waits for a client's handshake (Contrast: 25 s).
pub const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(25);

/// Why an aTLS handshake or its set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum AtlsError {
    /// The peer's certificate could not be parsed or its self-signature is wrong.
    #[error("peer certificate: {0}")]
    Certificate(String),
    /// The peer's certificate carries no attestation extension.
    #[error(
        "no valid attestation document certificate extensions found (the peer is not attested; \
         is it running in a confidential VM with evidence issuing enabled?)"
    )]
    NoAttestation,
    /// The certificate's attestation extensions match no validator.
    #[error("no matching validators found for the attestation extensions {oids:?}")]
    NoMatchingValidator {
        /// The attestation OIDs the certificate carries.
        oids: Vec<String>,
    },
    /// Every validator refused the evidence.
    #[error("attestation refused (nonce {nonce_hex}):\n{}", reasons.join("\n"))]
    Refused {
        /// The nonce the evidence had to be bound to.
        nonce_hex: String,
        /// One line per validator tried.
        reasons: Vec<String>,
        /// Some validator refused the peer's host data: it runs another policy than the
        /// manifest names (see [`Rejection::policy_mismatch`]).
        policy_mismatch: bool,
    },
    /// Too much is in progress: a limit on handshakes or evidence issuance was reached.
    #[error("{0}; retry later")]
    Busy(String),
    /// No evidence could be issued for our own certificate.
    #[error("issuing evidence: {0}")]
    Issue(String),
    /// A certificate or key could not be made.
    #[error("building the aTLS certificate: {0}")]
    Build(String),
    /// The peer sent no usable nonce.
    #[error("{0}")]
    Nonce(String),
    /// TLS failed.
    #[error("TLS")]
    Tls(#[from] rustls::Error),
    /// Connecting or handshaking failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The handshake took too long.
    #[error("the aTLS handshake with {peer} did not finish within {timeout:?}")]
    Timeout {
        /// Address of the peer.
        peer: String,
        /// The limit.
        timeout: Duration,
    },
}

impl AtlsError {
    /// A certificate verifier's refusal as rustls carries it: the typed error itself, as
    /// rustls' `Other` error, so no cause is flattened into text on the way.
    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::Other(rustls::OtherError(Arc::new(self)))
    }

    /// The refusal one of our verifiers handed rustls, when that is why a handshake failed
    /// (tokio-rustls returns rustls' error inside an `io::Error`); otherwise `self`.
    pub(crate) fn or_verifier_refusal(self) -> AtlsError {
        let refusal = match &self {
            AtlsError::Io(io) => io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(verifier_refusal),
            AtlsError::Tls(tls) => verifier_refusal(tls),
            _ => None,
        };
        refusal.unwrap_or(self)
    }

    /// A copy of a verifier's refusal (rustls shares it behind an `Arc`). Every variant a
    /// verifier returns copies exactly; an I/O error, which none returns, keeps its kind and
    /// text.
    fn duplicate(&self) -> AtlsError {
        match self {
            AtlsError::Certificate(s) => AtlsError::Certificate(s.clone()),
            AtlsError::NoAttestation => AtlsError::NoAttestation,
            AtlsError::NoMatchingValidator { oids } => {
                AtlsError::NoMatchingValidator { oids: oids.clone() }
            }
            AtlsError::Refused {
                nonce_hex,
                reasons,
                policy_mismatch,
            } => AtlsError::Refused {
                nonce_hex: nonce_hex.clone(),
                reasons: reasons.clone(),
                policy_mismatch: *policy_mismatch,
            },
            AtlsError::Busy(s) => AtlsError::Busy(s.clone()),
            AtlsError::Issue(s) => AtlsError::Issue(s.clone()),
            AtlsError::Build(s) => AtlsError::Build(s.clone()),
            AtlsError::Nonce(s) => AtlsError::Nonce(s.clone()),
            AtlsError::Tls(e) => AtlsError::Tls(e.clone()),
            AtlsError::Io(e) => AtlsError::Io(std::io::Error::new(
                e.kind(),
                contrast_platforms::error_chain(e),
            )),
            AtlsError::Timeout { peer, timeout } => AtlsError::Timeout {
                peer: peer.clone(),
                timeout: *timeout,
            },
        }
    }
}

/// Our refusal inside a rustls error, if it is one.
fn verifier_refusal(error: &rustls::Error) -> Option<AtlsError> {
    match error {
        rustls::Error::Other(other) => other
            .0
            .downcast_ref::<AtlsError>()
            .map(AtlsError::duplicate),
        _ => None,
    }
}

/// The crypto provider every aTLS config uses (aws-lc-rs, the project's only one), with
/// AES-128-GCM-SHA256 preferred: SHA-256 has hardware support on more CPUs than SHA-384,
/// and the handshake hashes two certificates of several KiB each.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// `SHA-512(public_key_der ‖ nonce)`: the report data binding evidence to a TLS key and a
/// handshake.
pub fn report_data(public_key_der: &[u8], nonce: &[u8]) -> [u8; 64] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA512);
    context.update(public_key_der);
    context.update(nonce);
    let mut out = [0; 64];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// A fresh random nonce.
pub fn new_nonce() -> Result<[u8; NONCE_LEN], AtlsError> {
    let mut nonce = [0; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| AtlsError::Nonce("the system random generator failed".into()))?;
    Ok(nonce)
}

/// Locks `m`; a panic elsewhere while holding it leaves plain data, so poisoning is ignored.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The current Unix time in seconds (evidence and certificate validity checks).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_sha512_of_key_then_nonce() {
        // python3 -c "import hashlib;print(hashlib.sha512(b'key'+b'nonce').hexdigest())"
        assert_eq!(
            hex::encode(report_data(b"key", b"nonce")),
            "c2ef67dc7475b7909fd86590f8bbba139c31c6e6d5d6b92d4148c14adf495b8d\
             3788081b5d2ec20a824ad25647746b4664c59cc7fe4d16268db9c6fa2ce8be29"
        );
    }
}
