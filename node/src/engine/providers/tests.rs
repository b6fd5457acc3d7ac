//! The provider table's choices: load, failures, staleness, caps, probes.

use super::*;
use mesg_protocol::{Hash32, InstanceHash, Keypair};

fn offer(service: u8, in_flight: u32) -> ServiceOffer {
    ServiceOffer {
        service_hash: ServiceHash(Hash32::sha256(&[service])),
        sid: Some(format!("s{service}")),
        instance_hash: InstanceHash(Hash32::sha256(&[service, 1])),
        in_flight,
        claim: None,
    }
}

fn announce(node: PublicKey, seq: u64, services: Vec<ServiceOffer>) -> Announcement {
    Announcement {
        node,
        seq,
        addrs: vec![],
        services,
        ttl_ms: 10_000,
    }
}

#[test]
fn least_loaded_first_failed_last_and_stale_announcements_ignored() {
    let me = Keypair::generate().unwrap().public();
    let (a, b, c) = (
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
    );
    let mut t = ProviderTable::default();
    let s = ServiceHash(Hash32::sha256(&[1]));
    assert_eq!(t.apply(&announce(a, 2, vec![offer(1, 5)])).1, vec![s]);
    t.apply(&announce(b, 1, vec![offer(1, 1)]));
    t.apply(&announce(c, 1, vec![offer(2, 0)]));
    t.apply(&announce(me, 1, vec![offer(1, 0)]));
    assert_eq!(t.candidates(&s, &me), vec![b, a]);
    t.failed(&b);
    assert_eq!(t.candidates(&s, &me), vec![a, b]);
    // An older announcement of `a` does not replace the newer one.
    assert!(!t.apply(&announce(a, 1, vec![])).0);
    assert_eq!(t.candidates(&s, &me), vec![a, b]);
    // Work we sent counts as load.
    t.succeeded(&b, 100.0);
    for _ in 0..10 {
        t.sending(&a);
    }
    assert_eq!(t.candidates(&s, &me), vec![b, a]);
    // A failed node that announces again is not penalised any more.
    t.failed(&b);
    assert_eq!(t.candidates(&s, &me), vec![a, b]);
    t.apply(&announce(b, 2, vec![offer(1, 1)]));
    assert_eq!(t.candidates(&s, &me), vec![b, a]);
}

#[test]
fn a_provider_lying_about_its_load_does_not_attract_all_work() {
    let me = Keypair::generate().unwrap().public();
    let (liar, honest) = (
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
    );
    let s = ServiceHash(Hash32::sha256(&[1]));
    let mut t = ProviderTable::default();
    t.apply(&announce(liar, 1, vec![offer(1, 0)]));
    t.apply(&announce(honest, 1, vec![offer(1, 1_000_000)]));
    // One execution at a time (each ends before the next): the claims alone would
    // send every one to the liar.
    let mut to_liar = 0;
    for _ in 0..20 {
        let first = t.candidates(&s, &me)[0];
        t.sending(&first);
        t.succeeded(&first, 1_000.0);
        t.ended(&first);
        if first == liar {
            to_liar += 1;
        }
    }
    assert!((5..=15).contains(&to_liar), "{to_liar} of 20 to the liar");
    // Work in flight that we sent counts fully, claims at most MAX_CLAIMED_LOAD.
    let mut t = ProviderTable::default();
    t.apply(&announce(liar, 1, vec![offer(1, 0)]));
    t.apply(&announce(honest, 1, vec![offer(1, 1_000_000)]));
    for _ in 0..3 {
        t.sending(&liar);
    }
    assert_eq!(t.candidates(&s, &me)[0], honest);
}

#[test]
fn observed_failures_outweigh_claims_and_survive_a_fresh_announcement() {
    let me = Keypair::generate().unwrap().public();
    let (liar, honest) = (
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
    );
    let s = ServiceHash(Hash32::sha256(&[1]));
    let mut t = ProviderTable::default();
    t.apply(&announce(liar, 1, vec![offer(1, 0)]));
    t.apply(&announce(honest, 1, vec![offer(1, 50)]));
    assert_eq!(t.candidates(&s, &me)[0], liar);
    // It accepted work and never answered: a strike.
    t.failed(&liar);
    t.failed(&liar);
    // Announcing again lifts the penalty, not the strikes.
    t.apply(&announce(liar, 2, vec![offer(1, 0)]));
    assert_eq!(t.candidates(&s, &me), vec![honest, liar]);
    // A slow provider (measured) loses to a fast one whatever they claim.
    let slow = Keypair::generate().unwrap().public();
    let fast = Keypair::generate().unwrap().public();
    let mut t = ProviderTable::default();
    t.apply(&announce(slow, 1, vec![offer(1, 0)]));
    t.apply(&announce(fast, 1, vec![offer(1, 1_000)]));
    t.succeeded(&slow, 200_000.0);
    t.succeeded(&fast, 500.0);
    assert_eq!(t.candidates(&s, &me), vec![fast, slow]);
}

