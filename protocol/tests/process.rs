//! The process format: parsing, validation with step and path, evaluation.

use mesg_protocol::ServiceDefinition;
use mesg_protocol::process::*;
use serde_json::json;
use std::collections::BTreeMap;

const FULL: &str = r#"
name: tick-to-kv
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - filter:
      all:
        - {path: count, gte: 2}
        - any:
          - {path: value, eq: "$(env:WANT)"}
          - {path: value, exists: false}
  - key: payload
    map:
      key: last-tick
      value: {step: tick, path: count}
      list: [1, {step: tick}]
      literal: {const: {step: not-a-ref}}
  - key: store
    task:
      service: kv
      task: set
      inputs: {step: payload}
      retries: 2
      backoff: 500ms
      timeout: 5s
      on_error: alert
  - key: read
    after: store
    task: {service: kv, task: get, inputs: {key: last-tick}}
  - key: alert
    task: {service: echo, task: echo, inputs: {message: "failed for $(env:WHO)"}}
  - key: alert2
    task: {service: echo, task: echo, inputs: {message: {step: tick, path: value}}}
"#;

fn env() -> BTreeMap<String, String> {
    [
        ("WANT".to_string(), "x".to_string()),
        ("WHO".to_string(), "ops".to_string()),
    ]
    .into_iter()
    .collect()
}

fn services(name: &str) -> Option<ServiceDefinition> {
    let yaml = match name {
        "echo" => {
            "name: e\ntasks:\n  echo:\n    inputs:\n      message: {type: String, optional: true}\nevents:\n  tick:\n    data:\n      count: {type: Number}\n      value: {type: Any, optional: true}\n"
        }
        "kv" => {
            "name: kv\ntasks:\n  set:\n    inputs:\n      key: {type: String}\n      value: {type: Any}\n  get:\n    inputs:\n      key: {type: String}\n"
        }
        _ => return None,
    };
    Some(ServiceDefinition::from_yaml(yaml).unwrap())
}

#[test]
fn a_full_process_parses_with_chains_branches_and_error_branches() {
    let p = ProcessDefinition::from_yaml(FULL, &env(), &services).unwrap();
    assert_eq!(p.name, "tick-to-kv");
    let after: Vec<(&str, Option<&str>)> = p
        .steps
        .iter()
        .map(|s| (s.key.as_str(), s.after.as_deref()))
        .collect();
    assert_eq!(
        after,
        vec![
            ("tick", None),
            ("step1", Some("tick")),
            ("payload", Some("step1")),
            ("store", Some("payload")),
            ("read", Some("store")),
            ("alert", None),
            ("alert2", Some("alert")),
        ]
    );
    let StepKind::Task(t) = &p.step("store").unwrap().kind else {
        panic!()
    };
    assert_eq!(
        (t.retries, t.backoff_ms, t.timeout_ms),
        (2, 500, Some(5000))
    );
    assert_eq!(t.on_error.as_deref(), Some("alert"));
    let StepKind::Task(alert) = &p.step("alert").unwrap().kind else {
        panic!()
    };
    assert_eq!(
        alert.inputs,
        Expr::Object([("message".to_string(), Expr::Const(json!("failed for ops")))].into())
    );
    assert_eq!(p.successors("store").len(), 1);
    assert_eq!(p.trigger().source, TriggerSource::Event("tick".into()));
}

