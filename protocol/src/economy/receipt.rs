//! Usage receipts: after a priced execution its executor signs what it used and what it
//! costs, chained per pair of nodes (sequence number, previous receipt's hash, cumulative
//! total, as in Swarm's cheques and Scuttlebutt's logs); the requester checks the receipt
//! against what it knows on its own ([`check_receipt`], pure) and countersigns the new
//! cumulative total ([`CumulativeAck`]) or rejects the receipt with a reason.
//!
//! Only the latest cumulative total of a pair counts: a lost or repeated receipt or
//! acknowledgement does no harm, and a dispute is about one number.

use super::price::{Overflow, Price, Usage};
use crate::envelope::{Claims, Signed};
use crate::hash::{Hash32, ServiceHash};
use crate::keys::PublicKey;
use crate::types::{ExecutionId, ExecutionRequest, domains};
use crate::wire;
use serde::{Deserialize, Serialize};

/// Largest encoded receipt: ids, digests, keys and figures, a task key of at most
/// [`crate::definition::MAX_KEY_LEN`] bytes. Far below any message limit.
pub const MAX_RECEIPT_BYTES: usize = 1024;

/// The two nodes of a relationship: the executor (who is owed) and the requester node
/// (who owes). Receipts, sequence numbers and totals are per pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pair {
    pub executor: PublicKey,
    pub requester: PublicKey,
}

/// One priced execution's usage and amount, signed by its executor
/// ([`domains::RECEIPT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    pub execution_id: ExecutionId,
    /// Digest of the signed request it answers (as in the execution's signed result).
    pub request_digest: Hash32,
    /// Digest of the executor's signed result of the execution.
    pub result_digest: Hash32,
    pub service_hash: ServiceHash,
    pub task_key: String,
    pub usage: Usage,
    /// The price applied: the task's price in the definition the service hash names.
    pub price: Price,
    /// µc charged for this execution: `min(price × usage, request's max_price)`.
    pub amount: u64,
    /// 1 for the pair's first receipt, then one more each time.
    pub sequence: u64,
    /// [`UsageReceipt::hash`] of the pair's previous receipt; zero for the first.
    pub prev: Hash32,
    /// µc of every receipt of the pair so far, this one included.
    pub cumulative: u64,
    pub executor: PublicKey,
    /// The requester's node (the one the result is delivered to, which owes the amount).
    pub requester: PublicKey,
}

impl Claims for UsageReceipt {
    fn claimed_signer(&self) -> PublicKey {
        self.executor
    }
}

impl UsageReceipt {
    pub fn pair(&self) -> Pair {
        Pair {
            executor: self.executor,
            requester: self.requester,
        }
    }

    /// The receipt's identity in its pair's chain: a hash of its content (not of its
    /// envelope, whose nonce and times differ between two signatures of one receipt).
    pub fn hash(&self) -> Hash32 {
        let bytes = wire::encode(self, MAX_RECEIPT_BYTES).unwrap_or_default();
        Hash32::domain("mesg/receipt-hash/1", &[&bytes])
    }

    /// Where the pair stands once this receipt is accepted.
    pub fn state(&self) -> PairState {
        PairState {
            sequence: self.sequence,
            hash: self.hash(),
            cumulative: self.cumulative,
        }
    }
}

/// The requester's acknowledgement of a pair's cumulative total up to a receipt, signed
/// by the requester node ([`domains::CUMULATIVE_ACK`]). The latest one is what the
/// requester owes the executor (less what was settled): like a cheque, it only grows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CumulativeAck {
    pub pair: Pair,
    pub sequence: u64,
    /// [`UsageReceipt::hash`] of the receipt at `sequence`.
    pub receipt: Hash32,
    /// µc: the chain's cumulative total at `sequence` (the receipt's own figure).
    pub cumulative: u64,
    /// µc of the chain's receipts up to `sequence` that the requester rejected (booked
    /// nowhere). A receipt rejected for its content (not for its place in the chain)
    /// still takes its place, so that the receipts after it can be booked: the
    /// requester owes `cumulative − rejected`.
    pub rejected: u64,
}

impl CumulativeAck {
    /// µc the requester acknowledges owing: accepted receipts only.
    pub fn owed(&self) -> u64 {
        self.cumulative.saturating_sub(self.rejected)
    }
}

impl Claims for CumulativeAck {
    fn claimed_signer(&self) -> PublicKey {
        self.pair.requester
    }
}

