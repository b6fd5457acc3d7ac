//! Events across the network: this node's events published on their service's topic;
//! other nodes' events delivered only when their emitter announces the instance, they are
//! new (also across restarts) and they match the service's event schema; topics joined
//! while someone here (an API stream, a process) wants them.

use super::Router;
use crate::network::events_topic;
use crate::store::ServiceEntry;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::GossipMessage;
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE};
use mesg_protocol::{Event, ServiceHash, now_ms};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Service definitions fetched at once to check events of services this node never saw;
/// an event that finds none free is dropped (and counted): a peer announcing many
/// services must not make the node fetch without bound.
pub const MAX_EVENT_DEFINITION_FETCHES: usize = 4;
/// How long an event waits for its service's definition to be fetched.
/// Providers of a watched service this node connects to (its events' emitters).
const MAX_EMITTERS_CONNECTED: usize = 8;
const EVENT_DEFINITION_PATIENCE: Duration = Duration::from_secs(5);

/// An event envelope's replay nonce, recorded when the event is delivered.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeenNonce {
    signer: mesg_protocol::PublicKey,
    nonce: [u8; 16],
    expires_at: u64,
}

impl Router {
    /// A network event: delivered to processes and event streams only when its emitter
    /// currently announces the instance it claims to come from, it was not seen before
    /// (persisted, so a replay after a restart is ignored too), and its data validates
    /// against the service's event schema. Whatever fails is dropped and counted.
    #[tracing::instrument(name = "event_in", skip_all)]
    pub(super) async fn on_event(&self, signed: Signed<Event>) {
        let Ok(event) = signed.payload_unverified(MAX_GOSSIP_MESSAGE) else {
            return;
        };
        if event.emitter == self.node() {
            return;
        }
        // An event dated ahead of this node's clock would stay first in the recent events
        // (never trimmed) and mislead processes that order by time.
        if event.created_at > now_ms().saturating_add(mesg_protocol::envelope::MAX_CLOCK_SKEW_MS) {
            self.metrics.events_dropped_invalid.inc();
            tracing::debug!(event = %event.id, emitter = %event.emitter, "event dropped: dated in the future");
            return;
        }
        let entitled = self.providers().announces_instance(
            &event.emitter,
            &event.service_hash,
            &event.instance_hash,
        );
        if !entitled {
            self.metrics.events_dropped_unentitled.inc();
            tracing::debug!(
                event = %event.id,
                emitter = %event.emitter,
                "event dropped: its emitter does not announce instance {} of service {}",
                event.instance_hash,
                event.service_hash
            );
            return;
        }
        if !self.events.first_sight(&event.id) {
            return;
        }
        // The envelope's nonce is recorded once the event is checked and stored, just
        // before it is delivered (`check_and_deliver`): a replay after a restart is known,
        // and an event lost in a crash before delivery can be caught up again.
        let nonce = SeenNonce {
            signer: signed.header.signer,
            nonce: signed.header.nonce.0,
            expires_at: signed.header.expires_at,
        };
        match self.store.service(&event.service_hash) {
            Ok(Some(entry)) => self.check_and_deliver(&entry, event, nonce),
            _ => {
                // The definition is in the network (the emitter runs it): fetch its
                // record, a few at a time; without it the event cannot be checked.
                let Ok(permit) = self.event_checks.clone().try_acquire_owned() else {
                    self.metrics.events_dropped_unchecked.inc();
                    tracing::debug!(event = %event.id, "event dropped: too many definitions being fetched");
                    return;
                };
                let router = self.arc();
                tokio::spawn(async move {
                    let fetched = tokio::time::timeout(
                        EVENT_DEFINITION_PATIENCE,
                        router.fetch_record(event.service_hash),
                    )
                    .await;
                    drop(permit);
                    match fetched {
                        Ok(Ok(entry)) => router.check_and_deliver(&entry, event, nonce),
                        Ok(Err(e)) => {
                            router.metrics.events_dropped_unchecked.inc();
                            tracing::debug!(event = %event.id, "event dropped: no definition to check it against: {e}");
                        }
                        Err(_) => {
                            router.metrics.events_dropped_unchecked.inc();
                            tracing::debug!(event = %event.id, "event dropped: its service's definition was not found in time");
                        }
                    }
                });
            }
        }
    }

    pub(super) fn check_and_deliver(&self, entry: &ServiceEntry, event: Event, nonce: SeenNonce) {
        let valid = match entry.record.definition.events.get(&event.key) {
            None => Err(format!(
                "service {} has no event `{}`",
                event.service_hash, event.key
            )),
            Some(def) => mesg_protocol::schema::validate(&def.data, &event.data.0, "data")
                .map_err(|e| e.to_string()),
        };
        if let Err(reason) = valid {
            self.metrics.events_dropped_invalid.inc();
            tracing::debug!(event = %event.id, emitter = %event.emitter, "event dropped: {reason}");
            return;
        }
        // Stored first, then the nonce: once the nonce is on disk, so is the event (sled
        // writes in order), and processes find it again after a crash (`processes`).
        self.events.store_received(&event);
        match self
            .store
            .record_nonce(&nonce.signer, &nonce.nonce, nonce.expires_at)
        {
            Ok(true) => {
                let persist = self.store.persist();
                tokio::spawn(async move {
                    if let Err(e) = persist.await {
                        tracing::warn!("seen event not persisted: {e}");
                    }
                });
            }
            Ok(false) => {
                self.metrics.events_dropped_replayed.inc();
                tracing::debug!(event = %event.id, "event dropped: seen before (replay)");
                return;
            }
            Err(e) => tracing::warn!(event = %event.id, "seen event not recorded: {e}"),
        }
        self.note_event_seq(&event);
        self.events.deliver(event);
    }

