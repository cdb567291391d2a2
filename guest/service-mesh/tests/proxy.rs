//! The proxy in-process on loopback: ingress, egress, reload, admin.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{
    Credentials, Echo, MeshPki, client_config, eventually, exchange, tls_connect, tls_exchange,
};
use contrast_service_mesh::{
    IngressConfig, IngressUpstream, ProxyConfig, ProxyError, ProxyOptions, RunningProxy, TlsError,
    TlsPaths,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn options(config: ProxyConfig, dir: &Path, upstream: IngressUpstream) -> ProxyOptions {
    let mut options = ProxyOptions::new(config, TlsPaths::in_dir(dir));
    options.ingress_ip = LOCALHOST;
    options.ingress_port = 0;
    options.ingress_no_client_auth_port = 0;
    options.transparent = false;
    options.ingress_upstream = upstream;
    options.admin_ip = LOCALHOST;
    options.reload_interval = Duration::from_millis(50);
    options
}

/// A proxy serving `credentials`, forwarding ingress to a fresh echo backend.
async fn ingress_proxy(credentials: &Credentials) -> (RunningProxy, Echo, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    credentials.write_to(dir.path());
    let echo = Echo::start(SocketAddr::new(LOCALHOST, 0)).await;
    let proxy = contrast_service_mesh::start(options(
        ProxyConfig::default(),
        dir.path(),
        IngressUpstream::Fixed(echo.address),
    ))
    .await
    .unwrap();
    (proxy, echo, dir)
}

fn peer_leaf(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn ingress_mtls_accepts_a_mesh_peer() {
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let client = pki.workload("client");
    let (proxy, echo, _dir) = ingress_proxy(&server).await;
    let address = proxy.ingress_addr().unwrap();

    let stream = tls_connect(address, client_config(&server.mesh_ca_pem, Some(&client)))
        .await
        .unwrap();
    // The proxy presents the workload certificate, and its chain verifies against the mesh
    // CA with standard name checks.
    assert_eq!(peer_leaf(&stream), server.leaf_der().to_vec());
    let greeting = exchange(stream).await.unwrap();
    assert_eq!(
        greeting,
        format!("backend {} peer 127.0.0.1", echo.address.port())
    );
    assert_eq!(echo.connections(), 1);
    assert_eq!(proxy.stats().ingress_mtls_accepted, 1);
    assert_eq!(proxy.stats().ingress_handshake_failed, 0);
}

/// The peer is refused and the backend never sees a connection.
async fn assert_refused(
    proxy: &RunningProxy,
    echo: &Echo,
    address: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) {
    let before = proxy.stats().ingress_handshake_failed;
    let result = tls_exchange(address, config).await;
    assert!(result.is_err(), "the connection went through: {result:?}");
    eventually("the refusal to be counted", || {
        proxy.stats().ingress_handshake_failed == before + 1
    })
    .await;
    assert_eq!(echo.connections(), 0, "a refused peer reached the backend");
}

#[tokio::test]
async fn ingress_mtls_refuses_a_client_without_certificate() {
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let (proxy, echo, _dir) = ingress_proxy(&server).await;
    let address = proxy.ingress_addr().unwrap();
    assert_refused(
        &proxy,
        &echo,
        address,
        client_config(&server.mesh_ca_pem, None),
    )
    .await;
}

#[tokio::test]
async fn ingress_mtls_refuses_a_certificate_from_another_ca() {
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let stranger = MeshPki::new().workload("client");
    let (proxy, echo, _dir) = ingress_proxy(&server).await;
    let address = proxy.ingress_addr().unwrap();
    assert_refused(
        &proxy,
        &echo,
        address,
        client_config(&server.mesh_ca_pem, Some(&stranger)),
    )
    .await;
}

#[tokio::test]
async fn ingress_mtls_refuses_a_certificate_of_another_manifest_generation() {
    // Same root CA, new mesh key: the old workload's chain reaches the root through its
    // intermediate, but the mesh CA is the only trust anchor.
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let previous = pki.next_generation().workload("client");
    let (proxy, echo, _dir) = ingress_proxy(&server).await;
    let address = proxy.ingress_addr().unwrap();
    assert_refused(
        &proxy,
        &echo,
        address,
        client_config(&server.mesh_ca_pem, Some(&previous)),
    )
    .await;
}

#[tokio::test]
async fn ingress_refuses_plaintext() {
    let pki = MeshPki::new();
    let (proxy, echo, _dir) = ingress_proxy(&pki.workload("server")).await;
    for address in [
        proxy.ingress_addr().unwrap(),
        proxy.ingress_no_client_auth_addr().unwrap(),
    ] {
        let before = proxy.stats().ingress_handshake_failed;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        // At most a TLS alert comes back, never the backend's greeting.
        assert!(
            !String::from_utf8_lossy(&answer).contains("backend"),
            "{answer:?}"
        );
        eventually("the refusal", || {
            proxy.stats().ingress_handshake_failed == before + 1
        })
        .await;
    }
    assert_eq!(echo.connections(), 0);
}

#[tokio::test]
async fn ingress_without_client_auth_serves_tls_to_anyone_but_checks_presented_certificates() {
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let (proxy, echo, _dir) = ingress_proxy(&server).await;
    let address = proxy.ingress_no_client_auth_addr().unwrap();

    let stream = tls_connect(address, client_config(&server.mesh_ca_pem, None))
        .await
        .unwrap();
    assert_eq!(peer_leaf(&stream), server.leaf_der().to_vec());
    let greeting = exchange(stream).await.unwrap();
    assert_eq!(
        greeting,
        format!("backend {} peer 127.0.0.1", echo.address.port())
    );

    let peer = pki.workload("client");
    tls_exchange(address, client_config(&server.mesh_ca_pem, Some(&peer)))
        .await
        .unwrap();
    assert_eq!(echo.connections(), 2);
    assert_eq!(proxy.stats().ingress_tls_accepted, 2);

    // A certificate that is presented must still be a mesh certificate (Envoy verifies a
    // presented certificate even when none is required).
    let stranger = MeshPki::new().workload("client");
    let result = tls_exchange(address, client_config(&server.mesh_ca_pem, Some(&stranger))).await;
    assert!(result.is_err(), "{result:?}");
    eventually("the refusal", || {
        proxy.stats().ingress_handshake_failed == 1
    })
    .await;
    assert_eq!(echo.connections(), 2);
}

#[tokio::test]
async fn ingress_to_the_original_destination_refuses_connections_to_the_proxy_itself() {
    // Without redirect rules the original destination of a connection is the listener
    // itself: forwarding would loop, so the connection is closed unanswered.
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let client = pki.workload("client");
    let dir = tempfile::tempdir().unwrap();
    server.write_to(dir.path());
    let proxy = contrast_service_mesh::start(options(
        ProxyConfig::default(),
        dir.path(),
        IngressUpstream::OriginalDestination,
    ))
    .await
    .unwrap();
    for address in [
        proxy.ingress_addr().unwrap(),
        proxy.ingress_no_client_auth_addr().unwrap(),
    ] {
        let result = tls_exchange(address, client_config(&server.mesh_ca_pem, Some(&client))).await;
        assert!(result.is_err(), "{result:?}");
    }
    eventually("both refusals", || proxy.stats().ingress_loop_refused == 2).await;
    assert_eq!(proxy.stats().ingress_handshake_failed, 0);
}

#[tokio::test]
async fn ingress_reports_an_unreachable_upstream() {
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let client = pki.workload("client");
    let dir = tempfile::tempdir().unwrap();
    server.write_to(dir.path());
    // A port nobody listens on: bind, note, release.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = contrast_service_mesh::start(options(
        ProxyConfig::default(),
        dir.path(),
        IngressUpstream::Fixed(closed),
    ))
    .await
    .unwrap();
    let result = tls_exchange(
        proxy.ingress_addr().unwrap(),
        client_config(&server.mesh_ca_pem, Some(&client)),
    )
    .await;
    assert!(result.is_err(), "{result:?}");
    eventually("the upstream failure", || {
        proxy.stats().ingress_upstream_failed == 1
    })
    .await;
}

