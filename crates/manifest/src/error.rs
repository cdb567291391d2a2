//! Errors of decoding and validating a manifest.

use std::fmt;

/// A manifest that could not be read at all: bad JSON, a value of the wrong type, or a
/// key given twice. Problems with the values themselves are [`ValidationError`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not one well-formed JSON document.
    #[error("manifest is not valid JSON: {message}")]
    Syntax {
        /// What the JSON reader said, with line and column.
        message: String,
    },
    /// A member has the wrong type or is given twice.
    #[error("{path}: {message}")]
    Value {
        /// Where, as a JSON path (`ReferenceValues.snp[0].MinimumTCB`).
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl DecodeError {
    pub(crate) fn new(path: &str, message: impl Into<String>) -> Self {
        DecodeError::Value {
            path: if path.is_empty() {
                "manifest".to_owned()
            } else {
                path.to_owned()
            },
            message: message.into(),
        }
    }
}

/// Whether a validation error is something the user still has to fill in, or a value
/// that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A reference value `contrast generate` cannot know (it depends on the user's
    /// hardware: `MinimumTCB`, `MrSeam`, `MinimumTeeTcbSvn`, …) and left empty.
    ExpectedMissing,
    /// A value that is present but not acceptable.
    Invalid,
    /// A key that binds to no field (Contrast would drop it silently).
    UnknownField,
    /// No policy has the role `coordinator`. Wrong like [`ErrorKind::Invalid`], except for
    /// `contrast generate` over workloads without the Coordinator's deployment, which
    /// writes such a manifest and says what to add.
    NoCoordinator,
}

/// One problem found by [`crate::Manifest::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Where, as a JSON path: `Policies["ab12…"].Role`, `ReferenceValues.tdx[0].MrSeam`.
    pub path: String,
    /// Fill-in or wrong.
    pub kind: ErrorKind,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::ExpectedMissing => {
                write!(f, "{}: not filled in: {}", self.path, self.message)
            }
            ErrorKind::Invalid | ErrorKind::UnknownField | ErrorKind::NoCoordinator => {
                write!(f, "{}: {}", self.path, self.message)
            }
        }
    }
}

/// All problems of a manifest, in document order. Empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// Whether every problem is an [`ErrorKind::ExpectedMissing`] reference value, so the
    /// user only has to fill in values.
    pub fn only_expected_missing(&self) -> bool {
        self.0.iter().all(|e| e.kind == ErrorKind::ExpectedMissing)
    }

    /// The problems that are wrong values rather than values still to be filled in.
    pub fn invalid(&self) -> impl Iterator<Item = &ValidationError> {
        self.0
            .iter()
            .filter(|e| e.kind != ErrorKind::ExpectedMissing)
    }

    /// The values the user still has to fill in.
    pub fn expected_missing(&self) -> impl Iterator<Item = &ValidationError> {
        self.0
            .iter()
            .filter(|e| e.kind == ErrorKind::ExpectedMissing)
    }

    /// Whether there is no problem at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn invalid_at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            kind: ErrorKind::Invalid,
            message: message.into(),
        });
    }

    pub(crate) fn no_coordinator_at(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(ValidationError {
            path: path.into(),
            kind: ErrorKind::NoCoordinator,
            message: message.into(),
        });
    }

    pub(crate) fn unknown_field_at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            kind: ErrorKind::UnknownField,
            message: message.into(),
        });
    }

    pub(crate) fn missing_at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            kind: ErrorKind::ExpectedMissing,
            message: message.into(),
        });
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}
