//! What a service definition is: the types `mesg.yml` parses into, which the node stores,
//! sends to peers and hashes. Reading and checking them is [`super::parse`]'s job.

use crate::schema::ParamMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest `sid` (a DNS label limit, so a sid can name things in Docker too).
pub const MAX_SID_LEN: usize = 63;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
pub const MAX_KEY_LEN: usize = 64;
/// Longest per-task timeout: a day. Longer work should report progress as events.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Dependency key reserved for the main container (its DNS alias on the instance network).
pub const MAIN_CONTAINER_KEY: &str = "service";

/// A parsed and validated service definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDefinition {
    pub name: String,
    pub sid: Option<String>,
    pub description: Option<String>,
    pub repository: Option<String>,
    /// The main container (built from the service's package).
    pub configuration: ContainerSpec,
    /// Extra containers by key, from images that exist locally.
    pub dependencies: BTreeMap<String, ContainerSpec>,
    pub tasks: BTreeMap<String, TaskDefinition>,
    pub events: BTreeMap<String, EventDefinition>,
    /// Service-wide economy settings (the publisher's share); None: the defaults. Left
    /// out of the canonical encoding when None, so that services without it keep their
    /// hash.
    pub economy: Option<crate::economy::Economy>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Required for dependencies; never set for the main container.
    pub image: Option<String>,
    pub volumes: Vec<String>,
    #[serde(rename = "volumesFrom")]
    pub volumes_from: Vec<String>,
    pub ports: Vec<PortMapping>,
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Defaults; only these keys may be overridden when an instance starts.
    pub env: BTreeMap<String, String>,
}

/// `"80"` publishes container port 80 on a host port chosen by Docker;
/// `"8080:80"` publishes container port 80 on host port 8080 (Docker's `HOST:CONTAINER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container: u16,
    pub host: Option<u16>,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Some(h) => write!(f, "{h}:{}", self.container),
            None => write!(f, "{}", self.container),
        }
    }
}

/// A task. Its serialized forms are written by hand in `task_codec.rs`: fields added
/// after `price` leave the bytes and the hash of tasks that do not use them unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefinition {
    pub name: Option<String>,
    pub description: Option<String>,
    pub inputs: ParamMap,
    pub outputs: ParamMap,
    /// Default execution timeout of this task, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// What one execution costs (None: free). Part of the service hash.
    pub price: Option<crate::economy::Price>,
    /// The publisher says the same inputs always give the same outputs (canonical JSON):
    /// only such a task may be verified by several executors. Part of the service hash
    /// when true.
    pub deterministic: bool,
    /// Default k-of-n verification of its executions (a deterministic task only);
    /// requests may override it. Part of the service hash when set.
    pub verify: Option<crate::verification::VerifySpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDefinition {
    pub name: Option<String>,
    pub description: Option<String>,
    pub data: ParamMap,
}

impl ServiceDefinition {
    pub fn task(&self, key: &str) -> Option<&TaskDefinition> {
        self.tasks.get(key)
    }

    /// The price of task `key` (None: free, or no such task).
    pub fn price_of(&self, key: &str) -> Option<crate::economy::Price> {
        self.tasks.get(key).and_then(|t| t.price)
    }
}
