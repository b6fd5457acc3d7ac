//! The requester's check of usage receipts: one test per reason a receipt is rejected,
//! and properties over random chains with one tampered receipt.

use super::tests::price;
use super::*;
use crate::envelope::Signed;
use crate::hash::{Hash32, ServiceHash};
use crate::keys::Keypair;
use crate::types::{ExecutionId, ExecutionRequest, domains};
use crate::value::Json;
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000_000;

/// An executor and a requester node with their chain, and the requester's records.
struct Pairing {
    executor: Keypair,
    requester: Keypair,
    /// The executor's side of the chain.
    sent: Option<PairState>,
    /// The requester's side: the last receipt it accepted.
    accepted: Option<PairState>,
}

/// One execution as the requester knows it.
struct Asked {
    request: ExecutionRequest,
    request_digest: Hash32,
    result_digest: Hash32,
    usage: Usage,
}

impl Pairing {
    fn new() -> Pairing {
        Pairing {
            executor: Keypair::generate().unwrap(),
            requester: Keypair::generate().unwrap(),
            sent: None,
            accepted: None,
        }
    }

    fn ask(&self, duration_ms: u64, bytes_out: u64, max_price: Option<u64>) -> Asked {
        let me = self.requester.public();
        let request = ExecutionRequest {
            execution_id: ExecutionId::random(),
            service_hash: ServiceHash(Hash32::sha256(b"svc")),
            task_key: "t".into(),
            inputs: Json::null(),
            requester: me,
            requester_node: me,
            parent: None,
            process: None,
            tags: vec![],
            timeout_ms: 1000,
            created_at: NOW,
            idempotency_key: None,
            cause: None,
            max_price,
            verify: None,
        };
        Asked {
            request_digest: Hash32::sha256(&request.execution_id.0),
            result_digest: Hash32::sha256(b"result"),
            request,
            usage: Usage {
                calls: 1,
                duration_ms,
                bytes_out,
            },
        }
    }

    /// The receipt an honest executor signs for `a`.
    fn receipt(&self, a: &Asked) -> UsageReceipt {
        let amount = price().charge(&a.usage, a.request.max_price).unwrap();
        let (sequence, prev, before) = match self.sent {
            Some(s) => (s.sequence + 1, s.hash, s.cumulative),
            None => (1, Hash32::default(), 0),
        };
        UsageReceipt {
            execution_id: a.request.execution_id,
            request_digest: a.request_digest,
            result_digest: a.result_digest,
            service_hash: a.request.service_hash,
            task_key: a.request.task_key.clone(),
            usage: a.usage,
            price: price(),
            amount,
            sequence,
            prev,
            cumulative: before + amount,
            executor: self.executor.public(),
            requester: self.requester.public(),
        }
    }

    fn sign(&self, r: &UsageReceipt) -> Signed<UsageReceipt> {
        Signed::sign(&self.executor, domains::RECEIPT, r, NOW, 60_000, 4096).unwrap()
    }

    fn view<'a>(&self, a: &'a Asked) -> RequesterView<'a> {
        RequesterView {
            me: self.requester.public(),
            last: self.accepted,
            request: Some(&a.request),
            request_digest: a.request_digest,
            executor: Some(self.executor.public()),
            result_digest: a.result_digest,
            price: Some(price()),
            usage: a.usage,
            already_booked: false,
            signature_checked: false,
        }
    }

    /// The executor sends `r`, the requester checks it; both sides move on when accepted.
    fn exchange(&mut self, a: &Asked, r: &UsageReceipt) -> ReceiptVerdict {
        let v = check_receipt(&self.sign(r), &self.view(a), NOW);
        if let ReceiptVerdict::Accept(state) = v {
            self.sent = Some(state);
            self.accepted = Some(state);
        }
        v
    }

    fn honest(&mut self, a: &Asked) -> PairState {
        let r = self.receipt(a);
        match self.exchange(a, &r) {
            ReceiptVerdict::Accept(s) => s,
            ReceiptVerdict::Reject(e) => panic!("an honest receipt was rejected: {e}"),
        }
    }
}

