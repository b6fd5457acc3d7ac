//! The catalogue's filters and listing, without a network: what a query refuses, what
//! each filter keeps, which publishers count, and the order.

use super::*;
use mesg_api_types::CatalogueQuery;
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_PACKAGE_MESSAGE;
use mesg_protocol::{
    Hash32, InstanceHash, Keypair, PackageHash, ServiceDefinition, ServiceOffer, ServiceRecord,
    now_ms,
};

const PRICED: &str = "name: Resize\nsid: resize\nconfiguration: {}\ntasks:\n  small:\n    price: {call: 500}\n  big:\n    price: {call: 5000, per_ms: 1}\n  ping: {}\neconomy:\n  publisher_share_bps: 250\n";

fn query(pairs: &[(&str, &str)]) -> CatalogueQuery {
    let mut q = CatalogueQuery::default();
    for (k, v) in pairs {
        let v = v.to_string();
        match *k {
            "sid" => q.sid = Some(v),
            "task" => q.task = Some(v),
            "publisher" => q.publisher = Some(v),
            "max_price" => q.max_price = Some(v.parse().unwrap()),
            "limit" => q.limit = Some(v.parse().unwrap()),
            _ => panic!("no filter {k}"),
        }
    }
    q
}

fn filter(pairs: &[(&str, &str)]) -> CatalogueFilter {
    CatalogueFilter::parse(&query(pairs)).unwrap()
}

#[test]
fn bad_filters_are_refused_and_name_what_is_wrong() {
    for (pairs, want) in [
        (&[("sid", "Echo")][..], "sid `Echo`"),
        (&[("sid", "")][..], "sid ``"),
        (&[("sid", "echo_1")][..], "sid `echo_1`"),
        (&[("task", "1st")][..], "task `1st`"),
        (&[("task", "a b")][..], "task `a b`"),
        (&[("publisher", "abc")][..], "publisher `abc`"),
        (&[("publisher", "0OIl")][..], "publisher `0OIl`"),
        (&[("limit", "0")][..], "limit 0"),
        (&[("limit", "1001")][..], "limit 1001"),
    ] {
        let e = CatalogueFilter::parse(&query(pairs))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{pairs:?}: {e}");
    }
    let long = "a".repeat(1000);
    let e = CatalogueFilter::parse(&query(&[("sid", &long)]))
        .unwrap_err()
        .to_string();
    assert!(e.len() < 300, "a long value is not echoed whole: {e}");
    let f = filter(&[("sid", "re"), ("task", "small"), ("max_price", "0")]);
    assert_eq!((f.limit, f.max_price), (DEFAULT_LIMIT, Some(0)));
    assert!(f.needs_definition());
    assert!(!filter(&[("sid", "r")]).needs_definition());
}

const DEFAULT_LIMIT: usize = mesg_api_types::DEFAULT_CATALOGUE_LIMIT;

fn entry_of(yml: &str, key: &Keypair) -> ServiceEntry {
    let definition = ServiceDefinition::from_yaml(yml).unwrap();
    let package_hash = PackageHash(Hash32::sha256(yml.as_bytes()));
    let record = ServiceRecord {
        service_hash: definition.service_hash(&package_hash),
        definition,
        package_hash,
        package_size: 1,
        publisher: key.public(),
    };
    let signed = Signed::sign(
        key,
        domains::SERVICE_RECORD,
        &record,
        now_ms(),
        60_000,
        MAX_PACKAGE_MESSAGE,
    )
    .unwrap();
    ServiceEntry {
        record,
        signed,
        image: None,
        deployed_at: now_ms(),
    }
}

fn seen(node: &Keypair, hash: ServiceHash, sid: &str, claim: Option<SignedClaim>) -> OfferSeen {
    OfferSeen {
        node: node.public(),
        offer: ServiceOffer {
            service_hash: hash,
            sid: Some(sid.into()),
            instance_hash: InstanceHash(Hash32::sha256(hash.as_bytes())),
            in_flight: 2,
            claim,
        },
        local: false,
        last_seen_ms_ago: 10,
        expires_in_ms: 1000,
    }
}

