//! The engine's public surface for the economy's ledger: accounts, the log, limits,
//! settlement, and the receipt of one execution, as the API shows them.

use super::{Engine, EngineError};
use crate::ledger::{AccountView, LogRecord, ReceiptStatus};
use mesg_api_types::{LedgerAccount, LedgerAccounts, LedgerEntry, LedgerLog, ReceiptView};
use mesg_protocol::economy::{Cost, MAX_RECEIPT_BYTES, UsageReceipt};
use mesg_protocol::envelope::Signed;
use mesg_protocol::{Execution, ExecutionId, ExecutionStatus, PublicKey};

/// Entries of `GET /v1/ledger/log` without a `limit`.
pub const DEFAULT_LOG_LIMIT: usize = 100;

impl Engine {
    pub fn ledger_accounts(&self) -> Result<LedgerAccounts, EngineError> {
        let books = self.books();
        Ok(LedgerAccounts {
            default_limit: books.default_limit(),
            accounts: books.accounts()?.into_iter().map(account_view).collect(),
        })
    }

    pub fn ledger_log(&self, limit: Option<usize>) -> Result<LedgerLog, EngineError> {
        let limit = limit.unwrap_or(DEFAULT_LOG_LIMIT);
        Ok(LedgerLog {
            entries: self
                .books()
                .log(limit)?
                .into_iter()
                .map(entry_view)
                .collect(),
        })
    }

    /// Set (or with None, remove) a peer's own credit limit; durable when it returns.
    pub async fn set_credit_limit(
        &self,
        peer: &PublicKey,
        limit: Option<u64>,
    ) -> Result<LedgerAccount, EngineError> {
        self.books().set_limit(peer, limit)?;
        self.store().persist().await?;
        let account = self.books().account(peer)?;
        Ok(account_view(AccountView {
            peer: *peer,
            limit: account.limit.unwrap_or(self.books().default_limit()),
            account,
        }))
    }

    /// The signed receipt of an execution, on whichever side this node is: the one it
    /// issued (executor) or the one it received (requester), whatever became of it.
    pub fn receipt_proof(&self, id: &ExecutionId) -> Result<Signed<UsageReceipt>, EngineError> {
        let books = self.books();
        if let Some(r) = books.issued(id)? {
            return Ok(r.receipt);
        }
        if let Some(r) = books.received(id)? {
            return Ok(r.receipt);
        }
        Err(EngineError::NotFound {
            what: "receipt of execution (a free task, a call made on its executor's node, or not ended)",
            id: id.to_string(),
        })
    }

    /// The verification record of a verified execution requested on this node.
    pub fn verification_record(
        &self,
        id: &ExecutionId,
    ) -> Result<mesg_protocol::verification::VerificationRecord, EngineError> {
        self.parts
            .router
            .verifications()
            .get(id)?
            .ok_or_else(|| EngineError::NotFound {
                what: "verification record of execution (not a verified execution requested on this node)",
                id: id.to_string(),
            })
    }

    /// An execution with what it cost this node as requester when its receipt came apart
    /// from its result (`WorkRequest::Receipts`): read from the booked receipt. Not
    /// written on the execution when booked: that rewrite was a second write per priced
    /// execution under load (an execution whose receipt came with its result has the
    /// cost in its end's write already).
    pub fn with_booked_cost(&self, mut e: Execution) -> Execution {
        if e.cost.is_some()
            || e.status != ExecutionStatus::Completed
            || e.requester_node != self.node_key()
        {
            return e;
        }
        if let Ok(Some(r)) = self.books().received(&e.id)
            && r.status == ReceiptStatus::Accepted
            && let Ok(receipt) = r.receipt.payload_unverified(MAX_RECEIPT_BYTES)
        {
            e.cost = Some(Cost {
                usage: receipt.usage,
                price: receipt.price,
                max_price: e.max_price,
                amount: receipt.amount,
            });
        }
        e
    }

    /// The receipt of an execution, on whichever side this node is.
    pub fn receipt_view(&self, id: &ExecutionId) -> Option<ReceiptView> {
        let books = self.books();
        if let Ok(Some(r)) = books.issued(id) {
            let (status, reason) = split(&r.status);
            return Some(ReceiptView {
                role: "executor".into(),
                status,
                reason,
                peer: r.requester,
                sequence: r.sequence,
                amount: r.amount,
            });
        }
        if let Ok(Some(r)) = books.received(id) {
            let (status, reason) = split(&r.status);
            return Some(ReceiptView {
                role: "requester".into(),
                status,
                reason,
                peer: r.executor,
                sequence: r.sequence,
                amount: r.amount,
            });
        }
        None
    }
}

fn split(status: &ReceiptStatus) -> (String, Option<String>) {
    match status {
        ReceiptStatus::Issued => ("issued".into(), None),
        ReceiptStatus::Accepted => ("accepted".into(), None),
        ReceiptStatus::Held => ("held".into(), None),
        ReceiptStatus::Rejected { code, reason } => {
            ("rejected".into(), Some(format!("{code}: {reason}")))
        }
    }
}

fn account_view(v: AccountView) -> LedgerAccount {
    let a = v.account;
    LedgerAccount {
        peer: v.peer,
        balance: a.balance,
        reserved: a.reserved,
        limit: v.limit,
        own_limit: a.limit.is_some(),
        issued: a.issued,
        acked: a.acked,
        accepted: a.accepted,
        shares: a.shares,
        paid: a.paid,
        received: a.received,
        rejected: a.rejected,
        voided: a.voided,
        last_receipt: a.last_receipt,
    }
}

fn entry_view(r: LogRecord) -> LedgerEntry {
    LedgerEntry {
        seq: r.entry.seq,
        time: r.entry.time,
        kind: r.entry.kind.as_str().into(),
        peer: r.entry.peer,
        execution_id: r.entry.execution_id,
        amount: r.entry.amount,
        reason: r.entry.reason,
        hash: r.hash.to_string(),
    }
}
