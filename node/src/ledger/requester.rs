//! The requester's side of the ledger: a receipt that arrived with a result is booked
//! (and acknowledged with a signed cumulative total), held when it is ahead of its chain,
//! or rejected with its reason and booked nowhere. The verdict is the protocol's pure
//! `check_receipt`, run inside the booking write against the pair's state there, so
//! two receipts of a pair arriving at once are booked one after the other.
//!
//! A receipt rejected for its content (an overcharge, a result this node refused) while
//! in its right place in the chain (signed by the pair's executor, next sequence, right
//! previous hash and total) keeps its place, booked nowhere: the receipts after it can
//! still be booked, and the acknowledgement says how much of the chain was rejected.

use super::records::{AcceptedPair, ReceiptStatus, ReceivedReceipt, key};
use super::{
    EntryKind, Ledger, LedgerError, Staged, TxResult, abort, add, dec, read_account, shift, tx_enc,
    tx_get, write_account,
};
use mesg_protocol::economy::{
    CumulativeAck, MAX_RECEIPT_BYTES, Pair, PairState, ReceiptReject, ReceiptVerdict, UsageReceipt,
};
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::{ExecutionId, Hash32, PublicKey, now_ms};

/// Validity of an acknowledgement's signature.
const ACK_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// What became of a receipt on the requester.
#[derive(Debug, Clone, PartialEq)]
pub enum Booking {
    /// Booked now, or before (a re-delivery, recognised by its hash): the pair's latest
    /// acknowledgement.
    Acked {
        ack: Signed<CumulativeAck>,
        /// Booked by this call (false: booked before).
        fresh: bool,
    },
    /// Ahead of its chain: kept (durably) until the receipts before it are booked.
    Held(Option<Signed<CumulativeAck>>),
    /// Booked nowhere.
    Rejected {
        reason: ReceiptReject,
        latest: Option<Signed<CumulativeAck>>,
    },
}

/// The verdict on a receipt from the pair's last accepted state and whether its
/// execution's receipt was booked already (`check_receipt` with this node's view).
pub type Check<'a> = &'a dyn Fn(Option<PairState>, bool) -> ReceiptVerdict;

/// What became of one receipt of a batch, before its pair's acknowledgement is signed.
enum Step {
    /// Answered as it is.
    Done(Booking),
    /// Booked now on the chain from this executor: acknowledged at the batch's end.
    Booked(PublicKey),
    /// Booked earlier in this batch (the same receipt twice): acknowledged, not fresh.
    Again(PublicKey),
    /// Rejected, answered with the acknowledgement the batch leaves its pair with.
    Voided(PublicKey, ReceiptReject),
}

/// Reasons about a receipt's content, not its place in the chain.
fn about_content(reason: &ReceiptReject) -> bool {
    matches!(
        reason,
        ReceiptReject::Unsolicited(_)
            | ReceiptReject::WrongSigner { .. }
            | ReceiptReject::BadService { .. }
            | ReceiptReject::WrongResult { .. }
            | ReceiptReject::PriceChanged { .. }
            | ReceiptReject::WrongUsage { .. }
            | ReceiptReject::IncorrectAmount { .. }
    )
}

impl Ledger {
    /// Book `signed` (the receipt of an execution this node asked for and whose result it
    /// took) if `check(last state of the pair's chain, already booked)` accepts it.
    pub fn book(
        &self,
        signed: &Signed<UsageReceipt>,
        check: &dyn Fn(Option<PairState>, bool) -> ReceiptVerdict,
    ) -> Result<Booking, LedgerError> {
        let mut all = self.book_all(&[(signed, check)])?;
        Ok(all.remove(0))
    }

