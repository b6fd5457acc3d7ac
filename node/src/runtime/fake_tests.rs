//! The fake runtime behaves like the Docker runtime where the engine looks.

use super::{FakeCall, FakeRuntime};
use crate::runtime::{InstanceSpec, InstanceStatus, LogLine, Runtime, RuntimeError, RuntimeEvent};
use futures::StreamExt;
use mesg_protocol::{Hash32, InstanceHash, Keypair, ServiceDefinition, ServiceHash};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

const DEFINITION: &str =
    "name: t\ndependencies:\n  db:\n    image: redis\nconfiguration:\n  env: [MODE=a]\n";

fn spec(n: u8) -> InstanceSpec {
    InstanceSpec {
        instance_hash: InstanceHash(Hash32::sha256(&[n])),
        service_hash: ServiceHash(Hash32::sha256(&[n, n])),
        definition: ServiceDefinition::from_yaml(DEFINITION).expect("definition"),
        publisher: Keypair::from_secret_bytes([1; 32]).public(),
        image: format!("svc-{n}"),
        env: BTreeMap::new(),
        token: "token".into(),
        limits: None,
    }
}

/// A fake where `spec(n)`'s images exist, built through the fake.
async fn with_images(ns: &[u8]) -> FakeRuntime {
    let rt = FakeRuntime::new();
    rt.add_image("redis");
    for n in ns {
        let (tx, mut rx) = mpsc::channel(4);
        rt.build(vec![0; 3], &spec(*n).image, tx)
            .await
            .expect("build");
        assert!(rx.recv().await.is_some(), "one progress line");
    }
    rt
}

#[tokio::test]
async fn start_stop_delete_answer_from_memory() {
    let rt = with_images(&[1]).await;
    let s = spec(1);
    assert_eq!(
        rt.status(&s.instance_hash).await.unwrap().status,
        InstanceStatus::Missing
    );
    rt.start(&s).await.expect("start");
    rt.start(&s).await.expect("idempotent");
    let state = rt.status(&s.instance_hash).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Running);
    assert_eq!(
        state
            .containers
            .iter()
            .map(|c| c.key.as_str())
            .collect::<Vec<_>>(),
        ["service", "db"]
    );
    rt.stop(&s.instance_hash, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        rt.status(&s.instance_hash).await.unwrap().status,
        InstanceStatus::Stopped
    );
    rt.delete(&s.instance_hash, false).await.unwrap();
    assert!(rt.instances().is_empty());
    let calls = rt.calls();
    assert_eq!((calls.build, calls.start, calls.stop), (1, 2, 1));
    assert_eq!((calls.delete, calls.status), (1, 3));
    assert_eq!(
        rt.history().last(),
        Some(&FakeCall::Delete {
            instance: s.instance_hash,
            keep_data: false
        })
    );
}

#[tokio::test]
async fn starts_are_checked_and_failures_are_injected_once() {
    let rt = with_images(&[1]).await;
    let mut s = spec(2);
    assert!(matches!(
        rt.start(&s).await,
        Err(RuntimeError::MissingImage { .. })
    ));
    s.image = spec(1).image;
    s.env.insert("OTHER".into(), "x".into());
    assert!(matches!(
        rt.start(&s).await,
        Err(RuntimeError::UndeclaredEnv { .. })
    ));
    s.env.clear();
    rt.fail_next_start(RuntimeError::Docker("no space left".into()));
    assert!(matches!(rt.start(&s).await, Err(RuntimeError::Docker(_))));
    rt.start(&s)
        .await
        .expect("the failure was for one start only");

    rt.fail_next_build(RuntimeError::Build("step 2 failed".into()));
    let (tx, _rx) = mpsc::channel(4);
    assert!(rt.build(Vec::new(), "other", tx.clone()).await.is_err());
    assert!(!rt.has_image("other"));
    rt.build(Vec::new(), "other", tx).await.expect("build");
    assert!(rt.has_image("other"));

    rt.set_unavailable(true);
    assert!(matches!(
        rt.check().await,
        Err(RuntimeError::Unavailable(_))
    ));
    rt.set_unavailable(false);
    assert!(rt.check().await.is_ok());
}

