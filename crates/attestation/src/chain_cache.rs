//! A bounded cache of verified certificate chains, shared by the SNP and TDX verifiers.

use std::collections::HashMap;
use std::sync::Mutex;

/// More distinct chains than one deployment has. The cache is emptied when it is full, so
/// a peer sending ever new certificates cannot make it grow.
const MAX_CACHED_CHAINS: usize = 256;

/// Verified chains by a SHA-256 of what their verification depended on.
#[derive(Debug)]
pub(crate) struct ChainCache<V> {
    chains: Mutex<HashMap<[u8; 32], V>>,
}

impl<V> Default for ChainCache<V> {
    fn default() -> Self {
        ChainCache {
            chains: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> ChainCache<V> {
    /// The cached chain for `key`, or the result of `verify`, cached when it succeeds.
    /// A poisoned lock only costs the cache, never the verification.
    pub(crate) fn get_or_verify<E>(
        &self,
        key: [u8; 32],
        verify: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(chain) = self.chains.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(chain);
        }
        let chain = verify()?;
        if let Ok(mut chains) = self.chains.lock() {
            if chains.len() >= MAX_CACHED_CHAINS {
                chains.clear();
            }
            chains.insert(key, chain.clone());
        }
        Ok(chain)
    }
}
