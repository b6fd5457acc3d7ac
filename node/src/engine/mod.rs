//! The engine: services, instances, executions and events of this node, as an assembly
//! of components with one job each. Calls go down, never up:
//!
//! ```text
//!   Engine (facade_*: the public surface; recovery)      ContainerApi (service API)
//!        │                                                   │
//!        ▼                                                   ▼
//!   Router (net/: routing state, requester, executor, outbox, announce, events, packages)
//!        │            │              │                │
//!        ▼            ▼              ▼                ▼
//!   Instances ──▶ Services       EventHub        ExecutionLedger ◀── EndHook (Router, Instances)
//!        │            │              │                │
//!        └────────────┴──── store, runtime ──────────┘
//! ```
//!
//! The ledger owns execution records and transitions; what must happen elsewhere when an
//! execution ends reaches the router and the instances through [`executions::EndHook`].
//! Background work (deadlines, container events, housekeeping, the network's loops) stops
//! when the shutdown token given to [`Engine::new`] is cancelled.

pub mod catalogue;
mod config;
mod container_api;
mod error;
mod events;
pub mod executions;
mod facade_executions;
mod facade_ledger;
mod facade_peers;
mod facade_services;
pub mod instances;
mod metrics;
pub mod net;
pub mod providers;
mod recovery;
pub mod reputation;
mod requests;
pub mod services;
pub mod verifications;
mod views;

#[cfg(test)]
mod tests;

pub use config::{DEFAULT_TIMEOUT_MS, EngineConfig, MAX_TIMEOUT_MS, RECENT_EVENTS};
pub use container_api::ContainerApi;
pub use error::EngineError;
pub use facade_executions::Submitted;
pub use metrics::EngineMetrics;
pub use net::{ANNOUNCE_REFRESH, EventInterest, peer_limits};
pub use services::names;
pub use views::{CreateExecution, DeployProgress, InstanceView, RecoveryReport, ServiceView};

use crate::runtime::{Runtime, RuntimeEvent};
use crate::store::{Store, StoreError};
use events::EventHub;
use executions::{EndHook, ExecutionLedger};
use instances::Instances;
use mesg_protocol::{ExecutionId, Keypair, PublicKey, ServiceHash, now_ms};
use net::{Router, RouterParts};
use services::Services;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Cheap to clone (one `Arc`); every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    parts: Arc<Parts>,
}

