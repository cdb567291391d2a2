//! The service-mesh proxy's configuration, from the sidecar's environment (docs/protocol.md
//! §11.3, §11.4).
//!
//! Lists are `##`-separated entries of exactly three `#`-separated fields:
//! - ingress `<name>#<port>#<disableTLS>`: `false` terminates TLS without requiring a
//!   client certificate, `true` lets the port bypass the proxy; every port not listed
//!   requires a mesh client certificate. The whole value `DISABLED` turns the ingress
//!   redirection off.
//! - egress `<name>#<listenIP>:<listenPort>#<remoteHost>:<remotePort>`, the listen address
//!   inside 127.0.0.0/8.
//!
//! Empty entries (a trailing `##`) are skipped, as Contrast does. Everything Contrast's
//! parser would accept only by wrapping or ignoring it (ports outside 1–65535, signs,
//! empty hosts, duplicate names or ports) is refused here, with the entry named.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Environment variable with the ingress list.
pub const INGRESS_ENV: &str = "CONTRAST_INGRESS_PROXY_CONFIG";
/// Environment variable with the egress list.
pub const EGRESS_ENV: &str = "CONTRAST_EGRESS_PROXY_CONFIG";
/// Environment variable with the admin interface port.
pub const ADMIN_PORT_ENV: &str = "CONTRAST_ADMIN_PORT";
/// The ingress value that turns the ingress redirection off (Contrast's documentation).
pub const INGRESS_DISABLED: &str = "DISABLED";

/// The proxy's port for inbound connections that must present a mesh client certificate.
pub const DEFAULT_INGRESS_PORT: u16 = 15006;
/// The proxy's port for inbound connections on ports configured with `false` (TLS, no
/// client certificate required).
pub const DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT: u16 = 15007;

/// The whole proxy configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyConfig {
    /// Inbound traffic: which ports get which treatment.
    pub ingress: IngressConfig,
    /// Outbound listeners, in the order given.
    pub egress: Vec<EgressEntry>,
    /// Port of the admin interface on 0.0.0.0, if one was asked for.
    pub admin_port: Option<u16>,
}

/// Inbound traffic handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressConfig {
    /// Redirect inbound TCP to the proxy; the listed ports get their own treatment, every
    /// other port requires a mesh client certificate.
    Redirect(Vec<IngressEntry>),
    /// No redirection and no ingress listeners (the value `DISABLED`).
    Disabled,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig::Redirect(Vec::new())
    }
}

impl IngressConfig {
    /// The listed ports (none when disabled).
    pub fn entries(&self) -> &[IngressEntry] {
        match self {
            IngressConfig::Redirect(entries) => entries,
            IngressConfig::Disabled => &[],
        }
    }
}

/// One ingress entry: a port with a treatment other than "mTLS required".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressEntry {
    /// The entry's name (used in logs).
    pub name: String,
    /// The workload's port.
    pub port: u16,
    /// What happens to connections to this port.
    pub mode: IngressPortMode,
}

/// The per-port choice of the ingress grammar's third field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressPortMode {
    /// `false`: TLS with the workload certificate, a client certificate is not required
    /// (but verified against the mesh CA when one is presented).
    TlsWithoutClientAuth,
    /// `true`: the port bypasses the proxy; traffic reaches the workload as sent.
    Bypass,
}

/// One egress entry: a loopback listener whose connections are carried over mTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressEntry {
    /// The entry's name, unique among egress entries.
    pub name: String,
    /// Where the workload connects (inside 127.0.0.0/8).
    pub listen: SocketAddrV4,
    /// The remote host: a DNS name (resolved to IPv4 per connection) or an IPv4 address.
    pub remote_host: String,
    /// The remote port.
    pub remote_port: u16,
}

/// A configuration value the proxy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// One entry of a list is malformed.
    #[error("{variable}: entry {index} {entry:?}: {problem}")]
    Entry {
        /// The environment variable the list came from.
        variable: &'static str,
        /// Position of the entry in the list, counted from 1 (empty entries included).
        index: usize,
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// The admin port is not a port number.
    #[error(
        "{ADMIN_PORT_ENV}: {value:?} is not a port number (1-65535); \
         set it to the admin interface's port or leave it empty for none"
    )]
    AdminPort {
        /// The value as given.
        value: String,
    },
    /// An environment variable is not valid UTF-8.
    #[error("{variable} is not valid UTF-8; the annotation value must be text")]
    NotUnicode {
        /// The variable.
        variable: &'static str,
    },
}

