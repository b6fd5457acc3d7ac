//! The HTTP/JSON API between a node and its service containers (see docs/service-api.md).
//!
//! A container reads `MESG_ENDPOINT` and `MESG_TOKEN` from its environment, opens
//! `GET {MESG_ENDPOINT}/v1/service/tasks` (newline-delimited JSON [`TaskStreamMessage`]s),
//! posts [`TaskResultRequest`]s to `/v1/service/results` and [`EmitEventRequest`]s to
//! `/v1/service/events`, each with `Authorization: Bearer {MESG_TOKEN}`.

use serde::{Deserialize, Serialize};

pub const ENV_ENDPOINT: &str = "MESG_ENDPOINT";
pub const ENV_TOKEN: &str = "MESG_TOKEN";
pub const ENV_SERVICE_HASH: &str = "MESG_SERVICE_HASH";
pub const ENV_INSTANCE_HASH: &str = "MESG_INSTANCE_HASH";

pub const TASKS_PATH: &str = "/v1/service/tasks";
pub const RESULTS_PATH: &str = "/v1/service/results";
pub const EVENTS_PATH: &str = "/v1/service/events";

/// One line of the task stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskStreamMessage {
    /// First line: the node registered the stream; tasks follow.
    Ready {
        service_hash: String,
        instance_hash: String,
    },
    Task {
        execution_id: String,
        task: String,
        inputs: serde_json::Value,
    },
    /// Sent when idle so that no proxy or NAT drops the connection.
    Keepalive,
}

/// Body of `POST /v1/service/results`: exactly one of `outputs` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResultRequest {
    pub execution_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of `POST /v1/service/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmitEventRequest {
    pub event: String,
    #[serde(default)]
    pub data: serde_json::Value,
    /// The execution (given to this instance) that led the service to emit the event;
    /// without it the node assumes the deepest one in progress on the instance, so a
    /// loop between processes and services is caught either way.
    #[serde(default)]
    pub execution_id: Option<crate::ExecutionId>,
}

/// Error body of every API (service and application): a stable code and a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: String,
    /// What went wrong and what to do; the Application API cuts it to 4,096 bytes.
    pub message: String,
    /// One line per validation error: at most 20 (each cut to 512 bytes), then a line
    /// saying how many more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 21))]
    pub details: Vec<String>,
}
