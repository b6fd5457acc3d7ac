//! Peer exchange: when a connection opens, each side sends the other its own signed
//! announcement, and asks for what the peer holds: every live announcement if this node
//! has not asked anyone lately (it just started), otherwise only those it lacks or holds
//! older (it sends a summary of what it holds: a reconcile). Announcements otherwise
//! travel only when something changes and as a slow refresh (`announce`), so without
//! this a node that joins, or comes back after a restart or a partition, would wait up
//! to a refresh to be known and to know who runs what.
//!
//! What a node that already knew the network learns this way with new offers (a
//! provider that started during a partition, on the other side) it publishes again on
//! gossip: the first connection across a healed cut then tells the whole side, not just
//! the two nodes it joins. Gossip ids are content hashes, so the same announcement
//! published again by many nodes is one message.
//!
//! Nothing here is taken on the peer's word: every announcement passed on is signed by
//! the node it describes and checked like a gossiped one (signature, expiry, signer,
//! publisher claims); the sender's own must be signed by the peer on the connection.
//! Answers are bounded (count and bytes), and a peer gets the full list (or a long
//! difference) at most once per [`FULL_ANSWER_EVERY_MS`].

use super::{Router, reject};
use crate::network::ANNOUNCE_TOPIC;
use libp2p::PeerId;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{
    GossipMessage, MAX_EXCHANGED_ANNOUNCEMENTS, MAX_EXCHANGED_BYTES, PeerExchange, PeerReconcile,
    RejectCode, WorkRequest, WorkResponse,
};
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE};
use mesg_protocol::{Announcement, EnvelopeError, PublicKey, now_ms};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node asks a peer for all it knows at most this often (the first connection after a
/// start asks; the next ones reconcile).
const ASK_KNOWN_EVERY_MS: u64 = 30_000;
/// For this long after asking for all a peer knows, the next connections only swap their
/// own announcements: the full list is on its way (a node that just started opens many
/// connections at once).
const FULL_LIST_PENDING_MS: u64 = 5_000;
/// A peer is answered with all this node knows at most this often; in between, only
/// with this node's own announcement (and a short difference).
pub const FULL_ANSWER_EVERY_MS: u64 = 10_000;
/// A node reconciles with at most one peer per this many ms; other connections opening
/// meanwhile swap own announcements only. The summary costs ~23 bytes per node known,
/// and connections come and go (trims, redials): reconciling on each would make idle
/// traffic grow with the churn (measured: ~1.2 MiB per node per minute at 100 simulated
/// nodes, against ~35 KiB without). One reconcile in this window is enough to heal a
/// cut: what it brings with news is published again on gossip.
const RECONCILE_EVERY_MS: u64 = 10_000;
/// A node reconciles with one connected peer at random this long after it asked a peer
/// for all it knows (its start): announcements published while hundreds of nodes start
/// at once are lost in bulk (measured in the simulation: 103-130 of 499 nodes known by
/// the worst node a minute after a start of 500), and no connection opens at rest to
/// reconcile on.
const ANTI_ENTROPY_FIRST_MS: u64 = 15_000;
/// Then at most this often, counting the reconciles of connections that open: what a
/// node missed since (a lost gossip message) is repaired before the next refresh. The
/// summary costs ~23 bytes per node known, once per this period.
const ANTI_ENTROPY_EVERY_MS: u64 = 60_000;
/// Each node adds up to this much to both periods (chosen once at random): nodes that
/// started together do not reconcile in step.
pub(super) const ANTI_ENTROPY_JITTER_MS: u64 = 10_000;
/// How often the node checks whether a periodic reconcile is due.
pub(super) const ANTI_ENTROPY_TICK: std::time::Duration = std::time::Duration::from_secs(5);
/// A reconcile's difference up to this long is always answered; a longer one counts as a
/// full answer ([`FULL_ANSWER_EVERY_MS`]) and is cut to this when one was given lately.
pub const SHORT_DIFFERENCE: usize = 64;
/// Announcements with news published again on gossip per exchange, at most.
const MAX_REPUBLISHED: usize = 32;
/// Peers remembered for [`FULL_ANSWER_EVERY_MS`]; beyond it old entries are dropped.
const MAX_ANSWERED_PEERS: usize = 4096;

/// What this node asks a peer it has just connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Every live announcement it holds (this node just started or was long alone).
    All,
    /// Nothing but its own (a full list is on its way from another peer).
    OwnOnly,
    /// Those this node lacks or holds older (a reconcile).
    Newer,
}

