//! One fault scenario: load on the requester, a perturbation, recovery, then an account of
//! every execution submitted.

use crate::load::{Load, LoadConfig, Submit, apply};
use crate::testnet::{Testnet, docker, now_ms};
use futures::StreamExt;
use reqwest::StatusCode;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `docker kill` a provider (SIGKILL, no shutdown), start it again.
    Kill,
    /// Disconnect a provider from the compose network, reconnect it.
    Partition,
    /// `docker pause` a provider (frozen: TCP stays open, nothing answers), unpause.
    Pause,
    /// Stop the bootstrap node, start it again.
    RestartBootstrap,
    /// Stop the requester's node with executions in flight, start it again.
    RestartRequester,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub key: &'static str,
    pub title: &'static str,
    pub fault: Fault,
    pub target: &'static str,
    /// How long the fault lasts before it is undone.
    pub hold: Duration,
}

pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            key: "kill",
            title: "SIGKILL provider node2, start it again 2 s later",
            fault: Fault::Kill,
            target: "node2",
            hold: Duration::from_secs(2),
        },
        Scenario {
            key: "partition",
            title: "partition provider node3 for 10 s (network disconnect)",
            fault: Fault::Partition,
            target: "node3",
            hold: Duration::from_secs(10),
        },
        Scenario {
            key: "pause",
            title: "pause provider node2 for 10 s (docker pause)",
            fault: Fault::Pause,
            target: "node2",
            hold: Duration::from_secs(10),
        },
        Scenario {
            key: "bootstrap",
            title: "restart bootstrap node1 (5 s down)",
            fault: Fault::RestartBootstrap,
            target: "node1",
            hold: Duration::from_secs(5),
        },
        Scenario {
            key: "requester",
            title: "restart requester node4 with executions in flight (3 s down)",
            fault: Fault::RestartRequester,
            target: "node4",
            hold: Duration::from_secs(3),
        },
    ]
}

#[derive(Debug, Clone)]
pub struct Params {
    pub requester: &'static str,
    pub providers: Vec<&'static str>,
    pub rate_per_s: f64,
    pub timeout_ms: u64,
    pub warmup: Duration,
    /// Long executions submitted together just before the fault.
    pub burst: u64,
    pub burst_ms: u64,
    /// Load kept after recovery.
    pub after: Duration,
    /// The network must heal within this long after the fault is undone.
    pub heal_bound: Duration,
    pub id_prefix: String,
    pub run_tag: String,
}

/// What one scenario measured.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub key: String,
    pub title: String,
    pub submitted: usize,
    pub accepted: usize,
    pub completed: usize,
    pub failed: BTreeMap<String, usize>,
    /// Submits the requester did not take (its API down): never part of the network.
    pub not_accepted: BTreeMap<String, usize>,
    pub lost: Vec<String>,
    pub wrong_outputs: Vec<String>,
    pub no_reason: Vec<String>,
    /// Executions whose executor recorded another end than the requester.
    pub diverged: Vec<String>,
    pub in_flight_at_fault: usize,
    pub in_flight_completed: usize,
    pub in_flight_failed: usize,
    pub executors: BTreeMap<String, usize>,
    pub recovery: Option<Duration>,
    pub recovery_detail: String,
    pub drain: Duration,
    pub duration: Duration,
    /// Broken promises other than lost executions (not healed, connections dropped...).
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

impl Row {
    pub fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.wrong_outputs.is_empty()
            && self.no_reason.is_empty()
            && self.problems.is_empty()
    }
}

