//! Amounts: exact, checked, monotone, additive, never above the cap (the receipts' tests
//! are in `receipt_tests.rs`).

use super::*;
use crate::value::Json;
use proptest::prelude::*;

pub(super) fn price() -> Price {
    Price {
        call: 1000,
        per_ms: 2,
        per_kib: 5,
    }
}

#[test]
fn a_worked_example() {
    // docs/economy.md: 1 call, 1,500 ms, 3,000 bytes out (3 KiB rounded up).
    let usage = Usage {
        calls: 1,
        duration_ms: 1500,
        bytes_out: 3000,
    };
    assert_eq!(usage.kib_out(), 3);
    assert_eq!(price().amount(&usage), Ok(1000 + 3000 + 15));
    assert_eq!(price().charge(&usage, Some(2500)), Ok(2500));
    assert_eq!(price().charge(&usage, Some(10_000)), Ok(4015));
    let cost = Cost::of(price(), usage, Some(2500)).unwrap();
    assert!(cost.capped());
    assert!(!Cost::of(price(), usage, Some(4015)).unwrap().capped());
}

#[test]
fn kib_round_up() {
    let kib = |bytes_out| {
        Usage {
            calls: 0,
            duration_ms: 0,
            bytes_out,
        }
        .kib_out()
    };
    assert_eq!((kib(0), kib(1), kib(1024), kib(1025)), (0, 1, 1, 2));
    assert_eq!(kib(u64::MAX), u64::MAX / 1024 + 1);
}

#[test]
fn overflow_is_refused_or_capped_never_wrapped() {
    let p = Price {
        call: u64::MAX,
        per_ms: 0,
        per_kib: 0,
    };
    let two = Usage {
        calls: 2,
        ..Usage::default()
    };
    assert_eq!(p.amount(&two), Err(Overflow));
    assert_eq!(p.charge(&two, None), Err(Overflow));
    assert_eq!(p.charge(&two, Some(7)), Ok(7));
    let sum = Price {
        call: u64::MAX,
        per_ms: 1,
        per_kib: 0,
    };
    let one = Usage {
        calls: 1,
        duration_ms: 1,
        bytes_out: 0,
    };
    assert_eq!(sum.amount(&one), Err(Overflow));
}

#[test]
fn outputs_are_measured_canonically() {
    let a = Json(serde_json::json!({"b": 1, "a": "x"}));
    assert_eq!(canonical_size(&a), br#"{"a":"x","b":1}"#.len() as u64);
    assert_eq!(Usage::of_call(5, &a).calls, 1);
}

#[test]
fn the_publisher_part_and_the_rest_add_up() {
    let e = Economy {
        publisher_share_bps: 1000,
    };
    assert_eq!(e.publisher_part(4015), 401);
    assert_eq!(e.publisher_part(u64::MAX), u64::MAX / 10);
    let all = Economy {
        publisher_share_bps: 10_000,
    };
    assert_eq!(all.publisher_part(u64::MAX), u64::MAX);
    assert_eq!(Economy::default().publisher_part(99), 0);
}

fn usage_strategy() -> impl Strategy<Value = Usage> {
    (0..1_000u64, 0..100_000_000u64, 0..u64::MAX / 2).prop_map(|(calls, duration_ms, bytes_out)| {
        Usage {
            calls,
            duration_ms,
            bytes_out,
        }
    })
}

fn price_strategy() -> impl Strategy<Value = Price> {
    (0..=MAX_PRICE_PART, 0..=MAX_PRICE_PART, 0..=MAX_PRICE_PART).prop_map(
        |(call, per_ms, per_kib)| Price {
            call,
            per_ms,
            per_kib,
        },
    )
}

/// The amount computed in 128 bits: what `amount` must return when it fits.
fn wide(p: &Price, u: &Usage) -> u128 {
    u128::from(u.calls) * u128::from(p.call)
        + u128::from(u.duration_ms) * u128::from(p.per_ms)
        + u128::from(u.kib_out()) * u128::from(p.per_kib)
}

proptest! {
    #[test]
    fn never_overflows_silently(p in price_strategy(), u in usage_strategy()) {
        let exact = wide(&p, &u);
        match p.amount(&u) {
            Ok(a) => prop_assert_eq!(u128::from(a), exact),
            Err(Overflow) => prop_assert!(exact > u128::from(u64::MAX)),
        }
    }

    #[test]
    fn monotone_in_each_field(p in price_strategy(), u in usage_strategy(), d in 0..1_000_000u64, field in 0..3usize) {
        let mut more = u;
        match field {
            0 => more.calls += d,
            1 => more.duration_ms += d,
            _ => more.bytes_out += d,
        }
        if let (Ok(a), Ok(b)) = (p.amount(&u), p.amount(&more)) {
            prop_assert!(b >= a);
        }
        // An overflow of the smaller usage is an overflow of the larger one too.
        if p.amount(&u).is_err() {
            prop_assert!(p.amount(&more).is_err());
        }
    }

    #[test]
    fn additive_in_calls(p in price_strategy(), u in usage_strategy(), extra in 0..1_000u64) {
        let mut more = u;
        more.calls += extra;
        if let (Ok(a), Ok(b)) = (p.amount(&u), p.amount(&more)) {
            prop_assert_eq!(u128::from(b), u128::from(a) + u128::from(extra) * u128::from(p.call));
        }
    }

    #[test]
    fn never_more_than_the_cap(p in price_strategy(), u in usage_strategy(), cap in any::<u64>()) {
        let charged = p.charge(&u, Some(cap)).unwrap();
        prop_assert!(charged <= cap);
        prop_assert_eq!(u128::from(charged), wide(&p, &u).min(u128::from(cap)));
    }
}
