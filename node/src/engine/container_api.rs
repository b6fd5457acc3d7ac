//! The container-facing side of the engine (the service API's calls): a container's
//! token authenticates its instance, its results end the executions it was given (checked
//! against the task's output schema), its events are checked, recorded and published.

use super::error::EngineError;
use super::events::EventHub;
use super::executions::ExecutionLedger;
use super::instances::{Instances, LiveInstance};
use super::net::Router;
use super::requests::task_of;
use mesg_protocol::envelope::Signed;
use mesg_protocol::service_api::{EmitEventRequest, TaskResultRequest};
use mesg_protocol::types::domains;
use mesg_protocol::{
    Cause, CauseRef, Event, EventId, Execution, ExecutionId, ExecutionStatus, Json, Keypair, now_ms,
};
use std::sync::Arc;

/// What the service API calls. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ContainerApi {
    pub(super) key: Keypair,
    pub(super) ledger: Arc<ExecutionLedger>,
    pub(super) instances: Arc<Instances>,
    pub(super) events: Arc<EventHub>,
    pub(super) router: Arc<Router>,
}

impl ContainerApi {
    /// The live instance a container's token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Arc<LiveInstance>, EngineError> {
        self.instances.by_token(token)
    }

    /// A container posts the result of a task it was given.
    #[tracing::instrument(name = "result_from_container", skip_all, fields(instance = %live.hash, service = %live.service_hash, execution_id = %body.execution_id))]
    pub async fn submit_result(
        &self,
        live: &LiveInstance,
        body: TaskResultRequest,
    ) -> Result<Execution, EngineError> {
        let id: ExecutionId = body.execution_id.parse().map_err(EngineError::BadRequest)?;
        let e = self.ledger.get(&id)?;
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
                let task = task_of(e.service_hash, &live.definition, &e.task_key)?;
                match mesg_protocol::schema::validate(&task.outputs, &outputs, "outputs") {
                    Ok(()) => Ok(outputs),
                    Err(errors) => {
                        let reason = format!("the service returned invalid outputs: {errors}");
                        self.ledger.finish(&id, Err(reason), None).await;
                        return Err(EngineError::InvalidInputs(errors));
                    }
                }
            }
        };
        self.ledger
            .finish(&id, outcome, None)
            .await
            .ok_or_else(|| EngineError::Conflict(format!("execution {id} already ended")))
    }

    /// The chain an event emitted by `live` belongs to: the named execution's (it must be
    /// one given to this instance), else the deepest of those in progress on the instance
    /// (a service that does not say why it emits cannot break loop protection), else none.
    fn cause_of_event(
        &self,
        live: &LiveInstance,
        named: Option<ExecutionId>,
    ) -> Result<Option<Cause>, EngineError> {
        let candidates = match named {
            Some(id) => {
                let e = self.ledger.get(&id)?;
                if e.instance_hash != Some(live.hash) {
                    return Err(EngineError::BadRequest(format!(
                        "execution {id} was not given to this instance"
                    )));
                }
                vec![e]
            }
            None => live
                .in_flight_ids()
                .iter()
                .filter_map(|id| self.ledger.find(id).ok().flatten())
                .collect(),
        };
        Ok(candidates
            .iter()
            .max_by_key(|e| Cause::depth_of(e.cause.as_ref()))
            .map(|e| Cause::after(e.cause.as_ref(), CauseRef::Execution(e.id), 0)))
    }

    /// A container emits an event.
    #[tracing::instrument(name = "event_from_container", skip_all, fields(instance = %live.hash, service = %live.service_hash, event = %body.event))]
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
        let cause = self.cause_of_event(live, body.execution_id)?;
        let seq = self.events.next_seq(&live.service_hash)?;
        let event = Event {
            id: EventId::random(),
            service_hash: live.service_hash,
            instance_hash: live.hash,
            key: body.event,
            data: Json(body.data),
            emitter: self.key.public(),
            created_at: now_ms(),
            cause,
            seq,
        };
        let signed = Signed::sign(
            &self.key,
            domains::EVENT,
            &event,
            event.created_at,
            super::config::EVENT_RETENTION_MS,
            mesg_protocol::wire::MAX_GOSSIP_MESSAGE,
        );
        self.events.emitted_here(&event, signed.as_ref().ok())?;
        match signed {
            Ok(signed) => {
                let router = self.router.clone();
                let e = event.clone();
                tokio::spawn(async move { router.publish_event(&e, signed).await });
            }
            Err(_) => {
                tracing::debug!(event = %event.id, "event too large for the network; kept local")
            }
        }
        Ok(event)
    }
}
