use super::*;
use mesg_protocol::messages::Reject;
use mesg_protocol::{ExecutionId, ExecutionRequest, Hash32, Json, Keypair, ServiceHash};

const NOW: u64 = 1_800_000_000_000;

fn key() -> PublicKey {
    Keypair::generate().unwrap().public()
}

fn execution() -> Execution {
    let k = key();
    Execution::from_request(&ExecutionRequest {
        execution_id: ExecutionId([1; 16]),
        service_hash: ServiceHash(Hash32::sha256(b"svc")),
        task_key: "echo".into(),
        inputs: Json(serde_json::json!({})),
        requester: k,
        requester_node: k,
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 60_000,
        created_at: NOW,
        cause: None,
        idempotency_key: None,
        max_price: None,
        verify: None,
    })
}

/// The diagnosis the router would answer for `route`, with `known` other nodes of which
/// `without` do not run the service.
fn view(route: &RouteDiagnosis, known: usize, without: usize) -> Diagnosis {
    let mut d = blank(&execution(), DiagnosisState::Routing, NOW);
    d.sid = Some("echo".into());
    d.known_nodes = known;
    d.without_service = without;
    route.fill(&mut d, NOW);
    d.summary = routing_summary(&d, NOW);
    d
}

fn rejected(code: RejectCode, message: &str) -> Answer {
    Answer::Rejected(Reject::new(code, message))
}

#[test]
fn with_no_provider_known_the_summary_says_so_with_the_service_and_the_peers() {
    let mut route = RouteDiagnosis::new(NOW + 7_500);
    route.considered(&[]);
    route.waiting(NOW + 1_000);
    let d = view(&route, 3, 3);
    assert_eq!(
        d.summary,
        format!(
            "no node provides service {} (sid echo): 0 known providers among 3 peers; attempt 1, next in 1.0 s, gives up in 7.5 s",
            d.service_hash
        )
    );
    assert!(d.peers.is_empty());
    assert_eq!(d.next_attempt_at, Some(NOW + 1_000));
    assert_eq!(d.patience_until, Some(NOW + 7_500));
}

#[test]
fn each_provider_is_grouped_by_why_it_was_passed_over_kubernetes_style() {
    let (busy, down) = (key(), key());
    let mut route = RouteDiagnosis::new(NOW + 10_000);
    for _ in 0..3 {
        route.considered(&[busy, down]);
        route.offering(busy, NOW);
        route.answered(
            busy,
            &rejected(RejectCode::Busy, "too much work"),
            None,
            NOW,
        );
        route.offering(down, NOW);
        let answer = Answer::Unreachable(format!("peer {down} unreachable: dial failed"));
        route.answered(down, &answer, Some("dial failed".into()), NOW);
        route.waiting(NOW + 2_000);
        route.new_round();
    }
    route.waiting(NOW + 1_000);
    let d = view(&route, 3, 1);
    assert!(
        d.summary.starts_with(
            "0/3 nodes are available: 1 busy, 1 unreachable (dial failed), 1 does not run the service; attempt 4, next in 1.0 s"
        ),
        "{}",
        d.summary
    );
    assert_eq!(d.attempts, 4);
    assert_eq!(d.peers.len(), 2);
    assert_eq!(d.peers[0].verdict, PeerVerdict::Busy);
    assert_eq!(d.peers[0].code.as_deref(), Some("Busy"));
    assert_eq!(d.peers[1].verdict, PeerVerdict::Unreachable);
    assert_eq!(d.peers[1].detail.as_deref(), Some("dial failed"));
    let last = d.last_error.unwrap();
    assert!(last.contains("unreachable (dial failed)"), "{last}");
}

#[test]
fn a_provider_offered_again_keeps_what_it_answered_last_time() {
    let p = key();
    let mut route = RouteDiagnosis::new(NOW + 10_000);
    route.considered(&[p]);
    route.offering(p, NOW);
    let d = view(&route, 1, 0);
    assert_eq!(d.peers[0].verdict, PeerVerdict::Offered);
    assert!(d.summary.contains("1 being offered it"), "{}", d.summary);
    assert_eq!(d.executor, Some(p), "the provider it is offered to");

    let timeout = Answer::Unreachable("request failed: Timeout".into());
    route.answered(
        p,
        &timeout,
        Some("Timeout while waiting for a response".into()),
        NOW,
    );
    route.new_round();
    route.offering(p, NOW + 3_000);
    let d = view(&route, 1, 0);
    assert_eq!(d.peers[0].verdict, PeerVerdict::Unreachable);
    assert_eq!(d.peers[0].offered_since, Some(NOW + 3_000));
    assert!(
        d.summary
            .contains("1 unreachable (Timeout while waiting for a response)")
            && d.summary.contains("again now"),
        "{}",
        d.summary
    );
}

