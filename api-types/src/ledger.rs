//! The economy's ledger as the API shows it: accounts per peer, the signed log, limits,
//! settlements, and the receipt of one execution.

use mesg_protocol::{ExecutionId, PublicKey};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One peer's account on this node (a node key, or a publisher key). Amounts in µc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerAccount {
    pub peer: PublicKey,
    /// Positive when the peer owes this node, negative when this node owes the peer.
    #[schema(minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    pub balance: i64,
    /// Caps reserved against the peer for its calls in progress here.
    #[schema(maximum = 18446744073709551615u64)]
    pub reserved: u64,
    /// Its credit limit here (its own, else the node's default).
    #[schema(maximum = 18446744073709551615u64)]
    pub limit: u64,
    /// Whether `limit` is this peer's own (set with `PUT /v1/ledger/limits/{peer}`).
    pub own_limit: bool,
    /// Receipts this node issued to the peer (as executor).
    #[schema(maximum = 18446744073709551615u64)]
    pub issued: u64,
    /// Of those, what the peer acknowledged (its latest signed cumulative total).
    #[schema(maximum = 18446744073709551615u64)]
    pub acked: u64,
    /// The peer's receipts this node accepted (as requester).
    #[schema(maximum = 18446744073709551615u64)]
    pub accepted: u64,
    /// Publisher shares this node owes the peer's key.
    #[schema(maximum = 18446744073709551615u64)]
    pub shares: u64,
    /// What this node settled to the peer, in total.
    #[schema(maximum = 18446744073709551615u64)]
    pub paid: u64,
    /// What the peer settled to this node, in total.
    #[schema(maximum = 18446744073709551615u64)]
    pub received: u64,
    /// Receipts rejected between the two (either way).
    #[schema(maximum = 18446744073709551615u64)]
    pub rejected: u64,
    /// µc of the pair's receipts rejected for their content (they kept their place in the
    /// chain, booked nowhere).
    #[schema(maximum = 18446744073709551615u64)]
    pub voided: u64,
    /// What became of the last receipt between the two (`accepted`, `rejected: …`).
    pub last_receipt: Option<String>,
}

/// `GET /v1/ledger`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerAccounts {
    /// The node's default credit limit (µc).
    #[schema(maximum = 18446744073709551615u64)]
    pub default_limit: u64,
    pub accounts: Vec<LedgerAccount>,
}

/// One entry of the node's signed, hash-chained ledger log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    #[schema(maximum = 18446744073709551615u64)]
    pub seq: u64,
    /// Unix ms.
    #[schema(maximum = 18446744073709551615u64)]
    pub time: u64,
    /// reserve, release, debit, credit, accept, reject or settle.
    pub kind: String,
    pub peer: PublicKey,
    pub execution_id: Option<ExecutionId>,
    #[schema(maximum = 18446744073709551615u64)]
    pub amount: u64,
    pub reason: String,
    /// Hash of the entry (hex); the next entry names it.
    pub hash: String,
}

/// `GET /v1/ledger/log`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerLog {
    pub entries: Vec<LedgerEntry>,
}

/// The query of `GET /v1/ledger/log`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerLogQuery {
    /// Most entries (default 100, at most 10000).
    #[param(maximum = 18446744073709551615u64)]
    pub limit: Option<usize>,
}

/// The body of `PUT /v1/ledger/limits/{peer}`: the peer's own credit limit, or null to
/// use the node's default again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetCreditLimit {
    #[serde(default, deserialize_with = "crate::whole::option_u64")]
    #[schema(maximum = 18446744073709551615u64)]
    pub limit: Option<u64>,
}

/// The body of `POST /v1/ledger/settle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SettleRequest {
    /// The node to pay what this node accepted owing it.
    pub peer: PublicKey,
}

/// The answer of `POST /v1/ledger/settle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Settled {
    pub peer: PublicKey,
    /// µc settled to the peer in total (the statement it accepted).
    #[schema(maximum = 18446744073709551615u64)]
    pub total: u64,
    pub method: String,
}

/// The usage receipt of a priced execution, on either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// `executor` (this node issued it) or `requester` (this node received it).
    pub role: String,
    /// issued, accepted, held or rejected.
    pub status: String,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The other node of the pair.
    pub peer: PublicKey,
    #[schema(maximum = 18446744073709551615u64)]
    pub sequence: u64,
    #[schema(maximum = 18446744073709551615u64)]
    pub amount: u64,
}
