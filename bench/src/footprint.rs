//! Node footprint: start-up time until the API answers (fresh and existing data dir),
//! idle RSS alone and with an echo instance, and RSS / data-dir size along many local
//! executions.

use crate::Ctx;
use crate::cluster::{self, Api};
use crate::report::{Goal, Section, Summary, Table, mib, ms};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use mesg_testkit::NodeProcess;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a node may take to answer its API.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// Executions in flight at once in part (c).
const IN_FLIGHT: usize = 32;

/// Executions the node of (b) and (c) keeps: a fifth of a full run, so the run shows
/// the store and RSS once the history is full.
const HISTORY: usize = 20_000;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "Node footprint",
        "A `mesg-node` process (static release build, `MESG_LOG=warn`) on loopback. \
         (a) Start-up: the suite spawns the binary on a fresh data dir and free ports and \
         times until a TCP connect to the API port succeeds, then until `GET /v1/node` \
         answers; then stops it (SIGTERM) and times a restart on the same data dir the same \
         way; one warm-up round is not counted. (b) Idle RSS (`VmRSS` of the node process \
         from /proc) of a fresh node after an idle period, then after deploying and starting \
         echo and another idle period. (c) On that node, local executions of echo's `echo` \
         task (`POST /v1/executions?wait=true`) with a fixed number in flight, sampling RSS \
         and the data dir's size along the way.",
    );
    startup(ctx, &mut s).await.context("start-up time")?;
    let node = start_node().await?;
    let result = memory(ctx, &node, &mut s).await;
    let _ = tokio::task::spawn_blocking(move || drop(node)).await;
    result?;
    Ok(s)
}

// ------------------------------------------------------------------ (a) start-up

async fn startup(ctx: &Ctx, s: &mut Section) -> Result<()> {
    let n = ctx.n(10, 2);
    let (mut tcp, mut ready, mut re_tcp, mut re_ready) = (vec![], vec![], vec![], vec![]);
    for i in 0..=n {
        let mut node = Spawned::new()?;
        let fresh = node.start().await;
        let restarted = if fresh.is_ok() {
            match node.stop().await {
                Ok(()) => node.start().await,
                Err(e) => Err(e),
            }
        } else {
            Err(anyhow::anyhow!("the first start failed"))
        };
        node.finish().await;
        let (a, b) = fresh.context("start on a fresh data dir")?;
        let (c, d) = restarted.context("restart on an existing data dir")?;
        if i > 0 {
            tcp.push(a);
            ready.push(b);
            re_tcp.push(c);
            re_ready.push(d);
        }
    }
    let mut t = Table::new(&["start-up", "n", "min ms", "p50 ms", "p99 ms"]);
    for (what, v) in [
        ("fresh data dir: API port accepts", &tcp),
        ("fresh data dir: `GET /v1/node` answers", &ready),
        ("existing data dir: API port accepts", &re_tcp),
        ("existing data dir: `GET /v1/node` answers", &re_ready),
    ] {
        let x = Summary::of(v);
        t.row(vec![
            what.into(),
            x.n.to_string(),
            ms(x.min),
            ms(x.p50),
            ms(x.p99),
        ]);
    }
    s.tables.push(("(a) Start-up time, from spawn".into(), t));
    s.notes.push(
        "The node binds its API port early, before it opens the network and recovers its \
         state, and serves only afterwards: a TCP connect succeeds sooner than the API \
         answers. `GET /v1/node` also pings the Docker Engine."
            .into(),
    );
    s.notes.push(
        "A fresh data dir creates the node key and an empty store; the existing one has \
         only those (no service or instance), so the restart measures opening them again."
            .into(),
    );
    Ok(())
}

/// The API token of the nodes this section spawns itself (given, so that start-up is
/// timed the same with or without a token file).
const SPAWNED_TOKEN: &str = "bench-footprint";

/// A node process the suite spawns itself, to time it from the spawn on.
struct Spawned {
    dir: PathBuf,
    api_port: u16,
    service_port: u16,
    p2p_port: u16,
    child: Option<tokio::process::Child>,
    public_key: String,
}

