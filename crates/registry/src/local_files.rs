//! What the resolver reads from the local disk: small configuration files (bounded, since
//! in the guest the host writes them) and PEM bundles of trust anchors.

use std::io::Read as _;
use std::path::Path;

use oci_client::client::{Certificate, CertificateEncoding};

/// The file at `path`, refused past `limit` bytes; `Ok(None)` if there is none. The error
/// is what follows the file's name in a message.
pub(crate) fn read_small_file(
    path: &Path,
    limit: u64,
    what: &str,
) -> Result<Option<Vec<u8>>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("it is more than the {limit} bytes {what} may have"));
    }
    Ok(Some(bytes))
}

/// The certificates of a PEM bundle as oci-client takes them (DER, one by one); possibly
/// none, which each caller refuses in its own terms.
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem)
        .map(|c| {
            c.map(|der| Certificate {
                encoding: CertificateEncoding::Der,
                data: der.to_vec(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}
