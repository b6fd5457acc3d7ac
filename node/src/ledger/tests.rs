//! The ledger on a real sled directory: issuing and booking, replays, holding out of
//! order, exactly once across a reopen, the log's chain, credit limits, settlement.

use super::*;
use mesg_protocol::economy::{
    Cost, Price, ReceiptReject, ReceiptVerdict, RequesterView, Usage, check_receipt,
};
use mesg_protocol::messages::ReceiptAnswer;
use mesg_protocol::{ExecutionRequest, Hash32, ServiceHash};

/// Opens through the store's own opener: a database closed a moment ago keeps its file
/// lock while sled's threads let go of it, and the reopen tests would otherwise race them.
pub(super) fn open(dir: &std::path::Path, key: &Keypair) -> (sled::Db, Ledger) {
    let db = crate::store::open_db(dir).unwrap();
    let ledger = Ledger::new(key.clone(), db.open_tree("ledger").unwrap(), 10_000);
    (db, ledger)
}

pub(super) fn input(requester: PublicKey, amount: u64) -> IssueInput {
    IssueInput {
        execution_id: ExecutionId::random(),
        request_digest: Hash32::sha256(b"request"),
        result_digest: Hash32::sha256(b"result"),
        service_hash: ServiceHash(Hash32::sha256(b"service")),
        task_key: "t".into(),
        cost: Cost {
            usage: Usage {
                calls: 1,
                duration_ms: 0,
                bytes_out: 2,
            },
            price: Price {
                call: amount,
                per_ms: 0,
                per_kib: 0,
            },
            max_price: Some(amount),
            amount,
        },
        requester,
        publisher: None,
    }
}

/// The requester's check of a receipt issued from `input`, as a node would run it.
pub(super) fn checker<'a>(
    me: PublicKey,
    executor: PublicKey,
    input: &'a IssueInput,
    request: &'a ExecutionRequest,
    signed: &'a Signed<UsageReceipt>,
) -> impl Fn(Option<PairState>, bool) -> ReceiptVerdict + 'a {
    move |last, already_booked| {
        check_receipt(
            signed,
            &RequesterView {
                me,
                last,
                request: Some(request),
                request_digest: input.request_digest,
                executor: Some(executor),
                result_digest: input.result_digest,
                price: Some(input.cost.price),
                usage: input.cost.usage,
                already_booked,
                signature_checked: false,
            },
            now_ms(),
        )
    }
}

pub(super) fn request_for(input: &IssueInput, requester: PublicKey) -> ExecutionRequest {
    ExecutionRequest {
        execution_id: input.execution_id,
        service_hash: input.service_hash,
        task_key: "t".into(),
        inputs: mesg_protocol::Json::null(),
        requester,
        requester_node: requester,
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 1000,
        created_at: 0,
        idempotency_key: None,
        cause: None,
        max_price: Some(input.cost.amount),
        verify: None,
    }
}

use mesg_protocol::economy::{PairState, UsageReceipt};
use mesg_protocol::envelope::Signed;

#[test]
fn a_receipt_is_issued_once_booked_once_and_both_sides_agree() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (_dbe, exec) = open(de.path(), &ek);
    let (_dbr, req) = open(dr.path(), &rk);
    let publisher = Keypair::generate().unwrap().public();
    let mut total = 0;
    for amount in [100u64, 250, 7] {
        let mut inp = input(rk.public(), amount);
        inp.publisher = Some((publisher, amount / 10));
        let request = request_for(&inp, rk.public());
        exec.reserve(&rk.public(), &inp.execution_id, amount)
            .unwrap();
        let (issued, fresh) = exec.issue(&inp).unwrap();
        assert!(fresh);
        // Issued again (a restart): the same receipt, nothing booked twice.
        let (again, fresh) = exec.issue(&inp).unwrap();
        assert!(!fresh);
        assert_eq!(again.receipt, issued.receipt);
        let check = checker(rk.public(), ek.public(), &inp, &request, &issued.receipt);
        let booking = req.book(&issued.receipt, &check).unwrap();
        let Booking::Acked { ack, fresh: true } = booking else {
            panic!("{booking:?}")
        };
        // Delivered again: recognised, acknowledged, not booked again.
        let again = req.book(&issued.receipt, &check).unwrap();
        assert!(
            matches!(again, Booking::Acked { fresh: false, .. }),
            "{again:?}"
        );
        exec.record_answer(&inp.execution_id, &ReceiptAnswer::Acked { ack })
            .unwrap();
        total += amount;
        // the debit, and the publisher's credit when its share is not 0 (reservations
        // are not logged: they live in memory)
        let expected = if amount / 10 > 0 { 2 } else { 1 };
        assert_eq!(exec.entries_of(&inp.execution_id).unwrap().len(), expected);
        assert_eq!(req.entries_of(&inp.execution_id).unwrap().len(), 1);
    }
    let e = exec.account(&rk.public()).unwrap();
    let r = req.account(&ek.public()).unwrap();
    assert_eq!(
        (e.balance, e.issued, e.acked, e.reserved),
        (total as i64, total, total, 0)
    );
    assert_eq!((r.balance, r.accepted), (-(total as i64), total));
    assert_eq!(e.balance + r.balance, 0);
    assert_eq!(exec.account(&publisher).unwrap().balance, -(10 + 25));
    assert_eq!(exec.verify_log().unwrap(), 8); // and one `accept` per ack
    assert_eq!(req.verify_log().unwrap(), 3);
}

