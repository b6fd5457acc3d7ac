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
