//! What the workspace knows to be the Coordinator's history: the transition it verified
//! (or set) last and that transition's generation, in `verify/latest-transition` (64 hex
//! characters, as Contrast's `sign` reads it) and `verify/latest-generation` (decimal).
//!
//! `verify` refuses a history that does not contain this transition, `recover` asks the
//! Coordinator to refuse one, and `set` expects the Coordinator's history to end at it.
//! Written by a successful `verify` and `set`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use contrast_history::Continuation;

use crate::coordinator::{self, WorkspaceArgs, files};

/// A transition of the Coordinator's history the user has seen to be genuine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VerifiedTransition {
    /// The transition hash.
    pub transition: [u8; 32],
    /// How many manifests the history held at that transition, when known (a hash given
    /// with `--latest-transition` comes without one).
    pub generation: Option<u64>,
}

impl VerifiedTransition {
    /// "generation N, transition X" or "transition X".
    pub(crate) fn describe(&self) -> String {
        match self.generation {
            Some(generation) => format!(
                "generation {generation}, transition {}",
                hex::encode(self.transition)
            ),
            None => format!("transition {}", hex::encode(self.transition)),
        }
    }
}

fn paths(workspace: &WorkspaceArgs) -> (PathBuf, PathBuf) {
    let dir = workspace.path(files::VERIFY_DIR);
    (
        dir.join(files::LATEST_TRANSITION),
        dir.join(files::LATEST_GENERATION),
    )
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Parses a transition hash given as 64 hex characters.
pub(crate) fn parse_transition(text: &str, origin: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .with_context(|| {
            format!("{origin}: a transition hash must be 64 hex characters (run contrast verify)")
        })
}

/// The transition the workspace verified or set last (`None`: none yet).
pub(crate) fn read(workspace: &WorkspaceArgs) -> anyhow::Result<Option<VerifiedTransition>> {
    let (transition_path, generation_path) = paths(workspace);
    let Some(text) = read_optional(&transition_path)? else {
        return Ok(None);
    };
    let transition = parse_transition(&text, &transition_path.display().to_string())?;
    let generation = match read_optional(&generation_path)? {
        None => None,
        Some(text) => Some(text.trim().parse::<u64>().with_context(|| {
            format!(
                "{}: expected a decimal generation; delete the file, then run contrast verify",
                generation_path.display()
            )
        })?),
    };
    Ok(Some(VerifiedTransition {
        transition,
        generation,
    }))
}

/// Records `verified`. The hash is written first: after a crash between the two files the
/// generation is an older one, which only makes a refusal's message less precise.
pub(crate) fn write(
    workspace: &WorkspaceArgs,
    verified: &VerifiedTransition,
) -> anyhow::Result<()> {
    let (transition_path, generation_path) = paths(workspace);
    coordinator::write_public(
        &transition_path,
        hex::encode(verified.transition).as_bytes(),
    )?;
    match verified.generation {
        Some(generation) => {
            coordinator::write_public(&generation_path, generation.to_string().as_bytes())
        }
        None => match std::fs::remove_file(&generation_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", generation_path.display())),
        },
    }
}

/// The transition hash after each manifest of a history (oldest first): entry `i` is the
/// transition of generation `i + 1`.
pub(crate) fn transition_chain(manifests: &[Vec<u8>]) -> Vec<[u8; 32]> {
    let mut previous = contrast_history::ZERO_HASH;
    manifests
        .iter()
        .map(|manifest| {
            previous = contrast_history::next_transition_hash(manifest, previous);
            previous
        })
        .collect()
}

/// Refuses a history (`chain` from [`transition_chain`]) that does not contain `verified`:
/// one rolled back behind it (an older signed pointer put back in the store) or replaced
/// (a history someone else started).
pub(crate) fn check_extends(
    chain: &[[u8; 32]],
    verified: &VerifiedTransition,
) -> anyhow::Result<()> {
    let generation = chain.len();
    let latest = chain
        .last()
        .map(hex::encode)
        .unwrap_or_else(|| "none".into());
    match contrast_history::continuation(
        chain.iter().copied(),
        generation as u64,
        verified.transition,
        verified.generation,
    ) {
        Continuation::Extends => Ok(()),
        Continuation::RolledBack => bail!(
            "the Coordinator's history was rolled back: it is at generation {generation} \
             (transition {latest}) and does not contain the transition you verified last \
             ({}); whoever controls its store put back an older signed pointer. Do not \
             trust this deployment",
            verified.describe()
        ),
        Continuation::Replaced => bail!(
            "the Coordinator's history (generation {generation}, transition {latest}) does \
             not contain the transition you verified last ({}): the history was replaced. \
             Do not trust this deployment (only if you started a new deployment yourself, \
             remove verify/latest-transition and verify again)",
            verified.describe()
        ),
    }
}

/// The latest transition the next one builds on: `given` (`--latest-transition`), else
/// `recorded`, the one the workspace verified or set last ([`read`]), else none (a first
/// set: all zero, generation 0).
pub(crate) fn latest_or_first(
    recorded: Option<VerifiedTransition>,
    given: Option<&str>,
) -> anyhow::Result<VerifiedTransition> {
    let Some(text) = given else {
        return Ok(recorded.unwrap_or(VerifiedTransition {
            transition: contrast_history::ZERO_HASH,
            generation: Some(0),
        }));
    };
    let transition = parse_transition(text, "--latest-transition")?;
    let generation = if transition == contrast_history::ZERO_HASH {
        Some(0)
    } else {
        recorded
            .filter(|r| r.transition == transition)
            .and_then(|r| r.generation)
    };
    Ok(VerifiedTransition {
        transition,
        generation,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn manifests(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn chain_matches_the_history_hash() {
        let history = manifests(&["m0", "m1", "m2"]);
        let chain = transition_chain(&history);
        assert_eq!(chain.len(), 3);
        for i in 0..3 {
            assert_eq!(
                chain[i],
                contrast_history::transition_hash_of(history[..=i].iter().map(Vec::as_slice))
            );
        }
    }

    #[test]
    fn extension_of_the_verified_transition_accepted() {
        let chain = transition_chain(&manifests(&["m0", "m1", "m2"]));
        for (i, transition) in chain.iter().enumerate() {
            let verified = VerifiedTransition {
                transition: *transition,
                generation: Some(i as u64 + 1),
            };
            check_extends(&chain, &verified).unwrap();
        }
        let nothing_yet = VerifiedTransition {
            transition: contrast_history::ZERO_HASH,
            generation: Some(0),
        };
        check_extends(&chain, &nothing_yet).unwrap();
    }

    #[test]
    fn rolled_back_history_refused() {
        let history = manifests(&["m0", "m0"]);
        let chain = transition_chain(&history);
        let verified = VerifiedTransition {
            transition: chain[1],
            generation: Some(2),
        };
        let err = check_extends(&chain[..1], &verified)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rolled back"), "{err}");
        assert!(err.contains("generation 1"), "{err}");
        assert!(err.contains("generation 2"), "{err}");
    }

    #[test]
    fn replaced_history_refused() {
        let ours = transition_chain(&manifests(&["m1"]));
        let theirs = transition_chain(&manifests(&["attacker", "m1"]));
        for generation in [Some(1), None] {
            let verified = VerifiedTransition {
                transition: ours[0],
                generation,
            };
            let err = check_extends(&theirs, &verified).unwrap_err().to_string();
            assert!(err.contains("was replaced"), "{err}");
            assert!(err.contains(&hex::encode(ours[0])), "{err}");
        }
    }
}
