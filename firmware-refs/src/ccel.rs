//! The TDX CCEL event log (ACPI "CCEL" table; TCG PC Client crypto-agile format) and its
//! replay into RTMR0–3.
//!
//! The log starts with a TCG_PCClientPCREvent carrying the "Spec ID Event03" header (the
//! digest algorithms and sizes), followed by TCG_PCR_EVENT2 records. MR index 1..=4 names
//! RTMR0..=3; EV_NO_ACTION events are never extended. Parsing is bounded by the input and
//! the header's algorithm list; nothing in the log can make it read out of bounds.

use crate::ovmf::{u16_at, u32_at, u64_at};
use crate::rtmr::Rtmr;

/// TCG algorithm ID of SHA-384.
pub const TPM_ALG_SHA384: u16 = 0x000c;
/// Events of this type are informational and not extended.
pub const EV_NO_ACTION: u32 = 0x3;

/// A malformed CCEL table or event log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcelError {
    /// The ACPI table is not a TDX CCEL table.
    #[error("the CCEL ACPI table is malformed: {0}")]
    BadTable(String),
    /// The log's first event is not the Spec ID header.
    #[error("the event log does not start with a \"Spec ID Event03\" header: {0}")]
    BadHeader(String),
    /// The log does not use SHA-384.
    #[error(
        "the event log's algorithms do not include SHA-384 (0x000c, 48 bytes); it is not a TDX log"
    )]
    NoSha384,
    /// An event is malformed.
    #[error("event {index} at offset {offset:#x} of the event log: {reason}")]
    BadEvent {
        /// Position in the log (the header is 0).
        index: usize,
        /// Byte offset.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The CCEL ACPI table's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcelTable {
    /// Confidential computing type (2 = TDX).
    pub cc_type: u8,
    /// Log area minimum length.
    pub log_area_length: u64,
    /// Log area start address (guest physical).
    pub log_area_start: u64,
}

/// Parses the ACPI CCEL table (signature, length, checksum, TDX type).
pub fn parse_ccel_table(table: &[u8]) -> Result<CcelTable, CcelError> {
    let bad = |m: String| CcelError::BadTable(m);
    if table.get(..4) != Some(b"CCEL") {
        return Err(bad("no \"CCEL\" signature".into()));
    }
    let length = u32_at(table, 4).unwrap_or(0) as usize;
    if length < 56 || length > table.len() {
        return Err(bad(format!("length {length} outside 56..={}", table.len())));
    }
    let sum = table[..length].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if sum != 0 {
        return Err(bad("checksum does not add up to zero".into()));
    }
    let cc_type = table[36];
    if cc_type != 2 {
        return Err(bad(format!("CC type {cc_type}, expected 2 (TDX)")));
    }
    Ok(CcelTable {
        cc_type,
        log_area_length: u64_at(table, 40).unwrap_or(0),
        log_area_start: u64_at(table, 48).unwrap_or(0),
    })
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcelEvent {
    /// MR index: 0 = MRTD, 1..=4 = RTMR0..=3.
    pub mr_index: u32,
    /// TCG event type.
    pub event_type: u32,
    /// The SHA-384 digest.
    pub sha384: [u8; 48],
    /// The event data.
    pub data: Vec<u8>,
}

fn take<'a>(log: &'a [u8], at: &mut usize, len: usize) -> Option<&'a [u8]> {
    let out = log.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(out)
}