#[tokio::test]
async fn egress_originates_mtls_to_a_mesh_peer() {
    let pki = MeshPki::new();
    // The remote workload: its proxy requires mesh client certificates.
    let (remote, echo, _remote_dir) = ingress_proxy(&pki.workload("server")).await;
    let remote_port = remote.ingress_addr().unwrap().port();

    let local_dir = tempfile::tempdir().unwrap();
    pki.workload("client").write_to(local_dir.path());
    // "localhost" is resolved like a service name.
    let mut config = ProxyConfig::parse(
        "",
        &format!("backend#127.0.0.1:1#localhost:{remote_port}"),
        "",
    )
    .unwrap();
    config.egress[0].listen.set_port(0);
    let local = contrast_service_mesh::start(options(
        config,
        local_dir.path(),
        IngressUpstream::OriginalDestination,
    ))
    .await
    .unwrap();

    let stream = TcpStream::connect(local.egress_addr("backend").unwrap())
        .await
        .unwrap();
    let greeting = exchange(stream).await.unwrap();
    assert_eq!(
        greeting,
        format!("backend {} peer 127.0.0.1", echo.address.port())
    );
    assert_eq!(local.stats().egress_accepted, 1);
    assert_eq!(remote.stats().ingress_mtls_accepted, 1);
    assert_eq!(remote.stats().ingress_handshake_failed, 0);
}

