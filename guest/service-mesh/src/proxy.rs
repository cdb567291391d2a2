//! The proxy: ingress listeners that terminate TLS and forward to the original destination,
//! egress listeners that originate mTLS, certificate reload, and graceful shutdown.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use crate::admin;
use crate::config::{
    DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT, DEFAULT_INGRESS_PORT, EgressEntry, IngressConfig,
    ProxyConfig,
};
use crate::reload::{self, Fingerprint};
use crate::stats::{Stats, StatsSnapshot};
use crate::tls::{ClientAuth, MeshTls, TlsError, TlsPaths};

/// Copy buffer per direction: a few TLS records, so bulk transfers are not chopped small.
const COPY_BUFFER: usize = 64 * 1024;

/// Where ingress connections go once TLS is terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressUpstream {
    /// To the connection's original destination, which for a TPROXY'd connection is the
    /// accepted socket's local address (what Envoy's ORIGINAL_DST cluster does). The
    /// proxy's own connection leaves on `lo` and is not redirected again.
    OriginalDestination,
    /// Always to this address (tests and benchmarks without redirect rules).
    Fixed(SocketAddr),
}

/// Everything the proxy needs to start.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The parsed configuration.
    pub config: ProxyConfig,
    /// The credential files.
    pub tls_paths: TlsPaths,
    /// Address the ingress listeners bind to (default 0.0.0.0).
    pub ingress_ip: IpAddr,
    /// An IPv6 address the ingress listeners bind to as well, on the same ports (IPv6
    /// only), so that IPv6 connections redirected by TPROXY have a listener (`::` when the
    /// kernel has IPv6; default none).
    pub ingress_ipv6: Option<Ipv6Addr>,
    /// The mTLS ingress port (default 15006; 0 lets the system choose).
    pub ingress_port: u16,
    /// The ingress port without required client certificate (default 15007; 0 lets the
    /// system choose).
    pub ingress_no_client_auth_port: u16,
    /// Set IP_TRANSPARENT on the ingress listeners (needed for TPROXY; needs
    /// CAP_NET_ADMIN).
    pub transparent: bool,
    /// Where ingress connections are forwarded.
    pub ingress_upstream: IngressUpstream,
    /// Address the admin interface binds to (default 0.0.0.0, as Envoy's admin).
    pub admin_ip: IpAddr,
    /// How often the credential files are checked for changes.
    pub reload_interval: Duration,
    /// Longest a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Longest a TCP connect to an upstream may take (Envoy's default is 5 s).
    pub connect_timeout: Duration,
}

