//! Recovery after a restart of the node, and container deaths, against the fake runtime.

use super::*;
use crate::engine::executions::{Origin, Placement};
use mesg_protocol::service_api::TaskResultRequest;
use mesg_protocol::{ExecutionStatus, now_ms};

#[tokio::test]
async fn a_task_whose_container_survives_the_restart_completes_after_it() {
    let host = Host::new();
    let (a, stop_a) = host.start();
    let (service, token) = deploy_and_start(&a).await;
    let running = echo(&a, &service, None).await;
    assert_eq!(running.status, ExecutionStatus::InProgress);
    stop_a.cancel();
    drop(a);

    let (b, _stop_b) = host.start();
    let report = b.recover().await.unwrap();
    assert_eq!(report.kept_running, 1);
    assert_eq!(
        (report.failed, report.redispatched, report.expired),
        (0, 0, 0)
    );
    assert_eq!(report.reconcile.unwrap().adopted.len(), 1);
    // The adopted container re-posts its result to the new node.
    let live = b.authenticate(&token).unwrap();
    assert_eq!(live.in_flight_count(), 1);
    let done = b
        .submit_result(
            &live,
            TaskResultRequest {
                execution_id: running.id.to_string(),
                outputs: Some(serde_json::json!({"message": "hi"})),
                error: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert!(b.result_proof(&running.id).is_ok());
    assert_eq!(live.in_flight_count(), 0);
}

#[tokio::test]
async fn after_a_host_reboot_lost_tasks_fail_with_the_reason_and_unsent_ones_run_again() {
    let host = Host::new();
    let (a, stop_a) = host.start();
    let (service, _) = deploy_and_start(&a).await;
    let lost = echo(&a, &service, None).await;
    // Recorded but never dispatched (the node stopped right after the flush).
    let unsent = {
        let request = build_request_for(&a, &service);
        a.parts
            .ledger
            .accept(
                &request.0,
                &request.1,
                now_ms(),
                Placement::Remote(None),
                Origin::Local,
            )
            .await
            .unwrap()
    };
    stop_a.cancel();
    drop(a);
    host.docker.stop_all();

    let (b, _stop_b) = host.start();
    let report = b.recover().await.unwrap();
    assert_eq!(
        (report.failed, report.redispatched, report.kept_running),
        (1, 1, 0)
    );
    let lost = b.execution(&lost.id).unwrap();
    assert_eq!(lost.status, ExecutionStatus::Failed);
    assert!(
        lost.error.as_deref().unwrap().contains("did not survive"),
        "{:?}",
        lost.error
    );
    // The instance was started again, and the unsent task handed to it.
    let unsent = b.execution(&unsent.id).unwrap();
    assert_eq!(unsent.status, ExecutionStatus::InProgress);
    assert!(host.docker.is_running(&unsent.instance_hash.unwrap()));
}

#[tokio::test]
async fn an_execution_whose_deadline_passed_while_the_node_was_down_fails_at_recovery() {
    let host = Host::new();
    let (a, stop_a) = host.start();
    let (service, _) = deploy_and_start(&a).await;
    stop_a.cancel();
    let late = echo(&a, &service, Some(30)).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(60)).await;

    let (b, _stop_b) = host.start();
    let report = b.recover().await.unwrap();
    assert_eq!(report.expired, 1);
    let late = b.execution(&late.id).unwrap();
    assert_eq!(late.status, ExecutionStatus::Failed);
    assert!(
        late.error
            .as_deref()
            .unwrap()
            .contains("timed out after 30 ms")
    );
}

#[tokio::test]
async fn a_container_that_dies_ends_the_tasks_it_was_running() {
    let host = Host::new();
    let (a, _stop) = host.start();
    let (service, _) = deploy_and_start(&a).await;
    let e = echo(&a, &service, None).await;
    assert!(host.docker.crash(&e.instance_hash.unwrap(), "service", 137));
    let e = ended(&a, &e).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert!(
        e.error.as_deref().unwrap().contains("exited (code 137)"),
        "{:?}",
        e.error
    );
}

#[tokio::test]
async fn after_shutdown_the_engine_no_longer_acts_on_container_deaths() {
    let host = Host::new();
    let (a, stop) = host.start();
    let (service, _) = deploy_and_start(&a).await;
    let e = echo(&a, &service, None).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(20)).await;
    host.docker.crash(&e.instance_hash.unwrap(), "service", 137);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        a.execution(&e.id).unwrap().status,
        ExecutionStatus::InProgress
    );
}

#[tokio::test]
async fn stopping_an_instance_fails_its_running_tasks_and_a_new_task_has_nowhere_to_run() {
    let host = Host::new();
    let (a, _stop) = host.start();
    let (service, _) = deploy_and_start(&a).await;
    let e = echo(&a, &service, None).await;
    a.stop_instance(&service.to_string(), Duration::ZERO)
        .await
        .unwrap();
    let e = a.execution(&e.id).unwrap();
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert!(
        e.error.as_deref().unwrap().contains("stopped"),
        "{:?}",
        e.error
    );
    let next = echo(&a, &service, None).await;
    assert_eq!(next.status, ExecutionStatus::Failed);
    assert!(
        next.error
            .as_deref()
            .unwrap()
            .contains("no running instance"),
        "{:?}",
        next.error
    );
}

fn build_request_for(
    engine: &Engine,
    service: &ServiceHash,
) -> (
    mesg_protocol::ExecutionRequest,
    mesg_protocol::envelope::Signed<mesg_protocol::ExecutionRequest>,
) {
    let entry = engine.service(&service.to_string()).unwrap();
    let request = super::super::requests::build_request(
        engine.node_key(),
        &entry,
        CreateExecution {
            service: service.to_string(),
            task: "echo".into(),
            inputs: serde_json::json!({}),
            ..Default::default()
        },
    )
    .unwrap();
    let signed = mesg_protocol::envelope::Signed::sign(
        engine.keypair(),
        mesg_protocol::types::domains::EXECUTION_REQUEST,
        &request,
        now_ms(),
        60_000,
        mesg_protocol::wire::MAX_WORK_MESSAGE,
    )
    .unwrap();
    (request, signed)
}
