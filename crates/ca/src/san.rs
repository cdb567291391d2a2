//! Splitting a policy's SAN list into IP, URI and DNS subject alternative names
//! (docs/protocol.md §4.2).

use std::net::IpAddr;

use rcgen::SanType;
use rcgen::string::Ia5String;

use crate::CaError;

/// What kind of SAN a policy entry becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SanKind {
    /// An IP address (written as 4 bytes for IPv4 and IPv4-mapped IPv6, as Go does).
    Ip(IpAddr),
    /// A URI: the entry starts with an RFC 3986 scheme followed by `:`.
    Uri,
    /// Everything else, including the wildcard `*`.
    Dns,
}

/// Classifies one entry the way Contrast does: an IP if it parses as one, else a URI if it
/// parses as a URL with a scheme, else a DNS name.
pub(crate) fn classify(entry: &str) -> SanKind {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        // Go writes `ip.To4()` when it is non-nil, so an IPv4-mapped IPv6 address
        // becomes a 4-byte IPv4 SAN.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        return SanKind::Ip(ip);
    }
    if has_uri_scheme(entry) {
        return SanKind::Uri;
    }
    SanKind::Dns
}

/// `scheme ":"` with scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1),
/// and no control characters anywhere (Go's url.Parse refuses those).
fn has_uri_scheme(entry: &str) -> bool {
    let Some((scheme, _)) = entry.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    starts_with_letter
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !entry.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// The SANs of a mesh certificate and its subject CN (the first DNS SAN).
#[derive(Debug)]
pub(crate) struct SplitSans {
    /// The SANs in the order Go writes them: DNS names, then IPs, then URIs.
    pub(crate) sans: Vec<SanType>,
    /// The first DNS name.
    pub(crate) common_name: String,
}

/// Splits `entries` into SANs; refuses an empty entry, a non-ASCII DNS name or URI, and a
/// list without a DNS name.
pub(crate) fn split(entries: &[String]) -> Result<SplitSans, CaError> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let mut uris = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            return Err(CaError::EmptySan { index });
        }
        let ia5 = || {
            Ia5String::try_from(entry.as_str())
                .map_err(|_| CaError::NonAsciiSan { san: entry.clone() })
        };
        match classify(entry) {
            SanKind::Ip(ip) => ips.push(SanType::IpAddress(ip)),
            SanKind::Uri => uris.push(SanType::URI(ia5()?)),
            SanKind::Dns => dns.push((entry.clone(), SanType::DnsName(ia5()?))),
        }
    }
    let common_name = dns
        .first()
        .map(|(name, _)| name.clone())
        .ok_or(CaError::NoDnsSan)?;
    let sans = dns
        .into_iter()
        .map(|(_, san)| san)
        .chain(ips)
        .chain(uris)
        .collect();
    Ok(SplitSans { sans, common_name })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn classification_table() {
        let v4 = |a, b, c, d| SanKind::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
        let table = [
            ("10.0.0.1", v4(10, 0, 0, 1)),
            ("127.0.0.1", v4(127, 0, 0, 1)),
            ("::1", SanKind::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            (
                "fe80::1",
                SanKind::Ip(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))),
            ),
            ("::ffff:192.0.2.1", v4(192, 0, 2, 1)),
            ("spiffe://cluster.local/ns/default/sa/web", SanKind::Uri),
            ("https://example.com/path", SanKind::Uri),
            (
                "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
                SanKind::Uri,
            ),
            ("a+b-c.d:x", SanKind::Uri),
            // Go's url.Parse reads "host:port" as scheme "host".
            ("localhost:8080", SanKind::Uri),
            ("web", SanKind::Dns),
            ("web.default.svc.cluster.local", SanKind::Dns),
            ("*", SanKind::Dns),
            ("*.example.com", SanKind::Dns),
            // Not a scheme: starts with a digit, empty, or contains '_'.
            ("1abc:x", SanKind::Dns),
            (":x", SanKind::Dns),
            ("a_b:x", SanKind::Dns),
            // Leading zeros are not an IPv4 address (neither for Go nor for Rust).
            ("010.0.0.1", SanKind::Dns),
            // Control characters make Go's url.Parse fail.
            ("http://a\tb", SanKind::Dns),
        ];
        for (entry, expected) in table {
            assert_eq!(classify(entry), expected, "{entry:?}");
        }
    }

    #[test]
    fn split_orders_dns_ips_uris_and_picks_first_dns_as_cn() {
        let entries: Vec<String> = ["spiffe://x/y", "10.0.0.1", "web", "*", "::1"]
            .map(String::from)
            .to_vec();
        let split = split(&entries).unwrap();
        assert_eq!(split.common_name, "web");
        assert_eq!(
            split.sans,
            vec![
                SanType::DnsName("web".try_into().unwrap()),
                SanType::DnsName("*".try_into().unwrap()),
                SanType::IpAddress("10.0.0.1".parse().unwrap()),
                SanType::IpAddress("::1".parse().unwrap()),
                SanType::URI("spiffe://x/y".try_into().unwrap()),
            ]
        );
    }

    #[test]
    fn wildcard_alone_is_a_dns_name_and_the_cn() {
        let split = split(&["*".to_owned()]).unwrap();
        assert_eq!(split.common_name, "*");
    }

    #[test]
    fn refuses_without_dns_name() {
        let entries = vec!["10.0.0.1".to_owned(), "spiffe://x/y".to_owned()];
        let err = split(&entries).unwrap_err();
        assert!(matches!(err, CaError::NoDnsSan));
        assert!(err.to_string().contains("contain no DNS name"), "{err}");
        assert!(matches!(split(&[]).unwrap_err(), CaError::NoDnsSan));
    }

    #[test]
    fn refuses_empty_entry() {
        let err = split(&["web".to_owned(), String::new()]).unwrap_err();
        assert!(matches!(err, CaError::EmptySan { index: 1 }), "{err}");
    }

    #[test]
    fn refuses_non_ascii_names() {
        for entry in ["bücher.example", "https://bücher.example/"] {
            let err = split(&["web".to_owned(), entry.to_owned()]).unwrap_err();
            assert!(
                matches!(&err, CaError::NonAsciiSan { san } if san == entry),
                "{err}"
            );
        }
    }
}
