//! The requester's decisions while it routes one execution, apart from the I/O: which
//! provider to offer it to next, what a provider's answer means (for the execution and
//! for that provider's standing), and how long to keep trying while nobody takes it.
//!
//! Only before any `Accepted` is another provider tried, so nothing runs twice: an
//! answer that says the provider holds the request (`Replayed`, its `Accepted` was lost
//! before a restart) counts as accepted.

use libp2p::PeerId;
use mesg_protocol::PublicKey;
use mesg_protocol::messages::{Reject, RejectCode};
use std::collections::HashSet;
use std::time::Duration;

/// How long an execution waits for some provider to take it before it fails (at most
/// half of its timeout).
pub const ROUTE_PATIENCE_MS: u64 = 10_000;
/// First pause when no provider is left to try; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A provider's answer to a submit, as the route sees it.
#[derive(Debug, Clone)]
pub enum Answer {
    Accepted,
    Rejected(Reject),
    /// Not reached, or no answer in time.
    Unreachable(String),
}

/// What the answer says about the provider (for the provider table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It took the work: its round trip counts.
    Succeeded,
    /// An observed failure: it goes last for a while.
    Failed,
    /// Nothing learned (busy is honest and temporary).
    Unchanged,
}

/// What the route does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The provider runs it: the route is done.
    Accepted,
    /// Offer it to another provider.
    TryAnother,
    /// End the execution with this reason (a refusal no other provider would change).
    Fail(String),
}

/// When no provider is left to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idle {
    /// Wait, then try every provider again (new ones may have been announced).
    Wait(Duration),
    /// Patience is over: fail with this reason.
    GiveUp(String),
}

/// The state of one route.
#[derive(Debug)]
pub struct Failover {
    me: PublicKey,
    tried: HashSet<PublicKey>,
    reasons: Vec<String>,
    preferred: Option<PublicKey>,
    asked_dht: bool,
    pause: Duration,
    patience_until: u64,
}

impl Failover {
    /// A route starting at `now` for an execution with `timeout_ms`; `noted` is the
    /// provider recorded with it (before a restart, or the first choice), offered first.
    pub fn new(me: PublicKey, noted: Option<PublicKey>, timeout_ms: u64, now: u64) -> Self {
        Failover {
            me,
            tried: HashSet::new(),
            reasons: Vec::new(),
            preferred: noted.filter(|p| *p != me),
            asked_dht: false,
            pause: FIRST_PAUSE,
            patience_until: now + ROUTE_PATIENCE_MS.min(timeout_ms / 2),
        }
    }

    /// When this route gives up if no provider took the execution (unix ms).
    pub fn patience_until(&self) -> u64 {
        self.patience_until
    }

    /// Whether the DHT should be asked for providers now: once per round, when the
    /// announced ones are all tried.
    pub fn should_ask_dht(&mut self, untried_announced: usize) -> bool {
        if untried_announced == 0 && !self.asked_dht {
            self.asked_dht = true;
            return true;
        }
        false
    }

    /// The provider to offer it to next among `candidates` (best first), the noted
    /// provider before them; marks it tried.
    pub fn next(&mut self, candidates: impl IntoIterator<Item = PublicKey>) -> Option<PublicKey> {
        let preferred = self.preferred.take();
        let choice = preferred
            .into_iter()
            .chain(candidates)
            .find(|p| *p != self.me && !self.tried.contains(p))?;
        self.tried.insert(choice);
        Some(choice)
    }

    /// Whether `p` was offered the execution in this round.
    pub fn tried(&self, p: &PublicKey) -> bool {
        self.tried.contains(p)
    }

    /// Read a provider's answer.
    pub fn on_answer(&mut self, peer: PeerId, answer: Answer) -> (Standing, Next) {
        match answer {
            Answer::Accepted => (Standing::Succeeded, Next::Accepted),
            Answer::Rejected(r) if r.code == RejectCode::Replayed => {
                (Standing::Succeeded, Next::Accepted)
            }
            Answer::Rejected(r) => {
                self.reasons.push(format!("{peer}: {}", r.message));
                if !r.code.is_retriable() {
                    return (
                        Standing::Unchanged,
                        Next::Fail(format!("rejected by {peer}: {}", r.message)),
                    );
                }
                let standing = if r.code == RejectCode::Busy {
                    Standing::Unchanged
                } else {
                    Standing::Failed
                };
                (standing, Next::TryAnother)
            }
            Answer::Unreachable(reason) => {
                self.reasons.push(reason);
                (Standing::Failed, Next::TryAnother)
            }
        }
    }

