//! Memory in pod specs: Kubernetes' quantities (`50Mi`, `1G`, `1e9`) as bytes, and the
//! memory a pod VM needs when its images are pulled into guest memory.
//!
//! A confidential pod's VM holds, besides what its containers use, the images its guest
//! pulled: each layer as downloaded (compressed) and unpacked (uncompressed), once per
//! distinct image. `contrast generate --calculate-pod-memory` writes that plus the
//! containers' limits as the pod-level memory limit (`spec.resources`), which the kubelet
//! hands the runtime as the sandbox's resources; the runtime sizes the VM from it. Init
//! containers run one after another before the others, so the larger of the biggest init
//! container's limit and the sum of the others' (sidecars, `restartPolicy: Always`, run
//! alongside the containers) counts — Contrast's rule.

use crate::yaml::{Map, Node};

/// A quantity of bytes (`128974848`, `129e6`, `129M`, `123Mi`), or `None` when it is not
/// one (a fraction of a byte, a negative amount, an unknown suffix, an overflow).
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let factor: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10u128.checked_pow(digits.parse().ok()?)?
        }
    };
    // A decimal number: whole part and fraction, scaled exactly.
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let digits: u128 = format!("{whole}{fraction}").parse().ok()?;
    let scaled = digits.checked_mul(factor)?;
    if scaled % scale != 0 {
        return None;
    }
    u64::try_from(scaled / scale).ok()
}

/// Why a pod's memory cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A container's memory limit is no quantity of bytes.
    #[error("{field}: {value:?} is not a quantity of bytes (such as 128Mi or 1G)")]
    Quantity {
        /// The field.
        field: String,
        /// Its value.
        value: String,
    },
    /// A container's image has no layer sizes.
    #[error("{field}: no layer sizes for the image {image:?}")]
    UnknownImage {
        /// The field.
        field: String,
        /// The image.
        image: String,
    },
}

/// The memory the VM of the pod `spec` needs: its distinct images' sizes (`image_size`
/// gives an image's compressed plus uncompressed layer sizes) and its containers' memory
/// limits, as the module documentation says.
pub fn pod_memory(
    spec: &Map,
    image_size: impl Fn(&str) -> Option<u64>,
) -> Result<u64, MemoryError> {
    let mut images: Vec<&str> = Vec::new();
    let mut running = 0u64;
    let mut largest_init = 0u64;
    for key in ["initContainers", "containers"] {
        let list = spec.get(key).and_then(Node::as_seq).unwrap_or(&[]);
        for (index, container) in list.iter().filter_map(Node::as_map).enumerate() {
            let field = format!("spec.{key}[{index}]");
            if let Some(image) = container.str("image") {
                if image_size(image).is_none() {
                    return Err(MemoryError::UnknownImage {
                        field: format!("{field}.image"),
                        image: image.to_owned(),
                    });
                }
                if !images.contains(&image) {
                    images.push(image);
                }
            }
            let limit = match container
                .get("resources")
                .and_then(Node::as_map)
                .and_then(|r| r.get("limits"))
                .and_then(Node::as_map)
                .and_then(|l| l.get("memory"))
            {
                None => 0,
                Some(node) => {
                    let value = scalar(node);
                    quantity_bytes(&value).ok_or_else(|| MemoryError::Quantity {
                        field: format!("{field}.resources.limits.memory"),
                        value,
                    })?
                }
            };
            let sidecar = container.str("restartPolicy") == Some("Always");
            if key == "initContainers" && !sidecar {
                largest_init = largest_init.max(limit);
            } else {
                running = running.saturating_add(limit);
            }
        }
    }
    let pulled = images
        .iter()
        .filter_map(|image| image_size(image))
        .fold(0u64, u64::saturating_add);
    Ok(pulled.saturating_add(running.max(largest_init)))
}

/// A quantity's text: YAML reads `1000000` as a number.
fn scalar(node: &Node) -> String {
    match node {
        Node::Str(text) => text.clone(),
        Node::Int(n) => n.to_string(),
        Node::UInt(n) => n.to_string(),
        Node::Float(n) => n.to_string(),
        other => other.kind().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn quantities_as_kubernetes_reads_them() {
        for (text, bytes) in [
            ("128974848", Some(128_974_848)),
            ("129e6", Some(129_000_000)),
            ("129M", Some(129_000_000)),
            ("123Mi", Some(123 << 20)),
            ("1.5Gi", Some(3 << 29)),
            ("0.5k", Some(500)),
            ("1Ki", Some(1024)),
            ("0.5", None),
            ("-1Gi", None),
            ("1Xi", None),
            ("Mi", None),
            ("1e", None),
            ("99999999999999999999Ei", None),
        ] {
            assert_eq!(quantity_bytes(text), bytes, "{text}");
        }
    }

    /// Contrast's cases (its generate test): an image of one 10-byte layer that unpacks
    /// to 20 bytes weighs 30; the same image twice counts once.
    #[test]
    fn images_once_and_the_larger_of_init_and_running_limits() {
        let size = |image: &str| match image {
            "some-image" => Some(30),
            "other-image" => Some(40),
            _ => None,
        };
        let spec = |yaml: &str| {
            let docs = crate::parse_documents(yaml).unwrap();
            docs[0].as_map().unwrap().clone()
        };
        let mi = 1u64 << 20;
        for (yaml, want) in [
            ("containers: [{image: some-image}]", 30),
            (
                "containers: [{image: some-image, resources: {limits: {memory: 100Mi}}}]",
                30 + 100 * mi,
            ),
            (
                "containers: [{image: some-image}, {image: other-image}]",
                70,
            ),
            (
                "containers: [{image: some-image, resources: {limits: {memory: 100Mi}}}]\n\
                 initContainers: [{image: some-image, resources: {limits: {memory: 10Mi}}}]",
                30 + 100 * mi,
            ),
            (
                "containers: [{image: some-image, resources: {limits: {memory: 100Mi}}}]\n\
                 initContainers: [{image: some-image, resources: {limits: {memory: 200Mi}}}]",
                30 + 200 * mi,
            ),
            (
                "containers: [{image: some-image, resources: {limits: {memory: 100Mi}}}]\n\
                 initContainers: [{image: some-image, restartPolicy: Always, resources: {limits: {memory: 200Mi}}}]",
                30 + 300 * mi,
            ),
        ] {
            assert_eq!(pod_memory(&spec(yaml), size).unwrap(), want, "{yaml}");
        }
        let unknown = pod_memory(&spec("containers: [{image: nowhere}]"), size).unwrap_err();
        assert!(
            unknown.to_string().contains("spec.containers[0].image"),
            "{unknown}"
        );
        let bad = pod_memory(
            &spec("containers: [{image: some-image, resources: {limits: {memory: lots}}}]"),
            size,
        )
        .unwrap_err();
        assert!(
            bad.to_string()
                .contains("spec.containers[0].resources.limits.memory"),
            "{bad}"
        );
    }
}
