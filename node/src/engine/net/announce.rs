//! Announcements: what this node runs, signed and published on the announce topic when
//! it changes (instances at once, load at most every few seconds) and otherwise only as a
//! slow refresh (and registered as DHT provider records); what other nodes announce,
//! applied to the provider table. A node that connects to a peer swaps announcements
//! with it directly (`exchange`), so nobody waits for a refresh to learn a newcomer.
//!
//! Why not every few seconds, as before: every announcement reaches every node, so the
//! traffic per node grew with the size of the network even when nothing happened (2 MiB
//! per node and minute at 50 nodes).

use super::Router;
use crate::network::{ANNOUNCE_TOPIC, package_key, record_key, service_key};
use crate::store::ServiceEntry;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::GossipMessage;
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE};
use mesg_protocol::{Announcement, InstanceHash, ServiceHash, ServiceOffer, now_ms};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a node re-announces what it runs when nothing changed, at least: in a network
/// of more than about 50 nodes, longer ([`refresh_period`]).
pub const ANNOUNCE_REFRESH: Duration = Duration::from_secs(60);
/// The longest refresh period, whatever the size of the network.
pub const MAX_ANNOUNCE_REFRESH: Duration = Duration::from_secs(30 * 60);
/// Refreshes per minute the whole network makes, about: every announcement reaches every
/// node, so a fixed period would make each node's idle traffic grow with the number of
/// nodes; a period that grows with the nodes known keeps it flat.
pub const REFRESHES_PER_MINUTE: u64 = 40;
/// A change of load (executions in flight) is announced at most this often.
pub const LOAD_ANNOUNCE_EVERY: Duration = Duration::from_secs(5);
/// How long an announcement is valid, in refresh periods: one lost message changes nothing.
pub const TTL_REFRESHES: u32 = 3;

/// The refresh period of a node that knows `known_nodes` other nodes: about
/// [`REFRESHES_PER_MINUTE`] refreshes per minute in the whole network, between
/// [`ANNOUNCE_REFRESH`] and [`MAX_ANNOUNCE_REFRESH`].
pub fn refresh_period(known_nodes: usize) -> Duration {
    let per_node = Duration::from_secs(60) * (known_nodes as u32 + 1) / REFRESHES_PER_MINUTE as u32;
    per_node.clamp(ANNOUNCE_REFRESH, MAX_ANNOUNCE_REFRESH)
}
/// After a node that had no connection gets one, how long before it announces on gossip.
pub const REJOIN_DELAY: Duration = Duration::from_secs(1);
/// How often expired announcements are evicted (and the load looked at).
pub const ANNOUNCE_TICK: Duration = Duration::from_secs(1);

/// What an announcement says of the load, to tell whether it changed.
pub(super) type LoadSnapshot = Vec<(InstanceHash, u32)>;

impl Router {
    /// Evict the providers whose announcement expired.
    pub(super) fn evict_expired(&self) {
        let mut providers = self.providers();
        let evicted = providers.evict_expired(now_ms());
        if evicted > 0 {
            tracing::debug!(evicted, "expired providers evicted");
        }
        self.metrics.provider_nodes.set(providers.len() as i64);
    }

    /// What the instances here have in flight, in the order they are announced.
    pub(super) fn load_snapshot(&self) -> LoadSnapshot {
        self.instances
            .live()
            .all()
            .iter()
            .map(|live| (live.hash, live.in_flight_count() as u32))
            .collect()
    }

