//! Reading the API's answers for human output (`--json` prints the answers as they come;
//! their types are `mesg-api-types`, the node's own), and small helpers shared by the
//! commands.

use crate::client::Client;
use crate::output::{Paint, po};
use mesg_api_types::{InstanceList, InstanceView, ServiceView};
use mesg_protocol::schema::{ParamMap, Parameter};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Decode an API answer already fetched as JSON.
pub fn decode<T: DeserializeOwned>(v: &Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| {
        anyhow::anyhow!(
            "the node's answer is not a valid {what} ({e}); is it a mesg node of a compatible version?"
        )
    })
}

pub async fn get_service(client: &Client, id: &str) -> anyhow::Result<(ServiceView, Value)> {
    let v: Value = client.json(client.get(&["v1", "services", id])).await?;
    Ok((decode(&v, "service")?, v))
}

pub async fn list_instances(client: &Client) -> anyhow::Result<Vec<InstanceView>> {
    let v: Value = client.json(client.get(&["v1", "instances"])).await?;
    Ok(decode::<InstanceList>(&v, "instance list")?.instances)
}

/// The one hash among `hashes` that starts with `prefix`; an error when several do.
fn unique_prefix<'a>(
    prefix: &str,
    hashes: impl Iterator<Item = &'a str>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    let matches: Vec<&str> = hashes.filter(|h| h.starts_with(prefix)).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => anyhow::bail!(
            "`{prefix}` is the start of {} {what} hashes; give more characters",
            many.len()
        ),
    }
}

/// A service id as typed: a sid or a full hash as is, or the hash a unique prefix (as
/// tables show them) stands for.
pub async fn resolve_service(client: &Client, id: &str) -> anyhow::Result<String> {
    if id.parse::<mesg_protocol::ServiceHash>().is_ok() {
        return Ok(id.to_string());
    }
    let v: Value = client.json(client.get(&["v1", "services"])).await?;
    let services = v["services"].as_array().cloned().unwrap_or_default();
    if services.iter().any(|s| s["sid"].as_str() == Some(id)) {
        return Ok(id.to_string());
    }
    let hashes = services.iter().filter_map(|s| s["hash"].as_str());
    Ok(unique_prefix(id, hashes, "service")?.unwrap_or_else(|| id.to_string()))
}

/// An instance id as typed: a full hash, or a service sid or hash (the API resolves
/// those when the service has one instance) as is, or the instance hash a unique prefix
/// stands for.
pub async fn resolve_instance(client: &Client, id: &str) -> anyhow::Result<String> {
    if id.parse::<mesg_protocol::InstanceHash>().is_ok() {
        return Ok(id.to_string());
    }
    let instances = list_instances(client).await?;
    if instances
        .iter()
        .any(|i| i.sid.as_deref() == Some(id) || i.service.to_string() == id)
    {
        return Ok(id.to_string());
    }
    let hashes: Vec<String> = instances.iter().map(|i| i.hash.to_string()).collect();
    Ok(
        unique_prefix(id, hashes.iter().map(String::as_str), "instance")?
            .unwrap_or_else(|| id.to_string()),
    )
}

/// Service hash -> a short label (sid, else name), to show services by name in tables.
/// Best effort: an empty map when the node does not answer.
pub async fn service_labels(client: &Client) -> HashMap<String, String> {
    let Ok(v) = client.json::<Value>(client.get(&["v1", "services"])).await else {
        return HashMap::new();
    };
    v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let hash = s["hash"].as_str()?;
            let label = s["sid"].as_str().or(s["name"].as_str())?;
            Some((hash.to_string(), label.to_string()))
        })
        .collect()
}

/// Refresh `labels` when `hash` is not among them, at most every 10 s (a stream may carry
/// services this node does not know; asking for each of their events would be waste).
pub async fn refresh_labels(
    client: &Client,
    labels: &mut HashMap<String, String>,
    last: &mut Option<std::time::Instant>,
    hash: &str,
) {
    if labels.contains_key(hash)
        || last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(10))
    {
        return;
    }
    *labels = service_labels(client).await;
    *last = Some(std::time::Instant::now());
}