/// The components the engine is assembled from (see the module doc).
struct Parts {
    key: Keypair,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    config: Arc<EngineConfig>,
    metrics: EngineMetrics,
    ledger: Arc<ExecutionLedger>,
    /// The economy's ledger (accounts, receipts, settlements).
    books: Arc<crate::ledger::Ledger>,
    services: Arc<Services>,
    instances: Arc<Instances>,
    events: Arc<EventHub>,
    router: Arc<Router>,
    container: ContainerApi,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.parts.key.public())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Assemble the components and start their background work (deadlines, container
    /// events, housekeeping), which runs until `shutdown` is cancelled.
    pub fn new(
        key: Keypair,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        config: EngineConfig,
        shutdown: CancellationToken,
    ) -> Result<Engine, StoreError> {
        let metrics = EngineMetrics::default();
        let books = Arc::new(crate::ledger::Ledger::new(
            key.clone(),
            store.tree("ledger")?,
            config.credit_limit,
        ));
        let (ledger, expired) = ExecutionLedger::new(key.clone(), store.clone(), metrics.clone());
        let ledger = Arc::new(ledger);
        let reputation = Arc::new(
            reputation::Reputation::open(store.tree("reputation")?).map_err(|e| match e {
                reputation::ReputationError::Store(e) => StoreError::Db(e),
                other => StoreError::Corrupt {
                    tree: "reputation",
                    message: other.to_string(),
                },
            })?,
        );
        let providers = Arc::new(Mutex::new(providers::ProviderTable::with_reputation(
            reputation.clone(),
        )));
        let services = Arc::new(Services::new(
            key.clone(),
            store.clone(),
            runtime.clone(),
            config.clone(),
            providers.clone(),
        ));
        let instances = Arc::new(Instances::new(
            key.public(),
            store.clone(),
            runtime.clone(),
            config.clone(),
            ledger.clone(),
            services.clone(),
        ));
        let events = Arc::new(EventHub::new(store.clone(), metrics.clone()));
        let router = Router::new(RouterParts {
            key: key.clone(),
            store: store.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            ledger: ledger.clone(),
            books: books.clone(),
            services: services.clone(),
            instances: instances.clone(),
            events: events.clone(),
            providers,
            reputation,
            verifications: verifications::VerificationRecords::open(store.tree("verifications")?),
            reveal_marks: store.tree("reveal-marks")?,
            shutdown: shutdown.clone(),
        });
        let instances_hook: Arc<dyn EndHook> = instances.clone();
        let router_hook: Arc<dyn EndHook> = router.clone();
        ledger.add_end_hook(Arc::downgrade(&instances_hook));
        ledger.add_end_hook(Arc::downgrade(&router_hook));
        let container = ContainerApi {
            key: key.clone(),
            ledger: ledger.clone(),
            instances: instances.clone(),
            events: events.clone(),
            router: router.clone(),
        };
        let engine = Engine {
            parts: Arc::new(Parts {
                key,
                store,
                runtime,
                config: Arc::new(config),
                metrics,
                ledger,
                books,
                services,
                instances,
                events,
                router,
                container,
                shutdown,
            }),
        };
        tokio::spawn(engine.clone().run_expiry(expired));
        tokio::spawn(engine.clone().run_runtime_watch());
        tokio::spawn(engine.clone().run_housekeeping());
        Ok(engine)
    }

    /// The economy's ledger of this node.
    pub fn books(&self) -> &Arc<crate::ledger::Ledger> {
        &self.parts.books
    }

    /// Settle with `peer` what this node accepted owing it (see `net::settle`).
    pub async fn settle(&self, peer: &PublicKey) -> Result<u64, EngineError> {
        self.parts.router.settle(peer).await
    }

    /// Register the engine's counters in a Prometheus registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.parts.metrics.register(registry);
        let flushes = self.parts.store.flush_counters();
        let r = registry.sub_registry_with_prefix("mesg");
        r.register(
            "store_flushes",
            "Flushes of the store (each one fsync, shared by every writer waiting)",
            flushes.flushes,
        );
        r.register(
            "store_flush_waiters",
            "Writers served by the store's flushes (÷ flushes = writers per flush)",
            flushes.waiters,
        );
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.parts.metrics
    }

    pub fn node_key(&self) -> PublicKey {
        self.parts.key.public()
    }

    pub fn keypair(&self) -> &Keypair {
        &self.parts.key
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.parts.store
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.parts.runtime
    }

    /// Executions whose deadline passed end (see `net::Router::expire`).
    async fn run_expiry(self, mut expired: mpsc::Receiver<ExecutionId>) {
        loop {
            let id = tokio::select! {
                () = self.parts.shutdown.cancelled() => return,
                id = expired.recv() => id,
            };
            let Some(id) = id else { return };
            self.parts.router.expire(id).await;
        }
    }

    /// A main container that dies ends the executions it was running.
    async fn run_runtime_watch(self) {
        let mut events = self.parts.runtime.subscribe();
        loop {
            let event = tokio::select! {
                () = self.parts.shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            let event = match event {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "container events lagged");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let RuntimeEvent::Died {
                instance,
                key,
                exit_code,
            } = event
                && key == mesg_protocol::definition::MAIN_CONTAINER_KEY
            {
                self.parts
                    .instances
                    .container_died(&instance, exit_code)
                    .await;
            }
        }
    }

    /// Keep the store's size bounded: forget replay nonces of requests that have expired
    /// (an expired request is refused on its expiry alone), and remove the oldest
    /// finished executions beyond `execution_history`.
    async fn run_housekeeping(self) {
        let mut tick = tokio::time::interval(config::HOUSEKEEPING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.parts.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let store = self.parts.store.clone();
            let keep = self.parts.config.execution_history;
            let keyed_kept_since = now_ms().saturating_sub(self.parts.config.idempotency_ttl_ms);
            let verifications = self.parts.router.verifications().clone();
            let done = tokio::task::spawn_blocking(move || {
                let nonces = store.purge_nonces(now_ms())?;
                store.prune_event_log(now_ms().saturating_sub(config::EVENT_RETENTION_MS))?;
                let mut pruned = 0;
                if keep > 0 {
                    loop {
                        let n =
                            store.prune_executions(keep, config::PRUNE_BATCH, keyed_kept_since)?;
                        pruned += n;
                        if n < config::PRUNE_BATCH {
                            break;
                        }
                    }
                    if pruned > 0 {
                        // The verification records of the executions just removed.
                        verifications.prune(|id| Ok(store.execution(id)?.is_some()))?;
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
    }
}

/// Docker image of a service built on node `node` (its public key): `mesg-service:` then
/// the first 8 characters of the node's key and the service hash. Per node, so that nodes
/// sharing one Docker Engine never move or remove each other's tags.
pub fn image_tag(node: &PublicKey, service: &ServiceHash) -> String {
    let node = node.to_string();
    let node8: String = node.chars().take(8).collect();
    format!("mesg-service:{node8}-{service}")
}
