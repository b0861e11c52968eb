//! A container's environment as the kubelet builds it: `envFrom`, then `env` (literal values
//! with `$(VAR)` expansion, Secret and ConfigMap keys, pod fields, resources), then the
//! variables that make kube-rs' in-cluster configuration find the apiserver.

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, ResourceFieldSelector, Secret};
use kube::Api;

use crate::Ctx;

/// Why a container cannot be configured yet (the kubelet's `CreateContainerConfigError`).
pub type ConfigError = String;

/// The environment of `container` in `pod`, in order.
pub async fn container_env(
    ctx: &Ctx,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = vec![];
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.secret_ref {
            match secret(ctx, namespace, &r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &source.config_map_ref {
            match config_map(ctx, namespace, &r.name).await? {
                Some(c) => {
                    for (k, v) in c.data.unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.secret_key_ref {
                let data = secret(ctx, namespace, &r.name).await?.and_then(|s| s.data).unwrap_or_default();
                match data.get(&r.key) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!("couldn't find key {} in Secret {namespace}/{}", r.key, r.name));
                    }
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let data =
                    config_map(ctx, namespace, &r.name).await?.and_then(|c| c.data).unwrap_or_default();
                match data.get(&r.key) {
                    Some(v) => v.clone(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            r.key, r.name
                        ));
                    }
                }
            } else if let Some(r) = &from.field_ref {
                field_value(pod, &r.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(ctx, pod, Some(container), r)?
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or_default(), &env)
        };
        set(&mut env, var.name.clone(), value);
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    if !env.iter().any(|(n, _)| n == "HOSTNAME") {
        env.insert(0, ("HOSTNAME".into(), name));
    }
    if !env.iter().any(|(n, _)| n == "HOME") {
        env.insert(0, ("HOME".into(), "/root".into()));
    }
    env.push(("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()));
    env.push(("KUBERNETES_SERVICE_PORT".into(), ctx.api_port.to_string()));
    env.push(("KUBERNETES_SERVICE_PORT_HTTPS".into(), ctx.api_port.to_string()));
    let mut all = ctx.base_env.clone();
    all.retain(|(n, _)| !env.iter().any(|(m, _)| m == n));
    all.extend(env);
    Ok(all)
}

/// The Secret `namespace/name`, if it exists.
pub async fn secret(ctx: &Ctx, namespace: &str, name: &str) -> Result<Option<Secret>, ConfigError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    api.get_opt(name).await.map_err(|e| format!("getting secret {namespace}/{name}: {e}"))
}

/// The ConfigMap `namespace/name`, if it exists.
pub async fn config_map(ctx: &Ctx, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ConfigError> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    api.get_opt(name).await.map_err(|e| format!("getting configmap {namespace}/{name}: {e}"))
}

/// `$(VAR)` expansion as in the kubelet: defined variables are replaced, `$$` is a `$`, anything
/// else stays as written.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(close) = tail.strip_prefix('(').and_then(|t| t.find(')')) {
            let name = &tail[1..=close];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&rest[i..i + close + 3]),
            }
            rest = &tail[close + 2..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward API `fieldPath`.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_lines = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.iter().flatten().map(|(k, v)| format!("{k}={v:?}\n")).collect::<String>()
    };
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .or_else(|| {
                path.strip_prefix(prefix.replace('\'', "\"").as_str()).and_then(|r| r.strip_suffix("\"]"))
            })
            .map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_lines(&meta.labels),
        "metadata.annotations" => map_lines(&meta.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.hostIP" | "status.podIPs" | "status.hostIPs" => "127.0.0.1".into(),
        _ => {
            if let Some(key) = keyed("metadata.labels['") {
                meta.labels.as_ref().and_then(|m| m.get(&key)).cloned().unwrap_or_default()
            } else if let Some(key) = keyed("metadata.annotations['") {
                meta.annotations.as_ref().and_then(|m| m.get(&key)).cloned().unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath {path:?}"));
            }
        }
    })
}

/// The value of a `resourceFieldRef`: the container's limit (or request), the node's capacity
/// when a limit is not set, divided by the divisor and rounded up.
pub fn resource_value(
    ctx: &Ctx,
    pod: &Pod,
    container: Option<&Container>,
    selector: &ResourceFieldSelector,
) -> Result<String, ConfigError> {
    let container = match (&selector.container_name, container) {
        (Some(name), _) => pod.spec.iter().flat_map(|s| &s.containers).find(|c| &c.name == name),
        (None, c) => c,
    };
    let (kind, resource) =
        selector.resource.split_once('.').ok_or(format!("bad resource {:?}", selector.resource))?;
    let resources = container.and_then(|c| c.resources.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let set = match kind {
        "limits" => limits.and_then(|l| l.get(resource)),
        _ => requests.and_then(|r| r.get(resource)).or_else(|| limits.and_then(|l| l.get(resource))),
    };
    let value = match (set, resource) {
        (Some(q), _) => quantity(&q.0)?,
        (None, "cpu") if kind == "limits" => quantity(&ctx.cpu)?,
        (None, "memory") if kind == "limits" => quantity(&ctx.memory)?,
        (None, _) => 0.0,
    };
    let divisor = selector.divisor.as_ref().map(|d| quantity(&d.0)).transpose()?.unwrap_or(1.0);
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

/// A resource quantity (`500m`, `2Gi`, `1e3`) as a number.
pub fn quantity(text: &str) -> Result<f64, ConfigError> {
    let split = text.find(|c: char| c.is_ascii_alphabetic() && c != 'e').unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("bad quantity {text:?}"))?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        _ => return Err(format!("bad quantity {text:?}")),
    };
    Ok(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_the_kubelet() {
        let env = vec![("A".to_owned(), "x".to_owned())];
        assert_eq!(expand("$(A)/$(B)/$$(A)/$x/$", &env), "x/$(B)/$(A)/$x/$");
        assert_eq!(expand("pre$(A", &env), "pre$(A");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m").unwrap(), 0.5);
        assert_eq!(quantity("2Gi").unwrap(), 2.0 * 1024f64.powi(3));
        assert_eq!(quantity("16").unwrap(), 16.0);
        assert_eq!(quantity("1e3").unwrap(), 1000.0);
    }

    #[test]
    fn fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "annotations": {"a/b": "v\nw"}, "labels": {"x": "1"}},
            "spec": {"containers": [], "nodeName": "node"},
        }))
        .unwrap();
        assert_eq!(field_value(&pod, "metadata.annotations['a/b']").unwrap(), "v\nw");
        assert_eq!(field_value(&pod, "metadata.labels").unwrap(), "x=\"1\"\n");
        assert_eq!(field_value(&pod, "spec.nodeName").unwrap(), "node");
    }
}