#[test]
fn conditions_and_expressions_evaluate_against_step_outputs() {
    let p = ProcessDefinition::from_yaml(FULL, &env(), &services).unwrap();
    let StepKind::Filter(cond) = &p.steps[1].kind else {
        panic!()
    };
    let StepKind::Map(map) = &p.steps[2].kind else {
        panic!()
    };
    let mut outputs = Outputs::new();
    outputs.insert("tick".into(), json!({"count": 3}));
    assert!(cond.eval(&outputs, "tick"), "count >= 2 and value absent");
    outputs.insert("tick".into(), json!({"count": 3, "value": "x"}));
    assert!(cond.eval(&outputs, "tick"));
    outputs.insert("tick".into(), json!({"count": 3, "value": "y"}));
    assert!(!cond.eval(&outputs, "tick"), "value neither absent nor x");
    outputs.insert("tick".into(), json!({"count": 1}));
    assert!(!cond.eval(&outputs, "tick"));
    outputs.insert("tick".into(), json!({"count": 5}));
    assert_eq!(
        map.eval(&outputs).unwrap(),
        json!({"key": "last-tick", "value": 5, "list": [1, {"count": 5}], "literal": {"step": "not-a-ref"}})
    );
    let missing = Expr::Ref {
        step: "tick".into(),
        path: Path::parse("nope[2]").unwrap(),
    };
    assert_eq!(
        missing.eval(&outputs).unwrap_err(),
        "step `tick` has no `nope[2]`"
    );
}

#[test]
fn every_operator() {
    let out: Outputs = [(
        "s".to_string(),
        json!({"n": 5, "t": "hello", "l": [1, 2], "o": {"k": 1}, "z": null}),
    )]
    .into();
    let case = |path: &str, op: Op, value: serde_json::Value| {
        Condition::Test {
            step: None,
            path: Path::parse(path).unwrap(),
            op,
            value,
        }
        .eval(&out, "s")
    };
    assert!(case("n", Op::Eq, json!(5)) && !case("n", Op::Eq, json!("5")));
    assert!(case("n", Op::Ne, json!(4)) && case("missing", Op::Ne, json!(4)));
    assert!(case("n", Op::Gt, json!(4)) && !case("n", Op::Gt, json!(5)));
    assert!(
        case("n", Op::Gte, json!(5)) && case("n", Op::Lte, json!(5)) && case("n", Op::Lt, json!(6))
    );
    assert!(case("t", Op::Gt, json!("abc")) && !case("t", Op::Gt, json!(1)));
    assert!(
        case("t", Op::Contains, json!("ell"))
            && case("l", Op::Contains, json!(2))
            && case("o", Op::Contains, json!("k"))
    );
    assert!(!case("l", Op::Contains, json!(3)));
    assert!(
        case("n", Op::Exists, json!(true))
            && case("z", Op::Exists, json!(false))
            && case("q", Op::Exists, json!(false))
    );
    assert!(case("l[1]", Op::Eq, json!(2)) && !case("l[9]", Op::Exists, json!(true)));
}

