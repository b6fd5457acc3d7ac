//! Running processes: triggers matched to events and results (indexed by service and key),
//! runs that walk the step graph, tasks executed anywhere in the network like any
//! execution, retries with backoff, `on_error` branches, and progress kept in the store so
//! a restarted node continues its runs.
//!
//! Crash safety of task steps: a run records the execution id of an attempt *before* the
//! execution is created with that id. After a restart, an attempt whose execution exists
//! is waited for (it was recorded, possibly acknowledged by an executor: never run twice);
//! one whose execution does not exist was never sent anywhere and is created now.

use super::*;
use mesg_protocol::process::{
    Outputs, ProcessDefinition, ProcessErrors, Step, StepKind, TriggerSource,
};
use std::sync::atomic::Ordering;

const PROCESSES: &str = "processes";
const RUNS: &str = "runs";
const RUNS_BY_PROCESS: &str = "runs_by_process";
/// How often running steps are checked against their executions (updates can be missed
/// when a subscriber lags, and across restarts).
const SWEEP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub id: String,
    pub name: String,
    pub definition: ProcessDefinition,
    /// Service hash of each step's service (trigger and tasks), by step key.
    pub services: BTreeMap<String, ServiceHash>,
    pub created_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    /// Waiting for a retry.
    Waiting,
    Done,
    /// A filter that did not match: nothing after it runs.
    Filtered,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub execution_id: ExecutionId,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRun {
    pub status: StepStatus,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub attempts: Vec<Attempt>,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub retry_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub process: String,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Execution that triggered the run (result triggers).
    pub trigger_execution: Option<ExecutionId>,
    pub steps: BTreeMap<String, StepRun>,
    pub started_at: u64,
    pub finished_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessView {
    pub id: String,
    pub name: String,
    pub definition: ProcessDefinition,
    pub services: BTreeMap<String, ServiceHash>,
    pub created_at: u64,
    pub runs_running: usize,
}

/// Process state of the engine.
#[derive(Debug, Default)]
pub struct Processes {
    records: Mutex<HashMap<String, Arc<ProcessRecord>>>,
    /// Trigger index: (service, event key) -> process ids, and (service, task) -> ids.
    by_event: Mutex<HashMap<(ServiceHash, String), Vec<String>>>,
    by_result: Mutex<HashMap<(ServiceHash, String), Vec<String>>>,
    runs: Mutex<HashMap<String, Run>>,
    interests: Mutex<HashMap<String, EventInterest>>,
    started: std::sync::atomic::AtomicBool,
}

fn run_key(process: &str, started_at: u64, run: &str) -> Vec<u8> {
    let mut k = process.as_bytes().to_vec();
    k.push(0xff);
    k.extend_from_slice(&started_at.to_be_bytes());
    k.extend_from_slice(run.as_bytes());
    k
}

impl Engine {
    fn processes(&self) -> &Processes {
        &self.inner.processes
    }

    /// Validate a process file against what this node knows (services here and in the
    /// network). Returns the definition and its services.
    pub async fn check_process(
        &self,
        yaml: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(ProcessDefinition, BTreeMap<String, ServiceHash>), ProcessErrors> {
        // Resolve every service the file names, so validation knows their definitions
        // and unknown ones are reported along with any other error.
        let mut known: HashMap<String, (ServiceHash, ServiceDefinition)> = HashMap::new();
        let mut unknown = Vec::new();
        for r in mesg_protocol::process::service_refs(yaml) {
            if known.contains_key(&r.name) {
                continue;
            }
            match self.resolve_service(&r.name).await {
                Ok(entry) => {
                    known.insert(
                        r.name.clone(),
                        (entry.record.service_hash, entry.record.definition.clone()),
                    );
                }
                Err(_) => unknown.push(mesg_protocol::process::ProcessError {
                    path: r.path,
                    line: Some(r.line),
                    column: Some(r.column),
                    message: format!(
                        "unknown service `{}`: deploy it on this node or start it somewhere in the network first",
                        r.name
                    ),
                }),
            }
        }
        let lookup = |name: &str| known.get(name).map(|(_, d)| d.clone());
        let parsed = ProcessDefinition::from_yaml(yaml, env, &lookup);
        let def = match parsed {
            Ok(def) if unknown.is_empty() => def,
            Ok(_) => return Err(ProcessErrors(unknown)),
            Err(mut errors) => {
                errors.0.extend(unknown);
                errors
                    .0
                    .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
                return Err(errors);
            }
        };
        let mut services = BTreeMap::new();
        for step in &def.steps {
            let name = match &step.kind {
                StepKind::Trigger(t) => &t.service,
                StepKind::Task(t) => &t.service,
                _ => continue,
            };
            if let Some((hash, _)) = known.get(name) {
                services.insert(step.key.clone(), *hash);
            }
        }
        Ok((def, services))
    }

    /// Create (or find, if the same definition exists) a process and start listening to
    /// its trigger.
    pub async fn create_process(
        &self,
        yaml: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(ProcessView, bool), EngineError> {
        let (definition, services) = self
            .check_process(yaml, env)
            .await
            .map_err(EngineError::InvalidProcess)?;
        let canonical = serde_json::to_vec(&definition).unwrap_or_default();
        let id = Hash32::domain("mesg/process/1", &[&canonical]).to_string();
        if let Some(existing) = self.processes().records.lock().expect("lock").get(&id) {
            return Ok((self.process_view(existing), false));
        }
        let record = ProcessRecord {
            id: id.clone(),
            name: definition.name.clone(),
            definition,
            services,
            created_at: now_ms(),
        };
        let bytes =
            serde_json::to_vec(&record).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        self.store().put_blob(PROCESSES, id.as_bytes(), &bytes)?;
        self.store().persist().await?;
        let record = Arc::new(record);
        self.index_process(record.clone()).await;
        tracing::info!(process = %id, name = %record.name, "process created");
        Ok((self.process_view(&record), true))
    }

    async fn index_process(&self, record: Arc<ProcessRecord>) {
        let trigger = record.definition.trigger().clone();
        let trigger_key = &record.definition.steps[0].key;
        let Some(service) = record.services.get(trigger_key).copied() else {
            return;
        };
        let p = self.processes();
        match &trigger.source {
            TriggerSource::Event(key) => {
                p.by_event
                    .lock()
                    .expect("lock")
                    .entry((service, key.clone()))
                    .or_default()
                    .push(record.id.clone());
                // Events of that service reach this node from anywhere in the network.
                let interest = self.watch_events(Some(service)).await;
                p.interests
                    .lock()
                    .expect("lock")
                    .insert(record.id.clone(), interest);
            }
            TriggerSource::Result(task) => p
                .by_result
                .lock()
                .expect("lock")
                .entry((service, task.clone()))
                .or_default()
                .push(record.id.clone()),
        }
        p.records
            .lock()
            .expect("lock")
            .insert(record.id.clone(), record);
    }

    fn process_view(&self, r: &ProcessRecord) -> ProcessView {
        let running = self
            .processes()
            .runs
            .lock()
            .expect("lock")
            .values()
            .filter(|run| run.process == r.id && run.status == RunStatus::Running)
            .count();
        ProcessView {
            id: r.id.clone(),
            name: r.name.clone(),
            definition: r.definition.clone(),
            services: r.services.clone(),
            created_at: r.created_at,
            runs_running: running,
        }
    }

    pub fn list_processes(&self) -> Vec<ProcessView> {
        let records: Vec<Arc<ProcessRecord>> = self
            .processes()
            .records
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect();
        let mut out: Vec<ProcessView> = records.iter().map(|r| self.process_view(r)).collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        out
    }

    fn process_record(&self, id: &str) -> Result<Arc<ProcessRecord>, EngineError> {
        let records = self.processes().records.lock().expect("lock");
        if let Some(r) = records.get(id) {
            return Ok(r.clone());
        }
        // By name, when unique.
        let by_name: Vec<_> = records.values().filter(|r| r.name == id).cloned().collect();
        match by_name.len() {
            1 => Ok(by_name[0].clone()),
            0 => Err(EngineError::NotFound {
                what: "process",
                id: id.to_string(),
            }),
            n => Err(EngineError::BadRequest(format!(
                "{n} processes are named `{id}`; use the process id"
            ))),
        }
    }

    pub fn process(&self, id: &str) -> Result<ProcessView, EngineError> {
        let record = self.process_record(id)?;
        Ok(self.process_view(&record))
    }

    /// Stop a process: it triggers no more runs; runs in progress end Failed.
    pub async fn delete_process(&self, id: &str) -> Result<ProcessView, EngineError> {
        let record = self.process_record(id)?;
        let p = self.processes();
        p.records.lock().expect("lock").remove(&record.id);
        for list in p.by_event.lock().expect("lock").values_mut() {
            list.retain(|x| x != &record.id);
        }
        for list in p.by_result.lock().expect("lock").values_mut() {
            list.retain(|x| x != &record.id);
        }
        p.interests.lock().expect("lock").remove(&record.id);
        self.store().delete_blob(PROCESSES, record.id.as_bytes())?;
        let running: Vec<String> = p
            .runs
            .lock()
            .expect("lock")
            .values()
            .filter(|r| r.process == record.id && r.status == RunStatus::Running)
            .map(|r| r.id.clone())
            .collect();
        for run in running {
            self.update_run(&run, |r| {
                r.status = RunStatus::Failed;
                r.error = Some("the process was deleted".into());
                r.finished_at = Some(now_ms());
            })
            .await;
        }
        self.store().persist().await?;
        Ok(self.process_view(&record))
    }

    /// Runs of a process, newest first.
    pub fn process_runs(&self, id: &str, limit: usize) -> Result<Vec<Run>, EngineError> {
        let record = self.process_record(id)?;
        let mut prefix = record.id.as_bytes().to_vec();
        prefix.push(0xff);
        let mut runs = Vec::new();
        for (k, _) in self.store().blobs(RUNS_BY_PROCESS)?.into_iter().rev() {
            if !k.starts_with(&prefix) {
                continue;
            }
            let run_id = String::from_utf8_lossy(&k[prefix.len() + 8..]).to_string();
            if let Ok(run) = self.run(&run_id) {
                runs.push(run);
            }
            if runs.len() >= limit {
                break;
            }
        }
        Ok(runs)
    }

    pub fn run(&self, id: &str) -> Result<Run, EngineError> {
        if let Some(r) = self.processes().runs.lock().expect("lock").get(id) {
            return Ok(r.clone());
        }
        let bytes =
            self.store()
                .blob(RUNS, id.as_bytes())?
                .ok_or_else(|| EngineError::NotFound {
                    what: "run",
                    id: id.to_string(),
                })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::Store(StoreError::Corrupt {
                tree: "runs",
                message: e.to_string(),
            })
        })
    }

    pub fn subscribe_runs(&self) -> broadcast::Receiver<Run> {
        self.inner.runs_tx.subscribe()
    }

    /// Load processes and unfinished runs from the store and start matching triggers.
    /// Call once, after [`Engine::recover`].
    pub async fn start_processes(&self) -> Result<(), EngineError> {
        if self.processes().started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        for (_, bytes) in self.store().blobs(PROCESSES)? {
            match serde_json::from_slice::<ProcessRecord>(&bytes) {
                Ok(r) => self.index_process(Arc::new(r)).await,
                Err(e) => tracing::error!("unreadable process: {e}"),
            }
        }
        let mut resumed = 0;
        for (_, bytes) in self.store().blobs(RUNS)? {
            let Ok(run) = serde_json::from_slice::<Run>(&bytes) else {
                continue;
            };
            if run.status == RunStatus::Running {
                self.processes()
                    .runs
                    .lock()
                    .expect("lock")
                    .insert(run.id.clone(), run);
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(runs = resumed, "resuming process runs");
        }
        self.spawn_process_watchers();
        // Settle what happened while the node was down.
        self.sweep_runs().await;
        Ok(())
    }

    fn spawn_process_watchers(&self) {
        let weak = self.weak();
        let mut events = self.subscribe_events();
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "process triggers missed events");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                let ids = engine
                    .processes()
                    .by_event
                    .lock()
                    .expect("lock")
                    .get(&(event.service_hash, event.key.clone()))
                    .cloned()
                    .unwrap_or_default();
                for id in ids {
                    engine.start_run(&id, event.data.0.clone(), None).await;
                }
            }
        });
        let weak = self.weak();
        let mut executions = self.subscribe_executions();
        tokio::spawn(async move {
            loop {
                let e = match executions.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // The sweep catches the step updates; result triggers are lost.
                        tracing::warn!(missed = n, "process watcher missed execution updates");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                if !e.status.is_final() {
                    continue;
                }
                if let Some(step) = &e.process {
                    engine.on_step_execution(&step.run, &step.step, &e).await;
                }
                if e.status == ExecutionStatus::Completed {
                    let ids = engine
                        .processes()
                        .by_result
                        .lock()
                        .expect("lock")
                        .get(&(e.service_hash, e.task_key.clone()))
                        .cloned()
                        .unwrap_or_default();
                    for id in ids {
                        // A process never triggers itself.
                        if e.process.as_ref().is_some_and(|p| p.process == id) {
                            continue;
                        }
                        let outputs = e.outputs.clone().map(|o| o.0).unwrap_or_default();
                        engine.start_run(&id, outputs, Some(e.id)).await;
                    }
                }
            }
        });
        let weak = self.weak();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP).await;
                let Some(engine) = Engine::from_weak(&weak) else {
                    return;
                };
                engine.sweep_runs().await;
            }
        });
    }

    /// Check every running step against the store: executions that ended, retries due,
    /// attempts recorded but never created.
    async fn sweep_runs(&self) {
        let runs: Vec<Run> = self
            .processes()
            .runs
            .lock()
            .expect("lock")
            .values()
            .filter(|r| r.status == RunStatus::Running)
            .cloned()
            .collect();
        for run in runs {
            for (key, step) in &run.steps {
                match step.status {
                    StepStatus::Running => {
                        let Some(attempt) = step.attempts.last() else {
                            continue;
                        };
                        match self.store().execution(&attempt.execution_id) {
                            Ok(Some(e)) if e.status.is_final() => {
                                self.on_step_execution(&run.id, key, &e).await;
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => {
                                // Recorded but never created: it cannot have run anywhere.
                                self.create_attempt(&run.id, key, attempt.execution_id)
                                    .await;
                            }
                            Err(e) => tracing::error!(run = %run.id, "sweep: {e}"),
                        }
                    }
                    StepStatus::Waiting if step.retry_at.is_some_and(|t| t <= now_ms()) => {
                        self.start_attempt(&run.id, key).await;
                    }
                    _ => {}
                }
            }
            self.advance(&run.id).await;
        }
    }

    async fn start_run(
        &self,
        process: &str,
        trigger_output: serde_json::Value,
        trigger_execution: Option<ExecutionId>,
    ) {
        let Ok(record) = self.process_record(process) else {
            return;
        };
        let now = now_ms();
        let id = ExecutionId::random().to_string();
        let trigger_key = record.definition.steps[0].key.clone();
        let mut steps = BTreeMap::new();
        steps.insert(
            trigger_key,
            StepRun {
                status: StepStatus::Done,
                output: Some(trigger_output),
                error: None,
                attempts: Vec::new(),
                started_at: now,
                finished_at: Some(now),
                retry_at: None,
            },
        );
        let run = Run {
            id: id.clone(),
            process: record.id.clone(),
            status: RunStatus::Running,
            error: None,
            trigger_execution,
            steps,
            started_at: now,
            finished_at: None,
        };
        if let Err(e) = self
            .store()
            .put_blob(RUNS_BY_PROCESS, &run_key(&record.id, now, &id), &[])
        {
            tracing::error!("cannot index run: {e}");
        }
        self.processes()
            .runs
            .lock()
            .expect("lock")
            .insert(id.clone(), run);
        tracing::debug!(process = %record.id, run = %id, "run started");
        self.advance(&id).await;
    }

    /// Change a run, persist it, publish it.
    async fn update_run(&self, run_id: &str, change: impl FnOnce(&mut Run)) -> Option<Run> {
        let snapshot = {
            let mut runs = self.processes().runs.lock().expect("lock");
            let run = runs.get_mut(run_id)?;
            change(run);
            if run.status != RunStatus::Running {
                // Other branches end with the run: nothing will advance them any more.
                let now = now_ms();
                for step in run.steps.values_mut() {
                    if matches!(step.status, StepStatus::Running | StepStatus::Waiting) {
                        step.status = StepStatus::Failed;
                        step.error = Some("the run ended before this step finished".into());
                        step.finished_at = Some(now);
                        step.retry_at = None;
                    }
                }
            }
            let snap = run.clone();
            if run.status != RunStatus::Running {
                runs.remove(run_id);
            }
            snap
        };
        match serde_json::to_vec(&snapshot) {
            Ok(bytes) => {
                if let Err(e) = self.store().put_blob(RUNS, run_id.as_bytes(), &bytes) {
                    tracing::error!(run = %run_id, "cannot store run: {e}");
                }
            }
            Err(e) => tracing::error!(run = %run_id, "cannot encode run: {e}"),
        }
        if let Err(e) = self.store().persist().await {
            tracing::error!(run = %run_id, "cannot persist run: {e}");
        }
        let _ = self.inner.runs_tx.send(snapshot.clone());
        Some(snapshot)
    }

    /// Start every step whose predecessor is done; finish the run when nothing is left.
    async fn advance(&self, run_id: &str) {
        loop {
            let Some(run) = self
                .processes()
                .runs
                .lock()
                .expect("lock")
                .get(run_id)
                .cloned()
            else {
                return;
            };
            if run.status != RunStatus::Running {
                return;
            }
            let Ok(record) = self.process_record(&run.process) else {
                self.update_run(run_id, |r| {
                    r.status = RunStatus::Failed;
                    r.error = Some("the process no longer exists".into());
                    r.finished_at = Some(now_ms());
                })
                .await;
                return;
            };
            let def = &record.definition;
            let ready: Vec<&Step> = def
                .steps
                .iter()
                .filter(|s| !run.steps.contains_key(&s.key))
                .filter(|s| match &s.after {
                    Some(a) => run
                        .steps
                        .get(a)
                        .is_some_and(|p| p.status == StepStatus::Done),
                    None => false,
                })
                .collect();
            if ready.is_empty() {
                let active = run
                    .steps
                    .values()
                    .any(|s| matches!(s.status, StepStatus::Running | StepStatus::Waiting));
                if !active {
                    self.update_run(run_id, |r| {
                        r.status = RunStatus::Completed;
                        r.finished_at = Some(now_ms());
                    })
                    .await;
                    tracing::debug!(run = %run_id, "run completed");
                }
                return;
            }
            let outputs: Outputs = run
                .steps
                .iter()
                .filter_map(|(k, s)| s.output.clone().map(|o| (k.clone(), o)))
                .collect();
            for step in ready {
                let now = now_ms();
                let previous = step.after.clone().unwrap_or_default();
                let mut fresh = StepRun {
                    status: StepStatus::Done,
                    output: None,
                    error: None,
                    attempts: Vec::new(),
                    started_at: now,
                    finished_at: Some(now),
                    retry_at: None,
                };
                match &step.kind {
                    StepKind::Trigger(_) => continue,
                    StepKind::Filter(cond) => {
                        if cond.eval(&outputs, &previous) {
                            // A filter passes its input on.
                            fresh.output = outputs.get(&previous).cloned();
                        } else {
                            fresh.status = StepStatus::Filtered;
                        }
                    }
                    StepKind::Map(expr) => match expr.eval(&outputs) {
                        Ok(v) => fresh.output = Some(v),
                        Err(e) => {
                            fresh.status = StepStatus::Failed;
                            fresh.error = Some(e);
                        }
                    },
                    StepKind::Task(_) => {
                        fresh.status = StepStatus::Waiting;
                        fresh.finished_at = None;
                        fresh.retry_at = Some(now);
                    }
                }
                let key = step.key.clone();
                let failed = fresh.status == StepStatus::Failed;
                let error = fresh.error.clone();
                self.update_run(run_id, |r| {
                    r.steps.insert(key.clone(), fresh);
                    if failed {
                        r.status = RunStatus::Failed;
                        r.error = Some(format!("step `{key}`: {}", error.unwrap_or_default()));
                        r.finished_at = Some(now_ms());
                    }
                })
                .await;
                if matches!(step.kind, StepKind::Task(_)) {
                    self.start_attempt(run_id, &step.key).await;
                }
            }
        }
    }

    /// Record a new attempt of a task step (its execution id first), then create it.
    async fn start_attempt(&self, run_id: &str, key: &str) {
        let id = ExecutionId::random();
        let recorded = self
            .update_run(run_id, |r| {
                if let Some(s) = r.steps.get_mut(key)
                    && s.status == StepStatus::Waiting
                {
                    s.status = StepStatus::Running;
                    s.retry_at = None;
                    s.attempts.push(Attempt {
                        execution_id: id,
                        started_at: now_ms(),
                        finished_at: None,
                        error: None,
                    });
                }
            })
            .await;
        let is_ours = recorded.and_then(|r| {
            r.steps
                .get(key)
                .and_then(|s| s.attempts.last().map(|a| a.execution_id))
        }) == Some(id);
        if is_ours {
            self.create_attempt(run_id, key, id).await;
        }
    }

    /// Boxed: it closes the cycle advance -> attempt -> result -> advance.
    fn create_attempt<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
        id: ExecutionId,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(self.create_attempt_inner(run_id, key, id))
    }

    async fn create_attempt_inner(&self, run_id: &str, key: &str, id: ExecutionId) {
        let Some(run) = self
            .processes()
            .runs
            .lock()
            .expect("lock")
            .get(run_id)
            .cloned()
        else {
            return;
        };
        let Ok(record) = self.process_record(&run.process) else {
            return;
        };
        let Some(step) = record.definition.step(key) else {
            return;
        };
        let StepKind::Task(task) = &step.kind else {
            return;
        };
        let outputs: Outputs = run
            .steps
            .iter()
            .filter_map(|(k, s)| s.output.clone().map(|o| (k.clone(), o)))
            .collect();
        let inputs = match task.inputs.eval(&outputs) {
            Ok(v) => v,
            Err(e) => {
                self.step_failed(run_id, key, format!("inputs: {e}"), false)
                    .await;
                return;
            }
        };
        let service = record
            .services
            .get(key)
            .map(|h| h.to_string())
            .unwrap_or_else(|| task.service.clone());
        let request = CreateExecution {
            service,
            task: task.task.clone(),
            inputs,
            tags: vec![format!("process:{}", record.name)],
            timeout_ms: task.timeout_ms,
            parent: self.parent_execution(&record.definition, &run, key),
            process: Some(ProcessStepRef {
                process: record.id.clone(),
                run: run_id.to_string(),
                step: key.to_string(),
            }),
            execution_id: Some(id),
        };
        match self.create_execution(request).await {
            Ok(e) if e.status.is_final() => self.on_step_execution(run_id, key, &e).await,
            Ok(_) => {}
            Err(e) => {
                let retriable = !matches!(
                    e,
                    EngineError::InvalidInputs(_)
                        | EngineError::UnknownTask { .. }
                        | EngineError::BadRequest(_)
                );
                self.step_failed(run_id, key, e.to_string(), retriable)
                    .await;
            }
        }
    }

    /// The execution of the nearest task step before `key` (or the triggering execution).
    fn parent_execution(
        &self,
        def: &ProcessDefinition,
        run: &Run,
        key: &str,
    ) -> Option<ExecutionId> {
        let mut current = def.step(key)?.after.clone();
        while let Some(k) = current {
            if let Some(a) = run.steps.get(&k).and_then(|s| s.attempts.last()) {
                return Some(a.execution_id);
            }
            current = def.step(&k).and_then(|s| s.after.clone());
        }
        run.trigger_execution
    }

    /// An execution of a step ended.
    async fn on_step_execution(&self, run_id: &str, key: &str, e: &Execution) {
        let current = self
            .processes()
            .runs
            .lock()
            .expect("lock")
            .get(run_id)
            .and_then(|r| r.steps.get(key).cloned());
        let Some(step) = current else { return };
        if step.status != StepStatus::Running
            || step.attempts.last().map(|a| a.execution_id) != Some(e.id)
        {
            return; // an older attempt, or already handled
        }
        match e.status {
            ExecutionStatus::Completed => {
                let output = e.outputs.clone().map(|o| o.0);
                self.update_run(run_id, |r| {
                    if let Some(s) = r.steps.get_mut(key) {
                        s.status = StepStatus::Done;
                        s.output = output;
                        s.finished_at = Some(now_ms());
                        if let Some(a) = s.attempts.last_mut() {
                            a.finished_at = e.finished_at;
                        }
                    }
                })
                .await;
                self.advance(run_id).await;
            }
            _ => {
                let reason = e.error.clone().unwrap_or_else(|| "failed".into());
                self.step_failed(run_id, key, reason, true).await;
            }
        }
    }

    /// An attempt failed: retry with backoff, else take `on_error`, else fail the run.
    async fn step_failed(&self, run_id: &str, key: &str, reason: String, retriable: bool) {
        let Some(run) = self
            .processes()
            .runs
            .lock()
            .expect("lock")
            .get(run_id)
            .cloned()
        else {
            return;
        };
        let Ok(record) = self.process_record(&run.process) else {
            return;
        };
        let Some(StepKind::Task(task)) = record.definition.step(key).map(|s| &s.kind) else {
            return;
        };
        let attempts = run.steps.get(key).map_or(0, |s| s.attempts.len()) as u32;
        if retriable && attempts <= task.retries {
            let delay = task
                .backoff_ms
                .saturating_mul(1u64 << (attempts.saturating_sub(1)).min(16));
            let at = now_ms() + delay;
            tracing::debug!(run = %run_id, step = key, attempt = attempts, delay, "retrying: {reason}");
            self.update_run(run_id, |r| {
                if let Some(s) = r.steps.get_mut(key) {
                    s.status = StepStatus::Waiting;
                    s.retry_at = Some(at);
                    if let Some(a) = s.attempts.last_mut() {
                        a.finished_at = Some(now_ms());
                        a.error = Some(reason.clone());
                    }
                }
            })
            .await;
            let engine = self.clone();
            let (run_id, key) = (run_id.to_string(), key.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                engine.start_attempt(&run_id, &key).await;
            });
            return;
        }
        let on_error = task.on_error.clone();
        self.update_run(run_id, |r| {
            if let Some(s) = r.steps.get_mut(key) {
                s.status = StepStatus::Failed;
                s.error = Some(reason.clone());
                s.finished_at = Some(now_ms());
                if let Some(a) = s.attempts.last_mut() {
                    a.finished_at = Some(now_ms());
                    a.error = Some(reason.clone());
                }
            }
            if on_error.is_none() {
                r.status = RunStatus::Failed;
                r.error = Some(format!("step `{key}` failed: {reason}"));
                r.finished_at = Some(now_ms());
            }
        })
        .await;
        if let Some(target) = on_error {
            // The error branch sees the failure as the failed step's output.
            let failure = serde_json::json!({"step": key, "error": reason});
            self.update_run(run_id, |r| {
                if let Some(s) = r.steps.get_mut(key) {
                    s.output = Some(failure);
                }
            })
            .await;
            self.run_error_branch(run_id, &target).await;
        }
    }

    async fn run_error_branch(&self, run_id: &str, target: &str) {
        // The target has no `after`: start it by marking it ready, then advance.
        let Some(run) = self
            .processes()
            .runs
            .lock()
            .expect("lock")
            .get(run_id)
            .cloned()
        else {
            return;
        };
        let Ok(record) = self.process_record(&run.process) else {
            return;
        };
        let Some(step) = record.definition.step(target).cloned() else {
            return;
        };
        let now = now_ms();
        match &step.kind {
            StepKind::Task(_) => {
                self.update_run(run_id, |r| {
                    r.steps.insert(
                        target.to_string(),
                        StepRun {
                            status: StepStatus::Waiting,
                            output: None,
                            error: None,
                            attempts: Vec::new(),
                            started_at: now,
                            finished_at: None,
                            retry_at: Some(now),
                        },
                    );
                })
                .await;
                self.start_attempt(run_id, target).await;
            }
            _ => {
                // A map or filter heading the error branch: evaluate it like any step by
                // pretending it follows the failed step.
                let outputs: Outputs = run
                    .steps
                    .iter()
                    .filter_map(|(k, s)| s.output.clone().map(|o| (k.clone(), o)))
                    .collect();
                let (status, output, error) = match &step.kind {
                    StepKind::Map(e) => match e.eval(&outputs) {
                        Ok(v) => (StepStatus::Done, Some(v), None),
                        Err(e) => (StepStatus::Failed, None, Some(e)),
                    },
                    StepKind::Filter(c) => {
                        let failed_step = record
                            .definition
                            .steps
                            .iter()
                            .find(|s| matches!(&s.kind, StepKind::Task(t) if t.on_error.as_deref() == Some(target)))
                            .map(|s| s.key.clone())
                            .unwrap_or_default();
                        if c.eval(&outputs, &failed_step) {
                            (StepStatus::Done, outputs.get(&failed_step).cloned(), None)
                        } else {
                            (StepStatus::Filtered, None, None)
                        }
                    }
                    _ => (StepStatus::Done, None, None),
                };
                self.update_run(run_id, |r| {
                    r.steps.insert(
                        target.to_string(),
                        StepRun {
                            status,
                            output,
                            error,
                            attempts: Vec::new(),
                            started_at: now,
                            finished_at: Some(now),
                            retry_at: None,
                        },
                    );
                })
                .await;
            }
        }
        self.advance(run_id).await;
    }
}
