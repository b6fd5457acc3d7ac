//! Issue 14 (receipts and settlements on the wire) against rogue peers. A rogue executor
//! that overcharges, and one that signs its receipts with another key: the results stand,
//! every receipt is rejected with its reason, booked nowhere, and the account shows it
//! (`GET /v1/ledger`); the same when the receipts come apart from their results
//! (`Receipts`), before them, or signed by another node than the sender (refused before
//! any booking), and a batch of none or too many is refused. A rogue payer's garbage settlements (above what it acknowledged,
//! signed by another key, with an oversized proof, with a forged acknowledgement) are
//! refused and book nothing.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, Rogue};
use mesg_node::network::{self, NetworkConfig, NetworkEvent};
use mesg_protocol::economy::{
    CumulativeAck, MAX_RECEIPT_BYTES, MAX_SETTLEMENT_BYTES, Pair, Price, Settlement, Usage,
    UsageReceipt,
};
use mesg_protocol::messages::{
    MAX_RECEIPTS_PER_MESSAGE, PackageResponse, ReceiptAnswer, RejectCode, WorkRequest, WorkResponse,
};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::NodeProcess;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const PRICE: Price = Price {
    call: 1000,
    per_ms: 0,
    per_kib: 0,
};

/// How the rogue executor cheats on its receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Charges 5,000 µc more than the price and the usage make.
    Overcharge,
    /// Signs its receipts with a key that is not its node's.
    ForeignKey,
    /// Sends the result first, then its overcharged receipt apart (`Receipts`).
    SplitOvercharge,
    /// Sends its receipt (`Receipts`) before the result it is for.
    ReceiptFirst,
    /// Sends, apart from the result, a receipt another node signed for it.
    SplitOtherSigner,
}

/// The chain of receipts the rogue issued so far: (sequence, hash, cumulative).
type Chain = Arc<Mutex<(u64, Hash32, u64)>>;

/// A rogue executor: accepts every submit, answers with a completed result and a
/// receipt with `fault`, and keeps the requester's answers about receipts.
struct RogueExecutor {
    key: Keypair,
    net: network::NetworkHandle,
    answers: Arc<Mutex<Vec<WorkResponse>>>,
    stop: CancellationToken,
}

