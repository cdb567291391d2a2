//! The admin interface (`CONTRAST_ADMIN_PORT`): a minimal HTTP/1.1 responder in place of
//! Envoy's admin, with `GET /ready` (200 `LIVE` while serving) and `GET /stats` (the
//! counters as `name: value` lines).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::stats::Stats;

/// Longest request head read; probes send a few dozen bytes.
const MAX_REQUEST: usize = 8 * 1024;

pub(crate) async fn serve(
    listener: TcpListener,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        if let Err(error) = respond(stream, &stats).await {
                            debug!(%error, "admin request failed");
                        }
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
}

async fn respond(mut stream: TcpStream, stats: &Stats) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    let read_head = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read_head)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;

    let head = String::from_utf8_lossy(&request);
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let (status, body) = match (method, path) {
        ("GET", "/ready") => ("200 OK", "LIVE\n".to_owned()),
        ("GET", "/stats") => ("200 OK", stats.snapshot().to_string()),
        ("GET", _) => (
            "404 Not Found",
            "not found; try /ready or /stats\n".to_owned(),
        ),
        _ => ("405 Method Not Allowed", "only GET\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
