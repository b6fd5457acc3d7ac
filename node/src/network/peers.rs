//! The peers the swarm keeps connections to: bootstrap addresses (dialled for ever while
//! the node has too few peers), peers learned from identify and announcements (dialled
//! while the node has fewer than its target, redialled with backoff a bounded number of
//! times), the connections trimmed when there are more than the most allowed, and the
//! peer list the API shows.
//!
//! Why a target and not everyone: a node that dials every node it hears of ends up in a
//! full mesh, N connections per node (each with its pings, gossip and Kademlia upkeep).
//! With a target, a node dials random known peers until it has that many and closes
//! random idle ones above the most allowed: a random graph of degree ≥ target, which is
//! connected with overwhelming probability, and announcements and events cross it in a
//! few gossip hops. Work does not need a standing connection: a request to a peer that
//! is not connected dials it on demand, and a peer with work in flight in the last
//! [`WORK_PROTECTION`] is never trimmed.
//!
//! Every dial and connection change is logged with its `peer`, so one peer's
//! connection history can be followed in the logs.

use super::behaviour::Behaviour;
use super::conn_stats::{ConnStats, Origin};
use super::{MAX_REDIALS, NetError, PeerInfo, addrs};
use libp2p::core::ConnectedPoint;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, Swarm};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// After giving up on a peer's addresses, how long new announcements of it are not
/// dialled (a connection from it ends this at once).
const REDIAL_COOLDOWN: Duration = Duration::from_secs(600);

/// A peer with work (or packages) going either way this recently is not trimmed.
pub(super) const WORK_PROTECTION: Duration = Duration::from_secs(30);

/// A peer asked for a service record (one answer) is not trimmed for this long.
const LOOKUP_PROTECTION: Duration = Duration::from_secs(5);

/// A peer trimmed for being one too many is not dialled again for this long (unless the
/// node falls to no connection at all).
const TRIM_COOLDOWN: Duration = Duration::from_secs(600);

/// A connection that lasted this long was not closed for being one too many: when it
/// ends, the peer is redialled from the shortest backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// A peer that dialled in, or that Kademlia dialled, does not count toward the bound
/// for this long: many such connections are a query's (ours or the peer's), closed
/// after [`KADEMLIA_IDLE`]; counted at once, they pushed nodes above the most allowed,
/// whose trims were answered by redials. Short, so that a node above its bound trims
/// soon (a node joining dials in, and its connections must count).
const SETTLE: Duration = Duration::from_secs(5);

/// A peer connected only by Kademlia's dials (its queries), without work, is closed
/// this long after it connected once the node has its target of other peers (kept,
/// such a connection would count like any other; before that, it is idle for 2 minutes
/// before it closes). Shorter than [`SETTLE`]: the peer closes it before counting it.
const KADEMLIA_IDLE: Duration = Duration::from_secs(3);

/// Dials started per tick at most (a node far below its target does not open hundreds
/// of dials at once).
const MAX_DIALS_PER_TICK: usize = 8;

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
    /// When the current connection opened (known peers).
    connected_at: Option<Instant>,
}