#[test]
fn a_provider_silent_for_longer_than_an_answer_takes_is_not_answering() {
    let p = key();
    let mut route = RouteDiagnosis::new(NOW + 1_000);
    route.considered(&[p]);
    route.offering(p, NOW - NO_ANSWER_MS + 1);
    assert_eq!(view(&route, 1, 0).peers[0].verdict, PeerVerdict::Offered);
    route.offering(p, NOW - 7_200);
    let d = view(&route, 1, 0);
    assert_eq!(d.peers[0].verdict, PeerVerdict::NotAnswering);
    assert_eq!(d.peers[0].at, Some(NOW - 7_200));
    assert_eq!(
        d.summary,
        "0/1 nodes are available: 1 not answering (no answer for 7.2 s); attempt 1, gives up in 1.0 s"
    );
    // Patience over while the offer is in flight: said so.
    let mut late = route.clone();
    late.patience_until = NOW - 1;
    assert!(
        view(&late, 1, 0)
            .summary
            .ends_with("patience over: gives up unless that offer is accepted"),
    );
}

#[test]
fn refusals_keep_their_code_and_an_acceptance_changes_nothing() {
    let (p, q) = (key(), key());
    let mut route = RouteDiagnosis::new(NOW + 10_000);
    route.considered(&[p, q]);
    route.answered(p, &rejected(RejectCode::WrongNode, "not for me"), None, NOW);
    route.answered(q, &rejected(RejectCode::NoInstance, "stopped"), None, NOW);
    route.answered(q, &Answer::Accepted, None, NOW);
    route.answered(q, &rejected(RejectCode::Replayed, "already"), None, NOW);
    let d = view(&route, 2, 0);
    assert_eq!(d.peers[0].verdict, PeerVerdict::Refused);
    assert_eq!(d.peers[0].code.as_deref(), Some("WrongNode"));
    assert_eq!(d.peers[1].verdict, PeerVerdict::NoInstance);
    assert!(
        d.summary
            .starts_with("0/2 nodes are available: 1 no running instance, 1 refused (not for me)"),
        "{}",
        d.summary
    );
}

#[test]
fn a_price_above_the_cap_is_its_own_verdict_with_the_price_and_the_cap() {
    let (p, q) = (key(), key());
    let mut route = RouteDiagnosis::new(NOW + 10_000);
    route.considered(&[p, q]);
    let why = "price above cap: task `echo` costs at least 1000 µc a call, above the request's max_price of 10 µc";
    route.answered(q, &rejected(RejectCode::Busy, "full"), None, NOW);
    route.answered(p, &rejected(RejectCode::PriceAboveCap, why), None, NOW);
    let d = view(&route, 2, 0);
    assert_eq!(d.peers[0].verdict, PeerVerdict::PriceAboveCap);
    assert_eq!(d.peers[0].code.as_deref(), Some("PriceAboveCap"));
    assert!(
        d.summary.starts_with(&format!(
            "0/2 nodes are available: 1 price above the cap ({why}), 1 busy"
        )),
        "{}",
        d.summary
    );
    assert!(
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("1000 µc")),
        "{:?}",
        d.last_error
    );
}

#[test]
fn grouping_counts_each_verdict_once_with_its_distinct_details() {
    let mut route = RouteDiagnosis::new(NOW + 10_000);
    let peers: Vec<PublicKey> = (0..4).map(|_| key()).collect();
    route.considered(&peers);
    for (i, p) in peers.iter().enumerate().take(3) {
        let e = if i == 2 { "dial failed" } else { "timeout" };
        route.answered(*p, &Answer::Unreachable(e.into()), None, NOW);
    }
    let d = view(&route, 4, 0);
    let groups = group(&d.peers);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].0, PeerVerdict::Unreachable);
    assert_eq!(groups[0].1, 3);
    assert_eq!(
        groups[0].2,
        vec!["timeout".to_string(), "dial failed".to_string()]
    );
    assert_eq!((groups[1].0, groups[1].1), (PeerVerdict::NotTried, 1));
    assert!(
        d.summary
            .contains("3 unreachable (timeout; …), 1 not tried yet"),
        "{}",
        d.summary
    );
}

#[test]
fn patience_over_and_long_details_are_said_briefly() {
    let p = key();
    let mut route = RouteDiagnosis::new(NOW - 1);
    let long = "x".repeat(500);
    route.answered(p, &rejected(RejectCode::Internal, &long), None, NOW);
    let d = view(&route, 1, 0);
    assert!(
        d.summary.ends_with("; attempt 1, giving up"),
        "{}",
        d.summary
    );
    assert!(d.summary.len() < 300, "{}", d.summary);
}

#[test]
fn a_diagnosis_remembers_a_bounded_number_of_providers() {
    let mut route = RouteDiagnosis::new(NOW + 10_000);
    let many: Vec<PublicKey> = (0..MAX_PEERS + 10).map(|_| key()).collect();
    route.considered(&many);
    assert_eq!(view(&route, many.len(), 0).peers.len(), MAX_PEERS);
}

#[test]
fn peer_ids_are_shortened_to_their_end() {
    assert_eq!(short_peer("12D3KooWAbCdEfGhIjKlMnOp"), "…IjKlMnOp");
    assert_eq!(short_peer("short"), "short");
}
