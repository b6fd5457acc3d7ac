//! What prices cost the node: the routed round trip and the routed throughput of `echo`
//! with prices off (the free service) against on (the same binary and task deployed with
//! a `price`, requests carrying a `max_price`), in the same run on the same two nodes, so
//! the economy's overhead is measured on its own (issue 14: at most 10 %).
//!
//! Runs alone with `--only prices`; the other sections do not depend on it.

use crate::Ctx;
use crate::cluster::{Api, Pair, cpu_time, written_bytes};
use crate::report::{Goal, Section, Summary, Table, ms};
use crate::throughput::load_capped;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The price the priced copy of echo's `echo` task gets (µc): every part non-zero, so
/// the executor computes each of them.
const PRICE: &str = "{call: 1000, per_ms: 2, per_kib: 5}";
/// The spending cap of every priced request: well above what a 100 B echo costs.
const MAX_PRICE: u64 = 1_000_000;
/// Sid of the priced copy.
const PRICED_SID: &str = "echo-priced";
/// Executions in flight for the throughput figure (the throughput goal's setting).
const IN_FLIGHT: usize = 64;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let pair = Pair::start(&ctx.echo_dir).await?;
    let dir = PricedCopy::of(&ctx.echo_dir)?;
    let (priced, _) = pair.api_b.deploy_and_start(&dir.0).await?;
    pair.api_a
        .wait_providers(PRICED_SID, 1, Duration::from_secs(30))
        .await?;
    let free = pair.service.clone();
    let inputs = json!({ "message": "x".repeat(100) });
    check_priced(&pair, &priced, &inputs).await?;

    eprintln!("  warm-up");
    for _ in 0..ctx.n(50, 2) {
        pair.api_a.exec(&free, "echo", &inputs).await?;
        pair.api_a
            .exec_capped(&priced, "echo", &inputs, Some(MAX_PRICE))
            .await?;
    }
    eprintln!("  round trips, off and on interleaved");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..ctx.n(400, 5) {
        let t = Instant::now();
        pair.api_a.exec(&free, "echo", &inputs).await?;
        off.push(t.elapsed());
        let t = Instant::now();
        pair.api_a
            .exec_capped(&priced, "echo", &inputs, Some(MAX_PRICE))
            .await?;
        on.push(t.elapsed());
    }

    // Alternating windows (off, on, on, off, ...) so a drift of the machine's load
    // weighs on both alike.
    // Many short windows rather than a few long ones: the machine's other load changes
    // over seconds, and alternating often spreads it over both sides.
    let window = Duration::from_secs(ctx.n(4, 2) as u64);
    let warmup = Duration::from_secs(1);
    let rounds = ctx.n(8, 1);
    let (mut rate_off, mut rate_on) = (Rate::default(), Rate::default());
    let pid_a = pair.a.pid().context("A is not running")?;
    let pid_b = pair.b.pid().context("B is not running")?;
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for priced_run in order {
            let (service, cap, rate) = if priced_run {
                (&priced, Some(MAX_PRICE), &mut rate_on)
            } else {
                (&free, None, &mut rate_off)
            };
            eprintln!(
                "  throughput, prices {}, round {}",
                if priced_run { "on" } else { "off" },
                round + 1
            );
            load_capped(&pair.api_a, service, cap, IN_FLIGHT, warmup).await?;
            let flushes_before = (
                metric(&pair.api_a, FLUSHES).await?,
                metric(&pair.api_b, FLUSHES).await?,
            );
            let cpu_before = (cpu_time(pid_a)?, cpu_time(pid_b)?);
            let written_before = written_bytes(pid_a)? + written_bytes(pid_b)?;
            let r = load_capped(&pair.api_a, service, cap, IN_FLIGHT, window).await?;
            rate.cpu_a += cpu_time(pid_a)?.saturating_sub(cpu_before.0);
            rate.cpu_b += cpu_time(pid_b)?.saturating_sub(cpu_before.1);
            rate.written +=
                (written_bytes(pid_a)? + written_bytes(pid_b)?).saturating_sub(written_before);
            rate.flushes_a += metric(&pair.api_a, FLUSHES).await? - flushes_before.0;
            rate.flushes_b += metric(&pair.api_b, FLUSHES).await? - flushes_before.1;
            rate.done += r.latencies.len() as u64;
            rate.windows
                .push(r.latencies.len() as f64 / r.elapsed.as_secs_f64());
            rate.failed += r.failed;
            rate.elapsed += r.elapsed;
        }
    }

    let (off, on) = (Summary::of(&off), Summary::of(&on));
    let mut section = Section::new(
        "Prices on against off (routed A → B)",
        format!(
            "Two nodes on loopback; B runs `echo` twice: as built (free) and a copy whose \
             `echo` task has `price: {PRICE}` (same binary, same task, sid `{PRICED_SID}`); \
             requests to the priced copy carry `max_price: {MAX_PRICE}`. Round trip: one \
             execution of `echo` (100 B) in flight at a time on A's API (`wait=true`), routed \
             to B, off and on interleaved, timed by the client. Throughput: {IN_FLIGHT} in \
             flight for {} s after {} s of warm-up, {rounds} window(s) each, off and on \
             alternating. Overhead = on ÷ off − 1 (for throughput, off ÷ on − 1). \
             CPU per execution: each node's user + system time over the throughput windows \
             ÷ the executions completed in them (the client's own CPU not counted).",
            window.as_secs(),
            warmup.as_secs(),
        ),
    );
    let mut t = Table::new(&[
        "prices",
        "round trips",
        "p50 ms",
        "p99 ms",
        &format!("exec/s, {IN_FLIGHT} in flight"),
        "CPU ms per execution: A (requester)",
        "B (executor)",
        "KiB written per execution, A + B",
        "store flushes per execution, A / B",
        "failed",
    ]);
    for (name, s, r) in [("off", &off, &rate_off), ("on", &on, &rate_on)] {
        t.row(vec![
            name.into(),
            s.n.to_string(),
            ms(s.p50),
            ms(s.p99),
            format!("{:.0}", r.per_second()),
            format!("{:.2}", r.cpu_per_exec(r.cpu_a)),
            format!("{:.2}", r.cpu_per_exec(r.cpu_b)),
            format!("{:.1}", r.written as f64 / 1024.0 / r.done.max(1) as f64),
            format!(
                "{:.2} / {:.2}",
                r.flushes_a / r.done.max(1) as f64,
                r.flushes_b / r.done.max(1) as f64
            ),
            r.failed.to_string(),
        ]);
    }
    let p50 = on.p50 / off.p50;
    let p99 = on.p99 / off.p99;
    let rate = rate_off.per_second() / rate_on.per_second();
    t.row(vec![
        "overhead".into(),
        "-".into(),
        pct(p50),
        pct(p99),
        pct(rate),
        pct(rate_on.cpu_per_exec(rate_on.cpu_a) / rate_off.cpu_per_exec(rate_off.cpu_a)),
        pct(rate_on.cpu_per_exec(rate_on.cpu_b) / rate_off.cpu_per_exec(rate_off.cpu_b)),
        pct((rate_on.written as f64 / rate_on.done.max(1) as f64)
            / (rate_off.written.max(1) as f64 / rate_off.done.max(1) as f64)),
        "-".into(),
        "-".into(),
    ]);
    section.tables.push((String::new(), t));
    section.goals.push(Goal::new(
        "prices on ÷ off, routed round trip p50, 100 B",
        "≤ 1.10",
        format!("{p50:.2} ({} ms ÷ {} ms)", ms(on.p50), ms(off.p50)),
        p50 <= 1.10,
    ));
    section.goals.push(Goal::new(
        "prices off ÷ on, routed executions/s, 64 in flight",
        "≤ 1.10",
        format!(
            "{rate:.2} ({:.0}/s ÷ {:.0}/s)",
            rate_off.per_second(),
            rate_on.per_second()
        ),
        rate <= 1.10,
    ));
    section.notes.push(format!(
        "Executions/s of each throughput window, in order: off {}; on {}. Their spread \
         shows how much the machine's other load moved the figures during the run.",
        rate_off.windows(),
        rate_on.windows()
    ));
    let batches = receipt_batches(&pair.api_b).await?;
    section.notes.push(format!(
        "Receipts B sent apart from their results over the whole section: {} in {} \
         batches ({:.1} per batch).",
        batches.0,
        batches.1,
        batches.0 as f64 / batches.1.max(1) as f64
    ));
    section.notes.push(
        "Prices on: the requester's node checks the cap against the task's price; the \
         executor reserves the cap (in memory, against the requester's credit limit), \
         records the cost with the end; the result leaves at once (as a free one); once \
         the result is taken, its receipt is issued with the other receipts owed to the \
         same requester node, in one ledger write, flushed and sent as one batch; the \
         requester checks and books a batch in one write and one flush (its executions \
         are not rewritten), and answers with one signed acknowledgement, which the \
         executor verifies once and books without a write per receipt. Each ledger write \
         signs the log's head once (not each entry); ledger writes run one at a time."
            .into(),
    );
    Ok(section)
}

