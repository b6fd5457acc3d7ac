//! Executions per second routed A -> B with 1, 16, 64 and 256 in flight, durable state
//! on (every acknowledged transition flushed), with the CPU and RSS of both nodes.

use crate::Ctx;
use crate::cluster::{Api, Pair, cpu_time, rss, thread_cpu};
use crate::report::{Goal, Section, Summary, Table, mib, ms};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const IN_FLIGHT: &[usize] = &[1, 16, 64, 256];

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let pair = Pair::start(&ctx.echo_dir).await?;
    let window = Duration::from_secs(ctx.n(15, 2) as u64);
    let warmup = Duration::from_secs(ctx.n(2, 1) as u64);
    let pid_a = pair.a.pid().context("A is not running")?;
    let pid_b = pair.b.pid().context("B is not running")?;
    let mut section = Section::new(
        "Throughput (routed A → B)",
        format!(
            "Two nodes on loopback, `echo` on B. The client keeps N executions of `echo` \
             (100 B) in flight on A's API (`wait=true`), each routed to B, for {} s after \
             {} s of warm-up; durable state on (every acknowledged transition is flushed). \
             CPU is the node process's user+system time over the window (100 % = one core); \
             the client runs on the same 2 cores.",
            window.as_secs(),
            warmup.as_secs()
        ),
    );
    let mut t = Table::new(&[
        "path",
        "in flight",
        "exec/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "CPU A %",
        "CPU B %",
        "RSS A MiB",
        "RSS B MiB",
    ]);
    let mut at_64 = None;
    let mut by_thread = None;
    let runs: Vec<(&str, &Api, usize)> = IN_FLIGHT
        .iter()
        .map(|&n| ("routed", &pair.api_a, n))
        .chain(std::iter::once(("local (on B)", &pair.api_b, 64)))
        .collect();
    for (path, api, in_flight) in runs {
        eprintln!("  {path}, {in_flight} in flight");
        load(api, &pair.service, in_flight, warmup).await?;
        let (cpu_a, cpu_b) = (cpu_time(pid_a)?, cpu_time(pid_b)?);
        let cpu_client = cpu_time(std::process::id())?;
        let threads_before = (thread_cpu(pid_a)?, thread_cpu(pid_b)?);
        let r = load(api, &pair.service, in_flight, window).await?;
        if path == "routed" && in_flight == 64 {
            by_thread = Some(thread_table(
                &threads_before,
                &(thread_cpu(pid_a)?, thread_cpu(pid_b)?),
                r.elapsed,
            ));
        }
        let cpu = |before: Duration, pid: u32| -> Result<String> {
            let used = cpu_time(pid)?.saturating_sub(before);
            Ok(format!(
                "{:.0}",
                used.as_secs_f64() / r.elapsed.as_secs_f64() * 100.0
            ))
        };
        let rate = r.latencies.len() as f64 / r.elapsed.as_secs_f64();
        let s = Summary::of(&r.latencies);
        t.row(vec![
            path.to_string(),
            in_flight.to_string(),
            format!("{rate:.0}"),
            ms(s.p50),
            ms(s.p99),
            r.failed.to_string(),
            cpu(cpu_a, pid_a)?,
            cpu(cpu_b, pid_b)?,
            mib(rss(pid_a)?),
            mib(rss(pid_b)?),
        ]);
        if path == "routed" && in_flight == 64 {
            // CPU per execution of each process (ms), to say what 2 cores allow at that cost.
            let per_exec = |before: Duration, pid: u32| -> Result<f64> {
                let used = cpu_time(pid)?.saturating_sub(before);
                Ok(used.as_secs_f64() * 1e3 / r.latencies.len().max(1) as f64)
            };
            at_64 = Some((
                rate,
                per_exec(cpu_a, pid_a)?,
                per_exec(cpu_b, pid_b)?,
                per_exec(cpu_client, std::process::id())?,
            ));
        }
    }
    section.tables.push((String::new(), t));
    if let Some(t) = by_thread {
        section.tables.push((
            "Where each node's CPU went, routed at 64 in flight (% of one core, by thread \
             name from /proc/<pid>/task; `tokio-rt-worker` runs the engine, the API and \
             libp2p; `sled-io` is sled's thread pool, which writes and flushes its log)"
                .into(),
            t,
        ));
    }
    let (rate, a, b, client) = at_64.context("no run with 64 in flight")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per_exec = a + b + client;
    section.goals.push(Goal::new(
        "routed executions/s, 64 in flight",
        "≥ 5,000/s",
        format!(
            "{rate:.0}/s; CPU bound: {} ms of CPU per execution (A {}, B {}, client {}), \
             so {cores:.0} cores allow {:.0}/s at that cost; the rate is {:.0} % of it",
            ms(per_exec),
            ms(a),
            ms(b),
            ms(client),
            cores * 1e3 / per_exec,
            rate / (cores * 1e3 / per_exec) * 100.0
        ),
        rate >= 5000.0,
    ));
    section.notes.push(
        "`failed` counts executions that did not complete (errors or timeouts); the rate \
         counts only completed ones."
            .into(),
    );
    Ok(section)
}

pub struct LoadResult {
    pub latencies: Vec<Duration>,
    pub failed: u64,
    pub elapsed: Duration,
}

/// Keep `in_flight` executions going on `api` for `window`.
async fn load(api: &Api, service: &str, in_flight: usize, window: Duration) -> Result<LoadResult> {
    load_capped(api, service, None, in_flight, window).await
}

/// [`load`] with a spending cap on every request (for a priced service).
pub async fn load_capped(
    api: &Api,
    service: &str,
    max_price: Option<u64>,
    in_flight: usize,
    window: Duration,
) -> Result<LoadResult> {
    let inputs = Arc::new(json!({ "message": "x".repeat(100) }));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + window;
    let mut workers = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (api, service, inputs, failed) = (
            api.clone(),
            service.to_string(),
            inputs.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                match api.exec_capped(&service, "echo", &inputs, max_price).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.context("load worker")?);
    }
    let elapsed = start.elapsed();
    let failed = failed.load(Ordering::Relaxed);
    if latencies.is_empty() {
        anyhow::bail!("no execution completed in {window:?} ({failed} failed)");
    }
    Ok(LoadResult {
        latencies,
        failed,
        elapsed,
    })
}

type ThreadCpu = BTreeMap<String, Duration>;

/// CPU per thread group of A and B over a window, in % of one core, biggest first.
fn thread_table(
    before: &(ThreadCpu, ThreadCpu),
    after: &(ThreadCpu, ThreadCpu),
    window: Duration,
) -> Table {
    let pct = |b: &ThreadCpu, a: &ThreadCpu, name: &str| -> f64 {
        let used = a
            .get(name)
            .copied()
            .unwrap_or_default()
            .saturating_sub(b.get(name).copied().unwrap_or_default());
        used.as_secs_f64() / window.as_secs_f64() * 100.0
    };
    let mut names: Vec<&String> = after.0.keys().chain(after.1.keys()).collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<(f64, f64, &String)> = names
        .into_iter()
        .map(|n| (pct(&before.0, &after.0, n), pct(&before.1, &after.1, n), n))
        .filter(|(a, b, _)| a + b >= 0.5)
        .collect();
    rows.sort_by(|x, y| (y.0 + y.1).total_cmp(&(x.0 + x.1)));
    let mut t = Table::new(&["threads", "A %", "B %"]);
    for (a, b, n) in rows {
        t.row(vec![format!("`{n}`"), format!("{a:.0}"), format!("{b:.0}")]);
    }
    t
}
