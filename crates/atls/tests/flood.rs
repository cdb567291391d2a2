//! Unauthenticated clients that send a ClientHello and then stall: evidence issuance must
//! not take the async workers, handshakes are capped per peer and overall, and one nonce
//! is issued for once at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use contrast_atls::server::AtlsServer;
use contrast_atls::{AtlsError, ConnectionLimits, Issuer, ServerOptions};
use contrast_attestation::oid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_stream::StreamExt as _;

/// An issuer as slow as a busy PSP can be, counting its calls.
#[derive(Debug)]
struct SlowIssuer {
    delay: Duration,
    calls: AtomicUsize,
}

impl Issuer for SlowIssuer {
    fn issue(&self, _report_data: &[u8; 64]) -> Result<(&'static str, Vec<u8>), AtlsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        Ok((oid::ATLS_SIMULATED_SNP, vec![0x30, 0x00]))
    }
}

/// The bytes of a real aTLS ClientHello carrying `nonce` in ALPN.
fn client_hello(nonce: [u8; 32]) -> Vec<u8> {
    let mut config = rustls::ClientConfig::builder_with_provider(contrast_atls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![
        format!("{}{}", contrast_atls::ALPN_NONCE_PREFIX, hex::encode(nonce)).into_bytes(),
        b"h2".to_vec(),
    ];
    let name = rustls::pki_types::ServerName::try_from("contrast-atls").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).unwrap();
    hello
}

/// Connects from `source` to `server`, sends a ClientHello and stalls.
async fn hanging_client(source: IpAddr, server: SocketAddr, nonce: [u8; 32]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    stream.write_all(&client_hello(nonce)).await.unwrap();
    stream
}

/// Whether the server closed `stream` without answering within `wait`.
async fn closed_without_answer(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0; 1];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buffer)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A server on `ip` behind the gRPC accept loop; connections that finish are dropped.
async fn serve(ip: IpAddr, options: ServerOptions) -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(AtlsServer::new(options).unwrap());
    let mut incoming = contrast_atls::grpc::incoming(listener, server, None);
    tokio::spawn(async move { while incoming.next().await.is_some() {} });
    addr
}

fn slow_issuer(delay: Duration) -> Arc<SlowIssuer> {
    Arc::new(SlowIssuer {
        delay,
        calls: AtomicUsize::new(0),
    })
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// 64 clients send a ClientHello and stall while every issuance takes 500 ms: a 10 ms
/// heartbeat on the same two workers must stay on time (before the fix it was seconds
/// late, and the probes sharing the runtime failed liveness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_issuance_for_hanging_client_hellos_refused_the_async_workers() {
    let issuer = slow_issuer(Duration::from_millis(500));
    let addr = serve(LOOPBACK, ServerOptions::new(Some(issuer.clone()))).await;
    let heartbeat = tokio::spawn(async {
        let mut worst = Duration::ZERO;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(10)).await;
            worst = worst.max(start.elapsed().saturating_sub(Duration::from_millis(10)));
        }
        worst
    });
    let mut clients = Vec::new();
    for i in 0..64u8 {
        clients.push(hanging_client(LOOPBACK, addr, [i; 32]).await);
    }
    let worst = heartbeat.await.unwrap();
    assert!(
        issuer.calls.load(Ordering::SeqCst) > 0,
        "the hanging clients never reached issuance"
    );
    assert!(
        worst < Duration::from_millis(100),
        "a 10 ms heartbeat was {worst:?} late while {} hanging handshakes were issued for",
        clients.len()
    );
}

/// Handshakes beyond the per-peer limit are closed at once, before any work; those within
/// it stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_over_the_per_peer_limit_refused() {
    let issuer = slow_issuer(Duration::from_secs(3));
    let limits = ConnectionLimits {
        per_peer: 4,
        ..ConnectionLimits::default()
    };
    let addr = serve(
        LOOPBACK,
        ServerOptions::new(Some(issuer.clone())).with_limits(limits),
    )
    .await;
    let mut admitted = Vec::new();
    for i in 0..4u8 {
        admitted.push(hanging_client(LOOPBACK, addr, [i; 32]).await);
        // Admission happens in the accept loop: let it see each connection in order.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 4..7u8 {
        let mut over = hanging_client(LOOPBACK, addr, [i; 32]).await;
        assert!(
            closed_without_answer(&mut over, Duration::from_secs(1)).await,
            "handshake {i} from the same peer was not refused"
        );
    }
    for (i, stream) in admitted.iter_mut().enumerate() {
        assert!(
            !closed_without_answer(stream, Duration::from_millis(200)).await,
            "handshake {i} within the limit was closed"
        );
    }
    assert!(issuer.calls.load(Ordering::SeqCst) <= 4);
}

/// Handshakes beyond the overall limit are closed at once, whatever their source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_over_the_overall_limit_refused() {
    let issuer = slow_issuer(Duration::from_secs(3));
    let limits = ConnectionLimits {
        per_peer: 4,
        total: 6,
    };
    let addr = serve(
        LOOPBACK,
        ServerOptions::new(Some(issuer.clone())).with_limits(limits),
    )
    .await;
    let mut refused = 0;
    let mut open = Vec::new();
    for source in 2..5u8 {
        for i in 0..3u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, source));
            let mut stream = hanging_client(ip, addr, [source * 16 + i; 32]).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if closed_without_answer(&mut stream, Duration::from_millis(300)).await {
                refused += 1;
            } else {
                open.push(stream);
            }
        }
    }
    assert_eq!(
        (open.len(), refused),
        (6, 3),
        "6 of 9 handshakes from 3 peers should be admitted"
    );
}

/// Two handshakes with the same client nonce at once: evidence is issued once; the
/// second is refused rather than issued for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_concurrent_handshake_with_the_same_nonce_refused() {
    let issuer = slow_issuer(Duration::from_millis(800));
    let addr = serve(LOOPBACK, ServerOptions::new(Some(issuer.clone()))).await;
    let _first = hanging_client(LOOPBACK, addr, [9; 32]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = hanging_client(LOOPBACK, addr, [9; 32]).await;
    assert!(
        closed_without_answer(&mut second, Duration::from_millis(600)).await,
        "the second handshake with a nonce in issuance was not refused"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(issuer.calls.load(Ordering::SeqCst), 1);
}

/// Issuance beyond the queue's limits (here one running, one waiting) is refused at once
/// with `Busy`, without calling the issuer, and the queue serves again once one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_over_the_queue_limits_refused() {
    let issuer = Arc::new(SlowIssuer {
        delay: Duration::from_millis(300),
        calls: AtomicUsize::new(0),
    });
    let queue = Arc::new(contrast_atls::IssuanceQueue::new(1, 1));
    let first = tokio::spawn({
        let (queue, issuer) = (queue.clone(), issuer.clone());
        async move { queue.issue(issuer, [1; 64]).await }
    });
    let second = tokio::spawn({
        let (queue, issuer) = (queue.clone(), issuer.clone());
        async move { queue.issue(issuer, [2; 64]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let refused = queue.issue(issuer.clone(), [3; 64]).await;
    assert!(matches!(refused, Err(AtlsError::Busy(_))), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "refused only after waiting"
    );
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(issuer.calls.load(Ordering::SeqCst), 2);
    queue.issue(issuer.clone(), [3; 64]).await.unwrap();
}
