//! `contrast attestation check FILE`: verify one piece of evidence offline and say why it
//! is or is not accepted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use contrast_attestation::document::{self, DocumentKind};
use contrast_attestation::explain::Refusal;
use contrast_attestation::pem;
use contrast_attestation::snp::{
    self, SnpEndorsements, SnpExpectations, SnpTrustAnchor, VerifiedSnpReport,
};
use contrast_attestation::tdx::{
    self, TdxCollateral, TdxExpectations, TdxTrustAnchor, VerifiedTdxQuote,
};
use contrast_manifest::{Manifest, ReferenceValues};
use serde_json::{Value, json};

use crate::collateral::CollateralArgs;
use contrast_attestation::time::parse_rfc3339;

/// Arguments of `contrast attestation check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The evidence: a raw SEV-SNP report, an Azure HCL report, a TDX quote, or a Contrast
    /// attestation document (the protobuf an aTLS certificate carries, SNP or TDX).
    file: PathBuf,
    /// The VCEK or VLEK that signed an SNP report (DER or PEM; a PEM may also hold the
    /// ASK and ARK). With --cert-chain, replaces the certificates of an attestation
    /// document.
    #[arg(long)]
    vcek: Option<PathBuf>,
    /// The ASK (or ASVK) and ARK, PEM, as AMD's KDS serves them at .../cert_chain.
    #[arg(long)]
    cert_chain: Option<PathBuf>,
    /// AMD's CRL for the product line (DER or PEM); replaces the CRL of an attestation
    /// document.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// TDX collateral (JSON: TCB info, QE identity, CRLs), for the TCB status.
    #[arg(long)]
    collateral: Option<PathBuf>,
    #[command(flatten)]
    fetching: CollateralArgs,
    /// The time to verify at (RFC 3339, e.g. 2025-06-25T00:00:00Z); default now.
    #[arg(long)]
    now: Option<String>,
    /// A manifest: its reference values and policy hashes are checked.
    #[arg(long, conflicts_with = "reference_values")]
    manifest: Option<PathBuf>,
    /// A reference-values file ({"snp": [...], "tdx": [...]}).
    #[arg(long)]
    reference_values: Option<PathBuf>,
    /// Accept a guest launched with debugging allowed (testing only).
    #[arg(long)]
    allow_debug: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Lines for a person.
    Text,
    /// One JSON object.
    Json,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// Certificates from a DER or PEM file, in file order.
fn certificates(path: &Path, what: &str) -> Result<Vec<Vec<u8>>> {
    let bytes = read(path, what)?;
    if pem::is_pem(&bytes) {
        let text = String::from_utf8_lossy(&bytes);
        let certs = pem::decode_all(&text, "CERTIFICATE")
            .with_context(|| format!("the {what} {} is not valid PEM", path.display()))?;
        if certs.is_empty() {
            bail!("the {what} {} holds no CERTIFICATE block", path.display());
        }
        Ok(certs)
    } else {
        Ok(vec![bytes])
    }
}

/// What kind of evidence a file holds, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    SnpReport,
    AzureHcl,
    TdxQuote,
    Document(DocumentKind),
}

impl Evidence {
    /// How the output names the input.
    fn description(self) -> &'static str {
        match self {
            Evidence::SnpReport => "raw SEV-SNP report",
            Evidence::AzureHcl => "Azure HCL report (SEV-SNP)",
            Evidence::TdxQuote => "raw TDX quote",
            Evidence::Document(kind) => kind.description(),
        }
    }
}

