//! UserAPI on port 1313 (docs/protocol.md §6.2): SetManifest, GetManifests, Recover.
//! Clients attest the Coordinator; the Coordinator authenticates them by the public key of
//! their TLS certificate (workload owner, seed share owner) or a detached signature.

use std::sync::Arc;

use contrast_api::userapi::user_api_server::UserApi;
use contrast_api::userapi::{
    GetManifestsRequest, GetManifestsResponse, LatestTransition, RecoverRequest, RecoverResponse,
    SeedShare, SeedShareDocument, SetManifestRequest, SetManifestResponse,
};
use contrast_atls::PeerInfo;
use contrast_seedengine::SeedEngine;
use tonic::{Request, Response, Status};

use crate::Coordinator;
use crate::error::CoordinatorError;
use crate::state::{ExpectedBy, ExpectedTransition, SetManifestInput, seedshare_owner_form};

/// The UserAPI service.
#[derive(Debug, Clone)]
pub struct UserApiService(pub Arc<Coordinator>);

/// The gRPC service name (its proto package's), as its metrics label it.
pub(crate) const SERVICE: &str = <contrast_api::userapi::user_api_server::UserApiServer<
    UserApiService,
> as tonic::server::NamedService>::NAME;
/// Its methods.
pub(crate) const METHODS: &[&str] = &["SetManifest", "GetManifests", "Recover"];

fn caller_key<T>(request: &Request<T>) -> Option<Vec<u8>> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|peer| peer.public_key_der.clone())
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoordinatorError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl UserApi for UserApiService {
    async fn set_manifest(
        &self,
        request: Request<SetManifestRequest>,
    ) -> Result<Response<SetManifestResponse>, Status> {
        let caller_public_key = caller_key(&request);
        let req = request.into_inner();
        let input = SetManifestInput {
            manifest: req.manifest,
            policies: req.policies,
            previous_transition_hash: req.previous_transition_hash,
            signature: req.signature,
            signer_public_key: req.signer_public_key,
            caller_public_key,
        };
        let coordinator = self.0.clone();
        let result = blocking(move || coordinator.guard.set_manifest(input)).await;
        self.0.metrics.observe_set_manifest(&result);
        let out = result?;
        self.0.metrics.set_generation(out.state.generation());
        let seed_shares_doc = out.seed_shares.map(|doc| SeedShareDocument {
            seed_shares: doc
                .seed_shares
                .into_iter()
                .map(|share| SeedShare {
                    public_key: share.public_key,
                    encrypted_seed: share.encrypted_seed,
                })
                .collect(),
            salt: doc.salt,
        });
        Ok(Response::new(SetManifestResponse {
            root_ca: out.root_ca.into_bytes(),
            mesh_ca: out.mesh_ca.into_bytes(),
            seed_shares_doc,
        }))
    }

    async fn get_manifests(
        &self,
        _request: Request<GetManifestsRequest>,
    ) -> Result<Response<GetManifestsResponse>, Status> {
        let coordinator = self.0.clone();
        let crate::state::HistoryView {
            state,
            manifests,
            policies,
        } = blocking(move || coordinator.guard.manifests()).await?;
        Ok(Response::new(GetManifestsResponse {
            manifests: manifests.to_vec(),
            policies: policies.to_vec(),
            root_ca: state.ca().root_ca_pem().as_bytes().to_vec(),
            mesh_ca: state.ca().mesh_ca_pem().as_bytes().to_vec(),
            latest_transition: Some(LatestTransition {
                transition_hash: state.latest().transition_hash.to_vec(),
                signature: state.latest().signature.clone(),
                generation: state.latest().generation.unwrap_or(0),
            }),
        }))
    }

    async fn recover(
        &self,
        request: Request<RecoverRequest>,
    ) -> Result<Response<RecoverResponse>, Status> {
        let caller = caller_key(&request).ok_or_else(|| {
            Status::permission_denied(
                "no client certificate: recovery must be authenticated with a seed share \
                 owner key (contrast recover --seedshare-owner-key)",
            )
        })?;
        let req = request.into_inner();
        let expected = expected_transition(&req)?;
        // Refuse early, before the peer check, when there is nothing to recover.
        match self.0.guard.status().map_err(Status::from)? {
            crate::state::Status::Ready(_) => {
                return Err(CoordinatorError::AlreadyRecovered.into());
            }
            crate::state::Status::Uninitialized => {
                return Err(CoordinatorError::NoStateToRecover.into());
            }
            crate::state::Status::Recovery => {}
        }
        if !req.force
            && let Some(peer) = self.0.peers.first_ready_peer().await
        {
            return Err(CoordinatorError::ReadyPeerExists(peer).into());
        }
        // The seed is the deployment's master secret: wipe this copy once the engine has it.
        let seed = zeroize::Zeroizing::new(req.seed);
        let engine = SeedEngine::new(&seed, &req.salt)
            .map_err(|e| Status::invalid_argument(format!("seed or salt: {e}")))?;
        let mesh_key = contrast_ca::generate_mesh_key()
            .map_err(|e| Status::internal(contrast_platforms::error_chain(&e)))?;
        let coordinator = self.0.clone();
        let state = blocking(move || {
            coordinator.guard.recover_expecting(
                Arc::new(engine),
                mesh_key,
                expected,
                |manifest, _| authorize_seedshare_owner(manifest, &caller),
            )
        })
        .await?;
        self.0.metrics.set_generation(state.generation());
        Ok(Response::new(RecoverResponse {
            transition_hash: state.latest().transition_hash.to_vec(),
            generation: state.generation() as u64,
        }))
    }
}

/// The transition the caller last verified, if it sent one (an old client sends none and
/// gets no rollback check).
fn expected_transition(req: &RecoverRequest) -> Result<Option<ExpectedTransition>, Status> {
    if req.expected_transition_hash.is_empty() {
        return Ok(None);
    }
    let hash = req
        .expected_transition_hash
        .as_slice()
        .try_into()
        .map_err(|_| {
            Status::invalid_argument(format!(
                "ExpectedTransitionHash: expected 32 bytes, got {}",
                req.expected_transition_hash.len()
            ))
        })?;
    Ok(Some(ExpectedTransition {
        hash,
        generation: (req.expected_generation != 0).then_some(req.expected_generation),
        source: ExpectedBy::User,
    }))
}

/// The caller's key must be one of the manifest's seed share owners.
fn authorize_seedshare_owner(
    manifest: &contrast_manifest::Manifest,
    caller_public_key: &[u8],
) -> Result<(), CoordinatorError> {
    let owners: Vec<Vec<u8>> = manifest
        .seedshare_owner_pub_keys
        .iter()
        .flatten()
        .filter_map(|k| k.to_bytes())
        .collect();
    if owners.is_empty() {
        return Err(CoordinatorError::PermissionDenied(
            "recovery is disabled: the manifest has no SeedshareOwnerPubKeys".into(),
        ));
    }
    let caller = seedshare_owner_form(caller_public_key);
    if owners.contains(&caller) {
        Ok(())
    } else {
        Err(CoordinatorError::PermissionDenied(
            "the client key is not a seed share owner key of the manifest; use the \
             seedshare-owner.pem whose public key the manifest lists"
                .into(),
        ))
    }
}
