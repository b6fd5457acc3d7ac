//! The engine: services, instances, executions and events of this node.
//!
//! It owns every decision: validating inputs, choosing where an execution runs, the
//! status machine, timeouts, what a container death or a node restart means for the
//! executions in flight. The API calls it; it calls the store, the runtime and the
//! network.
//!
//! Restart policy (documented in docs/executions.md):
//! - `Created` executions never reached a container: they are dispatched again.
//! - `InProgress` executions whose container survived the restart (adopted) keep running:
//!   the SDK re-posts results until the node is back, so they still complete; their
//!   deadline still applies.
//! - `InProgress` executions whose container did not survive fail at once, with a reason.

mod error;
pub mod instances;
pub mod names;
mod network;
pub mod peer_limits;
pub mod processes;
pub mod providers;
mod timeouts;

pub use error::EngineError;
pub use network::{ANNOUNCE_INTERVAL, EventInterest};

use crate::runtime::{InstanceSpec, InstanceState, ResourceLimits, Runtime, RuntimeEvent};
use crate::store::{DesiredState, ExecutionFilter, InstanceEntry, ServiceEntry, Store, StoreError};
use instances::{LiveInstance, Registry};
use mesg_package::Package;
use mesg_protocol::envelope::Signed;
use mesg_protocol::service_api::{EmitEventRequest, TaskResultRequest};
use mesg_protocol::types::domains;
use mesg_protocol::wire::{MAX_PACKAGE_MESSAGE, MAX_WORK_MESSAGE};
use mesg_protocol::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use timeouts::Deadlines;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Default execution timeout when neither the request nor the task sets one.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Longest timeout a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Events kept in the store for `GET /v1/events`.
pub const RECENT_EVENTS: usize = 10_000;
/// Validity of signed results and requests.
const SIGNED_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
const MAX_TAGS: usize = 32;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub packages_dir: PathBuf,
    pub max_package_bytes: u64,
    pub default_limits: ResourceLimits,
    /// Floors and operator maxima of the limits an Application may ask for.
    pub limit_bounds: crate::runtime::limits::LimitBounds,
    /// How many executions the node keeps; the oldest finished ones beyond that are
    /// removed. 0 keeps them all.
    pub execution_history: usize,
    /// Sids bound to a publisher by the operator (`--pin sid=KEY`): they resolve to that
    /// publisher's services only, whatever else is announced or pinned.
    pub pins: Vec<(String, PublicKey)>,
    /// Work requests one peer may send per second (see [`peer_limits`]).
    pub peer_work_rate: u32,
}

/// How often the node forgets expired replay nonces and trims its execution history.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);
/// Executions removed per store call, so one trim never holds the store for long.
const PRUNE_BATCH: usize = 1000;

/// What an Application asks for when it creates an execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateExecution {
    /// Service hash or sid.
    pub service: String,
    pub task: String,
    #[serde(default)]
    pub inputs: serde_json::Value,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Overrides the task's default timeout.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub parent: Option<ExecutionId>,
    #[serde(default)]
    pub process: Option<ProcessStepRef>,
    /// Choose the execution id (an idempotency key): creating an execution whose id
    /// exists returns the existing one instead of running the task again.
    #[serde(default)]
    pub execution_id: Option<ExecutionId>,
}

/// A deploy step, streamed to the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeployProgress {
    Progress { message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    pub hash: ServiceHash,
    pub sid: Option<String>,
    pub name: String,
    pub definition: ServiceDefinition,
    pub package_hash: PackageHash,
    pub package_size: u64,
    pub publisher: PublicKey,
    /// Who published the sid (signed its claim): a CLI account, or the node a service was
    /// deployed on without one. None: unpublished, usable by hash only.
    #[serde(default)]
    pub sid_publisher: Option<PublicKey>,
    pub image: Option<String>,
    pub deployed_at: u64,
}

impl From<&ServiceEntry> for ServiceView {
    fn from(e: &ServiceEntry) -> Self {
        ServiceView {
            hash: e.record.service_hash,
            sid: e.record.definition.sid.clone(),
            name: e.record.definition.name.clone(),
            definition: e.record.definition.clone(),
            package_hash: e.record.package_hash,
            package_size: e.record.package_size,
            publisher: e.record.publisher,
            sid_publisher: None,
            image: e.image.clone(),
            deployed_at: e.deployed_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceView {
    pub hash: InstanceHash,
    pub service: ServiceHash,
    pub sid: Option<String>,
    pub env: BTreeMap<String, String>,
    pub desired: DesiredState,
    pub state: Option<InstanceState>,
    /// Whether the main container's task stream is connected to this node.
    pub connected: bool,
    pub in_flight: usize,
    pub created_at: u64,
}

struct Inner {
    key: Keypair,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    config: EngineConfig,
    live: Registry,
    deadlines: Deadlines,
    executions_tx: broadcast::Sender<Execution>,
    events_tx: broadcast::Sender<Event>,
    /// Callers of [`Engine::wait`], by execution; each entry removes itself when its
    /// wait ends in any way (see [`WaiterGuard`]).
    waiters: Mutex<HashMap<ExecutionId, Vec<Waiter>>>,
    waiter_seq: AtomicU64,
    network: OnceLock<crate::network::NetworkHandle>,
    providers: Mutex<providers::ProviderTable>,
    /// Requester side: the provider an execution is being submitted to.
    routes: Mutex<HashMap<ExecutionId, PublicKey>>,
    /// Executor side: submits in progress per requesting peer.
    inbound: Mutex<HashMap<libp2p::PeerId, usize>>,
    /// Each peer's rate of work requests.
    peer_rates: peer_limits::PeerRates,
    announce_seq: AtomicU64,
    announce_now: tokio::sync::Notify,
    /// Services this node registered as a DHT provider of.
    provided: Mutex<HashSet<ServiceHash>>,
    /// Event topics wanted by API subscribers, with their count.
    event_topics: Mutex<HashMap<ServiceHash, usize>>,
    all_events_watchers: AtomicUsize,
    /// Event topics this node is subscribed to right now.
    subscribed_topics: Mutex<HashSet<ServiceHash>>,
    seen_events: Mutex<(HashSet<EventId>, VecDeque<EventId>)>,
    /// Definitions being fetched to check network events (see `on_event`).
    event_checks: Arc<tokio::sync::Semaphore>,
    metrics: EngineMetrics,
    processes: processes::Processes,
    runs_tx: broadcast::Sender<processes::Run>,
}

/// Counters exposed on `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct EngineMetrics {
    pub executions_created: prometheus_client::metrics::counter::Counter,
    pub executions_completed: prometheus_client::metrics::counter::Counter,
    pub executions_failed: prometheus_client::metrics::counter::Counter,
    pub executions_accepted_from_peers: prometheus_client::metrics::counter::Counter,
    pub peer_work_refused: prometheus_client::metrics::counter::Counter,
    pub events_emitted: prometheus_client::metrics::counter::Counter,
    pub events_received: prometheus_client::metrics::counter::Counter,
    /// Network events whose emitter does not announce the instance they claim.
    pub events_dropped_unentitled: prometheus_client::metrics::counter::Counter,
    /// Network events whose data does not match the service's event schema.
    pub events_dropped_invalid: prometheus_client::metrics::counter::Counter,
    /// Network events whose service definition could not be had to check them.
    pub events_dropped_unchecked: prometheus_client::metrics::counter::Counter,
    /// Network events seen before (a replay, also across restarts).
    pub events_dropped_replayed: prometheus_client::metrics::counter::Counter,
    /// Results the outbox gave up delivering to their requester's node.
    pub results_undelivered: prometheus_client::metrics::counter::Counter,
    /// Nodes in the provider table (expired ones are evicted every announce interval).
    pub provider_nodes: prometheus_client::metrics::gauge::Gauge,
    /// Callers blocked in `wait` right now.
    pub waiters: prometheus_client::metrics::gauge::Gauge,
    /// Event topics of the network this node is subscribed to right now.
    pub event_topics: prometheus_client::metrics::gauge::Gauge,
}

/// Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.inner.key.public())
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    mesg_protocol::keys::random_bytes(&mut b).expect("OS random source");
    hex::encode(b)
}

impl Engine {
    /// Create the engine and start its background work (deadlines, container events).
    pub fn new(
        key: Keypair,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        config: EngineConfig,
    ) -> Engine {
        let (deadlines, expired) = Deadlines::start();
        let (executions_tx, _) = broadcast::channel(4096);
        let (events_tx, _) = broadcast::channel(4096);
        let engine = Engine {
            inner: Arc::new(Inner {
                key,
                store,
                runtime,
                live: Registry::default(),
                deadlines,
                executions_tx,
                events_tx,
                waiters: Mutex::new(HashMap::new()),
                waiter_seq: AtomicU64::new(0),
                network: OnceLock::new(),
                providers: Mutex::new(providers::ProviderTable::default()),
                routes: Mutex::new(HashMap::new()),
                inbound: Mutex::new(HashMap::new()),
                peer_rates: peer_limits::PeerRates::new(config.peer_work_rate),
                announce_seq: AtomicU64::new(0),
                announce_now: tokio::sync::Notify::new(),
                provided: Mutex::new(HashSet::new()),
                event_topics: Mutex::new(HashMap::new()),
                all_events_watchers: AtomicUsize::new(0),
                config,
                subscribed_topics: Mutex::new(HashSet::new()),
                seen_events: Mutex::new((HashSet::new(), VecDeque::new())),
                event_checks: Arc::new(tokio::sync::Semaphore::new(
                    network::MAX_EVENT_DEFINITION_FETCHES,
                )),
                metrics: EngineMetrics::default(),
                processes: processes::Processes::default(),
                runs_tx: broadcast::channel(1024).0,
            }),
        };
        engine.spawn_expiry(expired);
        engine.spawn_runtime_watch();
        engine.spawn_housekeeping();
        engine
    }

