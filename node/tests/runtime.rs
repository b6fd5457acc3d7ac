//! The Docker runtime against the real local engine (no mocks): build, start with the
//! injected env and hardening, data across restarts and redeploys, crash reporting and
//! events, refusals that leave nothing behind, dependencies, reconcile, isolation between
//! nodes, logs, and an unreachable engine.
//!
//! Every test uses its own node id and removes everything labelled with it before and
//! after it runs (also when it panics), so tests run in parallel and leave nothing.

use futures::StreamExt;
use mesg_node::runtime::{
    DockerRuntime, InstanceSpec, InstanceState, InstanceStatus, PolicyError, ResourceLimits,
    Runtime, RuntimeConfig, RuntimeError, RuntimeEvent,
};
use mesg_protocol::{EnvHash, InstanceHash, ServiceDefinition, ServiceHash};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MEMORY: i64 = 64 * 1024 * 1024;
const PIDS: i64 = 64;
const NANO_CPUS: i64 = 500_000_000;
/// No node runs in these tests: services just retry connecting to this port.
const FAKE_PORT: u16 = 1;

/// Removes every Docker object (and image) of its node id when dropped.
struct Guard {
    node: String,
}

impl Guard {
    fn new(prefix: &str) -> Guard {
        let node = node_id(prefix);
        mesg_testkit::docker_cleanup(&node);
        Guard { node }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        mesg_testkit::docker_cleanup(&self.node);
        let images = lines(&docker(&[
            "images",
            "-q",
            "--filter",
            &format!("label=mesg.node={}", self.node),
        ]));
        if !images.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(images.iter().map(String::as_str));
            docker(&args);
        }
    }
}

/// A node id whose first 8 characters (used in object names) are unique too.
fn node_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let unique = mesg_testkit::unique(prefix);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(unique.as_bytes());
    format!("{:016x}{prefix}", h.finish())
}

fn config(node: &str, max_restarts: u32) -> RuntimeConfig {
    RuntimeConfig {
        node_id: node.to_string(),
        service_api_port: FAKE_PORT,
        self_container: None,
        default_limits: ResourceLimits {
            memory: Some(MEMORY),
            nano_cpus: Some(NANO_CPUS),
            pids: Some(PIDS),
        },
        max_restarts,
        policy: mesg_node::runtime::ContainerPolicy::default(),
    }
}

fn docker_out(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

fn docker(args: &[&str]) -> String {
    String::from_utf8_lossy(&docker_out(args).stdout)
        .trim()
        .to_string()
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn inspect(object: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, object])
}

fn inspect_json(object: &str, format: &str) -> serde_json::Value {
    let text = inspect(object, &format!("{{{{json {format}}}}}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{object} {format}: {e}: {text}"))
}

/// Names of this node's containers, networks and volumes.
fn objects(node: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let f = format!("label=mesg.node={node}");
    (
        lines(&docker(&[
            "ps",
            "-a",
            "--filter",
            &f,
            "--format",
            "{{.Names}}",
        ])),
        lines(&docker(&[
            "network",
            "ls",
            "--filter",
            &f,
            "--format",
            "{{.Name}}",
        ])),
        lines(&docker(&[
            "volume",
            "ls",
            "--filter",
            &f,
            "--format",
            "{{.Name}}",
        ])),
    )
}

fn assert_nothing(node: &str) {
    let (c, n, v) = objects(node);
    assert!(
        c.is_empty() && n.is_empty() && v.is_empty(),
        "left behind: containers {c:?}, networks {n:?}, volumes {v:?}"
    );
}

struct Service {
    definition: ServiceDefinition,
    service_hash: ServiceHash,
    tar: Vec<u8>,
}

fn load(dir: &Path) -> Service {
    let package = mesg_package::Package::from_dir(dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
        .expect("package");
    let definition = package.definition().expect("definition");
    Service {
        service_hash: definition.service_hash(&package.hash()),
        tar: package.to_tar_bytes().expect("tar"),
        definition,
    }
}

/// A copy of an example service's directory with `main` added to its `configuration`
/// and `extra` appended to its mesg.yml.
fn variant(name: &str, main: &str, extra: &str) -> tempfile::TempDir {
    let src = mesg_testkit::service_dir(name);
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&src).expect("service dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    let yml = dir.path().join("mesg.yml");
    let text = std::fs::read_to_string(&yml).expect("mesg.yml");
    assert!(text.contains("\nconfiguration:\n"));
    let mut text = text.replace("\nconfiguration:\n", &format!("\nconfiguration:\n{main}"));
    text.push_str(extra);
    std::fs::write(&yml, text).expect("write mesg.yml");
    dir
}

/// Build `svc` as `mesg-test-<node8>-<name>:1`, returning the tag and the progress lines.
async fn build(rt: &DockerRuntime, node: &str, name: &str, svc: &Service) -> (String, Vec<String>) {
    let tag = format!("mesg-test-{}-{name}:1", &node[..8]);
    let (tx, mut rx) = mpsc::channel(16);
    let collect = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(line) = rx.recv().await {
            got.push(line);
        }
        got
    });
    rt.build(svc.tar.clone(), &tag, tx).await.expect("build");
    (tag, collect.await.expect("collector"))
}

