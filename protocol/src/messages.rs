//! Messages exchanged between nodes. Every top-level message is a versioned frame
//! ([`crate::wire::encode_frame`]) with a size limit per protocol.

use crate::economy::{CumulativeAck, Settlement, UsageReceipt};
use crate::envelope::Signed;
use crate::hash::{PackageHash, ServiceHash};
use crate::types::{
    Announcement, AnnouncementV1, CancelRequest, Event, ExecutionRequest, ExecutionResult,
    ServiceRecord,
};
use crate::value::Bytes;
use crate::verification::{OutputCommit, Reveal};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Request-response protocol for work (`/mesg/work/1`): two phases, because a task may
/// run longer than any request timeout. `Submit` is answered at once (accepted or
/// rejected); the executor later sends `Result` to the requester's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkRequest {
    Submit(Signed<ExecutionRequest>),
    Result(Signed<ExecutionResult>),
    Cancel(Signed<CancelRequest>),
    /// The result of a priced execution with its executor's usage receipt (appended:
    /// older variants keep their position). Free results travel as `Result`.
    PricedResult {
        result: Signed<ExecutionResult>,
        receipt: Signed<UsageReceipt>,
    },
    /// A payer's signed cumulative settlement to this node, with the payer's latest
    /// acknowledgement of what it owes (so the payee can check the total against it).
    Settle {
        settlement: Signed<Settlement>,
        ack: Option<Signed<CumulativeAck>>,
    },
    /// An executor of a verified execution commits to its outputs (executor to
    /// requester node); answered `Accepted` once the commit is on the requester's disk,
    /// and only then may the executor reveal.
    Commit(Signed<OutputCommit>),
    /// The executor opens its commit: its outputs and salt. A failed task is reported as
    /// a `Result` instead.
    Reveal(Signed<Reveal>),
    /// Peer exchange, sent when a connection opens: the sender's own current signed
    /// announcement, and whether it wants the announcements the receiver holds (a node
    /// that just joined learns the network at once, instead of waiting for everyone's
    /// slow refresh). Answered `Announcements`.
    Exchange(PeerExchange),
    /// Catch-up: the events of `service_hash` this node emitted after `after` (their
    /// `seq`), for a subscriber that missed some (a gap in the sequence, a restart, a
    /// partition). Answered `Events`.
    EventsSince(EventsSince),
    /// Peer exchange by a node that already knows the network (sent instead of
    /// `Exchange` when a connection opens): the sender's own announcement and a summary
    /// of the announcements it holds; the receiver answers `Announcements` with its own
    /// and only those the sender lacks or holds older. This is what heals a partition:
    /// what one side learned during the cut crosses on the first connection across.
    Reconcile(PeerReconcile),
    /// Usage receipts of priced executions whose results the requester node already
    /// took (each result went first, as `Result`, before the executor's flush; its
    /// receipt follows once it is on the executor's disk), at most
    /// [`MAX_RECEIPTS_PER_MESSAGE`], in chain order. Answered `Receipts`, one answer per
    /// receipt in the same order.
    Receipts(Vec<Signed<UsageReceipt>>),
}

/// Most receipts in one [`WorkRequest::Receipts`] (each at most
/// [`crate::economy::MAX_RECEIPT_BYTES`]: far below the work protocol's size limit).
pub const MAX_RECEIPTS_PER_MESSAGE: usize = 256;

/// What a subscriber asks an emitter for (see [`WorkRequest::EventsSince`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsSince {
    pub service_hash: ServiceHash,
    /// The last sequence number the subscriber saw; the answer starts after it.
    pub after: u64,
}

/// Most events in one `Events` answer; a subscriber that gets this many asks again from
/// the last one.
pub const MAX_CAUGHT_UP_EVENTS: usize = 256;
/// Most encoded bytes of events in one `Events` answer.
pub const MAX_CAUGHT_UP_BYTES: usize = 4 * 1024 * 1024;

/// What a node sends a peer it has just connected to (see [`WorkRequest::Exchange`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerExchange {
    /// The sender's own announcement (signed by the sender: the receiver checks that the
    /// signer is the peer on the connection).
    pub own: Signed<Announcement>,
    /// Whether the sender wants the other live announcements the receiver holds.
    pub want_known: bool,
}

/// What a node that already knows the network sends a peer it has just connected to
/// (see [`WorkRequest::Reconcile`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReconcile {
    /// The sender's own announcement (signed by the sender, as in [`PeerExchange`]).
    pub own: Signed<Announcement>,
    /// The live announcements the sender holds, one per node, at most
    /// [`MAX_EXCHANGED_ANNOUNCEMENTS`]. Not signed: it only decides what the sender is
    /// sent, on a connection that authenticated it.
    pub held: Vec<HeldAnnouncement>,
}

/// One node's announcement in a [`PeerReconcile`] summary: the first bytes of the node's
/// key (enough to tell nodes apart; a prefix shared by chance only means an
/// announcement not sent, which the next refresh brings), the announcement's `seq`, and
/// a digest of what it says (its instances and addresses). A peer sends back a newer
/// announcement only when what it says differs: a refresh that changes nothing is not
/// worth the bytes (every exchange signs a new one, so `seq`s always differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAnnouncement {
    pub node_prefix: [u8; 8],
    pub seq: u64,
    pub content: [u8; 8],
}

impl HeldAnnouncement {
    /// The prefix a node's key is summarised by.
    pub fn prefix_of(node: &crate::PublicKey) -> [u8; 8] {
        let mut p = [0u8; 8];
        p.copy_from_slice(&node.0[..8]);
        p
    }

