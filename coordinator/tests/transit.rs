//! The transit engine on port 8200: Vault's transit `encrypt` and `decrypt` over mutual TLS
//! with mesh certificates, as hvac (a Vault client library) and OpenBao's transit seal
//! call them; keys from Contrast's derivation, the caller's own keys only, and refusals
//! that name what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use contrast_manifest::HexString;
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir};
use serde_json::{Value, json};

/// The workload secret ID the OpenBao workload's manifest entry carries (Contrast's
/// example sets it with the workload-secret-id annotation).
const VAULT_KEY: &str = "vault_unsealing";

struct Setup {
    deployment: Deployment,
    _store: TempDir,
    process: CoordinatorProcess,
    secrets: common::Secrets,
    user: contrast_api::userapi::user_api_client::UserApiClient<tonic::transport::Channel>,
}

/// A workload's TLS files as the Initializer writes them.
struct MeshCredentials {
    key_pem: String,
    chain_pem: String,
    mesh_ca_pem: String,
}

/// A Coordinator with a manifest of an OpenBao workload (`vault`, workload secret ID
/// [`VAULT_KEY`]) and a web workload; the Coordinator's SANs include its address.
async fn setup() -> Setup {
    let mut deployment = Deployment::new(&["vault", "web"]);
    let store = TempDir::new("store");
    let process = common::start_up(&deployment, store.path());
    let vault = HexString::from_bytes(&deployment.policy_hash("vault"));
    deployment
        .manifest
        .policies
        .get_mut(&vault)
        .unwrap()
        .workload_secret_id = VAULT_KEY.to_owned();
    let coordinator = HexString::from_bytes(&deployment.policy_hash("coordinator"));
    deployment
        .manifest
        .policies
        .get_mut(&coordinator)
        .unwrap()
        .sans
        .get_or_insert_with(Vec::new)
        .push(process.ip.to_string());
    let manifest = deployment.write_manifest(&deployment.manifest.clone());
    let validators = common::coordinator_validators(&deployment);
    let owner = common::owner_key(&deployment);
    let mut user = common::client(&process.user_addr(), &validators, Some(owner)).await;
    let secrets = common::first_set(&mut user, &deployment, &manifest).await;
    Setup {
        deployment,
        _store: store,
        process,
        secrets,
        user,
    }
}

impl Setup {
    async fn credentials(&self, workload: &str) -> MeshCredentials {
        let (key_pem, response) = contrast_testkit::new_mesh_cert(
            &self.process.mesh_addr(),
            self.deployment.issuer(workload),
        )
        .await
        .unwrap();
        MeshCredentials {
            key_pem,
            chain_pem: String::from_utf8(response.cert_chain).unwrap(),
            mesh_ca_pem: String::from_utf8(response.mesh_ca_cert).unwrap(),
        }
    }

    fn transit_addr(&self) -> SocketAddr {
        SocketAddr::new(self.process.ip, contrast_api::ports::TRANSIT)
    }

    /// An HTTPS client that trusts only `mesh_ca_pem` and reaches this Coordinator as
    /// `coordinator`, presenting `identity` (PEM chain and key) if given.
    fn client(&self, mesh_ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(mesh_ca_pem.as_bytes()).unwrap()])
            .resolve("coordinator", self.transit_addr())
            .no_proxy();
        if let Some((chain, key)) = identity {
            builder = builder
                .identity(reqwest::Identity::from_pem(format!("{chain}{key}").as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    fn mesh_client(&self, credentials: &MeshCredentials) -> reqwest::Client {
        self.client(
            &credentials.mesh_ca_pem,
            Some((&credentials.chain_pem, &credentials.key_pem)),
        )
    }
}

/// POSTs `body` to `/v1/transit/<action>/<name>`: the status and the JSON answer.
async fn call(
    client: &reqwest::Client,
    action: &str,
    name: &str,
    body: &Value,
) -> reqwest::Result<(u16, Value)> {
    let response = client
        .post(format!(
            "https://coordinator:8200/v1/transit/{action}/{name}"
        ))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, json_of(response).await))
}

/// The answer's body as JSON (null if it is not).
async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// The error messages of a Vault-style error answer.
fn errors(answer: &Value) -> String {
    answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| format!("no errors array: {answer}"))
}

