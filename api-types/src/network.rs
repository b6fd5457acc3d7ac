//! The network as this node sees it: its connections (`GET /v1/peers`) and the services
//! other nodes announce (`GET /v1/network/services`).

use mesg_protocol::{PublicKey, ServiceHash, ServiceOffer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A peer this node is or was connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub connected: bool,
}

/// A node known from its signed announcements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub node: PublicKey,
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub services: Vec<ServiceOffer>,
    /// When its last announcement expires.
    pub expires_in_ms: u64,
    /// Round-trip time to the node (microseconds), when measured.
    pub rtt_us: Option<f64>,
}

/// `GET /v1/peers`: connections, and the nodes known from their announcements. Fields in
/// alphabetical order: the order the node has always sent them in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    pub nodes: Vec<NodeView>,
    pub peers: Vec<PeerInfo>,
    /// What this node keeps of the peers it used as providers, and the ones it banned
    /// (absent from nodes older than this field).
    #[serde(default)]
    pub reputation: Vec<PeerReputationView>,
}

/// What a node keeps of one peer: outcomes of the executions it gave it, verification
/// verdicts on its results, round trips, and whether it is banned (docs/verification.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerReputationView {
    pub node: PublicKey,
    pub peer_id: String,
    /// Results it sent back.
    pub successes: u64,
    /// Unreachable, or refused for a reason of its own.
    pub failures: u64,
    /// Accepted an execution and sent no result before its deadline.
    pub timeouts: u64,
    /// Verification verdicts: its result was in the agreeing group, or not.
    pub agreed: u64,
    pub disagreed: u64,
    /// Agreed verdicts since its last disagreement.
    pub consecutive_agreed: u64,
    /// Moving average of its submit round trip (µs), and of the deviation from it.
    pub rtt_us: Option<f64>,
    pub rtt_dev_us: Option<f64>,
    /// Unix ms.
    pub last_disagreement_at: Option<u64>,
    pub last_timeout_at: Option<u64>,
    /// A recent disagreement: chosen after every other provider.
    pub distrusted: bool,
    /// Share of its executions adaptive replication would verify (1.0: every one).
    pub sample_rate: f64,
    /// Never chosen as a provider; its submits are refused.
    pub banned: bool,
    pub ban_reason: Option<String>,
    /// Unix ms.
    pub banned_at: Option<u64>,
}

/// `PUT /v1/peers/{key}/ban`: why (optional, at most 256 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanPeer {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A node that runs an instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub node: PublicKey,
    pub peer_id: String,
    pub sid: Option<String>,
    pub instance_hash: String,
    /// Executions in progress on the provider's instance.
    pub in_flight: u32,
    pub expires_in_ms: u64,
}

/// A service the network runs, with its providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkServiceView {
    pub service_hash: ServiceHash,
    pub sid: Option<String>,
    /// Who published the sid (a verified claim); null: unpublished, usable by hash only.
    pub publisher: Option<PublicKey>,
    pub providers: Vec<ProviderView>,
}

/// `GET /v1/network/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkServiceList {
    pub services: Vec<NetworkServiceView>,
}