fn rejected(v: ReceiptVerdict) -> ReceiptReject {
    match v {
        ReceiptVerdict::Reject(r) => r,
        ReceiptVerdict::Accept(s) => panic!("accepted: {s:?}"),
    }
}

#[test]
fn honest_receipts_are_accepted_and_totals_grow() {
    let mut p = Pairing::new();
    let first = p.honest(&p.ask(1500, 3000, Some(10_000)));
    assert_eq!((first.sequence, first.cumulative), (1, 4015));
    let second = p.honest(&p.ask(0, 0, Some(1000)));
    assert_eq!((second.sequence, second.cumulative), (2, 5015));
    // Capped: 1000 + 2 × 1000 ms = 3000 due, the cap is 2000.
    let third = p.honest(&p.ask(1000, 0, Some(2000)));
    assert_eq!(third.cumulative, 7015);
}

#[test]
fn an_incorrect_amount_is_rejected() {
    let mut p = Pairing::new();
    let a = p.ask(1500, 3000, Some(10_000));
    let mut r = p.receipt(&a);
    r.amount += 1;
    r.cumulative += 1;
    assert_eq!(
        rejected(p.exchange(&a, &r)),
        ReceiptReject::IncorrectAmount {
            expected: 4015,
            got: 4016
        }
    );
    // Above the cap: the cap is the most that is due.
    let capped = p.ask(1500, 3000, Some(2000));
    let mut r = p.receipt(&capped);
    r.amount = 4015;
    r.cumulative = 4015;
    assert_eq!(rejected(p.exchange(&capped, &r)).code(), "incorrect_amount");
    assert_eq!(p.accepted, None, "nothing booked");
}

#[test]
fn a_wrong_cumulative_or_usage_is_rejected() {
    let mut p = Pairing::new();
    let a = p.ask(10, 10, Some(10_000));
    let mut r = p.receipt(&a);
    r.cumulative += 5;
    assert_eq!(rejected(p.exchange(&a, &r)).code(), "wrong_cumulative");
    let mut r = p.receipt(&a);
    r.usage.duration_ms += 100;
    r.amount += 200;
    r.cumulative += 200;
    assert_eq!(rejected(p.exchange(&a, &r)).code(), "wrong_usage");
}

#[test]
fn an_unsolicited_receipt_is_rejected() {
    let mut p = Pairing::new();
    let a = p.ask(10, 10, Some(10_000));
    let r = p.receipt(&a);
    let mut view = p.view(&a);
    view.request = None;
    assert_eq!(
        rejected(check_receipt(&p.sign(&r), &view, NOW)).code(),
        "unsolicited"
    );
    // Another request's digest.
    let mut other = r.clone();
    other.request_digest = Hash32::sha256(b"another request");
    assert_eq!(rejected(p.exchange(&a, &other)).code(), "unsolicited");
    // Addressed to another node.
    let mut elsewhere = r.clone();
    elsewhere.requester = Keypair::generate().unwrap().public();
    assert_eq!(rejected(p.exchange(&a, &elsewhere)).code(), "unsolicited");
}

#[test]
fn a_bad_service_or_task_is_rejected() {
    let mut p = Pairing::new();
    let a = p.ask(10, 10, Some(10_000));
    let mut r = p.receipt(&a);
    r.service_hash = ServiceHash(Hash32::sha256(b"another service"));
    assert_eq!(rejected(p.exchange(&a, &r)).code(), "bad_service");
    let mut r = p.receipt(&a);
    r.task_key = "other".into();
    assert_eq!(rejected(p.exchange(&a, &r)).code(), "bad_service");
}

