//! AMD's Key Distribution Service: a report's VCEK and its product line's ASK and ARK,
//! fetched, checked against the pinned ARK by verifying the report with them, and cached.
//!
//! Paths (AMD's KDS interface specification, as clients use it):
//! `/vcek/v1/{Milan|Genoa|Turin}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..` with the
//! 64-byte CHIP_ID in hex (Turin: its first 8 bytes, and `fmcSPL` first), and
//! `/vcek/v1/{product}/cert_chain` (ASK then ARK, PEM). VLEKs cannot be fetched: the host
//! loads them into the PSP and hands them over itself.

use contrast_attestation::pem;
use contrast_attestation::snp::{
    SigningKey, SnpEndorsements, SnpProduct, SnpReport, SnpTrustAnchor, TcbVersion, verify_report,
};

use crate::CollateralError;
use crate::freshness::{Freshness, Serve, crl_freshness};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::cache::DiskCache;
use crate::fetch::{Fetcher, RetryPolicy};

/// AMD's public KDS.
pub const DEFAULT_KDS_URL: &str = "https://kdsintf.amd.com";

/// The KDS path of the VCEK for `chip_id` at `tcb` (the report's REPORTED_TCB).
pub fn vcek_path(product: SnpProduct, chip_id: &[u8; 64], tcb: TcbVersion) -> String {
    // Turin adds the FMC's SPL, first.
    let fmc = match product {
        SnpProduct::Turin => format!("fmcSPL={}&", tcb.fmc.unwrap_or(0)),
        SnpProduct::Milan | SnpProduct::Genoa => String::new(),
    };
    format!(
        "/vcek/v1/{}/{}?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        product.name(),
        hex::encode(&chip_id[..product.hw_id_len()]),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    )
}

/// The KDS path of `product`'s CRL (DER, signed by the ARK) for reports signed by a
/// `signer` key: the VCEK line's or the VLEK line's.
pub fn crl_path(product: SnpProduct, signer: SigningKey) -> String {
    format!("/{}/v1/{}/crl", kind_path(signer), product.name())
}

fn kind_path(signer: SigningKey) -> &'static str {
    match signer {
        SigningKey::Vcek => "vcek",
        SigningKey::Vlek => "vlek",
    }
}

/// Whether a report is accepted without AMD's CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlPolicy {
    /// The CRL must be had, signed by the ARK, current, and revoke neither the ASK nor the
    /// VCEK (AMD's KDS always serves one).
    Required,
    /// Checked as above when KDS serves one; when it answers 404 (a mirror without CRLs),
    /// revocation is not checked, and the endorsements say so (`crl` is `None`).
    IfServed,
}

/// The KDS path of the ASK and ARK of `product`.
pub fn cert_chain_path(product: SnpProduct) -> String {
    format!("/vcek/v1/{}/cert_chain", product.name())
}

/// The KDS path of the ASVK (the VLEK signer) and ARK of `product`.
pub fn vlek_cert_chain_path(product: SnpProduct) -> String {
    format!("/vlek/v1/{}/cert_chain", product.name())
}

/// Where KDS answers are cached, by what they are (one file per VCEK and per chain).
fn vcek_cache_key(product: SnpProduct, chip_id: &[u8; 64], tcb: TcbVersion) -> String {
    format!(
        "kds/vcek/{}/{}-{}-{}-{}-{}-{}.der",
        product.name(),
        hex::encode(&chip_id[..product.hw_id_len()]),
        tcb.fmc.unwrap_or(0),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    )
}

fn chain_cache_key(product: SnpProduct) -> String {
    format!("kds/cert_chain/{}.pem", product.name())
}

fn crl_cache_key(product: SnpProduct, signer: SigningKey) -> String {
    match signer {
        SigningKey::Vcek => format!("kds/crl/{}.der", product.name()),
        SigningKey::Vlek => format!("kds/crl/vlek-{}.der", product.name()),
    }
}

/// The product lines to ask KDS for: the report's own (CPUID, report v3 and later), or
/// else the one its CHIP_ID's length points to (Turin sets only 8 bytes), Milan first.
fn candidate_products(report: &SnpReport) -> Vec<SnpProduct> {
    if let Some(product) = report.product_from_cpuid() {
        return vec![product];
    }
    let chip_id = report.chip_id();
    if chip_id[8..].iter().all(|b| *b == 0) && chip_id[..8].iter().any(|b| *b != 0) {
        vec![SnpProduct::Turin]
    } else {
        vec![SnpProduct::Milan, SnpProduct::Genoa]
    }
}

