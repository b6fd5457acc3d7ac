//! The requester side of routing: where an execution of this node runs (a local
//! instance, else a provider in the network chosen by observed load and failures), the
//! two-phase submit with failover and patience while no provider takes it, the
//! provider's result received and checked, deadlines and cancels told to the provider.

use super::failover::{Answer, Failover, Idle, Next, Standing};
use super::{Router, reject};
use crate::engine::instances::LiveInstance;
use crate::network::service_key;
use libp2p::PeerId;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{RejectCode, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    CancelRequest, Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus,
    Outcome, PublicKey, ServiceHash, now_ms,
};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for a provider's answer to one submit before the next provider is tried
/// (the network's request timeout, 3 s, plus a margin for a loaded node).
const SUBMIT_PATIENCE: Duration = Duration::from_millis(3_500);

impl Router {
    /// A local instance of `service` that can take a task now (or one still connecting
    /// when this node has no network to send the task to instead).
    pub fn ready_local_instance(&self, service: &ServiceHash) -> Option<Arc<LiveInstance>> {
        self.instances
            .live()
            .for_service(service)
            .filter(|l| l.is_ready() || self.network().is_none())
    }

    /// Send a stored, not yet started execution where it can run: a ready local instance
    /// first, else the network (routed in the background), else a local instance still
    /// connecting; with none of them it fails.
    pub async fn dispatch(
        &self,
        execution: Execution,
        signed: Signed<ExecutionRequest>,
    ) -> Execution {
        if let Some(live) = self.instances.live().for_service(&execution.service_hash)
            && live.is_ready()
        {
            return self.instances.run_locally(execution, &live).await;
        }
        if self.network().is_some() {
            let router = self.arc();
            let e = execution.clone();
            tokio::spawn(async move { router.route(e, signed).await });
            return execution;
        }
        if let Some(live) = self.instances.live().for_service(&execution.service_hash) {
            // Its container is still connecting: the task waits in its queue.
            return self.instances.run_locally(execution, &live).await;
        }
        let reason = format!(
            "no running instance of service {} on this node",
            execution.service_hash
        );
        self.ledger
            .finish(&execution.id, Err(reason), None)
            .await
            .unwrap_or(execution)
    }

    /// The provider a new execution of `service` will be offered to first, if one is
    /// known. Recorded with the execution, so routing it costs no flush of its own.
    pub fn first_provider(&self, service: &ServiceHash) -> Option<PublicKey> {
        self.network()?;
        let me = self.node();
        self.providers().first_choice(service, &me)
    }

