//! The executor's side of the ledger: issue the receipt of a priced execution (once per
//! execution; its reservation, `reserve.rs`, is let go then), and record what the
//! requester answered.

use super::records::{IssuedReceipt, ReceiptStatus, key};
use super::{
    EntryKind, Ledger, LedgerError, Staged, TxResult, abort, add, read_account, shift, tx_enc,
    tx_get, write_account,
};
use mesg_protocol::economy::{Cost, CumulativeAck, MAX_RECEIPT_BYTES, PairState, UsageReceipt};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::ReceiptAnswer;
use mesg_protocol::types::domains;
use mesg_protocol::{ExecutionId, Hash32, PublicKey, ServiceHash, now_ms};

/// How long a receipt's signature is valid: as long as a result's.
const RECEIPT_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// What the executor knows of a completed priced execution, to receipt it.
#[derive(Debug, Clone)]
pub struct IssueInput {
    pub execution_id: ExecutionId,
    pub request_digest: Hash32,
    pub result_digest: Hash32,
    pub service_hash: ServiceHash,
    pub task_key: String,
    pub cost: Cost,
    pub requester: PublicKey,
    /// The service's publisher and its share of the amount (µc), if any.
    pub publisher: Option<(PublicKey, u64)>,
}

impl Ledger {
    /// The receipt of a completed priced execution: issued now (next in the pair's
    /// chain, the requester debited, the publisher credited its share, the reservation
    /// released, logged), or the one issued before (never two for one execution).
    /// The flag says whether it was issued by this call.
    pub fn issue(&self, input: &IssueInput) -> Result<(IssuedReceipt, bool), LedgerError> {
        let mut all = self.issue_all(std::slice::from_ref(input))?;
        Ok(all.remove(0))
    }

    /// Issue the receipts of several executions (each as [`Ledger::issue`] would, in the
    /// order given) in one write: one log signature and one write of the pair's state
    /// and account for all, instead of one each (`receipts_out.rs` issues a requester's
    /// receipts as a batch just before they leave).
    pub fn issue_all(
        &self,
        inputs: &[IssueInput],
    ) -> Result<Vec<(IssuedReceipt, bool)>, LedgerError> {
        if inputs.iter().any(|i| i.requester == self.node()) {
            return Err(LedgerError::Invalid(
                "an execution this node requested itself is not receipted".into(),
            ));
        }
        let issued = self.transact(|t| inputs.iter().map(|i| self.issue_in(t, i)).collect())?;
        // Let go only once the debit is written: never a moment where the execution is
        // counted neither as owed nor as reserved (`reserve.rs`).
        for input in inputs {
            self.release(&input.execution_id);
        }
        Ok(issued)
    }

    /// One receipt, inside a ledger write.
    fn issue_in(&self, t: &Staged, input: &IssueInput) -> TxResult<(IssuedReceipt, bool)> {
        let rk = key::execution(key::ISSUED, &input.execution_id);
        if let Some(mut done) = tx_get::<IssuedReceipt>(t, &rk)? {
            let sk = key::execution(key::ISSUED_STATUS, &input.execution_id);
            let acked = read_account(t, &done.requester)?.ack_sequence;
            done.status = status_of(tx_get(t, &sk)?, done.sequence, acked);
            return Ok((done, false));
        }
        let pk = key::peer(key::ISSUED_PAIR, &input.requester);
        let last: Option<PairState> = tx_get(t, &pk)?;
        let (sequence, prev, before) = match last {
            Some(s) => (s.sequence + 1, s.hash, s.cumulative),
            None => (1, Hash32::default(), 0),
        };
        let amount = input.cost.amount;
        let receipt = UsageReceipt {
            execution_id: input.execution_id,
            request_digest: input.request_digest,
            result_digest: input.result_digest,
            service_hash: input.service_hash,
            task_key: input.task_key.clone(),
            usage: input.cost.usage,
            price: input.cost.price,
            amount,
            sequence,
            prev,
            cumulative: add(before, amount).or_else(abort)?,
            executor: self.node(),
            requester: input.requester,
        };
        let signed = Signed::sign(
            &self.key,
            domains::RECEIPT,
            &receipt,
            now_ms(),
            RECEIPT_TTL_MS,
            MAX_RECEIPT_BYTES,
        )
        .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        t.insert(&pk[..], tx_enc(&receipt.state())?)?;
        let issued = IssuedReceipt {
            receipt: signed,
            requester: input.requester,
            amount,
            sequence,
            status: ReceiptStatus::Issued,
        };
        t.insert(&rk[..], tx_enc(&issued)?)?;
        let mut account = read_account(t, &input.requester)?;
        account.balance = shift(account.balance, amount.into()).or_else(abort)?;
        account.issued = add(account.issued, amount).or_else(abort)?;
        account.last_receipt = Some(ReceiptStatus::Issued.label());
        write_account(t, &input.requester, &account)?;
        self.append(
            t,
            EntryKind::Debit,
            input.requester,
            Some(input.execution_id),
            amount,
            format!("receipt {sequence}"),
        )?;
        if let Some((publisher, share)) = input.publisher
            && share > 0
            && publisher != self.node()
        {
            let mut p = read_account(t, &publisher)?;
            p.balance = shift(p.balance, -i128::from(share)).or_else(abort)?;
            p.shares = add(p.shares, share).or_else(abort)?;
            write_account(t, &publisher, &p)?;
            self.append(
                t,
                EntryKind::Credit,
                publisher,
                Some(input.execution_id),
                share,
                "publisher share".into(),
            )?;
        }
        Ok((issued, true))
    }

