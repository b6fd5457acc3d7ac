//! Process: event → last result. A process triggered by echo's `tick` event runs three
//! chained `echo` tasks (each fed by the one before); we measure from the event to the
//! completion of the third task, with everything on one node (local) and with the process
//! on node A while echo, its event and its tasks are on node B (routed).

use crate::Ctx;
use crate::cluster::{Api, join, start_node};
use crate::report::{Section, Summary, Table, ms};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PROCESS: &str = r#"
name: bench-chain
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: one
    task: {service: echo, task: echo, inputs: {message: {step: tick, path: value}}}
  - key: two
    task: {service: echo, task: echo, inputs: {step: one}}
  - key: three
    task: {service: echo, task: echo, inputs: {step: two}}
"#;

/// The task steps of [`PROCESS`], in order.
const TASKS: [&str; 3] = ["one", "two", "three"];

/// How long one run may take before the sample is an error.
const RUN_LIMIT: Duration = Duration::from_secs(15);
/// How long the first event may take to trigger a run (routed: the gossip subscription of
/// A to echo's event topic has to reach B first).
const FIRST_RUN_LIMIT: Duration = Duration::from_secs(60);

/// One run, measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Event emitted (emitter's `created_at`) → third step finished (process node's
    /// `finished_at`), node timestamps in ms.
    total: Duration,
    /// Event emitted → run started on the process's node.
    trigger: Duration,
    /// Each task step, started → finished, as the process's node recorded it.
    steps: [Duration; 3],
    /// As the client sees it: tick request sent → completed run received on the run stream.
    client: Duration,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let n = ctx.n(50, 3);
    let warm = ctx.n(3, 1);

    let local = {
        eprintln!("process: local setup (one node runs echo and the process)");
        let node = start_node(&[]).await?;
        let api = Api::new(&node);
        api.deploy_and_start(&ctx.echo_dir)
            .await
            .context("local: deploying and starting echo")?;
        measure(&api, &api, n, warm).await.context("local setup")?
    };

    let routed = {
        eprintln!("process: routed setup (A runs the process, B runs echo)");
        let b = start_node(&[]).await?;
        let a = join(&b).await?;
        let (api_a, api_b) = (Api::new(&a), Api::new(&b));
        api_b
            .deploy_and_start(&ctx.echo_dir)
            .await
            .context("routed: deploying and starting echo on B")?;
        api_a
            .wait_providers("echo", 1, Duration::from_secs(60))
            .await
            .context("routed: B's announcement of echo did not reach A")?;
        measure(&api_a, &api_b, n, warm)
            .await
            .context("routed setup")?
    };

    let mut section = Section::new(
        "Process: event → last result",
        "A process (`tick` event of `echo` → three chained `echo` tasks, each fed by the \
         outputs of the one before) is created over `POST /v1/processes`. Each sample runs \
         echo's `tick` task with a unique `value`; the event it emits triggers one run, and \
         we wait on the process's run stream (`/v1/processes/{id}/logs`, SSE) for that run \
         to complete. One run at a time. **local**: one node runs echo and the process. \
         **routed**: node A runs the process, node B runs echo; B's event reaches A over \
         gossip and the three tasks are routed from A to B.",
    );
    let setups = [("local", &local), ("routed", &routed)];

    let mut t = Table::new(&["setup", "n", "min", "p50", "p99"]);
    for (name, samples) in setups {
        let s = Summary::of(&samples.iter().map(|s| s.total).collect::<Vec<_>>());
        t.row([name.to_string()].into_iter().chain(s.cells()).collect());
    }
    section.tables.push((
        "Event → third task completed (ms, node timestamps)".into(),
        t,
    ));

    let mut t = Table::new(&["setup", "n", "min", "p50", "p99"]);
    for (name, samples) in setups {
        let s = Summary::of(&samples.iter().map(|s| s.client).collect::<Vec<_>>());
        t.row([name.to_string()].into_iter().chain(s.cells()).collect());
    }
    section.tables.push((
        "As the client sees it: `tick` request sent → completed run received (ms)".into(),
        t,
    ));

    let mut t = Table::new(&[
        "setup",
        "event → run started",
        "step one",
        "step two",
        "step three",
        "between steps",
    ]);
    for (name, samples) in setups {
        let p50 = |f: &dyn Fn(&Sample) -> Duration| {
            ms(Summary::of(&samples.iter().map(f).collect::<Vec<_>>()).p50)
        };
        t.row(vec![
            name.into(),
            p50(&|s| s.trigger),
            p50(&|s| s.steps[0]),
            p50(&|s| s.steps[1]),
            p50(&|s| s.steps[2]),
            p50(&|s| {
                s.total
                    .saturating_sub(s.trigger)
                    .saturating_sub(s.steps.iter().sum())
            }),
        ]);
    }
    section.tables.push((
        "Where the time goes (p50 of each part, ms, node timestamps)".into(),
        t,
    ));

    let p50 = |v: &[Sample]| Summary::of(&v.iter().map(|s| s.total).collect::<Vec<_>>()).p50;
    section.notes.push(format!(
        "p50 event → last result: local {} ms, routed {} ms (the issue sets no target for \
         this figure).",
        ms(p50(&local)),
        ms(p50(&routed)),
    ));
    section.notes.push(
        "Node timestamps (1 ms resolution, same host clock): the start is the event's \
         `created_at`, stamped by the emitting node when echo's container hands it the event; \
         the end is the third step's `finished_at` in the run record, stamped by the \
         process's node when it handles that execution's result."
            .into(),
    );
    section.notes.push(
        "A step runs from the moment the process's node creates its execution to the moment \
         it handles the result: submission (routed: over libp2p to B), the container's \
         work and the result's way back. `between steps` is what is left: the hand-off from \
         one step to the next inside the process runner."
            .into(),
    );
    section.notes.push(format!(
        "The client figure adds the `tick` execution's own round trip (request → container \
         → event) and the run stream's delivery. {warm} warm-up run(s) per setup are not \
         counted; in the routed setup the first one also waits until A's subscription to \
         echo's event topic has reached B."
    ));
    Ok(section)
}

