//! Typed decoding and Go-compatible encoding of manifest objects.
//!
//! Go's `encoding/json` binds object keys to struct fields case-insensitively and writes
//! every field of a struct in declaration order. Contrast's field set changed between
//! releases (fields were added and reordered), so to re-encode a Contrast-written manifest
//! byte for byte we remember, per object, which members it had and in which order (its
//! [`Layout`]). Objects built in memory use the canonical layout: every field, in the order
//! of the current Gen-1 structs.

use std::collections::BTreeMap;

use crate::error::DecodeError;
use crate::json::Json;

/// How a field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldMode {
    /// Always written (a plain Go field).
    Always,
    /// Skipped when empty (a Go field tagged `omitempty`).
    OmitEmpty,
    /// A field only some Contrast releases have: part of no canonical layout, written
    /// only when it was in the input or has a value.
    WhenSet,
}

/// One struct field as it appears in JSON.
#[derive(Debug)]
pub(crate) struct FieldSpec {
    /// The key Contrast writes.
    pub(crate) name: &'static str,
    /// Older spellings that are read as this field (and trigger a warning).
    pub(crate) aliases: &'static [&'static str],
    pub(crate) mode: FieldMode,
}

/// One member of a decoded object, in input order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Slot {
    /// A known field; `key` is the spelling used in the input.
    Field { name: &'static str, key: String },
    /// A member that binds to no field. Kept, so that re-encoding loses nothing the user
    /// wrote, and reported by validation.
    Unknown { key: String, value: Json },
}

/// The members an object had when it was decoded, in input order.
///
/// `Layout::default()` is the layout of an object built in memory: every field, in
/// canonical order. Two objects that differ only in layout compare equal.
#[derive(Debug, Clone, Default)]
pub struct Layout(pub(crate) Option<Vec<Slot>>);

impl Layout {
    pub(crate) fn slots(&self) -> &[Slot] {
        self.0.as_deref().unwrap_or_default()
    }
}

/// A value that maps to and from JSON.
pub(crate) trait JsonValue: Sized {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError>;
    fn to_json(&self) -> Json;
    /// Go's "empty value" (for `omitempty`), and the test for "has a value" of fields that
    /// were not in the input.
    fn is_default(&self) -> bool;
    /// Forgets the decoded layout (recursively), so the value is written as this version
    /// of the structs writes it: every field, canonical order, unknown members dropped.
    /// This is what Go does when it decodes into a struct and encodes it again.
    fn canonicalize(&mut self) {}
}

/// A Go struct: named fields, case-insensitive keys.
pub(crate) trait JsonStruct: Default {
    const FIELDS: &'static [FieldSpec];
    fn decode_field(&mut self, name: &str, value: &Json, path: &str) -> Result<(), DecodeError>;
    fn encode_field(&self, name: &str) -> Json;
    fn field_is_default(&self, name: &str) -> bool;
    fn layout(&self) -> &Layout;
    fn layout_mut(&mut self) -> &mut Layout;
}

fn type_error(path: &str, expected: &str, got: &Json) -> DecodeError {
    DecodeError::new(path, format!("expected {expected}, got {}", got.kind()))
}

/// Finds the field a key binds to, as Go does: an exact match first, then a
/// case-insensitive one. Go folds Unicode case, under which two non-ASCII letters equal
/// ASCII ones: U+017F (long s) folds to `s` and U+212A (Kelvin sign) to `k`; every field
/// name here is ASCII, so those two are the only non-ASCII spellings that can bind.
fn bind_key(fields: &'static [FieldSpec], key: &str) -> Option<&'static FieldSpec> {
    let spellings =
        |f: &'static FieldSpec| std::iter::once(f.name).chain(f.aliases.iter().copied());
    if let Some(exact) = fields.iter().find(|f| spellings(f).any(|s| s == key)) {
        return Some(exact);
    }
    let folded: String = key
        .chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c,
        })
        .collect();
    fields
        .iter()
        .find(|f| spellings(f).any(|s| s.eq_ignore_ascii_case(&folded)))
}