fn priced_result(
    key: &Keypair,
    fault: Fault,
    chain: &Chain,
    signed: &Signed<ExecutionRequest>,
) -> Vec<WorkRequest> {
    let request = signed.payload_unverified(MAX_WORK_MESSAGE).unwrap();
    let outputs = Json(json!({"message": "paid"}));
    let started = now_ms();
    let result = ExecutionResult {
        execution_id: request.execution_id,
        request_digest: signed.digest(),
        service_hash: request.service_hash,
        task_key: request.task_key.clone(),
        executor: key.public(),
        instance_hash: Some(rogue::fake_instance(request.service_hash)),
        outcome: Outcome::Completed {
            outputs: outputs.clone(),
        },
        started_at: Some(started),
        finished_at: started + 3,
    };
    let result = Signed::sign(
        key,
        domains::EXECUTION_RESULT,
        &result,
        now_ms(),
        600_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    let usage = Usage::of_call(3, &outputs);
    let due = PRICE.charge(&usage, request.max_price).unwrap();
    let amount = match fault {
        Fault::Overcharge | Fault::SplitOvercharge => due + 5_000,
        Fault::ForeignKey | Fault::ReceiptFirst | Fault::SplitOtherSigner => due,
    };
    let other = Keypair::generate().unwrap();
    let executor = match fault {
        Fault::SplitOtherSigner => other.public(),
        _ => key.public(),
    };
    let mut c = chain.lock().unwrap();
    let receipt = UsageReceipt {
        execution_id: request.execution_id,
        request_digest: signed.digest(),
        result_digest: result.digest(),
        service_hash: request.service_hash,
        task_key: request.task_key,
        usage,
        price: PRICE,
        amount,
        sequence: c.0 + 1,
        prev: c.1,
        cumulative: c.2 + amount,
        executor,
        requester: request.requester_node,
    };
    *c = (receipt.sequence, receipt.hash(), receipt.cumulative);
    let signer = match fault {
        Fault::ForeignKey | Fault::SplitOtherSigner => other,
        _ => key.clone(),
    };
    let receipt = sign_receipt(&signer, &receipt);
    match fault {
        Fault::Overcharge | Fault::ForeignKey => {
            vec![WorkRequest::PricedResult { result, receipt }]
        }
        Fault::SplitOvercharge | Fault::SplitOtherSigner => vec![
            WorkRequest::Result(result),
            WorkRequest::Receipts(vec![receipt]),
        ],
        Fault::ReceiptFirst => vec![
            WorkRequest::Receipts(vec![receipt]),
            WorkRequest::Result(result),
        ],
    }
}

fn sign_receipt(key: &Keypair, receipt: &UsageReceipt) -> Signed<UsageReceipt> {
    // Signing checks nothing: the receipt may claim an executor that is not the signer.
    Signed::sign(
        key,
        domains::RECEIPT,
        receipt,
        now_ms(),
        600_000,
        MAX_RECEIPT_BYTES,
    )
    .unwrap()
}

impl RogueExecutor {
    async fn join(target: &NodeProcess, fault: Fault) -> RogueExecutor {
        let key = Keypair::generate().unwrap();
        let stop = CancellationToken::new();
        let (net, mut events) = network::spawn(
            &key,
            NetworkConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                bootstrap: vec![target.p2p_addr().parse().unwrap()],
                private_network: true,
                ..NetworkConfig::default()
            },
            &mut Default::default(),
            stop.clone(),
        )
        .unwrap();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let chain: Chain = Arc::new(Mutex::new((0, Hash32::default(), 0)));
        {
            let (net, key, answers) = (net.clone(), key.clone(), answers.clone());
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        NetworkEvent::Work {
                            request, channel, ..
                        } => {
                            if let WorkRequest::Submit(signed) = request {
                                let messages = priced_result(&key, fault, &chain, &signed);
                                let requester = signed
                                    .payload_unverified(MAX_WORK_MESSAGE)
                                    .unwrap()
                                    .requester_node;
                                net.respond_work(channel, WorkResponse::Accepted).await;
                                let (net, answers) = (net.clone(), answers.clone());
                                tokio::spawn(async move {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    let peer = requester.peer_id().unwrap();
                                    for message in messages {
                                        match net.send_work(peer, message).await {
                                            Ok(WorkResponse::Accepted) => {}
                                            Ok(answer) => answers.lock().unwrap().push(answer),
                                            Err(_) => {}
                                        }
                                    }
                                });
                            } else {
                                net.respond_work(channel, WorkResponse::Accepted).await;
                            }
                        }
                        NetworkEvent::Package { channel, .. } => {
                            net.respond_package(channel, PackageResponse::NotFound("rogue".into()))
                                .await;
                        }
                        _ => {}
                    }
                }
            });
        }
        RogueExecutor {
            key,
            net,
            answers,
            stop,
        }
    }
}

/// The victim: a node that knows the priced service (deployed, no instance), and a
/// rogue executor announcing it, so that the victim's executions go to the rogue.
async fn victim_and_rogue(fault: Fault) -> (NodeProcess, Api, RogueExecutor, String) {
    let v = NodeProcess::start(&[]);
    let api = Api::new(&v);
    let dir = mesg_testkit::priced_echo("{call: 1000}", None);
    let done = api.deploy(dir.path()).await;
    let service = done["service"]["hash"].as_str().unwrap().to_string();
    let rogue = RogueExecutor::join(&v, fault).await;
    let announcer = Rogue::from_parts(rogue.key.clone(), rogue.net.clone());
    let hash: ServiceHash = service.parse().unwrap();
    for _ in 0..3 {
        announcer
            .announce(vec![rogue::offer(hash, 0)], vec![], 600_000)
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    rogue::wait_known(&api, &rogue.key.public()).await;
    (v, api, rogue, service)
}

async fn account_of(api: &Api, peer: &PublicKey) -> Value {
    let books = api.get("/v1/ledger").await;
    assert_eq!(books.status, 200, "{:?}", books.body);
    books.body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["peer"] == peer.to_string())
        .cloned()
        .unwrap_or(Value::Null)
}