/// Create the process on `process_api`, then trigger `n` runs (after `warm` discarded
/// ones) by running `tick` on `echo_api`.
async fn measure(process_api: &Api, echo_api: &Api, n: usize, warm: usize) -> Result<Vec<Sample>> {
    let created = process_api
        .post("/v1/processes", &json!({"definition": PROCESS}))
        .await
        .context("creating the process")?;
    let process = created["id"]
        .as_str()
        .with_context(|| format!("process without an id: {created}"))?
        .to_string();
    let mut runs = RunStream::open(process_api, &process).await?;

    // The first event that triggers a run: routed, A's subscription may not have reached
    // B yet, and such events trigger nothing; tick again until one does.
    let deadline = Instant::now() + FIRST_RUN_LIMIT;
    let mut k = 0;
    loop {
        k += 1;
        let value = unique_value(&format!("first-{k}"));
        let sent = Instant::now();
        echo_api
            .exec("echo", "tick", &json!({ "value": value }))
            .await
            .context("warm-up tick")?;
        match runs
            .wait_completed(&value, sent + Duration::from_secs(1), RUN_LIMIT)
            .await?
        {
            Some(_) => break,
            None if Instant::now() > deadline => {
                bail!(
                    "no event of echo triggered a run of the process within \
                     {FIRST_RUN_LIMIT:?} ({k} ticks)"
                )
            }
            None => {}
        }
    }
    for i in 1..warm {
        sample(process_api, echo_api, &mut runs, &format!("warm-{i}"))
            .await
            .context("warm-up run")?;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(
            sample(process_api, echo_api, &mut runs, &format!("s{i}"))
                .await
                .with_context(|| format!("sample {i}"))?,
        );
    }
    Ok(out)
}

