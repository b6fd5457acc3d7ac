//! The runtime: turns service definitions into running containers on the local Docker
//! Engine (through bollard), and reports what happens to them.
//!
//! Everything this node creates in Docker carries the label `mesg.node=<node id>`, and the
//! runtime only ever lists, changes or removes objects with its own label, so several
//! nodes can share one Docker Engine (the testnet does) without touching each other.
//!
//! Names: network `mesg-<node8>-<instance12>`, containers `mesg-<node8>-<instance12>-<key>`
//! (`key` = `service` for the main container, else the dependency key), volumes
//! `mesg-<node8>-<sid>-<owner16>-<key>-<path hash8>` (`owner16`: a hash of the publisher's
//! key and the sid) so data survives restarts and redeploys of the same sid by the same
//! publisher, and no other publisher's service of that sid mounts it;
//! `mesg-<node8>-<service12>-<key>-<path hash8>` for a service without sid.

use async_trait::async_trait;
use futures::stream::BoxStream;
use mesg_protocol::{InstanceHash, PublicKey, ServiceDefinition, ServiceHash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub mod docker;
#[cfg(any(test, feature = "test-fakes"))]
pub mod fake;
pub mod limits;
pub mod policy;
mod status;

pub use docker::DockerRuntime;
#[cfg(any(test, feature = "test-fakes"))]
pub use fake::FakeRuntime;
pub use policy::{ContainerPolicy, PolicyError};

/// Labels put on every Docker object the runtime creates.
pub mod labels {
    pub const NODE: &str = "mesg.node";
    pub const SERVICE: &str = "mesg.service";
    pub const INSTANCE: &str = "mesg.instance";
    /// `service` for the main container, else the dependency key.
    pub const KEY: &str = "mesg.key";
    pub const SID: &str = "mesg.sid";
}

/// DNS alias of the node on an instance network when the node itself runs in a container.
pub const NODE_ALIAS: &str = "mesg-node";

// Limits an Application may ask for (its default is the node's default: 512 MiB, 1 CPU,
// 512 pids), also kept with each instance in the store: the API's type, one serde form.
pub use mesg_api_types::ResourceLimits;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The node's id (base58 public key): the value of the `mesg.node` label.
    pub node_id: String,
    /// Port of the node's service API, for `MESG_ENDPOINT`.
    pub service_api_port: u16,
    /// When the node runs in a container: that container's id or name. The runtime then
    /// connects it to every instance network with the alias [`NODE_ALIAS`] and containers
    /// reach the node at `http://mesg-node:<port>`; otherwise they reach it on the instance
    /// network's gateway address.
    pub self_container: Option<String>,
    pub default_limits: ResourceLimits,
    /// How many times Docker restarts a crashed container (with its doubling backoff)
    /// before the instance is reported `Crashed`.
    pub max_restarts: u32,
    /// Ports, capabilities and images containers may have (the operator's choices).
    pub policy: ContainerPolicy,
}

/// Everything needed to run one instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub instance_hash: InstanceHash,
    pub service_hash: ServiceHash,
    pub definition: ServiceDefinition,
    /// Who published the service (its record's `publisher`): with the sid, the owner of
    /// the service's volumes, so another publisher's service with the same sid never
    /// mounts them.
    pub publisher: PublicKey,
    /// Image of the main container (built from the package).
    pub image: String,
    /// Overrides of the main container's env; only keys declared in
    /// `configuration.env` are allowed.
    pub env: BTreeMap<String, String>,
    /// Secret the containers present to the service API (`MESG_TOKEN`).
    pub token: String,
    pub limits: Option<ResourceLimits>,
}

impl InstanceSpec {
    /// Overrides may only use keys the definition declares.
    pub(crate) fn check_env(&self) -> Result<(), RuntimeError> {
        let declared = &self.definition.configuration.env;
        match self.env.keys().find(|k| !declared.contains_key(*k)) {
            Some(key) => Err(RuntimeError::UndeclaredEnv {
                key: key.clone(),
                declared: declared.keys().cloned().collect(),
            }),
            None => Ok(()),
        }
    }
}

// What the runtime reports of an instance's containers and their output is what the API
// shows: the API's types.
pub use mesg_api_types::{ContainerState, InstanceState, InstanceStatus, LogLine};

