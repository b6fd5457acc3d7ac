//! What the ledger stores, and under which keys of its one tree (a kind byte, then the
//! peer, execution id or sequence number). One tree keeps every write simple.

use super::LedgerError;
use mesg_protocol::economy::{CumulativeAck, PairState, UsageReceipt};
use mesg_protocol::envelope::Signed;
use mesg_protocol::{ExecutionId, Hash32, PublicKey, wire};
use serde::{Deserialize, Serialize};

/// Cap on one stored ledger record.
const MAX_RECORD: usize = 64 * 1024;

pub(crate) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, LedgerError> {
    wire::encode(v, MAX_RECORD).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

pub(crate) fn dec<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, LedgerError> {
    wire::decode(bytes, MAX_RECORD).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

/// Key layout: one byte of kind, then the record's own key.
pub(crate) mod key {
    use super::LedgerError;
    use mesg_protocol::{ExecutionId, PublicKey};

    pub const ACCOUNT: u8 = b'A';
    pub const LOG: u8 = b'L';
    pub const HEAD: &[u8] = b"H";
    /// Executor side: the chain of receipts issued to a requester node.
    pub const ISSUED_PAIR: u8 = b'I';
    /// Executor side: the receipt of an execution (idempotency by execution id).
    pub const ISSUED: u8 = b'R';
    /// Executor side: what became of an issued receipt (its record keeps `issued`).
    pub const ISSUED_STATUS: u8 = b'U';
    /// Executor side: the latest acknowledgement received from a requester node.
    pub const ACK: u8 = b'C';
    /// Requester side: the chain accepted from an executor, with the latest ack signed.
    pub const ACCEPTED_PAIR: u8 = b'P';
    /// Requester side: what became of an execution's receipt.
    pub const RECEIVED: u8 = b'Q';
    /// Requester side: receipts ahead of their chain, by executor then sequence.
    pub const HELD: u8 = b'W';
    /// The latest settlement statement signed by this node to a peer.
    pub const PAID: u8 = b'S';

    fn with(kind: u8, bytes: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + bytes.len());
        k.push(kind);
        k.extend_from_slice(bytes);
        k
    }
    pub fn account(peer: &PublicKey) -> Vec<u8> {
        with(ACCOUNT, &peer.0)
    }
    pub fn log(seq: u64) -> Vec<u8> {
        with(LOG, &seq.to_be_bytes())
    }
    pub fn peer(kind: u8, peer: &PublicKey) -> Vec<u8> {
        with(kind, &peer.0)
    }
    pub fn execution(kind: u8, id: &ExecutionId) -> Vec<u8> {
        with(kind, &id.0)
    }
    pub fn held(executor: &PublicKey, seq: u64) -> Vec<u8> {
        let mut k = with(HELD, &executor.0);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
    pub fn peer_of(bytes: &[u8]) -> Result<PublicKey, LedgerError> {
        bytes
            .get(..32)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(PublicKey)
            .ok_or_else(|| LedgerError::Corrupt("key is not a peer's key".into()))
    }
}

/// Where the log's chain ends.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: Hash32,
}

/// What one log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A request's cap reserved against the requester node before its task runs.
    Reserve,
    /// That reservation let go (the receipt books the actual amount, or nothing ran).
    Release,
    /// The peer owes this node more: a receipt this node issued to it.
    Debit,
    /// This node owes the peer more: the publisher's share of a receipt it issued.
    Credit,
    /// A receipt accepted: as requester, booked; as executor, acknowledged by the peer.
    Accept,
    /// A receipt rejected, with the reason; booked nowhere.
    Reject,
    /// A settlement: this node paid the peer, or the peer paid this node.
    Settle,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Reserve => "reserve",
            EntryKind::Release => "release",
            EntryKind::Debit => "debit",
            EntryKind::Credit => "credit",
            EntryKind::Accept => "accept",
            EntryKind::Reject => "reject",
            EntryKind::Settle => "settle",
        }
    }
}

/// One entry of the hash-chained log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Hash of the previous entry (zero for the first).
    pub prev: Hash32,
    pub time: u64,
    pub kind: EntryKind,
    pub peer: PublicKey,
    pub execution_id: Option<ExecutionId>,
    /// µc (for `accept` as executor: what the acknowledgement added).
    pub amount: u64,
    pub reason: String,
}