    pub async fn publish_event(&self, event: &Event, signed: Signed<Event>) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let Ok(frame) = wire::encode_frame(&GossipMessage::Event(signed), MAX_GOSSIP_MESSAGE)
        else {
            tracing::warn!(event = %event.id, "event too large for the network; kept local");
            return;
        };
        if let Err(e) = net.publish(events_topic(&event.service_hash), frame).await {
            tracing::debug!("event not published: {e}");
        }
    }

    pub(super) async fn subscribe_topic(&self, service: ServiceHash) {
        if let Some(net) = self.network() {
            self.track_topic(service, true);
            net.subscribe(events_topic(&service)).await;
            self.connect_emitters(&service).await;
        }
    }

    /// Connect to the providers of `service` (its emitters) if this node is not: with
    /// bounded connections it may have none to them, and an event crosses only the
    /// topic's mesh of connected subscribers.
    pub(super) async fn connect_emitters(&self, service: &ServiceHash) {
        let Some(net) = self.network() else { return };
        let providers = self.providers().candidates(service, &self.node());
        for node in providers.into_iter().take(MAX_EMITTERS_CONNECTED) {
            if let Ok(peer) = node.peer_id() {
                net.connect(peer).await;
            }
            // Watched again (a restart: processes subscribe as they load): what this
            // emitter sent while no one here listened.
            self.catch_up_from_cursor(node, *service);
        }
    }

    pub(super) async fn unsubscribe_topic(&self, service: ServiceHash) {
        if let Some(net) = self.network() {
            self.track_topic(service, false);
            net.unsubscribe(events_topic(&service)).await;
        }
    }

    pub(super) fn track_topic(&self, service: ServiceHash, subscribed: bool) {
        let mut topics = self.subscribed_topics.lock().expect("topics lock");
        if subscribed {
            topics.insert(service);
        } else {
            topics.remove(&service);
        }
        self.metrics.event_topics.set(topics.len() as i64);
    }

    /// The services whose events this node is subscribed to right now (a snapshot).
    pub(super) fn watched_services(&self) -> Vec<ServiceHash> {
        self.subscribed_topics
            .lock()
            .expect("topics lock")
            .iter()
            .copied()
            .collect()
    }

    /// The event topics this node is subscribed to right now.
    pub fn subscribed_event_topics(&self) -> usize {
        self.subscribed_topics.lock().expect("topics lock").len()
    }

    /// After the last watcher of every service went: leave the topics no one else
    /// (a filtered stream, a process) still wants.
    pub(super) async fn leave_unwanted_topics(&self) {
        for s in self.watched_services() {
            let wanted = self.all_events_watchers.load(Ordering::SeqCst) > 0
                || self
                    .event_topics
                    .lock()
                    .expect("topics lock")
                    .contains_key(&s);
            if !wanted {
                self.unsubscribe_topic(s).await;
            }
        }
    }

    /// Receive events of `service` (or of every known service) from the network while
    /// the returned guard lives.
    pub async fn watch_events(&self, service: Option<ServiceHash>) -> EventInterest {
        match service {
            Some(s) => {
                let first = {
                    let mut counts = self.event_topics.lock().expect("topics lock");
                    let c = counts.entry(s).or_insert(0);
                    *c += 1;
                    *c == 1
                };
                if first {
                    self.subscribe_topic(s).await;
                }
            }
            None => {
                self.all_events_watchers.fetch_add(1, Ordering::SeqCst);
                let known = self.providers().known_services();
                for s in known {
                    self.subscribe_topic(s).await;
                }
            }
        }
        EventInterest {
            router: self.arc(),
            service,
        }
    }
}

/// Interest in network events; unsubscribes when dropped.
#[derive(Debug)]
pub struct EventInterest {
    router: Arc<Router>,
    service: Option<ServiceHash>,
}

impl Drop for EventInterest {
    fn drop(&mut self) {
        match self.service {
            None => {
                let before = self
                    .router
                    .all_events_watchers
                    .fetch_sub(1, Ordering::SeqCst);
                if before == 1 {
                    let router = self.router.clone();
                    tokio::spawn(async move { router.leave_unwanted_topics().await });
                }
            }
            Some(s) => {
                let last = {
                    let mut counts = self.router.event_topics.lock().expect("topics lock");
                    match counts.get_mut(&s) {
                        Some(c) => {
                            *c -= 1;
                            if *c == 0 {
                                counts.remove(&s);
                                true
                            } else {
                                false
                            }
                        }
                        None => false,
                    }
                };
                // A watcher of every service still wants the topic.
                let all = self.router.all_events_watchers.load(Ordering::SeqCst) > 0;
                if last && !all {
                    let router = self.router.clone();
                    tokio::spawn(async move { router.unsubscribe_topic(s).await });
                }
            }
        }
    }
}
