//! Raw hardware evidence, collected inside a confidential VM.
//!
//! - [`configfs_tsm`] asks the kernel's configfs-tsm report interface (Linux 6.7+) for a
//!   report bound to 64 bytes of caller data: an SEV-SNP attestation report or a TDX quote,
//!   plus, on SEV-SNP, the host-supplied certificate table.
//! - [`snp_cert_table`] parses (and builds) that certificate table.
//! - [`issuer`] is the seam: real issuers (configfs-tsm, `/dev/sev-guest`) and simulated
//!   ones behind one trait.
//!
//! Nothing here verifies anything: the verifier lives in `contrast-attestation`. The legacy
//! `/dev/sev-guest` and `/dev/tdx_guest` ioctls need `unsafe` and live in
//! `contrast-tee-ioctl`.

pub mod configfs_tsm;
pub mod document;
pub mod issuer;
#[cfg(feature = "simulated")]
mod simulated;
pub mod snp_cert_table;

pub use document::DocumentIssuer;

use std::fmt;
use std::str::FromStr;

/// The TSM provider behind configfs-tsm, as named in the report directory's `provider` file.
///
/// The provider decides what `outblob` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// `sev_guest`: `outblob` is a 1184-byte SEV-SNP attestation report, `auxblob` the
    /// certificate table (see [`snp_cert_table`]) when the host supplies certificates.
    SevGuest,
    /// `tdx_guest`: `outblob` is a DCAP quote, obtained from the host's quote service.
    TdxGuest,
}

impl Provider {
    /// The name as the kernel writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::SevGuest => "sev_guest",
            Provider::TdxGuest => "tdx_guest",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is neither `sev_guest` nor `tdx_guest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TSM provider {0:?}: only sev_guest and tdx_guest are supported")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Parses the content of the `provider` file; the kernel ends it with a newline.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_suffix('\n').unwrap_or(s) {
            "sev_guest" => Ok(Provider::SevGuest),
            "tdx_guest" => Ok(Provider::TdxGuest),
            other => Err(UnknownProvider(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_round_trips_with_and_without_newline() {
        for provider in [Provider::SevGuest, Provider::TdxGuest] {
            assert_eq!(provider.as_str().parse(), Ok(provider));
            assert_eq!(format!("{provider}\n").parse(), Ok(provider));
        }
    }

    #[test]
    fn provider_refuses_other_names() {
        // Early drafts of the ABI document used these names as examples.
        for name in [
            "unknown",
            "sev-snp",
            "tdx",
            "",
            "sev_guest\n\n",
            " sev_guest",
            "SEV_GUEST",
        ] {
            let err = name.parse::<Provider>().unwrap_err();
            assert!(err.to_string().contains("unknown TSM provider"), "{err}");
        }
    }
}
