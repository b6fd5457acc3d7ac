//! Announcements: what this node runs, signed and published on the announce topic every
//! interval and when it changes (and registered as DHT provider records); what other
//! nodes announce, applied to the provider table.

use super::Router;
use crate::network::{ANNOUNCE_TOPIC, package_key, record_key, service_key};
use crate::store::ServiceEntry;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::GossipMessage;
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE};
use mesg_protocol::{Announcement, ServiceOffer, now_ms};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a node re-announces what it runs.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);
/// How long an announcement is valid: a few intervals, so one lost message changes nothing.
const ANNOUNCE_TTL_MS: u64 = 20_000;

impl Router {
    /// Sign and publish what this node runs; register as a DHT provider of it.
    pub async fn announce(&self) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        {
            let mut providers = self.providers();
            let evicted = providers.evict_expired(now_ms());
            if evicted > 0 {
                tracing::debug!(evicted, "expired providers evicted");
            }
            self.metrics.provider_nodes.set(providers.len() as i64);
        }
        let services = self.local_offers();
        let addrs = net
            .listen_addrs()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        // Milliseconds keep the sequence increasing across restarts.
        let seq = now_ms().max(self.announce_seq.load(Ordering::SeqCst) + 1);
        self.announce_seq.store(seq, Ordering::SeqCst);
        let announcement = Announcement {
            node: self.node(),
            seq,
            addrs,
            services: services.clone(),
            ttl_ms: ANNOUNCE_TTL_MS,
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
        let Ok(signed) = Signed::sign(
            &self.key,
            domains::ANNOUNCEMENT,
            &announcement,
            now_ms(),
            ANNOUNCE_TTL_MS,
            MAX_GOSSIP_MESSAGE,
        ) else {
            tracing::error!("announcement too large ({} services)", services.len());
            return;
        };
        if let Ok(frame) = wire::encode_frame(&GossipMessage::Announce(signed), MAX_GOSSIP_MESSAGE)
            && let Err(e) = net.publish(ANNOUNCE_TOPIC.to_string(), frame).await
        {
            tracing::debug!("announcement not published: {e}");
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
                let Ok(mut a) = signed.payload_unverified(MAX_GOSSIP_MESSAGE) else {
                    return;
                };
                drop_invalid_claims(&mut a, now_ms());
                self.on_announcement(a).await;
            }
            GossipMessage::Event(signed) => self.on_event(signed).await,
        }
    }

    pub(super) async fn on_announcement(&self, a: Announcement) {
        if a.node == self.node() {
            return;
        }
        let (fresh, new_services) = self.providers().apply(&a);
        let size = self.providers().len();
        self.metrics.provider_nodes.set(size as i64);
        if fresh && let (Some(net), Ok(peer)) = (self.network(), a.node.peer_id()) {
            let addrs = a.addrs.iter().filter_map(|s| s.parse().ok()).collect();
            net.add_addresses(peer, addrs).await;
        }
        if !new_services.is_empty() && self.all_events_watchers.load(Ordering::SeqCst) > 0 {
            for s in new_services {
                self.subscribe_topic(s).await;
            }
        }
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
