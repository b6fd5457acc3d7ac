//! The durable outbox of results owed to other nodes (executor side): queued in the same
//! flush as the end of their execution, delivered at once, retried with backoff until the
//! requester's node acknowledges them or the result is too old to be accepted.

use super::Router;
use super::receipts::ReceiptOwed;
use crate::engine::error::EngineError;
use crate::store::OutboxEntry;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{WorkRequest, WorkResponse};
use mesg_protocol::{Execution, ExecutionId, ExecutionResult, Hash32, PublicKey, now_ms};
use std::time::Duration;

/// When the outbox sweep first retries a result whose immediate delivery has not
/// succeeded by then.
const FIRST_REDELIVERY_MS: u64 = 2_000;
/// How long the outbox keeps trying to deliver a result, from the time it was signed.
/// The requester's execution has timed out long before (24 h at most); past this the
/// result is dropped, logged and counted (`mesg_results_undelivered`).
pub const MAX_OUTBOX_AGE_MS: u64 = 24 * 3600 * 1000;
/// Delivery attempts before the outbox gives up on a result (the backoff caps at 30 s:
/// about a day of trying).
pub const MAX_OUTBOX_ATTEMPTS: u32 = 3_000;
/// How often the outbox looks for results due for another attempt.
pub const OUTBOX_SWEEP: Duration = Duration::from_millis(500);

impl Router {
    /// Put a result owed to another node in the outbox (durable with the caller's next
    /// persist), to be delivered until acknowledged.
    /// The nodes it is owed to: the requester's node unless it is this one, and every
    /// node that sent a duplicate under the same idempotency key (each gets a result
    /// signed for its own request). Returns them, to be delivered after the flush.
    pub fn queue_result(&self, e: &Execution) -> Result<Vec<PublicKey>, EngineError> {
        let mut owed = Vec::new();
        if e.requester_node != self.node()
            && let Some(result) = self.store.result(&e.id)?
        {
            self.put_in_outbox(e.id, result, e.requester_node)?;
            owed.push(e.requester_node);
        }
        for (node, digest) in self.store.take_owed_copies(&e.id)? {
            let result = self.ledger.signed_result(e, digest)?;
            self.put_in_outbox(e.id, result, node)?;
            owed.push(node);
        }
        Ok(owed)
    }

    fn put_in_outbox(
        &self,
        id: ExecutionId,
        result: Signed<ExecutionResult>,
        requester_node: PublicKey,
    ) -> Result<(), EngineError> {
        self.store.put_outbox(
            &id,
            &OutboxEntry {
                result,
                requester_node,
                attempts: 0,
                // Delivered right away by the caller; the outbox sweep only retries, so
                // it leaves the entry alone while that first attempt is under way.
                next_attempt_at: now_ms() + FIRST_REDELIVERY_MS,
            },
        )?;
        Ok(())
    }

    /// Another node asked for the execution `e` held here (same requester, key and
    /// request): it is owed a result signed for its own request (`digest`). Queued now
    /// when `e` has ended (and delivered at once), else when it ends.
    pub(super) async fn owe_copy(
        &self,
        e: &Execution,
        node: PublicKey,
        digest: Hash32,
    ) -> Result<(), EngineError> {
        self.store.add_owed_copy(&e.id, &node, &digest)?;
        // It may have ended between our read and the write above: read it again, so a
        // copy is never left owed by an execution whose end already passed.
        let now = self.ledger.get(&e.id)?;
        if now.status.is_final() {
            for (node, digest) in self.store.take_owed_copies(&e.id)? {
                let result = self.ledger.signed_result(&now, digest)?;
                self.put_in_outbox(e.id, result, node)?;
                self.store.persist().await?;
                let router = self.arc();
                tokio::spawn(async move { router.deliver(now.id, node).await });
            }
        }
        Ok(())
    }

    /// Forget an outbox entry (delivered, refused or given up).
    pub(super) fn drop_from_outbox(&self, id: &ExecutionId, node: &PublicKey) {
        if let Err(e) = self.store.remove_outbox(id, node) {
            tracing::error!(execution_id = %id, "outbox entry not removed (it will be sent again): {e}");
        }
    }