/// What the exchange remembers between connections.
#[derive(Debug, Default)]
pub(super) struct ExchangeState {
    /// When this node last asked a peer for all it knows (ms).
    last_ask: AtomicU64,
    /// When this node last reconciled with a peer that connected (ms).
    last_reconcile: AtomicU64,
    /// When this node last reconciled with a peer at random (ms). Apart from
    /// `last_reconcile`: a periodic reconcile must not turn the next connection's into
    /// an exchange of own announcements only (the first connection across a healed cut
    /// reconciles, and tells its whole side what the other learned).
    last_periodic: AtomicU64,
    /// When each peer was last answered with all this node knows (ms).
    answered: Mutex<HashMap<PeerId, u64>>,
}

impl ExchangeState {
    /// What to ask the peer being connected to (and note when all was asked).
    fn ask(&self, now: u64) -> Ask {
        let last = self.last_ask.load(Ordering::SeqCst);
        let since = now.saturating_sub(last);
        if since >= ASK_KNOWN_EVERY_MS {
            if self
                .last_ask
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Ask::All;
            }
            return Ask::OwnOnly;
        }
        if since < FULL_LIST_PENDING_MS {
            return Ask::OwnOnly;
        }
        let last = self.last_reconcile.load(Ordering::SeqCst);
        if now.saturating_sub(last) >= RECONCILE_EVERY_MS
            && self
                .last_reconcile
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            Ask::Newer
        } else {
            Ask::OwnOnly
        }
    }

    /// Whether a reconcile with a connected peer is due without a connection opening
    /// (and note that one is made): [`ANTI_ENTROPY_FIRST_MS`] after the last ask for
    /// all, then [`ANTI_ENTROPY_EVERY_MS`] after the last reconcile of either kind,
    /// each plus `jitter`. Never before this node has asked anyone (it has no peer yet).
    fn periodic_reconcile(&self, now: u64, jitter: u64) -> bool {
        let asked = self.last_ask.load(Ordering::SeqCst);
        if asked == 0 {
            return false;
        }
        let periodic = self.last_periodic.load(Ordering::SeqCst);
        let last = periodic.max(self.last_reconcile.load(Ordering::SeqCst));
        let due = if last < asked {
            asked + ANTI_ENTROPY_FIRST_MS
        } else {
            last + ANTI_ENTROPY_EVERY_MS
        } + jitter;
        now >= due
            && self
                .last_periodic
                .compare_exchange(periodic, now, Ordering::SeqCst, Ordering::SeqCst)
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
    /// A connection to `peer` opened: send it what this node runs and ask what it knows
    /// (all of it, or what this node lacks); take what it answers.
    pub(super) async fn exchange_with(&self, peer: PeerId) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let Some(own) = self.own_announcement().await else {
            return;
        };
        let request = match self.exchanges.ask(now_ms()) {
            Ask::All => WorkRequest::Exchange(PeerExchange {
                own,
                want_known: true,
            }),
            Ask::OwnOnly => WorkRequest::Exchange(PeerExchange {
                own,
                want_known: false,
            }),
            Ask::Newer => self.reconcile_request(own),
        };
        self.send_exchange(&net, peer, request).await;
    }

    /// When a periodic reconcile is due ([`ExchangeState::periodic_reconcile`]): send
    /// one to a connected peer chosen at random, and take what it answers (news is
    /// published again, as after a connection's reconcile).
    pub(super) async fn reconcile_if_due(&self, jitter: u64) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        if !self.exchanges.periodic_reconcile(now_ms(), jitter) {
            return;
        }
        let Ok(peers) = net.peers().await else {
            return;
        };
        let connected: Vec<PeerId> = peers
            .iter()
            .filter(|p| p.connected)
            .filter_map(|p| p.peer_id.parse().ok())
            .collect();
        let Some(&peer) = pick(&connected) else {
            return;
        };
        let Some(own) = self.own_announcement().await else {
            return;
        };
        tracing::debug!(%peer, "periodic reconcile");
        self.metrics.periodic_reconciles.inc();
        let request = self.reconcile_request(own);
        self.send_exchange(&net, peer, request).await;
    }

    /// A reconcile: this node's own announcement and a summary of those it holds.
    fn reconcile_request(&self, own: Signed<Announcement>) -> WorkRequest {
        WorkRequest::Reconcile(PeerReconcile {
            own,
            held: self.providers().held_summary(MAX_EXCHANGED_ANNOUNCEMENTS),
        })
    }

    /// Send an exchange or a reconcile to `peer` and take what it answers.
    async fn send_exchange(
        &self,
        net: &crate::network::NetworkHandle,
        peer: PeerId,
        request: WorkRequest,
    ) {
        // A node that knew nobody (it just started) passes nothing on: it would publish
        // the whole network again.
        let knew_others = !self.providers().is_empty();
        // No second try in the older form when this fails: the request would dial the
        // peer again if the connection closed meanwhile (a peer that trims us would be
        // redialled in a loop). An older node without `Reconcile` learns this node from
        // gossip instead.
        match net.send_work(peer, request).await {
            Ok(WorkResponse::Announcements(list)) => {
                self.take_exchanged(peer, list, knew_others).await
            }
            Ok(WorkResponse::Rejected(r)) => {
                tracing::debug!(%peer, "peer exchange refused: {}", r.message)
            }
            Ok(_) => tracing::debug!(%peer, "peer exchange: unexpected answer"),
            // An older node (no such request) or a connection that closed at once.
            Err(e) => tracing::debug!(%peer, "peer exchange failed: {}", e.reason()),
        }
    }

    /// Announcements a peer answered with: each checked on its own, the valid ones
    /// applied; at most [`MAX_EXCHANGED_ANNOUNCEMENTS`] looked at. Those with news are
    /// published again when `pass_on` (this node knew the network before).
    async fn take_exchanged(&self, peer: PeerId, list: Vec<Signed<Announcement>>, pass_on: bool) {
        let mut taken = 0usize;
        let mut dropped = 0usize;
        let mut news = Vec::new();
        for signed in list.into_iter().take(MAX_EXCHANGED_ANNOUNCEMENTS) {
            match check(&signed) {
                Ok(a) => {
                    if self.on_signed_announcement(&signed, a).await {
                        news.push(signed);
                    }
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
        tracing::debug!(%peer, taken, dropped, news = news.len(), "peer exchange answered");
        if pass_on {
            self.republish(news).await;
        }
    }

    /// Publish on gossip announcements learned from a peer exchange that carry news (at
    /// most [`MAX_REPUBLISHED`]): nodes connected to neither side of the exchange learn
    /// them now rather than at their node's next refresh.
    async fn republish(&self, news: Vec<Signed<Announcement>>) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        for signed in news.into_iter().take(MAX_REPUBLISHED) {
            let Ok(frame) =
                wire::encode_frame(&GossipMessage::Announce(signed), MAX_GOSSIP_MESSAGE)
            else {
                continue;
            };
            match net.publish(ANNOUNCE_TOPIC.to_string(), frame).await {
                Ok(()) => {
                    self.metrics.announcements_republished.inc();
                }
                // Already seen on gossip (a duplicate) or no peer on the topic yet.
                Err(e) => tracing::debug!("announcement not published again: {e}"),
            }
        }
    }

    /// A peer's own announcement in its exchange: checked (signed by the peer on the
    /// connection) and applied (published again when it is news); the rejection to
    /// answer otherwise.
    async fn take_own(&self, peer: PeerId, own: &Signed<Announcement>) -> Result<(), WorkResponse> {
        let a = match check(own).and_then(|a| {
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
                return Err(reject(code, e.to_string()));
            }
        };
        let knew_others = !self.providers().is_empty();
        let news = self.on_signed_announcement(own, a).await;
        if news && knew_others {
            self.republish(vec![own.clone()]).await;
        }
        Ok(())
    }

    /// A peer that connected sends what it runs: take it if it is the peer's own, and
    /// answer with ours (and, when asked and not asked lately, the others we hold).
    pub(super) async fn on_exchange(&self, peer: PeerId, exchange: PeerExchange) -> WorkResponse {
        if let Err(rejected) = self.take_own(peer, &exchange.own).await {
            return rejected;
        }
        let Some(mine) = self.own_announcement().await else {
            return own_unsigned();
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

    /// A peer that connected sends what it runs and what it holds: take its own, answer
    /// with ours and those it lacks or holds older (a long difference at most once per
    /// [`FULL_ANSWER_EVERY_MS`], as a full list).
    pub(super) async fn on_reconcile(
        &self,
        peer: PeerId,
        reconcile: PeerReconcile,
    ) -> WorkResponse {
        if reconcile.held.len() > MAX_EXCHANGED_ANNOUNCEMENTS {
            self.metrics.exchange_dropped.inc();
            return reject(
                RejectCode::Malformed,
                format!(
                    "a summary of {} announcements (at most {MAX_EXCHANGED_ANNOUNCEMENTS})",
                    reconcile.held.len()
                ),
            );
        }
        if let Err(rejected) = self.take_own(peer, &reconcile.own).await {
            return rejected;
        }
        let Some(mine) = self.own_announcement().await else {
            return own_unsigned();
        };
        let except = PublicKey::from_peer_id(&peer).unwrap_or_else(|| self.node());
        let mut newer = self.providers().newer_than(
            &except,
            &reconcile.held,
            MAX_EXCHANGED_ANNOUNCEMENTS - 1,
            MAX_EXCHANGED_BYTES - MAX_GOSSIP_MESSAGE,
        );
        if newer.len() > SHORT_DIFFERENCE && !self.exchanges.answer_full(peer, now_ms()) {
            newer.truncate(SHORT_DIFFERENCE);
        }
        let mut list = vec![mine];
        list.extend(newer);
        WorkResponse::Announcements(list)
    }
}

/// One of `peers` at random (none when empty).
fn pick(peers: &[PeerId]) -> Option<&PeerId> {
    use std::hash::BuildHasher;
    if peers.is_empty() {
        return None;
    }
    let r = std::collections::hash_map::RandomState::new().hash_one(now_ms());
    peers.get((r % peers.len() as u64) as usize)
}

fn own_unsigned() -> WorkResponse {
    reject(
        RejectCode::Internal,
        "this node cannot sign its announcement",
    )
}

#[cfg(test)]
mod tests {
    use super::{
        ANTI_ENTROPY_EVERY_MS, ANTI_ENTROPY_FIRST_MS, ASK_KNOWN_EVERY_MS, Ask, ExchangeState,
        FULL_ANSWER_EVERY_MS, FULL_LIST_PENDING_MS, RECONCILE_EVERY_MS,
    };
    use libp2p::PeerId;

    #[test]
    fn a_node_asks_for_all_once_per_window_and_reconciles_in_between() {
        let s = ExchangeState::default();
        let t = 1_000_000;
        assert_eq!(s.ask(t), Ask::All, "the first connection asks for all");
        assert_eq!(
            s.ask(t + 10),
            Ask::OwnOnly,
            "the next ones, while the full list is on its way, swap their own only"
        );
        assert_eq!(
            s.ask(t + FULL_LIST_PENDING_MS),
            Ask::Newer,
            "a later one asks for what this node lacks"
        );
        assert_eq!(
            s.ask(t + FULL_LIST_PENDING_MS + 1),
            Ask::OwnOnly,
            "one reconcile per window"
        );
        assert_eq!(
            s.ask(t + FULL_LIST_PENDING_MS + RECONCILE_EVERY_MS),
            Ask::Newer
        );
        assert_eq!(
            s.ask(t + ASK_KNOWN_EVERY_MS),
            Ask::All,
            "and all again after the window"
        );
    }

    #[test]
    fn a_node_reconciles_soon_after_its_start_then_once_a_period_whatever_connects() {
        let s = ExchangeState::default();
        let jitter = 3_000;
        assert!(
            !s.periodic_reconcile(10_000_000, jitter),
            "a node that has asked no one (no peer yet) has nothing to reconcile with"
        );
        let t = 1_000_000;
        assert_eq!(s.ask(t), Ask::All);
        let first = t + ANTI_ENTROPY_FIRST_MS + jitter;
        assert!(!s.periodic_reconcile(first - 1, jitter));
        assert!(s.periodic_reconcile(first, jitter), "soon after the start");
        assert!(!s.periodic_reconcile(first + 1, jitter), "once");
        let next = first + ANTI_ENTROPY_EVERY_MS + jitter;
        assert!(!s.periodic_reconcile(next - 1, jitter));
        assert!(s.periodic_reconcile(next, jitter), "then once a period");
        // After a new ask for all (a connection after a while), soon again.
        let asked = next + ASK_KNOWN_EVERY_MS;
        assert_eq!(s.ask(asked), Ask::All);
        let soon = asked + ANTI_ENTROPY_FIRST_MS + jitter;
        assert!(!s.periodic_reconcile(soon - 1, jitter));
        assert!(s.periodic_reconcile(soon, jitter));
        // A connection's reconcile counts: the periodic one waits a period after it.
        let t = 50_000_000;
        let s = ExchangeState::default();
        assert_eq!(s.ask(t), Ask::All);
        let connected = t + FULL_LIST_PENDING_MS;
        assert_eq!(s.ask(connected), Ask::Newer);
        assert!(!s.periodic_reconcile(t + ANTI_ENTROPY_FIRST_MS + jitter, jitter));
        let due = connected + ANTI_ENTROPY_EVERY_MS + jitter;
        assert!(!s.periodic_reconcile(due - 1, jitter));
        assert!(s.periodic_reconcile(due, jitter));
        // ...but a periodic one does not take the next connection's reconcile.
        let s = ExchangeState::default();
        assert_eq!(s.ask(t), Ask::All);
        let periodic = t + ANTI_ENTROPY_FIRST_MS + jitter;
        assert!(s.periodic_reconcile(periodic, jitter));
        assert_eq!(
            s.ask(periodic + 1),
            Ask::Newer,
            "a connection right after a periodic reconcile still reconciles"
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
