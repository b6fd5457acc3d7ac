//! Who runs what: the provider table built from signed announcements, and what this node
//! learned about each provider while routing to it (round trips, failures, work it sent).

use crate::engine::reputation::{Rank, Reputation};
use mesg_protocol::envelope::Signed;
use mesg_protocol::{
    Announcement, PublicKey, PublisherClaim, ServiceHash, ServiceOffer, SignedClaim, now_ms,
};
use std::collections::HashMap;
use std::sync::Arc;

mod passed_on;

/// A failed provider is tried last for this long.
const FAILURE_PENALTY_MS: u64 = 15_000;
/// Longest validity taken from an announcement: honest nodes refresh every minute (up to
/// every 30 minutes in a network of over 1,000 nodes) with a validity of three refreshes
/// (and announce at once when what they run changes); a longer claim would keep a
/// vanished (or lying) provider listed. A vanished provider that is still listed costs a
/// failed dial, then failover: its failures rank it last.
pub const MAX_ANNOUNCE_TTL_MS: u64 = 90 * 60_000;
/// Services taken from one announcement; the rest are ignored. A node runs a handful;
/// an announcement listing thousands would only fill our table.
pub const MAX_SERVICES_PER_NODE: usize = 256;
/// Nodes in the table. A new node beyond it is ignored until expired ones are evicted:
/// keys are free, so without a cap a peer could fill memory with made-up nodes.
pub const MAX_NODES: usize = 10_000;
/// Addresses kept per node (as shown in `GET /v1/network/nodes`).
pub const MAX_ADDRS_PER_NODE: usize = crate::network::addrs::MAX_REMOTE_ADDRS;
/// Most load a provider's own claim (`in_flight`) can add to its score. Claims are
/// unverifiable: a node claiming 0 must not attract all work, and one claiming a
/// million must not be shunned for good. Beyond this, what we measure decides.
pub const MAX_CLAIMED_LOAD: u32 = 4;
/// Weight of one claimed execution in flight, against 1.0 for one execution that this
/// node itself sent there and that has not ended (which it knows for sure).
const CLAIM_WEIGHT: f64 = 0.5;
/// Weight of the recent sends to a provider (a count that halves every
/// [`RECENT_HALF_LIFE_MS`]): spreads one-at-a-time work over equal providers, whatever
/// they claim.
const RECENT_WEIGHT: f64 = 0.5;
const RECENT_HALF_LIFE_MS: f64 = 10_000.0;
/// Weight of one observed failure (unreachable, refused, accepted but no result before
/// the deadline), halving every [`STRIKE_HALF_LIFE_MS`]. Unlike the failure penalty, a
/// fresh announcement does not clear it: a provider that accepts work and never answers
/// cannot whitewash itself by announcing.
const STRIKE_WEIGHT: f64 = 2.0;
const STRIKE_HALF_LIFE_MS: f64 = 60_000.0;
/// Strikes counted at most: one outage under load makes dozens of failures at once (every
/// execution in flight times out), and counting them all kept a provider that had come
/// back unused for a minute (the partition scenario: node3 never got work again within
/// 60 s). Capped, an outage costs a bounded handicap that the other providers' recent
/// load soon outweighs, while a provider that keeps failing stays behind.
const MAX_STRIKES_COUNTED: f64 = 4.0;
/// A measured submit round trip adds one unit of load per this many microseconds.
const RTT_UNIT_US: f64 = 5_000.0;

#[derive(Debug, Clone)]
struct NodeEntry {
    seq: u64,
    addrs: Vec<String>,
    services: Vec<ServiceOffer>,
    expires_at: u64,
    /// When this node applied the announcement (ms).
    seen_at: u64,
    /// The announcement as its node signed it, to pass on to peers that join
    /// (peer exchange); none when it came from an older node's first format.
    signed: Option<Signed<Announcement>>,
    /// Our connection to the node closed and it has neither come back nor announced
    /// since: it may be gone, so its announcement is not passed on (it stays usable here
    /// until it expires: with bounded connections a closed connection is no proof).
    departed: bool,
    /// What the announcement says (`HeldAnnouncement::content_of`), to tell a reconciling
    /// peer's older copy that says the same from one that does not.
    content: [u8; 8],
}

