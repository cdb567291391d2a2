//! Decoding of a ConfigMap sent as Kubernetes protobuf (`application/vnd.kubernetes.protobuf`),
//! as kubectl sends built-in types: the `k8s\0` envelope, `runtime.Unknown`, then the
//! ConfigMap message. Only what a ConfigMap create or update carries is kept (name,
//! generateName, namespace, uid, resourceVersion, labels, annotations, data, binaryData,
//! immutable); other fields are skipped.

use base64::Engine as _;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// A protobuf field: its number and its value.
enum FieldValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or("truncated varint")?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".to_owned())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err("truncated field".to_owned());
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Result<Option<(u64, FieldValue<'a>)>, String> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => FieldValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                FieldValue::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                FieldValue::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                FieldValue::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((tag >> 3, value)))
    }
}

fn fields(bytes: &[u8]) -> impl Iterator<Item = Result<(u64, FieldValue<'_>), String>> {
    let mut reader = Reader(bytes);
    std::iter::from_fn(move || reader.next_field().transpose())
}

fn string(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_owned())
}

/// A map entry message: key (1) and value (2).
fn entry(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let (mut key, mut value) = (String::new(), &[][..]);
    for field in fields(bytes) {
        match field? {
            (1, FieldValue::Bytes(b)) => key = string(b)?,
            (2, FieldValue::Bytes(b)) => value = b,
            _ => {}
        }
    }
    Ok((key, value))
}

fn object_meta(bytes: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for field in fields(bytes) {
        match field? {
            (1, FieldValue::Bytes(b)) => drop(meta.insert("name".into(), json!(string(b)?))),
            (2, FieldValue::Bytes(b)) => {
                drop(meta.insert("generateName".into(), json!(string(b)?)));
            }
            (3, FieldValue::Bytes(b)) => drop(meta.insert("namespace".into(), json!(string(b)?))),
            (5, FieldValue::Bytes(b)) => drop(meta.insert("uid".into(), json!(string(b)?))),
            (6, FieldValue::Bytes(b)) => {
                drop(meta.insert("resourceVersion".into(), json!(string(b)?)));
            }
            (11, FieldValue::Bytes(b)) => {
                let (k, v) = entry(b)?;
                labels.insert(k, json!(string(v)?));
            }
            (12, FieldValue::Bytes(b)) => {
                let (k, v) = entry(b)?;
                annotations.insert(k, json!(string(v)?));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(meta))
}

/// Decodes a protobuf-encoded ConfigMap request body into its JSON form.
pub(crate) fn decode_configmap(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body does not start with the k8s envelope")?;
    let mut raw = None;
    for field in fields(unknown) {
        match field? {
            (1, FieldValue::Bytes(type_meta)) => {
                for field in fields(type_meta) {
                    if let (2, FieldValue::Bytes(kind)) = field? {
                        let kind = string(kind)?;
                        if kind != "ConfigMap" {
                            return Err(format!("expected a ConfigMap, got {kind}"));
                        }
                    }
                }
            }
            (2, FieldValue::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    let raw = raw.ok_or("the protobuf envelope has no object")?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!("v1"));
    object.insert("kind".into(), json!("ConfigMap"));
    let mut data = Map::new();
    let mut binary = Map::new();
    for field in fields(raw) {
        match field? {
            (1, FieldValue::Bytes(b)) => drop(object.insert("metadata".into(), object_meta(b)?)),
            (2, FieldValue::Bytes(b)) => {
                let (k, v) = entry(b)?;
                data.insert(k, json!(string(v)?));
            }
            (3, FieldValue::Bytes(b)) => {
                let (k, v) = entry(b)?;
                binary.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                );
            }
            (4, FieldValue::Varint(v)) => drop(object.insert("immutable".into(), json!(v != 0))),
            _ => {}
        }
    }
    if !data.is_empty() {
        object.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        object.insert("binaryData".into(), Value::Object(binary));
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    fn entry_bytes(k: &str, v: &[u8]) -> Vec<u8> {
        [field(1, k.as_bytes()), field(2, v)].concat()
    }

    #[test]
    fn decodes_a_configmap() {
        let meta = [
            field(1, b"cm"),
            field(3, b"ns"),
            field(11, &entry_bytes("app", b"x")),
        ]
        .concat();
        let configmap = [
            field(1, &meta),
            field(2, &entry_bytes("greeting", b"hello")),
            field(3, &entry_bytes("bin", b"\x00\xff")),
            vec![4 << 3, 1],
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &configmap)].concat();
        let value = decode_configmap(&body).unwrap();
        assert_eq!(
            value,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm", "namespace": "ns", "labels": {"app": "x"}},
                "data": {"greeting": "hello"},
                "binaryData": {"bin": "AP8="},
                "immutable": true,
            })
        );
    }

    #[test]
    fn refuses_other_bodies() {
        assert!(decode_configmap(b"{}").unwrap_err().contains("envelope"));
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta)].concat();
        assert!(decode_configmap(&body).unwrap_err().contains("Secret"));
        let truncated = [MAGIC.to_vec(), vec![(2 << 3) | 2, 10, 1]].concat();
        assert!(
            decode_configmap(&truncated)
                .unwrap_err()
                .contains("truncated")
        );
    }
}