/// Something that happened to a container of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    Started {
        instance: InstanceHash,
        key: String,
    },
    Died {
        instance: InstanceHash,
        key: String,
        exit_code: Option<i64>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Instances whose containers were found running and kept.
    pub adopted: Vec<InstanceHash>,
    /// Instances (re)started because they should run and did not.
    pub restarted: Vec<InstanceHash>,
    /// Names of containers and networks removed because no desired instance owns them.
    pub removed: Vec<String>,
    /// Desired instances that could not be started, with the reason.
    #[serde(default)]
    pub failed: Vec<(InstanceHash, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerInfo {
    pub server_version: String,
    pub api_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the Docker Engine ({0}); is Docker running and is its socket readable?")]
    Unavailable(String),
    #[error("image build failed: {0}")]
    Build(String),
    #[error(
        "dependency `{key}` uses image `{image}`, which is not in the local Docker Engine; build or load it first (mesg never pulls from a registry)"
    )]
    MissingImage { key: String, image: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("env `{key}` is not declared in the service's configuration.env{}", declared_hint(.declared))]
    UndeclaredEnv { key: String, declared: Vec<String> },
    #[error("instance {0} has no containers on this node")]
    UnknownInstance(InstanceHash),
    #[error("docker: {0}")]
    Docker(String),
}

fn declared_hint(declared: &[String]) -> String {
    if declared.is_empty() {
        " (it declares none)".to_string()
    } else {
        format!(" (declared: {})", declared.join(", "))
    }
}

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Ping the engine (negotiating the API version on first contact).
    async fn check(&self) -> Result<DockerInfo, RuntimeError>;

    /// Build `tar` (a package) as image `tag`, sending each line of build output to
    /// `progress` as it comes.
    async fn build(
        &self,
        tar: Vec<u8>,
        tag: &str,
        progress: mpsc::Sender<String>,
    ) -> Result<(), RuntimeError>;

    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError>;

    /// Whether this node may run `definition`'s containers: every dependency image exists
    /// and was built by this node or allowed by its operator, and no port is published on
    /// a host port the node uses. `start` checks the same; deploy asks first so that a
    /// refusal comes before anything is built.
    async fn check_definition(&self, definition: &ServiceDefinition) -> Result<(), RuntimeError>;

    /// Whether this node may build a package with this `Dockerfile`: every image it builds
    /// from (`FROM`, `COPY --from`) is `scratch`, one of its stages, or an image on the
    /// engine that this node built or its operator allowed (nothing is ever pulled).
    async fn check_build(&self, dockerfile: &str) -> Result<(), RuntimeError>;

    /// Create the instance network, volumes and containers (dependencies first) and start
    /// them. Idempotent: containers already running are kept. On failure, what this call
    /// created is removed again.
    async fn start(&self, spec: &InstanceSpec) -> Result<(), RuntimeError>;

    /// Stop the containers (SIGTERM, then SIGKILL after `grace`), keeping them.
    async fn stop(&self, instance: &InstanceHash, grace: Duration) -> Result<(), RuntimeError>;

    /// Remove containers and network; volumes too unless `keep_data`.
    async fn delete(&self, instance: &InstanceHash, keep_data: bool) -> Result<(), RuntimeError>;

    async fn status(&self, instance: &InstanceHash) -> Result<InstanceState, RuntimeError>;

    /// stdout/stderr of every container of the instance; `tail` lines of history, then
    /// new lines as they come if `follow`.
    fn logs(
        &self,
        instance: &InstanceHash,
        follow: bool,
        tail: Option<usize>,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>>;

    /// On node start: adopt running containers of `desired` instances, start the ones that
    /// should run and do not, remove this node's containers and networks that belong to no
    /// desired instance (volumes are kept: they hold data).
    async fn reconcile(&self, desired: &[InstanceSpec]) -> Result<ReconcileReport, RuntimeError>;

    /// Container starts and deaths of this node, as Docker reports them.
    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent>;

    /// Subnets (CIDR, e.g. `172.18.0.0/16`) of this node's instance networks: where its
    /// containers call the service API from.
    async fn instance_subnets(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }
}
