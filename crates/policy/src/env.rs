//! A container's environment, as kubelet and containerd build it.
//!
//! containerd starts from `PATH` (its default), applies the image's `Env`, then the
//! variables kubelet passes; a later entry with the same name replaces the earlier one.
//! Kubelet's variables are `envFrom` (each source's keys, with the prefix), then `env` in
//! order, later ones replacing earlier ones. `$(NAME)` in a `value` expands to a variable
//! defined before it in the same container; `$$` is a literal `$`; a reference to a name
//! that is not defined stays as written.

use base64::Engine as _;
use serde_json::Value;

use crate::json::{
    Obj, as_obj, check_known, get_array, get_bool, get_obj, get_str, index, invalid, join, member,
    regex_escape, require_str, unsupported,
};
use crate::{PodInput, PolicyError};

/// A variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvValue {
    /// Known when the policy is generated.
    Exact(String),
    /// Only known at run time: admitted by pattern; `example` matches it.
    Pattern {
        /// An anchored pattern for the value.
        regex: String,
        /// A value the pattern admits.
        example: String,
    },
    /// The namespace the sandbox runs in, for a pod whose resource names none.
    SandboxNamespace,
}

/// Variables in the order they were first defined; redefining one replaces its value in
/// place.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnvList {
    pub(crate) entries: Vec<(String, EnvValue)>,
}

impl EnvList {
    pub(crate) fn set(&mut self, name: &str, value: EnvValue) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_owned(), value)),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&EnvValue> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// What a container's environment depends on besides its own fields.
#[derive(Debug)]
pub(crate) struct EnvContext<'a> {
    pub(crate) input: &'a PodInput<'a>,
    pub(crate) namespace: &'a str,
    /// The resource names no namespace: `namespace` is only the example.
    pub(crate) any_namespace: bool,
    pub(crate) name_regex: &'a str,
    pub(crate) name_example: &'a str,
    pub(crate) service_account: &'a str,
    pub(crate) service_links: bool,
}

const ENV_VAR_FIELDS: &[&str] = &["name", "value", "valueFrom"];
const VALUE_FROM_FIELDS: &[&str] = &[
    "configMapKeyRef",
    "secretKeyRef",
    "fieldRef",
    "resourceFieldRef",
    "fileKeyRef",
];
const KEY_REF_FIELDS: &[&str] = &["name", "key", "optional"];
const FIELD_REF_FIELDS: &[&str] = &["fieldPath", "apiVersion"];
const RESOURCE_FIELD_REF_FIELDS: &[&str] = &["resource", "containerName", "divisor"];
const ENV_FROM_FIELDS: &[&str] = &["configMapRef", "secretRef", "prefix"];
const OBJECT_REF_FIELDS: &[&str] = &["name", "optional"];

const IPV4: &str = r"[0-9]{1,3}(\.[0-9]{1,3}){3}";
const IPV6: &str = r"[0-9a-fA-F:]*:[0-9a-fA-F:.]*";

fn ip_regex() -> String {
    format!("({IPV4}|{IPV6})")
}

/// The variables kubelet passes for a container (`envFrom`, then `env`).
pub(crate) fn kubelet_env(
    ctx: &EnvContext<'_>,
    container: &Obj,
    path: &str,
) -> Result<EnvList, PolicyError> {
    let mut env = EnvList::default();
    let from_path = join(path, "envFrom");
    for (i, source) in get_array(container, "envFrom", path)?.iter().enumerate() {
        let source_path = index(&from_path, i);
        env_from(ctx, as_obj(source, &source_path)?, &source_path, &mut env)?;
    }
    let env_path = join(path, "env");
    for (i, var) in get_array(container, "env", path)?.iter().enumerate() {
        let var_path = index(&env_path, i);
        let var = as_obj(var, &var_path)?;
        check_known(var, &var_path, ENV_VAR_FIELDS)?;
        let name = require_str(var, "name", &var_path)?;
        if name.contains('=') {
            return Err(invalid(
                join(&var_path, "name"),
                format!("{name:?} contains '='"),
            ));
        }
        let value = match get_obj(var, "valueFrom", &var_path)? {
            Some(from) => value_from(ctx, from, &join(&var_path, "valueFrom"))?,
            None => {
                let raw = get_str(var, "value", &var_path)?.unwrap_or_default();
                Some(EnvValue::Exact(expand(
                    raw,
                    &env,
                    ctx,
                    &join(&var_path, "value"),
                )?))
            }
        };
        if let Some(value) = value {
            env.set(name, value);
        }
    }
    Ok(env)
}

