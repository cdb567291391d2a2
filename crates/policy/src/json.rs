//! Reading the pod spec: typed access to `serde_json` values with errors that name the
//! field path, and the check for fields we do not know.

use serde_json::{Map, Value};

use crate::PolicyError;

/// A JSON object.
pub(crate) type Obj = Map<String, Value>;

/// `path.key`.
pub(crate) fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

/// `path[index]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        path: path.into(),
        reason: reason.into(),
    }
}

pub(crate) fn unsupported(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Unsupported {
        path: path.into(),
        reason: reason.into(),
    }
}

/// The member, or `None` if it is absent or null (Kubernetes treats both alike).
pub(crate) fn member<'v>(obj: &'v Obj, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn as_obj<'v>(value: &'v Value, path: &str) -> Result<&'v Obj, PolicyError> {
    value
        .as_object()
        .ok_or_else(|| invalid(path, "must be an object"))
}

pub(crate) fn get_obj<'v>(
    obj: &'v Obj,
    key: &str,
    path: &str,
) -> Result<Option<&'v Obj>, PolicyError> {
    member(obj, key)
        .map(|v| as_obj(v, &join(path, key)))
        .transpose()
}

pub(crate) fn get_str<'v>(
    obj: &'v Obj,
    key: &str,
    path: &str,
) -> Result<Option<&'v str>, PolicyError> {
    member(obj, key)
        .map(|v| {
            v.as_str()
                .ok_or_else(|| invalid(join(path, key), "must be a string"))
        })
        .transpose()
}

pub(crate) fn require_str<'v>(obj: &'v Obj, key: &str, path: &str) -> Result<&'v str, PolicyError> {
    match get_str(obj, key, path)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(invalid(join(path, key), "is required")),
    }
}

pub(crate) fn get_bool(obj: &Obj, key: &str, path: &str) -> Result<Option<bool>, PolicyError> {
    member(obj, key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| invalid(join(path, key), "must be true or false"))
        })
        .transpose()
}

pub(crate) fn get_i64(obj: &Obj, key: &str, path: &str) -> Result<Option<i64>, PolicyError> {
    member(obj, key)
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| invalid(join(path, key), "must be an integer"))
        })
        .transpose()
}

/// A user or group ID as Kubernetes allows it (0 to 2^31 - 1).
pub(crate) fn get_id(obj: &Obj, key: &str, path: &str) -> Result<Option<u32>, PolicyError> {
    get_i64(obj, key, path)?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|&n| n <= i32::MAX as u32)
                .ok_or_else(|| {
                    invalid(
                        join(path, key),
                        format!("{n} is not a valid ID (0 to 2147483647)"),
                    )
                })
        })
        .transpose()
}

pub(crate) fn get_array<'v>(
    obj: &'v Obj,
    key: &str,
    path: &str,
) -> Result<&'v [Value], PolicyError> {
    match member(obj, key) {
        None => Ok(&[]),
        Some(v) => v
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| invalid(join(path, key), "must be a list")),
    }
}

/// A list of strings, `None` if absent, null or empty (Kubernetes omits empty lists).
pub(crate) fn get_str_list(
    obj: &Obj,
    key: &str,
    path: &str,
) -> Result<Option<Vec<String>>, PolicyError> {
    let items = get_array(obj, key, path)?;
    if items.is_empty() {
        return Ok(None);
    }
    let list_path = join(path, key);
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid(index(&list_path, i), "must be a string"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Fails on the first member whose key is not in `known`.
pub(crate) fn check_known(obj: &Obj, path: &str, known: &[&str]) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(PolicyError::UnknownField {
            path: join(path, key),
        }),
        None => Ok(()),
    }
}

/// `s` with every character that has a meaning in a regular expression escaped.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '.'
                | '+'
                | '*'
                | '?'
                | '('
                | ')'
                | '|'
                | '['
                | ']'
                | '{'
                | '}'
                | '^'
                | '$'
                | '#'
                | '&'
                | '-'
                | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An absolute path with empty, `.` and `..` components resolved, as the runtime
/// cleans mount destinations.
pub(crate) fn clean_absolute(path: &str, field: &str) -> Result<String, PolicyError> {
    if !path.starts_with('/') {
        return Err(invalid(field, format!("{path:?} must be an absolute path")));
    }
    Ok(contrast_platforms::kata::clean_path(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_every_regex_meta_character() {
        assert_eq!(regex_escape("web-1.a"), r"web\-1\.a");
        assert_eq!(regex_escape(r"a\b$(c)"), r"a\\b\$\(c\)");
        assert_eq!(regex_escape("ü_x"), "ü_x");
    }

    #[test]
    fn cleans_paths_like_the_runtime() {
        assert_eq!(clean_absolute("/data/", "f").unwrap(), "/data");
        assert_eq!(clean_absolute("//a/./b/../c", "f").unwrap(), "/a/c");
        assert_eq!(clean_absolute("/", "f").unwrap(), "/");
        let err = clean_absolute("data", "spec.x").unwrap_err();
        assert!(err.to_string().contains("spec.x"), "{err}");
    }

    #[test]
    fn typed_access_names_the_field() {
        let v = json!({"a": 1, "b": "x", "c": null, "d": [1], "e": -1, "f": 2147483648u64});
        let o = v.as_object().unwrap();
        assert_eq!(get_i64(o, "a", "p").unwrap(), Some(1));
        assert_eq!(get_str(o, "c", "p").unwrap(), None);
        let err = get_str(o, "a", "p").unwrap_err();
        assert!(
            err.to_string().starts_with("p.a: must be a string"),
            "{err}"
        );
        let err = get_str_list(o, "d", "p").unwrap_err();
        assert!(err.to_string().starts_with("p.d[0]"), "{err}");
        assert!(get_id(o, "e", "p").is_err());
        assert!(get_id(o, "f", "p").is_err());
        assert_eq!(get_id(o, "a", "p").unwrap(), Some(1));
        let err = check_known(o, "p", &["a", "b", "c", "d", "e"]).unwrap_err();
        assert!(
            matches!(&err, PolicyError::UnknownField { path } if path == "p.f"),
            "{err}"
        );
    }
}
