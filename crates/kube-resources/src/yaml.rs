//! An order-preserving YAML tree: what `contrast generate` reads and writes.
//!
//! Typed Kubernetes structs drop fields they do not know, so resources are kept as an
//! untyped tree whose mappings remain in file order. Reading follows what the Kubernetes
//! API machinery does with YAML (YAML 1.1 scalars: `yes`/`on` are booleans, `0777` is
//! octal); writing quotes every string that a YAML 1.1 or 1.2 reader could take for
//! something else, so a value never changes type on the way through.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null` (or an empty value).
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Map),
}

/// A mapping whose keys keep their order. Keys are strings: Kubernetes resources have no
/// other keys (a scalar key such as `80:` is kept as its text).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map(Vec<(String, Node)>);

impl Map {
    /// An empty mapping.
    pub fn new() -> Map {
        Map(Vec::new())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value under `key`, mutable.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`: in place when the key exists, else appended.
    pub fn insert(&mut self, key: &str, value: Node) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(index).1)
    }

    /// The mapping under `key`, created (empty) when absent or `null`. `None` when the key
    /// holds something other than a mapping.
    pub fn map_entry(&mut self, key: &str) -> Option<&mut Map> {
        if matches!(self.get(key), None | Some(Node::Null)) {
            self.insert(key, Node::Map(Map::new()));
        }
        match self.get_mut(key) {
            Some(Node::Map(map)) => Some(map),
            _ => None,
        }
    }

    /// The sequence under `key`, created (empty) when absent or `null`. `None` when the
    /// key holds something other than a sequence.
    pub fn seq_entry(&mut self, key: &str) -> Option<&mut Vec<Node>> {
        if matches!(self.get(key), None | Some(Node::Null)) {
            self.insert(key, Node::Seq(Vec::new()));
        }
        match self.get_mut(key) {
            Some(Node::Seq(seq)) => Some(seq),
            _ => None,
        }
    }

    /// The string under `key`, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::as_str)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the mapping has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Node)> for Map {
    fn from_iter<I: IntoIterator<Item = (String, Node)>>(iter: I) -> Map {
        let mut map = Map::new();
        for (k, v) in iter {
            map.insert(&k, v);
        }
        map
    }
}

impl Node {
    /// A string node.
    pub fn str(value: impl Into<String>) -> Node {
        Node::Str(value.into())
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The mapping, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The mapping, mutable, if this is one.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence, if this is one.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match self {
            Node::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The sequence, mutable, if this is one.
    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Node>> {
        match self {
            Node::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of node this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::UInt(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The same tree as JSON (what the policy generator and schema checks consume).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::UInt(u) => Value::from(*u),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A YAML text that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// The parser refused the text; the message carries line and column.
    #[error("not valid YAML: {0}")]
    Syntax(String),
}

/// Reads every document of a (multi-document) YAML text. Empty documents are dropped.
/// Duplicate keys are refused, as the Kubernetes API server does.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        legacy_octal_numbers: true,
    };
    let documents: Vec<Node> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| YamlError::Syntax(e.to_string()))?;
    Ok(documents
        .into_iter()
        .filter(|d| !matches!(d, Node::Null))
        .collect())
}

/// Writes documents as one YAML text, separated by `---`.
pub fn emit_documents(documents: &[Node]) -> String {
    let mut out = String::new();
    for (i, document) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        emit_document(document, &mut out);
    }
    out
}

fn emit_document(node: &Node, out: &mut String) {
    match node {
        Node::Map(map) if !map.is_empty() => emit_map(map, 0, out),
        Node::Seq(items) if !items.is_empty() => emit_seq(items, 0, out),
        scalar => {
            emit_inline(scalar, 0, out);
            out.push('\n');
        }
    }
}

fn indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn is_block(node: &Node) -> bool {
    match node {
        Node::Map(m) => !m.is_empty(),
        Node::Seq(s) => !s.is_empty(),
        _ => false,
    }
}

fn emit_map(map: &Map, level: usize, out: &mut String) {
    for (i, (key, value)) in map.iter().enumerate() {
        // The first key of a mapping inside a list item sits on the "- " line.
        if i > 0 || !out.ends_with("- ") {
            indent(level, out);
        }
        emit_string(key, level, false, out);
        out.push(':');
        emit_value(value, level, out);
    }
}

fn emit_seq(items: &[Node], level: usize, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !out.ends_with("- ") {
            indent(level, out);
        }
        out.push_str("- ");
        match item {
            Node::Map(m) if !m.is_empty() => emit_map(m, level + 1, out),
            Node::Seq(s) if !s.is_empty() => emit_seq(s, level + 1, out),
            scalar => {
                emit_inline(scalar, level + 1, out);
                out.push('\n');
            }
        }
    }
}

/// Writes what follows `key:` (a space and a scalar, or a newline and a block).
fn emit_value(value: &Node, level: usize, out: &mut String) {
    if is_block(value) {
        out.push('\n');
        match value {
            Node::Map(m) => emit_map(m, level + 1, out),
            Node::Seq(s) => emit_seq(s, level + 1, out),
            _ => {}
        }
    } else {
        out.push(' ');
        emit_inline(value, level + 1, out);
        out.push('\n');
    }
}

/// Writes a scalar or an empty collection on the current line. `level` is the indentation
/// of a block scalar's content.
fn emit_inline(node: &Node, level: usize, out: &mut String) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Node::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Node::Float(f) => emit_float(*f, out),
        Node::Str(s) => emit_string(s, level, true, out),
        Node::Seq(_) => out.push_str("[]"),
        Node::Map(_) => out.push_str("{}"),
    }
}

fn emit_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str(".nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
    } else {
        let text = format!("{f:?}"); // shortest round-trip form, always with '.' or 'e'
        out.push_str(&text);
    }
}

/// Writes a string plain when no YAML reader can mistake it, as a literal block when it
/// is multi-line text (and `block_ok`), else double-quoted.
fn emit_string(s: &str, level: usize, block_ok: bool, out: &mut String) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if block_ok && is_literal_block_safe(s) {
        emit_literal_block(s, level, out);
    } else {
        emit_double_quoted(s, out);
    }
}

/// Plain scalars we write: a conservative alphabet, no leading digit, sign or dot (numbers,
/// YAML 1.1 base-60 `1:20`, `.inf`), no YAML 1.1/1.2 keyword (`yes`, `on`, `null`, `~`, …),
/// no `: ` or ` #`, no surrounding spaces.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if s.ends_with(' ') || s.ends_with(':') || s.contains(": ") || s.contains(" #") {
        return false;
    }
    if !s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, ' ' | '_' | '-' | '.' | '/' | ':' | '@' | '=' | '+' | ',')
    }) {
        return false;
    }
    !is_keyword(s)
}

