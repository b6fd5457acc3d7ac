//! Recovery after a (re)start of the node: instances reconciled with Docker, then every
//! execution that was unfinished when the node stopped settled (policy in
//! docs/executions.md):
//! - `Created` executions never reached a container: they are dispatched again.
//! - `InProgress` executions whose container survived the restart (adopted) keep running:
//!   the SDK re-posts results until the node is back, so they still complete; their
//!   deadline still applies.
//! - `InProgress` executions whose container did not survive fail at once, with a reason.

use super::Engine;
use super::error::EngineError;
use super::views::RecoveryReport;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{ExecutionStatus, now_ms};

impl Engine {
    /// Reconcile Docker with the store after a (re)start of the node, then settle the
    /// executions that were unfinished when it stopped.
    pub async fn recover(&self) -> Result<RecoveryReport, EngineError> {
        let (reconcile, adopted) = self.parts.instances.restore().await?;
        let mut report = RecoveryReport {
            reconcile,
            ..Default::default()
        };
        let me = self.parts.key.public();
        for e in self.parts.ledger.unfinished()? {
            if e.deadline() <= now_ms() {
                self.parts.router.expire(e.id).await;
                report.expired += 1;
                continue;
            }
            self.parts.ledger.watch_deadline(&e).await;
            match e.status {
                ExecutionStatus::Created if e.requester_node != me => {
                    // Accepted from a peer but never handed to a container: run it now.
                    match self.parts.instances.live().for_service(&e.service_hash) {
                        Some(live) => {
                            self.parts.instances.run_locally(e, &live).await;
                            report.redispatched += 1;
                        }
                        None => {
                            self.parts
                                .ledger
                                .finish(
                                    &e.id,
                                    Err("the node restarted and no longer runs the service".into()),
                                    None,
                                )
                                .await;
                            report.failed += 1;
                        }
                    }
                }
                ExecutionStatus::Created | ExecutionStatus::InProgress
                    if e.requester_node == me && e.executor != Some(me) =>
                {
                    let Some(signed) = self.parts.ledger.request(&e.id)? else {
                        continue;
                    };
                    let verify = signed
                        .payload_unverified(MAX_WORK_MESSAGE)
                        .ok()
                        .and_then(|r| r.verify);
                    match (e.status, verify) {
                        (ExecutionStatus::Created, None) => {
                            self.parts.router.dispatch(e, signed).await;
                            report.redispatched += 1;
                        }
                        (_, Some(_)) => {
                            // A verified execution's round lived in memory: it ends here,
                            // with the record of its attempts so far.
                            self.parts.ledger.finish(
                                &e.id,
                                Err("verification interrupted: the requesting node restarted during the round (the attempts so far are in its verification record)".into()),
                                None,
                            )
                            .await;
                            report.failed += 1;
                        }
                        // Routed and accepted: its result arrives from the executor's outbox.
                        _ => {}
                    }
                }
                ExecutionStatus::InProgress if e.executor == Some(me) => {
                    match e.instance_hash.filter(|h| adopted.contains(h)) {
                        Some(h) => {
                            if let Some(live) = self.parts.instances.live().get(&h) {
                                live.in_flight_add(e.id);
                            }
                            report.kept_running += 1;
                        }
                        None => {
                            self.parts.ledger.finish(
                                &e.id,
                                Err("the node restarted and the service container did not survive; the task's progress was lost".into()),
                                None,
                            )
                            .await;
                            report.failed += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(report)
    }
}
