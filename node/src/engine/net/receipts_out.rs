//! Executor side: receipts issued and sent apart from their results, in batches per
//! requester node.
//!
//! Why: a receipt may leave only once it is on this node's disk (were it booked by the
//! requester and lost here in a crash, the next receipt would reuse its sequence number
//! and the pair's chain would never agree again), while a result may leave before the
//! end's flush. Sent together, every priced result waited for that flush, which the
//! round trip paid. So a priced result's first delivery sends the result at once, as a
//! free one, and its receipt follows once the requester took the result
//! (`WorkRequest::Receipts`). It is issued then, with the pair's other receipts owed,
//! in one ledger write (one log signature, one write of the pair's chain and account
//! for the batch, not one per execution: issuing each at its end was most of what
//! prices cost the executor under load). Until then its execution's reservation holds.
//! Under load the receipts of a pair queue up while one batch is on its way, and the
//! next message carries all of them: the requester books them with one flush and
//! answers with one acknowledgement, and this node records the answers in one write
//! with one check of that acknowledgement.
//!
//! Each batch is made durable (one flush) before it leaves, rather than each receipt
//! with its result's first delivery: under load that was a flush more per execution.
//!
//! One batch per requester node at a time, in chain order: a receipt whose predecessor
//! is not sent yet waits [`GAP_PATIENCE`] for it (the requester would hold it, and a
//! held receipt costs both nodes more writes). Nothing here is durable: the outbox
//! entry of the result stays until its receipt is answered, and a failure sends the
//! result and its receipt again together (`PricedResult`), as after a restart.

