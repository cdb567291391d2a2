//! The reference values a build embeds: runtime handler name → [`ReferenceValues`].
//!
//! Contrast's build writes this file with lowerCamel keys; ours (firmware-refs) writes
//! PascalCase. Both decode, because keys bind case-insensitively.

use contrast_platforms::{Platform, RuntimeHandler};

use crate::codec::JsonValue;
use crate::error::DecodeError;
use crate::json::Json;
use crate::model::ReferenceValues;

/// The embedded reference values, one entry per runtime handler, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedReferenceValues(pub Vec<(RuntimeHandler, ReferenceValues)>);

impl EmbeddedReferenceValues {
    /// Decodes the embedded file. Unlike a manifest, unknown keys are refused here: the
    /// file is produced by our own build, so an unknown key is a build bug.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let tree = Json::parse(bytes).map_err(|e| DecodeError::Syntax {
            message: e.to_string(),
        })?;
        let Json::Object(members) = tree else {
            return Err(DecodeError::new(
                "",
                format!(
                    "expected an object of runtime handler → reference values, got {}",
                    tree.kind()
                ),
            ));
        };
        let mut entries: Vec<(RuntimeHandler, ReferenceValues)> = Vec::new();
        for (key, value) in &members {
            let path = format!("[{}]", crate::validate::json_quote(key));
            let handler: RuntimeHandler =
                key.parse().map_err(|e: contrast_platforms::ParseError| {
                    DecodeError::new(&path, e.to_string())
                })?;
            if entries
                .iter()
                .any(|(h, _)| h.platform() == handler.platform())
            {
                return Err(DecodeError::new(
                    &path,
                    format!(
                        "a second runtime handler for {}; expected one per platform",
                        handler.platform()
                    ),
                ));
            }
            let values = ReferenceValues::from_json(value, &path)?;
            if let Some(unknown) = crate::validate::first_unknown_field(&values) {
                return Err(DecodeError::new(
                    &format!("{path}.{unknown}"),
                    "unknown field",
                ));
            }
            entries.push((handler, values));
        }
        Ok(EmbeddedReferenceValues(entries))
    }

    /// The runtime handler installed for `platform`.
    pub fn handler(&self, platform: Platform) -> Option<RuntimeHandler> {
        self.0
            .iter()
            .find(|(h, _)| h.platform() == platform)
            .map(|(h, _)| *h)
    }

    /// The reference values for `platforms`, merged, with `Platform` stamped on every
    /// entry and the layout made canonical: what `contrast generate` puts in a new
    /// manifest. `None` names the first platform the build has no values for.
    pub fn for_platforms(&self, platforms: &[Platform]) -> Result<ReferenceValues, Platform> {
        let mut merged = ReferenceValues::default();
        for &platform in platforms {
            let (_, values) = self
                .0
                .iter()
                .find(|(h, _)| h.platform() == platform)
                .ok_or(platform)?;
            let mut values = values.clone();
            values.canonicalize();
            for mut entry in values.snp {
                entry.platform = platform.name().to_owned();
                merged.snp.push(entry);
            }
            for mut entry in values.tdx {
                entry.platform = platform.name().to_owned();
                merged.tdx.push(entry);
            }
        }
        Ok(merged)
    }
}