/// What is wrong with one list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryProblem {
    /// Not exactly three `#`-separated fields.
    FieldCount {
        /// Fields found.
        found: usize,
        /// The expected shape.
        expected: &'static str,
    },
    /// The name field is empty.
    EmptyName,
    /// A port field is not a number in 1–65535.
    Port {
        /// The field as given.
        value: String,
    },
    /// An ingress port is one of the proxy's own ports.
    ProxyPort {
        /// The port.
        port: u16,
    },
    /// The ingress disable-TLS field is not a boolean.
    Bool {
        /// The field as given.
        value: String,
    },
    /// The egress listen field is not `IPv4:port`.
    ListenAddress {
        /// The field as given.
        value: String,
    },
    /// The egress listen address is outside 127.0.0.0/8.
    ListenNotLoopback {
        /// The address.
        address: Ipv4Addr,
    },
    /// The egress remote field is not `host:port`.
    Remote {
        /// The field as given.
        value: String,
    },
    /// The egress remote host is neither a DNS name nor an IPv4 address.
    RemoteHost {
        /// The host as given.
        value: String,
    },
    /// Another entry already has this name.
    DuplicateName {
        /// The name.
        name: String,
        /// The other entry's index.
        other: usize,
    },
    /// Another entry already uses this port or listen address.
    DuplicateListen {
        /// The port or address.
        listen: String,
        /// The other entry's index.
        other: usize,
    },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::FieldCount { found, expected } => write!(
                f,
                "has {found} '#'-separated field(s); an entry has exactly 3: {expected}"
            ),
            EntryProblem::EmptyName => {
                write!(
                    f,
                    "the name (first field) is empty; give every entry a name"
                )
            }
            EntryProblem::Port { value } => {
                write!(f, "{value:?} is not a port number (1-65535)")
            }
            EntryProblem::ProxyPort { port } => write!(
                f,
                "port {port} is one of the proxy's own ports ({DEFAULT_INGRESS_PORT}, \
                 {DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT}); the workload cannot use it"
            ),
            EntryProblem::Bool { value } => write!(
                f,
                "the disable-TLS field {value:?} is not a boolean; use true (bypass the proxy) \
                 or false (TLS without client certificate), also 1/0, t/f, TRUE/FALSE, True/False"
            ),
            EntryProblem::ListenAddress { value } => write!(
                f,
                "the listen address {value:?} is not an IPv4 address and port such as \
                 127.137.0.1:8081"
            ),
            EntryProblem::ListenNotLoopback { address } => write!(
                f,
                "the listen address {address} is outside 127.0.0.0/8; egress listeners must \
                 be on a loopback address"
            ),
            EntryProblem::Remote { value } => write!(
                f,
                "the remote {value:?} is not host:port such as emoji-svc:8080"
            ),
            EntryProblem::RemoteHost { value } => write!(
                f,
                "the remote host {value:?} is neither a DNS name nor an IPv4 address"
            ),
            EntryProblem::DuplicateName { name, other } => write!(
                f,
                "the name {name:?} is already used by entry {other}; egress names must be unique"
            ),
            EntryProblem::DuplicateListen { listen, other } => {
                write!(f, "{listen} is already used by entry {other}")
            }
        }
    }
}

const INGRESS_SHAPE: &str = "<name>#<port>#<disableTLS>";
const EGRESS_SHAPE: &str = "<name>#<listenIP>:<listenPort>#<remoteHost>:<remotePort>";

