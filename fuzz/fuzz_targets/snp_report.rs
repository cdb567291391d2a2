//! SEV-SNP reports (raw or inside an Azure HCL report): parsing and every accessor.
#![no_main]

use contrast_attestation::snp::{SnpProduct, SnpReport, TcbVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((report, _)) = SnpReport::from_bytes_or_hcl(data) {
        let _ = report.signature_fixed();
        let _ = report.product_from_cpuid();
        let _ = report.signing_key();
        for product in [SnpProduct::Milan, SnpProduct::Genoa, SnpProduct::Turin] {
            let tcb = TcbVersion::from_bytes(report.reported_tcb_raw(), product);
            assert_eq!(TcbVersion::from_bytes(tcb.to_bytes(product), product), tcb);
        }
        assert_eq!(report.as_bytes().len(), 1184);
    }
});
