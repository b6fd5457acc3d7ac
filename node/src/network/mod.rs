//! The peer-to-peer network (libp2p): TCP+noise+yamux and QUIC, identify, ping,
//! Kademlia (`/mesg/kad/1.0.0`), gossipsub (announcements and events), and
//! request-response for work (`/mesg/work/1`) and packages (`/mesg/package/1`).
//!
//! Shape (rust-libp2p's file-sharing example): one task owns the `Swarm` and runs a
//! `select!` loop; the rest of the node holds a cheap cloneable [`NetworkHandle`] that
//! sends bounded commands and awaits oneshot replies; what peers send comes out as
//! [`NetworkEvent`]s on a bounded channel. The swarm task never touches Docker or the
//! store; it checks what it can check alone (sizes, frames, signatures of gossip and
//! records) and leaves decisions to the engine. The task ends when the node's shutdown
//! token is cancelled, after closing its connections.
//!
//! Files: `handle` (commands in), `swarm` (the task and its loop), `behaviour` (the
//! protocols and their settings), `requests` (work and packages), `gossip`, `kademlia`,
//! `peers` (bootstrap, redials, the peer list), `conn_stats` (who opens connections,
//! how they end), `codec` (length-prefixed frames), `nat`
//! (AutoNAT, relay reservations and the relay server's limits).

pub mod addrs;
mod behaviour;
mod codec;
mod conn_stats;
mod gossip;
mod handle;
mod kad_gate;
mod kademlia;
pub mod nat;
mod peers;
mod requests;
mod swarm;

pub use handle::NetworkHandle;
pub use swarm::spawn;

use libp2p::request_response::ResponseChannel;
pub use libp2p::{Multiaddr, PeerId};
use mesg_protocol::ServiceHash;
use mesg_protocol::messages::{
    GossipMessage, PackageRequest, PackageResponse, WorkRequest, WorkResponse,
};
use std::time::Duration;

/// Gossip topic of announcements (format 2: offers carry their publisher's claim).
pub const ANNOUNCE_TOPIC: &str = "mesg/announce/2";
/// Gossip topic of first-format announcements, from nodes older than publisher claims:
/// still subscribed to and read (their services are unpublished), never published on.
/// A topic per format keeps older nodes from receiving frames they cannot decode (and
/// penalising the sender for them).
pub const ANNOUNCE_TOPIC_V1: &str = "mesg/announce/1";
/// Prefix of the per-service event topics: `mesg/events/1/<service hash>`.
pub const EVENTS_TOPIC_PREFIX: &str = "mesg/events/1/";

/// Dials of a peer learned from the network (not a bootstrap address) that may fail in a
/// row before the node forgets its addresses: with the backoff (0.5 s doubling to 30 s)
/// that is about a minute of trying, enough for a restart; an address that never
/// answers is not dialled forever. A new announcement from the peer starts over.
pub const MAX_REDIALS: u32 = 6;

pub fn events_topic(service: &ServiceHash) -> String {
    format!("{EVENTS_TOPIC_PREFIX}{service}")
}

/// Kademlia key under which providers of a service (nodes running it) register.
pub fn service_key(service: &ServiceHash) -> Vec<u8> {
    let mut k = b"mesg/service/".to_vec();
    k.extend_from_slice(service.as_bytes());
    k
}

/// Kademlia key of a service's signed record.
pub fn record_key(service: &ServiceHash) -> Vec<u8> {
    let mut k = b"mesg/record/".to_vec();
    k.extend_from_slice(service.as_bytes());
    k
}

/// Kademlia key under which holders of a package register.
pub fn package_key(package: &mesg_protocol::PackageHash) -> Vec<u8> {
    let mut k = b"mesg/package/".to_vec();
    k.extend_from_slice(package.as_bytes());
    k
}

#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    /// Most connections in total; beyond it new ones are refused.
    pub max_connections: u32,
    /// How long a work request (submit, result, cancel) may wait for its answer. Short:
    /// answering a submit is a signature check and a flush, and a provider that does not
    /// answer in time is passed over for the next one (package chunks get 6 times this).
    pub request_timeout: Duration,
    /// Whether loopback and private addresses from peers may be dialled (every node on
    /// loopback, a LAN or a Docker network); see [`addrs`].
    pub private_network: bool,
    /// Peers the node dials up to (see `peers`): not every node it hears of.
    pub target_peers: usize,
    /// Peers above which random idle connections are closed, down to the target.
    pub max_peers: usize,
    /// Relay others' connections (circuit relay v2 server, limits in [`nat`]).
    pub relay_server: bool,
    /// Relays to keep a reservation on (`.../p2p/<relay id>`): the node is reachable
    /// through them whatever AutoNAT says.
    pub relays: Vec<Multiaddr>,
    /// Addresses others reach this node at, as the operator knows them (a public IP, a
    /// forwarded port, a DNS name): announced, and given by a relay server to the nodes
    /// that reserve on it.
    pub external_addrs: Vec<Multiaddr>,
}

/// Default of [`NetworkConfig::target_peers`].
pub const DEFAULT_TARGET_PEERS: u16 = 20;
/// Default of [`NetworkConfig::max_peers`].
pub const DEFAULT_MAX_PEERS: u16 = 30;

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            max_connections: 512,
            request_timeout: Duration::from_secs(3),
            private_network: false,
            target_peers: usize::from(DEFAULT_TARGET_PEERS),
            max_peers: usize::from(DEFAULT_MAX_PEERS),
            relay_server: false,
            relays: Vec::new(),
            external_addrs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("the network task stopped")]
    Stopped,
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable { peer: PeerId, reason: String },
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("{0}")]
    Gossip(String),
    #[error("{0}")]
    Kademlia(String),
    #[error("invalid address: {0}")]
    Address(String),
}

impl NetError {
    /// What went wrong, without the peer it names (for a line that names it already).
    pub fn reason(&self) -> String {
        match self {
            NetError::Unreachable { reason, .. } => reason.clone(),
            NetError::Request { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// What peers send us, for the engine to handle.
#[derive(Debug)]
pub enum NetworkEvent {
    Work {
        peer: PeerId,
        request: WorkRequest,
        channel: ResponseChannel<WorkResponse>,
    },
    Package {
        peer: PeerId,
        request: PackageRequest,
        channel: ResponseChannel<PackageResponse>,
    },
    /// A gossip message whose frame, envelope signature, expiry and claimed signer were
    /// checked (the signer is the node that published it).
    Gossip {
        source: PeerId,
        message: GossipMessage,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// An address through a relay was gained or lost (a reservation): the node's
    /// announcement should say so now, not at its next refresh.
    RelayedAddrsChanged,
}

pub use mesg_api_types::PeerInfo;
