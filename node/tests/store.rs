//! The sled store: indexes, pagination, replay protection across reopen, schema version
//! check, and durability of acknowledged writes across a SIGKILL.

use mesg_node::store::{ExecutionFilter, SledStore, Store, StoreError};
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::*;
use std::process::{Command, Stdio};

fn request(
    key: &Keypair,
    service: u8,
    tags: &[&str],
    parent: Option<ExecutionId>,
    t: u64,
) -> (Execution, Signed<ExecutionRequest>) {
    let req = ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: ServiceHash(Hash32::sha256(&[service])),
        task_key: "echo".into(),
        inputs: Json(serde_json::json!({"n": t})),
        requester: key.public(),
        requester_node: key.public(),
        parent,
        process: None,
        tags: tags.iter().map(|s| s.to_string()).collect(),
        timeout_ms: 1000,
        created_at: t,
        cause: None,
        idempotency_key: None,
        max_price: None,
        verify: None,
    };
    let signed = Signed::sign(
        key,
        domains::EXECUTION_REQUEST,
        &req,
        t,
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    (Execution::from_request(&req), signed)
}

#[tokio::test]
async fn indexes_filters_and_pages_follow_status_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let key = Keypair::generate().unwrap();
    let mut ids = Vec::new();
    for t in 1..=10u64 {
        let tags: &[&str] = if t % 2 == 0 { &["even"] } else { &["odd"] };
        let parent = if t > 1 { Some(ids[0]) } else { None };
        let (e, s) = request(&key, (t % 3) as u8, tags, parent, t);
        store.insert_execution(&e, &s).unwrap();
        ids.push(e.id);
    }
    // Move the first five to InProgress, two of them on to Completed.
    for (i, id) in ids.iter().take(5).enumerate() {
        store
            .update_execution(id, &mut |e| {
                Ok(e.transition(ExecutionStatus::InProgress, 20)?)
            })
            .unwrap();
        if i < 2 {
            store
                .update_execution(id, &mut |e| Ok(e.complete(Json::null(), 30)?))
                .unwrap();
        }
    }
    let list = |f: ExecutionFilter| -> Vec<u64> {
        store
            .list_executions(&ExecutionFilter {
                limit: f.limit.max(100),
                ..f
            })
            .unwrap()
            .iter()
            .map(|e| e.created_at)
            .collect()
    };
    assert_eq!(
        list(ExecutionFilter::default()),
        vec![10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    );
    assert_eq!(
        list(ExecutionFilter {
            status: Some(ExecutionStatus::Completed),
            ..Default::default()
        }),
        vec![2, 1]
    );
    assert_eq!(
        list(ExecutionFilter {
            status: Some(ExecutionStatus::InProgress),
            ..Default::default()
        }),
        vec![5, 4, 3]
    );
    assert_eq!(
        list(ExecutionFilter {
            status: Some(ExecutionStatus::Created),
            ..Default::default()
        }),
        vec![10, 9, 8, 7, 6]
    );
    assert_eq!(
        list(ExecutionFilter {
            tag: Some("even".into()),
            ..Default::default()
        }),
        vec![10, 8, 6, 4, 2]
    );
    assert_eq!(
        list(ExecutionFilter {
            tag: Some("even".into()),
            status: Some(ExecutionStatus::Created),
            ..Default::default()
        }),
        vec![10, 8, 6]
    );
    assert_eq!(
        list(ExecutionFilter {
            service: Some(ServiceHash(Hash32::sha256(&[0]))),
            ..Default::default()
        }),
        vec![9, 6, 3]
    );
    assert_eq!(
        list(ExecutionFilter {
            parent: Some(ids[0]),
            ..Default::default()
        })
        .len(),
        9
    );
    // Pages of three, newest first, following the cursor.
    let page1 = store
        .list_executions(&ExecutionFilter {
            limit: 3,
            ..Default::default()
        })
        .unwrap();
    let last = page1.last().unwrap();
    let page2 = store
        .list_executions(&ExecutionFilter {
            limit: 3,
            before: Some((last.created_at, last.id)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        page2.iter().map(|e| e.created_at).collect::<Vec<_>>(),
        vec![7, 6, 5]
    );
    // Illegal transitions write nothing.
    let err = store
        .update_execution(&ids[0], &mut |e| Ok(e.fail("late", 40)?))
        .unwrap_err();
    assert!(matches!(err, StoreError::Transition(_)), "{err}");
    assert_eq!(
        store.execution(&ids[0]).unwrap().unwrap().status,
        ExecutionStatus::Completed
    );
    let unfinished: Vec<u64> = store
        .unfinished_executions()
        .unwrap()
        .iter()
        .map(|e| e.created_at)
        .collect();
    assert_eq!(unfinished.len(), 8);
    assert!(store.request(&ids[3]).unwrap().is_some());
}

#[tokio::test]
async fn a_seen_nonce_is_refused_even_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Keypair::generate().unwrap().public();
    {
        let store = SledStore::open(dir.path()).unwrap();
        assert!(store.record_nonce(&signer, &[1; 16], 5_000).unwrap());
        assert!(!store.record_nonce(&signer, &[1; 16], 5_000).unwrap());
        assert!(store.record_nonce(&signer, &[2; 16], 1_000).unwrap());
        store.close().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert!(
        !store.record_nonce(&signer, &[1; 16], 5_000).unwrap(),
        "replay after restart"
    );
    assert_eq!(store.purge_nonces(2_000).unwrap(), 1);
    assert!(
        store.record_nonce(&signer, &[2; 16], 9_000).unwrap(),
        "expired nonces are forgotten"
    );
    assert!(!store.record_nonce(&signer, &[1; 16], 5_000).unwrap());
}

#[tokio::test]
async fn an_unknown_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store.force_schema_version(99).unwrap();
    store.close().await.unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaVersion { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("schema version 99"));
}

/// Child role: write executions one by one, persist each, print its id once persisted
/// (the acknowledgement), until killed.
#[tokio::test]
async fn crash_child() {
    let Ok(path) = std::env::var("MESG_STORE_CRASH_DIR") else {
        return; // Only meaningful when started by `acknowledged_writes_survive_sigkill`.
    };
    let store = SledStore::open(std::path::Path::new(&path)).unwrap();
    let key = Keypair::generate().unwrap();
    use std::io::Write;
    for t in 0.. {
        let (e, s) = request(&key, 1, &[], None, t);
        store.insert_execution(&e, &s).unwrap();
        store.persist().await.unwrap();
        println!("ACK {}", e.id);
        std::io::stdout().flush().unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("MESG_STORE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut acked = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.parse::<ExecutionId>().unwrap());
            }
        }
        acked
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL: no destructor, no flush.
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    assert!(
        acked.len() > 100,
        "child acknowledged only {} writes",
        acked.len()
    );
    let store = SledStore::open(dir.path()).unwrap();
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| store.execution(id).unwrap().is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged executions lost",
        missing.len(),
        acked.len()
    );
}