async fn sample(
    process_api: &Api,
    echo_api: &Api,
    runs: &mut RunStream,
    tag: &str,
) -> Result<Sample> {
    let value = unique_value(tag);
    let sent = Instant::now();
    echo_api
        .exec("echo", "tick", &json!({ "value": value }))
        .await
        .context("tick")?;
    let Some((seen, run)) = runs
        .wait_completed(&value, sent + RUN_LIMIT, RUN_LIMIT)
        .await?
    else {
        let recent = process_api
            .get(&format!("/v1/processes/{}/runs?limit=3", runs.process))
            .await
            .unwrap_or(Value::Null);
        bail!(
            "the event `{value}` did not complete a run within {RUN_LIMIT:?}; newest runs: {recent}"
        );
    };
    let client = seen - sent;

    // The event as its emitter recorded it.
    let events = echo_api
        .get("/v1/events?service=echo&event=tick&limit=50")
        .await
        .context("listing the emitter's events")?;
    let event = events["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["data"]["value"] == value.as_str()))
        .with_context(|| format!("the emitter has no event with value `{value}`"))?;
    let emitted = event["created_at"]
        .as_u64()
        .with_context(|| format!("event without created_at: {event}"))?;

    let at = |v: &Value, what: &str| {
        v.as_u64()
            .with_context(|| format!("run {} has no {what}: {run}", run["id"]))
    };
    let started = at(&run["started_at"], "started_at")?;
    let mut steps = [Duration::ZERO; 3];
    for (i, key) in TASKS.iter().enumerate() {
        let s = &run["steps"][key];
        steps[i] = span(
            at(&s["started_at"], "step started_at")?,
            at(&s["finished_at"], "step finished_at")?,
        );
    }
    let finished = at(
        &run["steps"]["three"]["finished_at"],
        "step three finished_at",
    )?;
    Ok(Sample {
        total: span(emitted, finished),
        trigger: span(emitted, started),
        steps,
        client,
    })
}

fn span(from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(to_ms.saturating_sub(from_ms))
}

fn unique_value(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("bench-{tag}-{nanos}")
}

/// The run updates of one process, read from its SSE stream (`/v1/processes/{id}/logs`)
/// by a background task, each with the moment it arrived.
struct RunStream {
    process: String,
    rx: mpsc::Receiver<Result<(Instant, Value)>>,
    task: JoinHandle<()>,
}

impl Drop for RunStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunStream {
    /// Subscribed once this returns (the node subscribes before it answers).
    async fn open(api: &Api, process: &str) -> Result<RunStream> {
        let path = format!("/v1/processes/{process}/logs");
        let mut req = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .context("an HTTP client")?
            .get(format!("{}{path}", api.base));
        if let Some(t) = &api.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("GET {path}: no answer"))?;
        if !resp.status().is_success() {
            bail!(
                "GET {path}: {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx
                            .send(Err(anyhow::Error::new(e).context("run stream broke")))
                            .await;
                        return;
                    }
                };
                let now = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut event = "message";
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            if !data.is_empty() {
                                data.push('\n');
                            }
                            data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        }
                    }
                    let item = match event {
                        "run" => serde_json::from_str::<Value>(&data)
                            .map(|v| (now, v))
                            .with_context(|| format!("bad run on the stream: {data}")),
                        "lagged" => Err(anyhow::anyhow!(
                            "the run stream lagged and dropped updates: {data}"
                        )),
                        _ => continue,
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Err(anyhow::anyhow!("the run stream ended"))).await;
        });
        Ok(RunStream {
            process: process.to_string(),
            rx,
            task,
        })
    }

    /// Wait for the run triggered by the event carrying `value` to end. `None` when no
    /// run for `value` has started by `start_by`, or it has not ended within `limit`
    /// after it started; an error when it failed.
    async fn wait_completed(
        &mut self,
        value: &str,
        start_by: Instant,
        limit: Duration,
    ) -> Result<Option<(Instant, Value)>> {
        let mut deadline = start_by;
        let mut started = false;
        loop {
            let item = match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("the run stream closed"),
                Ok(Some(item)) => item?,
            };
            let (at, run) = item;
            if run["steps"]["tick"]["output"]["value"] != value {
                continue;
            }
            if !started {
                started = true;
                deadline = Instant::now() + limit;
            }
            match run["status"].as_str() {
                Some("running") => {}
                Some("completed") if run["steps"]["three"]["status"] == "done" => {
                    return Ok(Some((at, run)));
                }
                _ => bail!("the run for `{value}` ended without its third step: {run}"),
            }
        }
    }
}
