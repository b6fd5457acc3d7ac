//! Who opens the node's connections and how they end, on `/metrics`: how much of the
//! churn of bounded connections is the node's own dialling (up to its target, for a
//! request, to a bootstrap address), Kademlia's (its queries and bucket checks dial peers
//! that are not connected; any dial the node did not start itself is counted as
//! Kademlia's: relays and hole punching dial only behind NAT), or peers dialling in; and
//! whether a connection ended trimmed by this node (one too many), closed as transient
//! (opened by Kademlia, see `peers`), closed here otherwise (idle, shutdown) or from the
//! other side (`cause` set: the peer closed it, or an error). The bound on connections
//! reads the origins too ([`ConnStats::peers`]).
//!
//! `mesg_connections_opened_total{origin}`, `mesg_connections_closed_total{origin,
//! reason}`, `mesg_connections_short_lived_total` (closed less than
//! [`SHORT_LIVED`] after opening) and `mesg_kad_queries_total{kind}` /
//! `mesg_kad_requests_total{kind}` (finished Kademlia queries and the requests they
//! sent), and `mesg_kad_routing_table_peers` (Kademlia starts a bootstrap, a lookup per
//! bucket, each time a peer enters a table of fewer than 20: the gauge says whether a
//! node's table stays that small). A few map entries per connection; nothing is sent.

use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use libp2p::{PeerId, kad};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A connection closed sooner than this after opening counts as short-lived (churn).
pub(super) const SHORT_LIVED: Duration = Duration::from_secs(30);

/// Who started a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// This node, dialling up to its target.
    Target,
    /// This node, dialling a bootstrap address.
    Bootstrap,
    /// This node, for a request or a connection the engine asked for.
    Request,
    /// This node, a dial it did not start itself (Kademlia's).
    Kademlia,
    /// The peer dialled in.
    Inbound,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Target => "target",
            Origin::Bootstrap => "bootstrap",
            Origin::Request => "request",
            Origin::Kademlia => "kademlia",
            Origin::Inbound => "inbound",
        }
    }
}

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The counters, and the open connections' origin and age.
#[derive(Default)]
pub(super) struct ConnStats {
    opened: Family<Labels1, Counter>,
    closed: Family<Labels2, Counter>,
    short_lived: Counter,
    kad_queries: Family<Labels1, Counter>,
    kad_requests: Family<Labels1, Counter>,
    kad_table: Gauge,
    /// Dials this node started, until they connect or fail.
    dialling: HashMap<ConnectionId, Origin>,
    open: HashMap<ConnectionId, (PeerId, Origin, Instant)>,
    /// Peers this node is closing, and why (until their last connection ends).
    closing: HashMap<PeerId, &'static str>,
}

/// A connected peer as the bound on connections sees it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PeerConns {
    /// One of its connections was dialled by this node to keep (target, bootstrap) or
    /// for a request.
    pub(super) ours: bool,
    /// Every connection of it was opened by Kademlia (its queries, its bucket checks).
    pub(super) kademlia_only: bool,
    /// Age of its oldest connection.
    pub(super) age: Duration,
}