#[test]
fn a_gap_a_fork_and_a_replay_are_rejected() {
    let mut p = Pairing::new();
    let a = p.ask(10, 10, Some(10_000));
    let first = p.receipt(&a);
    p.honest(&a);
    // The same receipt again (the message repeated): a replay, booked once.
    let again = check_receipt(&p.sign(&first), &p.view(&a), NOW);
    assert_eq!(
        rejected(again),
        ReceiptReject::Replay {
            sequence: 1,
            last: 1
        }
    );
    // A second receipt for an execution already booked, with a fresh sequence number.
    let mut view = p.view(&a);
    view.already_booked = true;
    let twice = p.receipt(&a);
    assert_eq!(
        rejected(check_receipt(&p.sign(&twice), &view, NOW)).code(),
        "replay"
    );
    let b = p.ask(20, 20, Some(10_000));
    let mut gap = p.receipt(&b);
    gap.sequence += 1;
    assert_eq!(
        rejected(p.exchange(&b, &gap)),
        ReceiptReject::SequenceGap {
            expected: 2,
            got: 3
        }
    );
    let mut fork = p.receipt(&b);
    fork.prev = Hash32::sha256(b"a receipt this node never accepted");
    assert_eq!(rejected(p.exchange(&b, &fork)).code(), "fork");
    // The first receipt of a pair must start the chain.
    let mut fresh = Pairing::new();
    let c = fresh.ask(1, 1, Some(10_000));
    let mut not_first = fresh.receipt(&c);
    not_first.prev = Hash32::sha256(b"x");
    assert_eq!(rejected(fresh.exchange(&c, &not_first)).code(), "fork");
}

#[test]
fn a_changed_price_is_rejected() {
    let mut p = Pairing::new();
    let a = p.ask(10, 10, Some(100_000));
    let mut r = p.receipt(&a);
    r.price.per_ms = 3;
    r.amount = r.price.charge(&a.usage, Some(100_000)).unwrap();
    r.cumulative = r.amount;
    assert_eq!(rejected(p.exchange(&a, &r)).code(), "price_changed");
    // A receipt for a task that is free in the definition.
    let r = p.receipt(&a);
    let mut view = p.view(&a);
    view.price = None;
    assert_eq!(
        rejected(check_receipt(&p.sign(&r), &view, NOW)).code(),
        "price_changed"
    );
}

#[test]
fn a_wrong_signer_or_result_is_rejected() {
    let mut p = Pairing::new();
    let a = p.ask(10, 10, Some(10_000));
    let r = p.receipt(&a);
    // Signed by another key than the executor it names.
    let other = Keypair::generate().unwrap();
    let forged = Signed::sign(&other, domains::RECEIPT, &r, NOW, 60_000, 4096).unwrap();
    assert_eq!(
        rejected(check_receipt(&forged, &p.view(&a), NOW)).code(),
        "wrong_signer"
    );
    // Signed by a node that did not run the execution (naming itself).
    let mut stranger = r.clone();
    stranger.executor = other.public();
    let signed = Signed::sign(&other, domains::RECEIPT, &stranger, NOW, 60_000, 4096).unwrap();
    assert_eq!(
        rejected(check_receipt(&signed, &p.view(&a), NOW)).code(),
        "wrong_signer"
    );
    // A tampered signature, another domain.
    let mut bad = p.sign(&r);
    bad.payload.0[0] ^= 1;
    assert_eq!(
        rejected(check_receipt(&bad, &p.view(&a), NOW)).code(),
        "bad_signature"
    );
    let ack_domain =
        Signed::sign(&p.executor, domains::CUMULATIVE_ACK, &r, NOW, 60_000, 4096).unwrap();
    assert_eq!(
        rejected(check_receipt(&ack_domain, &p.view(&a), NOW)).code(),
        "bad_signature"
    );
    let mut result = r.clone();
    result.result_digest = Hash32::sha256(b"another result");
    assert_eq!(rejected(p.exchange(&a, &result)).code(), "wrong_result");
    assert_eq!(p.accepted, None);
}

