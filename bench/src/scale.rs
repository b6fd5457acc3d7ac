//! Scale: N nodes on loopback. How long until they all know each other, until every node
//! knows a provider after one announcement, until a newcomer can run a task on it, and
//! how many bytes the network exchanges per node when nothing happens.

use crate::Ctx;
use crate::cluster::{Api, start_node};
use crate::report::{Goal, Section, Summary, Table, ms};
use anyhow::{Context, Result, bail};
use mesg_testkit::NodeProcess;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound of every convergence wait (membership, providers, first execution).
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// The nodes' refresh period of their announcements with `nodes` nodes in the network
/// (node/src/engine/net/announce.rs, `refresh_period`: about 40 refreshes per minute
/// network-wide, at least every 60 s).
fn refresh_period(nodes: usize) -> Duration {
    Duration::from_millis((nodes as u64 + 1) * 1_500).max(Duration::from_secs(60))
}

/// The goal of the issue for the provider view.
const CONVERGE_GOAL_MS: f64 = 2000.0;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let sizes: &[usize] = if !ctx.scale_sizes.is_empty() {
        &ctx.scale_sizes
    } else if ctx.quick {
        &[5]
    } else {
        &[10, 25, 50]
    };
    let idle_window = Duration::from_secs(if ctx.quick { 5 } else { 60 });
    let settle = Duration::from_secs(if ctx.quick { 2 } else { 10 });

    let mut s = Section::new(
        "Scale: N nodes on loopback",
        format!(
            "For each N, N real `mesg-node` processes start one after the other on loopback: \
             node 0 alone, every other one with `--bootstrap` node 0's p2p address. Then: \
             (1) membership: time from the last node's API answering until every node lists \
             the N-1 others in `GET /v1/peers` (`nodes`: the nodes it holds a live \
             announcement of), polled on every node; (2) `echo` is deployed and started on \
             node 1, every other node's `GET /v1/network/services` is polled concurrently, \
             and the time from the instance being connected (`POST /v1/instances`, then \
             polling until `connected`) until each node lists the provider is recorded; \
             (3) one more node bootstraps from node 0 and runs `echo` with `{{message: \
             \"hi\"}}` in a loop (retry every 20 ms) until the first execution completes; \
             (4) after {} s of settling, the libp2p byte counters of every node's `/metrics` \
             are read twice, {} s apart (or one refresh period of the nodes' announcements, \
             (N + 2) × 1.5 s, when longer), with no load. Every wait is bounded by {} s.",
            settle.as_secs(),
            idle_window.as_secs(),
            CONVERGE_LIMIT.as_secs()
        ),
    );
    let mut table = Table::new(&[
        "nodes",
        "membership (ms)",
        "provider known p50 (ms)",
        "provider known max (ms)",
        "new node first exec from process start (ms)",
        "… from API ready (ms)",
        "idle in KiB/node/min mean / max",
        "idle out KiB/node/min mean / max",
    ]);
    let mut details = Table::new(&[
        "nodes",
        "start all (s)",
        "one node start p50 / max (ms)",
        "membership reached (min nodes known / N-1)",
        "connected peers per node at idle min / mean / max (of N)",
        "nodes that listed the provider before it connected",
        "new node: failed attempts before the first completed",
    ]);
    let mut goal_max: Option<f64> = None;
    let mut goal_n = 0;
    // (N, idle KiB/node/min in and out, most connections of a node)
    let mut idle: Vec<(usize, f64, usize)> = Vec::new();
    let mut failures = 0;
    for &n in sizes {
        eprintln!("scale: {n} nodes");
        // At least one refresh period of the nodes (N + 1 of them, the newcomer included):
        // a shorter window would miss the refreshes of a large network.
        let window = if ctx.quick {
            idle_window
        } else {
            idle_window.max(refresh_period(n + 1))
        };
        match run_n(ctx, n, settle, window).await {
            Ok(r) => {
                table.row(r.row());
                details.row(r.details());
                idle.push((n, r.idle_in.0.max(r.idle_out.0), r.connected_max));
                s.notes.extend(r.notes.iter().cloned());
                goal_max = r
                    .provider
                    .filter(|_| r.provider_seen == n - 1)
                    .map(|p| p.max);
                goal_n = n;
            }
            Err(e) => {
                failures += 1;
                eprintln!("scale: {n} nodes failed: {e:#}");
                let mut row = vec![n.to_string(), format!("failed: {e:#}")];
                row.resize(table.headers.len(), "-".into());
                table.row(row);
                s.notes.push(format!("N = {n} failed: {e:#}"));
                goal_max = None;
                goal_n = n;
            }
        }
    }
    if failures == sizes.len() {
        bail!("every cluster size failed: {}", s.notes.join("; "));
    }
    if let Some((_, kib, _)) = idle.iter().find(|(n, _, _)| *n == 50) {
        s.goals.push(Goal::new(
            "idle traffic per node at 50 nodes",
            "≤ 200 KiB/min",
            format!("{kib:.1} KiB/min (mean, the larger direction)"),
            *kib <= 200.0,
        ));
    }
    if let Some((n, _, most)) = idle.iter().max_by_key(|(n, _, _)| *n) {
        // The node's default --max-peers (node/src/network/mod.rs, DEFAULT_MAX_PEERS).
        let bound = 30;
        s.goals.push(Goal::new(
            &format!("connections per node bounded (N = {n})"),
            &format!("≤ {bound} (--max-peers)"),
            format!("at most {most}"),
            *most <= bound,
        ));
    }
    s.goals.push(Goal::new(
        &format!("{goal_n} nodes converge (every node lists a new provider)"),
        "≤ 2 s",
        match goal_max {
            Some(v) => format!("{} ms (max over nodes, N = {goal_n})", ms(v)),
            None => format!("not reached within {} s", CONVERGE_LIMIT.as_secs()),
        },
        goal_max.is_some_and(|v| v <= CONVERGE_GOAL_MS),
    ));
    s.tables.push((String::new(), table));
    s.tables.push(("Details:".into(), details));
    s.notes.extend([
        "All nodes (and the `echo` container) share one machine and its 2 cores, with the \
         benchmark client polling them; at N = 50 the nodes compete for CPU, so these are \
         upper bounds for nodes on separate machines."
            .into(),
        "Nodes announce what they run on gossipsub (`mesg/announce/2`) when it changes \
         (at once, after 100 ms of coalescing, when an instance starts or stops; load \
         changes at most every 5 s) and otherwise as a refresh every 60 s, or (nodes known \
         + 1) × 1.5 s beyond 40 nodes (`refresh_period`, node/src/engine/net/announce.rs: \
         about 40 refreshes per minute in the whole network), valid three periods; \
         messages go to the topic's mesh \
         (degree 6), not flooded to every peer. The provider time is therefore that 100 ms \
         plus a few gossip hops, not a period."
            .into(),
        "Membership and connections: each node dials known peers up to its target \
         (`--target-peers`, default 20) and trims random idle connections above its \
         maximum (`--max-peers`, default 30), so beyond 31 nodes the graph is no longer a \
         full mesh. A node that connects swaps signed announcements with the peer (peer \
         exchange; the first connection also returns every live announcement the peer \
         holds), so a newcomer knows the network within a round trip of its first \
         connection. The nodes start one after the other (a start: spawn, wait until the \
         API answers, clear Docker objects of that node id; `start all`): the membership \
         time is mostly how fast the last node and the others learn of each other. \
         `connected peers` is counted at the start of the idle window, over the N+1 nodes."
            .into(),
        "Provider times are measured from the moment the instance reports `connected`; a \
         node that listed the provider earlier (the announcement goes out when the container \
         is started, before it connects) counts as 0. The provider node itself is not \
         counted."
            .into(),
        "The new node resolves the sid `echo` from announcements, fetches the signed service \
         record from the network and routes the execution to node 1; attempts that fail \
         before that (service not found) are retried after 20 ms."
            .into(),
        "Idle traffic: the sum of `libp2p_bandwidth_bytes_total` (libp2p's transport metrics: \
         bytes of all protocols on the multiplexed streams — gossipsub announcements and \
         heartbeats, Kademlia, identify, ping — without the TCP, noise and yamux framing \
         below them) per node and direction, over the window, \
         scaled to one minute, over the N+1 nodes (the newcomer included) with one idle \
         `echo` instance."
            .into(),
    ]);
    Ok(s)
}

