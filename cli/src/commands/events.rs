//! `mesg events`: recent events, then events as they are emitted.

use super::Ctx;
use super::views::{self, service_label};
use crate::args::EventsArgs;
use crate::output::{Paint, compact_json, errln, format_clock, outln, pe, po};
use mesg_protocol::Event;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// `service  key  data` of an event.
pub fn event_summary(e: &Event, labels: &HashMap<String, String>) -> String {
    format!(
        "{}  {}  {}",
        service_label(labels, &e.service_hash.to_string()),
        po(Paint::Cyan, &e.key),
        compact_json(&e.data.0, 400)
    )
}

/// One line per event: `time  service  key  data`.
pub fn event_line(e: &Event, labels: &HashMap<String, String>) -> String {
    format!(
        "{}  {}",
        po(Paint::Dim, &format_clock(e.created_at)),
        event_summary(e, labels)
    )
}

fn filters(args: &EventsArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(s) = &args.service {
        q.push(("service", s.clone()));
    }
    if let Some(k) = &args.event {
        q.push(("event", k.clone()));
    }
    q
}

pub async fn run(ctx: &Ctx, args: &EventsArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let query = filters(args);
    // Subscribe first, then read the recent ones: nothing emitted in between is missed,
    // and what both return is printed once.
    let response = client
        .send(client.get(&["v1", "events", "stream"]).query(&query))
        .await?;
    let mut labels = if ctx.json() {
        HashMap::new()
    } else {
        views::service_labels(client).await
    };
    let print = |raw: &str, e: Option<&Event>, labels: &HashMap<String, String>| match e {
        Some(e) if !ctx.json() => outln!("{}", event_line(e, labels)),
        _ => outln!("{raw}"),
    };
    let mut seen = HashSet::new();
    let mut refreshed = None;
    if let Some(n) = args.recent {
        let mut q = query.clone();
        q.push(("limit", n.to_string()));
        let v: Value = client.json(client.get(&["v1", "events"]).query(&q)).await?;
        let recent = v["events"].as_array().cloned().unwrap_or_default();
        // Newest first from the API: print oldest first, like the stream.
        for raw in recent.iter().rev() {
            let e: Option<Event> = serde_json::from_value(raw.clone()).ok();
            if let Some(e) = &e {
                seen.insert(e.id);
            }
            print(&raw.to_string(), e.as_ref(), &labels);
        }
    }
    if !ctx.json() {
        errln!("{}", pe(Paint::Dim, "watching events (Ctrl-C to stop)"));
    }
    let mut events = client.sse(response);
    while let Some(event) = events.next().await {
        let event = event?;
        match event.event.as_str() {
            "event" => {
                let e: Option<Event> = serde_json::from_str(&event.data).ok();
                if let Some(e) = &e {
                    if !seen.is_empty() && seen.remove(&e.id) {
                        continue;
                    }
                    if !ctx.json() {
                        let hash = e.service_hash.to_string();
                        views::refresh_labels(client, &mut labels, &mut refreshed, &hash).await;
                    }
                }
                print(&event.data, e.as_ref(), &labels);
            }
            "lagged" => errln!(
                "{} missed some events: the stream was too slow ({})",
                pe(Paint::Yellow, "warning:"),
                event.data
            ),
            _ => {}
        }
        if crate::output::stdout_closed() {
            break;
        }
    }
    Ok(())
}
