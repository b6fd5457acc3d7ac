//! The transitions after acceptance: handed to a local instance, a route noted, accepted
//! by a provider, a result arrived, and the end, with its signed result.

use super::ExecutionLedger;
use crate::engine::config::SIGNED_TTL_MS;
use crate::engine::error::EngineError;
use crate::store::StoreError;
use mesg_protocol::economy::{Cost, Price, Usage};
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    Execution, ExecutionId, ExecutionResult, ExecutionStatus, Hash32, InstanceHash, Json, Outcome,
    PublicKey, now_ms,
};

impl ExecutionLedger {
    /// A stored, not yet started execution is handed to a local instance: recorded
    /// (durably) before the task is pushed. An error means it was not (e.g. it ended
    /// meanwhile); a failed flush is logged (the store is then failing anyway).
    pub async fn start_local(
        &self,
        id: &ExecutionId,
        instance: InstanceHash,
    ) -> Result<Execution, StoreError> {
        let me = self.node();
        let updated = self.store.update_execution(id, &mut |e| {
            e.transition(ExecutionStatus::InProgress, now_ms())?;
            e.executor = Some(me);
            e.instance_hash = Some(instance);
            Ok(())
        })?;
        if let Err(e) = self.store.persist().await {
            tracing::error!(execution_id = %id, "cannot persist the start: {e}");
        }
        self.notify(&updated);
        Ok(updated)
    }

    /// Durably note the provider a not yet accepted execution is about to be offered to:
    /// after a crash, it is offered to the same provider first, which recognises it.
    pub async fn note_route(&self, id: &ExecutionId, target: PublicKey) {
        let noted = self.store.update_execution(id, &mut |e| {
            if e.status == ExecutionStatus::Created {
                e.executor = Some(target);
            }
            Ok(())
        });
        let durable = match noted {
            Ok(_) => self.store.persist().await,
            Err(e) => Err(e),
        };
        if let Err(e) = durable {
            tracing::error!(execution_id = %id, provider = %target, "cannot record the route: {e}");
        }
    }

    /// A provider accepted the execution: InProgress there (unless it ended meanwhile).
    pub fn accepted_by(
        &self,
        id: &ExecutionId,
        executor: PublicKey,
    ) -> Result<Execution, StoreError> {
        let updated = self.store.update_execution(id, &mut |e| {
            if e.status == ExecutionStatus::Created {
                e.transition(ExecutionStatus::InProgress, now_ms())?;
                e.executor = Some(executor);
            }
            Ok(())
        })?;
        if !updated.status.is_final() {
            self.notify(&updated);
        }
        Ok(updated)
    }

    /// A provider's result arrived (before [`ExecutionLedger::finish`] records it): when
    /// it overtook the provider's `Accepted`, the execution started there first; the
    /// instance that ran it is noted.
    pub fn result_arrived(
        &self,
        id: &ExecutionId,
        executor: PublicKey,
        instance: Option<InstanceHash>,
        started_at: Option<u64>,
    ) -> Result<(), StoreError> {
        self.store.update_execution(id, &mut |e| {
            if e.status == ExecutionStatus::Created {
                e.transition(
                    ExecutionStatus::InProgress,
                    started_at.unwrap_or_else(now_ms),
                )?;
                e.executor = Some(executor);
            }
            e.instance_hash = instance;
            Ok(())
        })?;
        Ok(())
    }

    /// End an execution (if it is not already): record the end and its signed result
    /// (this node's, or the executor's `remote` one), tell the [`super::EndHook`]s, flush,
    /// notify. None when it had already ended or could not be recorded (logged).
    pub async fn finish(
        &self,
        id: &ExecutionId,
        outcome: Result<serde_json::Value, String>,
        remote: Option<Signed<ExecutionResult>>,
    ) -> Option<Execution> {
        self.finish_with(id, outcome, remote, None, |_| {}).await.0
    }

