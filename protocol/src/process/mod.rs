//! Processes: declarative Applications that a node runs. A process is a trigger (an event
//! of a service, or the result of a service's task) followed by steps that filter, map and
//! execute tasks, in chains and branches:
//!
//! ```yaml
//! name: tick-to-kv
//! max_depth: 8                               # optional: chains of triggers (loops)
//! rate_limit: {per_second: 20, burst: 40}    # optional: runs started per second
//! steps:
//!   - key: tick
//!     trigger: {service: echo, event: tick}
//!   - filter: {path: count, gte: 2}          # the trigger's data
//!   - key: payload
//!     map:
//!       key: last-tick
//!       value: {step: tick, path: count}      # a reference
//!   - key: store
//!     task:
//!       service: kv
//!       task: set
//!       inputs: {step: payload}
//!       retries: 2
//!       backoff: 500ms
//!       timeout: 5s
//!       on_error: alert                        # runs when `store` fails for good
//!       max_price: 5000                        # µc per execution; a priced task needs it
//!       verify: 2/3                            # optional, deterministic tasks: 2 of 3 agree
//!   - key: read
//!     after: store                             # a branch (several steps after one)
//!     task: {service: kv, task: get, inputs: {key: last-tick}}
//!   - key: alert
//!     task: {service: echo, task: echo, inputs: {message: "store failed: $(env:WHO)"}}
//! ```
//!
//! A step follows the step listed before it unless it says `after: KEY`; the target of an
//! `on_error` starts an error branch (it has no `after`), and the steps listed after it
//! continue that branch. `$(env:NAME)` is replaced when the process is created.
//!
//! - `model.rs`: what a process is ([`ProcessDefinition`], its steps and their kinds).
//! - `path.rs`, `condition.rs`, `expr.rs`: paths into values, filter conditions and value
//!   expressions, and their evaluation on a run's step outputs.
//! - `parse.rs` (the file and its steps) and `parse_value.rs` (constants, expressions,
//!   conditions, `$(env:NAME)`): reading a process file with the shared YAML walker.
//! - `limits.rs`: `max_depth` and `rate_limit`, the process's protection from loops.
//! - `graph.rs`: the step graph's rules (keys, `after`, `on_error`, references);
//!   `services.rs`: what the named services say (tasks, events, input types).
//! - `references.rs`: what a file names before it is validated (env values, services).
//! - `error.rs`: [`ProcessErrors`], every problem of a file.
//!
//! Running processes is the node's job.

mod condition;
mod error;
mod expr;
mod graph;
mod limits;
mod model;
mod parse;
mod parse_value;
mod path;
mod references;
mod services;

pub use condition::{Condition, Op};
pub use error::{ProcessError, ProcessErrors};
pub use expr::Expr;
pub use model::{
    MAX_DEPTH, MAX_RETRIES, MAX_STEP_PRICE, MAX_STEPS, MAX_TRIGGER_RATE, Outputs,
    ProcessDefinition, RateLimit, Step, StepKind, TaskStep, Trigger, TriggerSource,
};
pub use path::{Path, Segment};
pub use references::{ServiceRef, env_references, service_refs};
pub use services::ServiceLookup;