#[test]
fn out_of_order_receipts_are_held_then_booked_and_bad_ones_rejected_nowhere_booked() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (_dbe, exec) = open(de.path(), &ek);
    let (_dbr, req) = open(dr.path(), &rk);
    let first = input(rk.public(), 100);
    let second = input(rk.public(), 100);
    let (r1, _) = exec.issue(&first).unwrap();
    let (r2, _) = exec.issue(&second).unwrap();
    let (q1, q2) = (
        request_for(&first, rk.public()),
        request_for(&second, rk.public()),
    );
    let held = req
        .book(
            &r2.receipt,
            &checker(rk.public(), ek.public(), &second, &q2, &r2.receipt),
        )
        .unwrap();
    assert!(matches!(held, Booking::Held(None)), "{held:?}");
    assert_eq!(
        req.received(&second.execution_id).unwrap().unwrap().status,
        ReceiptStatus::Held
    );
    req.book(
        &r1.receipt,
        &checker(rk.public(), ek.public(), &first, &q1, &r1.receipt),
    )
    .unwrap();
    let next = req.next_held(&ek.public()).unwrap().expect("held");
    let booked = req
        .book(
            &next,
            &checker(rk.public(), ek.public(), &second, &q2, &next),
        )
        .unwrap();
    assert!(matches!(booked, Booking::Acked { fresh: true, .. }));
    assert_eq!(req.account(&ek.public()).unwrap().balance, -200);
    // An overcharge: rejected with its reason, booked nowhere, shown on the account.
    let mut third = input(rk.public(), 100);
    third.cost.amount = 900;
    let (r3, _) = exec.issue(&third).unwrap();
    let mut q3 = request_for(&third, rk.public());
    q3.max_price = Some(1000);
    let rejected = req
        .book(
            &r3.receipt,
            &checker(rk.public(), ek.public(), &third, &q3, &r3.receipt),
        )
        .unwrap();
    let Booking::Rejected { reason, latest } = rejected else {
        panic!("{rejected:?}")
    };
    assert!(
        matches!(reason, ReceiptReject::IncorrectAmount { .. }),
        "{reason}"
    );
    let account = req.account(&ek.public()).unwrap();
    assert_eq!((account.balance, account.rejected), (-200, 1));
    assert!(account.last_receipt.unwrap().contains("incorrect amount"));
    exec.record_answer(
        &third.execution_id,
        &ReceiptAnswer::Rejected {
            code: reason.code().into(),
            reason: reason.to_string(),
            latest,
        },
    )
    .unwrap();
    // It kept its place in the chain: voided on both sides, the next one books.
    let on_exec = exec.account(&rk.public()).unwrap();
    assert_eq!(
        (on_exec.acked, on_exec.rejected, on_exec.voided),
        (200, 1, 900)
    );
    assert_eq!(on_exec.balance, 200);
    assert_eq!(req.account(&ek.public()).unwrap().voided, 900);
    let fourth = input(rk.public(), 100);
    let (r4, _) = exec.issue(&fourth).unwrap();
    let q4 = request_for(&fourth, rk.public());
    let b4 = req
        .book(
            &r4.receipt,
            &checker(rk.public(), ek.public(), &fourth, &q4, &r4.receipt),
        )
        .unwrap();
    assert!(matches!(b4, Booking::Acked { fresh: true, .. }), "{b4:?}");
}