async fn every_receipt_is_rejected(fault: Fault, code: &str) {
    let (_v, api, rogue, service) = victim_and_rogue(fault).await;
    for i in 0..3 {
        let e = api
            .post(
                "/v1/executions?wait=true",
                &json!({"service": service, "task": "echo", "max_price": 100_000,
                        "inputs": {"message": format!("call {i}")}}),
            )
            .await;
        assert_eq!(e.status, 201, "{:?}", e.body);
        assert_eq!(
            e.body["status"], "Completed",
            "the result stands: {:?}",
            e.body
        );
        assert_eq!(e.body["executor"], rogue.key.public().to_string());
    }
    for _ in 0..100 {
        if rogue.answers.lock().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answers = rogue.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 3, "{answers:?}");
    for a in &answers {
        match a {
            WorkResponse::Receipt(ReceiptAnswer::Rejected { code: got, .. }) => {
                assert_eq!(got, code, "{a:?}")
            }
            WorkResponse::Receipts(list) if list.len() == 1 => match &list[0] {
                ReceiptAnswer::Rejected { code: got, .. } => assert_eq!(got, code, "{a:?}"),
                other => panic!("not rejected: {other:?}"),
            },
            other => panic!("not rejected: {other:?}"),
        }
    }
    let account = account_of(&api, &rogue.key.public()).await;
    if fault == Fault::SplitOtherSigner {
        // Not the sender's own receipts: refused before any booking, none logged.
        assert!(
            account.is_null() || (account["balance"] == 0 && account["accepted"] == 0),
            "{account}"
        );
        rogue.stop.cancel();
        return;
    }
    assert_eq!(account["rejected"], 3, "{account}");
    assert_eq!(account["balance"], 0, "booked nowhere: {account}");
    assert_eq!(account["accepted"], 0, "{account}");
    let last = account["last_receipt"].as_str().unwrap_or_default();
    assert!(last.starts_with("rejected"), "{account}");
    let log = api.get("/v1/ledger/log").await;
    let rejects = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "reject" && e["reason"].as_str().unwrap().starts_with(code))
        .count();
    assert_eq!(rejects, 3, "{:?}", log.body);
    assert!(
        rogue::metric(&api, "mesg_receipts_rejected_total").await >= 0.0,
        "the counter exists"
    );
    rogue.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overcharging_executor_has_every_receipt_rejected_and_booked_nowhere() {
    every_receipt_is_rejected(Fault::Overcharge, "incorrect_amount").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_signed_with_another_key_are_rejected_and_booked_nowhere() {
    every_receipt_is_rejected(Fault::ForeignKey, "wrong_signer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overcharging_receipts_sent_apart_from_their_results_are_rejected() {
    every_receipt_is_rejected(Fault::SplitOvercharge, "incorrect_amount").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_sent_before_their_results_are_rejected_and_booked_nowhere() {
    every_receipt_is_rejected(Fault::ReceiptFirst, "wrong_result").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_of_another_node_sent_apart_are_refused_unbooked() {
    every_receipt_is_rejected(Fault::SplitOtherSigner, "wrong_signer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_or_oversized_batch_of_receipts_is_refused() {
    let (v, _api, rogue, _) = victim_and_rogue(Fault::Overcharge).await;
    let peer = v
        .public_key
        .parse::<PublicKey>()
        .unwrap()
        .peer_id()
        .unwrap();
    let one = sign_receipt(
        &rogue.key,
        &UsageReceipt {
            execution_id: ExecutionId::random(),
            request_digest: Hash32::default(),
            result_digest: Hash32::default(),
            service_hash: ServiceHash(Hash32::default()),
            task_key: "echo".into(),
            usage: Usage::default(),
            price: PRICE,
            amount: 1000,
            sequence: 1,
            prev: Hash32::default(),
            cumulative: 1000,
            executor: rogue.key.public(),
            requester: v.public_key.parse().unwrap(),
        },
    );
    for batch in [vec![], vec![one; MAX_RECEIPTS_PER_MESSAGE + 1]] {
        match rogue
            .net
            .send_work(peer, WorkRequest::Receipts(batch))
            .await
        {
            Ok(WorkResponse::Rejected(r)) => assert_eq!(r.code, RejectCode::Malformed, "{r}"),
            other => panic!("not refused: {other:?}"),
        }
    }
    rogue.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_settlements_are_refused_and_book_nothing() {
    let (v, api, rogue, _) = victim_and_rogue(Fault::Overcharge).await;
    let v_key: PublicKey = v.public_key.parse().unwrap();
    let v_peer = v_key.peer_id().unwrap();
    let statement = |payer: &Keypair, total: u64, proof: Vec<u8>| Settlement {
        payer: payer.public(),
        payee: v_key,
        total,
        method: "credits".into(),
        proof,
    };
    let sign = |key: &Keypair, s: &Settlement, max: usize| {
        Signed::sign(key, domains::SETTLEMENT, s, now_ms(), 60_000, max).unwrap()
    };
    let send = |settlement: Signed<Settlement>, ack: Option<Signed<CumulativeAck>>| {
        let net = rogue.net.clone();
        async move {
            match net
                .send_work(v_peer, WorkRequest::Settle { settlement, ack })
                .await
                .unwrap()
            {
                WorkResponse::Rejected(r) => (r.code, r.message),
                other => panic!("not refused: {other:?}"),
            }
        }
    };
    // More than the payer ever acknowledged owing (it acknowledged nothing).
    let (code, message) = send(
        sign(
            &rogue.key,
            &statement(&rogue.key, 1_000_000_000, vec![]),
            MAX_SETTLEMENT_BYTES,
        ),
        None,
    )
    .await;
    assert_eq!(code, RejectCode::Malformed, "{message}");
    assert!(message.contains("more than"), "{message}");
    // Signed by a key that is not the sending node's.
    let other = Keypair::generate().unwrap();
    let (code, message) = send(
        sign(&other, &statement(&other, 10, vec![]), MAX_SETTLEMENT_BYTES),
        None,
    )
    .await;
    assert_eq!(code, RejectCode::WrongNode, "{message}");
    // An oversized proof: over the statement's size limit.
    let (code, message) = send(
        sign(
            &rogue.key,
            &statement(&rogue.key, 10, vec![7; 4096]),
            MAX_WORK_MESSAGE,
        ),
        None,
    )
    .await;
    assert_eq!(code, RejectCode::Malformed, "{message}");
    assert!(message.contains("exceeds"), "{message}");
    // A forged acknowledgement (signed by another key for the pair) to raise the limit.
    let ack = CumulativeAck {
        pair: Pair {
            executor: v_key,
            requester: rogue.key.public(),
        },
        sequence: 1,
        receipt: Hash32::default(),
        cumulative: 1_000_000,
        rejected: 0,
    };
    let forged = Signed::sign(
        &other,
        domains::CUMULATIVE_ACK,
        &CumulativeAck {
            pair: Pair {
                executor: v_key,
                requester: other.public(),
            },
            ..ack
        },
        now_ms(),
        60_000,
        MAX_RECEIPT_BYTES,
    )
    .unwrap();
    let (code, message) = send(
        sign(
            &rogue.key,
            &statement(&rogue.key, 10, vec![]),
            MAX_SETTLEMENT_BYTES,
        ),
        Some(forged),
    )
    .await;
    assert_eq!(code, RejectCode::BadSignature, "{message}");
    let account = account_of(&api, &rogue.key.public()).await;
    assert!(
        account.is_null() || (account["received"] == 0 && account["acked"] == 0),
        "{account}"
    );
    rogue.stop.cancel();
}
