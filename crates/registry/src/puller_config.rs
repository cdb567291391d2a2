//! The image puller configuration, Contrast's `contrast-imagepuller.toml`: how pulls inside
//! the guest reach private registries. The node installer copies it from the Secret
//! `contrast-node-installer-imagepuller-config`, the runtime hands it to the VM unmeasured
//! (the host can read and change it), and the guest's pulls use it. That is safe for
//! integrity because every image is pinned by digest and re-hashed; it only decides
//! whether a registry lets the guest in.
//!
//! ```toml
//! [registries."ghcr.io."]          # this registry and its subdomains; "." at the end optional
//! auth = "dXNlcjpwYXNzd29yZA=="    # base64 of user:password (or username and password)
//! [registries.".corp.example"]     # subdomains of corp.example only
//! ca-certs = "-----BEGIN CERTIFICATE-----…"   # the only trust anchors for these registries
//! insecure-skip-verify = true                 # no certificate check at all
//! ```
//!
//! Keys name a registry as image references write it (`host` or `host:port`) and match
//! on whole labels from the right: `example.com` matches `example.com` and
//! `r.example.com`, `.example.com` only the latter, `.` every registry. The key with the
//! most dots wins, as in Contrast's image puller (so `.corp` beats `corp`); where Contrast
//! leaves a tie to Go's map order, the key with more labels wins, then the first in lexical
//! order. Two keys for one registry (`ghcr.io` and `ghcr.io.`) are refused. Credentials are
//! read as in a Docker config's `auths` entry (`auth`, `username`/`password`,
//! `registrytoken`). `[extra-env]` sets the proxies every pull goes through: `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY` (Contrast applies only these three). Not supported, and
//! refused by name rather than ignored: `mirror`, `identitytoken` and any other variable.

use std::path::Path;

use oci_client::client::Certificate;

use crate::docker_config::{Credentials, Entry, normalize_key, parse_entry};
use crate::error::RegistryError;
use crate::local_files::{pem_certificates, read_small_file};

/// A configuration file larger than this is refused (they are a few KiB).
pub const MAX_PULLER_CONFIG_SIZE: u64 = 1 << 20;

/// How to reach one registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistrySettings {
    /// Credentials; `None`: anonymous.
    pub(crate) credentials: Option<Credentials>,
    /// The only trust anchors for the registry; `None`: the resolver's.
    pub(crate) ca_certificates: Option<Vec<Certificate>>,
    /// No certificate or host name check.
    pub(crate) insecure_skip_verify: bool,
}

impl RegistrySettings {
    /// Whether the registry needs an HTTP client of its own.
    pub(crate) fn has_tls_settings(&self) -> bool {
        self.ca_certificates.is_some() || self.insecure_skip_verify
    }
}

/// One `[registries."<key>"]` table.
#[derive(Debug, Clone)]
struct Rule {
    /// The key as written, for messages.
    key: String,
    /// Its labels, normalized (lower case, Docker Hub as `docker.io`, no trailing dot).
    labels: Vec<String>,
    /// A leading dot: subdomains only.
    subdomains_only: bool,
    settings: RegistrySettings,
}

impl Rule {
    /// Contrast's rank: the dots of the key (without a trailing one).
    fn dots(&self) -> usize {
        self.labels.len().saturating_sub(1) + usize::from(self.subdomains_only)
    }

    fn matches(&self, registry_labels: &[&str]) -> bool {
        if self.labels.len() > registry_labels.len()
            || (self.subdomains_only && self.labels.len() == registry_labels.len())
        {
            return false;
        }
        let tail = &registry_labels[registry_labels.len() - self.labels.len()..];
        tail.iter().zip(&self.labels).all(|(a, b)| a == b)
    }
}

/// A parsed image puller configuration; see the module documentation.
#[derive(Debug, Clone)]
pub struct PullerConfig {
    /// The file it came from, for messages.
    path: String,
    /// Whether the file exists (a node without the Secret gives the guest none).
    present: bool,
    /// The rules, best first among equals (see [`PullerConfig::lookup`]).
    rules: Vec<Rule>,
    /// From `[extra-env]`.
    proxies: Proxies,
}

/// The proxies of `[extra-env]`, for every registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Proxies {
    /// `HTTPS_PROXY`: the proxy for HTTPS registries (CONNECT).
    pub(crate) https: Option<String>,
    /// `HTTP_PROXY`: the proxy for plain-HTTP registries.
    pub(crate) http: Option<String>,
    /// `NO_PROXY`: hosts, domains and CIDRs reached directly, comma-separated.
    pub(crate) no_proxy: Option<String>,
}