fn log(start: Instant, key: &str, msg: impl AsRef<str>) {
    println!(
        "  [{key} +{:>5.1}s] {}",
        start.elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

/// Group failure reasons: ids, keys and peer ids vary, the reason does not.
pub fn normalize_reason(reason: &str) -> String {
    let words: Vec<String> = reason
        .split(' ')
        .map(|w| {
            let core: String = w.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            if core.len() >= 16 && core.chars().any(|c| c.is_ascii_digit()) {
                let trail: String = w
                    .chars()
                    .rev()
                    .take_while(|c| !c.is_ascii_alphanumeric())
                    .collect();
                format!("<id>{}", trail.chars().rev().collect::<String>())
            } else {
                w.to_string()
            }
        })
        .collect();
    let mut s = words.join(" ");
    if s.len() > 160 {
        let mut cut = 157;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

pub async fn run(net: &Testnet, sc: &Scenario, index: u64, p: &Params) -> anyhow::Result<Row> {
    let start = Instant::now();
    let key = sc.key;
    let requester = net.node(p.requester).clone();
    let target = net.node(sc.target).clone();
    let mut row = Row {
        key: key.to_string(),
        title: sc.title.to_string(),
        ..Row::default()
    };
    println!("\n== scenario {index}: {} — {}", sc.key, sc.title);
    let settled = net
        .wait_settled(p.requester, &p.providers, Duration::from_secs(90))
        .await?;
    log(
        start,
        key,
        format!(
            "testnet settled ({:.1}s): all peers connected, {} lists {}",
            settled.as_secs_f64(),
            p.requester,
            p.providers.join(" and ")
        ),
    );

    let mut load = Load::start(
        requester.api.clone(),
        LoadConfig {
            service: net.echo_hash.clone(),
            tag: format!("{}-{key}", p.run_tag),
            rate_per_s: p.rate_per_s,
            timeout_ms: p.timeout_ms,
            id_prefix: p.id_prefix.clone(),
            scenario_index: index,
        },
    );
    log(
        start,
        key,
        format!(
            "load: {} executions/s on {} (echo: sleep 50-200 ms, echo), timeout {} ms",
            p.rate_per_s, p.requester, p.timeout_ms
        ),
    );
    tokio::time::sleep(p.warmup).await;
    // Long ones on top, so that the fault surely catches some mid-run.
    load.burst(p.burst, p.burst_ms);
    tokio::time::sleep(Duration::from_millis(300)).await;
    log(
        start,
        key,
        format!("burst: {} x sleep {} ms", p.burst, p.burst_ms),
    );

    // ---- the fault
    let in_flight: HashSet<String> = load
        .snapshot()
        .into_iter()
        .filter(|(_, r)| r.end.is_none() && r.submit == Submit::Accepted)
        .map(|(id, _)| id)
        .collect();
    let fault_start_ms = now_ms();
    let c = target.container.as_str();
    let mut outage_problems = Vec::new();
    match sc.fault {
        Fault::Kill => {
            docker(&["kill", c]).await?;
            log(start, key, format!("docker kill {} (SIGKILL)", sc.target));
            tokio::time::sleep(sc.hold).await;
            docker(&["start", c]).await?;
            log(start, key, format!("docker start {}", sc.target));
        }
        Fault::Partition => {
            docker(&["network", "disconnect", "-f", &net.network, c]).await?;
            log(
                start,
                key,
                format!("docker network disconnect {} {}", net.network, sc.target),
            );
            tokio::time::sleep(sc.hold).await;
            docker(&["network", "connect", "--alias", sc.target, &net.network, c]).await?;
            log(
                start,
                key,
                format!("docker network connect {} {}", net.network, sc.target),
            );
        }
        Fault::Pause => {
            docker(&["pause", c]).await?;
            log(start, key, format!("docker pause {}", sc.target));
            tokio::time::sleep(sc.hold).await;
            docker(&["unpause", c]).await?;
            log(start, key, format!("docker unpause {}", sc.target));
        }
        Fault::RestartBootstrap | Fault::RestartRequester => {
            docker(&["stop", "-t", "10", c]).await?;
            log(start, key, format!("docker stop {} (SIGTERM)", sc.target));
            if sc.fault == Fault::RestartBootstrap {
                // The others must stay connected to each other meanwhile.
                let until = Instant::now() + sc.hold;
                let others: Vec<_> = net.nodes.iter().filter(|n| n.name != sc.target).collect();
                while Instant::now() < until {
                    for n in &others {
                        if let Ok(conn) = net.connected(n).await {
                            for o in others.iter().filter(|o| o.name != n.name) {
                                if !conn.contains(&o.peer_id) {
                                    let m = format!(
                                        "{} lost its connection to {} while {} was down",
                                        n.name, o.name, sc.target
                                    );
                                    if !outage_problems.contains(&m) {
                                        log(start, key, &m);
                                        outage_problems.push(m);
                                    }
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if outage_problems.is_empty() {
                    log(
                        start,
                        key,
                        "node2, node3, node4 stayed connected to each other meanwhile",
                    );
                }
            } else {
                tokio::time::sleep(sc.hold).await;
            }
            docker(&["start", c]).await?;
            log(start, key, format!("docker start {}", sc.target));
        }
    }
    let fault_end = Instant::now();
    let fault_end_ms = now_ms();
    row.in_flight_at_fault = in_flight.len();

    // ---- recovery: load keeps running until the network has healed (or the bound)
    let mut listed: Option<Duration> = None;
    let mut connected: Option<Duration> = None;
    let mut executed: Option<Duration> = None;
    let recovered = loop {
        let since = fault_end.elapsed();
        let (l, cn) = match sc.fault {
            Fault::Kill | Fault::Partition | Fault::Pause => {
                let l = net
                    .echo_providers(&requester)
                    .await
                    .map(|s| s.contains(&target.public_key))
                    .unwrap_or(false);
                let cn = net
                    .connected(&requester)
                    .await
                    .map(|s| s.contains(&target.peer_id))
                    .unwrap_or(false);
                (l, cn)
            }
            Fault::RestartBootstrap => {
                // node1 back and connected to every other node.
                let cn = net
                    .connected(&target)
                    .await
                    .map(|s| {
                        net.nodes
                            .iter()
                            .filter(|n| n.name != target.name)
                            .all(|n| s.contains(&n.peer_id))
                    })
                    .unwrap_or(false);
                (true, cn)
            }
            Fault::RestartRequester => {
                let l = net
                    .echo_providers(&requester)
                    .await
                    .map(|s| {
                        p.providers
                            .iter()
                            .all(|x| s.contains(&net.node(x).public_key))
                    })
                    .unwrap_or(false);
                let cn = net
                    .connected(&requester)
                    .await
                    .map(|s| p.providers.iter().all(|x| s.contains(&net.node(x).peer_id)))
                    .unwrap_or(false);
                (l, cn)
            }
        };
        if l && listed.is_none() {
            listed = Some(since);
        }
        if cn && connected.is_none() {
            connected = Some(since);
        }
        if executed.is_none() {
            let want_executor = matches!(sc.fault, Fault::Kill | Fault::Partition | Fault::Pause)
                .then(|| target.public_key.clone());
            let done = load.snapshot().into_iter().any(|(_, r)| {
                r.submitted_at >= fault_end_ms
                    && r.end.as_ref().is_some_and(|e| {
                        e.status == "Completed"
                            && want_executor
                                .as_ref()
                                .is_none_or(|w| e.executor.as_deref() == Some(w.as_str()))
                    })
            });
            if done {
                executed = Some(since);
            }
        }
        if l && cn && executed.is_some() {
            break Some(since);
        }
        if since > p.heal_bound {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let secs =
        |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{:.1}s", d.as_secs_f64()));
    let executed_what = match sc.fault {
        Fault::Kill | Fault::Partition | Fault::Pause => {
            format!("an execution completed on {}", sc.target)
        }
        _ => "a new execution completed".to_string(),
    };
    let listed_what = match sc.fault {
        Fault::Kill | Fault::Partition | Fault::Pause => {
            format!("{} lists {} as a provider", p.requester, sc.target)
        }
        Fault::RestartBootstrap => "node1 answers".to_string(),
        Fault::RestartRequester => format!("{} lists both providers", p.requester),
    };
    let connected_what = match sc.fault {
        Fault::Kill | Fault::Partition | Fault::Pause => {
            format!("{} connected to {}", p.requester, sc.target)
        }
        Fault::RestartBootstrap => "node1 connected to all".to_string(),
        Fault::RestartRequester => format!("{} connected to both providers", p.requester),
    };
    row.recovery_detail = format!(
        "{listed_what}: {}, {connected_what}: {}, {executed_what}: {}",
        secs(listed),
        secs(connected),
        secs(executed)
    );
    row.recovery = recovered;
    match recovered {
        Some(d) => log(
            start,
            key,
            format!(
                "healed {:.1}s after the fault ended ({})",
                d.as_secs_f64(),
                row.recovery_detail
            ),
        ),
        None => {
            let m = format!(
                "did not heal within {}s ({})",
                p.heal_bound.as_secs(),
                row.recovery_detail
            );
            log(start, key, &m);
            row.problems.push(m);
        }
    }
    row.problems.extend(outage_problems);
    tokio::time::sleep(p.after).await;
    load.stop_submitting().await;
    let submitted = load.snapshot().len();
    log(
        start,
        key,
        format!("load stopped: {submitted} submitted; waiting for every execution to end"),
    );

    // ---- drain: every accepted execution must end (its timeout bounds it)
    let drain_start = Instant::now();
    let last_submit = load
        .snapshot()
        .iter()
        .map(|(_, r)| r.submitted_at)
        .max()
        .unwrap_or(fault_end_ms);
    let drain_deadline_ms = last_submit + p.timeout_ms + 20_000;
    loop {
        let open = load
            .snapshot()
            .iter()
            .filter(|(_, r)| r.submit == Submit::Accepted && r.end.is_none())
            .count();
        if open == 0 || now_ms() > drain_deadline_ms {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    load.stop_tracking().await;
    row.drain = drain_start.elapsed();

    // ---- account for every execution, asking the requester for each one
    let mut records = load.snapshot();
    let api = requester.api.clone();
    let lookups = futures::stream::iter(records.iter().map(|(id, r)| {
        let api = api.clone();
        let id = id.clone();
        let wanted = r.end.is_none() || !matches!(r.submit, Submit::Accepted);
        async move {
            if !wanted {
                return (id, None);
            }
            for _ in 0..5 {
                match api.get(&format!("/v1/executions/{id}")).await {
                    Ok((s, v)) if s == StatusCode::OK => return (id, Some(Some(v))),
                    Ok((s, _)) if s == StatusCode::NOT_FOUND => return (id, Some(None)),
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            (id, None)
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut found: BTreeMap<String, bool> = BTreeMap::new();
    for (id, answer) in lookups {
        if let Some(answer) = answer {
            found.insert(id.clone(), answer.is_some());
            if let Some(v) = answer
                && let Some((_, r)) = records.iter_mut().find(|(i, _)| *i == id)
            {
                apply(r, &v);
            }
        }
    }
    row.submitted = records.len();
    let mut lost_detail = Vec::new();
    for (id, r) in &records {
        let exists = found.get(id).copied();
        let accepted = match (&r.submit, exists) {
            (Submit::Accepted, _) => true,
            (other, Some(true)) => {
                if let Submit::Refused(why) = other {
                    row.notes
                        .push(format!("{id}: refused ({why}) but it exists"));
                }
                true
            }
            (Submit::Refused(why), _) => {
                *row.not_accepted.entry(normalize_reason(why)).or_default() += 1;
                false
            }
            (Submit::NoAnswer(why), _) => {
                let why = if why.contains("onnect") {
                    "no answer: the requester's API was down".to_string()
                } else {
                    format!("no answer: {}", normalize_reason(why))
                };
                *row.not_accepted.entry(why).or_default() += 1;
                false
            }
            (Submit::Pending, _) => {
                *row.not_accepted
                    .entry("no answer before the end".to_string())
                    .or_default() += 1;
                false
            }
        };
        if !accepted {
            continue;
        }
        row.accepted += 1;
        match &r.end {
            _ if exists == Some(false) => {
                row.lost.push(id.clone());
                lost_detail.push(format!("{id}: the requester forgot it (404)"));
            }
            None => {
                row.lost.push(id.clone());
                lost_detail.push(format!(
                    "{id}: still {} after the drain (task {}, executor {})",
                    r.last_status.as_deref().unwrap_or("?"),
                    r.task,
                    r.executor.as_deref().map_or("none", |e| node_name(net, e))
                ));
            }
            Some(end) if end.status == "Completed" => {
                row.completed += 1;
                if !r.outputs_ok() {
                    row.wrong_outputs
                        .push(format!("{id}: {} {} -> {}", r.task, r.inputs, end.outputs));
                }
                let who = end.executor.as_deref().map_or("?", |e| node_name(net, e));
                *row.executors.entry(who.to_string()).or_default() += 1;
            }
            Some(end) => {
                let reason = end.error.clone().unwrap_or_default();
                if reason.trim().is_empty() {
                    row.no_reason.push(id.clone());
                }
                *row.failed.entry(normalize_reason(&reason)).or_default() += 1;
            }
        }
        if in_flight.contains(id) {
            match r.end.as_ref().map(|e| e.status.as_str()) {
                Some("Completed") => row.in_flight_completed += 1,
                Some("Failed") => row.in_flight_failed += 1,
                _ => {}
            }
        }
    }
    // ---- does the executor agree? (for the failed ones: a timeout on the requester)
    for (id, r) in &records {
        let Some(end) = &r.end else { continue };
        if end.status == "Completed" {
            continue;
        }
        let Some(executor) = r.executor.as_deref().or(end.executor.as_deref()) else {
            continue;
        };
        let Some(node) = net.nodes.iter().find(|n| n.public_key == executor) else {
            continue;
        };
        if node.name == requester.name {
            continue;
        }
        if let Ok((s, v)) = node.api.get(&format!("/v1/executions/{id}")).await
            && s == StatusCode::OK
        {
            let theirs = v["status"].as_str().unwrap_or_default();
            if theirs != end.status {
                row.diverged.push(format!(
                    "{id} ({}): {} says {} ({}), executor {} says {theirs}{}",
                    r.task,
                    requester.name,
                    end.status,
                    end.error.as_deref().unwrap_or(""),
                    node.name,
                    match (v["started_at"].as_u64(), v["created_at"].as_u64()) {
                        (Some(s), Some(c)) => format!(
                            " (it started there {} ms after its creation)",
                            s.saturating_sub(c)
                        ),
                        _ => String::new(),
                    }
                ));
            }
        }
    }
    row.duration = start.elapsed();
    log(
        start,
        key,
        format!(
            "{} submitted, {} accepted: {} completed, {} failed, {} lost; drained in {:.1}s",
            row.submitted,
            row.accepted,
            row.completed,
            row.failed_total(),
            row.lost.len(),
            row.drain.as_secs_f64()
        ),
    );
    for (reason, n) in &row.failed {
        log(start, key, format!("  failed x{n}: {reason}"));
    }
    for (reason, n) in &row.not_accepted {
        log(start, key, format!("  not accepted x{n}: {reason}"));
    }
    if !lost_detail.is_empty() {
        log(start, key, format!("LOST: {}", lost_detail.len()));
        for l in lost_detail.iter().take(20) {
            log(start, key, format!("  {l}"));
        }
        let since = fault_start_ms / 1000 - 30;
        for id in row.lost.iter().take(3) {
            for n in [&requester, &target] {
                let lines: Vec<String> = net
                    .logs(n, since)
                    .await
                    .lines()
                    .filter(|l| l.contains(id.as_str()))
                    .map(str::to_string)
                    .collect();
                log(
                    start,
                    key,
                    format!("  {} log lines about {id}: {}", n.name, lines.len()),
                );
                for l in lines.iter().take(10) {
                    println!("      {l}");
                }
            }
        }
    }
    for w in &row.wrong_outputs {
        log(start, key, format!("WRONG OUTPUT {w}"));
    }
    for d in &row.diverged {
        log(start, key, format!("executor disagrees: {d}"));
    }
    Ok(row)
}

fn node_name<'a>(net: &'a Testnet, public_key: &'a str) -> &'a str {
    net.nodes
        .iter()
        .find(|n| n.public_key == public_key)
        .map_or(public_key, |n| n.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::normalize_reason;

    #[test]
    fn reasons_group_without_their_ids() {
        assert_eq!(
            normalize_reason("timed out after 8000 ms"),
            "timed out after 8000 ms"
        );
        assert_eq!(
            normalize_reason(
                "no provider accepted the execution: 12D3KooWQM7zaMaVHykT6FEaZxRaFAwHWFmnfQQZ9tbdL8esM577: busy"
            ),
            "no provider accepted the execution: <id>: busy"
        );
    }
}
