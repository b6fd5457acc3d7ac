//! `GET /v1/node`: who the node is, where it listens, and whether Docker answers it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Static facts about the node, with the last Docker check. Fields in alphabetical order:
/// the order the node has always sent them in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Address of this Application API.
    pub api: String,
    pub data_dir: String,
    /// Whether the node's Docker Engine answers (checked at most every 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerStatus>,
    /// Addresses peers can dial (give one to another node's `--bootstrap`).
    #[serde(default)]
    pub listen_addrs: Vec<String>,
    /// Memory the node process holds (resident set, bytes), where the OS tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_rss_bytes: Option<u64>,
    pub peer_id: String,
    /// The node's ed25519 key, base58.
    pub public_key: String,
    /// Address of the API the node's service containers call.
    pub service_api: String,
    /// When the node started (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// How long the node has been running (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    pub version: String,
}

/// The node's Docker Engine: its versions when it answers, else why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DockerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl DockerStatus {
    /// Docker answered, with these versions.
    pub fn available(version: String, api_version: String) -> DockerStatus {
        DockerStatus {
            api_version: Some(api_version),
            available: true,
            error: None,
            version: Some(version),
        }
    }

    /// Docker did not answer, for this reason.
    pub fn unavailable(error: String) -> DockerStatus {
        DockerStatus {
            api_version: None,
            available: false,
            error: Some(error),
            version: None,
        }
    }
}