#[test]
fn a_provider_back_from_an_outage_gets_work_again_once_the_others_are_busier() {
    let me = Keypair::generate().unwrap().public();
    let (back, busy) = (
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
    );
    let s = ServiceHash(Hash32::sha256(&[1]));
    let mut t = ProviderTable::default();
    t.apply(&announce(back, 1, vec![offer(1, 0)]));
    t.apply(&announce(busy, 1, vec![offer(1, 0)]));
    // An outage under load: every execution in flight there failed at once.
    for _ in 0..80 {
        t.failed(&back);
    }
    // It announces again (reachable); meanwhile all work went to the other one.
    t.apply(&announce(back, 2, vec![offer(1, 0)]));
    for _ in 0..30 {
        t.sending(&busy);
        t.ended(&busy);
    }
    assert_eq!(t.candidates(&s, &me)[0], back);
    // A provider that keeps failing still comes after an idle one.
    let idle = Keypair::generate().unwrap().public();
    t.apply(&announce(idle, 1, vec![offer(1, 0)]));
    assert_eq!(t.candidates(&s, &me)[0], idle);
}

#[test]
fn one_choice_in_sixteen_probes_the_second_best() {
    let me = Keypair::generate().unwrap().public();
    let (down, up) = (
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
    );
    let s = ServiceHash(Hash32::sha256(&[1]));
    let mut t = ProviderTable::default();
    t.apply(&announce(down, 1, vec![offer(1, 0)]));
    t.apply(&announce(up, 1, vec![offer(1, 0)]));
    t.failed(&down);
    let probes = (0..32)
        .filter(|_| t.first_choice(&s, &me) == Some(down))
        .count();
    assert_eq!(probes, 2);
    // Other lookups neither probe nor move the count: however many there are between two
    // first choices (the route's own lookup, package fetches), one first choice in
    // sixteen is still a probe.
    let probes = (0..32)
        .filter(|_| {
            for _ in 0..3 {
                assert_eq!(t.candidates(&s, &me)[0], up);
            }
            t.first_choice(&s, &me) == Some(down)
        })
        .count();
    assert_eq!(probes, 2);
}

#[test]
fn expired_providers_are_evicted_and_the_table_is_capped() {
    let me = Keypair::generate().unwrap().public();
    let s = ServiceHash(Hash32::sha256(&[1]));
    let mut t = ProviderTable::default();
    let a = Keypair::generate().unwrap().public();
    let mut ann = announce(a, 1, vec![offer(1, 0)]);
    ann.ttl_ms = 10_000_000;
    ann.addrs = (0..100).map(|i| format!("/ip4/8.8.8.8/tcp/{i}")).collect();
    ann.services = (0..=255u8).chain(0..=255u8).map(|i| offer(i, 0)).collect();
    t.apply(&ann);
    t.sending(&a);
    t.ended(&a);
    let view = &t.nodes_view()[0];
    assert!(view.expires_in_ms <= MAX_ANNOUNCE_TTL_MS, "ttl capped");
    assert_eq!(view.addrs.len(), MAX_ADDRS_PER_NODE);
    assert_eq!(view.services.len(), MAX_SERVICES_PER_NODE);
    assert_eq!(t.evict_expired(now_ms()), 0);
    assert_eq!(t.evict_expired(now_ms() + MAX_ANNOUNCE_TTL_MS + 1), 1);
    assert!(t.is_empty());
    assert!(t.stats.is_empty(), "stats of evicted nodes go too");
    assert!(t.candidates(&s, &me).is_empty());

    // Full: a new node is refused until expired ones are evicted.
    let mut t = ProviderTable::default();
    for _ in 0..MAX_NODES {
        let k = Keypair::generate().unwrap().public();
        t.nodes.insert(
            k,
            NodeEntry {
                seq: 1,
                addrs: vec![],
                services: vec![],
                expires_at: now_ms() + 60_000,
                seen_at: now_ms(),
                signed: None,
                departed: false,
                content: [0; 8],
            },
        );
    }
    let late = Keypair::generate().unwrap().public();
    assert!(!t.apply(&announce(late, 1, vec![offer(1, 0)])).0);
    assert_eq!(t.len(), MAX_NODES);
    for n in t.nodes.values_mut().take(10) {
        n.expires_at = 0;
    }
    assert!(t.apply(&announce(late, 1, vec![offer(1, 0)])).0);
    assert_eq!(t.len(), MAX_NODES - 9);
}

