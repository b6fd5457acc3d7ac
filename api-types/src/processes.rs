//! Processes: the request that creates or checks one, the process as the node runs it, and
//! its runs step by step. A run is also how the node keeps a run's progress in its store
//! (JSON), so these types are that record too.

use mesg_protocol::process::ProcessDefinition;
use mesg_protocol::{Cause, CauseRef, ExecutionId, ServiceHash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /v1/processes` and `POST /v1/processes/validate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessBody {
    /// The process file (YAML), see docs/processes.md.
    pub definition: String,
    /// Values for `$(env:NAME)` in the file.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A process this node runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessView {
    pub id: String,
    pub name: String,
    pub definition: ProcessDefinition,
    /// Service hash of each step's service (trigger and tasks), by step key.
    pub services: BTreeMap<String, ServiceHash>,
    pub created_at: u64,
    /// Runs in progress.
    pub runs_running: usize,
    /// Most process triggers in a chain that may lead to a run of this process here:
    /// the process's `max_depth` or the node's `--max-trigger-depth`, the lower.
    #[serde(default)]
    pub max_depth: u32,
    /// Triggers refused since the node started (depth or rate beyond the limit).
    #[serde(default)]
    pub triggers_refused: u64,
    /// The last refused trigger.
    #[serde(default)]
    pub last_refusal: Option<TriggerRefusal>,
}

/// Why a trigger started no run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The run would sit deeper in a causal chain of process triggers than the limit: a
    /// loop, most likely, between processes and services.
    Depth,
    /// The process's `rate_limit` was exhausted.
    Rate,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Depth => "depth",
            RefusalReason::Rate => "rate",
        }
    }
}

/// A trigger that started no run, and the chain it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TriggerRefusal {
    pub reason: RefusalReason,
    /// What happened, in words (the limit included).
    pub message: String,
    /// Depth the run would have had.
    pub depth: u32,
    /// The limit that refused it (`max_depth`, or the rate's burst).
    pub limit: u32,
    /// What started the chain.
    pub root: CauseRef,
    /// The event or execution that fired the trigger.
    pub parent: CauseRef,
    /// When (ms since the epoch).
    pub at: u64,
}

/// `GET /v1/processes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessList {
    pub processes: Vec<ProcessView>,
}

/// The answer of `POST /v1/processes/validate`: the definition as the node reads it, or
/// the errors. Fields in alphabetical order: the order the node has always sent them in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessCheck {
    /// The definition, when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<ProcessDefinition>,
    /// What is wrong, when invalid: at most 20 errors (each cut to 512 bytes), then a
    /// line saying how many more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 21)]
    pub errors: Option<Vec<String>>,
    /// Service hash of each step that names a service, when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<String, ServiceHash>>,
    pub valid: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    /// About to start, or waiting for a retry (`retry_at`).
    Waiting,
    Done,
    /// A filter that did not match: nothing after it runs.
    Filtered,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Done => "done",
            StepStatus::Filtered => "filtered",
            StepStatus::Failed => "failed",
        }
    }
}

/// One attempt of a task step: one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub execution_id: ExecutionId,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepRun {
    pub status: StepStatus,
    /// What the step produced (a task's outputs, a map's value, the trigger's data); null
    /// until it produced something. (Any JSON value, null included: a schema of "null or
    /// any" would be ambiguous.)
    #[schema(value_type = mesg_protocol::Json)]
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub attempts: Vec<Attempt>,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    /// When the next attempt starts (a step waiting for a retry).
    pub retry_at: Option<u64>,
    /// Why the step's execution is not running yet: its diagnosis summary (see
    /// `GET /v1/executions/{id}/why`). Only in the API's answers, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// One run of a process: from a trigger to its last step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: String,
    pub process: String,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Execution that triggered the run (result triggers).
    pub trigger_execution: Option<ExecutionId>,
    /// Where the run sits in a chain of process triggers: one deeper than the event or
    /// execution that triggered it. Its task steps' executions carry it.
    #[serde(default)]
    pub cause: Option<Cause>,
    pub steps: BTreeMap<String, StepRun>,
    pub started_at: u64,
    pub finished_at: Option<u64>,
}

impl Run {
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

/// The query of `GET /v1/processes/{id}/runs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// At most (default 20; clamped to 1-1000).
    #[param(maximum = 18446744073709551615u64)]
    pub limit: Option<usize>,
}

/// Runs of a process, newest first (`GET /v1/processes/{id}/runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}
