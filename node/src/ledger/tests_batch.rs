//! Receipts booked and answered in batches (`Ledger::book_all`, `Ledger::record_answers`),
//! as they travel apart from their results: one acknowledgement per batch covering every
//! receipt booked in it, one log signature per write, out-of-order ones held, a
//! duplicate recognised, a rejected one voided in its place, and a batch of answers with
//! a forged acknowledgement recorded nowhere.

use super::tests::{checker, input, open, request_for};
use super::*;
use mesg_protocol::ExecutionRequest;
use mesg_protocol::economy::{PairState, ReceiptReject, ReceiptVerdict, UsageReceipt};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::ReceiptAnswer;

#[test]
fn a_batch_is_booked_in_one_write_with_one_acknowledgement() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (_dbe, exec) = open(de.path(), &ek);
    let (_dbr, req) = open(dr.path(), &rk);
    let inputs: Vec<_> = [100u64, 200, 300, 400, 500, 600]
        .iter()
        .map(|a| input(rk.public(), *a))
        .collect();
    let requests: Vec<_> = inputs.iter().map(|i| request_for(i, rk.public())).collect();
    let receipts: Vec<_> = inputs
        .iter()
        .map(|i| exec.issue(i).unwrap().0.receipt)
        .collect();
    let checks = checks_of(&rk, &ek, &inputs, &requests, &receipts);
    let item = |i: usize| (&receipts[i], &checks[i] as Check<'_>);

    // Out of order, with a duplicate: 2 is held, 1 booked (twice: once fresh), 4 held.
    let first = req.book_all(&[item(1), item(0), item(0), item(3)]).unwrap();
    let Booking::Acked { ack, fresh: true } = &first[1] else {
        panic!("{first:?}")
    };
    assert!(matches!(first[0], Booking::Held(_)), "{first:?}");
    assert_eq!(
        first[2],
        Booking::Acked {
            ack: ack.clone(),
            fresh: false
        }
    );
    assert!(matches!(first[3], Booking::Held(_)), "{first:?}");
    let a = ack.payload_unverified(MAX_RECEIPT_BYTES_TEST).unwrap();
    assert_eq!((a.sequence, a.cumulative), (1, 100));
    assert_eq!(
        req.next_held(&ek.public()).unwrap().as_ref(),
        Some(&receipts[1])
    );

    // The held ones and the next: every booking of the batch carries the same ack,
    // which covers the whole batch; one signature in the log for the write.
    let log_before = req.log(MAX_LOG_LIMIT).unwrap().len();
    let second = req.book_all(&[item(1), item(2), item(3)]).unwrap();
    let acks: Vec<_> = second
        .iter()
        .map(|b| match b {
            Booking::Acked { ack, fresh: true } => ack.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(acks.iter().all(|a| *a == acks[0]));
    let a = acks[0].payload_unverified(MAX_RECEIPT_BYTES_TEST).unwrap();
    assert_eq!((a.sequence, a.cumulative, a.rejected), (4, 1000, 0));
    let log = req.log(MAX_LOG_LIMIT).unwrap();
    assert_eq!(log.len() - log_before, 3);
    assert!(!log[0].signature.is_empty());
    assert!(log[1].signature.is_empty() && log[2].signature.is_empty());
    req.verify_log().unwrap();

    // An overcharge in its place is voided, and the next still books: the batch's one
    // ack says how much of the chain was rejected.
    let overcharged: &dyn Fn(Option<_>, bool) -> ReceiptVerdict = &|_, _| {
        ReceiptVerdict::Reject(ReceiptReject::IncorrectAmount {
            expected: 1,
            got: 500,
        })
    };
    let third = req
        .book_all(&[(&receipts[4], overcharged), item(5)])
        .unwrap();
    let Booking::Acked { ack, fresh: true } = &third[1] else {
        panic!("{third:?}")
    };
    let Booking::Rejected { latest, .. } = &third[0] else {
        panic!("{third:?}")
    };
    assert_eq!(latest.as_ref(), Some(ack));
    let a = ack.payload_unverified(MAX_RECEIPT_BYTES_TEST).unwrap();
    assert_eq!((a.sequence, a.cumulative, a.rejected), (6, 2100, 500));
    let r = req.account(&ek.public()).unwrap();
    assert_eq!((r.balance, r.accepted, r.voided), (-1600, 1600, 500));

    // The executor records the answers in one write: one ack checked, both sides agree.
    let answers: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let answer = if n == 4 {
                ReceiptAnswer::Rejected {
                    code: "incorrect_amount".into(),
                    reason: "overcharged".into(),
                    latest: Some(ack.clone()),
                }
            } else {
                ReceiptAnswer::Acked { ack: ack.clone() }
            };
            (i.execution_id, answer)
        })
        .collect();
    exec.record_answers(&answers).unwrap();
    let e = exec.account(&rk.public()).unwrap();
    assert_eq!(
        (e.balance, e.acked, e.voided, e.rejected),
        (1600, 1600, 500, 1)
    );
    assert!(matches!(
        exec.issued(&inputs[4].execution_id)
            .unwrap()
            .unwrap()
            .status,
        ReceiptStatus::Rejected { .. }
    ));
    assert_eq!(
        exec.issued(&inputs[5].execution_id)
            .unwrap()
            .unwrap()
            .status,
        ReceiptStatus::Accepted
    );
    assert_eq!(e.balance + r.balance, 0);
    exec.verify_log().unwrap();
}

