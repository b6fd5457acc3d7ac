//! k-of-n verification: the signed commit and reveal a requester receives from executors,
//! the `verify` spec text, a verification record as a node would keep it, and rounds
//! driven by arbitrary sequences of executor behaviour. The first byte chooses:
//! 0. the rest is a bincode `Signed<OutputCommit>`;
//! 1. the rest is a bincode `Signed<Reveal>`;
//! 2. the rest is a JSON `VerificationRecord`;
//! 3. the rest is `verify` text (`2/3`, `2/3/5`);
//! 4. the rest drives a round: byte 1 chooses the spec, then each byte is an event of one
//!    executor (commit, reveal, reveal of other outputs, reveal of another's salt, fail,
//!    time out, "no more executors").
//!
//! Properties checked (a panic, abort or sanitizer report is a failure):
//! - decoding, verifying and checking never panic;
//! - spec text that parses prints back to an equal spec;
//! - a driven round never reaches a state it refuses to report: after `close` it is
//!   decided, every attempt has a verdict, at most `max_total` executors were asked, and
//!   `evidence::check_verification` finds no problem in its record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesg_protocol::envelope::Signed;
use mesg_protocol::evidence::check_verification;
use mesg_protocol::types::{ExecutionId, ExecutionResult, Outcome, domains};
use mesg_protocol::verification::{
    COMMIT_TTL_MS, MAX_COMMIT_BYTES, MAX_REVEAL_BYTES, Next, OutputCommit, Reveal,
    VerificationRecord, VerificationRound, VerifySpec,
};
use mesg_protocol::{Hash32, Json, Keypair, ServiceHash, wire};

const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            if let Ok(s) = wire::decode::<Signed<OutputCommit>>(rest, MAX_COMMIT_BYTES + 4096) {
                let _ = s.verify(domains::VERIFY_COMMIT, NOW_MS, MAX_COMMIT_BYTES);
                let _ = s.verify(domains::VERIFY_COMMIT, s.header.issued_at, MAX_COMMIT_BYTES);
            }
        }
        1 => {
            if let Ok(s) = wire::decode::<Signed<Reveal>>(rest, MAX_REVEAL_BYTES) {
                if let Ok(r) = s.verify(domains::VERIFY_REVEAL, NOW_MS, MAX_REVEAL_BYTES) {
                    let _ = r.digest();
                }
            }
        }
        2 => {
            if let Ok(record) = serde_json::from_slice::<VerificationRecord>(rest) {
                let _ = check_verification(&record);
            }
        }
        3 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(spec) = text.parse::<VerifySpec>() {
                    assert_eq!(spec.to_string().parse::<VerifySpec>().unwrap(), spec);
                    spec.check().unwrap();
                }
            }
        }
        _ => drive(rest),
    }
});

fn key(i: usize) -> Keypair {
    Keypair::from_secret_bytes([i as u8 + 1; 32])
}

fn drive(data: &[u8]) {
    let Some((&spec_byte, events)) = data.split_first() else {
        return;
    };
    let replicas = u32::from(spec_byte % 4) + 1;
    let quorum = replicas - u32::from((spec_byte >> 2) % 4).min(replicas - 1);
    let max_total = (replicas + u32::from((spec_byte >> 4) % 4)).min(8);
    let spec = VerifySpec::new(quorum, replicas, Some(max_total)).unwrap();
    let id = ExecutionId([5; 16]);
    let request = Hash32([6; 32]);
    let mut round = VerificationRound::new(id, request, spec);
    let salt = |i: usize| Hash32([i as u8; 32]);
    let outputs = |v: u8| Json(serde_json::json!({ "v": v % 3 }));
    let sign_commit = |i: usize, v: u8| {
        let k = key(i);
        let c = OutputCommit::new(id, request, k.public(), &salt(i), &outputs(v), NOW_MS);
        Signed::sign(&k, domains::VERIFY_COMMIT, &c, NOW_MS, COMMIT_TTL_MS, MAX_COMMIT_BYTES)
            .unwrap()
    };
    let sign_reveal = |i: usize, s: Hash32, v: u8| {
        let k = key(i);
        let r = Reveal {
            execution_id: id,
            executor: k.public(),
            salt: s,
            outputs: outputs(v),
        };
        Signed::sign(&k, domains::VERIFY_REVEAL, &r, NOW_MS, COMMIT_TTL_MS, MAX_REVEAL_BYTES)
            .unwrap()
    };
    for &e in events.iter().take(64) {
        if let Next::Ask(n) = round.next() {
            if e == 0xFF {
                round.no_more_executors();
                continue;
            }
            let asked = round.record().attempts.len();
            for i in asked..asked + usize::from(n) {
                round.ask(key(i).public()).unwrap();
            }
        }
        let asked = round.record().attempts.len();
        if asked == 0 {
            continue;
        }
        let i = usize::from(e >> 4) % asked;
        let v = e >> 1;
        // Refusals (an event out of turn) are fine; panics are not.
        let _ = match e % 8 {
            0 | 1 => round.commit(&sign_commit(i, v)),
            2 | 3 => round.reveal(&sign_reveal(i, salt(i), v)),
            4 => round.reveal(&sign_reveal(i, salt((i + 1) % 8), v)),
            5 => round.timed_out(&key(i).public()),
            6 => {
                let k = key(i);
                let r = ExecutionResult {
                    execution_id: id,
                    request_digest: request,
                    service_hash: ServiceHash(Hash32([1; 32])),
                    task_key: "t".into(),
                    executor: k.public(),
                    instance_hash: None,
                    outcome: Outcome::Failed {
                        error: "fuzz".into(),
                    },
                    started_at: None,
                    finished_at: NOW_MS,
                };
                let s = Signed::sign(
                    &k,
                    domains::EXECUTION_RESULT,
                    &r,
                    NOW_MS,
                    COMMIT_TTL_MS,
                    wire::MAX_WORK_MESSAGE,
                )
                .unwrap();
                round.failed(&s)
            }
            _ => Ok(round.no_more_executors()),
        };
    }
    round.close();
    let record = round.record();
    assert!(record.decision.is_some());
    assert!(record.attempts.iter().all(|a| a.verdict.is_some()), "{record:?}");
    assert!(record.attempts.len() <= usize::from(spec.max_total));
    let problems = check_verification(record);
    assert!(problems.is_empty(), "{problems:?}\n{record:?}");
}
