//! A JSON tree that keeps what Go's `encoding/json` would see, and a writer that writes
//! what Go's `json.MarshalIndent(v, "", "  ")` writes.
//!
//! The tree keeps object members in input order and keeps duplicate keys, so the typed
//! decoder can refuse duplicates (different JSON readers resolve them differently, which
//! is how two parties end up trusting two different manifests).

use std::fmt::Write as _;

use contrast_go_json::{newline_indent, write_go_string};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    /// Members in input order, duplicates kept.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON document; trailing non-whitespace is an error.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = Json::deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }

    /// What the value is, for error messages ("expected a string, got an array").
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// Writes the value as Go's `json.MarshalIndent(v, "", "  ")` does (no trailing newline).
    pub(crate) fn write_go_indented(&self, out: &mut String) {
        self.write_at_depth(out, 0);
    }

    fn write_at_depth(&self, out: &mut String, depth: usize) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Json::String(s) => write_go_string(out, s),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline_indent(out, depth + 1);
                    item.write_at_depth(out, depth + 1);
                }
                newline_indent(out, depth);
                out.push(']');
            }
            Json::Object(members) if members.is_empty() => out.push_str("{}"),
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline_indent(out, depth + 1);
                    write_go_string(out, key);
                    out.push_str(": ");
                    value.write_at_depth(out, depth + 1);
                }
                newline_indent(out, depth);
                out.push('}');
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_indented(input: &str) -> String {
        let mut out = String::new();
        Json::parse(input.as_bytes())
            .unwrap()
            .write_go_indented(&mut out);
        out
    }

    #[test]
    fn indents_like_go_marshal_indent() {
        assert_eq!(
            go_indented(r#"{"a":[1,{"b":null}],"c":{},"d":[],"e":true}"#),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": [],\n  \"e\": true\n}"
        );
    }

    #[test]
    fn escapes_strings_like_go() {
        assert_eq!(
            go_indented(r#""<a&b> \" \\ \n\t\r\b\f \u0001 \u2028 é""#),
            r#""\u003ca\u0026b\u003e \" \\ \n\t\r\b\f \u0001 \u2028 é""#
        );
    }

    #[test]
    fn keeps_member_order_and_duplicates() {
        let Json::Object(members) = Json::parse(br#"{"b":1,"a":2,"b":3}"#).unwrap() else {
            panic!("not an object");
        };
        let keys: Vec<_> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
    }

    #[test]
    fn refuses_trailing_data_and_bad_json() {
        assert!(Json::parse(b"{} {}").is_err());
        assert!(Json::parse(b"{\"a\":}").is_err());
        assert!(Json::parse(b"").is_err());
        assert!(Json::parse(&[b'"', 0xff, b'"']).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(Json::parse(deep.as_bytes()).is_err());
    }
}