    /// The receipt issued for an execution, if any, with what became of it.
    pub fn issued(&self, id: &ExecutionId) -> Result<Option<IssuedReceipt>, LedgerError> {
        let Some(v) = self.tree.get(key::execution(key::ISSUED, id))? else {
            return Ok(None);
        };
        let mut issued: IssuedReceipt = super::dec(&v)?;
        let stored = match self.tree.get(key::execution(key::ISSUED_STATUS, id))? {
            Some(status) => Some(super::dec(&status)?),
            None => None,
        };
        let acked = self.stored_account(&issued.requester)?.ack_sequence;
        issued.status = status_of(stored, issued.sequence, acked);
        Ok(Some(issued))
    }

    /// Record the requester's answer to the receipt of execution `id`: its
    /// acknowledgement (verified, see [`Ledger::apply_ack_in`]), and the receipt held or
    /// rejected (logged with the reason, shown on the account).
    pub fn record_answer(
        &self,
        id: &ExecutionId,
        answer: &ReceiptAnswer,
    ) -> Result<(), LedgerError> {
        if self.issued(id)?.is_none() {
            return Err(LedgerError::Invalid(format!("no receipt issued for {id}")));
        }
        self.record_answers(&[(*id, answer.clone())])
    }

    /// Record the answers to a batch of receipts (`record_answer` for each) in one
    /// write. The acknowledgements they carry are verified once each (a batch's answers
    /// carry the same one); an answer to a receipt not issued here, or whose
    /// acknowledgement does not verify, fails the whole batch (nothing recorded).
    pub fn record_answers(
        &self,
        answers: &[(ExecutionId, ReceiptAnswer)],
    ) -> Result<(), LedgerError> {
        let mut checked: Vec<(Hash32, CumulativeAck)> = Vec::new();
        let mut acks = Vec::with_capacity(answers.len());
        for (_, answer) in answers {
            let latest = match answer {
                ReceiptAnswer::Acked { ack } => Some(ack),
                ReceiptAnswer::Held { latest } | ReceiptAnswer::Rejected { latest, .. } => {
                    latest.as_ref()
                }
            };
            let Some(signed) = latest else {
                acks.push(None);
                continue;
            };
            let digest = signed.digest();
            let ack = match checked.iter().find(|(d, _)| *d == digest) {
                Some((_, ack)) => ack.clone(),
                None => {
                    let ack = self.check_ack_to_me(signed)?;
                    checked.push((digest, ack.clone()));
                    ack
                }
            };
            acks.push(Some((ack, signed)));
        }
        self.transact(|t| {
            for ((id, answer), ack) in answers.iter().zip(&acks) {
                self.record_answer_in(t, id, answer, ack.as_ref().map(|(a, s)| (a, *s)))?;
            }
            Ok(())
        })
    }

    fn record_answer_in(
        &self,
        t: &Staged,
        id: &ExecutionId,
        answer: &ReceiptAnswer,
        ack: Option<(&CumulativeAck, &Signed<CumulativeAck>)>,
    ) -> TxResult<()> {
        let Some(mut rec) = tx_get::<IssuedReceipt>(t, &key::execution(key::ISSUED, id))? else {
            return abort(LedgerError::Invalid(format!("no receipt issued for {id}")));
        };
        // Its status is kept apart, so an answer rewrites a few bytes, not the receipt;
        // and only when it is held or rejected (`status_of`).
        let sk = key::execution(key::ISSUED_STATUS, id);
        let stored: Option<ReceiptStatus> = tx_get(t, &sk)?;
        if let Some(status) = &stored {
            rec.status = status.clone();
        }
        let peer = rec.requester;
        if let Some((ack, signed)) = ack {
            if ack.pair.requester != peer {
                return abort(LedgerError::Invalid(
                    "acknowledgement of another pair of nodes".into(),
                ));
            }
            self.apply_ack_in(t, ack, signed)?;
        }
        let mut account = read_account(t, &peer)?;
        match answer {
            ReceiptAnswer::Acked { .. } => rec.status = ReceiptStatus::Accepted,
            ReceiptAnswer::Held { .. } if rec.status == ReceiptStatus::Issued => {
                rec.status = ReceiptStatus::Held;
            }
            ReceiptAnswer::Rejected { code, reason, .. }
                if !matches!(rec.status, ReceiptStatus::Rejected { .. }) =>
            {
                rec.status = ReceiptStatus::Rejected {
                    code: code.clone(),
                    reason: reason.clone(),
                };
                account.rejected += 1;
                self.append(
                    t,
                    EntryKind::Reject,
                    peer,
                    Some(*id),
                    rec.amount,
                    format!("{code}: {reason}"),
                )?;
            }
            _ => {}
        }
        account.last_receipt = Some(rec.status.label());
        write_account(t, &peer, &account)?;
        match &rec.status {
            // Accepted: the acknowledgement covers it (read back by `status_of`); a held
            // status stored before is dropped.
            ReceiptStatus::Accepted if stored.is_some() => t.remove(&sk[..])?,
            ReceiptStatus::Accepted | ReceiptStatus::Issued => {}
            status if stored.as_ref() != Some(status) => t.insert(&sk[..], tx_enc(status)?)?,
            _ => {}
        }
        Ok(())
    }