/// The rule that applies to a registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matched<'a> {
    /// The rule's index, stable for the configuration's life.
    pub(crate) index: usize,
    /// The key as written.
    pub(crate) key: &'a str,
    pub(crate) settings: &'a RegistrySettings,
}

impl PullerConfig {
    /// Reads the configuration at `path`; no file is a configuration without registries
    /// (anonymous pulls).
    pub fn load(path: &Path) -> Result<PullerConfig, RegistryError> {
        let refuse = |detail: String| RegistryError::PullerConfig {
            path: path.display().to_string(),
            detail,
        };
        let Some(bytes) = read_small_file(path, MAX_PULLER_CONFIG_SIZE, "an image puller config")
            .map_err(refuse)?
        else {
            return Ok(PullerConfig {
                path: path.display().to_string(),
                present: false,
                rules: Vec::new(),
                proxies: Proxies::default(),
            });
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| refuse("it is not UTF-8 text (TOML)".to_owned()))?;
        PullerConfig::parse(text, &path.display().to_string())
    }

    /// Parses the TOML `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<PullerConfig, RegistryError> {
        let refuse = |detail: String| RegistryError::PullerConfig {
            path: path.to_owned(),
            detail,
        };
        // The parser's message without its excerpt of the file, which may hold a secret.
        let document: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            refuse(match line {
                Some(line) => format!("not valid TOML (line {line}): {}", e.message()),
                None => format!("not valid TOML: {}", e.message()),
            })
        })?;
        let mut rules = Vec::new();
        let mut proxies = Proxies::default();
        for (name, value) in &document {
            match name.as_str() {
                "registries" => {
                    let registries = value
                        .as_table()
                        .ok_or_else(|| refuse("\"registries\" is not a table".to_owned()))?;
                    for (key, table) in registries {
                        let rule = parse_rule(key, table)
                            .map_err(|e| refuse(format!("registries.{key:?}: {e}")))?;
                        rules.push(rule);
                    }
                }
                "extra-env" => {
                    proxies =
                        parse_proxies(value).map_err(|e| refuse(format!("extra-env: {e}")))?;
                }
                other => {
                    return Err(refuse(format!(
                        "unknown key {other:?}; the file has \"registries\" tables only"
                    )));
                }
            }
        }
        // Most dots first (Contrast's order); then more labels; then the key's text. The
        // first match of this order is the best.
        rules.sort_by(|a, b| {
            b.dots()
                .cmp(&a.dots())
                .then(b.labels.len().cmp(&a.labels.len()))
                .then(a.key.cmp(&b.key))
        });
        for pair in rules.windows(2) {
            if pair[0].labels == pair[1].labels
                && pair[0].subdomains_only == pair[1].subdomains_only
            {
                return Err(refuse(format!(
                    "registries.{:?} and registries.{:?} name the same registries; keep one",
                    pair[0].key, pair[1].key
                )));
            }
        }
        Ok(PullerConfig {
            path: path.to_owned(),
            present: true,
            rules,
            proxies,
        })
    }

    /// The file, for messages.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Whether there was a file.
    pub(crate) fn is_present(&self) -> bool {
        self.present
    }

    /// The proxies every pull goes through.
    pub(crate) fn proxies(&self) -> &Proxies {
        &self.proxies
    }

    /// The rule for `registry` (`host[:port]` as in image references), if any.
    pub(crate) fn lookup(&self, registry: &str) -> Option<Matched<'_>> {
        let registry = normalize_key(registry);
        let labels: Vec<&str> = registry.split('.').collect();
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matches(&labels))
            .map(|(index, rule)| Matched {
                index,
                key: &rule.key,
                settings: &rule.settings,
            })
    }

    /// The rules with TLS settings of their own, by index.
    pub(crate) fn tls_rules(&self) -> impl Iterator<Item = (usize, &RegistrySettings)> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.settings.has_tls_settings())
            .map(|(index, rule)| (index, &rule.settings))
    }
}

