//! The peer-to-peer network (libp2p): TCP+noise+yamux and QUIC, identify, ping,
//! Kademlia (`/mesg/kad/1.0.0`), gossipsub (announcements and events), and
//! request-response for work (`/mesg/work/1`) and packages (`/mesg/package/1`).
//!
//! Shape (rust-libp2p's file-sharing example): one task owns the `Swarm` and runs a
//! `select!` loop; the rest of the node holds a cheap cloneable [`NetworkHandle`] that
//! sends bounded commands and awaits oneshot replies; what peers send comes out as
//! [`NetworkEvent`]s on a bounded channel. The swarm task never touches Docker or the
//! store; it checks what it can check alone (sizes, frames, signatures of gossip and
//! records) and leaves decisions to the engine.

pub mod addrs;
mod codec;
mod swarm;

pub use swarm::spawn;

use libp2p::request_response::ResponseChannel;
pub use libp2p::{Multiaddr, PeerId};
use mesg_protocol::ServiceHash;
use mesg_protocol::messages::{
    GossipMessage, PackageRequest, PackageResponse, WorkRequest, WorkResponse,
};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
}

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
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub connected: bool,
}

#[derive(Debug)]
pub(crate) enum Command {
    SendWork {
        peer: PeerId,
        request: WorkRequest,
        reply: oneshot::Sender<Result<WorkResponse, NetError>>,
    },
    RespondWork {
        channel: ResponseChannel<WorkResponse>,
        response: WorkResponse,
    },
    SendPackage {
        peer: PeerId,
        request: PackageRequest,
        reply: oneshot::Sender<Result<PackageResponse, NetError>>,
    },
    RespondPackage {
        channel: ResponseChannel<PackageResponse>,
        response: PackageResponse,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Subscribe {
        topic: String,
        subscribe: bool,
    },
    StartProviding {
        key: Vec<u8>,
    },
    GetProviders {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<PeerId>, NetError>>,
    },
    PutRecord {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    GetRecord {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    AddAddresses {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
}

/// Cheap to clone; every clone talks to the same swarm task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    tx: mpsc::Sender<Command>,
    local_peer: PeerId,
}

impl NetworkHandle {
    pub fn local_peer(&self) -> PeerId {
        self.local_peer
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    async fn tell(&self, cmd: Command) {
        // A stopped network only happens at shutdown; nothing to report then.
        let _ = self.tx.send(cmd).await;
    }

    /// Send a work request and wait for the peer's immediate answer.
    pub async fn send_work(
        &self,
        peer: PeerId,
        request: WorkRequest,
    ) -> Result<WorkResponse, NetError> {
        self.call(|reply| Command::SendWork {
            peer,
            request,
            reply,
        })
        .await?
    }

    pub async fn respond_work(
        &self,
        channel: ResponseChannel<WorkResponse>,
        response: WorkResponse,
    ) {
        self.tell(Command::RespondWork { channel, response }).await
    }

    pub async fn send_package(
        &self,
        peer: PeerId,
        request: PackageRequest,
    ) -> Result<PackageResponse, NetError> {
        self.call(|reply| Command::SendPackage {
            peer,
            request,
            reply,
        })
        .await?
    }

    pub async fn respond_package(
        &self,
        channel: ResponseChannel<PackageResponse>,
        response: PackageResponse,
    ) {
        self.tell(Command::RespondPackage { channel, response })
            .await
    }

    /// Publish an encoded [`GossipMessage`] frame on a topic.
    pub async fn publish(&self, topic: String, data: Vec<u8>) -> Result<(), NetError> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    pub async fn subscribe(&self, topic: String) {
        self.tell(Command::Subscribe {
            topic,
            subscribe: true,
        })
        .await
    }

    pub async fn unsubscribe(&self, topic: String) {
        self.tell(Command::Subscribe {
            topic,
            subscribe: false,
        })
        .await
    }

    pub async fn start_providing(&self, key: Vec<u8>) {
        self.tell(Command::StartProviding { key }).await
    }

    pub async fn providers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::GetProviders { key, reply })
            .await?
    }

    pub async fn put_record(&self, key: Vec<u8>, value: Vec<u8>) {
        self.tell(Command::PutRecord { key, value }).await
    }

    pub async fn get_record(&self, key: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.call(|reply| Command::GetRecord { key, reply }).await?
    }

    /// Addresses of a peer learned elsewhere (its signed announcement): filtered and
    /// capped ([`addrs::filter_remote`]), remembered for routing and dialled when not
    /// connected (until [`MAX_REDIALS`] dials in a row failed).
    pub async fn add_addresses(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.tell(Command::AddAddresses { peer, addrs }).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }
}
