//! Tests of verification: the spec, commit and reveal (here), the round's rules
//! (`round.rs`), the evidence check (`evidence.rs`), and (with proptest, `orders.rs`) that
//! any order of arrivals ends in a decision that the evidence check agrees with, the same
//! decision whatever the order when only one group can win.

mod evidence;
mod orders;
mod round;

use super::*;
use crate::envelope::Signed;
use crate::hash::{Hash32, ServiceHash};
use crate::keys::Keypair;
use crate::types::{ExecutionId, ExecutionResult, Outcome, domains};
use crate::value::Json;
use crate::wire::MAX_WORK_MESSAGE;
use serde_json::json;

pub(super) const NOW: u64 = 1_800_000_000_000;

pub(super) fn keys() -> &'static [Keypair] {
    static KEYS: std::sync::OnceLock<Vec<Keypair>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        (1..=16u8)
            .map(|i| Keypair::from_secret_bytes([i; 32]))
            .collect()
    })
}

pub(super) struct Fx {
    pub(super) id: ExecutionId,
    pub(super) request: Hash32,
}

impl Fx {
    pub(super) fn new() -> Fx {
        Fx {
            id: ExecutionId([7; 16]),
            request: Hash32::sha256(b"request"),
        }
    }

    pub(super) fn round(&self, spec: &str) -> VerificationRound {
        VerificationRound::new(self.id, self.request, spec.parse().unwrap())
    }

    /// A commit by executor `i` to `outputs`, with a salt of its own.
    pub(super) fn commit(&self, i: usize, outputs: &Json) -> Signed<OutputCommit> {
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

    pub(super) fn reveal_with(&self, i: usize, salt: Salt, outputs: &Json) -> Signed<Reveal> {
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

    pub(super) fn reveal(&self, i: usize, outputs: &Json) -> Signed<Reveal> {
        self.reveal_with(i, salt(i), outputs)
    }

    pub(super) fn failure(&self, i: usize) -> Signed<ExecutionResult> {
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

pub(super) fn salt(i: usize) -> Salt {
    Hash32::domain("test-salt", &[&[i as u8]])
}

pub(super) fn pk(i: usize) -> crate::PublicKey {
    keys()[i].public()
}

pub(super) fn out(v: u64) -> Json {
    Json(json!({"sum": v, "unit": "n"}))
}

pub(super) fn verdicts(r: &VerificationRound) -> Vec<Option<Verdict>> {
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
