//! Registry credentials from a Docker config file (`config.json`).
//!
//! Read: `auths.<registry>.auth` (base64 of `user:password`), `username`/`password`, and
//! `registrytoken` (a bearer token). Keys are matched like Docker matches them: the scheme
//! and any path are dropped (`https://index.docker.io/v1/` is Docker Hub), host names
//! compare case-insensitively, and `index.docker.io`/`registry-1.docker.io` mean
//! `docker.io`. Not supported: credential helpers (`credHelpers`, `credsStore`) and
//! `identitytoken` (an OAuth refresh token). A helper named for a registry is an error for
//! that registry's images rather than an anonymous attempt, so the user learns why.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::RegistryError;
use crate::reference::DOCKER_HUB;

/// The name of the Docker config file in its directory.
const CONFIG_FILE: &str = "config.json";
/// A Docker config larger than this is refused (they are a few KiB).
const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// Credentials for one registry.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// User name and password (HTTP basic, or exchanged for a token by the registry's
    /// token service).
    Basic {
        username: String,
        password: Zeroizing<String>,
    },
    /// A bearer token used as is.
    Bearer(Zeroizing<String>),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// The credentials in the form the OCI client takes.
    pub(crate) fn to_registry_auth(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            Credentials::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.to_string())
            }
            Credentials::Bearer(token) => {
                oci_client::secrets::RegistryAuth::Bearer(token.to_string())
            }
        }
    }
}

/// What the Docker config says about one registry.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// Credentials from `auths`.
    Credentials(Credentials),
    /// `credHelpers` names a helper for the registry.
    Helper(String),
    /// The entry uses something this crate cannot use (e.g. `identitytoken`).
    Unsupported(String),
    /// Nothing for this registry: access is anonymous.
    Anonymous,
}

/// One entry of `auths`, as read.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Credentials(Credentials),
    Unsupported(String),
    Empty,
}

/// The parts of a Docker config this crate uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerConfig {
    /// The file read (or that would have been read); for messages.
    path: Option<PathBuf>,
    /// Entries of `auths` by normalized registry.
    auths: BTreeMap<String, Entry>,
    /// `credHelpers` by normalized registry.
    helpers: BTreeMap<String, String>,
    /// `credsStore`, the helper for every registry not in `auths`.
    creds_store: Option<String>,
}

impl DockerConfig {
    /// Reads `config.json` from `dir`, or from `$DOCKER_CONFIG` or `~/.docker` when `dir` is
    /// `None`. A missing file means no credentials; an unreadable or malformed one is an
    /// error naming the file.
    pub(crate) fn load(dir: Option<&Path>) -> Result<DockerConfig, RegistryError> {
        let dir = match dir {
            Some(dir) => Some(dir.to_path_buf()),
            None => match std::env::var_os("DOCKER_CONFIG") {
                Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
                _ => std::env::home_dir().map(|home| home.join(".docker")),
            },
        };
        let Some(dir) = dir else {
            return Ok(DockerConfig::default());
        };
        let path = dir.join(CONFIG_FILE);
        let refuse = |detail: String| RegistryError::DockerConfig {
            path: path.display().to_string(),
            detail,
        };
        let Some(bytes) =
            crate::local_files::read_small_file(&path, MAX_CONFIG_SIZE, "a docker config")
                .map_err(refuse)?
        else {
            tracing::debug!(path = %path.display(), "no docker config; registry access is anonymous");
            return Ok(DockerConfig {
                path: Some(path),
                ..DockerConfig::default()
            });
        };
        let mut config = DockerConfig::parse(&bytes).map_err(refuse)?;
        config.path = Some(path);
        Ok(config)
    }

    /// Parses the JSON of a Docker config.
    fn parse(bytes: &[u8]) -> Result<DockerConfig, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let root = value
            .as_object()
            .ok_or("the top level is not a JSON object")?;
        let mut config = DockerConfig::default();