#[derive(Debug)]
struct NResult {
    n: usize,
    start_all: Duration,
    /// One node's start: spawn until its API answers, and its Docker objects are cleared.
    node_start: Summary,
    /// Time until every node knew N-1 others; None when not reached in time.
    membership: Option<Duration>,
    /// Fewest other nodes known by a node when membership ended (or timed out).
    membership_min: usize,
    connected_min: usize,
    connected_mean: f64,
    connected_max: usize,
    provider: Option<Summary>,
    provider_seen: usize,
    early: usize,
    first_exec_from_start: Option<Duration>,
    first_exec_from_api: Option<Duration>,
    failed_attempts: usize,
    idle_in: (f64, f64),
    idle_out: (f64, f64),
    notes: Vec<String>,
}

impl NResult {
    fn row(&self) -> Vec<String> {
        let limit = format!("> {} s", CONVERGE_LIMIT.as_secs());
        let d = |v: Option<Duration>| v.map_or(limit.clone(), |d| ms(d.as_secs_f64() * 1e3));
        let (p50, max) = match self.provider {
            Some(p) if self.provider_seen == self.n - 1 => (ms(p.p50), ms(p.max)),
            Some(p) => (ms(p.p50), limit.clone()),
            None => (limit.clone(), limit.clone()),
        };
        vec![
            self.n.to_string(),
            d(self.membership),
            p50,
            max,
            d(self.first_exec_from_start),
            d(self.first_exec_from_api),
            format!("{:.1} / {:.1}", self.idle_in.0, self.idle_in.1),
            format!("{:.1} / {:.1}", self.idle_out.0, self.idle_out.1),
        ]
    }

