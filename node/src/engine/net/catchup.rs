//! Catch-up of missed events. Gossip reaches a subscriber only while it is in the
//! topic's mesh: a node that restarts, rejoins after a partition, or whose mesh was
//! still forming misses what was emitted meanwhile. Each emitter numbers its events per
//! service (`Event::seq`) and keeps them signed for the retention window (the catch-up
//! log); a subscriber remembers the last number it saw per emitter and service (the
//! cursor, kept in the store) and asks the emitter for what came after it
//! (`WorkRequest::EventsSince`) when:
//! - an event arrives with a gap before it;
//! - the emitter's announcement is fresh (after this node's restart, or the emitter's);
//! - every [`POLL_EVERY`], for the emitters of the services it watches (the last
//!   events of a burst leave no gap behind them).
//!
//! Nothing is taken on the answerer's word: each event must be signed by the emitter
//! asked, be of the service asked and come after the cursor, and then goes through the
//! same checks as a gossiped one (entitlement, schema, replay nonce, duplicate id).

use super::{Router, reject};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{
    EventsSince, MAX_CAUGHT_UP_BYTES, MAX_CAUGHT_UP_EVENTS, RejectCode, WorkRequest, WorkResponse,
};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_GOSSIP_MESSAGE;
use mesg_protocol::{Event, PublicKey, ServiceHash, now_ms};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// How often the emitters of watched services are asked for what came after the cursor.
pub(super) const POLL_EVERY: Duration = Duration::from_secs(10);
/// Answers taken in one catch-up (each up to `MAX_CAUGHT_UP_EVENTS`), so that a peer
/// that keeps answering full pages cannot keep this node busy.
const MAX_PAGES: usize = 16;
/// Emitters of one service polled per round (as many as this node connects to).
const MAX_POLLED_EMITTERS: usize = 8;
/// The store tree of cursors: emitter key (32 bytes) then service hash (32 bytes) ->
/// last sequence number seen (8 bytes, big-endian).
const CURSORS_TREE: &str = "event_cursors";

/// The last sequence number seen per emitter and service (read through to the store),
/// and the catch-ups under way.
#[derive(Debug, Default)]
pub(super) struct EventCursors {
    seen: Mutex<HashMap<(PublicKey, ServiceHash), u64>>,
    running: Mutex<HashSet<(PublicKey, ServiceHash)>>,
}

fn cursor_key(emitter: &PublicKey, service: &ServiceHash) -> Vec<u8> {
    let mut k = emitter.0.to_vec();
    k.extend_from_slice(&service.0.0);
    k
}

/// Why an event of a catch-up answer was not taken.
#[derive(Debug, thiserror::Error)]
enum CatchUpError {
    #[error("does not verify: {0}")]
    Envelope(#[from] mesg_protocol::EnvelopeError),
    #[error("emitted by {got}, not by the emitter asked ({asked})")]
    OtherEmitter { asked: PublicKey, got: PublicKey },
    #[error("of service {got}, not of the service asked ({asked})")]
    OtherService {
        asked: ServiceHash,
        got: ServiceHash,
    },
    #[error("sequence number {seq} is not after {after}")]
    NotAfter { seq: u64, after: u64 },
}

fn check(
    signed: &Signed<Event>,
    emitter: &PublicKey,
    service: &ServiceHash,
    after: u64,
) -> Result<Event, CatchUpError> {
    let event = signed.verify(domains::EVENT, now_ms(), MAX_GOSSIP_MESSAGE)?;
    if event.emitter != *emitter {
        return Err(CatchUpError::OtherEmitter {
            asked: *emitter,
            got: event.emitter,
        });
    }
    if event.service_hash != *service {
        return Err(CatchUpError::OtherService {
            asked: *service,
            got: event.service_hash,
        });
    }
    if event.seq <= after {
        return Err(CatchUpError::NotAfter {
            seq: event.seq,
            after,
        });
    }
    Ok(event)
}

impl Router {
    /// The last sequence number seen of `emitter`'s events of `service` (0: none).
    fn cursor(&self, emitter: &PublicKey, service: &ServiceHash) -> u64 {
        if let Some(n) = self
            .cursors
            .seen
            .lock()
            .expect("cursors")
            .get(&(*emitter, *service))
        {
            return *n;
        }
        let stored = self
            .store
            .blob(CURSORS_TREE, &cursor_key(emitter, service))
            .ok()
            .flatten()
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        self.cursors
            .seen
            .lock()
            .expect("cursors")
            .insert((*emitter, *service), stored);
        stored
    }

    /// A delivered event moves its cursor; a gap before it starts a catch-up.
    pub(super) fn note_event_seq(&self, event: &Event) {
        if event.seq == 0 {
            return;
        }
        let (emitter, service) = (event.emitter, event.service_hash);
        let before = self.cursor(&emitter, &service);
        if event.seq <= before {
            return;
        }
        self.cursors
            .seen
            .lock()
            .expect("cursors")
            .insert((emitter, service), event.seq);
        if let Err(e) = self.store.put_blob(
            CURSORS_TREE,
            &cursor_key(&emitter, &service),
            &event.seq.to_be_bytes(),
        ) {
            tracing::warn!("event cursor not stored: {e}");
        }
        // No cursor before: this node just started to watch; what came before is not
        // its to catch up on.
        if before > 0 && event.seq > before + 1 {
            tracing::debug!(%emitter, %service, after = before, seq = event.seq, "gap in events: catching up");
            self.spawn_catch_up(emitter, service, before);
        }
    }

