//! Who runs what: the provider table built from signed announcements, and what this node
//! learned about each provider while routing to it (round trips, failures, work it sent).

use mesg_protocol::{
    Announcement, PublicKey, PublisherClaim, ServiceHash, ServiceOffer, SignedClaim, now_ms,
};
use serde::Serialize;
use std::collections::HashMap;

/// A failed provider is tried last for this long.
const FAILURE_PENALTY_MS: u64 = 15_000;

#[derive(Debug, Clone)]
struct NodeEntry {
    seq: u64,
    addrs: Vec<String>,
    services: Vec<ServiceOffer>,
    expires_at: u64,
}

#[derive(Debug, Clone, Default)]
struct Stats {
    /// Smoothed submit round trip, microseconds.
    rtt_us: Option<f64>,
    last_failure: Option<u64>,
    /// Executions this node sent there that have not ended.
    outstanding: u32,
}

#[derive(Debug, Default)]
pub struct ProviderTable {
    nodes: HashMap<PublicKey, NodeEntry>,
    stats: HashMap<PublicKey, Stats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderView {
    pub node: PublicKey,
    pub peer_id: String,
    pub sid: Option<String>,
    pub instance_hash: String,
    pub in_flight: u32,
    pub expires_in_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkServiceView {
    pub service_hash: ServiceHash,
    pub sid: Option<String>,
    /// Who published the sid (a verified claim); None: unpublished, usable by hash only.
    pub publisher: Option<PublicKey>,
    pub providers: Vec<ProviderView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: PublicKey,
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub services: Vec<ServiceOffer>,
    pub expires_in_ms: u64,
    pub rtt_us: Option<f64>,
}

impl ProviderTable {
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
        let known: std::collections::HashSet<ServiceHash> =
            self.all_services().into_iter().collect();
        let new: Vec<ServiceHash> = a
            .services
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
                addrs: a.addrs.clone(),
                services: a.services.clone(),
                expires_at: now + a.ttl_ms.min(300_000),
            },
        );
        (true, new)
    }

    pub fn forget(&mut self, node: &PublicKey) {
        self.nodes.remove(node);
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

    /// Providers of `service` other than `me`, best first: no recent failure, least load
    /// (announced plus what we sent since), fastest.
    pub fn candidates(&self, service: &ServiceHash, me: &PublicKey) -> Vec<PublicKey> {
        let now = now_ms();
        let mut out: Vec<(bool, u32, u64, PublicKey)> = self
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
                let st = self.stats.get(k).cloned().unwrap_or_default();
                let failed = st
                    .last_failure
                    .is_some_and(|t| now.saturating_sub(t) < FAILURE_PENALTY_MS);
                let rtt = st.rtt_us.unwrap_or(1_000.0) as u64;
                Some((failed, load + st.outstanding, rtt, *k))
            })
            .collect();
        out.sort_by_key(|c| (c.0, c.1, c.2));
        out.into_iter().map(|c| c.3).collect()
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
        self.stats.entry(*node).or_default().outstanding += 1;
    }

    pub fn failed(&mut self, node: &PublicKey) {
        self.stats.entry(*node).or_default().last_failure = Some(now_ms());
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
mod tests {
    use super::*;
    use mesg_protocol::{Hash32, InstanceHash, Keypair};

    fn offer(service: u8, in_flight: u32) -> ServiceOffer {
        ServiceOffer {
            service_hash: ServiceHash(Hash32::sha256(&[service])),
            sid: Some(format!("s{service}")),
            instance_hash: InstanceHash(Hash32::sha256(&[service, 1])),
            in_flight,
            claim: None,
        }
    }

    fn announce(node: PublicKey, seq: u64, services: Vec<ServiceOffer>) -> Announcement {
        Announcement {
            node,
            seq,
            addrs: vec![],
            services,
            ttl_ms: 10_000,
        }
    }

    #[test]
    fn least_loaded_first_failed_last_and_stale_announcements_ignored() {
        let me = Keypair::generate().unwrap().public();
        let (a, b, c) = (
            Keypair::generate().unwrap().public(),
            Keypair::generate().unwrap().public(),
            Keypair::generate().unwrap().public(),
        );
        let mut t = ProviderTable::default();
        let s = ServiceHash(Hash32::sha256(&[1]));
        assert_eq!(t.apply(&announce(a, 2, vec![offer(1, 5)])).1, vec![s]);
        t.apply(&announce(b, 1, vec![offer(1, 1)]));
        t.apply(&announce(c, 1, vec![offer(2, 0)]));
        t.apply(&announce(me, 1, vec![offer(1, 0)]));
        assert_eq!(t.candidates(&s, &me), vec![b, a]);
        t.failed(&b);
        assert_eq!(t.candidates(&s, &me), vec![a, b]);
        // An older announcement of `a` does not replace the newer one.
        assert!(!t.apply(&announce(a, 1, vec![])).0);
        assert_eq!(t.candidates(&s, &me), vec![a, b]);
        // Work we sent counts as load.
        t.succeeded(&b, 100.0);
        for _ in 0..10 {
            t.sending(&a);
        }
        assert_eq!(t.candidates(&s, &me), vec![b, a]);
        // A failed node that announces again is not penalised any more.
        t.failed(&b);
        assert_eq!(t.candidates(&s, &me), vec![a, b]);
        t.apply(&announce(b, 2, vec![offer(1, 1)]));
        assert_eq!(t.candidates(&s, &me), vec![b, a]);
    }
}