#[test]
fn offers_list_this_nodes_own_and_unexpired_announcements_with_when_they_were_heard() {
    let me = Keypair::generate().unwrap().public();
    let (a, b) = (
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
    );
    let mut t = ProviderTable::default();
    t.apply(&announce(a, 1, vec![offer(1, 3), offer(2, 0)]));
    t.apply(&announce(b, 1, vec![offer(1, 0)]));
    t.apply(&announce(me, 1, vec![offer(9, 0)]));
    t.nodes.get_mut(&b).unwrap().expires_at = 0;
    t.nodes.get_mut(&a).unwrap().seen_at -= 1500;
    let offers = t.offers(me, &[offer(3, 1)]);
    let mine: Vec<_> = offers.iter().filter(|o| o.local).collect();
    assert_eq!(
        mine.len(),
        1,
        "this node's own, not its announcement heard back"
    );
    assert_eq!((mine[0].node, mine[0].offer.in_flight), (me, 1));
    let heard: Vec<_> = offers.iter().filter(|o| !o.local).collect();
    assert_eq!(heard.len(), 2, "b's announcement expired");
    assert!(heard.iter().all(|o| o.node == a));
    assert!(
        heard
            .iter()
            .all(|o| (1500..60_000).contains(&o.last_seen_ms_ago))
    );
    assert!(heard.iter().all(|o| o.expires_in_ms > 0));
}

#[test]
fn banned_providers_are_never_chosen_and_disagreeing_ones_go_last() {
    let me = Keypair::generate().unwrap().public();
    let (liar, fair, slow) = (
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
        Keypair::generate().unwrap().public(),
    );
    let s = ServiceHash(Hash32::sha256(&[1]));
    let rep = Arc::new(Reputation::in_memory());
    let mut t = ProviderTable::with_reputation(rep.clone());
    t.apply(&announce(liar, 1, vec![offer(1, 0)]));
    t.apply(&announce(fair, 1, vec![offer(1, 3)]));
    t.apply(&announce(slow, 1, vec![offer(1, 4)]));
    assert_eq!(t.candidates(&s, &me), vec![liar, fair, slow]);
    // A disagreement: behind every clean provider, however loaded they are, even one
    // that failed a moment ago.
    rep.record_verdict(&liar, false);
    t.failed(&slow);
    assert_eq!(t.candidates(&s, &me), vec![fair, slow, liar]);
    // The probe of the second best is not spent on a distrusted provider.
    t.forget(&slow);
    let probes = (0..32)
        .filter(|_| t.first_choice(&s, &me) == Some(liar))
        .count();
    assert_eq!(probes, 0);
    // Banned: never, not even as the only provider.
    rep.ban(&fair, None).unwrap();
    assert_eq!(t.candidates(&s, &me), vec![liar]);
    rep.ban(&liar, Some("wrong outputs".into())).unwrap();
    assert!(t.candidates(&s, &me).is_empty());
    assert_eq!(t.first_choice(&s, &me), None);
    // Lifted: back in the ranking.
    rep.unban(&fair).unwrap();
    assert_eq!(t.candidates(&s, &me), vec![fair]);
    // Timeouts alone rank through strikes (bounded), not the back of the list.
    rep.timeout(&fair);
    assert_eq!(t.candidates(&s, &me), vec![fair]);
}