    /// An outbox entry is done with (delivered, refused or given up): dropped, with its
    /// verified mark when it had one.
    fn delivered(&self, id: &ExecutionId, node: &PublicKey, verified: bool) {
        self.drop_from_outbox(id, node);
        if verified {
            self.unmark_verified(id);
        }
    }

    /// Try to deliver one outbox entry now.
    #[tracing::instrument(name = "deliver_result", skip_all, fields(execution_id = %id, requester = %node))]
    pub async fn deliver(&self, id: ExecutionId, node: PublicKey) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let Ok(Some(entry)) = self.store.outbox_entry(&id, &node) else {
            return;
        };
        // A verified execution's outputs go as a commit, then a reveal (one small read).
        let verified = self.is_marked_verified(&id);
        let Ok(peer) = entry.requester_node.peer_id() else {
            self.delivered(&id, &node, verified);
            return;
        };
        if let Some(reason) = outbox_give_up(&entry, now_ms()) {
            tracing::error!(
                execution = %id,
                requester = %entry.requester_node,
                "result not delivered, dropped from the outbox: {reason}"
            );
            self.metrics.results_undelivered.inc();
            // Its receipt, if owed, is never issued: its reservation is let go.
            self.books.release(&id);
            self.delivered(&id, &node, verified);
            return;
        }
        if verified && let Some(done) = self.deliver_verified(&id, &node, &entry).await {
            match done {
                super::reveal::Delivered::Done => self.delivered(&id, &node, verified),
                super::reveal::Delivered::Retry(why) => self.retry_later(&id, entry, &why),
            }
            return;
        }
        // A priced execution's receipt goes to its requester node (never to duplicate
        // requesters: charged once). First delivery: the result at once, its receipt
        // once on disk and the result taken (`receipts_out.rs`). Later ones (a failure,
        // a restart): both together.
        let owed = self.receipt_owed(&id, &node);
        let message = match owed {
            ReceiptOwed::Nothing => WorkRequest::Result(entry.result.clone()),
            owed if entry.attempts == 0 => {
                // The receipt's batch makes it durable before it leaves (one flush per
                // batch, `receipts_out.rs`), not this result.
                let sent = net
                    .send_work(peer, WorkRequest::Result(entry.result.clone()))
                    .await;
                match sent {
                    Ok(WorkResponse::Accepted) => {
                        if self.send_receipt(node, id, owed).await {
                            self.delivered(&id, &node, verified);
                        } else {
                            self.retry_later(&id, entry, "its receipt was not answered");
                        }
                        return;
                    }
                    // Refused for good: the receipt goes with the result, to be rejected
                    // in its place in the chain.
                    Ok(WorkResponse::Rejected(r)) if !r.code.is_retriable() => {
                        self.with_receipt(&id, &entry, owed)
                    }
                    other => {
                        self.retry_later(&id, entry, &format!("{other:?}"));
                        return;
                    }
                }
            }
            owed => self.with_receipt(&id, &entry, owed),
        };
        // A receipt leaves only once it is on disk here. The first delivery starts before
        // the end's own flush (results may: see `ended_before_flush`), but a receipt the
        // requester booked and this node then lost in a crash would be issued again under
        // the same sequence number for another execution, and the pair's chain would
        // never agree again. This persist shares the end's flush (group commit).
        if matches!(message, WorkRequest::PricedResult { .. })
            && let Err(e) = self.store.persist().await
        {
            tracing::error!(execution_id = %id, "receipt not persisted, not sent: {e}");
            return;
        }
        match net.send_work(peer, message).await {
            Ok(WorkResponse::Accepted) => {
                self.delivered(&id, &node, verified);
            }
            Ok(WorkResponse::Receipt(answer)) => {
                self.receipt_answered(&id, &answer);
                self.delivered(&id, &node, verified);
            }
            Ok(WorkResponse::Rejected(r)) if !r.code.is_retriable() => {
                tracing::warn!(execution = %id, "the requester refused the result: {r}");
                self.delivered(&id, &node, verified);
            }
            other => self.retry_later(&id, entry, &format!("{other:?}")),
        }
    }

    /// The result with its receipt (issued now if it was not yet); the result alone when
    /// the receipt cannot be issued (logged: the execution goes unpaid, never twice).
    fn with_receipt(
        &self,
        id: &ExecutionId,
        entry: &OutboxEntry,
        owed: ReceiptOwed,
    ) -> WorkRequest {
        let receipt = match owed {
            ReceiptOwed::Nothing => None,
            ReceiptOwed::Issued(receipt) => Some(receipt),
            ReceiptOwed::ToIssue(input) => match self.issue_now(&input) {
                Ok(receipt) => Some(receipt),
                Err(e) => {
                    tracing::error!(execution_id = %id, "receipt not issued: {e}");
                    None
                }
            },
        };
        match receipt {
            Some(receipt) => WorkRequest::PricedResult {
                result: entry.result.clone(),
                receipt,
            },
            None => WorkRequest::Result(entry.result.clone()),
        }
    }

    /// An outbox entry not delivered this time: next attempt after a backoff.
    fn retry_later(&self, id: &ExecutionId, mut entry: OutboxEntry, why: &str) {
        entry.attempts += 1;
        let backoff = (500u64 << entry.attempts.min(6)).min(30_000);
        entry.next_attempt_at = now_ms() + backoff;
        tracing::debug!(execution = %id, attempts = entry.attempts, "result not delivered: {why}");
        if let Err(e) = self.store.put_outbox(id, &entry) {
            tracing::error!(execution_id = %id, "outbox entry not updated: {e}");
        }
    }
}

