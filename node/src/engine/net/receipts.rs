//! Usage receipts on the wire. Executor side: the receipt of a priced execution run for
//! another node is owed from its end (its reservation held until then) and issued when it
//! leaves: in a batch after its result was taken (`receipts_out.rs`), or at once when it
//! travels with a resent result (`PricedResult`) or at a restart; the requester's answer
//! (ack, held, rejected) is recorded. Requester side: a priced result is taken as any
//! result, then its receipt is checked from this node's own view and booked, held or
//! rejected.

use super::Router;
use super::requester::Arrival;
use crate::engine::error::EngineError;
use crate::ledger::{Booking, IssueInput, LedgerError};
use mesg_protocol::economy::{
    Cost, CumulativeAck, MAX_RECEIPT_BYTES, ReceiptReject, Usage, UsageReceipt,
};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{ReceiptAnswer, RejectCode, WorkResponse};
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus, Hash32, Outcome,
    PublicKey, ServiceHash,
};

/// How long a receipt ahead of its chain waits for the ones before it before it is held
/// (`ledger/turns.rs`): they are normally a few ms behind; a lost one comes back with
/// its executor's redelivery, seconds later, and those after it are held meanwhile.
const RECEIPT_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// What a delivery owes besides its result (`Router::receipt_owed`).
pub(super) enum ReceiptOwed {
    Nothing,
    Issued(Signed<UsageReceipt>),
    ToIssue(Box<IssueInput>),
}

impl Router {
    /// Executor: an execution this node ran ended. Priced, completed and asked for by
    /// another node: its receipt is owed, issued when it leaves (in its requester's next
    /// batch, `receipts_out.rs`, or with a resent result), and its reservation is held
    /// until then. Any other end lets go of what was reserved for it.
    pub(super) fn receipt_ended(&self, e: &Execution) {
        if self.charge_owed(e).is_none() {
            self.books.release(&e.id);
        }
    }