#[test]
fn an_accepted_receipt_costs_no_write_of_its_own_and_a_held_one_is_accepted_by_a_later_ack() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (dbe, exec) = open(de.path(), &ek);
    let (_dbr, req) = open(dr.path(), &rk);
    let inputs: Vec<_> = (1..=3u64).map(|a| input(rk.public(), a * 100)).collect();
    let receipts: Vec<_> = inputs
        .iter()
        .map(|i| exec.issue(i).unwrap().0.receipt)
        .collect();
    let status = |i: usize| {
        exec.issued(&inputs[i].execution_id)
            .unwrap()
            .unwrap()
            .status
    };
    let stored_statuses = || {
        dbe.open_tree("ledger")
            .unwrap()
            .scan_prefix([super::records::key::ISSUED_STATUS])
            .count()
    };

    // The requester holds the second (its predecessor has not arrived): stored.
    exec.record_answers(&[(inputs[1].execution_id, ReceiptAnswer::Held { latest: None })])
        .unwrap();
    assert_eq!(
        (status(0), status(1)),
        (ReceiptStatus::Issued, ReceiptStatus::Held)
    );
    assert_eq!(stored_statuses(), 1);

    // The first and second are booked; only the first's answer arrives: its
    // acknowledgement covers both, the held status is gone, nothing else written.
    let requests: Vec<_> = inputs.iter().map(|i| request_for(i, rk.public())).collect();
    let checks = checks_of(&rk, &ek, &inputs, &requests, &receipts);
    let booked = req
        .book_all(&[(&receipts[0], &checks[0]), (&receipts[1], &checks[1])])
        .unwrap();
    let Booking::Acked { ack, .. } = &booked[0] else {
        panic!("{booked:?}")
    };
    exec.record_answers(&[(
        inputs[0].execution_id,
        ReceiptAnswer::Acked { ack: ack.clone() },
    )])
    .unwrap();
    assert_eq!(
        (status(0), status(1), status(2)),
        (
            ReceiptStatus::Accepted,
            ReceiptStatus::Accepted,
            ReceiptStatus::Issued
        )
    );
    exec.record_answers(&[(
        inputs[1].execution_id,
        ReceiptAnswer::Acked { ack: ack.clone() },
    )])
    .unwrap();
    assert_eq!(
        stored_statuses(),
        0,
        "an accepted receipt's status is not stored"
    );
    assert_eq!(status(1), ReceiptStatus::Accepted);
    // Issuing again answers the same receipt, with its status.
    let (again, fresh) = exec.issue(&inputs[1]).unwrap();
    assert!(!fresh);
    assert_eq!(again.status, ReceiptStatus::Accepted);
}

#[test]
fn a_batch_of_answers_with_a_forged_acknowledgement_is_recorded_nowhere() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (_dbe, exec) = open(de.path(), &ek);
    let (_dbr, req) = open(dr.path(), &rk);
    let (a, b) = (input(rk.public(), 100), input(rk.public(), 200));
    let (qa, qb) = (request_for(&a, rk.public()), request_for(&b, rk.public()));
    let ra = exec.issue(&a).unwrap().0.receipt;
    let rb = exec.issue(&b).unwrap().0.receipt;
    let (ca, cb) = (
        checker(rk.public(), ek.public(), &a, &qa, &ra),
        checker(rk.public(), ek.public(), &b, &qb, &rb),
    );
    let booked = req.book_all(&[(&ra, &ca), (&rb, &cb)]).unwrap();
    let Booking::Acked { ack, .. } = &booked[1] else {
        panic!("{booked:?}")
    };
    // The same acknowledgement, signed by another key.
    let forged = Signed::sign(
        &Keypair::generate().unwrap(),
        mesg_protocol::types::domains::CUMULATIVE_ACK,
        &ack.payload_unverified(MAX_RECEIPT_BYTES_TEST).unwrap(),
        now_ms(),
        60_000,
        MAX_RECEIPT_BYTES_TEST,
    )
    .unwrap();
    let answers = [
        (a.execution_id, ReceiptAnswer::Acked { ack: ack.clone() }),
        (b.execution_id, ReceiptAnswer::Acked { ack: forged }),
    ];
    assert!(exec.record_answers(&answers).is_err());
    let e = exec.account(&rk.public()).unwrap();
    assert_eq!((e.acked, e.balance), (0, 300), "nothing recorded: {e:?}");
    assert_eq!(
        exec.issued(&a.execution_id).unwrap().unwrap().status,
        ReceiptStatus::Issued
    );
    // An answer to a receipt never issued here fails the batch too.
    let unknown = [(
        ExecutionId::random(),
        ReceiptAnswer::Acked { ack: ack.clone() },
    )];
    assert!(exec.record_answers(&unknown).is_err());
    assert_eq!(exec.account(&rk.public()).unwrap().acked, 0);
}

/// The requester's check of each receipt (`checker`), by index.
fn checks_of<'a>(
    rk: &Keypair,
    ek: &Keypair,
    inputs: &'a [IssueInput],
    requests: &'a [ExecutionRequest],
    receipts: &'a [Signed<UsageReceipt>],
) -> Vec<impl Fn(Option<PairState>, bool) -> ReceiptVerdict + 'a> {
    (0..inputs.len())
        .map(|i| {
            checker(
                rk.public(),
                ek.public(),
                &inputs[i],
                &requests[i],
                &receipts[i],
            )
        })
        .collect()
}

const MAX_RECEIPT_BYTES_TEST: usize = mesg_protocol::economy::MAX_RECEIPT_BYTES;
