//! Counters of what the proxy did, for the admin interface and tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// One monotonic counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) ingress_mtls_accepted: Counter,
    pub(crate) ingress_tls_accepted: Counter,
    pub(crate) ingress_handshake_failed: Counter,
    pub(crate) ingress_upstream_failed: Counter,
    pub(crate) ingress_loop_refused: Counter,
    pub(crate) egress_accepted: Counter,
    pub(crate) egress_handshake_failed: Counter,
    pub(crate) egress_upstream_failed: Counter,
    pub(crate) tls_reloads: Counter,
    pub(crate) tls_reload_failures: Counter,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            ingress_mtls_accepted: self.ingress_mtls_accepted.get(),
            ingress_tls_accepted: self.ingress_tls_accepted.get(),
            ingress_handshake_failed: self.ingress_handshake_failed.get(),
            ingress_upstream_failed: self.ingress_upstream_failed.get(),
            ingress_loop_refused: self.ingress_loop_refused.get(),
            egress_accepted: self.egress_accepted.get(),
            egress_handshake_failed: self.egress_handshake_failed.get(),
            egress_upstream_failed: self.egress_upstream_failed.get(),
            tls_reloads: self.tls_reloads.get(),
            tls_reload_failures: self.tls_reload_failures.get(),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Connections accepted on the mTLS ingress listener.
    pub ingress_mtls_accepted: u64,
    /// Connections accepted on the no-client-auth ingress listener.
    pub ingress_tls_accepted: u64,
    /// Ingress TLS handshakes refused or timed out (no or wrong client certificate, not TLS).
    pub ingress_handshake_failed: u64,
    /// Ingress connections whose upstream could not be reached.
    pub ingress_upstream_failed: u64,
    /// Ingress connections addressed to the proxy's own ports, closed unanswered.
    pub ingress_loop_refused: u64,
    /// Connections accepted on egress listeners.
    pub egress_accepted: u64,
    /// Egress TLS handshakes that failed (the remote is not a mesh peer, or refused us).
    pub egress_handshake_failed: u64,
    /// Egress remotes that could not be resolved or reached.
    pub egress_upstream_failed: u64,
    /// Successful credential reloads.
    pub tls_reloads: u64,
    /// Changed credential files that could not be used (the previous ones stay in use).
    pub tls_reload_failures: u64,
}

impl fmt::Display for StatsSnapshot {
    /// One `name: value` line per counter, as Envoy's `/stats` text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = [
            ("ingress.mtls.accepted", self.ingress_mtls_accepted),
            ("ingress.tls.accepted", self.ingress_tls_accepted),
            ("ingress.handshake_failed", self.ingress_handshake_failed),
            ("ingress.upstream_failed", self.ingress_upstream_failed),
            ("ingress.loop_refused", self.ingress_loop_refused),
            ("egress.accepted", self.egress_accepted),
            ("egress.handshake_failed", self.egress_handshake_failed),
            ("egress.upstream_failed", self.egress_upstream_failed),
            ("tls.reloads", self.tls_reloads),
            ("tls.reload_failures", self.tls_reload_failures),
        ];
        for (name, value) in lines {
            writeln!(f, "{name}: {value}")?;
        }
        Ok(())
    }
}