/// `[extra-env]`: the three proxy variables (upper or lower case, as Go reads them).
fn parse_proxies(value: &toml::Value) -> Result<Proxies, String> {
    let table = value.as_table().ok_or("not a table")?;
    let mut proxies = Proxies::default();
    for (name, value) in table {
        let text = value
            .as_str()
            .ok_or_else(|| format!("{name} is not a string"))?
            .to_owned();
        let upper = name.to_ascii_uppercase();
        let slot = match upper.as_str() {
            "HTTPS_PROXY" => &mut proxies.https,
            "HTTP_PROXY" => &mut proxies.http,
            "NO_PROXY" => &mut proxies.no_proxy,
            _ => {
                return Err(format!(
                    "{name:?} is not supported; the image puller takes HTTPS_PROXY, HTTP_PROXY \
                     and NO_PROXY"
                ));
            }
        };
        let is_url = text.starts_with("http://") || text.starts_with("https://");
        if upper != "NO_PROXY" && !is_url {
            return Err(format!(
                "{name} = {text:?} is not a proxy URL; write http://host:port (or https://)"
            ));
        }
        if slot.replace(text).is_some() {
            return Err(format!(
                "{upper} is given twice (upper and lower case); keep one"
            ));
        }
    }
    Ok(proxies)
}

/// One `[registries."<key>"]` table.
fn parse_rule(key: &str, value: &toml::Value) -> Result<Rule, String> {
    let table = value.as_table().ok_or("not a table")?;
    let trimmed = key.strip_suffix('.').unwrap_or(key);
    let (subdomains_only, name) = match trimmed.strip_prefix('.') {
        Some(name) => (true, name),
        None => (false, trimmed),
    };
    let labels: Vec<String> = if name.is_empty() {
        if key != "." {
            return Err(format!(
                "{key:?} names no registry; write \".\" for every registry"
            ));
        }
        Vec::new()
    } else {
        let normalized = normalize_key(name);
        if name.contains('/')
            || (normalized != name.to_ascii_lowercase()
                && normalized != crate::reference::DOCKER_HUB)
            || normalized.split('.').any(str::is_empty)
        {
            return Err(
                "not a registry as image references write it (host or host:port, e.g. \
                 ghcr.io or registry.example:5000; no scheme, path or empty labels)"
                    .to_owned(),
            );
        }
        normalized.split('.').map(str::to_owned).collect()
    };
    // "." alone: every registry, exact-or-subdomain of the empty name.
    let subdomains_only = subdomains_only && !labels.is_empty();

    // Credentials are read as a Docker config's auths entry reads them; Go's TOML decoder
    // matches field names case-insensitively, so `Username` is `username`.
    let mut credential_fields = serde_json::Map::new();
    let mut settings = RegistrySettings::default();
    for (field, value) in table {
        let lower = field.to_ascii_lowercase();
        match lower.as_str() {
            "auth" | "username" | "password" | "registrytoken" | "identitytoken" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| format!("\"{field}\" is not a string"))?;
                if text.is_empty() {
                    return Err(format!(
                        "\"{field}\" is empty; give the credential, or leave the key out"
                    ));
                }
                credential_fields.insert(lower, serde_json::Value::String(text.to_owned()));
            }
            "ca-certs" => {
                let pem = value
                    .as_str()
                    .ok_or("\"ca-certs\" is not a string (PEM certificates)")?;
                settings.ca_certificates = Some(certificates(pem)?);
            }
            "insecure-skip-verify" => {
                settings.insecure_skip_verify = value
                    .as_bool()
                    .ok_or("\"insecure-skip-verify\" is not true or false")?;
            }
            "mirror" => {
                return Err(
                    "\"mirror\" is not supported by this image puller; remove it, and name the \
                     mirror in the image reference instead"
                        .to_owned(),
                );
            }
            _ => {
                return Err(format!(
                    "unknown key {field:?}; a registry takes auth, username, password, \
                     registrytoken, ca-certs and insecure-skip-verify"
                ));
            }
        }
    }
    if credential_fields.contains_key("username") != credential_fields.contains_key("password")
        && !credential_fields.contains_key("auth")
    {
        return Err("\"username\" and \"password\" go together".to_owned());
    }
    settings.credentials = match parse_entry(&serde_json::Value::Object(credential_fields))? {
        Entry::Credentials(credentials) => Some(credentials),
        Entry::Unsupported(what) => return Err(what),
        Entry::Empty => None,
    };
    Ok(Rule {
        key: key.to_owned(),
        labels,
        subdomains_only,
        settings,
    })
}

