//! Issue 15 on real nodes and real Docker: k-of-n verification rounds.
//! - Three providers of a deterministic task, one a faulty double (same service, other
//!   outputs): 2-of-3 executions complete with the honest answer, the double's
//!   disagreement is recorded, its reputation drops and plain executions avoid it.
//! - Two honest providers that disagree by design: `verification undecided`, both groups.
//! - An executor killed in the middle of a round: the round still ends (the others'
//!   verdict, or undecided), long before the deadline.
//! - `mesg executions verify`'s check of the record (the protocol's `check_verification`)
//!   holds for every record the node wrote.

mod common;

use common::Api;
use mesg_protocol::evidence::check_verification;
use mesg_protocol::verification::VerificationRecord;
use mesg_testkit::NodeProcess;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn joined(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start(&["--bootstrap", &bootstrap.p2p_addr()])
}

/// A copy of echo whose `echo` and `sleep` tasks are deterministic and whose instances
/// may set `ECHO_TAMPER` (a faulty double appends it to every echoed message).
fn deterministic_echo(tag: &str) -> std::path::PathBuf {
    mesg_testkit::service_variant(
        "echo",
        tag,
        &[
            ("sid: echo\n", "sid: echo-det\n"),
            (
                "    - TICK_INTERVAL_MS=0\n",
                "    - TICK_INTERVAL_MS=0\n    - ECHO_TAMPER=\n",
            ),
            (
                "    description: Return the inputs unchanged.\n",
                "    description: Return the inputs unchanged.\n    deterministic: true\n",
            ),
            (
                "    description: Wait `ms` milliseconds, then answer.\n",
                "    description: Wait `ms` milliseconds, then answer.\n    deterministic: true\n",
            ),
        ],
    )
}

