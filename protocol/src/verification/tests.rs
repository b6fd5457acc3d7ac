//! Tests of verification: the spec, commit and reveal, the round's rules, and (with
//! proptest) that any order of arrivals ends in a decision that the evidence check agrees
//! with, the same decision whatever the order when only one group can win.

use super::*;
use crate::envelope::Signed;
use crate::evidence::check_verification;
use crate::hash::{Hash32, ServiceHash};
use crate::keys::Keypair;
use crate::types::{ExecutionId, ExecutionResult, Outcome, domains};
use crate::value::Json;
use crate::wire::MAX_WORK_MESSAGE;
use proptest::prelude::*;
use serde_json::json;

const NOW: u64 = 1_800_000_000_000;

fn keys() -> &'static [Keypair] {
    static KEYS: std::sync::OnceLock<Vec<Keypair>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        (1..=16u8)
            .map(|i| Keypair::from_secret_bytes([i; 32]))
            .collect()
    })
}

struct Fx {
    id: ExecutionId,
    request: Hash32,
}

impl Fx {
    fn new() -> Fx {
        Fx {
            id: ExecutionId([7; 16]),
            request: Hash32::sha256(b"request"),
        }
    }

    fn round(&self, spec: &str) -> VerificationRound {
        VerificationRound::new(self.id, self.request, spec.parse().unwrap())
    }

    /// A commit by executor `i` to `outputs`, with a salt of its own.
    fn commit(&self, i: usize, outputs: &Json) -> Signed<OutputCommit> {
        let k = &keys()[i];
        let c = OutputCommit::new(self.id, self.request, k.public(), &salt(i), outputs, NOW);
        Signed::sign(
            k,
            domains::VERIFY_COMMIT,
            &c,
            NOW,
            COMMIT_TTL_MS,
            MAX_COMMIT_BYTES,
        )
        .unwrap()
    }

    fn reveal_with(&self, i: usize, salt: Salt, outputs: &Json) -> Signed<Reveal> {
        let k = &keys()[i];
        let r = Reveal {
            execution_id: self.id,
            executor: k.public(),
            salt,
            outputs: outputs.clone(),
        };
        Signed::sign(
            k,
            domains::VERIFY_REVEAL,
            &r,
            NOW,
            COMMIT_TTL_MS,
            MAX_REVEAL_BYTES,
        )
        .unwrap()
    }

    fn reveal(&self, i: usize, outputs: &Json) -> Signed<Reveal> {
        self.reveal_with(i, salt(i), outputs)
    }

    fn failure(&self, i: usize) -> Signed<ExecutionResult> {
        let k = &keys()[i];
        let r = ExecutionResult {
            execution_id: self.id,
            request_digest: self.request,
            service_hash: ServiceHash(Hash32::sha256(b"s")),
            task_key: "t".into(),
            executor: k.public(),
            instance_hash: None,
            outcome: Outcome::Failed {
                error: "boom".into(),
            },
            started_at: None,
            finished_at: NOW,
        };
        Signed::sign(
            k,
            domains::EXECUTION_RESULT,
            &r,
            NOW,
            COMMIT_TTL_MS,
            MAX_WORK_MESSAGE,
        )
        .unwrap()
    }
}

fn salt(i: usize) -> Salt {
    Hash32::domain("test-salt", &[&[i as u8]])
}

fn pk(i: usize) -> crate::PublicKey {
    keys()[i].public()
}

fn out(v: u64) -> Json {
    Json(json!({"sum": v, "unit": "n"}))
}

fn verdicts(r: &VerificationRound) -> Vec<Option<Verdict>> {
    r.record().attempts.iter().map(|a| a.verdict).collect()
}

// ---- the spec ----