pub(crate) fn decode_struct<T: JsonStruct>(value: &Json, path: &str) -> Result<T, DecodeError> {
    let Json::Object(members) = value else {
        return Err(type_error(path, "an object", value));
    };
    let mut out = T::default();
    let mut slots = Vec::with_capacity(members.len());
    for (key, member) in members {
        let Some(field) = bind_key(T::FIELDS, key) else {
            slots.push(Slot::Unknown {
                key: key.clone(),
                value: member.clone(),
            });
            continue;
        };
        let earlier = slots.iter().find_map(|slot| match slot {
            Slot::Field { name, key } if *name == field.name => Some(key),
            _ => None,
        });
        if let Some(earlier) = earlier {
            return Err(DecodeError::new(
                &join_path(path, field.name),
                format!(
                    "given twice (as {earlier:?} and {key:?}); keys are matched case-insensitively \
                     and Contrast's decoder would silently keep the last one: remove one of them"
                ),
            ));
        }
        out.decode_field(field.name, member, &join_path(path, field.name))?;
        slots.push(Slot::Field {
            name: field.name,
            key: key.clone(),
        });
    }
    *out.layout_mut() = Layout(Some(slots));
    Ok(out)
}

pub(crate) fn encode_struct<T: JsonStruct>(value: &T) -> Json {
    let mut members = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let write_field = |spec: &FieldSpec, members: &mut Vec<(String, Json)>| {
        if !(spec.mode == FieldMode::OmitEmpty && value.field_is_default(spec.name)) {
            members.push((spec.name.to_owned(), value.encode_field(spec.name)));
        }
    };
    match &value.layout().0 {
        Some(slots) => {
            for slot in slots {
                match slot {
                    Slot::Field { name, .. } => {
                        if let Some(spec) = T::FIELDS.iter().find(|f| f.name == *name) {
                            write_field(spec, &mut members);
                            done.push(spec.name);
                        }
                    }
                    Slot::Unknown { key, value } => members.push((key.clone(), value.clone())),
                }
            }
            // Fields the input did not have are written once they hold a value.
            for spec in T::FIELDS {
                if !done.contains(&spec.name) && !value.field_is_default(spec.name) {
                    write_field(spec, &mut members);
                }
            }
        }
        None => {
            for spec in T::FIELDS {
                if spec.mode != FieldMode::WhenSet || !value.field_is_default(spec.name) {
                    write_field(spec, &mut members);
                }
            }
        }
    }
    Json::Object(members)
}

pub(crate) fn join_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Declares a manifest struct: its fields, their JSON keys and how they are written.
///
/// `[ "Key" | "Alias", Mode ]` before a field gives the key Contrast writes, older
/// spellings read as the same field, and a [`FieldMode`].
macro_rules! json_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                [$key:literal $(| $alias:literal)*, $mode:ident]
                pub $field:ident: $ty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            /// The member order of the decoded input (keep the default for new objects).
            pub layout: $crate::codec::Layout,
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                true $(&& self.$field == other.$field)*
            }
        }

        impl $crate::codec::JsonStruct for $name {
            const FIELDS: &'static [$crate::codec::FieldSpec] = &[$(
                $crate::codec::FieldSpec {
                    name: $key,
                    aliases: &[$($alias),*],
                    mode: $crate::codec::FieldMode::$mode,
                },
            )*];

            fn decode_field(
                &mut self,
                name: &str,
                value: &$crate::json::Json,
                path: &str,
            ) -> Result<(), $crate::error::DecodeError> {
                match name {
                    $($key => self.$field = $crate::codec::JsonValue::from_json(value, path)?,)*
                    _ => {}
                }
                Ok(())
            }

            fn encode_field(&self, name: &str) -> $crate::json::Json {
                match name {
                    $($key => $crate::codec::JsonValue::to_json(&self.$field),)*
                    _ => $crate::json::Json::Null,
                }
            }

            fn field_is_default(&self, name: &str) -> bool {
                match name {
                    $($key => $crate::codec::JsonValue::is_default(&self.$field),)*
                    _ => true,
                }
            }

            fn layout(&self) -> &$crate::codec::Layout {
                &self.layout
            }

            fn layout_mut(&mut self) -> &mut $crate::codec::Layout {
                &mut self.layout
            }
        }

        impl $crate::codec::JsonValue for $name {
            fn from_json(
                value: &$crate::json::Json,
                path: &str,
            ) -> Result<Self, $crate::error::DecodeError> {
                $crate::codec::decode_struct(value, path)
            }

            fn to_json(&self) -> $crate::json::Json {
                $crate::codec::encode_struct(self)
            }

            fn is_default(&self) -> bool {
                true $(&& $crate::codec::JsonValue::is_default(&self.$field))*
            }

            fn canonicalize(&mut self) {
                self.layout = $crate::codec::Layout::default();
                $($crate::codec::JsonValue::canonicalize(&mut self.$field);)*
            }
        }
    };
}
pub(crate) use json_struct;

