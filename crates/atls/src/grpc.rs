//! aTLS under tonic: a stream of attested connections for `serve_with_incoming`, whose
//! [`PeerInfo`] handlers read from the request extensions, and a channel whose connector
//! dials with aTLS.

use std::io;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use crate::AtlsError;
use crate::client::{self, ClientOptions, ClientSession};
use crate::server::{AtlsServer, PeerInfo};
use crate::stream::StreamWith;

/// A server-side aTLS connection with what the handshake established about the client.
pub type AtlsConnection = StreamWith<tokio_rustls::server::TlsStream<TcpStream>, PeerInfo>;

impl Connected for AtlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.attached.clone()
    }
}

/// Called with every failed handshake (for logs and metrics).
pub type FailureHook = Arc<dyn Fn(&AtlsError) + Send + Sync>;

/// Accepts connections on `listener` and runs each handshake in its own task, so a slow
/// or hostile client holds up no one else; connections over the server's
/// [`ConnectionLimits`](crate::ConnectionLimits) are closed at once. Successful connections come out of the
/// returned stream (hand it to tonic's `serve_with_incoming`); failures go to `on_failure`
/// and are logged. The accept loop ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    server: Arc<AtlsServer>,
    on_failure: Option<FailureHook>,
) -> tokio_stream::wrappers::ReceiverStream<Result<AtlsConnection, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over the limits: close before spending anything on the connection.
            let slot = match server.admit(Some(addr)) {
                Ok(slot) => slot,
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %e, "connection refused");
                    continue;
                }
            };
            let server = server.clone();
            let tx = tx.clone();
            let on_failure = on_failure.clone();
            tokio::spawn(async move {
                match server.accept_admitted(tcp, slot).await {
                    Ok((stream, info)) => {
                        let _ = tx
                            .send(Ok(AtlsConnection {
                                stream,
                                attached: info,
                            }))
                            .await;
                    }
                    Err(e) => {
                        tracing::info!(
                            peer = %addr,
                            error = %contrast_platforms::error_chain(&e),
                            "aTLS handshake failed"
                        );
                        if let Some(hook) = on_failure {
                            hook(&e);
                        }
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A tonic channel to `addr` (`host:port`) over aTLS. It connects eagerly, so a refused
/// attestation is reported here with the validator's explanation, and returns what the
/// handshake established about the server.
pub async fn channel(
    addr: &str,
    options: ClientOptions,
) -> Result<(Channel, ClientSession), AtlsError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| AtlsError::Nonce(format!("bad address {addr}: {e}")))?;
    let last: Arc<Mutex<Option<Result<ClientSession, AtlsError>>>> = Arc::new(Mutex::new(None));
    let target = addr.to_string();
    let slot = last.clone();
    let connector = tower::service_fn(move |_uri| {
        let target = target.clone();
        let options = options.clone();
        let slot = slot.clone();
        async move {
            match client::connect(&target, &options).await {
                Ok((stream, session)) => {
                    *crate::lock(&slot) = Some(Ok(session));
                    Ok(TokioIo::new(stream))
                }
                Err(e) => {
                    let message = e.to_string();
                    *crate::lock(&slot) = Some(Err(e));
                    Err(io::Error::other(message))
                }
            }
        }
    });
    let result = endpoint.connect_with_connector(connector).await;
    let outcome = crate::lock(&last).take();
    match (result, outcome) {
        (Ok(channel), Some(Ok(session))) => Ok((channel, session)),
        (_, Some(Err(e))) => Err(e),
        (Err(e), _) => Err(AtlsError::Io(io::Error::other(e))),
        (Ok(_), None) => Err(AtlsError::Nonce("the connector never ran".into())),
    }
}
