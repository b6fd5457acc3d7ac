//! Running processes: triggers matched to events and results (indexed by service and key),
//! runs that walk the step graph, tasks executed anywhere in the network like any
//! execution, retries with backoff, `on_error` branches, and progress kept in the store so
//! a restarted node continues its runs.
//!
//! The [`ProcessRunner`] sits above the engine and uses only its public surface: it
//! resolves services, executes tasks and watches events and executions like any
//! Application would.
//!
//! Crash safety of task steps: a run records the execution id of an attempt *before* the
//! execution is created with that id. After a restart, an attempt whose execution exists
//! is waited for (it was recorded, possibly acknowledged by an executor: never run twice);
//! one whose execution does not exist was never sent anywhere and is created now. The
//! execution id of an attempt is derived from the idempotency key
//! `process/<process>/<run>/<step>/<attempt>`, so the execution is one and the same on
//! every node that sees it, however often its creation is retried.
//!
//! Loops: each run carries a causal depth, one more than the event or execution that
//! triggered it, and its task steps' executions carry the run's; beyond a limit the
//! trigger starts no run and the refusal is recorded (see `limits.rs`).

mod limits;
mod model;
mod registry;
mod runner;
mod steps;
mod watch;

pub use limits::{DEFAULT_MAX_TRIGGER_DEPTH, ProcessConfig, WARN_EVERY};
pub use model::{Attempt, ProcessRecord, ProcessView, Run, RunStatus, StepRun, StepStatus};

use crate::engine::{Engine, EngineError};
use crate::store::Store;
use limits::{Gates, ProcessMetrics};
use registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Runs changes kept for subscribers that fall behind.
const RUNS_CHANNEL: usize = 1024;

/// Runs this node's processes. Cheap to clone; every clone is the same runner.
#[derive(Clone)]
pub struct ProcessRunner {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProcessRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRunner")
            .field("engine", &self.shared.engine)
            .finish_non_exhaustive()
    }
}

struct Shared {
    engine: Engine,
    store: Arc<dyn Store>,
    config: ProcessConfig,
    /// Depth and rate decisions, and the refusals, per process.
    gates: Mutex<Gates>,
    metrics: ProcessMetrics,
    /// Processes and their trigger index.
    registry: Mutex<Registry>,
    /// Runs in progress, by run id (ended runs are in the store only).
    runs: Mutex<HashMap<String, Run>>,
    /// Every change of a run.
    runs_tx: broadcast::Sender<Run>,
    /// Set by [`ProcessRunner::start`]: background work stops when it is cancelled.
    cancel: OnceLock<CancellationToken>,
}

impl ProcessRunner {
    /// A runner of the processes kept in `store`, executing their tasks through `engine`.
    /// It runs nothing until [`ProcessRunner::start`].
    pub fn new(engine: Engine, store: Arc<dyn Store>, config: ProcessConfig) -> ProcessRunner {
        ProcessRunner {
            shared: Arc::new(Shared {
                engine,
                store,
                config,
                gates: Mutex::new(Gates::default()),
                metrics: ProcessMetrics::default(),
                registry: Mutex::new(Registry::default()),
                runs: Mutex::new(HashMap::new()),
                runs_tx: broadcast::channel(RUNS_CHANNEL).0,
                cancel: OnceLock::new(),
            }),
        }
    }

    /// Load processes and unfinished runs from the store and start matching triggers,
    /// until `cancel` is cancelled. Call once, after [`Engine::recover`]; later calls do
    /// nothing.
    pub async fn start(&self, cancel: CancellationToken) -> Result<(), EngineError> {
        if self.shared.cancel.set(cancel.clone()).is_err() {
            return Ok(());
        }
        for record in self.store().processes()? {
            self.index_process(Arc::new(record)).await;
        }
        let resumed = self.store().running_runs()?;
        if !resumed.is_empty() {
            tracing::info!(runs = resumed.len(), "resuming process runs");
        }
        self.shared
            .runs
            .lock()
            .expect("lock")
            .extend(resumed.into_iter().map(|run| (run.id.clone(), run)));
        self.spawn_watchers(&cancel);
        // Settle what happened while the node was down.
        self.sweep_runs().await;
        self.rescan_recent_events().await;
        Ok(())
    }

    /// Register the runner's counters in a Prometheus registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.shared.metrics.register(registry);
    }

    /// Every change of a run, as it happens.
    pub fn subscribe_runs(&self) -> broadcast::Receiver<Run> {
        self.shared.runs_tx.subscribe()
    }

    fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The token background work stops on (a token never cancelled before `start`).
    fn cancel_token(&self) -> CancellationToken {
        self.shared.cancel.get().cloned().unwrap_or_default()
    }

    /// A copy of a run in progress.
    fn live_run(&self, run_id: &str) -> Option<Run> {
        self.shared.runs.lock().expect("lock").get(run_id).cloned()
    }
}
