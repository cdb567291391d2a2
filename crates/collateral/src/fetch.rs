//! Getting bytes from a vendor's service: bounded bodies, timeouts, and retries with
//! backoff that honour `Retry-After` (AMD's KDS answers 429 when asked too often).

use std::time::Duration;

use crate::CollateralError;

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; doubled for each further one.
    pub backoff: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_wait: Duration,
    /// The time one attempt may take, connecting and reading the whole body.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            timeout: Duration::from_secs(20),
        }
    }
}

/// The largest body accepted: collateral is a few kilobytes (a CRL of AMD's some more).
pub const MAX_BODY: usize = 1 << 20;

/// An HTTP client for collateral.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    retry: RetryPolicy,
}

enum Attempt {
    Done(Vec<u8>, reqwest::header::HeaderMap),
    /// Worth another try, after at least this long.
    Retry(CollateralError, Option<Duration>),
    Fatal(CollateralError),
}

impl Fetcher {
    /// A client with `retry`.
    pub fn new(retry: RetryPolicy) -> Result<Self, CollateralError> {
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .user_agent(concat!("contrast-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CollateralError::Client(e.to_string()))?;
        Ok(Fetcher { http, retry })
    }

    /// The body at `url` (a 200 answer), after up to `attempts` tries. 404 and other
    /// client errors end at once; 429, 5xx and transport errors are tried again.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, CollateralError> {
        self.get_with_headers(url).await.map(|(body, _)| body)
    }

    /// As [`Fetcher::get`], with the answer's headers (PCS sends issuer chains in them).
    pub async fn get_with_headers(
        &self,
        url: &str,
    ) -> Result<(Vec<u8>, reqwest::header::HeaderMap), CollateralError> {
        let attempts = self.retry.attempts.max(1);
        let mut wait = self.retry.backoff;
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.attempt(url).await {
                Attempt::Done(body, headers) => return Ok((body, headers)),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry(error, retry_after) => (error, retry_after),
            };
            if attempt >= attempts {
                return Err(CollateralError::GaveUp {
                    url: url.to_owned(),
                    attempts,
                    last: Box::new(error),
                });
            }
            let pause = retry_after.unwrap_or(wait).min(self.retry.max_wait);
            tracing::debug!(url, attempt, ?pause, %error, "collateral fetch failed, trying again");
            tokio::time::sleep(pause).await;
            wait = wait.saturating_mul(2);
            attempt += 1;
        }
    }

    async fn attempt(&self, url: &str) -> Attempt {
        let transport = |e: reqwest::Error| CollateralError::Transport {
            url: url.to_owned(),
            reason: if e.is_timeout() {
                "timed out".to_owned()
            } else {
                contrast_platforms::error_chain(&e)
            },
        };
        let mut response = match self.http.get(url).send().await {
            Ok(response) => response,
            Err(e) => return Attempt::Retry(transport(e), None),
        };
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            let error = CollateralError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            };
            return if status.as_u16() == 429 || status.is_server_error() {
                Attempt::Retry(error, retry_after(&response))
            } else {
                Attempt::Fatal(error)
            };
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Attempt::Fatal(CollateralError::TooLarge {
                            url: url.to_owned(),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Attempt::Done(body, headers),
                // A body cut short (the connection closed early) or a read that timed out.
                Err(e) => return Attempt::Retry(transport(e), None),
            }
        }
    }
}

/// `Retry-After` in seconds (the form KDS uses); dates are not honoured.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
