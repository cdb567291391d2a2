//! Claims built from verified real evidence: the numbering of docs/attestation.md §4,
//! values that decode to the evidence's fields.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeSet;

use contrast_attestation::claims::{Claim, SNP_ARC, TDX_ARC, snp_claims, tdx_claims};
use contrast_attestation::der;
use contrast_attestation::snp::{SnpEndorsements, SnpTrustAnchor, verify_report};
use contrast_attestation::tdx::{TdxTrustAnchor, verify_quote};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn numbered(claims: &[Claim], arc: &[u64; 5]) -> Vec<u64> {
    claims
        .iter()
        .map(|c| {
            assert_eq!(&c.oid[..5], arc);
            assert_eq!(c.oid.len(), 6);
            assert!(
                matches!(c.value[0], 0x01 | 0x02 | 0x04),
                "claim {:?}: tag {:#x}",
                c.oid,
                c.value[0]
            );
            c.oid[5]
        })
        .collect()
}

fn value(claims: &[Claim], n: u64) -> &[u8] {
    &claims.iter().find(|c| c.oid[5] == n).unwrap().value
}

#[test]
fn snp_claims_cover_1_to_46_and_carry_the_report_fields() {
    let endorsements = SnpEndorsements {
        vek: Some(data("snp/trustee-milan-v2-vcek.der")),
        ..Default::default()
    };
    let v = verify_report(
        &data("snp/trustee-milan-v2-report.bin"),
        &endorsements,
        &SnpTrustAnchor::amd(),
        1_748_736_000,
    )
    .unwrap();
    let claims = snp_claims(&v);
    let numbers = numbered(&claims, &SNP_ARC);
    assert_eq!(
        numbers.iter().copied().collect::<BTreeSet<_>>(),
        (1..=46).collect()
    );
    assert_eq!(value(&claims, 1), der::uint_u64(2));
    assert_eq!(
        value(&claims, 4),
        der::uint_u64(31),
        "ABI minor of policy 0x3001f"
    );
    assert_eq!(value(&claims, 7), der::boolean(true), "SMT allowed");
    assert_eq!(value(&claims, 5), der::boolean(false), "not a debug guest");
    assert_eq!(
        value(&claims, 22),
        der::octet_string(&v.report.measurement())
    );
    assert_eq!(value(&claims, 23), der::octet_string(&v.report.host_data()));
    // Reported TCB in the order bootloader, SNP, TEE, microcode.
    let reported: Vec<_> = (28..=31).map(|n| value(&claims, n).to_vec()).collect();
    assert_eq!(
        reported,
        [
            der::uint_u64(3),
            der::uint_u64(8),
            der::uint_u64(0),
            der::uint_u64(115)
        ]
    );
}

#[test]
fn tdx_claims_cover_1_to_47_without_28_and_carry_the_quote_fields() {
    let v = verify_quote(
        &data("tdx/dcapqvl-quote-v4.dat"),
        &TdxTrustAnchor::intel(),
        None,
        1_750_809_600,
    )
    .unwrap();
    let claims = tdx_claims(&v);
    let numbers = numbered(&claims, &TDX_ARC);
    let expected: BTreeSet<u64> = (1..=47).filter(|n| *n != 28).collect();
    assert_eq!(numbers.iter().copied().collect::<BTreeSet<_>>(), expected);
    assert_eq!(value(&claims, 1), der::uint_u64(4));
    assert_eq!(value(&claims, 3), der::uint_u64(0x81));
    assert_eq!(
        value(&claims, 14),
        der::octet_string(&v.quote.td_report.mr_td)
    );
    assert_eq!(
        value(&claims, 26),
        der::uint_u64(6),
        "QE report certification data"
    );
    assert_eq!(
        value(&claims, 44),
        der::uint_u64(5),
        "PCK certificate chain"
    );
    assert_eq!(
        value(&claims, 45),
        der::uint_u64(v.quote.pck_chain_pem.len() as u64)
    );
    assert_eq!(
        value(&claims, 40),
        der::octet_string(&v.quote.qe_report_data())
    );
    // The sample is zero-padded to 5006 bytes; the padding is the extra bytes.
    let extra = value(&claims, 47);
    assert!(extra.len() > 2 && extra[2..].iter().all(|b| *b == 0));
}
