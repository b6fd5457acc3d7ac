//! Unit tests of `peers`: the redial backoff and its bounds, and how long work protects
//! a connection.

use super::{
    LOOKUP_PROTECTION, MAX_BACKOFF, MAX_REDIALS, MIN_BACKOFF, PeerBook, REDIAL_COOLDOWN, Redial,
    STABLE_CONNECTION, TRIM_COOLDOWN, WORK_PROTECTION,
};
use libp2p::core::{ConnectedPoint, Endpoint, transport::PortUse};
use libp2p::{Multiaddr, PeerId};
use std::time::{Duration, Instant};

#[test]
fn peers_learned_from_the_network_are_redialled_a_bounded_number_of_times() {
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    let mut now = Instant::now();
    let mut r = Redial::new(vec![addr.clone()], now);
    let mut dials = 0;
    for _ in 0..100 {
        if r.due(now, Some(MAX_REDIALS)) {
            dials += 1;
        }
        if r.gave_up_at.is_some() {
            break;
        }
        now += MAX_BACKOFF;
    }
    assert_eq!(dials, MAX_REDIALS);
    now += MAX_BACKOFF;
    assert!(!r.due(now, Some(MAX_REDIALS)));
    assert!(r.addrs.is_empty(), "addresses forgotten");
    // A new announcement soon after does not start it again...
    r.announced(vec![addr.clone()], now);
    assert!(!r.due(now, Some(MAX_REDIALS)));
    // ...after the cooldown it does, and a connection resets the count of dials.
    now += REDIAL_COOLDOWN;
    r.announced(vec![addr.clone()], now);
    assert!(r.due(now, Some(MAX_REDIALS)));
    r.opened(now);
    assert_eq!(r.attempts, 0);
    // Bootstrap addresses (no limit) are dialled for ever.
    let mut b = Redial::new(vec![addr], now);
    let mut dials = 0;
    for _ in 0..100 {
        if b.due(now, None) {
            dials += 1;
        }
        now += MAX_BACKOFF;
    }
    assert_eq!(dials, 100);
}

#[test]
fn a_peer_that_closes_our_connections_at_once_is_redialled_ever_later() {
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    let mut now = Instant::now();
    let mut r = Redial::new(vec![addr], now);
    let mut waits = Vec::new();
    for _ in 0..8 {
        r.opened(now);
        now += Duration::from_millis(600);
        r.lost(now);
        waits.push(r.next.duration_since(now));
        now = r.next;
    }
    assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
    assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
    // A connection that lasted is redialled at once after it is lost (a restart).
    r.opened(now);
    now += STABLE_CONNECTION;
    r.lost(now);
    assert_eq!(r.next.duration_since(now), MIN_BACKOFF);
    // A trimmed peer keeps its cooldown whatever the loss says.
    r.next = now + TRIM_COOLDOWN;
    r.opened(now);
    r.lost(now + Duration::from_secs(1));
    assert_eq!(r.next, now + TRIM_COOLDOWN);
}

#[test]
fn a_record_lookup_protects_its_connection_briefly_and_never_shortens_work() {
    let mut book = PeerBook::new(Vec::new(), true, 2, 3);
    let (asked, worked) = (PeerId::random(), PeerId::random());
    let before = Instant::now();
    book.touch_for_lookup(asked);
    book.touch(worked);
    book.touch_for_lookup(worked);
    let until = |p: &PeerId| book.protected_until[p].duration_since(before);
    assert!(until(&asked) >= LOOKUP_PROTECTION && until(&asked) < WORK_PROTECTION);
    // A lookup to a peer with work does not cut the work's protection short.
    assert!(until(&worked) >= WORK_PROTECTION);
}

#[test]
fn a_bootstrap_node_that_trims_us_is_not_redialled_at_once() {
    // Found by bounded_peers_e2e: the bootstrap node, above its bound, trimmed a peer
    // that had joined through it; the peer, below its target, dialled the bootstrap
    // address again half a second later, was counted 5 s on and trimmed again, and the
    // bootstrap node stayed above its bound for good.
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    let mut book = PeerBook::new(vec![addr.clone()], true, 2, 3);
    let bootstrap_node = PeerId::random();
    let through_bootstrap = ConnectedPoint::Dialer {
        address: addr.clone(),
        role_override: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    };
    let mut waits = Vec::new();
    for _ in 0..6 {
        let before = Instant::now();
        book.on_connected(bootstrap_node, &through_bootstrap);
        book.on_disconnected(bootstrap_node);
        waits.push(book.bootstrap[&addr].next.saturating_duration_since(before));
        book.bootstrap.get_mut(&addr).unwrap().next = Instant::now();
    }
    assert!(waits[0] >= 2 * MIN_BACKOFF, "{waits:?}");
    assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
    assert!(*waits.last().unwrap() >= MAX_BACKOFF / 2, "{waits:?}");
    // A bootstrap connection that lasted (the bootstrap node restarts) is redialled at
    // once.
    let r = book.bootstrap.get_mut(&addr).unwrap();
    r.opened(Instant::now() - STABLE_CONNECTION);
    book.on_disconnected(bootstrap_node);
    let wait = book.bootstrap[&addr]
        .next
        .saturating_duration_since(Instant::now());
    assert!(wait <= MIN_BACKOFF, "{wait:?}");
}
