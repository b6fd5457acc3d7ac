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
    let body: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(body["inputs"], json!({"a": 1}));
    assert!(mock.requests()[0].target.ends_with("?wait=true"));
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