/// The most endorsements kept in memory (one per chip and TCB); past it the oldest half
/// is dropped.
pub const MEMORY_ENTRIES: usize = 4096;

/// The CRLs kept in memory, by cache key, with their window.
type CrlMemory = Arc<Mutex<HashMap<String, (Vec<u8>, Freshness)>>>;

/// Endorsements that verified a report once, with their CRL's window (read once), by
/// their cache key; and the keys in arrival order.
type Memory = Arc<
    Mutex<(
        HashMap<String, (SnpEndorsements, Freshness)>,
        VecDeque<String>,
    )>,
>;

/// AMD's KDS, behind a cache in memory (for a long-running verifier: a chip's VCEK is
/// looked up, not verified again; the caller verifies each report with it) and on disk.
#[derive(Debug, Clone)]
pub struct Kds {
    base: String,
    fetcher: Fetcher,
    cache: Option<DiskCache>,
    memory: Memory,
    crls: CrlMemory,
    /// The VLEK lines' ASVK and ARK (KDS `cert_chain` answers) that verified a report.
    vlek_chains: Arc<Mutex<HashMap<SnpProduct, Vec<u8>>>>,
    crl: CrlPolicy,
}

impl Kds {
    /// KDS at `base` (such as [`DEFAULT_KDS_URL`], or a mirror), with an optional cache.
    pub fn new(
        base: &str,
        retry: RetryPolicy,
        cache: Option<DiskCache>,
    ) -> Result<Self, CollateralError> {
        Ok(Kds {
            base: base.trim_end_matches('/').to_owned(),
            fetcher: Fetcher::new(retry)?,
            cache,
            memory: Memory::default(),
            crls: CrlMemory::default(),
            vlek_chains: Arc::default(),
            crl: CrlPolicy::Required,
        })
    }

    /// With `policy` for AMD's CRL (the default is [`CrlPolicy::Required`]).
    pub fn with_crl_policy(mut self, policy: CrlPolicy) -> Self {
        self.crl = policy;
        self
    }