    /// Book a batch of receipts (each as [`Ledger::book`] would, in the order given) in
    /// one write: one log signature for all, and one acknowledgement signed per pair
    /// whose chain moved, covering every receipt of the batch booked on it.
    pub fn book_all(
        &self,
        items: &[(&Signed<UsageReceipt>, Check<'_>)],
    ) -> Result<Vec<Booking>, LedgerError> {
        let bookings = self.transact(|t| {
            let mut steps = Vec::with_capacity(items.len());
            let mut moved: Vec<PublicKey> = Vec::new();
            for (signed, check) in items {
                steps.push(self.book_in(t, signed, *check, &mut moved)?);
            }
            let mut acks = Vec::with_capacity(moved.len());
            for executor in moved {
                acks.push((executor, self.sign_ack(t, &executor)?));
            }
            let ack_of = |executor: &PublicKey| {
                acks.iter()
                    .find(|(e, _)| e == executor)
                    .map(|(_, a)| a.clone())
            };
            Ok(steps
                .into_iter()
                .map(|step| match step {
                    Step::Done(b) => b,
                    Step::Booked(executor) => Booking::Acked {
                        ack: ack_of(&executor).expect("a booked pair is signed"),
                        fresh: true,
                    },
                    Step::Again(executor) => Booking::Acked {
                        ack: ack_of(&executor).expect("a booked pair is signed"),
                        fresh: false,
                    },
                    Step::Voided(executor, reason) => Booking::Rejected {
                        reason,
                        latest: ack_of(&executor),
                    },
                })
                .collect())
        });
        self.chain_moved();
        bookings
    }

    /// One receipt of a batch, inside its write (pairs whose chain moved are added to
    /// `moved`, their acknowledgement signed at the end of the batch).
    fn book_in(
        &self,
        t: &Staged,
        signed: &Signed<UsageReceipt>,
        check: Check<'_>,
        moved: &mut Vec<PublicKey>,
    ) -> TxResult<Step> {
        // Unverified here: only to find the records; `check` verifies everything.
        let Ok(r) = signed.payload_unverified(MAX_RECEIPT_BYTES) else {
            return Ok(Step::Done(Booking::Rejected {
                reason: ReceiptReject::BadSignature("the receipt does not decode".into()),
                latest: None,
            }));
        };
        // Whether it is properly signed by the executor it names, for this node (asked
        // of rejected receipts only: an accepted one was verified by `check`).
        let authentic = || {
            r.requester == self.node()
                && signed.signer() == r.executor
                && signed
                    .verify_signature(domains::RECEIPT, now_ms(), MAX_RECEIPT_BYTES)
                    .is_ok()
        };
        let pk = key::peer(key::ACCEPTED_PAIR, &r.executor);
        let pair: Option<AcceptedPair> = tx_get(t, &pk)?;
        let in_batch = moved.contains(&r.executor);
        // An acknowledgement of this batch is signed at its end.
        let latest = pair
            .as_ref()
            .and_then(|p| p.ack.clone())
            .filter(|_| !in_batch);
        let qk = key::execution(key::RECEIVED, &r.execution_id);
        let before: Option<ReceivedReceipt> = tx_get(t, &qk)?;
        let booked = before
            .as_ref()
            .is_some_and(|b| b.status == ReceiptStatus::Accepted);
        // Booked from this executor (another executor's receipt for the same
        // execution, after a failover, does not stop this chain).
        let booked_here = booked && before.as_ref().is_some_and(|b| b.executor == r.executor);
        if booked && before.as_ref().is_some_and(|b| b.hash == r.hash()) {
            if in_batch {
                return Ok(Step::Again(r.executor));
            }
            if let Some(ack) = latest.clone() {
                return Ok(Step::Done(Booking::Acked { ack, fresh: false }));
            }
        }
        let rejected = pair.as_ref().map_or(0, |p| p.rejected);
        match check(pair.as_ref().map(|p| p.state), booked) {
            ReceiptVerdict::Accept(state) => {
                self.advance(t, &r, state, rejected, moved)?;
                t.insert(
                    &qk[..],
                    tx_enc(&received(signed, &r, ReceiptStatus::Accepted))?,
                )?;
                let mut account = read_account(t, &r.executor)?;
                account.balance = shift(account.balance, -i128::from(r.amount)).or_else(abort)?;
                account.accepted = add(account.accepted, r.amount).or_else(abort)?;
                account.last_receipt = Some(ReceiptStatus::Accepted.label());
                write_account(t, &r.executor, &account)?;
                self.append(
                    t,
                    EntryKind::Accept,
                    r.executor,
                    Some(r.execution_id),
                    r.amount,
                    format!("receipt {}", r.sequence),
                )?;
                Ok(Step::Booked(r.executor))
            }
            ReceiptVerdict::Reject(ReceiptReject::SequenceGap { .. }) => {
                t.insert(&key::held(&r.executor, r.sequence)[..], tx_enc(signed)?)?;
                if !booked {
                    t.insert(&qk[..], tx_enc(&received(signed, &r, ReceiptStatus::Held))?)?;
                }
                Ok(Step::Done(Booking::Held(latest)))
            }
            ReceiptVerdict::Reject(reason) => {
                let in_place = !booked_here
                    && about_content(&reason)
                    && next_in_chain(pair.as_ref().map(|p| p.state), &r)
                    && authentic();
                if in_place {
                    let voided = add(rejected, r.amount).or_else(abort)?;
                    self.advance(t, &r, r.state(), voided, moved)?;
                }
                self.reject_in(t, signed, &r, &reason, booked, in_place)?;
                Ok(if in_place || in_batch {
                    Step::Voided(r.executor, reason)
                } else {
                    Step::Done(Booking::Rejected { reason, latest })
                })
            }
        }
    }

    /// The pair's chain moves to `state` (`rejected` of it booked nowhere), and the
    /// receipt leaves the held ones; its acknowledgement is signed at the end of the
    /// batch ([`Ledger::sign_ack`]).
    fn advance(
        &self,
        t: &Staged,
        r: &UsageReceipt,
        state: PairState,
        rejected: u64,
        moved: &mut Vec<PublicKey>,
    ) -> TxResult<()> {
        let pk = key::peer(key::ACCEPTED_PAIR, &r.executor);
        let ack = tx_get::<AcceptedPair>(t, &pk)?.and_then(|p| p.ack);
        t.insert(
            &pk[..],
            tx_enc(&AcceptedPair {
                state,
                rejected,
                ack,
            })?,
        )?;
        t.remove(&key::held(&r.executor, r.sequence)[..])?;
        if !moved.contains(&r.executor) {
            moved.push(r.executor);
        }
        Ok(())
    }

    /// Sign the acknowledgement of the pair's chain as this write left it, and store it.
    fn sign_ack(&self, t: &Staged, executor: &PublicKey) -> TxResult<Signed<CumulativeAck>> {
        let pk = key::peer(key::ACCEPTED_PAIR, executor);
        let Some(mut pair) = tx_get::<AcceptedPair>(t, &pk)? else {
            return abort(LedgerError::Corrupt(format!(
                "the chain from {executor} moved and has no state"
            )));
        };
        let ack = CumulativeAck {
            pair: Pair {
                executor: *executor,
                requester: self.node(),
            },
            sequence: pair.state.sequence,
            receipt: pair.state.hash,
            cumulative: pair.state.cumulative,
            rejected: pair.rejected,
        };
        let ack = Signed::sign(
            &self.key,
            domains::CUMULATIVE_ACK,
            &ack,
            now_ms(),
            ACK_TTL_MS,
            MAX_RECEIPT_BYTES,
        )
        .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        pair.ack = Some(ack.clone());
        t.insert(&pk[..], tx_enc(&pair)?)?;
        Ok(ack)
    }

    fn reject_in(
        &self,
        t: &Staged,
        signed: &Signed<UsageReceipt>,
        r: &UsageReceipt,
        reason: &ReceiptReject,
        booked: bool,
        voided: bool,
    ) -> TxResult<()> {
        let status = ReceiptStatus::Rejected {
            code: reason.code().to_string(),
            reason: reason.to_string(),
        };
        if !booked {
            t.insert(
                &key::execution(key::RECEIVED, &r.execution_id)[..],
                tx_enc(&received(signed, r, status.clone()))?,
            )?;
        }
        // Rejected for good: it leaves the held ones (never another receipt held at its
        // sequence number).
        let hk = key::held(&r.executor, r.sequence);
        if tx_get::<Signed<UsageReceipt>>(t, &hk)?.is_some_and(|h| h == *signed) {
            t.remove(&hk[..])?;
        }
        let mut account = read_account(t, &r.executor)?;
        account.rejected += 1;
        if voided {
            account.voided = add(account.voided, r.amount).or_else(abort)?;
        }
        account.last_receipt = Some(status.label());
        write_account(t, &r.executor, &account)?;
        self.append(
            t,
            EntryKind::Reject,
            r.executor,
            Some(r.execution_id),
            r.amount,
            format!("{}: {reason}", reason.code()),
        )
    }

    /// Refuse a receipt whose result was refused: rejected with `reason` (it keeps its
    /// place in the chain when it is in the right one).
    pub fn reject_receipt(
        &self,
        signed: &Signed<UsageReceipt>,
        reason: &ReceiptReject,
    ) -> Result<Booking, LedgerError> {
        self.book(signed, &|_, _| ReceiptVerdict::Reject(reason.clone()))
    }

    /// The receipt held next in the chain from `executor`, if it arrived.
    pub fn next_held(
        &self,
        executor: &PublicKey,
    ) -> Result<Option<Signed<UsageReceipt>>, LedgerError> {
        let next = match self.tree.get(key::peer(key::ACCEPTED_PAIR, executor))? {
            Some(v) => dec::<AcceptedPair>(&v)?.state.sequence + 1,
            None => 1,
        };
        match self.tree.get(key::held(executor, next))? {
            Some(v) => Ok(Some(dec(&v)?)),
            None => Ok(None),
        }
    }

    /// What became of the receipt of an execution this node asked for.
    pub fn received(&self, id: &ExecutionId) -> Result<Option<ReceivedReceipt>, LedgerError> {
        match self.tree.get(key::execution(key::RECEIVED, id))? {
            Some(v) => Ok(Some(dec(&v)?)),
            None => Ok(None),
        }
    }

    /// The latest acknowledgement this node signed to `executor`.
    pub fn latest_ack_to(
        &self,
        executor: &PublicKey,
    ) -> Result<Option<Signed<CumulativeAck>>, LedgerError> {
        match self.tree.get(key::peer(key::ACCEPTED_PAIR, executor))? {
            Some(v) => Ok(dec::<AcceptedPair>(&v)?.ack),
            None => Ok(None),
        }
    }
}

/// Whether `r` is the next receipt of the chain after `last`, with the right total.
fn next_in_chain(last: Option<PairState>, r: &UsageReceipt) -> bool {
    let (seq, prev, before) = match last {
        Some(s) => (s.sequence + 1, s.hash, s.cumulative),
        None => (1, Hash32::default(), 0),
    };
    r.sequence == seq && r.prev == prev && before.checked_add(r.amount) == Some(r.cumulative)
}

fn received(
    signed: &Signed<UsageReceipt>,
    r: &UsageReceipt,
    status: ReceiptStatus,
) -> ReceivedReceipt {
    ReceivedReceipt {
        receipt: signed.clone(),
        executor: r.executor,
        hash: r.hash(),
        sequence: r.sequence,
        amount: r.amount,
        status,
    }
}
