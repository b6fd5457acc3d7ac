//! What drives the runs: watchers of events (event triggers) and of executions (result
//! triggers, and the end of task steps), and a periodic sweep of running steps against
//! the store. They stop when the runner's cancellation token is cancelled.

use super::ProcessRunner;
use super::model::{Run, RunStatus, StepStatus};
use super::registry::TriggerKey;
use mesg_protocol::{Cause, CauseRef, Event, Execution, ExecutionStatus, now_ms};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// How often running steps are checked against their executions (updates can be missed
/// when a subscriber lags, and across restarts).
const SWEEP: Duration = Duration::from_secs(2);
/// Events looked at again after a restart: those of the emitters' retention window (the
/// catch-up log, and their envelopes' validity), at most this many.
const RESCAN_WINDOW_MS: u64 = 600_000;
const RESCAN_EVENTS: usize = 10_000;

/// The next message of `rx`, skipping lags (after `on_lag`); None once closed or cancelled.
async fn next<T: Clone>(
    rx: &mut broadcast::Receiver<T>,
    cancel: &CancellationToken,
    on_lag: impl Fn(u64),
) -> Option<T> {
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => return None,
            r = rx.recv() => r,
        };
        match received {
            Ok(v) => return Some(v),
            Err(RecvError::Lagged(n)) => on_lag(n),
            Err(RecvError::Closed) => return None,
        }
    }
}

impl ProcessRunner {
    /// Subscribe to events and executions now, and handle them in the background.
    pub(super) fn spawn_watchers(&self, cancel: &CancellationToken) {
        let events = self.engine().subscribe_events();
        tokio::spawn(self.clone().watch_events(events, cancel.clone()));
        let executions = self.engine().subscribe_executions();
        tokio::spawn(self.clone().watch_executions(executions, cancel.clone()));
        tokio::spawn(self.clone().sweep_periodically(cancel.clone()));
    }

    async fn watch_events(self, mut events: broadcast::Receiver<Event>, cancel: CancellationToken) {
        let on_lag = |n| tracing::warn!(missed = n, "process triggers missed events");
        while let Some(event) = next(&mut events, &cancel, on_lag).await {
            self.on_event(&event).await;
        }
    }

    /// An event starts a run of every process it triggers, one deeper than the event
    /// (once: the run's id comes from the event's), unless it was emitted before the
    /// process was created (a caught-up or rescanned event).
    async fn on_event(&self, event: &Event) {
        let trigger = TriggerKey::Event(event.service_hash, event.key.clone());
        let ids = self
            .shared
            .registry
            .lock()
            .expect("lock")
            .triggered_by(&trigger);
        let cause = Cause::after(event.cause.as_ref(), CauseRef::Event(event.id), 1);
        for id in ids {
            if self
                .process_record(&id)
                .is_ok_and(|r| event.created_at < r.created_at)
            {
                continue;
            }
            self.start_run(&id, event.data.0.clone(), None, cause).await;
        }
    }

    /// After a restart: the events stored within the retention window start the runs
    /// they should have started and did not (the node stopped between storing an event
    /// and starting its runs; events delivered while processes were loading). Runs that
    /// exist are found by their id and not started again.
    pub(super) async fn rescan_recent_events(&self) {
        let since = now_ms().saturating_sub(RESCAN_WINDOW_MS);
        let events = match self.store().recent_events(RESCAN_EVENTS) {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!("process triggers: recent events not read: {e}");
                return;
            }
        };
        // Oldest first, as they happened.
        for event in events.iter().rev().filter(|e| e.created_at >= since) {
            self.on_event(event).await;
        }
    }

    async fn watch_executions(
        self,
        mut executions: broadcast::Receiver<Execution>,
        cancel: CancellationToken,
    ) {
        // The sweep catches the step updates; result triggers are lost.
        let on_lag = |n| tracing::warn!(missed = n, "process watcher missed execution updates");
        while let Some(e) = next(&mut executions, &cancel, on_lag).await {
            self.on_execution(&e).await;
        }
    }

    /// An execution that ended may end a task step, and a Completed one starts a run of
    /// every process its task's results trigger, one deeper than the execution.
    async fn on_execution(&self, e: &Execution) {
        if !e.status.is_final() {
            return;
        }
        if let Some(step) = &e.process {
            self.on_step_execution(&step.run, &step.step, e).await;
        }
        if e.status != ExecutionStatus::Completed {
            return;
        }
        let trigger = TriggerKey::Result(e.service_hash, e.task_key.clone());
        let ids = self
            .shared
            .registry
            .lock()
            .expect("lock")
            .triggered_by(&trigger);
        for id in ids {
            // A process never triggers itself.
            if e.process.as_ref().is_some_and(|p| p.process == id) {
                continue;
            }
            let outputs = e.outputs.clone().map(|o| o.0).unwrap_or_default();
            let cause = Cause::after(e.cause.as_ref(), CauseRef::Execution(e.id), 1);
            self.start_run(&id, outputs, Some(e.id), cause).await;
        }
    }

    async fn sweep_periodically(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(SWEEP) => {}
            }
            self.sweep_runs().await;
        }
    }

    /// Check every running step against the store: executions that ended, retries due,
    /// attempts recorded but never created.
    pub(super) async fn sweep_runs(&self) {
        let runs: Vec<Run> = self
            .shared
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
}
