//! The events this node sees, emitted here or received from the network: recorded (the
//! newest `RECENT_EVENTS`), broadcast to API streams and processes, and each id
//! delivered once (a bounded memory of the ids seen). Events emitted here are numbered
//! per service (1, 2, 3...) and kept signed in the catch-up log, so that subscribers
//! that missed some can ask for them again.

use super::config::RECENT_EVENTS;
use super::error::EngineError;
use super::metrics::EngineMetrics;
use crate::store::Store;
use mesg_protocol::envelope::Signed;
use mesg_protocol::{Event, EventId, ServiceHash};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Event ids remembered to drop duplicates.
const SEEN_EVENTS: usize = 16_384;

/// The node's event hub. Shared behind an `Arc`.
pub struct EventHub {
    store: Arc<dyn Store>,
    metrics: EngineMetrics,
    broadcast: broadcast::Sender<Event>,
    seen: Mutex<(HashSet<EventId>, VecDeque<EventId>)>,
    /// The last sequence number given to an event of each service emitted here (read
    /// from the catch-up log the first time, so numbers keep growing across restarts).
    last_seq: Mutex<HashMap<ServiceHash, u64>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    pub fn new(store: Arc<dyn Store>, metrics: EngineMetrics) -> Self {
        EventHub {
            store,
            metrics,
            broadcast: broadcast::channel(4096).0,
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            last_seq: Mutex::new(HashMap::new()),
        }
    }

    /// The sequence number of the next event of `service` emitted here.
    pub fn next_seq(&self, service: &ServiceHash) -> Result<u64, EngineError> {
        let mut last = self.last_seq.lock().expect("seq lock");
        let seq = match last.get(service) {
            Some(n) => n + 1,
            None => self.store.last_event_seq(service)? + 1,
        };
        last.insert(*service, seq);
        Ok(seq)
    }

    /// An event emitted by an instance of this node (checked by the container API), with
    /// its signed envelope when it fits the network (kept for catch-up).
    pub fn emitted_here(
        &self,
        event: &Event,
        signed: Option<&Signed<Event>>,
    ) -> Result<(), EngineError> {
        self.store.put_event(event, RECENT_EVENTS)?;
        if let Some(signed) = signed {
            self.store.log_event(event, signed)?;
        }
        self.first_sight(&event.id);
        self.metrics.events_emitted.inc();
        let _ = self.broadcast.send(event.clone());
        Ok(())
    }

    /// An event of another node, checked by the router (entitled, new, valid): stored
    /// among the recent events (before its replay nonce is recorded, see the router).
    pub fn store_received(&self, event: &Event) {
        if let Err(e) = self.store.put_event(event, RECENT_EVENTS) {
            tracing::warn!(event = %event.id, "event not recorded: {e}");
        }
    }

    /// Hand a stored event of another node to API streams and processes.
    pub fn deliver(&self, event: Event) {
        self.metrics.events_received.inc();
        let _ = self.broadcast.send(event);
    }

    /// Whether this event id is new to this node (and remember it).
    pub fn first_sight(&self, id: &EventId) -> bool {
        let mut seen = self.seen.lock().expect("seen lock");
        if seen.0.contains(id) {
            return false;
        }
        seen.0.insert(*id);
        seen.1.push_back(*id);
        if seen.1.len() > SEEN_EVENTS
            && let Some(old) = seen.1.pop_front()
        {
            seen.0.remove(&old);
        }
        true
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.broadcast.subscribe()
    }

    /// Newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Event>, EngineError> {
        Ok(self.store.recent_events(limit)?)
    }
}