    /// Keep the store's size bounded: forget replay nonces of requests that have expired
    /// (an expired request is refused on its expiry alone), and remove the oldest
    /// finished executions beyond `execution_history`.
    fn spawn_housekeeping(&self) {
        let weak = self.weak();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                let store = engine.inner.store.clone();
                let keep = engine.inner.config.execution_history;
                drop(engine);
                let done = tokio::task::spawn_blocking(move || {
                    let nonces = store.purge_nonces(now_ms())?;
                    let mut pruned = 0;
                    if keep > 0 {
                        loop {
                            let n = store.prune_executions(keep, PRUNE_BATCH)?;
                            pruned += n;
                            if n < PRUNE_BATCH {
                                break;
                            }
                        }
                    }
                    Ok::<_, StoreError>((nonces, pruned))
                })
                .await;
                match done {
                    Ok(Ok((nonces, pruned))) if nonces + pruned > 0 => {
                        tracing::debug!(nonces, executions = pruned, "store trimmed")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("trimming the store: {e}"),
                    Err(e) => tracing::warn!("trimming the store stopped: {e}"),
                }
            }
        });
    }

    /// Register the engine's counters in a Prometheus registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let m = &self.inner.metrics;
        let r = registry.sub_registry_with_prefix("mesg");
        r.register(
            "executions_created",
            "Executions created on this node",
            m.executions_created.clone(),
        );
        r.register(
            "executions_completed",
            "Executions that ended Completed on this node",
            m.executions_completed.clone(),
        );
        r.register(
            "executions_failed",
            "Executions that ended Failed on this node",
            m.executions_failed.clone(),
        );
        r.register(
            "executions_accepted_from_peers",
            "Executions other nodes submitted that this node accepted",
            m.executions_accepted_from_peers.clone(),
        );
        r.register(
            "peer_work_refused",
            "Work requests refused because their peer exceeded its rate",
            m.peer_work_refused.clone(),
        );
        r.register(
            "events_emitted",
            "Events emitted by this node's instances",
            m.events_emitted.clone(),
        );
        r.register(
            "events_received",
            "Events received from the network",
            m.events_received.clone(),
        );
        r.register(
            "events_dropped_unentitled",
            "Network events dropped: their emitter does not announce the instance they claim",
            m.events_dropped_unentitled.clone(),
        );
        r.register(
            "events_dropped_invalid",
            "Network events dropped: their data does not match the service's event schema",
            m.events_dropped_invalid.clone(),
        );
        r.register(
            "events_dropped_unchecked",
            "Network events dropped: the service's definition could not be fetched to check them",
            m.events_dropped_unchecked.clone(),
        );
        r.register(
            "events_dropped_replayed",
            "Network events dropped: seen before (a replay)",
            m.events_dropped_replayed.clone(),
        );
        r.register(
            "results_undelivered",
            "Results the outbox gave up delivering to the requester's node",
            m.results_undelivered.clone(),
        );
        r.register(
            "provider_nodes",
            "Nodes in the provider table",
            m.provider_nodes.clone(),
        );
        r.register(
            "execution_waiters",
            "Callers waiting for an execution to end (GET /v1/executions/{id}/wait)",
            m.waiters.clone(),
        );
        r.register(
            "event_topics_subscribed",
            "Event topics of the network this node is subscribed to (SSE streams, processes)",
            m.event_topics.clone(),
        );
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    pub fn node_key(&self) -> PublicKey {
        self.inner.key.public()
    }

    pub fn keypair(&self) -> &Keypair {
        &self.inner.key
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    fn weak(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    fn from_weak(w: &Weak<Inner>) -> Option<Engine> {
        w.upgrade().map(|inner| Engine { inner })
    }

    fn spawn_expiry(&self, mut expired: mpsc::Receiver<ExecutionId>) {
        let weak = self.weak();
        tokio::spawn(async move {
            while let Some(id) = expired.recv().await {
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                engine.expire(id).await;
            }
        });
    }

    fn spawn_runtime_watch(&self) {
        let weak = self.weak();
        let mut events = self.inner.runtime.subscribe();
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "container events lagged");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                if let RuntimeEvent::Died {
                    instance,
                    key,
                    exit_code,
                } = event
                    && key == mesg_protocol::definition::MAIN_CONTAINER_KEY
                {
                    engine.container_died(&instance, exit_code).await;
                }
            }
        });
    }

    // ---------------------------------------------------------------- services

    /// Deploy a package checked by [`Engine::check_package`]: store the package, build
    /// the image, record the service. Progress lines go to `progress`. A `private`
    /// package is never served to peers (see [`Engine::is_private_package`]). `claim` is
    /// the publisher's signed claim on the service's sid (from a CLI account); without one,
    /// this node's key publishes the sid.
    pub async fn deploy(
        &self,
        package: Package,
        definition: ServiceDefinition,
        private: bool,
        claim: Option<SignedClaim>,
        progress: mpsc::Sender<DeployProgress>,
    ) -> Result<ServiceView, EngineError> {
        let service_hash = definition.service_hash(&package.hash());
        let say = |message: String| {
            let progress = progress.clone();
            async move {
                let _ = progress.send(DeployProgress::Progress { message }).await;
            }
        };
        let claim = match (&definition.sid, claim) {
            (Some(sid), Some(c)) => {
                c.verify_for(&service_hash, sid, now_ms())?;
                Some(c)
            }
            (Some(sid), None) => Some(SignedClaim::sign(
                self.keypair(),
                sid,
                service_hash,
                now_ms(),
            )?),
            (None, Some(_)) => {
                return Err(EngineError::BadRequest(
                    "a publisher claim was sent for a service without a sid; remove it or add a sid to mesg.yml".into(),
                ));
            }
            (None, None) => None,
        };
        if let Some(c) = &claim {
            self.check_local_claim(c)?;
            let who = if c.claim.publisher == self.node_key() {
                " (this node's key: deploy with `mesg --account NAME service deploy` to publish it as your account)"
            } else {
                ""
            };
            say(format!(
                "sid {} published by {}{who}",
                c.claim.sid, c.claim.publisher
            ))
            .await;
        }
        say(format!(
            "package {}: {} files, {} bytes; service hash {}",
            package.hash(),
            package.file_count(),
            package.size(),
            service_hash
        ))
        .await;
        self.check_runnable(&package, &definition).await?;
        let (package_hash, package_size, file_count) =
            (package.hash(), package.size(), package.file_count());
        // Each file's bytes are released as the tar is written: one copy in memory.
        let tar = package
            .into_tar_bytes()
            .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        self.save_package(&package_hash, &tar)?;
        self.set_private_package(&package_hash, private)?;
        say(if private {
            format!(
                "private: the package ({file_count} files) stays on this node; peers can route executions to it but cannot fetch the package to run the service themselves"
            )
        } else {
            format!(
                "public: any peer of the network can fetch this package ({file_count} files, {package_size} bytes, the whole build context minus .dockerignore) to run the service; deploy with --private to keep it on this node"
            )
        })
        .await;
        let image = image_tag(&self.node_key(), &service_hash);
        say(format!("building image {image}")).await;
        let (line_tx, mut line_rx) = mpsc::channel::<String>(256);
        let forward = {
            let progress = progress.clone();
            tokio::spawn(async move {
                while let Some(line) = line_rx.recv().await {
                    let line = line.trim_end().to_string();
                    if !line.is_empty() {
                        let _ = progress
                            .send(DeployProgress::Progress { message: line })
                            .await;
                    }
                }
            })
        };
        let built = self.inner.runtime.build(tar, &image, line_tx).await;
        let _ = forward.await;
        built?;
        let record = ServiceRecord {
            service_hash,
            definition,
            package_hash,
            package_size,
            publisher: self.node_key(),
        };
        let entry = self.record_service(record, Some(image))?;
        if let Some(c) = &claim {
            self.commit_local_claim(c)?;
        }
        self.inner.store.persist().await?;
        self.publish_service(&entry).await;
        say(format!("deployed {service_hash}")).await;
        Ok(self.service_view(&entry))
    }

    /// A service as the API shows it, with its sid's publisher.
    pub fn service_view(&self, entry: &ServiceEntry) -> ServiceView {
        let mut v = ServiceView::from(entry);
        v.sid_publisher = entry
            .record
            .definition
            .sid
            .as_ref()
            .and_then(|_| self.stored_claim(&entry.record.service_hash))
            .map(|c| c.claim.publisher);
        v
    }

    /// Whether this node may build `package` and run `definition`'s containers (images
    /// built by this node or allowed by its operator, in the Dockerfile and as
    /// dependencies; no host port of the node's own), asked before anything is stored or
    /// built.
    pub async fn check_runnable(
        &self,
        package: &Package,
        definition: &ServiceDefinition,
    ) -> Result<(), EngineError> {
        let dockerfile = package.dockerfile_text().ok_or_else(|| {
            EngineError::InvalidPackage(
                "the Dockerfile must be a regular UTF-8 file, not a link".into(),
            )
        })?;
        self.inner.runtime.check_build(&dockerfile).await?;
        Ok(self.inner.runtime.check_definition(definition).await?)
    }

    /// Parse and validate a package tar.
    pub fn check_package(&self, tar: &[u8]) -> Result<(Package, ServiceDefinition), EngineError> {
        let package = Package::from_tar(tar, self.inner.config.max_package_bytes)
            .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        let definition = package
            .definition()
            .map_err(EngineError::InvalidDefinition)?;
        Ok((package, definition))
    }

    fn record_service(
        &self,
        record: ServiceRecord,
        image: Option<String>,
    ) -> Result<ServiceEntry, EngineError> {
        let signed = Signed::sign(
            &self.inner.key,
            domains::SERVICE_RECORD,
            &record,
            now_ms(),
            SIGNED_TTL_MS,
            MAX_PACKAGE_MESSAGE,
        )
        .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        let entry = ServiceEntry {
            record,
            signed,
            image,
            deployed_at: now_ms(),
        };
        self.inner.store.put_service(&entry)?;
        Ok(entry)
    }

    pub fn package_path(&self, package: &PackageHash) -> PathBuf {
        self.inner
            .config
            .packages_dir
            .join(format!("{package}.tar"))
    }

    /// The marker of a package deployed with `private`: kept next to the package, so a
    /// later public deploy of the same package removes it.
    fn private_marker(&self, package: &PackageHash) -> PathBuf {
        self.inner
            .config
            .packages_dir
            .join(format!("{package}.private"))
    }

    /// Whether this node's operator deployed `package` as private: it is then never
    /// served to peers (nor announced as held in the DHT).
    pub fn is_private_package(&self, package: &PackageHash) -> bool {
        self.private_marker(package).exists()
    }

    fn set_private_package(&self, package: &PackageHash, private: bool) -> Result<(), EngineError> {
        let marker = self.private_marker(package);
        let done = if private {
            std::fs::write(&marker, b"deployed with --private: not served to peers\n")
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        done.map_err(|e| {
            EngineError::Store(StoreError::Encode(format!(
                "cannot mark package {package} as {}: {e}",
                if private { "private" } else { "public" }
            )))
        })
    }

    fn save_package(&self, hash: &PackageHash, tar: &[u8]) -> Result<(), EngineError> {
        let path = self.package_path(hash);
        if path.exists() {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Owner only, like everything in the data dir.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(crate::datadir::FILE_MODE)
                .open(&tmp)?;
            f.write_all(tar)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            EngineError::Store(StoreError::Encode(format!(
                "cannot save package {}: {e}",
                path.display()
            )))
        })
    }

    /// A service by hash or sid, from this node or, failing that, from the network (its
    /// signed record only: enough to validate and route executions).
    /// A sid resolves through its publisher ([`names`]); a hash is never ambiguous.
    pub async fn resolve_service(&self, id: &str) -> Result<ServiceEntry, EngineError> {
        let hash = match id.parse::<ServiceHash>() {
            Ok(h) => h,
            Err(_) => self.resolve_sid(id)?,
        };
        match self.inner.store.service(&hash)? {
            Some(e) => Ok(e),
            None if self.network().is_some() => self.fetch_record(hash).await,
            None => Err(EngineError::NotFound {
                what: "service",
                id: id.to_string(),
            }),
        }
    }

    /// A service by hash or sid (or `sid@PUBLISHER`), as this node knows it.
    pub fn service(&self, id: &str) -> Result<ServiceEntry, EngineError> {
        let hash = match id.parse::<ServiceHash>() {
            Ok(hash) => hash,
            Err(_) => self.resolve_sid(id)?,
        };
        self.inner
            .store
            .service(&hash)?
            .ok_or_else(|| EngineError::NotFound {
                what: "service",
                id: id.to_string(),
            })
    }

    pub fn services(&self) -> Result<Vec<ServiceView>, EngineError> {
        let mut all: Vec<ServiceView> = self
            .inner
            .store
            .services()?
            .iter()
            .map(|e| self.service_view(e))
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.deployed_at));
        Ok(all)
    }

    /// Delete a service this node knows. Refused while instances of it exist.
    pub async fn delete_service(&self, id: &str) -> Result<ServiceView, EngineError> {
        let entry = self.service(id)?;
        let hash = entry.record.service_hash;
        let instances: Vec<_> = self
            .inner
            .store
            .instances()?
            .into_iter()
            .filter(|i| i.service_hash == hash)
            .collect();
        if !instances.is_empty() {
            return Err(EngineError::Conflict(format!(
                "service {hash} has {} instance(s); delete them first (mesg service stop --delete)",
                instances.len()
            )));
        }
        let view = self.service_view(&entry);
        self.inner.store.delete_service(&hash)?;
        self.inner.store.persist().await?;
        Ok(view)
    }

    // --------------------------------------------------------------- instances

    fn spec(
        &self,
        entry: &InstanceEntry,
        service: &ServiceEntry,
    ) -> Result<InstanceSpec, EngineError> {
        let image = service.image.clone().ok_or_else(|| {
            EngineError::Conflict(format!(
                "service {} has no image on this node yet",
                service.record.service_hash
            ))
        })?;
        Ok(InstanceSpec {
            instance_hash: entry.instance_hash,
            service_hash: entry.service_hash,
            definition: service.record.definition.clone(),
            publisher: service.record.publisher,
            image,
            env: entry.env.clone(),
            token: entry.token.clone(),
            // Limits stored by older versions were not checked: one Docker cannot apply
            // falls back to the defaults rather than failing every start.
            limits: entry.limits.map(|l| {
                self.inner
                    .config
                    .limit_bounds
                    .check(l)
                    .unwrap_or(self.inner.config.default_limits)
            }),
        })
    }

    /// Start an instance of a service with env overrides. Idempotent: starting the same
    /// service with the same env returns the existing instance.
    pub async fn start_instance(
        &self,
        service_id: &str,
        env: BTreeMap<String, String>,
        limits: Option<ResourceLimits>,
    ) -> Result<InstanceView, EngineError> {
        let defaults = self.inner.config.default_limits;
        // Checked before anything is stored: a refused value must not break later starts.
        let limits = limits
            .map(|l| self.inner.config.limit_bounds.check(l))
            .transpose()?;
        let limits = limits.map(|l| ResourceLimits {
            memory: l.memory.or(defaults.memory),
            nano_cpus: l.nano_cpus.or(defaults.nano_cpus),
            pids: l.pids.or(defaults.pids),
        });
        let mut service = self.resolve_service(service_id).await?;
        if service.image.is_none() {
            service = self.fetch_package(service).await?;
        }
        let service_hash = service.record.service_hash;
        let declared = &service.record.definition.configuration.env;
        for key in env.keys() {
            if !declared.contains_key(key) {
                return Err(crate::runtime::RuntimeError::UndeclaredEnv {
                    key: key.clone(),
                    declared: declared.keys().cloned().collect(),
                }
                .into());
            }
        }
        let env_hash = EnvHash::of(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let instance_hash = InstanceHash::of(&service_hash, &env_hash);
        let entry = match self.inner.store.instance(&instance_hash)? {
            Some(mut existing) => {
                existing.desired = DesiredState::Running;
                if limits.is_some() {
                    existing.limits = limits;
                }
                existing
            }
            None => InstanceEntry {
                instance_hash,
                service_hash,
                env,
                token: random_token(),
                desired: DesiredState::Running,
                created_at: now_ms(),
                limits,
            },
        };
        let spec = self.spec(&entry, &service)?;
        // Register before the container starts so its first connection is accepted.
        self.register_live(&entry, &service);
        if let Err(e) = self.inner.runtime.start(&spec).await {
            if self.inner.store.instance(&instance_hash)?.is_none() {
                self.inner.live.remove(&instance_hash);
            }
            return Err(e.into());
        }
        self.inner.store.put_instance(&entry)?;
        self.inner.store.persist().await?;
        self.inner.announce_now.notify_one();
        tracing::info!(instance = %instance_hash, service = %service_hash, "instance started");
        self.instance_view(&entry).await
    }

    fn register_live(&self, entry: &InstanceEntry, service: &ServiceEntry) -> Arc<LiveInstance> {
        if let Some(existing) = self.inner.live.get(&entry.instance_hash) {
            return existing;
        }
        let live = Arc::new(LiveInstance::new(
            entry.instance_hash,
            entry.service_hash,
            Arc::new(service.record.definition.clone()),
            entry.token.clone(),
        ));
        self.inner.live.insert(live.clone());
        live
    }

    pub fn instance_entry(&self, hash: &InstanceHash) -> Result<InstanceEntry, EngineError> {
        self.inner
            .store
            .instance(hash)?
            .ok_or_else(|| EngineError::NotFound {
                what: "instance",
                id: hash.to_string(),
            })
    }

    /// Resolve an instance by its hash, or by a service (hash or sid) with one instance.
    pub fn find_instance(&self, id: &str) -> Result<InstanceEntry, EngineError> {
        if let Ok(hash) = id.parse::<InstanceHash>()
            && let Some(e) = self.inner.store.instance(&hash)?
        {
            return Ok(e);
        }
        let service = self.service(id).map_err(|_| EngineError::NotFound {
            what: "instance",
            id: id.to_string(),
        })?;
        let mut of_service: Vec<InstanceEntry> = self
            .inner
            .store
            .instances()?
            .into_iter()
            .filter(|i| i.service_hash == service.record.service_hash)
            .collect();
        match of_service.len() {
            0 => Err(EngineError::NotFound {
                what: "instance of service",
                id: id.to_string(),
            }),
            1 => Ok(of_service.remove(0)),
            n => Err(EngineError::BadRequest(format!(
                "service `{id}` has {n} instances; name one by its instance hash"
            ))),
        }
    }

    async fn instance_view(&self, entry: &InstanceEntry) -> Result<InstanceView, EngineError> {
        let state = self.inner.runtime.status(&entry.instance_hash).await.ok();
        let live = self.inner.live.get(&entry.instance_hash);
        let sid = self
            .inner
            .store
            .service(&entry.service_hash)?
            .and_then(|s| s.record.definition.sid);
        Ok(InstanceView {
            hash: entry.instance_hash,
            service: entry.service_hash,
            sid,
            env: entry.env.clone(),
            desired: entry.desired,
            state,
            connected: live.as_ref().is_some_and(|l| l.is_connected()),
            in_flight: live.as_ref().map_or(0, |l| l.in_flight_count()),
            created_at: entry.created_at,
        })
    }

    pub async fn instances(&self) -> Result<Vec<InstanceView>, EngineError> {
        let mut out = Vec::new();
        for entry in self.inner.store.instances()? {
            out.push(self.instance_view(&entry).await?);
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.created_at));
        Ok(out)
    }

    pub async fn instance(&self, id: &str) -> Result<InstanceView, EngineError> {
        let entry = self.find_instance(id)?;
        self.instance_view(&entry).await
    }

    /// Stop an instance (its containers are kept; `start` resumes it), failing the
    /// executions it was running.
    pub async fn stop_instance(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<InstanceView, EngineError> {
        let mut entry = self.find_instance(id)?;
        entry.desired = DesiredState::Stopped;
        self.inner.store.put_instance(&entry)?;
        self.inner.store.persist().await?;
        if let Some(live) = self.inner.live.remove(&entry.instance_hash) {
            self.fail_all(&live, "the instance was stopped while the task was running")
                .await;
        }
        self.inner.announce_now.notify_one();
        self.inner.runtime.stop(&entry.instance_hash, grace).await?;
        self.instance_view(&entry).await
    }

    /// Remove an instance's containers (and its data unless `keep_data`).
    pub async fn delete_instance(
        &self,
        id: &str,
        keep_data: bool,
    ) -> Result<InstanceView, EngineError> {
        let entry = self.find_instance(id)?;
        if let Some(live) = self.inner.live.remove(&entry.instance_hash) {
            self.fail_all(&live, "the instance was deleted while the task was running")
                .await;
        }
        self.inner
            .runtime
            .delete(&entry.instance_hash, keep_data)
            .await?;
        self.inner.store.delete_instance(&entry.instance_hash)?;
        self.inner.store.persist().await?;
        let mut view = self.instance_view(&entry).await?;
        view.desired = DesiredState::Stopped;
        Ok(view)
    }

    /// Reconcile Docker with the store after a (re)start of the node, then settle the
    /// executions that were unfinished when it stopped.
    pub async fn recover(&self) -> Result<RecoveryReport, EngineError> {
        let mut specs = Vec::new();
        for entry in self.inner.store.instances()? {
            if entry.desired != DesiredState::Running {
                continue;
            }
            let Some(service) = self.inner.store.service(&entry.service_hash)? else {
                tracing::warn!(instance = %entry.instance_hash, "instance of an unknown service; skipped");
                continue;
            };
            match self.spec(&entry, &service) {
                Ok(spec) => {
                    self.register_live(&entry, &service);
                    specs.push(spec);
                }
                Err(e) => tracing::warn!(instance = %entry.instance_hash, "cannot restore: {e}"),
            }
        }
        let reconcile = match self.inner.runtime.reconcile(&specs).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("cannot reconcile containers: {e}");
                None
            }
        };
        let adopted: std::collections::HashSet<InstanceHash> = reconcile
            .as_ref()
            .map(|r| r.adopted.iter().copied().collect())
            .unwrap_or_default();
        let mut report = RecoveryReport {
            reconcile,
            ..Default::default()
        };
        let me = self.node_key();
        for e in self.inner.store.unfinished_executions()? {
            if e.deadline() <= now_ms() {
                self.expire(e.id).await;
                report.expired += 1;
                continue;
            }
            self.inner.deadlines.watch(e.id, e.deadline()).await;
            match e.status {
                ExecutionStatus::Created if e.requester_node != me => {
                    // Accepted from a peer but never handed to a container: run it now.
                    match self.inner.live.for_service(&e.service_hash) {
                        Some(live) => {
                            self.run_locally(e, &live).await;
                            report.redispatched += 1;
                        }
                        None => {
                            self.finish(
                                &e.id,
                                Err("the node restarted and no longer runs the service".into()),
                                None,
                            )
                            .await;
                            report.failed += 1;
                        }
                    }
                }
                ExecutionStatus::Created if e.requester_node == me => {
                    let Some(signed) = self.inner.store.request(&e.id)? else {
                        continue;
                    };
                    self.dispatch(e, signed).await;
                    report.redispatched += 1;
                }
                ExecutionStatus::InProgress if e.executor == Some(me) => {
                    match e.instance_hash.filter(|h| adopted.contains(h)) {
                        Some(h) => {
                            if let Some(live) = self.inner.live.get(&h) {
                                live.in_flight_add(e.id);
                            }
                            report.kept_running += 1;
                        }
                        None => {
                            self.finish(
                                &e.id,
                                Err("the node restarted and the service container did not survive; the task's progress was lost".into()),
                                None,
                            )
                            .await;
                            report.failed += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(report)
    }

    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<
        futures::stream::BoxStream<
            'static,
            Result<crate::runtime::LogLine, crate::runtime::RuntimeError>,
        >,
        EngineError,
    > {
        let entry = self.find_instance(id)?;
        Ok(self.inner.runtime.logs(&entry.instance_hash, follow, tail))
    }

    // -------------------------------------------------------------- executions

    /// Create an execution from an Application's request: resolve, validate, sign with
    /// the node key, record (durably), dispatch.
    pub async fn create_execution(&self, req: CreateExecution) -> Result<Execution, EngineError> {
        if let Some(id) = &req.execution_id
            && let Some(existing) = self.inner.store.execution(id)?
        {
            return self.same_or_conflict(existing, |e| self.is_same_create(e, &req));
        }
        let service = self.resolve_service(&req.service).await?;
        let request = self.build_request(&service, req)?;
        let signed = Signed::sign(
            &self.inner.key,
            domains::EXECUTION_REQUEST,
            &request,
            now_ms(),
            SIGNED_TTL_MS,
            MAX_WORK_MESSAGE,
        )
        .map_err(|e| EngineError::BadRequest(format!("request too large: {e}")))?;
        self.accept_local_request(request, signed).await
    }

    /// Create an execution from a request signed by an account (e.g. the CLI's key).
    pub async fn submit_signed(
        &self,
        signed: Signed<ExecutionRequest>,
    ) -> Result<Execution, EngineError> {
        let now = now_ms();
        let request = signed
            .verify(domains::EXECUTION_REQUEST, now, MAX_WORK_MESSAGE)
            .map_err(|e| match e {
                e @ mesg_protocol::EnvelopeError::NotYetValid { .. } => EngineError::NotYetValid(e),
                e => EngineError::BadSignature(e.to_string()),
            })?;
        request.check_times(now)?;
        if request.requester_node != self.node_key() {
            return Err(EngineError::BadRequest(format!(
                "the request names node {} as its requester node, not this node ({})",
                request.requester_node,
                self.node_key()
            )));
        }
        let service = self
            .resolve_service(&request.service_hash.to_string())
            .await?;
        self.validate_request(&service.record.definition, &request)?;
        if !self.inner.store.record_nonce(
            &signed.header.signer,
            &signed.header.nonce.0,
            signed.header.expires_at,
        )? {
            return Err(EngineError::Replayed);
        }
        self.accept_local_request(request, signed).await
    }

    fn build_request(
        &self,
        service: &ServiceEntry,
        req: CreateExecution,
    ) -> Result<ExecutionRequest, EngineError> {
        let definition = &service.record.definition;
        let task = self.task(service.record.service_hash, definition, &req.task)?;
        let timeout_ms = req
            .timeout_ms
            .or(task.timeout_ms)
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        let request = ExecutionRequest {
            execution_id: req.execution_id.unwrap_or_else(ExecutionId::random),
            service_hash: service.record.service_hash,
            task_key: req.task,
            inputs: Json(req.inputs),
            requester: self.node_key(),
            requester_node: self.node_key(),
            parent: req.parent,
            process: req.process,
            tags: req.tags,
            timeout_ms,
            created_at: now_ms(),
        };
        self.validate_request(definition, &request)?;
        Ok(request)
    }

    fn task<'d>(
        &self,
        service: ServiceHash,
        definition: &'d ServiceDefinition,
        task: &str,
    ) -> Result<&'d mesg_protocol::definition::TaskDefinition, EngineError> {
        definition
            .task(task)
            .ok_or_else(|| EngineError::UnknownTask {
                service,
                task: task.to_string(),
                known: definition
                    .tasks
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Checks that do not depend on where the request came from.
    pub fn validate_request(
        &self,
        definition: &ServiceDefinition,
        request: &ExecutionRequest,
    ) -> Result<(), EngineError> {
        let task = self.task(request.service_hash, definition, &request.task_key)?;
        mesg_protocol::schema::validate(&task.inputs, &request.inputs.0, "inputs")
            .map_err(EngineError::InvalidInputs)?;
        if request.timeout_ms == 0 || request.timeout_ms > MAX_TIMEOUT_MS {
            return Err(EngineError::BadRequest(format!(
                "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
            )));
        }
        if request.tags.len() > MAX_TAGS
            || request
                .tags
                .iter()
                .any(|t| t.is_empty() || t.len() > MAX_TAG_LEN || t.chars().any(char::is_control))
        {
            return Err(EngineError::BadRequest(format!(
                "at most {MAX_TAGS} tags of 1 to {MAX_TAG_LEN} printable characters"
            )));
        }
        Ok(())
    }

    async fn accept_local_request(
        &self,
        request: ExecutionRequest,
        signed: Signed<ExecutionRequest>,
    ) -> Result<Execution, EngineError> {
        if let Some(parent) = &request.parent
            && self.inner.store.execution(parent)?.is_none()
        {
            return Err(EngineError::NotFound {
                what: "parent execution",
                id: parent.to_string(),
            });
        }
        let mut execution = Execution::received(&request, now_ms());
        // With a local instance ready, the execution is recorded as already handed to it:
        // one flush, and a crash can never leave a task that reached a container recorded
        // as not started (which a restart would run again).
        let local = self
            .inner
            .live
            .for_service(&execution.service_hash)
            .filter(|l| l.is_ready() || self.network().is_none());
        match &local {
            Some(live) => self.assign(&mut execution, live),
            None => execution.executor = self.first_provider(&execution.service_hash),
        }
        match self.inner.store.insert_execution(&execution, &signed) {
            Ok(()) => {}
            // Another call inserted this id first (a race of two creates, or a signed
            // request reusing an id): the same request gets that execution, another 409.
            Err(StoreError::ExecutionExists(id)) => {
                let existing = self.execution(&id)?;
                return self.same_or_conflict(existing, |e| same_request(e, &request));
            }
            Err(e) => return Err(e.into()),
        }
        self.inner.store.persist().await?;
        self.inner.metrics.executions_created.inc();
        self.notify(&execution);
        self.inner
            .deadlines
            .watch(execution.id, execution.deadline())
            .await;
        tracing::debug!(execution = %execution.id, task = %execution.task_key, "execution created");
        Ok(match local {
            Some(live) => self.push(execution, &live).await,
            None => self.dispatch(execution, signed).await,
        })
    }

    /// The stored execution when `same` says the new request is the one that created
    /// it (an idempotent retry); `conflict` otherwise.
    fn same_or_conflict(
        &self,
        existing: Execution,
        same: impl FnOnce(&Execution) -> bool,
    ) -> Result<Execution, EngineError> {
        if same(&existing) {
            Ok(existing)
        } else {
            Err(EngineError::Conflict(format!(
                "execution id {} is already used by a different request (service {}, task `{}`); choose another execution_id",
                existing.id, existing.service_hash, existing.task_key
            )))
        }
    }

    /// Whether an Application's create request is the one that made `e`.
    fn is_same_create(&self, e: &Execution, req: &CreateExecution) -> bool {
        let service = req.service.parse::<ServiceHash>().ok().or_else(|| {
            self.service(&req.service)
                .ok()
                .map(|s| s.record.service_hash)
        });
        service == Some(e.service_hash)
            && e.requester == self.node_key()
            && e.task_key == req.task
            && e.inputs.0 == req.inputs
            && e.tags == req.tags
            && e.parent == req.parent
            && e.process == req.process
            && req.timeout_ms.is_none_or(|t| t == e.timeout_ms)
    }

    /// Record that `live` runs the (not yet stored) execution.
    fn assign(&self, e: &mut Execution, live: &LiveInstance) {
        if e.transition(ExecutionStatus::InProgress, now_ms()).is_ok() {
            e.executor = Some(self.node_key());
            e.instance_hash = Some(live.hash);
        }
    }

    /// Queue a stored InProgress execution on its instance's task stream.
    async fn push(&self, execution: Execution, live: &Arc<LiveInstance>) -> Execution {
        let peer =
            (execution.requester_node != self.node_key()).then_some(execution.requester_node);
        if live.push_task(
            execution.id,
            &execution.task_key,
            execution.inputs.0.clone(),
            peer,
        ) {
            return execution;
        }
        let reason = format!("instance {} is busy: too many queued tasks", live.hash);
        self.finish(&execution.id, Err(reason), None)
            .await
            .unwrap_or(execution)
    }

    /// Send an execution where it can run: a local instance first, else the network.
    async fn dispatch(&self, execution: Execution, signed: Signed<ExecutionRequest>) -> Execution {
        if let Some(live) = self.inner.live.for_service(&execution.service_hash)
            && live.is_ready()
        {
            return self.run_locally(execution, &live).await;
        }
        if self.network().is_some() {
            let engine = self.clone();
            let e = execution.clone();
            tokio::spawn(async move { engine.route(e, signed).await });
            return execution;
        }
        if let Some(live) = self.inner.live.for_service(&execution.service_hash) {
            // Its container is still connecting: the task waits in its queue.
            return self.run_locally(execution, &live).await;
        }
        let reason = format!(
            "no running instance of service {} on this node",
            execution.service_hash
        );
        self.finish(&execution.id, Err(reason), None)
            .await
            .unwrap_or(execution)
    }

    /// Hand a stored, not yet started execution to a local instance: recorded (durably)
    /// before the task is pushed.
    async fn run_locally(&self, execution: Execution, live: &Arc<LiveInstance>) -> Execution {
        let me = self.node_key();
        let instance = live.hash;
        let updated = self.inner.store.update_execution(&execution.id, &mut |e| {
            e.transition(ExecutionStatus::InProgress, now_ms())?;
            e.executor = Some(me);
            e.instance_hash = Some(instance);
            Ok(())
        });
        let updated = match updated {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(execution = %execution.id, "not dispatched: {err}");
                return execution;
            }
        };
        if let Err(e) = self.inner.store.persist().await {
            tracing::error!(execution = %execution.id, "cannot persist: {e}");
        }
        self.notify(&updated);
        self.push(updated, live).await
    }

    /// End an execution (if it is not already), sign its result, notify.
    async fn finish(
        &self,
        id: &ExecutionId,
        outcome: Result<serde_json::Value, String>,
        remote: Option<Signed<ExecutionResult>>,
    ) -> Option<Execution> {
        let now = now_ms();
        let outcome2 = outcome.clone();
        let updated = self.inner.store.update_execution(id, &mut |e| {
            match &outcome2 {
                Ok(outputs) => e.complete(Json(outputs.clone()), now)?,
                Err(reason) => e.fail(reason.clone(), now)?,
            }
            Ok(())
        });
        let execution = match updated {
            Ok(e) => e,
            Err(StoreError::Transition(_)) => return None,
            Err(e) => {
                tracing::error!(execution = %id, "cannot record the end of the execution: {e}");
                return None;
            }
        };
        if let Some(h) = &execution.instance_hash
            && let Some(live) = self.inner.live.get(h)
        {
            live.finished(id);
        }
        let recorded = match &remote {
            Some(signed) => self
                .inner
                .store
                .put_result(signed, id)
                .map_err(EngineError::from),
            None => self.sign_result(&execution),
        };
        if let Err(e) = recorded {
            tracing::error!(execution = %id, "cannot record the result: {e}");
        }
        let me = self.node_key();
        let owed = execution.executor == Some(me) && execution.requester_node != me;
        if owed {
            match self.queue_result(&execution) {
                // The result goes to its requester while it is being persisted here: the
                // requester persists it before it acknowledges it to anyone, so its
                // record is the one that counts; ours only serves redelivery. Should
                // this node crash before its flush, the requester either has the result
                // or gets a failure for the execution after our restart: never two
                // different endings acknowledged.
                Ok(()) => {
                    let engine = self.clone();
                    let id = *id;
                    tokio::spawn(async move { engine.deliver(id).await });
                }
                Err(e) => tracing::error!(execution = %id, "cannot queue the result: {e}"),
            }
        }
        if let Err(e) = self.inner.store.persist().await {
            tracing::error!(execution = %id, "cannot persist the result: {e}");
        }
        self.route_ended(&execution);
        match execution.status {
            ExecutionStatus::Completed => self.inner.metrics.executions_completed.inc(),
            _ => self.inner.metrics.executions_failed.inc(),
        };
        self.notify(&execution);
        Some(execution)
    }

    fn sign_result(&self, e: &Execution) -> Result<(), EngineError> {
        let digest = self
            .inner
            .store
            .request(&e.id)?
            .map(|r| r.digest())
            .unwrap_or_default();
        let outcome = match e.status {
            ExecutionStatus::Completed => Outcome::Completed {
                outputs: e.outputs.clone().unwrap_or_default(),
            },
            _ => Outcome::Failed {
                error: e.error.clone().unwrap_or_default(),
            },
        };
        let result = ExecutionResult {
            execution_id: e.id,
            request_digest: digest,
            service_hash: e.service_hash,
            task_key: e.task_key.clone(),
            executor: self.node_key(),
            instance_hash: e.instance_hash,
            outcome,
            started_at: e.started_at,
            finished_at: e.finished_at.unwrap_or_else(now_ms),
        };
        let signed = Signed::sign(
            &self.inner.key,
            domains::EXECUTION_RESULT,
            &result,
            now_ms(),
            SIGNED_TTL_MS,
            MAX_WORK_MESSAGE,
        )
        .map_err(|e| EngineError::BadRequest(format!("result too large: {e}")))?;
        self.inner.store.put_result(&signed, &e.id)?;
        Ok(())
    }

    fn notify(&self, execution: &Execution) {
        let _ = self.inner.executions_tx.send(execution.clone());
        if execution.status.is_final() {
            let waiters = self
                .inner
                .waiters
                .lock()
                .expect("waiters lock")
                .remove(&execution.id);
            let waiters = waiters.unwrap_or_default();
            self.inner.metrics.waiters.dec_by(waiters.len() as i64);
            for (_, w) in waiters {
                let _ = w.send(execution.clone());
            }
        }
    }

    async fn expire(&self, id: ExecutionId) {
        let Ok(Some(e)) = self.inner.store.execution(&id) else {
            return;
        };
        if e.status.is_final() {
            return;
        }
        let me = self.node_key();
        let reason = match (e.status, e.executor) {
            (ExecutionStatus::Created, _) if e.requester_node == me => format!(
                "timed out after {} ms before any provider accepted it",
                e.timeout_ms
            ),
            (ExecutionStatus::InProgress, Some(x)) if x != me => {
                // Accepted and never answered: an observed failure of that provider,
                // which weighs more than whatever load it claims.
                self.inner
                    .providers
                    .lock()
                    .expect("providers lock")
                    .failed(&x);
                format!(
                    "timed out after {} ms: accepted by {x} but no result arrived (it may have run there)",
                    e.timeout_ms
                )
            }
            _ => format!("timed out after {} ms", e.timeout_ms),
        };
        tracing::info!(execution = %id, "{reason}");
        if let Some(ended) = self.finish(&id, Err(reason.clone()), None).await {
            self.cancel_remote(&ended, &reason);
        }
    }

    async fn container_died(&self, instance: &InstanceHash, exit_code: Option<i64>) {
        let Some(live) = self.inner.live.get(instance) else {
            return;
        };
        let code = exit_code.map_or("unknown".to_string(), |c| c.to_string());
        let reason = format!("the service container exited (code {code}) while running the task");
        self.fail_all(&live, &reason).await;
    }

    async fn fail_all(&self, live: &LiveInstance, reason: &str) {
        for id in live.take_in_flight() {
            self.finish(&id, Err(reason.to_string()), None).await;
        }
    }

    pub fn execution(&self, id: &ExecutionId) -> Result<Execution, EngineError> {
        self.inner
            .store
            .execution(id)?
            .ok_or_else(|| EngineError::NotFound {
                what: "execution",
                id: id.to_string(),
            })
    }

    /// The executor's signed result of a finished execution.
    pub fn result_proof(&self, id: &ExecutionId) -> Result<Signed<ExecutionResult>, EngineError> {
        self.inner
            .store
            .result(id)?
            .ok_or_else(|| EngineError::NotFound {
                what: "result of execution",
                id: id.to_string(),
            })
    }

    pub fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, EngineError> {
        Ok(self.inner.store.list_executions(filter)?)
    }

    /// Wait until the execution is Completed or Failed, or `timeout` passes (then the
    /// current state is returned). An unknown execution is `not_found` and a finished one
    /// answers at once, both without registering a waiter; a registered waiter is removed
    /// however the wait ends (end, timeout, or the caller going away).
    pub async fn wait(
        &self,
        id: &ExecutionId,
        timeout: Duration,
    ) -> Result<Execution, EngineError> {
        let current = self.execution(id)?;
        if current.status.is_final() {
            return Ok(current);
        }
        let (tx, rx) = oneshot::channel();
        let seq = self.inner.waiter_seq.fetch_add(1, Ordering::Relaxed);
        self.inner
            .waiters
            .lock()
            .expect("waiters lock")
            .entry(*id)
            .or_default()
            .push((seq, tx));
        self.inner.metrics.waiters.inc();
        let _guard = WaiterGuard {
            inner: &self.inner,
            id: *id,
            seq,
        };
        // Registered first, then checked again: an end between the two is not missed.
        let current = self.execution(id)?;
        if current.status.is_final() {
            return Ok(current);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(e)) => Ok(e),
            _ => self.execution(id),
        }
    }

    /// How many [`Engine::wait`] calls are registered right now (a gauge on `/metrics`).
    pub fn waiter_count(&self) -> usize {
        waiter_count(&self.inner)
    }

    pub async fn cancel(
        &self,
        id: &ExecutionId,
        reason: Option<String>,
    ) -> Result<Execution, EngineError> {
        let e = self.execution(id)?;
        if e.status.is_final() {
            return Err(EngineError::Conflict(format!(
                "execution {id} is already {}",
                e.status
            )));
        }
        let reason = format!(
            "cancelled{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
        if let Some(ended) = self.finish(id, Err(reason.clone()), None).await {
            self.cancel_remote(&ended, &reason);
        }
        self.execution(id)
    }

    pub fn subscribe_executions(&self) -> broadcast::Receiver<Execution> {
        self.inner.executions_tx.subscribe()
    }

    // ------------------------------------------------------------ service API

    pub fn authenticate(&self, token: &str) -> Result<Arc<LiveInstance>, EngineError> {
        self.inner
            .live
            .by_token(token)
            .ok_or(EngineError::Unauthorized)
    }

    /// A container posts the result of a task it was given.
    pub async fn submit_result(
        &self,
        live: &LiveInstance,
        body: TaskResultRequest,
    ) -> Result<Execution, EngineError> {
        let id: ExecutionId = body.execution_id.parse().map_err(EngineError::BadRequest)?;
        let e = self.execution(&id)?;
        if e.instance_hash != Some(live.hash) {
            return Err(EngineError::NotOwner(id));
        }
        if e.status != ExecutionStatus::InProgress {
            return Err(EngineError::Conflict(format!(
                "execution {id} is already {}{}",
                e.status,
                e.error
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )));
        }
        let outcome = match (body.outputs, body.error) {
            (Some(_), Some(_)) => {
                return Err(EngineError::BadRequest(
                    "send either `outputs` or `error`, not both".into(),
                ));
            }
            (None, Some(error)) => Err(error),
            (outputs, None) => {
                let outputs = outputs.unwrap_or(serde_json::Value::Null);
                let task = self.task(e.service_hash, &live.definition, &e.task_key)?;
                match mesg_protocol::schema::validate(&task.outputs, &outputs, "outputs") {
                    Ok(()) => Ok(outputs),
                    Err(errors) => {
                        let reason = format!("the service returned invalid outputs: {errors}");
                        self.finish(&id, Err(reason), None).await;
                        return Err(EngineError::InvalidInputs(errors));
                    }
                }
            }
        };
        self.finish(&id, outcome, None)
            .await
            .ok_or_else(|| EngineError::Conflict(format!("execution {id} already ended")))
    }

    /// A container emits an event.
    pub async fn emit_event(
        &self,
        live: &LiveInstance,
        body: EmitEventRequest,
    ) -> Result<Event, EngineError> {
        let def =
            live.definition
                .events
                .get(&body.event)
                .ok_or_else(|| EngineError::UnknownEvent {
                    service: live.service_hash,
                    event: body.event.clone(),
                    known: live
                        .definition
                        .events
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        mesg_protocol::schema::validate(&def.data, &body.data, "data")
            .map_err(EngineError::InvalidEventData)?;
        let event = Event {
            id: EventId::random(),
            service_hash: live.service_hash,
            instance_hash: live.hash,
            key: body.event,
            data: Json(body.data),
            emitter: self.node_key(),
            created_at: now_ms(),
        };
        let signed = Signed::sign(
            &self.inner.key,
            domains::EVENT,
            &event,
            event.created_at,
            600_000,
            mesg_protocol::wire::MAX_GOSSIP_MESSAGE,
        );
        self.inner.store.put_event(&event, RECENT_EVENTS)?;
        self.first_sight(&event.id);
        self.inner.metrics.events_emitted.inc();
        let _ = self.inner.events_tx.send(event.clone());
        match signed {
            Ok(signed) => {
                let engine = self.clone();
                let e = event.clone();
                tokio::spawn(async move { engine.publish_event(&e, signed).await });
            }
            Err(_) => {
                tracing::debug!(event = %event.id, "event too large for the network; kept local")
            }
        }
        Ok(event)
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.inner.events_tx.subscribe()
    }

    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>, EngineError> {
        Ok(self.inner.store.recent_events(limit)?)
    }
}

/// What [`Engine::recover`] did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RecoveryReport {
    pub reconcile: Option<crate::runtime::ReconcileReport>,
    pub redispatched: usize,
    pub kept_running: usize,
    pub failed: usize,
    pub expired: usize,
}

/// Whether `request` asks for what `e` records (its time of creation aside).
fn same_request(e: &Execution, request: &ExecutionRequest) -> bool {
    e.service_hash == request.service_hash
        && e.task_key == request.task_key
        && e.inputs == request.inputs
        && e.requester == request.requester
        && e.requester_node == request.requester_node
        && e.parent == request.parent
        && e.process == request.process
        && e.tags == request.tags
        && e.timeout_ms == request.timeout_ms
}

/// One caller of [`Engine::wait`]: its number (to remove it) and where to send the end.
type Waiter = (u64, oneshot::Sender<Execution>);

/// Removes its waiter from [`Inner::waiters`] when a wait ends, whichever way.
struct WaiterGuard<'a> {
    inner: &'a Inner,
    id: ExecutionId,
    seq: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = self.inner.waiters.lock().expect("waiters lock");
        if let Some(list) = waiters.get_mut(&self.id) {
            let before = list.len();
            list.retain(|(seq, _)| *seq != self.seq);
            if list.len() < before {
                self.inner.metrics.waiters.dec();
            }
            if list.is_empty() {
                waiters.remove(&self.id);
            }
        }
    }
}

fn waiter_count(inner: &Inner) -> usize {
    inner
        .waiters
        .lock()
        .expect("waiters lock")
        .values()
        .map(Vec::len)
        .sum()
}

/// Docker image of a service built on node `node` (its public key): `mesg-service:` then
/// the first 8 characters of the node's key and the service hash. Per node, so that nodes
/// sharing one Docker Engine never move or remove each other's tags.
pub fn image_tag(node: &PublicKey, service: &ServiceHash) -> String {
    let node = node.to_string();
    let node8: String = node.chars().take(8).collect();
    format!("mesg-service:{node8}-{service}")
}
