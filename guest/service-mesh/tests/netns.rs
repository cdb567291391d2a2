//! The `service-mesh` binary with its real redirect rules, in two network namespaces the
//! test creates: a "server" pod and a "client" pod joined by a veth pair.
//!
//! Loopback alone cannot exercise the rules: traffic arriving on `lo` is exempt by design
//! (`-i lo -j RETURN`), and every connection within one namespace arrives on `lo`. So the
//! pods get a private veth link with RFC 5737 documentation addresses (192.0.2.1 server,
//! 192.0.2.2 client) and unique local IPv6 addresses (fd00:5e5::1, fd00:5e5::2); both ends
//! live in the test's namespaces, nothing touches the host's network. Needs root, `ip`
//! (iproute2) and `iptables`/`ip6tables` with the TPROXY and conntrack matches.
//!
//! Helper processes (echo backends, clients) are this test binary run again inside a
//! namespace with `--ignored --exact netns_child`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Credentials, Echo, MeshPki, client_config, exchange, tls_exchange};

const SERVER_IP: &str = "192.0.2.1";
const CLIENT_IP: &str = "192.0.2.2";
const SERVER_IP6: &str = "fd00:5e5::1";
const CLIENT_IP6: &str = "fd00:5e5::2";
const CHILD_ENV: &str = "CSM_NETNS_CHILD";
const DEFAULT_DENY: [&str; 7] = [
    "-m",
    "conntrack",
    "!",
    "--ctstate",
    "ESTABLISHED,RELATED",
    "-j",
    "DROP",
];

fn command(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install iproute2 and iptables): {e}"))
}

