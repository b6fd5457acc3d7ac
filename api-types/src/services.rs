//! Services: what `GET /v1/services` lists and a deploy (`POST /v1/services`) streams.

use crate::error::ApiError;
use mesg_protocol::{PackageHash, PublicKey, ServiceDefinition, ServiceHash};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The header that carries a deploy's publisher claim (`SignedClaim::to_hex`).
pub const PUBLISHER_CLAIM_HEADER: &str = "x-mesg-publisher-claim";

/// A service this node knows (deployed here or fetched from a peer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    pub hash: ServiceHash,
    pub sid: Option<String>,
    pub name: String,
    pub definition: ServiceDefinition,
    pub package_hash: PackageHash,
    pub package_size: u64,
    pub publisher: PublicKey,
    /// Who published the sid (signed its claim): a CLI account, or the node a service was
    /// deployed on without one. Null: unpublished, usable by hash only.
    #[serde(default)]
    pub sid_publisher: Option<PublicKey>,
    pub image: Option<String>,
    pub deployed_at: u64,
}

impl ServiceView {
    /// The sid, or the name when the service has no sid.
    pub fn label(&self) -> &str {
        self.sid.as_deref().unwrap_or(&self.name)
    }
}

/// `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<ServiceView>,
}

/// The query of `POST /v1/services`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeployQuery {
    /// Keep the package on this node: it is never served to peers (they can still route
    /// executions to this node, but cannot fetch the package to run the service
    /// themselves). Default false: any peer may fetch the package (the whole build context
    /// minus .dockerignore).
    #[serde(default)]
    pub private: bool,
}

/// A deploy step, as the engine reports it while it builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeployProgress {
    Progress { message: String },
}

/// One line of a deploy's newline-delimited JSON answer: `progress` lines, then one
/// `done` or `error` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeployLine {
    Progress { message: String },
    Done { service: ServiceView },
    Error { error: ApiError },
}

impl From<DeployProgress> for DeployLine {
    fn from(p: DeployProgress) -> DeployLine {
        match p {
            DeployProgress::Progress { message } => DeployLine::Progress { message },
        }
    }
}
