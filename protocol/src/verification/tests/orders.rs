//! Any order of arrivals (proptest): every round ends, every attempt gets a verdict,
//! the evidence check agrees, and the decision does not depend on the order when only one
//! group can win.

use super::*;
use crate::evidence::check_verification;
use crate::hash::Hash32;
use crate::verification::*;
use proptest::prelude::*;

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
        if a.verdict.is_none()
            && a.output_digest.is_none()
            && let Plays::Honest(v) = plays[i]
        {
            r.reveal(&f.reveal(i, &out(v))).map_err(|e| e.to_string())?;
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
