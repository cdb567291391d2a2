//! Plain HTTP: the attestation API on 1314 (docs/protocol.md §6.4) and probes plus
//! metrics on 9102 (§6.5).
//!
//! The attestation API is for clients that cannot do aTLS: they send a nonce and get the
//! Coordinator's evidence whose report data binds the nonce, the history and both CAs.
//! Anyone may call it, so it is limited: connections per peer and in all
//! ([`HTTP_CONNECTION_LIMITS`]), requests per second ([`ATTEST_RATE`]), and evidence
//! issuance through the Coordinator's bounded [`IssuanceQueue`](contrast_atls::IssuanceQueue);
//! the history it returns is cached per latest transition.
//!
//! The probes run on a thread and runtime of their own ([`serve_probes`]), so a busy API
//! runtime cannot fail liveness.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use contrast_atls::{ConnectionLimiter, ConnectionLimits, ConnectionSlot, StreamWith};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::Coordinator;
use crate::state::Status;

/// Open connections to the attestation API: an honest client makes one request at a time.
pub const HTTP_CONNECTION_LIMITS: ConnectionLimits = ConnectionLimits {
    total: 128,
    per_peer: 16,
};

/// Attestation requests per second over all clients, with as many in a burst: every one
/// costs an evidence issuance.
pub const ATTEST_RATE: u32 = 100;

/// A listener that closes connections over [`ConnectionLimits`] as soon as they are
/// accepted.
#[derive(Debug)]
pub struct LimitedListener {
    listener: TcpListener,
    limiter: ConnectionLimiter,
}

impl LimitedListener {
    /// Limits `listener` to `limits`.
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        LimitedListener {
            listener,
            limiter: ConnectionLimiter::new(limits),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.limiter.admit(Some(addr)) {
                Ok(slot) => {
                    return (
                        LimitedStream {
                            stream,
                            attached: slot,
                        },
                        addr,
                    );
                }
                Err(e) => tracing::debug!(peer = %addr, error = %e, "connection refused"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection admitted by a [`LimitedListener`]; its place is given back when it closes.
pub type LimitedStream = StreamWith<TcpStream, ConnectionSlot>;

/// A token bucket: `rate` tokens a second, at most `rate` saved up.
#[derive(Debug)]
struct RateLimit {
    rate: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn per_second(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimit {
            rate,
            bucket: Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes a token if there is one.
    fn take(&self) -> bool {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = &mut *bucket;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The attestation API's shared parts.
#[derive(Debug)]
struct AttestationApi {
    coordinator: Arc<Coordinator>,
    rate: RateLimit,
}

/// The body of `GET /capabilities`.
pub const CAPABILITIES: &str = "{\"api_versions\":[\"v1\"]}";
const MAX_BODY: usize = 1024;

/// The report data of the attestation API: `SHA-256(nonce ‖ transition ‖ SHA-256(root CA
/// PEM) ‖ SHA-256(mesh CA PEM) [‖ capabilities digest])`, zero-padded to 64 bytes. The
/// legacy `/attest` has no capabilities digest; `/v1/attest` has SHA-256 of the
/// `/capabilities` body.
pub fn report_data(
    nonce: &[u8],
    transition: &[u8; 32],
    root_ca_pem: &[u8],
    mesh_ca_pem: &[u8],
    capabilities_digest: Option<&[u8; 32]>,
) -> [u8; 64] {
    let mut context = aws_lc_rs::digest::Context::new(&SHA256);
    context.update(nonce);
    context.update(transition);
    context.update(digest(&SHA256, root_ca_pem).as_ref());
    context.update(digest(&SHA256, mesh_ca_pem).as_ref());
    if let Some(capabilities) = capabilities_digest {
        context.update(capabilities);
    }
    let mut out = [0; 64];
    out[..32].copy_from_slice(context.finish().as_ref());
    out
}

/// The attestation API router.
pub fn attestation_router(coordinator: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/attest", post(attest_legacy))
        .route("/verify", post(attest_legacy))
        .route("/v1/attest", post(attest_v1))
        .route("/capabilities", get(capabilities))
        .with_state(Arc::new(AttestationApi {
            coordinator,
            rate: RateLimit::per_second(ATTEST_RATE),
        }))
}

async fn capabilities() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], CAPABILITIES).into_response()
}

async fn attest_legacy(
    AxumState(api): AxumState<Arc<AttestationApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    attest(&api, &headers, &body, None).await
}

async fn attest_v1(
    AxumState(api): AxumState<Arc<AttestationApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut capabilities = [0; 32];
    capabilities.copy_from_slice(digest(&SHA256, CAPABILITIES.as_bytes()).as_ref());
    attest(&api, &headers, &body, Some(capabilities)).await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"version": env!("CARGO_PKG_VERSION"), "error": message.into()});
    (status, axum::Json(body)).into_response()
}

async fn attest(
    api: &AttestationApi,
    headers: &HeaderMap,
    body: &[u8],
    capabilities: Option<[u8; 32]>,
) -> Response {
    if !api.rate.take() {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("the attestation API answers {ATTEST_RATE} requests a second; retry later"),
        );
    }
    let coordinator = &api.coordinator;
    let json_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json_content {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    if body.len() > MAX_BODY {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is limited to 1 KiB",
        );
    }
    let nonce = match serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("nonce")?.as_str().map(str::to_owned))
        .and_then(|n| STANDARD.decode(n).ok())
    {
        Some(nonce) if nonce.len() == 32 => nonce,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be {\"nonce\": \"<base64 of exactly 32 bytes>\"}",
            );
        }
    };
    let guard = coordinator.clone();
    let history = tokio::task::spawn_blocking(move || guard.guard.manifests()).await;
    let crate::state::HistoryView {
        state,
        manifests,
        policies,
    } = match history {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            return error(
                StatusCode::PRECONDITION_FAILED,
                contrast_platforms::error_chain(&e),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let root_ca = state.ca().root_ca_pem().as_bytes().to_vec();
    let mesh_ca = state.ca().mesh_ca_pem().as_bytes().to_vec();
    let data = report_data(
        &nonce,
        &state.latest().transition_hash,
        &root_ca,
        &mesh_ca,
        capabilities.as_ref(),
    );
    let issued = coordinator
        .issuance
        .issue(coordinator.issuer.clone(), data)
        .await;
    let (oid, document) = match issued {
        Ok(found) => found,
        Err(e @ contrast_atls::AtlsError::Busy(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                contrast_platforms::error_chain(&e),
            );
        }
    };
    let attestation_type: Vec<u64> = oid.split('.').filter_map(|a| a.parse().ok()).collect();
    let b64 = |bytes: &[u8]| STANDARD.encode(bytes);
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "raw_attestation_doc": b64(&document),
        "attestation_type": attestation_type,
        "manifests": manifests.iter().map(|m| b64(m)).collect::<Vec<_>>(),
        "policies": policies.iter().map(|p| b64(p)).collect::<Vec<_>>(),
        "root_ca": b64(&root_ca),
        "mesh_ca": b64(&mesh_ca),
    }))
    .into_response()
}

