//! Wire codec properties: every message round-trips; signatures round-trip; flipping any
//! byte of a signed message makes it fail; garbage never panics the decoder.

use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::*;
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE, MAX_PACKAGE_MESSAGE, MAX_WORK_MESSAGE};
use mesg_protocol::*;
use proptest::prelude::*;
use serde_json::json;
use std::sync::LazyLock;

const NOW: u64 = 1_800_000_000_000;
static KEY: LazyLock<Keypair> = LazyLock::new(|| Keypair::from_secret_bytes([7; 32]));
static NODE: LazyLock<Keypair> = LazyLock::new(|| Keypair::from_secret_bytes([9; 32]));

fn hash(seed: u8) -> Hash32 {
    Hash32::sha256(&[seed])
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z0-9 ]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4).prop_map(|m| json!(m)),
        ]
    })
}

fn request() -> impl Strategy<Value = ExecutionRequest> {
    (
        any::<[u8; 16]>(),
        any::<u8>(),
        "[a-z]{1,10}",
        json_value(),
        prop::collection::vec("[a-z]{1,6}", 0..3),
        1u64..100_000,
        prop::option::of(any::<[u8; 16]>()),
    )
        .prop_map(
            |(id, h, task, inputs, tags, timeout, parent)| ExecutionRequest {
                execution_id: ExecutionId(id),
                service_hash: ServiceHash(hash(h)),
                task_key: task,
                inputs: Json(inputs),
                requester: KEY.public(),
                requester_node: NODE.public(),
                parent: parent.map(ExecutionId),
                process: None,
                tags,
                timeout_ms: timeout,
                created_at: NOW,
                cause: None,
                idempotency_key: None,
                max_price: None,
                verify: None,
            },
        )
}

fn result() -> impl Strategy<Value = ExecutionResult> {
    (any::<[u8; 16]>(), json_value(), any::<bool>(), ".{0,20}").prop_map(
        |(id, outputs, ok, error)| ExecutionResult {
            execution_id: ExecutionId(id),
            request_digest: hash(1),
            service_hash: ServiceHash(hash(2)),
            task_key: "t".into(),
            executor: NODE.public(),
            instance_hash: Some(InstanceHash(hash(3))),
            outcome: if ok {
                Outcome::Completed {
                    outputs: Json(outputs),
                }
            } else {
                Outcome::Failed { error }
            },
            started_at: Some(NOW),
            finished_at: NOW + 1,
        },
    )
}

fn event() -> impl Strategy<Value = Event> {
    (any::<[u8; 16]>(), "[a-z]{1,8}", json_value(), any::<u64>()).prop_map(
        |(id, key, data, seq)| Event {
            id: EventId(id),
            service_hash: ServiceHash(hash(4)),
            instance_hash: InstanceHash(hash(5)),
            key,
            data: Json(data),
            emitter: NODE.public(),
            created_at: NOW,
            cause: None,
            seq,
        },
    )
}

fn announcement() -> impl Strategy<Value = Announcement> {
    (
        any::<u64>(),
        prop::collection::vec((any::<u8>(), 0u32..100), 0..5),
    )
        .prop_map(|(seq, offers)| Announcement {
            node: NODE.public(),
            seq,
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            services: offers
                .into_iter()
                .map(|(h, load)| ServiceOffer {
                    service_hash: ServiceHash(hash(h)),
                    sid: Some("echo".into()),
                    instance_hash: InstanceHash(hash(h.wrapping_add(1))),
                    in_flight: load,
                    claim: (load % 2 == 0).then(|| {
                        SignedClaim::sign(&NODE, "echo", ServiceHash(hash(h)), NOW).unwrap()
                    }),
                })
                .collect(),
            ttl_ms: 30_000,
        })
}

fn sign<T: serde::Serialize + serde::de::DeserializeOwned + Claims>(
    key: &Keypair,
    domain: &str,
    payload: &T,
) -> Signed<T> {
    Signed::sign(key, domain, payload, NOW, 60_000, MAX_WORK_MESSAGE).unwrap()
}

