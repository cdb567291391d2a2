//! Real aTLS handshakes on loopback with simulated SEV-SNP evidence: one-sided, mutual,
//! and the refusals (wrong policy, wrong measurement, no evidence, unattested server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use contrast_atls::server::AtlsServer;
use contrast_atls::{
    ClientOptions, Issuer, ReferenceValidator, ServerOptions, ValidatorSet, Verifiers,
};
use contrast_attestation::snp::{
    SnpEndorsements, SnpProduct, suggested_reference_values, verify_report,
};
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::simulated_snp;
use contrast_manifest::SnpReferenceValues;
use contrast_simulator::{SimulatedAmd, SnpReportSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn amd() -> Arc<SimulatedAmd> {
    static AMD: OnceLock<Arc<SimulatedAmd>> = OnceLock::new();
    AMD.get_or_init(|| Arc::new(SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap()))
        .clone()
}

fn issuer(host_data: [u8; 32], measurement: [u8; 48]) -> Arc<dyn Issuer> {
    let mut spec = SnpReportSpec::new(SnpProduct::Milan);
    spec.host_data = host_data;
    spec.measurement = measurement;
    Arc::new(DocumentIssuer::new(Arc::new(simulated_snp(amd(), spec))))
}

fn reference_values() -> SnpReferenceValues {
    let report = amd()
        .report(&SnpReportSpec::new(SnpProduct::Milan))
        .unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(report.vcek_der),
        ask: Some(report.ask_der),
        ark: Some(report.ark_der),
        crl: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified =
        verify_report(&report.report, &endorsements, &amd().trust_anchor(), now).unwrap();
    suggested_reference_values(&verified)
}

fn validators(host_data: [u8; 32]) -> ValidatorSet {
    let anchor = amd().trust_anchor();
    let tdx = contrast_simulator::SimulatedIntel::generate(Default::default())
        .unwrap()
        .trust_anchor();
    let verifiers = Verifiers::real().with_simulated(anchor, tdx);
    ValidatorSet::new(vec![Arc::new(ReferenceValidator::new(
        verifiers,
        vec![reference_values()],
        Vec::new(),
        Some(vec![host_data]),
    ))])
}

/// Serves one connection: echoes what the client wrote, reports the server's view.
async fn serve_once(
    options: ServerOptions,
) -> (
    String,
    tokio::task::JoinHandle<Result<contrast_atls::PeerInfo, String>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = AtlsServer::new(options).unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut stream, info) = server.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(&buf).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        Ok(info)
    });
    (addr, task)
}

async fn exchange(
    addr: &str,
    options: &ClientOptions,
) -> Result<contrast_atls::ClientSession, String> {
    let (mut stream, session) = contrast_atls::client::connect(addr, options)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"hello")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"hello");
    Ok(session)
}

#[tokio::test]
async fn one_sided_attestation_of_the_server() {
    let policy = [1; 32];
    let (addr, server) = serve_once(ServerOptions::new(Some(issuer(policy, [0; 48])))).await;
    let session = exchange(&addr, &ClientOptions::new(validators(policy)))
        .await
        .unwrap();
    let attestation = session.server_attestation.unwrap();
    assert_eq!(attestation.host_data, policy);
    assert!(attestation.simulated);
    assert!(!attestation.claims.is_empty());
    let info = server.await.unwrap().unwrap();
    assert!(
        info.public_key_der.is_some(),
        "the client still sends a key"
    );
    assert!(info.attestation.is_none());
}

#[tokio::test]
async fn mutual_attestation() {
    let server_policy = [1; 32];
    let client_policy = [2; 32];
    let options = ServerOptions::new(Some(issuer(server_policy, [0; 48])))
        .with_validators(Arc::new(validators(client_policy)));
    let (addr, server) = serve_once(options).await;
    let client =
        ClientOptions::new(validators(server_policy)).with_issuer(issuer(client_policy, [0; 48]));
    exchange(&addr, &client).await.unwrap();
    let info = server.await.unwrap().unwrap();
    assert_eq!(info.attestation.unwrap().host_data, client_policy);
}