    /// The certificates that verify `evidence` (a raw or Azure HCL SNP report) under
    /// `anchor` at `now`: the VCEK for its chip and REPORTED_TCB, its product line's ASK
    /// and ARK, and AMD's CRL for the line (see [`CrlPolicy`]). From the cache when it
    /// holds them and they still verify the report; else fetched, and cached only once the
    /// report verified with them (a wrong, forged, revoked or out-of-date answer is never
    /// kept).
    pub async fn snp_endorsements(
        &self,
        evidence: &[u8],
        anchor: &SnpTrustAnchor,
        now: i64,
    ) -> Result<SnpEndorsements, CollateralError> {
        let (report, _) = SnpReport::from_bytes_or_hcl(evidence)
            .map_err(|e| CollateralError::Evidence(e.to_string()))?;
        if report.signing_key().ok() == Some(SigningKey::Vlek) {
            return Err(CollateralError::VlekNotFetchable);
        }
        if report.mask_chip_key() || report.chip_id().iter().all(|b| *b == 0) {
            return Err(CollateralError::MaskedChipId);
        }
        // Another product line may still be the right one after a 404 or a refused answer;
        // a refusal says more than a 404 of a line the chip is not of.
        let mut not_found = None;
        let mut rejected = None;
        for product in candidate_products(&report) {
            match self
                .for_product(evidence, &report, product, anchor, now)
                .await
            {
                Ok(endorsements) => return Ok(endorsements),
                Err(e @ CollateralError::Status { status: 404, .. }) => not_found = Some(e),
                Err(e @ CollateralError::Rejected { .. }) => {
                    rejected.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(rejected
            .or(not_found)
            .unwrap_or(CollateralError::MaskedChipId))
    }

    async fn for_product(
        &self,
        evidence: &[u8],
        report: &SnpReport,
        product: SnpProduct,
        anchor: &SnpTrustAnchor,
        now: i64,
    ) -> Result<SnpEndorsements, CollateralError> {
        let chip_id = report.chip_id();
        let tcb = TcbVersion::from_bytes(report.reported_tcb_raw(), product);
        let vcek_key = vcek_cache_key(product, &chip_id, tcb);

        // Memory: endorsements that verified a report of this chip and TCB before; in the
        // last quarter of their CRL's window they are asked for anew, and serve only while
        // KDS cannot be reached.
        let stale = match self.remembered(&vcek_key, now) {
            Some((endorsements, Serve::Fresh)) => return Ok(endorsements),
            Some((endorsements, _)) => Some(endorsements),
            None => None,
        };
        let fetched = self
            .fetch_for_product(evidence, product, anchor, now, stale.is_none())
            .await;
        match (fetched, stale) {
            (Err(e), Some(stale)) if e.is_outage() => {
                tracing::warn!(error = %contrast_platforms::error_chain(&e), "KDS unreachable: the kept endorsements serve until their CRL runs out");
                Ok(stale)
            }
            (fetched, _) => fetched,
        }
    }

    /// The disk (when `use_disk`), else KDS, for [`Kds::for_product`].
    async fn fetch_for_product(
        &self,
        evidence: &[u8],
        product: SnpProduct,
        anchor: &SnpTrustAnchor,
        now: i64,
        use_disk: bool,
    ) -> Result<SnpEndorsements, CollateralError> {
        let (report, _) = SnpReport::from_bytes_or_hcl(evidence)
            .map_err(|e| CollateralError::Evidence(e.to_string()))?;
        let chip_id = report.chip_id();
        let tcb = TcbVersion::from_bytes(report.reported_tcb_raw(), product);
        let vcek_key = vcek_cache_key(product, &chip_id, tcb);
        let chain_key = chain_cache_key(product);
        let crl_key = crl_cache_key(product, SigningKey::Vcek);
        // The disk: what it holds is checked like a fresh answer.
        if use_disk
            && let (Some(vcek), Some(chain)) = (self.cached(&vcek_key), self.cached(&chain_key))
            && let Ok(mut endorsements) = endorsements(vcek, &chain)
            && let crl = self.cached(&crl_key)
            && (crl.is_some() || self.crl == CrlPolicy::IfServed)
            && {
                endorsements.crl = crl;
                verify_report(evidence, &endorsements, anchor, now).is_ok()
            }
        {
            tracing::debug!(%product, "SNP endorsements from the cache");
            self.remember(vcek_key, &endorsements);
            return Ok(endorsements);
        }

        let vcek_url = format!("{}{}", self.base, vcek_path(product, &chip_id, tcb));
        let chain_url = format!("{}{}", self.base, cert_chain_path(product));
        let crl_url = format!("{}{}", self.base, crl_path(product, SigningKey::Vcek));
        let vcek = self.fetcher.get(&vcek_url).await?;
        let chain = self.fetcher.get(&chain_url).await?;
        let crl = match self.fetcher.get(&crl_url).await {
            Ok(crl) => Some(crl),
            Err(CollateralError::Status { status: 404, .. }) if self.crl == CrlPolicy::IfServed => {
                tracing::warn!(
                    url = crl_url,
                    "KDS serves no CRL: revocation is not checked"
                );
                None
            }
            Err(e) => {
                return Err(CollateralError::CrlUnavailable {
                    url: crl_url,
                    cause: Box::new(e),
                });
            }
        };
        let mut endorsements =
            endorsements(vcek.clone(), &chain).map_err(|reason| CollateralError::Rejected {
                url: chain_url.clone(),
                reason,
            })?;
        endorsements.crl = crl.clone();
        verify_report(evidence, &endorsements, anchor, now).map_err(|e| {
            CollateralError::Rejected {
                url: vcek_url.clone(),
                reason: format!(
                    "the report does not verify with the certificates KDS returned: {}",
                    contrast_platforms::error_chain(&e)
                ),
            }
        })?;
        self.remember(vcek_key.clone(), &endorsements);
        if let Some(cache) = &self.cache {
            // A cache that cannot be written costs a fetch next time, nothing else.
            let mut entries = vec![(&vcek_key, &vcek), (&chain_key, &chain)];
            if let Some(crl) = &crl {
                entries.push((&crl_key, crl));
            }
            for (key, bytes) in entries {
                if let Err(e) = cache.put(key, bytes) {
                    tracing::warn!(key, error = %contrast_platforms::error_chain(&e), "cannot cache collateral");
                }
            }
        }
        Ok(endorsements)
    }

    /// The ASVK and ARK for a report signed with a VLEK the host handed over without its
    /// chain (KDS serves the chain, never the VLEK): `carried` with them, once the report
    /// verifies with them under `anchor` at `now`; from the disk, else fetched.
    pub async fn vlek_chain_for(
        &self,
        evidence: &[u8],
        carried: &SnpEndorsements,
        anchor: &SnpTrustAnchor,
        now: i64,
    ) -> Result<SnpEndorsements, CollateralError> {
        let (report, _) = SnpReport::from_bytes_or_hcl(evidence)
            .map_err(|e| CollateralError::Evidence(e.to_string()))?;
        let with_chain = |chain: &[u8]| -> Result<SnpEndorsements, String> {
            let mut endorsements = endorsements(carried.vek.clone().unwrap_or_default(), chain)?;
            endorsements.crl = carried.crl.clone();
            Ok(endorsements)
        };
        let mut refusal = None;
        // Not the report's product line: 404, or a chain the report does not verify with.
        let remember = |product, chain: &[u8]| {
            self.vlek_chains
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(product, chain.to_vec());
        };
        for product in candidate_products(&report) {
            let key = format!("kds/vlek_cert_chain/{}.pem", product.name());
            let remembered = self
                .vlek_chains
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&product)
                .cloned();
            if let Some(chain) = remembered.or_else(|| self.cached(&key))
                && let Ok(completed) = with_chain(&chain)
                && verify_report(evidence, &completed, anchor, now).is_ok()
            {
                remember(product, &chain);
                return Ok(completed);
            }
            let url = format!("{}{}", self.base, vlek_cert_chain_path(product));
            let chain = match self.fetcher.get(&url).await {
                Ok(chain) => chain,
                Err(e @ CollateralError::Status { status: 404, .. }) => {
                    refusal.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let checked = with_chain(&chain).and_then(|completed| {
                verify_report(evidence, &completed, anchor, now)
                    .map(|_| completed)
                    .map_err(|e| {
                        format!(
                            "the report does not verify with the VLEK and the chain KDS returned: {}",
                            contrast_platforms::error_chain(&e)
                        )
                    })
            });
            match checked {
                Ok(completed) => {
                    remember(product, &chain);
                    if let Some(cache) = &self.cache
                        && let Err(e) = cache.put(&key, &chain)
                    {
                        tracing::warn!(key, error = %contrast_platforms::error_chain(&e), "cannot cache collateral");
                    }
                    return Ok(completed);
                }
                Err(reason) => refusal = Some(CollateralError::Rejected { url, reason }),
            }
        }
        Err(refusal.unwrap_or(CollateralError::MaskedChipId))
    }

    /// AMD's CRL for a report that carries its certificates but not the CRL (a host's
    /// certificate table usually holds none): its product line's CRL, for its signer's
    /// kind (VCEK or VLEK), from memory or the disk while it is current, else fetched. A
    /// CRL is kept only once the report verified with it and `carried` under `anchor` at
    /// `now`, so a forged or stale answer, or one that revokes the report's chain, is
    /// refused and never kept. `None` only under [`CrlPolicy::IfServed`], when KDS serves
    /// no CRL.
    pub async fn crl_for(
        &self,
        evidence: &[u8],
        carried: &SnpEndorsements,
        anchor: &SnpTrustAnchor,
        now: i64,
    ) -> Result<Option<Vec<u8>>, CollateralError> {
        // The carried chain names the product line and the signer's kind.
        let bare = SnpEndorsements {
            crl: None,
            ..carried.clone()
        };
        let verified = verify_report(evidence, &bare, anchor, now).map_err(|e| {
            CollateralError::Evidence(format!(
                "the report does not verify with the certificates it carries: {}",
                contrast_platforms::error_chain(&e)
            ))
        })?;
        let (product, signer) = (verified.product, verified.signing_key);
        let key = crl_cache_key(product, signer);
        let with = |crl: &[u8]| SnpEndorsements {
            crl: Some(crl.to_vec()),
            ..bare.clone()
        };

        // Memory, as in `for_product`: in its last quarter a CRL is asked for anew and
        // serves only while KDS cannot be reached.
        let remembered = {
            let crls = self.crls.lock().unwrap_or_else(|e| e.into_inner());
            crls.get(&key)
                .map(|(crl, freshness)| (crl.clone(), freshness.at(now)))
                .filter(|(_, serve)| *serve != Serve::Expired)
        };
        let stale = match remembered {
            Some((crl, Serve::Fresh))
                if verify_report(evidence, &with(&crl), anchor, now).is_ok() =>
            {
                return Ok(Some(crl));
            }
            Some((crl, Serve::Stale)) => Some(crl),
            _ => None,
        };
        if stale.is_none()
            && let Some(crl) = self.cached(&key)
            && crl_freshness(&crl).is_some_and(|f| f.at(now) == Serve::Fresh)
            && verify_report(evidence, &with(&crl), anchor, now).is_ok()
        {
            self.remember_crl(key, &crl);
            return Ok(Some(crl));
        }

        let url = format!("{}{}", self.base, crl_path(product, signer));
        let crl = match self.fetcher.get(&url).await {
            Ok(crl) => crl,
            Err(e)
                if e.is_outage()
                    && let Some(stale) = &stale
                    && verify_report(evidence, &with(stale), anchor, now).is_ok() =>
            {
                tracing::warn!(url, error = %contrast_platforms::error_chain(&e), "KDS unreachable: the kept CRL serves until it runs out");
                return Ok(Some(stale.clone()));
            }
            Err(CollateralError::Status { status: 404, .. }) if self.crl == CrlPolicy::IfServed => {
                tracing::warn!(url, "KDS serves no CRL: revocation is not checked");
                return Ok(None);
            }
            Err(e) => {
                return Err(CollateralError::CrlUnavailable {
                    url,
                    cause: Box::new(e),
                });
            }
        };
        verify_report(evidence, &with(&crl), anchor, now).map_err(|e| {
            CollateralError::Rejected {
                url: url.clone(),
                reason: format!(
                    "the report does not verify with the CRL KDS returned: {}",
                    contrast_platforms::error_chain(&e)
                ),
            }
        })?;
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(&key, &crl)
        {
            tracing::warn!(key, error = %contrast_platforms::error_chain(&e), "cannot cache collateral");
        }
        self.remember_crl(key, &crl);
        Ok(Some(crl))
    }

    /// What memory alone completes `carried` to for `evidence` at `now`, without I/O or a
    /// check (what memory holds verified a report before, and the verifier checks it
    /// again): the VCEK, chain and CRL when the host carried no VCEK, else the line's CRL
    /// when it carried none. `None` when memory cannot, or (for the CRL) the report does
    /// not name its product line (version 2): then [`Kds::snp_endorsements`] or
    /// [`Kds::crl_for`] find out.
    pub fn remembered_for(
        &self,
        evidence: &[u8],
        carried: &SnpEndorsements,
        now: i64,
    ) -> Option<SnpEndorsements> {
        let (report, _) = SnpReport::from_bytes_or_hcl(evidence).ok()?;
        let signer = report.signing_key().ok()?;
        if carried.vek.is_none() {
            if signer != SigningKey::Vcek {
                return None;
            }
            // Only the line that verified this chip's report is remembered under its ID.
            return candidate_products(&report).into_iter().find_map(|product| {
                let tcb = TcbVersion::from_bytes(report.reported_tcb_raw(), product);
                match self.remembered(&vcek_cache_key(product, &report.chip_id(), tcb), now) {
                    Some((endorsements, Serve::Fresh)) => Some(endorsements),
                    _ => None,
                }
            });
        }
        let product = report.product_from_cpuid()?;
        let mut carried = carried.clone();
        // A VLEK handed over without its ASVK: only with the chain memory holds.
        if signer == SigningKey::Vlek && carried.ask.is_none() {
            let chains = self.vlek_chains.lock().unwrap_or_else(|e| e.into_inner());
            let crl = carried.crl.take();
            carried = endorsements(carried.vek.clone()?, chains.get(&product)?).ok()?;
            carried.crl = crl;
        }
        if carried.crl.is_some() {
            return Some(carried);
        }
        let crls = self.crls.lock().unwrap_or_else(|e| e.into_inner());
        let (crl, _) = crls
            .get(&crl_cache_key(product, signer))
            .filter(|(_, freshness)| freshness.at(now) == Serve::Fresh)?;
        carried.crl = Some(crl.clone());
        Some(carried)
    }

    fn remember_crl(&self, key: String, crl: &[u8]) {
        let Some(freshness) = crl_freshness(crl) else {
            return;
        };
        let mut crls = self.crls.lock().unwrap_or_else(|e| e.into_inner());
        crls.insert(key, (crl.to_vec(), freshness));
    }

    /// Remembered endorsements not past their CRL's next update, and what they are good
    /// for at `now`.
    fn remembered(&self, key: &str, now: i64) -> Option<(SnpEndorsements, Serve)> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let (endorsements, freshness) = memory.0.get(key)?;
        let serve = freshness.at(now);
        (serve != Serve::Expired).then(|| (endorsements.clone(), serve))
    }

    fn remember(&self, key: String, endorsements: &SnpEndorsements) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let (entries, order) = &mut *memory;
        if entries.len() >= MEMORY_ENTRIES {
            for old in order.drain(..MEMORY_ENTRIES / 2) {
                entries.remove(&old);
            }
        }
        let freshness = match endorsements.crl.as_deref() {
            None => Freshness::NEVER,
            Some(crl) => match crl_freshness(crl) {
                Some(freshness) => freshness,
                // A CRL without a next update is not kept in memory.
                None => return,
            },
        };
        if entries
            .insert(key.clone(), (endorsements.clone(), freshness))
            .is_none()
        {
            order.push_back(key);
        }
    }

    fn cached(&self, key: &str) -> Option<Vec<u8>> {
        self.cache.as_ref().and_then(|cache| cache.get(key))
    }
}

/// The endorsements from a VCEK (DER) and a KDS `cert_chain` answer (ASK, then ARK, PEM).
fn endorsements(vcek: Vec<u8>, chain: &[u8]) -> Result<SnpEndorsements, String> {
    let text =
        std::str::from_utf8(chain).map_err(|_| "the certificate chain is not text".to_owned())?;
    let certs = pem::decode_all(text, "CERTIFICATE")
        .map_err(|e| format!("the certificate chain is not PEM: {e}"))?;
    let [ask, ark] = <[Vec<u8>; 2]>::try_from(certs).map_err(|certs| {
        format!(
            "the certificate chain holds {} certificates, not the ASK and the ARK",
            certs.len()
        )
    })?;
    Ok(SnpEndorsements {
        vek: Some(vcek),
        ask: Some(ask),
        ark: Some(ark),
        crl: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const VLEK_REPORT: &[u8] =
        include_bytes!("../../attestation/tests/data/snp/trustee-milan-v3-vlek-report.bin");
    const VLEK: &[u8] =
        include_bytes!("../../attestation/tests/data/snp/trustee-milan-v3-vlek.der");

    /// A VLEK handed over without its ASVK is not completed from memory with the CRL
    /// alone (the verifier would find no ASVK): the chain is looked up first.
    #[test]
    fn memory_does_not_complete_a_vlek_without_its_chain() {
        let kds = Kds::new("http://127.0.0.1:9", RetryPolicy::default(), None).unwrap();
        let amd = contrast_simulator::SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap();
        let now = 1_800_000_000;
        let crl = amd
            .crl(SnpProduct::Milan, &[], now - 3600, now + 7 * 24 * 3600)
            .unwrap();
        kds.remember_crl(crl_cache_key(SnpProduct::Milan, SigningKey::Vlek), &crl);
        let carried = SnpEndorsements {
            vek: Some(VLEK.to_vec()),
            ..Default::default()
        };
        assert!(kds.remembered_for(VLEK_REPORT, &carried, now).is_none());

        // With the line's chain remembered too, memory completes it: chain and CRL.
        let chain = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../attestation/tests/data/snp/gosevguest-milan-asvk-ark.pem"
        ))
        .unwrap();
        kds.vlek_chains
            .lock()
            .unwrap()
            .insert(SnpProduct::Milan, chain.into_bytes());
        let completed = kds.remembered_for(VLEK_REPORT, &carried, now).unwrap();
        assert!(completed.ask.is_some() && completed.ark.is_some() && completed.crl.is_some());
    }
}
