//! What a stored service's definition says of money, read once per service hash: the
//! price of each task and the service's economy (publisher share). Both are part of the
//! service hash, so a cached entry never goes stale, and a priced execution's end (executor) or booking (requester) costs no
//! decoding of the whole service record.

use super::ExecutionLedger;
use crate::store::StoreError;
use mesg_protocol::ServiceHash;
use mesg_protocol::economy::{Economy, Price};

/// Entries kept before a cache starts again (services × priced tasks on one node: far
/// fewer in practice).
const MAX_CACHED: usize = 4096;

/// Task prices by (service hash, task key).
pub(super) type PriceCache = std::collections::HashMap<(ServiceHash, String), Option<Price>>;
/// A service's economy, by service hash.
pub(super) type TermsCache = std::collections::HashMap<ServiceHash, Option<Economy>>;

impl ExecutionLedger {
    /// The price of a task of a stored service (None: free, or the service is not
    /// stored here). Read once per (service hash, task): the price is part of the
    /// service hash, so it never changes under one.
    pub fn task_price(
        &self,
        service: &ServiceHash,
        task: &str,
    ) -> Result<Option<Price>, StoreError> {
        let key = (*service, task.to_string());
        if let Some(p) = self.prices.lock().expect("prices lock").get(&key) {
            return Ok(*p);
        }
        // A service not stored (yet) is not cached: it may be stored later.
        let Some(entry) = self.store.service(service)? else {
            return Ok(None);
        };
        let price = entry.record.definition.price_of(task);
        let mut prices = self.prices.lock().expect("prices lock");
        if prices.len() >= MAX_CACHED {
            prices.clear();
        }
        prices.insert(key, price);
        Ok(price)
    }

    /// A stored service's economy (None: no publisher share, or the service is not
    /// stored here; that is not cached: it may be stored later).
    pub fn service_economy(&self, service: &ServiceHash) -> Result<Option<Economy>, StoreError> {
        if let Some(t) = self.terms.lock().expect("terms lock").get(service) {
            return Ok(*t);
        }
        let Some(entry) = self.store.service(service)? else {
            return Ok(None);
        };
        let terms = entry.record.definition.economy;
        let mut cache = self.terms.lock().expect("terms lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(*service, terms);
        Ok(terms)
    }
}