#[tokio::test]
async fn a_crash_changes_the_state_and_is_told_to_subscribers() {
    let rt = with_images(&[1]).await;
    let s = spec(1);
    rt.start(&s).await.unwrap();
    let mut events = rt.subscribe();
    assert!(rt.crash(&s.instance_hash, "service", 3));
    assert_eq!(
        events.recv().await.unwrap(),
        RuntimeEvent::Died {
            instance: s.instance_hash,
            key: "service".into(),
            exit_code: Some(3)
        }
    );
    let state = rt.status(&s.instance_hash).await.unwrap();
    assert_eq!(state.status, InstanceStatus::Crashed);
    assert!(!rt.is_running(&s.instance_hash));
    assert!(!rt.crash(&spec(9).instance_hash, "service", 1));
    let started = RuntimeEvent::Started {
        instance: s.instance_hash,
        key: "db".into(),
    };
    assert_eq!(rt.emit(started.clone()), 1);
    assert_eq!(events.recv().await.unwrap(), started);
}

#[tokio::test]
async fn reconcile_after_a_restart_adopts_restarts_and_removes() {
    let rt = with_images(&[1, 2, 3]).await;
    for n in [1, 2, 3] {
        rt.start(&spec(n)).await.unwrap();
    }
    rt.stop(&spec(2).instance_hash, Duration::ZERO)
        .await
        .unwrap();
    // The "restarted node": another handle on the same Docker.
    let after = rt.clone();
    let report = after.reconcile(&[spec(1), spec(2)]).await.unwrap();
    assert_eq!(report.adopted, [spec(1).instance_hash]);
    assert_eq!(report.restarted, [spec(2).instance_hash]);
    assert_eq!(report.removed.len(), 2, "both containers of instance 3");
    assert!(report.failed.is_empty());
    assert!(after.is_running(&spec(2).instance_hash));
    assert_eq!(
        rt.instances().len(),
        2,
        "clones share one state: the first handle sees it too"
    );

    rt.stop_all();
    rt.fail_next_start(RuntimeError::Docker("port taken".into()));
    let report = rt.reconcile(&[spec(1)]).await.unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(rt.calls().reconcile, 2);
    assert_eq!(
        rt.calls().start,
        3,
        "starts inside reconcile are not start calls"
    );
}

#[tokio::test]
async fn logs_answer_the_lines_set_by_the_test() {
    let rt = with_images(&[1]).await;
    let s = spec(1);
    let unknown: Vec<_> = rt.logs(&s.instance_hash, false, None).collect().await;
    assert!(matches!(
        unknown[..],
        [Err(RuntimeError::UnknownInstance(_))]
    ));
    rt.start(&s).await.unwrap();
    let line = |text: &str| LogLine {
        key: "service".into(),
        stream: "stdout".into(),
        text: text.into(),
    };
    rt.set_logs(&s.instance_hash, vec![line("a"), line("b"), line("c")]);
    let tail: Vec<_> = rt.logs(&s.instance_hash, true, Some(2)).collect().await;
    let texts: Vec<String> = tail.into_iter().map(|l| l.unwrap().text).collect();
    assert_eq!(texts, ["b", "c"]);
}

#[tokio::test]
async fn build_checks_need_known_base_images() {
    let rt = FakeRuntime::new();
    rt.check_build("FROM scratch\nCOPY . /\n")
        .await
        .expect("scratch");
    assert!(rt.check_build("FROM alpine\n").await.is_err());
    rt.add_image("alpine");
    rt.check_build("FROM alpine\n").await.expect("known");
    let def = ServiceDefinition::from_yaml(DEFINITION).unwrap();
    assert!(rt.check_definition(&def).await.is_err());
    rt.add_image("redis");
    rt.check_definition(&def)
        .await
        .expect("dependency image known");
}
