//! The events scenario: a process on node4 runs once per `tick` event of echo; node2
//! emits a steady stream of ticks while node4 is SIGKILLed and started again. Every tick
//! emitted before, during and after the restart must start exactly one run on node4
//! (events are numbered per emitter and service; a restarted subscriber catches up from
//! the emitter's log, and a tick delivered twice finds its run).

use crate::scenario::Row;
use crate::testnet::{Testnet, docker, now_ms};
use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const KEY: &str = "events";
pub const TITLE: &str = "SIGKILL process node4 during a stream of trigger events (echo ticks), start it again 3 s later";

const EMITTER: &str = "node2";
/// Where echo runs: a tick submitted to node2 may run on either.
const PROVIDERS: [&str; 2] = ["node2", "node3"];
const SUBSCRIBER: &str = "node4";
/// One tick this often.
const TICK_EVERY: Duration = Duration::from_millis(100);
/// How long the subscriber catches up after the stream, at most.
const SETTLE: Duration = Duration::from_secs(30);

fn process_yaml(tag: &str) -> String {
    format!(
        "name: tick-runs-{tag}\nsteps:\n  - key: tick\n    trigger: {{service: echo, event: tick}}\n  - key: seen\n    map:\n      value: {{step: tick, path: value}}\n"
    )
}