/// `ca-certs`: at least one certificate.
fn certificates(pem: &str) -> Result<Vec<Certificate>, String> {
    let certificates =
        pem_certificates(pem.as_bytes()).map_err(|e| format!("\"ca-certs\" is not PEM: {e}"))?;
    if certificates.is_empty() {
        return Err(
            "\"ca-certs\" holds no PEM certificate; the registry could not be verified \
             (give its CA certificate, or leave ca-certs out for the guest's roots)"
                .to_owned(),
        );
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> PullerConfig {
        PullerConfig::parse(text, "test.toml").unwrap()
    }

    fn refused(text: &str) -> String {
        PullerConfig::parse(text, "test.toml")
            .unwrap_err()
            .to_string()
    }

    fn key_for<'a>(config: &'a PullerConfig, registry: &str) -> Option<&'a str> {
        config.lookup(registry).map(|m| m.key)
    }

    fn basic(config: &PullerConfig, registry: &str) -> (String, String) {
        match &config.lookup(registry).unwrap().settings.credentials {
            Some(Credentials::Basic { username, password }) => {
                (username.clone(), password.to_string())
            }
            other => panic!("expected basic credentials for {registry}, got {other:?}"),
        }
    }

    #[test]
    fn keys_match_whole_labels_from_the_right() {
        let config = parse(
            r#"
            [registries."ghcr.io."]
            auth = "dTE6cDE="
            [registries.".corp.example"]
            username = "u2"
            password = "p2"
            [registries."registry.corp.example"]
            Username = "u3"
            Password = "p3"
            [registries."127.0.0.1:5000"]
            registrytoken = "t"
            "#,
        );
        assert_eq!(key_for(&config, "ghcr.io"), Some("ghcr.io."));
        assert_eq!(key_for(&config, "pkg.ghcr.io"), Some("ghcr.io."));
        assert_eq!(key_for(&config, "xghcr.io"), None, "labels, not suffixes");
        assert_eq!(key_for(&config, "corp.example"), None, "subdomains only");
        assert_eq!(key_for(&config, "a.corp.example"), Some(".corp.example"));
        assert_eq!(
            key_for(&config, "registry.corp.example"),
            Some("registry.corp.example"),
            "more labels win"
        );
        assert_eq!(key_for(&config, "127.0.0.1:5000"), Some("127.0.0.1:5000"));
        assert_eq!(key_for(&config, "127.0.0.1:5001"), None, "the port counts");
        assert_eq!(key_for(&config, "GHCR.IO"), Some("ghcr.io."));
        assert_eq!(basic(&config, "ghcr.io"), ("u1".into(), "p1".into()));
        assert_eq!(basic(&config, "x.corp.example"), ("u2".into(), "p2".into()));
        assert_eq!(
            basic(&config, "registry.corp.example"),
            ("u3".into(), "p3".into()),
            "Go's field names are matched without case"
        );
        assert!(matches!(
            config
                .lookup("127.0.0.1:5000")
                .unwrap()
                .settings
                .credentials,
            Some(Credentials::Bearer(_))
        ));
    }

    #[test]
    fn the_key_with_most_dots_wins_and_ties_are_decided_the_same_way_every_time() {
        let config = parse(
            r#"
            [registries.".corp"]
            auth = "YTpi"
            [registries."registry.corp"]
            auth = "YzpkCg=="
            [registries."corp"]
            auth = "ZTpm"
            "#,
        );
        // As in Contrast: ".corp" (one dot) beats "corp" for a subdomain; "registry.corp"
        // ties with ".corp" on dots (Contrast: map order) and wins on labels.
        assert_eq!(key_for(&config, "registry.corp"), Some("registry.corp"));
        assert_eq!(key_for(&config, "other.corp"), Some(".corp"));
        assert_eq!(key_for(&config, "corp"), Some("corp"));
        let every = parse("[registries.\".\"]\nauth = \"YTpi\"\n");
        assert_eq!(key_for(&every, "anything.example:443"), Some("."));
        assert_eq!(key_for(&every, "docker.io"), Some("."));
    }

    #[test]
    fn extra_env_sets_the_proxies() {
        let config = parse(
            "[extra-env]\nHTTPS_PROXY = \"http://proxy:3128\"\nhttp_proxy = \"http://p:80\"\n\
             NO_PROXY = \"10.0.0.0/8,.svc\"\n",
        );
        assert_eq!(
            config.proxies(),
            &Proxies {
                https: Some("http://proxy:3128".into()),
                http: Some("http://p:80".into()),
                no_proxy: Some("10.0.0.0/8,.svc".into()),
            }
        );
        assert_eq!(parse("").proxies(), &Proxies::default());
    }

    #[test]
    fn docker_hub_has_one_name() {
        let config = parse("[registries.\"index.docker.io\"]\nauth = \"YTpi\"\n");
        assert_eq!(key_for(&config, "docker.io"), Some("index.docker.io"));
    }

    #[test]
    fn tls_settings_are_read() {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let config = parse(&format!(
            "[registries.\"a.example\"]\nca-certs = '''\n{pem}'''\n\
             [registries.\"b.example\"]\ninsecure-skip-verify = true\n\
             [registries.\"c.example\"]\nauth = \"YTpi\"\n"
        ));
        let a = config.lookup("a.example").unwrap().settings;
        assert_eq!(a.ca_certificates.as_ref().unwrap().len(), 1);
        assert!(
            config
                .lookup("b.example")
                .unwrap()
                .settings
                .insecure_skip_verify
        );
        let with_tls: Vec<usize> = config.tls_rules().map(|(i, _)| i).collect();
        assert_eq!(with_tls.len(), 2, "c.example needs no client of its own");
    }

    #[test]
    fn bad_and_unsupported_entries_are_refused_by_name() {
        for (text, why) in [
            ("registries = 1", "\"registries\" is not a table"),
            ("[registries.\"r\"]\nauth = \"%%%\"", "not base64"),
            ("[registries.\"r\"]\nauth = 5", "\"auth\" is not a string"),
            ("[registries.\"r\"]\nusername = \"u\"", "go together"),
            ("[registries.\"r\"]\nidentitytoken = \"x\"", "identitytoken"),
            (
                "[registries.\"r\"]\nmirror = \"https://m\"",
                "\"mirror\" is not supported",
            ),
            (
                "[registries.\"r\"]\nca-certs = \"none\"",
                "holds no PEM certificate",
            ),
            (
                "[registries.\"r\"]\ninsecure-skip-verify = \"yes\"",
                "not true or false",
            ),
            (
                "[registries.\"r\"]\npasword = \"x\"",
                "unknown key \"pasword\"",
            ),
            (
                "[registries.\"https://r/v2\"]\nauth = \"YTpi\"",
                "as image references write it",
            ),
            ("[registries.\"a..b\"]\nauth = \"YTpi\"", "empty labels"),
            ("[registries.\"..\"]\nauth = \"YTpi\"", "names no registry"),
            (
                "[registries.\"https://index.docker.io/v1/\"]\nauth = \"YTpi\"",
                "as image references write it",
            ),
            (
                "[registries.\"r\"]\nusername = \"u\"\npassword = \"\"",
                "\"password\" is empty",
            ),
            (
                "[registries.\"ghcr.io\"]\nauth = \"YTpi\"\n[registries.\"GHCR.io.\"]\nauth = \"YTpi\"",
                "name the same registries",
            ),
            (
                "[registries.\"docker.io\"]\nauth = \"YTpi\"\n[registries.\"index.docker.io\"]\nauth = \"YTpi\"",
                "name the same registries",
            ),
            (
                "[registries.\"r\"]\nauth = \"YTpi\"\n\nauth2 = ",
                "(line 4)",
            ),
            (
                "[extra-env]\nFTP_PROXY = \"http://p\"",
                "\"FTP_PROXY\" is not supported",
            ),
            ("[extra-env]\nHTTPS_PROXY = \"p:3128\"", "not a proxy URL"),
            (
                "[extra-env]\nHTTPS_PROXY = \"http://a\"\nhttps_proxy = \"http://b\"",
                "given twice",
            ),
            ("[registry]\n", "unknown key \"registry\""),
            ("[registries", "not valid TOML"),
        ] {
            let err = refused(text);
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains("test.toml"), "names the file: {err}");
        }
    }

    #[test]
    fn load_bounds_the_file_and_a_missing_one_means_anonymous() {
        let dir = std::env::temp_dir().join(format!("puller-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let absent = PullerConfig::load(&dir.join("absent.toml")).unwrap();
        assert!(!absent.is_present());
        assert!(absent.lookup("ghcr.io").is_none());
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_PULLER_CONFIG_SIZE as usize + 1]).unwrap();
        let err = PullerConfig::load(&big).unwrap_err().to_string();
        assert!(err.contains("more than the"), "{err}");
        let binary = dir.join("binary.toml");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        let err = PullerConfig::load(&binary).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn credentials_do_not_show_in_debug_output() {
        let config = parse("[registries.\"r\"]\nauth = \"dXNlcjpodW50ZXIy\"\n");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
