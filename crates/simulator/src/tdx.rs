//! A simulated Intel: a root CA → PCK platform CA → PCK chain (ECDSA P-256, with the SGX
//! extension a real PCK certificate carries), and TDX quotes v4 and v5 in the real format:
//! signed by a fresh attestation key that the quoting enclave's report binds, and that
//! report signed by the PCK.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair,
};
use contrast_attestation::tdx::{
    INTEL_QE_VENDOR_ID, INTEL_TDX_QE, LocalTdReport, TDREPORT_LEN, TdxTrustAnchor,
};

use crate::SimError;
use crate::store::KeyStore;
use contrast_attestation::{der, oid};
use zeroize::Zeroizing;

const NOT_BEFORE: i64 = 1_577_836_800; // 2020
const NOT_AFTER: i64 = 4_102_444_800; // 2100

fn intel_style_name(common_name: &str) -> Vec<u8> {
    der::name(&[
        (oid::CN, common_name),
        (oid::O, "Contrast TEE Simulator (not Intel)"),
    ])
}

/// A new P-256 private key, PKCS#8; the buffer is wiped when dropped.
fn generate_p256() -> Result<Zeroizing<Vec<u8>>, SimError> {
    let rng = SystemRandom::new();
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map(|doc| Zeroizing::new(doc.as_ref().to_vec()))
        .map_err(|_| SimError::Crypto("ECDSA key generation failed"))
}

fn load_p256(
    pkcs8: &[u8],
    algorithm: &'static EcdsaSigningAlgorithm,
    file: &str,
) -> Result<EcdsaKeyPair, SimError> {
    EcdsaKeyPair::from_pkcs8(algorithm, pkcs8).map_err(|_| SimError::KeyFile {
        file: file.to_owned(),
        reason: "not a P-256 PKCS#8 key".into(),
    })
}

fn spki(key: &EcdsaKeyPair) -> Result<Vec<u8>, SimError> {
    key.public_key()
        .as_der()
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| SimError::Crypto("EC public key encoding failed"))
}

fn issue(
    serial: u64,
    issuer: &str,
    subject: &str,
    spki_der: &[u8],
    extensions: Vec<Vec<u8>>,
    issuer_key: &EcdsaKeyPair,
) -> Result<Vec<u8>, SimError> {
    let algorithm = der::seq(&[der::oid(oid::ECDSA_SHA256)]);
    let tbs = der::seq(&[
        der::explicit(0, &der::uint_u64(2)),
        der::uint_u64(serial),
        algorithm.clone(),
        intel_style_name(issuer),
        der::seq(&[der::time(NOT_BEFORE), der::time(NOT_AFTER)]),
        intel_style_name(subject),
        spki_der.to_vec(),
        der::explicit(3, &der::seq(&extensions)),
    ]);
    sign_tbs(tbs, algorithm, issuer_key)
}

/// A certificate or CRL: `tbs`, the algorithm and `key`'s ECDSA signature over `tbs`.
fn sign_tbs(tbs: Vec<u8>, algorithm: Vec<u8>, key: &EcdsaKeyPair) -> Result<Vec<u8>, SimError> {
    let signature = key
        .sign(&SystemRandom::new(), &tbs)
        .map_err(|_| SimError::Crypto("ECDSA signing failed"))?;
    Ok(der::seq(&[
        tbs,
        algorithm,
        der::bit_string(signature.as_ref()),
    ]))
}

/// The SGX extension of a PCK certificate.
fn sgx_extension(fmspc: [u8; 6], piid: Option<[u8; 16]>, pce_svn: u16) -> Vec<u8> {
    let pair = |sub: &str, value: Vec<u8>| {
        der::seq(&[der::oid(&format!("{}.{sub}", oid::SGX_EXTENSION)), value])
    };
    let mut tcb: Vec<Vec<u8>> = (1..=16)
        .map(|i| pair(&format!("2.{i}"), der::uint_u64(2)))
        .collect();
    tcb.push(pair("2.17", der::uint_u64(pce_svn.into())));
    tcb.push(pair("2.18", der::octet_string(&[2; 16])));
    let mut entries = vec![
        pair("1", der::octet_string(&[0x99; 16])),
        pair("2", der::seq(&tcb)),
        pair("3", der::octet_string(&[0, 0])),
        pair("4", der::octet_string(&fmspc)),
        pair("5", der::enumerated(1)),
    ];
    if let Some(piid) = piid {
        entries.push(pair("6", der::octet_string(&piid)));
    }
    der::extension(oid::SGX_EXTENSION, false, &der::seq(&entries))
}

