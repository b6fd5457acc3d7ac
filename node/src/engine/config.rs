//! What the engine is configured with, and the bounds it applies to what it is asked.

use crate::runtime::ResourceLimits;
use mesg_protocol::PublicKey;
use std::path::PathBuf;
use std::time::Duration;

/// Default execution timeout when neither the request nor the task sets one.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Longest timeout a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Events kept in the store for `GET /v1/events`.
pub const RECENT_EVENTS: usize = 10_000;
/// How long this node keeps the events it emitted for subscribers that missed them
/// (the catch-up log), and how long their signed envelopes are valid.
pub const EVENT_RETENTION_MS: u64 = 600_000;
/// Validity of signed results and requests.
pub const SIGNED_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub packages_dir: PathBuf,
    pub max_package_bytes: u64,
    pub default_limits: ResourceLimits,
    /// Floors and operator maxima of the limits an Application may ask for.
    pub limit_bounds: crate::runtime::limits::LimitBounds,
    /// How many executions the node keeps; the oldest finished ones beyond that are
    /// removed. 0 keeps them all.
    pub execution_history: usize,
    /// Sids bound to a publisher by the operator (`--pin sid=KEY`): they resolve to that
    /// publisher's services only, whatever else is announced or pinned.
    pub pins: Vec<(String, PublicKey)>,
    /// Work requests one peer may send per second (see [`super::net::peer_limits`]).
    pub peer_work_rate: u32,
    /// How long an idempotency key names its execution (at least): the execution is kept
    /// that long, and the same key then answers it; after that the key may be used again.
    pub idempotency_ttl_ms: u64,
    /// Default credit limit of a peer (µc): what it may owe this node, reservations of
    /// calls in progress included, before its calls are refused (`--credit-limit`).
    pub credit_limit: u64,
    /// Adaptive replication (`--adaptive-verification`): a verified execution whose
    /// first-choice provider has a long clean record is verified only at that provider's
    /// sample rate, otherwise run by it alone (still committed and revealed).
    pub adaptive_verification: bool,
}

/// How often the node forgets expired replay nonces and trims its execution history.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);
/// Executions removed per store call, so one trim never holds the store for long.
pub const PRUNE_BATCH: usize = 1000;
