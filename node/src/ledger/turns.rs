//! Receipts of one executor booked in their order. Under load an executor's receipts reach
//! this node out of order (their results travel concurrently), and a receipt ahead of its
//! chain is held, answered `Held`, and booked later on its own: more writes on both
//! nodes, and its execution's charge noted apart from its end. So a receipt whose
//! predecessors are on their way first waits a moment for them ([`Ledger::wait_turn`]);
//! only past that patience is it held. Nothing about what is booked changes: the order
//! only spares the held path's extra work.

use super::Ledger;
use super::records::{AcceptedPair, key};
use mesg_protocol::PublicKey;
use std::time::{Duration, Instant};

impl Ledger {
    /// The sequence number the chain from `executor` expects next.
    fn next_expected(&self, executor: &PublicKey) -> u64 {
        match self.tree.get(key::peer(key::ACCEPTED_PAIR, executor)) {
            Ok(Some(v)) => super::dec::<AcceptedPair>(&v).map_or(0, |p| p.state.sequence + 1),
            Ok(None) => 1,
            // Unreadable: do not wait (the booking will say what is wrong).
            Err(_) => 0,
        }
    }

    /// Wait (at most `patience`) until the receipt `sequence` from `executor` is next in
    /// its chain (or behind it).
    pub async fn wait_turn(&self, executor: &PublicKey, sequence: u64, patience: Duration) {
        let until = Instant::now() + patience;
        loop {
            let moved = self.chain_moved.notified();
            tokio::pin!(moved);
            // Registered before the check: a booking after it wakes this wait.
            moved.as_mut().enable();
            if sequence <= self.next_expected(executor) {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, moved).await.is_err() {
                return;
            }
        }
    }

    /// A booking was made or refused: receipts waiting for their turn look again.
    pub(crate) fn chain_moved(&self) {
        self.chain_moved.notify_waiters();
    }
}
