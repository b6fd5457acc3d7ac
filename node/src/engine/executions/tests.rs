//! The ledger's transitions, every legal and illegal one, on a real sled store in a
//! temporary directory: no Docker, no peers, a few milliseconds each.

use super::*;
use crate::store::SledStore;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{ExecutionStatus, Hash32, InstanceHash, Json, ServiceHash, now_ms};
use std::sync::Mutex;

struct Fixture {
    ledger: Arc<ExecutionLedger>,
    expired: mpsc::Receiver<ExecutionId>,
    key: Keypair,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let key = Keypair::generate().unwrap();
    let (ledger, expired) = ExecutionLedger::new(key.clone(), store, EngineMetrics::default());
    Fixture {
        ledger: Arc::new(ledger),
        expired,
        key,
        _dir: dir,
    }
}

fn request(f: &Fixture, timeout_ms: u64) -> (ExecutionRequest, Signed<ExecutionRequest>) {
    let request = ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: ServiceHash(Hash32::sha256(b"service")),
        task_key: "echo".into(),
        inputs: Json(serde_json::json!({"x": 1})),
        requester: f.key.public(),
        requester_node: f.key.public(),
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms,
        created_at: now_ms(),
        cause: None,
        idempotency_key: None,
        max_price: None,
        verify: None,
    };
    let signed = Signed::sign(
        &f.key,
        domains::EXECUTION_REQUEST,
        &request,
        now_ms(),
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    (request, signed)
}

fn instance() -> InstanceHash {
    InstanceHash(Hash32::sha256(b"instance"))
}

fn peer() -> PublicKey {
    Keypair::generate().unwrap().public()
}

async fn accepted(f: &Fixture, placement: Placement) -> Execution {
    let (r, s) = request(f, 60_000);
    f.ledger
        .accept(&r, &s, now_ms(), placement, Origin::Local)
        .await
        .unwrap()
}

#[tokio::test]
async fn accepted_locally_it_is_already_handed_to_the_instance() {
    let f = fixture();
    let e = accepted(&f, Placement::Local(instance())).await;
    assert_eq!(e.status, ExecutionStatus::InProgress);
    assert_eq!(e.executor, Some(f.key.public()));
    assert_eq!(e.instance_hash, Some(instance()));
    assert!(e.started_at.is_some());
    // Durable and readable, with its signed request.
    assert_eq!(f.ledger.get(&e.id).unwrap(), e);
    assert!(f.ledger.request(&e.id).unwrap().is_some());
}

#[tokio::test]
async fn accepted_for_the_network_it_waits_with_its_first_provider_noted() {
    let f = fixture();
    let p = peer();
    let e = accepted(&f, Placement::Remote(Some(p))).await;
    assert_eq!(e.status, ExecutionStatus::Created);
    assert_eq!(e.executor, Some(p));
    assert_eq!(e.instance_hash, None);
}

#[tokio::test]
async fn the_same_id_is_never_accepted_twice() {
    let f = fixture();
    let (r, s) = request(&f, 60_000);
    f.ledger
        .accept(&r, &s, now_ms(), Placement::Remote(None), Origin::Local)
        .await
        .unwrap();
    let again = f
        .ledger
        .accept(&r, &s, now_ms(), Placement::Remote(None), Origin::Peer)
        .await;
    assert!(matches!(again, Err(AcceptError::Exists(id)) if id == r.execution_id));
}

#[tokio::test]
async fn a_created_execution_starts_locally_once() {
    let f = fixture();
    let e = accepted(&f, Placement::Remote(None)).await;
    let started = f.ledger.start_local(&e.id, instance()).await.unwrap();
    assert_eq!(started.status, ExecutionStatus::InProgress);
    assert_eq!(started.executor, Some(f.key.public()));
    // InProgress -> InProgress is illegal: nothing changes.
    assert!(f.ledger.start_local(&e.id, instance()).await.is_err());
    assert_eq!(f.ledger.get(&e.id).unwrap(), started);
}

#[tokio::test]
async fn completing_an_execution_that_never_started_is_refused() {
    let f = fixture();
    let e = accepted(&f, Placement::Remote(None)).await;
    assert!(
        f.ledger
            .finish(&e.id, Ok(serde_json::json!({})), None)
            .await
            .is_none()
    );
    assert_eq!(
        f.ledger.get(&e.id).unwrap().status,
        ExecutionStatus::Created
    );
    // Failing it is legal (no provider, timeout, cancel).
    let failed = f
        .ledger
        .finish(&e.id, Err("no provider".into()), None)
        .await
        .unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("no provider"));
}

#[tokio::test]
async fn a_running_execution_completes_once_with_a_signed_result() {
    let f = fixture();
    let e = accepted(&f, Placement::Local(instance())).await;
    let done = f
        .ledger
        .finish(&e.id, Ok(serde_json::json!({"y": 2})), None)
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.outputs, Some(Json(serde_json::json!({"y": 2}))));
    let proof = f.ledger.result_proof(&e.id).unwrap();
    let result = proof
        .verify(domains::EXECUTION_RESULT, now_ms(), MAX_WORK_MESSAGE)
        .unwrap();
    assert_eq!(result.execution_id, e.id);
    assert_eq!(result.executor, f.key.public());
    assert_eq!(
        result.request_digest,
        f.ledger.request(&e.id).unwrap().unwrap().digest()
    );
    // Completed is final: neither a second result nor a failure changes it.
    assert!(
        f.ledger
            .finish(&e.id, Err("late".into()), None)
            .await
            .is_none()
    );
    assert!(
        f.ledger
            .finish(&e.id, Ok(serde_json::json!({"y": 3})), None)
            .await
            .is_none()
    );
    assert_eq!(f.ledger.get(&e.id).unwrap(), done);
}