impl JsonValue for String {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        match value {
            Json::String(s) => Ok(s.clone()),
            other => Err(type_error(path, "a string", other)),
        }
    }
    fn to_json(&self) -> Json {
        Json::String(self.clone())
    }
    fn is_default(&self) -> bool {
        self.is_empty()
    }
}

impl JsonValue for bool {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        match value {
            Json::Bool(b) => Ok(*b),
            other => Err(type_error(path, "true or false", other)),
        }
    }
    fn to_json(&self) -> Json {
        Json::Bool(*self)
    }
    fn is_default(&self) -> bool {
        !*self
    }
}

/// Go decodes into unsigned integer fields only from integer literals in range.
fn decode_unsigned(value: &Json, path: &str, max: u64) -> Result<u64, DecodeError> {
    let expected = || format!("an integer from 0 to {max}");
    match value {
        Json::Number(n) => n
            .as_u64()
            .filter(|v| *v <= max)
            .ok_or_else(|| DecodeError::new(path, format!("expected {}, got {n}", expected()))),
        other => Err(type_error(path, &expected(), other)),
    }
}

macro_rules! unsigned_json_value {
    ($($ty:ty),*) => {$(
        impl JsonValue for $ty {
            fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
                let v = decode_unsigned(value, path, <$ty>::MAX.into())?;
                <$ty>::try_from(v).map_err(|_| DecodeError::new(path, "integer out of range"))
            }
            fn to_json(&self) -> Json {
                Json::Number(u64::from(*self).into())
            }
            fn is_default(&self) -> bool {
                *self == 0
            }
        }
    )*};
}
unsigned_json_value!(u8, u16, u64);

/// A pointer field: `null` is `None`.
impl<T: JsonValue> JsonValue for Option<T> {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        match value {
            Json::Null => Ok(None),
            other => T::from_json(other, path).map(Some),
        }
    }
    fn to_json(&self) -> Json {
        self.as_ref().map_or(Json::Null, T::to_json)
    }
    fn is_default(&self) -> bool {
        self.is_none()
    }
    fn canonicalize(&mut self) {
        self.iter_mut().for_each(T::canonicalize);
    }
}

/// A slice field. A Go nil slice is written as `null`; where that distinction matters
/// for byte-identical output the field is an `Option<Vec<T>>`.
impl<T: JsonValue> JsonValue for Vec<T> {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        match value {
            Json::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item, &format!("{path}[{i}]")))
                .collect(),
            other => Err(type_error(path, "an array", other)),
        }
    }
    fn to_json(&self) -> Json {
        Json::Array(self.iter().map(T::to_json).collect())
    }
    fn is_default(&self) -> bool {
        self.is_empty()
    }
    fn canonicalize(&mut self) {
        self.iter_mut().for_each(T::canonicalize);
    }
}

/// A Go array: exactly `N` elements.
impl<T: JsonValue + Default, const N: usize> JsonValue for [T; N] {
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        let items: Vec<T> = JsonValue::from_json(value, path)?;
        let count = items.len();
        items.try_into().map_err(|_| {
            DecodeError::new(
                path,
                format!("expected an array of {N} elements, got {count}"),
            )
        })
    }
    fn to_json(&self) -> Json {
        Json::Array(self.iter().map(T::to_json).collect())
    }
    fn is_default(&self) -> bool {
        self.iter().all(T::is_default)
    }
    fn canonicalize(&mut self) {
        self.iter_mut().for_each(T::canonicalize);
    }
}

/// A Go map with string keys: Go writes the keys sorted, and so does a `BTreeMap`.
impl<K, V> JsonValue for BTreeMap<K, V>
where
    K: Ord + From<String> + AsRef<str>,
    V: JsonValue,
{
    fn from_json(value: &Json, path: &str) -> Result<Self, DecodeError> {
        let Json::Object(members) = value else {
            return Err(type_error(path, "an object", value));
        };
        let mut map = BTreeMap::new();
        for (key, member) in members {
            let member_path = format!("{path}[{}]", crate::validate::json_quote(key));
            let decoded = V::from_json(member, &member_path)?;
            if map.insert(K::from(key.clone()), decoded).is_some() {
                return Err(DecodeError::new(
                    &member_path,
                    "given twice; Contrast's decoder would silently keep the last one: remove one",
                ));
            }
        }
        Ok(map)
    }
    fn to_json(&self) -> Json {
        Json::Object(
            self.iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.to_json()))
                .collect(),
        )
    }
    fn is_default(&self) -> bool {
        self.is_empty()
    }
    fn canonicalize(&mut self) {
        self.values_mut().for_each(V::canonicalize);
    }
}