impl ProxyOptions {
    /// The production defaults for `config` with credentials at `tls_paths`.
    pub fn new(config: ProxyConfig, tls_paths: TlsPaths) -> ProxyOptions {
        ProxyOptions {
            config,
            tls_paths,
            ingress_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ingress_ipv6: None,
            ingress_port: DEFAULT_INGRESS_PORT,
            ingress_no_client_auth_port: DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT,
            transparent: true,
            ingress_upstream: IngressUpstream::OriginalDestination,
            admin_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            reload_interval: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The credentials are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be set up.
    #[error("setting up the {listener} listener on {address}{hint}")]
    Listen {
        /// Which listener.
        listener: String,
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: io::Error,
        /// What to check.
        hint: &'static str,
    },
}

/// State shared by all tasks of one proxy.
#[derive(Debug)]
struct Shared {
    tls: watch::Receiver<Arc<MeshTls>>,
    stats: Arc<Stats>,
    upstream: IngressUpstream,
    own_ports: Vec<u16>,
    handshake_timeout: Duration,
    connect_timeout: Duration,
    active: AtomicUsize,
    idle: Notify,
}

/// Counts a connection as open until dropped.
struct ActiveConnection(Arc<Shared>);

impl ActiveConnection {
    fn new(shared: &Arc<Shared>) -> ActiveConnection {
        shared.active.fetch_add(1, Ordering::SeqCst);
        ActiveConnection(shared.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A started proxy.
#[derive(Debug)]
pub struct RunningProxy {
    shared: Arc<Shared>,
    ingress: Option<SocketAddr>,
    ingress_no_client_auth: Option<SocketAddr>,
    egress: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Loads the credentials, binds every listener and starts serving.
///
/// Nothing is served unless everything could be set up: a bad file or a taken port is an
/// error here.
pub async fn start(options: ProxyOptions) -> Result<RunningProxy, ProxyError> {
    // The fingerprint is taken before reading, so a change during the read is seen later.
    let fingerprint = Fingerprint::of(&options.tls_paths).ok();
    let tls = Arc::new(MeshTls::load(&options.tls_paths)?);
    let (tls_sender, tls_receiver) = watch::channel(tls);
    let stats = Arc::new(Stats::default());

    let ingress_enabled = options.config.ingress != IngressConfig::Disabled;
    let mut ingress_listeners = Vec::new();
    let mut ingress_addresses = Vec::new();
    let mut ingress_ipv6_addresses = Vec::new();
    if ingress_enabled {
        for (name, port, client_auth) in [
            ("ingress", options.ingress_port, ClientAuth::Required),
            (
                "ingress without client auth",
                options.ingress_no_client_auth_port,
                ClientAuth::Optional,
            ),
        ] {
            let address = SocketAddr::new(options.ingress_ip, port);
            let (listener, bound) = bind(address, options.transparent, name)?;
            ingress_listeners.push((listener, client_auth));
            ingress_addresses.push(bound);
            if let Some(ipv6) = options.ingress_ipv6 {
                // The port the first listener got: one TPROXY target port for both families.
                let address = SocketAddr::new(IpAddr::V6(ipv6), bound.port());
                let (listener, bound) = bind(address, options.transparent, name)?;
                ingress_listeners.push((listener, client_auth));
                ingress_ipv6_addresses.push(bound);
            }
        }
    }
    let mut egress_listeners = Vec::new();
    let mut egress_addresses = Vec::new();
    for entry in &options.config.egress {
        let address = SocketAddr::V4(entry.listen);
        let (listener, bound) = bind(address, false, &format!("egress {:?}", entry.name))?;
        egress_listeners.push((listener, entry.clone()));
        egress_addresses.push((entry.name.clone(), bound));
    }
    let (admin_listener, admin_address) = match options.config.admin_port {
        Some(port) => {
            let (listener, bound) = bind(SocketAddr::new(options.admin_ip, port), false, "admin")?;
            (Some(listener), Some(bound))
        }
        None => (None, None),
    };
    let own_ports = ingress_addresses.iter().map(SocketAddr::port).collect();

    let shared = Arc::new(Shared {
        tls: tls_receiver,
        stats: stats.clone(),
        upstream: options.ingress_upstream,
        own_ports,
        handshake_timeout: options.handshake_timeout,
        connect_timeout: options.connect_timeout,
        active: AtomicUsize::new(0),
        idle: Notify::new(),
    });
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let mut tasks = Vec::new();

    for (listener, client_auth) in ingress_listeners {
        let shared = shared.clone();
        tasks.push(tokio::spawn(accept_loop(
            listener,
            shutdown_receiver.clone(),
            shared.clone(),
            move |stream, peer| handle_ingress(stream, peer, client_auth, shared.clone()),
        )));
    }
    for (listener, entry) in egress_listeners {
        let shared = shared.clone();
        let entry = Arc::new(entry);
        tasks.push(tokio::spawn(accept_loop(
            listener,
            shutdown_receiver.clone(),
            shared.clone(),
            move |stream, peer| handle_egress(stream, peer, entry.clone(), shared.clone()),
        )));
    }
    if let Some(listener) = admin_listener {
        tasks.push(tokio::spawn(admin::serve(
            listener,
            stats.clone(),
            shutdown_receiver.clone(),
        )));
    }
    tasks.push(tokio::spawn(reload::watch_files(
        options.tls_paths.clone(),
        fingerprint,
        tls_sender,
        stats,
        options.reload_interval,
        shutdown_receiver,
    )));

    info!(
        ingress = ?ingress_addresses,
        ingress_ipv6 = ?ingress_ipv6_addresses,
        egress = ?egress_addresses,
        admin = ?admin_address,
        "service mesh proxy listening"
    );
    Ok(RunningProxy {
        shared,
        ingress: ingress_addresses.first().copied(),
        ingress_no_client_auth: ingress_addresses.get(1).copied(),
        egress: egress_addresses,
        admin: admin_address,
        shutdown,
        tasks,
    })
}

impl RunningProxy {
    /// The mTLS ingress listener's address (none when ingress is disabled).
    pub fn ingress_addr(&self) -> Option<SocketAddr> {
        self.ingress
    }

    /// The no-client-auth ingress listener's address (none when ingress is disabled).
    pub fn ingress_no_client_auth_addr(&self) -> Option<SocketAddr> {
        self.ingress_no_client_auth
    }

    /// The listener address of the egress entry called `name`.
    pub fn egress_addr(&self, name: &str) -> Option<SocketAddr> {
        self.egress
            .iter()
            .find(|(entry, _)| entry == name)
            .map(|(_, address)| *address)
    }

    /// The admin interface's address, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The credentials in use; `changed()` on the receiver waits for the next reload.
    pub fn tls_updates(&self) -> watch::Receiver<Arc<MeshTls>> {
        self.shared.tls.clone()
    }

    /// Connections currently being proxied.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Stops accepting, then waits up to `grace` for open connections to finish (they are
    /// not cut; whatever is left runs until the runtime ends).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let shared = self.shared;
        let drained = async {
            loop {
                let idle = shared.idle.notified();
                if shared.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            warn!(
                open = shared.active.load(Ordering::SeqCst),
                "connections still open after the shutdown grace period"
            );
        }
    }
}

/// Binds a listener; returns it with its address (the chosen port where `address` has 0).
fn bind(
    address: SocketAddr,
    transparent: bool,
    listener: &str,
) -> Result<(TcpListener, SocketAddr), ProxyError> {
    let error = |source: io::Error, hint: &'static str| ProxyError::Listen {
        listener: listener.to_owned(),
        address,
        source,
        hint,
    };
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| error(e, ""))?;
    // A restarted proxy must get its ports back while old connections linger in TIME_WAIT.
    socket.set_reuse_address(true).map_err(|e| error(e, ""))?;
    if address.is_ipv6() {
        // The IPv4 listener on the same port takes IPv4; this one takes IPv6 only.
        socket.set_only_v6(true).map_err(|e| error(e, ""))?;
    }
    if transparent {
        match address {
            SocketAddr::V4(_) => socket
                .set_ip_transparent_v4(true)
                .map_err(|e| error(e, " (IP_TRANSPARENT needs CAP_NET_ADMIN)"))?,
            SocketAddr::V6(_) => socket
                .set_ip_transparent_v6(true)
                .map_err(|e| error(e, " (IPV6_TRANSPARENT needs CAP_NET_ADMIN)"))?,
        }
    }
    socket.set_nonblocking(true).map_err(|e| error(e, ""))?;
    socket.bind(&address.into()).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            " (another process holds this port)"
        } else {
            ""
        };
        error(e, hint)
    })?;
    socket.listen(1024).map_err(|e| error(e, ""))?;
    let listener = TcpListener::from_std(socket.into()).map_err(|e| error(e, ""))?;
    let bound = listener.local_addr().map_err(|e| error(e, ""))?;
    Ok((listener, bound))
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    shared: Arc<Shared>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let active = ActiveConnection::new(&shared);
                    let connection = handle(stream, peer);
                    tokio::spawn(async move {
                        connection.await;
                        drop(active);
                    });
                }
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn handle_ingress(
    stream: TcpStream,
    peer: SocketAddr,
    client_auth: ClientAuth,
    shared: Arc<Shared>,
) {
    let stats = &shared.stats;
    match client_auth {
        ClientAuth::Required => stats.ingress_mtls_accepted.increment(),
        ClientAuth::Optional => stats.ingress_tls_accepted.increment(),
    }
    let upstream = match shared.upstream {
        IngressUpstream::Fixed(address) => address,
        IngressUpstream::OriginalDestination => match stream.local_addr() {
            // Not redirected: the destination is the proxy itself, and forwarding would
            // connect to itself again and again (Envoy's BlackHoleCluster).
            Ok(original) if shared.own_ports.contains(&original.port()) => {
                stats.ingress_loop_refused.increment();
                debug!(%peer, %original, "refusing a connection addressed to the proxy itself");
                return;
            }
            Ok(original) => original,
            Err(error) => {
                warn!(%peer, %error, "no original destination");
                return;
            }
        },
    };
    let _ = stream.set_nodelay(true);

    let config = shared.tls.borrow().server_config(client_auth);
    let handshake = TlsAcceptor::from(config).accept(stream);
    let downstream = match tokio::time::timeout(shared.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            stats.ingress_handshake_failed.increment();
            info!(%peer, %upstream, %error, "ingress TLS handshake refused");
            return;
        }
        Err(_) => {
            stats.ingress_handshake_failed.increment();
            info!(%peer, %upstream, "ingress TLS handshake timed out");
            return;
        }
    };

