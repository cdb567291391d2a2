//! Prometheus metrics (port 9102, `/metrics`, when `CONTRAST_METRICS` is set).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::SetManifestOutput;

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
        Metrics {
            registry,
            generation,
            certificates,
            attestation_failures,
            set_manifest,
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

    /// The OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