/// Why the outbox stops trying to deliver `entry` at `now`, if it does.
fn outbox_give_up(entry: &OutboxEntry, now: u64) -> Option<String> {
    let signed_at = entry.result.header.issued_at;
    if now >= entry.result.header.expires_at {
        return Some("the signed result expired (the requester would refuse it)".into());
    }
    if now.saturating_sub(signed_at) > MAX_OUTBOX_AGE_MS {
        return Some(format!(
            "the requester's node did not take it for {} h",
            MAX_OUTBOX_AGE_MS / 3_600_000
        ));
    }
    if entry.attempts >= MAX_OUTBOX_ATTEMPTS {
        return Some(format!("{} delivery attempts failed", entry.attempts));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::envelope::Signed;
    use mesg_protocol::types::domains;
    use mesg_protocol::wire::MAX_WORK_MESSAGE;
    use mesg_protocol::{ExecutionResult, Hash32, Keypair, Outcome, ServiceHash};

    pub(super) fn entry(issued_at: u64, ttl: u64, attempts: u32) -> OutboxEntry {
        let key = Keypair::generate().unwrap();
        let result = ExecutionResult {
            execution_id: ExecutionId::random(),
            request_digest: Hash32::sha256(b"r"),
            service_hash: ServiceHash(Hash32::sha256(b"s")),
            task_key: "t".into(),
            executor: key.public(),
            instance_hash: None,
            outcome: Outcome::Failed { error: "x".into() },
            started_at: None,
            finished_at: issued_at,
        };
        OutboxEntry {
            result: Signed::sign(
                &key,
                domains::EXECUTION_RESULT,
                &result,
                issued_at,
                ttl,
                MAX_WORK_MESSAGE,
            )
            .unwrap(),
            requester_node: key.public(),
            attempts,
            next_attempt_at: 0,
        }
    }

    #[test]
    pub(super) fn the_outbox_gives_up_on_old_expired_or_too_often_tried_results() {
        let now = now_ms();
        assert_eq!(outbox_give_up(&entry(now, 3_600_000, 10), now), None);
        let expired = outbox_give_up(&entry(now - 10_000, 5_000, 1), now).unwrap();
        assert!(expired.contains("expired"), "{expired}");
        let week = 7 * 24 * 3_600_000;
        let old = outbox_give_up(&entry(now - MAX_OUTBOX_AGE_MS - 1, week, 1), now).unwrap();
        assert!(old.contains("did not take it"), "{old}");
        let tried = outbox_give_up(&entry(now, week, MAX_OUTBOX_ATTEMPTS), now).unwrap();
        assert!(tried.contains("attempts"), "{tried}");
    }
}
