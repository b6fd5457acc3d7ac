//! Instances: a service started with an env on this node, its containers' state and
//! output, and the requests that start, stop and remove one.

use mesg_protocol::{InstanceHash, ServiceHash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// An instance of a service on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    pub hash: InstanceHash,
    pub service: ServiceHash,
    pub sid: Option<String>,
    pub env: BTreeMap<String, String>,
    pub desired: DesiredState,
    /// What Docker says of the instance's containers; null when Docker could not be asked.
    pub state: Option<InstanceState>,
    /// Whether the main container's task stream is connected to this node.
    pub connected: bool,
    /// Executions the instance is running now.
    pub in_flight: usize,
    pub created_at: u64,
}

impl InstanceView {
    /// Docker's view when known, else what the node wants.
    pub fn status(&self) -> &'static str {
        self.state
            .as_ref()
            .map_or(self.desired.as_str(), |s| s.status.as_str())
    }
}

/// `GET /v1/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
}

/// Whether the node keeps an instance running (also kept in the node's store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Stopped,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }
}

/// The state of an instance's containers, as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Containers are being created or (re)started.
    Starting,
    Running,
    /// Some containers run, some do not.
    Partial,
    /// A container exited and will not be restarted any more (restart cap reached).
    Crashed,
    Stopped,
    /// No container of this instance exists.
    Missing,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Starting => "starting",
            InstanceStatus::Running => "running",
            InstanceStatus::Partial => "partial",
            InstanceStatus::Crashed => "crashed",
            InstanceStatus::Stopped => "stopped",
            InstanceStatus::Missing => "missing",
        }
    }
}

/// One container of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerState {
    /// `service` or the dependency key.
    pub key: String,
    pub name: String,
    pub running: bool,
    pub restarting: bool,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    /// Docker's state text (`running`, `exited`, ...).
    pub state: String,
}

/// An instance's containers, with a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceState {
    pub status: InstanceStatus,
    /// Why, in words: e.g. "container `service` exited with code 3 after 5 restarts".
    pub reason: Option<String>,
    pub containers: Vec<ContainerState>,
}

/// One line of container output (`GET /v1/instances/{id}/logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// `service` or the dependency key.
    pub key: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// Resource limits of an instance's containers; omitted fields keep the node's defaults
/// (512 MiB, 1 CPU, 512 pids). Values below the floors answer 400 `invalid_limits`; values
/// above the operator's maxima (--max-instance-memory, --max-instance-nano-cpus,
/// --max-instance-pids; default 4 GiB, every host CPU, 4096) are lowered to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceLimits {
    /// Bytes.
    #[serde(default, deserialize_with = "crate::whole::option_i64")]
    #[schema(minimum = 16777216, maximum = 9223372036854775807i64)]
    pub memory: Option<i64>,
    /// CPUs in billionths (1_000_000_000 = one CPU).
    #[serde(default, deserialize_with = "crate::whole::option_i64")]
    #[schema(minimum = 10000000, maximum = 9223372036854775807i64)]
    pub nano_cpus: Option<i64>,
    /// Processes.
    #[serde(default, deserialize_with = "crate::whole::option_i64")]
    #[schema(minimum = 16, maximum = 9223372036854775807i64)]
    pub pids: Option<i64>,
}

/// The node's defaults for an instance that asks for no limits.
impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            memory: Some(512 * 1024 * 1024),
            nano_cpus: Some(1_000_000_000),
            pids: Some(512),
        }
    }
}

/// The body of `POST /v1/instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StartInstance {
    /// Service hash or sid.
    pub service: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Memory (bytes), CPUs (billionths) and pids for the containers; omitted fields
    /// keep the node's defaults (512 MiB, 1 CPU, 512 pids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
}

/// The query of `POST /v1/instances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartInstanceQuery {
    /// Answer with newline-delimited JSON: a `progress` line per step (fetching the
    /// package of a service known only from the network, bytes received, the image's
    /// build output, starting), then `done` with the instance or `error`.
    #[serde(default)]
    pub progress: bool,
}

/// One line of `POST /v1/instances?progress=true`: `progress` lines, then one `done` or
/// `error` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StartLine {
    Progress { message: String },
    Done { instance: InstanceView },
    Error { error: crate::ApiError },
}

/// The body of `POST /v1/instances/{id}/stop` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StopInstance {
    /// Time between SIGTERM and SIGKILL (default 10000, at most 300000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option_u64"
    )]
    #[schema(maximum = 18446744073709551615u64)]
    pub grace_ms: Option<u64>,
}

/// The query of `DELETE /v1/instances/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteInstanceQuery {
    /// Keep the instance's volumes.
    #[serde(default)]
    pub keep_data: bool,
}

/// The query of `GET /v1/instances/{id}/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Keep streaming new lines.
    #[serde(default)]
    pub follow: bool,
    /// Lines of history.
    #[serde(default)]
    #[param(maximum = 18446744073709551615u64)]
    pub tail: Option<usize>,
}