/// A priced service known here (published by `alice`, with a second claim under the
/// wrong sid), and a service known only by its announcement (published by `bob`).
struct World {
    alice: Keypair,
    bob: Keypair,
    priced: ServiceHash,
    unknown: ServiceHash,
    offers: Vec<OfferSeen>,
    known: HashMap<ServiceHash, ServiceEntry>,
}

fn world() -> World {
    let (alice, bob, runner) = (
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
    );
    let e = entry_of(PRICED, &runner);
    let priced = e.record.service_hash;
    let unknown = ServiceHash(Hash32::sha256(b"announced only"));
    let claim = SignedClaim::sign(&alice, "resize", priced, now_ms()).unwrap();
    // Mallory's claim names another sid: it does not make him a publisher of `resize`.
    let mallory = Keypair::generate().unwrap();
    let wrong = SignedClaim::sign(&mallory, "resize-x", priced, now_ms()).unwrap();
    let bobs = SignedClaim::sign(&bob, "resizer", unknown, now_ms()).unwrap();
    let offers = vec![
        seen(&runner, priced, "resize", Some(claim)),
        seen(&mallory, priced, "resize-x", Some(wrong)),
        seen(&bob, unknown, "resizer", Some(bobs)),
    ];
    World {
        alice,
        bob,
        priced,
        unknown,
        offers,
        known: HashMap::from([(priced, e)]),
    }
}

fn list(w: &World, pairs: &[(&str, &str)]) -> Catalogue {
    listing(gather(w.offers.clone()), &w.known, &filter(pairs))
}

fn keys(c: &Catalogue, hash: &ServiceHash) -> Vec<String> {
    let e = c.services.iter().find(|e| &e.service_hash == hash).unwrap();
    e.tasks.iter().map(|t| t.key.clone()).collect()
}

#[test]
fn the_listing_shows_prices_publishers_and_providers_and_says_what_it_does_not_know() {
    let w = world();
    let c = list(&w, &[]);
    assert_eq!((c.matched, c.unfetched), (2, 1));
    let p = &c.services[0];
    assert_eq!(p.service_hash, w.priced);
    assert_eq!(
        p.sid.as_deref(),
        Some("resize"),
        "the definition's sid wins"
    );
    assert_eq!(p.publishers, vec![w.alice.public()]);
    assert_eq!(p.publisher_share_bps, Some(250));
    assert_eq!(p.providers.len(), 2);
    let big = p.tasks.iter().find(|t| t.key == "big").unwrap();
    assert_eq!(big.price.map(|p| (p.call, p.per_ms)), Some((5000, 1)));
    assert!(!big.free);
    let ping = p.tasks.iter().find(|t| t.key == "ping").unwrap();
    assert!(ping.free && ping.price.is_none());
    let u = &c.services[1];
    assert_eq!(u.service_hash, w.unknown);
    assert!(!u.definition_known && u.tasks.is_empty() && u.name.is_none());
    assert_eq!(u.publishers, vec![w.bob.public()]);
    assert_eq!(u.publisher_share_bps, None);
}

#[test]
fn each_filter_keeps_what_it_says() {
    let w = world();
    // Sid prefix; an exact match first.
    let c = list(&w, &[("sid", "resize")]);
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.services[0].service_hash, w.priced);
    let c = list(&w, &[("sid", "resizer")]);
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].service_hash, w.unknown);
    // Task and price need the definition: the unknown service is left out.
    let c = list(&w, &[("task", "big")]);
    assert_eq!(keys(&c, &w.priced), vec!["big"]);
    assert_eq!(c.services.len(), 1);
    let c = list(&w, &[("max_price", "500")]);
    assert_eq!(keys(&c, &w.priced), vec!["ping", "small"]);
    assert!(
        list(&w, &[("task", "big"), ("max_price", "4999")])
            .services
            .is_empty()
    );
    // Publisher: a key or its start; Mallory's mismatched claim counts for nothing.
    let alice = w.alice.public().to_string();
    let c = list(&w, &[("publisher", &alice[..6])]);
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].service_hash, w.priced);
    let c = list(&w, &[("publisher", &w.bob.public().to_string())]);
    assert_eq!(c.services[0].service_hash, w.unknown);
    assert_eq!(c.services.len(), 1);
    // A limit truncates and still counts what matched.
    let c = list(&w, &[("limit", "1")]);
    assert_eq!((c.services.len(), c.matched), (1, 2));
}