/// An entry with its hash and, for the last entry of each write, this node's signature
/// of the hash (empty otherwise: the hash chain puts the entry under the next signature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub entry: Entry,
    pub hash: Hash32,
    pub signature: Vec<u8>,
}

impl LogRecord {
    /// The entry with its hash, not signed yet.
    pub(crate) fn chained(entry: Entry) -> LogRecord {
        let mut record = LogRecord {
            entry,
            hash: Hash32::default(),
            signature: Vec::new(),
        };
        record.hash = record.hash();
        record
    }

    /// The hash of the entry (not of the signature).
    pub fn hash(&self) -> Hash32 {
        let bytes = enc(&self.entry).unwrap_or_default();
        Hash32::domain("mesg/ledger-entry/1", &[&bytes])
    }
}

/// One peer's account on this node (a node key or a publisher key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// µc; positive when the peer owes this node.
    pub balance: i64,
    /// µc of caps reserved against the peer for executions not yet receipted (kept in
    /// memory and filled in when read: `reserve.rs`; 0 as stored).
    pub reserved: u64,
    /// This peer's own credit limit (else the node's default).
    pub limit: Option<u64>,
    /// µc of receipts this node issued to the peer (executor side).
    pub issued: u64,
    /// µc of those the peer acknowledged owing (its latest signed acknowledgement:
    /// cumulative total less what it rejected).
    pub acked: u64,
    /// Sequence number of that acknowledgement.
    pub ack_sequence: u64,
    /// µc of receipts rejected between the two (booked nowhere: voided).
    pub voided: u64,
    /// µc of the peer's receipts this node accepted (requester side).
    pub accepted: u64,
    /// µc of publisher shares this node owes the peer (its key published a service).
    pub shares: u64,
    /// µc this node settled to the peer, in total.
    pub paid: u64,
    /// µc the peer settled to this node, in total.
    pub received: u64,
    /// Receipts rejected between the two (either way).
    pub rejected: u64,
    /// What became of the last receipt between the two, e.g. `accepted` or
    /// `rejected: incorrect amount: …`.
    pub last_receipt: Option<String>,
}

impl Account {
    /// What the peer owes this node now (0 when this node owes it).
    pub fn owed(&self) -> u64 {
        u64::try_from(self.balance.max(0)).unwrap_or(0)
    }
}

/// An account as listed: the peer and its effective limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub peer: PublicKey,
    pub account: Account,
    pub limit: u64,
}

impl AccountView {
    pub(crate) fn new(peer: PublicKey, account: Account, default_limit: u64) -> AccountView {
        AccountView {
            peer,
            limit: account.limit.unwrap_or(default_limit),
            account,
        }
    }
}

/// What became of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Signed and sent (executor side), no answer yet.
    Issued,
    /// Accepted by the requester (booked on both sides).
    Accepted,
    /// Ahead of its chain on the requester: kept until the gap fills.
    Held,
    /// Refused by the requester, with its reason: booked nowhere there.
    Rejected { code: String, reason: String },
}

impl ReceiptStatus {
    pub fn label(&self) -> String {
        match self {
            ReceiptStatus::Issued => "issued".into(),
            ReceiptStatus::Accepted => "accepted".into(),
            ReceiptStatus::Held => "held".into(),
            ReceiptStatus::Rejected { reason, .. } => format!("rejected: {reason}"),
        }
    }
}

/// Executor side: the receipt issued for an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedReceipt {
    pub receipt: Signed<UsageReceipt>,
    pub requester: PublicKey,
    pub amount: u64,
    pub sequence: u64,
    pub status: ReceiptStatus,
}

/// Requester side: what became of the receipt of an execution this node asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedReceipt {
    pub executor: PublicKey,
    pub hash: Hash32,
    pub sequence: u64,
    pub amount: u64,
    pub status: ReceiptStatus,
    /// The receipt as the executor signed it: evidence anyone can check again later
    /// (`mesg executions verify`), as the signed result is.
    pub receipt: Signed<UsageReceipt>,
}

/// Requester side: the chain accepted from one executor, and its latest ack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AcceptedPair {
    pub state: PairState,
    /// µc of the chain's receipts rejected (they kept their place, booked nowhere).
    pub rejected: u64,
    pub ack: Option<Signed<CumulativeAck>>,
}