    /// Route an execution that no local instance can run to a provider in the network.
    #[tracing::instrument(name = "route", skip_all, fields(execution_id = %execution.id, service = %execution.service_hash))]
    pub async fn route(&self, execution: Execution, signed: Signed<ExecutionRequest>) {
        let Some(net) = self.network().cloned() else {
            let reason = format!(
                "no running instance of service {} on this node, and the node has no network",
                execution.service_hash
            );
            self.ledger.finish(&execution.id, Err(reason), None).await;
            return;
        };
        let me = self.node();
        let id = execution.id;
        let service = execution.service_hash;
        // A provider noted before it was banned is not offered the execution.
        let noted = execution.executor.filter(|p| !self.reputation.is_banned(p));
        let mut route = Failover::new(me, noted, execution.timeout_ms, now_ms());
        // What this route learns, for `why` (removed when the route ends).
        let _tracked = self.track_route(id, route.patience_until());
        loop {
            let announced = self.providers().candidates(&service, &me);
            let untried = announced.iter().filter(|p| !route.tried(p)).count();
            let mut candidates = announced;
            if route.should_ask_dht(untried) {
                // Nobody announced it (yet): ask the DHT who provides it.
                if let Ok(peers) = net.providers(service_key(&service)).await {
                    candidates.extend(
                        peers
                            .iter()
                            .filter_map(PublicKey::from_peer_id)
                            .filter(|p| !self.reputation.is_banned(p)),
                    );
                }
            }
            self.diagnose(&id, |d| d.considered(&candidates));
            let Some(target) = route.next(candidates) else {
                let still_waiting = matches!(
                    self.ledger.find(&id),
                    Ok(Some(e)) if e.status == ExecutionStatus::Created
                );
                if !still_waiting {
                    return;
                }
                match route.idle(now_ms(), &service) {
                    Idle::Wait(pause) => {
                        let next = now_ms() + pause.as_millis() as u64;
                        self.diagnose(&id, |d| d.waiting(next));
                        tokio::time::sleep(pause).await;
                        self.diagnose(&id, |d| d.new_round());
                        continue;
                    }
                    Idle::GiveUp(mut reason) => {
                        let banned = self
                            .providers()
                            .census(&service, &me)
                            .providers
                            .iter()
                            .filter(|p| self.reputation.is_banned(p))
                            .count();
                        if banned > 0 {
                            reason.push_str(&format!(
                                " ({banned} provider(s) of it banned by this node: `mesg peers`)"
                            ));
                        }
                        self.take_route(&id);
                        self.ledger.finish(&id, Err(reason), None).await;
                        return;
                    }
                }
            };
            let durable_executor = match self.ledger.find(&id) {
                Ok(Some(e)) if e.status == ExecutionStatus::Created && e.deadline() > now_ms() => {
                    e.executor
                }
                _ => return, // cancelled or timed out meanwhile
            };
            let Ok(peer) = target.peer_id() else { continue };
            self.set_route(id, target);
            // Durably note where it goes before it goes: after a crash, the request is
            // offered to the same provider first, which recognises it (see Replayed).
            // The first provider is usually noted already, in the flush that recorded
            // the new execution (see `first_provider`).
            if durable_executor != Some(target) {
                self.ledger.note_route(&id, target).await;
            }
            let sent = std::time::Instant::now();
            self.diagnose(&id, |d| d.offering(target, now_ms()));
            let mut error = None;
            // Bounded here, not only by the network's request timeout: a provider that is
            // connected but frozen never completes the stream's negotiation, which the
            // transport gives up on only after ~10 s.
            let answer = match tokio::time::timeout(
                SUBMIT_PATIENCE,
                net.send_work(peer, WorkRequest::Submit(signed.clone())),
            )
            .await
            {
                Ok(Ok(WorkResponse::Accepted)) => Answer::Accepted,
                Ok(Ok(WorkResponse::Rejected(r))) => Answer::Rejected(r),
                Ok(Ok(
                    WorkResponse::Receipt(_)
                    | WorkResponse::Announcements(_)
                    | WorkResponse::Events(_)
                    | WorkResponse::Receipts(_),
                )) => {
                    Answer::Unreachable("the provider answered a submit with another answer".into())
                }
                Ok(Err(e)) => {
                    error = Some(e.reason());
                    Answer::Unreachable(e.to_string())
                }
                Err(_) => {
                    let m = format!(
                        "no answer within {} ms (connected but not answering)",
                        SUBMIT_PATIENCE.as_millis()
                    );
                    error = Some(m.clone());
                    Answer::Unreachable(m)
                }
            };
            self.diagnose(&id, |d| d.answered(target, &answer, error, now_ms()));
            let (standing, next) = route.on_answer(peer, answer);
            match standing {
                Standing::Succeeded => {
                    let rtt = sent.elapsed().as_micros() as f64;
                    self.providers().succeeded(&target, rtt);
                    self.reputation.round_trip(&target, rtt);
                }
                Standing::Failed => {
                    self.providers().failed(&target);
                    self.reputation.failure(&target);
                }
                Standing::Unchanged => {}
            }
            match next {
                Next::Accepted => {
                    match self.ledger.accepted_by(&id, target) {
                        // A late Accepted for an execution that already ended (timed
                        // out meanwhile): the route is over.
                        Ok(e) if e.status.is_final() => self.take_route(&id),
                        Ok(_) => {}
                        Err(err) => tracing::warn!(execution_id = %id, "after accept: {err}"),
                    }
                    tracing::debug!(execution_id = %id, executor = %target, "accepted");
                    return;
                }
                Next::TryAnother => self.take_route(&id),
                Next::Fail(reason) => {
                    self.take_route(&id);
                    self.ledger.finish(&id, Err(reason), None).await;
                    return;
                }
            }
        }
    }

