//! Usage receipts on the wire. Executor side: the receipt of a priced execution run for
//! another node is issued with the end (in the flush that queues the result) and travels
//! with the result (`PricedResult`); the requester's answer (ack, held, rejected) is
//! recorded. Requester side: a priced result is taken as any result, then its receipt is
//! checked from this node's own view and booked, held or rejected.

use super::Router;
use crate::engine::error::EngineError;
use crate::ledger::{Booking, IssueInput, LedgerError};
use mesg_protocol::economy::{
    Cost, MAX_RECEIPT_BYTES, ReceiptReject, RequesterView, Usage, UsageReceipt, check_receipt,
};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{ReceiptAnswer, RejectCode, WorkResponse};
use mesg_protocol::{
    Execution, ExecutionId, ExecutionResult, ExecutionStatus, Outcome, PublicKey, ServiceHash,
    now_ms,
};

impl Router {
    /// Executor: an execution this node ran ended. Priced, completed and asked for by
    /// another node: its receipt is issued (once). Any other end lets go of what was
    /// reserved for it.
    pub(super) fn receipt_ended(&self, e: &Execution) {
        if e.requester_node == self.node() {
            return;
        }
        let done = match (e.status, e.cost) {
            (ExecutionStatus::Completed, Some(cost)) => self.issue_receipt(e, cost).map(|_| ()),
            // Only a request with a cap can hold a reservation: a free call costs nothing.
            _ if e.max_price.is_none() => Ok(()),
            _ => self
                .books
                .release(&e.id, "ended without a charge")
                .map_err(EngineError::from),
        };
        if let Err(err) = done {
            tracing::error!(execution_id = %e.id, "ledger: {err}");
        }
    }

    fn issue_receipt(&self, e: &Execution, cost: Cost) -> Result<(), EngineError> {
        let request_digest = self
            .store
            .request(&e.id)?
            .map(|r| r.digest())
            .unwrap_or_default();
        let Some(result) = self.store.result(&e.id)? else {
            return Err(
                LedgerError::Invalid(format!("no signed result of {} to receipt", e.id)).into(),
            );
        };
        let input = IssueInput {
            execution_id: e.id,
            request_digest,
            result_digest: result.digest(),
            service_hash: e.service_hash,
            task_key: e.task_key.clone(),
            cost,
            requester: e.requester_node,
            publisher: self.publisher_share(&e.service_hash, cost.amount),
        };
        let (_, fresh) = self.books.issue(&input)?;
        if fresh {
            self.metrics.micro_credits_earned.inc_by(cost.amount);
        }
        Ok(())
    }

    /// The publisher of a service (its sid's claim, else the record's signer) and its
    /// share of `amount`.
    fn publisher_share(&self, service: &ServiceHash, amount: u64) -> Option<(PublicKey, u64)> {
        let entry = self.store.service(service).ok().flatten()?;
        let economy = entry.record.definition.economy?;
        let publisher = self
            .services
            .stored_claim(service)
            .map_or(entry.record.publisher, |c| c.claim.publisher);
        Some((publisher, economy.publisher_part(amount)))
    }

