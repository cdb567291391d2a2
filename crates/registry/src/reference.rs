//! Image references: parsing and normalization with Docker's rules.
//!
//! The grammar is Docker's (`distribution/reference`): `[domain/]path[:tag][@digest]`.
//! Normalization follows `docker pull`: no domain means `docker.io`, a single path
//! component on `docker.io` gets `library/`, `index.docker.io` is `docker.io`, and a
//! reference with neither tag nor digest means the tag `latest`. Digests are SHA-256 only:
//! that is what registries, containerd and the guest pull use, and what this crate can check.

use std::fmt;

use crate::error::RegistryError;

/// The registry that references without a domain name.
pub const DOCKER_HUB: &str = "docker.io";
/// The old name of [`DOCKER_HUB`]; normalized to it.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The tag a reference without tag and digest means.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of a name (domain and path).
const MAX_NAME_LEN: usize = 255;
/// Docker's limit on the length of a tag.
const MAX_TAG_LEN: usize = 128;

/// A parsed and normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// The reference as written (kept for [`ImageReference::pinned`]).
    original: String,
    /// The registry, `host[:port]` (`docker.io` for Docker Hub).
    registry: String,
    /// The repository path, e.g. `library/nginx`.
    repository: String,
    /// The tag as written; `None` when only a digest was given or nothing was.
    tag: Option<String>,
    /// The digest as written (`sha256:<64 hex>`).
    digest: Option<String>,
}

impl ImageReference {
    /// Parses `reference` with Docker's grammar and normalization rules. The error names the
    /// reference and the rule it breaks.
    pub fn parse(reference: &str) -> Result<ImageReference, RegistryError> {
        let refuse = |rule: &str| RegistryError::InvalidReference {
            reference: reference.to_owned(),
            rule: rule.to_owned(),
        };
        if reference.is_empty() {
            return Err(refuse("the reference is empty"));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(refuse(
                "a reference contains no whitespace or control characters",
            ));
        }

        // The digest follows the first '@' (a name and tag never contain one).
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest).map_err(refuse)?)),
            None => (reference, None),
        };
        // The tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &name_and_tag[at + 1..];
                check_tag(tag).map_err(refuse)?;
                (&name_and_tag[..at], Some(tag.to_owned()))
            }
            None => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(refuse("the repository name is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(refuse(
                "the repository name (with its registry) is at most 255 characters long",
            ));
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse(
                "a 64-character hex string is an image ID, not a reference; write repository@sha256:<digest>",
            ));
        }

        let (domain, path) = split_domain(name);
        if let Some(domain) = domain {
            check_domain(domain).map_err(refuse)?;
        }
        check_path(path).map_err(refuse)?;

        let registry = match domain {
            None | Some(DOCKER_HUB_LEGACY) => DOCKER_HUB.to_owned(),
            Some(domain) => domain.to_owned(),
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        Ok(ImageReference {
            original: reference.to_owned(),
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The reference as written.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// The registry, `host[:port]`; `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag as written, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest as written, if any (`sha256:<64 hex>`).
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The tag the registry is asked for when there is no digest: the tag, or `latest`.
    pub fn effective_tag(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// The normalized reference: `registry/repository[:tag][@digest]`, with `:latest` when
    /// neither tag nor digest was given (`nginx` → `docker.io/library/nginx:latest`).
    pub fn normalized(&self) -> String {
        let mut out = format!("{}/{}", self.registry, self.repository);
        match (&self.tag, &self.digest) {
            (Some(tag), _) => {
                out.push(':');
                out.push_str(tag);
            }
            (None, None) => {
                out.push(':');
                out.push_str(DEFAULT_TAG);
            }
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }

    /// What identifies the content: `registry/repository@digest` when a digest is given (the
    /// tag does not matter then: registries and containerd fetch by digest), else
    /// `registry/repository:tag`. The key of the cache and of deduplication.
    pub fn content_key(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}/{}@{digest}", self.registry, self.repository),
            None => format!(
                "{}/{}:{}",
                self.registry,
                self.repository,
                self.effective_tag()
            ),
        }
    }

    /// The reference as written with `@digest` appended, replacing a digest that was there;
    /// the tag stays (`nginx:1.27` → `nginx:1.27@sha256:…`). What `--pin-images` writes.
    pub fn pinned(&self, digest: &str) -> String {
        let without_digest = match self.original.split_once('@') {
            Some((rest, _)) => rest,
            None => &self.original,
        };
        format!("{without_digest}@{digest}")
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

/// Checks a digest: only `sha256:` with 64 lowercase hex digits.
pub(crate) fn parse_digest(digest: &str) -> Result<String, &'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("a digest is <algorithm>:<hex>, e.g. sha256:<64 hex digits>");
    };
    if algorithm != "sha256" {
        let valid_algorithm = algorithm
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b));
        return Err(if valid_algorithm {
            "only sha256 digests are supported"
        } else {
            "a digest is <algorithm>:<hex>, e.g. sha256:<64 hex digits>"
        });
    }
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("a sha256 digest has exactly 64 lowercase hex digits");
    }
    Ok(digest.to_owned())
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let mut bytes = tag.bytes();
    let Some(first) = bytes.next() else {
        return Err("the tag after ':' is empty");
    };
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err("a tag starts with a letter, digit or '_'");
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err("a tag contains only letters, digits, '_', '.' and '-'");
    }
    if tag.len() > MAX_TAG_LEN {
        return Err("a tag is at most 128 characters long");
    }
    Ok(())
}