fn work_request() -> impl Strategy<Value = WorkRequest> {
    prop_oneof![
        request().prop_map(|r| WorkRequest::Submit(sign(&KEY, domains::EXECUTION_REQUEST, &r))),
        result().prop_map(|r| WorkRequest::Result(sign(&NODE, domains::EXECUTION_RESULT, &r))),
        (any::<[u8; 16]>(), ".{0,10}").prop_map(|(id, reason)| WorkRequest::Cancel(sign(
            &KEY,
            domains::CANCEL,
            &CancelRequest {
                execution_id: ExecutionId(id),
                requester: KEY.public(),
                reason
            }
        ))),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(total, proof)| {
            WorkRequest::Settle {
                settlement: sign(
                    &NODE,
                    domains::SETTLEMENT,
                    &mesg_protocol::economy::Settlement {
                        payer: NODE.public(),
                        payee: KEY.public(),
                        total,
                        method: "credits".into(),
                        proof,
                    },
                ),
                ack: None,
            }
        }),
        (any::<[u8; 16]>(), any::<[u8; 32]>(), any::<u64>()).prop_map(|(id, salt, n)| {
            let outputs = mesg_protocol::Json(serde_json::json!({ "n": n }));
            let salt = mesg_protocol::Hash32(salt);
            WorkRequest::Commit(sign(
                &NODE,
                domains::VERIFY_COMMIT,
                &mesg_protocol::verification::OutputCommit::new(
                    ExecutionId(id),
                    mesg_protocol::Hash32::sha256(b"request"),
                    NODE.public(),
                    &salt,
                    &outputs,
                    NOW,
                ),
            ))
        }),
        (any::<[u8; 16]>(), any::<[u8; 32]>(), ".{0,20}").prop_map(|(id, salt, text)| {
            WorkRequest::Reveal(sign(
                &NODE,
                domains::VERIFY_REVEAL,
                &mesg_protocol::verification::Reveal {
                    execution_id: ExecutionId(id),
                    executor: NODE.public(),
                    salt: mesg_protocol::Hash32(salt),
                    outputs: mesg_protocol::Json(serde_json::json!({ "text": text })),
                },
            ))
        }),
        (announcement(), any::<bool>()).prop_map(|(a, want_known)| {
            WorkRequest::Exchange(mesg_protocol::messages::PeerExchange {
                own: sign(&NODE, domains::ANNOUNCEMENT, &a),
                want_known,
            })
        }),
        (any::<u8>(), any::<u64>()).prop_map(|(h, after)| {
            WorkRequest::EventsSince(mesg_protocol::messages::EventsSince {
                service_hash: ServiceHash(hash(h)),
                after,
            })
        }),
        (
            announcement(),
            prop::collection::vec((any::<[u8; 8]>(), any::<u64>(), any::<[u8; 8]>()), 0..8)
        )
            .prop_map(|(a, held)| {
                WorkRequest::Reconcile(mesg_protocol::messages::PeerReconcile {
                    own: sign(&NODE, domains::ANNOUNCEMENT, &a),
                    held: held
                        .into_iter()
                        .map(|(node_prefix, seq, content)| {
                            mesg_protocol::messages::HeldAnnouncement {
                                node_prefix,
                                seq,
                                content,
                            }
                        })
                        .collect(),
                })
            }),
    ]
}

fn gossip() -> impl Strategy<Value = GossipMessage> {
    prop_oneof![
        announcement().prop_map(|a| GossipMessage::Announce(sign(
            &NODE,
            domains::ANNOUNCEMENT,
            &a
        ))),
        event().prop_map(|e| GossipMessage::Event(sign(&NODE, domains::EVENT, &e))),
    ]
}

