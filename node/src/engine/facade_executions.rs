//! The engine's public surface for executions and events (what the Application API and
//! processes call): composed from the components, no state of its own.

use super::Engine;
use super::config::SIGNED_TTL_MS;
use super::error::EngineError;
use super::executions::{
    AcceptError, Keyed, KeyedRequest, Origin, Placement, same_or_conflict, same_request,
};
use super::requests::{build_request, validate_request};
use super::views::CreateExecution;
use crate::store::ExecutionFilter;
use mesg_api_types::{Diagnosis, DiagnosisState, ExecutionView};
use mesg_protocol::control::{check_idempotency_key, idempotent_execution_id};
use mesg_protocol::envelope::Signed;
use mesg_protocol::service_api::{EmitEventRequest, TaskResultRequest};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    Event, Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus, ServiceHash,
    now_ms,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// An execution as a create call answers it.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub execution: Execution,
    /// The request's idempotency key already named this execution: nothing new was run.
    pub replayed: bool,
}

impl Submitted {
    fn new(execution: Execution) -> Submitted {
        Submitted {
            execution,
            replayed: false,
        }
    }
}

impl Engine {
    /// Create an execution from an Application's request: resolve, validate, sign with
    /// the node key, record (durably), dispatch.
    pub async fn create_execution(&self, req: CreateExecution) -> Result<Execution, EngineError> {
        Ok(self.submit_execution(req).await?.execution)
    }

    /// [`Engine::create_execution`], saying whether an idempotency key replayed it.
    pub async fn submit_execution(&self, req: CreateExecution) -> Result<Submitted, EngineError> {
        if let Some(key) = &req.idempotency_key {
            check_idempotency_key(key).map_err(|e| EngineError::BadRequest(e.to_string()))?;
            let id = idempotent_execution_id(&self.node_key(), key);
            if req.execution_id.is_some_and(|given| given != id) {
                return Err(EngineError::BadRequest(format!(
                    "execution_id and idempotency_key disagree: the key names execution {id}; send only the key"
                )));
            }
        } else if let Some(id) = &req.execution_id
            && let Some(existing) = self.parts.ledger.find(id)?
        {
            return same_or_conflict(existing, |e| self.is_same_create(e, &req))
                .map(Submitted::new);
        }
        let service = self.resolve_service(&req.service).await?;
        let request = build_request(self.node_key(), &service, req)?;
        if let Some(replay) = self.replay_of(&request)? {
            return Ok(replay);
        }
        let signed = Signed::sign(
            &self.parts.key,
            domains::EXECUTION_REQUEST,
            &request,
            now_ms(),
            SIGNED_TTL_MS,
            MAX_WORK_MESSAGE,
        )
        .map_err(|e| EngineError::BadRequest(format!("request too large: {e}")))?;
        self.accept_local_request(request, signed).await
    }

    /// The execution a keyed request's key already names here, when the request is the
    /// same (a replay); refused when the key names another request.
    fn replay_of(&self, request: &ExecutionRequest) -> Result<Option<Submitted>, EngineError> {
        let Some(key) = &request.idempotency_key else {
            return Ok(None);
        };
        let asked = KeyedRequest {
            id: request.execution_id,
            key,
            service: request.service_hash,
            task: &request.task_key,
            inputs: &request.inputs,
        };
        Ok(
            match self
                .parts
                .ledger
                .keyed(&asked, self.parts.config.idempotency_ttl_ms)?
            {
                Keyed::New => None,
                Keyed::Replay(execution) => {
                    self.parts.metrics.idempotent_replays.inc();
                    Some(Submitted {
                        execution,
                        replayed: true,
                    })
                }
            },
        )
    }

    /// Create an execution from a request signed by an account (e.g. the CLI's key).
    pub async fn submit_signed(
        &self,
        signed: Signed<ExecutionRequest>,
    ) -> Result<Submitted, EngineError> {
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
        validate_request(&service.record.definition, &request)?;
        if let Some(replay) = self.replay_of(&request)? {
            return Ok(replay);
        }
        if !self.parts.store.record_nonce(
            &signed.header.signer,
            &signed.header.nonce.0,
            signed.header.expires_at,
        )? {
            return Err(EngineError::Replayed);
        }
        self.accept_local_request(request, signed).await
    }

