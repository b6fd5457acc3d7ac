//! Deploy + start of echo against `docker run -d`.
//!
//! On one node: the deploy of the echo directory (first on a fresh node, then repeated),
//! and the start of an instance until its container runs and its task stream is connected
//! to the node; in the same loop, `docker run -d` of the very image the node built, on the
//! default bridge and on a network created for it (the node creates one network per
//! instance).

use crate::Ctx;
use crate::cluster::{self, Api};
use crate::report::{Goal, Section, Summary, Table, ms};
use anyhow::{Context, Result, bail};
use mesg_testkit::NodeProcess;
use serde_json::json;
use std::time::{Duration, Instant};

/// Bound of any single Docker CLI call or API wait of this section.
const LIMIT: Duration = Duration::from_secs(120);

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let n = ctx.n(15, 2);
    let first_n = ctx.n(5, 1);

    // (a) First deploys: each on a fresh node that has never seen the package. The first
    // node stays for the rest of the section.
    let mut first = Vec::new();
    let mut kept: Option<(NodeProcess, String)> = None;
    for i in 0..first_n {
        let node = cluster::start_node(&[]).await?;
        let api = Api::new(&node);
        let t = Instant::now();
        let hash = tokio::time::timeout(LIMIT, api.deploy(&ctx.echo_dir))
            .await
            .context("first deploy: no answer within 120 s")?
            .with_context(|| format!("first deploy of {}", ctx.echo_dir.display()))?;
        first.push(t.elapsed());
        if i == 0 {
            kept = Some((node, hash));
        } else {
            cluster::drop_nodes(vec![node]).await;
        }
    }
    let (node, hash) = kept.context("no node was started")?;
    let result = measure(ctx, &node, &hash, n, first).await;
    cluster::drop_nodes(vec![node]).await;
    result
}

