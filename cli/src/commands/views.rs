//! What the API answers, typed for human output (`--json` prints the answers as they come),
//! and small helpers shared by the commands.

use crate::client::Client;
use crate::output::{Paint, po};
use mesg_protocol::ServiceDefinition;
use mesg_protocol::process::ProcessDefinition;
use mesg_protocol::schema::{ParamMap, Parameter};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// `GET /v1/services/{id}` (the node's `ServiceView`).
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceView {
    pub hash: String,
    pub sid: Option<String>,
    pub name: String,
    pub definition: ServiceDefinition,
    pub package_hash: String,
    pub package_size: u64,
    pub publisher: String,
    /// Who published the sid; None: unpublished (usable by hash only).
    #[serde(default)]
    pub sid_publisher: Option<String>,
    pub image: Option<String>,
    pub deployed_at: u64,
}

impl ServiceView {
    /// `echo` or the name when the service has no sid.
    pub fn label(&self) -> &str {
        self.sid.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstanceState {
    pub status: String,
    pub reason: Option<String>,
}

/// `GET /v1/instances/{id}` (the node's `InstanceView`).
#[derive(Debug, Clone, Deserialize)]
pub struct InstanceView {
    pub hash: String,
    pub service: String,
    pub sid: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub desired: String,
    pub state: Option<InstanceState>,
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub in_flight: u64,
    pub created_at: u64,
}

impl InstanceView {
    /// Docker's view when known, else what the node wants.
    pub fn status(&self) -> &str {
        self.state
            .as_ref()
            .map(|s| s.status.as_str())
            .unwrap_or(&self.desired)
    }
}

/// One line of container output.
#[derive(Debug, Clone, Deserialize)]
pub struct LogLine {
    pub key: String,
    pub stream: String,
    pub text: String,
}

/// `GET /v1/processes/{id}` (the node's `ProcessView`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessView {
    pub id: String,
    pub name: String,
    pub definition: ProcessDefinition,
    /// Service hash of each step's service (trigger and tasks), by step key.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    pub created_at: u64,
    #[serde(default)]
    pub runs_running: u64,
}

/// One attempt of a task step: one execution.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AttemptView {
    pub execution_id: String,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StepRunView {
    /// running, waiting (for a retry), done, filtered or failed.
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    #[serde(default)]
    pub attempts: Vec<AttemptView>,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub retry_at: Option<u64>,
}

/// `GET /v1/runs/{id}` (the node's `Run`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunView {
    pub id: String,
    pub process: String,
    /// running, completed or failed.
    pub status: String,
    pub error: Option<String>,
    pub trigger_execution: Option<String>,
    #[serde(default)]
    pub steps: BTreeMap<String, StepRunView>,
    pub started_at: u64,
    pub finished_at: Option<u64>,
}

impl RunView {
    /// When the run last changed: the latest time it or one of its steps records.
    pub fn changed_at(&self) -> u64 {
        let mut t = self.finished_at.unwrap_or(self.started_at);
        for s in self.steps.values() {
            t = t.max(s.finished_at.unwrap_or(s.started_at));
            for a in &s.attempts {
                t = t.max(a.finished_at.unwrap_or(a.started_at));
            }
        }
        t
    }
}

/// A connection of `GET /v1/peers`.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerView {
    pub peer_id: String,
    #[serde(default)]
    pub addrs: Vec<String>,
    #[serde(default)]
    pub connected: bool,
}

/// A service a node announces.
#[derive(Debug, Clone, Deserialize)]
pub struct OfferView {
    pub service_hash: String,
    pub sid: Option<String>,
    #[serde(default)]
    pub in_flight: u64,
}

/// A node known from its announcements (`GET /v1/peers`, `nodes`).
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkNodeView {
    pub node: String,
    pub peer_id: String,
    #[serde(default)]
    pub services: Vec<OfferView>,
    pub expires_in_ms: u64,
    pub rtt_us: Option<f64>,
}

/// A provider of a service in `GET /v1/network/services`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderView {
    pub node: String,
    pub peer_id: String,
    #[serde(default)]
    pub in_flight: u64,
}

/// A service of `GET /v1/network/services`.
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkServiceView {
    pub service_hash: String,
    pub sid: Option<String>,
    /// Who published the sid; None: unpublished (usable by hash only).
    #[serde(default)]
    pub publisher: Option<String>,
    #[serde(default)]
    pub providers: Vec<ProviderView>,
}

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
    decode(&v["instances"], "instance list")
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
        .any(|i| i.sid.as_deref() == Some(id) || i.service == id)
    {
        return Ok(id.to_string());
    }
    let hashes = instances.iter().map(|i| i.hash.as_str());
    Ok(unique_prefix(id, hashes, "instance")?.unwrap_or_else(|| id.to_string()))
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