#[test]
fn signed_announcements_are_passed_on_bounded_and_never_the_askers_own() {
    use mesg_protocol::envelope::Signed;
    use mesg_protocol::types::domains;
    let mut t = ProviderTable::default();
    let keys: Vec<Keypair> = (0..5).map(|_| Keypair::generate().unwrap()).collect();
    for k in &keys {
        let a = announce(k.public(), 1, vec![offer(1, 0)]);
        let signed = Signed::sign(k, domains::ANNOUNCEMENT, &a, now_ms(), 60_000, 65_536).unwrap();
        assert!(t.apply_signed(&signed, &a).0);
    }
    // Applied without its signed form (an older node's format): never passed on.
    let unsigned = Keypair::generate().unwrap().public();
    t.apply(&announce(unsigned, 1, vec![offer(1, 0)]));
    let asker = keys[0].public();
    let all = t.signed_announcements(&asker, 100, 1 << 20);
    assert_eq!(all.len(), 4, "the others' signed announcements");
    assert!(
        all.iter()
            .all(|s| s.signer() != asker && s.signer() != unsigned)
    );
    assert_eq!(
        t.signed_announcements(&asker, 2, 1 << 20).len(),
        2,
        "count bound"
    );
    let one = all[0].payload.0.len() + all[0].signature.0.len() + 256;
    assert_eq!(
        t.signed_announcements(&asker, 100, one).len(),
        1,
        "byte bound"
    );
    // A node whose connection closed is not vouched for until it is back or announces.
    t.set_departed(&keys[2].public(), true);
    let without: Vec<_> = t.signed_announcements(&asker, 100, 1 << 20);
    assert_eq!(without.len(), 3);
    assert!(without.iter().all(|s| s.signer() != keys[2].public()));
    t.set_departed(&keys[2].public(), false);
    assert_eq!(t.signed_announcements(&asker, 100, 1 << 20).len(), 4);
    // An older announcement of a node does not replace the signed newer one.
    let stale = announce(keys[1].public(), 0, vec![]);
    assert!(!t.apply(&stale).0);
    assert_eq!(t.signed_announcements(&asker, 100, 1 << 20).len(), 4);
}

#[test]
fn a_reconciling_peer_is_sent_only_what_it_lacks_or_holds_older_and_different() {
    use mesg_protocol::envelope::Signed;
    use mesg_protocol::messages::HeldAnnouncement;
    use mesg_protocol::types::domains;
    let mut t = ProviderTable::default();
    let keys: Vec<Keypair> = (0..5).map(|_| Keypair::generate().unwrap()).collect();
    for k in &keys {
        let a = announce(k.public(), 5, vec![offer(1, 0), offer(2, 0)]);
        let signed = Signed::sign(k, domains::ANNOUNCEMENT, &a, now_ms(), 60_000, 65_536).unwrap();
        t.apply_signed(&signed, &a);
    }
    let asker = keys[0].public();
    let held = |k: &Keypair, seq, services| HeldAnnouncement {
        node_prefix: HeldAnnouncement::prefix_of(&k.public()),
        seq,
        content: HeldAnnouncement::content_of(&announce(k.public(), seq, services)),
    };
    // The asker holds keys[1] as it is here; keys[2] older and offering less; keys[3]
    // older but saying the same (a refresh: not worth sending); it lacks keys[4].
    let summary = vec![
        held(&keys[1], 5, vec![offer(1, 0), offer(2, 0)]),
        held(&keys[2], 4, vec![offer(1, 0)]),
        // Same instances in another order, another load: the same content.
        held(&keys[3], 4, vec![offer(2, 3), offer(1, 0)]),
    ];
    let mut sent: Vec<PublicKey> = t
        .newer_than(&asker, &summary, 100, 1 << 20)
        .iter()
        .map(|s| s.signer())
        .collect();
    sent.sort_by_key(|k| k.0);
    let mut expected = vec![keys[2].public(), keys[4].public()];
    expected.sort_by_key(|k| k.0);
    assert_eq!(sent, expected);
    // A summary of everything as held here: nothing to send.
    let all = t.held_summary(100);
    assert_eq!(all.len(), 5);
    assert!(t.newer_than(&asker, &all, 100, 1 << 20).is_empty());
    // Departed nodes are summarised (not asked for again) but not passed on.
    t.set_departed(&keys[4].public(), true);
    assert_eq!(t.held_summary(100).len(), 5);
    assert!(
        t.newer_than(&asker, &summary, 100, 1 << 20)
            .iter()
            .all(|s| s.signer() != keys[4].public())
    );
    assert_eq!(t.held_summary(2).len(), 2, "count bound");
}

#[test]
fn news_is_a_newer_announcement_with_other_offers_not_a_refresh() {
    let mut t = ProviderTable::default();
    let node = Keypair::generate().unwrap().public();
    assert!(
        !t.offers_differ(&announce(node, 1, vec![])),
        "an unknown node offering nothing"
    );
    assert!(t.offers_differ(&announce(node, 1, vec![offer(1, 0)])));
    t.apply(&announce(node, 1, vec![offer(1, 0)]));
    assert!(
        !t.offers_differ(&announce(node, 2, vec![offer(1, 3)])),
        "a refresh (only the load changed)"
    );
    assert!(
        !t.offers_differ(&announce(node, 1, vec![offer(2, 0)])),
        "not newer"
    );
    assert!(
        t.offers_differ(&announce(node, 2, vec![offer(1, 0), offer(2, 0)])),
        "a new instance"
    );
    assert!(
        t.offers_differ(&announce(node, 2, vec![])),
        "an instance gone"
    );
}