/// A dependency image: the echo binary with the variables it needs baked in (a
/// definition may not set MESG_* variables), labelled for cleanup.
fn db_image(node: &str, base: &str) -> String {
    use std::io::Write;
    let tag = format!("mesg-test-{}-db:1", &node[..8]);
    let mut child = Command::new("docker")
        .args([
            "build",
            "-q",
            "-t",
            &tag,
            "--label",
            &format!("mesg.node={node}"),
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker build");
    let dockerfile = format!("FROM {base}\nENV MESG_ENDPOINT=http://127.0.0.1:1 MESG_TOKEN=db\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dockerfile.as_bytes())
        .expect("write Dockerfile");
    let out = child.wait_with_output().expect("docker build");
    assert!(out.status.success(), "{out:?}");
    tag
}

fn spec(svc: &Service, image: &str, env: &[(&str, &str)]) -> InstanceSpec {
    let env_hash = EnvHash::of(env.iter().copied());
    InstanceSpec {
        instance_hash: InstanceHash::of(&svc.service_hash, &env_hash),
        service_hash: svc.service_hash,
        definition: svc.definition.clone(),
        publisher: mesg_protocol::Keypair::from_secret_bytes([7; 32]).public(),
        image: image.to_string(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        token: format!("token-{}", mesg_testkit::unique("t")),
        limits: None,
    }
}

async fn wait_status(
    rt: &DockerRuntime,
    instance: &InstanceHash,
    want: InstanceStatus,
    within: Duration,
) -> InstanceState {
    let deadline = Instant::now() + within;
    loop {
        let state = rt.status(instance).await.expect("status");
        if state.status == want {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "status stayed {:?} ({:?}), wanted {want:?}: {:?}",
            state.status,
            state.reason,
            state.containers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn exec_env(container: &str) -> HashMap<String, String> {
    docker(&["exec", container, "/echo", "env"])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_streams_progress_and_labels_the_image() {
    let g = Guard::new("build");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (tag, progress) = build(&rt, &g.node, "echo", &svc).await;
    assert!(
        progress.iter().any(|l| l.starts_with("Step 1/")),
        "progress: {progress:?}"
    );
    assert!(rt.image_exists(&tag).await.unwrap());
    assert!(!rt.image_exists("mesg-does-not-exist:1").await.unwrap());
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"mesg.node\"}}",
            &tag
        ]),
        g.node
    );

    // A failing build is a Build error carrying Docker's message.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("mesg.yml"), "name: bad\n").unwrap();
    std::fs::write(
        bad.path().join("Dockerfile"),
        "FROM scratch\nCOPY no-such-file /x\n",
    )
    .unwrap();
    let bad = load(bad.path());
    let (tx, _rx) = mpsc::channel(16);
    match rt.build(bad.tar, "mesg-test-bad:1", tx).await {
        Err(RuntimeError::Build(msg)) => assert!(msg.contains("no-such-file"), "{msg}"),
        other => panic!("expected a build error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_injects_env_and_hardens_the_container() {
    let g = Guard::new("start");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &svc).await;
    let spec = spec(&svc, &image, &[]);
    rt.start(&spec).await.expect("start");
    let state = wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(state.containers.len(), 1);
    let name = rt.container_name(&spec.instance_hash, "service");
    assert_eq!(state.containers[0].name, name);
    let net = rt.network_name(&spec.instance_hash);

    // The env the service sees.
    let gateway = inspect(&net, "{{(index .IPAM.Config 0).Gateway}}");
    assert!(!gateway.is_empty());
    let env = exec_env(&name);
    assert_eq!(
        env["MESG_ENDPOINT"],
        format!("http://{gateway}:{FAKE_PORT}")
    );
    assert_eq!(env["MESG_TOKEN"], spec.token);
    assert_eq!(env["MESG_SERVICE_HASH"], svc.service_hash.to_string());
    assert_eq!(env["MESG_INSTANCE_HASH"], spec.instance_hash.to_string());
    assert_eq!(env["TICK_INTERVAL_MS"], "0", "definition default");

    // Labels, alias and hardening.
    let labels = inspect_json(&name, ".Config.Labels");
    assert_eq!(labels["mesg.node"], g.node.as_str());
    assert_eq!(
        labels["mesg.service"],
        svc.service_hash.to_string().as_str()
    );
    assert_eq!(
        labels["mesg.instance"],
        spec.instance_hash.to_string().as_str()
    );
    assert_eq!(labels["mesg.key"], "service");
    assert_eq!(labels["mesg.sid"], "echo");
    let aliases = inspect_json(
        &name,
        &format!("(index .NetworkSettings.Networks \"{net}\").Aliases"),
    );
    assert!(
        aliases.as_array().unwrap().iter().any(|a| a == "service"),
        "aliases: {aliases}"
    );
    let host = inspect_json(&name, ".HostConfig");
    assert_eq!(host["Init"], true);
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["Memory"], MEMORY);
    assert_eq!(host["PidsLimit"], PIDS);
    assert_eq!(host["NanoCpus"], NANO_CPUS);
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert!(
        host["CapAdd"].is_null(),
        "no capability added: {}",
        host["CapAdd"]
    );
    assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(host["RestartPolicy"]["MaximumRetryCount"], 3);
    let net_labels = inspect_json(&net, ".Labels");
    assert_eq!(
        net_labels["mesg.instance"],
        spec.instance_hash.to_string().as_str()
    );

    // Idempotent: a second start keeps the running container.
    let id = inspect(&name, "{{.Id}}");
    let started_at = inspect(&name, "{{.State.StartedAt}}");
    rt.start(&spec).await.expect("second start");
    assert_eq!(inspect(&name, "{{.Id}}"), id);
    assert_eq!(inspect(&name, "{{.State.StartedAt}}"), started_at);

    // Stop is quick (init forwards SIGTERM) and keeps the container.
    let t = Instant::now();
    rt.stop(&spec.instance_hash, Duration::from_secs(10))
        .await
        .expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
    let state = rt.status(&spec.instance_hash).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Stopped, "{state:?}");
    assert_eq!(inspect(&name, "{{.Id}}"), id);

    rt.delete(&spec.instance_hash, false).await.expect("delete");
    assert_eq!(
        rt.status(&spec.instance_hash).await.unwrap().status,
        InstanceStatus::Missing
    );
    assert_nothing(&g.node);
    // Deleting what is gone is fine.
    rt.delete(&spec.instance_hash, false)
        .await
        .expect("second delete");
    rt.stop(&spec.instance_hash, Duration::from_secs(1))
        .await
        .expect("stop missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_survives_restarts_and_redeploys() {
    let g = Guard::new("kv");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let svc = load(&mesg_testkit::service_dir("kv"));
    let (image, _) = build(&rt, &g.node, "kv", &svc).await;
    let spec = spec(&svc, &image, &[]);
    let name = rt.container_name(&spec.instance_hash, "service");
    let kv_get = || docker(&["exec", &name, "/kv", "get", "greeting"]);

    rt.start(&spec).await.expect("start");
    wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    let set = docker_out(&["exec", &name, "/kv", "set", "greeting", "\"hello\""]);
    assert!(set.status.success(), "{set:?}");
    assert_eq!(kv_get(), "\"hello\"");
    let volume = rt.volume_name(&spec, "service", "/data");
    let (_, _, volumes) = objects(&g.node);
    assert_eq!(volumes, vec![volume.clone()]);

    // stop + start
    rt.stop(&spec.instance_hash, Duration::from_secs(5))
        .await
        .unwrap();
    wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Stopped,
        Duration::from_secs(5),
    )
    .await;
    rt.start(&spec).await.expect("restart");
    wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(kv_get(), "\"hello\"");

    // delete keeping data + start again (a redeploy)
    rt.delete(&spec.instance_hash, true).await.unwrap();
    let (containers, networks, volumes) = objects(&g.node);
    assert!(
        containers.is_empty() && networks.is_empty(),
        "{containers:?} {networks:?}"
    );
    assert_eq!(volumes, vec![volume.clone()]);
    rt.start(&spec).await.expect("redeploy");
    wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(kv_get(), "\"hello\"");

    // delete with data
    rt.delete(&spec.instance_hash, false).await.unwrap();
    assert_nothing(&g.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_ends_crashed_with_died_events() {
    let g = Guard::new("faulty");
    let rt = DockerRuntime::new(config(&g.node, 2));
    let mut events = rt.subscribe();
    let svc = load(&mesg_testkit::service_dir("faulty"));
    let (image, _) = build(&rt, &g.node, "faulty", &svc).await;
    let spec = spec(&svc, &image, &[("CRASH_ON_START", "1")]);
    rt.start(&spec).await.expect("start");
    let state = wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Crashed,
        Duration::from_secs(30),
    )
    .await;
    let reason = state.reason.unwrap_or_default();
    assert!(reason.contains("code 3"), "{reason}");
    assert!(reason.contains("after 2 restarts"), "{reason}");
    assert_eq!(state.containers[0].restart_count, 2);

    let mut started = 0;
    let mut died = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while died < 3 {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("saw {started} starts and {died} deaths only"))
            .expect("event channel");
        match ev {
            RuntimeEvent::Started { instance, key } => {
                assert_eq!((instance, key.as_str()), (spec.instance_hash, "service"));
                started += 1;
            }
            RuntimeEvent::Died {
                instance,
                key,
                exit_code,
            } => {
                assert_eq!((instance, key.as_str()), (spec.instance_hash, "service"));
                assert_eq!(exit_code, Some(3));
                died += 1;
            }
        }
    }
    assert_eq!(started, 3, "one start and two restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_env_is_refused_and_creates_nothing() {
    let g = Guard::new("env");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &svc).await;
    let spec = spec(
        &svc,
        &image,
        &[("TICK_INTERVAL_MS", "5"), ("NOT_DECLARED", "1")],
    );
    match rt.start(&spec).await {
        Err(RuntimeError::UndeclaredEnv { key, declared }) => {
            assert_eq!(key, "NOT_DECLARED");
            assert_eq!(declared, vec!["TICK_INTERVAL_MS".to_string()]);
        }
        other => panic!("expected UndeclaredEnv, got {other:?}"),
    }
    assert_nothing(&g.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dependency_image_is_refused_and_leaves_nothing() {
    let g = Guard::new("missing");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let dir = variant(
        "echo",
        "",
        "dependencies:\n  db:\n    image: mesg-does-not-exist:1\n    volumes: [/data]\n",
    );
    let svc = load(dir.path());
    let (image, _) = build(&rt, &g.node, "echo", &svc).await;
    let spec = spec(&svc, &image, &[]);
    let err = rt.start(&spec).await.expect_err("must fail");
    match &err {
        RuntimeError::MissingImage { key, image } => {
            assert_eq!(key, "db");
            assert_eq!(image, "mesg-does-not-exist:1");
        }
        other => panic!("expected MissingImage, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("`db`") && text.contains("mesg-does-not-exist:1"),
        "{text}"
    );
    assert_nothing(&g.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_removes_what_it_created() {
    let g = Guard::new("rollback");
    let rt = DockerRuntime::new(config(&g.node, 3));
    // A host port someone else holds: the main container cannot start, after the
    // network, the volume and the dependency were created and the dependency started.
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let base = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &base).await;
    let db_tag = db_image(&g.node, &image);
    let dir = variant(
        "echo",
        &format!("  ports: [\"{port}:8080\"]\n"),
        &format!("dependencies:\n  db:\n    image: {db_tag}\n    volumes: [/data]\n"),
    );
    let svc = load(dir.path());
    let spec = spec(&svc, &image, &[]);
    let err = rt.start(&spec).await.expect_err("the port is taken");
    assert!(
        matches!(&err, RuntimeError::Docker(m) if m.contains("start container") && m.contains(&port.to_string())),
        "{err}"
    );
    assert_nothing(&g.node);
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_starts_first_on_the_instance_network() {
    let g = Guard::new("deps");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let base = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &base).await;
    let db_tag = db_image(&g.node, &image);
    let dir = variant(
        "echo",
        "  volumesFrom: [db]\n",
        &format!(
            "dependencies:\n  db:\n    image: {db_tag}\n    volumes: [/data]\n    command: /echo\n    args: [serve]\n    env: [TICK_INTERVAL_MS=7]\n"
        ),
    );
    let svc = load(dir.path());
    let spec = spec(&svc, &image, &[]);
    rt.start(&spec).await.expect("start");
    let state = wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    let keys: Vec<&str> = state.containers.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["service", "db"]);

    let main = rt.container_name(&spec.instance_hash, "service");
    let db = rt.container_name(&spec.instance_hash, "db");
    let net = rt.network_name(&spec.instance_hash);
    let started = |c: &str| inspect(c, "{{.State.StartedAt}}");
    assert!(
        started(&db) < started(&main),
        "db {} main {}",
        started(&db),
        started(&main)
    );
    for (c, alias) in [(&main, "service"), (&db, "db")] {
        let aliases = inspect_json(
            c,
            &format!("(index .NetworkSettings.Networks \"{net}\").Aliases"),
        );
        assert!(
            aliases.as_array().unwrap().iter().any(|a| a == alias),
            "{c}: {aliases}"
        );
    }
    // Dependencies get their own env only; command/args replace entrypoint/cmd.
    let db_env = exec_env(&db);
    assert_eq!(db_env["TICK_INTERVAL_MS"], "7");
    assert_eq!(
        db_env["MESG_TOKEN"], "db",
        "from its image, not the instance's"
    );
    assert!(!db_env.contains_key("MESG_INSTANCE_HASH"));
    assert_eq!(
        inspect_json(&db, ".Config.Entrypoint"),
        serde_json::json!(["/echo"])
    );
    assert_eq!(
        inspect_json(&db, ".Config.Cmd"),
        serde_json::json!(["serve"])
    );
    assert_eq!(inspect_json(&db, ".Config.Labels")["mesg.key"], "db");
    // volumesFrom: the main container mounts db's volume at the same path.
    let volume = rt.volume_name(&spec, "db", "/data");
    let mounts = inspect_json(&main, ".Mounts");
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Name"] == volume.as_str() && m["Destination"] == "/data"),
        "{mounts}"
    );
    // The main container reaches db by its alias: both on the instance network.
    let members = inspect_json(&net, ".Containers");
    let names: Vec<&str> = members
        .as_object()
        .unwrap()
        .values()
        .filter_map(|c| c["Name"].as_str())
        .collect();
    assert!(
        names.contains(&main.as_str()) && names.contains(&db.as_str()),
        "{names:?}"
    );

    rt.delete(&spec.instance_hash, false).await.unwrap();
    assert_nothing(&g.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_removes_orphans_and_restarts_stopped() {
    let g = Guard::new("reconcile");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &svc).await;
    let a = spec(&svc, &image, &[]);
    let b = spec(&svc, &image, &[("TICK_INTERVAL_MS", "1000")]);
    assert_ne!(a.instance_hash, b.instance_hash);
    rt.start(&a).await.unwrap();
    rt.start(&b).await.unwrap();
    wait_status(
        &rt,
        &b.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;

    let report = rt
        .reconcile(std::slice::from_ref(&a))
        .await
        .expect("reconcile");
    assert_eq!(report.adopted, vec![a.instance_hash]);
    assert!(
        report.restarted.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    let b_container = rt.container_name(&b.instance_hash, "service");
    let b_network = rt.network_name(&b.instance_hash);
    let mut removed = report.removed.clone();
    removed.sort();
    let mut expected = vec![b_container.clone(), b_network.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    let (containers, networks, _) = objects(&g.node);
    assert_eq!(
        containers,
        vec![rt.container_name(&a.instance_hash, "service")]
    );
    assert_eq!(networks, vec![rt.network_name(&a.instance_hash)]);
    assert_eq!(
        rt.status(&b.instance_hash).await.unwrap().status,
        InstanceStatus::Missing
    );

    // A desired instance stopped behind the node's back is started again.
    let a_container = rt.container_name(&a.instance_hash, "service");
    assert!(docker_out(&["stop", &a_container]).status.success());
    assert_eq!(
        rt.status(&a.instance_hash).await.unwrap().status,
        InstanceStatus::Stopped
    );
    let report = rt
        .reconcile(std::slice::from_ref(&a))
        .await
        .expect("reconcile");
    assert_eq!(report.restarted, vec![a.instance_hash]);
    assert!(
        report.adopted.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    wait_status(
        &rt,
        &a.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_engine_do_not_touch_each_other() {
    let g1 = Guard::new("iso1");
    let g2 = Guard::new("iso2");
    let rt1 = DockerRuntime::new(config(&g1.node, 3));
    let rt2 = DockerRuntime::new(config(&g2.node, 3));
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt1, &g1.node, "echo", &svc).await;
    let x = spec(&svc, &image, &[]);
    // The same instance on both nodes: distinct objects.
    rt1.start(&x).await.unwrap();
    rt2.start(&x).await.unwrap();
    wait_status(
        &rt2,
        &x.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    assert_ne!(
        rt1.container_name(&x.instance_hash, "service"),
        rt2.container_name(&x.instance_hash, "service")
    );

    // Node 1 forgets everything: node 2's instance is untouched.
    let report = rt1.reconcile(&[]).await.unwrap();
    assert_eq!(
        report.removed.len(),
        2,
        "node 1's container and network: {report:?}"
    );
    assert_eq!(
        rt1.status(&x.instance_hash).await.unwrap().status,
        InstanceStatus::Missing
    );
    assert_eq!(
        rt2.status(&x.instance_hash).await.unwrap().status,
        InstanceStatus::Running
    );
    rt1.delete(&x.instance_hash, false).await.unwrap();
    rt1.stop(&x.instance_hash, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        rt2.status(&x.instance_hash).await.unwrap().status,
        InstanceStatus::Running
    );
    let (containers, _, _) = objects(&g2.node);
    assert_eq!(containers.len(), 1);
    assert_nothing(&g1.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_and_follow() {
    let g = Guard::new("logs");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &svc).await;
    let spec = spec(&svc, &image, &[]);

    let mut missing = rt.logs(&spec.instance_hash, false, None);
    assert!(matches!(
        missing.next().await,
        Some(Err(RuntimeError::UnknownInstance(i))) if i == spec.instance_hash
    ));

    rt.start(&spec).await.unwrap();
    let mut logs = rt.logs(&spec.instance_hash, true, Some(50));
    let mut ready = false;
    let mut retry_warning = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !(ready && retry_warning) {
        let line = tokio::time::timeout_at(deadline, logs.next())
            .await
            .unwrap_or_else(|_| panic!("ready {ready}, retry warning {retry_warning}"))
            .expect("the stream follows")
            .expect("a log line");
        assert_eq!(line.key, "service");
        if line.text.contains("echo: ready") {
            assert_eq!(line.stream, "stdout");
            ready = true;
        }
        if line.text.contains("retrying") {
            retry_warning = true;
        }
    }
    drop(logs);
    // Without follow the stream ends.
    let all: Vec<_> = rt.logs(&spec.instance_hash, false, Some(1)).collect().await;
    assert_eq!(all.len(), 1, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_engine_is_unavailable_then_reconnects() {
    let g = Guard::new("down");
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("docker.sock");
    let rt =
        DockerRuntime::with_docker_host(config(&g.node, 3), format!("unix://{}", socket.display()));
    let _events = rt.subscribe();
    let svc = load(&mesg_testkit::service_dir("echo"));
    let spec = spec(&svc, "mesg-test-never:1", &[]);

    let unavailable = |r: Result<(), RuntimeError>, what: &str| match r {
        Err(e @ RuntimeError::Unavailable(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("cannot reach the Docker Engine"),
                "{what}: {text}"
            );
            assert!(
                text.contains(&socket.display().to_string()),
                "{what}: {text}"
            );
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    };
    unavailable(rt.check().await.map(|_| ()), "check");
    unavailable(rt.start(&spec).await, "start");
    unavailable(rt.status(&spec.instance_hash).await.map(|_| ()), "status");
    unavailable(
        rt.stop(&spec.instance_hash, Duration::from_secs(1)).await,
        "stop",
    );
    unavailable(rt.delete(&spec.instance_hash, true).await, "delete");
    unavailable(rt.reconcile(&[]).await.map(|_| ()), "reconcile");
    unavailable(rt.image_exists("x").await.map(|_| ()), "image_exists");
    let (tx, _rx) = mpsc::channel(1);
    unavailable(
        rt.build(svc.tar.clone(), "mesg-test-never:1", tx).await,
        "build",
    );
    let first = rt.logs(&spec.instance_hash, false, None).next().await;
    unavailable(first.expect("one item").map(|_| ()), "logs");

    // The engine appears at that address: the next call connects.
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    let info = rt.check().await.expect("connected now");
    assert!(!info.server_version.is_empty());
    assert_eq!(
        info.api_version,
        docker(&["version", "-f", "{{.Server.APIVersion}}"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_in_a_container_joins_each_instance_network() {
    let g = Guard::new("self");
    let builder = DockerRuntime::new(config(&g.node, 3));
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&builder, &g.node, "echo", &svc).await;
    // A stand-in for the node's own container (labelled so that cleanup removes it).
    let node_container = format!("mesg-test-{}-node", &g.node[..8]);
    let label = format!("mesg.node={}", g.node);
    let run = docker_out(&[
        "run",
        "-d",
        "--name",
        &node_container,
        "--label",
        &label,
        "-e",
        "MESG_ENDPOINT=http://127.0.0.1:1",
        "-e",
        "MESG_TOKEN=node",
        &image,
    ]);
    assert!(run.status.success(), "{run:?}");
    let mut cfg = config(&g.node, 3);
    cfg.self_container = Some(node_container.clone());
    let rt = DockerRuntime::new(cfg);
    let spec = spec(&svc, &image, &[]);
    rt.start(&spec).await.expect("start");
    wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    let name = rt.container_name(&spec.instance_hash, "service");
    let net = rt.network_name(&spec.instance_hash);
    assert_eq!(
        exec_env(&name)["MESG_ENDPOINT"],
        format!("http://mesg-node:{FAKE_PORT}")
    );
    let aliases = inspect_json(
        &node_container,
        &format!("(index .NetworkSettings.Networks \"{net}\").Aliases"),
    );
    assert!(
        aliases.as_array().unwrap().iter().any(|a| a == "mesg-node"),
        "{aliases}"
    );

    // Reconcile leaves the node's container alone (node label, no instance label).
    let report = rt.reconcile(std::slice::from_ref(&spec)).await.unwrap();
    assert_eq!(report.adopted, vec![spec.instance_hash]);
    assert!(report.removed.is_empty(), "{report:?}");

    // Delete disconnects it, then removes the network.
    rt.delete(&spec.instance_hash, false).await.expect("delete");
    let networks = inspect_json(&node_container, ".NetworkSettings.Networks");
    assert!(networks.get(&net).is_none(), "{networks}");
    assert_eq!(inspect(&node_container, "{{.State.Running}}"), "true");
    let (containers, left, _) = objects(&g.node);
    assert_eq!(containers, vec![node_container]);
    assert!(left.is_empty(), "{left:?}");
}

/// A unix socket forwarding to the real engine, that the test can cut like an engine
/// restart (open connections dropped, socket gone).
fn socket_proxy(path: &Path) -> tokio::task::JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).expect("bind proxy socket");
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                if let Ok(mut engine) =
                    tokio::net::UnixStream::connect("/var/run/docker.sock").await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                }
            });
        }
    })
}

async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<RuntimeEvent>,
    within: Duration,
) -> RuntimeEvent {
    tokio::time::timeout(within, events.recv())
        .await
        .expect("an event in time")
        .expect("event channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_after_the_engine_connection_breaks() {
    let g = Guard::new("events");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let proxy = socket_proxy(&socket);
    let rt =
        DockerRuntime::with_docker_host(config(&g.node, 3), format!("unix://{}", socket.display()));
    // Same node id, direct connection: acts while the proxied one is cut off.
    let direct = DockerRuntime::new(config(&g.node, 3));
    let mut events = rt.subscribe();
    let svc = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&direct, &g.node, "echo", &svc).await;
    let spec = spec(&svc, &image, &[]);
    let started = RuntimeEvent::Started {
        instance: spec.instance_hash,
        key: "service".into(),
    };

    direct.start(&spec).await.unwrap();
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10)).await,
        started
    );

    // Cut the engine off, act meanwhile, then bring it back.
    proxy.abort();
    let _ = proxy.await;
    std::fs::remove_file(&socket).unwrap();
    direct
        .stop(&spec.instance_hash, Duration::from_secs(5))
        .await
        .unwrap();
    direct.start(&spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _proxy = socket_proxy(&socket);

    // What happened during the gap arrives once the watcher is back, once each.
    match next_event(&mut events, Duration::from_secs(15)).await {
        RuntimeEvent::Died {
            instance,
            key,
            exit_code,
        } => {
            assert_eq!((instance, key.as_str()), (spec.instance_hash, "service"));
            assert_eq!(exit_code, Some(143), "SIGTERM forwarded by init");
        }
        other => panic!("expected the death during the gap, got {other:?}"),
    }
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await,
        started
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.recv())
            .await
            .is_err(),
        "no duplicates"
    );
    assert_eq!(
        rt.status(&spec.instance_hash).await.unwrap().status,
        InstanceStatus::Running
    );
}

/// Builds `FROM base` with `mesg.node` set to another node: an image this node did not
/// build. Removed when dropped.
struct ForeignImage {
    tag: String,
}

impl ForeignImage {
    fn new(node: &str, base: &str) -> ForeignImage {
        use std::io::Write;
        let tag = format!("mesg-test-{}-foreign:1", &node[..8]);
        let mut child = Command::new("docker")
            .args([
                "build",
                "-q",
                "-t",
                &tag,
                "--label",
                "mesg.node=someone-else",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("docker build");
        let dockerfile =
            format!("FROM {base}\nENV MESG_ENDPOINT=http://127.0.0.1:1 MESG_TOKEN=db\n");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(dockerfile.as_bytes())
            .expect("write Dockerfile");
        let out = child.wait_with_output().expect("docker build");
        assert!(out.status.success(), "{out:?}");
        ForeignImage { tag }
    }
}

impl Drop for ForeignImage {
    fn drop(&mut self) {
        docker(&["rmi", "-f", &self.tag]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_publish_on_loopback_and_every_capability_is_dropped() {
    let g = Guard::new("policy");
    let rt = DockerRuntime::new(config(&g.node, 3));
    // The echo serves raw TCP on 7000: published on a host port Docker picks.
    let dir = variant("echo", "  ports: [\"7000\"]\n", "");
    let svc = load(dir.path());
    let (image, _) = build(&rt, &g.node, "echo", &svc).await;
    let spec = spec(&svc, &image, &[]);
    rt.start(&spec).await.expect("start");
    wait_status(
        &rt,
        &spec.instance_hash,
        InstanceStatus::Running,
        Duration::from_secs(10),
    )
    .await;
    let name = rt.container_name(&spec.instance_hash, "service");
    let host = inspect_json(&name, ".HostConfig");
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert!(host["CapAdd"].is_null(), "{}", host["CapAdd"]);
    assert_eq!(
        host["PortBindings"]["7000/tcp"][0]["HostIp"], "127.0.0.1",
        "{}",
        host["PortBindings"]
    );
    // What Docker actually bound: loopback only, and the service answers there.
    let bound = inspect_json(&name, ".NetworkSettings.Ports");
    let bindings = bound["7000/tcp"].as_array().expect("7000 is published");
    assert!(!bindings.is_empty());
    for b in bindings {
        assert_eq!(b["HostIp"], "127.0.0.1", "{bound}");
    }
    let port: u16 = bindings[0]["HostPort"].as_str().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing answers on 127.0.0.1:{port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.delete(&spec.instance_hash, false).await.unwrap();

    // The operator opts in: another address, and capabilities given back.
    let mut cfg = config(&g.node, 3);
    cfg.policy.publish_ip = "0.0.0.0".parse().unwrap();
    cfg.policy.capabilities = vec!["NET_BIND_SERVICE".into()];
    let rt = DockerRuntime::new(cfg);
    rt.start(&spec).await.expect("start");
    let host = inspect_json(&name, ".HostConfig");
    assert_eq!(host["PortBindings"]["7000/tcp"][0]["HostIp"], "0.0.0.0");
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(host["CapAdd"], serde_json::json!(["NET_BIND_SERVICE"]));
    rt.delete(&spec.instance_hash, false).await.unwrap();
    assert_nothing(&g.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_images_must_be_built_here_or_allowed() {
    let g = Guard::new("images");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let base = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &base).await;
    let foreign = ForeignImage::new(&g.node, &image);
    let dir = variant(
        "echo",
        "",
        &format!("dependencies:\n  db:\n    image: {}\n", foreign.tag),
    );
    let svc = load(dir.path());
    let spec = spec(&svc, &image, &[]);
    let err = rt
        .check_definition(&svc.definition)
        .await
        .expect_err("not built by this node");
    assert!(
        matches!(&err, RuntimeError::Policy(PolicyError::ImageNotAllowed { key, image }) if key == "db" && *image == foreign.tag),
        "{err:?}"
    );
    assert!(err.to_string().contains("--allow-image"), "{err}");
    let err = rt.start(&spec).await.expect_err("start refused too");
    assert!(matches!(err, RuntimeError::Policy(_)), "{err:?}");
    assert_nothing(&g.node);

    // Allowed by the operator (by repository): it runs.
    let mut cfg = config(&g.node, 3);
    cfg.policy.allowed_images = vec![foreign.tag.split(':').next().unwrap().to_string()];
    let rt = DockerRuntime::new(cfg);
    rt.check_definition(&svc.definition).await.expect("allowed");
    rt.start(&spec).await.expect("start");
    rt.delete(&spec.instance_hash, false).await.unwrap();
    assert_nothing(&g.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_has_no_network_and_is_limited() {
    let g = Guard::new("buildnet");
    let rt = DockerRuntime::new(config(&g.node, 3));
    let base = load(&mesg_testkit::service_dir("echo"));
    let (image, _) = build(&rt, &g.node, "echo", &base).await;
    // A RUN step that never ends (the echo retries its endpoint forever): while it runs,
    // its build container can be inspected; removing it ends the build.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesg.yml"), "name: hang\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {image}\nENV MESG_ENDPOINT=http://127.0.0.1:1 MESG_TOKEN=t MESG_SERVICE_HASH=x MESG_INSTANCE_HASH=y\nRUN [\"/echo\", \"serve\"]\n"
        ),
    )
    .unwrap();
    let hang = load(dir.path());
    let image_id = docker(&["image", "inspect", "-f", "{{.Id}}", &image]);
    let (tx, _rx) = mpsc::channel(64);
    let rt2 = rt.clone();
    let tag = format!("mesg-test-{}-hang:1", &g.node[..8]);
    let building = tokio::spawn(async move { rt2.build(hang.tar, &tag, tx).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    let container = loop {
        let found = lines(&docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("ancestor={image_id}"),
        ]));
        if let Some(c) = found.into_iter().next() {
            break c;
        }
        assert!(Instant::now() < deadline, "no build container appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let host = inspect_json(&container, ".HostConfig");
    docker(&["rm", "-f", &container]);
    assert_eq!(host["NetworkMode"], "none", "{host}");
    assert_eq!(
        host["Memory"],
        i64::from(mesg_node::runtime::docker::BUILD_MEMORY)
    );
    assert_eq!(
        host["CpuQuota"],
        i64::from(mesg_node::runtime::docker::BUILD_CPU_QUOTA)
    );
    let result = tokio::time::timeout(Duration::from_secs(30), building)
        .await
        .expect("the build ends once its container is gone")
        .expect("task");
    assert!(result.is_err(), "{result:?}");
}
