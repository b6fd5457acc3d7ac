//! Runs: starting one when its trigger fires, advancing it step by step, the attempts of
//! task steps (each one an execution anywhere in the network), their failures and retries,
//! error branches, and every change kept in the store and published.

use super::ProcessRunner;
use super::limits::{self, Refused};
use super::model::{Attempt, ProcessRecord, Run, RunStatus, StepRun, StepStatus};
use super::steps::{self, AfterFailure};
use crate::engine::{CreateExecution, EngineError};
use mesg_api_types::DiagnosisState;
use mesg_protocol::control::idempotent_execution_id;
use mesg_protocol::process::StepKind;
use mesg_protocol::{
    Cause, CauseRef, Execution, ExecutionId, ExecutionStatus, Hash32, ProcessStepRef, now_ms,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The id of the run of `process` that `trigger` starts: the same however often the
/// trigger is delivered, so a second delivery finds the run and starts none.
pub(super) fn run_id(process: &str, trigger: &CauseRef) -> String {
    let what = match trigger {
        CauseRef::Event(id) => format!("mesg/run/{process}/event/{id}"),
        CauseRef::Execution(id) => format!("mesg/run/{process}/execution/{id}"),
    };
    let hash = Hash32::sha256(what.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.0[..16]);
    ExecutionId(id).to_string()
}

impl ProcessRunner {
    /// Runs of a process, newest first.
    pub fn process_runs(&self, id: &str, limit: usize) -> Result<Vec<Run>, EngineError> {
        let record = self.process_record(id)?;
        let mut runs = self.store().process_runs(&record.id, limit)?;
        {
            // A run in progress may have changed since it was stored.
            let live = self.shared.runs.lock().expect("lock");
            for run in &mut runs {
                if let Some(newer) = live.get(&run.id) {
                    *run = newer.clone();
                }
            }
        }
        for run in &mut runs {
            self.note_waiting(run);
        }
        Ok(runs)
    }

    pub fn run(&self, id: &str) -> Result<Run, EngineError> {
        let mut run = match self.live_run(id) {
            Some(r) => r,
            None => self.store().run(id)?.ok_or_else(|| EngineError::NotFound {
                what: "run",
                id: id.to_string(),
            })?,
        };
        self.note_waiting(&mut run);
        Ok(run)
    }

    /// For each running step whose execution is not running yet (no provider took it,
    /// or its instance's container is not connected), that execution's diagnosis summary
    /// as the step's `waiting` (for the API only: never stored).
    fn note_waiting(&self, run: &mut Run) {
        if run.status != RunStatus::Running {
            return;
        }
        for step in run.steps.values_mut() {
            if step.status != StepStatus::Running {
                continue;
            }
            let Some(attempt) = step.attempts.last() else {
                continue;
            };
            if attempt.finished_at.is_some() {
                continue;
            }
            if let Ok(d) = self.engine().why(&attempt.execution_id)
                && matches!(d.state, DiagnosisState::Routing | DiagnosisState::Queued)
            {
                step.waiting = Some(d.summary);
            }
        }
    }

    /// The depth limit of a process on this node.
    pub(super) fn depth_limit(&self, record: &ProcessRecord) -> u32 {
        limits::depth_limit(self.shared.config.max_trigger_depth, &record.definition)
    }

    /// Start a run of `process` whose trigger produced `trigger_output`, at `cause` (one
    /// deeper than what triggered it) — unless that is beyond the process's depth or rate
    /// limit: then no run starts and the refusal is recorded.
    pub(super) async fn start_run(
        &self,
        process: &str,
        trigger_output: serde_json::Value,
        trigger_execution: Option<ExecutionId>,
        cause: Cause,
    ) {
        let Ok(record) = self.process_record(process) else {
            return;
        };
        // One run per process and trigger, however often the trigger is delivered (a
        // caught-up event, the rescan after a restart).
        let id = run_id(&record.id, &cause.parent);
        if self.live_run(&id).is_some() || matches!(self.store().run(&id), Ok(Some(_))) {
            tracing::debug!(process = %record.id, run = %id, "trigger seen before: no second run");
            return;
        }
        let limit = self.depth_limit(&record);
        let admitted = self.shared.gates.lock().expect("lock").admit(
            &record.id,
            &record.definition,
            limit,
            &cause,
            Instant::now(),
            now_ms(),
        );
        if let Err(refused) = admitted {
            self.refused(&record, refused);
            return;
        }
        let now = now_ms();
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
                waiting: None,
            },
        );
        let run = Run {
            id: id.clone(),
            process: record.id.clone(),
            status: RunStatus::Running,
            error: None,
            trigger_execution,
            cause: Some(cause),
            steps,
            started_at: now,
            finished_at: None,
        };
        {
            let mut runs = self.shared.runs.lock().expect("lock");
            if runs.contains_key(&id) {
                return;
            }
            runs.insert(id.clone(), run.clone());
        }
        // On disk before anything else happens: a restart finds it and starts no other.
        if let Err(e) = self.store().put_run(&run) {
            tracing::error!(run = %id, "cannot store run: {e}");
        }
        tracing::debug!(process = %record.id, run = %id, depth = cause.depth, "run started");
        self.advance(&id).await;
    }

    /// A trigger started no run: count it, and say so (at most once per process every
    /// few seconds: a loop refuses many triggers a second).
    fn refused(&self, record: &ProcessRecord, refused: Refused) {
        let r = &refused.refusal;
        self.shared.metrics.refused(r.reason);
        if let Some(not_logged) = refused.warn {
            tracing::warn!(
                process = %record.id,
                name = %record.name,
                reason = r.reason.as_str(),
                depth = r.depth,
                limit = r.limit,
                root = %r.root,
                parent = %r.parent,
                refused_since_last_warning = not_logged,
                "process `{}` refused a trigger: {}",
                record.name,
                r.message
            );
        }
    }

    /// Change a run, persist it, publish it. None when the run is not in progress.
    pub(super) async fn update_run(
        &self,
        run_id: &str,
        change: impl FnOnce(&mut Run),
    ) -> Option<Run> {
        let snapshot = {
            let mut runs = self.shared.runs.lock().expect("lock");
            let run = runs.get_mut(run_id)?;
            change(run);
            steps::close_open_steps(run, now_ms());
            let snap = run.clone();
            if run.status != RunStatus::Running {
                runs.remove(run_id);
            }
            snap
        };
        if let Err(e) = self.store().put_run(&snapshot) {
            tracing::error!(run = %run_id, "cannot store run: {e}");
        }
        if let Err(e) = self.store().persist().await {
            tracing::error!(run = %run_id, "cannot persist run: {e}");
        }
        // Nobody listening is fine.
        let _ = self.shared.runs_tx.send(snapshot.clone());
        Some(snapshot)
    }

    /// Start every step whose predecessor is done; finish the run when nothing is left.
    pub(super) async fn advance(&self, run_id: &str) {
        loop {
            let Some(run) = self.live_run(run_id) else {
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
            let ready = steps::ready_steps(&record.definition, &run);
            if ready.is_empty() {
                if !steps::has_open_steps(&run) {
                    self.update_run(run_id, |r| {
                        r.status = RunStatus::Completed;
                        r.finished_at = Some(now_ms());
                    })
                    .await;
                    tracing::debug!(run = %run_id, "run completed");
                }
                return;
            }
            let outputs = steps::step_outputs(&run);
            for step in ready {
                let previous = step.after.clone().unwrap_or_default();
                let Some(started) = steps::start_step(step, &outputs, &previous, now_ms()) else {
                    continue;
                };
                let key = step.key.clone();
                let failed = started.status == StepStatus::Failed;
                let error = started.error.clone();
                self.update_run(run_id, |r| {
                    r.steps.insert(key.clone(), started);
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

    /// Record a new attempt of a task step (its execution id first), then create it. The
    /// id is the one its idempotency key names (see [`steps::attempt_key`]).
    pub(super) async fn start_attempt(&self, run_id: &str, key: &str) {
        let Some(run) = self.live_run(run_id) else {
            return;
        };
        let made = run.steps.get(key).map_or(0, |s| s.attempts.len());
        let attempt_key = steps::attempt_key(&run.process, run_id, key, made + 1);
        let id = idempotent_execution_id(&self.engine().node_key(), &attempt_key);
        // Only the caller that records the attempt creates it (a retry timer and the
        // sweep may both try to start it).
        let mut recorded = false;
        self.update_run(run_id, |r| {
            if let Some(s) = r.steps.get_mut(key)
                && s.status == StepStatus::Waiting
                && s.attempts.len() == made
            {
                recorded = true;
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
        if recorded {
            self.create_attempt(run_id, key, id).await;
        }
    }

    /// Create the execution of a recorded attempt. Boxed: it closes the cycle
    /// advance -> attempt -> result -> advance.
    pub(super) fn create_attempt<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
        id: ExecutionId,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(self.create_attempt_inner(run_id, key, id))
    }

    async fn create_attempt_inner(&self, run_id: &str, key: &str, id: ExecutionId) {
        let Some(run) = self.live_run(run_id) else {
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
        let inputs = match task.inputs.eval(&steps::step_outputs(&run)) {
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
        // The key that names this attempt's id (an attempt recorded with another id, by an
        // older node, is created under that id alone).
        let number = run
            .steps
            .get(key)
            .and_then(|s| s.attempts.iter().position(|a| a.execution_id == id))
            .map_or(0, |i| i + 1);
        let attempt_key = steps::attempt_key(&run.process, run_id, key, number);
        let idempotency_key = (number > 0
            && idempotent_execution_id(&self.engine().node_key(), &attempt_key) == id)
            .then_some(attempt_key);
        let request = CreateExecution {
            service,
            task: task.task.clone(),
            inputs,
            tags: vec![format!("process:{}", record.name)],
            timeout_ms: task.timeout_ms,
            parent: steps::parent_execution(&record.definition, &run, key),
            process: Some(ProcessStepRef {
                process: record.id.clone(),
                run: run_id.to_string(),
                step: key.to_string(),
            }),
            execution_id: Some(id),
            idempotency_key,
            // The run's depth: the events its tasks cause trigger runs one deeper.
            cause: run.cause,
            // The step's cap, signed into the request like any other; a priced task's
            // step has one (checked when the process was created).
            max_price: task.max_price,
            // The step's verification (else the task's default), signed likewise.
            verify: task.verify,
        };
        match self.engine().create_execution(request).await {
            Ok(e) if e.status.is_final() => self.on_step_execution(run_id, key, &e).await,
            Ok(_) => {}
            Err(e) => {
                let retriable = steps::is_retriable(&e);
                self.step_failed(run_id, key, e.to_string(), retriable)
                    .await;
            }
        }
    }

    /// An execution of a step ended.
    pub(super) async fn on_step_execution(&self, run_id: &str, key: &str, e: &Execution) {
        let current = self
            .live_run(run_id)
            .and_then(|r| r.steps.get(key).cloned());
        let Some(step) = current else { return };
        if !steps::is_current_attempt(&step, e.id) {
            return;
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
        let Some(run) = self.live_run(run_id) else {
            return;
        };
        let Ok(record) = self.process_record(&run.process) else {
            return;
        };
        let Some(StepKind::Task(task)) = record.definition.step(key).map(|s| &s.kind) else {
            return;
        };
        let attempts = run.steps.get(key).map_or(0, |s| s.attempts.len()) as u32;
        let next = steps::after_failure(task, attempts, retriable);
        if let AfterFailure::Retry { delay_ms } = next {
            let at = now_ms() + delay_ms;
            tracing::debug!(run = %run_id, step = key, attempt = attempts, delay = delay_ms, "retrying: {reason}");
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
            self.retry_later(run_id, key, Duration::from_millis(delay_ms));
            return;
        }
        let fails_run = next == AfterFailure::FailRun;
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
            if fails_run {
                r.status = RunStatus::Failed;
                r.error = Some(format!("step `{key}` failed: {reason}"));
                r.finished_at = Some(now_ms());
            }
        })
        .await;
        if let AfterFailure::ErrorBranch(target) = next {
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

    /// The next attempt of a step, after `delay` (unless the runner stops first: the sweep
    /// of the next start makes it then).
    fn retry_later(&self, run_id: &str, key: &str, delay: Duration) {
        let runner = self.clone();
        let cancel = self.cancel_token();
        let (run_id, key) = (run_id.to_string(), key.to_string());
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(delay) => runner.start_attempt(&run_id, &key).await,
            }
        });
    }

    /// Start the `on_error` step `target` (it has no `after`), then advance.
    async fn run_error_branch(&self, run_id: &str, target: &str) {
        let Some(run) = self.live_run(run_id) else {
            return;
        };
        let Ok(record) = self.process_record(&run.process) else {
            return;
        };
        let Some(step) = record.definition.step(target) else {
            return;
        };
        let started = steps::start_error_branch(&record.definition, &run, step, now_ms());
        let is_task = matches!(step.kind, StepKind::Task(_));
        self.update_run(run_id, |r| {
            r.steps.insert(target.to_string(), started);
        })
        .await;
        if is_task {
            self.start_attempt(run_id, target).await;
        }
        self.advance(run_id).await;
    }
}
