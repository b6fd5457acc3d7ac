//! `mesg` against a scripted server playing the node's API: streams cut anywhere, error
//! answers, signed results. What a real node only produces with Docker running.

mod common;

use common::{Mock, Reply, mesg, not_found};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    Event, EventId, ExecutionId, ExecutionResult, Hash32, InstanceHash, Json, Keypair, Outcome,
    ServiceHash, Signed, now_ms,
};
use serde_json::json;

fn service_hash() -> ServiceHash {
    ServiceHash(Hash32::sha256(b"echo"))
}

fn event(key: &str, data: serde_json::Value) -> String {
    let node = Keypair::generate().unwrap();
    serde_json::to_string(&Event {
        id: EventId::random(),
        service_hash: service_hash(),
        instance_hash: InstanceHash(Hash32::sha256(b"instance")),
        key: key.into(),
        data: Json(data),
        emitter: node.public(),
        created_at: 1_709_210_096_789,
        cause: None,
        seq: 0,
    })
    .unwrap()
}

fn services_answer() -> Reply {
    Reply::Json(
        200,
        json!({"services": [{"hash": service_hash().to_string(), "sid": "echo", "name": "Echo"}]})
            .to_string(),
    )
}

#[test]
fn events_stream_is_parsed_across_chunks_with_keepalives() {
    let first = event("tick", json!({"count": 1}));
    let second = event("tick", json!({"count": 2}));
    let (a, b) = first.split_at(first.len() / 2);
    let chunks: Vec<Vec<u8>> = vec![
        b":\n\n".to_vec(),
        format!("event: event\ndata: {a}").into_bytes(),
        format!("{b}\n").into_bytes(),
        b"\n: keep-alive\n\nevent: lagged\ndata: 3\n\n".to_vec(),
        format!("event: event\r\ndata: {second}\r").into_bytes(),
        b"\n\r\n".to_vec(),
    ];
    let mock = Mock::start(move |req| match req.target.split('?').next().unwrap() {
        "/v1/events/stream" => Reply::Stream {
            content_type: "text/event-stream",
            chunks: chunks.clone(),
        },
        "/v1/services" => services_answer(),
        _ => not_found("route"),
    });
    let run = mesg(&[
        "--node",
        &mock.url,
        "events",
        "--service",
        "echo",
        "--event",
        "tick",
    ]);
    run.ok();
    assert_eq!(
        run.stdout,
        "12:34:56.789  echo  tick  {\"count\":1}\n12:34:56.789  echo  tick  {\"count\":2}\n",
        "{run:#?}"
    );
    assert!(run.stderr.contains("missed some events"), "{run:#?}");
    let stream_request = mock
        .requests()
        .into_iter()
        .find(|r| r.target.starts_with("/v1/events/stream"))
        .unwrap();
    assert_eq!(
        stream_request.target,
        "/v1/events/stream?service=echo&event=tick"
    );

    let json = mesg(&["--node", &mock.url, "--json", "events"]);
    json.ok();
    assert_eq!(json.stdout, format!("{first}\n{second}\n"));
}