impl ConnStats {
    pub(super) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "mesg_connections_opened",
            "Connections opened, by who started them",
            self.opened.clone(),
        );
        registry.register(
            "mesg_connections_closed",
            "Connections closed, by who started them and why they ended",
            self.closed.clone(),
        );
        registry.register(
            "mesg_connections_short_lived",
            "Connections closed less than 30 s after they opened",
            self.short_lived.clone(),
        );
        registry.register(
            "mesg_kad_queries",
            "Kademlia queries finished, by kind",
            self.kad_queries.clone(),
        );
        registry.register(
            "mesg_kad_requests",
            "Requests sent by the Kademlia queries finished, by kind",
            self.kad_requests.clone(),
        );
        registry.register(
            "mesg_kad_routing_table_peers",
            "Peers in the Kademlia routing table",
            self.kad_table.clone(),
        );
    }

    /// The routing table's size now (read at each tick of the swarm task).
    pub(super) fn kad_table(&self, peers: usize) {
        self.kad_table.set(i64::try_from(peers).unwrap_or(i64::MAX));
    }

    /// This node starts a dial (before `Swarm::dial`; forgotten if that fails).
    pub(super) fn dialling(&mut self, id: ConnectionId, origin: Origin) {
        self.dialling.insert(id, origin);
    }

    pub(super) fn dial_failed(&mut self, id: ConnectionId) {
        self.dialling.remove(&id);
    }

    /// A connection opened.
    pub(super) fn opened(&mut self, id: ConnectionId, peer: PeerId, endpoint: &ConnectedPoint) {
        let origin = match self.dialling.remove(&id) {
            _ if endpoint.is_listener() => Origin::Inbound,
            Some(origin) => origin,
            None => Origin::Kademlia,
        };
        self.opened
            .get_or_create(&[("origin", origin.label())])
            .inc();
        self.open.insert(id, (peer, origin, Instant::now()));
    }

    /// The node closes `peer`'s connections: `"trimmed"` (one too many) or
    /// `"transient"` (opened by Kademlia, no longer needed).
    pub(super) fn closing(&mut self, peer: PeerId, reason: &'static str) {
        self.closing.insert(peer, reason);
    }

    /// The connected peers, by how their connections came to be.
    pub(super) fn peers(&self, now: Instant) -> HashMap<PeerId, PeerConns> {
        let mut peers: HashMap<PeerId, PeerConns> = HashMap::new();
        for (peer, origin, at) in self.open.values() {
            let p = peers.entry(*peer).or_insert(PeerConns {
                kademlia_only: true,
                ..PeerConns::default()
            });
            p.ours |= matches!(origin, Origin::Target | Origin::Bootstrap | Origin::Request);
            p.kademlia_only &= *origin == Origin::Kademlia;
            p.age = p.age.max(now.saturating_duration_since(*at));
        }
        peers
    }

    /// A connection closed; `remote`: it ended with an error (the peer closed it).
    pub(super) fn closed(&mut self, id: ConnectionId, peer: PeerId, remote: bool, last: bool) {
        let Some((_, origin, at)) = self.open.remove(&id) else {
            return;
        };
        let reason = match self.closing.get(&peer) {
            Some(reason) => reason,
            None if remote => "remote",
            None => "local",
        };
        if last {
            self.closing.remove(&peer);
        }
        self.closed
            .get_or_create(&[("origin", origin.label()), ("reason", reason)])
            .inc();
        if at.elapsed() < SHORT_LIVED {
            self.short_lived.inc();
        }
    }

    /// A Kademlia query progressed: counted when it finishes, with the requests it sent
    /// (a bootstrap's at each step: every step is a lookup of its own).
    pub(super) fn kad_query(&self, result: &kad::QueryResult, stats: &kad::QueryStats, last: bool) {
        let kind = match result {
            kad::QueryResult::Bootstrap(_) => "bootstrap",
            kad::QueryResult::GetClosestPeers(_) => "closest_peers",
            kad::QueryResult::GetProviders(_) => "get_providers",
            kad::QueryResult::StartProviding(_) | kad::QueryResult::RepublishProvider(_) => {
                "provide"
            }
            kad::QueryResult::GetRecord(_) => "get_record",
            kad::QueryResult::PutRecord(_) | kad::QueryResult::RepublishRecord(_) => "put_record",
        };
        let bootstrap = matches!(result, kad::QueryResult::Bootstrap(_));
        if last {
            self.kad_queries.get_or_create(&[("kind", kind)]).inc();
        }
        if last || bootstrap {
            self.kad_requests
                .get_or_create(&[("kind", kind)])
                .inc_by(u64::from(stats.num_requests()));
        }
    }
}