fn must(program: &str, args: &[&str]) -> String {
    let output = command(program, args);
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Two namespaces and the processes started in them; all removed on drop.
struct Pods {
    server: String,
    client: String,
    children: Vec<Child>,
}

impl Pods {
    fn create() -> Pods {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let pods = Pods {
            server: format!("csm-{id}-server"),
            client: format!("csm-{id}-client"),
            children: Vec::new(),
        };
        for name in [&pods.server, &pods.client] {
            let output = command("ip", &["netns", "add", name]);
            assert!(
                output.status.success(),
                "cannot create network namespace {name} (this test needs root and iproute2): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        must(
            "ip",
            &[
                "-n",
                &pods.server,
                "link",
                "add",
                "veth0",
                "type",
                "veth",
                "peer",
                "name",
                "veth1",
                "netns",
                &pods.client,
            ],
        );
        for (ns, device, address, address6) in [
            (&pods.server, "veth0", SERVER_IP, SERVER_IP6),
            (&pods.client, "veth1", CLIENT_IP, CLIENT_IP6),
        ] {
            must(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    device,
                ],
            );
            // `nodad`: usable at once, without waiting out duplicate address detection.
            must(
                "ip",
                &[
                    "-n",
                    ns,
                    "-6",
                    "addr",
                    "add",
                    &format!("{address6}/64"),
                    "dev",
                    device,
                    "nodad",
                ],
            );
            must("ip", &["-n", ns, "link", "set", device, "up"]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        pods
    }

    fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", ns, program];
        all.extend(args);
        command("ip", &all)
    }

    fn spawn(
        &mut self,
        ns: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> u32 {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        // `ip netns exec` execs the program, so this is the program's own process.
        let child = command.spawn().unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn wait_for_file(path: &Path, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} did not get ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One connection from a client process inside `ns`; `Ok(greeting)` or the error text.
fn client(
    ns: &str,
    mode: &str,
    target: &str,
    trust: &Path,
    credentials: Option<&Path>,
) -> Result<String, String> {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns])
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "netns_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "client")
        .env("CSM_MODE", mode)
        .env("CSM_TARGET", target)
        .env("CSM_TRUST", trust);
    if let Some(dir) = credentials {
        command.env("CSM_CREDENTIALS", dir);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.split_once("RESULT ").map(|(_, result)| result))
        .unwrap_or_else(|| {
            panic!(
                "client printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    match line.split_once(' ') {
        Some(("ok", greeting)) => Ok(greeting.to_owned()),
        Some(("err", error)) => Err(error.to_owned()),
        _ => panic!("unexpected client output {line:?}"),
    }
}

fn read_credentials(dir: &Path) -> Credentials {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    Credentials {
        mesh_ca_pem: read("mesh-ca.pem"),
        chain_pem: read("certChain.pem"),
        key_pem: read("key.pem"),
    }
}

/// The helper processes: `echo` backends or one `client` connection (see [`client`]).
#[test]
#[ignore = "a helper process of redirect_rules_in_network_namespaces, run by it inside a namespace"]
fn netns_child() {
    let role = std::env::var(CHILD_ENV).expect("run by redirect_rules_in_network_namespaces only");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match role.as_str() {
        "echo" => runtime.block_on(async {
            let ports = std::env::var("CSM_PORTS").unwrap();
            let mut backends = Vec::new();
            for port in ports.split(',') {
                // Dual-stack, as most servers listen: IPv6 reaches them too.
                backends.push(Echo::start(format!("[::]:{port}").parse().unwrap()).await);
            }
            std::fs::write(std::env::var("CSM_READY").unwrap(), b"").unwrap();
            // Serve until the test kills this process.
            std::future::pending::<()>().await;
        }),
        "client" => {
            let mode = std::env::var("CSM_MODE").unwrap();
            let target: std::net::SocketAddr =
                std::env::var("CSM_TARGET").unwrap().parse().unwrap();
            let trust = std::fs::read_to_string(std::env::var("CSM_TRUST").unwrap()).unwrap();
            let credentials = std::env::var("CSM_CREDENTIALS")
                .ok()
                .map(|dir| read_credentials(Path::new(&dir)));
            let result = runtime.block_on(async {
                match mode.as_str() {
                    "plain" => {
                        let connect = tokio::net::TcpStream::connect(target);
                        match tokio::time::timeout(Duration::from_secs(2), connect).await {
                            // A plain backend greets at once; waiting longer only waits
                            // out the proxy's handshake timeout.
                            Ok(Ok(stream)) => {
                                match tokio::time::timeout(Duration::from_secs(3), exchange(stream))
                                    .await
                                {
                                    Ok(result) => result,
                                    Err(_) => Err(std::io::Error::new(
                                        std::io::ErrorKind::TimedOut,
                                        "no greeting",
                                    )),
                                }
                            }
                            Ok(Err(error)) => Err(error),
                            Err(_) => Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "connect timed out",
                            )),
                        }
                    }
                    "tls" => {
                        tls_exchange(target, client_config(&trust, credentials.as_ref())).await
                    }
                    other => panic!("unknown mode {other}"),
                }
            });
            match result {
                Ok(greeting) => println!("RESULT ok {greeting}"),
                Err(error) => println!("RESULT err {error}"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// The two pods, the mesh credentials, and the server pod's workload and sidecar.
struct Fixture {
    pods: Pods,
    work: tempfile::TempDir,
    /// The mesh CA, as clients trust it.
    trust: PathBuf,
    /// A workload certificate of the mesh.
    client_tls: PathBuf,
    /// A workload certificate of another mesh.
    stranger_tls: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let pods = Pods::create();
        let work = tempfile::tempdir().unwrap();
        let pki = MeshPki::new();
        for (dir, credentials) in [
            ("server-tls", pki.workload("server")),
            ("client-tls", pki.workload("client")),
            ("stranger-tls", MeshPki::new().workload("client")),
        ] {
            std::fs::create_dir(work.path().join(dir)).unwrap();
            credentials.write_to(&work.path().join(dir));
        }
        Fixture {
            trust: work.path().join("server-tls").join("mesh-ca.pem"),
            client_tls: work.path().join("client-tls"),
            stranger_tls: work.path().join("stranger-tls"),
            pods,
            work,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Adds the pod VM's default-deny rule with `tool` (`iptables` or `ip6tables`).
    fn deny_inbound(&self, tool: &str) {
        let mut deny = vec!["-A", "INPUT"];
        deny.extend(DEFAULT_DENY);
        let output = self.pods.exec(&self.pods.server, tool, &deny);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Plain TCP echo backends on `ports` (comma-separated) in namespace `ns`.
    fn start_echo(&mut self, ns: &str, ports: &str) {
        let exe = std::env::current_exe().unwrap();
        let ready = self.path(&format!("echo-{ns}-ready"));
        let log = self.path(&format!("echo-{ns}.log"));
        self.pods.spawn(
            ns,
            &exe,
            &[
                "--ignored",
                "--exact",
                "netns_child",
                "--nocapture",
                "--test-threads=1",
            ],
            &[
                (CHILD_ENV, "echo"),
                ("CSM_PORTS", ports),
                ("CSM_READY", ready.to_str().unwrap()),
            ],
            &log,
        );
        wait_for_file(&ready, "the echo backends", &log);
    }

    /// The server pod's sidecar: 8002 `false`, 8003 `true`, everything else mTLS. Returns
    /// its process id once it is ready.
    fn start_server_sidecar(&mut self, name: &str) -> u32 {
        let pid = self.spawn_server_sidecar(name, &[]);
        wait_for_file(
            &self.path(&format!("{name}.ready")),
            "the server sidecar",
            &self.path(&format!("{name}.log")),
        );
        pid
    }

    /// Starts the server pod's sidecar with `extra_args`, without waiting for it.
    fn spawn_server_sidecar(&mut self, name: &str, extra_args: &[&str]) -> u32 {
        let ready = self.path(&format!("{name}.ready"));
        let log = self.path(&format!("{name}.log"));
        let tls_dir = self.path("server-tls");
        let server = self.pods.server.clone();
        let mut args = vec![
            "--tls-dir",
            tls_dir.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
        ];
        args.extend(extra_args);
        self.pods.spawn(
            &server,
            Path::new(env!("CARGO_BIN_EXE_service-mesh")),
            &args,
            &[
                (
                    "CONTRAST_INGRESS_PROXY_CONFIG",
                    "web#8002#false##raw#8003#true",
                ),
                ("CONTRAST_EGRESS_PROXY_CONFIG", ""),
                ("RUST_LOG", "debug"),
            ],
            &log,
        )
    }

    /// Writes `value` to the server pod's `/proc/sys/net/ipv6/conf/<interface>/disable_ipv6`.
    fn disable_ipv6(&self, interface: &str, value: u8) {
        let file = format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6");
        let output = self.pods.exec(
            &self.pods.server,
            "sh",
            &["-c", &format!("echo {value} > {file}")],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the process `pid` with SIGTERM and waits for it to exit.
    fn stop(&mut self, pid: u32) {
        must("kill", &["-TERM", &pid.to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .pods
            .children
            .iter_mut()
            .any(|c| c.id() == pid && c.try_wait().unwrap().is_none())
        {
            assert!(
                Instant::now() < deadline,
                "process {pid} did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `tool -t mangle -S` in the server pod.
    fn mangle(&self, tool: &str) -> String {
        let output = self
            .pods
            .exec(&self.pods.server, tool, &["-t", "mangle", "-S"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether the default-deny rule is in `filter/INPUT` of the server pod.
    fn denies_inbound(&self, tool: &str) -> bool {
        let mut check = vec!["-C", "INPUT"];
        check.extend(DEFAULT_DENY);
        match self
            .pods
            .exec(&self.pods.server, tool, &check)
            .status
            .code()
        {
            Some(0) => true,
            Some(1) => false,
            other => panic!("{tool} -C failed with {other:?}"),
        }
    }
}

#[test]
fn redirect_rules_in_network_namespaces() {
    let mut fixture = Fixture::new();
    let (server_ns, client_ns) = (fixture.pods.server.clone(), fixture.pods.client.clone());
    let trust = fixture.trust.clone();

    // The pod VM's default-deny rules, as they are before the sidecar starts.
    fixture.deny_inbound("iptables");
    fixture.deny_inbound("ip6tables");

    // The workload: plain TCP backends on 8001 (mTLS by default), 8002 (`false`), 8003 (`true`).
    fixture.start_echo(&server_ns, "8001,8002,8003");

    let target = |port: u16| format!("{SERVER_IP}:{port}");
    // Before the sidecar: the default-deny rules drop new inbound connections.
    let result = client(&client_ns, "plain", &target(8003), &trust, None);
    assert!(result.is_err(), "default deny did not hold: {result:?}");
    let result = client(
        &client_ns,
        "plain",
        &format!("[{SERVER_IP6}]:8003"),
        &trust,
        None,
    );
    assert!(
        result.is_err(),
        "IPv6 default deny did not hold: {result:?}"
    );

    let server_pid = fixture.start_server_sidecar("server");

    // The rules are Contrast's, and the default-deny rules are gone.
    let mangle = fixture.mangle("iptables");
    for rule in [
        "-A PREROUTING -p tcp -j CONTRAST_INBOUND",
        "-A CONTRAST_INBOUND -i lo -p tcp -j RETURN",
        "-A CONTRAST_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-A CONTRAST_INBOUND -p tcp -j CONTRAST_IN_REDIRECT",
        "-A CONTRAST_IN_REDIRECT -p tcp -m tcp --dport 8002 -j TPROXY --on-port 15007",
        "-A CONTRAST_IN_REDIRECT -p tcp -m tcp --dport 8003 -j RETURN",
        "-A CONTRAST_IN_REDIRECT -p tcp -j TPROXY --on-port 15006",
    ] {
        assert!(mangle.contains(rule), "missing {rule:?} in\n{mangle}");
    }
    assert!(
        !fixture.denies_inbound("iptables"),
        "default deny still there"
    );
    assert!(
        !fixture.denies_inbound("ip6tables"),
        "IPv6 default deny still there"
    );

    let mesh_client = Some(fixture.client_tls.as_path());
    let stranger = Some(fixture.stranger_tls.as_path());
    // Redirected ports reach the backend through the proxy (peer = the proxy's address);
    // the bypass port directly (peer = the client's address).
    assert_eq!(
        client(&client_ns, "tls", &target(8001), &trust, mesh_client),
        Ok(format!("backend 8001 peer {SERVER_IP}"))
    );
    assert!(client(&client_ns, "tls", &target(8001), &trust, None).is_err());
    assert!(client(&client_ns, "tls", &target(8001), &trust, stranger).is_err());
    assert!(client(&client_ns, "plain", &target(8001), &trust, None).is_err());
    assert_eq!(
        client(&client_ns, "tls", &target(8002), &trust, None),
        Ok(format!("backend 8002 peer {SERVER_IP}"))
    );
    assert!(client(&client_ns, "tls", &target(8002), &trust, stranger).is_err());
    assert_eq!(
        client(&client_ns, "plain", &target(8003), &trust, None),
        Ok(format!("backend 8003 peer {CLIENT_IP}"))
    );
    // Not redirected to itself: a connection to the proxy's own port is closed.
    assert!(client(&client_ns, "tls", &target(15006), &trust, mesh_client).is_err());
    // Inside the pod, loopback traffic is not redirected.
    assert_eq!(
        client(&server_ns, "plain", "127.0.0.1:8001", &trust, None),
        Ok("backend 8001 peer 127.0.0.1".to_owned())
    );

    // The client pod's sidecar: plain TCP on 127.0.0.2:9000 leaves as mTLS to the server.
    let client_ready = fixture.path("client-ready");
    let client_log = fixture.path("client.log");
    let client_tls = fixture.client_tls.clone();
    fixture.pods.spawn(
        &client_ns,
        Path::new(env!("CARGO_BIN_EXE_service-mesh")),
        &[
            "--tls-dir",
            client_tls.to_str().unwrap(),
            "--ready-file",
            client_ready.to_str().unwrap(),
        ],
        &[
            ("CONTRAST_INGRESS_PROXY_CONFIG", ""),
            (
                "CONTRAST_EGRESS_PROXY_CONFIG",
                &format!("backend#127.0.0.2:9000#{}", target(8001)),
            ),
        ],
        &client_log,
    );
    wait_for_file(&client_ready, "the client sidecar", &client_log);
    assert_eq!(
        client(&client_ns, "plain", "127.0.0.2:9000", &trust, None),
        Ok(format!("backend 8001 peer {SERVER_IP}"))
    );

    // A restarted sidecar rewrites its chains without duplicating anything.
    fixture.stop(server_pid);
    fixture.start_server_sidecar("server-2");
    for tool in ["iptables", "ip6tables"] {
        let mangle = fixture.mangle(tool);
        assert_eq!(
            mangle.matches("-A PREROUTING").count(),
            1,
            "{tool}: {mangle}"
        );
        assert_eq!(
            mangle.matches("-A CONTRAST_IN_REDIRECT").count(),
            3,
            "{tool}: {mangle}"
        );
    }
    assert_eq!(
        client(&client_ns, "plain", "127.0.0.2:9000", &trust, None),
        Ok(format!("backend 8001 peer {SERVER_IP}"))
    );
}

/// The pod VM denies only IPv4 (as Contrast's does); once the sidecar is ready, IPv6 must
/// not be a way around it: inbound IPv6 TCP goes through the proxy exactly as IPv4 does.
#[test]
fn ipv6_connection_past_the_mesh_refused() {
    let mut fixture = Fixture::new();
    let (server_ns, client_ns) = (fixture.pods.server.clone(), fixture.pods.client.clone());
    let trust = fixture.trust.clone();
    fixture.deny_inbound("iptables");
    fixture.start_echo(&server_ns, "8001,8002,8003");
    fixture.start_echo(&client_ns, "8004");
    fixture.start_server_sidecar("server");

    let target = |port: u16| format!("[{SERVER_IP6}]:{port}");
    // The bypass: plain TCP over IPv6 to a port that requires mTLS.
    let result = client(&client_ns, "plain", &target(8001), &trust, None);
    assert!(result.is_err(), "plain IPv6 went past the mesh: {result:?}");

    let mesh_client = Some(fixture.client_tls.as_path());
    let stranger = Some(fixture.stranger_tls.as_path());
    assert_eq!(
        client(&client_ns, "tls", &target(8001), &trust, mesh_client),
        Ok(format!("backend 8001 peer {SERVER_IP6}"))
    );
    assert!(client(&client_ns, "tls", &target(8001), &trust, None).is_err());
    assert!(client(&client_ns, "tls", &target(8001), &trust, stranger).is_err());
    assert!(client(&client_ns, "plain", &target(8002), &trust, None).is_err());
    assert_eq!(
        client(&client_ns, "tls", &target(8002), &trust, None),
        Ok(format!("backend 8002 peer {SERVER_IP6}"))
    );
    assert!(client(&client_ns, "tls", &target(8002), &trust, stranger).is_err());
    assert_eq!(
        client(&client_ns, "plain", &target(8003), &trust, None),
        Ok(format!("backend 8003 peer {CLIENT_IP6}"))
    );
    assert!(client(&client_ns, "tls", &target(15006), &trust, mesh_client).is_err());
    // IPv6 loopback inside the pod is not redirected, as 127.0.0.1 is not.
    assert_eq!(
        client(&server_ns, "plain", "[::1]:8001", &trust, None),
        Ok("backend 8001 peer ::1".to_owned())
    );
    // The pod's own outbound IPv6 connections still work: their replies are established
    // traffic and not redirected.
    assert_eq!(
        client(
            &server_ns,
            "plain",
            &format!("[{CLIENT_IP6}]:8004"),
            &trust,
            None
        ),
        Ok(format!("backend 8004 peer {SERVER_IP6}"))
    );

    let mangle = fixture.mangle("ip6tables");
    for rule in [
        "-A PREROUTING -p tcp -j CONTRAST_INBOUND",
        "-A CONTRAST_INBOUND -i lo -p tcp -j RETURN",
        "-A CONTRAST_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-A CONTRAST_IN_REDIRECT -p tcp -m tcp --dport 8003 -j RETURN",
    ] {
        assert!(mangle.contains(rule), "missing {rule:?} in\n{mangle}");
    }
}

/// If `ip6tables` cannot be applied, the sidecar must not report ready, and IPv4 must be as
/// the pod VM left it: denied, with no half of the redirect rules.
#[test]
fn sidecar_whose_ip6tables_fails_is_not_ready_and_leaves_ipv4_denied() {
    let mut fixture = Fixture::new();
    let (server_ns, client_ns) = (fixture.pods.server.clone(), fixture.pods.client.clone());
    let trust = fixture.trust.clone();
    fixture.deny_inbound("iptables");
    fixture.start_echo(&server_ns, "8001,8003");

    // An ip6tables-restore that refuses, as one without the kernel's ip6_tables would.
    let refusing = fixture.path("ip6tables-restore");
    std::fs::write(&refusing, "#!/bin/sh\necho 'no ip6_tables' >&2\nexit 1\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&refusing, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let pid = fixture.spawn_server_sidecar(
        "server",
        &["--ip6tables-restore", refusing.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let child = fixture
            .pods
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar neither failed nor stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(fixture.path("server.log")).unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("ip6tables-restore --noflush --wait failed") && log.contains("no ip6_tables"),
        "{log}"
    );
    assert!(!fixture.path("server.ready").exists(), "{log}");

    assert!(fixture.denies_inbound("iptables"), "default deny removed");
    let mangle = fixture.mangle("iptables");
    assert!(!mangle.contains("CONTRAST"), "{mangle}");
    let result = client(
        &client_ns,
        "plain",
        &format!("{SERVER_IP}:8003"),
        &trust,
        None,
    );
    assert!(result.is_err(), "default deny did not hold: {result:?}");
}

/// IPv6 switched off by sysctl when the sidecar starts can be switched on again later by
/// anything in the pod with CAP_NET_ADMIN; the rules must already be there then.
#[test]
fn ipv6_switched_on_after_start_still_refused() {
    let mut fixture = Fixture::new();
    let (server_ns, client_ns) = (fixture.pods.server.clone(), fixture.pods.client.clone());
    let trust = fixture.trust.clone();
    fixture.deny_inbound("iptables");
    fixture.start_echo(&server_ns, "8001");
    fixture.disable_ipv6("all", 1);
    fixture.start_server_sidecar("server");

    fixture.disable_ipv6("all", 0);
    fixture.disable_ipv6("veth0", 0);
    // Switching IPv6 off took the address away.
    must(
        "ip",
        &[
            "-n",
            &server_ns,
            "-6",
            "addr",
            "replace",
            &format!("{SERVER_IP6}/64"),
            "dev",
            "veth0",
            "nodad",
        ],
    );
    let target = format!("[{SERVER_IP6}]:8001");
    let result = client(&client_ns, "plain", &target, &trust, None);
    assert!(result.is_err(), "plain IPv6 went past the mesh: {result:?}");
    assert_eq!(
        client(
            &client_ns,
            "tls",
            &target,
            &trust,
            Some(fixture.client_tls.as_path())
        ),
        Ok(format!("backend 8001 peer {SERVER_IP6}"))
    );
}