/// A service hash as a table shows it: its sid when known, else the short hash.
pub fn service_label(labels: &HashMap<String, String>, hash: &str) -> String {
    labels
        .get(hash)
        .cloned()
        .unwrap_or_else(|| crate::output::short(hash, crate::output::SHORT))
}

/// `name: String`, `tags?: [String]`, `user: {age: Number, name: String}`.
pub fn format_param(key: &str, p: &Parameter) -> String {
    let mut kind = match &p.object {
        Some(fields) if !fields.is_empty() => format!("{{{}}}", format_params_inline(fields)),
        _ => p.kind.to_string(),
    };
    if p.repeated {
        kind = format!("[{kind}]");
    }
    format!("{key}{}: {kind}", if p.optional { "?" } else { "" })
}

pub fn format_params_inline(params: &ParamMap) -> String {
    if params.is_empty() {
        return "(none)".to_string();
    }
    params
        .iter()
        .map(|(k, p)| format_param(k, p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An instance status, coloured for stdout.
pub fn painted_status(status: &str) -> String {
    po(crate::output::status_paint(status), status)
}

/// `KEY=value KEY2=value2`, or `-`.
pub fn format_env(env: &BTreeMap<String, String>) -> String {
    if env.is_empty() {
        "-".to_string()
    } else {
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Bold on stdout.
pub fn bold(s: &str) -> String {
    po(Paint::Bold, s)
}

/// A task's price for `mesg service show`.
pub fn format_price(price: Option<mesg_protocol::economy::Price>) -> String {
    match price {
        Some(p) => format!(
            "{p} (micro-credits; run with --max-price of at least {})",
            p.minimum()
        ),
        None => "free".to_string(),
    }
}

/// The publisher's share of each amount: "10.00% (1000 bps)".
pub fn format_share(e: mesg_protocol::economy::Economy) -> String {
    let bps = e.publisher_share_bps;
    format!("{}.{:02}% of each amount ({bps} bps)", bps / 100, bps % 100)
}

/// What an execution cost: "4015 µc (1 call, 1500 ms, 3000 bytes out (3 KiB) at 1000 µc
/// per call + 2 µc per ms + 5 µc per KiB out)", and the cap when it cut the amount.
pub fn format_cost(c: &mesg_protocol::economy::Cost) -> String {
    let u = &c.usage;
    let capped = match c.max_price {
        Some(cap) if c.capped() => format!("; capped at max_price {cap} µc"),
        _ => String::new(),
    };
    format!(
        "{} µc ({} call{}, {} ms, {} bytes out ({} KiB) at {}{capped})",
        c.amount,
        u.calls,
        if u.calls == 1 { "" } else { "s" },
        u.duration_ms,
        u.bytes_out,
        u.kib_out(),
        c.price
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::schema::ParamType;

    #[test]
    fn prefixes_resolve_only_when_unique() {
        let hashes = ["HB3o16Yp", "HB3x", "9YYE"];
        assert_eq!(
            unique_prefix("9Y", hashes.into_iter(), "x").unwrap(),
            Some("9YYE".to_string())
        );
        assert_eq!(unique_prefix("zz", hashes.into_iter(), "x").unwrap(), None);
        assert!(unique_prefix("HB3", hashes.into_iter(), "x").is_err());
    }

    #[test]
    fn params_read_as_types() {
        let mut inner = ParamMap::new();
        inner.insert("age".into(), Parameter::new(ParamType::Number));
        let mut name = Parameter::new(ParamType::String);
        name.optional = true;
        inner.insert("name".into(), name);
        let mut user = Parameter::new(ParamType::Object);
        user.object = Some(inner);
        let mut tags = Parameter::new(ParamType::String);
        tags.repeated = true;
        let mut params = ParamMap::new();
        params.insert("user".into(), user);
        params.insert("tags".into(), tags);
        assert_eq!(
            format_params_inline(&params),
            "tags: [String], user: {age: Number, name?: String}"
        );
        assert_eq!(format_params_inline(&ParamMap::new()), "(none)");
    }
}
