//! Requester side: checking and booking receipts from this node's own records, one at a
//! time (a receipt that arrived with a resent result, a held one whose turn came) or in
//! a batch (`WorkRequest::Receipts`: receipts that follow results this node already
//! took, `receipts_out.rs` says why). A batch is one ledger write (one log signature,
//! one acknowledgement per pair) and one flush.

use super::Router;
use super::receipts::{Known, answer_of, usage_of};
use crate::engine::error::EngineError;
use crate::ledger::{Booking, Check};
use mesg_protocol::economy::{
    MAX_RECEIPT_BYTES, Price, ReceiptReject, RequesterView, Usage, UsageReceipt, check_receipt,
};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{MAX_RECEIPTS_PER_MESSAGE, RejectCode, WorkResponse};
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{ExecutionRequest, Hash32, PublicKey, now_ms};

/// One receipt with what this node knows of its execution, ready to be checked.
struct Prepared<'a> {
    signed: &'a Signed<UsageReceipt>,
    receipt: UsageReceipt,
    request: Option<ExecutionRequest>,
    request_digest: Hash32,
    executor: Option<PublicKey>,
    result_digest: Hash32,
    price: Option<Price>,
    usage: Usage,
}

impl Router {
    /// Requester: receipts of executions whose results this node took before. Each is
    /// checked from this node's own records and booked, held or rejected as a receipt
    /// arriving with a resent result would be, all in one ledger write (the charge is read
    /// from the booked receipt by the execution's views, not written on it); then the receipts held behind them follow, the
    /// pair's latest acknowledgement is read, and one flush makes it all durable before
    /// the answer leaves. A receipt signed by another node than the sender is answered
    /// rejected and booked nowhere: only an executor delivers its own receipts.
    pub(super) async fn on_receipts(
        &self,
        peer: libp2p::PeerId,
        receipts: Vec<Signed<UsageReceipt>>,
    ) -> WorkResponse {
        if receipts.is_empty() || receipts.len() > MAX_RECEIPTS_PER_MESSAGE {
            return super::reject(
                RejectCode::Malformed,
                format!(
                    "{} receipts in one message: 1 to {MAX_RECEIPTS_PER_MESSAGE}",
                    receipts.len()
                ),
            );
        }
        let Some(sender) = PublicKey::from_peer_id(&peer) else {
            return super::reject(RejectCode::WrongNode, "the sender has no node key");
        };
        // Each receipt's answer: final now (refused before booking), or the booking of
        // the next prepared one.
        let mut answers: Vec<Option<Booking>> = Vec::with_capacity(receipts.len());
        let mut batch = Vec::new();
        for signed in &receipts {
            let Ok(r) = signed.payload_unverified(MAX_RECEIPT_BYTES) else {
                answers.push(Some(self.undecodable()));
                continue;
            };
            if r.executor != sender || signed.signer() != sender {
                let reason = ReceiptReject::WrongSigner {
                    signer: signed.signer(),
                    expected: sender,
                };
                self.count_rejected(&reason);
                answers.push(Some(Booking::Rejected {
                    reason,
                    latest: None,
                }));
                continue;
            }
            match self
                .known_of(&r)
                .and_then(|known| self.prepare(signed, r, known))
            {
                Ok(p) => batch.push(p),
                Err(e) => return super::reject(RejectCode::Internal, format!("receipts: {e}")),
            }
            answers.push(None);
        }
        let booked = match self.book_prepared(&batch) {
            Ok(b) => b,
            Err(e) => {
                return super::reject(RejectCode::Internal, format!("receipts not booked: {e}"));
            }
        };
        let mut booked = booked.into_iter();
        let latest = self.held_then_latest(Some(sender));
        if let Err(e) = self.store.persist().await {
            return super::reject(RejectCode::Internal, format!("receipts not persisted: {e}"));
        }
        WorkResponse::Receipts(
            answers
                .into_iter()
                .filter_map(|a| a.or_else(|| booked.next()))
                .map(|b| answer_of(b, latest.clone()))
                .collect(),
        )
    }