async fn verified(api: &Api, task: &str, inputs: Value, verify: &str) -> Value {
    let (status, e) = api
        .post(
            "/v1/executions?wait=true",
            json!({"service": "echo-det", "task": task, "inputs": inputs, "verify": verify, "timeout_ms": 60_000}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {e}");
    e
}

/// The record of `id`, checked as `mesg executions verify` checks it.
async fn record(api: &Api, id: &str) -> (Value, VerificationRecord) {
    let (status, raw) = api.get(&format!("/v1/executions/{id}/attempts")).await;
    assert_eq!(status, 200, "{raw}");
    let record: VerificationRecord = serde_json::from_value(raw.clone()).unwrap();
    let problems = check_verification(&record);
    assert!(problems.is_empty(), "{problems:?}\n{raw}");
    (raw, record)
}

fn verdict_of(raw: &Value, node: &str) -> Option<String> {
    raw["attempts"]
        .as_array()?
        .iter()
        .find(|a| a["executor"] == node)
        .and_then(|a| a["verdict"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_three_with_a_faulty_double_completes_with_the_honest_answer_and_the_double_goes_last()
 {
    let b = NodeProcess::start(&[]);
    let d = joined(&b);
    let f = joined(&b);
    let c = joined(&b);
    let det = deterministic_echo("faulty");
    Api::new(&b).deploy_and_start(&det, json!({})).await;
    Api::new(&d).deploy_and_start(&det, json!({})).await;
    Api::new(&f)
        .deploy_and_start(&det, json!({"ECHO_TAMPER": " (wrong)"}))
        .await;
    let api = Api::new(&c);
    api.wait_providers("echo-det", 3).await;

    // Every verified execution completes with the honest answer; the double's attempt
    // never agrees. It disagrees whenever it committed before the decision (else it was
    // not needed: cancelled), which is most of the time: run until it has.
    let mut caught = 0;
    for i in 0..12 {
        let message = format!("m{i}");
        let e = verified(&api, "echo", json!({"message": message}), "2/3").await;
        assert_eq!(e["status"], "Completed", "{e}");
        assert_eq!(e["outputs"]["message"], message.as_str(), "{e}");
        assert_ne!(e["executor"], f.public_key.as_str(), "{e}");
        let id = e["id"].as_str().unwrap();
        let (raw, rec) = record(&api, id).await;
        assert_eq!(rec.attempts.len(), 3, "{raw}");
        let decision = &raw["decision"]["agreed"];
        assert_eq!(decision["outputs"]["message"], message.as_str(), "{raw}");
        let winners: Vec<&str> = decision["executors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert!(!winners.contains(&f.public_key.as_str()), "{raw}");
        match verdict_of(&raw, &f.public_key).as_deref() {
            Some("disagreed") => caught += 1,
            Some("cancelled") | None => {}
            other => panic!("the double's verdict: {other:?}\n{raw}"),
        }
        if caught >= 2 {
            break;
        }
    }
    assert!(
        caught >= 1,
        "the faulty double never committed before a decision"
    );

    // Its reputation shows it, and plain executions go to the honest providers.
    let (_, peers) = api.get("/v1/peers").await;
    let rep = peers["reputation"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["node"] == f.public_key.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("F in {peers}"));
    assert!(rep["disagreed"].as_u64().unwrap_or(0) >= 1, "{rep}");
    for i in 0..8 {
        let (status, e) = api
            .exec("echo-det", "echo", json!({"message": format!("p{i}")}))
            .await;
        assert_eq!(status, 201, "{e}");
        assert_eq!(e["status"], "Completed", "{e}");
        assert_ne!(e["executor"], f.public_key.as_str(), "chosen last: {e}");
    }

    // `mesg executions verify` says the same from the record alone.
    let id = verified(&api, "echo", json!({"message": "cli"}), "2/3").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cli = std::process::Command::new(mesg_testkit::binary("mesg"));
    cli.args(["executions", "verify", &id])
        .env("MESG_NODE", c.api_url())
        .env("NO_COLOR", "1");
    if let Some(token) = c.token() {
        cli.env("MESG_TOKEN", token);
    }
    let out = cli.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verification valid"), "{text}");
    assert!(text.contains("agreed"), "{text}");
    let _ = std::fs::remove_dir_all(det);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_honest_providers_that_disagree_by_design_end_undecided_with_both_groups() {
    let b = NodeProcess::start(&[]);
    let d = joined(&b);
    let c = joined(&b);
    let det = deterministic_echo("undecided");
    // Not deterministic after all: each node answers its own way.
    Api::new(&b)
        .deploy_and_start(&det, json!({"ECHO_TAMPER": "-b"}))
        .await;
    Api::new(&d)
        .deploy_and_start(&det, json!({"ECHO_TAMPER": "-d"}))
        .await;
    let api = Api::new(&c);
    api.wait_providers("echo-det", 2).await;

    let e = verified(&api, "echo", json!({"message": "x"}), "2/2/2").await;
    assert_eq!(e["status"], "Failed", "{e}");
    let error = e["error"].as_str().unwrap();
    assert!(error.contains("verification undecided"), "{error}");
    let (raw, rec) = record(&api, e["id"].as_str().unwrap()).await;
    let groups = raw["decision"]["undecided"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "both groups kept: {raw}");
    assert!(rec.attempts.iter().all(|a| a.reveal.is_some()), "{raw}");
    for node in [&b.public_key, &d.public_key] {
        assert_eq!(
            verdict_of(&raw, node).as_deref(),
            Some("disagreed"),
            "{raw}"
        );
    }
    let _ = std::fs::remove_dir_all(det);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_killed_in_the_middle_of_a_round_never_leaves_it_stuck() {
    let b = NodeProcess::start(&[]);
    let d = joined(&b);
    let mut k = joined(&b);
    let c = joined(&b);
    let det = deterministic_echo("crash");
    for n in [&b, &d, &k] {
        Api::new(n).deploy_and_start(&det, json!({})).await;
    }
    let api = Api::new(&c);
    api.wait_providers("echo-det", 3).await;

    // 2-of-3: K dies while the three sleep; B and D still agree.
    let run = |verify: &'static str| {
        let api = Api::new(&c);
        tokio::spawn(async move { verified(&api, "sleep", json!({"ms": 2500}), verify).await })
    };
    let started = Instant::now();
    let two_of_three = run("2/3");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    k.kill();
    let e = two_of_three.await.unwrap();
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["outputs"]["slept"], 2500, "{e}");
    let (raw, _) = record(&api, e["id"].as_str().unwrap()).await;
    let v = verdict_of(&raw, &k.public_key);
    assert!(
        matches!(v.as_deref(), Some("timed_out" | "cancelled") | None),
        "{raw}"
    );

    // 3-of-3 with K gone for good: undecided as soon as it is known, not at the 60 s
    // deadline.
    k.start_again();
    api.wait_providers("echo-det", 3).await;
    let three = run("3/3/3");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    k.kill();
    let e = three.await.unwrap();
    assert_eq!(e["status"], "Failed", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("verification undecided"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the rounds waited for their deadline: {:?}",
        started.elapsed()
    );
    let (raw, _) = record(&api, e["id"].as_str().unwrap()).await;
    assert_eq!(
        verdict_of(&raw, &k.public_key).as_deref(),
        Some("timed_out"),
        "{raw}"
    );
    let _ = std::fs::remove_dir_all(det);
}

#[tokio::test(flavor = "multi_thread")]
async fn adaptive_replication_verifies_trusted_providers_only_by_sample() {
    let b = NodeProcess::start(&[]);
    let d = joined(&b);
    let c = NodeProcess::start(&["--bootstrap", &b.p2p_addr(), "--adaptive-verification"]);
    let det = deterministic_echo("adaptive");
    for n in [&b, &d] {
        Api::new(n).deploy_and_start(&det, json!({})).await;
    }
    let api = Api::new(&c);
    api.wait_providers("echo-det", 2).await;

    // Unknown providers are verified every time; after 10 agreed verdicts in a row a
    // provider's sample rate falls (10/N after N in a row): some executions are run by one
    // trusted executor alone (a 1-of-1 round in the record), and they still complete
    // right. Each 2-of-2 round gives both providers an agreed verdict.
    let mut sampled = 0;
    for i in 0..60 {
        let message = format!("a{i}");
        let e = verified(&api, "echo", json!({"message": message}), "2/2/2").await;
        assert_eq!(e["status"], "Completed", "{e}");
        assert_eq!(e["outputs"]["message"], message.as_str(), "{e}");
        let (raw, rec) = record(&api, e["id"].as_str().unwrap()).await;
        if rec.spec.replicas == 1 {
            assert!(i >= 10, "sampled before 10 agreed verdicts in a row: {raw}");
            assert_eq!(rec.attempts.len(), 1, "{raw}");
            sampled += 1;
        } else {
            assert_eq!(rec.attempts.len(), 2, "{raw}");
        }
    }
    assert!(sampled > 0, "no execution was sampled out in 50 chances");
    assert!(sampled < 50, "every later execution skipped verification");
    let _ = std::fs::remove_dir_all(det);
}