/// Docker's rule: the first component is a domain if there is a '/' after it and it
/// contains '.' or ':', is `localhost`, or has an upper-case letter.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// A domain: DNS labels (`[A-Za-z0-9]` with inner '-') joined by '.', or a bracketed IPv6
/// address, then an optional `:port`.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return Err("an IPv6 registry address is written [address] with the closing ']'");
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the registry address in [...] is not an IPv6 address");
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err("only ':port' may follow a bracketed IPv6 registry address"),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the registry host name is empty");
        }
        for label in host.split('.') {
            let bytes = label.as_bytes();
            let valid = !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-');
            if !valid {
                return Err(
                    "a registry host name is dot-separated labels of letters, digits and inner '-'",
                );
            }
        }
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err("a registry port is a number from 1 to 65535");
        }
    }
    Ok(())
}

/// The repository path: components of `[a-z0-9]+` joined by one separator each ('.', '_',
/// '__', or one or more '-'), separated by '/'.
fn check_path(path: &str) -> Result<(), &'static str> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err(
                "a repository path has no empty components (no leading, trailing or double '/')",
            );
        }
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("a repository name must be lowercase");
        }
        let bytes = component.as_bytes();
        let mut i = 0;
        let mut previous_was_separator = true; // a component cannot start with one
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_lowercase() || b.is_ascii_digit() {
                previous_was_separator = false;
                i += 1;
                continue;
            }
            let separator_len = match b {
                b'.' => 1,
                b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
                b'_' => 1,
                b'-' => bytes[i..].iter().take_while(|&&c| c == b'-').count(),
                _ => {
                    return Err(
                        "a repository path contains only lowercase letters, digits, '.', '_', '-' and '/'",
                    );
                }
            };
            if previous_was_separator {
                return Err(
                    "in a repository path, '.', '_', '__' and '-' only stand between letters or digits",
                );
            }
            previous_was_separator = true;
            i += separator_len;
        }
        if previous_was_separator {
            return Err(
                "in a repository path, '.', '_', '__' and '-' only stand between letters or digits",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalization_table() {
        // (input, normalized, registry, repository, content key)
        let digest_ref = format!("nginx@{D}");
        let tag_digest_ref = format!("nginx:1.27@{D}");
        let host_digest_ref = format!("127.0.0.1:5000/app@{D}");
        let cases: Vec<(&str, String, &str, &str, String)> = vec![
            (
                "nginx",
                "docker.io/library/nginx:latest".into(),
                "docker.io",
                "library/nginx",
                "docker.io/library/nginx:latest".into(),
            ),
            (
                "nginx:1.27",
                "docker.io/library/nginx:1.27".into(),
                "docker.io",
                "library/nginx",
                "docker.io/library/nginx:1.27".into(),
            ),
            (
                "library/nginx",
                "docker.io/library/nginx:latest".into(),
                "docker.io",
                "library/nginx",
                "docker.io/library/nginx:latest".into(),
            ),
            (
                "docker.io/nginx",
                "docker.io/library/nginx:latest".into(),
                "docker.io",
                "library/nginx",
                "docker.io/library/nginx:latest".into(),
            ),
            (
                "index.docker.io/nginx:1",
                "docker.io/library/nginx:1".into(),
                "docker.io",
                "library/nginx",
                "docker.io/library/nginx:1".into(),
            ),
            (
                "bitnami/redis:7",
                "docker.io/bitnami/redis:7".into(),
                "docker.io",
                "bitnami/redis",
                "docker.io/bitnami/redis:7".into(),
            ),
            (
                "ghcr.io/edgelesssys/contrast/coordinator:v1.0.0",
                "ghcr.io/edgelesssys/contrast/coordinator:v1.0.0".into(),
                "ghcr.io",
                "edgelesssys/contrast/coordinator",
                "ghcr.io/edgelesssys/contrast/coordinator:v1.0.0".into(),
            ),
            (
                "localhost/app",
                "localhost/app:latest".into(),
                "localhost",
                "app",
                "localhost/app:latest".into(),
            ),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t".into(),
                "localhost:5000",
                "a/b",
                "localhost:5000/a/b:t".into(),
            ),
            (
                "127.0.0.1:5000/app:v1",
                "127.0.0.1:5000/app:v1".into(),
                "127.0.0.1:5000",
                "app",
                "127.0.0.1:5000/app:v1".into(),
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest".into(),
                "[::1]:5000",
                "app",
                "[::1]:5000/app:latest".into(),
            ),
            (
                "Registry/app",
                "Registry/app:latest".into(),
                "Registry",
                "app",
                "Registry/app:latest".into(),
            ),
            (
                "a.b/c_d/e__f/g-h/i--j/k.l:T_1.x-y",
                "a.b/c_d/e__f/g-h/i--j/k.l:T_1.x-y".into(),
                "a.b",
                "c_d/e__f/g-h/i--j/k.l",
                "a.b/c_d/e__f/g-h/i--j/k.l:T_1.x-y".into(),
            ),
            (
                &digest_ref,
                format!("docker.io/library/nginx@{D}"),
                "docker.io",
                "library/nginx",
                format!("docker.io/library/nginx@{D}"),
            ),
            (
                &tag_digest_ref,
                format!("docker.io/library/nginx:1.27@{D}"),
                "docker.io",
                "library/nginx",
                format!("docker.io/library/nginx@{D}"),
            ),
            (
                &host_digest_ref,
                format!("127.0.0.1:5000/app@{D}"),
                "127.0.0.1:5000",
                "app",
                format!("127.0.0.1:5000/app@{D}"),
            ),
        ];
        for (input, normalized, registry, repository, key) in cases {
            let parsed = ImageReference::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert_eq!(
                parsed.normalized(),
                normalized,
                "normalized form of {input:?}"
            );
            assert_eq!(parsed.registry(), registry, "registry of {input:?}");
            assert_eq!(parsed.repository(), repository, "repository of {input:?}");
            assert_eq!(parsed.content_key(), key, "content key of {input:?}");
            assert_eq!(parsed.original(), input);
        }
    }

    #[test]
    fn refusal_table() {
        let long_name = "a".repeat(256);
        let long_tag = format!("app:{}", "t".repeat(129));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            (" nginx".into(), "whitespace"),
            ("nginx:1.27\n".into(), "whitespace"),
            ("Nginx".into(), "lowercase"),
            ("ghcr.io/Org/app".into(), "lowercase"),
            ("nginx:".into(), "tag after ':' is empty"),
            ("nginx:-x".into(), "tag starts"),
            ("nginx:a+b".into(), "tag contains only"),
            (long_tag, "at most 128"),
            (long_name, "at most 255"),
            ("nginx@".into(), "<algorithm>:<hex>"),
            ("nginx@sha256".into(), "<algorithm>:<hex>"),
            ("nginx@sha256:abc".into(), "64 lowercase hex"),
            (
                format!("nginx@sha256:{}", "A".repeat(64)),
                "64 lowercase hex",
            ),
            (format!("nginx@sha512:{}", "a".repeat(128)), "only sha256"),
            (format!("nginx@{D}@{D}"), "64 lowercase hex"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
                "image ID",
            ),
            ("/nginx".into(), "empty components"),
            ("ghcr.io/".into(), "empty components"),
            ("ghcr.io//app".into(), "empty components"),
            ("ghcr.io/app/".into(), "empty components"),
            ("ghcr.io/-app".into(), "only stand between"),
            ("ghcr.io/app-".into(), "only stand between"),
            ("ghcr.io/a..b".into(), "only stand between"),
            ("ghcr.io/a___b".into(), "only stand between"),
            ("ghcr.io/a$b".into(), "contains only lowercase"),
            ("-reg.io/app".into(), "dot-separated labels"),
            ("reg..io/app".into(), "dot-separated labels"),
            ("reg_x.io/app".into(), "dot-separated labels"),
            (":5000/app".into(), "host name is empty"),
            ("reg.io:/app".into(), "port is a number"),
            ("reg.io:0/app".into(), "port is a number"),
            ("reg.io:65536/app".into(), "port is a number"),
            ("reg.io:50x/app".into(), "port is a number"),
            ("[::1/app".into(), "closing ']'"),
            ("[zz]:5000/app".into(), "not an IPv6"),
            ("[::1]x/app".into(), "only ':port'"),
            (":tag".into(), "repository name is empty"),
        ];
        for (input, rule) in cases {
            match ImageReference::parse(&input) {
                Ok(parsed) => panic!("{input:?} should be refused, parsed as {parsed}"),
                Err(RegistryError::InvalidReference {
                    reference,
                    rule: got,
                }) => {
                    assert_eq!(reference, input);
                    assert!(
                        got.contains(rule),
                        "{input:?}: rule {got:?} should mention {rule:?}"
                    );
                    let message = RegistryError::InvalidReference {
                        reference,
                        rule: got,
                    }
                    .to_string();
                    assert!(message.contains(&format!("{input:?}")), "{message}");
                }
                Err(other) => panic!("{input:?}: unexpected error {other}"),
            }
        }
    }

    #[test]
    fn pinned_keeps_the_spelling_and_tag_and_replaces_a_digest() {
        let new = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let cases = [
            ("nginx", format!("nginx@{new}")),
            ("nginx:1.27", format!("nginx:1.27@{new}")),
            (&*format!("nginx:1.27@{D}"), format!("nginx:1.27@{new}")),
            (
                &*format!("127.0.0.1:5000/app@{D}"),
                format!("127.0.0.1:5000/app@{new}"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ImageReference::parse(input).unwrap().pinned(new), want);
        }
    }

    #[test]
    fn effective_tag_and_accessors() {
        let r = ImageReference::parse("nginx").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.effective_tag(), "latest");
        assert_eq!(r.digest(), None);
        let r = ImageReference::parse(&format!("nginx:1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/nginx:1@{D}"));
    }
}
