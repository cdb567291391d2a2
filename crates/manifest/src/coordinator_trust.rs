//! What a workload needs to attest the Coordinator before it trusts anything the
//! Coordinator sends: the Coordinator's policy hashes and the reference values it runs
//! under. `contrast generate` puts this into every workload's initdata (so HOST_DATA /
//! MRCONFIGID binds it), and the Initializer checks the Coordinator against it.
//!
//! The entry is a manifest document holding only that: the policies with role
//! `coordinator` (no SANs, no secret ID) and the reference values; the owner keys are
//! `null`. So it is decoded, and the Coordinator validated, exactly as `contrast set` and
//! `contrast verify` do with the whole manifest.

use std::collections::BTreeMap;

use crate::{Manifest, PolicyEntry, ROLE_COORDINATOR};

/// The initdata `[data]` entry that carries [`Manifest::coordinator_trust`]. Kata ignores
/// `[data]` entries it does not know, so the document stays a valid Kata initdata.
pub const COORDINATOR_INITDATA_KEY: &str = "contrast-coordinator.json";

impl Manifest {
    /// The part of this manifest a workload attests the Coordinator with: its policy
    /// hashes with role `coordinator`, and the reference values. `None` when the
    /// manifest names no Coordinator policy.
    pub fn coordinator_trust(&self) -> Option<Manifest> {
        let policies: BTreeMap<_, _> = self
            .coordinator_policy_hashes()
            .map(|hash| {
                let entry = PolicyEntry {
                    role: ROLE_COORDINATOR.to_owned(),
                    ..PolicyEntry::default()
                };
                (hash.clone(), entry)
            })
            .collect();
        if policies.is_empty() {
            return None;
        }
        Some(Manifest {
            policies,
            reference_values: self.reference_values.clone(),
            ..Manifest::default()
        })
    }
}