    fn details(&self) -> Vec<String> {
        vec![
            self.n.to_string(),
            format!("{:.1}", self.start_all.as_secs_f64()),
            format!("{} / {}", ms(self.node_start.p50), ms(self.node_start.max)),
            format!("{} / {}", self.membership_min, self.n - 1),
            format!(
                "{} / {:.1} / {}",
                self.connected_min, self.connected_mean, self.connected_max
            ),
            format!("{} of {}", self.early, self.n - 1),
            self.failed_attempts.to_string(),
        ]
    }
}

async fn run_n(ctx: &Ctx, n: usize, settle: Duration, idle_window: Duration) -> Result<NResult> {
    let mut cluster = Cluster::default();
    let result = measure(ctx, &mut cluster, n, settle, idle_window).await;
    cluster.shutdown().await;
    result
}

async fn measure(
    ctx: &Ctx,
    cluster: &mut Cluster,
    n: usize,
    settle: Duration,
    idle_window: Duration,
) -> Result<NResult> {
    let mut notes = Vec::new();

    // 1. Start the nodes, one after the other, and wait for full membership.
    let started = Instant::now();
    cluster
        .nodes
        .push(start_node(&[]).await.context("starting node 0")?);
    let boot = cluster.nodes[0].p2p_addr();
    let mut node_starts = vec![started.elapsed()];
    for i in 1..n {
        let t = Instant::now();
        let node = start_node(&["--bootstrap", &boot])
            .await
            .with_context(|| format!("starting node {i} of {n}"))?;
        node_starts.push(t.elapsed());
        cluster.nodes.push(node);
    }
    let last_started = Instant::now();
    let start_all = started.elapsed();
    let apis: Vec<Api> = cluster.nodes.iter().map(Api::new).collect();
    let poll_every = Duration::from_millis((2 * n as u64).max(20));
    let m = membership(&apis, n - 1, last_started, poll_every).await;
    if m.unanswered > 0 {
        notes.push(format!(
            "N = {n}: {} node(s) never answered `GET /v1/peers` during the membership wait",
            m.unanswered
        ));
    }

    // 2. One provider appears on node 1: how long until every other node lists it.
    let provider = &apis[1];
    let service = provider
        .deploy(&ctx.echo_dir)
        .await
        .context("deploying echo on node 1")?;
    let others: Vec<Api> = apis
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, a)| a.clone())
        .collect();
    let watch = ProviderWatch::spawn(&others, "echo", poll_every);
    let connected_at = start_instance(provider, &service).await;
    let connected_at = match connected_at {
        Ok(t) => t,
        Err(e) => {
            watch.stop().await;
            return Err(e.context("starting echo on node 1"));
        }
    };
    let deadline = connected_at + CONVERGE_LIMIT;
    while Instant::now() < deadline && !watch.all_seen() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = watch.stop().await;
    let mut early = 0;
    let times: Vec<Duration> = seen
        .iter()
        .flatten()
        .map(|t| {
            if *t < connected_at {
                early += 1;
            }
            t.saturating_duration_since(connected_at)
        })
        .collect();
    let provider_seen = times.len();
    if provider_seen < others.len() {
        notes.push(format!(
            "N = {n}: {} of {} nodes did not list the provider within {} s",
            others.len() - provider_seen,
            others.len(),
            CONVERGE_LIMIT.as_secs()
        ));
    }
    let provider_summary = (!times.is_empty()).then(|| Summary::of(&times));

    // 3. A newcomer bootstraps from node 0 and runs echo as soon as it can.
    let process_start = Instant::now();
    let newcomer = start_node(&["--bootstrap", &boot])
        .await
        .context("starting the new node")?;
    let api_ready = Instant::now();
    let new_api = Api::new(&newcomer);
    cluster.nodes.push(newcomer);
    let mut failed_attempts = 0;
    let mut last_error = String::new();
    let deadline = api_ready + CONVERGE_LIMIT;
    let first_exec = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break None;
        }
        let attempt = tokio::time::timeout(
            remaining,
            new_api.exec("echo", "echo", &json!({"message": "hi"})),
        )
        .await;
        match attempt {
            Ok(Ok(_)) => break Some(Instant::now()),
            Ok(Err(e)) => {
                failed_attempts += 1;
                last_error = format!("{e:#}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                last_error = "the last attempt was still running".into();
                break None;
            }
        }
    };
    if first_exec.is_none() {
        notes.push(format!(
            "N = {n}: the new node ran no execution within {} s ({failed_attempts} failed \
             attempts; last: {last_error})",
            CONVERGE_LIMIT.as_secs()
        ));
    } else if failed_attempts > 0 {
        notes.push(format!(
            "N = {n}: the new node's last failed attempt before the first completed \
             execution: {last_error}"
        ));
    }

    // 4. Idle traffic.
    tokio::time::sleep(settle).await;
    let all: Vec<Api> = cluster.nodes.iter().map(Api::new).collect();
    let connected = connected_peers(&all).await;
    let before = bandwidth(&all).await.context("reading /metrics")?;
    let t0 = Instant::now();
    tokio::time::sleep(idle_window).await;
    let after = bandwidth(&all).await.context("reading /metrics")?;
    let per_min = 60.0 / t0.elapsed().as_secs_f64() / 1024.0;
    let mut ins = Vec::new();
    let mut outs = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        ins.push((a.0 - b.0).max(0.0) * per_min);
        outs.push((a.1 - b.1).max(0.0) * per_min);
    }

    Ok(NResult {
        n,
        start_all,
        node_start: Summary::of(&node_starts),
        membership: m.all_at,
        membership_min: m.min_known,
        connected_min: connected.iter().copied().min().unwrap_or(0),
        connected_mean: mean_max(&connected.iter().map(|c| *c as f64).collect::<Vec<_>>()).0,
        connected_max: connected.iter().copied().max().unwrap_or(0),
        provider: provider_summary,
        provider_seen,
        early,
        first_exec_from_start: first_exec.map(|t| t - process_start),
        first_exec_from_api: first_exec.map(|t| t - api_ready),
        failed_attempts,
        idle_in: mean_max(&ins),
        idle_out: mean_max(&outs),
        notes,
    })
}

