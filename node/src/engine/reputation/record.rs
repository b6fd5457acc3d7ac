//! What this node learned about one peer it used as a provider (the persisted record of
//! [`super::Reputation`]), how each observation changes it, and the adaptive replication
//! rate it implies ([`sample_rate`], docs/verification.md "Reputation and bans").

use serde::{Deserialize, Serialize};

/// A disagreement puts a peer behind every clean provider while its weight, halving
/// every this many milliseconds, is at least [`DISTRUST_THRESHOLD`]: one disagreement
/// costs 30 minutes at the back, each further one 30 more.
pub const DISTRUST_HALF_LIFE_MS: f64 = 30.0 * 60_000.0;
pub const DISTRUST_THRESHOLD: f64 = 0.5;
/// Consecutive agreed verdicts before a peer's executions are verified only by sample.
pub const TRUST_AFTER: u64 = 10;
/// The lowest sampling rate, reached at `TRUST_AFTER / SAMPLE_FLOOR` consecutive agreed
/// verdicts (100): one execution in ten is still verified.
pub const SAMPLE_FLOOR: f64 = 0.1;
/// Weight of a new round-trip sample in the moving average (and of its deviation).
const RTT_ALPHA: f64 = 0.2;
const RTT_BETA: f64 = 0.25;

/// Why and since when a peer is banned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ban {
    pub reason: Option<String>,
    /// Unix ms.
    pub since_ms: u64,
}

/// Counts and times observed of one peer. All times are unix ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerReputation {
    /// Results of executions it sent back (completed or failed: it answered).
    pub successes: u64,
    /// Unreachable, or refused for a reason of its own.
    pub failures: u64,
    /// Accepted, and no result before the deadline.
    pub timeouts: u64,
    /// Verification verdicts: its result was in the agreeing group, or not.
    pub agreed: u64,
    pub disagreed: u64,
    /// Agreed verdicts since its last disagreement.
    pub consecutive_agreed: u64,
    /// Moving average of its submit round trip (µs), and of the deviation from it.
    pub rtt_us: Option<f64>,
    pub rtt_dev_us: Option<f64>,
    pub last_disagreement_ms: Option<u64>,
    pub last_timeout_ms: Option<u64>,
    /// Last time anything was recorded (the least recently used record is evicted first).
    pub last_used_ms: u64,
    /// Disagreements, halving every [`DISTRUST_HALF_LIFE_MS`], as of `distrust_at`.
    pub distrust: f64,
    pub distrust_at: u64,
    pub ban: Option<Ban>,
}

/// The record as stored: versioned, so that a later layout can still read this one.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Stored {
    V1(PeerReputation),
}

impl PeerReputation {
    pub fn success(&mut self, now: u64) {
        self.successes += 1;
        self.last_used_ms = now;
    }

    /// A measured submit round trip (µs).
    pub fn round_trip(&mut self, rtt_us: f64, now: u64) {
        if !rtt_us.is_finite() || rtt_us < 0.0 {
            return;
        }
        match self.rtt_us {
            None => {
                self.rtt_us = Some(rtt_us);
                self.rtt_dev_us = Some(rtt_us / 2.0);
            }
            Some(avg) => {
                let dev = self.rtt_dev_us.unwrap_or(0.0);
                self.rtt_dev_us = Some(dev * (1.0 - RTT_BETA) + (rtt_us - avg).abs() * RTT_BETA);
                self.rtt_us = Some(avg * (1.0 - RTT_ALPHA) + rtt_us * RTT_ALPHA);
            }
        }
        self.last_used_ms = now;
    }

    pub fn failure(&mut self, now: u64) {
        self.failures += 1;
        self.last_used_ms = now;
    }

    pub fn timeout(&mut self, now: u64) {
        self.timeouts += 1;
        self.last_timeout_ms = Some(now);
        self.last_used_ms = now;
    }

    /// A verification verdict on its result.
    pub fn verdict(&mut self, agreed: bool, now: u64) {
        if agreed {
            self.agreed += 1;
            self.consecutive_agreed += 1;
        } else {
            self.disagreed += 1;
            self.consecutive_agreed = 0;
            self.last_disagreement_ms = Some(now);
            self.distrust = self.distrust_at(now) + 1.0;
            self.distrust_at = now;
        }
        self.last_used_ms = now;
    }

    /// The decayed weight of its disagreements at `now`.
    pub fn distrust_at(&self, now: u64) -> f64 {
        let age = now.saturating_sub(self.distrust_at) as f64;
        self.distrust * 0.5f64.powf(age / DISTRUST_HALF_LIFE_MS)
    }

    /// Whether it goes behind every clean provider at `now` (a recent disagreement).
    pub fn distrusted(&self, now: u64) -> bool {
        self.distrust_at(now) >= DISTRUST_THRESHOLD
    }

    pub fn banned(&self) -> bool {
        self.ban.is_some()
    }
}

/// Adaptive replication (as BOINC does it): the share of a provider's executions that
/// should be verified by other executors. Every one (1.0) until [`TRUST_AFTER`]
/// consecutive agreed verdicts, then `TRUST_AFTER / consecutive_agreed` (0.5 at 20, 0.25
/// at 40) down to [`SAMPLE_FLOOR`] at 100 and beyond. A disagreement resets the count,
/// so a provider caught once is verified every time again; a banned one always is (and
/// is never chosen anyway).
pub fn sample_rate(r: &PeerReputation) -> f64 {
    if r.banned() || r.consecutive_agreed < TRUST_AFTER {
        return 1.0;
    }
    (TRUST_AFTER as f64 / r.consecutive_agreed as f64).clamp(SAMPLE_FLOOR, 1.0)
}
