//! Test support: a mesh PKI from the real CA crate, credential directories, an echo
//! backend and TLS clients.

#![allow(
    dead_code,
    unreachable_pub,
    missing_debug_implementations,
    clippy::unwrap_used
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use contrast_ca::Ca;
use rcgen::PublicKeyData as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One Coordinator state: root, intermediate and mesh CA.
pub struct MeshPki {
    pub root_key: p384::SecretKey,
    pub ca: Ca,
}

/// A workload's credentials as the Initializer writes them.
#[derive(Clone)]
pub struct Credentials {
    pub mesh_ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

impl MeshPki {
    pub fn new() -> MeshPki {
        let root_key = contrast_ca::generate_mesh_key().unwrap();
        let ca = Ca::new(&root_key, &contrast_ca::generate_mesh_key().unwrap()).unwrap();
        MeshPki { root_key, ca }
    }

    /// The next manifest generation: same root, new mesh key.
    pub fn next_generation(&self) -> MeshPki {
        let ca = Ca::new(&self.root_key, &contrast_ca::generate_mesh_key().unwrap()).unwrap();
        MeshPki {
            root_key: self.root_key.clone(),
            ca,
        }
    }

    /// A workload certificate with Contrast's default SANs `[name, "*"]`.
    pub fn workload(&self, name: &str) -> Credentials {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let chain_pem = self
            .ca
            .new_mesh_cert(
                &[name.to_owned(), "*".to_owned()],
                &[],
                None,
                &key.subject_public_key_info(),
            )
            .unwrap();
        Credentials {
            mesh_ca_pem: self.ca.mesh_ca_pem().to_owned(),
            chain_pem,
            key_pem: key.serialize_pem(),
        }
    }
}

impl Credentials {
    /// Writes the three files into `dir`, each by rename so a reader sees whole files.
    pub fn write_to(&self, dir: &Path) {
        replace_file(&dir.join("mesh-ca.pem"), self.mesh_ca_pem.as_bytes());
        replace_file(&dir.join("certChain.pem"), self.chain_pem.as_bytes());
        replace_file(&dir.join("key.pem"), self.key_pem.as_bytes());
    }

    pub fn leaf_der(&self) -> CertificateDer<'static> {
        CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }
}

pub fn replace_file(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A TCP backend that greets with `backend <its port> peer <client ip>` and then echoes.
pub struct Echo {
    pub address: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl Echo {
    pub async fn start(address: SocketAddr) -> Echo {
        let listener = TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, peer)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let local = stream.local_addr().unwrap();
                    // A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6 addresses.
                    let peer = peer.ip().to_canonical();
                    let greeting = format!("backend {} peer {peer}\n", local.port());
                    if stream.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Echo {
            address,
            connections,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads the backend's greeting, then checks one echoed line; returns the greeting.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> std::io::Result<String> {
    let run = async {
        let mut stream = BufReader::new(stream);
        let mut greeting = String::new();
        if stream.read_line(&mut greeting).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no greeting",
            ));
        }
        stream.get_mut().write_all(b"ping\n").await?;
        stream.get_mut().flush().await?;
        let mut echo = String::new();
        stream.read_line(&mut echo).await?;
        if echo != "ping\n" {
            return Err(std::io::Error::other(format!("echo was {echo:?}")));
        }
        Ok(greeting.trim_end().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "exchange timed out"))?
}

/// A TLS client trusting `trusted_ca_pem` (standard webpki verification of the name
/// "server"), presenting `client` if given.
pub fn client_config(trusted_ca_pem: &str, client: Option<&Credentials>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trusted_ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(credentials) => {
            let chain = CertificateDer::pem_slice_iter(credentials.chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(credentials.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects with TLS as a server named "server".
pub async fn tls_connect(
    address: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(ServerName::try_from("server").unwrap(), tcp),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Connects, handshakes and exchanges; any failure on the way is the error.
pub async fn tls_exchange(
    address: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<String> {
    let stream = tls_connect(address, config).await?;
    exchange(stream).await
}

/// Polls `condition` until it holds (10 s at most).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
