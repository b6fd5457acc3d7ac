//! mesg-sim: hundreds of mesg nodes in one process, on loopback (issue 18).
//!
//! Each simulated node is the node's own code: its `Engine` (router, announcements, peer
//! exchange, providers, executions) over a real sled store in a temporary directory, and
//! its own libp2p swarm (`network::spawn`: TCP on 127.0.0.1 with noise and yamux,
//! identify, ping, Kademlia, gossipsub, request-response, the bounded-connection logic).
//! Nodes talk to each other only over those TCP connections. What is not real: Docker
//! (the engine runs on `FakeRuntime`: a deploy "builds" nothing and a started instance has
//! no container) and the service container, played by this program through the engine's
//! container-facing API (`authenticate`, the task stream, `submit_result`), without the
//! HTTP hop in between; no Application API either (the harness calls the engine).
//!
//! ```sh
//! cargo run --release -p mesg-bench --bin mesg-sim -- --sizes 100 --out target/sim-100.md
//! cargo run -p mesg-bench --bin mesg-sim -- --quick    # 20 nodes, well under a minute
//! ```
//!
//! Every phase is bounded by a timeout; a phase that times out is reported as such.
//! docs/benchmarks.md ("Simulation") says what it measures and why it is faithful.

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use mesg_node::engine::{CreateExecution, Engine, EngineConfig, peer_limits};
use mesg_node::network::{self, NetworkConfig, NetworkHandle};
use mesg_node::runtime::fake::FakeRuntime;
use mesg_node::runtime::limits::LimitBounds;
use mesg_node::runtime::{ResourceLimits, Runtime};
use mesg_node::store::{SledStore, Store};
use mesg_protocol::service_api::{TaskResultRequest, TaskStreamMessage};
use mesg_protocol::{Keypair, PublicKey, ServiceHash};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod churn;
mod partition;
mod report;
use churn::Snapshot;
use partition::partition;
use report::tables;

const DEFINITION: &str = "name: Echo\nsid: echo\ntasks:\n  echo:\n    inputs:\n      message: {type: String, optional: true}\n    outputs:\n      message: {type: String, optional: true}\n";

#[derive(Debug, Parser)]
#[command(name = "mesg-sim")]
struct Args {
    /// Network sizes to simulate, one after the other (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    sizes: Vec<usize>,
    /// 20 nodes and short windows: checks that the harness works (CI); figures not meaningful.
    #[arg(long)]
    quick: bool,
    /// Also append the tables to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Idle window in seconds (the nodes' refresh period may be longer: see the report).
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Also measure over one full refresh period ((N + 2) × 1.5 s) when it is at most this
    /// many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    full_period_max: u64,
    /// How long the partition is held, in seconds.
    #[arg(long, default_value_t = 15)]
    cut_secs: u64,
    /// Connections each node dials up to / starts closing at (the node's defaults).
    #[arg(long, default_value_t = 20)]
    target_peers: usize,
    #[arg(long, default_value_t = 30)]
    max_peers: usize,
}