/// The node's store flushes so far (its /metrics).
const FLUSHES: &str = "mesg_store_flushes_total";

/// A counter of a node's /metrics (0 when absent).
async fn metric(api: &Api, name: &str) -> Result<f64> {
    let text = api.text("/metrics").await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or(0.0))
}

/// Receipts a node sent apart from their results, and the batches that carried them.
async fn receipt_batches(api: &Api) -> Result<(u64, u64)> {
    Ok((
        metric(api, "mesg_receipts_sent_total").await? as u64,
        metric(api, "mesg_receipt_batches_sent_total").await? as u64,
    ))
}

/// Completed executions over the throughput windows of one side.
#[derive(Debug, Default)]
struct Rate {
    /// Rate of each window, in order.
    windows: Vec<f64>,
    done: u64,
    failed: u64,
    elapsed: Duration,
    /// CPU time of A and B over the windows (user + system).
    cpu_a: Duration,
    cpu_b: Duration,
    /// Bytes A and B caused to be written to storage over the windows.
    written: u64,
    /// Store flushes of A and of B over the windows.
    flushes_a: f64,
    flushes_b: f64,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }

    /// Milliseconds of `cpu` per execution completed in the windows.
    fn cpu_per_exec(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1000.0 / self.done.max(1) as f64
    }

    fn windows(&self) -> String {
        let w: Vec<String> = self.windows.iter().map(|r| format!("{r:.0}")).collect();
        w.join(", ")
    }
}