/// Words that some YAML reader (1.1 or 1.2) resolves to a non-string.
fn is_keyword(s: &str) -> bool {
    const WORDS: [&str; 13] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "infinity",
        "none",
    ];
    let lower = s.to_ascii_lowercase();
    WORDS.contains(&lower.as_str())
}

fn is_literal_block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.lines().any(|line| line.ends_with([' ', '\t']))
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
        && !s.contains('\u{feff}')
        && !s.contains(['\u{85}', '\u{2028}', '\u{2029}'])
}

fn emit_literal_block(s: &str, level: usize, out: &mut String) {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    out.push('|');
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(level, out);
            out.push_str(line);
        }
    }
}

fn emit_double_quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::UInt(v), Node::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .or_else(|_| u64::try_from(v).map(Node::UInt))
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v)
            .map(|v| self.visit_u64::<E>(v).unwrap_or(Node::UInt(v)))
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        String::from_utf8(v.to_vec())
            .map(Node::Str)
            .map_err(|_| E::custom("binary data that is not UTF-8 is not supported here"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<Node>()? {
            let key = match key {
                Node::Str(s) => s,
                Node::Int(i) => i.to_string(),
                Node::UInt(u) => u.to_string(),
                Node::Bool(b) => b.to_string(),
                Node::Float(f) => {
                    let mut s = String::new();
                    emit_float(f, &mut s);
                    s
                }
                Node::Null => "null".to_owned(),
                other => {
                    return Err(de::Error::custom(format!(
                        "a mapping key is {}; Kubernetes resources have scalar keys only",
                        other.kind()
                    )));
                }
            };
            let value = access.next_value::<Node>()?;
            map.0.push((key, value));
        }
        Ok(Node::Map(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) -> String {
        emit_documents(&parse_documents(text).unwrap())
    }

    #[test]
    fn keeps_key_order_and_documents() {
        let text = "kind: Pod\napiVersion: v1\nmetadata:\n  name: a\n  zeta: 1\n  alpha: 2\n---\nkind: Service\n";
        assert_eq!(roundtrip(text), text);
    }

    #[test]
    fn quotes_strings_yaml_readers_would_misread() {
        for s in [
            "yes", "No", "on", "OFF", "y", "true", "null", "~", "0777", "1:20", "1e3", ".inf",
            "12", "-1", "", " x", "x ", "a: b", "a #b", "#c", "*x", "&x", "!x", "@x", "%x", "[a]",
            "{a}", "'q'", "\"q\"", "a\tb", "-", "?", ":x",
        ] {
            let doc = Node::Map([("k".to_owned(), Node::str(s))].into_iter().collect());
            let text = emit_documents(std::slice::from_ref(&doc));
            let back = parse_documents(&text).unwrap();
            assert_eq!(back, vec![doc], "{s:?} became {text:?}");
        }
    }

    #[test]
    fn reads_yaml_1_1_scalars_like_kubernetes() {
        let docs = parse_documents("a: yes\nb: 0777\nc: \"0777\"\nd: on\ne: 'yes'\n").unwrap();
        let map = docs[0].as_map().unwrap();
        assert_eq!(map.get("a"), Some(&Node::Bool(true)));
        assert_eq!(map.get("b"), Some(&Node::Int(0o777)));
        assert_eq!(map.get("c"), Some(&Node::str("0777")));
        assert_eq!(map.get("d"), Some(&Node::Bool(true)));
        assert_eq!(map.get("e"), Some(&Node::str("yes")));
        let text = emit_documents(&docs);
        assert_eq!(text, "a: true\nb: 511\nc: \"0777\"\nd: true\ne: \"yes\"\n");
    }

    #[test]
    fn multi_line_strings_become_literal_blocks_that_read_back() {
        for s in [
            "line1\nline2\n",
            "line1\nline2",
            "a\n\nb\n\n\n",
            "x\n  indented\n",
            " leading space\nx\n",
            "trailing \nx",
            "tab\there\nx\n",
        ] {
            let doc = Node::Map(
                [(
                    "data".to_owned(),
                    Node::Map([("script".to_owned(), Node::str(s))].into_iter().collect()),
                )]
                .into_iter()
                .collect(),
            );
            let text = emit_documents(std::slice::from_ref(&doc));
            assert_eq!(
                parse_documents(&text).unwrap(),
                vec![doc],
                "{s:?} as {text:?}"
            );
        }
        assert_eq!(
            roundtrip("k: |\n  a\n  b\n"),
            "k: |\n  a\n  b\n",
            "the usual style stays"
        );
    }

    #[test]
    fn nested_lists_and_maps_round_trip() {
        let text = "spec:\n  containers:\n    - name: a\n      args:\n        - x\n        - \"1\"\n      env: []\n    - name: b\n      ports:\n        - - 1\n          - 2\n  empty: {}\n  name: null\n  f: 1.5\n  big: 18446744073709551615\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(emit_documents(&docs), text);
        assert_eq!(parse_documents(&emit_documents(&docs)).unwrap(), docs);
    }

    #[test]
    fn refuses_duplicate_keys_and_bad_syntax() {
        assert!(parse_documents("a: 1\na: 2\n").is_err());
        assert!(parse_documents("a: [1, 2\n").is_err());
        assert!(parse_documents("? [a]\n: 1\n").is_err());
    }

    #[test]
    fn json_view_matches() {
        let docs = parse_documents("a: [1, x, true, null, 2.5]\n").unwrap();
        assert_eq!(
            docs[0].to_json(),
            serde_json::json!({"a": [1, "x", true, null, 2.5]})
        );
    }
}
