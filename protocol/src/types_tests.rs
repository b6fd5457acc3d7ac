//! Unit tests of the domain types (transitions, request times, codec round trips).

use super::*;
use ExecutionStatus::*;

#[test]
fn only_legal_transitions_are_allowed() {
    let all = [Created, InProgress, Completed, Failed];
    let legal = [
        (Created, InProgress),
        (Created, Failed),
        (InProgress, Completed),
        (InProgress, Failed),
    ];
    for from in all {
        for to in all {
            assert_eq!(
                from.can_become(to),
                legal.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn transition_stamps_times_and_refuses_reopening() {
    let key = crate::keys::Keypair::generate().unwrap().public();
    let req = ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: ServiceHash(Hash32::sha256(b"s")),
        task_key: "t".into(),
        inputs: Json::null(),
        requester: key,
        requester_node: key,
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 1000,
        created_at: 10,
        cause: None,
        idempotency_key: None,
        max_price: None,
        verify: None,
    };
    let mut e = Execution::from_request(&req);
    e.transition(InProgress, 20).unwrap();
    e.complete(Json::null(), 30).unwrap();
    assert_eq!((e.started_at, e.finished_at), (Some(20), Some(30)));
    assert_eq!(
        e.fail("late", 40),
        Err(TransitionError {
            from: Completed,
            to: Failed
        })
    );
    assert_eq!(e.error, None);
    assert_eq!(e.deadline(), 1010);
}

#[test]
fn a_request_dated_ahead_is_refused_and_deadlines_count_from_receipt() {
    use crate::envelope::MAX_CLOCK_SKEW_MS;
    let key = crate::keys::Keypair::generate().unwrap().public();
    let now = 1_800_000_000_000u64;
    let ten_years = 10 * 365 * 24 * 3600 * 1000u64;
    let mut req = ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: ServiceHash(Hash32::sha256(b"s")),
        task_key: "t".into(),
        inputs: Json::null(),
        requester: key,
        requester_node: key,
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 1000,
        created_at: now + ten_years,
        cause: None,
        idempotency_key: None,
        max_price: None,
        verify: None,
    };
    let err = req.check_times(now).unwrap_err();
    assert!(
        matches!(err, RequestTimeError::InTheFuture { ahead_ms, .. } if ahead_ms == ten_years),
        "{err}"
    );
    assert!(err.to_string().contains("clock skew"), "{err}");
    // Within the skew: accepted, but the deadline counts from the receipt.
    req.created_at = now + MAX_CLOCK_SKEW_MS;
    req.check_times(now).unwrap();
    assert_eq!(Execution::received(&req, now).deadline(), now + 1000);
    // Created before the receipt: its own (earlier) deadline holds.
    req.created_at = now - 400;
    assert_eq!(Execution::received(&req, now).deadline(), now + 600);
    req.created_at = now - 1000;
    assert!(matches!(
        req.check_times(now),
        Err(RequestTimeError::DeadlinePassed { .. })
    ));
}

#[test]
fn ids_print_as_hex_and_parse_back() {
    let id = ExecutionId::random();
    assert_eq!(id.to_string().len(), 32);
    assert_eq!(id.to_string().parse::<ExecutionId>().unwrap(), id);
    assert!("xyz".parse::<ExecutionId>().is_err());
}
