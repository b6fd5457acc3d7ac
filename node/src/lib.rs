//! mesg-node: runs Services in Docker, joins the mesg peer network, routes executions.
//!
//! One module, one noun: [`datadir`] (the node's directory and key), [`store`] (sled),
//! [`runtime`] (Docker), [`engine`] (executions), [`ledger`] (the economy's books), [`processes`] (processes run on top of
//! the engine), [`api`] (HTTP for Applications and for service containers).

pub mod api;
pub mod config;
pub mod datadir;
pub mod engine;
pub mod ledger;
pub mod malloc_arenas;
pub mod network;
pub mod processes;
pub mod runtime;
pub mod store;

use anyhow::Context;
use config::NodeArgs;
use datadir::DataDir;
use engine::{Engine, EngineConfig};
use processes::{ProcessConfig, ProcessRunner};
use runtime::{DockerRuntime, ResourceLimits, Runtime, RuntimeConfig};
use std::sync::Arc;
use std::time::Duration;
use store::{SledStore, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// From SIGTERM/Ctrl-C to the final flush: the Application API's requests in progress
/// get [`API_DRAIN`] of it, the background tasks the rest.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);
/// How long Application API requests in progress may take to finish once the node stops
/// accepting new ones (long-lived streams, SSE and logs, never end on their own).
const API_DRAIN: Duration = Duration::from_secs(2);

/// The operator's container policy from the flags, with the node's own ports reserved.
fn container_policy(
    args: &NodeArgs,
    service_api_port: u16,
    api_port: u16,
) -> anyhow::Result<runtime::ContainerPolicy> {
    let mut reserved = vec![
        (service_api_port, "service API".to_string()),
        (api_port, "Application API".to_string()),
    ];
    let listen = if args.listen.is_empty() {
        network::NetworkConfig::default().listen
    } else {
        args.listen.clone()
    };
    for addr in &listen {
        for proto in addr.iter() {
            match proto {
                libp2p::multiaddr::Protocol::Tcp(p) | libp2p::multiaddr::Protocol::Udp(p)
                    if p != 0 =>
                {
                    reserved.push((p, "peer-to-peer port".to_string()));
                }
                _ => {}
            }
        }
    }
    let policy = runtime::ContainerPolicy {
        publish_ip: args.publish_ports_on,
        capabilities: args.allow_capabilities.clone(),
        allowed_images: args.allow_images.clone(),
        reserved_ports: reserved,
    };
    policy.validate()?;
    Ok(policy)
}

/// Run the node until Ctrl-C or SIGTERM.
///
/// Shutdown, in order: the Application API stops accepting (requests in progress get
/// [`API_DRAIN`]), the root token is cancelled (the network closes its connections, the
/// service API stops accepting), background tasks get the rest of [`SHUTDOWN_BUDGET`] to
/// end, then the store is flushed a last time.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let started_at = mesg_protocol::now_ms();
    // The root of every background task's lifetime, and the tasks to wait for at the end.
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let dir = DataDir::open(&args.data_dir())?;
    let api_token = match args.api_token.clone().filter(|t| !t.trim().is_empty()) {
        Some(token) => token,
        None => {
            let (token, created) = dir.load_or_create_api_token()?;
            if created {
                println!(
                    "created the API token in {}",
                    dir.api_token_path().display()
                );
            }
            token
        }
    };
    let (key, created) = dir.load_or_create_key().context("node key")?;
    if created {
        println!(
            "created a new node identity in {}",
            dir.key_path().display()
        );
    }
    let store = SledStore::open(&dir.store_path())
        .with_context(|| format!("opening the store in {}", dir.store_path().display()))?;
    let store: Arc<dyn Store> = Arc::new(store);

    let service_listener = tokio::net::TcpListener::bind(args.service_api)
        .await
        .with_context(|| format!("cannot listen on --service-api {}", args.service_api))?;
    let service_addr = service_listener.local_addr()?;
    let api_listener = tokio::net::TcpListener::bind(args.api)
        .await
        .with_context(|| format!("cannot listen on --api {}", args.api))?;
    let api_addr = api_listener.local_addr()?;

    let runtime = DockerRuntime::new(RuntimeConfig {
        node_id: key.public().to_string(),
        service_api_port: service_addr.port(),
        self_container: args.self_container(),
        default_limits: ResourceLimits::default(),
        max_restarts: args.max_restarts,
        policy: container_policy(&args, service_addr.port(), api_addr.port())?,
    });
    match runtime.check().await {
        Ok(info) => tracing::info!(
            "docker engine {} (API {})",
            info.server_version,
            info.api_version
        ),
        Err(e) => tracing::warn!("{e}; services cannot run until Docker is reachable"),
    }
    let runtime: Arc<dyn Runtime> = Arc::new(runtime);
    let service_sources = Arc::new(api::sources::ServiceApiSources::new(runtime.clone()));
    let service_sources: api::serve::SourceCheck = Arc::new(move |ip| {
        let sources = service_sources.clone();
        Box::pin(async move { sources.allows(ip).await })
    });
    let engine = Engine::new(
        key.clone(),
        store.clone(),
        runtime,
        EngineConfig {
            packages_dir: dir.packages_dir(),
            max_package_bytes: mesg_package::DEFAULT_MAX_PACKAGE_BYTES,
            default_limits: ResourceLimits::default(),
            limit_bounds: runtime::limits::LimitBounds::new(
                args.max_instance_memory,
                args.max_instance_nano_cpus,
                args.max_instance_pids,
            ),
            execution_history: args.execution_history,
            pins: args.pin.clone(),
            peer_work_rate: args.peer_work_rate,
            idempotency_ttl_ms: args.idempotency_ttl,
            adaptive_verification: args.adaptive_verification,
            credit_limit: args.credit_limit,
        },
        shutdown.child_token(),
    )
    .context("opening the ledger")?;
    let mut net_config = network::NetworkConfig::default();
    if !args.listen.is_empty() {
        net_config.listen = args.listen.clone();
    }
    net_config.bootstrap = args.bootstrap.clone();
    net_config.target_peers = usize::from(args.target_peers);
    net_config.max_peers = usize::from(args.max_peers).max(net_config.target_peers);
    net_config.relay_server = args.relay_server;
    net_config.relays = args.relays.clone();
    net_config.external_addrs = args.external_addrs.clone();
    net_config.private_network = args
        .private_network
        .resolve(&net_config.listen, &net_config.bootstrap);
    tracing::info!(
        private_network = net_config.private_network,
        "peers' loopback and private addresses are {}",
        if net_config.private_network {
            "dialled (private network)"
        } else {
            "ignored"
        }
    );
    let mut registry = prometheus_client::registry::Registry::default();
    engine.register_metrics(&mut registry);
    let (net, net_events) = network::spawn(&key, net_config, &mut registry, shutdown.clone())
        .context("starting the network")?;
    tasks.spawn({
        let net = net.clone();
        async move { net.stopped().await }
    });
    engine.attach_network(net.clone(), net_events);
    // Give the listeners a moment to report their addresses, to print and serve them.
    let mut listen_addrs = Vec::new();
    for _ in 0..40 {
        listen_addrs = net.listen_addrs().await.unwrap_or_default();
        if !listen_addrs.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let peer_id = key.peer_id();
    let listen_addrs: Vec<String> = listen_addrs
        .iter()
        .map(|a| format!("{a}/p2p/{peer_id}"))
        .collect();
    let info = api::app::NodeInfo {
        public_key: key.public().to_string(),
        peer_id: key.peer_id().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        data_dir: dir.root().display().to_string(),
        api: format!("http://{api_addr}"),
        service_api: format!("http://{service_addr}"),
        listen_addrs: listen_addrs.clone(),
        docker: None,
        memory_rss_bytes: None,
        started_at: Some(started_at),
        uptime_ms: None,
    };
    let processes = ProcessRunner::new(
        engine.clone(),
        store.clone(),
        ProcessConfig {
            max_trigger_depth: args.max_trigger_depth,
        },
    );
    processes.register_metrics(&mut registry);
    let app = api::app::router(api::app::AppState {
        engine: engine.clone(),
        processes: processes.clone(),
        info,
        access: Arc::new(api::guard::AccessPolicy {
            token: api_token,
            allowed_hosts: args
                .api_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }),
        metrics: Arc::new(registry),
        docker_status: Arc::default(),
    });
    let service_app = api::service::router(engine.clone());

    // Recover before serving containers: an adopted container re-posting a result must find
    // its instance registered (connections made meanwhile wait in the listen backlog).
    match engine.recover().await {
        Ok(report) => tracing::info!(
            adopted = report.reconcile.as_ref().map_or(0, |r| r.adopted.len()),
            restarted = report.reconcile.as_ref().map_or(0, |r| r.restarted.len()),
            removed = report.reconcile.as_ref().map_or(0, |r| r.removed.len()),
            redispatched = report.redispatched,
            kept_running = report.kept_running,
            failed = report.failed,
            expired = report.expired,
            "recovered state"
        ),
        Err(e) => tracing::error!("recovery: {e}"),
    }
    // Not tracked: containers' task streams never end on their own; it stops accepting
    // at cancellation and what is left is dropped with the runtime.
    let service_server = tokio::spawn(api::serve::serve(
        service_listener,
        service_app,
        api::serve::ConnLimits::service(),
        Some(service_sources),
        shutdown.clone().cancelled_owned(),
    ));
    if let Err(e) = processes.start(shutdown.child_token()).await {
        tracing::error!("processes: {e}");
    }
    println!("mesg-node {}", env!("CARGO_PKG_VERSION"));
    println!("  public key:  {}", key.public());
    println!("  peer id:     {}", key.peer_id());
    println!("  data dir:    {}", dir.root().display());
    println!("  api:         http://{api_addr}");
    println!(
        "  api token:   {}",
        if args.api_token.is_some() {
            "--api-token".to_string()
        } else {
            format!("in {}", dir.api_token_path().display())
        }
    );
    println!("  service api: http://{service_addr}");
    for a in &listen_addrs {
        println!("  listening:   {a}");
    }
    println!("ready");

    // On SIGTERM/Ctrl-C: stop accepting, let requests in progress finish for a moment,
    // but do not wait for long-lived streams (SSE, logs) that never end on their own.
    let (signalled_tx, signalled) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let api_server = api::serve::serve(
        api_listener,
        app,
        api::serve::ConnLimits::default(),
        None,
        async move {
            shutdown_signal().await;
            tracing::info!("stopping: the API takes no new requests");
            signalled_tx.send_replace(Some(tokio::time::Instant::now()));
        },
    );
    let drain = {
        let mut signalled = signalled.clone();
        async move {
            match signalled.wait_for(Option::is_some).await.map(|at| *at) {
                Ok(Some(at)) => tokio::time::sleep_until(at + API_DRAIN).await,
                _ => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        () = api_server => {}
        () = drain => tracing::info!("API requests still open after {API_DRAIN:?}; closing them"),
    }
    let signalled_at = signalled.borrow().unwrap_or_else(tokio::time::Instant::now);
    let deadline = signalled_at + SHUTDOWN_BUDGET;
    tracing::info!("shutting down");
    shutdown.cancel();
    tasks.close();
    if tokio::time::timeout_at(deadline, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = tasks.len(),
            "background tasks still running {SHUTDOWN_BUDGET:?} after the signal; leaving them"
        );
    }
    service_server.abort();
    store.persist().await.context("final flush")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// `mesg-node health`: exit 0 when the API answers 200 on /v1/node.
pub async fn health(args: &NodeArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = args.api;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let check = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        // The token given, else the one in the data dir (read only: health never creates).
        let token = args.api_token.clone().or_else(|| {
            std::fs::read_to_string(args.data_dir().join(datadir::API_TOKEN_FILE))
                .ok()
                .map(|t| t.trim().to_string())
        });
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        s.write_all(format!("GET /v1/node HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
            .await?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), check)
        .await
        .context("the node did not answer within 5 s")?
        .with_context(|| format!("cannot reach the node at {addr}"))?;
    let line = String::from_utf8_lossy(&status);
    anyhow::ensure!(line.ends_with(" 200"), "the node answered `{line}`");
    println!("ok");
    Ok(())
}
