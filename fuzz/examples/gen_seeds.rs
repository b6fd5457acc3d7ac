//! Writes the seed corpus of the fuzz targets from real values:
//! - `seeds/wire_decode/*.bin`: one encoded frame of every message kind (signed envelopes
//!   signed with fixed test keys; the nonce is random, so bytes differ between runs);
//! - `seeds/envelope/*.bin`: for every signed payload type, its envelope in bincode and in
//!   JSON, and its payload bytes with the window and key byte the `envelope` target signs
//!   them with (see fuzz_targets/envelope.rs for the layout);
//! - checks that every `seeds/definition_yaml/*.yml` and `seeds/process_yaml/*.yml` marked
//!   `valid-` parses and every other one does not (`seeds/api_inputs/` is checked-in text).
//!
//! Run from `fuzz/`: `cargo run --example gen_seeds` (any target dir will do).

use mesg_protocol::economy::{
    CumulativeAck, MAX_RECEIPT_BYTES, Price, Usage, UsageReceipt,
};
use mesg_protocol::envelope::{Claims, Signed};
use mesg_protocol::messages::{
    GossipMessage, PackageRequest, PackageResponse, Reject, RejectCode, WorkRequest, WorkResponse,
};
use mesg_protocol::process::ProcessDefinition;
use mesg_protocol::types::{
    Announcement, CancelRequest, Event, EventId, ExecutionId, ExecutionRequest, ExecutionResult,
    Outcome, ProcessStepRef, ServiceOffer, ServiceRecord, domains,
};
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE, MAX_PACKAGE_MESSAGE, MAX_WORK_MESSAGE};
use mesg_protocol::{
    Bytes, Cause, CauseRef, Hash32, InstanceHash, Json, Keypair, PackageHash, ServiceDefinition,
    ServiceHash,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const NOW: u64 = 1_800_000_000_000;

fn sign<T: Serialize + DeserializeOwned + Claims>(
    key: &Keypair,
    domain: &str,
    payload: &T,
    max: usize,
) -> Signed<T> {
    let s = Signed::sign(key, domain, payload, NOW, 60_000, max).expect("sign");
    s.verify(domain, NOW, max).expect("a fresh seed verifies");
    s
}

fn write<T: Serialize>(dir: &Path, name: &str, value: &T, max: usize) {
    let bytes = wire::encode_frame(value, max).expect("encode seed");
    let path = dir.join(format!("{name}.bin"));
    std::fs::write(&path, &bytes).expect("write seed");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

/// The payload types in the order of the `envelope` target's selector (bits 0-2).
const ENVELOPE_KINDS: [&str; 8] = [
    domains::EXECUTION_REQUEST,
    domains::EXECUTION_RESULT,
    domains::CANCEL,
    domains::ANNOUNCEMENT,
    domains::EVENT,
    domains::SERVICE_RECORD,
    domains::RECEIPT,
    domains::CUMULATIVE_ACK,
];

/// Seeds of the `envelope` target for one signed payload: its envelope in bincode (mode 0)
/// and JSON (mode 1), and its payload to be signed by the target (mode 2) with the seed key
/// `key` (0: `[7; 32]`, 1: `[9; 32]`), at NOW for one minute.
fn envelope_seeds<T: Serialize + DeserializeOwned + Claims>(
    dir: &Path,
    name: &str,
    signed: &Signed<T>,
    key: u8,
    max: usize,
) {
    let kind = ENVELOPE_KINDS
        .iter()
        .position(|d| *d == signed.header.domain)
        .expect("a known domain") as u8;
    let mut bincode = vec![kind];
    bincode.extend(wire::encode(signed, max).expect("encode envelope"));
    let mut json = vec![kind | 1 << 3];
    json.extend(serde_json::to_vec(signed).expect("envelope to JSON"));
    let mut resign = vec![kind | 2 << 3];
    resign.extend(NOW.to_le_bytes());
    resign.extend((NOW + 60_000).to_le_bytes());
    resign.push(key);
    resign.extend(&signed.payload.0);
    for (suffix, bytes) in [("bin", bincode), ("json", json), ("sign", resign)] {
        let path = dir.join(format!("{name}_{suffix}.bin"));
        std::fs::write(&path, &bytes).expect("write seed");
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
}

/// Checks that every checked-in `valid-*` file of a seed directory parses and every other
/// one is refused.
fn check_text_seeds(dir: &Path, parses: impl Fn(&str) -> Result<(), String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("seed directory")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read seed");
        match (name.starts_with("valid-"), parses(&text)) {
            (true, Ok(())) => println!("{} parses", path.display()),
            (true, Err(e)) => panic!("{} should parse:\n{e}", path.display()),
            (false, Ok(())) => panic!("{} should be refused", path.display()),
            (false, Err(e)) => println!(
                "{} is refused ({} lines)",
                path.display(),
                e.lines().count()
            ),
        }
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let wire_dir = root.join("wire_decode");
    std::fs::create_dir_all(&wire_dir).expect("create seeds/wire_decode");
    let env_dir = root.join("envelope");
    std::fs::create_dir_all(&env_dir).expect("create seeds/envelope");

    let requester = Keypair::from_secret_bytes([7; 32]);
    let node = Keypair::from_secret_bytes([9; 32]);
    let service_hash = ServiceHash(Hash32::sha256(b"service"));
    let instance_hash = InstanceHash(Hash32::sha256(b"instance"));

    let request = ExecutionRequest {
        execution_id: ExecutionId([1; 16]),
        service_hash,
        task_key: "send".into(),
        inputs: Json(
            serde_json::json!({"to": "a@b.c", "n": [1, 2.5, null, true], "o": {"k": "v"}}),
        ),
        requester: requester.public(),
        requester_node: node.public(),
        parent: Some(ExecutionId([2; 16])),
        process: Some(ProcessStepRef {
            process: "p".into(),
            run: "r".into(),
            step: "s".into(),
        }),
        tags: vec!["t1".into(), "t2".into()],
        timeout_ms: 30_000,
        created_at: NOW,
        idempotency_key: Some("order-1".into()),
        cause: Some(Cause {
            depth: 2,
            root: CauseRef::Event(EventId([4; 16])),
            parent: CauseRef::Execution(ExecutionId([2; 16])),
        }),
        max_price: Some(25_000),
        verify: None,
    };
    let submit = sign(
        &requester,
        domains::EXECUTION_REQUEST,
        &request,
        MAX_WORK_MESSAGE,
    );
    envelope_seeds(&env_dir, "execution_request", &submit, 0, MAX_WORK_MESSAGE);
    write(
        &wire_dir,
        "work_submit",
        &WorkRequest::Submit(submit.clone()),
        MAX_WORK_MESSAGE,
    );

    for (name, outcome) in [
        (
            "work_result_completed",
            Outcome::Completed {
                outputs: Json(serde_json::json!({"id": "x-1"})),
            },
        ),
        (
            "work_result_failed",
            Outcome::Failed {
                error: "boom".into(),
            },
        ),
    ] {
        let result = ExecutionResult {
            execution_id: ExecutionId([1; 16]),
            request_digest: submit.digest(),
            service_hash,
            task_key: "send".into(),
            executor: node.public(),
            instance_hash: Some(instance_hash),
            outcome,
            started_at: Some(NOW + 1),
            finished_at: NOW + 2,
        };
        let signed = sign(&node, domains::EXECUTION_RESULT, &result, MAX_WORK_MESSAGE);
        let short = name.strip_prefix("work_result_").unwrap_or(name);
        envelope_seeds(
            &env_dir,
            &format!("execution_result_{short}"),
            &signed,
            1,
            MAX_WORK_MESSAGE,
        );
        write(
            &wire_dir,
            name,
            &WorkRequest::Result(signed),
            MAX_WORK_MESSAGE,
        );
    }

    let cancel = CancelRequest {
        execution_id: ExecutionId([1; 16]),
        requester: requester.public(),
        reason: "changed my mind".into(),
    };
    let signed = sign(&requester, domains::CANCEL, &cancel, MAX_WORK_MESSAGE);
    envelope_seeds(&env_dir, "cancel", &signed, 0, MAX_WORK_MESSAGE);
    write(
        &wire_dir,
        "work_cancel",
        &WorkRequest::Cancel(signed),
        MAX_WORK_MESSAGE,
    );

    write(
        &wire_dir,
        "work_accepted",
        &WorkResponse::Accepted,
        MAX_WORK_MESSAGE,
    );
    write(
        &wire_dir,
        "work_rejected",
        &WorkResponse::Rejected(Reject::new(RejectCode::Busy, "too much work")),
        MAX_WORK_MESSAGE,
    );

    let announcement = Announcement {
        node: node.public(),
        seq: 42,
        addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        services: vec![ServiceOffer {
            service_hash,
            sid: Some("acme.email".into()),
            instance_hash,
            in_flight: 3,
            claim: Some(
                mesg_protocol::SignedClaim::sign(&node, "acme.email", service_hash, 1_000)
                    .expect("claim"),
            ),
        }],
        ttl_ms: 30_000,
    };
    let signed = sign(
        &node,
        domains::ANNOUNCEMENT,
        &announcement,
        MAX_GOSSIP_MESSAGE,
    );
    envelope_seeds(&env_dir, "announcement", &signed, 1, MAX_GOSSIP_MESSAGE);
    write(
        &wire_dir,
        "gossip_announce",
        &GossipMessage::Announce(signed),
        MAX_GOSSIP_MESSAGE,
    );

    let event = Event {
        id: EventId([3; 16]),
        service_hash,
        instance_hash,
        key: "sent".into(),
        data: Json(serde_json::json!({"id": "x-1", "size": 1234})),
        emitter: node.public(),
        created_at: NOW,
        cause: Some(Cause {
            depth: 1,
            root: CauseRef::Execution(ExecutionId([1; 16])),
            parent: CauseRef::Execution(ExecutionId([1; 16])),
        }),
        seq: 7,
    };
    let signed = sign(&node, domains::EVENT, &event, MAX_GOSSIP_MESSAGE);
    envelope_seeds(&env_dir, "event", &signed, 1, MAX_GOSSIP_MESSAGE);
    write(
        &wire_dir,
        "gossip_event",
        &GossipMessage::Event(signed),
        MAX_GOSSIP_MESSAGE,
    );

    let package_hash = PackageHash(Hash32::sha256(b"package"));
    write(
        &wire_dir,
        "package_request_record",
        &PackageRequest::Record(service_hash),
        MAX_PACKAGE_MESSAGE,
    );
    write(
        &wire_dir,
        "package_request_chunk",
        &PackageRequest::Chunk {
            package: package_hash,
            offset: 4096,
        },
        MAX_PACKAGE_MESSAGE,
    );

    // A usage receipt of the execution (signed by its executor) and the requester's
    // acknowledgement of the pair's cumulative total.
    let price = Price {
        call: 1000,
        per_ms: 2,
        per_kib: 5,
    };
    let usage = Usage {
        calls: 1,
        duration_ms: 1,
        bytes_out: 12,
    };
    let amount = price.charge(&usage, request.max_price).expect("an amount");
    let receipt = UsageReceipt {
        execution_id: ExecutionId([1; 16]),
        request_digest: submit.digest(),
        result_digest: Hash32::sha256(b"result"),
        service_hash,
        task_key: "send".into(),
        usage,
        price,
        amount,
        sequence: 1,
        prev: Hash32::default(),
        cumulative: amount,
        executor: node.public(),
        requester: requester.public(),
    };
    let signed = sign(&node, domains::RECEIPT, &receipt, MAX_RECEIPT_BYTES);
    envelope_seeds(&env_dir, "usage_receipt", &signed, 1, MAX_RECEIPT_BYTES);
    let ack = CumulativeAck {
        pair: receipt.pair(),
        sequence: 1,
        receipt: receipt.hash(),
        cumulative: amount,
        rejected: 0,
    };
    let signed = sign(&requester, domains::CUMULATIVE_ACK, &ack, MAX_RECEIPT_BYTES);
    envelope_seeds(&env_dir, "cumulative_ack", &signed, 0, MAX_RECEIPT_BYTES);

    let yaml_dir = root.join("definition_yaml");
    let record_of = |definition: ServiceDefinition| {
        let record = ServiceRecord {
            service_hash: definition.service_hash(&package_hash),
            definition,
            package_hash,
            package_size: 10_000,
            publisher: node.public(),
        };
        record.check().expect("seed record is consistent");
        record
    };
    // A definition without parameters: its record round-trips and verifies.
    let simple = ServiceDefinition::from_yaml(
        "name: Echo\nsid: testnet.echo\nconfiguration:\n  ports: [\"80\"]\ntasks:\n  echo: {timeout: 5s}\n",
    )
    .expect("simple definition parses");
    let signed = sign(
        &node,
        domains::SERVICE_RECORD,
        &record_of(simple),
        MAX_PACKAGE_MESSAGE,
    );
    envelope_seeds(&env_dir, "service_record", &signed, 1, MAX_PACKAGE_MESSAGE);
    write(
        &wire_dir,
        "package_response_record",
        &PackageResponse::Record(signed),
        MAX_PACKAGE_MESSAGE,
    );
    // The full example definition (parameters without `name`/`description`/`object`).
    // Signed as a node would sign it. Its payload did NOT decode while `Parameter` used
    // `skip_serializing_if` (bincode cannot tell a skipped field from the next one); a
    // failure is printed, not asserted, so the seeds can still be written.
    let full = std::fs::read_to_string(yaml_dir.join("valid-full.yml")).expect("valid-full.yml");
    let definition = ServiceDefinition::from_yaml(&full).expect("valid-full.yml parses");
    let signed = Signed::sign(
        &node,
        domains::SERVICE_RECORD,
        &record_of(definition),
        NOW,
        60_000,
        MAX_PACKAGE_MESSAGE,
    )
    .expect("sign");
    if let Err(e) = signed.verify(domains::SERVICE_RECORD, NOW, MAX_PACKAGE_MESSAGE) {
        println!("WARNING: the signed record of valid-full.yml does not verify: {e}");
    }
    envelope_seeds(
        &env_dir,
        "service_record_full",
        &signed,
        1,
        MAX_PACKAGE_MESSAGE,
    );
    write(
        &wire_dir,
        "package_response_record_full",
        &PackageResponse::Record(signed),
        MAX_PACKAGE_MESSAGE,
    );
    write(
        &wire_dir,
        "package_response_chunk",
        &PackageResponse::Chunk {
            total: 10_000,
            data: Bytes(b"ustar\0 some tar bytes".to_vec()),
        },
        MAX_PACKAGE_MESSAGE,
    );
    write(
        &wire_dir,
        "package_response_not_found",
        &PackageResponse::NotFound("no such service".into()),
        MAX_PACKAGE_MESSAGE,
    );

    // The YAML seeds are checked-in files; make sure the valid ones still are.
    check_text_seeds(&yaml_dir, |text| {
        ServiceDefinition::from_yaml(text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let echo = ServiceDefinition::from_yaml(include_str!("../../testnet/services/echo/mesg.yml"))
        .expect("echo's mesg.yml parses");
    let kv = ServiceDefinition::from_yaml(include_str!("../../testnet/services/kv/mesg.yml"))
        .expect("kv's mesg.yml parses");
    let lookup = |name: &str| match name {
        "echo" => Some(echo.clone()),
        "kv" => Some(kv.clone()),
        _ => None,
    };
    // The env the `process_yaml` target gives (the seeds use WHO, N and EMPTY).
    let env: BTreeMap<String, String> = [("WHO", "ops"), ("N", "3"), ("EMPTY", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    check_text_seeds(&root.join("process_yaml"), |text| {
        ProcessDefinition::from_yaml(text, &env, &lookup)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}
