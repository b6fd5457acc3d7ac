//! The task that owns the `Swarm`: it starts listening and dialling, then runs one
//! `select!` loop over swarm events, commands from [`NetworkHandle`]s and the redial
//! tick, handing each to the file of its concern. It ends when the shutdown token is
//! cancelled (after closing its connections) or when every handle is dropped.

use super::behaviour::{Behaviour, BehaviourEvent, build_swarm};
use super::gossip;
use super::handle::Command;
use super::kademlia::PendingQueries;
use super::nat::{self, Relays};
use super::peers::PeerBook;
use super::requests::PendingRequests;
use super::{ANNOUNCE_TOPIC, ANNOUNCE_TOPIC_V1, NetworkConfig, NetworkEvent, NetworkHandle};
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, autonat, dcutr, gossipsub, identify, relay, request_response};
use mesg_protocol::Keypair;
use mesg_protocol::messages::{PackageRequest, PackageResponse, WorkRequest, WorkResponse};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long the task waits, once cancelled, for its connections to close before it
/// drops what is left.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often peers whose backoff has passed are dialled again.
const REDIAL_TICK: Duration = Duration::from_millis(500);

struct Task {
    swarm: Swarm<Behaviour>,
    metrics: libp2p::metrics::Metrics,
    commands: mpsc::Receiver<Command>,
    events: EventSink,
    requests: PendingRequests,
    queries: PendingQueries,
    peers: PeerBook,
    listeners: Vec<ListenerId>,
    listen_addrs: Vec<Multiaddr>,
    relays: Relays,
    private_network: bool,
    /// A relay server without `--external-address`: its own listen addresses are what it
    /// tells the nodes that reserve on it (loopback ones only when it listens on
    /// loopback alone).
    listen_as_external: Option<bool>,
}

/// Build the swarm, start listening and dialling, and run it in its own task until
/// `shutdown` is cancelled ([`NetworkHandle::stopped`] tells when it has ended).
pub fn spawn(
    key: &Keypair,
    config: NetworkConfig,
    registry: &mut libp2p::metrics::Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>)> {
    let metrics = libp2p::metrics::Metrics::new(registry);
    let peers = PeerBook::new(
        config.bootstrap.clone(),
        config.private_network,
        config.target_peers,
        config.max_peers,
    );
    peers.stats.register(registry);
    let mut swarm = build_swarm(key, &config, registry)?;
    let local_peer = *swarm.local_peer_id();
    let relays = Relays::new(&config.relays)?;
    for addr in &config.external_addrs {
        swarm.add_external_address(addr.clone());
    }
    let listen_as_external = (config.relay_server && config.external_addrs.is_empty()).then(|| {
        config
            .listen
            .iter()
            .all(|a| !super::addrs::is_unspecified(a))
    });
    let private_network = config.private_network;
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        listeners.push(id);
    }
    for topic in [ANNOUNCE_TOPIC, ANNOUNCE_TOPIC_V1] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic))
            .map_err(|e| anyhow::anyhow!("subscribe: {e:?}"))?;
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(4096);
    let (event_tx, event_rx) = mpsc::channel(4096);
    let task = Task {
        swarm,
        metrics,
        commands: cmd_rx,
        events: EventSink {
            tx: event_tx,
            shutdown: shutdown.clone(),
        },
        requests: PendingRequests::default(),
        queries: PendingQueries::default(),
        peers,
        listeners,
        listen_addrs: Vec::new(),
        relays,
        private_network,
        listen_as_external,
    };
    tokio::spawn(task.run(shutdown));
    Ok((NetworkHandle::new(cmd_tx, local_peer), event_rx))
}

