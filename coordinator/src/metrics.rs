//! Prometheus metrics (port 9102, `/metrics`, when `CONTRAST_METRICS` is set).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::codegen::http;

use crate::state::SetManifestOutput;

/// go-grpc-prometheus's default handling-time buckets (Prometheus's `DefBuckets`), in
/// seconds.
const HANDLING_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A gRPC method, as go-grpc-prometheus labels it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    grpc_type: String,
    grpc_service: String,
    grpc_method: String,
}

/// A gRPC method and the status code it answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcCodeLabels {
    grpc_type: String,
    grpc_service: String,
    grpc_method: String,
    grpc_code: String,
}

type HistogramFamily = Family<GrpcLabels, Histogram, fn() -> Histogram>;

fn handling_histogram() -> Histogram {
    Histogram::new(HANDLING_BUCKETS)
}

/// A gRPC status code's name as Go's `codes.Code.String()` writes it (the label values of
/// Contrast's metrics).
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// The Coordinator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    generation: Gauge,
    certificates: Counter,
    attestation_failures: Counter,
    set_manifest: Family<OutcomeLabel, Counter>,
    grpc_started: Family<GrpcLabels, Counter>,
    grpc_handled: Family<GrpcCodeLabels, Counter>,
    grpc_handling: HistogramFamily,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("contrast");
        let generation = Gauge::default();
        let certificates = Counter::default();
        let attestation_failures = Counter::default();
        let set_manifest = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "coordinator_manifest_generation",
            "Number of manifests in the active history",
            generation.clone(),
        );
        registry.register(
            "meshapi_certificates_issued",
            "Workload certificates issued",
            certificates.clone(),
        );
        registry.register(
            "meshapi_attestation_failures",
            "Mesh API handshakes whose attestation failed",
            attestation_failures.clone(),
        );
        registry.register(
            "userapi_set_manifest",
            "SetManifest calls by outcome",
            set_manifest.clone(),
        );
        // Contrast's gRPC server metrics: go-grpc-prometheus's names under `contrast_`.
        let grpc_started = Family::<GrpcLabels, Counter>::default();
        let grpc_handled = Family::<GrpcCodeLabels, Counter>::default();
        let grpc_handling: HistogramFamily = Family::new_with_constructor(handling_histogram);
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            grpc_started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            grpc_handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level \
             handled by the server",
            grpc_handling.clone(),
        );
        Metrics {
            registry,
            generation,
            certificates,
            attestation_failures,
            set_manifest,
            grpc_started,
            grpc_handled,
            grpc_handling,
        }
    }
}

impl Metrics {
    /// The active generation.
    pub fn set_generation(&self, generation: usize) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// One more workload certificate.
    pub fn certificate_issued(&self) {
        self.certificates.inc();
    }

    /// One more failed mesh handshake.
    pub fn attestation_failed(&self) {
        self.attestation_failures.inc();
    }

    /// A SetManifest outcome.
    pub fn observe_set_manifest(&self, result: &Result<SetManifestOutput, tonic::Status>) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(status) => format!("{:?}", status.code()),
        };
        self.set_manifest
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    fn grpc_labels(service: &str, method: &str) -> GrpcLabels {
        GrpcLabels {
            grpc_type: "unary".to_owned(),
            grpc_service: service.to_owned(),
            grpc_method: method.to_owned(),
        }
    }

    /// A unary call of `service`/`method` started.
    pub fn grpc_started(&self, service: &str, method: &str) {
        self.grpc_started
            .get_or_create(&Self::grpc_labels(service, method))
            .inc();
    }

    /// A unary call of `service`/`method` ended with status `code` after `seconds`.
    pub fn grpc_handled(&self, service: &str, method: &str, code: i32, seconds: f64) {
        let labels = Self::grpc_labels(service, method);
        self.grpc_handling.get_or_create(&labels).observe(seconds);
        self.grpc_handled
            .get_or_create(&GrpcCodeLabels {
                grpc_type: labels.grpc_type,
                grpc_service: labels.grpc_service,
                grpc_method: labels.grpc_method,
                grpc_code: code_name(code).to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A tower layer that counts the calls of one gRPC service's `methods` (started, handled by
/// status code, handling time), as go-grpc-prometheus's interceptors do. Only the
/// service's own methods get labels: a peer naming other paths (on the user API, before
/// any authentication) cannot grow the label sets.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
    service: &'static str,
    methods: &'static [&'static str],
}

impl GrpcMetricsLayer {
    /// Counts `service`'s `methods` in `metrics`.
    pub fn new(
        metrics: Arc<Metrics>,
        service: &'static str,
        methods: &'static [&'static str],
    ) -> Self {
        GrpcMetricsLayer {
            metrics,
            service,
            methods,
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.split_once('/'))
            .filter(|(service, _)| *service == self.layer.service)
            .and_then(|(_, method)| self.layer.methods.iter().find(|m| **m == method))
            .copied();
        let future = self.inner.call(request);
        let Some(method) = method else {
            return Box::pin(future);
        };
        let metrics = self.layer.metrics.clone();
        let service = self.layer.service;
        metrics.grpc_started(service, method);
        let started = Instant::now();
        Box::pin(async move {
            let response = future.await?;
            // A failed unary call is answered trailers-only: its status is in the
            // headers. Otherwise the handler succeeded (its OK comes in the trailers).
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            metrics.grpc_handled(service, method, code, started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tower::{Layer as _, Service as _, ServiceExt as _};

    use super::*;

    /// A gRPC service that answers every call with `grpc-status` in its headers (a failed
    /// unary call), or without (a successful one).
    async fn call(layer: &GrpcMetricsLayer, path: &str, status: Option<&'static str>) {
        let mut service = layer.layer(tower::service_fn(move |_: http::Request<()>| async move {
            let mut response = http::Response::new(());
            if let Some(code) = status {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(code));
            }
            Ok::<_, std::convert::Infallible>(response)
        }));
        let request = http::Request::builder().uri(path).body(()).unwrap();
        service.ready().await.unwrap().call(request).await.unwrap();
    }

    #[tokio::test]
    async fn only_the_services_own_methods_get_labels() {
        let metrics = Arc::new(Metrics::default());
        let layer = GrpcMetricsLayer::new(metrics.clone(), "pkg.Svc", &["Known"]);
        call(&layer, "/pkg.Svc/Known", None).await;
        call(&layer, "/pkg.Svc/Known", Some("7")).await;
        // Paths a peer makes up: answered, but never a label.
        call(&layer, "/pkg.Svc/Invented", Some("12")).await;
        call(&layer, "/other.Svc/Known", Some("12")).await;
        call(&layer, "/not-grpc", Some("12")).await;
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            "contrast_grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"pkg.Svc\",grpc_method=\"Known\",grpc_code=\"OK\"} 1"
        ), "{text}");
        assert!(text.contains("grpc_code=\"PermissionDenied\"} 1"), "{text}");
        assert!(!text.contains("Invented"), "{text}");
        assert!(!text.contains("other.Svc"), "{text}");
        assert!(!text.contains("Unimplemented"), "{text}");
    }
}
