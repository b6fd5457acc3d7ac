//! What a process and its runs are, as stored and as shown by the API: the process record,
//! its view, a run with the state of each of its steps and attempts.

use mesg_protocol::ServiceHash;
use mesg_protocol::process::ProcessDefinition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub id: String,
    pub name: String,
    pub definition: ProcessDefinition,
    /// Service hash of each step's service (trigger and tasks), by step key.
    pub services: BTreeMap<String, ServiceHash>,
    pub created_at: u64,
}

// The API's view of a process and its runs; a run is also the record kept in the store
// (JSON), the same serde form: declared once, in mesg-api-types (shared with the CLI).
pub use mesg_api_types::{Attempt, ProcessView, Run, RunStatus, StepRun, StepStatus};
