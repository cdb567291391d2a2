//! The TDX attestation document: go-tdx-guest's `tdx.QuoteV4`.
//!
//! The quote is carried field by field, as go-tdx-guest's `QuoteToProto` splits it, and
//! rebuilt as its `QuoteToAbiBytes` does. Every byte of a version 4 quote has a field:
//! the 48-byte header, the 584-byte TD report 1.0 body, the signature data (signature,
//! attestation key, certification data of type 6 holding the QE report, its signature,
//! the QE authentication data and the PCK chain of type 5), and whatever follows the
//! signature data (`extra_bytes`, often zero padding). go-tdx-guest requires the
//! certification data to fill the signature data exactly, and the PCK chain the
//! certification data; so do we, in both directions.
//!
//! Header bytes 8..10 go into `pce_svn` and 10..12 into `qe_svn`: go-tdx-guest's names,
//! the reverse of Intel's layout (QE SVN first). Only the bytes' places matter for the
//! rebuilt quote, so we follow go-tdx-guest.
//!
//! Version 5 quotes have no place in a `tdx.QuoteV4` (go-tdx-guest's `QuoteToProto`
//! refuses them too) and are refused with [`DocumentError::QuoteVersion`]. Decoding does
//! not fall back to reading raw quote bytes: Contrast's verifiers unmarshal `tdx.QuoteV4`
//! only, so a raw quote in a certificate would fail with them, and a document must mean
//! the same to every verifier.

use prost::Message;

use super::proto::{
    CertificationData, Ecdsa256BitQuoteV4AuthData, EnclaveReport, Header, PckCertificateChainData,
    QeAuthData, QeReportCertificationData, QuoteV4, TdQuoteBody,
};
use super::{DocumentError, fits, fixed, protobuf_error};
use crate::tdx::{TEE_TYPE_TDX, TdxQuote};

const MESSAGE: &str = "tdx.QuoteV4";
const QUOTE_VERSION: u32 = 4;
const AK_TYPE_ECDSA_P256: u32 = 2;
const CERT_TYPE_QE_REPORT: u16 = 6;
const CERT_TYPE_PCK_CHAIN: u16 = 5;

/// A bounds-checked reader; the quote was parsed before, so a failure here means a layout
/// a `tdx.QuoteV4` cannot describe.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], DocumentError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| DocumentError::QuoteLayout(format!("the quote ends inside {what}")))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn vec(&mut self, len: usize, what: &str) -> Result<Vec<u8>, DocumentError> {
        self.take(len, what).map(<[u8]>::to_vec)
    }

    fn u16(&mut self, what: &str) -> Result<u32, DocumentError> {
        let bytes = self.take(2, what)?;
        Ok(u32::from(u16::from_le_bytes([bytes[0], bytes[1]])))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DocumentError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        out
    }
}

/// Checks that a size field equals the length of what follows it.
fn exact(declared: u32, actual: usize, what: &str) -> Result<(), DocumentError> {
    if usize::try_from(declared).ok() == Some(actual) {
        Ok(())
    } else {
        Err(DocumentError::QuoteLayout(format!(
            "its {what} size field says {declared} bytes but {actual} bytes follow; a tdx.QuoteV4 needs them equal"
        )))
    }
}