    /// Ask `emitter` for its events of `service` after the cursor, unless a catch-up of
    /// the pair is under way or this node never saw one of its events.
    pub(super) fn catch_up_from_cursor(&self, emitter: PublicKey, service: ServiceHash) {
        let after = self.cursor(&emitter, &service);
        if after > 0 {
            self.spawn_catch_up(emitter, service, after);
        }
    }

    fn spawn_catch_up(&self, emitter: PublicKey, service: ServiceHash, after: u64) {
        if !self
            .cursors
            .running
            .lock()
            .expect("cursors")
            .insert((emitter, service))
        {
            return;
        }
        let router = self.arc();
        tokio::spawn(async move {
            router.catch_up(emitter, service, after).await;
            router
                .cursors
                .running
                .lock()
                .expect("cursors")
                .remove(&(emitter, service));
        });
    }

    #[tracing::instrument(name = "catch_up", skip(self), fields(%emitter, %service))]
    async fn catch_up(&self, emitter: PublicKey, service: ServiceHash, mut after: u64) {
        let (Some(net), Ok(peer)) = (self.network().cloned(), emitter.peer_id()) else {
            return;
        };
        for _ in 0..MAX_PAGES {
            let request = WorkRequest::EventsSince(EventsSince {
                service_hash: service,
                after,
            });
            let list = match net.send_work(peer, request).await {
                Ok(WorkResponse::Events(list)) => list,
                Ok(WorkResponse::Rejected(r)) => {
                    tracing::debug!("catch-up refused: {}", r.message);
                    return;
                }
                Ok(_) => {
                    tracing::debug!("catch-up: unexpected answer");
                    return;
                }
                Err(e) => {
                    tracing::debug!("catch-up failed: {}", e.reason());
                    return;
                }
            };
            let full = list.len() >= MAX_CAUGHT_UP_EVENTS;
            let mut last = after;
            for signed in list.into_iter().take(MAX_CAUGHT_UP_EVENTS) {
                match check(&signed, &emitter, &service, after) {
                    Ok(event) => {
                        last = last.max(event.seq);
                        self.metrics.events_caught_up.inc();
                        self.on_event(signed).await;
                    }
                    Err(e) => {
                        self.metrics.events_catch_up_dropped.inc();
                        tracing::debug!("caught-up event dropped: {e}");
                    }
                }
            }
            if !full || last == after {
                return;
            }
            after = last;
        }
    }

    /// A subscriber asks for this node's events of a service after a sequence number.
    pub(super) fn on_events_since(&self, since: EventsSince) -> WorkResponse {
        match self.store.logged_events(
            &since.service_hash,
            since.after,
            MAX_CAUGHT_UP_EVENTS,
            MAX_CAUGHT_UP_BYTES,
        ) {
            Ok(list) => WorkResponse::Events(list),
            Err(e) => reject(
                RejectCode::Internal,
                format!("the event log cannot be read: {e}"),
            ),
        }
    }

    /// Every [`POLL_EVERY`]: ask the emitters of the services watched here for what
    /// came after their cursors.
    pub(super) async fn run_catch_up_poll(self: std::sync::Arc<Self>) {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
            for service in self.watched_services() {
                let emitters = self.providers().candidates(&service, &self.node());
                for emitter in emitters.into_iter().take(MAX_POLLED_EMITTERS) {
                    self.catch_up_from_cursor(emitter, service);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CatchUpError, check};
    use mesg_protocol::envelope::Signed;
    use mesg_protocol::types::domains;
    use mesg_protocol::wire::MAX_GOSSIP_MESSAGE;
    use mesg_protocol::{Event, EventId, Hash32, InstanceHash, Json, Keypair, ServiceHash, now_ms};

    fn event(key: &Keypair, service: ServiceHash, seq: u64) -> Signed<Event> {
        let e = Event {
            id: EventId::random(),
            service_hash: service,
            instance_hash: InstanceHash(Hash32::sha256(b"i")),
            key: "tick".into(),
            data: Json(serde_json::json!({})),
            emitter: key.public(),
            created_at: now_ms(),
            cause: None,
            seq,
        };
        Signed::sign(
            key,
            domains::EVENT,
            &e,
            now_ms(),
            60_000,
            MAX_GOSSIP_MESSAGE,
        )
        .unwrap()
    }

    #[test]
    fn a_caught_up_event_must_be_the_emitters_own_of_the_service_after_the_cursor() {
        let emitter = Keypair::generate().unwrap();
        let other = Keypair::generate().unwrap();
        let s = ServiceHash(Hash32::sha256(b"s"));
        let t = ServiceHash(Hash32::sha256(b"t"));
        assert_eq!(
            check(&event(&emitter, s, 5), &emitter.public(), &s, 4)
                .unwrap()
                .seq,
            5
        );
        assert!(matches!(
            check(&event(&other, s, 5), &emitter.public(), &s, 4),
            Err(CatchUpError::OtherEmitter { .. })
        ));
        assert!(matches!(
            check(&event(&emitter, t, 5), &emitter.public(), &s, 4),
            Err(CatchUpError::OtherService { .. })
        ));
        assert!(matches!(
            check(&event(&emitter, s, 4), &emitter.public(), &s, 4),
            Err(CatchUpError::NotAfter { .. })
        ));
        // Signed by the emitter, then claiming another emitter: the envelope's signer
        // check refuses it before anything else.
        let mut forged = event(&other, s, 9);
        forged.header.signer = emitter.public();
        assert!(matches!(
            check(&forged, &emitter.public(), &s, 4),
            Err(CatchUpError::Envelope(_))
        ));
    }
}
