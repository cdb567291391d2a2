//! The key/value store interface under the history (docs/protocol.md §2.1, §2.4).

use std::fmt;
use std::sync::Arc;

use crate::StoreError;

/// A key/value store for the history. Keys are `<class>/<name>`, both parts matching
/// `[a-zA-Z0-9-]+`; every implementation refuses other keys with
/// [`StoreError::InvalidKey`].
///
/// The store is untrusted: it may return anything. [`History`](crate::History) checks
/// content addresses and the latest pointer's signature; a store only has to be
/// thread-safe and linearisable, above all for [`compare_and_swap`](Self::compare_and_swap).
///
/// Methods block; call them from `spawn_blocking` in async code if the backend is slow.
pub trait Store: Send + Sync + fmt::Debug {
    /// The value under `key`; [`StoreError::NotFound`] if there is none.
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;

    /// Stores `value` under `key`, replacing any value.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Whether a value is stored under `key`.
    fn has(&self, key: &str) -> Result<bool, StoreError>;

    /// Replaces the value under `key` with `new` if it is currently `old`, atomically. An
    /// empty `old` means "absent" (and also matches a stored empty value). Any other current
    /// value gives [`StoreError::Conflict`].
    fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError>;
}

/// Checks `key` against `^[a-zA-Z0-9-]+/[a-zA-Z0-9-]+$`.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    split_key(key).map(|_| ())
}

/// Checks `key` like [`validate_key`] and splits it into class and name.
pub(crate) fn split_key(key: &str) -> Result<(&str, &str), StoreError> {
    let invalid = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    let Some((class, name)) = key.split_once('/') else {
        return invalid("missing '/' between class and name");
    };
    if class.is_empty() {
        return invalid("empty class");
    }
    if name.is_empty() {
        return invalid("empty name");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if !class.chars().all(allowed) {
        return invalid("class has a character other than a-z, A-Z, 0-9 and -");
    }
    if !name.chars().all(allowed) {
        return invalid("name has a character other than a-z, A-Z, 0-9 and - (or a second '/')");
    }
    Ok((class, name))
}

impl<T: Store + ?Sized> Store for Arc<T> {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).set(key, value)
    }
    fn has(&self, key: &str) -> Result<bool, StoreError> {
        (**self).has(key)
    }
    fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError> {
        (**self).compare_and_swap(key, old, new)
    }
}

impl<T: Store + ?Sized> Store for Box<T> {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).set(key, value)
    }
    fn has(&self, key: &str) -> Result<bool, StoreError> {
        (**self).has(key)
    }
    fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError> {
        (**self).compare_and_swap(key, old, new)
    }
}

impl<T: Store + ?Sized> Store for &T {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).set(key, value)
    }
    fn has(&self, key: &str) -> Result<bool, StoreError> {
        (**self).has(key)
    }
    fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError> {
        (**self).compare_and_swap(key, old, new)
    }
}

/// Checks the compare-and-swap semantics every [`Store`] must have, on the unused key
/// `a/b`: absent matches only an empty old value, a wrong old value is a
/// [`StoreError::Conflict`] that says to re-read, and a swap replaces the value. Panics on a
/// violation; for the tests of each store implementation.
#[allow(clippy::unwrap_used, clippy::missing_panics_doc)]
pub fn check_compare_and_swap_semantics(store: &dyn Store) {
    // Absent: only an empty old matches.
    assert!(
        store
            .compare_and_swap("a/b", b"x", b"1")
            .unwrap_err()
            .is_conflict()
    );
    store.compare_and_swap("a/b", b"", b"1").unwrap();
    // Present: empty old no longer matches, wrong old neither.
    assert!(
        store
            .compare_and_swap("a/b", b"", b"2")
            .unwrap_err()
            .is_conflict()
    );
    let err = store.compare_and_swap("a/b", b"0", b"2").unwrap_err();
    assert!(err.to_string().contains("changed since last read"), "{err}");
    assert_eq!(store.get("a/b").unwrap(), b"1");
    store.compare_and_swap("a/b", b"1", b"2").unwrap();
    assert_eq!(store.get("a/b").unwrap(), b"2");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn accepts_valid_keys() {
        for key in [
            "manifests/0123abcdef",
            "transitions/latest",
            "a/b",
            "A-Z/0-9",
            "-/-",
        ] {
            validate_key(key).unwrap();
        }
    }

    #[test]
    fn refuses_invalid_keys() {
        for (key, reason) in [
            ("", "missing '/'"),
            ("manifests", "missing '/'"),
            ("/name", "empty class"),
            ("class/", "empty name"),
            ("a/b/c", "second '/'"),
            ("../etc", "class has"),
            ("a/..", "name has"),
            ("a/.tmp-x", "name has"),
            ("a b/c", "class has"),
            ("a/c_d", "name has"),
            ("a/é", "name has"),
            ("a/b\n", "name has"),
            ("a\0/b", "class has"),
        ] {
            let err = validate_key(key).unwrap_err();
            assert!(
                matches!(&err, StoreError::InvalidKey { key: k, .. } if k == key),
                "{key:?}: {err}"
            );
            assert!(err.to_string().contains(reason), "{key:?}: {err}");
        }
    }
}
