//! What a process is: the types a process file parses into, which the node stores and
//! runs. Reading and checking them is [`super::parse`]'s job.

use super::{Condition, Expr};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

pub const MAX_STEPS: usize = 256;
pub const MAX_RETRIES: u32 = 20;
/// Highest `max_price` a task step may set (µc): 10^15, as a price part.
pub const MAX_STEP_PRICE: u64 = crate::economy::MAX_PRICE_PART;
/// Highest `max_depth` a process may set (a node's own limit still applies).
pub const MAX_DEPTH: u32 = 1000;
/// Highest `rate_limit.per_second` and `rate_limit.burst`.
pub const MAX_TRIGGER_RATE: u32 = 1_000_000;

/// A validated process definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessDefinition {
    pub name: String,
    /// In file order; the first is the trigger.
    pub steps: Vec<Step>,
    /// Most process triggers in a causal chain that may lead to a run of this process;
    /// it can only lower the node's limit. Absent: the node's limit. (Skipped when
    /// absent, so a file without it keeps the id it had before the field existed.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    /// Most runs this process starts per second, with a burst; triggers beyond it are
    /// refused. Absent: no limit but the depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket on a process's triggers: `per_second` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Triggers per second, sustained (may be fractional: 0.5 is one every 2 s).
    pub per_second: f64,
    /// Triggers accepted at once after a quiet time (at least 1).
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub key: String,
    /// The step whose success runs this one; `None` for the trigger and error branches.
    pub after: Option<String>,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Trigger(Trigger),
    Filter(Condition),
    Map(Expr),
    Task(TaskStep),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// Service sid or hash, as written.
    pub service: String,
    pub source: TriggerSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerSource {
    Event(String),
    /// A Completed execution of this task.
    Result(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStep {
    /// Service sid or hash, as written.
    pub service: String,
    pub task: String,
    pub inputs: Expr,
    pub retries: u32,
    /// First retry delay; doubles with each attempt.
    pub backoff_ms: u64,
    pub timeout_ms: Option<u64>,
    pub on_error: Option<String>,
    /// Spending cap (µc) of each execution this step makes, signed into its request:
    /// required when the task is priced. (Skipped when absent, so a file without it
    /// keeps the id it had before the field existed.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
    /// k-of-n verification of each execution this step makes (a deterministic task
    /// only), signed into its request; none: the task's default. (Skipped when absent,
    /// so a file without it keeps the id it had before the field existed.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::verification::VerifySpec>,
}

/// Step outputs of a run, by step key.
pub type Outputs = HashMap<String, Value>;

impl ProcessDefinition {
    pub fn trigger(&self) -> &Trigger {
        match &self.steps[0].kind {
            StepKind::Trigger(t) => t,
            _ => unreachable!("validated: the first step is the trigger"),
        }
    }

    pub fn step(&self, key: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.key == key)
    }

    /// Steps that run when `key` succeeds.
    pub fn successors(&self, key: &str) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|s| s.after.as_deref() == Some(key))
            .collect()
    }
}
