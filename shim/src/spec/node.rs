//! Reading the spec's JSON with each field's path, so an error names the field
//! (`linux.namespaces[1].type`) and what was expected there.

use super::*;

/// A value in the spec (or its absence) and its path, such as `linux.namespaces[1].type`.
pub(super) struct Node<'a> {
    pub(super) value: Option<&'a Value>,
    pub(super) path: String,
}

impl<'a> Node<'a> {
    pub(super) fn root(value: &'a Value) -> Self {
        Node {
            value: Some(value),
            path: String::new(),
        }
    }

    /// A member; absent when this is not an object or lacks it.
    pub(super) fn get(&self, key: &str) -> Node<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Node {
            value: self.value.and_then(|v| v.get(key)),
            path,
        }
    }

    /// Absent or JSON null: Go leaves the field at its zero value.
    pub(super) fn is_absent(&self) -> bool {
        matches!(self.value, None | Some(Value::Null))
    }

    pub(super) fn invalid(&self, expected: &'static str) -> SpecError {
        SpecError::InvalidField {
            field: self.path.clone(),
            expected,
            found: self
                .value
                .map_or_else(|| "nothing".to_owned(), Value::to_string),
        }
    }

    pub(super) fn expect_object(&self) -> Result<(), SpecError> {
        match self.value {
            Some(Value::Object(_)) => Ok(()),
            _ => Err(self.invalid("an object")),
        }
    }

    pub(super) fn string(&self) -> Result<String, SpecError> {
        match self.value {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(self.invalid("a string")),
        }
    }

    pub(super) fn bool(&self) -> Result<bool, SpecError> {
        match self.value {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.invalid("true or false")),
        }
    }

    pub(super) fn u64(&self) -> Result<u64, SpecError> {
        match self.value {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.invalid("an unsigned integer")),
        }
    }

    pub(super) fn u32(&self) -> Result<u32, SpecError> {
        u32::try_from(self.u64()?).map_err(|_| self.invalid("an unsigned 32-bit integer"))
    }

    pub(super) fn i64(&self) -> Result<i64, SpecError> {
        match self.value {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v.as_i64().ok_or_else(|| self.invalid("a 64-bit integer")),
        }
    }

    pub(super) fn array(&self) -> Result<Vec<Node<'a>>, SpecError> {
        match self.value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Node {
                    value: Some(v),
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            Some(_) => Err(self.invalid("an array")),
        }
    }

    pub(super) fn strings(&self) -> Result<Vec<String>, SpecError> {
        self.array()?.iter().map(Node::string).collect()
    }

    pub(super) fn u32s(&self) -> Result<Vec<u32>, SpecError> {
        self.array()?.iter().map(Node::u32).collect()
    }

    pub(super) fn string_map(&self) -> Result<BTreeMap<String, String>, SpecError> {
        match self.value {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, _)| Ok((k.clone(), self.get(k).string()?)))
                .collect(),
            Some(_) => Err(self.invalid("an object of strings")),
        }
    }

    /// A message field: unset when absent or null (a nil pointer in Go), else converted.
    pub(super) fn object<T>(
        &self,
        convert: impl FnOnce(&Node<'a>) -> Result<T, SpecError>,
    ) -> Result<MessageField<T>, SpecError> {
        if self.is_absent() {
            return Ok(MessageField::none());
        }
        self.expect_object()?;
        convert(self).map(MessageField::some)
    }
}
