//! Why verified evidence was refused: every field that differs, per reference-value entry,
//! with the expected and actual values and a hint at what to do.

use std::fmt;

/// One field that does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The evidence field, as the hardware vendor names it (`MEASUREMENT`, `RTMR[2]`).
    pub field: String,
    /// What the reference values accept.
    pub expected: String,
    /// What the evidence says.
    pub actual: String,
    /// One line on what it means or what to do.
    pub hint: String,
}

impl Mismatch {
    pub(crate) fn new(
        field: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Mismatch {
            field: field.into(),
            expected: expected.into(),
            actual: actual.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} differs: expected {}, got {} ({})",
            self.field, self.expected, self.actual, self.hint
        )
    }
}

/// The mismatches of one reference-value entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMismatches {
    /// Which entry: `snp[0] (Metal-QEMU-SNP, Milan)`.
    pub entry: String,
    /// Every field that differs.
    pub mismatches: Vec<Mismatch>,
}

/// Evidence that no reference-value entry accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refusal {
    /// Mismatches that no entry can fix (report data, host data).
    pub common: Vec<Mismatch>,
    /// Per entry of the evidence's TEE, what differs.
    pub entries: Vec<EntryMismatches>,
}

impl Refusal {
    /// Every mismatch of every entry, and the common ones.
    pub fn all(&self) -> impl Iterator<Item = &Mismatch> {
        self.common
            .iter()
            .chain(self.entries.iter().flat_map(|e| e.mismatches.iter()))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the evidence matches no reference values")?;
        for mismatch in &self.common {
            write!(f, "\n  {mismatch}")?;
        }
        if self.entries.is_empty() {
            f.write_str("\n  no reference values for this TEE in the manifest")?;
        }
        for entry in &self.entries {
            write!(f, "\n  {}:", entry.entry)?;
            for mismatch in &entry.mismatches {
                write!(f, "\n    {mismatch}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

/// Hex of a byte field, for messages.
pub(crate) fn hex_field(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A fixed-size reference value, or `None` if it is not `N` bytes of hex.
pub(crate) fn decode_hex<const N: usize>(value: &contrast_manifest::HexString) -> Option<[u8; N]> {
    value.to_bytes().and_then(|b| b.try_into().ok())
}

/// Simulated evidence only for a simulated platform's entry, real evidence only for a
/// real one (an entry without a platform is real).
pub(crate) fn trust_anchor_mismatch(
    entry_platform: &str,
    evidence_simulated: bool,
    vendor_root: &str,
    simulated_platform: contrast_platforms::Platform,
) -> Option<Mismatch> {
    let entry_simulated = entry_platform
        .parse::<contrast_platforms::Platform>()
        .is_ok_and(|p| p.is_simulated());
    let kind = |sim| {
        if sim {
            "the simulator's root"
        } else {
            vendor_root
        }
    };
    (entry_simulated != evidence_simulated).then(|| {
        Mismatch::new(
            "trust anchor (Platform)",
            kind(entry_simulated),
            kind(evidence_simulated),
            format!(
                "simulated evidence is accepted only on {simulated_platform}, and real evidence only on real platforms"
            ),
        )
    })
}

/// The checks every entry shares: the report data binds the evidence to this connection,
/// the host data (policy hash) must be one the manifest lists.
pub(crate) fn binding_mismatches(
    (report_data_field, expected_report_data, report_data): (&str, Option<[u8; 64]>, [u8; 64]),
    (host_data_field, allowed_host_data, host_data): (&str, Option<&[[u8; 32]]>, [u8; 32]),
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if let Some(expected) = expected_report_data
        && report_data != expected
    {
        out.push(Mismatch::new(
            report_data_field,
            hex_field(&expected),
            hex_field(&report_data),
            "the evidence was not made for this connection (another key or nonce): a replay or a proxy in between",
        ));
    }
    if let Some(allowed) = allowed_host_data
        && !allowed.contains(&host_data)
    {
        out.push(Mismatch::new(
            host_data_field,
            format!("one of {} policy hashes", allowed.len()),
            hex_field(&host_data),
            "this pod's policy is not in the manifest — run contrast generate, then contrast set",
        ));
    }
    out
}

/// The index of the first entry with no mismatch (and no common one), or a refusal that
/// explains every entry. `label` names an entry in the refusal.
pub(crate) fn first_accepting<E>(
    common: Vec<Mismatch>,
    entries: &[E],
    label: impl Fn(usize, &E) -> String,
    mismatches: impl Fn(&E) -> Vec<Mismatch>,
) -> Result<usize, Refusal> {
    let mut refusal = Refusal {
        common,
        entries: Vec::new(),
    };
    for (index, entry) in entries.iter().enumerate() {
        let found = mismatches(entry);
        if found.is_empty() && refusal.common.is_empty() {
            return Ok(index);
        }
        refusal.entries.push(EntryMismatches {
            entry: label(index, entry),
            mismatches: found,
        });
    }
    Err(refusal)
}

/// A name for a reference-value field in a refusal: itself, or `what` if it is empty.
pub(crate) fn or_missing<'a>(value: &'a str, what: &'a str) -> &'a str {
    if value.is_empty() { what } else { value }
}
