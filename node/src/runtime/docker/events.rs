//! Docker's event stream as [`RuntimeEvent`]s: once someone subscribes, one task follows
//! this node's container `start` and `die` events and broadcasts them, reconnecting (from
//! the last event seen, so none is lost or repeated) when the stream breaks. The task ends
//! with the runtime.

use super::names::label_of;
use super::{DockerRuntime, Inner, lock};
use crate::runtime::{RuntimeEvent, labels};
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use mesg_protocol::InstanceHash;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

/// Capacity of the event broadcast; slow subscribers lag (and are told so) rather than
/// holding memory.
pub(super) const EVENT_CAPACITY: usize = 1024;
const EVENT_BACKOFF_MIN: Duration = Duration::from_millis(200);
const EVENT_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl DockerRuntime {
    /// [`crate::runtime::Runtime::subscribe`].
    pub(super) fn subscribe_events(&self) -> broadcast::Receiver<RuntimeEvent> {
        let rx = self.inner.events.subscribe();
        self.inner.watch_wanted.store(true, Ordering::Relaxed);
        self.ensure_watcher();
        rx
    }

    /// Start the event watcher if someone subscribed and we are inside a tokio runtime.
    pub(super) fn ensure_watcher(&self) {
        if !self.inner.watch_wanted.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(stop) = lock(&self.inner.watcher_stop).take() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let span = info_span!("runtime.events", node = %self.inner.config.node_id);
        handle.spawn(watch_events(weak, stop, SystemTime::now()).instrument(span));
    }
}

fn event_of(ev: &EventMessage) -> Option<RuntimeEvent> {
    let attrs = ev.actor.as_ref()?.attributes.as_ref()?;
    let instance: InstanceHash = attrs.get(labels::INSTANCE)?.parse().ok()?;
    let key = attrs.get(labels::KEY)?.clone();
    match ev.action.as_deref()? {
        "start" => Some(RuntimeEvent::Started { instance, key }),
        "die" => Some(RuntimeEvent::Died {
            instance,
            key,
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        }),
        _ => None,
    }
}

/// The event's service (its container's `mesg.service` label), for the log.
fn service_of(ev: &EventMessage) -> &str {
    let attrs = ev.actor.as_ref().and_then(|a| a.attributes.as_ref());
    label_of(attrs, labels::SERVICE).unwrap_or("")
}

fn nanos_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Follow this node's container `start`/`die` events and broadcast them, reconnecting
/// (from the last event seen, so none is lost or repeated) when the stream breaks.
async fn watch_events(weak: Weak<Inner>, mut stop: oneshot::Receiver<()>, started: SystemTime) {
    let mut last_nano = nanos_since_epoch(started);
    let mut backoff = EVENT_BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let attempt = {
            let Some(inner) = weak.upgrade() else { return };
            let filters = HashMap::from([
                ("type", vec!["container".to_string()]),
                ("event", vec!["start".to_string(), "die".to_string()]),
                (
                    "label",
                    vec![format!("{}={}", labels::NODE, inner.config.node_id)],
                ),
            ]);
            inner
                .docker()
                .await
                .map(|d| (d, inner.events.clone(), filters))
        };
        match attempt {
            Err(e) => {
                if failures == 0 {
                    warn!("cannot follow Docker events: {e}; retrying");
                } else {
                    debug!("cannot follow Docker events: {e}");
                }
                failures += 1;
            }
            Ok((docker, tx, filters)) => {
                let since = format!(
                    "{}.{:09}",
                    last_nano.div_euclid(1_000_000_000),
                    last_nano.rem_euclid(1_000_000_000)
                );
                let opts = EventsOptionsBuilder::new()
                    .since(&since)
                    .filters(&filters)
                    .build();
                let mut events = docker.events(Some(opts));
                let connected = Instant::now();
                if failures > 0 {
                    info!("following Docker events again");
                }
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        item = events.next() => match item {
                            Some(Ok(ev)) => {
                                failures = 0;
                                if let Some(t) = ev.time_nano {
                                    if t <= last_nano {
                                        continue;
                                    }
                                    last_nano = t;
                                }
                                if let Some(e) = event_of(&ev) {
                                    log_event(&e, service_of(&ev));
                                    let _ = tx.send(e);
                                }
                            }
                            Some(Err(e)) => {
                                warn!("Docker event stream broke: {e}; reconnecting");
                                if let Some(inner) = weak.upgrade() {
                                    inner.disconnect();
                                }
                                failures += 1;
                                break;
                            }
                            None => {
                                warn!("Docker event stream ended; reconnecting");
                                if let Some(inner) = weak.upgrade() {
                                    inner.disconnect();
                                }
                                failures += 1;
                                break;
                            }
                        }
                    }
                }
                if connected.elapsed() > Duration::from_secs(10) {
                    backoff = EVENT_BACKOFF_MIN;
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(EVENT_BACKOFF_MAX);
    }
}

fn log_event(e: &RuntimeEvent, service: &str) {
    match e {
        RuntimeEvent::Started { instance, key } => {
            debug!(%instance, service, key, "container started");
        }
        RuntimeEvent::Died {
            instance,
            key,
            exit_code,
        } => debug!(%instance, service, key, ?exit_code, "container died"),
    }
}
