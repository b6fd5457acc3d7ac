//! A task step's spending cap (`max_price`) in a process file: read as a whole number of
//! micro-credits with line/column errors, required by a priced task (and at least its
//! `call` price) when the process is validated, and absent from a file that has none, so
//! that file keeps its id.

use mesg_protocol::ServiceDefinition;
use mesg_protocol::process::{MAX_STEP_PRICE, ProcessDefinition, StepKind};
use std::collections::BTreeMap;

const TRIGGER: &str = "name: p\nsteps:\n  - trigger: {service: echo, event: tick}\n";

fn services(name: &str) -> Option<ServiceDefinition> {
    let yaml = match name {
        "echo" => {
            "name: e\ntasks:\n  echo:\n    inputs: {}\nevents:\n  tick:\n    data:\n      count: {type: Number}\n"
        }
        "paid" => {
            "name: paid\ntasks:\n  run:\n    price: {call: 1000, per_ms: 2, per_kib: 5}\n    inputs: {}\n  metered:\n    price: {per_ms: 3}\n    inputs: {}\n  free:\n    inputs: {}\n"
        }
        _ => return None,
    };
    Some(ServiceDefinition::from_yaml(yaml).unwrap())
}

/// A process whose second step is `task: {<task>}`.
fn parse(task: &str) -> Result<ProcessDefinition, Vec<String>> {
    let yaml = format!("{TRIGGER}  - key: pay\n    task: {{{task}}}\n");
    ProcessDefinition::from_yaml(&yaml, &BTreeMap::new(), &services)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

fn cap(task: &str) -> Option<u64> {
    let p = parse(task).unwrap_or_else(|e| panic!("refused `{task}`: {e:?}"));
    match &p.step("pay").unwrap().kind {
        StepKind::Task(t) => t.max_price,
        k => panic!("not a task: {k:?}"),
    }
}

fn error(task: &str) -> String {
    match parse(task) {
        Ok(p) => panic!("accepted `{task}`: {p:?}"),
        Err(e) => e.join("\n"),
    }
}

#[test]
fn a_step_reads_its_cap() {
    assert_eq!(cap("service: paid, task: run, max_price: 5000"), Some(5000));
    // Exactly the least cost (the call price) is enough.
    assert_eq!(cap("service: paid, task: run, max_price: 1000"), Some(1000));
    assert_eq!(
        cap(&format!(
            "service: paid, task: run, max_price: {MAX_STEP_PRICE}"
        )),
        Some(MAX_STEP_PRICE)
    );
    // A task priced by run time only has a least cost of 0.
    assert_eq!(cap("service: paid, task: metered, max_price: 0"), Some(0));
    // A free task takes a cap or none.
    assert_eq!(cap("service: paid, task: free"), None);
    assert_eq!(cap("service: paid, task: free, max_price: 10"), Some(10));
    // A service the validator does not know is not checked (a node knows them all).
    assert_eq!(cap("service: elsewhere, task: x"), None);
}

#[test]
fn a_bad_cap_is_refused_with_its_position() {
    for (value, words) in [
        ("-5", "`-5` is negative"),
        ("1.5", "`1.5` is not a whole number"),
        ("1e3", "`1e3` is not a whole number"),
        ("\"1000\"", "a whole number of micro-credits"),
        ("[1]", "a whole number of micro-credits"),
        ("1000000000000001", "is too large"),
        ("99999999999999999999999", "is too large"),
    ] {
        let e = error(&format!("service: paid, task: run, max_price: {value}"));
        assert!(
            e.starts_with("5:") && e.contains("steps[1] (pay).task.max_price") && e.contains(words),
            "{value}: {e}"
        );
    }
}

#[test]
fn a_priced_task_without_a_cap_is_refused_at_validation() {
    let e = error("service: paid, task: run");
    assert!(e.starts_with("4:5: steps[1] (pay).task.max_price"), "{e}");
    assert!(
        e.contains("is priced (1000 µc per call + 2 µc per ms + 5 µc per KiB out)")
            && e.contains("sets no spending cap")
            && e.contains("add `max_price: N`")
            && e.contains("at least 1000"),
        "{e}"
    );
    let e = error("service: paid, task: run, max_price: 999");
    assert!(
        e.contains("costs at least 1000 µc a call")
            && e.contains("above this step's max_price of 999 µc")
            && e.contains("raise max_price to at least 1000"),
        "{e}"
    );
}

#[test]
fn a_file_without_caps_keeps_its_serialized_form() {
    let p = parse("service: paid, task: free").unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(!json.contains("max_price"), "{json}");
    let p = parse("service: paid, task: run, max_price: 1000").unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"max_price\":1000"), "{json}");
    let back: ProcessDefinition = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}
