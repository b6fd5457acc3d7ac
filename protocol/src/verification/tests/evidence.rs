//! The evidence check of a verification record: every kind of tampering is caught.

use super::*;
use crate::evidence::check_verification;
use crate::verification::*;

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
    type Tamper = Box<dyn Fn(&mut VerificationRecord)>;
    let cases: Vec<(&str, Tamper)> = vec![
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
