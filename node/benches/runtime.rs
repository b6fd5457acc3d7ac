//! Start latency of an instance through `DockerRuntime` vs `docker run -d` of the same image.
//!
//! `cargo bench -p mesg-node --bench runtime` (MESG_BENCH_N=10 by default).
//!
//! Rows:
//! - `runtime.start (cold)`: `DockerRuntime::start` + status Running; the instance network is
//!   created in the call (what a first deploy pays).
//! - `runtime.start (network exists)`: the same after only the container was removed, so the
//!   network is reused (what a restart after a crash-and-remove or a redeploy pays).
//! - `docker run -d`: the CLI on the default bridge, same image, same env.
//! - `docker run -d --network`: the CLI on an existing user-defined network (the
//!   runtime's container setup without its network creation).
//!
//! Then a breakdown of the runtime's Docker calls measured with bollard alone.

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use mesg_node::runtime::{
    DockerRuntime, InstanceSpec, InstanceStatus, ResourceLimits, Runtime, RuntimeConfig,
};
use mesg_protocol::{EnvHash, InstanceHash};
use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        mesg_testkit::docker_cleanup(&self.0);
        let images = cli(&[
            "images",
            "-q",
            "--filter",
            &format!("label=mesg.node={}", self.0),
        ]);
        for id in images.split_whitespace() {
            cli(&["rmi", "-f", id]);
        }
    }
}

fn cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    min: f64,
    p50: f64,
    max: f64,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut v: Vec<f64> = samples.iter().copied().map(ms).collect();
    v.sort_by(f64::total_cmp);
    let p50 = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Stats {
        min: v[0],
        p50,
        max: v[v.len() - 1],
    }
}

