//! The service-mesh proxy in the guest carries a workload's plain TCP connection to a peer
//! on the host over mTLS with the mesh certificate, and refuses a peer whose certificate is
//! not from this mesh CA (a workload certificate of the next manifest generation: same
//! root, another mesh CA).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::peer::{Credentials, peer};
use contrast_ca::Ca;
use contrast_qemu_tests::{Console, Vm, image};

/// The guest's loopback listeners of the two egress entries.
const MESH_LISTEN: &str = "127.0.0.1:7001";
const ROGUE_LISTEN: &str = "127.0.0.1:7002";

const PROXY_TO_HOST: &str = r#"
fail() { echo "CONTRAST-TEST-FAIL $1: $2"; [ -e /run/mesh.log ] && cat /run/mesh.log; exit 1; }
echo "CONTRAST-STEP guest-date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p /run/tls
for file in mesh-ca.pem certChain.pem key.pem; do
    cp "/run/test/$file" "/run/tls/$file" || fail "$1" "copying $file"
done
chmod 0600 /run/tls/key.pem
export CONTRAST_INGRESS_PROXY_CONFIG=DISABLED
export CONTRAST_EGRESS_PROXY_CONFIG="$(cat /run/test/egress)"
# Its log goes through a file, uncoloured (it colours even a file unless NO_COLOR is set).
NO_COLOR=1 service-mesh --no-redirect --tls-dir /run/tls --ready-file /run/mesh-ready 2>/run/mesh.log &
proxy=$!
waited=0
while [ ! -e /run/mesh-ready ]; do
    kill -0 "$proxy" 2>/dev/null || fail "$1" "service-mesh exited before it was ready"
    waited=$((waited + 1))
    [ "$waited" -le 300 ] || fail "$1" "service-mesh not ready after 30 s"
    sleep 0.1
done
echo "CONTRAST-STEP mesh-ready"
reply=$(echo "hello from the guest" | timeout 60 nc 127.0.0.1 7001)
echo "CONTRAST-STEP mesh-reply=$reply"
rogue=$(echo "hello to the rogue peer" | timeout 60 nc 127.0.0.1 7002)
echo "CONTRAST-STEP rogue-reply=$rogue"
kill "$proxy"
wait "$proxy"
echo "CONTRAST-STEP proxy-exit=$?"
sed 's/^/[service-mesh] /' /run/mesh.log
echo "CONTRAST-TEST-PASS $1"
"#;

fn step<'a>(console: &'a Console, key: &str) -> &'a str {
    console.step_value(key).unwrap_or_else(|| {
        panic!(
            "the guest printed no CONTRAST-STEP {key}=:\n{}",
            console.text
        )
    })
}

#[test]
fn the_mesh_proxy_carries_mtls_to_a_mesh_peer_and_refuses_a_foreign_one() {
    let image = image().unwrap();

    let root_key = contrast_ca::generate_mesh_key().unwrap();
    let mesh = Ca::new(&root_key, &contrast_ca::generate_mesh_key().unwrap()).unwrap();
    // The next manifest generation: the same root, another mesh CA.
    let next_generation = Ca::new(&root_key, &contrast_ca::generate_mesh_key().unwrap()).unwrap();
    let guest = Credentials::issue(&mesh, "guest");
    let host = Credentials::issue(&mesh, "host-peer");
    let foreign = Credentials::issue(&next_generation, "foreign-peer");
    // The foreign peer would accept the guest: only the guest's check can refuse it.
    let foreign_config = Credentials {
        mesh_ca_pem: guest.mesh_ca_pem.clone(),
        chain_pem: foreign.chain_pem.clone(),
        key_pem: foreign.key_pem.clone(),
    }
    .server_config();

    let nonce = hex::encode(contrast_testkit::sha256(guest.key_pem.as_bytes()));
    let greeting = format!("mesh-peer {}", &nonce[..16]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mesh_address, mesh_seen) = runtime.block_on(peer(host.server_config(), greeting.clone()));
    let (foreign_address, foreign_seen) =
        runtime.block_on(peer(foreign_config, "foreign-peer".to_owned()));

    let egress = format!(
        "mesh-peer#{MESH_LISTEN}#10.0.2.2:{}##foreign-peer#{ROGUE_LISTEN}#10.0.2.2:{}",
        mesh_address.port(),
        foreign_address.port()
    );
    let console = Vm::new(&image, "mesh-egress")
        .script(PROXY_TO_HOST)
        .content("mesh-ca.pem", guest.mesh_ca_pem.clone())
        .content("certChain.pem", guest.chain_pem.clone())
        .content("key.pem", guest.key_pem.clone())
        .content("egress", egress)
        .network()
        .timeout(Duration::from_secs(240))
        .boot()
        .unwrap();
    console.expect_pass().unwrap();
    eprintln!("mesh boot took {:?}", console.elapsed);

    // The payload went guest → proxy → mTLS → host peer and back.
    assert_eq!(
        step(&console, "mesh-reply"),
        format!("{greeting} got hello from the guest"),
        "{}",
        console.text
    );
    let mesh_seen = mesh_seen.lock().unwrap();
    assert_eq!(
        mesh_seen.requests,
        ["hello from the guest"],
        "{mesh_seen:?}"
    );
    // The peer required a client certificate chaining to the mesh CA, and it is the
    // guest's workload certificate.
    assert_eq!(
        mesh_seen.client_leaves,
        [guest.chain()[0].to_vec()],
        "the host peer did not see the guest's mesh certificate"
    );
    assert!(mesh_seen.handshake_errors.is_empty(), "{mesh_seen:?}");

    // The foreign peer was reached but refused at the handshake: no payload either way.
    assert_eq!(step(&console, "rogue-reply"), "", "{}", console.text);
    let foreign_seen = foreign_seen.lock().unwrap();
    assert_eq!(
        foreign_seen.connections, 1,
        "{foreign_seen:?}\n{}",
        console.text
    );
    assert!(foreign_seen.client_leaves.is_empty(), "{foreign_seen:?}");
    assert!(foreign_seen.requests.is_empty(), "{foreign_seen:?}");
    // The proxy told the peer why with a fatal alert.
    assert!(
        foreign_seen.handshake_errors.len() == 1
            && foreign_seen.handshake_errors[0].contains("received fatal alert"),
        "{foreign_seen:?}"
    );
    let refusal = console
        .text
        .lines()
        .find(|l| l.contains("egress TLS handshake failed"))
        .unwrap_or_else(|| panic!("no refusal in the proxy's log:\n{}", console.text));
    // The foreign leaf names this mesh CA's subject as its issuer (same name, other key),
    // so path building finds the anchor and the signature check fails.
    assert!(
        refusal.contains("name=foreign-peer")
            && refusal.contains("invalid peer certificate: BadSignature"),
        "{refusal}"
    );
    assert!(
        !console
            .text
            .lines()
            .any(|l| l.contains("egress TLS handshake failed") && l.contains("name=mesh-peer")),
        "{}",
        console.text
    );
    assert_eq!(step(&console, "proxy-exit"), "0", "{}", console.text);
}