fn env_from(
    ctx: &EnvContext<'_>,
    source: &Obj,
    path: &str,
    env: &mut EnvList,
) -> Result<(), PolicyError> {
    check_known(source, path, ENV_FROM_FIELDS)?;
    let prefix = get_str(source, "prefix", path)?.unwrap_or_default();
    let (kind, reference, ref_path) = match (
        get_obj(source, "configMapRef", path)?,
        get_obj(source, "secretRef", path)?,
    ) {
        (Some(r), None) => (Kind::ConfigMap, r, join(path, "configMapRef")),
        (None, Some(r)) => (Kind::Secret, r, join(path, "secretRef")),
        _ => {
            return Err(invalid(
                path,
                "needs exactly one of configMapRef and secretRef",
            ));
        }
    };
    check_known(reference, &ref_path, OBJECT_REF_FIELDS)?;
    let name = require_str(reference, "name", &ref_path)?;
    let optional = get_bool(reference, "optional", &ref_path)?.unwrap_or(false);
    let Some(object) = find_object(ctx, kind, name) else {
        return if optional {
            Ok(())
        } else {
            Err(missing_object(ctx, kind, name, &ref_path))
        };
    };
    for (key, value) in object_values(object, kind, name, &ref_path)? {
        // Kubelet cannot pass a name with '=' (nor an empty one); it skips such keys.
        if key.is_empty() || key.contains('=') {
            continue;
        }
        env.set(&format!("{prefix}{key}"), EnvValue::Exact(value));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

fn find_object<'a>(ctx: &EnvContext<'a>, kind: Kind, name: &str) -> Option<&'a Obj> {
    let documents = match kind {
        Kind::ConfigMap => ctx.input.config_maps,
        Kind::Secret => ctx.input.secrets,
    };
    documents.iter().filter_map(Value::as_object).find(|doc| {
        let meta = doc.get("metadata").and_then(Value::as_object);
        let doc_name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
        let doc_namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty());
        doc_name == Some(name) && doc_namespace.is_none_or(|ns| ns == ctx.namespace)
    })
}

fn missing_object(ctx: &EnvContext<'_>, kind: Kind, name: &str, path: &str) -> PolicyError {
    PolicyError::MissingObject {
        path: path.to_owned(),
        kind: kind.name(),
        name: name.to_owned(),
        namespace: ctx.namespace.to_owned(),
    }
}

/// All key/value pairs of a ConfigMap (`data`) or Secret (`data` decoded, `stringData`
/// on top, as the API server merges them).
fn object_values(
    object: &Obj,
    kind: Kind,
    name: &str,
    path: &str,
) -> Result<Vec<(String, String)>, PolicyError> {
    let where_ = format!("{} {name:?}", kind.name());
    let mut values: Vec<(String, String)> = Vec::new();
    let mut put = |key: &str, value: String| match values.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => values.push((key.to_owned(), value)),
    };
    if let Some(data) = member(object, "data") {
        let data = data
            .as_object()
            .ok_or_else(|| invalid(path, format!("{where_}: data must be an object")))?;
        for (key, value) in data {
            let text = value
                .as_str()
                .ok_or_else(|| invalid(path, format!("{where_}: data.{key} must be a string")))?;
            let value = match kind {
                Kind::ConfigMap => text.to_owned(),
                Kind::Secret => decode_secret(text).ok_or_else(|| {
                    invalid(
                        path,
                        format!("{where_}: data.{key} is not base64 of UTF-8 text, so it cannot be an environment variable"),
                    )
                })?,
            };
            put(key, value);
        }
    }
    if let Kind::Secret = kind
        && let Some(data) = member(object, "stringData")
    {
        let data = data
            .as_object()
            .ok_or_else(|| invalid(path, format!("{where_}: stringData must be an object")))?;
        for (key, value) in data {
            let text = value.as_str().ok_or_else(|| {
                invalid(path, format!("{where_}: stringData.{key} must be a string"))
            })?;
            put(key, text.to_owned());
        }
    }
    Ok(values)
}