fn log(start: Instant, msg: impl AsRef<str>) {
    println!(
        "  [{KEY} +{:>5.1}s] {}",
        start.elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

/// The event id that started each run of `process` on `api`.
async fn runs_by_event(api: &crate::api::Api, process: &str) -> anyhow::Result<Vec<String>> {
    let v = api
        .get_ok(&format!("/v1/processes/{process}/runs?limit=1000"))
        .await?;
    Ok(v["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["cause"]["parent"]["event"].as_str().map(str::to_string))
        .collect())
}

/// The ticks of this run (their value starts with `tag`), by event id, from the
/// providers of echo (each lists the events it emitted; a tick runs on either).
async fn ticks(net: &Testnet, tag: &str) -> anyhow::Result<HashMap<String, Value>> {
    let mut out = HashMap::new();
    for name in PROVIDERS {
        let node = net.node(name);
        let v = node.api.get_ok("/v1/events?event=tick&limit=10000").await?;
        out.extend(
            v["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["emitter"].as_str() == Some(node.public_key.as_str()))
                .filter(|e| {
                    e["data"]["value"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(tag))
                })
                .filter_map(|e| Some((e["id"].as_str()?.to_string(), e.clone()))),
        );
    }
    Ok(out)
}

pub async fn run(net: &Testnet, tag: &str) -> anyhow::Result<Row> {
    let start = Instant::now();
    let mut row = Row {
        key: KEY.to_string(),
        title: TITLE.to_string(),
        ..Row::default()
    };
    println!("\n== scenario: {KEY} — {TITLE}");
    let emitter = net.node(EMITTER).clone();
    let subscriber = net.node(SUBSCRIBER).clone();
    net.wait_settled(SUBSCRIBER, &PROVIDERS, Duration::from_secs(90))
        .await?;
    let (status, p) = subscriber
        .api
        .post("/v1/processes", &json!({"definition": process_yaml(tag)}))
        .await?;
    if !status.is_success() {
        bail!("creating the process on {SUBSCRIBER}: {status} {p}");
    }
    let process = p["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no process id in {p}"))?
        .to_string();
    log(
        start,
        format!("process {process} on {SUBSCRIBER}: one run per echo tick"),
    );

    // The stream: ticks executed on the emitter's own API (local instance), each with a
    // value naming this run.
    let streaming = Arc::new(AtomicBool::new(true));
    let stream = {
        let streaming = streaming.clone();
        let api = emitter.api.clone();
        let echo = net.echo_hash.clone();
        let tag = tag.to_string();
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0u64, 0u64);
            while streaming.load(Ordering::SeqCst) {
                let body = json!({
                    "service": echo,
                    "task": "tick",
                    "inputs": {"value": format!("{tag}-{sent}")},
                });
                match api.post("/v1/executions?wait=true", &body).await {
                    Ok((s, v)) if s.is_success() && v["status"] == "Completed" => sent += 1,
                    _ => failed += 1,
                }
                tokio::time::sleep(TICK_EVERY).await;
            }
            (sent, failed)
        })
    };

    // Subscribed once the first run starts: every tick from that one on counts.
    let first_deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(id) = runs_by_event(&subscriber.api, &process).await?.last() {
            break id.clone();
        }
        if Instant::now() > first_deadline {
            streaming.store(false, Ordering::SeqCst);
            bail!("no run of the process on {SUBSCRIBER} within 30 s of the first tick");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let since = ticks(net, tag)
        .await?
        .get(&first)
        .and_then(|e| e["created_at"].as_u64())
        .context("the first run's tick on the emitter")?;
    log(start, "first run started; streaming");
    tokio::time::sleep(Duration::from_secs(3)).await;
    docker(&["kill", &subscriber.container]).await?;
    let killed_at = now_ms();
    log(start, format!("docker kill {SUBSCRIBER} (SIGKILL)"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    docker(&["start", &subscriber.container]).await?;
    let started_again = Instant::now();
    log(start, format!("docker start {SUBSCRIBER}"));
    // Until the subscriber answers again, then a while more.
    let up_deadline = Instant::now() + Duration::from_secs(60);
    while subscriber.api.get_ok("/v1/node").await.is_err() {
        if Instant::now() > up_deadline {
            streaming.store(false, Ordering::SeqCst);
            bail!("{SUBSCRIBER} did not answer within 60 s of its start");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answered = started_again.elapsed();
    log(start, format!("{SUBSCRIBER} answers again"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    streaming.store(false, Ordering::SeqCst);
    let (sent, failed) = stream.await?;
    log(
        start,
        format!("stream stopped: {sent} ticks emitted, {failed} tick calls failed"),
    );

    let emitted: HashMap<String, Value> = ticks(net, tag)
        .await?
        .into_iter()
        .filter(|(_, e)| e["created_at"].as_u64().is_some_and(|t| t >= since))
        .collect();
    let during = emitted
        .values()
        .filter(|e| e["created_at"].as_u64().is_some_and(|t| t >= killed_at))
        .count();
    let stopped = Instant::now();
    let settle_deadline = stopped + SETTLE;
    let runs = loop {
        let runs = runs_by_event(&subscriber.api, &process).await?;
        let started: HashSet<&String> = runs.iter().collect();
        if emitted.keys().all(|id| started.contains(id)) {
            row.recovery = Some(stopped.elapsed());
            break runs;
        }
        if Instant::now() > settle_deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut per_event: HashMap<&String, usize> = HashMap::new();
    for id in &runs {
        *per_event.entry(id).or_default() += 1;
    }
    row.submitted = emitted.len();
    row.accepted = emitted.len();
    row.completed = emitted
        .keys()
        .filter(|id| per_event.contains_key(id))
        .count();
    row.lost = emitted
        .iter()
        .filter(|(id, _)| !per_event.contains_key(id))
        .map(|(id, e)| format!("tick {id} (seq {}) started no run", e["seq"]))
        .collect();
    for (id, n) in per_event.iter().filter(|(_, n)| **n > 1) {
        row.problems.push(format!("tick {id} started {n} runs"));
    }
    let strangers = runs
        .iter()
        .filter(|id| !emitted.contains_key(*id) && **id != first)
        .count();
    if strangers > 0 {
        row.notes.push(format!(
            "{strangers} runs started by ticks before the first counted one"
        ));
    }
    if emitted.len() < 50 {
        row.problems.push(format!(
            "only {} ticks emitted: not a steady stream",
            emitted.len()
        ));
    }
    row.notes.push(format!(
        "{} ticks counted, {during} of them emitted after the kill; {} runs",
        emitted.len(),
        runs.len()
    ));
    row.recovery_detail = match row.recovery {
        Some(d) => format!(
            "every tick had its run {:.1} s after the stream stopped (node4 answered {:.1} s after its start)",
            d.as_secs_f64(),
            answered.as_secs_f64()
        ),
        None => format!(
            "ticks still without a run {} s after the stream stopped",
            SETTLE.as_secs()
        ),
    };
    row.duration = start.elapsed();
    log(
        start,
        format!(
            "{} of {} ticks started exactly one run; {} lost",
            row.completed,
            emitted.len(),
            row.lost.len()
        ),
    );
    Ok(row)
}