impl Spawned {
    fn new() -> Result<Spawned> {
        let dir = std::env::temp_dir().join(mesg_testkit::unique("mesg-bench-footprint"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Spawned {
            dir,
            api_port: mesg_testkit::free_port(),
            service_port: mesg_testkit::free_port(),
            p2p_port: mesg_testkit::free_port(),
            child: None,
            public_key: String::new(),
        })
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Spawn and wait; returns (API port accepts, `GET /v1/node` answered), from spawn.
    async fn start(&mut self) -> Result<(Duration, Duration)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .context("node log")?;
        let api = Api::at(
            format!("http://127.0.0.1:{}", self.api_port),
            Some(SPAWNED_TOKEN.to_string()),
        );
        let mut cmd = tokio::process::Command::new(mesg_testkit::binary("mesg-node"));
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .arg("--api")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--service-api")
            .arg(format!("0.0.0.0:{}", self.service_port))
            .arg("--listen")
            .arg(format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port))
            .arg("--api-token")
            .arg(SPAWNED_TOKEN)
            .env("MESG_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().context("node log")?)
            .stderr(log)
            .kill_on_drop(true);
        let t = Instant::now();
        self.child = Some(cmd.spawn().context("spawning mesg-node")?);
        let deadline = t + READY_LIMIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.api_port))
            .await
            .is_err()
        {
            self.check_alive(deadline)?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let tcp = t.elapsed();
        let info = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, api.get("/v1/node")).await {
                Ok(Ok(v)) => break v,
                Ok(Err(_)) => {
                    self.check_alive(deadline)?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(_) => self.check_alive(deadline)?,
            }
        };
        let ready = t.elapsed();
        let key = info["public_key"].as_str().unwrap_or_default();
        if key.is_empty() {
            bail!("GET /v1/node without a public key: {info}");
        }
        self.public_key = key.to_string();
        Ok((tcp, ready))
    }

    fn check_alive(&mut self, deadline: Instant) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.child = None;
            bail!("mesg-node exited with {status}:\n{}", self.log());
        }
        if Instant::now() > deadline {
            bail!(
                "mesg-node did not answer GET /v1/node within {READY_LIMIT:?}:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    /// SIGTERM and wait (SIGKILL after 30 s).
    async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().context("the node already exited")?;
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => {
                status.context("waiting for the node")?;
                Ok(())
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("mesg-node did not stop within 30 s of SIGTERM")
            }
        }
    }

    /// Kill, remove its Docker objects and its data dir.
    async fn finish(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if !self.public_key.is_empty() {
            mesg_testkit::docker_cleanup(&self.public_key);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------- (b) idle RSS, (c) executions

async fn memory(ctx: &Ctx, node: &NodeProcess, s: &mut Section) -> Result<()> {
    let pid = node.pid().context("the node does not run")?;
    let api = Api::new(node);
    let idle = Duration::from_secs(if ctx.quick { 1 } else { 5 });

    tokio::time::sleep(idle).await;
    let alone = cluster::rss(pid).context("reading the node's RSS")?;
    let (service, _instance) = api
        .deploy_and_start(&ctx.echo_dir)
        .await
        .context("deploying and starting echo")?;
    tokio::time::sleep(idle).await;
    let with_echo = cluster::rss(pid).context("reading the node's RSS")?;

    let mb = |b: u64| format!("{:.1}", b as f64 / 1e6);
    let mut t = Table::new(&["node", "RSS MB (10⁶ B)", "RSS MiB"]);
    t.row(vec![
        format!("fresh, alone, idle {} s", idle.as_secs()),
        mb(alone),
        mib(alone),
    ]);
    t.row(vec![
        format!("after deploy + start of echo, idle {} s", idle.as_secs()),
        mb(with_echo),
        mib(with_echo),
    ]);
    s.tables
        .push(("(b) Idle RSS of the node process".into(), t));
    s.goals.push(Goal::new(
        "idle RSS",
        "≤ 30 MB",
        format!("{} MB = {} MiB (node alone)", mb(alone), mib(alone)),
        alone as f64 <= 30e6,
    ));
    s.notes.push(
        "RSS is the node process's alone (`VmRSS`); the echo container's memory is not \
         counted. MB = 10⁶ bytes, MiB = 2²⁰ bytes."
            .into(),
    );

    // (c) Many executions.
    let total = ctx.n(100_000, 300);
    let marks = [10usize, 25, 50, 75, 100];
    let mut t = Table::new(&["executions done", "RSS MiB", "data dir MiB", "elapsed s"]);
    let mut rss_at = vec![(0usize, cluster::rss(pid)?)];
    let dir_before = cluster::dir_size(&node.data_dir);
    let mut dir_after = dir_before;
    t.row(vec![
        "0".into(),
        mib(rss_at[0].1),
        mib(dir_before),
        "0.0".into(),
    ]);
    let started = Instant::now();
    let (mut done, mut failed) = (0usize, 0usize);
    let mut first_error: Option<String> = None;
    for pct in marks {
        let target = total * pct / 100;
        let mut runs = futures::stream::iter(done..target)
            .map(|i| {
                let api = api.clone();
                let service = service.clone();
                async move {
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        api.exec(
                            &service,
                            "echo",
                            &json!({"message": "footprint", "count": i}),
                        ),
                    )
                    .await
                    .context("no end within 60 s")?
                }
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some(r) = runs.next().await {
            if let Err(e) = r {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        done = target;
        let rss = cluster::rss(pid).context("reading the node's RSS")?;
        rss_at.push((done, rss));
        dir_after = cluster::dir_size(&node.data_dir);
        t.row(vec![
            done.to_string(),
            mib(rss),
            mib(dir_after),
            format!("{:.1}", started.elapsed().as_secs_f64()),
        ]);
    }
    if failed * 100 > total {
        bail!(
            "{failed} of {total} executions failed; first: {}",
            first_error.unwrap_or_default()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    s.tables.push((
        format!(
            "(c) RSS and data dir along {total} local executions of `echo` ({IN_FLIGHT} in \
             flight, {:.0} executions/s overall)",
            total as f64 / secs
        ),
        t,
    ));
    if failed > 0 {
        s.notes.push(format!(
            "{failed} of {total} executions failed; first: {}",
            first_error.unwrap_or_default()
        ));
    }
    let (_, last) = rss_at[rss_at.len() - 1];
    s.goals.push(Goal::new(
        &format!("RSS after {total} executions (issue 17)"),
        "≤ 80 MiB",
        format!("{} MiB (node alone, footprint (c))", mib(last)),
        last <= 80 * 1024 * 1024,
    ));
    s.notes.push(growth_note(&rss_at, ctx.quick));
    s.notes.push(format!(
        "The data dir grew by {:.1} KiB per execution. It holds the node key, the packages, \
         the node's log and the store (sled, log-structured: space of rewritten records is \
         reclaimed later), which keeps each execution with its inputs and outputs. This node \
         runs with `--execution-history {HISTORY}` (the default is 100,000): every 30 s it \
         removes the oldest finished executions beyond that. sled reuses the space of removed \
         records only as it rewrites its log segments, so the data dir keeps growing for a \
         while after the history is full; RSS levels off.",
        dir_after.saturating_sub(dir_before) as f64 / 1024.0 / total as f64
    ));
    Ok(())
}

/// Whether RSS still grows: the last quarter against the one before.
fn growth_note(rss_at: &[(usize, u64)], quick: bool) -> String {
    let [.., (n50, r50), (n75, r75), (n100, r100)] = rss_at else {
        return "Too few samples to judge RSS growth.".into();
    };
    let d3 = *r75 as f64 - *r50 as f64;
    let d4 = *r100 as f64 - *r75 as f64;
    let per_k = |d: f64, n: usize| d / 1024.0 / (n as f64 / 1000.0);
    let mib = |d: f64| d / (1024.0 * 1024.0);
    let verdict = if quick {
        "a quick run has too few executions to tell"
    } else if d4.abs() <= 1024.0 * 1024.0 || d4 <= 0.25 * d3.max(0.0) {
        "flat over the last quarter: no sign of unbounded growth"
    } else if d4 < d3 {
        "still growing over the last quarter, but slower than over the third"
    } else {
        "growing steadily with the number of executions: not bounded over this run"
    };
    format!(
        "RSS changed by {:+.1} MiB over the third quarter ({:+.1} KiB per 1000 executions) \
         and by {:+.1} MiB over the last ({:+.1} KiB per 1000): {verdict}.",
        mib(d3),
        per_k(d3, n75 - n50),
        mib(d4),
        per_k(d4, n100 - n75),
    )
}

/// The node of (b) and (c), keeping [`HISTORY`] executions.
async fn start_node() -> Result<NodeProcess> {
    cluster::start_node(&["--execution-history", &HISTORY.to_string()]).await
}