#[tokio::test]
async fn a_server_with_another_policy_or_measurement_is_refused() {
    for (host_data, measurement, why) in [
        ([9; 32], [0; 48], "HOST_DATA"),
        ([1; 32], [7; 48], "MEASUREMENT"),
    ] {
        let (addr, _server) =
            serve_once(ServerOptions::new(Some(issuer(host_data, measurement)))).await;
        let err = exchange(&addr, &ClientOptions::new(validators([1; 32])))
            .await
            .unwrap_err();
        assert!(err.contains(why), "{why}: {err}");
    }
}

#[tokio::test]
async fn a_refusal_says_whether_the_policy_differs() {
    for (host_data, measurement, expected) in [([9; 32], [0; 48], true), ([1; 32], [7; 48], false)]
    {
        let (addr, _server) =
            serve_once(ServerOptions::new(Some(issuer(host_data, measurement)))).await;
        let err =
            match contrast_atls::client::connect(&addr, &ClientOptions::new(validators([1; 32])))
                .await
            {
                Ok(_) => panic!("accepted a server that differs"),
                Err(e) => e,
            };
        assert!(
            matches!(
                err,
                contrast_atls::AtlsError::Refused { policy_mismatch, .. } if policy_mismatch == expected
            ),
            "{err}"
        );
    }
}

#[tokio::test]
async fn an_unattested_server_is_refused() {
    let (addr, _server) = serve_once(ServerOptions::new(None)).await;
    let err = exchange(&addr, &ClientOptions::new(validators([1; 32])))
        .await
        .unwrap_err();
    assert!(err.contains("no valid attestation document"), "{err}");
}

#[tokio::test]
async fn a_client_without_evidence_is_refused_by_a_mutual_server() {
    let options = ServerOptions::new(Some(issuer([1; 32], [0; 48])))
        .with_validators(Arc::new(validators([2; 32])));
    let (addr, server) = serve_once(options).await;
    let _ = exchange(&addr, &ClientOptions::new(ValidatorSet::none())).await;
    let err = server.await.unwrap().unwrap_err();
    assert!(err.contains("no valid attestation document"), "{err}");
}

#[tokio::test]
async fn a_client_with_the_wrong_policy_is_refused_by_a_mutual_server() {
    let options = ServerOptions::new(Some(issuer([1; 32], [0; 48])))
        .with_validators(Arc::new(validators([2; 32])));
    let (addr, server) = serve_once(options).await;
    let client = ClientOptions::new(ValidatorSet::none()).with_issuer(issuer([3; 32], [0; 48]));
    let _ = exchange(&addr, &client).await;
    let err = server.await.unwrap().unwrap_err();
    assert!(err.contains("HOST_DATA"), "{err}");
}

#[tokio::test]
async fn mutual_attestation_with_a_given_client_key() {
    let options = ServerOptions::new(Some(issuer([1; 32], [0; 48])))
        .with_validators(Arc::new(validators([2; 32])));
    let (addr, server) = serve_once(options).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let client = ClientOptions::new(ValidatorSet::none())
        .with_issuer(issuer([2; 32], [0; 48]))
        .with_client_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
            key.serialize_der().into(),
        ));
    exchange(&addr, &client).await.unwrap();
    let info = server.await.unwrap().unwrap();
    assert_eq!(
        info.public_key_der.unwrap(),
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
}

#[tokio::test]
async fn a_deferring_server_completes_the_handshake_and_reports_the_refusal() {
    let options = ServerOptions::new(Some(issuer([1; 32], [0; 48])))
        .with_validators(Arc::new(validators([2; 32])))
        .with_deferred_refusal();
    let (addr, server) = serve_once(options).await;
    let client = ClientOptions::new(ValidatorSet::none()).with_issuer(issuer([3; 32], [0; 48]));
    exchange(&addr, &client).await.unwrap();
    let info = server.await.unwrap().unwrap();
    assert!(info.attestation.is_none());
    assert!(info.refusal.unwrap().contains("HOST_DATA"));
}
