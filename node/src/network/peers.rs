//! The peers the swarm keeps connections to: bootstrap addresses (dialled for ever),
//! peers learned from identify and announcements (redialled with backoff, a bounded
//! number of times), and the peer list the API shows.
//!
//! Every dial and connection change is logged with its `peer`, so one peer's
//! connection history can be followed in the logs.

use super::behaviour::Behaviour;
use super::{MAX_REDIALS, NetError, PeerInfo, addrs};
use libp2p::core::ConnectedPoint;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, Swarm};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// After giving up on a peer's addresses, how long new announcements of it are not
/// dialled (a connection from it ends this at once).
const REDIAL_COOLDOWN: Duration = Duration::from_secs(600);

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A peer worth keeping a connection to, and when to try again.
struct Redial {
    addrs: Vec<Multiaddr>,
    backoff: Duration,
    next: Instant,
    /// Dials since the last connection (see [`MAX_REDIALS`]).
    attempts: u32,
    /// When the addresses were given up on after [`MAX_REDIALS`] failed dials.
    gave_up_at: Option<Instant>,
}

impl Redial {
    fn new(addrs: Vec<Multiaddr>, next: Instant) -> Redial {
        Redial {
            addrs,
            backoff: MIN_BACKOFF,
            next,
            attempts: 0,
            gave_up_at: None,
        }
    }

    /// Whether to dial now (and schedule the next try). `limit`: dials in a row without a
    /// connection before giving up (its addresses are forgotten); none for bootstrap
    /// addresses, which the operator gave.
    fn due(&mut self, now: Instant, limit: Option<u32>) -> bool {
        if self.next > now || self.addrs.is_empty() {
            return false;
        }
        if limit.is_some_and(|l| self.attempts >= l) {
            self.addrs.clear();
            self.gave_up_at = Some(now);
            return false;
        }
        self.attempts += 1;
        self.next = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }

    /// Connected: the next loss starts over.
    fn connected(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.attempts = 0;
        self.gave_up_at = None;
    }

    /// Addresses from a new announcement: tried again, unless this peer's addresses
    /// were given up on less than [`REDIAL_COOLDOWN`] ago (a peer announcing again and
    /// again must not keep us dialling).
    fn announced(&mut self, addrs: Vec<Multiaddr>, now: Instant) {
        if self
            .gave_up_at
            .is_some_and(|t| now.duration_since(t) < REDIAL_COOLDOWN)
        {
            return;
        }
        if self.gave_up_at.take().is_some() {
            self.attempts = 0;
            self.backoff = MIN_BACKOFF;
        }
        for a in addrs {
            if !self.addrs.contains(&a) {
                self.addrs.push(a);
            }
        }
        // Never more than the cap in all (identify's first, then announced ones).
        self.addrs.truncate(addrs::MAX_REMOTE_ADDRS);
    }
}

/// Who to stay connected to, and how dialling them is going.
pub(super) struct PeerBook {
    /// Bootstrap addresses (by address: their peer id may be unknown until connected).
    bootstrap: HashMap<Multiaddr, Redial>,
    bootstrap_peers: HashMap<PeerId, Multiaddr>,
    /// Peers we were connected to, with the addresses they listen on.
    known: HashMap<PeerId, Redial>,
    /// Whether peers' loopback and private addresses may be dialled ([`addrs`]).
    private_network: bool,
}

impl PeerBook {
    pub(super) fn new(bootstrap: Vec<Multiaddr>, private_network: bool) -> PeerBook {
        let now = Instant::now();
        PeerBook {
            bootstrap: bootstrap
                .into_iter()
                .map(|a| (a.clone(), Redial::new(vec![a], now)))
                .collect(),
            bootstrap_peers: HashMap::new(),
            known: HashMap::new(),
            private_network,
        }
    }

    /// Addresses of a peer from its signed announcement: filtered, given to Kademlia,
    /// and dialled when not connected.
    pub(super) fn add_addresses(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) {
        let (addrs, dropped) = addrs::filter_remote(addrs, self.private_network);
        if dropped > 0 {
            tracing::debug!(peer = %peer, dropped, "announced addresses not taken");
        }
        for a in &addrs {
            swarm.behaviour_mut().kad.add_address(&peer, a.clone());
        }
        if peer != *swarm.local_peer_id() && !addrs.is_empty() {
            let now = Instant::now();
            self.known
                .entry(peer)
                .or_insert_with(|| Redial::new(Vec::new(), now))
                .announced(addrs, now);
        }
    }

    /// What a peer says it listens on (identify): same policy as announcements; these
    /// replace the addresses we had for it.
    pub(super) fn on_identify(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        listen_addrs: Vec<Multiaddr>,
    ) {
        let (addrs, _) = addrs::filter_remote(listen_addrs, self.private_network);
        for a in &addrs {
            swarm.behaviour_mut().kad.add_address(&peer, a.clone());
        }
        let entry = self
            .known
            .entry(peer)
            .or_insert_with(|| Redial::new(Vec::new(), Instant::now()));
        entry.addrs = addrs;
    }