#[tokio::test]
async fn history_trim_removes_the_oldest_finished_executions_and_keeps_owed_and_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let key = Keypair::generate().unwrap();
    let mut ids = Vec::new();
    for t in 1..=10u64 {
        let parent = ids.first().copied();
        let (e, s) = request(&key, 1, &["trim"], parent, t);
        store.insert_execution(&e, &s).unwrap();
        ids.push(e.id);
    }
    // 1..=8 end, except #2 which is still running; #3's result is still owed (outbox);
    // 9 and 10 were just created.
    for (i, id) in ids.iter().enumerate().take(8) {
        store
            .update_execution(id, &mut |e| {
                Ok(e.transition(ExecutionStatus::InProgress, 20)?)
            })
            .unwrap();
        if i != 1 {
            store
                .update_execution(id, &mut |e| Ok(e.complete(Json::null(), 30)?))
                .unwrap();
        }
    }
    let result = ExecutionResult {
        execution_id: ids[2],
        request_digest: Hash32::sha256(b"request"),
        service_hash: ServiceHash(Hash32::sha256(&[1])),
        task_key: "echo".into(),
        executor: key.public(),
        instance_hash: None,
        outcome: Outcome::Completed {
            outputs: Json::null(),
        },
        started_at: Some(20),
        finished_at: 30,
    };
    let signed = Signed::sign(
        &key,
        domains::EXECUTION_RESULT,
        &result,
        30,
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    store.put_result(&signed, &ids[0]).unwrap();
    store
        .put_outbox(
            &ids[2],
            &mesg_node::store::OutboxEntry {
                result: signed,
                requester_node: key.public(),
                attempts: 0,
                next_attempt_at: 0,
            },
        )
        .unwrap();

    // A batch limit stops early: the two oldest removable ones go (#1, #4).
    assert_eq!(store.prune_executions(4, 2, u64::MAX).unwrap(), 2);
    assert_eq!(store.prune_executions(4, 100, u64::MAX).unwrap(), 4);
    assert_eq!(
        store.prune_executions(4, 100, u64::MAX).unwrap(),
        0,
        "nothing left to trim"
    );
    for gone in [0, 3, 4, 5, 6, 7] {
        let id = &ids[gone];
        assert!(store.execution(id).unwrap().is_none(), "#{} kept", gone + 1);
        assert!(store.request(id).unwrap().is_none());
        assert!(store.result(id).unwrap().is_none());
    }
    for kept in [1, 2, 8, 9] {
        assert!(
            store.execution(&ids[kept]).unwrap().is_some(),
            "#{} removed",
            kept + 1
        );
    }
    // No index still points at a removed execution.
    let listed = |f: ExecutionFilter| -> usize {
        store
            .list_executions(&ExecutionFilter { limit: 100, ..f })
            .unwrap()
            .len()
    };
    assert_eq!(listed(ExecutionFilter::default()), 4);
    assert_eq!(
        listed(ExecutionFilter {
            tag: Some("trim".into()),
            ..Default::default()
        }),
        4
    );
    assert_eq!(
        listed(ExecutionFilter {
            status: Some(ExecutionStatus::Completed),
            ..Default::default()
        }),
        1,
        "only #3, whose result is owed"
    );
    // #1 was the parent of all others: its children stay listed under it.
    assert_eq!(
        listed(ExecutionFilter {
            parent: Some(ids[0]),
            ..Default::default()
        }),
        4
    );
    // Everything may go once nothing is running or owed.
    store.remove_outbox(&ids[2], &key.public()).unwrap();
    assert_eq!(store.prune_executions(0, 100, u64::MAX).unwrap(), 1);
}

