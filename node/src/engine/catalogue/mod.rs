//! The catalogue: the services this node knows of on the network, with their publisher,
//! their tasks' prices and their providers, for `GET /v1/catalogue` and
//! `mesg service search`. It is read from what the node already keeps: the provider table
//! (signed announcements: who runs what, the publisher claims verified on arrival, the
//! load each provider claims) and the service records (definitions, hence prices). A
//! service known only from announcements has its record fetched from the network here
//! (the DHT, then the nodes that hold it: size-limited, signature checked, its hash
//! recomputed from its content), a few per query and within a time budget; what does not
//! arrive in time is listed without its tasks rather than delaying the answer.

mod filter;
#[cfg(test)]
mod tests;

pub use filter::{CatalogueFilter, FilterError};

use super::Engine;
use super::providers::OfferSeen;
use crate::store::ServiceEntry;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mesg_api_types::{Catalogue, CatalogueEntry, CatalogueProvider, CatalogueTask};
use mesg_protocol::{PublicKey, ServiceHash, SignedClaim};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Records fetched at most for one query: a network of unknown services must not turn
/// one API call into hundreds of DHT lookups. The next query fetches the next ones (a
/// fetched record is kept, as when a service is executed by hash).
pub const MAX_FETCHES_PER_QUERY: usize = 16;
/// How long one query waits for the records it fetches.
pub const FETCH_BUDGET: Duration = Duration::from_secs(3);

/// The offers of one service hash, gathered from every provider.
#[derive(Debug, Default)]
struct Gathered {
    /// The sid the first provider announced (the definition's, once known, wins).
    announced_sid: Option<String>,
    claims: Vec<SignedClaim>,
    providers: Vec<CatalogueProvider>,
}

fn gather(offers: Vec<OfferSeen>) -> BTreeMap<ServiceHash, Gathered> {
    let mut by_hash: BTreeMap<ServiceHash, Gathered> = BTreeMap::new();
    for seen in offers {
        let g = by_hash.entry(seen.offer.service_hash).or_default();
        if g.announced_sid.is_none() {
            g.announced_sid = seen.offer.sid.clone();
        }
        if let Some(c) = seen.offer.claim {
            g.claims.push(c);
        }
        g.providers.push(CatalogueProvider {
            node: seen.node,
            peer_id: seen
                .node
                .peer_id()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            local: seen.local,
            in_flight: seen.offer.in_flight,
            last_seen_ms_ago: seen.last_seen_ms_ago,
            expires_in_ms: seen.expires_in_ms,
        });
    }
    by_hash
}