#[test]
fn deploy_sends_a_tar_shows_progress_and_reports_build_errors() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("svc");
    mesg(&["service", "init", dir.to_str().unwrap()]).ok();
    std::fs::write(dir.join("notes.md"), "left out by .dockerignore").unwrap();
    let error_line = json!({"type": "error", "error": {
        "code": "build_failed",
        "message": "image build failed: COPY failed",
        "details": ["Step 2/4 : COPY svc /svc", "COPY failed: file not found"],
    }});
    let mock = Mock::start(
        move |req| match (req.method.as_str(), req.target.as_str()) {
            ("POST", "/v1/services") => Reply::Stream {
                content_type: "application/x-ndjson",
                chunks: vec![
                    b"{\"type\":\"progress\",\"message\":\"building image\"}\n{\"type\":\"pro"
                        .to_vec(),
                    b"gress\",\"message\":\"Step 1/4 : FROM scratch\"}\n".to_vec(),
                    format!("{error_line}\n").into_bytes(),
                ],
            },
            _ => not_found("route"),
        },
    );
    let run = mesg(&[
        "--node",
        &mock.url,
        "service",
        "deploy",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("\n  building image\n"), "{run:#?}");
    assert!(
        run.stderr.contains("\n  Step 1/4 : FROM scratch\n"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(
            "error: image build failed: COPY failed\n  Step 2/4 : COPY svc /svc\n  COPY failed: file not found\nhint: "
        ),
        "{run:#?}"
    );
    let post = mock.requests().pop().unwrap();
    assert_eq!(post.header("content-type"), Some("application/x-tar"));
    let tar = String::from_utf8_lossy(&post.body);
    assert!(tar.contains("mesg.yml") && tar.contains("Dockerfile"));
    assert!(!tar.contains("notes.md"), ".dockerignore is honoured");
}

#[test]
fn deploy_prints_the_service_hash_when_done() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("svc");
    mesg(&["service", "init", dir.to_str().unwrap()]).ok();
    let def: serde_json::Value = serde_json::to_value(
        mesg_protocol::ServiceDefinition::from_yaml(
            &std::fs::read_to_string(dir.join("mesg.yml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let key = Keypair::generate().unwrap().public().to_string();
    let done = json!({"type": "done", "service": {
        "hash": service_hash().to_string(), "sid": "svc", "name": "svc", "definition": def,
        "package_hash": Hash32::sha256(b"p").to_base58(), "package_size": 10,
        "publisher": key, "image": null, "deployed_at": now_ms(),
    }});
    let mock = Mock::start(move |_| Reply::Stream {
        content_type: "application/x-ndjson",
        chunks: vec![format!("{done}\n").into_bytes()],
    });
    let run = mesg(&[
        "--node",
        &mock.url,
        "service",
        "deploy",
        dir.to_str().unwrap(),
    ]);
    run.ok();
    assert!(
        run.stdout
            .contains(&format!("service hash: {}\n", service_hash())),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("package: public, any peer"),
        "a deploy says its package is served to peers: {run:#?}"
    );
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.method == "POST" && r.target == "/v1/services"),
        "{:?}",
        mock.requests()
    );
    let run = mesg(&[
        "--node",
        &mock.url,
        "service",
        "deploy",
        "--private",
        dir.to_str().unwrap(),
    ]);
    run.ok();
    assert!(run.stdout.contains("package: private"), "{run:#?}");
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.method == "POST" && r.target == "/v1/services?private=true"),
        "{:?}",
        mock.requests()
    );
}

