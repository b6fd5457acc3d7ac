//! Tasks handed to local instances: an execution started on one (durably, before its
//! task is queued), queued on its task stream, and the executions of an instance that
//! stopped or whose container died ended with the reason.

use super::Instances;
use super::live::LiveInstance;
use mesg_protocol::{Execution, InstanceHash};
use std::sync::Arc;

impl Instances {
    /// Queue a stored InProgress execution on its instance's task stream.
    #[tracing::instrument(name = "push_task", skip_all, fields(execution_id = %execution.id, instance = %live.hash, service = %live.service_hash))]
    pub async fn push(&self, execution: Execution, live: &Arc<LiveInstance>) -> Execution {
        let peer = (execution.requester_node != self.node()).then_some(execution.requester_node);
        if live.push_task(
            execution.id,
            &execution.task_key,
            execution.inputs.0.clone(),
            peer,
        ) {
            return execution;
        }
        let reason = format!("instance {} is busy: too many queued tasks", live.hash);
        self.ledger
            .finish(&execution.id, Err(reason), None)
            .await
            .unwrap_or(execution)
    }

    /// Hand a stored, not yet started execution to a local instance: recorded (durably)
    /// before the task is pushed.
    pub async fn run_locally(&self, execution: Execution, live: &Arc<LiveInstance>) -> Execution {
        let updated = match self.ledger.start_local(&execution.id, live.hash).await {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(execution_id = %execution.id, "not dispatched: {err}");
                return execution;
            }
        };
        self.push(updated, live).await
    }

    pub async fn fail_all(&self, live: &LiveInstance, reason: &str) {
        for id in live.take_in_flight() {
            self.ledger.finish(&id, Err(reason.to_string()), None).await;
        }
    }

    pub async fn container_died(&self, instance: &InstanceHash, exit_code: Option<i64>) {
        let Some(live) = self.live.get(instance) else {
            return;
        };
        let code = exit_code.map_or("unknown".to_string(), |c| c.to_string());
        let reason = format!("the service container exited (code {code}) while running the task");
        self.fail_all(&live, &reason).await;
    }
}