#[test]
fn booking_is_exactly_once_across_a_reopen() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let inp = input(rk.public(), 300);
    let request = request_for(&inp, rk.public());
    let receipt = {
        let (db, exec) = open(de.path(), &ek);
        let (issued, _) = exec.issue(&inp).unwrap();
        db.flush().unwrap();
        issued.receipt
    };
    {
        let (db, req) = open(dr.path(), &rk);
        req.book(
            &receipt,
            &checker(rk.public(), ek.public(), &inp, &request, &receipt),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let (_db, exec) = open(de.path(), &ek);
    let (again, fresh) = exec.issue(&inp).unwrap();
    assert!(!fresh);
    assert_eq!(again.receipt, receipt);
    let (_db2, req) = open(dr.path(), &rk);
    let b = req
        .book(
            &receipt,
            &checker(rk.public(), ek.public(), &inp, &request, &receipt),
        )
        .unwrap();
    assert!(matches!(b, Booking::Acked { fresh: false, .. }), "{b:?}");
    assert_eq!(req.account(&ek.public()).unwrap().balance, -300);
    assert_eq!(exec.account(&rk.public()).unwrap().balance, 300);
    assert_eq!(
        (exec.verify_log().unwrap(), req.verify_log().unwrap()),
        (1, 1)
    );
}

#[test]
fn the_credit_limit_refuses_then_settlement_frees_it() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (_dbe, exec) = open(de.path(), &ek);
    let (_dbr, req) = open(dr.path(), &rk);
    exec.set_limit(&rk.public(), Some(250)).unwrap();
    let mut last_ack = None;
    for _ in 0..2 {
        let inp = input(rk.public(), 100);
        exec.reserve(&rk.public(), &inp.execution_id, 100).unwrap();
        let (issued, _) = exec.issue(&inp).unwrap();
        let q = request_for(&inp, rk.public());
        let Booking::Acked { ack, .. } = req
            .book(
                &issued.receipt,
                &checker(rk.public(), ek.public(), &inp, &q, &issued.receipt),
            )
            .unwrap()
        else {
            panic!("not booked")
        };
        last_ack = Some(ack);
    }
    let err = exec
        .reserve(&rk.public(), &ExecutionId::random(), 100)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "credit limit: {} owes 200 µc, 0 µc reserved, this call may cost 100 µc, limit 250 µc",
            rk.public()
        )
    );
    let statement = Credits.pay(&req, &ek.public()).unwrap();
    exec.record_ack(&last_ack.unwrap()).unwrap();
    assert_eq!(Credits.verify_payment(&exec, &statement).unwrap(), 200);
    assert_eq!(Credits.verify_payment(&exec, &statement).unwrap(), 0);
    assert_eq!(exec.account(&rk.public()).unwrap().balance, 0);
    assert_eq!(req.account(&ek.public()).unwrap().balance, 0);
    exec.reserve(&rk.public(), &ExecutionId::random(), 100)
        .unwrap();
    // Nothing more owed: nothing to pay. A statement to another node is refused.
    assert!(matches!(
        Credits.pay(&req, &ek.public()),
        Ok(_) | Err(SettleError::NothingOwed { .. })
    ));
    let other = Keypair::generate().unwrap();
    let (_dbo, stranger) = open(tempfile::tempdir().unwrap().path(), &other);
    assert!(matches!(
        Credits.verify_payment(&stranger, &statement),
        Err(SettleError::Refused(_))
    ));
}