#[test]
fn api_errors_print_message_details_and_hint() {
    let mock = Mock::start(|req| {
        if req.method == "POST" && req.target.starts_with("/v1/executions") {
            Reply::Json(
                400,
                json!({"code": "invalid_inputs",
                       "message": "invalid inputs: inputs.a: expected String, got Number; inputs.b: required Number is missing",
                       "details": ["inputs.a: expected String, got Number", "inputs.b: required Number is missing"]})
                .to_string(),
            )
        } else {
            Reply::Json(502, "<html>bad gateway</html>".into())
        }
    });
    let run = mesg(&[
        "--node", &mock.url, "exec", "echo", "echo", "-d", "a=1", "--wait",
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines[0], "error: invalid inputs");
    assert_eq!(lines[1], "  inputs.a: expected String, got Number");
    assert_eq!(lines[2], "  inputs.b: required Number is missing");
    assert!(
        lines[3].starts_with("hint: each line above is the JSON path"),
        "{run:#?}"
    );
    // `exec` asks first whether anyone provides the service (here: no answer, so it
    // goes on as usual), then creates the execution.
    let sent = mock.requests();
    assert_eq!(sent[0].target, "/v1/network/services");
    let post = sent
        .iter()
        .find(|r| r.method == "POST")
        .expect("the create");
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["inputs"], json!({"a": 1}));
    assert!(post.target.ends_with("?wait=true"));
    // Not the API's JSON: still one readable error.
    let run = mesg(&["--node", &mock.url, "node", "info"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim_end(),
        "error: the node answered HTTP 502 Bad Gateway: <html>bad gateway</html>"
    );
}

#[test]
fn verify_checks_the_executor_signature() {
    let executor = Keypair::generate().unwrap();
    let forger = Keypair::generate().unwrap();
    let good_id = ExecutionId::random();
    let bad_id = ExecutionId::random();
    let result = |id: ExecutionId| ExecutionResult {
        execution_id: id,
        request_digest: Hash32::sha256(b"request"),
        service_hash: service_hash(),
        task_key: "echo".into(),
        executor: executor.public(),
        instance_hash: None,
        outcome: Outcome::Completed {
            outputs: Json(json!({"message": "hi"})),
        },
        started_at: Some(now_ms() - 5),
        finished_at: now_ms(),
    };
    let sign = |key: &Keypair, id| {
        serde_json::to_string(
            &Signed::sign(
                key,
                domains::EXECUTION_RESULT,
                &result(id),
                now_ms(),
                60_000,
                MAX_WORK_MESSAGE,
            )
            .unwrap(),
        )
        .unwrap()
    };
    let good = sign(&executor, good_id);
    // Signed by someone else than the executor it names.
    let forged = sign(&forger, bad_id);
    let (g, b) = (good_id.to_string(), bad_id.to_string());
    let mock = Mock::start(move |req| {
        if req.target == format!("/v1/executions/{g}/result") {
            Reply::Json(200, good.clone())
        } else if req.target == format!("/v1/executions/{b}/result") {
            Reply::Json(200, forged.clone())
        } else {
            not_found("execution")
        }
    });
    let run = mesg(&[
        "--node",
        &mock.url,
        "executions",
        "verify",
        &good_id.to_string(),
    ]);
    run.ok();
    assert!(
        run.stdout
            .contains(&format!("executor:   {}", executor.public())),
        "{run:#?}"
    );
    assert!(run.stdout.contains("outcome:    Completed"), "{run:#?}");
    assert!(run.stdout.contains("signature valid"), "{run:#?}");

    let run = mesg(&[
        "--node",
        &mock.url,
        "executions",
        "verify",
        &bad_id.to_string(),
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(!run.stdout.contains("signature valid"), "{run:#?}");
    assert!(run.stderr.contains("signature invalid"), "{run:#?}");

    let json = mesg(&[
        "--node",
        &mock.url,
        "--json",
        "executions",
        "verify",
        &bad_id.to_string(),
    ]);
    assert_eq!(json.code, 1);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["valid"], false);
}

#[test]
fn executions_list_follows_the_cursor_with_all() {
    let key = Keypair::generate().unwrap().public().to_string();
    let created = now_ms() - 2 * 3_600_000 - 600_000;
    let execution = |n: u64| {
        json!({
            "id": format!("{n:032x}"), "service_hash": service_hash().to_string(),
            "task_key": "echo", "inputs": {}, "requester": key, "requester_node": key,
            "executor": null, "instance_hash": null, "status": "Completed", "outputs": {},
            "error": null, "parent": null, "process": null, "tags": [], "timeout_ms": 1000,
            "created_at": created, "started_at": created + 1000,
            "finished_at": created + 1120,
        })
    };
    let (p1, p2) = (
        json!({"executions": [execution(3), execution(2)], "next": "100:2"}),
        json!({"executions": [execution(1)], "next": null}),
    );
    let mock = Mock::start(move |req| {
        if req.target.starts_with("/v1/executions?") || req.target == "/v1/executions" {
            if req.target.contains("before=100%3A2") {
                Reply::Json(200, p2.to_string())
            } else {
                Reply::Json(200, p1.to_string())
            }
        } else if req.target == "/v1/services" {
            services_answer()
        } else {
            not_found("route")
        }
    });
    let run = mesg(&[
        "--node",
        &mock.url,
        "executions",
        "list",
        "--all",
        "--status",
        "completed",
    ]);
    run.ok();
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(rows.len(), 4, "{run:#?}");
    assert!(rows[0].starts_with("ID "), "{run:#?}");
    assert!(
        rows[1].starts_with("00000000  echo     echo  Completed  2h ago"),
        "{run:#?}"
    );
    assert!(rows[1].ends_with("120 ms"), "{run:#?}");
    let first = &mock.requests()[0];
    assert!(first.target.contains("status=Completed"), "{first:?}");
    // Without --all: one page, and a note that there is more.
    let run = mesg(&["--node", &mock.url, "executions", "list"]);
    run.ok();
    assert_eq!(run.stdout.lines().count(), 3);
    assert!(run.stderr.contains("more executions match"), "{run:#?}");
}

fn step(
    status: &str,
    at: u64,
    output: serde_json::Value,
    attempts: &[(&str, u64)],
) -> serde_json::Value {
    json!({
        "status": status, "output": output, "error": null,
        "attempts": attempts.iter().map(|(id, t)| json!({
            "execution_id": id, "started_at": t, "finished_at": null, "error": null,
        })).collect::<Vec<_>>(),
        "started_at": at, "finished_at": if status == "done" { json!(at) } else { json!(null) },
        "retry_at": if status == "waiting" { json!(at) } else { json!(null) },
    })
}

#[test]
fn process_logs_print_one_line_per_change_of_a_run() {
    const T: u64 = 1_709_210_096_000; // 12:34:56.000 UTC
    let definition = mesg_protocol::process::ProcessDefinition::from_yaml(
        "name: demo\nsteps:\n  - key: tick\n    trigger: {service: echo, event: tick}\n  - key: say\n    task: {service: echo, task: echo, inputs: {count: {step: tick, path: count}}}\n",
        &Default::default(),
        &|_: &str| None,
    )
    .unwrap();
    let pid = Hash32::sha256(b"process").to_base58();
    let view = json!({"id": pid, "name": "demo", "definition": definition, "services": {},
                      "created_at": T - 60_000, "runs_running": 1});
    let (r1, r2) = ("1".repeat(32), "2".repeat(32));
    let (e1, e2) = ("a".repeat(32), "b".repeat(32));
    let run = |id: &str, status: &str, steps: serde_json::Value, finished: Option<u64>| {
        json!({"id": id, "process": pid, "status": status, "error": null,
               "trigger_execution": null, "steps": steps, "started_at": T,
               "finished_at": finished})
    };
    let tick = step("done", T, json!({"count": 7}), &[]);
    // In progress when `logs` starts: its next change is shown against this.
    let seed = run(
        &r1,
        "running",
        json!({"tick": tick, "say": step("running", T + 10, json!(null), &[(&e1, T + 10)])}),
        None,
    );
    let said =
        json!({"tick": tick, "say": step("done", T + 250, json!({"count": 7}), &[(&e1, T + 10)])});
    let stream: Vec<serde_json::Value> = vec![
        seed.clone(),
        run(&r1, "running", said.clone(), None),
        run(&r1, "completed", said, Some(T + 300)),
        run(
            &r2,
            "running",
            json!({"tick": tick, "say": step("waiting", T + 1_000, json!(null), &[])}),
            None,
        ),
        run(
            &r2,
            "running",
            json!({"tick": tick, "say": step("running", T + 1_001, json!(null), &[(&e2, T + 1_001)])}),
            None,
        ),
    ];
    let mut chunks: Vec<Vec<u8>> = stream
        .iter()
        .map(|r| format!("event: run\ndata: {r}\n\n").into_bytes())
        .collect();
    chunks.insert(2, b"event: lagged\ndata: 2\n\n".to_vec());
    let (list, runs) = (
        json!({"processes": [view.clone()]}).to_string(),
        json!({"runs": [seed]}).to_string(),
    );
    let p = pid.clone();
    let mock = Mock::start(move |req| {
        // The API takes the name as well as the id.
        let target = req
            .target
            .replace("/v1/processes/demo", &format!("/v1/processes/{p}"));
        if target == "/v1/processes" {
            Reply::Json(200, list.clone())
        } else if target == format!("/v1/processes/{p}") {
            Reply::Json(200, view.to_string())
        } else if target == format!("/v1/processes/{p}/runs?limit=100") {
            Reply::Json(200, runs.clone())
        } else if target == format!("/v1/processes/{p}/logs") {
            Reply::Stream {
                content_type: "text/event-stream",
                chunks: chunks.clone(),
            }
        } else {
            not_found("route")
        }
    });
    // By a prefix of its id.
    let run = mesg(&["--node", &mock.url, "process", "logs", &pid[..6]]);
    run.ok();
    assert_eq!(
        run.stdout,
        format!(
            "12:34:56.250  11111111  running    say done {{\"count\":7}}\n\
             12:34:56.300  11111111  completed  run completed in 300 ms\n\
             12:34:57.000  22222222  running    tick done {{\"count\":7}}\n\
             12:34:57.001  22222222  running    say running execution bbbbbbbb\n"
        ),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("following runs of demo (1 in progress"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("missed some run updates"), "{run:#?}");
    // --json: every Run as it came, one per line.
    let json = mesg(&["--node", &mock.url, "--json", "process", "logs", "demo"]);
    json.ok();
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, stream);
}

#[test]
fn deploy_with_an_account_sends_its_claim_on_the_sid() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    common::mesg_in(h, &["account", "create", "ci"]).ok();
    let accounts = common::json_of(&common::mesg_in(h, &["--json", "account", "list"]));
    let key = accounts["accounts"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("svc");
    mesg(&["service", "init", dir.to_str().unwrap()]).ok();
    let def: serde_json::Value = serde_json::to_value(
        mesg_protocol::ServiceDefinition::from_yaml(
            &std::fs::read_to_string(dir.join("mesg.yml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let done = json!({"type": "done", "service": {
        "hash": service_hash().to_string(), "sid": "svc", "name": "svc", "definition": def,
        "package_hash": Hash32::sha256(b"p").to_base58(), "package_size": 10,
        "publisher": Keypair::generate().unwrap().public().to_string(),
        "sid_publisher": key, "image": null, "deployed_at": now_ms(),
    }});
    let mock = Mock::start(move |_| Reply::Stream {
        content_type: "application/x-ndjson",
        chunks: vec![format!("{done}\n").into_bytes()],
    });
    let run = common::mesg_in(
        h,
        &[
            "--node",
            &mock.url,
            "--account",
            "ci",
            "service",
            "deploy",
            dir.to_str().unwrap(),
        ],
    );
    run.ok();
    assert!(
        run.stdout
            .contains(&format!("sid publisher: {key} (your account)")),
        "{run:#?}"
    );
    let sent = mock.requests();
    let deploy = sent.iter().find(|r| r.method == "POST").expect("deploy");
    let claim = mesg_protocol::SignedClaim::from_hex(
        deploy
            .header("x-mesg-publisher-claim")
            .expect("claim header"),
    )
    .unwrap();
    let pkg = mesg_package::Package::from_tar(&deploy.body, 1 << 30).unwrap();
    let hash = pkg.definition().unwrap().service_hash(&pkg.hash());
    let c = claim.verify_for(&hash, "svc", now_ms()).unwrap();
    assert_eq!(c.publisher.to_string(), key);
}