    /// Sign and publish what this node runs; register as a DHT provider of it.
    pub async fn announce(&self) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        self.evict_expired();
        let Some(signed) = self.own_announcement().await else {
            return;
        };
        if let Ok(frame) = wire::encode_frame(&GossipMessage::Announce(signed), MAX_GOSSIP_MESSAGE)
            && let Err(e) = net.publish(ANNOUNCE_TOPIC.to_string(), frame).await
        {
            tracing::debug!("announcement not published: {e}");
        }
    }

    /// What this node runs now, signed (and registered as a DHT provider of each
    /// service the first time).
    pub(super) async fn own_announcement(&self) -> Option<Signed<Announcement>> {
        let net = self.network().cloned()?;
        let services = self.local_offers();
        let addrs = net
            .listen_addrs()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        let ttl_ms = (refresh_period(self.providers().len()) * TTL_REFRESHES).as_millis() as u64;
        // Milliseconds keep the sequence increasing across restarts.
        let seq = now_ms().max(self.announce_seq.load(Ordering::SeqCst) + 1);
        self.announce_seq.store(seq, Ordering::SeqCst);
        let announcement = Announcement {
            node: self.node(),
            seq,
            addrs,
            services: services.clone(),
            ttl_ms,
        };
        for s in &services {
            let first = self
                .provided
                .lock()
                .expect("provided lock")
                .insert(s.service_hash);
            if first {
                net.start_providing(service_key(&s.service_hash)).await;
            }
        }
        match Signed::sign(
            &self.key,
            domains::ANNOUNCEMENT,
            &announcement,
            now_ms(),
            ttl_ms,
            MAX_GOSSIP_MESSAGE,
        ) {
            Ok(signed) => Some(signed),
            Err(_) => {
                tracing::error!("announcement too large ({} services)", services.len());
                None
            }
        }
    }

    /// Publish a deployed service's record and register as a holder of its package.
    pub async fn publish_service(&self, entry: &ServiceEntry) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        if let Ok(value) = wire::encode(&entry.signed, wire::MAX_PACKAGE_MESSAGE) {
            net.put_record(record_key(&entry.record.service_hash), value)
                .await;
        }
        if !self.services.is_private_package(&entry.record.package_hash) {
            net.start_providing(package_key(&entry.record.package_hash))
                .await;
        }
        // A running service's claim may have changed (its publisher deployed it again).
        self.offers_changed.notify_one();
    }

    pub(super) async fn on_gossip(&self, message: GossipMessage) {
        match message {
            GossipMessage::AnnounceV1(signed) => {
                // An older node: its offers carry no claim, so its services stay unpublished.
                if let Ok(a) = signed.payload_unverified(MAX_GOSSIP_MESSAGE) {
                    self.on_announcement(Announcement::from(a)).await;
                }
            }
            GossipMessage::Announce(signed) => {
                // Checked by the network task (signature, expiry, signer) before it came here.
                let Ok(a) = signed.payload_unverified(MAX_GOSSIP_MESSAGE) else {
                    return;
                };
                self.on_signed_announcement(&signed, a).await;
            }
            GossipMessage::Event(signed) => self.on_event(signed).await,
        }
    }

    /// A verified announcement in its signed form (gossip or peer exchange): applied, and
    /// kept to pass on to peers that join. Returns whether it was news: newer than the
    /// one held, with other offers (see `ProviderTable::offers_differ`).
    pub(super) async fn on_signed_announcement(
        &self,
        signed: &Signed<Announcement>,
        mut a: Announcement,
    ) -> bool {
        drop_invalid_claims(&mut a, now_ms());
        self.apply_announcement(a, Some(signed)).await
    }

    pub(super) async fn on_announcement(&self, a: Announcement) {
        self.apply_announcement(a, None).await;
    }

    async fn apply_announcement(
        &self,
        a: Announcement,
        signed: Option<&Signed<Announcement>>,
    ) -> bool {
        if a.node == self.node() {
            return false;
        }
        let differ = self.providers().offers_differ(&a);
        let (fresh, new_services) = match signed {
            Some(s) => self.providers().apply_signed(s, &a),
            None => self.providers().apply(&a),
        };
        let size = self.providers().len();
        self.metrics.provider_nodes.set(size as i64);
        if fresh && let (Some(net), Ok(peer)) = (self.network(), a.node.peer_id()) {
            let addrs = a.addrs.iter().filter_map(|s| s.parse().ok()).collect();
            net.add_addresses(peer, addrs).await;
        }
        // A provider of a service whose events are wanted here: be connected to it.
        if fresh && let Some(net) = self.network() {
            let watched = self.watched_services();
            let emitted: Vec<ServiceHash> = a
                .services
                .iter()
                .map(|s| s.service_hash)
                .filter(|s| watched.contains(s))
                .collect();
            if !emitted.is_empty()
                && let Ok(peer) = a.node.peer_id()
            {
                net.connect(peer).await;
                // Its first announcement after a restart (its or ours) or a partition:
                // what it emitted meanwhile.
                for service in emitted {
                    self.catch_up_from_cursor(a.node, service);
                }
            }
        }
        if !new_services.is_empty() && self.all_events_watchers.load(Ordering::SeqCst) > 0 {
            for s in new_services {
                self.subscribe_topic(s).await;
            }
        }
        fresh && differ
    }

    /// What this node runs, as it announces it.
    pub(super) fn local_offers(&self) -> Vec<ServiceOffer> {
        self.instances
            .live()
            .all()
            .iter()
            .map(|live| ServiceOffer {
                service_hash: live.service_hash,
                sid: live.definition.sid.clone(),
                instance_hash: live.hash,
                in_flight: live.in_flight_count() as u32,
                claim: self
                    .store
                    .service(&live.service_hash)
                    .ok()
                    .flatten()
                    .and_then(|e| self.services.claim_of(&e)),
            })
            .collect()
    }

    pub fn network_services(&self) -> Vec<crate::engine::providers::NetworkServiceView> {
        let local = self.local_offers();
        self.providers().services_view(self.node(), &local)
    }

    /// Every offer known now, this node's own included: what the catalogue lists.
    pub fn network_offers(&self) -> Vec<crate::engine::providers::OfferSeen> {
        let local = self.local_offers();
        self.providers().offers(self.node(), &local)
    }

    pub fn network_nodes(&self) -> Vec<crate::engine::providers::NodeView> {
        self.providers().nodes_view()
    }
}