/// One key of a ConfigMap or Secret (only that one is decoded).
fn object_value(
    object: &Obj,
    kind: Kind,
    name: &str,
    key: &str,
    path: &str,
) -> Result<Option<String>, PolicyError> {
    let text = |field: &str| -> Result<Option<&str>, PolicyError> {
        match member(object, field).and_then(|d| d.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                invalid(
                    path,
                    format!("{} {name:?}: {field}.{key} must be a string", kind.name()),
                )
            }),
        }
    };
    match kind {
        Kind::ConfigMap => Ok(text("data")?.map(str::to_owned)),
        Kind::Secret => {
            if let Some(v) = text("stringData")? {
                return Ok(Some(v.to_owned()));
            }
            text("data")?
                .map(|t| {
                    decode_secret(t).ok_or_else(|| {
                        invalid(
                            path,
                            format!("Secret {name:?}: data.{key} is not base64 of UTF-8 text, so it cannot be an environment variable"),
                        )
                    })
                })
                .transpose()
        }
    }
}

fn decode_secret(text: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn value_from(
    ctx: &EnvContext<'_>,
    from: &Obj,
    path: &str,
) -> Result<Option<EnvValue>, PolicyError> {
    check_known(from, path, VALUE_FROM_FIELDS)?;
    let mut sources = from.iter().filter(|(_, v)| !v.is_null());
    let (Some((kind, source)), None) = (sources.next(), sources.next()) else {
        return Err(invalid(path, "needs exactly one source"));
    };
    let source_path = join(path, kind);
    let source = as_obj(source, &source_path)?;
    match kind.as_str() {
        "configMapKeyRef" => key_ref(ctx, Kind::ConfigMap, source, &source_path),
        "secretKeyRef" => key_ref(ctx, Kind::Secret, source, &source_path),
        "fieldRef" => field_ref(ctx, source, &source_path).map(Some),
        "resourceFieldRef" => resource_field_ref(source, &source_path).map(Some),
        _ => Err(unsupported(
            source_path,
            "the value is read from a file in the pod at run time, which a policy cannot know; \
             use a ConfigMap or Secret reference instead",
        )),
    }
}

fn key_ref(
    ctx: &EnvContext<'_>,
    kind: Kind,
    source: &Obj,
    path: &str,
) -> Result<Option<EnvValue>, PolicyError> {
    check_known(source, path, KEY_REF_FIELDS)?;
    let name = require_str(source, "name", path)?;
    let key = require_str(source, "key", path)?;
    let optional = get_bool(source, "optional", path)?.unwrap_or(false);
    let Some(object) = find_object(ctx, kind, name) else {
        return if optional {
            Ok(None)
        } else {
            Err(missing_object(ctx, kind, name, path))
        };
    };
    let value = object_value(object, kind, name, key, path)?;
    match value {
        Some(v) => Ok(Some(EnvValue::Exact(v))),
        None if optional => Ok(None),
        None => Err(PolicyError::MissingKey {
            path: path.to_owned(),
            kind: kind.name(),
            name: name.to_owned(),
            key: key.to_owned(),
        }),
    }
}

fn pattern(regex: String, example: &str) -> EnvValue {
    EnvValue::Pattern {
        regex,
        example: example.to_owned(),
    }
}

/// Downward API fields: the few known at generate time exactly, the others by the
/// shape of their values.
fn field_ref(ctx: &EnvContext<'_>, source: &Obj, path: &str) -> Result<EnvValue, PolicyError> {
    check_known(source, path, FIELD_REF_FIELDS)?;
    let field = require_str(source, "fieldPath", path)?;
    let ip = ip_regex();
    Ok(match field {
        "metadata.name" => pattern(ctx.name_regex.to_owned(), ctx.name_example),
        "metadata.namespace" if ctx.any_namespace => EnvValue::SandboxNamespace,
        "metadata.namespace" => EnvValue::Exact(ctx.namespace.to_owned()),
        "metadata.uid" => pattern(
            "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$".to_owned(),
            "0f0e0d0c-0b0a-4908-8706-050403020100",
        ),
        "spec.nodeName" => pattern(
            "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$".to_owned(),
            "node-1",
        ),
        "spec.serviceAccountName" => EnvValue::Exact(ctx.service_account.to_owned()),
        "status.hostIP" | "status.podIP" => pattern(format!("^{ip}$"), "10.0.0.7"),
        "status.hostIPs" | "status.podIPs" => {
            pattern(format!("^{ip}(,{ip})*$"), "10.0.0.7,fd00::7")
        }
        // A label the resource sets has its value; one it does not set is added by a
        // controller (pod-template-hash) or the (untrusted) control plane: admitted by
        // the shape of a label value.
        f if label_key(f, "metadata.labels").is_some() => {
            match label_key(f, "metadata.labels").and_then(|k| ctx.input.labels.get(k)) {
                Some(value) => EnvValue::Exact(value.clone()),
                None => pattern(
                    "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$".to_owned(),
                    "value",
                ),
            }
        }
        f if label_key(f, "metadata.annotations").is_some() => {
            pattern("(?s)^.*$".to_owned(), "annotation value")
        }
        other => {
            return Err(unsupported(
                join(path, "fieldPath"),
                format!("{other:?} is not a downward API field contrast knows the values of"),
            ));
        }
    })
}

/// `metadata.labels['key']` → `key`.
fn label_key<'f>(field: &'f str, prefix: &str) -> Option<&'f str> {
    field
        .strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
        .filter(|k| !k.is_empty())
}