#[tokio::test]
async fn a_provider_accepting_moves_it_to_in_progress_but_never_revives_an_end() {
    let f = fixture();
    let p = peer();
    let e = accepted(&f, Placement::Remote(None)).await;
    let running = f.ledger.accepted_by(&e.id, p).unwrap();
    assert_eq!(running.status, ExecutionStatus::InProgress);
    assert_eq!(running.executor, Some(p));

    // A late Accepted for an execution that already failed (timed out meanwhile).
    let e2 = accepted(&f, Placement::Remote(None)).await;
    f.ledger.finish(&e2.id, Err("timed out".into()), None).await;
    let late = f.ledger.accepted_by(&e2.id, p).unwrap();
    assert_eq!(late.status, ExecutionStatus::Failed);
}

#[tokio::test]
async fn a_result_that_overtakes_the_accept_starts_the_execution_at_the_executor_time() {
    let f = fixture();
    let p = peer();
    let e = accepted(&f, Placement::Remote(None)).await;
    f.ledger
        .result_arrived(&e.id, p, Some(instance()), Some(1234))
        .unwrap();
    let now = f.ledger.get(&e.id).unwrap();
    assert_eq!(now.status, ExecutionStatus::InProgress);
    assert_eq!(now.started_at, Some(1234));
    assert_eq!(now.executor, Some(p));
    assert_eq!(now.instance_hash, Some(instance()));
}

#[tokio::test]
async fn a_routed_provider_is_noted_only_while_no_one_accepted() {
    let f = fixture();
    let (a, b) = (peer(), peer());
    let e = accepted(&f, Placement::Remote(None)).await;
    f.ledger.note_route(&e.id, a).await;
    assert_eq!(f.ledger.get(&e.id).unwrap().executor, Some(a));
    f.ledger.accepted_by(&e.id, a).unwrap();
    f.ledger.note_route(&e.id, b).await;
    assert_eq!(f.ledger.get(&e.id).unwrap().executor, Some(a));
}

/// Records what the ledger tells a hook, and whether the end was already readable.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(&'static str, ExecutionId, ExecutionStatus)>>,
}

impl EndHook for Recorder {
    fn ended_before_flush(&self, e: &Execution) {
        self.calls.lock().unwrap().push(("before", e.id, e.status));
    }
    fn ended_after_flush(&self, e: &Execution) {
        self.calls.lock().unwrap().push(("after", e.id, e.status));
    }
}

#[tokio::test]
async fn every_end_is_told_to_the_hooks_once_before_and_after_the_flush() {
    let f = fixture();
    let recorder = Arc::new(Recorder::default());
    let hook: Arc<dyn EndHook> = recorder.clone();
    f.ledger.add_end_hook(Arc::downgrade(&hook));
    let e = accepted(&f, Placement::Local(instance())).await;
    f.ledger
        .finish(&e.id, Err("container died".into()), None)
        .await;
    f.ledger.finish(&e.id, Err("again".into()), None).await;
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            ("before", e.id, ExecutionStatus::Failed),
            ("after", e.id, ExecutionStatus::Failed)
        ]
    );
    // A hook that is gone is skipped, not called.
    drop(hook);
    drop(recorder);
    let e2 = accepted(&f, Placement::Local(instance())).await;
    assert!(
        f.ledger
            .finish(&e2.id, Err("x".into()), None)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_waiter_gets_the_end_and_leaves_no_trace() {
    let f = fixture();
    let e = accepted(&f, Placement::Local(instance())).await;
    let ledger = f.ledger.clone();
    let id = e.id;
    let waiting = tokio::spawn(async move { ledger.wait(&id, Duration::from_secs(10)).await });
    while f.ledger.waiter_count() == 0 {
        tokio::task::yield_now().await;
    }
    f.ledger
        .finish(&e.id, Ok(serde_json::json!(null)), None)
        .await;
    let ended = waiting.await.unwrap().unwrap();
    assert_eq!(ended.status, ExecutionStatus::Completed);
    assert_eq!(f.ledger.waiter_count(), 0);
    // A timed-out wait answers the current state and unregisters too.
    let e2 = accepted(&f, Placement::Local(instance())).await;
    let now = f
        .ledger
        .wait(&e2.id, Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(now.status, ExecutionStatus::InProgress);
    assert_eq!(f.ledger.waiter_count(), 0);
    // An unknown execution is not found, without a waiter.
    assert!(matches!(
        f.ledger
            .wait(&ExecutionId::random(), Duration::from_millis(20))
            .await,
        Err(EngineError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_passed_deadline_is_reported() {
    let mut f = fixture();
    let (r, s) = request(&f, 30);
    let e = f
        .ledger
        .accept(&r, &s, now_ms(), Placement::Remote(None), Origin::Local)
        .await
        .unwrap();
    let expired = tokio::time::timeout(Duration::from_secs(5), f.expired.recv())
        .await
        .expect("the deadline fires")
        .unwrap();
    assert_eq!(expired, e.id);
}

#[tokio::test]
async fn subscribers_see_every_stored_state() {
    let f = fixture();
    let mut sub = f.ledger.subscribe();
    let e = accepted(&f, Placement::Remote(None)).await;
    f.ledger.start_local(&e.id, instance()).await.unwrap();
    f.ledger.finish(&e.id, Err("x".into()), None).await;
    let seen: Vec<ExecutionStatus> = (0..3).map(|_| sub.try_recv().unwrap().status).collect();
    assert_eq!(
        seen,
        vec![
            ExecutionStatus::Created,
            ExecutionStatus::InProgress,
            ExecutionStatus::Failed
        ]
    );
}