fn pct(ratio: f64) -> String {
    format!("{:+.1} %", (ratio - 1.0) * 100.0)
}

/// Prices are really on: a request without a cap is refused, and a capped one is
/// charged by the executor.
async fn check_priced(pair: &Pair, priced: &str, inputs: &Value) -> Result<()> {
    match pair.api_a.exec(priced, "echo", inputs).await {
        Ok(_) => bail!("the priced echo ran without a spending cap: prices are not on"),
        Err(e) if e.to_string().contains("price_above_cap") => {}
        Err(e) => return Err(e.context("a priced request without a cap")),
    }
    let e = pair
        .api_a
        .exec_capped(priced, "echo", inputs, Some(MAX_PRICE))
        .await?;
    let id = e["id"].as_str().context("an execution without an id")?;
    let on_b = executor_copy(&pair.api_b, id).await?;
    match on_b["cost"]["amount"].as_u64() {
        Some(amount) if amount >= 1000 => Ok(()),
        _ => bail!("the executor recorded no cost for a priced execution: {on_b}"),
    }
}

/// The executor's copy of an execution, once it has its end (and so its cost).
async fn executor_copy(api: &Api, id: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = api.get(&format!("/v1/executions/{id}")).await?;
        if v["status"] == "Completed" || Instant::now() > deadline {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A copy of the echo service directory whose `echo` task is priced, removed on drop.
struct PricedCopy(PathBuf);

impl PricedCopy {
    fn of(echo_dir: &Path) -> Result<PricedCopy> {
        let dir = std::env::temp_dir().join(format!("mesg-bench-priced-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let copy = PricedCopy(dir);
        for f in ["Dockerfile", "echo"] {
            std::fs::copy(echo_dir.join(f), copy.0.join(f))
                .with_context(|| format!("copying {f} of {}", echo_dir.display()))?;
        }
        let yml = std::fs::read_to_string(echo_dir.join("mesg.yml"))?;
        std::fs::write(copy.0.join("mesg.yml"), priced_definition(&yml)?)?;
        Ok(copy)
    }
}

impl Drop for PricedCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// echo's mesg.yml with its own sid and a price on the `echo` task.
fn priced_definition(yml: &str) -> Result<String> {
    let (sid, task) = ("\nsid: echo\n", "\n  echo:\n");
    if !yml.contains(sid) || !yml.contains(task) {
        bail!("echo's mesg.yml has no `sid: echo` or no `echo` task at the expected place");
    }
    Ok(yml
        .replacen(sid, &format!("\nsid: {PRICED_SID}\n"), 1)
        .replacen(task, &format!("{task}    price: {PRICE}\n"), 1))
}

#[cfg(test)]
mod tests {
    use super::priced_definition;

    #[test]
    fn the_priced_copy_prices_the_echo_task_under_its_own_sid() {
        let yml =
            "name: Echo\nsid: echo\ntasks:\n  echo:\n    inputs: {}\n  sleep:\n    inputs: {}\n";
        let out = priced_definition(yml).unwrap();
        assert_eq!(
            out,
            "name: Echo\nsid: echo-priced\ntasks:\n  echo:\n    price: {call: 1000, per_ms: 2, per_kib: 5}\n    inputs: {}\n  sleep:\n    inputs: {}\n"
        );
        assert!(priced_definition("name: x\n").is_err());
    }
}
