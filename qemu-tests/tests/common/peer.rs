//! A mesh peer on the host: a workload's credentials and a TLS server that requires a
//! client certificate of the same mesh CA, for the tests of the mesh proxy in the guest.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use contrast_ca::Ca;
use rcgen::PublicKeyData as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

/// A workload's credentials as the Initializer writes them.
pub(crate) struct Credentials {
    pub(crate) mesh_ca_pem: String,
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

impl Credentials {
    pub(crate) fn issue(ca: &Ca, name: &str) -> Credentials {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let chain_pem = ca
            .new_mesh_cert(
                &[name.to_owned(), "*".to_owned()],
                &[],
                None,
                &key.subject_public_key_info(),
            )
            .unwrap();
        Credentials {
            mesh_ca_pem: ca.mesh_ca_pem().to_owned(),
            chain_pem,
            key_pem: key.serialize_pem(),
        }
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A server presenting these credentials that requires a client certificate from the
    /// same mesh CA.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.mesh_ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(self.chain(), key)
                .unwrap(),
        )
    }
}

/// What a host peer saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// TCP connections accepted.
    pub(crate) connections: usize,
    /// The leaf client certificate of each completed handshake.
    pub(crate) client_leaves: Vec<Vec<u8>>,
    /// The first line each client sent.
    pub(crate) requests: Vec<String>,
    /// Why handshakes failed.
    pub(crate) handshake_errors: Vec<String>,
}

/// A host peer on 127.0.0.1 (the guest's 10.0.2.2): after the handshake it reads one line
/// and answers `<greeting> got <line>`, then closes.
pub(crate) async fn peer(
    config: Arc<ServerConfig>,
    greeting: String,
) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    peer_on(listener, config, greeting).await
}

/// [`peer`] on `listener`.
pub(crate) async fn peer_on(
    listener: std::net::TcpListener,
    config: Arc<ServerConfig>,
    greeting: String,
) -> (SocketAddr, Arc<Mutex<Seen>>) {
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            record.lock().unwrap().connections += 1;
            let (acceptor, record, greeting) = (acceptor.clone(), record.clone(), greeting.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        record.lock().unwrap().handshake_errors.push(e.to_string());
                        return;
                    }
                };
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec())
                    .unwrap_or_default();
                record.lock().unwrap().client_leaves.push(leaf);
                let mut line = String::new();
                let mut reader = BufReader::new(&mut tls);
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let line = line.trim_end().to_owned();
                record.lock().unwrap().requests.push(line.clone());
                let _ = tls
                    .write_all(format!("{greeting} got {line}\n").as_bytes())
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (address, seen)
}

/// Sends `line` to `addr` over TLS, trusting only `mesh_ca_pem` for the server named
/// `server_name`, with `client`'s certificate if given; the first line of the answer.
pub(crate) fn mesh_request(
    addr: &str,
    server_name: &str,
    mesh_ca_pem: &str,
    client: Option<&Credentials>,
    line: &str,
) -> Result<String, String> {
    use std::io::{BufRead as _, Write as _};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(mesh_ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(credentials) => builder
            .with_client_auth_cert(
                credentials.chain(),
                PrivateKeyDer::from_pem_slice(credentials.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    std::io::BufReader::new(tls)
        .read_line(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if reply.is_empty() {
        return Err("closed without an answer".to_owned());
    }
    Ok(reply.trim_end().to_owned())
}

/// Sends `line` to `addr` over plain TCP; what comes back before the connection closes
/// (lossy UTF-8), or why nothing did.
pub(crate) fn plain_request(addr: &str, line: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    tcp.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