/// Decrypts a `vault:v<N>:` ciphertext with the key Contrast derives: the first 32 bytes
/// of the workload secret for `"<N>_<name>"`, AES-256-GCM, nonce first.
fn open_independently(secrets: &common::Secrets, name: &str, ciphertext: &str) -> Vec<u8> {
    let rest = ciphertext.strip_prefix("vault:v").unwrap();
    let (version, encoded) = rest.split_once(':').unwrap();
    let secret = secrets
        .engine
        .workload_secret(&format!("{version}_{name}"))
        .unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret[..32]).unwrap());
    let mut blob = STANDARD.decode(encoded).unwrap();
    let (nonce, sealed) = blob.split_at_mut(12);
    let nonce = Nonce::try_assume_unique_for_key(nonce).unwrap();
    key.open_in_place(nonce, Aad::empty(), sealed)
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn hvac_encrypts_and_decrypts_with_the_key_contrast_derives() {
    let setup = setup().await;
    let vault = setup.credentials("vault").await;
    let dir = TempDir::new("transit-client");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = file("mesh-ca.pem", &vault.mesh_ca_pem);
    let chain = file("certChain.pem", &vault.chain_pem);
    let key = file("key.pem", &vault.key_pem);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transit_client.py");
    let output = Command::new(contrast_testkit::python_tool("python3"))
        .arg(script)
        .arg(format!("https://{}", setup.transit_addr()))
        .args([&ca, &chain, &key])
        .args([VAULT_KEY, "someone_else"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the hvac client failed:\n{}\n{}\nCoordinator log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        setup.process.log_text()
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let ciphertext = result["ciphertext"].as_str().unwrap();
    let plaintext = STANDARD
        .decode(result["plaintext"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        open_independently(&setup.secrets, VAULT_KEY, ciphertext),
        plaintext
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_mesh_certificates_of_the_current_manifest_get_in() {
    let mut setup = setup().await;
    let vault = setup.credentials("vault").await;
    let encrypt = json!({ "plaintext": STANDARD.encode(b"unseal me") });

    // No client certificate: the handshake fails.
    let anonymous = setup.client(&vault.mesh_ca_pem, None);
    assert!(
        call(&anonymous, "encrypt", VAULT_KEY, &encrypt)
            .await
            .is_err()
    );

    // A certificate that names the key but comes from another CA.
    let mut params = rcgen::CertificateParams::new(vec!["vault".to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let id = VAULT_KEY.as_bytes();
    let mut octets = vec![0x04, u8::try_from(id.len()).unwrap()];
    octets.extend_from_slice(id);
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[1, 3, 9901, 3, 1],
        octets,
    )];
    let forger_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forged = params.self_signed(&forger_key).unwrap();
    let forger = setup.client(
        &vault.mesh_ca_pem,
        Some((&forged.pem(), &forger_key.serialize_pem())),
    );
    assert!(call(&forger, "encrypt", VAULT_KEY, &encrypt).await.is_err());

    // The workload's own certificate works, on a connection that stays open.
    let client = setup.mesh_client(&vault);
    let (status, answer) = call(&client, "encrypt", VAULT_KEY, &encrypt).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let ciphertext = answer["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert_eq!(answer["data"]["key_version"], 0);

    // A manifest update gives the mesh a new CA: the open connection's certificate is
    // refused, and a new handshake with it fails.
    let update = common::manifest_variant(&setup.deployment, "update");
    setup
        .user
        .set_manifest(common::set_request(&setup.deployment, &update))
        .await
        .unwrap();
    let (status, answer) = call(&client, "encrypt", VAULT_KEY, &encrypt).await.unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(
        errors(&answer).contains("the manifest changed since this connection's handshake"),
        "{answer}"
    );
    assert!(call(&client, "encrypt", VAULT_KEY, &encrypt).await.is_err());

    // With a certificate of the new manifest, the key is the same: it follows from the seed.
    let renewed = setup.credentials("vault").await;
    let client = setup.mesh_client(&renewed);
    let decrypt = json!({ "ciphertext": ciphertext });
    let (status, answer) = call(&client, "decrypt", VAULT_KEY, &decrypt).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["data"]["plaintext"],
        STANDARD.encode(b"unseal me"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_manifest_no_transit_engine() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let process = common::start_up(&deployment, store.path());
    // The handshake is refused before there is a mesh CA to check clients against.
    let result = tokio::net::TcpStream::connect((process.ip, contrast_api::ports::TRANSIT)).await;
    let mut stream = result.unwrap();
    let hello = contrast_testkit::atls_client_hello([0; 32]);
    tokio::io::AsyncWriteExt::write_all(&mut stream, &hello)
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await
    .expect("the connection is closed, not left hanging");
    assert!(
        read.is_err() || answer.is_empty(),
        "no TLS answer without a manifest, got {} bytes",
        answer.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_field_and_leave_the_server_serving() {
    let setup = setup().await;
    let vault = setup.credentials("vault").await;
    let web = setup.credentials("web").await;
    let client = setup.mesh_client(&vault);
    let sealed = {
        let body = json!({ "plaintext": STANDARD.encode(b"x"), "key_version": 2 });
        let (_, answer) = call(&client, "encrypt", VAULT_KEY, &body).await.unwrap();
        answer["data"]["ciphertext"].as_str().unwrap().to_owned()
    };
    let tampered = {
        let (prefix, encoded) = sealed.rsplit_once(':').unwrap();
        let mut blob = STANDARD.decode(encoded).unwrap();
        *blob.last_mut().unwrap() ^= 1;
        format!("{prefix}:{}", STANDARD.encode(blob))
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("encrypt", json!({}), 400, "plaintext: missing"),
        (
            "encrypt",
            json!({ "plaintext": "not base64!" }),
            400,
            "plaintext: not base64",
        ),
        (
            "encrypt",
            json!({ "plaintext": "", "associated_data": "%%" }),
            400,
            "associated_data: not base64",
        ),
        (
            "encrypt",
            json!({ "plaintext": "", "key_version": -1 }),
            400,
            "not the expected JSON",
        ),
        (
            "encrypt",
            json!({ "plaintext": "", "batch_input": [] }),
            400,
            "batch_input: not supported",
        ),
        ("decrypt", json!({}), 400, "ciphertext: missing"),
        (
            "decrypt",
            json!({ "ciphertext": "vault:v1:AAAA" }),
            400,
            "shorter than a nonce and a tag",
        ),
        (
            "decrypt",
            json!({ "ciphertext": "v1:abc" }),
            400,
            "no vault:v<N>: prefix",
        ),
        (
            "decrypt",
            json!({ "ciphertext": tampered }),
            400,
            "does not decrypt",
        ),
    ];
    for (action, body, status, message) in cases {
        let (got, answer) = call(&client, action, VAULT_KEY, &body).await.unwrap();
        assert_eq!(got, status, "{action} {body}: {answer}");
        assert!(
            errors(&answer).contains(message),
            "{action} {body}: {answer}"
        );
    }

    // The web workload's certificate does not open the vault's key, and vice versa.
    let web_id = setup.deployment.manifest.policies
        [&HexString::from_bytes(&setup.deployment.policy_hash("web"))]
        .workload_secret_id
        .clone();
    let web_client = setup.mesh_client(&web);
    let body = json!({ "ciphertext": sealed });
    let (status, answer) = call(&web_client, "decrypt", VAULT_KEY, &body)
        .await
        .unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(errors(&answer).contains(&web_id), "{answer}");
    // Its own key, percent-encoded (the ID has slashes), works for it.
    let encoded = web_id.replace('/', "%2F");
    let body = json!({ "plaintext": STANDARD.encode(b"web data") });
    let (status, answer) = call(&web_client, "encrypt", &encoded, &body).await.unwrap();
    assert_eq!(status, 200, "{answer}");

    // A Content-Type other than JSON, another method, another path.
    let response = client
        .post(format!(
            "https://coordinator:8200/v1/transit/encrypt/{VAULT_KEY}"
        ))
        .header("content-type", "text/plain")
        .body(r#"{"plaintext": ""}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer = json_of(response).await;
    assert!(
        errors(&answer).contains("send application/json"),
        "{answer}"
    );
    let response = client
        .get(format!(
            "https://coordinator:8200/v1/transit/encrypt/{VAULT_KEY}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let response = client
        .post(format!(
            "https://coordinator:8200/v1/transit/keys/{VAULT_KEY}"
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    // Still serving.
    let body = json!({ "ciphertext": sealed });
    let (status, answer) = call(&client, "decrypt", VAULT_KEY, &body).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["plaintext"], STANDARD.encode(b"x"));
}