/// The publishers whose claim names `hash` under `sid` (claims were verified when their
/// announcement arrived, or signed here; this keeps those that fit what the entry says).
fn publishers_of(hash: &ServiceHash, sid: Option<&str>, claims: &[SignedClaim]) -> Vec<PublicKey> {
    let Some(sid) = sid else {
        return Vec::new();
    };
    let mut out: Vec<PublicKey> = claims
        .iter()
        .filter(|c| &c.claim.service_hash == hash && c.claim.sid == sid)
        .map(|c| c.claim.publisher)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One service as listed, or None when the filters exclude it.
fn entry(
    hash: ServiceHash,
    g: Gathered,
    known: Option<&ServiceEntry>,
    filter: &CatalogueFilter,
) -> Option<CatalogueEntry> {
    let definition = known.map(|e| &e.record.definition);
    let sid = match definition {
        Some(d) => d.sid.clone(),
        None => g.announced_sid,
    };
    let publishers = publishers_of(&hash, sid.as_deref(), &g.claims);
    if !filter.sid_matches(sid.as_deref()) || !filter.publisher_matches(publishers.iter()) {
        return None;
    }
    let tasks: Vec<CatalogueTask> = definition
        .map(|d| {
            d.tasks
                .iter()
                .filter(|(key, t)| filter.task_matches(key, t.price.as_ref()))
                .map(|(key, t)| CatalogueTask {
                    key: key.clone(),
                    name: t.name.clone(),
                    price: t.price.filter(|p| !p.is_free()),
                    free: t.price.is_none_or(|p| p.is_free()),
                })
                .collect()
        })
        .unwrap_or_default();
    if filter.needs_definition() && tasks.is_empty() {
        return None;
    }
    let mut providers = g.providers;
    providers.sort_by(|a, b| {
        a.in_flight
            .cmp(&b.in_flight)
            .then(b.local.cmp(&a.local))
            .then(a.last_seen_ms_ago.cmp(&b.last_seen_ms_ago))
            .then(a.node.cmp(&b.node))
    });
    Some(CatalogueEntry {
        service_hash: hash,
        sid,
        name: definition.map(|d| d.name.clone()),
        description: definition.and_then(|d| d.description.clone()),
        publishers,
        publisher_share_bps: definition.map(|d| d.economy.map_or(0, |e| e.publisher_share_bps)),
        definition_known: definition.is_some(),
        tasks,
        providers,
    })
}

/// Exact sid matches first, then by sid (none last), then by hash.
fn sort(entries: &mut [CatalogueEntry], filter: &CatalogueFilter) {
    let exact = |e: &CatalogueEntry| filter.sid.is_some() && e.sid == filter.sid;
    entries.sort_by(|a, b| {
        exact(b)
            .cmp(&exact(a))
            .then(a.sid.is_none().cmp(&b.sid.is_none()))
            .then(a.sid.cmp(&b.sid))
            .then(a.service_hash.cmp(&b.service_hash))
    });
}

/// The listing, from what was gathered and the definitions known (pure: tested alone).
fn listing(
    gathered: BTreeMap<ServiceHash, Gathered>,
    known: &HashMap<ServiceHash, ServiceEntry>,
    filter: &CatalogueFilter,
) -> Catalogue {
    let unfetched = gathered.keys().filter(|h| !known.contains_key(h)).count();
    let mut services: Vec<CatalogueEntry> = gathered
        .into_iter()
        .filter_map(|(hash, g)| entry(hash, g, known.get(&hash), filter))
        .collect();
    sort(&mut services, filter);
    let matched = services.len();
    services.truncate(filter.limit);
    Catalogue {
        services,
        matched: matched as u64,
        unfetched: unfetched as u64,
    }
}

impl Engine {
    /// The catalogue as this node sees it now, filtered.
    pub async fn catalogue(&self, filter: &CatalogueFilter) -> Catalogue {
        let gathered = gather(self.parts.router.network_offers());
        let mut known: HashMap<ServiceHash, ServiceEntry> = HashMap::new();
        let mut missing = Vec::new();
        for (hash, g) in &gathered {
            match self.parts.services.by_hash(hash) {
                Ok(Some(e)) => {
                    known.insert(*hash, e);
                }
                Ok(None) => {
                    // Fetch only what the filters that need no definition let through.
                    let publishers = publishers_of(hash, g.announced_sid.as_deref(), &g.claims);
                    if filter.sid_matches(g.announced_sid.as_deref())
                        && filter.publisher_matches(publishers.iter())
                    {
                        missing.push(*hash);
                    }
                }
                Err(e) => tracing::warn!(service = %hash, "catalogue: service not read: {e}"),
            }
        }
        if self.network().is_some() && !missing.is_empty() {
            for entry in self.fetch_records(missing).await {
                known.insert(entry.record.service_hash, entry);
            }
        }
        listing(gathered, &known, filter)
    }

    /// Fetch the records of `hashes` (the first [`MAX_FETCHES_PER_QUERY`]) concurrently,
    /// keeping what arrives within [`FETCH_BUDGET`]. Each record is checked by
    /// `Router::fetch_record` (signature, hash recomputed from its content) and kept.
    async fn fetch_records(&self, hashes: Vec<ServiceHash>) -> Vec<ServiceEntry> {
        let deadline = tokio::time::Instant::now() + FETCH_BUDGET;
        let router = &self.parts.router;
        let mut pending: FuturesUnordered<_> = hashes
            .into_iter()
            .take(MAX_FETCHES_PER_QUERY)
            .map(|h| async move { (h, router.fetch_record(h).await) })
            .collect();
        let mut out = Vec::new();
        while let Ok(Some((hash, got))) = tokio::time::timeout_at(deadline, pending.next()).await {
            match got {
                Ok(e) => out.push(e),
                Err(e) => tracing::debug!(service = %hash, "catalogue: record not fetched: {e}"),
            }
        }
        out
    }
}