        if let Some(auths) = root.get("auths") {
            let auths = auths.as_object().ok_or("\"auths\" is not a JSON object")?;
            for (key, entry) in auths {
                let entry = parse_entry(entry).map_err(|e| format!("auths[{key:?}]: {e}"))?;
                let registry = normalize_key(key);
                // Several keys can name one registry (`https://r/v1/` and `r`): the one
                // with usable credentials wins.
                match (config.auths.get(&registry), &entry) {
                    (Some(Entry::Credentials(_)), _) => {}
                    (Some(Entry::Unsupported(_)), Entry::Empty) => {}
                    _ => {
                        config.auths.insert(registry, entry);
                    }
                }
            }
        }
        if let Some(helpers) = root.get("credHelpers") {
            let helpers = helpers
                .as_object()
                .ok_or("\"credHelpers\" is not a JSON object")?;
            for (key, helper) in helpers {
                let helper = helper
                    .as_str()
                    .ok_or_else(|| format!("credHelpers[{key:?}] is not a string"))?;
                config.helpers.insert(normalize_key(key), helper.to_owned());
            }
        }
        if let Some(store) = root.get("credsStore") {
            let store = store.as_str().ok_or("\"credsStore\" is not a string")?;
            if !store.is_empty() {
                config.creds_store = Some(store.to_owned());
            }
        }
        Ok(config)
    }

    /// What the config says about `registry` (`host[:port]`, `docker.io` for Docker Hub).
    /// A helper named in `credHelpers` takes precedence, as in Docker.
    pub(crate) fn lookup(&self, registry: &str) -> Lookup {
        let registry = normalize_key(registry);
        if let Some(helper) = self.helpers.get(&registry) {
            return Lookup::Helper(helper.clone());
        }
        match self.auths.get(&registry) {
            Some(Entry::Credentials(credentials)) => Lookup::Credentials(credentials.clone()),
            Some(Entry::Unsupported(what)) => Lookup::Unsupported(what.clone()),
            Some(Entry::Empty) | None => Lookup::Anonymous,
        }
    }

    /// The config file, for messages.
    pub(crate) fn path_display(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "(none: neither DOCKER_CONFIG nor HOME is set)".to_owned(),
        }
    }

    /// `credsStore`, if set (not used; named in hints).
    pub(crate) fn creds_store(&self) -> Option<&str> {
        self.creds_store.as_deref()
    }
}

/// Reads one `auths` entry.
pub(crate) fn parse_entry(entry: &serde_json::Value) -> Result<Entry, String> {
    let entry = entry.as_object().ok_or("not a JSON object")?;
    let field = |name: &str| -> Result<Option<&str>, String> {
        match entry.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("\"{name}\" is not a string")),
        }
    };
    if let Some(auth) = field("auth")? {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| "\"auth\" is not base64 (of user:password)".to_owned())?,
        );
        let text = std::str::from_utf8(&decoded)
            .map_err(|_| "\"auth\" does not decode to text (user:password)".to_owned())?;
        let (username, password) = text
            .split_once(':')
            .ok_or("\"auth\" does not decode to user:password (no ':')")?;
        if username.is_empty() {
            return Err("\"auth\" has an empty user name".to_owned());
        }
        return Ok(Entry::Credentials(Credentials::Basic {
            username: username.to_owned(),
            password: Zeroizing::new(password.to_owned()),
        }));
    }
    if let (Some(username), Some(password)) = (field("username")?, field("password")?) {
        return Ok(Entry::Credentials(Credentials::Basic {
            username: username.to_owned(),
            password: Zeroizing::new(password.to_owned()),
        }));
    }
    if let Some(token) = field("registrytoken")? {
        return Ok(Entry::Credentials(Credentials::Bearer(Zeroizing::new(
            token.to_owned(),
        ))));
    }
    if field("identitytoken")?.is_some() {
        return Ok(Entry::Unsupported(
            "\"identitytoken\" (an OAuth refresh token) is not supported; use \"auth\" or \"username\"/\"password\""
                .to_owned(),
        ));
    }
    Ok(Entry::Empty)
}

