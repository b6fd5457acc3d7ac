//! `deterministic` and `verify` in `mesg.yml`: read as a mapping or as `2/3`, checked
//! with positions, allowed only on a deterministic task, part of the service hash only
//! when present, and binary-compatible with tasks written before they existed.

use mesg_protocol::ServiceDefinition;
use mesg_protocol::definition::TaskDefinition;
use mesg_protocol::economy::Price;
use mesg_protocol::hash::{Hash32, PackageHash};
use mesg_protocol::schema::ParamMap;
use mesg_protocol::verification::VerifySpec;
use mesg_protocol::wire;
use serde::{Deserialize, Serialize};

fn task(fields: &str) -> Result<TaskDefinition, String> {
    let src = format!("name: x\ntasks:\n  t:\n{fields}");
    ServiceDefinition::from_yaml(&src)
        .map(|d| d.tasks["t"].clone())
        .map_err(|e| e.to_string())
}

#[test]
fn deterministic_tasks_take_verify_defaults_in_both_forms() {
    let t = task("    deterministic: true\n    verify: {replicas: 3, quorum: 2, max_total: 5}\n")
        .unwrap();
    assert!(t.deterministic);
    assert_eq!(t.verify, Some("2/3/5".parse().unwrap()));
    let t = task("    deterministic: true\n    verify: 2/3\n").unwrap();
    assert_eq!(t.verify, Some(VerifySpec::new(2, 3, None).unwrap()));
    assert_eq!(t.verify.unwrap().max_total, 6);
    let t = task("    deterministic: true\n    verify: {replicas: 2, quorum: 2}\n").unwrap();
    assert_eq!(t.verify.unwrap().max_total, 4);
    let t = task("    deterministic: true\n").unwrap();
    assert!(t.deterministic && t.verify.is_none());
    assert!(!task("    name: T\n").unwrap().deterministic);
}

#[test]
fn a_definition_with_them_round_trips_and_validates() {
    let src = "name: x\ntasks:\n  t:\n    deterministic: true\n    verify: 2/3/4\n  u:\n    deterministic: true\n";
    let d = ServiceDefinition::from_yaml(src).unwrap();
    assert_eq!(ServiceDefinition::from_yaml(&d.to_yaml()).unwrap(), d);
    d.validate().unwrap();
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<ServiceDefinition>(&json).unwrap(), d);
    let bytes = wire::encode(&d, 1 << 20).unwrap();
    assert_eq!(
        wire::decode::<ServiceDefinition>(&bytes, 1 << 20).unwrap(),
        d
    );
}

#[test]
fn wrong_values_are_refused_with_their_position() {
    for (fields, want) in [
        (
            "    verify: 2/3\n",
            "4:13: tasks.t.verify: only a deterministic task can be verified",
        ),
        (
            "    deterministic: false\n    verify: {replicas: 2, quorum: 1}\n",
            "only a deterministic task can be verified",
        ),
        (
            "    deterministic: true\n    verify: {replicas: 2, quorum: 3}\n",
            "quorum 3 is more than replicas 2",
        ),
        (
            "    deterministic: true\n    verify: {replicas: 3, quorum: 2, max_total: 2}\n",
            "max_total 2 is less than replicas 3",
        ),
        (
            "    deterministic: true\n    verify: {replicas: 17, quorum: 2}\n",
            "5:24: tasks.t.verify.replicas: `17` is not a whole number from 1 to 16",
        ),
        (
            "    deterministic: true\n    verify: {replicas: 2, quorum: 0}\n",
            "`0` is not a whole number from 1 to 16",
        ),
        (
            "    deterministic: true\n    verify: {replicas: 3}\n",
            "tasks.t.verify.quorum",
        ),
        (
            "    deterministic: true\n    verify: {replicas: 3, quorom: 2}\n",
            "did you mean `quorum`",
        ),
        (
            "    deterministic: true\n    verify: 2-3\n",
            "QUORUM/REPLICAS",
        ),
        (
            "    deterministic: true\n    verify: [2, 3]\n",
            "expected a mapping like",
        ),
        ("    deterministic: yes\n", "tasks.t.deterministic"),
    ] {
        let e = task(fields).unwrap_err();
        assert!(e.contains(want), "{fields:?}: {e}");
    }
}

#[test]
fn the_hash_changes_only_when_they_are_present() {
    let pkg = PackageHash(Hash32::sha256(b"package"));
    let hash = |fields: &str| {
        ServiceDefinition::from_yaml(&format!("name: x\ntasks:\n  t:\n    name: T\n{fields}"))
            .unwrap()
            .service_hash(&pkg)
    };
    let plain = hash("");
    assert_eq!(
        plain,
        hash("    deterministic: false\n"),
        "false is the default"
    );
    let det = hash("    deterministic: true\n");
    assert_ne!(plain, det);
    let verified = hash("    deterministic: true\n    verify: 2/3\n");
    assert_ne!(det, verified);
    assert_ne!(
        verified,
        hash("    deterministic: true\n    verify: 2/3/5\n")
    );
    let d = ServiceDefinition::from_yaml("name: x\ntasks:\n  t: {}\n").unwrap();
    let canonical = String::from_utf8(d.canonical_bytes()).unwrap();
    assert!(!canonical.contains("deterministic") && !canonical.contains("verify"));
}

/// A task as it was serialized before the verification fields existed.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct OldTask {
    name: Option<String>,
    description: Option<String>,
    inputs: ParamMap,
    outputs: ParamMap,
    timeout_ms: Option<u64>,
    price: Option<Price>,
}

#[test]
fn tasks_without_them_keep_their_bytes_and_old_bytes_still_decode() {
    for fields in ["    name: T\n", "    timeout: 5s\n    price: {call: 7}\n"] {
        let t = task(fields).unwrap();
        let old = OldTask {
            name: t.name.clone(),
            description: t.description.clone(),
            inputs: t.inputs.clone(),
            outputs: t.outputs.clone(),
            timeout_ms: t.timeout_ms,
            price: t.price,
        };
        let new_bytes = wire::encode(&t, 1 << 16).unwrap();
        let old_bytes = wire::encode(&old, 1 << 16).unwrap();
        assert_eq!(new_bytes, old_bytes, "{fields:?}");
        assert_eq!(
            wire::decode::<TaskDefinition>(&old_bytes, 1 << 16).unwrap(),
            t
        );
    }
    // A task that uses them is refused by the old layout, not misread.
    let t = task("    deterministic: true\n    price: {call: 7}\n").unwrap();
    let bytes = wire::encode(&t, 1 << 16).unwrap();
    assert!(wire::decode::<OldTask>(&bytes, 1 << 16).is_err());
    assert_eq!(wire::decode::<TaskDefinition>(&bytes, 1 << 16).unwrap(), t);
}