/// A pair's chain as one side accepted it: the last receipt's sequence and hash and the
/// cumulative total. Before the first receipt there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairState {
    pub sequence: u64,
    pub hash: Hash32,
    pub cumulative: u64,
}

/// What the requester node knows when a receipt arrives, all of it its own: never taken
/// from the receipt.
#[derive(Debug, Clone, Copy)]
pub struct RequesterView<'a> {
    /// This node: the requester node of its executions.
    pub me: PublicKey,
    /// The last receipt of this pair it accepted (None: none yet).
    pub last: Option<PairState>,
    /// The request it holds for the receipt's execution id (None: it never asked for it).
    pub request: Option<&'a ExecutionRequest>,
    /// Digest of that request's signed envelope.
    pub request_digest: Hash32,
    /// The node that accepted and ran the execution, as it recorded it.
    pub executor: Option<PublicKey>,
    /// Digest of the executor's signed result it holds.
    pub result_digest: Hash32,
    /// The task's price in the definition the request's service hash names (None: free).
    pub price: Option<Price>,
    /// The usage it can see: one call, the run time from the signed result's start and
    /// end, the size of the outputs it received.
    pub usage: Usage,
    /// A receipt for this execution was already accepted (a second one would charge twice).
    pub already_booked: bool,
    /// The receipt's signature was checked already, with the others of its batch
    /// ([`Signed::signatures_hold`]); its header and everything else are still checked.
    pub signature_checked: bool,
}

/// Why a receipt is rejected. Nothing is booked for it; the execution's result stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptReject {
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("wrong signer: signed by {signer}, but the execution was run by {expected}")]
    WrongSigner {
        signer: PublicKey,
        expected: PublicKey,
    },
    #[error("unsolicited: {0}")]
    Unsolicited(String),
    #[error("bad service: the receipt names {got}, the request asked for {expected}")]
    BadService { expected: String, got: String },
    #[error("replay: receipt {sequence} of this pair was already accepted (last accepted: {last})")]
    Replay { sequence: u64, last: u64 },
    #[error("sequence gap: expected receipt {expected}, got {got}")]
    SequenceGap { expected: u64, got: u64 },
    #[error(
        "fork: receipt {sequence} does not follow the last accepted receipt (previous hash {got}, expected {expected})"
    )]
    Fork {
        sequence: u64,
        expected: Hash32,
        got: Hash32,
    },
    #[error("wrong result: the receipt is for result {got}, the result received is {expected}")]
    WrongResult { expected: Hash32, got: Hash32 },
    #[error("price changed: the receipt applies {got}, the service's definition says {expected}")]
    PriceChanged { expected: String, got: Price },
    #[error("wrong usage: the receipt says {got:?}, the result received shows {expected:?}")]
    WrongUsage { expected: Usage, got: Usage },
    #[error("incorrect amount: {got} µc charged, {expected} µc due")]
    IncorrectAmount { expected: u64, got: u64 },
    #[error("incorrect cumulative total: {got} µc, expected {expected} µc")]
    WrongCumulative { expected: u64, got: u64 },
    #[error("the amount or the total overflows 64 bits")]
    Overflow,
}

impl ReceiptReject {
    /// A short stable name of the reason (for logs, metrics and the ledger).
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptReject::BadSignature(_) => "bad_signature",
            ReceiptReject::WrongSigner { .. } => "wrong_signer",
            ReceiptReject::Unsolicited(_) => "unsolicited",
            ReceiptReject::BadService { .. } => "bad_service",
            ReceiptReject::Replay { .. } => "replay",
            ReceiptReject::SequenceGap { .. } => "sequence_gap",
            ReceiptReject::Fork { .. } => "fork",
            ReceiptReject::WrongResult { .. } => "wrong_result",
            ReceiptReject::PriceChanged { .. } => "price_changed",
            ReceiptReject::WrongUsage { .. } => "wrong_usage",
            ReceiptReject::IncorrectAmount { .. } => "incorrect_amount",
            ReceiptReject::WrongCumulative { .. } => "wrong_cumulative",
            ReceiptReject::Overflow => "overflow",
        }
    }
}

impl From<Overflow> for ReceiptReject {
    fn from(_: Overflow) -> ReceiptReject {
        ReceiptReject::Overflow
    }
}

/// The requester's verdict on one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptVerdict {
    /// Book it: the pair now stands at this state (its new cumulative total).
    Accept(PairState),
    Reject(ReceiptReject),
}

