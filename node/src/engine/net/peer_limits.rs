//! Per-peer rate of work requests. Any node of the network may open work streams to this
//! one; without a limit one peer could keep the node busy verifying signatures and
//! persisting requests at whatever rate its link allows, and starve every other peer. Each
//! peer gets a token bucket: a steady rate with a burst, refused beyond it (`busy`, which
//! an honest requester treats as "try another provider or later").

use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Work requests (submits, results, cancels) one peer may send per second, sustained.
/// Generous: above what one node sends when it routes 5,000 executions per second (the
/// benchmark target), while bounding the signature checks a single peer can cost us.
pub const DEFAULT_PEER_WORK_RATE: u32 = 10_000;
/// Seconds of the rate a peer may send at once after being idle.
pub const PEER_WORK_BURST_SECS: u32 = 2;
/// Peers tracked before buckets that are full again (idle peers) are forgotten.
const MAX_TRACKED_PEERS: usize = 4096;

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            last: now,
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
        }
    }

    /// `rate` tokens per second, which may be a fraction (0.5: one every two seconds).
    pub fn per_second(rate: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst.max(1)),
            last: now,
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// The buckets of the peers that sent work recently.
#[derive(Debug)]
pub struct PeerRates {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<PeerId, TokenBucket>>,
}

impl PeerRates {
    /// `rate` requests per second per peer (at least 1), with a burst of
    /// [`PEER_WORK_BURST_SECS`] seconds of it.
    pub fn new(rate: u32) -> PeerRates {
        let rate = rate.max(1);
        PeerRates {
            rate,
            burst: rate.saturating_mul(PEER_WORK_BURST_SECS),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether `peer` may send one more request now.
    pub fn allow(&self, peer: PeerId) -> bool {
        self.allow_at(peer, Instant::now())
    }

    fn allow_at(&self, peer: PeerId, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("peer rates lock");
        if buckets.len() >= MAX_TRACKED_PEERS && !buckets.contains_key(&peer) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        buckets
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let rates = PeerRates::new(10);
        let (rogue, honest) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| rates.allow_at(rogue, t0)).count();
        assert_eq!(allowed, 20, "the burst is two seconds of the rate");
        assert!(
            rates.allow_at(honest, t0),
            "another peer has its own bucket"
        );
        // Half a second later: five more.
        let t1 = t0 + Duration::from_millis(500);
        let allowed = (0..100).filter(|_| rates.allow_at(rogue, t1)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn idle_peers_are_forgotten_when_many_are_tracked() {
        let rates = PeerRates::new(1000);
        let t0 = Instant::now();
        for _ in 0..MAX_TRACKED_PEERS {
            assert!(rates.allow_at(PeerId::random(), t0));
        }
        let later = t0 + Duration::from_secs(10);
        assert!(rates.allow_at(PeerId::random(), later));
        assert_eq!(rates.buckets.lock().unwrap().len(), 1);
    }
}
