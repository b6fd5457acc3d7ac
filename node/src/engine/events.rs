//! The events this node sees, emitted here or received from the network: recorded (the
//! newest `RECENT_EVENTS`), broadcast to API streams and processes, and each id
//! delivered once (a bounded memory of the ids seen).

use super::config::RECENT_EVENTS;
use super::error::EngineError;
use super::metrics::EngineMetrics;
use crate::store::Store;
use mesg_protocol::{Event, EventId};
use std::collections::{HashSet, VecDeque};
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
        }
    }

    /// An event emitted by an instance of this node (checked by the container API).
    pub fn emitted_here(&self, event: &Event) -> Result<(), EngineError> {
        self.store.put_event(event, RECENT_EVENTS)?;
        self.first_sight(&event.id);
        self.metrics.events_emitted.inc();
        let _ = self.broadcast.send(event.clone());
        Ok(())
    }

    /// An event of another node, checked by the router (entitled, new, valid).
    pub fn received(&self, event: Event) {
        self.metrics.events_received.inc();
        if let Err(e) = self.store.put_event(&event, RECENT_EVENTS) {
            tracing::warn!(event = %event.id, "event not recorded: {e}");
        }
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
