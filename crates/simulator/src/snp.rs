//! A simulated AMD: an ARK → ASK → VCEK chain in AMD's certificate profile (RSASSA-PSS
//! with SHA-384, the TCB and hardware-ID extensions) under a locally generated root, and
//! attestation reports in the real binary format signed by the VCEK.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PSS_SHA384,
};
use contrast_attestation::snp::{REPORT_SIZE, SIGNED_LEN, SnpProduct, SnpTrustAnchor, TcbVersion};

use crate::SimError;
use crate::store::KeyStore;
use contrast_attestation::{der, oid};

/// Validity of the simulated roots: 2020 to 2099, so tests need no clock games.
const NOT_BEFORE: i64 = 1_577_836_800;
const NOT_AFTER: i64 = 4_102_444_800;

/// RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt, as AMD signs.
fn rsa_pss_sha384_algorithm() -> Vec<u8> {
    let sha384 = der::seq(&[der::oid(oid::SHA384)]);
    der::seq(&[
        der::oid(oid::RSASSA_PSS),
        der::seq(&[
            der::explicit(0, &sha384),
            der::explicit(1, &der::seq(&[der::oid(oid::MGF1), sha384.clone()])),
            der::explicit(2, &der::uint_u64(48)),
        ]),
    ])
}

fn amd_style_name(common_name: &str) -> Vec<u8> {
    der::name(&[
        (oid::OU, "Engineering"),
        (oid::O, "Contrast TEE Simulator (not AMD)"),
        (oid::CN, common_name),
    ])
}

/// Signs a TBSCertificate with an RSA key, RSASSA-PSS SHA-384.
fn sign_rsa_pss(key: &RsaKeyPair, tbs: &[u8]) -> Result<Vec<u8>, SimError> {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PSS_SHA384, &SystemRandom::new(), tbs, &mut signature)
        .map_err(|_| SimError::Crypto("RSA-PSS signing failed"))?;
    Ok(signature)
}

struct CertSpec<'a> {
    serial: &'a [u8],
    issuer: &'a str,
    subject: &'a str,
    spki_der: &'a [u8],
    extensions: Vec<Vec<u8>>,
}

fn issue_certificate(spec: CertSpec<'_>, issuer_key: &RsaKeyPair) -> Result<Vec<u8>, SimError> {
    let algorithm = rsa_pss_sha384_algorithm();
    let tbs = der::seq(&[
        der::explicit(0, &der::uint_u64(2)),
        der::uint(spec.serial),
        algorithm.clone(),
        amd_style_name(spec.issuer),
        der::seq(&[der::time(NOT_BEFORE), der::time(NOT_AFTER)]),
        amd_style_name(spec.subject),
        spec.spki_der.to_vec(),
        der::explicit(3, &der::seq(&spec.extensions)),
    ]);
    let signature = sign_rsa_pss(issuer_key, &tbs)?;
    Ok(der::seq(&[tbs, algorithm, der::bit_string(&signature)]))
}

fn ca_extensions() -> Vec<Vec<u8>> {
    vec![
        der::extension(
            oid::BASIC_CONSTRAINTS,
            true,
            &der::seq(&[der::boolean(true)]),
        ),
        // keyCertSign and cRLSign.
        der::extension(oid::KEY_USAGE, true, &der::tlv(0x03, &[0x01, 0x06])),
    ]
}

/// One simulated product line: its ARK and ASK with their keys.
struct ProductRoot {
    product: SnpProduct,
    ark_key: RsaKeyPair,
    ark_der: Vec<u8>,
    ask_key: RsaKeyPair,
    ask_der: Vec<u8>,
}

/// A VCEK: its key and its certificate.
type Vcek = std::sync::Arc<(EcdsaKeyPair, Vec<u8>)>;

/// Which VCEK a report is signed with: like hardware, one per chip and TCB.
type VcekId = (SnpProduct, [u8; 64], [u8; 8]);

/// At most this many VCEKs are kept (a chip has one per TCB; tests use a handful).
const MAX_VCEKS: usize = 64;

