//! The `mesg.yml` service definition: types, strict parsing with every error of a file at
//! once (each with its field path and position), and the canonical encoding that the
//! [`ServiceHash`](crate::hash::ServiceHash) is computed over.
//!
//! - `model.rs`: what a definition is ([`ServiceDefinition`] and its parts).
//! - `parse.rs`: reading `mesg.yml` ([`ServiceDefinition::from_yaml`]) and its top-level,
//!   task, event and parameter rules; `container.rs`: the rules of a container;
//!   `economy.rs`: a task's `price` and the `economy` section.
//! - `syntax.rs`: the syntax of single values (keys, sids, durations, ports).
//! - `error.rs`: [`DefinitionErrors`], every problem of a file.
//! - `render.rs`: writing a definition back to `mesg.yml`.
//! - `hashing.rs`: the canonical encoding and the service hash; `task_codec.rs`: the
//!   serialized forms of a task (fields added later keep older tasks' bytes).
//! - `verify.rs`: a task's `deterministic` and `verify` fields.

mod container;
mod economy;
mod error;
mod hashing;
mod model;
mod parse;
mod render;
mod syntax;
mod task_codec;
mod verify;

pub use error::{DefinitionError, DefinitionErrors};
pub use model::{
    ContainerSpec, EventDefinition, MAIN_CONTAINER_KEY, MAX_DESCRIPTION_LEN, MAX_KEY_LEN,
    MAX_NAME_LEN, MAX_SID_LEN, MAX_TIMEOUT_MS, PortMapping, ServiceDefinition, TaskDefinition,
};
pub use syntax::{is_valid_env_name, is_valid_key, is_valid_sid, parse_duration_ms};
pub(crate) use verify::verify_spec;