    /// Submitting `id` to `target`: it counts as load on `target` until the route ends.
    pub(super) fn set_route(&self, id: ExecutionId, target: PublicKey) {
        let previous = self.routes.lock().expect("routes lock").insert(id, target);
        let mut providers = self.providers();
        if let Some(p) = previous {
            providers.ended(&p);
        }
        providers.sending(&target);
    }

    /// The route of `id` ended (rejected, unreachable, finished): exactly once per route.
    pub(super) fn take_route(&self, id: &ExecutionId) {
        let removed = self.routes.lock().expect("routes lock").remove(id);
        if let Some(target) = removed {
            self.providers().ended(&target);
        }
    }

    /// Outputs an executor returned, checked against the task's schema when this node
    /// knows the definition (the error says why they do not fit).
    pub(super) fn check_outputs(
        &self,
        e: &Execution,
        outputs: &mesg_protocol::Json,
    ) -> Result<(), String> {
        let Some(s) = self.store.service(&e.service_hash).ok().flatten() else {
            return Ok(());
        };
        match s.record.definition.task(&e.task_key) {
            Some(t) => mesg_protocol::schema::validate(&t.outputs, &outputs.0, "outputs")
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Tell the executor we gave up (timeout, cancel). Best effort.
    pub fn cancel_remote(&self, e: &Execution, reason: &str) {
        let Some(executor) = e.executor else { return };
        if e.requester_node != self.node() {
            return;
        }
        self.cancel_at(e.id, executor, reason);
    }

    /// Tell `executor` to stop running `id`, a request of this node. Best effort.
    pub(super) fn cancel_at(&self, id: ExecutionId, executor: PublicKey, reason: &str) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        if executor == self.node() {
            return;
        }
        let Ok(peer) = executor.peer_id() else { return };
        let cancel = CancelRequest {
            execution_id: id,
            requester: self.node(),
            reason: reason.to_string(),
        };
        let Ok(signed) = Signed::sign(
            &self.key,
            domains::CANCEL,
            &cancel,
            now_ms(),
            600_000,
            MAX_WORK_MESSAGE,
        ) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = net.send_work(peer, WorkRequest::Cancel(signed)).await {
                tracing::debug!("cancel not delivered: {e}");
            }
        });
    }

    /// An execution's deadline passed: it fails, if it has not ended, with what is known of
    /// why; the provider that accepted it and never answered counts as failed.
    #[tracing::instrument(skip_all, fields(execution_id = %id))]
    pub async fn expire(&self, id: ExecutionId) {
        // A verified execution's round decides how it ends.
        if self.close_round(&id).await {
            return;
        }
        let Ok(Some(e)) = self.store.execution(&id) else {
            return;
        };
        if e.status.is_final() {
            return;
        }
        let me = self.node();
        let reason = match (e.status, e.executor) {
            (ExecutionStatus::Created, _) if e.requester_node == me => format!(
                "timed out after {} ms before any provider accepted it",
                e.timeout_ms
            ),
            (ExecutionStatus::InProgress, Some(x)) if x != me => {
                // Accepted and never answered: an observed failure of that provider,
                // which weighs more than whatever load it claims.
                self.providers().failed(&x);
                self.reputation.timeout(&x);
                format!(
                    "timed out after {} ms: accepted by {x} but no result arrived (it may have run there)",
                    e.timeout_ms
                )
            }
            _ => format!("timed out after {} ms", e.timeout_ms),
        };
        tracing::info!(execution_id = %id, "{reason}");
        if let Some(ended) = self.ledger.finish(&id, Err(reason.clone()), None).await {
            self.cancel_remote(&ended, &reason);
        }
    }

    /// The executor sends the result back.
    #[tracing::instrument(name = "result_in", skip_all, fields(%peer, execution_id = tracing::field::Empty))]
    pub(super) async fn on_result(
        &self,
        peer: PeerId,
        signed: Signed<ExecutionResult>,
    ) -> WorkResponse {
        match self.result_arrival(peer, &signed).await {
            Arrival::Answer(answer) => answer,
            Arrival::End { id, outcome, .. } => {
                let ended = self.ledger.finish(&id, outcome, Some(signed)).await;
                self.answer_end(&id, ended.is_some())
            }
        }
    }

    /// The answer to a result whose end was recorded (`ended`), or not: a resend of one
    /// that ended meanwhile is `Accepted` too.
    pub(super) fn answer_end(&self, id: &ExecutionId, ended: bool) -> WorkResponse {
        // finish() persists before we answer: the executor drops its copy on our Accepted.
        if ended {
            return WorkResponse::Accepted;
        }
        match self.store.execution(id) {
            Ok(Some(e)) if e.status.is_final() => WorkResponse::Accepted,
            _ => reject(RejectCode::Internal, "could not record the result"),
        }
    }

    /// A result arrived: checked (signed by the node it was given to, for this request),
    /// then either answered at once (refused, a resend, a verified execution's) or to
    /// end its execution with.
    pub(super) async fn result_arrival(
        &self,
        peer: PeerId,
        signed: &Signed<ExecutionResult>,
    ) -> Arrival {
        let answer = |code, message: &str| Arrival::Answer(reject(code, message));
        let result = match signed.verify(domains::EXECUTION_RESULT, now_ms(), MAX_WORK_MESSAGE) {
            Ok(r) => r,
            Err(e) => return answer(RejectCode::BadSignature, &e.to_string()),
        };
        if result.executor.peer_id().ok() != Some(peer) {
            return answer(
                RejectCode::WrongNode,
                "the result is not signed by the node that sent it",
            );
        }
        let id = result.execution_id;
        tracing::Span::current().record("execution_id", tracing::field::display(&id));
        if self.is_verifying(&id) {
            return Arrival::Answer(self.on_verified_result(&id, signed, &result).await);
        }
        let Ok(Some(execution)) = self.store.execution(&id) else {
            return answer(
                RejectCode::UnknownExecution,
                &format!("no execution {id} here"),
            );
        };
        let request = self.store.request(&id).ok().flatten();
        if request.as_ref().map(|r| r.digest()) != Some(result.request_digest) {
            return answer(
                RejectCode::BadSignature,
                "the result answers another request",
            );
        }
        if execution.status.is_final() {
            return Arrival::Answer(WorkResponse::Accepted); // a resend: we already have the end
        }
        let assigned = execution
            .executor
            .or_else(|| self.routes.lock().expect("routes lock").get(&id).copied());
        if assigned != Some(result.executor) {
            return answer(RejectCode::WrongNode, "this execution was not given to you");
        }
        let outcome = match &result.outcome {
            Outcome::Completed { outputs } => self
                .check_outputs(&execution, outputs)
                .map(|()| outputs.0.clone())
                .map_err(|e| format!("the executor returned invalid outputs: {e}")),
            Outcome::Failed { error } => Err(error.clone()),
        };
        let executor = result.executor;
        let instance = result.instance_hash;
        let started = result.started_at;
        self.reputation.success(&executor);
        if let Err(e) = self.ledger.result_arrived(&id, executor, instance, started) {
            tracing::warn!(execution_id = %id, peer = %executor, "result not noted before its end: {e}");
        }
        Arrival::End {
            id,
            outcome,
            request,
            result: Box::new(result),
        }
    }
}

/// What becomes of a result that arrived.
pub(super) enum Arrival {
    /// Answered at once: refused, a resend, a verified execution's.
    Answer(WorkResponse),
    /// To end its execution with `outcome` (the result's, or why its outputs are
    /// refused).
    End {
        id: ExecutionId,
        outcome: Result<serde_json::Value, String>,
        /// The request as stored (the result answers it).
        request: Option<Signed<ExecutionRequest>>,
        result: Box<ExecutionResult>,
    },
}