/// One offer of a service, by whom, and when it was heard (what the catalogue lists).
#[derive(Debug, Clone)]
pub struct OfferSeen {
    pub node: PublicKey,
    pub offer: ServiceOffer,
    /// This node's own instance.
    pub local: bool,
    pub last_seen_ms_ago: u64,
    pub expires_in_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct Stats {
    /// Smoothed submit round trip, microseconds.
    rtt_us: Option<f64>,
    last_failure: Option<u64>,
    /// Executions this node sent there that have not ended.
    outstanding: u32,
    /// Executions sent there, decaying.
    recent: Decaying,
    /// Failures observed there, decaying.
    strikes: Decaying,
}

/// A count that halves every `half_life` milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Decaying {
    value: f64,
    at: u64,
}

impl Decaying {
    fn at(&self, now: u64, half_life: f64) -> f64 {
        let age = now.saturating_sub(self.at) as f64;
        self.value * (0.5f64).powf(age / half_life)
    }

    fn add(&mut self, now: u64, half_life: f64) {
        self.value = self.at(now, half_life) + 1.0;
        self.at = now;
    }
}

/// The nodes known now, by whether they announce a service (see [`ProviderTable::census`]).
#[derive(Debug, Default, Clone)]
pub struct Census {
    pub providers: Vec<PublicKey>,
    pub without: Vec<PublicKey>,
}

#[derive(Debug, Default)]
pub struct ProviderTable {
    nodes: HashMap<PublicKey, NodeEntry>,
    stats: HashMap<PublicKey, Stats>,
    /// Choices made, for [`EXPLORE_EVERY`].
    choices: std::sync::atomic::AtomicU64,
    /// What this node keeps of each peer across restarts: a banned peer is never a
    /// candidate, one with a recent disagreement goes behind every clean one.
    reputation: Arc<Reputation>,
}

/// One first choice in this many is the second-best provider: a provider that failed
/// during an outage is ranked behind the others, and without a probe it would never show
/// that it is back (the pause scenario: never within 60 s). A probe that fails fails over
/// before any Ack, so it costs latency, never an execution. Counted only by
/// [`ProviderTable::first_choice`], the choice that is acted on: when every lookup counted
/// (two per execution), the probe could land on the lookup whose order is not used, every
/// time, and a provider back from an outage got no work (a CI run of the pause scenario).
const EXPLORE_EVERY: u64 = 16;

pub use mesg_api_types::{NetworkServiceView, NodeView, ProviderView};

impl ProviderTable {
    /// An empty table that ranks by `reputation`.
    pub fn with_reputation(reputation: Arc<Reputation>) -> ProviderTable {
        ProviderTable {
            reputation,
            ..ProviderTable::default()
        }
    }

    pub fn reputation(&self) -> &Arc<Reputation> {
        &self.reputation
    }

    /// Apply an announcement (already verified). Returns the services it adds that were
    /// not known before, and false if it was older than what we have.
    pub fn apply(&mut self, a: &Announcement) -> (bool, Vec<ServiceHash>) {
        let now = now_ms();
        if let Some(e) = self.nodes.get(&a.node)
            && e.seq >= a.seq
            && e.expires_at > now
        {
            return (false, Vec::new());
        }
        if !self.nodes.contains_key(&a.node) && self.nodes.len() >= MAX_NODES {
            self.evict_expired(now);
            if self.nodes.len() >= MAX_NODES {
                return (false, Vec::new());
            }
        }
        let services: Vec<ServiceOffer> = a
            .services
            .iter()
            .take(MAX_SERVICES_PER_NODE)
            .cloned()
            .collect();
        let known: std::collections::HashSet<ServiceHash> =
            self.all_services().into_iter().collect();
        let new: Vec<ServiceHash> = services
            .iter()
            .map(|s| s.service_hash)
            .filter(|h| !known.contains(h))
            .collect();
        // A fresh announcement proves the node is reachable again (partition healed,
        // restart done): it need not wait out its failure penalty.
        if let Some(st) = self.stats.get_mut(&a.node) {
            st.last_failure = None;
        }
        self.nodes.insert(
            a.node,
            NodeEntry {
                seq: a.seq,
                addrs: a.addrs.iter().take(MAX_ADDRS_PER_NODE).cloned().collect(),
                services,
                expires_at: now + a.ttl_ms.min(MAX_ANNOUNCE_TTL_MS),
                seen_at: now,
                signed: None,
                departed: false,
                content: mesg_protocol::messages::HeldAnnouncement::content_of(a),
            },
        );
        (true, new)
    }