    /// Dial an address the node was asked to (its peer id may be unknown).
    pub(super) fn dial(
        swarm: &mut Swarm<Behaviour>,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    ) {
        let r = swarm.dial(addr.clone()).map_err(|e| NetError::Unreachable {
            peer: PeerId::random(),
            reason: format!("{addr}: {e}"),
        });
        let _ = reply.send(r);
    }

    /// Known and connected peers, sorted by id.
    pub(super) fn list(&self, swarm: &Swarm<Behaviour>) -> Vec<PeerInfo> {
        let connected: HashSet<PeerId> = swarm.connected_peers().copied().collect();
        let mut peers: Vec<PeerInfo> = self
            .known
            .iter()
            .map(|(p, r)| PeerInfo {
                peer_id: p.to_string(),
                addrs: r.addrs.iter().map(|a| a.to_string()).collect(),
                connected: connected.contains(p),
            })
            .collect();
        for p in &connected {
            if !self.known.contains_key(p) {
                peers.push(PeerInfo {
                    peer_id: p.to_string(),
                    addrs: Vec::new(),
                    connected: true,
                });
            }
        }
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }

    /// Dial bootstrap addresses and lost peers whose backoff has passed.
    pub(super) fn redial(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        let connected: HashSet<PeerId> = swarm.connected_peers().copied().collect();
        let bootstrap_up: HashSet<&Multiaddr> = self
            .bootstrap_peers
            .iter()
            .filter(|(p, _)| connected.contains(p))
            .map(|(_, a)| a)
            .collect();
        let mut dials = Vec::new();
        for (addr, r) in self.bootstrap.iter_mut() {
            if !bootstrap_up.contains(addr) && r.due(now, None) {
                let span = tracing::debug_span!("dial", bootstrap = %addr);
                dials.push((
                    span,
                    r.attempts,
                    DialOpts::unknown_peer_id().address(addr.clone()).build(),
                ));
            }
        }
        for (peer, r) in self.known.iter_mut() {
            if connected.contains(peer) {
                continue;
            }
            if r.due(now, Some(MAX_REDIALS)) {
                let span = tracing::debug_span!("dial", peer = %peer);
                dials.push((
                    span,
                    r.attempts,
                    DialOpts::peer_id(*peer).addresses(r.addrs.clone()).build(),
                ));
            } else if r.gave_up_at == Some(now) {
                tracing::debug!(peer = %peer, "not redialled any more after {} failed dials", r.attempts);
            }
        }
        for (span, attempt, d) in dials {
            let _entered = span.enter();
            tracing::debug!(attempt, "redialling");
            if let Err(e) = swarm.dial(d) {
                tracing::debug!(attempt, "redial: {e}");
            }
        }
    }

    /// A connection is up: a bootstrap address it came from is known by its peer now,
    /// and the peer's backoff starts over.
    pub(super) fn on_connected(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            let base = strip_p2p(address);
            for key in [address.clone(), base] {
                if let Some(r) = self.bootstrap.get_mut(&key) {
                    r.connected();
                    self.bootstrap_peers.insert(peer, key);
                }
            }
        }
        if let Some(r) = self.known.get_mut(&peer) {
            r.connected();
        }
    }

    /// The last connection to `peer` closed: it is dialled again after its backoff.
    pub(super) fn on_disconnected(&mut self, peer: PeerId) {
        if let Some(r) = self.known.get_mut(&peer) {
            r.next = Instant::now() + r.backoff;
        }
    }

    /// A dial failed (logged only: the backoff already counts the attempt).
    pub(super) fn on_dial_failed(peer: Option<PeerId>, error: &DialError) {
        match peer {
            Some(peer) => tracing::debug!(peer = %peer, "dial failed: {error}"),
            None => tracing::debug!("dial failed: {error}"),
        }
    }
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{MAX_BACKOFF, MAX_REDIALS, REDIAL_COOLDOWN, Redial};
    use libp2p::Multiaddr;
    use std::time::Instant;

    #[test]
    fn peers_learned_from_the_network_are_redialled_a_bounded_number_of_times() {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
        let mut now = Instant::now();
        let mut r = Redial::new(vec![addr.clone()], now);
        let mut dials = 0;
        for _ in 0..100 {
            if r.due(now, Some(MAX_REDIALS)) {
                dials += 1;
            }
            if r.gave_up_at.is_some() {
                break;
            }
            now += MAX_BACKOFF;
        }
        assert_eq!(dials, MAX_REDIALS);
        now += MAX_BACKOFF;
        assert!(!r.due(now, Some(MAX_REDIALS)));
        assert!(r.addrs.is_empty(), "addresses forgotten");
        // A new announcement soon after does not start it again...
        r.announced(vec![addr.clone()], now);
        assert!(!r.due(now, Some(MAX_REDIALS)));
        // ...after the cooldown it does, and a connection resets everything.
        now += REDIAL_COOLDOWN;
        r.announced(vec![addr.clone()], now);
        assert!(r.due(now, Some(MAX_REDIALS)));
        r.connected();
        assert_eq!(r.attempts, 0);
        // Bootstrap addresses (no limit) are dialled for ever.
        let mut b = Redial::new(vec![addr], now);
        let mut dials = 0;
        for _ in 0..100 {
            if b.due(now, None) {
                dials += 1;
            }
            now += MAX_BACKOFF;
        }
        assert_eq!(dials, 100);
    }
}