#[test]
fn spec_text_and_bounds() {
    let s: VerifySpec = "2/3".parse().unwrap();
    assert_eq!((s.quorum, s.replicas, s.max_total), (2, 3, 6));
    assert_eq!(s.to_string().parse::<VerifySpec>().unwrap(), s);
    let s: VerifySpec = " 2/3/5 ".parse().unwrap();
    assert_eq!(s.max_total, 5);
    assert_eq!("9/9".parse::<VerifySpec>().unwrap().max_total, 16);
    for (bad, word) in [
        ("0/3", "at least 1"),
        ("4/3", "quorum <= replicas"),
        ("2/3/2", "replicas <= max_total"),
        ("2/17", "more than 16"),
        ("2/3/99999999999", "more than 16"),
        ("2", "QUORUM/REPLICAS"),
        ("2/3/4/5", "QUORUM/REPLICAS"),
        ("a/3", "QUORUM/REPLICAS"),
        ("-1/3", "QUORUM/REPLICAS"),
    ] {
        let e = bad.parse::<VerifySpec>().unwrap_err().to_string();
        assert!(e.contains(word), "{bad}: {e}");
    }
}

#[test]
fn spec_serde_checks_and_defaults() {
    let s: VerifySpec = serde_json::from_value(json!({"replicas": 3, "quorum": 2})).unwrap();
    assert_eq!(s.max_total, 6);
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json, json!({"replicas": 3, "quorum": 2, "max_total": 6}));
    let e = serde_json::from_value::<VerifySpec>(json!({"replicas": 3, "quorum": 4})).unwrap_err();
    assert!(e.to_string().contains("quorum <= replicas"), "{e}");
    let e =
        serde_json::from_value::<VerifySpec>(json!({"replicas": 300, "quorum": 1})).unwrap_err();
    assert!(e.to_string().contains("more than 16"), "{e}");
    let bytes = crate::wire::encode(&s, 64).unwrap();
    assert_eq!(crate::wire::decode::<VerifySpec>(&bytes, 64).unwrap(), s);
    // A spec out of range on the wire is refused when decoded.
    let bad = crate::wire::encode(&(2u32, 5u32, Some(6u32)), 64).unwrap();
    assert!(crate::wire::decode::<VerifySpec>(&bad, 64).is_err());
}

// ---- commit and reveal ----