    /// [`apply`](Self::apply), keeping the signed form to pass on (`a` is what was read
    /// from `signed`, with invalid claims dropped).
    pub fn apply_signed(
        &mut self,
        signed: &Signed<Announcement>,
        a: &Announcement,
    ) -> (bool, Vec<ServiceHash>) {
        let applied = self.apply(a);
        if applied.0
            && let Some(e) = self.nodes.get_mut(&a.node)
        {
            e.signed = Some(signed.clone());
        }
        applied
    }

    /// Our last connection to `node` closed (`departed`) or one opened again.
    pub fn set_departed(&mut self, node: &PublicKey, departed: bool) {
        if let Some(e) = self.nodes.get_mut(node) {
            e.departed = departed;
        }
    }

    pub fn forget(&mut self, node: &PublicKey) {
        self.nodes.remove(node);
    }

    /// Remove the nodes whose announcement expired before `now`, and what we measured of
    /// nodes that are gone and have nothing of ours in progress. Returns how many
    /// nodes were removed.
    pub fn evict_expired(&mut self, now: u64) -> usize {
        let before = self.nodes.len();
        self.nodes.retain(|_, n| n.expires_at > now);
        let nodes = &self.nodes;
        self.stats
            .retain(|k, st| nodes.contains_key(k) || st.outstanding > 0);
        before - self.nodes.len()
    }