/// Puts a raw version 4 TDX quote into a `tdx.QuoteV4`, as Contrast's TDX issuer does.
pub fn encode_tdx(quote: &[u8]) -> Result<Vec<u8>, DocumentError> {
    let parsed = TdxQuote::parse(quote)?;
    if parsed.version != 4 {
        return Err(DocumentError::QuoteVersion(parsed.version));
    }
    let mut q = Reader::new(quote);
    let header = Header {
        version: q.u16("the header")?,
        attestation_key_type: q.u16("the header")?,
        tee_type: q.u32("the header")?,
        pce_svn: q.vec(2, "the header")?,
        qe_svn: q.vec(2, "the header")?,
        qe_vendor_id: q.vec(16, "the header")?,
        user_data: q.vec(20, "the header")?,
    };
    let body = TdQuoteBody {
        tee_tcb_svn: q.vec(16, "the body")?,
        mr_seam: q.vec(48, "the body")?,
        mr_signer_seam: q.vec(48, "the body")?,
        seam_attributes: q.vec(8, "the body")?,
        td_attributes: q.vec(8, "the body")?,
        xfam: q.vec(8, "the body")?,
        mr_td: q.vec(48, "the body")?,
        mr_config_id: q.vec(48, "the body")?,
        mr_owner: q.vec(48, "the body")?,
        mr_owner_config: q.vec(48, "the body")?,
        rtmrs: (0..4)
            .map(|_| q.vec(48, "the body"))
            .collect::<Result<_, _>>()?,
        report_data: q.vec(64, "the body")?,
    };
    let signed_data_size = q.u32("the signature data size")?;
    let signed = q.take(
        usize::try_from(signed_data_size).unwrap_or(usize::MAX),
        "the signature data",
    )?;
    let extra_bytes = q.rest().to_vec();

    let mut s = Reader::new(signed);
    let signature = s.vec(64, "the quote signature")?;
    let ecdsa_attestation_key = s.vec(64, "the attestation key")?;
    let certificate_data_type = s.u16("the certification data type")?;
    let certification_size = s.u32("the certification data size")?;
    let certification = s.rest();
    exact(
        certification_size,
        certification.len(),
        "certification data",
    )?;

    let mut c = Reader::new(certification);
    let qe_report = enclave_report_to_proto(c.take(384, "the QE report")?)?;
    let qe_report_signature = c.vec(64, "the QE report signature")?;
    let parsed_data_size = c.u16("the QE authentication data size")?;
    let auth_data = c.vec(
        usize::try_from(parsed_data_size).unwrap_or(usize::MAX),
        "the QE authentication data",
    )?;
    let pck_type = c.u16("the PCK certification data type")?;
    let pck_size = c.u32("the PCK certificate chain size")?;
    let pck_cert_chain = c.rest().to_vec();
    exact(pck_size, pck_cert_chain.len(), "PCK certificate chain")?;

    Ok(QuoteV4 {
        header: Some(header),
        td_quote_body: Some(body),
        signed_data_size,
        signed_data: Some(Ecdsa256BitQuoteV4AuthData {
            signature,
            ecdsa_attestation_key,
            certification_data: Some(CertificationData {
                certificate_data_type,
                size: certification_size,
                qe_report_certification_data: Some(QeReportCertificationData {
                    qe_report: Some(qe_report),
                    qe_report_signature,
                    qe_auth_data: Some(QeAuthData {
                        parsed_data_size,
                        data: auth_data,
                    }),
                    pck_certificate_chain_data: Some(PckCertificateChainData {
                        certificate_data_type: pck_type,
                        size: pck_size,
                        pck_cert_chain,
                    }),
                }),
            }),
        }),
        extra_bytes,
    }
    .encode_to_vec())
}

fn enclave_report_to_proto(raw: &[u8]) -> Result<EnclaveReport, DocumentError> {
    let mut r = Reader::new(raw);
    Ok(EnclaveReport {
        cpu_svn: r.vec(16, "the QE report")?,
        misc_select: r.u32("the QE report")?,
        reserved1: r.vec(28, "the QE report")?,
        attributes: r.vec(16, "the QE report")?,
        mr_enclave: r.vec(32, "the QE report")?,
        reserved2: r.vec(32, "the QE report")?,
        mr_signer: r.vec(32, "the QE report")?,
        reserved3: r.vec(96, "the QE report")?,
        isv_prod_id: r.u16("the QE report")?,
        isv_svn: r.u16("the QE report")?,
        reserved4: r.vec(60, "the QE report")?,
        report_data: r.vec(64, "the QE report")?,
    })
}

fn required<'a, T>(field: Option<&'a T>, name: &'static str) -> Result<&'a T, DocumentError> {
    field.ok_or(DocumentError::MissingField { field: name })
}

fn expect_value(
    actual: u32,
    expected: u32,
    field: &'static str,
    what: &'static str,
) -> Result<(), DocumentError> {
    if actual == expected {
        Ok(())
    } else {
        Err(DocumentError::FieldValue {
            field,
            actual: actual.to_string(),
            expected: what,
        })
    }
}

