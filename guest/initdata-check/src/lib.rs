//! The initdata check (docs/protocol.md §10): runs in the pod VM before the
//! Kata agent starts (Contrast's `initdata-processor`).
//!
//! The host hands the pod's initdata to the VM on a block device, and separately puts
//! its digest into the launch measurement (SEV-SNP `HOST_DATA`, TDX `MRCONFIGID`), which
//! is what the Coordinator checks against the manifest. The device itself is not
//! measured, so a host could attach other initdata than it launched the VM with. This
//! check closes that gap: it reads the initdata ([`source`]), parses it and computes its
//! digest with the algorithm it names ([`document`]), asks the hardware for a fresh
//! local report (SEV-SNP report or TDX TDREPORT, never a host-made quote) and compares
//! the digest with the reported field ([`hostdata`]). Only on a match
//! does the agent get the initdata's policy; otherwise it gets a policy that refuses
//! every request and says why ([`policy`]).

pub mod hostdata;
pub mod policy;
pub mod source;

use contrast_evidence::issuer::{EvidenceIssuer, IssueError, Tee};

pub use contrast_initdata::{Algorithm, DocumentError, Initdata, document};
pub use hostdata::{HostData, HostDataError};
pub use policy::{PolicyWriteError, deny_all, write_policy};
pub use source::{InitdataSource, SourceError};

/// Where the check leaves the verified initdata document (its exact bytes) for the
/// Initializer, which reads the Coordinator it may trust from it. The Initializer checks
/// the digest against its own evidence again, so this file is a convenience, not a trust
/// anchor.
pub const DEFAULT_INITDATA_OUT: &str = "/run/measured-cfg/initdata.toml";

/// Why the initdata was refused. The message is what the deny-all policy carries.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The initdata could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The initdata is not a valid document.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The document has no `policy.rego` entry: the agent would fall back to a policy
    /// nobody attested.
    #[error(
        "the initdata has no [data].\"policy.rego\" entry: the pod's policy must come from \
         the attested initdata (regenerate it with `contrast generate`)"
    )]
    NoPolicy,
    /// The evidence issuer could not be set up.
    #[error("the evidence issuer could not be set up: {0}")]
    IssuerSetup(String),
    /// The hardware gave no evidence.
    #[error("asking the TEE for a report to read the host data")]
    Evidence(#[from] IssueError),
    /// The host data could not be read, or does not match.
    #[error(transparent)]
    HostData(#[from] HostDataError),
}

/// Initdata whose digest the hardware confirmed.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The document.
    pub initdata: Initdata,
    /// Its digest with its own algorithm.
    pub digest: Vec<u8>,
    /// The TEE that confirmed it.
    pub tee: Tee,
    /// The name of the issuer that produced the evidence.
    pub issuer: &'static str,
}

impl Verified {
    /// The policy the agent is to enforce.
    pub fn policy(&self) -> &str {
        // `verify` refuses documents without one.
        self.initdata.policy().unwrap_or_default()
    }
}

/// What was decided, and installed.
#[derive(Debug)]
pub enum Decision {
    /// The digest matched; the initdata's policy is installed.
    Accepted(Verified),
    /// The initdata was refused; the deny-all policy carrying the reason is installed.
    Refused(CheckError),
}

/// A fresh 64-byte nonce for the report data: the returned report must carry it, so a
/// stale or replayed report is noticed.
pub fn fresh_nonce() -> Result<[u8; 64], CheckError> {
    let mut nonce = [0; 64];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| {
        CheckError::IssuerSetup("the system random number generator failed".to_owned())
    })?;
    Ok(nonce)
}

/// Reads, parses and checks the initdata against the host data `issuer` reports.
pub fn verify(
    source: &InitdataSource,
    issuer: &dyn EvidenceIssuer,
) -> Result<Verified, CheckError> {
    let initdata = Initdata::parse(source.read()?)?;
    if initdata.policy().is_none() {
        return Err(CheckError::NoPolicy);
    }
    let digest = initdata.digest();
    let nonce = fresh_nonce()?;
    // Never `issue`: on TDX that is the host's quote service (see `hostdata`).
    let report = issuer.local_report(&nonce)?;
    let host = hostdata::from_local_report(&report, &nonce)?;
    hostdata::check(&digest, initdata.algorithm().name(), &host)?;
    Ok(Verified {
        initdata,
        digest,
        tee: host.tee,
        issuer: issuer.name(),
    })
}

/// Installs `decision`'s policy at `policy_path`: the verified policy, or the deny-all
/// policy with the refusal's reason.
pub fn install(decision: &Decision, policy_path: &std::path::Path) -> Result<(), PolicyWriteError> {
    match decision {
        Decision::Accepted(verified) => write_policy(policy_path, verified.policy()),
        Decision::Refused(reason) => write_policy(
            policy_path,
            &deny_all(&contrast_platforms::error_chain(reason)),
        ),
    }
}

/// The whole check: verify, then install what was decided.
pub fn check_and_install(
    source: &InitdataSource,
    issuer: &dyn EvidenceIssuer,
    policy_path: &std::path::Path,
) -> Result<Decision, PolicyWriteError> {
    let decision = match verify(source, issuer) {
        Ok(verified) => Decision::Accepted(verified),
        Err(reason) => Decision::Refused(reason),
    };
    install(&decision, policy_path)?;
    Ok(decision)
}