async fn measure(
    ctx: &Ctx,
    node: &NodeProcess,
    hash: &str,
    n: usize,
    first: Vec<Duration>,
) -> Result<Section> {
    let api = Api::new(node);

    // The image the node built and tags per node and service (node/src/engine/mod.rs
    // `image_tag`: the first 8 characters of the node's key, then the service hash).
    let node8: String = node.public_key.chars().take(8).collect();
    let image = format!("mesg-service:{node8}-{hash}");
    let entrypoint = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        &image,
    ])
    .await
    .with_context(|| format!("the node did not tag its build {image}"))?;

    // Baseline containers carry the node's label, so the node's cleanup removes any
    // leftover if this section fails half-way.
    let label = format!("mesg.node={}", node.public_key);
    let tag = format!("mesg-bench-deploy-{}", std::process::id());
    // The same environment the node gives the container, minus the hashes.
    let env = [
        "-e",
        "TICK_INTERVAL_MS=0",
        "-e",
        "MESG_ENDPOINT=http://127.0.0.1:1",
        "-e",
        "MESG_TOKEN=bench",
    ];
    let docker_run = |i: usize, network: bool| {
        let image = image.clone();
        let label = label.clone();
        let name = format!("{tag}-{i}");
        let net = format!("{tag}-net-{i}");
        async move {
            let mut args: Vec<&str> = vec!["run", "-d", "--name", &name, "--label", &label];
            args.extend_from_slice(&env);
            if network {
                args.extend_from_slice(&["--network", &net]);
            }
            args.push(&image);
            let t = Instant::now();
            if network {
                docker(&["network", "create", "--label", &label, &net]).await?;
            }
            let run = docker(&args).await;
            let d = t.elapsed();
            let rm = docker(&["rm", "-f", "-v", &name]).await;
            if network {
                docker(&["network", "rm", &net]).await?;
            }
            run?;
            rm?;
            Ok::<_, anyhow::Error>(d)
        }
    };

    let mut repeat = Vec::new();
    let mut posted = Vec::new();
    let mut started = Vec::new();
    let mut run = Vec::new();
    let mut run_net = Vec::new();
    // Round 0 warms up (page cache, first connections) and is not counted.
    for i in 0..=n {
        if i > 0 {
            let t = Instant::now();
            let again = tokio::time::timeout(LIMIT, api.deploy(&ctx.echo_dir))
                .await
                .context("repeat deploy: no answer within 120 s")?
                .context("repeat deploy")?;
            repeat.push(t.elapsed());
            if again != hash {
                bail!("the repeat deploy gave service {again}, the first {hash}");
            }
        }
        let (p, s) = start_once(&api, hash).await?;
        let r = docker_run(i, false).await.context("docker run -d")?;
        let rn = docker_run(i, true)
            .await
            .context("docker network create + docker run -d --network")?;
        if i > 0 {
            posted.push(p);
            started.push(s);
            run.push(r);
            run_net.push(rn);
        }
    }

    let base = Summary::of(&run).p50;
    let mut t = Table::new(&[
        "step",
        "n",
        "min ms",
        "p50 ms",
        "p99 ms",
        "p50 ÷ docker run -d",
    ]);
    let mut row = |what: &str, samples: &[Duration], ratio: bool| {
        let s = Summary::of(samples);
        t.row(vec![
            what.into(),
            s.n.to_string(),
            ms(s.min),
            ms(s.p50),
            ms(s.p99),
            if ratio {
                format!("{:.2}×", s.p50 / base)
            } else {
                "-".into()
            },
        ]);
        s.p50
    };
    let start_p50 = row(
        "node start (instance): POST /v1/instances until connected",
        &started,
        true,
    );
    row(
        "↳ of which POST /v1/instances returned (running)",
        &posted,
        true,
    );
    row("docker run -d", &run, true);
    let net_p50 = row(
        "docker network create + docker run -d --network",
        &run_net,
        true,
    );
    row("deploy (first, fresh node)", &first, false);
    row("deploy (repeat, same content)", &repeat, false);

    let ratio = start_p50 / base;
    let mut s = Section::new(
        "Deploy + start of echo against docker run -d",
        format!(
            "One node (static release build) on loopback. Deploy: `POST /v1/services` of the \
             echo directory until the `done` line; the first deploy ran on {} fresh node(s), \
             the repeats on one node that already holds the service. Start: `POST \
             /v1/instances` then polling `GET /v1/instances/{{id}}` until the instance runs \
             and its container's task stream is connected; each sample is followed by \
             `POST /v1/instances/{{id}}/stop` and `DELETE /v1/instances/{{id}}` (not timed), so \
             every start creates the network and container afresh. Baselines in the same \
             loop: the `docker` CLI running the image the node built (`{image}`, entrypoint \
             `{entrypoint}`) with the same environment, timed until `docker run -d` returns, \
             then `docker rm -f` (not timed); and the same after a `docker network create` \
             (timed with it) onto that network. One warm-up round is not counted.",
            first.len()
        ),
    );
    s.tables.push((String::new(), t));
    s.goals.push(Goal::new(
        "deploy+start vs docker run -d",
        "≤ 1.2×",
        format!(
            "{ratio:.2}× (p50 start {} ms ÷ p50 docker run -d {} ms)",
            ms(start_p50),
            ms(base)
        ),
        ratio <= 1.2,
    ));
    s.notes.push(
        "The node's start also creates a network per instance, starts the container with \
         `--init`, a restart policy, resource limits and `no-new-privileges`, and waits until \
         the service inside has connected back to the node: the `docker run -d` baseline \
         only starts a process, the second baseline adds the network."
            .into(),
    );
    s.notes.push(format!(
        "Against the baseline that also creates a network, the node's start is {:.2}× \
         (p50 {} ms ÷ {} ms).",
        start_p50 / net_p50,
        ms(start_p50),
        ms(net_p50)
    ));
    s.notes.push(
        "`docker run -d` includes the start of the `docker` CLI process (a Go binary); the \
         node talks to the Docker Engine API directly."
            .into(),
    );
    s.notes.push(
        "A deploy builds the image with `docker build`: the echo Dockerfile (`FROM scratch`, \
         one static binary) plus a `LABEL mesg.node=<node key>` step the node adds. Docker's \
         build cache holds the binary's layer whenever it was built before on this machine, \
         but the label layer is new on each node: Docker runs and commits an intermediate \
         container for it, most of a first deploy's time. A repeat deploy of the same \
         content on the same node is an all-cache build and records the same service hash."
            .into(),
    );
    Ok(s)
}

/// One start of an echo instance; returns (POST answered, connected), then stops and
/// deletes the instance.
async fn start_once(api: &Api, service: &str) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    let inst = api
        .post("/v1/instances", &json!({"service": service, "env": {}}))
        .await
        .context("starting an instance")?;
    let posted = t.elapsed();
    let id = inst["hash"]
        .as_str()
        .context("instance without a hash")?
        .to_string();
    let deadline = t + LIMIT;
    loop {
        let v = api.get(&format!("/v1/instances/{id}")).await?;
        if v["connected"] == true && v["state"]["status"] == "running" {
            break;
        }
        if Instant::now() > deadline {
            bail!("instance {id} did not run and connect within {LIMIT:?}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let connected = t.elapsed();
    api.post(
        &format!("/v1/instances/{id}/stop"),
        &json!({"grace_ms": 5000}),
    )
    .await
    .context("stopping the instance")?;
    api.delete(&format!("/v1/instances/{id}"))
        .await
        .context("deleting the instance")?;
    Ok((posted, connected))
}

/// The `docker` CLI; its trimmed stdout. Bounded by [`LIMIT`].
async fn docker(args: &[&str]) -> Result<String> {
    let out = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new("docker")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("docker {}: no answer within {LIMIT:?}", args.join(" ")))?
    .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