fn row(name: &str, samples: &[Duration]) -> f64 {
    let s = stats(samples);
    println!(
        "| {name:<34} | {:>8.1} | {:>8.1} | {:>8.1} |",
        s.min, s.p50, s.max
    );
    s.p50
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("MESG_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let node = format!(
        "{:08x}bench",
        std::process::id() ^ (Instant::now().elapsed().subsec_nanos())
    );
    let _cleanup = Cleanup(node.clone());
    mesg_testkit::docker_cleanup(&node);
    let rt = DockerRuntime::new(RuntimeConfig {
        node_id: node.clone(),
        service_api_port: 1,
        self_container: None,
        default_limits: ResourceLimits::default(),
        max_restarts: 3,
        policy: mesg_node::runtime::ContainerPolicy::default(),
    });
    let info = rt.check().await.expect("docker");
    println!(
        "Docker {} (API {}), N = {n}",
        info.server_version, info.api_version
    );

    // The echo image, built once.
    let dir = mesg_testkit::service_dir("echo");
    let package = mesg_package::Package::from_dir(&dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
        .expect("package");
    let definition = package.definition().expect("definition");
    let service_hash = definition.service_hash(&package.hash());
    let image = format!("mesg-bench-{}-echo:1", &node[..8]);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    rt.build(package.to_tar_bytes().expect("tar"), &image, tx)
        .await
        .expect("build");

    let spec = |i: usize| {
        let env = [("TICK_INTERVAL_MS".to_string(), format!("{}", 100_000 + i))];
        InstanceSpec {
            instance_hash: InstanceHash::of(
                &service_hash,
                &EnvHash::of(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            ),
            service_hash,
            definition: definition.clone(),
            publisher: mesg_protocol::Keypair::from_secret_bytes([7; 32]).public(),
            image: image.clone(),
            env: env.into_iter().collect::<BTreeMap<_, _>>(),
            token: format!("bench-token-{i}"),
            limits: None,
        }
    };
    let start_running = |spec: InstanceSpec| {
        let rt = rt.clone();
        async move {
            let t = Instant::now();
            rt.start(&spec).await.expect("start");
            loop {
                let s = rt.status(&spec.instance_hash).await.expect("status");
                if s.status == InstanceStatus::Running {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(30), "not running: {s:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            t.elapsed()
        }
    };
    let env_args = [
        "-e",
        "MESG_ENDPOINT=http://127.0.0.1:1",
        "-e",
        "MESG_TOKEN=bench",
    ];
    let user_net = format!("mesg-bench-{}", &node[..8]);
    cli(&[
        "network",
        "create",
        "--label",
        &format!("mesg.node={node}"),
        &user_net,
    ]);
    let docker_run = |extra: &[&str]| {
        let name = format!("mesg-bench-{}-run", &node[..8]);
        let mut args = vec!["run", "-d", "--name", &name, "--label"];
        let label = format!("mesg.node={node}");
        args.push(&label);
        args.extend_from_slice(&env_args);
        args.extend_from_slice(extra);
        args.push(&image);
        let t = Instant::now();
        cli(&args);
        let d = t.elapsed();
        cli(&["rm", "-f", &name]);
        d
    };

    // Warm-up (page cache, first connections), not counted.
    let warm = spec(usize::MAX / 2);
    start_running(warm.clone()).await;
    rt.delete(&warm.instance_hash, false).await.expect("delete");
    docker_run(&[]);

    let mut cold = Vec::new();
    let mut warm_net = Vec::new();
    let mut run = Vec::new();
    let mut run_net = Vec::new();
    for i in 0..n {
        let s = spec(i);
        cold.push(start_running(s.clone()).await);
        // Remove the container only: the next start reuses the network.
        cli(&["rm", "-f", &rt.container_name(&s.instance_hash, "service")]);
        warm_net.push(start_running(s.clone()).await);
        rt.delete(&s.instance_hash, false).await.expect("delete");
        run.push(docker_run(&[]));
        run_net.push(docker_run(&["--network", &user_net]));
    }

    println!();
    println!(
        "| {:<34} | {:>8} | {:>8} | {:>8} |",
        "start until running (ms)", "min", "p50", "max"
    );
    println!("|{:-<36}|{:-<10}|{:-<10}|{:-<10}|", "", "", "", "");
    let a = row("(a) runtime.start, cold", &cold);
    let a_warm = row("(a') runtime.start, network exists", &warm_net);
    let b = row("(b) docker run -d", &run);
    let b_net = row("(b') docker run -d --network", &run_net);
    println!();
    println!("ratio p50(a)/p50(b)   = {:.2}  (goal <= 1.2)", a / b);
    println!("ratio p50(a')/p50(b)  = {:.2}", a_warm / b);
    println!("ratio p50(a')/p50(b') = {:.2}", a_warm / b_net);

    // Where the runtime's time goes: its Docker calls one by one, with bollard.
    let docker = Docker::connect_with_local_defaults()
        .expect("docker")
        .negotiate_version()
        .await
        .expect("version");
    let mut net_create = Vec::new();
    let mut create = Vec::new();
    let mut start = Vec::new();
    let mut rm = Vec::new();
    let mut net_rm = Vec::new();
    for i in 0..n {
        let net = format!("mesg-bench-{}-net{i}", &node[..8]);
        let labels = HashMap::from([("mesg.node".to_string(), node.clone())]);
        let t = Instant::now();
        docker
            .create_network(NetworkCreateRequest {
                name: net.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .expect("network");
        docker.inspect_network(&net, None).await.expect("inspect");
        net_create.push(t.elapsed());
        let name = format!("{net}-c");
        let t = Instant::now();
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                ContainerCreateBody {
                    image: Some(image.clone()),
                    env: Some(vec![
                        "MESG_ENDPOINT=http://127.0.0.1:1".into(),
                        "MESG_TOKEN=bench".into(),
                    ]),
                    labels: Some(labels),
                    host_config: Some(HostConfig {
                        init: Some(true),
                        network_mode: Some(net.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        create.push(t.elapsed());
        let t = Instant::now();
        docker.start_container(&name, None).await.expect("start");
        start.push(t.elapsed());
        let t = Instant::now();
        docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
            .expect("rm");
        rm.push(t.elapsed());
        let t = Instant::now();
        docker.remove_network(&net).await.expect("network rm");
        net_rm.push(t.elapsed());
    }
    println!();
    println!(
        "| {:<34} | {:>8} | {:>8} | {:>8} |",
        "Docker call (ms, bollard)", "min", "p50", "max"
    );
    println!("|{:-<36}|{:-<10}|{:-<10}|{:-<10}|", "", "", "", "");
    row("network create + inspect", &net_create);
    row("container create", &create);
    row("container start (user network)", &start);
    row("container remove (force)", &rm);
    row("network remove", &net_rm);
}
