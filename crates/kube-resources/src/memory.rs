//! Memory in pod specs: Kubernetes' quantities (`50Mi`, `1G`, `1e9`) as bytes, and the
//! memory a pod VM needs when its images are pulled into guest memory.
//!
//! A confidential pod's VM holds, besides what its containers use, the images its guest
//! pulled: each layer as downloaded (compressed) and unpacked (uncompressed), once per
//! distinct image. `contrast generate --calculate-pod-memory` writes that plus the
//! containers' limits as the pod-level memory limit (`spec.resources`), which the kubelet
//! hands the runtime as the sandbox's resources; the runtime sizes the VM from it. A
//! container counts with its memory limit, else its request. Init containers run one after
//! another, each beside the sidecars (`restartPolicy: Always`) started before it; the
//! containers run beside all sidecars: the larger of the two peaks counts, as in
//! Kubernetes' effective pod resources (and Contrast's cases).

use crate::yaml::{Map, Node};

/// A quantity of bytes (`128974848`, `129e6`, `129M`, `123Mi`, `0.5Gi`, `100m`), rounded
/// up to a whole byte as Kubernetes rounds it; `None` when it is not a quantity (spaces, a
/// negative amount, an unknown suffix) or does not fit.
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let unsigned = quantity.strip_prefix('+').unwrap_or(quantity);
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    // The suffix as a fraction: multiply by `times`, divide by `per`.
    let (times, per): (u128, u128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        exponent => {
            let exponent = exponent.strip_prefix(['e', 'E'])?;
            let (negative, digits) = match exponent.as_bytes().first()? {
                b'-' => (true, &exponent[1..]),
                b'+' => (false, &exponent[1..]),
                _ => (false, exponent),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let power = 10u128.checked_pow(digits.parse().ok()?)?;
            if negative { (1, power) } else { (power, 1) }
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let digits: u128 = format!("{whole}{fraction}").parse().ok()?;
    let numerator = digits.checked_mul(times)?;
    let denominator = scale.checked_mul(per)?;
    u64::try_from(numerator.div_ceil(denominator)).ok()
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
    // Kubernetes' effective pod resources with sidecars: each init container runs beside
    // the sidecars started before it; the containers run beside all of them.
    let mut sidecars = 0u64;
    let mut init_peak = 0u64;
    let mut containers = 0u64;
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
            let memory = container_memory(container, &field)?;
            if key == "containers" {
                containers = containers.saturating_add(memory);
            } else if container.str("restartPolicy") == Some("Always") {
                sidecars = sidecars.saturating_add(memory);
            } else {
                init_peak = init_peak.max(sidecars.saturating_add(memory));
            }
        }
    }
    let pulled = images
        .iter()
        .filter_map(|image| image_size(image))
        .fold(0u64, u64::saturating_add);
    Ok(pulled.saturating_add(init_peak.max(sidecars.saturating_add(containers))))
}

/// A container's memory: its limit, else its request (what it is promised), else 0.
fn container_memory(container: &Map, field: &str) -> Result<u64, MemoryError> {
    let resources = container.get("resources").and_then(Node::as_map);
    for kind in ["limits", "requests"] {
        let Some(node) = resources
            .and_then(|r| r.get(kind))
            .and_then(Node::as_map)
            .and_then(|l| l.get("memory"))
        else {
            continue;
        };
        let value = scalar(node);
        return quantity_bytes(&value).ok_or_else(|| MemoryError::Quantity {
            field: format!("{field}.resources.{kind}.memory"),
            value,
        });
    }
    Ok(0)
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
            ("1E3", Some(1000)),
            ("1e+3", Some(1000)),
            ("129M", Some(129_000_000)),
            ("123Mi", Some(123 << 20)),
            ("1.5Gi", Some(3 << 29)),
            ("0.5k", Some(500)),
            ("+1Ki", Some(1024)),
            // Fractions of a byte round up, as Kubernetes' Value() does.
            ("100m", Some(1)),
            ("0.5", Some(1)),
            ("1500m", Some(2)),
            ("15e-1", Some(2)),
            ("-1Gi", None),
            (" 1Gi", None),
            ("1Gi ", None),
            ("1Xi", None),
            ("Mi", None),
            ("1e", None),
            ("1.2.3", None),
            ("99999999999999999999Ei", None),
            ("1e99999999999", None),
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
        // A request counts where there is no limit; an init container after a sidecar runs
        // beside it.
        assert_eq!(
            pod_memory(
                &spec(
                    "containers: [{image: some-image, resources: {requests: {memory: 10Mi}}}]\n\
                     initContainers: [{image: some-image, restartPolicy: Always, resources: {limits: {memory: 20Mi}}},\n\
                     {image: some-image, resources: {limits: {memory: 50Mi}}}]"
                ),
                size
            )
            .unwrap(),
            30 + 70 * mi
        );
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