/// (yaml steps after a valid trigger, expected path prefix, words the message contains)
const BAD: &[(&str, &str, &str)] = &[
    (
        "  - task: {service: kv, task: nope}\n",
        "steps[1] (step1).task.task",
        "no task `nope`",
    ),
    (
        "  - task: {service: kv, task: set, inputs: {key: 1, value: 2}}\n",
        "steps[1] (step1).task.inputs.key",
        "expected String, got Number",
    ),
    (
        "  - task: {service: kv, task: set, inputs: {value: 2}}\n",
        "steps[1] (step1).task.inputs.key",
        "required String is missing",
    ),
    (
        "  - task: {service: kv, task: set, inputs: {key: a, value: 1, extra: 1}}\n",
        "steps[1] (step1).task.inputs.extra",
        "unknown input",
    ),
    (
        "  - map: {a: {step: later}}\n  - key: later\n    map: 1\n",
        "steps[1] (step1)",
        "comes at or after",
    ),
    (
        "  - map: {a: {step: ghost}}\n",
        "steps[1] (step1)",
        "does not exist",
    ),
    (
        "  - key: a\n    after: b\n    map: 1\n  - key: b\n    map: 2\n",
        "steps[1] (a).after",
        "no cycles",
    ),
    (
        "  - after: nowhere\n    map: 1\n",
        "steps[1] (step1).after",
        "no step `nowhere`",
    ),
    (
        "  - task: {service: kv, task: get, inputs: {key: a}, on_error: ghost}\n",
        "steps[1] (step1).task.on_error",
        "no step `ghost`",
    ),
    (
        "  - key: e\n    map: 1\n  - task: {service: kv, task: get, inputs: {key: a}, on_error: e}\n",
        "steps[2] (step2).task.on_error",
        "must come after",
    ),
    (
        "  - filter: {path: x, gt: [1]}\n",
        "steps[1] (step1).filter.gt",
        "number or a string",
    ),
    (
        "  - filter: {path: x}\n",
        "steps[1] (step1).filter",
        "exactly one of eq",
    ),
    (
        "  - filter: {path: x, eq: 1, ne: 2}\n",
        "steps[1] (step1).filter",
        "exactly one of eq",
    ),
    (
        "  - filter: {path: \"a..b\", eq: 1}\n",
        "steps[1] (step1).filter.path",
        "empty path segment",
    ),
    (
        "  - filter: {all: []}\n",
        "steps[1] (step1).filter.all",
        "at least one",
    ),
    (
        "  - map: 1\n    task: {service: kv, task: get}\n",
        "steps[1] (step1)",
        "exactly one of",
    ),
    (
        "  - trigger: {service: echo, event: tick}\n",
        "steps[1] (step1)",
        "only the first step",
    ),
    (
        "  - task: {service: kv, task: get, inputs: {key: a}, retries: 99}\n",
        "steps[1] (step1).task.retries",
        "0 to 20",
    ),
    (
        "  - task: {service: kv, task: get, inputs: {key: a}, timeout: soon}\n",
        "steps[1] (step1).task.timeout",
        "not a duration",
    ),
    (
        "  - task: {service: kv, task: get, inputs: {key: \"$(env:MISSING)\"}}\n",
        "steps[1] (step1).task.inputs.key",
        "`$(env:MISSING)` is not set",
    ),
    ("  - mapp: 1\n", "steps[1].mapp", "unknown field"),
    (
        "  - key: \"bad key\"\n    map: 1\n",
        "steps[1].key",
        "letters, digits",
    ),
    (
        "  - key: x\n    map: 1\n  - key: x\n    map: 2\n",
        "steps[2] (x)",
        "duplicate step key",
    ),
    (
        "  - key: a\n    task: {service: kv, task: get, inputs: {key: a}, on_error: e}\n  - key: b\n    map: 1\n  - key: e\n    map: {step: b}\n",
        "steps[3] (e)",
        "another branch",
    ),
];