#[tokio::test]
async fn large_inputs_and_outputs_come_back_whole_after_status_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let key = Keypair::generate().unwrap();
    let (mut e, s) = request(&key, 1, &["big"], None, 1);
    let big = "x".repeat(1 << 20);
    e.inputs = Json(serde_json::json!({ "message": big }));
    store.insert_execution(&e, &s).unwrap();
    let running = store
        .update_execution(&e.id, &mut |e| {
            Ok(e.transition(ExecutionStatus::InProgress, 2)?)
        })
        .unwrap();
    assert_eq!(running.inputs, e.inputs, "the update hands back the inputs");
    let outputs = Json(serde_json::json!({ "message": big, "count": 1 }));
    let done = store
        .update_execution(&e.id, &mut |x| Ok(x.complete(outputs.clone(), 3)?))
        .unwrap();
    assert_eq!(done.outputs.as_ref(), Some(&outputs));
    store.close().await.unwrap();

    let store = SledStore::open(dir.path()).unwrap();
    let loaded = store.execution(&e.id).unwrap().unwrap();
    assert_eq!(loaded.status, ExecutionStatus::Completed);
    assert_eq!(loaded.inputs, e.inputs);
    assert_eq!(loaded.outputs, Some(outputs.clone()));
    let listed = store
        .list_executions(&ExecutionFilter {
            tag: Some("big".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].outputs, Some(outputs.clone()));
    assert_eq!(listed[0].inputs, e.inputs);

    // Large values live in files of their own (docs/benchmarks.md: sled rewrote leaves
    // holding many of them), the signed result and an outbox entry too, and go with
    // their execution once its removal is flushed.
    let spilled = |store_dir: &std::path::Path| {
        std::fs::read_dir(store_dir.join("spilled")).map_or(0, |d| d.count())
    };
    assert_eq!(spilled(dir.path()), 2, "the inputs and the outputs");
    let result = ExecutionResult {
        execution_id: e.id,
        request_digest: s.digest(),
        service_hash: e.service_hash,
        task_key: e.task_key.clone(),
        executor: key.public(),
        instance_hash: None,
        outcome: Outcome::Completed {
            outputs: outputs.clone(),
        },
        started_at: Some(2),
        finished_at: 3,
    };
    let signed = Signed::sign(
        &key,
        domains::EXECUTION_RESULT,
        &result,
        3,
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    store.put_result(&signed, &e.id).unwrap();
    let entry = mesg_node::store::OutboxEntry {
        result: signed.clone(),
        requester_node: key.public(),
        attempts: 0,
        next_attempt_at: 0,
    };
    store.put_outbox(&e.id, &entry).unwrap();
    store
        .put_outbox(
            &e.id,
            &mesg_node::store::OutboxEntry {
                attempts: 1,
                ..entry.clone()
            },
        )
        .unwrap();
    store.persist().await.unwrap();
    assert_eq!(
        spilled(dir.path()),
        4,
        "a rewritten outbox entry leaves one file"
    );
    store.close().await.unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.result(&e.id).unwrap(), Some(signed));
    assert_eq!(store.outbox().unwrap()[0].1.attempts, 1);
    store.remove_outbox(&e.id, &key.public()).unwrap();
    store.remove_execution(&e.id).unwrap();
    assert_eq!(
        spilled(dir.path()),
        4,
        "files stay until the removal is flushed"
    );
    store.persist().await.unwrap();
    assert_eq!(spilled(dir.path()), 0);
    assert!(store.execution(&e.id).unwrap().is_none());
}

