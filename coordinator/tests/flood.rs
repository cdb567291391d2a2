//! Unauthenticated load on a Coordinator process: clients that send an aTLS ClientHello
//! and stall, and connections to the attestation API over its limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use contrast_testkit::{
    CoordinatorProcess, Deployment, TempDir, hanging_client_hellos, http_get, random_loopback,
};

/// 64 clients per aTLS port keep sending a ClientHello and stalling (the Coordinator
/// issues evidence for each before the client proves anything, here 500 ms each): the
/// liveness probe must keep answering within 100 ms. Before the fix, issuance ran on the API runtime's
/// workers, which the probes shared, and the probe waited behind it.
#[tokio::test(flavor = "multi_thread")]
async fn liveness_probe_starved_by_hanging_client_hellos_refused() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    // Evidence as slow as firmware can be: every ClientHello costs 500 ms of issuance.
    let mut process = CoordinatorProcess::start(
        Path::new(common::COORDINATOR),
        &deployment,
        store.path(),
        random_loopback(),
        &["--simulated-issue-delay-ms".to_string(), "500".to_string()],
    );
    process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    let addrs = [process.user_addr(), process.mesh_addr()];
    let until = Instant::now() + Duration::from_secs(6);
    let flood = tokio::spawn(async move {
        hanging_client_hellos(&addrs, 64, Duration::from_millis(300), until).await
    });
    // Let the flood build up, then probe every 20 ms while it lasts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probe = process.probe_addr();
    let latencies = tokio::task::spawn_blocking(move || {
        let mut latencies = Vec::new();
        while Instant::now() + Duration::from_millis(500) < until {
            let start = Instant::now();
            let answer = http_get(&probe, "/probe/liveness");
            latencies.push((start.elapsed(), answer.map(|(code, _)| code)));
            std::thread::sleep(Duration::from_millis(20));
        }
        latencies
    })
    .await
    .unwrap();
    let sent = flood.await.unwrap();
    let mut times: Vec<Duration> = latencies.iter().map(|(t, _)| *t).collect();
    times.sort();
    let p99 = times[(times.len() * 99).div_ceil(100) - 1];
    assert!(
        latencies.iter().all(|(_, code)| *code == Some(200)),
        "a liveness probe failed during the flood: {latencies:?}"
    );
    assert!(
        p99 < Duration::from_millis(100),
        "liveness p99 {p99:?} (max {:?}) while {sent} ClientHellos hung",
        times.last()
    );
    assert!(sent >= 128, "only {sent} ClientHellos were sent");
}

/// Connections to the attestation API (1314) beyond the per-peer limit are closed at once;
/// those within it stay open, and the API answers again when they are gone.
#[test]
fn attestation_api_connections_over_the_limit_refused() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let process = common::start_up(&deployment, store.path());
    let addr: std::net::SocketAddr = process.http_addr().parse().unwrap();
    let limit = contrast_coordinator::http::HTTP_CONNECTION_LIMITS.per_peer;
    let mut open = Vec::new();
    for _ in 0..limit {
        open.push(std::net::TcpStream::connect(addr).unwrap());
    }
    // The listener admits in order: give it time to see the ones within the limit.
    std::thread::sleep(Duration::from_millis(200));
    let closed = |stream: &mut std::net::TcpStream, wait: Duration| {
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut buffer = [0; 1];
        match stream.read(&mut buffer) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    };
    for attempt in 0..3 {
        let mut over = std::net::TcpStream::connect(addr).unwrap();
        assert!(
            closed(&mut over, Duration::from_secs(2)),
            "connection {} over the limit of {limit} was not refused",
            attempt + 1
        );
    }
    for stream in &mut open {
        assert!(
            !closed(stream, Duration::from_millis(50)),
            "a connection within the limit was closed"
        );
    }
    drop(open);
    std::thread::sleep(Duration::from_millis(200));
    let (code, body) = http_get(&process.http_addr(), "/capabilities").unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, contrast_coordinator::http::CAPABILITIES)
    );
}