/// Docker's key matching: drop the scheme and any path, compare host names
/// case-insensitively, and call Docker Hub `docker.io`.
pub(crate) fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn basic(lookup: Lookup) -> (String, String) {
        match lookup {
            Lookup::Credentials(Credentials::Basic { username, password }) => {
                (username, password.to_string())
            }
            other => panic!("expected basic credentials, got {other:?}"),
        }
    }

    #[test]
    fn reads_auth_and_username_password_and_matches_keys_like_docker() {
        let config = DockerConfig::parse(
            br#"{
              "auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "http://127.0.0.1:5000": {"username": "u", "password": "p:w"},
                "Reg.Example.com/some/path": {"auth": "YTpiOmM="},
                "empty.example": {},
                "token.example": {"registrytoken": "tok"},
                "id.example": {"identitytoken": "refresh"}
              },
              "credHelpers": {"gcr.io": "gcloud"},
              "credsStore": "desktop"
            }"#,
        )
        .unwrap();
        assert_eq!(
            basic(config.lookup("docker.io")),
            ("hub".into(), "secret".into())
        );
        assert_eq!(
            basic(config.lookup("127.0.0.1:5000")),
            ("u".into(), "p:w".into())
        );
        // The password may contain ':'; only the first one separates.
        assert_eq!(
            basic(config.lookup("reg.example.com")),
            ("a".into(), "b:c".into())
        );
        assert!(matches!(config.lookup("empty.example"), Lookup::Anonymous));
        assert!(matches!(config.lookup("other.example"), Lookup::Anonymous));
        assert!(matches!(
            config.lookup("token.example"),
            Lookup::Credentials(Credentials::Bearer(_))
        ));
        assert!(
            matches!(config.lookup("id.example"), Lookup::Unsupported(s) if s.contains("identitytoken"))
        );
        assert!(matches!(config.lookup("gcr.io"), Lookup::Helper(h) if h == "gcloud"));
        assert_eq!(config.creds_store(), Some("desktop"));
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let config =
            DockerConfig::parse(br#"{"auths": {"r.io": {"username": "user", "password": "hunter2"}, "t.io": {"registrytoken": "tok3n"}}}"#)
                .unwrap();
        let text = format!(
            "{config:?} {:?} {:?}",
            config.lookup("r.io"),
            config.lookup("t.io")
        );
        assert!(text.contains("user"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("tok3n"), "{text}");
    }

    #[test]
    fn refusals_name_the_entry() {
        let cases: [(&[u8], &str); 9] = [
            (b"not json", "not valid JSON"),
            (b"[]", "top level"),
            (br#"{"auths": []}"#, "\"auths\" is not"),
            (
                br#"{"auths": {"r.io": "x"}}"#,
                "auths[\"r.io\"]: not a JSON object",
            ),
            (br#"{"auths": {"r.io": {"auth": "***"}}}"#, "not base64"),
            (br#"{"auths": {"r.io": {"auth": "dXNlcg=="}}}"#, "no ':'"),
            (
                br#"{"auths": {"r.io": {"auth": 5}}}"#,
                "\"auth\" is not a string",
            ),
            (br#"{"credHelpers": {"r.io": 1}}"#, "credHelpers[\"r.io\"]"),
            (br#"{"credsStore": {}}"#, "credsStore"),
        ];
        for (input, want) in cases {
            let err = DockerConfig::parse(input).unwrap_err();
            assert!(
                err.contains(want),
                "{}: {err:?} should mention {want:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn load_from_directory_missing_and_corrupt() {
        let dir = std::env::temp_dir().join(format!(
            "contrast-registry-docker-config-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Missing file: anonymous, no error.
        let config = DockerConfig::load(Some(&dir)).unwrap();
        assert!(matches!(config.lookup("r.io"), Lookup::Anonymous));
        // Corrupt file: an error naming the file.
        std::fs::write(dir.join("config.json"), b"{").unwrap();
        let err = DockerConfig::load(Some(&dir)).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("not valid JSON"),
            "{err}"
        );
        std::fs::write(
            dir.join("config.json"),
            br#"{"auths": {"r.io": {"auth": "dTpw"}}}"#,
        )
        .unwrap();
        let config = DockerConfig::load(Some(&dir)).unwrap();
        assert_eq!(basic(config.lookup("r.io")), ("u".into(), "p".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
