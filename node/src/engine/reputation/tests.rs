//! Unit tests of the reputation records: counts, decay, sampling rates, bans, the cap and
//! what survives reopening the tree.

use super::*;

fn key(i: u32) -> PublicKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_be_bytes());
    PublicKey(b)
}

fn temp_tree() -> (sled::Db, sled::Tree) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("reputation").unwrap();
    (db, tree)
}

#[test]
fn outcomes_are_counted() {
    let rep = Reputation::in_memory();
    let p = key(1);
    rep.round_trip(&p, 1000.0);
    rep.success(&p);
    rep.success(&p);
    rep.failure(&p);
    rep.timeout(&p);
    rep.record_verdict(&p, true);
    rep.record_verdict(&p, true);
    rep.record_verdict(&p, false);
    rep.record_verdict(&p, true);
    let r = rep.get(&p).unwrap();
    assert_eq!(
        (r.successes, r.failures, r.timeouts, r.agreed, r.disagreed),
        (2, 1, 1, 3, 1)
    );
    assert_eq!(
        r.consecutive_agreed, 1,
        "a disagreement resets the clean run"
    );
    assert!(r.last_timeout_ms.is_some() && r.last_disagreement_ms.is_some());
    assert_eq!(r.rtt_us, Some(1000.0));
}

#[test]
fn round_trips_are_smoothed() {
    let mut r = PeerReputation::default();
    r.round_trip(1000.0, 1);
    r.round_trip(2000.0, 2);
    assert_eq!(r.rtt_us, Some(1200.0));
    assert_eq!(r.rtt_dev_us, Some(500.0 * 0.75 + 1000.0 * 0.25));
    r.round_trip(f64::NAN, 3);
    r.round_trip(-5.0, 3);
    assert_eq!(r.rtt_us, Some(1200.0), "nonsense samples are ignored");
}

#[test]
fn a_disagreement_puts_a_peer_last_for_a_while() {
    let rep = Reputation::in_memory();
    let p = key(1);
    let now = now_ms();
    assert_eq!(rep.rank(&p, now), Rank::Clean);
    rep.record_verdict(&p, true);
    assert_eq!(rep.rank(&p, now), Rank::Clean);
    rep.timeout(&p);
    assert_eq!(
        rep.rank(&p, now),
        Rank::Clean,
        "timeouts rank through strikes"
    );
    rep.record_verdict(&p, false);
    let now = now_ms();
    assert_eq!(rep.rank(&p, now), Rank::Distrusted);
    let half = DISTRUST_HALF_LIFE_MS as u64;
    assert_eq!(rep.rank(&p, now + half - 1000), Rank::Distrusted);
    assert_eq!(rep.rank(&p, now + half + 1000), Rank::Clean, "it decays");
    // Two disagreements: twice as long.
    rep.record_verdict(&p, false);
    let now = now_ms();
    assert_eq!(rep.rank(&p, now + half + 1000), Rank::Distrusted);
    assert_eq!(rep.rank(&p, now + 3 * half), Rank::Clean);
}

#[test]
fn sampling_falls_with_a_clean_record_and_resets_on_a_disagreement() {
    let mut r = PeerReputation::default();
    assert_eq!(sample_rate(&r), 1.0, "unknown: verify every execution");
    for _ in 0..TRUST_AFTER - 1 {
        r.verdict(true, 1);
    }
    assert_eq!(sample_rate(&r), 1.0);
    r.verdict(true, 1);
    assert_eq!(sample_rate(&r), 1.0, "at the threshold: still every one");
    for _ in 0..TRUST_AFTER {
        r.verdict(true, 1);
    }
    assert_eq!(sample_rate(&r), 0.5);
    for _ in 0..2 * TRUST_AFTER {
        r.verdict(true, 1);
    }
    assert_eq!(sample_rate(&r), 0.25);
    for _ in 0..1000 {
        r.verdict(true, 1);
    }
    assert_eq!(sample_rate(&r), SAMPLE_FLOOR, "never below the floor");
    let mut banned = r.clone();
    banned.ban = Some(Ban {
        reason: None,
        since_ms: 1,
    });
    assert_eq!(sample_rate(&banned), 1.0);
    r.verdict(false, 2);
    assert_eq!(
        sample_rate(&r),
        1.0,
        "caught once: verified every time again"
    );
    // Monotonic between the threshold and the floor.
    let mut prev = 1.0;
    for c in TRUST_AFTER..300 {
        r.consecutive_agreed = c;
        let s = sample_rate(&r);
        assert!(s <= prev && s >= SAMPLE_FLOOR, "{c}: {s}");
        prev = s;
    }
}

