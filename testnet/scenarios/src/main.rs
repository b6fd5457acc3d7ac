//! mesg-scenarios: fault scenarios on the running docker-compose testnet (testnet/up.sh).
//!
//! node4 (the requester, running no service) gets a steady load of executions of `echo`,
//! which node2 and node3 run; each scenario perturbs one node (SIGKILL, partition, pause,
//! restart of the bootstrap node, restart of the requester), then checks that every
//! execution the requester accepted ended Completed or Failed with a reason (none lost,
//! none stuck), that completed ones carry the right outputs, and that the network healed
//! within a bound. Prints a table (and writes it with --report FILE). Exits 1 when a
//! promise was broken. testnet/scenarios.sh runs it from scratch: build, up, run, down.

mod api;
mod events;
mod load;
mod scenario;
mod testnet;

use anyhow::{Context, bail};
use scenario::{Params, Row};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testnet::{Config, Testnet, now_ms};

const USAGE: &str = "\
usage: mesg-scenarios [--only kill,partition,pause,bootstrap,requester,events] [--rate N]
                      [--timeout-ms MS] [--report FILE] [--list]

Runs against the testnet docker-compose.yml starts (testnet/up.sh first; testnet/scenarios.sh
does everything). Environment: MESG_TESTNET_TOKEN, MESG_TESTNET_PORT_NODE1..4, MESG_CLI
(the mesg binary used to deploy echo), MESG_COMPOSE (\"docker compose\" or \"docker-compose\").";

#[derive(Debug)]
struct Args {
    only: Option<Vec<String>>,
    rate: f64,
    timeout_ms: u64,
    report: Option<PathBuf>,
    list: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        only: None,
        rate: 15.0,
        timeout_ms: 8_000,
        report: None,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--only" => {
                a.only = Some(
                    value("--only")?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect(),
                )
            }
            "--rate" => a.rate = value("--rate")?.parse().context("--rate")?,
            "--timeout-ms" => {
                a.timeout_ms = value("--timeout-ms")?.parse().context("--timeout-ms")?
            }
            "--report" => a.report = Some(value("--report")?.into()),
            "--list" => a.list = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if !(a.rate > 0.0 && a.rate <= 200.0) {
        bail!("--rate must be in (0, 200]");
    }
    Ok(a)
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testnet/scenarios is two levels below the root")
        .to_path_buf()
}

fn compose_command() -> Vec<String> {
    if let Ok(c) = std::env::var("MESG_COMPOSE") {
        return c.split_whitespace().map(str::to_string).collect();
    }
    let v2 = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

fn config() -> Config {
    let root = workspace_root();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let nodes = (1..=4)
        .map(|i| {
            let port = env(&format!("MESG_TESTNET_PORT_NODE{i}"), &format!("3100{i}"));
            (format!("node{i}"), format!("http://127.0.0.1:{port}"))
        })
        .collect();
    Config {
        cli: std::env::var("MESG_CLI")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target/x86_64-unknown-linux-gnu/release/mesg")),
        echo_dir: root.join("target/mesg-services/echo"),
        token: env("MESG_TESTNET_TOKEN", "mesg-testnet"),
        compose: compose_command(),
        nodes,
        root,
    }
}

#[tokio::main]
async fn main() {
    match real_main().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("mesg-scenarios: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn real_main() -> anyhow::Result<bool> {
    let args = parse_args()?;
    let mut scenarios = scenario::all();
    if args.list {
        for s in &scenarios {
            println!("{:<10} {}", s.key, s.title);
        }
        println!("{:<10} {}", events::KEY, events::TITLE);
        return Ok(true);
    }
    if let Some(only) = &args.only {
        for k in only {
            if k != events::KEY && !scenarios.iter().any(|s| s.key == k) {
                bail!("no scenario `{k}` (see --list)");
            }
        }
        scenarios.retain(|s| only.iter().any(|k| k == s.key));
    }
    let start = Instant::now();
    let cfg = config();
    if !cfg.cli.is_file() {
        bail!(
            "no mesg CLI at {} (testnet/build.sh node builds it, or set MESG_CLI)",
            cfg.cli.display()
        );
    }
    if !cfg.echo_dir.join("mesg.yml").is_file() {
        bail!(
            "no echo service in {} (testnet/build.sh services)",
            cfg.echo_dir.display()
        );
    }
    println!("== connecting to the testnet ({})", cfg.compose.join(" "));
    let mut net = Testnet::connect(cfg, Duration::from_secs(60)).await?;
    for n in &net.nodes {
        println!(
            "  {}  {}  {}  container {}",
            n.name,
            n.api.base(),
            n.public_key,
            &n.container[..12.min(n.container.len())]
        );
    }
    println!("  compose network: {}", net.network);
    let providers = vec!["node2", "node3"];
    let t = Instant::now();
    net.deploy_echo(&providers).await?;
    println!(
        "  echo {} deployed and started on {} ({:.1}s)",
        net.echo_hash,
        providers.join(" and "),
        t.elapsed().as_secs_f64()
    );
    let run_id = now_ms();
    let params = Params {
        requester: "node4",
        providers,
        rate_per_s: args.rate,
        timeout_ms: args.timeout_ms,
        warmup: Duration::from_secs(5),
        burst: 8,
        burst_ms: 1500,
        after: Duration::from_secs(5),
        heal_bound: Duration::from_secs(60),
        id_prefix: format!("{run_id:016x}"),
        run_tag: format!("scn{run_id}"),
    };
    let mut rows = Vec::new();
    for (i, sc) in scenarios.iter().enumerate() {
        match scenario::run(&net, sc, i as u64 + 1, &params).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                let row = Row {
                    key: sc.key.to_string(),
                    title: sc.title.to_string(),
                    problems: vec![format!("the scenario could not run: {e:#}")],
                    ..Row::default()
                };
                println!("  [{}] ERROR: {e:#}", sc.key);
                rows.push(row);
            }
        }
    }
    let run_events = args
        .only
        .as_ref()
        .is_none_or(|only| only.iter().any(|k| k == events::KEY));
    if run_events {
        match events::run(&net, &params.run_tag).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                println!("  [{}] ERROR: {e:#}", events::KEY);
                rows.push(Row {
                    key: events::KEY.to_string(),
                    title: events::TITLE.to_string(),
                    problems: vec![format!("the scenario could not run: {e:#}")],
                    ..Row::default()
                });
            }
        }
    }
    let total = start.elapsed();
    let report = report(&rows, &params, total);
    println!("\n{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    let ok = rows.iter().all(Row::ok);
    println!(
        "{} in {:.0}s",
        if ok {
            "ALL SCENARIOS PASSED"
        } else {
            "SCENARIOS FAILED"
        },
        total.as_secs_f64()
    );
    Ok(ok)
}

