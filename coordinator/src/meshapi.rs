//! MeshAPI on port 7777 (docs/protocol.md §6.3): workload certificates for attested
//! initializers, and the secrets for attested Coordinator peers. Clients are checked in the
//! handshake against the active manifest (mutual aTLS).

use std::sync::Arc;

use contrast_api::meshapi::mesh_api_server::MeshApi;
use contrast_api::meshapi::{
    NewMeshCertRequest, NewMeshCertResponse, RecoverRequest, RecoverResponse,
};
use contrast_atls::{PeerAttestation, PeerInfo, ValidatorSet, ValidatorSource};
use tonic::{Request, Response, Status};

use crate::Coordinator;
use crate::state::{State, StateGuard};

/// The MeshAPI service.
#[derive(Debug, Clone)]
pub struct MeshApiService(pub Arc<Coordinator>);

/// The gRPC service name (its proto package's), as its metrics label it.
pub(crate) const SERVICE: &str = <contrast_api::meshapi::mesh_api_server::MeshApiServer<
    MeshApiService,
> as tonic::server::NamedService>::NAME;
/// Its methods.
pub(crate) const METHODS: &[&str] = &["NewMeshCert", "Recover"];

/// The mesh server's validators: those of the state that is active when a handshake starts.
#[derive(Debug)]
pub struct MeshValidators(pub Arc<StateGuard>);

impl ValidatorSource for MeshValidators {
    fn current(&self) -> ValidatorSet {
        match self.0.ready() {
            Ok(state) => state.mesh_validators().clone(),
            Err(_) => ValidatorSet::none(),
        }
    }
}

/// The attested peer and the state it was attested against.
fn attested<T>(
    coordinator: &Coordinator,
    request: &Request<T>,
) -> Result<(Arc<State>, PeerAttestation, Vec<u8>), Status> {
    let state = coordinator.guard.ready().map_err(Status::from)?;
    let peer = request.extensions().get::<PeerInfo>();
    if let Some(refusal) = peer.and_then(|p| p.refusal.as_ref()) {
        coordinator.metrics.attestation_failed();
        return Err(Status::permission_denied(format!(
            "attestation refused: {refusal}"
        )));
    }
    let (Some(attestation), Some(public_key)) = (
        peer.and_then(|p| p.attestation.clone()),
        peer.and_then(|p| p.public_key_der.clone()),
    ) else {
        return Err(Status::unauthenticated(
            "the client was not attested; connect with mutual aTLS from a confidential VM",
        ));
    };
    // Checked against another manifest (it changed during the handshake): try again.
    if !attestation.validator.starts_with(&state.validator_label()) {
        return Err(Status::unavailable(
            "the manifest changed during the handshake; reconnect",
        ));
    }
    Ok((state, attestation, public_key))
}

#[tonic::async_trait]
impl MeshApi for MeshApiService {
    async fn new_mesh_cert(
        &self,
        request: Request<NewMeshCertRequest>,
    ) -> Result<Response<NewMeshCertResponse>, Status> {
        let (state, attestation, public_key) = attested(&self.0, &request)?;
        let Some(policy) = state.policy(&attestation.host_data) else {
            return Err(Status::permission_denied(format!(
                "policy hash {} not found in manifest; run contrast generate and contrast set",
                hex::encode(attestation.host_data)
            )));
        };
        let sans = policy.sans.clone().unwrap_or_default();
        let secret_id = policy.workload_secret_id.clone();
        let chain = state
            .ca()
            .new_mesh_cert(
                &sans,
                &attestation.claims,
                (!secret_id.is_empty()).then_some(secret_id.as_str()),
                &public_key,
            )
            .map_err(|e| {
                Status::internal(format!(
                    "issuing the workload certificate: {}",
                    contrast_platforms::error_chain(&e)
                ))
            })?;
        let workload_secret = if secret_id.is_empty() {
            Vec::new()
        } else {
            state
                .seed_engine()
                .workload_secret(&secret_id)
                .map_err(|e| Status::internal(e.to_string()))?
                .to_vec()
        };
        self.0.metrics.certificate_issued();
        tracing::info!(
            policy = %hex::encode(attestation.host_data),
            validator = %attestation.validator,
            "issued a workload certificate"
        );
        Ok(Response::new(NewMeshCertResponse {
            mesh_ca_cert: state.ca().mesh_ca_pem().as_bytes().to_vec(),
            cert_chain: chain.into_bytes(),
            root_ca_cert: state.ca().root_ca_pem().as_bytes().to_vec(),
            workload_secret,
        }))
    }

    async fn recover(
        &self,
        request: Request<RecoverRequest>,
    ) -> Result<Response<RecoverResponse>, Status> {
        let (state, attestation, _) = attested(&self.0, &request)?;
        if !state
            .policy(&attestation.host_data)
            .is_some_and(|p| p.is_coordinator())
        {
            return Err(Status::permission_denied(format!(
                "peer recovery is for Coordinators: policy {} has no coordinator role in the \
                 manifest",
                hex::encode(attestation.host_data)
            )));
        }
        let mesh_ca_key = contrast_seedengine::keys::p384_to_sec1_pem(state.ca().mesh_key())
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!("handing the secrets to an attested Coordinator peer");
        Ok(Response::new(RecoverResponse {
            seed: state.seed_engine().seed().to_vec(),
            salt: state.seed_engine().salt().to_vec(),
            mesh_ca_key: mesh_ca_key.as_bytes().to_vec(),
            latest_manifest: state.manifest_bytes().to_vec(),
            latest_transition_hash: state.latest().transition_hash.to_vec(),
            generation: state.generation() as u64,
        }))
    }
}
