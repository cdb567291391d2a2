//! Our side of attestation: evidence for a report data, wrapped as an attestation document
//! under the OID that says what it is.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::AtlsError;

/// Something that proves what it runs: an attestation document bound to `report_data`.
pub trait Issuer: Send + Sync + Debug {
    /// The document and the OID of its certificate extension.
    fn issue(&self, report_data: &[u8; 64]) -> Result<(&'static str, Vec<u8>), AtlsError>;
}

/// Issues evidence off the async workers: issuers block (a firmware round trip, or the
/// simulator's signatures), and a worker blocked by them stalls every other task of the
/// runtime. At most `workers` issuances run at once on blocking threads, at most `waiting`
/// more wait for one; beyond that a request is refused at once. A report data (one nonce
/// for one key) is issued for once at a time: a concurrent second request for it is
/// refused, so replaying a ClientHello costs the server nothing more.
#[derive(Debug)]
pub struct IssuanceQueue {
    /// Issuances running (each holds one permit on its blocking thread).
    running: Arc<Semaphore>,
    /// Issuances running or waiting.
    admitted: Arc<Semaphore>,
    workers: usize,
    waiting: usize,
    in_flight: Arc<Mutex<HashSet<[u8; 64]>>>,
}

impl Default for IssuanceQueue {
    /// One issuance per core, and 32 waiting.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        IssuanceQueue::new(cores, 32)
    }
}

/// Releases a report data's claim when its issuance ends (or is abandoned before it ran).
struct ReportDataClaim {
    in_flight: Arc<Mutex<HashSet<[u8; 64]>>>,
    report_data: [u8; 64],
}

impl Drop for ReportDataClaim {
    fn drop(&mut self) {
        crate::lock(&self.in_flight).remove(&self.report_data);
    }
}

impl IssuanceQueue {
    /// A queue running at most `workers` issuances at once (at least one) with at most
    /// `waiting` more waiting.
    pub fn new(workers: usize, waiting: usize) -> Self {
        let workers = workers.max(1);
        IssuanceQueue {
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers.saturating_add(waiting))),
            workers,
            waiting,
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Evidence from `issuer` for `report_data`, issued on a blocking thread.
    pub async fn issue(
        &self,
        issuer: Arc<dyn Issuer>,
        report_data: [u8; 64],
    ) -> Result<(&'static str, Vec<u8>), AtlsError> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            AtlsError::Busy(format!(
                "evidence for {} requests is being issued and {} more wait (the limits)",
                self.workers, self.waiting
            ))
        })?;
        let claim = {
            let mut in_flight = crate::lock(&self.in_flight);
            if !in_flight.insert(report_data) {
                return Err(AtlsError::Nonce(
                    "evidence for this nonce is being issued for another handshake; send a \
                     fresh nonce with every handshake"
                        .into(),
                ));
            }
            ReportDataClaim {
                in_flight: self.in_flight.clone(),
                report_data,
            }
        };
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AtlsError::Issue("the issuance queue was closed".into()))?;
        // The permits and the claim move into the blocking task: if the handshake gives up
        // meanwhile, the issuance still counts until it really ends.
        tokio::task::spawn_blocking(move || {
            let _held = (admitted, running, claim);
            issuer.issue(&report_data)
        })
        .await
        .map_err(|e| AtlsError::Issue(format!("the issuing thread ended abnormally: {e}")))?
    }
}