/// `value` as the little-endian u16 the quote holds.
fn le16(value: u32, field: &'static str) -> Result<[u8; 2], DocumentError> {
    fits(value, 16, field).map(|v| (v as u16).to_le_bytes())
}

/// Checks that a size field equals the length of what it describes.
fn size_matches(declared: u32, actual: usize, field: &'static str) -> Result<(), DocumentError> {
    if usize::try_from(declared).ok() == Some(actual) {
        Ok(())
    } else {
        Err(DocumentError::FieldValue {
            field,
            actual: format!("{declared} while {actual} bytes are carried"),
            expected: "the length of the data it describes",
        })
    }
}

const CERT_DATA: &str = "signed_data.certification_data";
const QE_CERT_DATA: &str = "signed_data.certification_data.qe_report_certification_data";
const QE_REPORT: &str = "signed_data.certification_data.qe_report_certification_data.qe_report";
const RTMR_NAMES: [&str; 4] = [
    "td_quote_body.rtmrs[0]",
    "td_quote_body.rtmrs[1]",
    "td_quote_body.rtmrs[2]",
    "td_quote_body.rtmrs[3]",
];

fn enclave_report_from_proto(r: &EnclaveReport) -> Result<Vec<u8>, DocumentError> {
    macro_rules! field {
        ($name:ident, $len:literal) => {
            fixed::<$len>(
                &r.$name,
                concat!(
                    "signed_data.certification_data.qe_report_certification_data.qe_report.",
                    stringify!($name)
                ),
            )?
        };
    }
    let mut out = Vec::with_capacity(384);
    out.extend(field!(cpu_svn, 16));
    out.extend(r.misc_select.to_le_bytes());
    out.extend(field!(reserved1, 28));
    out.extend(field!(attributes, 16));
    out.extend(field!(mr_enclave, 32));
    out.extend(field!(reserved2, 32));
    out.extend(field!(mr_signer, 32));
    out.extend(field!(reserved3, 96));
    out.extend(le16(
        r.isv_prod_id,
        "signed_data.certification_data.qe_report_certification_data.qe_report.isv_prod_id",
    )?);
    out.extend(le16(
        r.isv_svn,
        "signed_data.certification_data.qe_report_certification_data.qe_report.isv_svn",
    )?);
    out.extend(field!(reserved4, 60));
    out.extend(field!(report_data, 64));
    Ok(out)
}

/// The QE report certification data (certification data type 6), rebuilt.
fn qe_certification_from_proto(d: &QeReportCertificationData) -> Result<Vec<u8>, DocumentError> {
    let qe_report = required(d.qe_report.as_ref(), QE_REPORT)?;
    let auth = required(
        d.qe_auth_data.as_ref(),
        "signed_data.certification_data.qe_report_certification_data.qe_auth_data",
    )?;
    let pck = required(
        d.pck_certificate_chain_data.as_ref(),
        "signed_data.certification_data.qe_report_certification_data.pck_certificate_chain_data",
    )?;
    let mut out = enclave_report_from_proto(qe_report)?;
    out.extend(fixed::<64>(
        &d.qe_report_signature,
        "signed_data.certification_data.qe_report_certification_data.qe_report_signature",
    )?);
    const AUTH_SIZE: &str =
        "signed_data.certification_data.qe_report_certification_data.qe_auth_data.parsed_data_size";
    out.extend(le16(auth.parsed_data_size, AUTH_SIZE)?);
    size_matches(auth.parsed_data_size, auth.data.len(), AUTH_SIZE)?;
    out.extend(&auth.data);
    expect_value(
        pck.certificate_data_type,
        CERT_TYPE_PCK_CHAIN.into(),
        "signed_data.certification_data.qe_report_certification_data.pck_certificate_chain_data.certificate_data_type",
        "5 (PCK certificate chain)",
    )?;
    out.extend(CERT_TYPE_PCK_CHAIN.to_le_bytes());
    size_matches(
        pck.size,
        pck.pck_cert_chain.len(),
        "signed_data.certification_data.qe_report_certification_data.pck_certificate_chain_data.size",
    )?;
    out.extend(pck.size.to_le_bytes());
    out.extend(&pck.pck_cert_chain);
    Ok(out)
}