impl ProxyConfig {
    /// Reads the three environment variables (unset counts as empty).
    pub fn from_env() -> Result<ProxyConfig, ConfigError> {
        let read = |variable: &'static str| match std::env::var(variable) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => Ok(String::new()),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NotUnicode { variable }),
        };
        ProxyConfig::parse(
            &read(INGRESS_ENV)?,
            &read(EGRESS_ENV)?,
            &read(ADMIN_PORT_ENV)?,
        )
    }

    /// Parses the values of the three environment variables.
    pub fn parse(
        ingress: &str,
        egress: &str,
        admin_port: &str,
    ) -> Result<ProxyConfig, ConfigError> {
        let ingress = if ingress == INGRESS_DISABLED {
            IngressConfig::Disabled
        } else {
            IngressConfig::Redirect(parse_ingress(ingress)?)
        };
        let egress = parse_egress(egress)?;
        let admin_port = if admin_port.is_empty() {
            None
        } else {
            Some(
                parse_port(admin_port).ok_or_else(|| ConfigError::AdminPort {
                    value: admin_port.to_owned(),
                })?,
            )
        };
        Ok(ProxyConfig {
            ingress,
            egress,
            admin_port,
        })
    }
}

/// The non-empty entries of a `##`-separated list with their 1-based positions.
fn entries(list: &str) -> impl Iterator<Item = (usize, &str)> {
    list.split("##")
        .enumerate()
        .filter(|(_, entry)| !entry.is_empty())
        .map(|(i, entry)| (i + 1, entry))
}

fn fields<'a>(
    entry: &'a str,
    expected: &'static str,
) -> Result<(&'a str, &'a str, &'a str), EntryProblem> {
    let fields: Vec<&str> = entry.split('#').collect();
    match fields.as_slice() {
        [name, second, third] => {
            if name.is_empty() {
                return Err(EntryProblem::EmptyName);
            }
            Ok((name, second, third))
        }
        _ => Err(EntryProblem::FieldCount {
            found: fields.len(),
            expected,
        }),
    }
}

fn parse_ingress(list: &str) -> Result<Vec<IngressEntry>, ConfigError> {
    let mut parsed: Vec<(usize, IngressEntry)> = Vec::new();
    for (index, entry) in entries(list) {
        let error = |problem| ConfigError::Entry {
            variable: INGRESS_ENV,
            index,
            entry: entry.to_owned(),
            problem,
        };
        let (name, port, disable_tls) = fields(entry, INGRESS_SHAPE).map_err(error)?;
        let port = parse_port(port).ok_or_else(|| {
            error(EntryProblem::Port {
                value: port.to_owned(),
            })
        })?;
        if port == DEFAULT_INGRESS_PORT || port == DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT {
            return Err(error(EntryProblem::ProxyPort { port }));
        }
        let mode = match parse_go_bool(disable_tls) {
            Some(true) => IngressPortMode::Bypass,
            Some(false) => IngressPortMode::TlsWithoutClientAuth,
            None => {
                return Err(error(EntryProblem::Bool {
                    value: disable_tls.to_owned(),
                }));
            }
        };
        if let Some((other, _)) = parsed.iter().find(|(_, e)| e.port == port) {
            return Err(error(EntryProblem::DuplicateListen {
                listen: format!("port {port}"),
                other: *other,
            }));
        }
        parsed.push((
            index,
            IngressEntry {
                name: name.to_owned(),
                port,
                mode,
            },
        ));
    }
    Ok(parsed.into_iter().map(|(_, entry)| entry).collect())
}

fn parse_egress(list: &str) -> Result<Vec<EgressEntry>, ConfigError> {
    let mut parsed: Vec<(usize, EgressEntry)> = Vec::new();
    for (index, entry) in entries(list) {
        let error = |problem| ConfigError::Entry {
            variable: EGRESS_ENV,
            index,
            entry: entry.to_owned(),
            problem,
        };
        let (name, listen, remote) = fields(entry, EGRESS_SHAPE).map_err(error)?;

        let listen_error = || {
            error(EntryProblem::ListenAddress {
                value: listen.to_owned(),
            })
        };
        let (ip, port) = listen.rsplit_once(':').ok_or_else(listen_error)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| listen_error())?;
        let port = parse_port(port).ok_or_else(listen_error)?;
        if !ip.is_loopback() {
            return Err(error(EntryProblem::ListenNotLoopback { address: ip }));
        }
        let listen = SocketAddrV4::new(ip, port);

        let remote_error = || {
            error(EntryProblem::Remote {
                value: remote.to_owned(),
            })
        };
        let (host, remote_port) = remote.rsplit_once(':').ok_or_else(remote_error)?;
        let remote_port = parse_port(remote_port).ok_or_else(remote_error)?;
        if !is_host(host) {
            return Err(error(EntryProblem::RemoteHost {
                value: host.to_owned(),
            }));
        }

        if let Some((other, _)) = parsed.iter().find(|(_, e)| e.name == name) {
            return Err(error(EntryProblem::DuplicateName {
                name: name.to_owned(),
                other: *other,
            }));
        }
        if let Some((other, _)) = parsed.iter().find(|(_, e)| e.listen == listen) {
            return Err(error(EntryProblem::DuplicateListen {
                listen: listen.to_string(),
                other: *other,
            }));
        }
        parsed.push((
            index,
            EgressEntry {
                name: name.to_owned(),
                listen,
                remote_host: host.to_owned(),
                remote_port,
            },
        ));
    }
    Ok(parsed.into_iter().map(|(_, entry)| entry).collect())
}