fn pem(der: &[u8]) -> String {
    contrast_attestation::pem::encode("CERTIFICATE", der)
}

/// The simulated Intel of one platform.
pub struct SimulatedIntel {
    root_der: Vec<u8>,
    pck_ca_der: Vec<u8>,
    pck_key: EcdsaKeyPair,
    pck_der: Vec<u8>,
    /// The root's and the PCK CA's keys sign the collateral's CRLs and TCB signer.
    root_key: EcdsaKeyPair,
    ca_key: EcdsaKeyPair,
    platform: SimulatedPlatform,
}

impl std::fmt::Debug for SimulatedIntel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedIntel").finish_non_exhaustive()
    }
}

/// The platform a simulated PCK certificate describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedPlatform {
    /// FMSPC.
    pub fmspc: [u8; 6],
    /// Platform instance ID.
    pub piid: Option<[u8; 16]>,
    /// PCE SVN in the PCK certificate.
    pub pce_svn: u16,
}

impl Default for SimulatedPlatform {
    fn default() -> Self {
        SimulatedPlatform {
            fmspc: [0x00, 0x60, 0x6a, 0x00, 0x00, 0x00],
            piid: Some([0x3c; 16]),
            pce_svn: 13,
        }
    }
}

/// What a simulated quote says.
#[derive(Debug, Clone)]
pub struct TdxQuoteSpec {
    /// 4, or 5 with a TD report 1.5 body.
    pub version: u16,
    /// The QE's ISVSVN in the QE report (the header's QE SVN is 0, as Intel's QE writes).
    pub qe_svn: u16,
    /// The quoting enclave: Intel's TDX QE by default; tests set another to play a host
    /// that has its own enclave certified.
    pub qe: SimulatedQe,
    /// PCE SVN in the header.
    pub pce_svn: u16,
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    pub mr_seam: [u8; 48],
    /// TDATTRIBUTES (Contrast: SEPT_VE_DISABLE, bit 28).
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID (Contrast: the policy hash, then 16 zero bytes).
    pub mr_config_id: [u8; 48],
    /// RTMR0..3.
    pub rtmrs: [[u8; 48]; 4],
    /// REPORTDATA.
    pub report_data: [u8; 64],
}

/// The identity fields of the simulated QE report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedQe {
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// MISCSELECT.
    pub misc_select: u32,
    /// ATTRIBUTES (bit 1: DEBUG).
    pub attributes: [u8; 16],
}

impl Default for SimulatedQe {
    /// Intel's TDX QE as real quotes show it (ATTRIBUTES with MODE64BIT and the XFRM
    /// bits set, which the pinned identity masks out).
    fn default() -> Self {
        let mut attributes = [0; 16];
        attributes[0] = 0x15;
        attributes[8] = 0xe7;
        SimulatedQe {
            mr_signer: INTEL_TDX_QE.mr_signer,
            isv_prod_id: INTEL_TDX_QE.isv_prod_id,
            misc_select: INTEL_TDX_QE.misc_select,
            attributes,
        }
    }
}

