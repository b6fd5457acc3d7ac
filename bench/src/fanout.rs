//! The 16-way fan-out of the round-trip section: one requester (A) sends 16 executions
//! of one task at once, and two providers (B and C, both running `echo`) share them. A
//! batch is timed from the first request sent to the last answer received; beside it,
//! the same 16 executions sent one after the other, in the same run and interleaved.

use crate::Ctx;
use crate::cluster::{self, Pair};
use crate::report::{Section, Summary, Table, ms};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Its name for `--payloads`.
pub const KEY: &str = "fanout";
/// Executions per batch.
const WIDTH: usize = 16;

pub async fn run(ctx: &Ctx, pair: &Pair, section: &mut Section) -> Result<()> {
    eprintln!("  fan-out: a second provider");
    let c = cluster::join(&pair.b).await?;
    let result = measure(ctx, pair, &c, section).await;
    cluster::drop_nodes(vec![c]).await;
    result
}

async fn measure(
    ctx: &Ctx,
    pair: &Pair,
    c: &mesg_testkit::NodeProcess,
    section: &mut Section,
) -> Result<()> {
    let api_c = cluster::Api::new(c);
    let (hash, _) = api_c.deploy_and_start(&ctx.echo_dir).await?;
    anyhow::ensure!(
        hash == pair.service,
        "echo deployed on C has another hash ({hash}) than on B ({})",
        pair.service
    );
    pair.api_a
        .wait_providers("echo", 2, Duration::from_secs(30))
        .await?;
    let inputs = json!({ "message": "x".repeat(100) });
    let (warm, n) = (ctx.n(5, 1), ctx.n(60, 3));
    eprintln!("  fan-out: {n} batches of {WIDTH}");
    let mut by_executor = BTreeMap::<String, usize>::new();
    for _ in 0..warm {
        batch(pair, &inputs, &mut BTreeMap::new()).await?;
    }
    let (mut parallel, mut serial) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        parallel.push(batch(pair, &inputs, &mut by_executor).await?);
        let t = Instant::now();
        for _ in 0..WIDTH {
            pair.api_a.exec(&pair.service, "echo", &inputs).await?;
        }
        serial.push(t.elapsed());
    }
    let name = |key: &str| {
        if key == pair.b.public_key {
            "B".to_string()
        } else if key == c.public_key {
            "C".to_string()
        } else {
            format!("other ({key})")
        }
    };
    let split = by_executor
        .iter()
        .map(|(k, v)| format!("{} {v}", name(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut t = Table::new(&[
        "path",
        "batches",
        "min ms",
        "p50 ms",
        "p99 ms",
        "exec/s",
        "executions per provider",
    ]);
    for (label, samples, split) in [
        (
            "16 at once: A → B and C (fan-out)",
            &parallel,
            split.as_str(),
        ),
        ("16 one after the other: A → B or C", &serial, "-"),
    ] {
        let s = Summary::of(samples);
        let total: Duration = samples.iter().sum();
        t.row(vec![
            label.to_string(),
            s.n.to_string(),
            ms(s.min),
            ms(s.p50),
            ms(s.p99),
            format!(
                "{:.0}",
                (samples.len() * WIDTH) as f64 / total.as_secs_f64()
            ),
            split.to_string(),
        ]);
    }
    section.tables.push((
        format!(
            "16-way fan-out (100 B): one requester A, `echo` on two providers B and C; a batch \
             is {WIDTH} executions sent at once on A's API (`wait=true`, one connection each), \
             timed from the first request to the last answer; the serial row sends the same \
             {WIDTH} one after the other; batches of both kinds interleaved, {warm} warm-up \
             batch(es) not counted. exec/s = executions ÷ the batches' summed time."
        ),
        t,
    ));
    Ok(())
}

/// One batch of [`WIDTH`] executions at once; counts who ran each.
async fn batch(
    pair: &Pair,
    inputs: &serde_json::Value,
    by_executor: &mut BTreeMap<String, usize>,
) -> Result<Duration> {
    let t = Instant::now();
    let all = futures::future::join_all(
        (0..WIDTH).map(|_| pair.api_a.exec(&pair.service, "echo", inputs)),
    )
    .await;
    let elapsed = t.elapsed();
    for e in all {
        let e = e?;
        let executor = e["executor"]
            .as_str()
            .context("a completed execution without an executor")?;
        *by_executor.entry(executor.to_string()).or_default() += 1;
    }
    Ok(elapsed)
}