    /// Nodes in the table, expired or not (until evicted).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn all_services(&self) -> Vec<ServiceHash> {
        let now = now_ms();
        self.nodes
            .values()
            .filter(|n| n.expires_at > now)
            .flat_map(|n| n.services.iter().map(|s| s.service_hash))
            .collect()
    }

    pub fn known_services(&self) -> Vec<ServiceHash> {
        let mut v = self.all_services();
        v.sort();
        v.dedup();
        v
    }

    /// The provider a new execution is offered to first: the best, except one time in
    /// [`EXPLORE_EVERY`] the second best (a probe), unless that one had a recent
    /// disagreement (it is last on purpose).
    pub fn first_choice(&self, service: &ServiceHash, me: &PublicKey) -> Option<PublicKey> {
        let mut out = self.ranked(service, me);
        let n = self
            .choices
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if out.len() > 1 && out[1].1 == Rank::Clean && n % EXPLORE_EVERY == EXPLORE_EVERY - 1 {
            out.swap(0, 1);
        }
        out.into_iter().next().map(|c| c.0)
    }

    /// Providers of `service` other than `me`, best first: banned peers never; peers
    /// with a recent disagreement (see [`Reputation`]) behind the others; then no recent
    /// failure, then least score, then fastest. The score is mostly what this node
    /// knows: executions it sent there that have not ended, recent sends, the measured
    /// round trip, strikes (timeouts among them); the provider's own claim of load counts
    /// for little and at most [`MAX_CLAIMED_LOAD`]. No side effect.
    pub fn candidates(&self, service: &ServiceHash, me: &PublicKey) -> Vec<PublicKey> {
        self.ranked(service, me).into_iter().map(|c| c.0).collect()
    }

    fn ranked(&self, service: &ServiceHash, me: &PublicKey) -> Vec<(PublicKey, Rank)> {
        let now = now_ms();
        let mut out: Vec<(Rank, bool, f64, u64, PublicKey)> = self
            .nodes
            .iter()
            .filter(|(k, n)| *k != me && n.expires_at > now)
            .filter_map(|(k, n)| {
                let load = n
                    .services
                    .iter()
                    .filter(|s| &s.service_hash == service)
                    .map(|s| s.in_flight)
                    .min()?;
                let rank = self.reputation.rank(k, now);
                if rank == Rank::Banned {
                    return None;
                }
                let st = self.stats.get(k).cloned().unwrap_or_default();
                let failed = st
                    .last_failure
                    .is_some_and(|t| now.saturating_sub(t) < FAILURE_PENALTY_MS);
                let rtt = st.rtt_us.unwrap_or(1_000.0);
                let score = f64::from(load.min(MAX_CLAIMED_LOAD)) * CLAIM_WEIGHT
                    + f64::from(st.outstanding)
                    + st.recent.at(now, RECENT_HALF_LIFE_MS) * RECENT_WEIGHT
                    + st.strikes
                        .at(now, STRIKE_HALF_LIFE_MS)
                        .min(MAX_STRIKES_COUNTED)
                        * STRIKE_WEIGHT
                    + rtt / RTT_UNIT_US;
                Some((rank, failed, score, rtt as u64, *k))
            })
            .collect();
        out.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        out.into_iter().map(|c| (c.4, c.0)).collect()
    }

    /// Other nodes known now (unexpired), split into those announcing `service` and the
    /// others; no side effect (unlike [`ProviderTable::candidates`]).
    pub fn census(&self, service: &ServiceHash, me: &PublicKey) -> Census {
        let now = now_ms();
        let mut census = Census::default();
        for (k, n) in &self.nodes {
            if k == me || n.expires_at <= now {
                continue;
            }
            if n.services.iter().any(|s| &s.service_hash == service) {
                census.providers.push(*k);
            } else {
                census.without.push(*k);
            }
        }
        census
    }

    pub fn succeeded(&mut self, node: &PublicKey, rtt_us: f64) {
        let st = self.stats.entry(*node).or_default();
        st.rtt_us = Some(match st.rtt_us {
            Some(prev) => prev * 0.8 + rtt_us * 0.2,
            None => rtt_us,
        });
        st.last_failure = None;
    }

    /// A submit to `node` starts: it counts as load until [`ProviderTable::ended`].
    pub fn sending(&mut self, node: &PublicKey) {
        let now = now_ms();
        let st = self.stats.entry(*node).or_default();
        st.outstanding += 1;
        st.recent.add(now, RECENT_HALF_LIFE_MS);
    }

    /// `node` was unreachable or refused for a reason of its own: tried last for
    /// [`FAILURE_PENALTY_MS`], and a strike.
    pub fn failed(&mut self, node: &PublicKey) {
        let now = now_ms();
        let st = self.stats.entry(*node).or_default();
        st.last_failure = Some(now);
        st.strikes.add(now, STRIKE_HALF_LIFE_MS);
    }

    pub fn ended(&mut self, node: &PublicKey) {
        let st = self.stats.entry(*node).or_default();
        st.outstanding = st.outstanding.saturating_sub(1);
    }

    /// Services and their providers; `me` and `local` add this node's own instances
    /// (a node does not hear its own announcements).
    pub fn services_view(&self, me: PublicKey, local: &[ServiceOffer]) -> Vec<NetworkServiceView> {
        let now = now_ms();
        let mut by_service: HashMap<ServiceHash, NetworkServiceView> = HashMap::new();
        let mine = NodeEntry {
            seq: 0,
            addrs: Vec::new(),
            services: local.to_vec(),
            expires_at: now + 1,
            seen_at: now,
            signed: None,
            departed: false,
            content: [0; 8],
        };
        let nodes = self
            .nodes
            .iter()
            .filter(|(k, n)| n.expires_at > now && **k != me)
            .chain(std::iter::once((&me, &mine)));
        for (node, n) in nodes {
            for s in &n.services {
                let v = by_service
                    .entry(s.service_hash)
                    .or_insert_with(|| NetworkServiceView {
                        service_hash: s.service_hash,
                        sid: s.sid.clone(),
                        publisher: None,
                        providers: Vec::new(),
                    });
                if v.publisher.is_none() {
                    v.publisher = s.claim.as_ref().map(|c| c.claim.publisher);
                }
                v.providers.push(ProviderView {
                    node: *node,
                    peer_id: node.peer_id().map(|p| p.to_string()).unwrap_or_default(),
                    sid: s.sid.clone(),
                    instance_hash: s.instance_hash.to_string(),
                    in_flight: s.in_flight,
                    expires_in_ms: n.expires_at - now,
                });
            }
        }
        let mut out: Vec<_> = by_service.into_values().collect();
        out.sort_by(|a, b| a.sid.cmp(&b.sid).then(a.service_hash.cmp(&b.service_hash)));
        out
    }

    /// Every unexpired offer of other nodes, and `local` (this node's, as `me`): a node
    /// does not hear its own announcements.
    pub fn offers(&self, me: PublicKey, local: &[ServiceOffer]) -> Vec<OfferSeen> {
        let now = now_ms();
        let mut out: Vec<OfferSeen> = local
            .iter()
            .map(|o| OfferSeen {
                node: me,
                offer: o.clone(),
                local: true,
                last_seen_ms_ago: 0,
                expires_in_ms: 0,
            })
            .collect();
        for (k, n) in &self.nodes {
            if *k == me || n.expires_at <= now {
                continue;
            }
            out.extend(n.services.iter().map(|o| OfferSeen {
                node: *k,
                offer: o.clone(),
                local: false,
                last_seen_ms_ago: now.saturating_sub(n.seen_at),
                expires_in_ms: n.expires_at - now,
            }));
        }
        out
    }

    pub fn nodes_view(&self) -> Vec<NodeView> {
        let now = now_ms();
        let mut out: Vec<NodeView> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.expires_at > now)
            .map(|(k, n)| NodeView {
                node: *k,
                peer_id: k.peer_id().map(|p| p.to_string()).unwrap_or_default(),
                addrs: n.addrs.clone(),
                services: n.services.clone(),
                expires_in_ms: n.expires_at - now,
                rtt_us: self.stats.get(k).and_then(|s| s.rtt_us),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    /// Services announced by `node`.
    pub fn node_runs(&self, node: &PublicKey, service: &ServiceHash) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.services.iter().any(|s| &s.service_hash == service))
    }

    /// Whether `node` currently (unexpired) announces `instance` of `service`: what
    /// entitles it to publish that service's events.
    pub fn announces_instance(
        &self,
        node: &PublicKey,
        service: &ServiceHash,
        instance: &mesg_protocol::InstanceHash,
    ) -> bool {
        let now = now_ms();
        self.nodes.get(node).is_some_and(|n| {
            n.expires_at > now
                && n.services
                    .iter()
                    .any(|s| &s.service_hash == service && &s.instance_hash == instance)
        })
    }

    /// The sid of a service as announced, if any.
    pub fn sid_of(&self, service: &ServiceHash) -> Option<String> {
        self.nodes
            .values()
            .flat_map(|n| n.services.iter())
            .find(|s| &s.service_hash == service)
            .and_then(|s| s.sid.clone())
    }

    /// The verified claims of services announced under `sid` (claims are checked before
    /// an announcement is applied; offers without one are not listed).
    pub fn by_sid(&self, sid: &str) -> Vec<PublisherClaim> {
        let now = now_ms();
        self.nodes
            .values()
            .filter(|n| n.expires_at > now)
            .flat_map(|n| n.services.iter())
            .filter(|s| s.sid.as_deref() == Some(sid))
            .filter_map(|s| s.claim.as_ref())
            .filter(|c| c.claim.sid == sid)
            .map(|c| c.claim.clone())
            .collect()
    }

    /// The announced claims of a service (one per publisher).
    pub fn claims_of(&self, service: &ServiceHash) -> Vec<SignedClaim> {
        let mut out: Vec<SignedClaim> = Vec::new();
        for c in self
            .nodes
            .values()
            .flat_map(|n| n.services.iter())
            .filter(|s| &s.service_hash == service)
            .filter_map(|s| s.claim.as_ref())
        {
            if !out.iter().any(|o| o.claim.publisher == c.claim.publisher) {
                out.push(c.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