/// A claim that does not verify for its offer (forged, for another service or sid) is
/// dropped: the offer stays, unpublished (usable by hash, never by sid).
pub fn drop_invalid_claims(a: &mut Announcement, now: u64) {
    for offer in &mut a.services {
        let valid = match (&offer.claim, &offer.sid) {
            (Some(c), Some(sid)) => c.verify_for(&offer.service_hash, sid, now).is_ok(),
            _ => false,
        };
        if !valid && offer.claim.take().is_some() {
            tracing::debug!(node = %a.node, service = %offer.service_hash, "invalid publisher claim dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ANNOUNCE_REFRESH, MAX_ANNOUNCE_REFRESH, REFRESHES_PER_MINUTE, refresh_period};
    use std::time::Duration;

    #[test]
    fn the_refresh_period_grows_with_the_network_so_idle_traffic_per_node_does_not() {
        assert_eq!(refresh_period(0), ANNOUNCE_REFRESH);
        assert_eq!(
            refresh_period(25),
            ANNOUNCE_REFRESH,
            "small networks: every minute"
        );
        // Refreshes the whole network makes per minute stay about the same from 100 to
        // 1,000 nodes (each reaches every node: that is each node's idle traffic); above
        // about 1,200 nodes the longest period holds and the traffic grows again.
        for n in [100usize, 500, 1_000] {
            let per_minute = (n as f64 + 1.0) * 60.0 / refresh_period(n).as_secs_f64();
            assert!(
                (per_minute - REFRESHES_PER_MINUTE as f64).abs() < 1.0,
                "{n} nodes: {per_minute:.1} refreshes per minute"
            );
        }
        assert_eq!(refresh_period(1_000_000), MAX_ANNOUNCE_REFRESH, "bounded");
        assert!(refresh_period(500) > Duration::from_secs(600));
    }
}