    /// At start: results owed whose priced execution has no receipt yet (the node stopped
    /// between the two) get one; reservations of executions that ended are let go.
    pub(super) fn receipt_missing_results(&self) {
        let owed = match self.store.outbox() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("outbox unreadable: {e}");
                return;
            }
        };
        for (id, entry) in owed {
            if matches!(self.books.issued(&id), Ok(Some(_))) {
                continue;
            }
            if let Ok(Some(e)) = self.store.execution(&id)
                && e.requester_node == entry.requester_node
                && e.executor == Some(self.node())
            {
                self.receipt_ended(&e);
            }
        }
        for id in self.books.reservations().unwrap_or_default() {
            match self.store.execution(&id) {
                Ok(Some(e)) if !e.status.is_final() => {}
                Ok(Some(e)) => self.receipt_ended(&e),
                Ok(None) => {
                    let _ = self.books.release(&id, "execution unknown");
                }
                Err(err) => tracing::error!(execution_id = %id, "{err}"),
            }
        }
    }

    /// The requester's answer to a delivered receipt.
    pub(super) fn receipt_answered(&self, id: &ExecutionId, answer: &ReceiptAnswer) {
        if let Err(e) = self.books.record_answer(id, answer) {
            tracing::warn!(execution_id = %id, "receipt answer not recorded: {e}");
        }
    }

    /// Requester: a priced result. The result is taken (or refused) as any result; then
    /// the receipt is booked, held or rejected (a refused result's receipt is rejected),
    /// receipts held behind it follow, and the answer carries the pair's latest ack.
    pub(super) async fn on_priced_result(
        &self,
        peer: libp2p::PeerId,
        result: Signed<ExecutionResult>,
        receipt: Signed<UsageReceipt>,
    ) -> WorkResponse {
        let booking = match self.on_result(peer, result).await {
            WorkResponse::Accepted => self.book_receipt(&receipt),
            WorkResponse::Rejected(r) if !r.code.is_retriable() => {
                let reason =
                    ReceiptReject::Unsolicited(format!("its result was refused: {}", r.message));
                self.count_rejected(&reason);
                self.books
                    .reject_receipt(&receipt, &reason)
                    .map_err(EngineError::from)
            }
            other => return other,
        };
        let booking = match booking {
            Ok(b) => b,
            Err(e) => {
                return super::reject(RejectCode::Internal, format!("receipt not booked: {e}"));
            }
        };
        let executor = receipt
            .payload_unverified(MAX_RECEIPT_BYTES)
            .ok()
            .map(|r| r.executor);
        let mut latest = None;
        if let Some(executor) = executor {
            self.book_held(&executor);
            latest = self.books.latest_ack_to(&executor).ok().flatten();
        }
        if let Err(e) = self.store.persist().await {
            return super::reject(RejectCode::Internal, format!("receipt not persisted: {e}"));
        }
        WorkResponse::Receipt(match booking {
            Booking::Acked { ack, .. } => ReceiptAnswer::Acked {
                ack: latest.unwrap_or(ack),
            },
            Booking::Held(held) => ReceiptAnswer::Held {
                latest: latest.or(held),
            },
            Booking::Rejected {
                reason,
                latest: rejected,
            } => ReceiptAnswer::Rejected {
                code: reason.code().to_string(),
                reason: reason.to_string(),
                latest: latest.or(rejected),
            },
        })
    }

    /// Receipts held behind one just booked: booked in turn while the next one is there.
    fn book_held(&self, executor: &PublicKey) {
        let mut previous = None;
        for _ in 0..10_000 {
            match self.books.next_held(executor) {
                // Still there after its turn: it did not take its place; stop.
                Ok(Some(next)) if previous == Some(next.digest()) => return,
                Ok(Some(next)) => match self.book_receipt(&next) {
                    Ok(Booking::Acked { .. } | Booking::Rejected { .. }) => {
                        previous = Some(next.digest());
                    }
                    Ok(Booking::Held(_)) => return,
                    Err(e) => {
                        tracing::warn!("held receipt not booked: {e}");
                        return;
                    }
                },
                _ => return,
            }
        }
    }

    /// Check a receipt from this node's own view and book it (or hold or reject it).
    fn book_receipt(&self, signed: &Signed<UsageReceipt>) -> Result<Booking, EngineError> {
        let Ok(r) = signed.payload_unverified(MAX_RECEIPT_BYTES) else {
            let reason = ReceiptReject::BadSignature("the receipt does not decode".into());
            self.count_rejected(&reason);
            return Ok(Booking::Rejected {
                reason,
                latest: None,
            });
        };
        let id = r.execution_id;
        let signed_request = self.store.request(&id)?;
        let request = signed_request.as_ref().and_then(|s| {
            s.payload_unverified(mesg_protocol::wire::MAX_WORK_MESSAGE)
                .ok()
        });
        let execution = self.store.execution(&id)?;
        let stored_result = self.store.result(&id)?;
        let result: Option<ExecutionResult> = stored_result.as_ref().and_then(|s| {
            s.payload_unverified(mesg_protocol::wire::MAX_WORK_MESSAGE)
                .ok()
        });
        let usage = match &result {
            Some(res) => match &res.outcome {
                Outcome::Completed { outputs } => Usage::of_call(
                    res.finished_at
                        .saturating_sub(res.started_at.unwrap_or(res.finished_at)),
                    outputs,
                ),
                Outcome::Failed { .. } => Usage::default(),
            },
            None => Usage::default(),
        };
        let price = execution.as_ref().and_then(|e| {
            self.store
                .service(&e.service_hash)
                .ok()
                .flatten()
                .and_then(|s| s.record.definition.price_of(&e.task_key))
        });
        let me = self.node();
        let request_digest = signed_request.map(|s| s.digest()).unwrap_or_default();
        let result_digest = stored_result.map(|s| s.digest()).unwrap_or_default();
        let executor = execution.as_ref().and_then(|e| e.executor);
        let now = now_ms();
        let booking = self.books.book(signed, &|last, already_booked| {
            check_receipt(
                signed,
                &RequesterView {
                    me,
                    last,
                    request: request.as_ref(),
                    request_digest,
                    executor,
                    result_digest,
                    price,
                    usage,
                    already_booked,
                },
                now,
            )
        })?;
        match &booking {
            Booking::Acked { fresh: true, .. } => {
                self.metrics.micro_credits_spent.inc_by(r.amount);
                let cost = Cost {
                    usage: r.usage,
                    price: r.price,
                    max_price: request.as_ref().and_then(|q| q.max_price),
                    amount: r.amount,
                };
                // The requester's copy shows what it accepted to pay.
                let noted = self.store.update_execution(&id, &mut |e| {
                    e.cost = Some(cost);
                    Ok(())
                });
                if let Err(e) = noted {
                    tracing::warn!(execution_id = %id, "cost not noted: {e}");
                }
            }
            Booking::Rejected { reason, .. } => self.count_rejected(reason),
            _ => {}
        }
        Ok(booking)
    }

    fn count_rejected(&self, reason: &ReceiptReject) {
        self.metrics
            .receipts_rejected
            .get_or_create(&[("reason", reason.code().to_string())])
            .inc();
    }
}