/// The VCEK key of a chip at a TCB, derived as AMD derives it from the chip's secrets:
/// here from the product line's ASK key (HMAC-SHA-384 over the chip ID and TCB, then C2SP
/// det-keygen), so every process that loads the same roots signs with the same VCEK.
fn vcek_key(
    root: &ProductRoot,
    chip_id: &[u8; 64],
    tcb: TcbVersion,
) -> Result<EcdsaKeyPair, SimError> {
    let ask = root
        .ask_key
        .as_der()
        .map_err(|_| SimError::Crypto("RSA private key encoding failed"))?;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA384, ask.as_ref());
    let mut context = aws_lc_rs::hmac::Context::with_key(&key);
    context.update(b"contrast simulated VCEK\0");
    context.update(root.product.name().as_bytes());
    context.update(&chip_id[..root.product.hw_id_len()]);
    context.update(&tcb.to_bytes(root.product));
    let seed = zeroize::Zeroizing::new(context.sign().as_ref().to_vec());
    let secret = contrast_seedengine::det_keygen::p384_from_seed(&seed)
        .map_err(|_| SimError::Crypto("VCEK key derivation failed"))?;
    let pkcs8 = contrast_seedengine::keys::p384_pkcs8_der(&secret)
        .map_err(|_| SimError::Crypto("VCEK key encoding failed"))?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8)
        .map_err(|_| SimError::Crypto("VCEK key import failed"))
}

/// The simulated AMD for the product lines it was created with.
pub struct SimulatedAmd {
    roots: Vec<ProductRoot>,
    /// VCEKs already issued, so a chip signs every report with the same key as real
    /// hardware does (and verifiers' chain caches work as they would in production).
    vceks: std::sync::Mutex<std::collections::HashMap<VcekId, Vcek>>,
    /// Each product line's current CRL and its next update, signed once per window (an
    /// RSA-4096 signature is too slow to make per report).
    crls: std::sync::Mutex<std::collections::HashMap<SnpProduct, (Vec<u8>, i64)>>,
}

/// How long a simulated CRL is current, as AMD's: a week.
const CRL_LIFETIME: i64 = 7 * 24 * 3600;

impl std::fmt::Debug for SimulatedAmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let products: Vec<_> = self.roots.iter().map(|r| r.product).collect();
        f.debug_struct("SimulatedAmd")
            .field("products", &products)
            .finish()
    }
}

/// What a simulated report says.
#[derive(Debug, Clone)]
pub struct SnpReportSpec {
    /// Product line (selects the root and the TCB layout).
    pub product: SnpProduct,
    /// Report version: 2, 3 or 5.
    pub version: u32,
    /// Guest policy bits (bit 17 must be set).
    pub policy: u64,
    /// Launch digest.
    pub measurement: [u8; 48],
    /// HOST_DATA (Contrast: the policy hash).
    pub host_data: [u8; 32],
    /// REPORT_DATA (aTLS: SHA-512 of key and nonce).
    pub report_data: [u8; 64],
    /// The TCB for current, committed, launch and reported TCB.
    pub tcb: TcbVersion,
    /// CHIP_ID (on Turin only the first 8 bytes are used).
    pub chip_id: [u8; 64],
    /// VMPL of the requester.
    pub vmpl: u32,
    /// PLATFORM_INFO bits.
    pub platform_info: u64,
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST; a non-zero one also sets KEY_INFO.AUTHOR_KEY_EN.
    pub author_key_digest: [u8; 48],
    /// Launch and current mitigation vectors (version 5).
    pub mitigation_vector: u64,
}

impl SnpReportSpec {
    /// A bare-metal Milan guest as Contrast launches it: policy 0x30000 (SMT), version 5,
    /// TCB bl=3 tee=0 snp=8 ucode=115, SMT enabled.
    pub fn new(product: SnpProduct) -> Self {
        SnpReportSpec {
            product,
            version: 5,
            policy: 0x30000,
            measurement: [0; 48],
            host_data: [0; 32],
            report_data: [0; 64],
            tcb: TcbVersion {
                fmc: (product == SnpProduct::Turin).then_some(1),
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
            },
            chip_id: [0x5a; 64],
            vmpl: 0,
            platform_info: 1,
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            mitigation_vector: 0,
        }
    }
}