/// One simulated node.
struct Node {
    engine: Engine,
    net: NetworkHandle,
    key: PublicKey,
    peer: libp2p::PeerId,
    addr: libp2p::Multiaddr,
    registry: prometheus_client::registry::Registry,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(bootstrap: Option<libp2p::Multiaddr>, args: &Args) -> Result<Node> {
        let dir = tempfile::Builder::new().prefix("mesg-sim-").tempdir()?;
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db"))?);
        std::fs::create_dir_all(dir.path().join("packages"))?;
        let key = Keypair::generate()?;
        let shutdown = CancellationToken::new();
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new());
        let engine = Engine::new(
            key.clone(),
            store,
            runtime,
            EngineConfig {
                credit_limit: mesg_node::ledger::DEFAULT_CREDIT_LIMIT,
                packages_dir: dir.path().join("packages"),
                max_package_bytes: mesg_package::DEFAULT_MAX_PACKAGE_BYTES,
                default_limits: ResourceLimits::default(),
                limit_bounds: LimitBounds::new(None, None, None),
                execution_history: 100_000,
                pins: vec![],
                peer_work_rate: peer_limits::DEFAULT_PEER_WORK_RATE,
                idempotency_ttl_ms: 24 * 3600 * 1000,
                adaptive_verification: false,
            },
            shutdown.child_token(),
        )?;
        let mut config = NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            bootstrap: bootstrap.into_iter().collect(),
            private_network: true,
            target_peers: args.target_peers,
            ..NetworkConfig::default()
        };
        config.max_peers = args.max_peers.max(config.target_peers);
        let mut registry = prometheus_client::registry::Registry::default();
        let (net, events) = network::spawn(&key, config, &mut registry, shutdown.clone())?;
        engine.attach_network(net.clone(), events);
        engine.recover().await?;
        let mut addr = None;
        for _ in 0..200 {
            if let Some(a) = net.listen_addrs().await?.into_iter().next() {
                addr = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let addr = addr.context("no listen address")?;
        Ok(Node {
            peer: key.peer_id(),
            addr: addr.with(libp2p::multiaddr::Protocol::P2p(key.peer_id())),
            key: key.public(),
            engine,
            net,
            registry,
            shutdown,
            _dir: dir,
        })
    }

    fn knows_nodes(&self) -> usize {
        self.engine
            .network_nodes()
            .iter()
            .filter(|n| n.node != self.key)
            .count()
    }

    fn knows_provider(&self, service: &ServiceHash, provider: &PublicKey) -> bool {
        self.engine
            .network_services()
            .iter()
            .any(|s| s.service_hash == *service && s.providers.iter().any(|p| p.node == *provider))
    }

    /// Connected peers; empty when the swarm task does not answer within 5 s (an
    /// overloaded machine: the harness must not wait on one node forever).
    async fn connected(&self) -> Vec<libp2p::PeerId> {
        tokio::time::timeout(Duration::from_secs(5), self.net.peers())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.connected)
            .filter_map(|p| p.peer_id.parse().ok())
            .collect()
    }

    /// libp2p's transport byte counters, summed per direction (in, out).
    fn bandwidth(&self) -> (f64, f64) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return (0.0, 0.0);
        }
        let (mut inbound, mut outbound) = (0.0, 0.0);
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("libp2p_bandwidth_bytes_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once('}') else {
                continue;
            };
            let v: f64 = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            if labels.contains("direction=\"Inbound\"") {
                inbound += v;
            } else if labels.contains("direction=\"Outbound\"") {
                outbound += v;
            }
        }
        (inbound, outbound)
    }
}

/// Echo's package; the directory must outlive the package (it is read from there).
fn echo_package() -> Result<(
    tempfile::TempDir,
    mesg_package::Package,
    mesg_protocol::ServiceDefinition,
)> {
    let src = tempfile::tempdir()?;
    std::fs::write(src.path().join("mesg.yml"), DEFINITION)?;
    std::fs::write(
        src.path().join("Dockerfile"),
        "FROM scratch\nCOPY mesg.yml /\n",
    )?;
    let package =
        mesg_package::Package::from_dir(src.path(), mesg_package::DEFAULT_MAX_PACKAGE_BYTES)?;
    let definition = package.definition()?;
    Ok((src, package, definition))
}

/// Deploy echo and start an instance on `node`, then play its container: open the task
/// stream and answer every task with its inputs. Returns the service hash.
async fn provide_echo(node: &Node) -> Result<ServiceHash> {
    let (_src, package, definition) = echo_package()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let service = node
        .engine
        .deploy(package, definition, false, None, tx)
        .await?;
    let instance = node
        .engine
        .start_instance(&service.hash.to_string(), BTreeMap::new(), None)
        .await?;
    let token = node
        .engine
        .store()
        .instance(&instance.hash)?
        .context("instance not stored")?
        .token;
    let live = node.engine.authenticate(&token)?;
    let engine = node.engine.clone();
    tokio::spawn(async move {
        let stream = live.clone().task_stream();
        futures::pin_mut!(stream);
        while let Some(Ok(bytes)) = stream.next().await {
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Ok(TaskStreamMessage::Task {
                    execution_id,
                    inputs,
                    ..
                }) = serde_json::from_slice(line)
                {
                    let _ = engine
                        .submit_result(
                            &live,
                            TaskResultRequest {
                                execution_id,
                                outputs: Some(inputs),
                                error: None,
                            },
                        )
                        .await;
                }
            }
        }
    });
    Ok(service.hash)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Poll `done` every `every` until it holds or `limit` passes; the time it took.