/// Check a signed receipt against the requester's own view, at `now` (unix ms, for the
/// envelope's window). In order: the signature; the receipt is for this node and an
/// execution it asked for (the request's digest); signed by the node that ran it; the
/// service and task asked for; not already accepted (replay), next in the chain (gap)
/// and following the last accepted receipt (fork); the result received; the price of the
/// definition; the usage seen; the amount, recomputed exactly; the new cumulative total.
pub fn check_receipt(
    signed: &Signed<UsageReceipt>,
    view: &RequesterView<'_>,
    now: u64,
) -> ReceiptVerdict {
    match verdict(signed, view, now) {
        Ok(state) => ReceiptVerdict::Accept(state),
        Err(reason) => ReceiptVerdict::Reject(reason),
    }
}

fn verdict(
    signed: &Signed<UsageReceipt>,
    view: &RequesterView<'_>,
    now: u64,
) -> Result<PairState, ReceiptReject> {
    let r = if view.signature_checked {
        signed.verify_checked_signature(domains::RECEIPT, now, MAX_RECEIPT_BYTES)
    } else {
        signed.verify_signature(domains::RECEIPT, now, MAX_RECEIPT_BYTES)
    }
    .map_err(|e| ReceiptReject::BadSignature(e.to_string()))?;
    if signed.signer() != r.executor {
        return Err(ReceiptReject::WrongSigner {
            signer: signed.signer(),
            expected: r.executor,
        });
    }
    if r.requester != view.me {
        return Err(ReceiptReject::Unsolicited(format!(
            "the receipt is addressed to node {}, not this node",
            r.requester
        )));
    }
    let Some(request) = view.request else {
        return Err(ReceiptReject::Unsolicited(format!(
            "this node never requested execution {}",
            r.execution_id
        )));
    };
    if request.execution_id != r.execution_id || r.request_digest != view.request_digest {
        return Err(ReceiptReject::Unsolicited(format!(
            "the receipt answers another request than the one this node signed for execution {}",
            r.execution_id
        )));
    }
    match view.executor {
        Some(executor) if executor == r.executor => {}
        Some(executor) => {
            return Err(ReceiptReject::WrongSigner {
                signer: r.executor,
                expected: executor,
            });
        }
        None => {
            return Err(ReceiptReject::Unsolicited(format!(
                "no node ran execution {} for this node",
                r.execution_id
            )));
        }
    }
    if r.service_hash != request.service_hash || r.task_key != request.task_key {
        return Err(ReceiptReject::BadService {
            expected: format!("{} task {}", request.service_hash, request.task_key),
            got: format!("{} task {}", r.service_hash, r.task_key),
        });
    }
    let (expected_seq, expected_prev, before) = match view.last {
        Some(last) => (last.sequence.saturating_add(1), last.hash, last.cumulative),
        None => (1, Hash32::default(), 0),
    };
    if view.already_booked || r.sequence < expected_seq {
        return Err(ReceiptReject::Replay {
            sequence: r.sequence,
            last: expected_seq - 1,
        });
    }
    if r.sequence > expected_seq {
        return Err(ReceiptReject::SequenceGap {
            expected: expected_seq,
            got: r.sequence,
        });
    }
    if r.prev != expected_prev {
        return Err(ReceiptReject::Fork {
            sequence: r.sequence,
            expected: expected_prev,
            got: r.prev,
        });
    }
    if r.result_digest != view.result_digest {
        return Err(ReceiptReject::WrongResult {
            expected: view.result_digest,
            got: r.result_digest,
        });
    }
    match view.price {
        Some(p) if p == r.price => {}
        other => {
            return Err(ReceiptReject::PriceChanged {
                expected: other.map_or_else(|| "free".to_string(), |p| p.to_string()),
                got: r.price,
            });
        }
    }
    if r.usage != view.usage {
        return Err(ReceiptReject::WrongUsage {
            expected: view.usage,
            got: r.usage,
        });
    }
    let due = r.price.charge(&view.usage, request.max_price)?;
    if r.amount != due {
        return Err(ReceiptReject::IncorrectAmount {
            expected: due,
            got: r.amount,
        });
    }
    let cumulative = before.checked_add(due).ok_or(ReceiptReject::Overflow)?;
    if r.cumulative != cumulative {
        return Err(ReceiptReject::WrongCumulative {
            expected: cumulative,
            got: r.cumulative,
        });
    }
    Ok(r.state())
}