/// A signed report, the VCEK that signed it and its product line's certificates and CRL,
/// as a host's certificate table carries them.
#[derive(Debug, Clone)]
pub struct SimulatedSnpReport {
    /// The 1184-byte report.
    pub report: Vec<u8>,
    /// The VCEK certificate (DER).
    pub vcek_der: Vec<u8>,
    /// The ASK certificate (DER).
    pub ask_der: Vec<u8>,
    /// The ARK certificate (DER).
    pub ark_der: Vec<u8>,
    /// The product line's current CRL, revoking nothing (DER).
    pub crl_der: Vec<u8>,
}

fn cpuid(product: SnpProduct) -> (u8, u8) {
    match product {
        SnpProduct::Milan => (0x19, 0x01),
        SnpProduct::Genoa => (0x19, 0x11),
        SnpProduct::Turin => (0x1a, 0x02),
    }
}

impl SimulatedAmd {
    /// Creates new roots (RSA-4096 ARK and ASK, as AMD's) for `products`.
    pub fn generate(products: &[SnpProduct]) -> Result<Self, SimError> {
        let mut roots = Vec::new();
        for &product in products {
            let ark_key = RsaKeyPair::generate(KeySize::Rsa4096)
                .map_err(|_| SimError::Crypto("RSA key generation failed"))?;
            let ask_key = RsaKeyPair::generate(KeySize::Rsa4096)
                .map_err(|_| SimError::Crypto("RSA key generation failed"))?;
            roots.push(Self::certify(product, ark_key, ask_key)?);
        }
        Ok(SimulatedAmd {
            roots,
            vceks: Default::default(),
            crls: Default::default(),
        })
    }

    fn certify(
        product: SnpProduct,
        ark_key: RsaKeyPair,
        ask_key: RsaKeyPair,
    ) -> Result<ProductRoot, SimError> {
        let spki = |key: &RsaKeyPair| -> Result<Vec<u8>, SimError> {
            Ok(key
                .public_key()
                .as_der()
                .map_err(|_| SimError::Crypto("RSA public key encoding failed"))?
                .as_ref()
                .to_vec())
        };
        let ark_cn = format!("ARK-{product}");
        let ark_der = issue_certificate(
            CertSpec {
                serial: &[1],
                issuer: &ark_cn,
                subject: &ark_cn,
                spki_der: &spki(&ark_key)?,
                extensions: ca_extensions(),
            },
            &ark_key,
        )?;
        let ask_der = issue_certificate(
            CertSpec {
                serial: &[2],
                issuer: &ark_cn,
                subject: &format!("SEV-{product}"),
                spki_der: &spki(&ask_key)?,
                extensions: ca_extensions(),
            },
            &ark_key,
        )?;
        Ok(ProductRoot {
            product,
            ark_key,
            ark_der,
            ask_key,
            ask_der,
        })
    }

    /// Saves the roots' keys in `store` (private keys as PKCS#8, mode 0600).
    pub fn save(&self, store: &KeyStore) -> Result<(), SimError> {
        for root in &self.roots {
            let name = root.product.name().to_ascii_lowercase();
            for (suffix, key) in [("ark", &root.ark_key), ("ask", &root.ask_key)] {
                let pkcs8 = key
                    .as_der()
                    .map_err(|_| SimError::Crypto("RSA private key encoding failed"))?;
                store.write_secret(&format!("snp-{name}-{suffix}.p8"), pkcs8.as_ref())?;
            }
        }
        Ok(())
    }