#[test]
fn invalid_processes_report_the_step_and_path() {
    for (steps, path, words) in BAD {
        let yaml = format!(
            "name: p\nsteps:\n  - key: t\n    trigger: {{service: echo, event: tick}}\n{steps}"
        );
        let errors = match ProcessDefinition::from_yaml(&yaml, &env(), &services) {
            Ok(p) => panic!("accepted:\n{yaml}\n{p:?}"),
            Err(e) => e.0,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.path.starts_with(path) && e.message.contains(words)),
            "{yaml}\nexpected `{path}` ... `{words}`, got:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn top_level_errors_and_unknown_services_are_reported() {
    let e = ProcessDefinition::from_yaml("steps: []\n", &env(), &services).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("name: required") && text.contains("steps: needs at least a trigger"),
        "{text}"
    );
    let e = ProcessDefinition::from_yaml("name: p\nsteps:\n  - map: 1\n", &env(), &services)
        .unwrap_err();
    assert!(
        e.to_string().contains("first step must be a `trigger`"),
        "{e}"
    );
    let e = ProcessDefinition::from_yaml(
        "name: p\nsteps:\n  - trigger: {service: echo, event: nope}\n",
        &env(),
        &services,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no event `nope`"), "{e}");
    // Unknown services are not an error: they may be deployed later or elsewhere.
    ProcessDefinition::from_yaml(
        "name: p\nsteps:\n  - trigger: {service: other, result: t}\n  - task: {service: ghost, task: t}\n",
        &env(),
        &services,
    )
    .unwrap();
}

/// Unknown fields of a process file name the closest allowed field, as they do in
/// `mesg.yml` (both languages walk their files with the same walker).
#[test]
fn unknown_fields_suggest_what_was_meant() {
    let yaml = "name: p\nsetps: []\n";
    let errors = ProcessDefinition::from_yaml(yaml, &env(), &services)
        .unwrap_err()
        .0;
    let e = errors.iter().find(|e| e.path == "setps").expect("setps");
    assert_eq!(
        e.to_string(),
        "2:1: setps: unknown field (did you mean `steps`?); allowed fields: name, max_depth, rate_limit, steps"
    );
    assert_eq!(e.suggestion.as_deref(), Some("steps"));

    let yaml = "name: p\nsteps:\n  - key: t\n    triger: {service: echo, event: tick}\n  - filter: {path: count, gtee: 2}\n  - task: {service: kv, task: get, inputs: {key: a}, retires: 2}\n";
    let errors = ProcessDefinition::from_yaml(yaml, &env(), &services)
        .unwrap_err()
        .0;
    for (path, meant) in [
        ("steps[0].triger", "trigger"),
        ("steps[1] (step1).filter.gtee", "gte"),
        ("steps[2] (step2).task.retires", "retries"),
    ] {
        let e = errors
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {errors:?}"));
        assert!(
            e.message.starts_with(&format!(
                "unknown field (did you mean `{meant}`?); allowed fields: "
            )),
            "{e}"
        );
        assert_eq!(e.suggestion.as_deref(), Some(meant));
    }
    // Nothing close: no suggestion, the allowed fields still listed.
    let e = ProcessDefinition::from_yaml("name: p\nsteps: []\nzzzzz: 1\n", &env(), &services)
        .unwrap_err();
    let unknown = e.0.iter().find(|e| e.path == "zzzzz").unwrap();
    assert_eq!(
        unknown.message,
        "unknown field; allowed fields: name, max_depth, rate_limit, steps"
    );
    assert_eq!(unknown.suggestion, None);
}

/// An empty name was refused without saying why (the error list was empty).
#[test]
fn an_empty_name_is_reported() {
    let e = ProcessDefinition::from_yaml(
        "name: \"\"\nsteps:\n  - trigger: {service: echo, event: tick}\n",
        &env(),
        &services,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "1:7: name: must not be empty");
}

/// A list expected and something else given says what was given.
#[test]
fn a_wrong_type_says_what_was_expected_and_what_was_given() {
    let e =
        ProcessDefinition::from_yaml("name: p\nsteps: {a: 1}\n", &env(), &services).unwrap_err();
    assert_eq!(
        e.to_string(),
        "2:8: steps: expected a list of steps, got a mapping"
    );
}

#[test]
fn a_definition_round_trips_through_json() {
    let p = ProcessDefinition::from_yaml(FULL, &env(), &services).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    let back: ProcessDefinition = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

/// The example in docs/processes.md, validated against the real example services
/// (testnet/services/): it referenced `confirm` from a step on another branch, which
/// validation refuses, so the documented example could not be created.
#[test]
fn the_documented_example_is_a_valid_process() {
    let doc = include_str!("../../docs/processes.md");
    let start = doc
        .find("```yaml\n")
        .expect("a yaml block in docs/processes.md")
        + 8;
    let end = start + doc[start..].find("```").expect("the end of the yaml block");
    let echo = ServiceDefinition::from_yaml(include_str!("../../testnet/services/echo/mesg.yml"))
        .expect("echo's mesg.yml");
    let kv = ServiceDefinition::from_yaml(include_str!("../../testnet/services/kv/mesg.yml"))
        .expect("kv's mesg.yml");
    let lookup = |name: &str| match name {
        "echo" => Some(echo.clone()),
        "kv" => Some(kv.clone()),
        _ => None,
    };
    let env = BTreeMap::from([("WHO".to_string(), "ops".to_string())]);
    let def = ProcessDefinition::from_yaml(&doc[start..end], &env, &lookup)
        .unwrap_or_else(|e| panic!("the example of docs/processes.md is invalid:\n{e}"));
    assert_eq!(def.name, "tick-pipeline");
}
