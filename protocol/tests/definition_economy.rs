//! Prices and the `economy` section in `mesg.yml`: integers of micro-credits, every
//! wrong figure refused with its position, all-zero the same as free.

use mesg_protocol::ServiceDefinition;
use mesg_protocol::economy::{Economy, MAX_PRICE_PART, Price};

fn price_of(yaml_price: &str) -> Option<Price> {
    let src = format!("name: x\ntasks:\n  t:\n    price: {yaml_price}\n");
    ServiceDefinition::from_yaml(&src).unwrap().price_of("t")
}

fn error_of(src: &str) -> String {
    match ServiceDefinition::from_yaml(src) {
        Ok(d) => panic!("accepted {src:?} as {d:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_part_is_optional_and_all_zero_is_free() {
    assert_eq!(
        price_of("{call: 1000, per_ms: 2, per_kib: 5}"),
        Some(Price {
            call: 1000,
            per_ms: 2,
            per_kib: 5
        })
    );
    assert_eq!(
        price_of("{per_ms: 3}"),
        Some(Price {
            call: 0,
            per_ms: 3,
            per_kib: 0
        })
    );
    assert_eq!(price_of("{}"), None);
    assert_eq!(price_of("{call: 0, per_ms: 0}"), None);
    assert_eq!(
        price_of(&format!("{{call: {MAX_PRICE_PART}}}")).map(|p| p.call),
        Some(MAX_PRICE_PART)
    );
    // Free written either way is the same service.
    let pkg = mesg_protocol::PackageHash(mesg_protocol::Hash32::sha256(b"p"));
    let a = ServiceDefinition::from_yaml("name: x\ntasks:\n  t: {}\n").unwrap();
    let b = ServiceDefinition::from_yaml("name: x\ntasks:\n  t: {price: {call: 0}}\n").unwrap();
    assert_eq!(a.service_hash(&pkg), b.service_hash(&pkg));
    // A price is part of the hash.
    let c = ServiceDefinition::from_yaml("name: x\ntasks:\n  t: {price: {call: 1}}\n").unwrap();
    assert_ne!(a.service_hash(&pkg), c.service_hash(&pkg));
}

#[test]
fn wrong_figures_are_refused_with_their_position() {
    let cases = [
        ("{call: -1}", "4:19: tasks.t.price.call: `-1` is negative"),
        (
            "{call: 1.5}",
            "4:19: tasks.t.price.call: `1.5` is not a whole number",
        ),
        ("{call: 1e3}", "`1e3` is not a whole number"),
        (
            "{per_ms: 18446744073709551616}",
            "tasks.t.price.per_ms: `18446744073709551616` is too large; at most 1000000000000000 micro-credits",
        ),
        (
            "{per_kib: 1000000000000001}",
            "`1000000000000001` is too large",
        ),
        (
            "{call: \"10\"}",
            "expected a whole number of micro-credits, got a string",
        ),
        ("{call: true}", "got a boolean"),
        (
            "{cal: 10}",
            "tasks.t.price.cal: unknown field (did you mean `call`?); allowed fields: call, per_ms, per_kib",
        ),
        ("{perms: 10}", "did you mean `per_ms`"),
        (
            "10",
            "4:12: tasks.t.price: expected a mapping of micro-credits",
        ),
    ];
    for (price, want) in cases {
        let got = error_of(&format!("name: x\ntasks:\n  t:\n    price: {price}\n"));
        assert!(got.contains(want), "{price}: expected `{want}` in:\n{got}");
    }
}

#[test]
fn the_publisher_share_is_in_basis_points() {
    let d =
        ServiceDefinition::from_yaml("name: x\neconomy:\n  publisher_share_bps: 2500\n").unwrap();
    assert_eq!(
        d.economy,
        Some(Economy {
            publisher_share_bps: 2500
        })
    );
    let zero =
        ServiceDefinition::from_yaml("name: x\neconomy: {publisher_share_bps: 0}\n").unwrap();
    assert_eq!(zero.economy, None, "the default is no section at all");
    let plain = ServiceDefinition::from_yaml("name: x\n").unwrap();
    let pkg = mesg_protocol::PackageHash(mesg_protocol::Hash32::sha256(b"p"));
    assert_eq!(zero.service_hash(&pkg), plain.service_hash(&pkg));
    assert_ne!(d.service_hash(&pkg), plain.service_hash(&pkg));
    for (src, want) in [
        (
            "name: x\neconomy: {publisher_share_bps: 10001}\n",
            "economy.publisher_share_bps: `10001` is too large; at most 10000 basis points",
        ),
        (
            "name: x\neconomy: {publisher_share_bps: -5}\n",
            "is negative",
        ),
        (
            "name: x\neconomy: {publisher_share_bp: 5}\n",
            "did you mean `publisher_share_bps`",
        ),
        ("name: x\neconomi: {}\n", "did you mean `economy`"),
    ] {
        let got = error_of(src);
        assert!(got.contains(want), "{src}: expected `{want}` in:\n{got}");
    }
}

#[test]
fn prices_round_trip_through_yaml_and_the_wire() {
    let src = "name: x\neconomy: {publisher_share_bps: 700}\ntasks:\n  t:\n    price: {call: 7, per_kib: 9}\n  u: {}\n";
    let d = ServiceDefinition::from_yaml(src).unwrap();
    d.validate().unwrap();
    assert_eq!(ServiceDefinition::from_yaml(&d.to_yaml()).unwrap(), d);
    let bytes = mesg_protocol::wire::encode(&d, 1 << 20).unwrap();
    let back: ServiceDefinition = mesg_protocol::wire::decode(&bytes, 1 << 20).unwrap();
    assert_eq!(back, d);
}
