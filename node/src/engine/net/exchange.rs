//! Peer exchange: when a connection opens, each side sends the other its own signed
//! announcement, and a node that has not asked anyone lately also asks for every live
//! announcement the peer holds. Announcements otherwise travel only when something
//! changes and as a slow refresh (`announce`), so without this a node that joins, or
//! comes back after a restart or a partition, would wait up to a refresh to be known and
//! to know who runs what.
//!
//! Nothing here is taken on the peer's word: every announcement passed on is signed by
//! the node it describes and checked like a gossiped one (signature, expiry, signer,
//! publisher claims); the sender's own must be signed by the peer on the connection.
//! Answers are bounded (count and bytes), and a peer gets the full list at most once per
//! [`FULL_ANSWER_EVERY_MS`].

use super::{Router, reject};
use libp2p::PeerId;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{
    MAX_EXCHANGED_ANNOUNCEMENTS, MAX_EXCHANGED_BYTES, PeerExchange, RejectCode, WorkRequest,
    WorkResponse,
};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_GOSSIP_MESSAGE;
use mesg_protocol::{Announcement, EnvelopeError, PublicKey, now_ms};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node asks a peer for all it knows at most this often (the first connection after a
/// start or a partition asks; the next ones within this window only swap their own).
const ASK_KNOWN_EVERY_MS: u64 = 30_000;
/// A peer is answered with all this node knows at most this often; in between, only
/// with this node's own announcement.
pub const FULL_ANSWER_EVERY_MS: u64 = 10_000;
/// Peers remembered for [`FULL_ANSWER_EVERY_MS`]; beyond it old entries are dropped.
const MAX_ANSWERED_PEERS: usize = 4096;

/// What the exchange remembers between connections.
#[derive(Debug, Default)]
pub(super) struct ExchangeState {
    /// When this node last asked a peer for all it knows (ms).
    last_ask: AtomicU64,
    /// When each peer was last answered with all this node knows (ms).
    answered: Mutex<HashMap<PeerId, u64>>,
}

impl ExchangeState {
    /// Whether to ask the peer being connected to for all it knows (and note that we did).
    fn ask_known(&self, now: u64) -> bool {
        let last = self.last_ask.load(Ordering::SeqCst);
        now.saturating_sub(last) >= ASK_KNOWN_EVERY_MS
            && self
                .last_ask
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// Whether `peer` may be given the full list now (and note that it was).
    fn answer_full(&self, peer: PeerId, now: u64) -> bool {
        let mut answered = self.answered.lock().expect("exchange lock");
        if answered
            .get(&peer)
            .is_some_and(|t| now.saturating_sub(*t) < FULL_ANSWER_EVERY_MS)
        {
            return false;
        }
        if answered.len() >= MAX_ANSWERED_PEERS {
            answered.retain(|_, t| now.saturating_sub(*t) < FULL_ANSWER_EVERY_MS);
            if answered.len() >= MAX_ANSWERED_PEERS {
                return false;
            }
        }
        answered.insert(peer, now);
        true
    }
}

/// Why an exchanged announcement was not taken.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("announcement does not verify: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("the sender's own announcement is signed by {signer}, not by the sender")]
    NotOwn { signer: PublicKey },
}

/// Check a signed announcement as a gossiped one is checked (signature, domain, expiry,
/// signer = the node it describes).
fn check(signed: &Signed<Announcement>) -> Result<Announcement, ExchangeError> {
    Ok(signed.verify(domains::ANNOUNCEMENT, now_ms(), MAX_GOSSIP_MESSAGE)?)
}

impl Router {
    /// A connection to `peer` opened: send it what this node runs (and ask what it knows,
    /// if this node has not asked anyone lately); take what it answers.
    pub(super) async fn exchange_with(&self, peer: PeerId) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let Some(own) = self.own_announcement().await else {
            return;
        };
        let want_known = self.exchanges.ask_known(now_ms());
        let request = WorkRequest::Exchange(PeerExchange { own, want_known });
        match net.send_work(peer, request).await {
            Ok(WorkResponse::Announcements(list)) => self.take_exchanged(peer, list).await,
            Ok(WorkResponse::Rejected(r)) => {
                tracing::debug!(%peer, "peer exchange refused: {}", r.message)
            }
            Ok(_) => tracing::debug!(%peer, "peer exchange: unexpected answer"),
            // An older node (no such request) or a connection that closed at once.
            Err(e) => tracing::debug!(%peer, "peer exchange failed: {}", e.reason()),
        }
    }

    /// Announcements a peer answered with: each checked on its own, the valid ones
    /// applied; at most [`MAX_EXCHANGED_ANNOUNCEMENTS`] looked at.
    async fn take_exchanged(&self, peer: PeerId, list: Vec<Signed<Announcement>>) {
        let mut taken = 0usize;
        let mut dropped = 0usize;
        for signed in list.into_iter().take(MAX_EXCHANGED_ANNOUNCEMENTS) {
            match check(&signed) {
                Ok(a) => {
                    self.on_signed_announcement(&signed, a).await;
                    taken += 1;
                }
                Err(e) => {
                    dropped += 1;
                    tracing::debug!(%peer, "exchanged announcement dropped: {e}");
                }
            }
        }
        if dropped > 0 {
            self.metrics.exchange_dropped.inc_by(dropped as u64);
        }
        tracing::debug!(%peer, taken, dropped, "peer exchange answered");
    }

    /// A peer that connected sends what it runs: take it if it is the peer's own, and
    /// answer with ours (and, when asked and not asked lately, the others we hold).
    pub(super) async fn on_exchange(&self, peer: PeerId, exchange: PeerExchange) -> WorkResponse {
        let own = match check(&exchange.own).and_then(|a| {
            if PublicKey::from_peer_id(&peer) == Some(a.node) {
                Ok(a)
            } else {
                Err(ExchangeError::NotOwn { signer: a.node })
            }
        }) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.exchange_dropped.inc();
                let code = match e {
                    ExchangeError::NotOwn { .. } => RejectCode::WrongNode,
                    ExchangeError::Envelope(EnvelopeError::Expired { .. }) => RejectCode::Expired,
                    ExchangeError::Envelope(_) => RejectCode::BadSignature,
                };
                return reject(code, e.to_string());
            }
        };
        self.on_signed_announcement(&exchange.own, own).await;
        let Some(mine) = self.own_announcement().await else {
            return reject(
                RejectCode::Internal,
                "this node cannot sign its announcement",
            );
        };
        let mut list = vec![mine];
        if exchange.want_known && self.exchanges.answer_full(peer, now_ms()) {
            let except = PublicKey::from_peer_id(&peer).unwrap_or_else(|| self.node());
            list.extend(self.providers().signed_announcements(
                &except,
                MAX_EXCHANGED_ANNOUNCEMENTS - 1,
                MAX_EXCHANGED_BYTES - MAX_GOSSIP_MESSAGE,
            ));
        }
        WorkResponse::Announcements(list)
    }
}

#[cfg(test)]
mod tests {
    use super::{ASK_KNOWN_EVERY_MS, ExchangeState, FULL_ANSWER_EVERY_MS};
    use libp2p::PeerId;

    #[test]
    fn a_node_asks_for_all_it_may_know_once_per_window() {
        let s = ExchangeState::default();
        let t = 1_000_000;
        assert!(s.ask_known(t), "the first connection asks");
        assert!(!s.ask_known(t + 10), "the next ones only swap their own");
        assert!(
            s.ask_known(t + ASK_KNOWN_EVERY_MS),
            "and again after the window"
        );
    }

    #[test]
    fn a_peer_gets_the_full_list_at_most_once_per_window() {
        let s = ExchangeState::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t = 5_000_000;
        assert!(s.answer_full(a, t));
        assert!(
            !s.answer_full(a, t + 1),
            "asking again at once gets only our own"
        );
        assert!(s.answer_full(b, t + 1), "another peer is answered");
        assert!(s.answer_full(a, t + FULL_ANSWER_EVERY_MS));
    }
}