    /// Executor: what a delivery of execution `id`'s result to `node` owes besides the
    /// result: nothing (free, or `node` is not its requester), its receipt issued
    /// before, or one to issue.
    pub(super) fn receipt_owed(&self, id: &ExecutionId, node: &PublicKey) -> ReceiptOwed {
        match self.books.issued(id) {
            Ok(Some(issued)) if issued.requester == *node => {
                return ReceiptOwed::Issued(issued.receipt);
            }
            Ok(Some(_)) => return ReceiptOwed::Nothing,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(execution_id = %id, "ledger: {e}");
                return ReceiptOwed::Nothing;
            }
        }
        match self.store.execution(id) {
            Ok(Some(e)) if e.requester_node == *node => match self.receipt_input(&e) {
                Some(Ok(input)) => ReceiptOwed::ToIssue(Box::new(input)),
                Some(Err(err)) => {
                    tracing::error!(execution_id = %id, "receipt not issued: {err}");
                    ReceiptOwed::Nothing
                }
                None => ReceiptOwed::Nothing,
            },
            _ => ReceiptOwed::Nothing,
        }
    }

    /// Issue one receipt now (a resent result, a refused one, a restart): the one
    /// issued before if any.
    pub(super) fn issue_now(
        &self,
        input: &IssueInput,
    ) -> Result<Signed<UsageReceipt>, EngineError> {
        let mut issued = self.issue_batch(std::slice::from_ref(input))?;
        Ok(issued.remove(0))
    }

    /// Issue receipts in one ledger write (see `Ledger::issue_all`).
    pub(super) fn issue_batch(
        &self,
        inputs: &[IssueInput],
    ) -> Result<Vec<Signed<UsageReceipt>>, EngineError> {
        let issued = self.books.issue_all(inputs)?;
        Ok(issued
            .into_iter()
            .map(|(issued, fresh)| {
                if fresh {
                    self.metrics.micro_credits_earned.inc_by(issued.amount);
                }
                issued.receipt
            })
            .collect())
    }

    /// What the receipt of execution `e` says, if it is owed one: ran here, completed,
    /// charged, asked for by another node.
    fn receipt_input(&self, e: &Execution) -> Option<Result<IssueInput, EngineError>> {
        let cost = self.charge_owed(e)?;
        Some(self.issue_input(e, cost))
    }

    /// The charge of execution `e` if it is owed a receipt.
    fn charge_owed(&self, e: &Execution) -> Option<Cost> {
        let me = self.node();
        match (e.status, e.cost) {
            (ExecutionStatus::Completed, Some(cost))
                if e.requester_node != me && e.executor == Some(me) =>
            {
                Some(cost)
            }
            _ => None,
        }
    }

    fn issue_input(&self, e: &Execution, cost: Cost) -> Result<IssueInput, EngineError> {
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
        Ok(IssueInput {
            execution_id: e.id,
            request_digest,
            result_digest: result.digest(),
            service_hash: e.service_hash,
            task_key: e.task_key.clone(),
            cost,
            requester: e.requester_node,
            publisher: self.publisher_share(&e.service_hash, cost.amount),
        })
    }

    /// The publisher of a service (its sid's claim, else the record's signer) and its
    /// share of `amount`.
    fn publisher_share(&self, service: &ServiceHash, amount: u64) -> Option<(PublicKey, u64)> {
        // No share (the common case): answered from the cache, no record read.
        let economy = self.ledger.service_economy(service).ok().flatten()?;
        let publisher = match self.services.stored_claim(service) {
            Some(c) => c.claim.publisher,
            None => self.store.service(service).ok().flatten()?.record.publisher,
        };
        Some((publisher, economy.publisher_part(amount)))
    }

    /// At start: the reservations of the priced executions still open here for other
    /// nodes are held again (they live in memory: `ledger/reserve.rs`), and results owed
    /// whose priced execution has no receipt yet (the node stopped between the two) get
    /// one.
    pub(super) fn receipt_missing_results(&self) {
        match self.store.unfinished_executions() {
            Ok(open) => {
                let me = self.node();
                let held = open.into_iter().filter_map(|e| {
                    let cap = e.max_price?;
                    let priced = self
                        .ledger
                        .task_price(&e.service_hash, &e.task_key)
                        .ok()
                        .flatten()
                        .is_some_and(|p| !p.is_free());
                    (priced && e.requester_node != me && e.executor == Some(me)).then_some((
                        e.requester_node,
                        e.id,
                        cap,
                    ))
                });
                self.books.restore_reservations(held);
            }
            Err(e) => tracing::error!("open executions unreadable, reservations not restored: {e}"),
        }
        let owed = match self.store.outbox() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("outbox unreadable: {e}");
                return;
            }
        };
        for (id, entry) in owed {
            if let ReceiptOwed::ToIssue(input) = self.receipt_owed(&id, &entry.requester_node)
                && let Err(e) = self.issue_now(&input)
            {
                tracing::error!(execution_id = %id, "receipt not issued: {e}");
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
    ///
    /// A result that ends its execution here has its receipt booked in the end's own
    /// write and flush (`finish_with`): the charge is noted with the end, the booking
    /// runs before the flush, and the answer leaves after it, so what the executor sees
    /// acknowledged is on disk here. A crash before the flush loses the end and the
    /// booking alike (or keeps part of them): the executor sends both again, the end is
    /// then recorded or found, and the receipt booked or recognised by its hash.
    #[tracing::instrument(name = "result_in", skip_all, fields(%peer, execution_id = tracing::field::Empty))]
    pub(super) async fn on_priced_result(
        &self,
        peer: libp2p::PeerId,
        result: Signed<ExecutionResult>,
        receipt: Signed<UsageReceipt>,
    ) -> WorkResponse {
        let claimed = receipt.payload_unverified(MAX_RECEIPT_BYTES).ok();
        let executor = claimed.as_ref().map(|r| r.executor);
        let (booking, latest) = match self.result_arrival(peer, &result).await {
            Arrival::End {
                id,
                outcome,
                request,
                result: taken,
            } => {
                let charged = claimed
                    .as_ref()
                    .filter(|r| r.execution_id == id)
                    .map(|r| Cost {
                        usage: r.usage,
                        price: r.price,
                        max_price: request
                            .as_ref()
                            .and_then(|q| q.payload_unverified(MAX_WORK_MESSAGE).ok())
                            .and_then(|q| q.max_price),
                        amount: r.amount,
                    });
                // Out of order (results travel concurrently): its predecessors first.
                if let Some(r) = claimed.as_ref().filter(|r| r.execution_id == id) {
                    self.books
                        .wait_turn(&r.executor, r.sequence, RECEIPT_PATIENCE)
                        .await;
                }
                let known_result = (result.digest(), usage_of(&taken));
                let mut booked = None;
                let (ended, durable) = self
                    .ledger
                    .finish_with(&id, outcome, Some(result), charged, |e| {
                        let booking = match &claimed {
                            Some(r) if r.execution_id == id => self.book_known(
                                &receipt,
                                r,
                                Known {
                                    request,
                                    execution: Some(e.clone()),
                                    result: Some(known_result),
                                },
                            ),
                            // For another execution: checked against that one's records.
                            Some(_) => self.book_receipt(&receipt),
                            None => Ok(self.undecodable()),
                        };
                        if charged.is_some() && !matches!(booking, Ok(Booking::Acked { .. })) {
                            // Not booked: the execution shows no charge.
                            let cleared = self.store.update_execution(&id, &mut |e| {
                                e.cost = None;
                                Ok(())
                            });
                            if let Err(e) = cleared {
                                tracing::warn!(execution_id = %id, "charge not cleared: {e}");
                            }
                        }
                        // Read before the flush, so the ack sent is covered by it.
                        booked = Some((booking, self.held_then_latest(executor)));
                    })
                    .await;
                if ended.is_some() && !durable {
                    return super::reject(
                        RejectCode::Internal,
                        "the result and its receipt were not persisted",
                    );
                }
                match booked {
                    Some(done) if ended.is_some() => done,
                    _ => match self.answer_end(&id, ended.is_some()) {
                        WorkResponse::Accepted => {
                            match self
                                .book_and_persist(self.book_receipt(&receipt), executor)
                                .await
                            {
                                Ok(done) => done,
                                Err(refused) => return refused,
                            }
                        }
                        other => return other,
                    },
                }
            }
            Arrival::Answer(WorkResponse::Accepted) => {
                match self
                    .book_and_persist(self.book_receipt(&receipt), executor)
                    .await
                {
                    Ok(done) => done,
                    Err(refused) => return refused,
                }
            }
            Arrival::Answer(WorkResponse::Rejected(r)) if !r.code.is_retriable() => {
                let reason =
                    ReceiptReject::Unsolicited(format!("its result was refused: {}", r.message));
                self.count_rejected(&reason);
                let booking = self
                    .books
                    .reject_receipt(&receipt, &reason)
                    .map_err(EngineError::from);
                match self.book_and_persist(booking, executor).await {
                    Ok(done) => done,
                    Err(refused) => return refused,
                }
            }
            Arrival::Answer(other) => return other,
        };
        let booking = match booking {
            Ok(b) => b,
            Err(e) => {
                return super::reject(RejectCode::Internal, format!("receipt not booked: {e}"));
            }
        };
        WorkResponse::Receipt(answer_of(booking, latest))
    }

    /// A booking made outside an end's flush: the receipts held behind it follow, the
    /// pair's latest ack is read, then everything is flushed before the answer leaves.
    pub(super) async fn book_and_persist(
        &self,
        booking: Result<Booking, EngineError>,
        executor: Option<PublicKey>,
    ) -> Result<(Result<Booking, EngineError>, Option<Signed<CumulativeAck>>), WorkResponse> {
        let latest = self.held_then_latest(executor);
        if let Err(e) = self.store.persist().await {
            return Err(super::reject(
                RejectCode::Internal,
                format!("receipt not persisted: {e}"),
            ));
        }
        Ok((booking, latest))
    }

    /// Receipts held behind the one just answered are booked in turn; then the pair's
    /// latest acknowledgement.
    pub(super) fn held_then_latest(
        &self,
        executor: Option<PublicKey>,
    ) -> Option<Signed<CumulativeAck>> {
        let executor = executor?;
        self.book_held(&executor);
        self.books.latest_ack_to(&executor).ok().flatten()
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

    /// A receipt that does not decode: rejected, booked nowhere.
    pub(super) fn undecodable(&self) -> Booking {
        let reason = ReceiptReject::BadSignature("the receipt does not decode".into());
        self.count_rejected(&reason);
        Booking::Rejected {
            reason,
            latest: None,
        }
    }

    pub(super) fn count_rejected(&self, reason: &ReceiptReject) {
        self.metrics
            .receipts_rejected
            .get_or_create(&[("reason", reason.code().to_string())])
            .inc();
    }
}

/// The answer to a receipt from what became of it, with the pair's latest
/// acknowledgement when there is one.
pub(super) fn answer_of(booking: Booking, latest: Option<Signed<CumulativeAck>>) -> ReceiptAnswer {
    match booking {
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
    }
}

/// What the requester knows of the execution a receipt is for.
pub(super) struct Known {
    /// The request as this node signed and stored it.
    pub(super) request: Option<Signed<ExecutionRequest>>,
    pub(super) execution: Option<Execution>,
    /// The digest of the result taken, and the usage it shows.
    pub(super) result: Option<(Hash32, Usage)>,
}

/// The usage a result shows: the run time it reports and the size of its outputs (a
/// failed one, none).
pub(super) fn usage_of(result: &ExecutionResult) -> Usage {
    match &result.outcome {
        Outcome::Completed { outputs } => Usage::of_call(
            result
                .finished_at
                .saturating_sub(result.started_at.unwrap_or(result.finished_at)),
            outputs,
        ),
        Outcome::Failed { .. } => Usage::default(),
    }
}
