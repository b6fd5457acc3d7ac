//! The router: where executions run and everything this node says to and hears from its
//! peers. The routing state (providers, routes, inbound work) is this struct's own; its
//! duties are one file each: the requester side (`requester`), the executor side
//! (`executor`), the result outbox (`outbox`), usage receipts (`receipts`) and
//! settlements (`settle`) on the economy's ledger, announcements (`announce`) and the
//! swap of announcements with a peer that connects (`exchange`), network
//! events (`events`), services fetched from peers (`packages`), and the diagnosis of
//! executions not yet running (`why`, `diagnosis`).
//!
//! It calls down into the execution ledger, the instances, the services and the event
//! hub, never the other way: the ledger tells it of each end through [`EndHook`] (the
//! result owed to a peer is queued in the same flush as the end).

mod announce;
mod catchup;
pub mod diagnosis;
mod events;
mod exchange;
mod executor;
pub mod failover;
mod outbox;
mod packages;
pub mod peer_limits;
mod receipts;
mod receipts_in;
mod receipts_out;
mod settle;

mod requester;
mod reveal;
mod verified;
mod why;

pub use announce::{ANNOUNCE_REFRESH, LOAD_ANNOUNCE_EVERY, drop_invalid_claims, refresh_period};
pub use events::{EventInterest, MAX_EVENT_DEFINITION_FETCHES};
pub use outbox::{MAX_OUTBOX_AGE_MS, MAX_OUTBOX_ATTEMPTS};
pub use packages::Progress;
pub(crate) use packages::tell;

use super::config::EngineConfig;
use super::events::EventHub;
use super::executions::{EndHook, ExecutionLedger};
use super::instances::Instances;
use super::metrics::EngineMetrics;
use super::services::Services;
use crate::engine::providers::ProviderTable;
use crate::engine::reputation::Reputation;
use crate::engine::verifications::VerificationRecords;
use crate::ledger::Ledger;
use crate::network::{NetworkEvent, NetworkHandle};
use crate::store::Store;
use libp2p::PeerId;
use mesg_protocol::messages::{Reject, RejectCode, WorkResponse};
use mesg_protocol::{Execution, ExecutionId, Keypair, PublicKey, ServiceHash, now_ms};
use peer_limits::PeerRates;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Routes executions and talks to peers. Always behind an `Arc` (see [`Router::new`]).
pub struct Router {
    key: Keypair,
    store: Arc<dyn Store>,
    metrics: EngineMetrics,
    ledger: Arc<ExecutionLedger>,
    /// The economy's ledger: reservations, receipts, acknowledgements, settlements.
    books: Arc<Ledger>,
    services: Arc<Services>,
    instances: Arc<Instances>,
    events: Arc<EventHub>,
    network: OnceLock<NetworkHandle>,
    /// What peers announce, with what this node observed of them (load, failures).
    providers: Arc<Mutex<ProviderTable>>,
    /// What this node keeps of each peer (outcomes, verdicts, bans); persisted.
    reputation: Arc<Reputation>,
    /// Requester side: verified executions in progress, with their rounds.
    rounds: Mutex<HashMap<ExecutionId, verified::LiveRound>>,
    /// Requester side: what the rounds decided, with every signed attempt.
    verifications: VerificationRecords,
    /// Executor side: verified executions accepted here whose outputs go back as a
    /// commit, then a reveal (written with the accept, removed when delivered).
    reveal_marks: sled::Tree,
    /// Requester side: the provider an execution is being submitted to.
    routes: Mutex<HashMap<ExecutionId, PublicKey>>,
    /// Requester side: what each route not yet accepted learned, for `why` (in memory).
    diagnoses: Mutex<HashMap<ExecutionId, diagnosis::RouteDiagnosis>>,
    /// Executor side: submits in progress per requesting peer.
    inbound: Mutex<HashMap<PeerId, usize>>,
    /// Each peer's rate of work requests.
    peer_rates: PeerRates,
    announce_seq: AtomicU64,
    /// Peer exchange: when this node last asked a peer for what it knows, and when it
    /// last answered each peer with all it knows (see `exchange`).
    exchanges: exchange::ExchangeState,
    /// The last event sequence number seen per emitter and service (see `catchup`).
    cursors: catchup::EventCursors,
    /// Executor side: receipts waiting to follow their results, per requester node.
    receipts_out: receipts_out::ReceiptsOut,
    /// Peers connected now (as the network reported them).
    connected_peers: AtomicUsize,
    /// The node had no connection and has one again (a start, a partition that ended):
    /// announce on gossip too, so nodes it is not connected to hear of it before the
    /// next refresh.
    rejoined: Notify,
    /// What this node offers changed without an instance change (a deploy with a new
    /// publisher claim for a running service): announce at once.
    offers_changed: Notify,
    /// Services this node registered as a DHT provider of.
    provided: Mutex<HashSet<ServiceHash>>,
    /// Event topics wanted by API subscribers and processes, with their count.
    event_topics: Mutex<HashMap<ServiceHash, usize>>,
    all_events_watchers: AtomicUsize,
    /// Event topics this node is subscribed to right now.
    subscribed_topics: Mutex<HashSet<ServiceHash>>,
    /// Definitions being fetched to check network events (see `events`).
    event_checks: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// How long an idempotency key names its execution (see `EngineConfig`).
    idempotency_ttl_ms: u64,
    /// Verify trusted providers' work only by sample (see `EngineConfig`).
    adaptive_verification: bool,
    /// This router's own `Arc`, to hand to the tasks it spawns.
    me: Weak<Router>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("node", &self.key.public())
            .finish_non_exhaustive()
    }
}