#[test]
fn bans_are_kept_and_lifted() {
    let rep = Reputation::in_memory();
    let p = key(7);
    assert!(!rep.is_banned(&p));
    let r = rep.ban(&p, Some("wrong outputs".into())).unwrap();
    assert_eq!(r.ban.unwrap().reason.as_deref(), Some("wrong outputs"));
    assert!(rep.is_banned(&p));
    assert_eq!(rep.rank(&p, now_ms()), Rank::Banned);
    assert!(matches!(
        rep.ban(&key(8), Some("x".repeat(MAX_BAN_REASON + 1))),
        Err(ReputationError::ReasonTooLong(_))
    ));
    assert!(!rep.is_banned(&key(8)));
    assert_eq!(
        rep.ban(&key(9), Some("  ".into()))
            .unwrap()
            .ban
            .unwrap()
            .reason,
        None
    );
    rep.unban(&p).unwrap();
    assert!(!rep.is_banned(&p));
    assert_eq!(rep.rank(&p, now_ms()), Rank::Clean);
}

#[test]
fn records_and_bans_survive_reopening() {
    let (db, tree) = temp_tree();
    {
        let rep = Reputation::open(tree.clone()).unwrap();
        rep.success(&key(1));
        rep.round_trip(&key(1), 500.0);
        rep.record_verdict(&key(1), false);
        rep.ban(&key(2), Some("lies".into())).unwrap();
        rep.ban(&key(3), None).unwrap();
        rep.unban(&key(3)).unwrap();
    }
    // Garbage in the tree is dropped, not fatal.
    tree.insert(b"short", b"garbage".to_vec()).unwrap();
    let rep = Reputation::open(db.open_tree("reputation").unwrap()).unwrap();
    let one = rep.get(&key(1)).unwrap();
    assert_eq!((one.successes, one.disagreed), (1, 1));
    assert_eq!(rep.rank(&key(1), now_ms()), Rank::Distrusted);
    assert_eq!(rep.ban_of(&key(2)).unwrap().reason.as_deref(), Some("lies"));
    assert!(!rep.is_banned(&key(3)));
    assert_eq!(rep.len(), 3);
    assert!(tree.get(b"short").unwrap().is_none());
}

#[test]
fn the_least_recently_used_unbanned_peer_is_evicted() {
    let (_db, tree) = temp_tree();
    let rep = Reputation::open(tree.clone()).unwrap();
    rep.ban(&key(0), Some("kept".into())).unwrap();
    {
        let mut peers = rep.lock();
        peers.get_mut(&key(0)).unwrap().last_used_ms = 0;
        for i in 1..MAX_PEERS as u32 {
            let r = PeerReputation {
                last_used_ms: 10 + u64::from(i),
                ..Default::default()
            };
            peers.insert(key(i), r);
        }
    }
    tree.insert(key(1).0, b"x".to_vec()).unwrap();
    rep.failure(&key(100_000));
    assert_eq!(rep.len(), MAX_PEERS);
    assert!(rep.is_banned(&key(0)), "a ban is never evicted");
    assert!(rep.get(&key(1)).is_none(), "the oldest unbanned one is");
    assert!(tree.get(key(1).0).unwrap().is_none(), "from the tree too");
    assert_eq!(rep.get(&key(100_000)).unwrap().failures, 1);
}

#[test]
fn a_table_full_of_bans_refuses_more() {
    let rep = Reputation::in_memory();
    {
        let mut peers = rep.lock();
        for i in 0..MAX_PEERS as u32 {
            let r = PeerReputation {
                ban: Some(Ban {
                    reason: None,
                    since_ms: 1,
                }),
                ..Default::default()
            };
            peers.insert(key(i), r);
        }
    }
    assert!(matches!(
        rep.ban(&key(999_999), None),
        Err(ReputationError::Full)
    ));
    rep.failure(&key(999_999));
    assert_eq!(rep.len(), MAX_PEERS);
}
