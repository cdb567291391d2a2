//! The Coordinator's errors and how they reach gRPC clients.

use contrast_history::HistoryError;

/// Why a Coordinator operation failed. Messages are what the caller sees.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// No manifest was ever set.
    #[error("coordinator is not initialized: no manifest configured; run contrast set")]
    NotInitialized,
    /// A history exists, but this Coordinator has no secrets for it.
    #[error("coordinator is in recovery mode: it waits for a peer, or for contrast recover")]
    RecoveryMode,
    /// Recover was called on a ready Coordinator.
    #[error("coordinator is already recovered")]
    AlreadyRecovered,
    /// Recover was called without a history.
    #[error("no state to recover from: no manifest was ever set; run contrast set")]
    NoStateToRecover,
    /// Another update won the race.
    #[error(
        "concurrent update: the manifest history changed while this request ran (latest \
         transition is now {0}); run contrast verify and try again"
    )]
    ConcurrentUpdate(String),
    /// The history is not the one the caller expects: a first set meets an existing
    /// history, or recovery meets a store rolled back behind what the caller verified.
    #[error("{0}")]
    UnexpectedHistory(String),
    /// A ready peer exists and recovery was not forced.
    #[error(
        "a ready Coordinator peer exists ({0}); it recovers this one automatically. \
         Use --force only if that peer is not part of your deployment"
    )]
    ReadyPeerExists(String),
    /// The caller is not allowed to do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The history is damaged or the store failed.
    #[error("manifest history")]
    History(#[from] HistoryError),
    /// Certificates could not be made.
    #[error("certificate authority")]
    Ca(#[from] contrast_ca::CaError),
    /// Something else failed.
    #[error("{0}")]
    Internal(String),
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        use CoordinatorError::*;
        // The whole chain: History and Ca keep their cause as the source.
        let message = contrast_platforms::error_chain(&e);
        match e {
            NotInitialized | RecoveryMode | AlreadyRecovered | NoStateToRecover
            | ConcurrentUpdate(_) | UnexpectedHistory(_) | ReadyPeerExists(_) => {
                tonic::Status::failed_precondition(message)
            }
            PermissionDenied(_) => tonic::Status::permission_denied(message),
            InvalidArgument(_) => tonic::Status::invalid_argument(message),
            History(_) | Ca(_) | Internal(_) => tonic::Status::internal(message),
        }
    }
}