#[test]
fn the_acknowledgement_is_signed_by_the_requester() {
    let mut p = Pairing::new();
    let state = p.honest(&p.ask(1, 1, Some(5000)));
    let ack = CumulativeAck {
        pair: Pair {
            executor: p.executor.public(),
            requester: p.requester.public(),
        },
        sequence: state.sequence,
        receipt: state.hash,
        cumulative: state.cumulative,
        rejected: 0,
    };
    let signed = Signed::sign(
        &p.requester,
        domains::CUMULATIVE_ACK,
        &ack,
        NOW,
        60_000,
        4096,
    )
    .unwrap();
    assert_eq!(
        signed.verify(domains::CUMULATIVE_ACK, NOW, 4096).unwrap(),
        ack
    );
    let by_executor = Signed::sign(
        &p.executor,
        domains::CUMULATIVE_ACK,
        &ack,
        NOW,
        60_000,
        4096,
    )
    .unwrap();
    assert!(
        by_executor
            .verify(domains::CUMULATIVE_ACK, NOW, 4096)
            .is_err()
    );
}

/// A tampering an executor may try on an honest receipt, and the reason it must get.
#[derive(Debug, Clone)]
enum Tamper {
    Overcharge(u64),
    Skip(u64),
    Replay,
    Fork,
    Price,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_chain_agrees_to_the_micro_credit_and_any_tampering_is_caught(
        runs in prop::collection::vec((0..100_000u64, 0..1_000_000u64, prop::option::of(1000..50_000u64)), 1..20),
        tamper_at in any::<prop::sample::Index>(),
        tamper in prop_oneof![
            (1..1_000_000u64).prop_map(Tamper::Overcharge),
            (1..5u64).prop_map(Tamper::Skip),
            Just(Tamper::Replay),
            Just(Tamper::Fork),
            Just(Tamper::Price),
        ],
    ) {
        let mut p = Pairing::new();
        let at = tamper_at.index(runs.len());
        let mut expected_total = 0u64;
        let mut last: Option<(UsageReceipt, Asked)> = None;
        for (i, (ms, bytes, cap)) in runs.iter().enumerate() {
            let a = p.ask(*ms, *bytes, cap.or(Some(u64::MAX)));
            let honest = p.receipt(&a);
            if i == at {
                let (bad, code) = match &tamper {
                    Tamper::Overcharge(d) => {
                        let mut r = honest.clone();
                        r.amount += d;
                        r.cumulative += d;
                        (r, "incorrect_amount")
                    }
                    Tamper::Skip(n) => {
                        let mut r = honest.clone();
                        r.sequence += n;
                        (r, "sequence_gap")
                    }
                    Tamper::Replay => match &last {
                        Some((prev, _)) => (prev.clone(), "replay"),
                        None => {
                            let mut r = honest.clone();
                            r.sequence = 0;
                            (r, "replay")
                        }
                    },
                    Tamper::Fork => {
                        let mut r = honest.clone();
                        r.prev = Hash32::sha256(b"fork");
                        (r, "fork")
                    }
                    Tamper::Price => {
                        let mut r = honest.clone();
                        r.price.call += 1;
                        (r, "price_changed")
                    }
                };
                let v = match (&tamper, &last) {
                    // A replayed receipt names an execution already booked.
                    (Tamper::Replay, Some((_, prev))) => {
                        let mut view = p.view(prev);
                        view.already_booked = true;
                        check_receipt(&p.sign(&bad), &view, NOW)
                    }
                    _ => p.exchange(&a, &bad),
                };
                prop_assert_eq!(rejected(v).code(), code);
            }
            let state = p.honest(&a);
            expected_total += honest.amount;
            prop_assert_eq!(state.cumulative, expected_total);
            prop_assert_eq!(state.sequence, i as u64 + 1);
            last = Some((honest, a));
        }
        prop_assert_eq!(p.sent, p.accepted);
    }
}