    /// Nobody left to try at `now`: wait and start a new round, or give up.
    pub fn idle(&mut self, now: u64, service: &impl std::fmt::Display) -> Idle {
        if now + self.pause.as_millis() as u64 >= self.patience_until {
            return Idle::GiveUp(self.give_up_reason(service));
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        self.tried.clear();
        self.asked_dht = false;
        Idle::Wait(pause)
    }

    fn give_up_reason(&self, service: &impl std::fmt::Display) -> String {
        if self.reasons.is_empty() {
            format!("no node in the network runs service {service}")
        } else {
            format!(
                "no provider accepted the execution: {}",
                self.reasons.join("; ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::Keypair;

    fn key() -> PublicKey {
        Keypair::generate().unwrap().public()
    }

    fn peer(k: &PublicKey) -> PeerId {
        k.peer_id().unwrap()
    }

    fn rejected(code: RejectCode, message: &str) -> Answer {
        Answer::Rejected(Reject::new(code, message))
    }

    #[test]
    fn the_noted_provider_goes_first_then_the_best_untried_ones_never_this_node() {
        let (me, noted, a, b) = (key(), key(), key(), key());
        let mut f = Failover::new(me, Some(noted), 60_000, 0);
        assert_eq!(f.next([me, a, b]), Some(noted));
        assert_eq!(f.next([me, a, b]), Some(a));
        assert_eq!(f.next([a, b]), Some(b));
        assert_eq!(f.next([a, b, me]), None);
        // This node noted as the provider (it ran it before a restart) is never offered.
        let mut f = Failover::new(me, Some(me), 60_000, 0);
        assert_eq!(f.next([a]), Some(a));
    }

    #[test]
    fn busy_tries_another_without_blame_and_failures_count_against_the_provider() {
        let me = key();
        let p = key();
        let mut f = Failover::new(me, None, 60_000, 0);
        assert_eq!(
            f.on_answer(peer(&p), rejected(RejectCode::Busy, "full")),
            (Standing::Unchanged, Next::TryAnother)
        );
        assert_eq!(
            f.on_answer(peer(&p), rejected(RejectCode::NoInstance, "gone")),
            (Standing::Failed, Next::TryAnother)
        );
        assert_eq!(
            f.on_answer(peer(&p), Answer::Unreachable("dial failed".into())),
            (Standing::Failed, Next::TryAnother)
        );
    }

    #[test]
    fn a_refusal_another_provider_would_repeat_ends_the_execution() {
        let me = key();
        let p = key();
        let mut f = Failover::new(me, None, 60_000, 0);
        let (standing, next) = f.on_answer(
            peer(&p),
            rejected(RejectCode::InvalidInputs, "count: not a number"),
        );
        assert_eq!(standing, Standing::Unchanged);
        match next {
            Next::Fail(reason) => {
                assert!(reason.contains("rejected by") && reason.contains("count: not a number"))
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_provider_that_already_holds_the_request_has_accepted_it() {
        let mut f = Failover::new(key(), None, 60_000, 0);
        let p = key();
        assert_eq!(
            f.on_answer(
                peer(&p),
                rejected(RejectCode::Replayed, "already submitted")
            ),
            (Standing::Succeeded, Next::Accepted)
        );
        assert_eq!(
            f.on_answer(peer(&p), Answer::Accepted),
            (Standing::Succeeded, Next::Accepted)
        );
    }

    #[test]
    fn with_nobody_left_it_waits_longer_each_round_then_gives_up_with_the_reasons() {
        let (me, a) = (key(), key());
        let mut f = Failover::new(me, None, 60_000, 0);
        assert_eq!(f.next([a]), Some(a));
        f.on_answer(peer(&a), Answer::Unreachable("connection refused".into()));
        assert_eq!(f.next([a]), None);
        let mut now = 0;
        let mut pauses = Vec::new();
        loop {
            match f.idle(now, &"svc") {
                Idle::Wait(p) => {
                    // A new round: every provider may be tried again.
                    assert_eq!(f.next([a]), Some(a));
                    pauses.push(p);
                    now += p.as_millis() as u64;
                }
                Idle::GiveUp(reason) => {
                    assert!(reason.contains("connection refused"), "{reason}");
                    break;
                }
            }
        }
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert!(pauses.iter().all(|p| *p <= MAX_PAUSE));
        assert!(now <= ROUTE_PATIENCE_MS, "gave up after {now} ms");
    }

    #[test]
    fn patience_is_at_most_half_the_timeout_and_says_when_no_one_runs_the_service() {
        let mut f = Failover::new(key(), None, 1_000, 0);
        let mut now = 0;
        let reason = loop {
            match f.idle(now, &"svc") {
                Idle::Wait(p) => now += p.as_millis() as u64,
                Idle::GiveUp(r) => break r,
            }
        };
        assert!(now <= 500, "waited {now} ms for a 1 s timeout");
        assert_eq!(reason, "no node in the network runs service svc");
    }

    #[test]
    fn the_dht_is_asked_once_per_round_when_no_announced_provider_is_left() {
        let mut f = Failover::new(key(), None, 60_000, 0);
        assert!(!f.should_ask_dht(2));
        assert!(f.should_ask_dht(0));
        assert!(!f.should_ask_dht(0));
        f.idle(0, &"svc");
        assert!(f.should_ask_dht(0));
    }
}