#[tokio::test]
async fn egress_refuses_a_remote_from_another_ca() {
    let pki = MeshPki::new();
    let (remote, echo, _remote_dir) = ingress_proxy(&MeshPki::new().workload("server")).await;
    let remote_port = remote.ingress_no_client_auth_addr().unwrap().port();

    let local_dir = tempfile::tempdir().unwrap();
    pki.workload("client").write_to(local_dir.path());
    let mut config = ProxyConfig::parse(
        "",
        &format!("backend#127.0.0.1:1#127.0.0.1:{remote_port}"),
        "",
    )
    .unwrap();
    config.egress[0].listen.set_port(0);
    let local = contrast_service_mesh::start(options(
        config,
        local_dir.path(),
        IngressUpstream::OriginalDestination,
    ))
    .await
    .unwrap();

    let stream = TcpStream::connect(local.egress_addr("backend").unwrap())
        .await
        .unwrap();
    let result = exchange(stream).await;
    assert!(result.is_err(), "{result:?}");
    eventually("the egress refusal", || {
        local.stats().egress_handshake_failed == 1
    })
    .await;
    assert_eq!(echo.connections(), 0);
}

#[tokio::test]
async fn egress_reports_an_unreachable_remote() {
    let pki = MeshPki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.workload("client").write_to(dir.path());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = ProxyConfig::parse(
        "",
        &format!(
            "gone#127.0.0.1:1#127.0.0.1:{}##nowhere#127.0.0.1:2#name.invalid:80",
            closed.port()
        ),
        "",
    )
    .unwrap();
    config.egress[0].listen.set_port(0);
    config.egress[1].listen.set_port(0);
    let proxy = contrast_service_mesh::start(options(
        config,
        dir.path(),
        IngressUpstream::OriginalDestination,
    ))
    .await
    .unwrap();
    for name in ["gone", "nowhere"] {
        let stream = TcpStream::connect(proxy.egress_addr(name).unwrap())
            .await
            .unwrap();
        assert!(exchange(stream).await.is_err());
    }
    eventually("both failures", || {
        proxy.stats().egress_upstream_failed == 2
    })
    .await;
}