    /// Check a receipt of an execution that ended earlier, from this node's own records,
    /// and book it (or hold or reject it). The charge is not written on the execution: its
    /// views read it from the booked receipt (`Engine::with_booked_cost`).
    pub(super) fn book_receipt(
        &self,
        signed: &Signed<UsageReceipt>,
    ) -> Result<Booking, EngineError> {
        let Ok(r) = signed.payload_unverified(MAX_RECEIPT_BYTES) else {
            return Ok(self.undecodable());
        };
        let p = self.prepare(signed, r.clone(), self.known_of(&r)?)?;
        Ok(self.book_prepared(std::slice::from_ref(&p))?.remove(0))
    }

    /// Check receipt `r` (`signed`) from what this node knows of its execution, and book
    /// it (or hold or reject it).
    pub(super) fn book_known(
        &self,
        signed: &Signed<UsageReceipt>,
        r: &UsageReceipt,
        known: Known,
    ) -> Result<Booking, EngineError> {
        let p = self.prepare(signed, r.clone(), known)?;
        Ok(self.book_prepared(std::slice::from_ref(&p))?.remove(0))
    }

    /// What this node's store holds of a receipt's execution.
    fn known_of(&self, r: &UsageReceipt) -> Result<Known, EngineError> {
        let id = r.execution_id;
        let result = self.store.result(&id)?.map(|s| {
            let usage = s
                .payload_unverified(MAX_WORK_MESSAGE)
                .map(|res| usage_of(&res))
                .unwrap_or_default();
            (s.digest(), usage)
        });
        Ok(Known {
            request: self.store.request(&id)?,
            execution: self.store.execution(&id)?,
            result,
        })
    }

    fn prepare<'a>(
        &self,
        signed: &'a Signed<UsageReceipt>,
        receipt: UsageReceipt,
        known: Known,
    ) -> Result<Prepared<'a>, EngineError> {
        let price = match &known.execution {
            Some(e) => self.ledger.task_price(&e.service_hash, &e.task_key)?,
            None => None,
        };
        let (result_digest, usage) = known.result.unwrap_or_default();
        Ok(Prepared {
            signed,
            receipt,
            request: known
                .request
                .as_ref()
                .and_then(|s| s.payload_unverified(MAX_WORK_MESSAGE).ok()),
            request_digest: known.request.map(|s| s.digest()).unwrap_or_default(),
            executor: known.execution.as_ref().and_then(|e| e.executor),
            result_digest,
            price,
            usage,
        })
    }

    /// Check and book prepared receipts, in one ledger write.
    fn book_prepared(&self, batch: &[Prepared<'_>]) -> Result<Vec<Booking>, EngineError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.node();
        let now = now_ms();
        // A batch's signatures are checked together (about half the cost of checking
        // each: the largest part of what a receipt costs this node); when that fails,
        // each is checked apart and the bad ones are rejected with their reason.
        let signed: Vec<&Signed<UsageReceipt>> = batch.iter().map(|p| p.signed).collect();
        let signature_checked = batch.len() > 1 && Signed::signatures_hold(&signed);
        let checks: Vec<_> = batch
            .iter()
            .map(|p| {
                move |last, already_booked| {
                    check_receipt(
                        p.signed,
                        &RequesterView {
                            me,
                            last,
                            request: p.request.as_ref(),
                            request_digest: p.request_digest,
                            executor: p.executor,
                            result_digest: p.result_digest,
                            price: p.price,
                            usage: p.usage,
                            already_booked,
                            signature_checked,
                        },
                        now,
                    )
                }
            })
            .collect();
        let items: Vec<(&Signed<UsageReceipt>, Check<'_>)> = batch
            .iter()
            .zip(&checks)
            .map(|(p, c)| (p.signed, c as Check<'_>))
            .collect();
        let bookings = self.books.book_all(&items)?;
        for (p, booking) in batch.iter().zip(&bookings) {
            match booking {
                Booking::Acked { fresh: true, .. } => {
                    self.metrics.micro_credits_spent.inc_by(p.receipt.amount);
                }
                Booking::Rejected { reason, .. } => self.count_rejected(reason),
                _ => {}
            }
        }
        Ok(bookings)
    }
}