    /// The one path of a request made on this node: recorded where the router places it
    /// (a ready local instance, else the first known provider), then dispatched.
    async fn accept_local_request(
        &self,
        request: ExecutionRequest,
        signed: Signed<ExecutionRequest>,
    ) -> Result<Submitted, EngineError> {
        if let Some(parent) = &request.parent
            && self.parts.ledger.find(parent)?.is_none()
        {
            return Err(EngineError::NotFound {
                what: "parent execution",
                id: parent.to_string(),
            });
        }
        // A verified execution runs on other nodes, chosen by its round.
        let local = match request.verify {
            Some(_) => None,
            None => self
                .parts
                .router
                .ready_local_instance(&request.service_hash),
        };
        let placement = match (&local, request.verify) {
            (Some(live), _) => Placement::Local(live.hash),
            (None, Some(_)) => Placement::Remote(None),
            (None, None) => {
                Placement::Remote(self.parts.router.first_provider(&request.service_hash))
            }
        };
        let accepted = self
            .parts
            .ledger
            .accept(&request, &signed, now_ms(), placement, Origin::Local)
            .await;
        let execution = match accepted {
            Ok(e) => e,
            // Another call inserted this id first (a race of two creates, or a signed
            // request reusing an id): the same request gets that execution, another 409.
            Err(AcceptError::Exists(id)) => {
                if let Some(replay) = self.replay_of(&request)? {
                    return Ok(replay);
                }
                let existing = self.parts.ledger.get(&id)?;
                return same_or_conflict(existing, |e| same_request(e, &request))
                    .map(Submitted::new);
            }
            Err(AcceptError::Store(e)) => return Err(e.into()),
        };
        Ok(Submitted::new(match (local, request.verify) {
            (Some(live), _) => self.parts.instances.push(execution, &live).await,
            (None, Some(spec)) => {
                let router = self.parts.router.clone();
                let e = execution.clone();
                tokio::spawn(async move { router.route_verified(e, signed, spec).await });
                execution
            }
            (None, None) => self.parts.router.dispatch(execution, signed).await,
        }))
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

    pub fn execution(&self, id: &ExecutionId) -> Result<Execution, EngineError> {
        self.parts.ledger.get(id)
    }

    /// Why an execution is not running (or that it runs or ended): what its route
    /// learned, the providers known, its local instance. Never stored.
    pub fn why(&self, id: &ExecutionId) -> Result<Diagnosis, EngineError> {
        let e = self.parts.ledger.get(id)?;
        Ok(self.parts.router.diagnosis(&e))
    }

    /// An execution with its diagnosis while it waits (for a provider or an instance).
    pub fn execution_view(&self, id: &ExecutionId) -> Result<ExecutionView, EngineError> {
        let execution = self.with_booked_cost(self.parts.ledger.get(id)?);
        let waits = execution.status == ExecutionStatus::Created
            || (execution.status == ExecutionStatus::InProgress
                && execution.executor == Some(self.node_key()));
        let diagnosis = waits
            .then(|| self.parts.router.diagnosis(&execution))
            .filter(|d| matches!(d.state, DiagnosisState::Routing | DiagnosisState::Queued));
        let receipt = self.receipt_view(id);
        Ok(ExecutionView {
            execution,
            diagnosis,
            receipt,
        })
    }

    /// The executor's signed result of a finished execution.
    pub fn result_proof(&self, id: &ExecutionId) -> Result<Signed<ExecutionResult>, EngineError> {
        self.parts.ledger.result_proof(id)
    }

    pub fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, EngineError> {
        let listed = self.parts.ledger.list(filter)?;
        Ok(listed
            .into_iter()
            .map(|e| self.with_booked_cost(e))
            .collect())
    }

    /// See [`super::executions::ExecutionLedger::wait`].
    pub async fn wait(
        &self,
        id: &ExecutionId,
        timeout: Duration,
    ) -> Result<Execution, EngineError> {
        self.parts.ledger.wait(id, timeout).await
    }

    /// How many waits are registered right now (a gauge on `/metrics`).
    pub fn waiter_count(&self) -> usize {
        self.parts.ledger.waiter_count()
    }

    /// Cancel an execution that has not ended; its provider is told (best effort).
    pub async fn cancel(
        &self,
        id: &ExecutionId,
        reason: Option<String>,
    ) -> Result<Execution, EngineError> {
        let e = self.parts.ledger.get(id)?;
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
        if let Some(ended) = self
            .parts
            .ledger
            .finish(id, Err(reason.clone()), None)
            .await
        {
            self.parts.router.cancel_remote(&ended, &reason);
        }
        self.parts.ledger.get(id)
    }

    pub fn subscribe_executions(&self) -> broadcast::Receiver<Execution> {
        self.parts.ledger.subscribe()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.parts.events.subscribe()
    }

    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>, EngineError> {
        self.parts.events.recent(limit)
    }

    pub fn authenticate(
        &self,
        token: &str,
    ) -> Result<Arc<super::instances::LiveInstance>, EngineError> {
        self.parts.container.authenticate(token)
    }

    /// A container posts the result of a task it was given.
    pub async fn submit_result(
        &self,
        live: &super::instances::LiveInstance,
        body: TaskResultRequest,
    ) -> Result<Execution, EngineError> {
        self.parts.container.submit_result(live, body).await
    }

    /// A container emits an event.
    pub async fn emit_event(
        &self,
        live: &super::instances::LiveInstance,
        body: EmitEventRequest,
    ) -> Result<Event, EngineError> {
        self.parts.container.emit_event(live, body).await
    }
}