impl Default for TdxQuoteSpec {
    fn default() -> Self {
        TdxQuoteSpec {
            version: 4,
            qe_svn: 8,
            qe: SimulatedQe::default(),
            pce_svn: 13,
            tee_tcb_svn: [3, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            mr_seam: [0x5e; 48],
            td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
            xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
            mr_td: [0x7d; 48],
            mr_config_id: [0; 48],
            rtmrs: [[0; 48]; 4],
            report_data: [0; 64],
        }
    }
}

const FILES: [&str; 3] = ["tdx-root.p8", "tdx-pck-ca.p8", "tdx-pck.p8"];
const ROOT_CN: &str = "Simulated SGX Root CA";
const PCK_CA_CN: &str = "Simulated SGX PCK Platform CA";

/// How long simulated collateral is current, as Intel's: 30 days.
const COLLATERAL_LIFETIME: i64 = 30 * 24 * 3600;

/// What Intel's PCS serves for the simulated platform (docs/attestation.md §6): the TCB
/// info and TDX QE identity (the exact JSON text signed, and the raw r‖s signature in hex),
/// their issuer chain, the PCK CRL with its issuer chain, and the root CA's CRL.
#[derive(Debug, Clone)]
pub struct SimulatedCollateral {
    /// The `tcbInfo` JSON text, as signed.
    pub tcb_info: String,
    /// Its signature, hex of r‖s.
    pub tcb_info_signature: String,
    /// The `enclaveIdentity` JSON text, as signed.
    pub qe_identity: String,
    /// Its signature, hex of r‖s.
    pub qe_identity_signature: String,
    /// The TCB signing certificate and the root, PEM.
    pub signer_chain: String,
    /// The PCK CA's CRL (DER).
    pub pck_crl: Vec<u8>,
    /// The PCK CA and the root, PEM.
    pub pck_crl_chain: String,
    /// The root CA's CRL (DER).
    pub root_crl: Vec<u8>,
    /// The platform's FMSPC, upper-case hex as PCS is asked for it.
    pub fmspc: String,
}

/// A CRL as Intel's: v2, ECDSA P-256 with SHA-256, a CRL number (webpki requires an
/// extension), revoking nothing.
fn crl(
    issuer_cn: &str,
    key: &EcdsaKeyPair,
    this_update: i64,
    next_update: i64,
) -> Result<Vec<u8>, SimError> {
    let algorithm = der::seq(&[der::oid(oid::ECDSA_SHA256)]);
    let crl_number = der::extension(CRL_NUMBER, false, &der::uint_u64(1));
    let tbs = der::seq(&[
        der::uint_u64(1),
        algorithm.clone(),
        intel_style_name(issuer_cn),
        der::time(this_update),
        der::time(next_update),
        der::explicit(0, &der::seq(&[crl_number])),
    ]);
    sign_tbs(tbs, algorithm, key)
}

/// The CRL number extension.
const CRL_NUMBER: &str = "2.5.29.20";

/// Signs `text` as Intel signs collateral JSON: ECDSA P-256 with SHA-256, raw r‖s in hex.
fn sign_json(key: &EcdsaKeyPair, text: &str) -> Result<String, SimError> {
    key.sign(&SystemRandom::new(), text.as_bytes())
        .map(|signature| hex::encode(signature.as_ref()))
        .map_err(|_| SimError::Crypto("ECDSA signing failed"))
}

impl SimulatedIntel {
    /// Creates a new root, PCK CA and PCK for `platform`.
    pub fn generate(platform: SimulatedPlatform) -> Result<Self, SimError> {
        let keys = [generate_p256()?, generate_p256()?, generate_p256()?];
        Self::certify(&keys, platform)
    }

    fn certify(
        keys: &[Zeroizing<Vec<u8>>; 3],
        platform: SimulatedPlatform,
    ) -> Result<Self, SimError> {
        let root_key = load_p256(&keys[0], &ECDSA_P256_SHA256_ASN1_SIGNING, FILES[0])?;
        let ca_key = load_p256(&keys[1], &ECDSA_P256_SHA256_ASN1_SIGNING, FILES[1])?;
        let pck_key = load_p256(&keys[2], &ECDSA_P256_SHA256_FIXED_SIGNING, FILES[2])?;
        let ca = || {
            der::extension(
                oid::BASIC_CONSTRAINTS,
                true,
                &der::seq(&[der::boolean(true)]),
            )
        };
        let (root_cn, ca_cn) = (ROOT_CN, PCK_CA_CN);
        let root_der = issue(
            1,
            root_cn,
            root_cn,
            &spki(&root_key)?,
            vec![ca()],
            &root_key,
        )?;
        let pck_ca_der = issue(2, root_cn, ca_cn, &spki(&ca_key)?, vec![ca()], &root_key)?;
        let pck_der = issue(
            3,
            ca_cn,
            "Simulated SGX PCK Certificate",
            &spki(&pck_key)?,
            vec![sgx_extension(
                platform.fmspc,
                platform.piid,
                platform.pce_svn,
            )],
            &ca_key,
        )?;
        Ok(SimulatedIntel {
            root_der,
            pck_ca_der,
            pck_key,
            pck_der,
            root_key,
            ca_key,
            platform,
        })
    }

    /// Creates the keys in `store` if they are not there, then loads them.
    pub fn open(store: &KeyStore, platform: SimulatedPlatform) -> Result<Self, SimError> {
        if !FILES.iter().all(|f| store.contains(f)) {
            for file in FILES {
                store.write_secret(file, &generate_p256()?)?;
            }
        }
        let read = |i: usize| store.read_secret(FILES[i]);
        Self::certify(&[read(0)?, read(1)?, read(2)?], platform)
    }