/// What the router is built from (the components below it).
pub struct RouterParts {
    pub key: Keypair,
    pub store: Arc<dyn Store>,
    pub config: EngineConfig,
    pub metrics: EngineMetrics,
    pub ledger: Arc<ExecutionLedger>,
    pub books: Arc<Ledger>,
    pub services: Arc<Services>,
    pub instances: Arc<Instances>,
    pub events: Arc<EventHub>,
    pub providers: Arc<Mutex<ProviderTable>>,
    pub reputation: Arc<Reputation>,
    pub verifications: VerificationRecords,
    pub reveal_marks: sled::Tree,
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for RouterParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterParts").finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(parts: RouterParts) -> Arc<Router> {
        Arc::new_cyclic(|me| Router {
            key: parts.key,
            store: parts.store,
            metrics: parts.metrics,
            ledger: parts.ledger,
            books: parts.books,
            services: parts.services,
            instances: parts.instances,
            events: parts.events,
            network: OnceLock::new(),
            providers: parts.providers,
            reputation: parts.reputation,
            rounds: Mutex::new(HashMap::new()),
            verifications: parts.verifications,
            reveal_marks: parts.reveal_marks,
            routes: Mutex::new(HashMap::new()),
            diagnoses: Mutex::new(HashMap::new()),
            inbound: Mutex::new(HashMap::new()),
            peer_rates: PeerRates::new(parts.config.peer_work_rate),
            announce_seq: AtomicU64::new(0),
            exchanges: exchange::ExchangeState::default(),
            cursors: catchup::EventCursors::default(),
            receipts_out: Default::default(),
            connected_peers: AtomicUsize::new(0),
            rejoined: Notify::new(),
            offers_changed: Notify::new(),
            provided: Mutex::new(HashSet::new()),
            event_topics: Mutex::new(HashMap::new()),
            all_events_watchers: AtomicUsize::new(0),
            subscribed_topics: Mutex::new(HashSet::new()),
            event_checks: Arc::new(Semaphore::new(MAX_EVENT_DEFINITION_FETCHES)),
            shutdown: parts.shutdown,
            idempotency_ttl_ms: parts.config.idempotency_ttl_ms,
            adaptive_verification: parts.config.adaptive_verification,
            me: me.clone(),
        })
    }

    /// This router's `Arc` (it is only ever built inside one: see [`Router::new`]).
    fn arc(&self) -> Arc<Router> {
        self.me.upgrade().expect("the router lives in an Arc")
    }

    fn node(&self) -> PublicKey {
        self.key.public()
    }

    fn providers(&self) -> MutexGuard<'_, ProviderTable> {
        self.providers.lock().expect("providers lock")
    }

    /// What verified executions decided (see [`VerificationRecords`]).
    pub fn verifications(&self) -> &VerificationRecords {
        &self.verifications
    }

    /// What this node keeps of each peer (see [`Reputation`]).
    pub fn reputation(&self) -> &Arc<Reputation> {
        &self.reputation
    }

    pub fn network(&self) -> Option<&NetworkHandle> {
        self.network.get()
    }

    /// Connect to a started network: handle what peers send, announce what this node
    /// runs, deliver pending results; until the shutdown token is cancelled.
    pub fn attach_network(&self, handle: NetworkHandle, mut events: mpsc::Receiver<NetworkEvent>) {
        if self.network.set(handle).is_err() {
            tracing::error!("network attached twice");
            return;
        }
        // Before any request is taken: the reservations of open executions are back.
        self.receipt_missing_results();
        let router = self.arc();
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => return,
                    event = events.recv() => event,
                };
                let Some(event) = event else { return };
                router.on_network_event(event).await;
            }
        });
        tokio::spawn(self.arc().run_announcer());
        tokio::spawn(self.arc().run_outbox());
        tokio::spawn(self.arc().run_catch_up_poll());
        tokio::spawn(self.arc().run_anti_entropy());
    }

    /// Reconcile with a random connected peer when one is due (soon after the start,
    /// then about once a minute): repairs announcements lost on gossip.
    async fn run_anti_entropy(self: Arc<Self>) {
        use std::hash::BuildHasher;
        let jitter = std::collections::hash_map::RandomState::new().hash_one(self.node())
            % exchange::ANTI_ENTROPY_JITTER_MS;
        let mut tick = tokio::time::interval(exchange::ANTI_ENTROPY_TICK);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => self.reconcile_if_due(jitter).await,
            }
        }
    }

    async fn on_network_event(&self, event: NetworkEvent) {
        match event {
            NetworkEvent::Work {
                peer,
                request,
                channel,
            } => {
                let router = self.arc();
                tokio::spawn(async move { router.on_work(peer, request, channel).await });
            }
            NetworkEvent::Package {
                peer,
                request,
                channel,
            } => {
                let router = self.arc();
                tokio::spawn(
                    async move { router.on_package_request(peer, request, channel).await },
                );
            }
            NetworkEvent::Gossip { message, .. } => self.on_gossip(message).await,
            NetworkEvent::PeerConnected(peer) => {
                if self.connected_peers.fetch_add(1, Ordering::SeqCst) == 0 {
                    self.rejoined.notify_one();
                }
                if let Some(node) = PublicKey::from_peer_id(&peer) {
                    self.providers().set_departed(&node, false);
                }
                let router = self.arc();
                tokio::spawn(async move { router.exchange_with(peer).await });
            }
            NetworkEvent::PeerDisconnected(peer) => {
                let _ =
                    self.connected_peers
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                if let Some(node) = PublicKey::from_peer_id(&peer) {
                    self.providers().set_departed(&node, true);
                }
                let router = self.arc();
                tokio::spawn(async move { router.executor_gone(peer).await });
            }
            // Peers behind NAT are reached at their relayed addresses: announce them.
            NetworkEvent::RelayedAddrsChanged => self.offers_changed.notify_one(),
        }
    }

    /// Announce at once when what runs here changes, when the load changed (at most
    /// every [`LOAD_ANNOUNCE_EVERY`]), and otherwise every [`refresh_period`]; evict
    /// expired providers every tick.
    async fn run_announcer(self: Arc<Self>) {
        let changed = self.instances.changes();
        loop {
            let load = self.load_snapshot();
            self.announce().await;
            let announced_at = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = changed.notified() => break,
                    () = self.offers_changed.notified() => break,
                    () = self.rejoined.notified() => {
                        // Give gossipsub a moment to learn the new peer's topics.
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            () = tokio::time::sleep(announce::REJOIN_DELAY) => break,
                        }
                    }
                    () = tokio::time::sleep(announce::ANNOUNCE_TICK) => {}
                }
                self.evict_expired();
                let since = announced_at.elapsed();
                if since >= refresh_period(self.providers().len())
                    || (since >= LOAD_ANNOUNCE_EVERY && self.load_snapshot() != load)
                {
                    break;
                }
            }
            // Coalesce bursts (several instances starting at once).
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Retry the outbox's results that are due, every sweep.
    async fn run_outbox(self: Arc<Self>) {
        let mut tick = tokio::time::interval(outbox::OUTBOX_SWEEP);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let due: Vec<(ExecutionId, PublicKey)> = match self.store.outbox() {
                Ok(entries) => entries
                    .into_iter()
                    .filter(|(_, e)| e.next_attempt_at <= now_ms())
                    .map(|(id, e)| (id, e.requester_node))
                    .collect(),
                Err(e) => {
                    tracing::error!("outbox unreadable: {e}");
                    continue;
                }
            };
            for (id, node) in due {
                let router = self.clone();
                tokio::spawn(async move { router.deliver(id, node).await });
            }
        }
    }
}

impl EndHook for Router {
    /// A result owed to another node goes into the outbox in the flush that records the
    /// end, and is sent at once: the requester persists it before it acknowledges it to
    /// anyone, so its record is the one that counts; ours only serves redelivery. Should
    /// this node crash before its flush, the requester either has the result or gets a
    /// failure for the execution after our restart: never two different endings
    /// acknowledged.
    fn ended_before_flush(&self, execution: &Execution) {
        if execution.executor != Some(self.node()) {
            return;
        }
        // A priced execution's receipt is owed from here and issued when it leaves
        // (`receipts.rs`); any other end lets go of its reservation.
        self.receipt_ended(execution);
        match self.queue_result(execution) {
            Ok(owed) => {
                for node in owed {
                    let router = self.arc();
                    let id = execution.id;
                    tokio::spawn(async move { router.deliver(id, node).await });
                }
            }
            Err(e) => {
                tracing::error!(execution_id = %execution.id, "cannot queue the result: {e}")
            }
        }
    }

    fn ended_after_flush(&self, execution: &Execution) {
        self.take_route(&execution.id);
    }
}

fn reject(code: RejectCode, message: impl Into<String>) -> WorkResponse {
    WorkResponse::Rejected(Reject::new(code, message))
}