fn mean_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean, v.iter().copied().fold(0.0, f64::max))
}

/// The nodes of one cluster size; `shutdown` stops them (in parallel) and removes their
/// Docker objects. Dropped without `shutdown` (an error), they are killed one by one.
#[derive(Debug, Default)]
struct Cluster {
    nodes: Vec<NodeProcess>,
}

impl Cluster {
    async fn shutdown(&mut self) {
        crate::cluster::drop_nodes(std::mem::take(&mut self.nodes)).await;
    }
}

/// Start an instance and wait until its container is connected; returns that moment.
async fn start_instance(api: &Api, service: &str) -> Result<Instant> {
    let inst = api
        .post("/v1/instances", &json!({"service": service, "env": {}}))
        .await?;
    let id = inst["hash"].as_str().context("instance without a hash")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = api.get(&format!("/v1/instances/{id}")).await?;
        if v["connected"] == true {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("instance {id} did not connect within 60 s: {v}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Debug)]
struct Membership {
    all_at: Option<Duration>,
    min_known: usize,
    unanswered: usize,
}

/// Poll every node's `/v1/peers` until each lists `want` other nodes (or the limit).
async fn membership(apis: &[Api], want: usize, since: Instant, every: Duration) -> Membership {
    let deadline = since + CONVERGE_LIMIT;
    let polls = apis.iter().map(|api| async move {
        // (other nodes known, answered at least once)
        let mut last = (0usize, false);
        loop {
            if let Ok(v) = api.get("/v1/peers").await {
                let known = v["nodes"].as_array().map_or(0, Vec::len);
                last = (known, true);
                if known >= want {
                    return (Some(Instant::now()), last);
                }
            }
            if Instant::now() >= deadline {
                return (None, last);
            }
            tokio::time::sleep(every).await;
        }
    });
    let results = futures::future::join_all(polls).await;
    let all_at = results
        .iter()
        .map(|(t, _)| *t)
        .collect::<Option<Vec<Instant>>>()
        .and_then(|ts| ts.into_iter().max())
        .map(|t| t.saturating_duration_since(since));
    Membership {
        all_at,
        min_known: results.iter().map(|(_, l)| l.0).min().unwrap_or(0),
        unanswered: results.iter().filter(|(_, l)| !l.1).count(),
    }
}

/// How many peers each node is connected to (nodes that do not answer are left out).
async fn connected_peers(apis: &[Api]) -> Vec<usize> {
    let reads = apis.iter().map(|api| async move {
        let v = api.get("/v1/peers").await.ok()?;
        Some(
            v["peers"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["connected"] == true).count()),
        )
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Pollers of `/v1/network/services` on many nodes, noting when each first lists a
/// provider of `sid`.
struct ProviderWatch {
    seen: Arc<Mutex<Vec<Option<Instant>>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ProviderWatch {
    fn spawn(apis: &[Api], sid: &'static str, every: Duration) -> ProviderWatch {
        let seen = Arc::new(Mutex::new(vec![None; apis.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let polls: Vec<_> = apis
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, api)| {
                let seen = seen.clone();
                let stop = stop.clone();
                async move {
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok(true) = api.knows_providers(sid, 1).await {
                            seen.lock().expect("seen lock")[i] = Some(Instant::now());
                            return;
                        }
                        tokio::time::sleep(every).await;
                    }
                }
            })
            .collect();
        let task = tokio::spawn(async move {
            futures::future::join_all(polls).await;
        });
        ProviderWatch { seen, stop, task }
    }

    fn all_seen(&self) -> bool {
        self.seen
            .lock()
            .expect("seen lock")
            .iter()
            .all(Option::is_some)
    }

    async fn stop(self) -> Vec<Option<Instant>> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.seen.lock().expect("seen lock").clone()
    }
}

/// Total libp2p bytes (inbound, outbound) of every node, from its `/metrics`.
async fn bandwidth(apis: &[Api]) -> Result<Vec<(f64, f64)>> {
    let reads = apis.iter().map(|api| async move {
        let text = api.text("/metrics").await?;
        parse_bandwidth(&text).with_context(|| format!("{}/metrics", api.base))
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// Sum `libp2p_bandwidth_bytes_total` per direction.
fn parse_bandwidth(text: &str) -> Result<(f64, f64)> {
    let (mut inbound, mut outbound, mut lines) = (0.0, 0.0, 0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("libp2p_bandwidth_bytes_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let value: f64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("bad counter line: {line}"))?;
        lines += 1;
        if labels.contains("direction=\"Inbound\"") {
            inbound += value;
        } else if labels.contains("direction=\"Outbound\"") {
            outbound += value;
        }
    }
    if lines == 0 {
        bail!("no libp2p_bandwidth_bytes_total counter");
    }
    Ok((inbound, outbound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_bandwidth_counters_by_direction() {
        let text = "# TYPE libp2p_bandwidth_bytes counter\n\
                    libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Inbound\"} 100\n\
                    libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Outbound\"} 40\n\
                    libp2p_bandwidth_bytes_total{protocols=\"/ip4/udp/quic-v1\",direction=\"Inbound\"} 5\n\
                    mesg_executions_total 3\n";
        assert_eq!(parse_bandwidth(text).unwrap(), (105.0, 40.0));
        assert!(parse_bandwidth("mesg_executions_total 3\n").is_err());
    }
}
