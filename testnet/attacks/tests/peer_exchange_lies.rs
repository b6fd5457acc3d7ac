//! Issue 18 (peer exchange): when a connection opens, nodes swap signed announcements.
//! A rogue peer tries to slip in what no node signed: as the sender, an "own"
//! announcement signed by another node, one with a broken signature, one signed by the
//! rogue that names another node; as the one answering, a list of forged, tampered and
//! expired announcements mixed with one honest node's real announcement. The node takes
//! only what its signer was entitled to say (the honest one, passed on verbatim), counts
//! the rest as dropped, and answers a peer with everything it knows at most once per
//! window.

use mesg_attacks::Api;
use mesg_node::network::{self, NetworkConfig, NetworkEvent};
use mesg_protocol::messages::{
    HeldAnnouncement, MAX_EXCHANGED_ANNOUNCEMENTS, PeerExchange, PeerReconcile, RejectCode,
    WorkRequest, WorkResponse,
};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_GOSSIP_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::NodeProcess;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn announcement(node: PublicKey, service: &[u8]) -> Announcement {
    Announcement {
        node,
        seq: now_ms(),
        addrs: vec![],
        services: vec![mesg_attacks::rogue::offer(
            ServiceHash(Hash32::sha256(service)),
            0,
        )],
        ttl_ms: 60_000,
    }
}

fn sign(key: &Keypair, a: &Announcement, issued_at: u64, ttl_ms: u64) -> Signed<Announcement> {
    Signed::sign(
        key,
        domains::ANNOUNCEMENT,
        a,
        issued_at,
        ttl_ms,
        MAX_GOSSIP_MESSAGE,
    )
    .unwrap()
}

fn tampered(mut s: Signed<Announcement>) -> Signed<Announcement> {
    let last = s.signature.0.len() - 1;
    s.signature.0[last] ^= 1;
    s
}