use super::Router;
use super::receipts::ReceiptOwed;
use crate::ledger::IssueInput;
use mesg_protocol::economy::{MAX_RECEIPT_BYTES, UsageReceipt};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{MAX_RECEIPTS_PER_MESSAGE, WorkRequest, WorkResponse};
use mesg_protocol::{ExecutionId, PublicKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the receipts queued for a node wait for a missing predecessor before they
/// go without it (it may be on its way with its result after a failed first delivery).
const GAP_PATIENCE: Duration = Duration::from_millis(30);

/// How long a pair's receipts gather before each batch leaves. Nobody waits for a
/// receipt (its result went before it), and each batch costs both nodes a message, a
/// flush and a ledger write whatever its size: without this pause a batch left as soon
/// as the one before it was answered, carrying only what arrived during one round trip;
/// with it a batch carries what arrived meanwhile (28 to 31 receipts per batch measured
/// at ~360 executions/s, `mesg-bench --only prices`).
const RECEIPT_LINGER: Duration = Duration::from_millis(20);

/// Receipts waiting to be sent, per requester node.
#[derive(Default)]
pub(super) struct ReceiptsOut {
    pairs: Mutex<HashMap<PublicKey, PairQueue>>,
}

#[derive(Default)]
struct PairQueue {
    /// By sequence number.
    waiting: BTreeMap<u64, Waiting>,
    /// Receipts owed and not issued yet: issued together just before the next batch
    /// leaves (one ledger write for all), then waiting like the others.
    fresh: Vec<Fresh>,
    /// A task is sending this pair's batches.
    sending: bool,
    /// The highest sequence number sent so far.
    sent: Option<u64>,
}

struct Waiting {
    id: ExecutionId,
    receipt: Signed<UsageReceipt>,
    /// Told whether the requester answered (the answer is recorded by then).
    answered: oneshot::Sender<bool>,
}

/// A receipt owed, to be issued with the pair's next batch.
struct Fresh {
    input: IssueInput,
    answered: oneshot::Sender<bool>,
}

/// What the sending task takes from a pair's queue.
enum Take {
    Batch(Vec<Waiting>),
    /// The next receipt's predecessor is not queued yet.
    Gap,
    /// Only receipts to issue are queued.
    Fresh,
    Done,
}

impl ReceiptsOut {
    fn push(&self, node: PublicKey, sequence: u64, w: Waiting) -> bool {
        let mut pairs = self.pairs.lock().expect("receipts lock");
        let q = pairs.entry(node).or_default();
        if let Some(old) = q.waiting.insert(sequence, w) {
            // The same receipt twice (a redelivery raced the first): the older waiter
            // learns nothing here and tries again later.
            let _ = old.answered.send(false);
        }
        !std::mem::replace(&mut q.sending, true)
    }

    /// Queue a receipt to issue; true when no task sends this pair's batches yet.
    fn push_fresh(&self, node: PublicKey, f: Fresh) -> bool {
        let mut pairs = self.pairs.lock().expect("receipts lock");
        let q = pairs.entry(node).or_default();
        q.fresh.push(f);
        !std::mem::replace(&mut q.sending, true)
    }

    /// The pair's receipts to issue, taken out of the queue.
    fn take_fresh(&self, node: &PublicKey) -> Vec<Fresh> {
        let mut pairs = self.pairs.lock().expect("receipts lock");
        pairs
            .get_mut(node)
            .map(|q| std::mem::take(&mut q.fresh))
            .unwrap_or_default()
    }

    /// A full batch of `node`'s receipts is waiting: it need not gather more.
    fn full(&self, node: &PublicKey) -> bool {
        let pairs = self.pairs.lock().expect("receipts lock");
        pairs
            .get(node)
            .is_some_and(|q| q.waiting.len() + q.fresh.len() >= MAX_RECEIPTS_PER_MESSAGE)
    }

    fn take(&self, node: &PublicKey, patient: bool) -> Take {
        let mut pairs = self.pairs.lock().expect("receipts lock");
        let Some(q) = pairs.get_mut(node) else {
            return Take::Done;
        };
        let Some(first) = q.waiting.keys().next().copied() else {
            if !q.fresh.is_empty() {
                return Take::Fresh;
            }
            pairs.remove(node);
            return Take::Done;
        };
        if patient && q.sent.is_some_and(|s| first > s + 1) {
            return Take::Gap;
        }
        let mut batch = Vec::new();
        while batch.len() < MAX_RECEIPTS_PER_MESSAGE {
            // In order: stop at a gap (its predecessor gets its patience next round).
            let Some(next) = q.waiting.keys().next().copied() else {
                break;
            };
            if !batch.is_empty() && q.sent.is_some_and(|s| next > s + 1) {
                break;
            }
            let w = q.waiting.remove(&next).expect("key just read");
            q.sent = Some(q.sent.map_or(next, |s| s.max(next)));
            batch.push(w);
        }
        Take::Batch(batch)
    }
}

impl Router {
    /// Send the receipt of execution `id` to `node` (which took its result), batched with
    /// the pair's other receipts (issued first if it was not yet); true once the answer
    /// is recorded.
    pub(super) async fn send_receipt(
        &self,
        node: PublicKey,
        id: ExecutionId,
        owed: ReceiptOwed,
    ) -> bool {
        let (answered, told) = oneshot::channel();
        let start = match owed {
            ReceiptOwed::Nothing => return true,
            ReceiptOwed::ToIssue(input) => self.receipts_out.push_fresh(
                node,
                Fresh {
                    input: *input,
                    answered,
                },
            ),
            ReceiptOwed::Issued(receipt) => {
                let Ok(sequence) = receipt
                    .payload_unverified(MAX_RECEIPT_BYTES)
                    .map(|r| r.sequence)
                else {
                    return false;
                };
                let waiting = Waiting {
                    id,
                    receipt,
                    answered,
                };
                self.receipts_out.push(node, sequence, waiting)
            }
        };
        if start {
            self.send_receipt_batches(node).await;
        }
        told.await.unwrap_or(false)
    }

    /// Issue the pair's receipts owed, in one ledger write, and queue them by sequence
    /// number. Not issued (a ledger error, logged): their deliveries try again later.
    fn issue_fresh(&self, node: &PublicKey) {
        let fresh = self.receipts_out.take_fresh(node);
        if fresh.is_empty() {
            return;
        }
        let inputs: Vec<IssueInput> = fresh.iter().map(|f| f.input.clone()).collect();
        let issued = match self.issue_batch(&inputs) {
            Ok(issued) => issued,
            Err(e) => {
                tracing::error!(requester = %node, "receipts not issued: {e}");
                for f in fresh {
                    let _ = f.answered.send(false);
                }
                return;
            }
        };
        for (f, receipt) in fresh.into_iter().zip(issued) {
            let Ok(sequence) = receipt
                .payload_unverified(MAX_RECEIPT_BYTES)
                .map(|r| r.sequence)
            else {
                let _ = f.answered.send(false);
                continue;
            };
            let waiting = Waiting {
                id: f.input.execution_id,
                receipt,
                answered: f.answered,
            };
            // This task sends the pair's batches already.
            self.receipts_out.push(*node, sequence, waiting);
        }
    }

    /// Send the pair's queued receipts, batch after batch, until none is left.
    async fn send_receipt_batches(&self, node: PublicKey) {
        let mut patient = true;
        loop {
            if patient && !self.receipts_out.full(&node) {
                tokio::time::sleep(RECEIPT_LINGER).await;
            }
            self.issue_fresh(&node);
            let batch = match self.receipts_out.take(&node, patient) {
                Take::Done => return,
                // Queued while this batch's were issued: issued next round.
                Take::Fresh => continue,
                Take::Gap => {
                    patient = false;
                    tokio::time::sleep(GAP_PATIENCE).await;
                    continue;
                }
                Take::Batch(b) => b,
            };
            patient = true;
            let answered = self.send_batch(&node, &batch).await;
            for w in batch {
                let _ = w.answered.send(answered);
            }
        }
    }

    /// One batch: sent, and its answers recorded. False when it was not answered.
    async fn send_batch(&self, node: &PublicKey, batch: &[Waiting]) -> bool {
        let (Some(net), Ok(peer)) = (self.network().cloned(), node.peer_id()) else {
            return false;
        };
        // A receipt leaves only once it is on disk here (see the module's doc): one
        // flush for the batch, which makes the batch's issuing durable; the flusher
        // shares a flush among everyone waiting.
        if let Err(e) = self.store.persist().await {
            tracing::error!(requester = %node, "receipts not persisted, not sent: {e}");
            return false;
        }
        let receipts = batch.iter().map(|w| w.receipt.clone()).collect();
        self.metrics.receipt_batches_sent.inc();
        self.metrics.receipts_sent.inc_by(batch.len() as u64);
        match net.send_work(peer, WorkRequest::Receipts(receipts)).await {
            Ok(WorkResponse::Receipts(answers)) if answers.len() == batch.len() => {
                let answers: Vec<_> = batch.iter().map(|w| w.id).zip(answers).collect();
                if let Err(e) = self.books.record_answers(&answers) {
                    tracing::warn!(requester = %node, "receipt answers not recorded: {e}");
                }
                true
            }
            other => {
                tracing::debug!(requester = %node, "receipts not delivered: {other:?}");
                false
            }
        }
    }
}