/// Parses the Spec ID header event; returns the digest sizes by algorithm.
fn parse_header(log: &[u8], at: &mut usize) -> Result<Vec<(u16, usize)>, CcelError> {
    let bad = |m: &str| CcelError::BadHeader(m.to_owned());
    let head = take(log, at, 32).ok_or_else(|| bad("shorter than the first event"))?;
    if u32_at(head, 4) != Some(EV_NO_ACTION) {
        return Err(bad("the first event is not EV_NO_ACTION"));
    }
    let size = u32_at(head, 28).unwrap_or(0) as usize;
    let spec = take(log, at, size).ok_or_else(|| bad("its data runs past the end"))?;
    if spec.get(..16) != Some(b"Spec ID Event03\0") {
        return Err(bad("signature is not \"Spec ID Event03\""));
    }
    let count = u32_at(spec, 24).ok_or_else(|| bad("truncated"))? as usize;
    let mut algorithms = Vec::new();
    for i in 0..count {
        let (Some(alg), Some(len)) = (u16_at(spec, 28 + 4 * i), u16_at(spec, 30 + 4 * i)) else {
            return Err(bad("its algorithm list runs past its data"));
        };
        algorithms.push((alg, usize::from(len)));
    }
    if !algorithms.contains(&(TPM_ALG_SHA384, 48)) {
        return Err(CcelError::NoSha384);
    }
    Ok(algorithms)
}

/// Parses the event log. The log ends at its end or where the rest is unwritten (all
/// 0xff or all zero bytes).
pub fn parse_event_log(log: &[u8]) -> Result<Vec<CcelEvent>, CcelError> {
    let mut at = 0;
    let algorithms = parse_header(log, &mut at)?;
    let mut events = Vec::new();
    while at < log.len() {
        let rest = &log[at..];
        if rest.iter().all(|&b| b == 0xff) || rest.iter().all(|&b| b == 0) {
            break;
        }
        let index = events.len() + 1;
        let offset = at;
        let bad = |reason: String| CcelError::BadEvent {
            index,
            offset,
            reason,
        };
        let truncated = || bad("truncated".into());
        let head = take(log, &mut at, 12).ok_or_else(truncated)?;
        let [mr_index, event_type, digests] = [0, 4, 8].map(|o| u32_at(head, o).unwrap_or(0));
        if digests as usize > algorithms.len() {
            return Err(bad(format!(
                "{digests} digests, but the header names {} algorithms",
                algorithms.len()
            )));
        }
        let mut sha384 = None;
        for _ in 0..digests {
            let alg = take(log, &mut at, 2)
                .and_then(|a| u16_at(a, 0))
                .ok_or_else(truncated)?;
            let (_, len) = algorithms
                .iter()
                .find(|(a, _)| *a == alg)
                .ok_or_else(|| bad(format!("digest algorithm {alg:#06x} is not in the header")))?;
            let value = take(log, &mut at, *len).ok_or_else(truncated)?;
            if alg == TPM_ALG_SHA384 {
                sha384 = value.try_into().ok();
            }
        }
        let size = take(log, &mut at, 4)
            .and_then(|s| u32_at(s, 0))
            .ok_or_else(truncated)?;
        let data = take(log, &mut at, size as usize)
            .ok_or_else(|| bad(format!("event data of {size} bytes runs past the end")))?;
        let sha384 = sha384.ok_or_else(|| bad("no SHA-384 digest".into()))?;
        if event_type != EV_NO_ACTION && !(1..=4).contains(&mr_index) {
            return Err(bad(format!(
                "MR index {mr_index}; a TDX log extends only 1..=4 (RTMR0..3)"
            )));
        }
        events.push(CcelEvent {
            mr_index,
            event_type,
            sha384,
            data: data.to_vec(),
        });
    }
    Ok(events)
}