/// Whether the node lists a provider of the made-up service `name`.
async fn lists(api: &Api, name: &[u8]) -> bool {
    let hash = ServiceHash(Hash32::sha256(name)).to_string();
    api.get("/v1/network/services")
        .await
        .body
        .to_string()
        .contains(&hash)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_exchange_takes_only_what_each_node_signed() {
    let v = NodeProcess::start(&[]);
    let api = Api::new(&v);
    let rogue_key = Keypair::generate().unwrap();
    let (honest, other) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());

    // The rogue answers the node's exchange with a mixed list.
    let answer = vec![
        // Real: an honest node's own announcement, passed on verbatim.
        sign(
            &honest,
            &announcement(honest.public(), b"honest"),
            now_ms(),
            60_000,
        ),
        // Signed by the rogue, naming another node.
        sign(
            &rogue_key,
            &announcement(other.public(), b"forged"),
            now_ms(),
            60_000,
        ),
        // The other node's, with a broken signature.
        tampered(sign(
            &other,
            &announcement(other.public(), b"tampered"),
            now_ms(),
            60_000,
        )),
        // The other node's, expired.
        sign(
            &other,
            &announcement(other.public(), b"expired"),
            now_ms() - 120_000,
            60_000,
        ),
    ];
    let stop = CancellationToken::new();
    let (net, mut events) = network::spawn(
        &rogue_key,
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![v.p2p_addr().parse().unwrap()],
            private_network: true,
            ..NetworkConfig::default()
        },
        &mut Default::default(),
        stop.clone(),
    )
    .unwrap();
    {
        let net = net.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetworkEvent::Work {
                    request, channel, ..
                } = event
                {
                    let response = match request {
                        WorkRequest::Exchange(_) => WorkResponse::Announcements(answer.clone()),
                        _ => WorkResponse::Accepted,
                    };
                    net.respond_work(channel, response).await;
                }
            }
        });
    }

    // The node asked on connect: it takes the honest announcement, drops the three others.
    let mut dropped = 0.0;
    for _ in 0..100 {
        dropped =
            mesg_attacks::rogue::metric(&api, "mesg_exchange_announcements_dropped_total").await;
        if dropped >= 3.0 && lists(&api, b"honest").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dropped, 3.0, "forged, tampered and expired are dropped");
    assert!(
        lists(&api, b"honest").await,
        "a real announcement passed on is taken"
    );
    for lie in [&b"forged"[..], b"tampered", b"expired"] {
        assert!(
            !lists(&api, lie).await,
            "{} taken",
            String::from_utf8_lossy(lie)
        );
    }

    // As the sender: an "own" announcement that is not the rogue's own.
    let peer = v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();
    let cases = [
        (
            "another node's real announcement",
            sign(
                &other,
                &announcement(other.public(), b"not-own"),
                now_ms(),
                60_000,
            ),
            RejectCode::WrongNode,
        ),
        (
            "a broken signature",
            tampered(sign(
                &rogue_key,
                &announcement(rogue_key.public(), b"broken"),
                now_ms(),
                60_000,
            )),
            RejectCode::BadSignature,
        ),
        (
            "signed by the rogue, naming another node",
            sign(
                &rogue_key,
                &announcement(other.public(), b"naming"),
                now_ms(),
                60_000,
            ),
            RejectCode::BadSignature,
        ),
    ];
    for (what, own, code) in cases {
        let r = net
            .send_work(
                peer,
                WorkRequest::Exchange(PeerExchange {
                    own,
                    want_known: true,
                }),
            )
            .await
            .unwrap();
        match r {
            WorkResponse::Rejected(r) => assert_eq!(r.code, code, "{what}: {}", r.message),
            other => panic!("{what}: {other:?}"),
        }
    }
    for lie in [&b"not-own"[..], b"broken", b"naming"] {
        assert!(
            !lists(&api, lie).await,
            "{} taken",
            String::from_utf8_lossy(lie)
        );
    }

    // Its own, honestly: taken, answered with the node's own announcement first and what
    // it knows (the honest node's); asked again at once, only the node's own.
    let own = sign(
        &rogue_key,
        &announcement(rogue_key.public(), b"rogue"),
        now_ms(),
        60_000,
    );
    let ask = |own: Signed<Announcement>| {
        net.send_work(
            peer,
            WorkRequest::Exchange(PeerExchange {
                own,
                want_known: true,
            }),
        )
    };
    let first = match ask(own.clone()).await.unwrap() {
        WorkResponse::Announcements(list) => list,
        other => panic!("{other:?}"),
    };
    let node: PublicKey = v.public_key.parse().unwrap();
    assert_eq!(first[0].signer(), node, "the node's own first");
    first[0]
        .verify(domains::ANNOUNCEMENT, now_ms(), MAX_GOSSIP_MESSAGE)
        .unwrap();
    assert!(
        first.iter().any(|s| s.signer() == honest.public()),
        "what it knows is passed on"
    );
    assert!(lists(&api, b"rogue").await, "the rogue's own is taken");
    let again = match ask(own).await.unwrap() {
        WorkResponse::Announcements(list) => list,
        other => panic!("{other:?}"),
    };
    assert_eq!(again.len(), 1, "the full list at most once per window");
    assert_eq!(again[0].signer(), node);

    // A reconcile (a summary of what the rogue holds): an oversized summary is refused
    // before anything else, another node's "own" as in an exchange.
    let reconcile = |own: Signed<Announcement>, held: Vec<HeldAnnouncement>| {
        net.send_work(peer, WorkRequest::Reconcile(PeerReconcile { own, held }))
    };
    let huge = vec![
        HeldAnnouncement {
            node_prefix: [7; 8],
            seq: 1,
            content: [0; 8],
        };
        MAX_EXCHANGED_ANNOUNCEMENTS + 1
    ];
    match reconcile(own_again(&rogue_key), huge).await.unwrap() {
        WorkResponse::Rejected(r) => assert_eq!(r.code, RejectCode::Malformed, "{}", r.message),
        other => panic!("oversized summary: {other:?}"),
    }
    let not_own = sign(
        &other,
        &announcement(other.public(), b"not-own"),
        now_ms(),
        60_000,
    );
    match reconcile(not_own, Vec::new()).await.unwrap() {
        WorkResponse::Rejected(r) => assert_eq!(r.code, RejectCode::WrongNode, "{}", r.message),
        other => panic!("another node's own in a reconcile: {other:?}"),
    }
    // Holding what the node holds: only its own comes back. Lacking the honest node's:
    // it comes back, signed by the honest node.
    let summary: Vec<HeldAnnouncement> = first[1..]
        .iter()
        .map(|s| {
            let a = s.payload_unverified(MAX_GOSSIP_MESSAGE).unwrap();
            HeldAnnouncement {
                node_prefix: HeldAnnouncement::prefix_of(&a.node),
                seq: a.seq,
                content: HeldAnnouncement::content_of(&a),
            }
        })
        .collect();
    let answer = |r: WorkResponse| match r {
        WorkResponse::Announcements(list) => list,
        other => panic!("{other:?}"),
    };
    let same = answer(
        reconcile(own_again(&rogue_key), summary.clone())
            .await
            .unwrap(),
    );
    assert_eq!(same.len(), 1, "nothing the rogue holds is sent again");
    assert_eq!(same[0].signer(), node);
    let honest_prefix = HeldAnnouncement::prefix_of(&honest.public());
    let lacking: Vec<HeldAnnouncement> = summary
        .into_iter()
        .filter(|h| h.node_prefix != honest_prefix)
        .collect();
    let sent = answer(reconcile(own_again(&rogue_key), lacking).await.unwrap());
    assert_eq!(sent[0].signer(), node);
    assert_eq!(
        sent[1..].iter().map(|s| s.signer()).collect::<Vec<_>>(),
        vec![honest.public()],
        "only what the rogue lacks"
    );
    stop.cancel();
}

/// The rogue's own announcement, signed afresh (a newer `seq` each time).
fn own_again(key: &Keypair) -> Signed<Announcement> {
    let mut a = announcement(key.public(), b"rogue");
    a.seq = now_ms();
    sign(key, &a, now_ms(), 60_000)
}