fn resource_field_ref(source: &Obj, path: &str) -> Result<EnvValue, PolicyError> {
    check_known(source, path, RESOURCE_FIELD_REF_FIELDS)?;
    let resource = require_str(source, "resource", path)?;
    let known = ["cpu", "memory", "ephemeral-storage"];
    let ok = ["limits.", "requests."].iter().any(|p| {
        resource
            .strip_prefix(p)
            .is_some_and(|r| known.contains(&r) || r.starts_with("hugepages-"))
    });
    if !ok {
        return Err(unsupported(
            join(path, "resource"),
            format!("{resource:?} is not a resource contrast knows"),
        ));
    }
    // Unset limits default to the node's allocatable resources, known only at run time.
    Ok(pattern("^[0-9]+$".to_owned(), "1"))
}

/// Kubelet's `$(NAME)` expansion against the variables defined so far. A reference to
/// a variable whose value is only known at run time cannot be expanded here.
pub(crate) fn expand(
    raw: &str,
    env: &EnvList,
    ctx: &EnvContext<'_>,
    path: &str,
) -> Result<String, PolicyError> {
    if !raw.contains('$') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A trailing '$' is literal.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match env.get(name) {
                        Some(EnvValue::Exact(value)) => out.push_str(value),
                        Some(EnvValue::Pattern { .. } | EnvValue::SandboxNamespace) => {
                            return Err(unsupported(
                                path,
                                format!(
                                    "refers to $({name}), whose value is only known at run time, \
                                     so the policy cannot name the result"
                                ),
                            ));
                        }
                        None if is_runtime_variable(name, ctx.service_links) => {
                            return Err(unsupported(
                                path,
                                format!(
                                    "refers to $({name}), which kubelet sets from a Kubernetes \
                                     service at run time, so the policy cannot name the result"
                                ),
                            ));
                        }
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[1 + close + 1..];
                }
                // An unclosed reference is literal.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether kubelet may define `name` from a service (always for the API server's).
fn is_runtime_variable(name: &str, service_links: bool) -> bool {
    name.starts_with("KUBERNETES_")
        || (service_links
            && (name.contains("_SERVICE_") || name.ends_with("_PORT") || name.contains("_PORT_")))
}

/// Patterns for the variables kubelet adds for services (the API server's always; all
/// services in the namespace with service links) and HOSTNAME, with examples.
pub(crate) fn optional_env(
    service_links: bool,
    hostname_regex: &str,
    hostname_example: &str,
) -> (Vec<String>, Vec<String>) {
    let service = if service_links {
        "[A-Z_][A-Z0-9_]*"
    } else {
        "KUBERNETES"
    };
    let ip = ip_regex();
    let host_port = format!(r"({IPV4}|\[{IPV6}\]):[0-9]{{1,5}}");
    let port = "[0-9]{1,5}";
    let proto = "(tcp|udp|sctp)";
    let proto_upper = "(TCP|UDP|SCTP)";
    let patterns = vec![
        format!("^HOSTNAME={hostname_regex}$"),
        format!("^{service}_SERVICE_HOST={ip}$"),
        format!("^{service}_SERVICE_PORT={port}$"),
        format!("^{service}_SERVICE_PORT_[A-Z0-9_]+={port}$"),
        format!("^{service}_PORT={proto}://{host_port}$"),
        format!("^{service}_PORT_{port}_{proto_upper}={proto}://{host_port}$"),
        format!("^{service}_PORT_{port}_{proto_upper}_PROTO={proto}$"),
        format!("^{service}_PORT_{port}_{proto_upper}_PORT={port}$"),
        format!("^{service}_PORT_{port}_{proto_upper}_ADDR={ip}$"),
    ];
    let examples = vec![
        format!("HOSTNAME={hostname_example}"),
        "KUBERNETES_SERVICE_HOST=10.96.0.1".to_owned(),
        "KUBERNETES_SERVICE_PORT=443".to_owned(),
        "KUBERNETES_SERVICE_PORT_HTTPS=443".to_owned(),
        "KUBERNETES_PORT=tcp://10.96.0.1:443".to_owned(),
        "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443".to_owned(),
        "KUBERNETES_PORT_443_TCP_PROTO=tcp".to_owned(),
        "KUBERNETES_PORT_443_TCP_PORT=443".to_owned(),
        "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1".to_owned(),
    ];
    (patterns, examples)
}

/// The pod name as a pattern: the name itself, or with the suffixes controllers append
/// (ReplicaSet hash and random suffix, StatefulSet ordinal, Job and CronJob suffixes).
pub(crate) fn name_regex(name: &str) -> String {
    format!("^{}(-[a-z0-9]+){{0,2}}$", regex_escape(name))
}

/// The names of pods a `generateName` prefix makes: the prefix, five characters of
/// `[a-z0-9]` (the API server's random suffix), then what a controller appends.
pub(crate) fn generated_name_regex(prefix: &str) -> String {
    format!("^{}[a-z0-9]{{5}}(-[a-z0-9]+){{0,2}}$", regex_escape(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ctx_with<'a>(input: &'a PodInput<'a>) -> EnvContext<'a> {
        EnvContext {
            input,
            namespace: "default",
            any_namespace: false,
            name_regex: "^web$",
            name_example: "web",
            service_account: "default",
            service_links: true,
        }
    }

    fn list(entries: &[(&str, EnvValue)]) -> EnvList {
        let mut env = EnvList::default();
        for (n, v) in entries {
            env.set(n, v.clone());
        }
        env
    }

    #[test]
    fn expansion_follows_kubelet() {
        let spec = serde_json::json!({});
        let images = BTreeMap::new();
        let input = PodInput {
            generate_name: false,
            name: "web",
            namespace: "default",
            pod_spec: &spec,
            labels: &BTreeMap::new(),
            runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
            images: &images,
            config_maps: &[],
            secrets: &[],
        };
        let ctx = ctx_with(&input);
        let env = list(&[
            ("A", EnvValue::Exact("x".into())),
            ("IP", pattern("^.*$".into(), "1")),
        ]);
        for (raw, want) in [
            ("$(A)", "x"),
            ("a$(A)b$(A)", "axbx"),
            ("$$(A)", "$(A)"),
            ("$(B)", "$(B)"),
            ("$(A", "$(A"),
            ("cost: 5$", "cost: 5$"),
            ("$x$é", "$x$é"),
            ("$$$$", "$$"),
            ("no dollars", "no dollars"),
            ("$()", "$()"),
        ] {
            assert_eq!(expand(raw, &env, &ctx, "p").unwrap(), want, "{raw}");
        }
        let err = expand("ip=$(IP)", &env, &ctx, "spec.x").unwrap_err();
        assert!(
            err.to_string().contains("spec.x") && err.to_string().contains("$(IP)"),
            "{err}"
        );
        let err = expand("$(KUBERNETES_SERVICE_HOST)", &env, &ctx, "p").unwrap_err();
        assert!(err.to_string().contains("service"), "{err}");
    }

    #[test]
    fn later_definitions_replace_in_place() {
        let mut env = EnvList::default();
        env.set("A", EnvValue::Exact("1".into()));
        env.set("B", EnvValue::Exact("2".into()));
        env.set("A", EnvValue::Exact("3".into()));
        assert_eq!(env.entries.len(), 2);
        assert_eq!(env.entries[0], ("A".into(), EnvValue::Exact("3".into())));
    }

    #[test]
    fn label_keys() {
        assert_eq!(
            label_key("metadata.labels['app']", "metadata.labels"),
            Some("app")
        );
        assert_eq!(label_key("metadata.labels", "metadata.labels"), None);
        assert_eq!(label_key("metadata.labels['']", "metadata.labels"), None);
    }
}
