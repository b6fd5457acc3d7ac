//! Reservations: the cap of each priced request a requester node has running here, held
//! against its credit limit until the execution ends. Kept in memory, not in the ledger's
//! tree: a reservation lasts as long as an open execution, and the store's open
//! executions carry their `max_price`, so the node rebuilds them at start
//! ([`Ledger::restore_reservations`]) and a submit costs no ledger write, no signature and
//! no log bytes. Nothing is owed by a reservation; the receipt books the actual amount.
//!
//! The limit is checked against what the peer owes (its account, on disk) plus what is
//! reserved (here) plus the new cap, under one lock. A receipt's debit is written before
//! its reservation is let go (`Ledger::issue`), so a concurrent check may count an
//! execution twice for a moment (refusing early), never zero times.

use super::{Account, Ledger, LedgerError};
use mesg_protocol::{ExecutionId, PublicKey};
use std::collections::HashMap;

/// The caps held per execution, and their sum per peer.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    by_execution: HashMap<ExecutionId, (PublicKey, u64)>,
    by_peer: HashMap<PublicKey, u64>,
}

impl Reservations {
    /// µc reserved against `peer`.
    pub(crate) fn of(&self, peer: &PublicKey) -> u64 {
        self.by_peer.get(peer).copied().unwrap_or(0)
    }

    fn hold(&mut self, peer: PublicKey, id: ExecutionId, amount: u64) {
        if self.by_execution.insert(id, (peer, amount)).is_none() {
            let sum = self.by_peer.entry(peer).or_default();
            *sum = sum.saturating_add(amount);
        }
    }

    fn let_go(&mut self, id: &ExecutionId) -> bool {
        let Some((peer, amount)) = self.by_execution.remove(id) else {
            return false;
        };
        if let Some(sum) = self.by_peer.get_mut(&peer) {
            *sum = sum.saturating_sub(amount);
            if *sum == 0 {
                self.by_peer.remove(&peer);
            }
        }
        true
    }
}

impl Ledger {
    fn reservations_lock(&self) -> std::sync::MutexGuard<'_, Reservations> {
        self.reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserve `amount` (a request's cap) against `peer` for execution `id`, unless what
    /// the peer owes, what is reserved and this amount pass its credit limit. Idempotent
    /// per execution.
    pub fn reserve(
        &self,
        peer: &PublicKey,
        id: &ExecutionId,
        amount: u64,
    ) -> Result<(), LedgerError> {
        let mut held = self.reservations_lock();
        if held.by_execution.contains_key(id) {
            return Ok(());
        }
        let account = self.stored_account(peer)?;
        let limit = account.limit.unwrap_or(self.default_limit);
        let owed = account.owed();
        let reserved = held.of(peer);
        let total = owed
            .checked_add(reserved)
            .and_then(|x| x.checked_add(amount));
        if total.is_none_or(|total| total > limit) {
            return Err(LedgerError::CreditLimit {
                peer: *peer,
                owed,
                reserved,
                cost: amount,
                limit,
            });
        }
        held.hold(*peer, *id, amount);
        Ok(())
    }

    /// Let go of execution `id`'s reservation, if it has one (it ended, failed, was
    /// receipted or was not accepted). Whether it had one.
    pub fn release(&self, id: &ExecutionId) -> bool {
        self.reservations_lock().let_go(id)
    }

    /// At start: the reservations of the open executions run here for other nodes, each
    /// `(requester node, execution, cap)`, held again whatever the limits say now (they
    /// were accepted).
    pub fn restore_reservations(
        &self,
        open: impl IntoIterator<Item = (PublicKey, ExecutionId, u64)>,
    ) {
        let mut held = self.reservations_lock();
        for (peer, id, amount) in open {
            held.hold(peer, id, amount);
        }
    }

    /// The executions holding a reservation.
    pub fn reservations(&self) -> Vec<ExecutionId> {
        self.reservations_lock()
            .by_execution
            .keys()
            .copied()
            .collect()
    }

    /// `account` of `peer` as shown: with what is reserved against it now.
    pub(crate) fn with_reserved(&self, peer: &PublicKey, mut account: Account) -> Account {
        account.reserved = self.reservations_lock().of(peer);
        account
    }
}