    /// The collateral PCS serves for this platform, current from an hour before `now` for
    /// 30 days: one TCB level that every simulated quote meets (status UpToDate) and the
    /// TDX QE identity the quotes' QE reports carry, signed by a fresh TCB signing
    /// certificate under the root.
    pub fn collateral(&self, now: i64) -> Result<SimulatedCollateral, SimError> {
        let (issued, next) = (now - 3600, now - 3600 + COLLATERAL_LIFETIME);
        let signer_pkcs8 = generate_p256()?;
        let signer = load_p256(
            &signer_pkcs8,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            "TCB signing key",
        )?;
        // Not a CA: digitalSignature only, as Intel's TCB signing certificate.
        let key_usage = der::extension(oid::KEY_USAGE, true, &der::bit_string(&[0x80]));
        let signer_der = issue(
            4,
            ROOT_CN,
            "Simulated SGX TCB Signing",
            &spki(&signer)?,
            vec![key_usage],
            &self.root_key,
        )?;
        let date = contrast_attestation::time::format_rfc3339;
        let zeros = |n: usize| vec![serde_json::json!({ "svn": 0 }); n];
        let tcb_info = serde_json::json!({
            "id": "TDX",
            "version": 3,
            "issueDate": date(issued),
            "nextUpdate": date(next),
            "fmspc": hex::encode_upper(self.platform.fmspc),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": {
                "mrsigner": hex::encode_upper([0u8; 48]),
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            },
            "tdxModuleIdentities": [],
            "tcbLevels": [{
                "tcb": {
                    "sgxtcbcomponents": zeros(16),
                    "pcesvn": 0,
                    "tdxtcbcomponents": zeros(16),
                },
                "tcbDate": date(issued),
                "tcbStatus": "UpToDate",
            }],
        })
        .to_string();
        let qe = INTEL_TDX_QE;
        let qe_identity = serde_json::json!({
            "id": "TD_QE",
            "version": 2,
            "issueDate": date(issued),
            "nextUpdate": date(next),
            "tcbEvaluationDataNumber": 17,
            "miscselect": hex::encode_upper(qe.misc_select.to_le_bytes()),
            "miscselectMask": hex::encode_upper(qe.misc_select_mask.to_le_bytes()),
            "attributes": hex::encode_upper(qe.attributes),
            "attributesMask": hex::encode_upper(qe.attributes_mask),
            "mrsigner": hex::encode_upper(qe.mr_signer),
            "isvprodid": qe.isv_prod_id,
            "tcbLevels": [{
                "tcb": { "isvsvn": 0 },
                "tcbDate": date(issued),
                "tcbStatus": "UpToDate",
            }],
        })
        .to_string();
        Ok(SimulatedCollateral {
            tcb_info_signature: sign_json(&signer, &tcb_info)?,
            qe_identity_signature: sign_json(&signer, &qe_identity)?,
            tcb_info,
            qe_identity,
            signer_chain: format!("{}{}", pem(&signer_der), pem(&self.root_der)),
            pck_crl: crl(PCK_CA_CN, &self.ca_key, issued, next)?,
            pck_crl_chain: format!("{}{}", pem(&self.pck_ca_der), pem(&self.root_der)),
            root_crl: crl(ROOT_CN, &self.root_key, issued, next)?,
            fmspc: hex::encode_upper(self.platform.fmspc),
        })
    }

