//! The task that owns the `Swarm`.

use super::codec::FrameCodec;
use super::*;
use futures::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts};
use libp2p::{
    StreamProtocol, Swarm, connection_limits, gossipsub, identify, kad, noise, ping,
    request_response, tcp, yamux,
};
use mesg_protocol::messages::GossipMessage;
use mesg_protocol::types::domains;
use mesg_protocol::wire::{MAX_GOSSIP_MESSAGE, MAX_PACKAGE_MESSAGE, MAX_WORK_MESSAGE};
use mesg_protocol::{Keypair, PublicKey, ServiceRecord, Signed, now_ms, wire};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

type WorkCodec = FrameCodec<WorkRequest, WorkResponse, MAX_WORK_MESSAGE>;
type PackageCodec = FrameCodec<PackageRequest, PackageResponse, MAX_PACKAGE_MESSAGE>;

/// Only our topics may be subscribed to (ours or a peer's subscriptions).
#[derive(Debug, Default, Clone)]
pub struct TopicWhitelist;

impl gossipsub::TopicSubscriptionFilter for TopicWhitelist {
    fn can_subscribe(&mut self, topic: &gossipsub::TopicHash) -> bool {
        let t = topic.as_str();
        t == ANNOUNCE_TOPIC
            || t == ANNOUNCE_TOPIC_V1
            || t.strip_prefix(EVENTS_TOPIC_PREFIX)
                .is_some_and(|h| h.parse::<ServiceHash>().is_ok())
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour<gossipsub::IdentityTransform, TopicWhitelist>,
    work: request_response::Behaviour<WorkCodec>,
    package: request_response::Behaviour<PackageCodec>,
}

enum KadPending {
    Providers(
        oneshot::Sender<Result<Vec<PeerId>, NetError>>,
        HashSet<PeerId>,
    ),
    Record(oneshot::Sender<Result<Vec<u8>, NetError>>),
}

/// A peer worth keeping a connection to, and when to try again.
struct Redial {
    addrs: Vec<Multiaddr>,
    backoff: Duration,
    next: Instant,
    /// Dials since the last connection (see [`MAX_REDIALS`]).
    attempts: u32,
    /// When the addresses were given up on after [`MAX_REDIALS`] failed dials.
    gave_up_at: Option<Instant>,
}

impl Redial {
    fn new(addrs: Vec<Multiaddr>, next: Instant) -> Redial {
        Redial {
            addrs,
            backoff: MIN_BACKOFF,
            next,
            attempts: 0,
            gave_up_at: None,
        }
    }

    /// Whether to dial now (and schedule the next try). `limit`: dials in a row without a
    /// connection before giving up (its addresses are forgotten); none for bootstrap
    /// addresses, which the operator gave.
    fn due(&mut self, now: Instant, limit: Option<u32>) -> bool {
        if self.next > now || self.addrs.is_empty() {
            return false;
        }
        if limit.is_some_and(|l| self.attempts >= l) {
            self.addrs.clear();
            self.gave_up_at = Some(now);
            return false;
        }
        self.attempts += 1;
        self.next = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }

    /// Connected: the next loss starts over.
    fn connected(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.attempts = 0;
        self.gave_up_at = None;
    }