/// Processes and runs were stored through the generic blob trees before they had typed
/// methods: a store written that way (JSON records, `runs_by_process` keys
/// `[process][0xff][started_at be][run]`) reads unchanged, and new writes keep the layout.
#[tokio::test]
async fn processes_and_runs_written_as_blobs_read_through_the_typed_methods() {
    use mesg_node::processes::{ProcessRecord, RunStatus};
    fn index_key(process: &str, started_at: u64, run: &str) -> Vec<u8> {
        let mut k = process.as_bytes().to_vec();
        k.push(0xff);
        k.extend_from_slice(&started_at.to_be_bytes());
        k.extend_from_slice(run.as_bytes());
        k
    }
    let run_json = |id: &str, status: &str, started_at: u64| {
        serde_json::json!({
            "id": id, "process": "proc-1", "status": status, "error": null,
            "trigger_execution": null,
            "steps": {"tick": {"status": "done", "output": {"value": "go"}, "error": null,
                               "attempts": [], "started_at": started_at,
                               "finished_at": started_at, "retry_at": null}},
            "started_at": started_at, "finished_at": null,
        })
        .to_string()
    };
    let record = serde_json::json!({
        "id": "proc-1", "name": "pipeline",
        "definition": {"name": "pipeline", "steps": [
            {"key": "tick", "after": null,
             "kind": {"trigger": {"service": "echo", "source": {"event": "tick"}}}}]},
        "services": {}, "created_at": 42,
    })
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .put_blob("processes", b"proc-1", record.as_bytes())
            .unwrap();
        store
            .put_blob("processes", b"broken", b"{not json")
            .unwrap();
        for (run, status, t) in [("run-a", "completed", 10), ("run-b", "running", 20)] {
            store
                .put_blob("runs", run.as_bytes(), run_json(run, status, t).as_bytes())
                .unwrap();
            store
                .put_blob("runs_by_process", &index_key("proc-1", t, run), &[])
                .unwrap();
        }
        // A run of another process, and an index entry whose run was never written.
        store
            .put_blob("runs_by_process", &index_key("proc-2", 30, "run-c"), &[])
            .unwrap();
        store
            .put_blob("runs_by_process", &index_key("proc-1", 40, "run-gone"), &[])
            .unwrap();
        store.close().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let processes = store.processes().unwrap();
    assert_eq!(processes.len(), 1, "the unreadable record is left out");
    let p: &ProcessRecord = &processes[0];
    assert_eq!(
        (p.id.as_str(), p.name.as_str(), p.created_at),
        ("proc-1", "pipeline", 42)
    );
    assert_eq!(store.process("proc-1").unwrap().unwrap().name, "pipeline");
    let runs = store.process_runs("proc-1", 10).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["run-b", "run-a"], "newest first");
    assert_eq!(store.process_runs("proc-1", 1).unwrap().len(), 1);
    assert_eq!(
        store.run("run-a").unwrap().unwrap().status,
        RunStatus::Completed
    );
    let running = store.running_runs().unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, "run-b");

    // New writes land where the old node wrote, in the same encoding.
    let mut run = running[0].clone();
    run.status = RunStatus::Completed;
    store.put_run(&run).unwrap();
    let raw = store.blob("runs", b"run-b").unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["status"], "completed");
    assert!(
        store
            .blob("runs_by_process", &index_key("proc-1", 20, "run-b"))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.process_runs("proc-1", 10).unwrap().len(),
        2,
        "indexed once"
    );
    store.delete_process("proc-1").unwrap();
    assert!(store.blob("processes", b"proc-1").unwrap().is_none());
    let mut p = p.clone();
    p.id = "proc-3".into();
    store.put_process(&p).unwrap();
    let raw = store.blob("processes", b"proc-3").unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["created_at"],
        42
    );
}