#[test]
fn reservations_count_against_the_limit_until_receipted_and_come_back_at_start() {
    let (de, _dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (_dbe, exec) = open(de.path(), &ek);
    exec.set_limit(&rk.public(), Some(250)).unwrap();
    let (a, b) = (input(rk.public(), 100), input(rk.public(), 100));
    exec.reserve(&rk.public(), &a.execution_id, 100).unwrap();
    exec.reserve(&rk.public(), &b.execution_id, 100).unwrap();
    // Again for the same execution: held once.
    exec.reserve(&rk.public(), &b.execution_id, 100).unwrap();
    assert_eq!(exec.account(&rk.public()).unwrap().reserved, 200);
    let err = exec
        .reserve(&rk.public(), &ExecutionId::random(), 100)
        .unwrap_err();
    assert!(err.to_string().contains("0 µc, 200 µc reserved"), "{err}");
    // Receipted: owed instead of reserved; the limit counts it the same.
    exec.issue(&a).unwrap();
    let account = exec.account(&rk.public()).unwrap();
    assert_eq!((account.balance, account.reserved), (100, 100));
    assert!(
        exec.reserve(&rk.public(), &ExecutionId::random(), 100)
            .is_err()
    );
    // Ended without a charge: let go.
    assert!(exec.release(&b.execution_id));
    assert!(!exec.release(&b.execution_id));
    assert_eq!(exec.account(&rk.public()).unwrap().reserved, 0);
    // A restart (a new ledger: nothing in memory) holds what the open executions carry.
    drop(exec);
    let (_db2, again) = open(tempfile::tempdir().unwrap().path(), &ek);
    again.set_limit(&rk.public(), Some(250)).unwrap();
    let c = ExecutionId::random();
    again.restore_reservations([(rk.public(), c, 240)]);
    assert_eq!(again.reservations(), vec![c]);
    assert!(
        again
            .reserve(&rk.public(), &ExecutionId::random(), 20)
            .is_err()
    );
    assert!(again.release(&c));
    again
        .reserve(&rk.public(), &ExecutionId::random(), 20)
        .unwrap();
}

#[test]
fn one_signature_per_write_covers_the_chain_and_a_changed_entry_is_caught() {
    let (de, _dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (db, exec) = open(de.path(), &ek);
    let publisher = Keypair::generate().unwrap().public();
    let mut inp = input(rk.public(), 100);
    inp.publisher = Some((publisher, 10));
    exec.issue(&inp).unwrap();
    // One write, two entries (debit, credit): only the last is signed.
    let log = exec.log(10).unwrap();
    assert_eq!(log.len(), 2);
    assert!(!log[0].signature.is_empty() && log[1].signature.is_empty());
    assert_eq!(exec.verify_log().unwrap(), 2);
    let tree = db.open_tree("ledger").unwrap();
    // The unsigned entry changed: its hash no longer matches.
    let mut first = log[1].clone();
    first.entry.amount = 1;
    tree.insert(records::key::log(1), records::enc(&first).unwrap())
        .unwrap();
    assert!(exec.verify_log().is_err());
    // Re-hashed to match: the next entry no longer chains to it.
    first.hash = first.hash();
    tree.insert(records::key::log(1), records::enc(&first).unwrap())
        .unwrap();
    assert!(exec.verify_log().is_err());
    tree.insert(records::key::log(1), records::enc(&log[1]).unwrap())
        .unwrap();
    assert_eq!(exec.verify_log().unwrap(), 2);
    // The last entry without its signature: refused.
    let mut last = log[0].clone();
    last.signature.clear();
    tree.insert(records::key::log(2), records::enc(&last).unwrap())
        .unwrap();
    assert!(exec.verify_log().is_err());
    // Signed by another key: refused.
    last.signature = rk.sign(&last.hash.0).to_vec();
    tree.insert(records::key::log(2), records::enc(&last).unwrap())
        .unwrap();
    assert!(exec.verify_log().is_err());
}

#[tokio::test]
async fn a_receipt_ahead_of_its_chain_waits_for_the_one_before_it_then_gives_up() {
    let (de, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ek, rk) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let (_dbe, exec) = open(de.path(), &ek);
    let (_dbr, req) = open(dr.path(), &rk);
    let req = std::sync::Arc::new(req);
    let first = input(rk.public(), 100);
    let (r1, _) = exec.issue(&first).unwrap();
    // The first receipt is next: no wait.
    let t = std::time::Instant::now();
    req.wait_turn(&ek.public(), 1, std::time::Duration::from_secs(5))
        .await;
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    // The second waits until the first is booked.
    let waiting = {
        let req = req.clone();
        let executor = ek.public();
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            req.wait_turn(&executor, 2, std::time::Duration::from_secs(5))
                .await;
            t.elapsed()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    let q1 = request_for(&first, rk.public());
    req.book(
        &r1.receipt,
        &checker(rk.public(), ek.public(), &first, &q1, &r1.receipt),
    )
    .unwrap();
    let waited = waiting.await.unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(100)
            && waited < std::time::Duration::from_secs(4),
        "{waited:?}"
    );
    // The one before it never comes: it gives up after its patience.
    let t = std::time::Instant::now();
    req.wait_turn(&ek.public(), 4, std::time::Duration::from_millis(150))
        .await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
}