    /// Addresses from a new announcement: tried again, unless this peer's addresses
    /// were given up on less than [`REDIAL_COOLDOWN`] ago (a peer announcing again and
    /// again must not keep us dialling).
    fn announced(&mut self, addrs: Vec<Multiaddr>, now: Instant) {
        if self
            .gave_up_at
            .is_some_and(|t| now.duration_since(t) < REDIAL_COOLDOWN)
        {
            return;
        }
        if self.gave_up_at.take().is_some() {
            self.attempts = 0;
            self.backoff = MIN_BACKOFF;
        }
        for a in addrs {
            if !self.addrs.contains(&a) {
                self.addrs.push(a);
            }
        }
        // Never more than the cap in all (identify's first, then announced ones).
        self.addrs.truncate(addrs::MAX_REMOTE_ADDRS);
    }
}

/// After giving up on a peer's addresses, how long new announcements of it are not
/// dialled (a connection from it ends this at once).
const REDIAL_COOLDOWN: Duration = Duration::from_secs(600);

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Task {
    swarm: Swarm<Behaviour>,
    metrics: libp2p::metrics::Metrics,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    pending_work: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<WorkResponse, NetError>>,
    >,
    pending_package: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<PackageResponse, NetError>>,
    >,
    pending_kad: HashMap<kad::QueryId, KadPending>,
    /// Bootstrap addresses (by address: their peer id may be unknown until connected).
    bootstrap: HashMap<Multiaddr, Redial>,
    bootstrap_peers: HashMap<PeerId, Multiaddr>,
    /// Peers we were connected to, with the addresses they listen on.
    known: HashMap<PeerId, Redial>,
    listen_addrs: Vec<Multiaddr>,
    private_network: bool,
}

/// Concurrent work streams on one connection (inbound and outbound together; a peer has
/// at most 4 connections). Each inbound stream may hold a frame of up to
/// `MAX_WORK_MESSAGE` (4 MiB) while it arrives, so this bounds what one peer can pin:
/// 256 × 4 MiB per connection, and only for bytes it really sends, until the request
/// timeout. Four times the 64 requests in flight of the routing benchmark, whose results
/// flow back on the same connection. (Was 1,024, with the whole frame reserved up front.)
pub const MAX_WORK_STREAMS: usize = 256;

fn gossip_config() -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(700))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_MESSAGE + 4096)
        .duplicate_cache_time(Duration::from_secs(120))
        // Content-hash ids: the same message published twice is one message.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(mesg_protocol::Hash32::sha256(&m.data).0.to_vec())
        })
        .build()
        .map_err(|e| e.to_string())
}

/// Gossipsub peer-score parameters: libp2p's defaults, except that loopback peers are
/// exempt from the IP colocation penalty. Many nodes on one machine (a loopback benchmark,
/// local tests) all connect from 127.0.0.1 / ::1; past the colocation threshold each one
/// would score below the graylist threshold and the mesh would never form. Any other
/// address, private or docker-bridge ones included, keeps the default threshold.
fn score_params() -> gossipsub::PeerScoreParams {
    let mut params = gossipsub::PeerScoreParams::default();
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    params
}

