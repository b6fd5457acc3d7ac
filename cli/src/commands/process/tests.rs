//! Unit tests of the process commands' pure parts.

use super::*;
use mesg_api_types::Attempt;
use serde_json::json;
use std::collections::HashMap;

fn env_of(text: &str, given: &[(&str, &str)], shell: &[(&str, &str)]) -> Result<FileEnv, String> {
    let given: Vec<(String, String)> = given
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let shell: HashMap<String, String> = shell
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    collect_env(text, &given, |n| shell.get(n).cloned())
}

const FILE: &str = r#"
name: $(env:NAME)-pipeline   # $(env:IN_A_COMMENT) is not substituted
steps:
  - key: tick
    trigger: {service: "$(env:SERVICE)", event: tick}
  - key: alert
    task:
      service: echo
      task: echo
      inputs: {message: "to $(env:WHO) and $(env:WHO), from $(env:NAME)", count: 3}
"#;

#[test]
fn the_files_env_references_are_its_values_only() {
    assert_eq!(
        env_names(FILE).unwrap(),
        vec!["NAME", "SERVICE", "WHO"],
        "in order of first use, once each, comments left out"
    );
    assert_eq!(
        env_names("name: x\nsteps: []\n").unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(env_names("a: [unclosed"), None);
}

#[test]
fn env_comes_from_flags_then_the_environment() {
    let got = env_of(
        FILE,
        &[("WHO", "ops"), ("NAME", "flag")],
        &[
            ("NAME", "shell"),
            ("SERVICE", "echo"),
            ("UNRELATED", "secret"),
        ],
    )
    .unwrap();
    let expected: BTreeMap<String, String> =
        [("NAME", "flag"), ("SERVICE", "echo"), ("WHO", "ops")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(
        got.env, expected,
        "--env wins; nothing else of the environment is sent"
    );
    assert!(got.unused.is_empty());
    // An empty value is a value.
    let got = env_of(FILE, &[("WHO", "")], &[("NAME", "n"), ("SERVICE", "s")]).unwrap();
    assert_eq!(got.env["WHO"], "");
}

#[test]
fn missing_env_is_an_error_naming_each_one() {
    let err = env_of(FILE, &[("WHO", "ops")], &[]).unwrap_err();
    assert!(err.contains("$(env:NAME), $(env:SERVICE)"), "{err}");
    assert!(err.contains("are not set"), "{err}");
    assert!(err.contains("--env NAME=VALUE"), "{err}");
    assert!(!err.contains("WHO"), "{err}");
    let err = env_of(FILE, &[], &[("NAME", "n"), ("SERVICE", "s")]).unwrap_err();
    assert!(err.contains("$(env:WHO), which is not set"), "{err}");
    // A reference in a comment is not asked for.
    assert!(!err.contains("IN_A_COMMENT"), "{err}");
}

#[test]
fn unused_and_duplicate_flags() {
    let got = env_of(
        FILE,
        &[
            ("WHO", "a"),
            ("NAME", "b"),
            ("SERVICE", "c"),
            ("WHOO", "typo"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(got.unused, vec!["WHOO"]);
    assert_eq!(got.env["WHOO"], "typo", "an explicit --env is still sent");
    let err = env_of(FILE, &[("WHO", "a"), ("WHO", "b")], &[]).unwrap_err();
    assert!(err.contains("given twice"), "{err}");
    // Not YAML: nothing is required (the node reports the YAML error).
    let got = env_of("a: [$(env:X)", &[], &[]).unwrap();
    assert!(got.env.is_empty());
}

fn step(status: &str, attempts: usize, output: Option<Value>, error: Option<&str>) -> StepRun {
    StepRun {
        status: serde_json::from_value(json!(status)).unwrap(),
        output,
        error: error.map(str::to_string),
        attempts: (0..attempts)
            .map(|i| Attempt {
                execution_id: format!("{:032x}", i + 10).parse().unwrap(),
                started_at: 1_000 + i as u64,
                finished_at: None,
                error: None,
            })
            .collect(),
        started_at: 1_000,
        finished_at: None,
        retry_at: None,
        waiting: None,
    }
}

fn run(status: &str, steps: Vec<(&str, StepRun)>) -> Run {
    Run {
        id: "ab".repeat(16),
        process: "p".into(),
        status: serde_json::from_value(json!(status)).unwrap(),
        error: None,
        trigger_execution: None,
        cause: None,
        steps: steps.into_iter().map(|(k, s)| (k.to_string(), s)).collect(),
        started_at: 1_000,
        finished_at: None,
    }
}

fn keys(changes: &[StepChange]) -> Vec<(&str, &str, usize)> {
    changes
        .iter()
        .map(|c| (c.key.as_str(), c.status.as_str(), c.attempts))
        .collect()
}

#[test]
fn run_diff_shows_new_and_changed_steps_only() {
    let order: Vec<String> = ["tick", "store", "alert"].map(String::from).to_vec();
    let first = run(
        "running",
        vec![
            ("tick", step("done", 0, Some(json!({"count": 3})), None)),
            ("store", step("running", 1, None, None)),
        ],
    );
    // A run seen for the first time: every step, in the process's order.
    let c = run_changes(None, &first, &order);
    assert_eq!(keys(&c), vec![("tick", "done", 0), ("store", "running", 1)]);
    assert_eq!(c[0].detail, r#"{"count":3}"#);
    assert_eq!(
        c[1].detail,
        format!("execution {}", short(&format!("{:032x}", 10), SHORT))
    );
    // Same snapshot again: nothing.
    assert!(run_changes(Some(&first), &first, &order).is_empty());
    assert_eq!(run_line(Some(&first), &first, &order), None);
    // The attempt failed, a retry is due.
    let mut waiting = first.clone();
    let s = waiting.steps.get_mut("store").unwrap();
    s.status = StepStatus::Waiting;
    s.attempts[0].error = Some("boom".into());
    s.attempts[0].finished_at = Some(1_500);
    s.retry_at = Some(2_500);
    let c = run_changes(Some(&first), &waiting, &order);
    assert_eq!(keys(&c), vec![("store", "waiting", 1)]);
    assert!(c[0].detail.contains("boom"), "{c:?}");
    // The second attempt: same status as the first snapshot, one more attempt.
    let mut second = waiting.clone();
    let s = second.steps.get_mut("store").unwrap();
    s.status = StepStatus::Running;
    s.attempts
        .push(step("running", 2, None, None).attempts[1].clone());
    let c = run_changes(Some(&first), &second, &order);
    assert_eq!(keys(&c), vec![("store", "running", 2)]);
    assert!(
        c[0].text().contains("store running (attempt 2) execution"),
        "{}",
        c[0].text()
    );
    // It fails for good; its error branch starts; the run goes on.
    let mut failed = second.clone();
    let s = failed.steps.get_mut("store").unwrap();
    s.status = StepStatus::Failed;
    s.error = Some("boom again".into());
    failed
        .steps
        .insert("alert".into(), step("running", 1, None, None));
    let c = run_changes(Some(&second), &failed, &order);
    assert_eq!(
        keys(&c),
        vec![("store", "failed", 2), ("alert", "running", 1)]
    );
    assert_eq!(c[0].detail, "boom again");
    // The run ends with no step change: the line says so.
    let mut done = failed.clone();
    done.steps.get_mut("alert").unwrap().status = StepStatus::Done;
    let mut ended = done.clone();
    ended.status = RunStatus::Completed;
    ended.finished_at = Some(3_200);
    assert!(run_changes(Some(&done), &ended, &order).is_empty());
    let line = run_line(Some(&done), &ended, &order).unwrap();
    assert!(
        line.starts_with("abababab  completed  run completed in 2.2 s"),
        "{line}"
    );
    // A failed run names its error once.
    let mut failing = second.clone();
    let s = failing.steps.get_mut("store").unwrap();
    s.status = StepStatus::Failed;
    s.error = Some("boom again".into());
    failing.status = RunStatus::Failed;
    failing.error = Some("step `store` failed: boom again".into());
    failing.finished_at = Some(2_000);
    let line = run_line(Some(&second), &failing, &order).unwrap();
    assert_eq!(
        line,
        "abababab  failed     store failed (attempt 2) boom again; run failed after 1.0 s"
    );
    // An error of the run itself is shown.
    let mut deleted = second.clone();
    deleted.status = RunStatus::Failed;
    deleted.error = Some("the process was deleted".into());
    deleted.finished_at = Some(1_100);
    let line = run_line(Some(&second), &deleted, &order).unwrap();
    assert_eq!(
        line,
        "abababab  failed     run failed after 100 ms: the process was deleted"
    );
}

#[test]
fn steps_outside_the_order_come_last_by_start() {
    let mut late = step("done", 0, None, None);
    late.started_at = 5;
    let mut early = step("done", 0, None, None);
    early.started_at = 1;
    let r = run(
        "running",
        vec![
            ("zeta", late),
            ("omega", early),
            ("tick", step("done", 0, None, None)),
        ],
    );
    let c = run_changes(None, &r, &["tick".to_string()]);
    assert_eq!(
        c.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        vec!["tick", "omega", "zeta"]
    );
}

#[test]
fn steps_read_as_a_tree_with_error_branches() {
    let yaml = r#"
name: demo
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: go
    filter: {path: value, eq: go}
  - key: payload
    map: {key: last, value: {step: tick, path: count}}
  - key: store
    task: {service: kv, task: set, inputs: {step: payload}, retries: 2, backoff: 500ms, timeout: 5s, on_error: alert, max_price: 5000}
  - key: confirm
    task: {service: kv, task: get, inputs: {key: {step: payload, path: key}}}
  - key: announce
    after: store
    task: {service: echo, task: echo, inputs: {count: 1}}
  - key: alert
    task: {service: echo, task: echo, inputs: {message: {step: store, path: error}}}
"#;
    let def = ProcessDefinition::from_yaml(yaml, &BTreeMap::new(), &|_: &str| None).unwrap();
    let rows = step_tree(&def);
    let labels: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "tick",
            "└─ go",
            "   └─ payload",
            "      └─ store",
            "         ├─ confirm",
            "         ├─ announce",
            "         └─ on error: alert",
        ]
    );
    assert_eq!(rows[0][2], "event echo.tick");
    assert_eq!(rows[1][2], r#"value eq "go""#);
    assert_eq!(rows[2][2], r#"{key: "last", value: @tick.count}"#);
    assert_eq!(rows[3][1], "task");
    assert_eq!(rows[3][2], "kv.set @payload");
    assert_eq!(
        rows[3][3],
        "retries 2 (backoff 500 ms, doubling), timeout 5.0 s, on error: alert, max price 5000 µc"
    );
    assert_eq!(rows[4][2], "kv.get {key: @payload.key}");
}