#[test]
fn output_digest_is_canonical() {
    let a = Json(serde_json::from_str(r#"{"a": 1, "b": {"y": [1, 2], "x": null}}"#).unwrap());
    let b = Json(serde_json::from_str(r#"{"b":{"x":null,"y":[1,2]},"a":1}"#).unwrap());
    assert_eq!(output_digest(&a), output_digest(&b));
    let c = Json(serde_json::from_str(r#"{"b":{"x":null,"y":[2,1]},"a":1}"#).unwrap());
    assert_ne!(output_digest(&a), output_digest(&c));
}

#[test]
fn two_executors_commits_to_the_same_outputs_differ() {
    let f = Fx::new();
    let (a, b) = (
        f.commit(0, &out(1))
            .payload_unverified(MAX_COMMIT_BYTES)
            .unwrap(),
        f.commit(1, &out(1))
            .payload_unverified(MAX_COMMIT_BYTES)
            .unwrap(),
    );
    assert_ne!(a.commitment, b.commitment);
    // Even with the same salt: the executor is part of the commitment.
    let same = Hash32::sha256(b"salt");
    let d = output_digest(&out(1));
    assert_ne!(
        commitment(&f.id, &pk(0), &same, &d),
        commitment(&f.id, &pk(1), &same, &d)
    );
    assert_ne!(new_salt(), new_salt());
}

#[test]
fn a_reveal_opens_only_its_own_commit() {
    let f = Fx::new();
    let c0 = f
        .commit(0, &out(1))
        .payload_unverified(MAX_COMMIT_BYTES)
        .unwrap();
    let r0 = f
        .reveal(0, &out(1))
        .payload_unverified(MAX_REVEAL_BYTES)
        .unwrap();
    assert_eq!(r0.check(&c0), Ok(output_digest(&out(1))));
    let wrong = f
        .reveal(0, &out(2))
        .payload_unverified(MAX_REVEAL_BYTES)
        .unwrap();
    assert_eq!(wrong.check(&c0), Err(RevealMismatch::Commitment));
    let r1 = f
        .reveal(1, &out(1))
        .payload_unverified(MAX_REVEAL_BYTES)
        .unwrap();
    assert!(matches!(
        r1.check(&c0),
        Err(RevealMismatch::OtherExecutor { .. })
    ));
}

// ---- the round ----

#[test]
fn two_of_three_with_a_faulty_executor_completes_with_the_honest_answer() {
    let f = Fx::new();
    let mut r = f.round("2/3");
    assert_eq!(r.next(), Next::Ask(3));
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
    }
    assert_eq!(r.next(), Next::Wait);
    for (i, v) in [(0, 1), (1, 666), (2, 1)] {
        assert_eq!(r.commit(&f.commit(i, &out(v))).unwrap(), Next::Wait);
    }
    assert_eq!(r.reveal(&f.reveal(1, &out(666))).unwrap(), Next::Wait);
    assert_eq!(r.reveal(&f.reveal(0, &out(1))).unwrap(), Next::Wait);
    assert_eq!(r.reveal(&f.reveal(2, &out(1))).unwrap(), Next::Decided);
    let Some(Decision::Agreed {
        outputs, executors, ..
    }) = r.decision()
    else {
        panic!("{:?}", r.decision())
    };
    assert_eq!(outputs, &out(1));
    assert_eq!(executors, &vec![pk(0), pk(2)]);
    use Verdict::*;
    assert_eq!(
        verdicts(&r),
        vec![Some(Agreed), Some(Disagreed), Some(Agreed)]
    );
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn the_round_completes_as_soon_as_a_group_reaches_the_quorum() {
    let f = Fx::new();
    let mut r = f.round("2/3");
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
    }
    r.commit(&f.commit(0, &out(1))).unwrap();
    r.commit(&f.commit(1, &out(1))).unwrap();
    r.reveal(&f.reveal(0, &out(1))).unwrap();
    assert_eq!(r.reveal(&f.reveal(1, &out(1))).unwrap(), Next::Decided);
    // The third had not committed: not needed, cancelled, and it cannot commit now.
    assert_eq!(r.record().attempts[2].verdict, Some(Verdict::Cancelled));
    assert!(matches!(
        r.commit(&f.commit(2, &out(1))),
        Err(RoundError::Ended(..))
    ));
    assert_eq!(r.ask(pk(3)), Err(RoundError::Decided));
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn an_attempt_that_committed_before_the_decision_still_gets_its_verdict() {
    let f = Fx::new();
    let mut r = f.round("2/3");
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
        r.commit(&f.commit(i, &out(if i == 2 { 9 } else { 1 })))
            .unwrap();
    }
    r.reveal(&f.reveal(0, &out(1))).unwrap();
    r.reveal(&f.reveal(1, &out(1))).unwrap();
    assert_eq!(r.record().attempts[2].verdict, None);
    assert!(check_verification(r.record()).is_empty());
    assert_eq!(r.reveal(&f.reveal(2, &out(9))).unwrap(), Next::Decided);
    assert_eq!(r.record().attempts[2].verdict, Some(Verdict::Disagreed));
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn a_copied_answer_does_not_open_the_copiers_commit() {
    let f = Fx::new();
    let mut r = f.round("2/3");
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
    }
    // Executor 1 is lazy: it must commit before anything is revealed, so it commits to a
    // guess; then it tries to reveal executor 0's answer, with 0's salt or its own.
    r.commit(&f.commit(0, &out(1))).unwrap();
    r.commit(&f.commit(1, &out(0))).unwrap();
    r.reveal(&f.reveal(0, &out(1))).unwrap();
    r.reveal(&f.reveal_with(1, salt(0), &out(1))).unwrap();
    let a = &r.record().attempts[1];
    assert_eq!(a.verdict, Some(Verdict::Disagreed));
    assert!(
        a.note
            .as_deref()
            .unwrap()
            .contains("do not hash to the commitment")
    );
    assert_eq!(a.output_digest, None);
    // It did not join the group: the round still waits for the third.
    assert_eq!(r.next(), Next::Wait);
    r.commit(&f.commit(2, &out(1))).unwrap();
    assert_eq!(r.reveal(&f.reveal(2, &out(1))).unwrap(), Next::Decided);
    assert!(
        matches!(r.decision(), Some(Decision::Agreed { executors, .. }) if executors == &vec![pk(0), pk(2)])
    );
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn copying_another_executors_commitment_commits_to_nothing_the_copier_can_open() {
    let f = Fx::new();
    let mut r = f.round("2/2/2");
    r.ask(pk(0)).unwrap();
    r.ask(pk(1)).unwrap();
    let c0 = f.commit(0, &out(1));
    let mut stolen = c0.payload_unverified(MAX_COMMIT_BYTES).unwrap();
    stolen.executor = pk(1);
    let c1 = Signed::sign(
        &keys()[1],
        domains::VERIFY_COMMIT,
        &stolen,
        NOW,
        1000,
        MAX_COMMIT_BYTES,
    )
    .unwrap();
    r.commit(&c0).unwrap();
    r.commit(&c1).unwrap();
    r.reveal(&f.reveal(0, &out(1))).unwrap();
    r.reveal(&f.reveal_with(1, salt(0), &out(1))).unwrap();
    assert_eq!(r.record().attempts[1].verdict, Some(Verdict::Disagreed));
    assert!(matches!(
        r.decision(),
        Some(Decision::Undecided {
            reason: UndecidedReason::Exhausted,
            ..
        })
    ));
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn disagreeing_results_ask_one_more_then_decide() {
    let f = Fx::new();
    let mut r = f.round("2/3/4");
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
        r.commit(&f.commit(i, &out(i as u64))).unwrap();
    }
    r.reveal(&f.reveal(0, &out(0))).unwrap();
    r.reveal(&f.reveal(1, &out(1))).unwrap();
    assert_eq!(r.reveal(&f.reveal(2, &out(2))).unwrap(), Next::Ask(1));
    assert_eq!(r.next(), Next::Ask(1));
    r.ask(pk(3)).unwrap();
    assert_eq!(r.next(), Next::Wait);
    assert_eq!(r.ask(pk(4)), Err(RoundError::TooMany(1, 4)));
    r.commit(&f.commit(3, &out(1))).unwrap();
    assert_eq!(r.reveal(&f.reveal(3, &out(1))).unwrap(), Next::Decided);
    use Verdict::*;
    assert_eq!(
        verdicts(&r),
        vec![Some(Disagreed), Some(Agreed), Some(Disagreed), Some(Agreed)]
    );
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn two_honest_executors_that_disagree_by_design_end_undecided_with_both_groups() {
    let f = Fx::new();
    let mut r = f.round("2/2/2");
    for i in 0..2 {
        r.ask(pk(i)).unwrap();
        r.commit(&f.commit(i, &out(i as u64))).unwrap();
    }
    r.reveal(&f.reveal(0, &out(0))).unwrap();
    assert_eq!(r.reveal(&f.reveal(1, &out(1))).unwrap(), Next::Decided);
    let d = r.decision().unwrap();
    let Decision::Undecided { groups, reason } = d else {
        panic!("{d:?}")
    };
    assert_eq!(*reason, UndecidedReason::Exhausted);
    assert_eq!(groups.len(), 2);
    assert!(d.error().unwrap().starts_with("verification undecided"));
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn a_crashed_executor_never_leaves_the_round_stuck() {
    let f = Fx::new();
    // The others agree: decided without it.
    let mut r = f.round("2/3");
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
    }
    r.commit(&f.commit(0, &out(1))).unwrap();
    r.timed_out(&pk(1)).unwrap();
    r.commit(&f.commit(2, &out(1))).unwrap();
    r.reveal(&f.reveal(0, &out(1))).unwrap();
    assert_eq!(r.reveal(&f.reveal(2, &out(1))).unwrap(), Next::Decided);
    assert_eq!(r.record().attempts[1].verdict, Some(Verdict::TimedOut));

    // They do not: one more is asked, none is found: undecided.
    let mut r = f.round("2/3");
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
    }
    r.commit(&f.commit(0, &out(1))).unwrap();
    r.reveal(&f.reveal(0, &out(1))).unwrap();
    r.timed_out(&pk(1)).unwrap();
    assert_eq!(r.failed(&f.failure(2)).unwrap(), Next::Ask(1));
    assert_eq!(r.no_more_executors(), Next::Decided);
    assert!(matches!(
        r.decision(),
        Some(Decision::Undecided {
            reason: UndecidedReason::NoMoreExecutors,
            ..
        })
    ));
    use Verdict::*;
    assert_eq!(
        verdicts(&r),
        vec![Some(Disagreed), Some(TimedOut), Some(Failed)]
    );
    assert!(check_verification(r.record()).is_empty());

    // The deadline ends everything still running.
    let mut r = f.round("2/3");
    for i in 0..3 {
        r.ask(pk(i)).unwrap();
    }
    r.commit(&f.commit(0, &out(1))).unwrap();
    assert!(matches!(
        r.close(),
        Decision::Undecided {
            reason: UndecidedReason::Deadline,
            ..
        }
    ));
    assert!(verdicts(&r).iter().all(|v| *v == Some(TimedOut)));
    assert!(check_verification(r.record()).is_empty());
}

#[test]
fn misuse_is_refused() {
    let f = Fx::new();
    let mut r = f.round("2/3");
    r.ask(pk(0)).unwrap();
    assert_eq!(r.ask(pk(0)), Err(RoundError::AlreadyAsked(pk(0))));
    assert_eq!(
        r.commit(&f.commit(5, &out(1))),
        Err(RoundError::NotAsked(pk(5)))
    );
    r.commit(&f.commit(0, &out(1))).unwrap();
    assert_eq!(
        r.commit(&f.commit(0, &out(2))),
        Err(RoundError::AlreadyCommitted(pk(0)))
    );
    // Another execution's commit, a commit signed by another key, a tampered one.
    let other = Fx {
        id: ExecutionId([8; 16]),
        request: f.request,
    };
    r.ask(pk(1)).unwrap();
    assert_eq!(
        r.commit(&other.commit(1, &out(1))),
        Err(RoundError::OtherExecution)
    );
    let c = f
        .commit(1, &out(1))
        .payload_unverified(MAX_COMMIT_BYTES)
        .unwrap();
    let forged = Signed::sign(
        &keys()[2],
        domains::VERIFY_COMMIT,
        &c,
        NOW,
        1000,
        MAX_COMMIT_BYTES,
    )
    .unwrap();
    assert!(matches!(r.commit(&forged), Err(RoundError::Signature(_))));
    let mut tampered = f.commit(1, &out(1));
    tampered.payload.0[20] ^= 1;
    assert!(matches!(r.commit(&tampered), Err(RoundError::Signature(_))));
    // A reveal without a commit is a disagreement.
    r.ask(pk(2)).unwrap();
    r.reveal(&f.reveal(2, &out(1))).unwrap();
    assert_eq!(r.record().attempts[2].verdict, Some(Verdict::Disagreed));
    assert!(matches!(r.timed_out(&pk(2)), Err(RoundError::Ended(..))));
}

// ---- evidence ----

fn decided_record() -> VerificationRecord {
    let f = Fx::new();
    let mut r = f.round("2/3");
    for (i, v) in [(0, 1), (1, 666), (2, 1)] {
        r.ask(pk(i)).unwrap();
        r.commit(&f.commit(i, &out(v))).unwrap();
        r.reveal(&f.reveal(i, &out(v))).unwrap();
    }
    r.into_record()
}

#[test]
fn evidence_catches_every_kind_of_tampering() {
    let good = decided_record();
    assert_eq!(check_verification(&good), Vec::<String>::new());
    let f = Fx::new();
    let cases: Vec<(&str, Box<dyn Fn(&mut VerificationRecord)>)> = vec![
        (
            "verdict",
            Box::new(|r| r.attempts[1].verdict = Some(Verdict::Agreed)),
        ),
        (
            "verdict",
            Box::new(|r| r.attempts[0].verdict = Some(Verdict::TimedOut)),
        ),
        (
            "does not verify",
            Box::new(|r| {
                if let Some(s) = &mut r.attempts[0].reveal {
                    s.payload.0[20] ^= 1
                }
            }),
        ),
        ("signed by", Box::new(|r| r.attempts[0].executor = pk(5))),
        (
            "does not open",
            Box::new(move |r| r.attempts[0].reveal = Some(f.reveal_with(0, salt(0), &out(2)))),
        ),
        (
            "do not hash",
            Box::new(|r| {
                if let Some(Decision::Agreed { outputs, .. }) = &mut r.decision {
                    *outputs = out(666)
                }
            }),
        ),
        (
            "did not reveal the decided",
            Box::new(|r| {
                if let Some(Decision::Agreed { executors, .. }) = &mut r.decision {
                    executors[1] = pk(1)
                }
            }),
        ),
        (
            "undecided",
            Box::new(|r| {
                r.decision = Some(Decision::Undecided {
                    reason: UndecidedReason::Deadline,
                    groups: vec![],
                })
            }),
        ),
        (
            "more than max_total",
            Box::new(|r| r.spec = "1/1/1".parse().unwrap()),
        ),
        (
            "asked twice",
            Box::new(|r| {
                let a = r.attempts[0].clone();
                r.attempts.push(a)
            }),
        ),
        (
            "output digest",
            Box::new(|r| r.attempts[0].output_digest = None),
        ),
    ];
    for (word, tamper) in cases {
        let mut r = good.clone();
        tamper(&mut r);
        let problems = check_verification(&r);
        assert!(
            problems.iter().any(|p| p.contains(word)),
            "{word}: {problems:?}"
        );
    }
}

#[test]
fn evidence_checks_an_exhausted_claim_by_arithmetic() {
    let f = Fx::new();
    let mut r = f.round("2/2/4");
    for i in 0..2 {
        r.ask(pk(i)).unwrap();
        r.commit(&f.commit(i, &out(i as u64))).unwrap();
        r.reveal(&f.reveal(i, &out(i as u64))).unwrap();
    }
    assert_eq!(r.next(), Next::Ask(1));
    let mut record = r.into_record();
    let groups = crate::verification::round::groups_of(&record.attempts);
    for a in &mut record.attempts {
        a.verdict = Some(Verdict::Disagreed);
    }
    record.decision = Some(Decision::Undecided {
        reason: UndecidedReason::Exhausted,
        groups,
    });
    let problems = check_verification(&record);
    assert!(
        problems.iter().any(|p| p.contains("exhausted")),
        "{problems:?}"
    );
}

// ---- any order of arrivals ----

/// How one executor behaves.
#[derive(Debug, Clone, Copy)]
enum Plays {
    /// Commits then reveals this value.
    Honest(u64),
    /// Commits to one value, reveals another (or a copied answer).
    Liar(u64),
    Fails,
    /// Never commits (crashed).
    Crashes,
    /// Commits, then crashes before revealing.
    Vanishes(u64),
}

fn plays() -> impl Strategy<Value = Plays> {
    prop_oneof![
        6 => (0u64..3).prop_map(Plays::Honest),
        1 => (0u64..3).prop_map(Plays::Liar),
        1 => Just(Plays::Fails),
        1 => Just(Plays::Crashes),
        1 => (0u64..3).prop_map(Plays::Vanishes),
    ]
}

fn spec() -> impl Strategy<Value = VerifySpec> {
    (1u32..=4, 0u32..=3, 0u32..=3).prop_map(|(replicas, q_less, extra)| {
        let quorum = replicas.saturating_sub(q_less).max(1);
        VerifySpec::new(quorum, replicas, Some((replicas + extra).min(7))).unwrap()
    })
}

/// Drive a round to its end: `plays[i]` is the i-th executor asked; `order` picks which
/// running executor acts next. Returns the round after `close`, or a description of how
/// it got stuck.
fn drive(
    spec: VerifySpec,
    plays: &[Plays],
    order: &[usize],
    give_up: bool,
) -> Result<VerificationRound, String> {
    let f = Fx::new();
    let mut r = VerificationRound::new(f.id, f.request, spec);
    let mut step = 0usize;
    let mut next = r.next();
    loop {
        match next {
            Next::Decided => break,
            Next::Ask(n) => {
                let asked = r.record().attempts.len();
                // The first executors are always found; `give_up`: no extra one is.
                if give_up && asked > 0 {
                    next = r.no_more_executors();
                    continue;
                }
                for i in asked..asked + usize::from(n) {
                    r.ask(pk(i)).map_err(|e| e.to_string())?;
                }
                next = r.next();
                continue;
            }
            Next::Wait => {}
        }
        // Attempts that can still act: not ended and not yet revealed.
        let running: Vec<usize> = r
            .record()
            .attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.verdict.is_none() && a.output_digest.is_none())
            .map(|(i, _)| i)
            .collect();
        if running.is_empty() {
            return Err(format!(
                "stuck waiting with nothing running: {:?}",
                r.record()
            ));
        }
        let i = running[order[step % order.len()] % running.len()];
        step += 1;
        let committed = r.record().attempts[i].commit.is_some();
        next = match (plays[i], committed) {
            (Plays::Honest(v) | Plays::Vanishes(v) | Plays::Liar(v), false) => {
                r.commit(&f.commit(i, &out(v)))
            }
            (Plays::Honest(v), true) => r.reveal(&f.reveal(i, &out(v))),
            (Plays::Liar(v), true) => r.reveal(&f.reveal(i, &out(v + 1))),
            (Plays::Vanishes(_), true) | (Plays::Crashes, _) => r.timed_out(&pk(i)),
            (Plays::Fails, _) => r.failed(&f.failure(i)),
        }
        .map_err(|e| e.to_string())?;
        if step > 200 {
            return Err("more than 200 steps".into());
        }
    }
    // Committed attempts may still reveal after a decision; then the deadline.
    for (i, a) in r.record().attempts.clone().iter().enumerate() {
        if a.verdict.is_none() && a.output_digest.is_none() {
            if let Plays::Honest(v) = plays[i] {
                r.reveal(&f.reveal(i, &out(v))).map_err(|e| e.to_string())?;
            }
        }
    }
    r.close();
    Ok(r)
}

fn summary(d: &Decision) -> Option<Hash32> {
    match d {
        Decision::Agreed { digest, .. } => Some(*digest),
        Decision::Undecided { .. } => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Never stuck, every attempt ends in a verdict, and the evidence check agrees.
    #[test]
    fn every_order_ends_with_every_verdict_and_checks_out(
        spec in spec(),
        plays in proptest::collection::vec(plays(), 7),
        order in proptest::collection::vec(0usize..7, 1..40),
        give_up in proptest::bool::weighted(0.2),
    ) {
        let r = drive(spec, &plays, &order, give_up).map_err(TestCaseError::fail)?;
        prop_assert!(r.decision().is_some());
        prop_assert!(r.record().attempts.iter().all(|a| a.verdict.is_some()), "{:?}", r.record());
        prop_assert!(r.record().attempts.len() <= usize::from(spec.max_total));
        let problems = check_verification(r.record());
        prop_assert!(problems.is_empty(), "{problems:?}\n{:?}", r.record());
        // Agreed verdicts are exactly the revealers of the winning outputs.
        if let Some(Decision::Agreed { digest, executors, .. }) = r.decision() {
            prop_assert!(executors.len() >= usize::from(spec.quorum));
            for a in &r.record().attempts {
                prop_assert_eq!(a.verdict == Some(Verdict::Agreed), a.output_digest == Some(*digest));
            }
        }
    }

    /// When only one group can ever reach the quorum (a majority of `max_total`), the
    /// decision does not depend on the order in which messages arrive.
    #[test]
    fn the_decision_does_not_depend_on_the_order_of_arrivals(
        spec in spec(),
        plays in proptest::collection::vec(plays(), 7),
        a in proptest::collection::vec(0usize..7, 1..40),
        b in proptest::collection::vec(0usize..7, 1..40),
    ) {
        prop_assume!(2 * u32::from(spec.quorum) > u32::from(spec.max_total));
        let ra = drive(spec, &plays, &a, false).map_err(TestCaseError::fail)?;
        let rb = drive(spec, &plays, &b, false).map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            summary(ra.decision().unwrap()),
            summary(rb.decision().unwrap()),
            "{:?}\n{:?}", ra.record().decision, rb.record().decision
        );
    }

    /// An honest majority of the first `replicas` executors always wins, in any order.
    #[test]
    fn an_honest_quorum_always_wins(
        replicas in 1u32..=5,
        faulty in proptest::collection::vec(plays(), 5),
        order in proptest::collection::vec(0usize..7, 1..40),
    ) {
        let quorum = replicas / 2 + 1;
        let spec = VerifySpec::new(quorum, replicas, None).unwrap();
        // The first `quorum` executors are honest and agree; the rest do anything.
        let mut plays: Vec<Plays> = (0..quorum).map(|_| Plays::Honest(42)).collect();
        plays.extend(faulty);
        plays.resize(16, Plays::Crashes);
        let r = drive(spec, &plays, &order, false).map_err(TestCaseError::fail)?;
        prop_assert_eq!(summary(r.decision().unwrap()), Some(output_digest(&out(42))));
    }
}