    /// The digest of what an announcement says besides its `seq` and validity: the
    /// instances it offers (service and instance hashes, in any order) and the addresses
    /// it names (in order: the first are dialled first).
    pub fn content_of(a: &Announcement) -> [u8; 8] {
        let mut offers: Vec<[u8; 64]> = a
            .services
            .iter()
            .map(|s| {
                let mut o = [0u8; 64];
                o[..32].copy_from_slice(&s.service_hash.0.0);
                o[32..].copy_from_slice(&s.instance_hash.0.0);
                o
            })
            .collect();
        offers.sort_unstable();
        let mut bytes = Vec::with_capacity(offers.len() * 64 + 64);
        for o in &offers {
            bytes.extend_from_slice(o);
        }
        for addr in &a.addrs {
            bytes.extend_from_slice(&(addr.len() as u32).to_le_bytes());
            bytes.extend_from_slice(addr.as_bytes());
        }
        let mut d = [0u8; 8];
        d.copy_from_slice(&crate::Hash32::sha256(&bytes).0[..8]);
        d
    }
}

/// Most announcements in one `Announcements` answer; beyond it the DHT and the slow
/// refresh fill in.
pub const MAX_EXCHANGED_ANNOUNCEMENTS: usize = 2048;
/// Most encoded bytes of announcements in one answer.
pub const MAX_EXCHANGED_BYTES: usize = 4 * 1024 * 1024;

/// Variants are encoded by position: new ones go at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkResponse {
    Accepted,
    Rejected(Reject),
    /// The answer to a `PricedResult` whose result was taken: what became of the receipt.
    Receipt(ReceiptAnswer),
    /// The answer to an `Exchange` or a `Reconcile`: the receiver's own announcement
    /// first, then (when asked, or those the asker lacks) the live announcements it holds
    /// of other nodes, each signed by its node,
    /// at most [`MAX_EXCHANGED_ANNOUNCEMENTS`] and [`MAX_EXCHANGED_BYTES`].
    Announcements(Vec<Signed<Announcement>>),
    /// The answer to `EventsSince`: the emitter's own signed events of the service, in
    /// sequence order, that it still keeps (the retention window), at most
    /// [`MAX_CAUGHT_UP_EVENTS`] and [`MAX_CAUGHT_UP_BYTES`].
    Events(Vec<Signed<Event>>),
    /// The answer to `Receipts`: what became of each receipt, in the order sent.
    Receipts(Vec<ReceiptAnswer>),
}

/// The requester's answer about a receipt; each carries the pair's latest signed
/// cumulative acknowledgement, if there is one (only the latest counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReceiptAnswer {
    /// Booked (or booked before: a re-delivery); `ack` covers it.
    Acked { ack: Signed<CumulativeAck> },
    /// Ahead of the chain: kept until the receipts before it arrive.
    Held {
        latest: Option<Signed<CumulativeAck>>,
    },
    /// Refused, booked nowhere: the reason's code (`ReceiptReject::code`) and text.
    Rejected {
        code: String,
        reason: String,
        latest: Option<Signed<CumulativeAck>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
}

impl Reject {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Reject {
        Reject {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    /// Too much work in flight; try another provider or later.
    Busy,
    /// This node does not run the service (any more).
    NoInstance,
    UnknownTask,
    InvalidInputs,
    BadSignature,
    /// The (signer, nonce) pair was seen before.
    Replayed,
    Expired,
    UnknownExecution,
    /// The message was meant for another node.
    WrongNode,
    Malformed,
    Internal,
    /// The (signer, nonce) pair was seen before with another request: the requester
    /// must sign it again with a fresh nonce. Added last: older nodes decode the others.
    NonceReused,
    /// The request's idempotency key already names another request of the same
    /// requester here (another service, task or inputs).
    IdempotencyKeyReused,
    /// The task is priced and the request's `max_price` is missing or below its least
    /// cost. Every provider of a service hash has the same price: not retriable.
    PriceAboveCap,
    /// The requester node's debt to this executor (owed + reserved + this call's cap)
    /// would pass the credit limit it has here: not retriable on this provider.
    CreditLimit,
    /// The provider has banned the requester node (its operator's decision, e.g. after
    /// wrong results): not worth retrying there, another provider may accept.
    Banned,
}

impl RejectCode {
    /// Whether another provider may accept what this one refused. The task never started
    /// here, so trying elsewhere cannot run it twice.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            RejectCode::Busy
                | RejectCode::NoInstance
                | RejectCode::WrongNode
                | RejectCode::Internal
                | RejectCode::Banned
        )
    }
}

/// Gossip payloads: small signed announcements and events only, never task traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
///
/// Variants are encoded by position: new ones go at the end, so that older frames still
/// decode. `AnnounceV1` is what nodes without publisher claims send (received only).
pub enum GossipMessage {
    AnnounceV1(Signed<AnnouncementV1>),
    Event(Signed<Event>),
    Announce(Signed<Announcement>),
}

/// Request-response protocol for packages (`/mesg/package/1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PackageRequest {
    /// The signed record (definition + package hash) of a service.
    Record(ServiceHash),
    /// Up to [`crate::wire::MAX_PACKAGE_CHUNK`] bytes of a package tar from `offset`.
    Chunk { package: PackageHash, offset: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PackageResponse {
    Record(Signed<ServiceRecord>),
    Chunk { total: u64, data: Bytes },
    NotFound(String),
}
