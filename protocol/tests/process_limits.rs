//! A process's protection from loops in its file: `max_depth` and `rate_limit`, their
//! defaults, their errors, and that a file without them keeps its meaning and its id.

use mesg_protocol::ServiceDefinition;
use mesg_protocol::process::{MAX_DEPTH, ProcessDefinition, RateLimit};
use std::collections::BTreeMap;

const STEPS: &str = "steps:\n  - trigger: {service: echo, event: tick}\n";

fn services(name: &str) -> Option<ServiceDefinition> {
    (name == "echo").then(|| {
        ServiceDefinition::from_yaml(
            "name: e\nevents:\n  tick:\n    data:\n      count: {type: Number}\n",
        )
        .unwrap()
    })
}

fn parse(top: &str) -> Result<ProcessDefinition, Vec<String>> {
    let yaml = format!("name: p\n{top}{STEPS}");
    ProcessDefinition::from_yaml(&yaml, &BTreeMap::new(), &services)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

fn errors(top: &str) -> String {
    match parse(top) {
        Ok(p) => panic!("accepted `{top}`: {p:?}"),
        Err(e) => e.join("\n"),
    }
}

#[test]
fn limits_are_read_with_their_defaults() {
    let p = parse("").unwrap();
    assert_eq!((p.max_depth, p.rate_limit), (None, None));
    let p = parse("max_depth: 4\nrate_limit: {per_second: 20, burst: 40}\n").unwrap();
    assert_eq!(p.max_depth, Some(4));
    assert_eq!(
        p.rate_limit,
        Some(RateLimit {
            per_second: 20.0,
            burst: 40
        })
    );
    // The burst defaults to a second's worth, at least one.
    let p = parse("rate_limit: {per_second: 2.5}\n").unwrap();
    assert_eq!(p.rate_limit.unwrap().burst, 3);
    let p = parse("rate_limit: {per_second: 0.2}\n").unwrap();
    assert_eq!(
        p.rate_limit,
        Some(RateLimit {
            per_second: 0.2,
            burst: 1
        })
    );
    let p = parse(&format!("max_depth: {MAX_DEPTH}\n")).unwrap();
    assert_eq!(p.max_depth, Some(MAX_DEPTH));
}

#[test]
fn wrong_limits_say_what_is_expected_where() {
    for (top, expected) in [
        (
            "max_depth: 0\n",
            "2:12: max_depth: expected a whole number from 1 to 1000",
        ),
        (
            "max_depth: 1001\n",
            "max_depth: expected a whole number from 1 to 1000",
        ),
        ("max_depth: 2.5\n", "max_depth: expected a whole number"),
        ("max_depth: deep\n", "max_depth: expected a whole number"),
        ("rate_limit: 20\n", "rate_limit: expected a mapping"),
        (
            "rate_limit: {burst: 4}\n",
            "rate_limit.per_second: required field is missing",
        ),
        (
            "rate_limit: {per_second: 0}\n",
            "rate_limit.per_second: expected a number above 0",
        ),
        (
            "rate_limit: {per_second: -1}\n",
            "rate_limit.per_second: expected a number above 0",
        ),
        (
            "rate_limit: {per_second: fast}\n",
            "rate_limit.per_second: expected a number above 0",
        ),
        (
            "rate_limit: {per_second: 5, burst: 0}\n",
            "rate_limit.burst: expected a whole number from 1",
        ),
        (
            "rate_limit: {per_second: 5, burst: 1.5}\n",
            "rate_limit.burst: expected a whole number from 1",
        ),
    ] {
        let text = errors(top);
        assert!(
            text.contains(expected),
            "`{top}`: expected `{expected}`, got:\n{text}"
        );
    }
}

#[test]
fn misspelt_limit_fields_suggest_the_right_one() {
    let text = errors("max_dept: 4\n");
    assert!(
        text.contains("max_dept: unknown field (did you mean `max_depth`?)"),
        "{text}"
    );
    let text = errors("rate_limit: {per_secnd: 4}\n");
    assert!(
        text.contains(
            "rate_limit.per_secnd: unknown field (did you mean `per_second`?); allowed fields: per_second, burst"
        ),
        "{text}"
    );
}

#[test]
fn errors_in_limits_and_steps_are_reported_together() {
    let yaml = "name: p\nmax_depth: 0\nsteps:\n  - trigger: {service: echo, event: nope}\n";
    let e = ProcessDefinition::from_yaml(yaml, &BTreeMap::new(), &services)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_depth") && e.contains("no event `nope`"),
        "{e}"
    );
}

/// A file without limits serializes as it did before they existed: the process id (a
/// hash of that JSON) of every existing process stays the same.
#[test]
fn a_file_without_limits_serializes_without_them() {
    let p = parse("").unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["name", "steps"]
    );
    let with = parse("max_depth: 3\nrate_limit: {per_second: 1}\n").unwrap();
    let back: ProcessDefinition =
        serde_json::from_value(serde_json::to_value(&with).unwrap()).unwrap();
    assert_eq!(back, with);
}
