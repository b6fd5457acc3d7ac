//! A task step's `verify` in a process file: read as `2/3` or a mapping with line/column
//! errors, allowed only on a deterministic task when the service is known, and absent
//! from the JSON of a file without it (so that file keeps its id).

use mesg_protocol::ServiceDefinition;
use mesg_protocol::process::{ProcessDefinition, StepKind};
use mesg_protocol::verification::VerifySpec;
use std::collections::BTreeMap;

const TRIGGER: &str = "name: p\nsteps:\n  - trigger: {service: calc, event: tick}\n";

fn services(name: &str) -> Option<ServiceDefinition> {
    (name == "calc").then(|| {
        ServiceDefinition::from_yaml(
            "name: calc\ntasks:\n  sum:\n    deterministic: true\n  guess: {}\nevents:\n  tick: {}\n",
        )
        .unwrap()
    })
}

fn parse(task: &str) -> Result<ProcessDefinition, Vec<String>> {
    let yaml = format!("{TRIGGER}  - key: run\n    task: {{{task}}}\n");
    ProcessDefinition::from_yaml(&yaml, &BTreeMap::new(), &services)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

fn verify_of(task: &str) -> Option<VerifySpec> {
    let p = parse(task).unwrap_or_else(|e| panic!("refused `{task}`: {e:?}"));
    match &p.step("run").unwrap().kind {
        StepKind::Task(t) => t.verify,
        k => panic!("not a task: {k:?}"),
    }
}

fn error(task: &str) -> String {
    parse(task).expect_err(task).join("\n")
}

#[test]
fn a_step_asks_for_verification_of_a_deterministic_task() {
    assert_eq!(
        verify_of("service: calc, task: sum, verify: 2/3"),
        Some("2/3".parse().unwrap())
    );
    assert_eq!(
        verify_of("service: calc, task: sum, verify: {replicas: 3, quorum: 3, max_total: 3}"),
        Some("3/3/3".parse().unwrap())
    );
    assert_eq!(verify_of("service: calc, task: sum"), None);
    // An unknown service is not checked (it may be deployed later).
    let p = ProcessDefinition::from_yaml(
        "name: p\nsteps:\n  - trigger: {service: other, event: e}\n  - task: {service: other, task: t, verify: 2/2}\n",
        &BTreeMap::new(),
        &services,
    );
    assert!(p.is_ok(), "{p:?}");
}

#[test]
fn wrong_verification_is_refused_with_its_position() {
    let e = error("service: calc, task: guess, verify: 2/3");
    assert!(
        e.contains("task.verify") && e.contains("not deterministic"),
        "{e}"
    );
    let e = error("service: calc, task: sum, verify: 3/2");
    assert!(
        e.contains("5:46: steps[1] (run).task.verify: quorum 3 is more than replicas 2"),
        "{e}"
    );
    let e = error("service: calc, task: sum, verify: {replicas: 2, quorum: 20}");
    assert!(
        e.contains("task.verify.quorum") && e.contains("from 1 to 16"),
        "{e}"
    );
    let e = error("service: calc, task: sum, verify: true");
    assert!(
        e.contains("task.verify") && e.contains("expected a mapping like"),
        "{e}"
    );
}

#[test]
fn a_file_without_it_keeps_its_json() {
    let p = parse("service: calc, task: sum").unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(!json.contains("verify"), "{json}");
    let p = parse("service: calc, task: sum, verify: 2/3").unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(
        json.contains(r#""verify":{"replicas":3,"quorum":2,"max_total":6}"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<ProcessDefinition>(&json).unwrap(), p);
}