async fn until(
    limit: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if done() {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Idle traffic over one full refresh period: the window (s), in and out (mean, max).
type FullPeriod = (f64, (f64, f64), (f64, f64));

struct Row {
    n: usize,
    wall_s: f64,
    start_all_s: f64,
    membership: String,
    membership_min: usize,
    provider_p50: f64,
    provider_max: String,
    provider_known: usize,
    first_exec: String,
    first_exec_attempts: usize,
    conns: (usize, f64, usize),
    idle_in: (f64, f64),
    idle_out: (f64, f64),
    idle_window_s: f64,
    full_period: Option<FullPeriod>,
    partition: String,
    /// Connections dialled per node per minute over the idle window.
    idle_opened: f64,
    /// Per phase: its name, its length (s) and what the connection counters say.
    churn: Vec<(&'static str, f64, String)>,
}

async fn simulate(n: usize, args: &Args) -> Result<Row> {
    let wall = Instant::now();
    let quick = args.quick;
    eprintln!("[{n}] starting {n} nodes");
    let t = Instant::now();
    let mut nodes: Vec<Node> = Vec::with_capacity(n + 1);
    nodes.push(Node::start(None, args).await?);
    let boot = nodes[0].addr.clone();
    for i in 1..n {
        nodes.push(
            Node::start(Some(boot.clone()), args)
                .await
                .with_context(|| format!("node {i}"))?,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start_all_s = t.elapsed().as_secs_f64();
    eprintln!("[{n}] started in {start_all_s:.1} s");
    let mut churn = Vec::new();
    let mut phase = (Snapshot::default(), t);
    let mut end_phase = |name: &'static str, nodes: &[Node]| {
        let now = Snapshot::take(nodes);
        let delta = now.since(&phase.0);
        let secs = phase.1.elapsed().as_secs_f64();
        let line = format!("{}; {}", delta.line(), churn::routing_tables(nodes));
        eprintln!("[{n}] churn, {name} ({secs:.0} s): {line}");
        churn.push((name, secs, line));
        phase = (now, Instant::now());
        delta
    };

    // (1) membership
    let limit = Duration::from_secs(if quick { 20 } else { 60 });
    let membership = until(limit, Duration::from_millis(100), || {
        nodes.iter().all(|x| x.knows_nodes() >= n - 1)
    })
    .await;
    let membership_min = nodes.iter().map(Node::knows_nodes).min().unwrap_or(0);
    let membership = match membership {
        Some(d) => format!("{}", d.as_millis()),
        None => format!("> {} (not reached)", limit.as_millis()),
    };
    eprintln!("[{n}] membership {membership} ms (min known {membership_min})");
    end_phase("start and membership", &nodes);

    // (2) a new provider on node 1
    let t = Instant::now();
    let service = provide_echo(&nodes[1]).await?;
    let started_after = t.elapsed();
    let provider = nodes[1].key;
    let mut known_at: Vec<Option<Duration>> = vec![None; n];
    let t = Instant::now();
    let limit = Duration::from_secs(30);
    loop {
        for (i, x) in nodes.iter().enumerate() {
            if i != 1 && known_at[i].is_none() && x.knows_provider(&service, &provider) {
                known_at[i] = Some(t.elapsed());
            }
        }
        let left = known_at
            .iter()
            .enumerate()
            .filter(|(i, k)| *i != 1 && k.is_none())
            .count();
        if left == 0 || t.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut known: Vec<f64> = known_at
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .filter_map(|(_, k)| k.map(|d| d.as_secs_f64() * 1e3))
        .collect();
    known.sort_by(f64::total_cmp);
    let provider_known = known.len();
    let provider_p50 = pct(&known, 50.0);
    let provider_max = if provider_known == n - 1 {
        format!("{:.0}", pct(&known, 100.0))
    } else {
        format!("> 30000 ({provider_known} of {})", n - 1)
    };
    eprintln!(
        "[{n}] provider (instance started in {} ms) known p50 {provider_p50:.0} max {provider_max} ms",
        started_after.as_millis()
    );

    // (3) a newcomer's first routed execution
    let t = Instant::now();
    let newcomer = Node::start(Some(boot.clone()), args).await?;
    let mut attempts = 0;
    let mut first_exec = String::from("> 30000 (not done)");
    while t.elapsed() < Duration::from_secs(30) {
        attempts += 1;
        let created = newcomer
            .engine
            .create_execution(CreateExecution {
                service: service.to_string(),
                task: "echo".into(),
                inputs: serde_json::json!({"message": "hi"}),
                ..Default::default()
            })
            .await;
        if let Ok(e) = created
            && let Ok(done) = newcomer.engine.wait(&e.id, Duration::from_secs(5)).await
            && done.status == mesg_protocol::ExecutionStatus::Completed
        {
            first_exec = format!("{}", t.elapsed().as_millis());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("[{n}] newcomer first exec {first_exec} ms after {attempts} attempt(s)");
    nodes.push(newcomer);
    end_phase("new provider, newcomer", &nodes);

    // (4) idle
    tokio::time::sleep(Duration::from_secs(if quick { 2 } else { 10 })).await;
    end_phase("settling", &nodes);
    let degrees: Vec<usize> = futures::future::join_all(nodes.iter().map(Node::connected))
        .await
        .iter()
        .map(Vec::len)
        .collect();
    let conns = (
        degrees.iter().copied().min().unwrap_or(0),
        degrees.iter().sum::<usize>() as f64 / degrees.len() as f64,
        degrees.iter().copied().max().unwrap_or(0),
    );
    let window = Duration::from_secs(if quick { 10 } else { args.idle_secs });
    eprintln!(
        "[{n}] connections {conns:?}; idle window {} s",
        window.as_secs()
    );
    let before: Vec<(f64, f64)> = nodes.iter().map(Node::bandwidth).collect();
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let rate = |after: &[(f64, f64)], secs: f64| {
        let per_min = 60.0 / secs / 1024.0;
        let ins: Vec<f64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| (a.0 - b.0) * per_min)
            .collect();
        let outs: Vec<f64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| (a.1 - b.1) * per_min)
            .collect();
        let mm = |v: &[f64]| {
            (
                v.iter().sum::<f64>() / v.len() as f64,
                v.iter().copied().fold(0.0, f64::max),
            )
        };
        (mm(&ins), mm(&outs))
    };
    let secs = t.elapsed().as_secs_f64();
    let after: Vec<(f64, f64)> = nodes.iter().map(Node::bandwidth).collect();
    let (idle_in, idle_out) = rate(&after, secs);
    let idle_opened = end_phase("idle", &nodes).opened_per_node_min(nodes.len(), secs);
    eprintln!("[{n}] idle: {idle_opened:.1} connections dialled per node per minute");
    eprintln!("[{n}] idle in {idle_in:?} out {idle_out:?} KiB/node/min over {secs:.0} s");
    let period = (n as f64 + 2.0) * 1.5;
    let full_period = if !quick
        && args.full_period_max > 0
        && period <= args.full_period_max as f64
        && period > secs
    {
        tokio::time::sleep(Duration::from_secs_f64(period - secs)).await;
        let secs = t.elapsed().as_secs_f64();
        let after: Vec<(f64, f64)> = nodes.iter().map(Node::bandwidth).collect();
        let (i, o) = rate(&after, secs);
        eprintln!("[{n}] over a full period ({secs:.0} s): in {i:?} out {o:?}");
        // Its connections are its own phase, not the partition's.
        end_phase("rest of the full period", &nodes);
        Some((secs, i, o))
    } else {
        None
    };

    // (5) partition into halves, new providers on each side during the cut, heal
    let partition = partition(&nodes, args).await?;
    eprintln!("[{n}] partition: {partition}");
    end_phase("partition", &nodes);

    for x in &nodes {
        x.shutdown.cancel();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Row {
        n,
        wall_s: wall.elapsed().as_secs_f64(),
        start_all_s,
        membership,
        membership_min,
        provider_p50,
        provider_max,
        provider_known,
        first_exec,
        first_exec_attempts: attempts,
        conns,
        idle_in,
        idle_out,
        idle_window_s: secs,
        full_period,
        partition,
        idle_opened,
        churn,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec![20];
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("MESG_SIM_LOG").unwrap_or_else(|_| "error".into()),
        ))
        .with_target(false)
        .init();
    let mut rows = Vec::new();
    for &n in &args.sizes {
        anyhow::ensure!(n >= 8, "at least 8 nodes");
        let row = simulate(n, &args)
            .await
            .with_context(|| format!("{n} nodes"))?;
        eprintln!("[{n}] done in {:.0} s", row.wall_s);
        rows.push(row);
    }
    let out = tables(&rows, &args);
    print!("{out}");
    if let Some(path) = &args.out {
        let mut old = std::fs::read_to_string(path).unwrap_or_default();
        old.push_str(&out);
        std::fs::write(path, old)?;
    }
    Ok(())
}