    /// Loads roots saved by [`SimulatedAmd::save`]; certificates are re-issued from the
    /// keys (deterministic content, fresh signatures).
    pub fn load(store: &KeyStore, products: &[SnpProduct]) -> Result<Self, SimError> {
        let mut roots = Vec::new();
        for &product in products {
            let name = product.name().to_ascii_lowercase();
            let load = |suffix: &str| -> Result<RsaKeyPair, SimError> {
                let file = format!("snp-{name}-{suffix}.p8");
                let pkcs8 = store.read_secret(&file)?;
                RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| SimError::KeyFile {
                    file,
                    reason: "not an RSA PKCS#8 key".into(),
                })
            };
            roots.push(Self::certify(product, load("ark")?, load("ask")?)?);
        }
        Ok(SimulatedAmd {
            roots,
            vceks: Default::default(),
            crls: Default::default(),
        })
    }

    /// Each product line's ARK and ASK certificates (DER).
    pub fn roots_der(&self) -> Vec<(SnpProduct, Vec<u8>, Vec<u8>)> {
        self.roots
            .iter()
            .map(|r| (r.product, r.ark_der.clone(), r.ask_der.clone()))
            .collect()
    }

    /// The trust anchor verifiers use for this simulator's evidence.
    pub fn trust_anchor(&self) -> SnpTrustAnchor {
        SnpTrustAnchor::simulated(
            self.roots
                .iter()
                .map(|r| (r.product, r.ark_der.clone(), Some(r.ask_der.clone())))
                .collect(),
        )
    }

    fn root(&self, product: SnpProduct) -> Result<&ProductRoot, SimError> {
        self.roots
            .iter()
            .find(|r| r.product == product)
            .ok_or(SimError::NoRoot(product.name()))
    }

    /// Issues a VCEK for a chip at a TCB, in AMD's profile.
    fn issue_vcek(
        &self,
        product: SnpProduct,
        chip_id: &[u8; 64],
        tcb: TcbVersion,
    ) -> Result<(EcdsaKeyPair, Vec<u8>), SimError> {
        let root = self.root(product)?;
        let key = vcek_key(root, chip_id, tcb)?;
        let spki = key
            .public_key()
            .as_der()
            .map_err(|_| SimError::Crypto("EC public key encoding failed"))?;
        let spl = |id: &str, value: u8| der::extension(id, false, &der::uint_u64(value.into()));
        let mut extensions = vec![
            der::extension(oid::AMD_STRUCT_VERSION, false, &der::uint_u64(0)),
            der::extension(
                oid::AMD_PRODUCT_NAME,
                false,
                &der::ia5_string(&format!("{product}-B0")),
            ),
            spl(oid::AMD_BL_SPL, tcb.bootloader),
            spl(oid::AMD_TEE_SPL, tcb.tee),
        ];
        extensions.extend(oid::AMD_RESERVED_SPLS.map(|id| spl(id, 0)));
        extensions.push(spl(oid::AMD_SNP_SPL, tcb.snp));
        extensions.push(spl(oid::AMD_UCODE_SPL, tcb.microcode));
        if let Some(fmc) = tcb.fmc {
            extensions.push(spl(oid::AMD_FMC_SPL, fmc));
        }
        // The hardware ID is the raw bytes, not wrapped in an OCTET STRING, as AMD does.
        extensions.push(der::extension(
            oid::AMD_HW_ID,
            false,
            &chip_id[..product.hw_id_len()],
        ));
        let cert = issue_certificate(
            CertSpec {
                serial: &[0],
                issuer: &format!("SEV-{product}"),
                subject: "SEV-VCEK",
                spki_der: spki.as_ref(),
                extensions,
            },
            &root.ask_key,
        )?;
        Ok((key, cert))
    }

    /// The VCEK of a chip at a TCB: issued on first use, then reused.
    fn vcek(
        &self,
        product: SnpProduct,
        chip_id: &[u8; 64],
        tcb: TcbVersion,
    ) -> Result<Vcek, SimError> {
        let id = (product, *chip_id, tcb.to_bytes(product));
        let mut vceks = self
            .vceks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(vcek) = vceks.get(&id) {
            return Ok(vcek.clone());
        }
        let vcek = std::sync::Arc::new(self.issue_vcek(product, chip_id, tcb)?);
        if vceks.len() >= MAX_VCEKS {
            vceks.clear();
        }
        vceks.insert(id, vcek.clone());
        Ok(vcek)
    }

    /// The VCEK certificate (DER) of a chip at a TCB, as AMD's KDS serves it; the same key
    /// in every process that loaded these roots.
    pub fn vcek_der(
        &self,
        product: SnpProduct,
        chip_id: &[u8; 64],
        tcb: TcbVersion,
    ) -> Result<Vec<u8>, SimError> {
        Ok(self.vcek(product, chip_id, tcb)?.1.clone())
    }

    /// Builds and signs a report as the hardware would.
    pub fn report(&self, spec: &SnpReportSpec) -> Result<SimulatedSnpReport, SimError> {
        let root = self.root(spec.product)?;
        let mut chip_id = spec.chip_id;
        if spec.product == SnpProduct::Turin {
            chip_id[8..].fill(0);
        }
        let vcek = self.vcek(spec.product, &chip_id, spec.tcb)?;
        let (vcek_key, vcek_der) = (&vcek.0, vcek.1.clone());
        let tcb = spec.tcb.to_bytes(spec.product);

        let mut r = vec![0u8; REPORT_SIZE];
        let mut put =
            |offset: usize, bytes: &[u8]| r[offset..offset + bytes.len()].copy_from_slice(bytes);
        put(0x00, &spec.version.to_le_bytes());
        put(0x04, &1u32.to_le_bytes()); // guest SVN
        put(0x08, &spec.policy.to_le_bytes());
        put(0x30, &spec.vmpl.to_le_bytes());
        put(0x34, &1u32.to_le_bytes()); // ECDSA P-384 with SHA-384
        put(0x38, &tcb);
        put(0x40, &spec.platform_info.to_le_bytes());
        // Signed by the VCEK, chip ID not masked, AUTHOR_KEY_EN with an author key.
        let author_key_en = u32::from(spec.author_key_digest != [0; 48]);
        put(0x48, &author_key_en.to_le_bytes());
        put(0x50, &spec.report_data);
        put(0x90, &spec.measurement);
        put(0xC0, &spec.host_data);
        put(0xE0, &spec.id_key_digest);
        put(0x110, &spec.author_key_digest);
        put(0x140, &[0x11; 32]); // report ID
        put(0x180, &tcb);
        if spec.version >= 3 {
            let (family, model) = cpuid(spec.product);
            put(0x188, &[family, model, 0]);
        }
        put(0x1A0, &chip_id);
        put(0x1E0, &tcb);
        put(0x1E8, &[1, 55, 1]); // current firmware build, minor, major
        put(0x1EC, &[1, 55, 1]);
        put(0x1F0, &tcb);
        if spec.version >= 5 {
            put(0x1F8, &spec.mitigation_vector.to_le_bytes());
            put(0x200, &spec.mitigation_vector.to_le_bytes());
        }
        let signature = vcek_key
            .sign(&SystemRandom::new(), &r[..SIGNED_LEN])
            .map_err(|_| SimError::Crypto("ECDSA signing failed"))?;
        // r ‖ s big-endian → two 72-byte little-endian fields.
        let (sig_r, sig_s) = signature.as_ref().split_at(48);
        for (offset, component) in [(0x2A0, sig_r), (0x2E8, sig_s)] {
            for (i, byte) in component.iter().rev().enumerate() {
                r[offset + i] = *byte;
            }
        }
        Ok(SimulatedSnpReport {
            report: r,
            vcek_der,
            ask_der: root.ask_der.clone(),
            ark_der: root.ark_der.clone(),
            crl_der: self.current_crl(spec.product, unix_now())?,
        })
    }

    /// `product`'s CRL current at `now`, revoking nothing: issued an hour before `now` for
    /// a week, and issued anew a day before it runs out.
    pub fn current_crl(&self, product: SnpProduct, now: i64) -> Result<Vec<u8>, SimError> {
        let mut crls = self
            .crls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((crl, next_update)) = crls.get(&product)
            && now + 24 * 3600 < *next_update
            && now >= next_update - CRL_LIFETIME
        {
            return Ok(crl.clone());
        }
        let this_update = now - 3600;
        let next_update = this_update + CRL_LIFETIME;
        let crl = self.crl(product, &[], this_update, next_update)?;
        crls.insert(product, (crl.clone(), next_update));
        Ok(crl)
    }

    /// A CRL issued by the product's ARK, revoking the given serial numbers, current from
    /// `this_update` to `next_update` (Unix time).
    pub fn crl(
        &self,
        product: SnpProduct,
        revoked_serials: &[&[u8]],
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>, SimError> {
        let root = self.root(product)?;
        let algorithm = rsa_pss_sha384_algorithm();
        let mut tbs = vec![
            der::uint_u64(1),
            algorithm.clone(),
            amd_style_name(&format!("ARK-{product}")),
            der::time(this_update),
            der::time(next_update),
        ];
        if !revoked_serials.is_empty() {
            tbs.push(der::seq(
                &revoked_serials
                    .iter()
                    .map(|serial| der::seq(&[der::uint(serial), der::time(this_update)]))
                    .collect::<Vec<_>>(),
            ));
        }
        let tbs = der::seq(&tbs);
        let signature = sign_rsa_pss(&root.ark_key, &tbs)?;
        Ok(der::seq(&[tbs, algorithm, der::bit_string(&signature)]))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
