//! Issue 15 (k-of-n verification) as a lazy or lying executor sees it: commits and
//! reveals are new peer-facing inputs of the requester's node. A rogue provider of a
//! deterministic task takes a 2-of-2 verified execution next to an honest provider and
//! tries to answer without doing the work:
//! - a commit signed by another key is refused (`WrongNode`), as is a commit for an
//!   execution it was never asked (`UnknownExecution`);
//! - it commits to a guess, then tries a second commit (`WrongNode`: one commit per
//!   executor), then reveals the right answer (as if copied from the honest executor):
//!   the reveal does not open its commit, so it counts as a disagreement, the round ends
//!   `verification undecided` and the record says why; the record re-checks from its
//!   signatures alone.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::evidence::check_verification;
use mesg_protocol::messages::{RejectCode, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::verification::{
    COMMIT_TTL_MS, MAX_COMMIT_BYTES, MAX_REVEAL_BYTES, OutputCommit, Reveal, VerificationRecord,
    new_salt,
};
use mesg_protocol::*;
use mesg_testkit::NodeProcess;
use serde_json::{Value, json};
use std::time::Duration;

/// A copy of echo whose `echo` task is declared deterministic (it is).
fn deterministic_echo() -> std::path::PathBuf {
    mesg_testkit::service_variant(
        "echo",
        "verify-commits",
        &[
            ("sid: echo\n", "sid: echo-commits\n"),
            (
                "    description: Return the inputs unchanged.\n",
                "    description: Return the inputs unchanged.\n    deterministic: true\n",
            ),
        ],
    )
}

fn sign<T: serde::Serialize + serde::de::DeserializeOwned + Claims>(
    key: &Keypair,
    domain: &str,
    payload: &T,
    max: usize,
) -> Signed<T> {
    Signed::sign(key, domain, payload, now_ms(), COMMIT_TTL_MS, max).unwrap()
}

/// `commit`, signed by `key`, sent by the rogue to `to`; the answer.
async fn send_commit(
    rogue: &Rogue,
    to: mesg_node::network::PeerId,
    key: &Keypair,
    commit: &OutputCommit,
) -> WorkResponse {
    let signed = sign(key, domains::VERIFY_COMMIT, commit, MAX_COMMIT_BYTES);
    send(rogue, to, WorkRequest::Commit(signed)).await
}

async fn send(rogue: &Rogue, to: mesg_node::network::PeerId, request: WorkRequest) -> WorkResponse {
    rogue
        .net
        .send_work(to, request)
        .await
        .expect("the victim answers")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lazy_executor_cannot_reveal_an_answer_it_did_not_commit_to() {
    let v = NodeProcess::start(&[]);
    let h = NodeProcess::start(&["--bootstrap", &v.p2p_addr()]);
    let (api_v, api_h) = (Api::new(&v), Api::new(&h));
    let dir = deterministic_echo();
    let (service, _) = rogue::deploy_and_start(&api_h, &dir).await;
    let service_hash: ServiceHash = service.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::AcceptAndVanish).await;
    let v_peer: mesg_node::network::PeerId =
        v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();
    let liar = {
        let r = Rogue::from_parts(rogue.key.clone(), rogue.net.clone());
        tokio::spawn(async move {
            loop {
                r.announce(vec![rogue::offer(service_hash, 0)], vec![], 20_000)
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let mut providers = 0;
    for _ in 0..200 {
        let s = api_v.get("/v1/network/services").await.body;
        providers = s["services"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["service_hash"] == service.as_str()))
            .and_then(|x| x["providers"].as_array().map(Vec::len))
            .unwrap_or(0);
        if providers >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(providers >= 2, "V never saw both providers");

    let created = api_v
        .post(
            "/v1/executions",
            &json!({"service": service, "task": "echo", "inputs": {"message": "copy me"}, "verify": "2/2/2", "timeout_ms": 30000}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id: ExecutionId = created.body["id"].as_str().unwrap().parse().unwrap();
    // Both providers asked.
    let mut record = Value::Null;
    for _ in 0..100 {
        record = api_v
            .get(&format!("/v1/executions/{id}/attempts"))
            .await
            .body;
        if record["attempts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["executor"] == rogue.public().to_string().as_str())
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let request_digest: Hash32 = serde_json::from_value(record["request_digest"].clone())
        .unwrap_or_else(|e| panic!("{e}: {record}"));
    let guess = Json(json!({"message": "a guess"}));
    let salt = new_salt();
    let me = rogue.public();

    // A commit signed by another key: not the sender's.
    let other = Keypair::generate().unwrap();
    let forged = OutputCommit::new(id, request_digest, other.public(), &salt, &guess, now_ms());
    let answer = send_commit(&rogue, v_peer, &other, &forged).await;
    let (code, message) = rogue::refused(answer);
    assert_eq!(code, RejectCode::WrongNode, "{message}");

    // A commit for an execution nobody asked it about.
    let stray = OutputCommit::new(
        ExecutionId::random(),
        request_digest,
        me,
        &salt,
        &guess,
        now_ms(),
    );
    let (code, message) = rogue::refused(send_commit(&rogue, v_peer, &rogue.key, &stray).await);
    assert_eq!(code, RejectCode::UnknownExecution, "{message}");

    // It commits to a guess (taken), then cannot commit again.
    let commit = OutputCommit::new(id, request_digest, me, &salt, &guess, now_ms());
    assert_eq!(
        send_commit(&rogue, v_peer, &rogue.key, &commit).await,
        WorkResponse::Accepted
    );
    let right = Json(json!({"message": "copy me"}));
    let second = OutputCommit::new(id, request_digest, me, &salt, &right, now_ms());
    let (code, message) = rogue::refused(send_commit(&rogue, v_peer, &rogue.key, &second).await);
    assert_eq!(code, RejectCode::WrongNode, "{message}");
    assert!(message.contains("already committed"), "{message}");

    // It reveals the right answer (what the honest executor revealed): not what it
    // committed to.
    let reveal = Reveal {
        execution_id: id,
        executor: me,
        salt,
        outputs: right,
    };
    assert_eq!(
        send(
            &rogue,
            v_peer,
            WorkRequest::Reveal(sign(
                &rogue.key,
                domains::VERIFY_REVEAL,
                &reveal,
                MAX_REVEAL_BYTES
            )),
        )
        .await,
        WorkResponse::Accepted
    );

    let ended = api_v
        .get(&format!("/v1/executions/{id}/wait?timeout_ms=20000"))
        .await
        .body;
    assert_eq!(ended["status"], "Failed", "{ended}");
    assert!(
        ended["error"]
            .as_str()
            .unwrap_or_default()
            .contains("verification undecided"),
        "{ended}"
    );
    let raw = api_v
        .get(&format!("/v1/executions/{id}/attempts"))
        .await
        .body;
    let record: VerificationRecord = serde_json::from_value(raw.clone()).unwrap();
    assert!(check_verification(&record).is_empty(), "{raw}");
    let lazy = record
        .attempts
        .iter()
        .find(|a| a.executor == me)
        .unwrap_or_else(|| panic!("{raw}"));
    assert_eq!(
        lazy.verdict,
        Some(mesg_protocol::verification::Verdict::Disagreed),
        "{raw}"
    );
    assert!(
        lazy.note
            .as_deref()
            .unwrap_or_default()
            .contains("commitment"),
        "{raw}"
    );
    assert!(
        lazy.output_digest.is_none(),
        "its reveal joined no group: {raw}"
    );
    liar.abort();
    let _ = std::fs::remove_dir_all(dir);
}
