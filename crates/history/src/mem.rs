//! An in-memory store for tests.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::StoreError;
use crate::store::{Store, validate_key};

/// A [`Store`] in memory, for tests. [`modify`](Self::modify) and [`remove`](Self::remove)
/// let tests play the untrusted store.
#[derive(Debug, Default)]
pub struct MemStore {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is
        // one insert), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the stored value under `key` in place, bypassing every check; returns whether
    /// a value was there.
    pub fn modify(&self, key: &str, change: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.entries().get_mut(key) {
            Some(value) => {
                change(value);
                true
            }
            None => false,
        }
    }

    /// Removes the value under `key`; returns it if there was one.
    pub fn remove(&self, key: &str) -> Option<Vec<u8>> {
        self.entries().remove(key)
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.entries().keys().cloned().collect()
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        validate_key(key)?;
        self.entries()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_owned(),
            })
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        self.entries().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn has(&self, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        Ok(self.entries().contains_key(key))
    }

    fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        let mut entries = self.entries();
        let matches = match entries.get(key) {
            Some(current) => current.as_slice() == old,
            None => old.is_empty(),
        };
        if !matches {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        entries.insert(key.to_owned(), new.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn get_set_has() {
        let store = MemStore::new();
        assert!(!store.has("a/b").unwrap());
        assert!(store.get("a/b").unwrap_err().is_not_found());
        store.set("a/b", b"v").unwrap();
        assert!(store.has("a/b").unwrap());
        assert_eq!(store.get("a/b").unwrap(), b"v");
        store.set("a/b", b"w").unwrap();
        assert_eq!(store.get("a/b").unwrap(), b"w");
    }

    #[test]
    fn not_found_names_key() {
        let err = MemStore::new().get("manifests/abc").unwrap_err();
        assert!(
            err.to_string().starts_with("manifests/abc: not found"),
            "{err}"
        );
    }

    #[test]
    fn compare_and_swap_semantics() {
        crate::check_compare_and_swap_semantics(&MemStore::new());
    }

    #[test]
    fn refuses_invalid_keys_everywhere() {
        let store = MemStore::new();
        assert!(matches!(store.get("x"), Err(StoreError::InvalidKey { .. })));
        assert!(matches!(
            store.set("x", b""),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(store.has("x"), Err(StoreError::InvalidKey { .. })));
        assert!(matches!(
            store.compare_and_swap("x", b"", b"1"),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(store.keys().is_empty());
    }

    #[test]
    fn modify_and_remove() {
        let store = MemStore::new();
        assert!(!store.modify("a/b", |v| v.push(1)));
        store.set("a/b", b"x").unwrap();
        assert!(store.modify("a/b", |v| v[0] = b'y'));
        assert_eq!(store.get("a/b").unwrap(), b"y");
        assert_eq!(store.keys(), vec!["a/b".to_owned()]);
        assert_eq!(store.remove("a/b"), Some(b"y".to_vec()));
        assert!(!store.has("a/b").unwrap());
    }
}