#[tokio::test]
async fn certificate_reload_keeps_open_connections() {
    let pki = MeshPki::new();
    let first = pki.workload("server");
    let client = pki.workload("client");
    let (proxy, _echo, dir) = ingress_proxy(&first).await;
    let address = proxy.ingress_addr().unwrap();
    let config = client_config(&first.mesh_ca_pem, Some(&client));

    let open = tls_connect(address, config.clone()).await.unwrap();
    assert_eq!(peer_leaf(&open), first.leaf_der().to_vec());

    let mut updates = proxy.tls_updates();
    let second = pki.workload("server");
    second.write_to(dir.path());
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proxy.stats().tls_reloads, 1);
    assert_eq!(updates.borrow().leaf_certificate(), &second.leaf_der());

    // The connection opened before the reload still works.
    exchange(open).await.unwrap();
    // New connections get the new certificate.
    let fresh = tls_connect(address, config).await.unwrap();
    assert_eq!(peer_leaf(&fresh), second.leaf_der().to_vec());
    exchange(fresh).await.unwrap();
    eventually("both connections to end", || {
        proxy.active_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn reload_to_a_new_mesh_ca_switches_the_trust_anchor() {
    let old_pki = MeshPki::new();
    let new_pki = old_pki.next_generation();
    let (proxy, echo, dir) = ingress_proxy(&old_pki.workload("server")).await;
    let address = proxy.ingress_addr().unwrap();
    let old_client = old_pki.workload("client");
    let new_client = new_pki.workload("client");

    let open = tls_connect(
        address,
        client_config(old_pki.ca.mesh_ca_pem(), Some(&old_client)),
    )
    .await
    .unwrap();

    let mut updates = proxy.tls_updates();
    new_pki.workload("server").write_to(dir.path());
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .unwrap()
        .unwrap();

    tls_exchange(
        address,
        client_config(new_pki.ca.mesh_ca_pem(), Some(&new_client)),
    )
    .await
    .unwrap();
    // A certificate of the old generation is refused for new connections ...
    let result = tls_exchange(
        address,
        client_config(new_pki.ca.mesh_ca_pem(), Some(&old_client)),
    )
    .await;
    assert!(result.is_err(), "{result:?}");
    // ... while its connection from before the reload goes on.
    exchange(open).await.unwrap();
    assert_eq!(echo.connections(), 2);
}

#[tokio::test]
async fn unusable_changed_files_keep_the_previous_credentials() {
    let pki = MeshPki::new();
    let first = pki.workload("server");
    let client = pki.workload("client");
    let (proxy, _echo, dir) = ingress_proxy(&first).await;
    let address = proxy.ingress_addr().unwrap();
    let config = client_config(&first.mesh_ca_pem, Some(&client));

    // A key that does not belong to the certificate (a half-done update).
    let second = pki.workload("server");
    common::replace_file(
        &dir.path().join("certChain.pem"),
        second.chain_pem.as_bytes(),
    );
    eventually("the refused reload", || {
        proxy.stats().tls_reload_failures == 1
    })
    .await;
    let stream = tls_connect(address, config.clone()).await.unwrap();
    assert_eq!(peer_leaf(&stream), first.leaf_der().to_vec());
    exchange(stream).await.unwrap();

    // The same broken state is not retried over and over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.stats().tls_reload_failures, 1);

    // Completing the update loads it.
    common::replace_file(&dir.path().join("key.pem"), second.key_pem.as_bytes());
    eventually("the reload", || proxy.stats().tls_reloads == 1).await;
    let stream = tls_connect(address, config).await.unwrap();
    assert_eq!(peer_leaf(&stream), second.leaf_der().to_vec());

    // A vanished file keeps the current credentials too.
    std::fs::remove_file(dir.path().join("key.pem")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    exchange(stream).await.unwrap();
    let client_again = client_config(&first.mesh_ca_pem, Some(&client));
    tls_exchange(address, client_again).await.unwrap();
}

#[tokio::test]
async fn start_refuses_unusable_credentials() {
    let pki = MeshPki::new();
    let good = pki.workload("server");
    let other = pki.workload("other");
    let stranger = MeshPki::new().workload("server");

    let start = |credentials: Option<Credentials>| async move {
        let dir = tempfile::tempdir().unwrap();
        if let Some(credentials) = credentials {
            credentials.write_to(dir.path());
        }
        contrast_service_mesh::start(options(
            ProxyConfig::default(),
            dir.path(),
            IngressUpstream::OriginalDestination,
        ))
        .await
        .map(|_| ())
    };

    let error = start(None).await.unwrap_err();
    assert!(
        matches!(error, ProxyError::Tls(TlsError::Read { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("mesh-ca.pem"), "{error}");

    let mismatched = Credentials {
        key_pem: other.key_pem.clone(),
        ..good.clone()
    };
    let error = start(Some(mismatched)).await.unwrap_err();
    assert!(
        matches!(error, ProxyError::Tls(TlsError::KeyMismatch { .. })),
        "{error}"
    );

    let wrong_ca = Credentials {
        mesh_ca_pem: stranger.mesh_ca_pem.clone(),
        ..good.clone()
    };
    let error = start(Some(wrong_ca)).await.unwrap_err();
    assert!(
        matches!(error, ProxyError::Tls(TlsError::NotFromMeshCa { .. })),
        "{error}"
    );

    let no_key = Credentials {
        key_pem: "garbage".into(),
        ..good.clone()
    };
    let error = start(Some(no_key)).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProxyError::Tls(TlsError::Pem {
                file: "key.pem",
                ..
            })
        ),
        "{error}"
    );

    let no_ca = Credentials {
        mesh_ca_pem: String::new(),
        ..good.clone()
    };
    let error = start(Some(no_ca)).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProxyError::Tls(TlsError::Pem {
                file: "mesh-ca.pem",
                ..
            })
        ),
        "{error}"
    );

    // Well-formed PEM around bytes that are no certificate.
    let bad_ca = Credentials {
        mesh_ca_pem: "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n".into(),
        ..good.clone()
    };
    let error = start(Some(bad_ca)).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProxyError::Tls(TlsError::TrustAnchor { index: 1, .. })
        ),
        "{error}"
    );

    let no_chain = Credentials {
        chain_pem: String::new(),
        ..good.clone()
    };
    let error = start(Some(no_chain)).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProxyError::Tls(TlsError::Pem {
                file: "certChain.pem",
                ..
            })
        ),
        "{error}"
    );
}

