//! The engine assembled with a fake runtime ([`FakeRuntime`]) and a sled store in a
//! temporary directory: deploy, instances, executions, container deaths and recovery
//! after a restart, without Docker and without peers. A "restart" is a second engine on
//! the same store and the same fake Docker, after the first one's shutdown token is
//! cancelled.

mod recovery;

use super::*;
use crate::runtime::ResourceLimits;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::limits::LimitBounds;
use crate::store::SledStore;
use mesg_protocol::Execution;
use std::collections::BTreeMap;
use std::time::Duration;

const DEFINITION: &str = "name: Echo\nsid: echo\ntasks:\n  echo:\n    inputs:\n      message: {type: String, optional: true}\n    outputs:\n      message: {type: String, optional: true}\n";

/// One node's disk and Docker, outliving the engines started on them.
pub(super) struct Host {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub docker: FakeRuntime,
    pub key: Keypair,
}

impl Host {
    pub fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        std::fs::create_dir_all(dir.path().join("packages")).unwrap();
        Host {
            dir,
            store,
            docker: FakeRuntime::new(),
            key: Keypair::generate().unwrap(),
        }
    }

    /// Start an engine on this host (no network).
    pub fn start(&self) -> (Engine, CancellationToken) {
        let shutdown = CancellationToken::new();
        let engine = Engine::new(
            self.key.clone(),
            self.store.clone(),
            Arc::new(self.docker.clone()),
            EngineConfig {
                credit_limit: crate::ledger::DEFAULT_CREDIT_LIMIT,
                packages_dir: self.dir.path().join("packages"),
                max_package_bytes: mesg_package::DEFAULT_MAX_PACKAGE_BYTES,
                default_limits: ResourceLimits::default(),
                limit_bounds: LimitBounds::new(None, None, None),
                execution_history: 0,
                pins: vec![],
                peer_work_rate: peer_limits::DEFAULT_PEER_WORK_RATE,
                idempotency_ttl_ms: 24 * 3600 * 1000,
                adaptive_verification: false,
            },
            shutdown.clone(),
        )
        .unwrap();
        (engine, shutdown)
    }
}

/// Deploy the echo service and start one instance of it; returns its service hash and
/// the instance's token (what its container would present).
pub(super) async fn deploy_and_start(engine: &Engine) -> (ServiceHash, String) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("mesg.yml"), DEFINITION).unwrap();
    std::fs::write(
        src.path().join("Dockerfile"),
        "FROM scratch\nCOPY mesg.yml /\n",
    )
    .unwrap();
    let package =
        mesg_package::Package::from_dir(src.path(), mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
            .unwrap();
    let definition = package.definition().unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let service = engine
        .deploy(package, definition, false, None, tx)
        .await
        .unwrap();
    let instance = engine
        .start_instance(&service.hash.to_string(), BTreeMap::new(), None)
        .await
        .unwrap();
    let token = engine
        .store()
        .instance(&instance.hash)
        .unwrap()
        .unwrap()
        .token;
    (service.hash, token)
}

pub(super) async fn echo(
    engine: &Engine,
    service: &ServiceHash,
    timeout_ms: Option<u64>,
) -> Execution {
    engine
        .create_execution(CreateExecution {
            service: service.to_string(),
            task: "echo".into(),
            inputs: serde_json::json!({"message": "hi"}),
            timeout_ms,
            ..Default::default()
        })
        .await
        .unwrap()
}

pub(super) async fn ended(engine: &Engine, e: &Execution) -> Execution {
    let now = engine.wait(&e.id, Duration::from_secs(10)).await.unwrap();
    assert!(now.status.is_final(), "still {:?}", now.status);
    now
}