    /// The trust anchor verifiers use for this simulator's quotes.
    pub fn trust_anchor(&self) -> TdxTrustAnchor {
        TdxTrustAnchor::simulated(self.root_der.clone())
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The TDREPORT the TD's TDX module would return for `spec` (`TDG.MR.REPORT`): the
    /// measurements and REPORTDATA of the quote `spec` describes, MAC zero (only the
    /// platform could check it).
    pub fn td_report(&self, spec: &TdxQuoteSpec) -> [u8; TDREPORT_LEN] {
        LocalTdReport {
            report_data: spec.report_data,
            td_attributes: spec.td_attributes,
            xfam: spec.xfam,
            mr_td: spec.mr_td,
            mr_config_id: spec.mr_config_id,
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmrs: spec.rtmrs,
        }
        .to_bytes()
    }

    /// Builds and signs a quote as the quoting enclave would.
    pub fn quote(&self, spec: &TdxQuoteSpec) -> Result<Vec<u8>, SimError> {
        let rng = SystemRandom::new();
        let attestation_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &generate_p256()?)
                .map_err(|_| SimError::Crypto("ECDSA key generation failed"))?;
        let ak_point = attestation_key.public_key().as_ref();
        let ak_raw = &ak_point[1..]; // drop the 0x04 of the uncompressed point

        let mut q = Vec::with_capacity(5000);
        q.extend_from_slice(&spec.version.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes()); // ECDSA P-256
        q.extend_from_slice(&0x81u32.to_le_bytes()); // TDX
        q.extend_from_slice(&0u16.to_le_bytes()); // header QE SVN: Intel's QE writes 0
        q.extend_from_slice(&spec.pce_svn.to_le_bytes());
        q.extend_from_slice(&INTEL_QE_VENDOR_ID);
        q.extend_from_slice(&[0; 20]);
        let td15 = spec.version == 5;
        if td15 {
            q.extend_from_slice(&3u16.to_le_bytes());
            q.extend_from_slice(&648u32.to_le_bytes());
        }
        q.extend_from_slice(&spec.tee_tcb_svn);
        q.extend_from_slice(&spec.mr_seam);
        q.extend_from_slice(&[0; 48]); // MRSIGNERSEAM: Intel's module
        q.extend_from_slice(&[0; 8]); // SEAMATTRIBUTES
        q.extend_from_slice(&spec.td_attributes);
        q.extend_from_slice(&spec.xfam);
        q.extend_from_slice(&spec.mr_td);
        q.extend_from_slice(&spec.mr_config_id);
        q.extend_from_slice(&[0; 48]); // MROWNER
        q.extend_from_slice(&[0; 48]); // MROWNERCONFIG
        for rtmr in &spec.rtmrs {
            q.extend_from_slice(rtmr);
        }
        q.extend_from_slice(&spec.report_data);
        if td15 {
            q.extend_from_slice(&spec.tee_tcb_svn); // TEE_TCB_SVN2
            q.extend_from_slice(&[0; 48]); // MRSERVICETD
        }
        let quote_signature = attestation_key
            .sign(&rng, &q)
            .map_err(|_| SimError::Crypto("ECDSA signing failed"))?;

        // The QE report binds the attestation key: REPORTDATA = SHA-256(AK ‖ auth) ‖ 0.
        let auth_data = [0x5a; 32];
        let mut qe_report = [0u8; 384];
        qe_report[16..20].copy_from_slice(&spec.qe.misc_select.to_le_bytes());
        qe_report[48..64].copy_from_slice(&spec.qe.attributes);
        qe_report[128..160].copy_from_slice(&spec.qe.mr_signer);
        qe_report[256..258].copy_from_slice(&spec.qe.isv_prod_id.to_le_bytes());
        qe_report[258..260].copy_from_slice(&spec.qe_svn.to_le_bytes()); // ISVSVN
        let mut bound = ak_raw.to_vec();
        bound.extend_from_slice(&auth_data);
        qe_report[320..352].copy_from_slice(digest(&SHA256, &bound).as_ref());
        let qe_signature = self
            .pck_key
            .sign(&rng, &qe_report)
            .map_err(|_| SimError::Crypto("ECDSA signing failed"))?;

        let chain = [
            pem(&self.pck_der),
            pem(&self.pck_ca_der),
            pem(&self.root_der),
        ]
        .concat();
        let mut certification = Vec::new();
        certification.extend_from_slice(&qe_report);
        certification.extend_from_slice(qe_signature.as_ref());
        certification.extend_from_slice(&(auth_data.len() as u16).to_le_bytes());
        certification.extend_from_slice(&auth_data);
        certification.extend_from_slice(&5u16.to_le_bytes());
        certification.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        certification.extend_from_slice(chain.as_bytes());

        let mut signature_data = Vec::new();
        signature_data.extend_from_slice(quote_signature.as_ref());
        signature_data.extend_from_slice(ak_raw);
        signature_data.extend_from_slice(&6u16.to_le_bytes());
        signature_data.extend_from_slice(&(certification.len() as u32).to_le_bytes());
        signature_data.extend_from_slice(&certification);

        q.extend_from_slice(&(signature_data.len() as u32).to_le_bytes());
        q.extend_from_slice(&signature_data);
        Ok(q)
    }
}