/// Serves `router` (the probes) on `listener` from a thread and runtime of their own until
/// `stop`: the API runtime may be saturated by unauthenticated clients, and a liveness
/// probe that waits behind them gets the pod restarted. The receiver resolves when the
/// server ends.
pub fn serve_probes(
    listener: std::net::TcpListener,
    router: Router,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<()>>> {
    use anyhow::Context as _;
    listener
        .set_nonblocking(true)
        .context("making the probe listener non-blocking")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the probes' runtime")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let listener =
                    TcpListener::from_std(listener).context("serving the probe listener")?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(crate::stopped(stop))
                    .await
                    .context("serving the probes")
            });
            let _ = done_tx.send(result);
        })
        .context("starting the probes' thread")?;
    Ok(done_rx)
}

/// The probes and metrics router (port 9102).
pub fn probes_router(coordinator: Arc<Coordinator>, metrics: bool) -> Router {
    let router = Router::new()
        .route("/probe/startup", get(startup))
        .route("/probe/liveness", get(startup))
        .route("/probe/readiness", get(readiness));
    let router = if metrics {
        router.route("/metrics", get(metrics_text))
    } else {
        router
    };
    router.with_state(coordinator)
}

async fn startup(AxumState(coordinator): AxumState<Arc<Coordinator>>) -> StatusCode {
    if coordinator.started.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn readiness(AxumState(coordinator): AxumState<Arc<Coordinator>>) -> (StatusCode, String) {
    let guard = coordinator.clone();
    match tokio::task::spawn_blocking(move || guard.guard.status()).await {
        Ok(Ok(Status::Ready(state))) => (
            StatusCode::OK,
            format!("ready, generation {}\n", state.generation()),
        ),
        Ok(Ok(Status::Recovery)) => (StatusCode::SERVICE_UNAVAILABLE, "recovery mode\n".into()),
        Ok(Ok(Status::Uninitialized)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not initialized\n".into())
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", contrast_platforms::error_chain(&e)),
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn metrics_text(AxumState(coordinator): AxumState<Arc<Coordinator>>) -> Response {
    match coordinator.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst over the rate is refused until the bucket refills.
    #[test]
    fn attestation_requests_over_the_rate_refused() {
        let rate = RateLimit::per_second(5);
        for i in 0..5 {
            assert!(rate.take(), "request {i} of the burst refused");
        }
        assert!(
            !rate.take(),
            "a sixth request in the same instant was admitted"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(rate.take(), "no token after a quarter second at 5 a second");
    }

    /// Contrast's golden vectors (apitypes/apiv1/reportdata_test.go, see
    /// docs/protocol.md §6.4): nonce 0x00..0x1f, transition 0xa0..0xbf, capabilities
    /// 0xc0..0xdf, root CA `root-ca`, mesh CA `mesh-ca`.
    #[test]
    fn report_data_matches_contrasts_golden_vectors() {
        let nonce: Vec<u8> = (0x00..=0x1f).collect();
        let transition: [u8; 32] = std::array::from_fn(|i| 0xa0 + i as u8);
        let capabilities: [u8; 32] = std::array::from_fn(|i| 0xc0 + i as u8);
        let legacy = report_data(&nonce, &transition, b"root-ca", b"mesh-ca", None);
        assert_eq!(
            hex::encode(&legacy[..32]),
            "ec25193fbfa21fb46964de80adca8e7d70222ad41e67c77a696e2f188c02a0f2"
        );
        assert_eq!(legacy[32..], [0; 32]);
        let v1 = report_data(
            &nonce,
            &transition,
            b"root-ca",
            b"mesh-ca",
            Some(&capabilities),
        );
        assert_eq!(
            hex::encode(&v1[..32]),
            "8e8d9ec21a9617767c4adb715f712fe246f121211fc76338f0c30824050bbb8e"
        );
        assert_eq!(v1[32..], [0; 32]);
    }
}