    /// [`ExecutionLedger::finish`], with `charged` (what a priced remote result's receipt
    /// charges) noted on the execution in the end's own write, and `before_flush` run
    /// after that write and before its flush (the requester books the receipt there):
    /// the one flush makes the end, the result and the booking durable together. Also
    /// says whether that flush succeeded (false when nothing ended).
    #[tracing::instrument(name = "finish", skip_all, fields(execution_id = %id))]
    pub async fn finish_with(
        &self,
        id: &ExecutionId,
        outcome: Result<serde_json::Value, String>,
        remote: Option<Signed<ExecutionResult>>,
        charged: Option<Cost>,
        before_flush: impl FnOnce(&Execution) + Send,
    ) -> (Option<Execution>, bool) {
        let now = now_ms();
        // The price is read before the write (never inside its transaction).
        let price = match (&outcome, &remote) {
            (Ok(_), None) => self.price_of(id),
            _ => None,
        };
        let updated = self.store.update_execution(id, &mut |e| {
            match &outcome {
                Ok(outputs) => e.complete(Json(outputs.clone()), now)?,
                Err(reason) => e.fail(reason.clone(), now)?,
            }
            // Ran here: what it cost is recorded with its end, in the same write.
            if let Some(price) = price {
                e.cost = cost_of(e, price);
            }
            if charged.is_some() {
                e.cost = charged;
            }
            Ok(())
        });
        let execution = match updated {
            Ok(e) => e,
            Err(StoreError::Transition(_)) => return (None, false),
            Err(e) => {
                tracing::error!(execution_id = %id, "cannot record the end of the execution: {e}");
                return (None, false);
            }
        };
        let recorded = match &remote {
            Some(signed) => self.store.put_result(signed, id).map_err(EngineError::from),
            None => self.sign_result(&execution),
        };
        if let Err(e) = recorded {
            tracing::error!(execution_id = %id, "cannot record the result: {e}");
        }
        let hooks = self.hooks();
        for hook in &hooks {
            hook.ended_before_flush(&execution);
        }
        before_flush(&execution);
        let durable = match self.store.persist().await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(execution_id = %id, "cannot persist the result: {e}");
                false
            }
        };
        for hook in &hooks {
            hook.ended_after_flush(&execution);
        }
        match execution.status {
            ExecutionStatus::Completed => self.metrics.executions_completed.inc(),
            _ => self.metrics.executions_failed.inc(),
        };
        tracing::debug!(execution_id = %id, status = %execution.status, "execution ended");
        self.notify(&execution);
        (Some(execution), durable)
    }

    /// The price of a stored execution's task, when it is priced. Only a request with a
    /// cap can be for a priced task (see `requests::check_price`), so a free execution
    /// costs no service lookup.
    fn price_of(&self, id: &ExecutionId) -> Option<Price> {
        let read = self.store.execution(id).and_then(|e| match e {
            Some(e) if e.max_price.is_some() => self.task_price(&e.service_hash, &e.task_key),
            _ => Ok(None),
        });
        read.unwrap_or_else(|err| {
            tracing::error!(execution_id = %id, "cannot read the price of the execution: {err}");
            None
        })
    }

    fn sign_result(&self, e: &Execution) -> Result<(), EngineError> {
        let digest = self
            .store
            .request(&e.id)?
            .map(|r| r.digest())
            .unwrap_or_default();
        let signed = self.signed_result(e, digest)?;
        self.store.put_result(&signed, &e.id)?;
        Ok(())
    }

    /// This node's signed result of the ended execution `e`, answering the request with
    /// `request_digest` (its own request, or another node's duplicate of it under the
    /// same idempotency key).
    pub fn signed_result(
        &self,
        e: &Execution,
        request_digest: Hash32,
    ) -> Result<Signed<ExecutionResult>, EngineError> {
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
            request_digest,
            service_hash: e.service_hash,
            task_key: e.task_key.clone(),
            executor: self.node(),
            instance_hash: e.instance_hash,
            outcome,
            started_at: e.started_at,
            finished_at: e.finished_at.unwrap_or_else(now_ms),
        };
        Signed::sign(
            &self.key,
            domains::EXECUTION_RESULT,
            &result,
            now_ms(),
            SIGNED_TTL_MS,
            MAX_WORK_MESSAGE,
        )
        .map_err(|e| EngineError::BadRequest(format!("result too large: {e}")))
    }
}

/// What a completed execution that ran here costs at `price`: its usage (run time on this
/// node, size of the outputs' canonical JSON), at most the request's cap. None for a
/// failed execution (nothing is charged for a result that was not delivered).
fn cost_of(e: &Execution, price: Price) -> Option<Cost> {
    if e.status != ExecutionStatus::Completed {
        return None;
    }
    let finished = e.finished_at.unwrap_or_else(now_ms);
    let duration = finished.saturating_sub(e.started_at.unwrap_or(finished));
    let usage = Usage::of_call(duration, e.outputs.as_ref().unwrap_or(&Json::null()));
    Cost::of(price, usage, e.max_price).ok()
}