fn sniff(bytes: &[u8]) -> Result<Evidence> {
    if bytes.starts_with(b"HCLA") {
        return Ok(Evidence::AzureHcl);
    }
    // Raw reports and quotes start with their version (2 to 5), which as a protobuf tag
    // would be field 0: a document is never mistaken for them, nor they for a document.
    if let Some(kind) = DocumentKind::detect(bytes) {
        return Ok(Evidence::Document(kind));
    }
    if bytes.len() == snp::REPORT_SIZE {
        return Ok(Evidence::SnpReport);
    }
    let le16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let tee_type = bytes
        .get(4..8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if matches!(le16(0), Some(4 | 5)) && tee_type == Some(tdx::TEE_TYPE_TDX) {
        return Ok(Evidence::TdxQuote);
    }
    bail!(
        "not a raw SEV-SNP report ({} bytes), an Azure HCL report (\"HCLA\"), a TDX quote \
         (version 4 or 5, TEE type 0x81) or a Contrast attestation document (protobuf \
         sevsnp.Attestation or tdx.QuoteV4): {} bytes starting {}",
        snp::REPORT_SIZE,
        bytes.len(),
        hex::encode(&bytes[..bytes.len().min(8)])
    )
}

/// The expectations from `--manifest` or `--reference-values`.
struct Reference {
    values: ReferenceValues,
    policy_hashes: Option<Vec<[u8; 32]>>,
}

fn reference(args: &CheckArgs) -> Result<Option<Reference>> {
    if let Some(path) = &args.manifest {
        let manifest = Manifest::decode(&read(path, "manifest")?)
            .with_context(|| format!("the manifest {} does not decode", path.display()))?;
        let hashes = manifest
            .policies
            .keys()
            .filter_map(|h| h.to_bytes().and_then(|b| b.try_into().ok()))
            .collect();
        return Ok(Some(Reference {
            values: manifest.reference_values,
            policy_hashes: Some(hashes),
        }));
    }
    if let Some(path) = &args.reference_values {
        let values = ReferenceValues::decode(&read(path, "reference values")?)
            .with_context(|| format!("the reference values {} do not decode", path.display()))?;
        return Ok(Some(Reference {
            values,
            policy_hashes: None,
        }));
    }
    Ok(None)
}

/// Runs the check; `Ok(true)` when the evidence is valid.
pub(crate) fn run(args: &CheckArgs) -> Result<bool> {
    let now = match &args.now {
        Some(text) => parse_rfc3339(text).with_context(|| format!("--now {text:?}"))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs()
            .try_into()
            .context("the clock is beyond 2262")?,
    };
    let evidence = read(&args.file, "evidence")?;
    let reference = reference(args)?;
    let kind = sniff(&evidence)?;
    let unreadable_document = || {
        format!(
            "the evidence {} is a {} that cannot be read",
            args.file.display(),
            kind.description()
        )
    };
    let (mut facts, verdict) = match kind {
        Evidence::SnpReport | Evidence::AzureHcl => {
            let mut endorsements = snp_endorsements(args, None)?;
            let fetched = fetch_vek(args, &evidence, &mut endorsements, now);
            let (mut facts, verdict) =
                check_snp(args, &evidence, &endorsements, reference.as_ref(), now)?;
            note_fetch(&mut facts, fetched);
            (facts, verdict)
        }
        Evidence::Document(DocumentKind::Snp) => {
            let document =
                document::decode_snp_document(&evidence).with_context(unreadable_document)?;
            let mut endorsements = snp_endorsements(args, Some(document.endorsements))?;
            let fetched = fetch_vek(args, &document.report, &mut endorsements, now);
            let (mut facts, verdict) = check_snp(
                args,
                &document.report,
                &endorsements,
                reference.as_ref(),
                now,
            )?;
            facts["certificates from"] =
                json!(if args.vcek.is_some() || args.cert_chain.is_some() {
                    "command line"
                } else {
                    "document"
                });
            note_fetch(&mut facts, fetched);
            facts["CRL from"] = json!(match (&args.crl, &endorsements.crl) {
                (Some(_), _) => "command line",
                (None, Some(_)) => "document",
                (None, None) => "none",
            });
            if let Some(product) = document.product {
                facts["product named by the document"] = json!(product.name());
            }
            (facts, verdict)
        }
        Evidence::TdxQuote => check_tdx(args, &evidence, reference.as_ref(), now)?,
        Evidence::Document(DocumentKind::Tdx) => {
            let quote = document::decode_tdx(&evidence).with_context(unreadable_document)?;
            check_tdx(args, &quote, reference.as_ref(), now)?
        }
    };
    facts["input"] = json!(kind.description());
    let valid = verdict.is_ok();
    match args.output {
        Output::Json => {
            let mut out = facts;
            out["valid"] = json!(valid);
            match verdict {
                Ok(Some(index)) => out["accepted_by"] = json!(index),
                Ok(None) => {}
                Err(problem) => out["refusal"] = problem,
            }
            crate::print(&serde_json::to_string_pretty(&out)?);
        }
        Output::Text => {
            print_facts(&facts);
            match verdict {
                Ok(Some(index)) => crate::print(&format!("verdict: valid (matches {index})")),
                Ok(None) => crate::print(
                    "verdict: valid signatures and chain; no reference values given, so the \
                     values above are what a manifest for this machine would hold",
                ),
                Err(problem) => {
                    let text = problem
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    crate::print(&format!("verdict: INVALID\n{text}"));
                }
            }
        }
    }
    Ok(valid)
}

fn print_facts(facts: &Value) {
    if let Some(object) = facts.as_object() {
        // What was read comes first, whatever order the map keeps.
        let first = object.get_key_value("input");
        for (key, value) in first
            .into_iter()
            .chain(object.iter().filter(|(key, _)| *key != "input"))
        {
            match value {
                Value::String(s) => crate::print(&format!("{key}: {s}")),
                Value::Object(_) | Value::Array(_) => crate::print(&format!(
                    "{key}:\n{}",
                    serde_json::to_string_pretty(value).unwrap_or_default()
                )),
                other => crate::print(&format!("{key}: {other}")),
            }
        }
    }
}

/// The verdict: `Ok(Some(i))` matched reference entry `i`, `Ok(None)` valid without
/// reference values, `Err` the refusal as JSON (with a `text` rendering).
type Verdict = std::result::Result<Option<String>, Value>;

fn refusal_json(refusal: &Refusal) -> Value {
    let mismatch = |m: &contrast_attestation::explain::Mismatch| json!({"field": m.field, "expected": m.expected, "actual": m.actual, "hint": m.hint});
    json!({
        "text": refusal.to_string(),
        "common": refusal.common.iter().map(mismatch).collect::<Vec<_>>(),
        "entries": refusal.entries.iter().map(|e| json!({
            "entry": e.entry,
            "mismatches": e.mismatches.iter().map(mismatch).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn error_verdict(error: impl std::fmt::Display) -> Verdict {
    Err(json!({"text": error.to_string()}))
}

/// The SNP endorsements: a document's own, unless the command line gives certificates
/// (--vcek, --cert-chain: then only those) or a CRL (--crl: it replaces the document's).
fn snp_endorsements(
    args: &CheckArgs,
    from_document: Option<SnpEndorsements>,
) -> Result<SnpEndorsements> {
    let from_document = from_document.unwrap_or_default();
    let mut endorsements = if args.vcek.is_some() || args.cert_chain.is_some() {
        SnpEndorsements {
            crl: from_document.crl,
            ..Default::default()
        }
    } else {
        from_document
    };
    if let Some(path) = &args.vcek {
        let mut certs = certificates(path, "VCEK").map(Vec::into_iter)?;
        endorsements.vek = certs.next();
        endorsements.ask = certs.next();
        endorsements.ark = certs.next();
    }
    if let Some(path) = &args.cert_chain {
        let mut certs = certificates(path, "certificate chain").map(Vec::into_iter)?;
        endorsements.ask = certs.next();
        endorsements.ark = certs.next().or(endorsements.ark);
    }
    if let Some(path) = &args.crl {
        let bytes = read(path, "CRL")?;
        endorsements.crl = Some(if pem::is_pem(&bytes) {
            pem::decode_all(&String::from_utf8_lossy(&bytes), "X509 CRL")
                .ok()
                .and_then(|blocks| blocks.into_iter().next())
                .with_context(|| format!("the CRL {} holds no X509 CRL block", path.display()))?
        } else {
            bytes
        });
    }
    Ok(endorsements)
}

/// What fetching the VCEK came to: not tried (certificates given, or --offline), the
/// certificates (from KDS or its cache), or why not.
enum Fetched {
    NotTried,
    Got,
    Failed(String),
}

/// Completes the endorsements from KDS (through the cache) when fetching is allowed and
/// the VCEK or AMD's CRL was neither given nor carried; a CRL given on the command line
/// stays.
fn fetch_vek(
    args: &CheckArgs,
    evidence: &[u8],
    endorsements: &mut SnpEndorsements,
    now: i64,
) -> Fetched {
    let complete = endorsements.vek.is_some() && endorsements.crl.is_some();
    if complete || args.fetching.offline {
        return Fetched::NotTried;
    }
    let fetched = args.fetching.source().and_then(|source| {
        Ok(source.complete_snp(evidence, endorsements.clone(), &SnpTrustAnchor::amd(), now)?)
    });
    match fetched {
        Ok(got) => {
            *endorsements = got;
            Fetched::Got
        }
        Err(e) => Fetched::Failed(format!("{e:#}")),
    }
}

/// The quote's collateral from PCS, through the cache.
fn fetch_tdx_collateral(
    args: &CheckArgs,
    evidence: &[u8],
    now: i64,
) -> std::result::Result<TdxCollateral, String> {
    args.fetching
        .source()
        .and_then(|source| {
            source
                .tdx(evidence, &TdxTrustAnchor::intel(), now)?
                .context("no PCS to fetch from")
        })
        .map_err(|e| format!("{e:#}"))
}

fn note_fetch(facts: &mut Value, fetched: Fetched) {
    match fetched {
        Fetched::NotTried => {}
        Fetched::Got => facts["certificates from"] = json!("KDS (or its cache)"),
        Fetched::Failed(reason) => facts["KDS"] = json!(format!("nothing fetched: {reason}")),
    }
}

fn check_snp(
    args: &CheckArgs,
    evidence: &[u8],
    endorsements: &SnpEndorsements,
    reference: Option<&Reference>,
    now: i64,
) -> Result<(Value, Verdict)> {
    let verified = match snp::verify_report(evidence, endorsements, &SnpTrustAnchor::amd(), now) {
        Ok(verified) => verified,
        Err(e) => {
            let facts = snp::SnpReport::from_bytes_or_hcl(evidence)
                .map(|(r, _)| json!({"tee": "SEV-SNP", "report version": r.version(), "measurement": hex::encode(r.measurement()), "host data": hex::encode(r.host_data())}))
                .unwrap_or_else(|_| json!({"tee": "SEV-SNP"}));
            return Ok((facts, error_verdict(e)));
        }
    };
    let mut facts = snp_facts(&verified);
    facts["revocation"] = json!(if endorsements.crl.is_some() {
        "checked against AMD's CRL"
    } else {
        "NOT checked: no CRL given, carried or fetched (the Coordinator and contrast \
         set/verify/recover refuse such a report)"
    });
    let verdict = match reference {
        None => {
            let mut facts = facts;
            facts["suggested reference values"] = reference_values_json(&ReferenceValues {
                snp: vec![snp::suggested_reference_values(&verified)],
                ..Default::default()
            });
            return Ok((facts, Ok(None)));
        }
        Some(reference) => {
            let expect = SnpExpectations {
                host_data: reference.policy_hashes.clone(),
                allow_debug: args.allow_debug,
                ..Default::default()
            };
            snp::check_snp_reference_values(&verified, &reference.values.snp, &expect)
                .map(|i| Some(format!("ReferenceValues.snp[{i}]")))
                .map_err(|r| refusal_json(&r))
        }
    };
    Ok((facts, verdict))
}

fn snp_facts(v: &VerifiedSnpReport) -> Value {
    let r = &v.report;
    json!({
        "tee": "SEV-SNP",
        "trust anchor": if v.simulated { "simulator" } else { "AMD" },
        "product": v.product.name(),
        "report version": r.version(),
        "signed by": v.signing_key.to_string(),
        "azure HCL wrapper": v.from_hcl,
        "reported TCB": v.reported_tcb.to_string(),
        "committed TCB": v.committed_tcb.to_string(),
        "launch TCB": v.launch_tcb.to_string(),
        "current TCB": v.current_tcb.to_string(),
        "policy": format!("{:#x}", r.policy()),
        "vmpl": r.vmpl(),
        "measurement": hex::encode(r.measurement()),
        "host data": hex::encode(r.host_data()),
        "report data": hex::encode(r.report_data()),
        "chip id": hex::encode(r.chip_id()),
    })
}

fn check_tdx(
    args: &CheckArgs,
    evidence: &[u8],
    reference: Option<&Reference>,
    now: i64,
) -> Result<(Value, Verdict)> {
    let mut fetched = Fetched::NotTried;
    let collateral = match &args.collateral {
        Some(path) => Some(
            TdxCollateral::from_json(&read(path, "collateral")?)
                .with_context(|| format!("the collateral {}", path.display()))?,
        ),
        None if args.fetching.offline => None,
        None => match fetch_tdx_collateral(args, evidence, now) {
            Ok(collateral) => {
                fetched = Fetched::Got;
                Some(collateral)
            }
            Err(reason) => {
                fetched = Fetched::Failed(reason);
                None
            }
        },
    };
    let verified =
        match tdx::verify_quote(evidence, &TdxTrustAnchor::intel(), collateral.as_ref(), now) {
            Ok(verified) => verified,
            Err(e) => return Ok((json!({"tee": "TDX"}), error_verdict(e))),
        };
    let mut facts = tdx_facts(&verified);
    match fetched {
        Fetched::NotTried => {}
        Fetched::Got => facts["collateral from"] = json!("PCS (or its cache)"),
        Fetched::Failed(reason) => {
            facts["PCS"] = json!(format!("no collateral, so no TCB status: {reason}"));
        }
    }
    let verdict = match reference {
        None => {
            let mut facts = facts;
            facts["suggested reference values"] = reference_values_json(&ReferenceValues {
                tdx: vec![tdx::suggested_tdx_reference_values(&verified)],
                ..Default::default()
            });
            let refused = verified.tcb.as_ref().filter(|t| t.is_refused_by_default());
            return Ok((
                facts,
                match refused {
                    Some(tcb) => {
                        error_verdict(format!("the platform's TCB status is {}", tcb.status))
                    }
                    None => Ok(None),
                },
            ));
        }
        Some(reference) => {
            let expect = TdxExpectations {
                host_data: reference.policy_hashes.clone(),
                allow_debug: args.allow_debug,
                ..Default::default()
            };
            tdx::check_tdx_reference_values(&verified, &reference.values.tdx, &expect)
                .map(|i| Some(format!("ReferenceValues.tdx[{i}]")))
                .map_err(|r| refusal_json(&r))
        }
    };
    Ok((facts, verdict))
}

fn tdx_facts(v: &VerifiedTdxQuote) -> Value {
    let q = &v.quote;
    let td = &q.td_report;
    let platform = tdx::pck_platform(&v.pck_der);
    json!({
        "tee": "TDX",
        "trust anchor": if v.simulated { "simulator" } else { "Intel" },
        "quote version": q.version,
        "TD report": if td.mr_service_td.is_some() { "1.5" } else { "1.0" },
        "TCB status": v.tcb.as_ref().map_or_else(|| "not evaluated (no --collateral)".to_owned(), |t| t.status.clone()),
        "advisories": v.tcb.as_ref().map(|t| t.advisory_ids.clone()).unwrap_or_default(),
        "FMSPC": platform.fmspc.map(hex::encode),
        "PIID": platform.piid.map(hex::encode),
        "QE SVN (QE report ISVSVN)": q.qe_identity().isv_svn,
        "PCE SVN": q.pce_svn,
        "TEE TCB SVN": hex::encode(td.tee_tcb_svn),
        "debug": td.is_debug(),
        "MRTD": hex::encode(td.mr_td),
        "RTMR0": hex::encode(td.rtmrs[0]),
        "RTMR1": hex::encode(td.rtmrs[1]),
        "RTMR2": hex::encode(td.rtmrs[2]),
        "RTMR3": hex::encode(td.rtmrs[3]),
        "MRSEAM": hex::encode(td.mr_seam),
        "host data (MRCONFIGID[0..32])": hex::encode(&td.mr_config_id[..32]),
        "report data": hex::encode(td.report_data),
    })
}

fn reference_values_json(values: &ReferenceValues) -> Value {
    serde_json::from_slice(&values.encode()).unwrap_or(Value::Null)
}