/// Large inputs are stored once: inside the signed request kept beside the record.
#[tokio::test]
async fn large_inputs_are_written_once_inside_their_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let key = Keypair::generate().unwrap();
    let mut req = request(&key, 1, &[], None, 1)
        .1
        .payload_unverified(MAX_WORK_MESSAGE)
        .unwrap();
    req.inputs = Json(serde_json::json!({ "message": "y".repeat(300 * 1024) }));
    let signed = Signed::sign(
        &key,
        domains::EXECUTION_REQUEST,
        &req,
        1,
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    let e = Execution::from_request(&req);
    store.insert_execution(&e, &signed).unwrap();
    let files = std::fs::read_dir(dir.path().join("spilled"))
        .unwrap()
        .count();
    assert_eq!(files, 1, "the request only");
    let running = store
        .update_execution(&e.id, &mut |e| {
            Ok(e.transition(ExecutionStatus::InProgress, 2)?)
        })
        .unwrap();
    assert_eq!(running.inputs, req.inputs);
    // Another request under the same id is refused and changes nothing.
    let mut other = req.clone();
    other.inputs = Json(serde_json::json!({ "message": "w".repeat(300 * 1024) }));
    let other_signed = Signed::sign(
        &key,
        domains::EXECUTION_REQUEST,
        &other,
        1,
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    assert!(matches!(
        store.insert_execution(&Execution::from_request(&other), &other_signed),
        Err(StoreError::ExecutionExists(_))
    ));
    assert_eq!(store.execution(&e.id).unwrap().unwrap().inputs, req.inputs);
    let files = std::fs::read_dir(dir.path().join("spilled"))
        .unwrap()
        .count();
    assert_eq!(files, 1, "the refused request's file is gone");
    store.close().await.unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.execution(&e.id).unwrap().unwrap().inputs, req.inputs);
    assert_eq!(store.request(&e.id).unwrap(), Some(signed));
}

#[tokio::test]
async fn the_event_log_answers_after_a_sequence_number_in_order_and_forgets_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::generate().unwrap();
    let (s, t) = (
        ServiceHash(Hash32::sha256(b"s")),
        ServiceHash(Hash32::sha256(b"t")),
    );
    let event = |service: ServiceHash, seq: u64, created_at: u64| {
        let e = Event {
            id: EventId::random(),
            service_hash: service,
            instance_hash: InstanceHash(Hash32::sha256(b"i")),
            key: "tick".into(),
            data: Json(serde_json::json!({ "n": seq })),
            emitter: key.public(),
            created_at,
            cause: None,
            seq,
        };
        let signed = Signed::sign(
            &key,
            domains::EVENT,
            &e,
            created_at,
            600_000,
            wire::MAX_GOSSIP_MESSAGE,
        )
        .unwrap();
        (e, signed)
    };
    let seqs = |list: Vec<Signed<Event>>| -> Vec<u64> {
        list.iter()
            .map(|s| s.payload_unverified(wire::MAX_GOSSIP_MESSAGE).unwrap().seq)
            .collect()
    };
    {
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.last_event_seq(&s).unwrap(), 0, "nothing logged yet");
        for seq in 1..=5 {
            let (e, signed) = event(s, seq, 1_000 * seq);
            store.log_event(&e, &signed).unwrap();
        }
        let (e, signed) = event(t, 1, 1_000);
        store.log_event(&e, &signed).unwrap();
        store.close().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.last_event_seq(&s).unwrap(), 5, "kept across a reopen");
    assert_eq!(store.last_event_seq(&t).unwrap(), 1);
    assert_eq!(
        seqs(store.logged_events(&s, 2, 100, 1 << 20).unwrap()),
        [3, 4, 5]
    );
    assert_eq!(
        seqs(store.logged_events(&s, 0, 2, 1 << 20).unwrap()),
        [1, 2]
    );
    assert_eq!(seqs(store.logged_events(&t, 0, 100, 1 << 20).unwrap()), [1]);
    assert!(store.logged_events(&s, 5, 100, 1 << 20).unwrap().is_empty());
    // The byte cap: one event's worth lets one through.
    let one = store.logged_events(&s, 0, 1, 1 << 20).unwrap();
    let size = mesg_protocol::wire::encode(&one[0], 1 << 20).unwrap().len() + 8;
    assert_eq!(seqs(store.logged_events(&s, 0, 100, size).unwrap()), [1]);
    // Older than 3.5 s (seq 1..3 of s, seq 1 of t) are forgotten.
    assert_eq!(store.prune_event_log(3_500).unwrap(), 4);
    assert_eq!(
        seqs(store.logged_events(&s, 0, 100, 1 << 20).unwrap()),
        [4, 5]
    );
    assert_eq!(store.last_event_seq(&t).unwrap(), 0);
}