/// Reads a `tdx.QuoteV4` and rebuilds the raw quote from it. The quote is not verified
/// here; pass it to [`crate::tdx::verify_quote`], which checks the signatures over the
/// rebuilt bytes.
pub fn decode_tdx(document: &[u8]) -> Result<Vec<u8>, DocumentError> {
    let quote = QuoteV4::decode(document).map_err(|e| protobuf_error(MESSAGE, e))?;

    let header = required(quote.header.as_ref(), "header")?;
    expect_value(header.version, QUOTE_VERSION, "header.version", "4")?;
    expect_value(
        header.attestation_key_type,
        AK_TYPE_ECDSA_P256,
        "header.attestation_key_type",
        "2 (ECDSA P-256)",
    )?;
    expect_value(
        header.tee_type,
        TEE_TYPE_TDX,
        "header.tee_type",
        "129 (0x81, TDX)",
    )?;
    let mut out = Vec::with_capacity(document.len());
    out.extend(le16(header.version, "header.version")?);
    out.extend(le16(
        header.attestation_key_type,
        "header.attestation_key_type",
    )?);
    out.extend(header.tee_type.to_le_bytes());
    out.extend(fixed::<2>(&header.pce_svn, "header.pce_svn")?);
    out.extend(fixed::<2>(&header.qe_svn, "header.qe_svn")?);
    out.extend(fixed::<16>(&header.qe_vendor_id, "header.qe_vendor_id")?);
    out.extend(fixed::<20>(&header.user_data, "header.user_data")?);

    let body = required(quote.td_quote_body.as_ref(), "td_quote_body")?;
    macro_rules! body_field {
        ($name:ident, $len:literal) => {
            fixed::<$len>(&body.$name, concat!("td_quote_body.", stringify!($name)))?
        };
    }
    out.extend(body_field!(tee_tcb_svn, 16));
    out.extend(body_field!(mr_seam, 48));
    out.extend(body_field!(mr_signer_seam, 48));
    out.extend(body_field!(seam_attributes, 8));
    out.extend(body_field!(td_attributes, 8));
    out.extend(body_field!(xfam, 8));
    out.extend(body_field!(mr_td, 48));
    out.extend(body_field!(mr_config_id, 48));
    out.extend(body_field!(mr_owner, 48));
    out.extend(body_field!(mr_owner_config, 48));
    if body.rtmrs.len() != RTMR_NAMES.len() {
        return Err(DocumentError::FieldValue {
            field: "td_quote_body.rtmrs",
            actual: format!("{} entries", body.rtmrs.len()),
            expected: "4 entries (RTMR0 to RTMR3)",
        });
    }
    for (rtmr, name) in body.rtmrs.iter().zip(RTMR_NAMES) {
        out.extend(fixed::<48>(rtmr, name)?);
    }
    out.extend(body_field!(report_data, 64));

    let signed = required(quote.signed_data.as_ref(), "signed_data")?;
    let certification = required(signed.certification_data.as_ref(), CERT_DATA)?;
    expect_value(
        certification.certificate_data_type,
        CERT_TYPE_QE_REPORT.into(),
        "signed_data.certification_data.certificate_data_type",
        "6 (QE report certification data)",
    )?;
    let qe_certification = qe_certification_from_proto(required(
        certification.qe_report_certification_data.as_ref(),
        QE_CERT_DATA,
    )?)?;
    size_matches(
        certification.size,
        qe_certification.len(),
        "signed_data.certification_data.size",
    )?;
    let mut signed_bytes = Vec::with_capacity(134 + qe_certification.len());
    signed_bytes.extend(fixed::<64>(&signed.signature, "signed_data.signature")?);
    signed_bytes.extend(fixed::<64>(
        &signed.ecdsa_attestation_key,
        "signed_data.ecdsa_attestation_key",
    )?);
    signed_bytes.extend(CERT_TYPE_QE_REPORT.to_le_bytes());
    signed_bytes.extend(certification.size.to_le_bytes());
    signed_bytes.extend(qe_certification);
    size_matches(
        quote.signed_data_size,
        signed_bytes.len(),
        "signed_data_size",
    )?;

    out.extend(quote.signed_data_size.to_le_bytes());
    out.extend(signed_bytes);
    out.extend(&quote.extra_bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::wire::{int_field, len_field};

    const VENDOR: [u8; 16] = crate::tdx::INTEL_QE_VENDOR_ID;

    /// The QE report with a distinct value per field.
    fn qe_report() -> Vec<u8> {
        [
            vec![0x31; 16],
            7u32.to_le_bytes().to_vec(),
            vec![0x32; 28],
            vec![0x33; 16],
            vec![0x34; 32],
            vec![0x35; 32],
            vec![0x36; 32],
            vec![0x37; 96],
            1u16.to_le_bytes().to_vec(),
            9u16.to_le_bytes().to_vec(),
            vec![0x38; 60],
            vec![0x39; 64],
        ]
        .concat()
    }

    /// A version 4 quote with a distinct value per field and 7 bytes of padding.
    fn sample_quote() -> Vec<u8> {
        let certification = [
            qe_report(),
            vec![0x23; 64],
            32u16.to_le_bytes().to_vec(),
            vec![0x24; 32],
            5u16.to_le_bytes().to_vec(),
            100u32.to_le_bytes().to_vec(),
            vec![0x25; 100],
        ]
        .concat();
        let signed = [
            vec![0x21; 64],
            vec![0x22; 64],
            6u16.to_le_bytes().to_vec(),
            (certification.len() as u32).to_le_bytes().to_vec(),
            certification,
        ]
        .concat();
        let mut quote = vec![4, 0, 2, 0, 0x81, 0, 0, 0, 8, 0, 13, 0];
        quote.extend(VENDOR);
        quote.extend([0x0c; 20]);
        for (i, len) in [16, 48, 48, 8, 8, 8, 48, 48, 48, 48, 48, 48, 48, 48, 64]
            .into_iter()
            .enumerate()
        {
            quote.extend(vec![0x40 + i as u8; len]);
        }
        quote.extend((signed.len() as u32).to_le_bytes());
        quote.extend(signed);
        quote.extend([0; 7]);
        quote
    }

    #[test]
    fn encoding_matches_the_field_numbers_of_tdx_proto() {
        let header = [
            int_field(1, 4),
            int_field(2, 2),
            int_field(3, 0x81),
            len_field(4, &[13, 0]), // bytes 10..12, go-tdx-guest's qe_svn
            len_field(5, &[8, 0]),  // bytes 8..10, go-tdx-guest's pce_svn
            len_field(6, &VENDOR),
            len_field(7, &[0x0c; 20]),
        ]
        .concat();
        let mut body = Vec::new();
        for (i, (field, len)) in [
            (1, 16),
            (2, 48),
            (3, 48),
            (4, 8),
            (5, 8),
            (6, 8),
            (7, 48),
            (8, 48),
            (9, 48),
            (10, 48),
            (11, 48),
            (11, 48),
            (11, 48),
            (11, 48),
            (12, 64),
        ]
        .into_iter()
        .enumerate()
        {
            body.extend(len_field(field, &vec![0x40 + i as u8; len]));
        }
        let enclave = [
            len_field(1, &[0x31; 16]),
            int_field(2, 7),
            len_field(3, &[0x32; 28]),
            len_field(4, &[0x33; 16]),
            len_field(5, &[0x34; 32]),
            len_field(6, &[0x35; 32]),
            len_field(7, &[0x36; 32]),
            len_field(8, &[0x37; 96]),
            int_field(9, 1),
            int_field(10, 9),
            len_field(11, &[0x38; 60]),
            len_field(12, &[0x39; 64]),
        ]
        .concat();
        let qe_certification = [
            len_field(1, &enclave),
            len_field(2, &[0x23; 64]),
            len_field(3, &[int_field(1, 32), len_field(2, &[0x24; 32])].concat()),
            len_field(
                4,
                &[
                    int_field(1, 5),
                    int_field(2, 100),
                    len_field(3, &[0x25; 100]),
                ]
                .concat(),
            ),
        ]
        .concat();
        let certification_size = 384 + 64 + 2 + 32 + 6 + 100;
        let certification = [
            int_field(1, 6),
            int_field(2, certification_size),
            len_field(3, &qe_certification),
        ]
        .concat();
        let signed = [
            len_field(1, &[0x21; 64]),
            len_field(2, &[0x22; 64]),
            len_field(3, &certification),
        ]
        .concat();
        let expected = [
            len_field(1, &header),
            len_field(2, &body),
            int_field(3, 128 + 6 + certification_size),
            len_field(4, &signed),
            len_field(5, &[0; 7]),
        ]
        .concat();
        let document = encode_tdx(&sample_quote()).unwrap();
        assert_eq!(hex::encode(&document), hex::encode(&expected));
        assert_eq!(decode_tdx(&document).unwrap(), sample_quote());
    }

    #[test]
    fn a_quote_without_padding_has_no_extra_bytes() {
        let mut quote = sample_quote();
        quote.truncate(quote.len() - 7);
        let document = encode_tdx(&quote).unwrap();
        let decoded = QuoteV4::decode(document.as_slice()).unwrap();
        assert!(decoded.extra_bytes.is_empty());
        assert_eq!(decode_tdx(&document).unwrap(), quote);
    }

    #[test]
    fn slack_inside_the_signature_data_cannot_be_carried() {
        // The signature data claims 5 bytes more than the certification data fills.
        let mut quote = sample_quote();
        let size_at = 48 + 584;
        let size = u32::from_le_bytes(quote[size_at..size_at + 4].try_into().unwrap());
        quote[size_at..size_at + 4].copy_from_slice(&(size + 5).to_le_bytes());
        let err = encode_tdx(&quote).unwrap_err();
        assert!(
            err.to_string()
                .contains("its certification data size field says"),
            "{err}"
        );
        // The certification data claims bytes after the PCK chain.
        let mut quote = sample_quote();
        let cert_size_at = size_at + 4 + 128 + 2;
        let cert_size =
            u32::from_le_bytes(quote[cert_size_at..cert_size_at + 4].try_into().unwrap());
        quote[cert_size_at..cert_size_at + 4].copy_from_slice(&(cert_size + 7).to_le_bytes());
        quote[size_at..size_at + 4].copy_from_slice(&(size + 7).to_le_bytes());
        let err = encode_tdx(&quote).unwrap_err();
        assert!(
            err.to_string()
                .contains("its PCK certificate chain size field says 100 bytes but 107"),
            "{err}"
        );
        // A malformed quote keeps the parser's words.
        assert!(matches!(
            encode_tdx(&sample_quote()[..100]).unwrap_err(),
            DocumentError::Quote(_)
        ));
    }

    type Change = fn(&mut QuoteV4);

    fn document_with(change: impl FnOnce(&mut QuoteV4)) -> Vec<u8> {
        let document = encode_tdx(&sample_quote()).unwrap();
        let mut quote = QuoteV4::decode(document.as_slice()).unwrap();
        change(&mut quote);
        quote.encode_to_vec()
    }

    fn qe_certification(q: &mut QuoteV4) -> &mut QeReportCertificationData {
        q.signed_data
            .as_mut()
            .unwrap()
            .certification_data
            .as_mut()
            .unwrap()
            .qe_report_certification_data
            .as_mut()
            .unwrap()
    }

    #[test]
    fn every_fixed_size_field_of_the_wrong_length_is_refused_by_name() {
        type Field = fn(&mut QuoteV4) -> &mut Vec<u8>;
        let fields: [(&str, Field, usize); 25] = [
            (
                "header.pce_svn",
                |q| &mut q.header.as_mut().unwrap().pce_svn,
                2,
            ),
            (
                "header.qe_svn",
                |q| &mut q.header.as_mut().unwrap().qe_svn,
                2,
            ),
            (
                "header.qe_vendor_id",
                |q| &mut q.header.as_mut().unwrap().qe_vendor_id,
                16,
            ),
            (
                "header.user_data",
                |q| &mut q.header.as_mut().unwrap().user_data,
                20,
            ),
            (
                "td_quote_body.tee_tcb_svn",
                |q| &mut q.td_quote_body.as_mut().unwrap().tee_tcb_svn,
                16,
            ),
            (
                "td_quote_body.mr_seam",
                |q| &mut q.td_quote_body.as_mut().unwrap().mr_seam,
                48,
            ),
            (
                "td_quote_body.mr_signer_seam",
                |q| &mut q.td_quote_body.as_mut().unwrap().mr_signer_seam,
                48,
            ),
            (
                "td_quote_body.seam_attributes",
                |q| &mut q.td_quote_body.as_mut().unwrap().seam_attributes,
                8,
            ),
            (
                "td_quote_body.td_attributes",
                |q| &mut q.td_quote_body.as_mut().unwrap().td_attributes,
                8,
            ),
            (
                "td_quote_body.xfam",
                |q| &mut q.td_quote_body.as_mut().unwrap().xfam,
                8,
            ),
            (
                "td_quote_body.mr_td",
                |q| &mut q.td_quote_body.as_mut().unwrap().mr_td,
                48,
            ),
            (
                "td_quote_body.mr_config_id",
                |q| &mut q.td_quote_body.as_mut().unwrap().mr_config_id,
                48,
            ),
            (
                "td_quote_body.mr_owner",
                |q| &mut q.td_quote_body.as_mut().unwrap().mr_owner,
                48,
            ),
            (
                "td_quote_body.mr_owner_config",
                |q| &mut q.td_quote_body.as_mut().unwrap().mr_owner_config,
                48,
            ),
            (
                "td_quote_body.rtmrs[2]",
                |q| &mut q.td_quote_body.as_mut().unwrap().rtmrs[2],
                48,
            ),
            (
                "td_quote_body.report_data",
                |q| &mut q.td_quote_body.as_mut().unwrap().report_data,
                64,
            ),
            (
                "signed_data.signature",
                |q| &mut q.signed_data.as_mut().unwrap().signature,
                64,
            ),
            (
                "signed_data.ecdsa_attestation_key",
                |q| &mut q.signed_data.as_mut().unwrap().ecdsa_attestation_key,
                64,
            ),
            (
                "signed_data.certification_data.qe_report_certification_data.qe_report_signature",
                |q| &mut qe_certification(q).qe_report_signature,
                64,
            ),
            (
                "signed_data.certification_data.qe_report_certification_data.qe_report.cpu_svn",
                |q| &mut qe_certification(q).qe_report.as_mut().unwrap().cpu_svn,
                16,
            ),
            (
                "signed_data.certification_data.qe_report_certification_data.qe_report.reserved1",
                |q| &mut qe_certification(q).qe_report.as_mut().unwrap().reserved1,
                28,
            ),
            (
                "signed_data.certification_data.qe_report_certification_data.qe_report.mr_enclave",
                |q| &mut qe_certification(q).qe_report.as_mut().unwrap().mr_enclave,
                32,
            ),
            (
                "signed_data.certification_data.qe_report_certification_data.qe_report.reserved3",
                |q| &mut qe_certification(q).qe_report.as_mut().unwrap().reserved3,
                96,
            ),
            (
                "signed_data.certification_data.qe_report_certification_data.qe_report.reserved4",
                |q| &mut qe_certification(q).qe_report.as_mut().unwrap().reserved4,
                60,
            ),
            (
                "signed_data.certification_data.qe_report_certification_data.qe_report.report_data",
                |q| &mut qe_certification(q).qe_report.as_mut().unwrap().report_data,
                64,
            ),
        ];
        for (name, field, expected) in fields {
            for actual in [0, expected - 1, expected + 1] {
                let document = document_with(|q| field(q).resize(actual, 0));
                assert_eq!(
                    decode_tdx(&document).unwrap_err(),
                    DocumentError::FieldLength {
                        field: name,
                        actual,
                        expected
                    },
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn missing_messages_are_refused_by_name() {
        let cases: [(Change, &str); 8] = [
            (|q| q.header = None, "header"),
            (|q| q.td_quote_body = None, "td_quote_body"),
            (|q| q.signed_data = None, "signed_data"),
            (
                |q| q.signed_data.as_mut().unwrap().certification_data = None,
                CERT_DATA,
            ),
            (
                |q| {
                    q.signed_data
                        .as_mut()
                        .unwrap()
                        .certification_data
                        .as_mut()
                        .unwrap()
                        .qe_report_certification_data = None
                },
                QE_CERT_DATA,
            ),
            (|q| qe_certification(q).qe_report = None, QE_REPORT),
            (
                |q| qe_certification(q).qe_auth_data = None,
                "signed_data.certification_data.qe_report_certification_data.qe_auth_data",
            ),
            (
                |q| qe_certification(q).pck_certificate_chain_data = None,
                "signed_data.certification_data.qe_report_certification_data.pck_certificate_chain_data",
            ),
        ];
        for (change, field) in cases {
            assert_eq!(
                decode_tdx(&document_with(change)).unwrap_err(),
                DocumentError::MissingField { field }
            );
        }
    }

    #[test]
    fn values_the_quote_cannot_hold_are_refused() {
        let cases: [(Change, &str); 13] = [
            (
                |q| q.header.as_mut().unwrap().version = 5,
                "header.version is 5, expected 4",
            ),
            (
                |q| q.header.as_mut().unwrap().attestation_key_type = 3,
                "header.attestation_key_type is 3",
            ),
            (
                |q| q.header.as_mut().unwrap().tee_type = 0,
                "header.tee_type is 0",
            ),
            (
                |q| {
                    q.td_quote_body
                        .as_mut()
                        .unwrap()
                        .rtmrs
                        .pop()
                        .map(drop)
                        .unwrap_or(())
                },
                "td_quote_body.rtmrs is 3 entries",
            ),
            (
                |q| q.td_quote_body.as_mut().unwrap().rtmrs.push(vec![0; 48]),
                "td_quote_body.rtmrs is 5 entries",
            ),
            (|q| q.signed_data_size += 1, "signed_data_size is"),
            (
                |q| {
                    q.signed_data
                        .as_mut()
                        .unwrap()
                        .certification_data
                        .as_mut()
                        .unwrap()
                        .certificate_data_type = 5
                },
                "certification_data.certificate_data_type is 5",
            ),
            (
                |q| {
                    q.signed_data
                        .as_mut()
                        .unwrap()
                        .certification_data
                        .as_mut()
                        .unwrap()
                        .size -= 1
                },
                "signed_data.certification_data.size is",
            ),
            (
                |q| {
                    qe_certification(q)
                        .qe_auth_data
                        .as_mut()
                        .unwrap()
                        .parsed_data_size = 31
                },
                "parsed_data_size is 31 while 32 bytes",
            ),
            (
                |q| {
                    qe_certification(q)
                        .qe_auth_data
                        .as_mut()
                        .unwrap()
                        .parsed_data_size = 70000
                },
                "parsed_data_size is 70000, expected at most 65535",
            ),
            (
                |q| {
                    qe_certification(q)
                        .pck_certificate_chain_data
                        .as_mut()
                        .unwrap()
                        .certificate_data_type = 6
                },
                "pck_certificate_chain_data.certificate_data_type is 6",
            ),
            (
                |q| {
                    qe_certification(q)
                        .pck_certificate_chain_data
                        .as_mut()
                        .unwrap()
                        .size = 99
                },
                "pck_certificate_chain_data.size is 99",
            ),
            (
                |q| qe_certification(q).qe_report.as_mut().unwrap().isv_svn = 65536,
                "qe_report.isv_svn is 65536",
            ),
        ];
        for (change, message) in cases {
            let err = decode_tdx(&document_with(change)).unwrap_err();
            assert!(err.to_string().contains(message), "{err} / {message}");
        }
    }

    #[test]
    fn garbled_documents_are_refused() {
        let document = encode_tdx(&sample_quote()).unwrap();
        for len in [1, 2, 50, document.len() - 1] {
            assert!(
                matches!(
                    decode_tdx(&document[..len]).unwrap_err(),
                    DocumentError::Protobuf {
                        message: "tdx.QuoteV4",
                        ..
                    }
                ),
                "{len}"
            );
        }
        // A raw quote is not a document.
        assert!(matches!(
            decode_tdx(&sample_quote()).unwrap_err(),
            DocumentError::Protobuf { .. }
        ));
        assert_eq!(
            decode_tdx(&[]).unwrap_err(),
            DocumentError::MissingField { field: "header" }
        );
    }
}