impl Task {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(REDIAL_TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.close().await;
                    return;
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                _ = tick.tick() => {
                    let relays = self.relays.peers().collect();
                    self.peers.redial(&mut self.swarm, &relays);
                    self.relays.tick(&mut self.swarm);
                    let table = self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum();
                    self.peers.stats.kad_table(table);
                }
            }
        }
    }

    /// Stop listening, close every connection, and drive the swarm until they are
    /// closed (at most [`CLOSE_GRACE`]): peers see the connections end at once rather
    /// than after a timeout. Requests still waiting for an answer fail with
    /// [`NetError::Stopped`](super::NetError::Stopped) when the task ends.
    async fn close(&mut self) {
        for id in self.listeners.drain(..) {
            self.swarm.remove_listener(id);
        }
        let peers: Vec<_> = self.swarm.connected_peers().copied().collect();
        tracing::debug!(peers = peers.len(), "network stopping: closing connections");
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let deadline = tokio::time::sleep(CLOSE_GRACE);
        tokio::pin!(deadline);
        while self.swarm.network_info().num_peers() > 0 {
            tokio::select! {
                () = &mut deadline => {
                    tracing::debug!(
                        peers = self.swarm.network_info().num_peers(),
                        "network stopped with connections still closing"
                    );
                    return;
                }
                event = self.swarm.select_next_some() => {
                    if let SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } = event {
                        tracing::debug!(peer = %peer_id, "disconnected (shutdown)");
                    }
                }
            }
        }
        tracing::debug!("network stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        let swarm = &mut self.swarm;
        match cmd {
            Command::SendWork {
                peer,
                request,
                reply,
            } => {
                // A peer exchange is connection upkeep, not work: it protects nothing.
                if !matches!(
                    request,
                    WorkRequest::Exchange(_) | WorkRequest::Reconcile(_)
                ) {
                    self.peers.touch(peer);
                }
                self.peers.dial_for_request(swarm, peer);
                self.requests.send_work(swarm, peer, request, reply)
            }
            Command::RespondWork { channel, response } => {
                PendingRequests::respond_work(swarm, channel, response)
            }
            Command::SendPackage {
                peer,
                request,
                reply,
            } => {
                // A package's download is work (its chunks follow one another); a
                // service record's lookup is one answer, and every node that lists a
                // new service asks its provider: protected like work, each such
                // connection held the provider and the asker above their bounds for
                // half a minute. Protected a few seconds, long enough for the answer.
                if matches!(request, PackageRequest::Chunk { .. }) {
                    self.peers.touch(peer);
                } else {
                    self.peers.touch_for_lookup(peer);
                }
                self.peers.dial_for_request(swarm, peer);
                self.requests.send_package(swarm, peer, request, reply)
            }
            Command::RespondPackage { channel, response } => {
                PendingRequests::respond_package(swarm, channel, response)
            }
            Command::Publish { topic, data, reply } => gossip::publish(swarm, topic, data, reply),
            Command::Subscribe { topic, subscribe } => gossip::subscribe(swarm, topic, subscribe),
            Command::StartProviding { key } => PendingQueries::start_providing(swarm, key),
            Command::GetProviders { key, reply } => self.queries.get_providers(swarm, key, reply),
            Command::PutRecord { key, value } => PendingQueries::put_record(swarm, key, value),
            Command::GetRecord { key, reply } => self.queries.get_record(swarm, key, reply),
            Command::AddAddresses { peer, addrs } => self.peers.add_addresses(swarm, peer, addrs),
            Command::Dial { addr, reply } => self.peers.dial(swarm, addr, reply),
            Command::Connect { peer } => self.peers.dial_for_request(swarm, peer),
            Command::Peers { reply } => {
                let _ = reply.send(self.peers.list(swarm));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.own_addrs());
            }
            Command::SetBlocked { peers, blocked } => {
                for peer in peers {
                    if blocked {
                        swarm.behaviour_mut().blocked.block_peer(peer);
                    } else {
                        swarm.behaviour_mut().blocked.unblock_peer(peer);
                    }
                }
            }
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        self.metrics.record(&event);
        if let SwarmEvent::Behaviour(b) = &event {
            match b {
                BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
                BehaviourEvent::Kad(e) => self.metrics.record(e),
                BehaviourEvent::Identify(e) => self.metrics.record(e),
                BehaviourEvent::Ping(e) => self.metrics.record(e),
                BehaviourEvent::RelayServer(e) => self.metrics.record(e),
                BehaviourEvent::Dcutr(e) => self.metrics.record(e),
                _ => {}
            }
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let circuit = nat::is_circuit(&address);
                if circuit {
                    tracing::info!("reachable through a relay at {address}");
                } else {
                    let full = address.clone().with(libp2p::multiaddr::Protocol::P2p(
                        *self.swarm.local_peer_id(),
                    ));
                    tracing::info!("listening on {full}");
                    if let Some(loopback_too) = self.listen_as_external
                        && (loopback_too || !is_loopback(&address))
                    {
                        self.swarm.add_external_address(address.clone());
                    }
                }
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                    if circuit {
                        self.events.emit(NetworkEvent::RelayedAddrsChanged).await;
                    }
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                if nat::is_circuit(&address) {
                    self.events.emit(NetworkEvent::RelayedAddrsChanged).await;
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                self.listen_addrs.retain(|a| !addresses.contains(a));
                if addresses.iter().any(nat::is_circuit) {
                    self.events.emit(NetworkEvent::RelayedAddrsChanged).await;
                }
                self.relays
                    .on_listener_closed(listener_id, reason.err().map(|e| e.to_string()));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.peers.stats.opened(connection_id, peer_id, &endpoint);
                self.peers.on_connected(peer_id, &endpoint);
                if num_established.get() == 1 {
                    tracing::debug!(peer = %peer_id, relayed = endpoint.is_relayed(), "connected");
                    self.events.emit(NetworkEvent::PeerConnected(peer_id)).await;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                let last = num_established == 0;
                self.peers
                    .stats
                    .closed(connection_id, peer_id, cause.is_some(), last);
                if !last {
                    return;
                }
                tracing::debug!(peer = %peer_id, "disconnected");
                self.peers.on_disconnected(peer_id);
                self.relays.on_disconnected(peer_id);
                self.events
                    .emit(NetworkEvent::PeerDisconnected(peer_id))
                    .await;
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                self.peers.stats.dial_failed(connection_id);
                PeerBook::on_dial_failed(peer_id, &error);
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let offers_hop = info
                    .protocols
                    .iter()
                    .any(|p| p.as_ref() == nat::HOP_PROTOCOL);
                let (direct, _) =
                    super::addrs::filter_remote(info.listen_addrs.clone(), self.private_network);
                self.relays.on_identify(peer_id, offers_hop, &direct);
                self.relays.fill_auto();
                self.peers
                    .on_identify(&mut self.swarm, peer_id, info.listen_addrs);
            }
            BehaviourEvent::RelayClient(event) => self.on_relay_client(event),
            BehaviourEvent::RelayServer(event) => on_relay_server(event),
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.relays.on_nat_status(&mut self.swarm, &new);
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => tracing::info!(peer = %remote_peer_id, "hole punched: direct connection"),
                Err(e) => {
                    tracing::debug!(peer = %remote_peer_id, "hole punching failed (the relayed connection stays): {e}")
                }
            },
            BehaviourEvent::Work(event) => {
                if let request_response::Event::Message { peer, message, .. } = &event
                    && !matches!(
                        message,
                        request_response::Message::Request {
                            request: WorkRequest::Exchange(_) | WorkRequest::Reconcile(_),
                            ..
                        } | request_response::Message::Response {
                            response: WorkResponse::Announcements(_),
                            ..
                        }
                    )
                {
                    self.peers.touch(*peer);
                }
                self.requests.on_work_event(&self.events, event).await
            }
            BehaviourEvent::Package(event) => {
                if let request_response::Event::Message { peer, message, .. } = &event
                    && matches!(
                        message,
                        request_response::Message::Request {
                            request: PackageRequest::Chunk { .. },
                            ..
                        } | request_response::Message::Response {
                            response: PackageResponse::Chunk { .. },
                            ..
                        }
                    )
                {
                    self.peers.touch(*peer);
                }
                self.requests.on_package_event(&self.events, event).await
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                gossip::on_message(
                    &mut self.swarm,
                    &self.events,
                    propagation_source,
                    message_id,
                    message,
                )
                .await
            }
            BehaviourEvent::Kad(event) => {
                if let libp2p::kad::Event::OutboundQueryProgressed {
                    result,
                    stats,
                    step,
                    ..
                } = &event
                {
                    self.peers.stats.kad_query(result, stats, step.last);
                }
                self.queries.on_event(&mut self.swarm, event)
            }
            _ => {}
        }
    }
}