/// Replays `events` into RTMR0..=3.
pub fn replay(events: &[CcelEvent]) -> [[u8; 48]; 4] {
    let mut rtmrs = [Rtmr::default(); 4];
    for e in events.iter().filter(|e| e.event_type != EV_NO_ACTION) {
        if let Some(r) = (e.mr_index as usize)
            .checked_sub(1)
            .and_then(|i| rtmrs.get_mut(i))
        {
            r.extend(&e.sha384);
        }
    }
    rtmrs.map(|r| r.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A log header with the given algorithms.
    pub(crate) fn header(algorithms: &[(u16, u16)]) -> Vec<u8> {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
        spec.extend_from_slice(&(algorithms.len() as u32).to_le_bytes());
        for (alg, len) in algorithms {
            spec.extend_from_slice(&alg.to_le_bytes());
            spec.extend_from_slice(&len.to_le_bytes());
        }
        spec.push(0);
        let mut log = 0u32.to_le_bytes().to_vec();
        log.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        log.extend_from_slice(&[0; 20]);
        log.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        log.extend_from_slice(&spec);
        log
    }

    fn event(mr: u32, ty: u32, digest: &[u8; 48], data: &[u8]) -> Vec<u8> {
        let mut e = mr.to_le_bytes().to_vec();
        e.extend_from_slice(&ty.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
        e.extend_from_slice(digest);
        e.extend_from_slice(&(data.len() as u32).to_le_bytes());
        e.extend_from_slice(data);
        e
    }

    #[test]
    fn replay_extends_the_named_rtmr_and_skips_no_action() {
        let mut log = header(&[(TPM_ALG_SHA384, 48)]);
        log.extend(event(3, 0x80000001, &[7; 48], b"x"));
        log.extend(event(1, EV_NO_ACTION, &[8; 48], b""));
        log.extend([0xff; 100]);
        let events = parse_event_log(&log).unwrap();
        assert_eq!(events.len(), 2);
        let rtmrs = replay(&events);
        let mut r2 = Rtmr::default();
        r2.extend(&[7; 48]);
        assert_eq!(rtmrs, [[0; 48], [0; 48], r2.0, [0; 48]]);
    }

    #[test]
    fn malformed_logs_are_refused_without_panicking() {
        let good = {
            let mut l = header(&[(TPM_ALG_SHA384, 48)]);
            l.extend(event(1, 1, &[1; 48], b"data"));
            l
        };
        assert!(parse_event_log(&good).is_ok());
        // Every truncation is an error or a shorter log, never a panic.
        for cut in 0..good.len() {
            let _ = parse_event_log(&good[..cut]);
        }
        assert!(matches!(
            parse_event_log(&good[..10]),
            Err(CcelError::BadHeader(_))
        ));
        assert!(matches!(
            parse_event_log(&good[..good.len() - 1]),
            Err(CcelError::BadEvent { index: 1, .. })
        ));
        assert_eq!(
            parse_event_log(&header(&[(0x000b, 32)])),
            Err(CcelError::NoSha384)
        );
        let mut mr_zero = header(&[(TPM_ALG_SHA384, 48)]);
        mr_zero.extend(event(0, 1, &[1; 48], b""));
        assert!(matches!(
            parse_event_log(&mr_zero),
            Err(CcelError::BadEvent { .. })
        ));
        let mut too_many = header(&[(TPM_ALG_SHA384, 48)]);
        too_many.extend(event(1, 1, &[1; 48], b""));
        let digest_count_at = too_many.len() - 4 - 48 - 2 - 4;
        too_many[digest_count_at..digest_count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_event_log(&too_many),
            Err(CcelError::BadEvent { .. })
        ));
        let mut huge = header(&[(TPM_ALG_SHA384, 48)]);
        huge.extend(event(1, 1, &[1; 48], b""));
        let size_at = huge.len() - 4;
        huge[size_at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_event_log(&huge),
            Err(CcelError::BadEvent { .. })
        ));
    }

    #[test]
    fn table_refusals() {
        assert!(matches!(
            parse_ccel_table(b"XSDT"),
            Err(CcelError::BadTable(_))
        ));
        let mut t = vec![0u8; 56];
        t[..4].copy_from_slice(b"CCEL");
        t[4] = 56;
        t[36] = 2;
        let fix = |t: &mut Vec<u8>| {
            t[9] = 0;
            let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            t[9] = 0u8.wrapping_sub(sum);
        };
        fix(&mut t);
        assert!(parse_ccel_table(&t).is_ok());
        let mut sev = t.clone();
        sev[36] = 1;
        fix(&mut sev);
        assert!(matches!(
            parse_ccel_table(&sev),
            Err(CcelError::BadTable(_))
        ));
        let mut bad_sum = t.clone();
        bad_sum[40] ^= 1;
        assert!(matches!(
            parse_ccel_table(&bad_sum),
            Err(CcelError::BadTable(_))
        ));
    }
}