    /// Apply a verified acknowledgement of a requester node, inside a ledger write: only a
    /// later one counts; what it owes (`cumulative − rejected`) and what it rejected only
    /// grow, never past what this node issued; the rejected part leaves the balance.
    pub(crate) fn apply_ack_in(
        &self,
        t: &Staged,
        ack: &CumulativeAck,
        signed: &Signed<CumulativeAck>,
    ) -> TxResult<()> {
        let peer = ack.pair.requester;
        let mut account = read_account(t, &peer)?;
        if ack.sequence <= account.ack_sequence {
            return Ok(());
        }
        let issued: Option<PairState> = tx_get(t, &key::peer(key::ISSUED_PAIR, &peer))?;
        if issued.is_none_or(|s| ack.sequence > s.sequence || ack.cumulative > s.cumulative) {
            return abort(LedgerError::Invalid(
                "the acknowledgement is beyond what this node issued".into(),
            ));
        }
        let owed = ack.owed();
        if owed < account.acked || ack.rejected < account.voided {
            return abort(LedgerError::Invalid(
                "the acknowledgement takes back what an earlier one acknowledged".into(),
            ));
        }
        let (acked, voided) = (owed - account.acked, ack.rejected - account.voided);
        account.acked = owed;
        account.voided = ack.rejected;
        account.ack_sequence = ack.sequence;
        account.balance = shift(account.balance, -i128::from(voided)).or_else(abort)?;
        write_account(t, &peer, &account)?;
        t.insert(&key::peer(key::ACK, &peer)[..], tx_enc(signed)?)?;
        if acked > 0 {
            self.append(
                t,
                EntryKind::Accept,
                peer,
                None,
                acked,
                format!("acknowledged up to receipt {}", ack.sequence),
            )?;
        }
        if voided > 0 {
            self.append(
                t,
                EntryKind::Reject,
                peer,
                None,
                voided,
                format!(
                    "voided: the peer rejected {} µc of receipts in total",
                    ack.rejected
                ),
            )?;
        }
        Ok(())
    }

    /// The latest acknowledgement received from a requester node.
    pub fn latest_ack_from(
        &self,
        requester: &PublicKey,
    ) -> Result<Option<Signed<CumulativeAck>>, LedgerError> {
        match self.tree.get(key::peer(key::ACK, requester))? {
            Some(v) => Ok(Some(super::dec(&v)?)),
            None => Ok(None),
        }
    }

    /// Verify an acknowledgement: signed by `requester` for the pair (this node, it).
    pub(crate) fn check_ack(
        &self,
        signed: &Signed<CumulativeAck>,
        requester: &PublicKey,
    ) -> Result<CumulativeAck, LedgerError> {
        let ack = self.check_ack_to_me(signed)?;
        if ack.pair.requester != *requester {
            return Err(LedgerError::Invalid(
                "acknowledgement of another pair of nodes".into(),
            ));
        }
        Ok(ack)
    }

    /// Verify an acknowledgement signed by its requester, for a pair whose executor is
    /// this node (the caller checks the requester).
    fn check_ack_to_me(
        &self,
        signed: &Signed<CumulativeAck>,
    ) -> Result<CumulativeAck, LedgerError> {
        let ack = signed
            .verify(domains::CUMULATIVE_ACK, now_ms(), MAX_RECEIPT_BYTES)
            .map_err(|e| LedgerError::Invalid(format!("acknowledgement: {e}")))?;
        if ack.pair.executor != self.node() {
            return Err(LedgerError::Invalid(
                "acknowledgement of another pair of nodes".into(),
            ));
        }
        Ok(ack)
    }
}

/// What became of an issued receipt: rejected when the requester said so (stored: it is
/// final); else accepted once the requester's latest acknowledgement covers its sequence
/// number (`acked`: an acknowledgement answers a whole batch, so an accepted receipt needs
/// no write of its own); else held when the requester said so (stored), else issued.
fn status_of(stored: Option<ReceiptStatus>, sequence: u64, acked: u64) -> ReceiptStatus {
    match stored {
        Some(rejected @ ReceiptStatus::Rejected { .. }) => rejected,
        _ if sequence <= acked => ReceiptStatus::Accepted,
        Some(status) => status,
        None => ReceiptStatus::Issued,
    }
}
