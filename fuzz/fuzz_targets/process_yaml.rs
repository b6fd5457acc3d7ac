//! Process files (`POST /v1/processes` and `mesg process create`) as a user supplies them.
//!
//! The node first lists the services a file names (`process::service_refs`, best effort on
//! any text), then parses and validates it with `ProcessDefinition::from_yaml` against the
//! definitions of those services, with `$(env:NAME)` values from the request; it stores an
//! accepted definition as JSON and evaluates its filters and maps on every run.
//!
//! Properties checked (a panic, abort or sanitizer report is a failure):
//! - `service_refs`, `env_references` and `from_yaml` never panic on any UTF-8 text (the
//!   services `echo` and `kv` are known, with the definitions of testnet/services/);
//! - an accepted definition starts with its trigger (`trigger()` does not panic), every
//!   step's `after` names a step, and its JSON form (what the node stores) decodes again;
//! - every path written in it prints to text that parses back to the same path;
//! - its filters and maps evaluate without panicking on a few sample outputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesg_protocol::ServiceDefinition;
use mesg_protocol::process::{
    self, Condition, Expr, Outputs, Path, ProcessDefinition, StepKind, Trigger,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

struct Fixtures {
    echo: ServiceDefinition,
    kv: ServiceDefinition,
    env: BTreeMap<String, String>,
    samples: Vec<Value>,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        echo: ServiceDefinition::from_yaml(include_str!("../../testnet/services/echo/mesg.yml"))
            .expect("echo's mesg.yml parses"),
        kv: ServiceDefinition::from_yaml(include_str!("../../testnet/services/kv/mesg.yml"))
            .expect("kv's mesg.yml parses"),
        env: BTreeMap::from([
            ("WHO".to_string(), "ops".to_string()),
            ("N".to_string(), "3".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("NESTED".to_string(), "$(env:WHO)".to_string()),
        ]),
        samples: vec![
            Value::Null,
            json!({"count": 3, "message": "hi", "value": {"a": [1, "x", null, true]}}),
            json!([{"count": 2.5}, "x", [0, 1]]),
            json!({"count": "3", "found": false, "value": 1e300}),
        ],
    })
}

fn check_path(path: &Path) {
    let text = path.to_string();
    match Path::parse(&text) {
        Ok(back) => assert_eq!(&back, path, "path `{text}` parses to another path"),
        Err(e) => panic!("the path {path:?} prints as `{text}`, which does not parse: {e}"),
    }
}

fn walk_condition(c: &Condition) {
    match c {
        Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(walk_condition),
        Condition::Test { path, .. } => check_path(path),
    }
}

fn walk_expr(e: &Expr) {
    match e {
        Expr::Const(_) => {}
        Expr::Ref { path, .. } => check_path(path),
        Expr::List(items) => items.iter().for_each(walk_expr),
        Expr::Object(map) => map.values().for_each(walk_expr),
    }
}

fn accepted(def: &ProcessDefinition, samples: &[Value]) {
    let Trigger { .. } = def.trigger();
    for step in &def.steps {
        if let Some(after) = &step.after {
            assert!(
                def.step(after).is_some(),
                "step `{}` follows unknown `{after}`",
                step.key
            );
        }
        let _ = def.successors(&step.key);
    }
    let json = serde_json::to_vec(def).expect("a process definition serializes");
    if let Err(e) = serde_json::from_slice::<ProcessDefinition>(&json) {
        panic!("a stored process definition does not load again: {e}");
    }
    for sample in samples {
        let outputs: Outputs = def
            .steps
            .iter()
            .map(|s| (s.key.clone(), sample.clone()))
            .collect();
        let mut previous = def.steps[0].key.as_str();
        for step in &def.steps {
            match &step.kind {
                StepKind::Filter(c) => {
                    walk_condition(c);
                    let _ = c.eval(&outputs, step.after.as_deref().unwrap_or(previous));
                }
                StepKind::Map(e) => {
                    walk_expr(e);
                    let _ = e.eval(&outputs);
                }
                StepKind::Task(t) => {
                    let _ = format!("{t:?}");
                }
                StepKind::Trigger(_) => {}
            }
            previous = &step.key;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixtures();
    let refs = process::service_refs(text);
    for r in &refs {
        assert!(!r.path.is_empty(), "a service reference without a path");
    }
    let _ = process::env_references(text);
    let lookup = |name: &str| match name {
        "echo" => Some(f.echo.clone()),
        "kv" => Some(f.kv.clone()),
        _ => None,
    };
    match ProcessDefinition::from_yaml(text, &f.env, &lookup) {
        Ok(def) => accepted(&def, &f.samples),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "from_yaml failed without an error");
            let _ = errors.to_string();
        }
    }
    // With no known service, and no env: only errors, never a panic.
    if let Ok(def) = ProcessDefinition::from_yaml(text, &BTreeMap::new(), &|_: &str| None) {
        accepted(&def, &f.samples);
    }
});
