//! The round's rules, one scenario each.

use super::*;
use crate::envelope::Signed;
use crate::evidence::check_verification;
use crate::types::{ExecutionId, domains};
use crate::verification::*;

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

#[test]
fn an_executor_that_refused_is_withdrawn_and_another_is_asked_in_its_place() {
    let f = Fx::new();
    let mut r = f.round("2/2");
    r.ask(pk(0)).unwrap();
    r.ask(pk(1)).unwrap();
    assert_eq!(r.next(), Next::Wait);
    assert!(r.running(&pk(1)));
    // pk(1) said busy: no attempt, one more to ask.
    assert!(r.withdraw(&pk(1)));
    assert!(!r.running(&pk(1)));
    assert_eq!(r.next(), Next::Ask(1));
    // One that committed is no longer withdrawn: it took the work.
    r.commit(&f.commit(0, &out(1))).unwrap();
    assert!(!r.withdraw(&pk(0)));
    r.ask(pk(2)).unwrap();
    r.commit(&f.commit(2, &out(1))).unwrap();
    r.reveal(&f.reveal(0, &out(1))).unwrap();
    assert!(!r.settled());
    assert_eq!(r.reveal(&f.reveal(2, &out(1))).unwrap(), Next::Decided);
    assert!(r.settled());
    assert_eq!(
        r.executors().copied().collect::<Vec<_>>(),
        vec![pk(0), pk(2)]
    );
    assert!(check_verification(r.record()).is_empty());
}
