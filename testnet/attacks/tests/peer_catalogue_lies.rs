//! Issue 14 (the catalogue): what `GET /v1/catalogue` shows comes from peers, so a peer
//! could try to make it lie. A rogue announces the honest echo with a publisher claim
//! forged to name a well-known key, and a made-up service under the sid `echo` whose
//! record it stores in the DHT with a cheaper-looking definition that does not hash to
//! it. The victim's catalogue lists echo with its real publisher only, lists the made-up
//! service without a definition (so no task or price filter ever matches it), answers
//! within its fetch budget although that record never verifies, and honest work still
//! completes.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_node::network::record_key;
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_PACKAGE_MESSAGE};
use mesg_protocol::{
    Hash32, Keypair, PackageHash, ServiceDefinition, ServiceHash, ServiceRecord, Signed,
    SignedClaim, now_ms,
};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The catalogue for `query`, and how long the node took to answer it.
async fn catalogue(api: &Api, query: &str) -> (Value, Duration) {
    let started = Instant::now();
    let reply = api.get(&format!("/v1/catalogue?{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    (reply.body, started.elapsed())
}

fn listed<'a>(v: &'a Value, hash: &str) -> Option<&'a Value> {
    v["services"]
        .as_array()?
        .iter()
        .find(|s| s["service_hash"] == hash)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rogue_cannot_make_the_catalogue_show_a_false_publisher_or_price() {
    let b = NodeProcess::start(&[]);
    let v = NodeProcess::start(&["--bootstrap", &b.p2p_addr()]);
    let (api_b, api_v) = (Api::new(&b), Api::new(&v));
    let (honest, _) = rogue::deploy_and_start(&api_b, &service_dir("echo")).await;
    let honest_hash: ServiceHash = honest.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;

    // A claim "by" a famous key on the honest echo, signed by the rogue.
    let famous = Keypair::generate().unwrap().public();
    let mut forged = SignedClaim::sign(&rogue.key, "echo", honest_hash, now_ms()).unwrap();
    forged.claim.publisher = famous;
    let mut honest_offer = rogue::offer(honest_hash, 0);
    honest_offer.sid = Some("echo".into());
    honest_offer.claim = Some(forged);

    // A made-up service under `echo`, claimed by the rogue itself (that is allowed), with
    // a record in the DHT whose definition does not hash to it (echo, every task free).
    let fake = ServiceHash(Hash32::sha256(b"a cheaper echo"));
    let mut fake_offer = rogue::offer(fake, 0);
    fake_offer.sid = Some("echo".into());
    fake_offer.claim = Some(SignedClaim::sign(&rogue.key, "echo", fake, now_ms()).unwrap());
    let yml = std::fs::read_to_string(service_dir("echo").join("mesg.yml")).unwrap();
    let record = ServiceRecord {
        service_hash: fake,
        definition: ServiceDefinition::from_yaml(&yml).unwrap(),
        package_hash: PackageHash(Hash32::sha256(b"no package")),
        package_size: 1,
        publisher: rogue.public(),
    };
    let signed = Signed::sign(
        &rogue.key,
        domains::SERVICE_RECORD,
        &record,
        now_ms(),
        600_000,
        MAX_PACKAGE_MESSAGE,
    )
    .unwrap();
    rogue
        .net
        .put_record(
            record_key(&fake),
            wire::encode(&signed, MAX_PACKAGE_MESSAGE).unwrap(),
        )
        .await;
    let liar = {
        let (net, key) = (rogue.net.clone(), rogue.key.clone());
        let offers = vec![honest_offer, fake_offer];
        tokio::spawn(async move {
            let r = Rogue::from_parts(key, net);
            loop {
                r.announce(offers.clone(), vec![], 20_000).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    // V lists both: the honest echo with its definition and B as its only publisher,
    // the made-up one without a definition.
    let mut seen = Value::Null;
    for _ in 0..200 {
        let (v, took) = catalogue(&api_v, "sid=echo").await;
        assert!(
            took < Duration::from_secs(6),
            "the catalogue waited {took:?}: its fetches are bounded to 3 s"
        );
        let ready = listed(&v, &honest).is_some_and(|s| {
            s["definition_known"] == true && s["providers"].as_array().map(Vec::len) == Some(2)
        }) && listed(&v, &fake.to_string()).is_some();
        seen = v;
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let echo = listed(&seen, &honest).unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(echo["definition_known"], true, "{echo}");
    assert_eq!(echo["publishers"], json!([b.public_key]), "{echo}");
    let made_up = listed(&seen, &fake.to_string()).unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(made_up["definition_known"], false, "{made_up}");
    assert_eq!(made_up["tasks"], json!([]), "{made_up}");
    assert_eq!(made_up["publishers"], json!([rogue.public()]), "{made_up}");

    // Still not verifiable after more tries: no task or price filter ever matches it.
    for query in ["task=echo", "max_price=0", "task=echo&max_price=1000000"] {
        let (v, took) = catalogue(&api_v, query).await;
        assert!(took < Duration::from_secs(6), "{query}: {took:?}");
        assert!(listed(&v, &fake.to_string()).is_none(), "{query}: {v}");
        assert!(listed(&v, &honest).is_some(), "{query}: {v}");
    }
    // The famous key publishes nothing.
    let (v, _) = catalogue(&api_v, &format!("publisher={famous}")).await;
    assert_eq!(v["services"], json!([]), "{v}");

    // Honest work completes meanwhile (the rogue refuses what it is offered).
    let e = api_v
        .exec_wait(&honest, "echo", json!({"message": "still fine"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["executor"], b.public_key.as_str(), "{e}");
    liar.abort();
}