/// A port number 1–65535 written in decimal digits only (leading zeros allowed, as Go's
/// parsers allow them; signs and spaces are not).
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = text.bytes().try_fold(0u32, |acc, digit| {
        let next = acc * 10 + u32::from(digit - b'0');
        (next <= u32::from(u16::MAX)).then_some(next)
    })?;
    u16::try_from(value).ok().filter(|port| *port != 0)
}

/// Go's `strconv.ParseBool`: exactly these spellings.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An IPv4 address or a DNS name (letters, digits, `-` and `_` in labels of 1–63
/// characters, at most 253 characters, one trailing dot allowed).
fn is_host(host: &str) -> bool {
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry_problem(
        result: Result<ProxyConfig, ConfigError>,
    ) -> (&'static str, usize, EntryProblem) {
        match result {
            Err(ConfigError::Entry {
                variable,
                index,
                problem,
                ..
            }) => (variable, index, problem),
            other => panic!("expected an entry error, got {other:?}"),
        }
    }

    #[test]
    fn empty_values_give_mtls_for_everything_and_no_egress() {
        let config = ProxyConfig::parse("", "", "").unwrap();
        assert_eq!(config, ProxyConfig::default());
        assert_eq!(config.ingress, IngressConfig::Redirect(vec![]));
        assert!(config.ingress.entries().is_empty());
    }

    #[test]
    fn egress_example_from_contrast_docs() {
        let config = ProxyConfig::parse(
            "",
            "emoji#127.137.0.1:8081#emoji-svc:8080##voting#127.137.0.2:8081#voting-svc:8080",
            "",
        )
        .unwrap();
        assert_eq!(
            config.egress,
            vec![
                EgressEntry {
                    name: "emoji".into(),
                    listen: "127.137.0.1:8081".parse().unwrap(),
                    remote_host: "emoji-svc".into(),
                    remote_port: 8080,
                },
                EgressEntry {
                    name: "voting".into(),
                    listen: "127.137.0.2:8081".parse().unwrap(),
                    remote_host: "voting-svc".into(),
                    remote_port: 8080,
                },
            ]
        );
    }

    #[test]
    fn ingress_modes_and_go_booleans() {
        let config = ProxyConfig::parse(
            "web#8080#false##metrics#9090#true##a#1#1##b#2#0##c#3#t##d#4#F##e#5#TRUE##f#6#False",
            "",
            "9901",
        )
        .unwrap();
        let modes: Vec<(u16, IngressPortMode)> = config
            .ingress
            .entries()
            .iter()
            .map(|e| (e.port, e.mode))
            .collect();
        use IngressPortMode::{Bypass, TlsWithoutClientAuth as Tls};
        assert_eq!(
            modes,
            vec![
                (8080, Tls),
                (9090, Bypass),
                (1, Bypass),
                (2, Tls),
                (3, Bypass),
                (4, Tls),
                (5, Bypass),
                (6, Tls)
            ]
        );
        assert_eq!(config.ingress.entries()[0].name, "web");
        assert_eq!(config.admin_port, Some(9901));
    }

    #[test]
    fn disabled_ingress() {
        let config = ProxyConfig::parse("DISABLED", "", "").unwrap();
        assert_eq!(config.ingress, IngressConfig::Disabled);
        assert!(config.ingress.entries().is_empty());
        // Only the exact word: anything else is parsed as a list and refused.
        let (_, _, problem) = entry_problem(ProxyConfig::parse("disabled", "", ""));
        assert!(matches!(problem, EntryProblem::FieldCount { found: 1, .. }));
    }

    #[test]
    fn empty_entries_are_skipped_and_indices_count_them() {
        let config = ProxyConfig::parse("##web#8080#false##", "", "").unwrap();
        assert_eq!(config.ingress.entries().len(), 1);
        let (variable, index, _) =
            entry_problem(ProxyConfig::parse("##web#8080#false##bad", "", ""));
        assert_eq!((variable, index), (INGRESS_ENV, 3));
    }

    #[test]
    fn ingress_refusals() {
        let cases: &[(&str, EntryProblem)] = &[
            (
                "web#8080",
                EntryProblem::FieldCount {
                    found: 2,
                    expected: INGRESS_SHAPE,
                },
            ),
            (
                "web#8080#false#x",
                EntryProblem::FieldCount {
                    found: 4,
                    expected: INGRESS_SHAPE,
                },
            ),
            ("#8080#false", EntryProblem::EmptyName),
            ("web#0#false", EntryProblem::Port { value: "0".into() }),
            (
                "web#65536#false",
                EntryProblem::Port {
                    value: "65536".into(),
                },
            ),
            (
                "web#99999999999#false",
                EntryProblem::Port {
                    value: "99999999999".into(),
                },
            ),
            (
                "web#+80#false",
                EntryProblem::Port {
                    value: "+80".into(),
                },
            ),
            ("web#-1#false", EntryProblem::Port { value: "-1".into() }),
            (
                "web# 80#false",
                EntryProblem::Port {
                    value: " 80".into(),
                },
            ),
            // "##" separates entries, so an empty port field splits the entry in two.
            (
                "web##false",
                EntryProblem::FieldCount {
                    found: 1,
                    expected: INGRESS_SHAPE,
                },
            ),
            ("web#15006#false", EntryProblem::ProxyPort { port: 15006 }),
            ("web#15007#true", EntryProblem::ProxyPort { port: 15007 }),
            (
                "web#80#yes",
                EntryProblem::Bool {
                    value: "yes".into(),
                },
            ),
            (
                "web#80#tRuE",
                EntryProblem::Bool {
                    value: "tRuE".into(),
                },
            ),
            ("web#80#", EntryProblem::Bool { value: "".into() }),
        ];
        for (value, expected) in cases {
            let (variable, index, problem) = entry_problem(ProxyConfig::parse(value, "", ""));
            assert_eq!(variable, INGRESS_ENV, "{value}");
            assert_eq!(index, 1, "{value}");
            assert_eq!(&problem, expected, "{value}");
        }
    }

    #[test]
    fn duplicate_ingress_port_names_both_entries() {
        let (_, index, problem) = entry_problem(ProxyConfig::parse(
            "a#80#true##b#81#true##c#80#false",
            "",
            "",
        ));
        assert_eq!(index, 3);
        assert_eq!(
            problem,
            EntryProblem::DuplicateListen {
                listen: "port 80".into(),
                other: 1
            }
        );
    }

    #[test]
    fn egress_refusals() {
        let cases: &[(&str, EntryProblem)] = &[
            (
                "a#127.0.0.1:80",
                EntryProblem::FieldCount {
                    found: 2,
                    expected: EGRESS_SHAPE,
                },
            ),
            ("#127.0.0.1:80#svc:80", EntryProblem::EmptyName),
            (
                "a#127.0.0.1#svc:80",
                EntryProblem::ListenAddress {
                    value: "127.0.0.1".into(),
                },
            ),
            (
                "a#127.0.0.1:0#svc:80",
                EntryProblem::ListenAddress {
                    value: "127.0.0.1:0".into(),
                },
            ),
            (
                "a#127.0.0.01:80#svc:80",
                EntryProblem::ListenAddress {
                    value: "127.0.0.01:80".into(),
                },
            ),
            (
                "a#[::1]:80#svc:80",
                EntryProblem::ListenAddress {
                    value: "[::1]:80".into(),
                },
            ),
            (
                "a#localhost:80#svc:80",
                EntryProblem::ListenAddress {
                    value: "localhost:80".into(),
                },
            ),
            (
                "a#10.0.0.1:80#svc:80",
                EntryProblem::ListenNotLoopback {
                    address: Ipv4Addr::new(10, 0, 0, 1),
                },
            ),
            (
                "a#0.0.0.0:80#svc:80",
                EntryProblem::ListenNotLoopback {
                    address: Ipv4Addr::UNSPECIFIED,
                },
            ),
            (
                "a#127.0.0.1:80#svc",
                EntryProblem::Remote {
                    value: "svc".into(),
                },
            ),
            (
                "a#127.0.0.1:80#svc:0",
                EntryProblem::Remote {
                    value: "svc:0".into(),
                },
            ),
            (
                "a#127.0.0.1:80#svc:+1",
                EntryProblem::Remote {
                    value: "svc:+1".into(),
                },
            ),
            (
                "a#127.0.0.1:80#:80",
                EntryProblem::RemoteHost { value: "".into() },
            ),
            (
                "a#127.0.0.1:80#[::1]:80",
                EntryProblem::RemoteHost {
                    value: "[::1]".into(),
                },
            ),
            (
                "a#127.0.0.1:80#a b:80",
                EntryProblem::RemoteHost {
                    value: "a b".into(),
                },
            ),
            (
                "a#127.0.0.1:80#a..b:80",
                EntryProblem::RemoteHost {
                    value: "a..b".into(),
                },
            ),
            (
                "a#127.0.0.1:80#-a:80",
                EntryProblem::RemoteHost { value: "-a".into() },
            ),
            (
                "a#127.0.0.1:80#svc:80##a#127.0.0.2:80#svc:80",
                EntryProblem::DuplicateName {
                    name: "a".into(),
                    other: 1,
                },
            ),
            (
                "a#127.0.0.1:80#svc:80##b#127.0.0.1:80#svc:81",
                EntryProblem::DuplicateListen {
                    listen: "127.0.0.1:80".into(),
                    other: 1,
                },
            ),
        ];
        for (value, expected) in cases {
            let (variable, _, problem) = entry_problem(ProxyConfig::parse("", value, ""));
            assert_eq!(variable, EGRESS_ENV, "{value}");
            assert_eq!(&problem, expected, "{value}");
        }
    }

    #[test]
    fn egress_hosts_accepted() {
        for host in [
            "svc",
            "svc.ns.svc.cluster.local",
            "svc.ns.svc.cluster.local.",
            "10.0.0.7",
            "my_svc",
            "a1-b2",
        ] {
            let config =
                ProxyConfig::parse("", &format!("x#127.255.0.9:1#{host}:65535"), "").unwrap();
            assert_eq!(config.egress[0].remote_host, host);
            assert_eq!(config.egress[0].remote_port, 65535);
        }
    }

    #[test]
    fn admin_port_refusals() {
        for value in ["0", "x", "70000", " 1", "-5"] {
            assert_eq!(
                ProxyConfig::parse("", "", value),
                Err(ConfigError::AdminPort {
                    value: value.into()
                })
            );
        }
    }

    #[test]
    fn error_message_names_variable_entry_and_problem() {
        let error = ProxyConfig::parse("", "emoji#10.1.1.1:8081#emoji-svc:8080", "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "CONTRAST_EGRESS_PROXY_CONFIG: entry 1 \"emoji#10.1.1.1:8081#emoji-svc:8080\": the \
             listen address 10.1.1.1 is outside 127.0.0.0/8; egress listeners must be on a \
             loopback address"
        );
        let error = ProxyConfig::parse("web#8080#maybe", "", "").unwrap_err();
        assert!(error.to_string().starts_with(
            "CONTRAST_INGRESS_PROXY_CONFIG: entry 1 \"web#8080#maybe\": the disable-TLS field \"maybe\""
        ));
    }

    #[test]
    fn port_parsing() {
        assert_eq!(parse_port("1"), Some(1));
        assert_eq!(parse_port("65535"), Some(65535));
        assert_eq!(parse_port("008080"), Some(8080));
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port(""), None);
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("00"), None);
        assert_eq!(parse_port("1_000"), None);
    }
}