impl Task {
    /// What this node announces: addresses through relays first (a node behind NAT is
    /// reached there; receivers keep the first few), then listen and external ones.
    fn own_addrs(&self) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = self
            .listen_addrs
            .iter()
            .filter(|a| nat::is_circuit(a))
            .cloned()
            .collect();
        let direct = self
            .listen_addrs
            .iter()
            .filter(|a| !nat::is_circuit(a))
            .chain(self.swarm.external_addresses());
        for a in direct {
            if !addrs.contains(a) {
                addrs.push(a.clone());
            }
        }
        addrs
    }

    fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => self.relays.on_reserved(relay_peer_id, renewal),
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "relayed connection out");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "relayed connection in");
            }
        }
    }
}

/// What the relay server does for others (`--relay-server`), in the debug log (counted
/// in `/metrics` too).
fn on_relay_server(event: relay::Event) {
    match event {
        relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
            tracing::debug!(peer = %src_peer_id, "relay: reservation accepted");
        }
        relay::Event::CircuitReqAccepted {
            src_peer_id,
            dst_peer_id,
        } => {
            tracing::debug!(peer = %src_peer_id, dst = %dst_peer_id, "relay: circuit opened");
        }
        relay::Event::ReservationReqDenied { src_peer_id, .. }
        | relay::Event::CircuitReqDenied { src_peer_id, .. } => {
            tracing::debug!(peer = %src_peer_id, "relay: request denied (limits)");
        }
        other => tracing::trace!("relay: {other:?}"),
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Where the task hands events to the engine. Waiting for room in the channel gives up
/// once the node shuts down, so a busy engine never holds the task past its shutdown.
pub(super) struct EventSink {
    tx: mpsc::Sender<NetworkEvent>,
    shutdown: CancellationToken,
}

impl EventSink {
    /// Hand an event to the engine. When the engine is gone, or the node shuts down,
    /// it is dropped.
    pub(super) async fn emit(&self, event: NetworkEvent) {
        tokio::select! {
            _ = self.tx.send(event) => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}
