//! The economy's ledger: what this node is owed and owes, per peer, in its own sled tree
//! next to the store's (one database, so one flush makes both durable).
//!
//! It keeps a hash-chained log of entries, per-peer accounts (balance, credit limit,
//! accepted and settled totals) and the state of each pair's receipt chain in both
//! directions. Everything that moves money is one atomic write (receipt + pair state +
//! account + log entries, one sled batch: `staged.rs`): a crash at any point books a
//! receipt exactly once, and a receipt delivered twice is recognised by its hash. Each
//! write signs the chain's head once (its last entry; the hashes chain the ones before
//! it), not every entry.
//!
//! - `records.rs`: what is stored (accounts, log entries, receipt records) and the keys.
//! - `reserve.rs`: reservations of running requests' caps, in memory (rebuilt at start).
//! - `executor.rs`: the executor's side: issue receipts, record answers.
//! - `requester.rs`: the requester's side: book, hold or reject a receipt.
//! - `turns.rs`: a receipt ahead of its chain waits a moment for those before it.
//! - `settle.rs`: the [`SettlementMethod`] trait and its first method, `credits`.
//!
//! The model (docs/economy.md): for one receipt of amount A from executor E to requester
//! R with publisher P and share s: E books R +A and P −s; R books E −A. A balance is
//! positive when the peer owes this node.

mod executor;
mod records;
mod requester;
mod reserve;
mod settle;
mod staged;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
mod turns;

pub use executor::IssueInput;
pub use records::{
    Account, AccountView, Entry, EntryKind, IssuedReceipt, LogRecord, ReceiptStatus,
    ReceivedReceipt,
};
pub use requester::{Booking, Check};
pub use settle::{Credits, SettleError, SettlementMethod};

use mesg_protocol::{ExecutionId, Hash32, Keypair, PublicKey, now_ms};
use records::{Head, dec, enc, key};
pub(crate) use staged::Staged;

/// Default credit limit of a peer on this node: 10^9 µc (1,000 credits).
pub const DEFAULT_CREDIT_LIMIT: u64 = 1_000_000_000;
/// Largest `limit` of one log listing.
pub const MAX_LOG_LIMIT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Db(#[from] sled::Error),
    #[error("corrupt ledger record: {0}")]
    Corrupt(String),
    #[error(
        "credit limit: {peer} owes {owed} µc, {reserved} µc reserved, this call may cost {cost} µc, limit {limit} µc"
    )]
    CreditLimit {
        peer: PublicKey,
        owed: u64,
        reserved: u64,
        cost: u64,
        limit: u64,
    },
    #[error("the amount overflows 64 bits of micro-credits")]
    Overflow,
    #[error("{0}")]
    Invalid(String),
}

/// What a step of one ledger write returns (an error drops the whole write).
pub(crate) type TxResult<T> = Result<T, LedgerError>;

/// Give up the write with `e` (nothing of it is applied).
pub(crate) fn abort<T>(e: LedgerError) -> TxResult<T> {
    Err(e)
}

/// The ledger of one node. Cheap to share behind an `Arc`.
pub struct Ledger {
    key: Keypair,
    tree: sled::Tree,
    default_limit: u64,
    /// One write at a time: every write touches the log's head, and each reads the
    /// tree directly while it stages its changes (see `staged.rs`). Each is short (no
    /// I/O: signatures and one batch).
    writing: std::sync::Mutex<()>,
    /// Caps reserved for executions running here (`reserve.rs`).
    reserved: std::sync::Mutex<reserve::Reservations>,
    /// Told of every booking, for receipts waiting for their turn (`turns.rs`).
    chain_moved: tokio::sync::Notify,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("node", &self.key.public())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// The ledger kept in `tree` (the store's `ledger` tree), signed with `key`.
    pub fn new(key: Keypair, tree: sled::Tree, default_limit: u64) -> Ledger {
        Ledger {
            key,
            tree,
            default_limit,
            writing: std::sync::Mutex::new(()),
            reserved: Default::default(),
            chain_moved: tokio::sync::Notify::new(),
        }
    }

    /// Run one write on the ledger's tree, one at a time (see `writing`): `f` stages its
    /// changes, applied together when it succeeds, dropped when it fails.
    pub(crate) fn transact<T>(&self, f: impl FnOnce(&Staged) -> TxResult<T>) -> TxResult<T> {
        let _one = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let staged = Staged::over(&self.tree);
        let out = f(&staged)?;
        self.sign_head(&staged)?;
        staged.commit()?;
        Ok(out)
    }

    /// The write appended log entries: the last one is signed (its hash chains every
    /// entry before it, so the signature covers them all).
    fn sign_head(&self, t: &Staged) -> TxResult<()> {
        if !t.wrote(key::HEAD) {
            return Ok(());
        }
        let Some(head) = tx_get::<Head>(t, key::HEAD)? else {
            return Ok(());
        };
        let k = key::log(head.seq);
        let Some(mut last) = tx_get::<LogRecord>(t, &k)? else {
            return abort(LedgerError::Corrupt(format!(
                "the log's head names entry {} and it is missing",
                head.seq
            )));
        };
        last.signature = self.key.sign(&last.hash.0).to_vec();
        t.insert(k, tx_enc(&last)?)?;
        Ok(())
    }

    pub fn node(&self) -> PublicKey {
        self.key.public()
    }

    pub fn default_limit(&self) -> u64 {
        self.default_limit
    }

    /// One peer's account (a zero account if it has none), with what is reserved
    /// against it now.
    pub fn account(&self, peer: &PublicKey) -> Result<Account, LedgerError> {
        Ok(self.with_reserved(peer, self.stored_account(peer)?))
    }