fn report(rows: &[Row], p: &Params, total: Duration) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Load: {}/s submitted to {} (echo `sleep` 50-200 ms and `echo`, timeout {} ms each), plus {} x `sleep {} ms` just before each fault; providers {}.\n\n",
        p.rate_per_s,
        p.requester,
        p.timeout_ms,
        p.burst,
        p.burst_ms,
        p.providers.join(", ")
    ));
    s.push_str("| # | scenario | submitted | accepted | completed | failed | lost | not accepted | executor disagrees | recovery | took |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |\n",
            i + 1,
            r.title,
            r.submitted,
            r.accepted,
            r.completed,
            r.failed_total(),
            if r.lost.is_empty() {
                "0".to_string()
            } else {
                format!("**{}**", r.lost.len())
            },
            r.not_accepted.values().sum::<usize>(),
            r.diverged.len(),
            r.recovery.map_or("**not healed**".to_string(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
            r.duration.as_secs_f64()
        ));
    }
    s.push_str("\nPer scenario:\n\n");
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!("{}. **{}** ({})\n", i + 1, r.key, r.title));
        if !r.recovery_detail.is_empty() {
            s.push_str(&format!(
                "   - recovery, after the fault ended: {}\n",
                r.recovery_detail
            ));
        }
        if !r.executors.is_empty() {
            let by: Vec<String> = r
                .executors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!("   - completed on: {}\n", by.join(", ")));
        }
        s.push_str(&format!(
            "   - in flight when the fault began: {} ({} completed, {} failed)\n",
            r.in_flight_at_fault, r.in_flight_completed, r.in_flight_failed
        ));
        for (reason, n) in &r.failed {
            s.push_str(&format!("   - failed x{n}: `{reason}`\n"));
        }
        for (reason, n) in &r.not_accepted {
            s.push_str(&format!("   - not accepted x{n}: {reason}\n"));
        }
        for id in &r.lost {
            s.push_str(&format!("   - **lost**: {id}\n"));
        }
        for w in &r.wrong_outputs {
            s.push_str(&format!("   - **wrong outputs**: {w}\n"));
        }
        for d in r.diverged.iter().take(3) {
            s.push_str(&format!("   - executor disagrees: {d}\n"));
        }
        if r.diverged.len() > 3 {
            s.push_str(&format!(
                "   - executor disagrees: {} more like these\n",
                r.diverged.len() - 3
            ));
        }
        for id in &r.no_reason {
            s.push_str(&format!("   - **failed without a reason**: {id}\n"));
        }
        for m in &r.problems {
            s.push_str(&format!("   - **problem**: {m}\n"));
        }
        for m in &r.notes {
            s.push_str(&format!("   - note: {m}\n"));
        }
    }
    s.push_str(&format!("\nTotal: {:.0} s.\n", total.as_secs_f64()));
    s
}
