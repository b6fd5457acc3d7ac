//! The rest of the node's side of the network: a cheap cloneable [`NetworkHandle`] that
//! sends bounded [`Command`]s to the swarm task and awaits oneshot replies.

use super::{Multiaddr, NetError, PeerId, PeerInfo};
use libp2p::request_response::ResponseChannel;
use mesg_protocol::messages::{PackageRequest, PackageResponse, WorkRequest, WorkResponse};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug)]
pub(super) enum Command {
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
    Connect {
        peer: PeerId,
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
    /// Refuse (or accept again) connections with these peers: the simulation's partition.
    SetBlocked {
        peers: Vec<PeerId>,
        blocked: bool,
    },
}

/// Cheap to clone; every clone talks to the same swarm task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    tx: mpsc::Sender<Command>,
    local_peer: PeerId,
}

impl NetworkHandle {
    pub(super) fn new(tx: mpsc::Sender<Command>, local_peer: PeerId) -> NetworkHandle {
        NetworkHandle { tx, local_peer }
    }

    pub fn local_peer(&self) -> PeerId {
        self.local_peer
    }

    /// Resolves when the swarm task has ended (its shutdown token was cancelled and its
    /// connections closed, or every other handle was dropped). Commands sent after that
    /// fail with [`NetError::Stopped`].
    pub async fn stopped(&self) {
        self.tx.closed().await
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

    /// Open a connection to a known peer when there is none (e.g. the providers of a
    /// service whose events this node wants: with bounded connections it may have none to
    /// them, and gossip reaches a subscriber through the topic's mesh of connected peers).
    pub async fn connect(&self, peer: PeerId) {
        self.tell(Command::Connect { peer }).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Refuse connections with `peers` (closing those open) when `blocked`, or accept them
    /// again. No node flag sets it: the simulation (mesg-sim) cuts its network in two this
    /// way, a connection gate in libp2p (`allow_block_list`), below every protocol.
    pub async fn set_blocked(&self, peers: Vec<PeerId>, blocked: bool) {
        self.tell(Command::SetBlocked { peers, blocked }).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }
}