    /// One peer's account as stored (its `reserved` is not kept there).
    pub(crate) fn stored_account(&self, peer: &PublicKey) -> Result<Account, LedgerError> {
        Ok(match self.tree.get(key::account(peer))? {
            Some(v) => dec(&v)?,
            None => Account::default(),
        })
    }

    /// Every account, with its effective limit.
    pub fn accounts(&self) -> Result<Vec<AccountView>, LedgerError> {
        let mut out = Vec::new();
        for r in self.tree.scan_prefix([key::ACCOUNT]) {
            let (k, v) = r?;
            let peer = key::peer_of(&k[1..])?;
            let account = self.with_reserved(&peer, dec(&v)?);
            out.push(AccountView::new(peer, account, self.default_limit));
        }
        Ok(out)
    }

    /// The last `limit` log entries, newest first.
    pub fn log(&self, limit: usize) -> Result<Vec<LogRecord>, LedgerError> {
        let mut out = Vec::new();
        for r in self
            .tree
            .scan_prefix([key::LOG])
            .rev()
            .take(limit.min(MAX_LOG_LIMIT))
        {
            let (_, v) = r?;
            out.push(dec(&v)?);
        }
        Ok(out)
    }

    /// Set (Some) or remove (None) a peer's own credit limit. Logged.
    pub fn set_limit(&self, peer: &PublicKey, limit: Option<u64>) -> Result<(), LedgerError> {
        self.transact(|t| {
            let mut account = read_account(t, peer)?;
            account.limit = limit;
            write_account(t, peer, &account)?;
            Ok(())
        })
    }

    /// Check the log's chain and signatures from the first entry: the number of entries,
    /// or what is wrong. Every signature present must be this node's; an entry without
    /// one is covered by a later entry's (its write's last), and the last entry is signed.
    pub fn verify_log(&self) -> Result<u64, LedgerError> {
        let mut prev = Hash32::default();
        let mut n = 0u64;
        let mut unsigned = false;
        for r in self.tree.scan_prefix([key::LOG]) {
            let (_, v) = r?;
            let rec: LogRecord = dec(&v)?;
            if rec.entry.prev != prev || rec.entry.seq != n + 1 {
                return Err(LedgerError::Corrupt(format!(
                    "log entry {} does not follow entry {n}",
                    rec.entry.seq
                )));
            }
            if rec.hash() != rec.hash {
                return Err(LedgerError::Corrupt(format!(
                    "log entry {} does not match its hash",
                    rec.entry.seq
                )));
            }
            unsigned = rec.signature.is_empty();
            if !unsigned && !self.node().verify(&rec.hash.0, &rec.signature) {
                return Err(LedgerError::Corrupt(format!(
                    "log entry {} is not signed by this node",
                    rec.entry.seq
                )));
            }
            prev = rec.hash;
            n += 1;
        }
        if unsigned {
            return Err(LedgerError::Corrupt(format!(
                "the log's last entry ({n}) is not signed by this node"
            )));
        }
        Ok(n)
    }

    /// Log entries that name an execution (tests and audits: how often it was booked).
    pub fn entries_of(&self, id: &ExecutionId) -> Result<Vec<Entry>, LedgerError> {
        let mut out = Vec::new();
        for r in self.tree.scan_prefix([key::LOG]) {
            let (_, v) = r?;
            let rec: LogRecord = dec(&v)?;
            if rec.entry.execution_id == Some(*id) {
                out.push(rec.entry);
            }
        }
        Ok(out)
    }

    /// Append an entry to the log, inside the caller's write (signed at its end if it is
    /// the write's last: `sign_head`).
    pub(crate) fn append(
        &self,
        t: &Staged,
        kind: EntryKind,
        peer: PublicKey,
        execution_id: Option<ExecutionId>,
        amount: u64,
        reason: String,
    ) -> TxResult<()> {
        let head: Head = match t.get(key::HEAD)? {
            Some(v) => dec(&v)?,
            None => Head::default(),
        };
        let entry = Entry {
            seq: head.seq + 1,
            prev: head.hash,
            time: now_ms(),
            kind,
            peer,
            execution_id,
            amount,
            reason,
        };
        let record = LogRecord::chained(entry);
        t.insert(key::log(record.entry.seq), tx_enc(&record)?)?;
        t.insert(
            key::HEAD,
            tx_enc(&Head {
                seq: record.entry.seq,
                hash: record.hash,
            })?,
        )?;
        Ok(())
    }
}

pub(crate) fn tx_enc<T: serde::Serialize>(v: &T) -> TxResult<Vec<u8>> {
    enc(v)
}

pub(crate) fn tx_get<T: serde::de::DeserializeOwned>(t: &Staged, k: &[u8]) -> TxResult<Option<T>> {
    match t.get(k)? {
        Some(v) => Ok(Some(dec(&v)?)),
        None => Ok(None),
    }
}

pub(crate) fn read_account(t: &Staged, peer: &PublicKey) -> TxResult<Account> {
    Ok(tx_get(t, &key::account(peer))?.unwrap_or_default())
}

pub(crate) fn write_account(t: &Staged, peer: &PublicKey, account: &Account) -> TxResult<()> {
    t.insert(key::account(peer), tx_enc(account)?)?;
    Ok(())
}

/// `a + b` in µc, or [`LedgerError::Overflow`].
pub(crate) fn add(a: u64, b: u64) -> Result<u64, LedgerError> {
    a.checked_add(b).ok_or(LedgerError::Overflow)
}

/// A signed balance moved by `delta` µc (positive or negative), checked.
pub(crate) fn shift(balance: i64, delta: i128) -> Result<i64, LedgerError> {
    i64::try_from(i128::from(balance) + delta).map_err(|_| LedgerError::Overflow)
}