fn verify_work(msg: &WorkRequest) -> bool {
    match msg {
        WorkRequest::Submit(s) => s
            .verify(domains::EXECUTION_REQUEST, NOW, MAX_WORK_MESSAGE)
            .is_ok(),
        WorkRequest::Result(s) => s
            .verify(domains::EXECUTION_RESULT, NOW, MAX_WORK_MESSAGE)
            .is_ok(),
        WorkRequest::Cancel(s) => s.verify(domains::CANCEL, NOW, MAX_WORK_MESSAGE).is_ok(),
        WorkRequest::PricedResult { result, receipt } => {
            result
                .verify(domains::EXECUTION_RESULT, NOW, MAX_WORK_MESSAGE)
                .is_ok()
                && receipt
                    .verify(
                        domains::RECEIPT,
                        NOW,
                        mesg_protocol::economy::MAX_RECEIPT_BYTES,
                    )
                    .is_ok()
        }
        WorkRequest::Receipts(list) => list.iter().all(|r| {
            r.verify(
                domains::RECEIPT,
                NOW,
                mesg_protocol::economy::MAX_RECEIPT_BYTES,
            )
            .is_ok()
        }),
        WorkRequest::Settle { settlement, .. } => settlement
            .verify(
                domains::SETTLEMENT,
                NOW,
                mesg_protocol::economy::MAX_SETTLEMENT_BYTES,
            )
            .is_ok(),
        WorkRequest::Commit(s) => s
            .verify(
                domains::VERIFY_COMMIT,
                NOW,
                mesg_protocol::verification::MAX_COMMIT_BYTES,
            )
            .is_ok(),
        WorkRequest::Reveal(s) => s
            .verify(
                domains::VERIFY_REVEAL,
                NOW,
                mesg_protocol::verification::MAX_REVEAL_BYTES,
            )
            .is_ok(),
        WorkRequest::Exchange(x) => x
            .own
            .verify(domains::ANNOUNCEMENT, NOW, MAX_GOSSIP_MESSAGE)
            .is_ok(),
        WorkRequest::EventsSince(_) => true,
        WorkRequest::Reconcile(x) => x
            .own
            .verify(domains::ANNOUNCEMENT, NOW, MAX_GOSSIP_MESSAGE)
            .is_ok(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn work_requests_round_trip_and_verify(msg in work_request()) {
        let bytes = wire::encode_frame(&msg, MAX_WORK_MESSAGE).unwrap();
        let back: WorkRequest = wire::decode_frame(&bytes, MAX_WORK_MESSAGE).unwrap();
        prop_assert!(verify_work(&back));
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn flipping_any_byte_of_a_signed_request_fails(msg in work_request(), pick in any::<prop::sample::Index>(), bit in 0u8..8) {
        // A catch-up question carries no signature: anyone connected may ask it.
        prop_assume!(!matches!(msg, WorkRequest::EventsSince(_)));
        // A reconcile's summary is not signed either (it only decides what the asker is
        // sent); its own announcement is, and the round-trip test verifies it.
        prop_assume!(!matches!(msg, WorkRequest::Reconcile(_)));
        let mut bytes = wire::encode_frame(&msg, MAX_WORK_MESSAGE).unwrap();
        let i = pick.index(bytes.len());
        bytes[i] ^= 1 << bit;
        // Either the frame no longer decodes, or what decodes no longer verifies.
        if let Ok(tampered) = wire::decode_frame::<WorkRequest>(&bytes, MAX_WORK_MESSAGE) {
            prop_assert!(!verify_work(&tampered), "byte {} bit {} still verifies", i, bit);
        }
    }

    #[test]
    fn gossip_round_trips(msg in gossip()) {
        let bytes = wire::encode_frame(&msg, MAX_GOSSIP_MESSAGE).unwrap();
        let back: GossipMessage = wire::decode_frame(&bytes, MAX_GOSSIP_MESSAGE).unwrap();
        match &back {
            GossipMessage::Announce(a) => {
                for s in a.verify(domains::ANNOUNCEMENT, NOW, MAX_GOSSIP_MESSAGE).unwrap().services {
                    if let Some(c) = s.claim { c.verify_for(&s.service_hash, "echo", NOW).unwrap(); }
                }
            }
            GossipMessage::AnnounceV1(a) => { a.verify(domains::ANNOUNCEMENT_V1, NOW, MAX_GOSSIP_MESSAGE).unwrap(); }
            GossipMessage::Event(e) => { e.verify(domains::EVENT, NOW, MAX_GOSSIP_MESSAGE).unwrap(); }
        }
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn responses_and_package_messages_round_trip(code in 0usize..11, text in ".{0,30}", data in prop::collection::vec(any::<u8>(), 0..300), offset in any::<u64>()) {
        let codes = [RejectCode::Busy, RejectCode::NoInstance, RejectCode::UnknownTask, RejectCode::InvalidInputs,
            RejectCode::BadSignature, RejectCode::Replayed, RejectCode::Expired, RejectCode::UnknownExecution,
            RejectCode::WrongNode, RejectCode::Malformed, RejectCode::Internal];
        for resp in [WorkResponse::Accepted, WorkResponse::Rejected(Reject::new(codes[code], text.clone()))] {
            let bytes = wire::encode_frame(&resp, MAX_WORK_MESSAGE).unwrap();
            prop_assert_eq!(wire::decode_frame::<WorkResponse>(&bytes, MAX_WORK_MESSAGE).unwrap(), resp);
        }
        let reqs = [PackageRequest::Record(ServiceHash(hash(1))), PackageRequest::Chunk { package: PackageHash(hash(2)), offset }];
        for r in reqs {
            let bytes = wire::encode_frame(&r, MAX_PACKAGE_MESSAGE).unwrap();
            prop_assert_eq!(wire::decode_frame::<PackageRequest>(&bytes, MAX_PACKAGE_MESSAGE).unwrap(), r);
        }
        for r in [PackageResponse::Chunk { total: offset, data: Bytes(data.clone()) }, PackageResponse::NotFound(text.clone())] {
            let bytes = wire::encode_frame(&r, MAX_PACKAGE_MESSAGE).unwrap();
            prop_assert_eq!(wire::decode_frame::<PackageResponse>(&bytes, MAX_PACKAGE_MESSAGE).unwrap(), r);
        }
    }

    #[test]
    fn announcement_lists_round_trip(list in prop::collection::vec(announcement(), 0..4)) {
        let resp = WorkResponse::Announcements(
            list.iter().map(|a| sign(&NODE, domains::ANNOUNCEMENT, a)).collect(),
        );
        let bytes = wire::encode_frame(&resp, MAX_WORK_MESSAGE).unwrap();
        let back = wire::decode_frame::<WorkResponse>(&bytes, MAX_WORK_MESSAGE).unwrap();
        if let WorkResponse::Announcements(signed) = &back {
            for s in signed {
                s.verify(domains::ANNOUNCEMENT, NOW, MAX_GOSSIP_MESSAGE).unwrap();
            }
        }
        prop_assert_eq!(back, resp);
    }

    #[test]
    fn event_lists_round_trip(list in prop::collection::vec(event(), 0..4)) {
        let resp = WorkResponse::Events(
            list.iter().map(|e| sign(&NODE, domains::EVENT, e)).collect(),
        );
        let bytes = wire::encode_frame(&resp, MAX_WORK_MESSAGE).unwrap();
        let back = wire::decode_frame::<WorkResponse>(&bytes, MAX_WORK_MESSAGE).unwrap();
        if let WorkResponse::Events(signed) = &back {
            for (s, e) in signed.iter().zip(&list) {
                prop_assert_eq!(&s.verify(domains::EVENT, NOW, MAX_GOSSIP_MESSAGE).unwrap(), e);
            }
        }
        prop_assert_eq!(back, resp);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = wire::decode_frame::<WorkRequest>(&bytes, MAX_WORK_MESSAGE);
        let _ = wire::decode_frame::<WorkResponse>(&bytes, MAX_WORK_MESSAGE);
        let _ = wire::decode_frame::<GossipMessage>(&bytes, MAX_GOSSIP_MESSAGE);
        let _ = wire::decode_frame::<PackageRequest>(&bytes, MAX_PACKAGE_MESSAGE);
        let _ = wire::decode_frame::<PackageResponse>(&bytes, MAX_PACKAGE_MESSAGE);
    }
}

#[test]
fn a_signed_service_record_checks_its_own_hash() {
    let def = ServiceDefinition::from_yaml("name: echo\ntasks:\n  echo: {}\n").unwrap();
    let package_hash = PackageHash(hash(9));
    let mut record = ServiceRecord {
        service_hash: def.service_hash(&package_hash),
        definition: def,
        package_hash,
        package_size: 10,
        publisher: NODE.public(),
    };
    let signed = sign(&NODE, domains::SERVICE_RECORD, &record);
    let back = signed
        .verify(domains::SERVICE_RECORD, NOW, MAX_PACKAGE_MESSAGE)
        .unwrap();
    back.check().unwrap();
    record.package_hash = PackageHash(hash(10));
    assert!(matches!(
        record.check(),
        Err(RecordError::HashMismatch { .. })
    ));
}

#[test]
fn an_oversized_message_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_GOSSIP_MESSAGE + 1];
    assert!(matches!(
        wire::decode_frame::<GossipMessage>(&bytes, MAX_GOSSIP_MESSAGE),
        Err(wire::WireError::TooLarge { .. })
    ));
    let huge = Event {
        id: EventId([0; 16]),
        service_hash: ServiceHash(hash(1)),
        instance_hash: InstanceHash(hash(2)),
        key: "k".into(),
        data: Json(json!({"blob": "x".repeat(MAX_GOSSIP_MESSAGE)})),
        emitter: NODE.public(),
        created_at: NOW,
        cause: None,
        seq: 1,
    };
    assert!(Signed::sign(&NODE, domains::EVENT, &huge, NOW, 1000, MAX_GOSSIP_MESSAGE).is_err());
}

/// A signed announcement as nodes before publisher claims sent it (the fuzz seed written by
/// that version): it still decodes and verifies, and its offers come out unpublished.
#[test]
fn announcements_of_the_first_format_still_decode_without_claims() {
    let bytes = include_bytes!("fixtures/gossip_announce_v1.bin");
    let msg: GossipMessage = wire::decode_frame(bytes, MAX_GOSSIP_MESSAGE).unwrap();
    let GossipMessage::AnnounceV1(signed) = msg else {
        panic!("not a first-format announcement: {msg:?}");
    };
    let at = signed.header.issued_at;
    let a: Announcement = signed
        .verify(domains::ANNOUNCEMENT_V1, at, MAX_GOSSIP_MESSAGE)
        .unwrap()
        .into();
    assert!(!a.services.is_empty());
    assert!(a.services.iter().all(|s| s.claim.is_none()));
    // The same bytes are not an announcement of the current format.
    assert!(
        signed
            .verify_signature(domains::ANNOUNCEMENT, at, MAX_GOSSIP_MESSAGE)
            .is_err()
    );
}