#[tokio::test]
async fn start_refuses_a_taken_port_naming_the_listener() {
    let pki = MeshPki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.workload("server").write_to(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut options = options(
        ProxyConfig::default(),
        dir.path(),
        IngressUpstream::OriginalDestination,
    );
    options.ingress_port = taken.local_addr().unwrap().port();
    let error = contrast_service_mesh::start(options).await.unwrap_err();
    assert!(
        matches!(&error, ProxyError::Listen { listener, .. } if listener == "ingress"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("another process holds this port"),
        "{error}"
    );
}

#[tokio::test]
async fn disabled_ingress_binds_no_ingress_listeners() {
    let pki = MeshPki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.workload("server").write_to(dir.path());
    let config = ProxyConfig::parse("DISABLED", "", "").unwrap();
    assert_eq!(config.ingress, IngressConfig::Disabled);
    let proxy = contrast_service_mesh::start(options(
        config,
        dir.path(),
        IngressUpstream::OriginalDestination,
    ))
    .await
    .unwrap();
    assert_eq!(proxy.ingress_addr(), None);
    assert_eq!(proxy.ingress_no_client_auth_addr(), None);
}

#[tokio::test]
async fn admin_interface_answers_ready_and_stats() {
    let pki = MeshPki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.workload("server").write_to(dir.path());
    // Port 1 is replaced by a free one below; the parser refuses 0.
    let mut config = ProxyConfig::parse("", "", "1").unwrap();
    config.admin_port = Some(0);
    let proxy = contrast_service_mesh::start(options(
        config,
        dir.path(),
        IngressUpstream::OriginalDestination,
    ))
    .await
    .unwrap();
    let admin = proxy.admin_addr().unwrap();

    let get = |path: &'static str| async move {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    let ready = get("/ready").await;
    assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
    assert!(ready.ends_with("\r\n\r\nLIVE\n"), "{ready}");
    let stats = get("/stats").await;
    assert!(stats.contains("ingress.mtls.accepted: 0\n"), "{stats}");
    assert!(stats.contains("tls.reloads: 0\n"), "{stats}");
    assert!(get("/other").await.starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn shutdown_stops_accepting_and_waits_for_open_connections() {
    let pki = MeshPki::new();
    let server = pki.workload("server");
    let client = pki.workload("client");
    let (proxy, _echo, _dir) = ingress_proxy(&server).await;
    let address = proxy.ingress_addr().unwrap();
    let config = client_config(&server.mesh_ca_pem, Some(&client));
    let mut open = tls_connect(address, config).await.unwrap();
    eventually("the connection to be counted", || {
        proxy.active_connections() == 1
    })
    .await;

    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        open.shutdown().await.unwrap();
        drop(open);
    });
    let started = tokio::time::Instant::now();
    proxy.shutdown(Duration::from_secs(10)).await;
    // It waited for the open connection, not for the full grace period.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(9),
        "{waited:?}"
    );
    closer.await.unwrap();
    assert!(
        TcpStream::connect(address).await.is_err(),
        "still accepting after shutdown"
    );
}