    let upstream_stream = match connect(upstream, shared.connect_timeout).await {
        Ok(stream) => stream,
        Err(error) => {
            stats.ingress_upstream_failed.increment();
            warn!(%peer, %upstream, %error, "ingress upstream unreachable");
            return;
        }
    };
    debug!(%peer, %upstream, "ingress connection established");
    pipe(downstream, upstream_stream, peer, upstream).await;
}

async fn handle_egress(
    stream: TcpStream,
    peer: SocketAddr,
    entry: Arc<EgressEntry>,
    shared: Arc<Shared>,
) {
    let stats = &shared.stats;
    stats.egress_accepted.increment();
    let _ = stream.set_nodelay(true);
    let remote = match resolve(&entry.remote_host, entry.remote_port).await {
        Ok(address) => address,
        Err(error) => {
            stats.egress_upstream_failed.increment();
            warn!(name = %entry.name, host = %entry.remote_host, %error, "egress remote not resolvable");
            return;
        }
    };
    let upstream = match connect(remote, shared.connect_timeout).await {
        Ok(stream) => stream,
        Err(error) => {
            stats.egress_upstream_failed.increment();
            warn!(name = %entry.name, %remote, %error, "egress remote unreachable");
            return;
        }
    };
    let config = shared.tls.borrow().client_config();
    // The verifier ignores names and SNI is off; the address only labels the session.
    let server_name = ServerName::IpAddress(remote.ip().into());
    let handshake = TlsConnector::from(config).connect(server_name, upstream);
    let upstream = match tokio::time::timeout(shared.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            stats.egress_handshake_failed.increment();
            warn!(name = %entry.name, %remote, %error, "egress TLS handshake failed");
            return;
        }
        Err(_) => {
            stats.egress_handshake_failed.increment();
            warn!(name = %entry.name, %remote, "egress TLS handshake timed out");
            return;
        }
    };
    debug!(name = %entry.name, %peer, %remote, "egress connection established");
    pipe(stream, upstream, peer, remote).await;
}

/// The first IPv4 address of `host` (Envoy's clusters are `V4_ONLY`).
async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no IPv4 address"))
}

async fn connect(address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Copies both ways until both sides are done; a side's end of stream is passed on as a
/// half-close (TLS close_notify or TCP FIN).
async fn pipe<A, B>(mut a: A, mut b: B, peer: SocketAddr, upstream: SocketAddr)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUFFER, COPY_BUFFER).await {
        Ok((sent, received)) => debug!(%peer, %upstream, sent, received, "connection closed"),
        Err(error) => debug!(%peer, %upstream, %error, "connection ended with an error"),
    }
}