/// Build the swarm, start listening and dialling, and run it in its own task.
pub fn spawn(
    key: &Keypair,
    config: NetworkConfig,
    registry: &mut libp2p::metrics::Registry,
) -> anyhow::Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>)> {
    let metrics = libp2p::metrics::Metrics::new(registry);
    let identity = key.to_libp2p();
    let local_peer = identity.public().to_peer_id();
    let request_timeout = config.request_timeout;
    let max_connections = config.max_connections;
    let private_network = config.private_network;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_dns()?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(StreamProtocol::new("/mesg/kad/1.0.0"));
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            kad_config.set_query_timeout(Duration::from_secs(10));
            kad_config.set_max_packet_size(MAX_PACKAGE_MESSAGE);
            let mut kad =
                kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config()?,
                TopicWhitelist,
            )?;
            gossipsub.with_peer_score(score_params(), gossipsub::PeerScoreThresholds::default())?;
            let rr = request_response::Config::default()
                .with_request_timeout(request_timeout)
                .with_max_concurrent_streams(MAX_WORK_STREAMS);
            // Package chunks are up to 1 MiB: give them longer than small work messages.
            let rr_package = request_response::Config::default()
                .with_request_timeout(request_timeout * 6)
                .with_max_concurrent_streams(64);
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(max_connections))
                        .with_max_established_per_peer(Some(4))
                        .with_max_pending_incoming(Some(128)),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/mesg/id/1.0.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad,
                gossipsub,
                work: request_response::Behaviour::new(
                    [(
                        StreamProtocol::new("/mesg/work/1"),
                        request_response::ProtocolSupport::Full,
                    )],
                    rr.clone(),
                ),
                package: request_response::Behaviour::new(
                    [(
                        StreamProtocol::new("/mesg/package/1"),
                        request_response::ProtocolSupport::Full,
                    )],
                    rr_package,
                ),
            })
        })
        .map_err(|e| anyhow::anyhow!("network behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();

    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
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
    let now = Instant::now();
    let task = Task {
        swarm,
        metrics,
        commands: cmd_rx,
        events: event_tx,
        pending_work: HashMap::new(),
        pending_package: HashMap::new(),
        pending_kad: HashMap::new(),
        bootstrap: config
            .bootstrap
            .into_iter()
            .map(|a| (a.clone(), Redial::new(vec![a], now)))
            .collect(),
        bootstrap_peers: HashMap::new(),
        known: HashMap::new(),
        listen_addrs: Vec::new(),
        private_network,
    };
    tokio::spawn(task.run());
    Ok((
        NetworkHandle {
            tx: cmd_tx,
            local_peer,
        },
        event_rx,
    ))
}

impl Task {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                _ = tick.tick() => self.redial(),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let b = self.swarm.behaviour_mut();
        match cmd {
            Command::SendWork {
                peer,
                request,
                reply,
            } => {
                let id = b.work.send_request(&peer, request);
                self.pending_work.insert(id, reply);
            }
            Command::RespondWork { channel, response } => {
                if b.work.send_response(channel, response).is_err() {
                    tracing::debug!("work response not sent: the requester is gone");
                }
            }
            Command::SendPackage {
                peer,
                request,
                reply,
            } => {
                let id = b.package.send_request(&peer, request);
                self.pending_package.insert(id, reply);
            }
            Command::RespondPackage { channel, response } => {
                if b.package.send_response(channel, response).is_err() {
                    tracing::debug!("package response not sent: the requester is gone");
                }
            }
            Command::Publish { topic, data, reply } => {
                let result = b
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(topic), data)
                    .map(|_| ())
                    .map_err(|e| NetError::Gossip(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Subscribe { topic, subscribe } => {
                let t = gossipsub::IdentTopic::new(topic.clone());
                if subscribe {
                    if let Err(e) = b.gossipsub.subscribe(&t) {
                        tracing::warn!("cannot subscribe to {topic}: {e:?}");
                    }
                } else {
                    b.gossipsub.unsubscribe(&t);
                }
            }
            Command::StartProviding { key } => {
                if let Err(e) = b.kad.start_providing(kad::RecordKey::new(&key)) {
                    tracing::warn!("cannot provide: {e}");
                }
            }
            Command::GetProviders { key, reply } => {
                let id = b.kad.get_providers(kad::RecordKey::new(&key));
                self.pending_kad
                    .insert(id, KadPending::Providers(reply, HashSet::new()));
            }
            Command::PutRecord { key, value } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                // Keep it locally too so that we answer GET for it ourselves.
                if let Err(e) = b.kad.store_mut().put(record.clone()) {
                    tracing::warn!("cannot store record: {e}");
                }
                if let Err(e) = b.kad.put_record(record, kad::Quorum::One) {
                    tracing::warn!("cannot publish record: {e}");
                }
            }
            Command::GetRecord { key, reply } => {
                let id = b.kad.get_record(kad::RecordKey::new(&key));
                self.pending_kad.insert(id, KadPending::Record(reply));
            }
            Command::AddAddresses { peer, addrs } => {
                let (addrs, dropped) = addrs::filter_remote(addrs, self.private_network);
                if dropped > 0 {
                    tracing::debug!(peer = %peer, dropped, "announced addresses not taken");
                }
                for a in &addrs {
                    b.kad.add_address(&peer, a.clone());
                }
                if peer != *self.swarm.local_peer_id() && !addrs.is_empty() {
                    let now = Instant::now();
                    self.known
                        .entry(peer)
                        .or_insert_with(|| Redial::new(Vec::new(), now))
                        .announced(addrs, now);
                }
            }
            Command::Dial { addr, reply } => {
                let r = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NetError::Unreachable {
                        peer: PeerId::random(),
                        reason: format!("{addr}: {e}"),
                    });
                let _ = reply.send(r);
            }
            Command::Peers { reply } => {
                let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
                let mut peers: Vec<PeerInfo> = self
                    .known
                    .iter()
                    .map(|(p, r)| PeerInfo {
                        peer_id: p.to_string(),
                        addrs: r.addrs.iter().map(|a| a.to_string()).collect(),
                        connected: connected.contains(p),
                    })
                    .collect();
                for p in &connected {
                    if !self.known.contains_key(p) {
                        peers.push(PeerInfo {
                            peer_id: p.to_string(),
                            addrs: Vec::new(),
                            connected: true,
                        });
                    }
                }
                peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                let _ = reply.send(peers);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
        }
    }

    /// Dial bootstrap addresses and lost peers whose backoff has passed.
    fn redial(&mut self) {
        let now = Instant::now();
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let bootstrap_up: HashSet<&Multiaddr> = self
            .bootstrap_peers
            .iter()
            .filter(|(p, _)| connected.contains(p))
            .map(|(_, a)| a)
            .collect();
        let mut dials = Vec::new();
        for (addr, r) in self.bootstrap.iter_mut() {
            if !bootstrap_up.contains(addr) && r.due(now, None) {
                dials.push(DialOpts::unknown_peer_id().address(addr.clone()).build());
            }
        }
        for (peer, r) in self.known.iter_mut() {
            if connected.contains(peer) {
                continue;
            }
            if r.due(now, Some(MAX_REDIALS)) {
                dials.push(DialOpts::peer_id(*peer).addresses(r.addrs.clone()).build());
            } else if r.gave_up_at == Some(now) {
                tracing::debug!(peer = %peer, "not redialled any more after {} failed dials", r.attempts);
            }
        }
        for d in dials {
            if let Err(e) = self.swarm.dial(d) {
                tracing::debug!("redial: {e}");
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
                _ => {}
            }
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.clone().with(libp2p::multiaddr::Protocol::P2p(
                    *self.swarm.local_peer_id(),
                ));
                tracing::info!("listening on {full}");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let base = strip_p2p(address);
                    for key in [address.clone(), base] {
                        if let Some(r) = self.bootstrap.get_mut(&key) {
                            r.connected();
                            self.bootstrap_peers.insert(peer_id, key);
                        }
                    }
                }
                if let Some(r) = self.known.get_mut(&peer_id) {
                    r.connected();
                }
                if num_established.get() == 1 {
                    tracing::debug!(peer = %peer_id, "connected");
                    emit(&self.events, NetworkEvent::PeerConnected(peer_id)).await;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "disconnected");
                if let Some(r) = self.known.get_mut(&peer_id) {
                    r.next = Instant::now() + r.backoff;
                }
                emit(&self.events, NetworkEvent::PeerDisconnected(peer_id)).await;
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // The peer chooses what it claims to listen on: same policy as announcements.
                let (addrs, _) = addrs::filter_remote(info.listen_addrs, self.private_network);
                for a in &addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, a.clone());
                }
                let entry = self
                    .known
                    .entry(peer_id)
                    .or_insert_with(|| Redial::new(Vec::new(), Instant::now()));
                entry.addrs = addrs;
            }
            BehaviourEvent::Work(event) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        emit(
                            &self.events,
                            NetworkEvent::Work {
                                peer,
                                request,
                                channel,
                            },
                        )
                        .await;
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_work.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    if let Some(reply) = self.pending_work.remove(&request_id) {
                        let _ = reply.send(Err(outbound_error(peer, &error)));
                    }
                }
                request_response::Event::InboundFailure { peer, error, .. } => {
                    tracing::debug!(peer = %peer, "inbound work request failed: {error}");
                }
                request_response::Event::ResponseSent { .. } => {}
            },
            BehaviourEvent::Package(event) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        emit(
                            &self.events,
                            NetworkEvent::Package {
                                peer,
                                request,
                                channel,
                            },
                        )
                        .await;
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_package.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    if let Some(reply) = self.pending_package.remove(&request_id) {
                        let _ = reply.send(Err(outbound_error(peer, &error)));
                    }
                }
                _ => {}
            },
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let verdict = check_gossip(&message);
                let acceptance = match &verdict {
                    Ok(_) => gossipsub::MessageAcceptance::Accept,
                    Err(reason) => {
                        tracing::debug!(peer = %propagation_source, "gossip rejected: {reason}");
                        gossipsub::MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                if let (Ok(msg), Some(source)) = (verdict, message.source) {
                    emit(
                        &self.events,
                        NetworkEvent::Gossip {
                            source,
                            message: msg,
                        },
                    )
                    .await;
                }
            }
            BehaviourEvent::Kad(event) => self.on_kad_event(event),
            _ => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => match check_record(&record) {
                Ok(()) => {
                    if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                        tracing::warn!("cannot store record from {source}: {e}");
                    }
                }
                Err(reason) => tracing::debug!(peer = %source, "record refused: {reason}"),
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(provider),
                    },
            } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(provider)
                {
                    tracing::debug!("provider not stored: {e}");
                }
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                kad::QueryResult::GetProviders(r) => {
                    let done = match (r, self.pending_kad.get_mut(&id)) {
                        (
                            Ok(kad::GetProvidersOk::FoundProviders { providers, .. }),
                            Some(KadPending::Providers(_, found)),
                        ) => {
                            found.extend(providers);
                            step.last || !found.is_empty()
                        }
                        (_, Some(_)) => true,
                        (_, None) => false,
                    };
                    if (done || step.last)
                        && let Some(KadPending::Providers(reply, found)) =
                            self.pending_kad.remove(&id)
                    {
                        let _ = reply.send(Ok(found.into_iter().collect()));
                        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                            q.finish();
                        }
                    }
                }
                kad::QueryResult::GetRecord(r) => {
                    let found = match r {
                        Ok(kad::GetRecordOk::FoundRecord(peer_record)) => {
                            check_record(&peer_record.record)
                                .ok()
                                .map(|()| peer_record.record.value)
                        }
                        _ => None,
                    };
                    if let Some(value) = found {
                        if let Some(KadPending::Record(reply)) = self.pending_kad.remove(&id) {
                            let _ = reply.send(Ok(value));
                        }
                        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                            q.finish();
                        }
                    } else if step.last
                        && let Some(KadPending::Record(reply)) = self.pending_kad.remove(&id)
                    {
                        let _ = reply.send(Err(NetError::Kademlia("record not found".into())));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// Hand an event to the engine. When the engine is gone the node is shutting down.
async fn emit(events: &mpsc::Sender<NetworkEvent>, event: NetworkEvent) {
    let _ = events.send(event).await;
}

fn outbound_error(peer: PeerId, error: &request_response::OutboundFailure) -> NetError {
    match error {
        request_response::OutboundFailure::DialFailure => NetError::Unreachable {
            peer,
            reason: "dial failed".into(),
        },
        other => NetError::Request {
            peer,
            reason: other.to_string(),
        },
    }
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

/// Check a gossip message alone: frame, envelope, expiry, and that the envelope's signer
/// is the peer that published it.
fn check_gossip(message: &gossipsub::Message) -> Result<GossipMessage, String> {
    let decoded: GossipMessage =
        wire::decode_frame(&message.data, MAX_GOSSIP_MESSAGE).map_err(|e| e.to_string())?;
    let topic = message.topic.as_str();
    let signer = match &decoded {
        GossipMessage::Announce(s) => {
            if topic != ANNOUNCE_TOPIC {
                return Err(format!("announcement on topic {topic}"));
            }
            s.verify(domains::ANNOUNCEMENT, now_ms(), MAX_GOSSIP_MESSAGE)
                .map_err(|e| e.to_string())?;
            s.signer()
        }
        GossipMessage::AnnounceV1(s) => {
            if topic != ANNOUNCE_TOPIC_V1 {
                return Err(format!("announcement on topic {topic}"));
            }
            s.verify(domains::ANNOUNCEMENT_V1, now_ms(), MAX_GOSSIP_MESSAGE)
                .map_err(|e| e.to_string())?;
            s.signer()
        }
        GossipMessage::Event(s) => {
            let event = s
                .verify(domains::EVENT, now_ms(), MAX_GOSSIP_MESSAGE)
                .map_err(|e| e.to_string())?;
            if topic != events_topic(&event.service_hash) {
                return Err(format!("event of {} on topic {topic}", event.service_hash));
            }
            s.signer()
        }
    };
    let source = message.source.ok_or("unsigned gossip message")?;
    if PublicKey::from_peer_id(&source) != Some(signer) {
        return Err(format!("signed by {signer} but published by {source}"));
    }
    Ok(decoded)
}

/// A Kademlia record must be a signed service record stored under its own key.
fn check_record(record: &kad::Record) -> Result<(), String> {
    let signed: Signed<ServiceRecord> =
        wire::decode(&record.value, MAX_PACKAGE_MESSAGE).map_err(|e| e.to_string())?;
    let service = signed
        .verify(domains::SERVICE_RECORD, now_ms(), MAX_PACKAGE_MESSAGE)
        .map_err(|e| e.to_string())?;
    service.check().map_err(|e| e.to_string())?;
    if record.key.as_ref() != record_key(&service.service_hash).as_slice() {
        return Err("record stored under another key".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_learned_from_the_network_are_redialled_a_bounded_number_of_times() {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
        let mut now = Instant::now();
        let mut r = Redial::new(vec![addr.clone()], now);
        let mut dials = 0;
        for _ in 0..100 {
            if r.due(now, Some(MAX_REDIALS)) {
                dials += 1;
            }
            if r.gave_up_at.is_some() {
                break;
            }
            now += MAX_BACKOFF;
        }
        assert_eq!(dials, MAX_REDIALS);
        now += MAX_BACKOFF;
        assert!(!r.due(now, Some(MAX_REDIALS)));
        assert!(r.addrs.is_empty(), "addresses forgotten");
        // A new announcement soon after does not start it again...
        r.announced(vec![addr.clone()], now);
        assert!(!r.due(now, Some(MAX_REDIALS)));
        // ...after the cooldown it does, and a connection resets everything.
        now += REDIAL_COOLDOWN;
        r.announced(vec![addr.clone()], now);
        assert!(r.due(now, Some(MAX_REDIALS)));
        r.connected();
        assert_eq!(r.attempts, 0);
        // Bootstrap addresses (no limit) are dialled for ever.
        let mut b = Redial::new(vec![addr], now);
        let mut dials = 0;
        for _ in 0..100 {
            if b.due(now, None) {
                dials += 1;
            }
            now += MAX_BACKOFF;
        }
        assert_eq!(dials, 100);
    }

    #[test]
    fn score_params_exempt_only_loopback_from_colocation() {
        let params = score_params();
        params.validate().expect("valid score params");
        let whitelist = &params.ip_colocation_factor_whitelist;
        assert!(whitelist.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(whitelist.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(whitelist.len(), 2);
        // Everything else keeps libp2p's colocation penalty.
        let default = gossipsub::PeerScoreParams::default();
        assert_eq!(
            params.ip_colocation_factor_weight,
            default.ip_colocation_factor_weight
        );
        assert_eq!(
            params.ip_colocation_factor_threshold,
            default.ip_colocation_factor_threshold
        );
    }
}
