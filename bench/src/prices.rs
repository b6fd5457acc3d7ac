//! What prices cost the node: the routed round trip and the routed throughput of `echo`
//! with prices off (the free service) against on (the same binary and task deployed with
//! a `price`, requests carrying a `max_price`), in the same run on the same two nodes, so
//! the economy's overhead is measured on its own (issue 14: at most 10 %).
//!
//! Runs alone with `--only prices`; the other sections do not depend on it.

use crate::Ctx;
use crate::cluster::{Api, Pair};
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
            let r = load_capped(&pair.api_a, service, cap, IN_FLIGHT, window).await?;
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
             alternating. Overhead = on ÷ off − 1 (for throughput, off ÷ on − 1).",
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
        "failed",
    ]);
    for (name, s, r) in [("off", &off, &rate_off), ("on", &on, &rate_on)] {
        t.row(vec![
            name.into(),
            s.n.to_string(),
            ms(s.p50),
            ms(s.p99),
            format!("{:.0}", r.per_second()),
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
    section.notes.push(
        "Prices on: the requester's node checks the cap against the task's price; the \
         executor reserves the cap (in memory, against the requester's credit limit), \
         records the cost with the end, issues a signed receipt in its ledger in the end's \
         flush; the result leaves at once (as a free one), the receipt once that flush is \
         done and the result taken, in a batch per requester node; the requester checks \
         and books a batch in one write and one flush, and answers with one signed \
         acknowledgement, which the executor verifies once and books. Each ledger write \
         signs the log's head once (not each entry); ledger writes run one at a time."
            .into(),
    );
    Ok(section)
}

/// Completed executions over the throughput windows of one side.
#[derive(Debug, Default)]
struct Rate {
    /// Rate of each window, in order.
    windows: Vec<f64>,
    done: u64,
    failed: u64,
    elapsed: Duration,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
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