impl Redial {
    fn new(addrs: Vec<Multiaddr>, next: Instant) -> Redial {
        Redial {
            addrs,
            backoff: MIN_BACKOFF,
            next,
            attempts: 0,
            gave_up_at: None,
            connected_at: None,
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

    /// Whether its time has come (without counting a dial; see [`Redial::due`]).
    fn ready(&self, now: Instant) -> bool {
        self.next <= now && !self.addrs.is_empty()
    }

    /// A connection to the peer (or through the bootstrap address) opened. The backoff
    /// is kept until the connection proves stable ([`Redial::lost`]): a peer that closes
    /// our connections at once (it has too many) is not dialled again every half second.
    fn opened(&mut self, now: Instant) {
        self.attempts = 0;
        self.gave_up_at = None;
        self.connected_at = Some(now);
    }

    /// The peer's last connection closed: dialled again after the backoff, which
    /// starts over if the connection lasted [`STABLE_CONNECTION`] (a restart, a cut) and
    /// doubles if it did not (it was closed on us); a trimmed peer keeps its cooldown.
    fn lost(&mut self, now: Instant) {
        let lived = self
            .connected_at
            .take()
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        self.backoff = if lived >= STABLE_CONNECTION {
            MIN_BACKOFF
        } else {
            (self.backoff * 2).min(MAX_BACKOFF)
        };
        self.next = self.next.max(now + self.backoff);
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

/// A dial the node may start.
enum Candidate {
    Bootstrap(Multiaddr),
    Known(PeerId),
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
    /// Connections the node dials up to.
    target: usize,
    /// Connections above which random idle ones are closed (down to the target).
    max: usize,
    /// Until when each peer is not trimmed: work went to or came from it (see
    /// [`WORK_PROTECTION`], [`LOOKUP_PROTECTION`]).
    protected_until: HashMap<PeerId, Instant>,
    /// Random per process: which peers are dialled or trimmed first.
    order: std::collections::hash_map::RandomState,
    /// Who opened the connections and how they ended (`/metrics`).
    pub(super) stats: ConnStats,
}

impl PeerBook {
    pub(super) fn new(
        bootstrap: Vec<Multiaddr>,
        private_network: bool,
        target: usize,
        max: usize,
    ) -> PeerBook {
        let now = Instant::now();
        PeerBook {
            target: target.max(1),
            max: max.max(target.max(1)),
            protected_until: HashMap::new(),
            order: std::collections::hash_map::RandomState::new(),
            bootstrap: bootstrap
                .into_iter()
                .map(|a| (a.clone(), Redial::new(vec![a], now)))
                .collect(),
            bootstrap_peers: HashMap::new(),
            known: HashMap::new(),
            private_network,
            stats: ConnStats::default(),
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
        add_to_kademlia(swarm, peer, &addrs);
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
        add_to_kademlia(swarm, peer, &addrs);
        let entry = self
            .known
            .entry(peer)
            .or_insert_with(|| Redial::new(Vec::new(), Instant::now()));
        entry.addrs = addrs;
    }

    /// Dial an address the node was asked to (its peer id may be unknown).
    pub(super) fn dial(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    ) {
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let r = self
            .start_dial(swarm, opts, Origin::Request)
            .map_err(|e| NetError::Unreachable {
                peer: PeerId::random(),
                reason: format!("{addr}: {e}"),
            });
        let _ = reply.send(r);
    }

    /// Dial, counting the connection as this node's (see [`ConnStats`]).
    fn start_dial(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        opts: DialOpts,
        origin: Origin,
    ) -> Result<(), DialError> {
        let id = opts.connection_id();
        self.stats.dialling(id, origin);
        let r = swarm.dial(opts);
        if r.is_err() {
            self.stats.dial_failed(id);
        }
        r
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

    /// Work went to or came from `peer`: it is not trimmed for a while.
    pub(super) fn touch(&mut self, peer: PeerId) {
        self.protect(peer, WORK_PROTECTION);
    }

    /// A one-answer lookup is about to go to `peer` (a service record): its connection is
    /// not trimmed before the answer comes, but is not held for long after either.
    pub(super) fn touch_for_lookup(&mut self, peer: PeerId) {
        self.protect(peer, LOOKUP_PROTECTION);
    }

    fn protect(&mut self, peer: PeerId, how_long: Duration) {
        let until = Instant::now() + how_long;
        let t = self.protected_until.entry(peer).or_insert(until);
        *t = (*t).max(until);
    }

    /// A request is about to go to `peer`: when it is not connected, dial it at the
    /// addresses it announced (request-response alone only knows what Kademlia's
    /// buckets hold, and with bounded connections most providers are not connected).
    pub(super) fn dial_for_request(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        if swarm.is_connected(&peer) {
            return;
        }
        let Some(r) = self.known.get(&peer).filter(|r| !r.addrs.is_empty()) else {
            return;
        };
        let opts = DialOpts::peer_id(peer)
            .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
            .addresses(r.addrs.clone())
            .build();
        if let Err(e) = self.start_dial(swarm, opts, Origin::Request) {
            tracing::debug!(peer = %peer, "dial for a request: {e}");
        }
    }

    /// Keep the connection count between the target and the most allowed: dial known
    /// peers (and bootstrap addresses) whose backoff has passed while below the target,
    /// close random idle connections above the most allowed.
    pub(super) fn redial(&mut self, swarm: &mut Swarm<Behaviour>, keep: &HashSet<PeerId>) {
        let now = Instant::now();
        self.protected_until.retain(|_, until| *until > now);
        let connected: HashSet<PeerId> = swarm.connected_peers().copied().collect();
        let counted = self.settle(swarm, &connected, keep, now);
        if counted.len() > self.max {
            self.trim(swarm, &counted, keep);
            return;
        }
        if counted.len() >= self.target {
            return;
        }
        let budget = (self.target - counted.len()).min(MAX_DIALS_PER_TICK);
        let bootstrap_up: HashSet<&Multiaddr> = self
            .bootstrap_peers
            .iter()
            .filter(|(p, _)| connected.contains(p))
            .map(|(_, a)| a)
            .collect();
        // Candidates whose time has come, in a random order; bootstrap addresses first
        // while the node has no connection at all.
        let isolated = connected.is_empty();
        let mut candidates: Vec<(u64, Candidate)> = Vec::new();
        for (addr, r) in &self.bootstrap {
            if !bootstrap_up.contains(addr) && r.ready(now) {
                let rank = if isolated {
                    0
                } else {
                    self.order.hash_one(addr)
                };
                candidates.push((rank, Candidate::Bootstrap(addr.clone())));
            }
        }
        for (peer, r) in &self.known {
            if !connected.contains(peer) && r.ready(now) {
                candidates.push((self.order.hash_one(peer) | 1, Candidate::Known(*peer)));
            }
        }
        candidates.sort_by_key(|(rank, _)| *rank);
        let mut dials = Vec::new();
        for (_, c) in candidates.into_iter().take(budget) {
            match c {
                Candidate::Bootstrap(addr) => {
                    let Some(r) = self.bootstrap.get_mut(&addr) else {
                        continue;
                    };
                    if r.due(now, None) {
                        let span = tracing::debug_span!("dial", bootstrap = %addr);
                        dials.push((
                            span,
                            r.attempts,
                            DialOpts::unknown_peer_id().address(addr.clone()).build(),
                            Origin::Bootstrap,
                        ));
                    }
                }
                Candidate::Known(peer) => {
                    let Some(r) = self.known.get_mut(&peer) else {
                        continue;
                    };
                    if r.due(now, Some(MAX_REDIALS)) {
                        let span = tracing::debug_span!("dial", peer = %peer);
                        dials.push((
                            span,
                            r.attempts,
                            DialOpts::peer_id(peer).addresses(r.addrs.clone()).build(),
                            Origin::Target,
                        ));
                    } else if r.gave_up_at == Some(now) {
                        tracing::debug!(peer = %peer, "not redialled any more after {} failed dials", r.attempts);
                    }
                }
            }
        }
        for (span, attempt, d, origin) in dials {
            let _entered = span.enter();
            tracing::debug!(attempt, "redialling");
            if let Err(e) = self.start_dial(swarm, d, origin) {
                tracing::debug!(attempt, "redial: {e}");
            }
        }
    }

    /// The connected peers that count toward the bound: not those that dialled in, or
    /// that Kademlia dialled, less than [`SETTLE`] ago (a query's connection, closed when
    /// it is done); peers connected only by Kademlia for [`KADEMLIA_IDLE`] without work
    /// are closed when the others reach the target (counted otherwise). `keep`: relays
    /// this node reserves on, never closed.
    fn settle(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        connected: &HashSet<PeerId>,
        keep: &HashSet<PeerId>,
        now: Instant,
    ) -> HashSet<PeerId> {
        let conns = self.stats.peers(now);
        let mut counted = HashSet::new();
        let mut transient = Vec::new();
        for peer in connected {
            let worked = self.protected_until.contains_key(peer) || keep.contains(peer);
            match conns.get(peer) {
                Some(c) if c.kademlia_only && !worked && c.age >= KADEMLIA_IDLE => {
                    transient.push(*peer);
                }
                Some(c) if !c.ours && !worked && c.age < SETTLE => {}
                _ => {
                    counted.insert(*peer);
                }
            }
        }
        if counted.len() < self.target {
            counted.extend(transient);
            return counted;
        }
        for peer in transient {
            tracing::debug!(peer = %peer, "connection closed (opened by Kademlia, not needed)");
            self.stats.closing(peer, "transient");
            let _ = swarm.disconnect_peer_id(peer);
        }
        counted
    }

    /// Above the most allowed: close random connections without recent work, only as
    /// many as there are too many (closing down to the target made as many peers dial
    /// again, each pushing another node above its most allowed), and do not dial them
    /// again for [`TRIM_COOLDOWN`].
    fn trim(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counted: &HashSet<PeerId>,
        keep: &HashSet<PeerId>,
    ) {
        let now = Instant::now();
        let excess = counted.len() - self.max;
        let mut idle: Vec<PeerId> = counted
            .iter()
            .filter(|p| !self.protected_until.contains_key(p) && !keep.contains(p))
            .copied()
            .collect();
        idle.sort_by_key(|p| self.order.hash_one(p));
        for peer in idle.into_iter().take(excess) {
            tracing::debug!(peer = %peer, connected = counted.len(), max = self.max, "connection trimmed (too many peers)");
            if let Some(r) = self.known.get_mut(&peer) {
                r.next = now + TRIM_COOLDOWN;
            }
            self.stats.closing(peer, "trimmed");
            let _ = swarm.disconnect_peer_id(peer);
        }
    }

    /// A connection is up: a bootstrap address it came from is known by its peer now,
    /// and the peer's (and that address's) backoff starts over once it proves stable.
    pub(super) fn on_connected(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        let now = Instant::now();
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            let base = strip_p2p(address);
            for key in [address.clone(), base] {
                if let Some(r) = self.bootstrap.get_mut(&key) {
                    r.opened(now);
                    self.bootstrap_peers.insert(peer, key);
                }
            }
        }
        if let Some(r) = self.known.get_mut(&peer) {
            r.opened(now);
        }
    }

    /// The last connection to `peer` closed: it may be dialled again after its backoff
    /// (a trimmed peer keeps its cooldown). A bootstrap peer's address backs off the
    /// same way: a bootstrap node above its bound trims a peer that joined through it,
    /// and that peer, below its target, redialled the address half a second later, to be
    /// counted and trimmed again 5 s on: the bootstrap node stayed above its bound.
    pub(super) fn on_disconnected(&mut self, peer: PeerId) {
        let now = Instant::now();
        if let Some(r) = self.known.get_mut(&peer) {
            r.lost(now);
        }
        if let Some(r) = self
            .bootstrap_peers
            .get(&peer)
            .and_then(|addr| self.bootstrap.get_mut(addr))
        {
            r.lost(now);
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

/// A peer's addresses into Kademlia's routing table, unless its bucket is full: there,
/// a connected peer would make Kademlia dial the bucket's oldest disconnected entry (see
/// `behaviour`), and a disconnected one is not taken anyway.
fn add_to_kademlia(swarm: &mut Swarm<Behaviour>, peer: PeerId, addrs: &[Multiaddr]) {
    let kad = &mut swarm.behaviour_mut().kad;
    if kad
        .kbucket(peer)
        .is_some_and(|b| b.num_entries() >= libp2p::kad::K_VALUE.get())
    {
        return;
    }
    for a in addrs {
        kad.add_address(&peer, a.clone());
    }
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

#[cfg(test)]
#[path = "peers_tests.rs"]
mod tests;
