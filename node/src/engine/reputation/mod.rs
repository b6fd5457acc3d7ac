//! Reputation: what this node learned about each peer it used as a provider (successes,
//! failures, timeouts, verification verdicts, round trips) and the peers it banned.
//! Persisted in its own sled tree, so it survives a restart; bounded to [`MAX_PEERS`]
//! records (the least recently used unbanned one is evicted). Provider choice reads it
//! (banned: never; recent disagreement: last), the executor side refuses a banned
//! peer's submits, and the verification work reports verdicts through
//! [`Reputation::record_verdict`].

mod record;
#[cfg(test)]
mod tests;

pub use record::{
    Ban, DISTRUST_HALF_LIFE_MS, PeerReputation, SAMPLE_FLOOR, TRUST_AFTER, sample_rate,
};

use mesg_protocol::{PublicKey, now_ms, wire};
use record::Stored;
use std::collections::HashMap;
use std::sync::Mutex;

/// Peers kept. Keys are free: without a cap, peers met once would grow the tree forever.
pub const MAX_PEERS: usize = 4096;
/// Longest ban reason (bytes).
pub const MAX_BAN_REASON: usize = 256;
/// Largest stored record (bytes): far above a real one (~150 bytes with a full reason).
const MAX_RECORD: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ReputationError {
    #[error("reputation store: {0}")]
    Store(#[from] sled::Error),
    #[error("reputation record: {0}")]
    Record(#[from] wire::WireError),
    #[error("a ban reason has at most {MAX_BAN_REASON} bytes, this one has {0}")]
    ReasonTooLong(usize),
    #[error("this node keeps at most {MAX_PEERS} peers and every one of them is banned")]
    Full,
}

/// Where a peer stands for provider choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    Clean,
    /// A recent disagreement: behind every clean provider.
    Distrusted,
    /// Never chosen.
    Banned,
}

/// The reputation of peers (see the module doc). Thread-safe; cheap calls.
#[derive(Debug)]
pub struct Reputation {
    /// None: kept in memory only (tests of the provider table).
    tree: Option<sled::Tree>,
    peers: Mutex<HashMap<PublicKey, PeerReputation>>,
}

impl Default for Reputation {
    fn default() -> Self {
        Reputation::in_memory()
    }
}

impl Reputation {
    pub fn in_memory() -> Reputation {
        Reputation {
            tree: None,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Open the records kept in `tree`. A record that cannot be read is dropped (it is
    /// an observation, not a fact anyone relies on), but never a ban that can be.
    pub fn open(tree: sled::Tree) -> Result<Reputation, ReputationError> {
        let mut peers = HashMap::new();
        let mut unreadable = Vec::new();
        for entry in tree.iter() {
            let (k, v) = entry?;
            let key: Option<[u8; 32]> = k.as_ref().try_into().ok();
            match (key, wire::decode::<Stored>(&v, MAX_RECORD)) {
                (Some(key), Ok(Stored::V1(r))) if peers.len() < MAX_PEERS => {
                    peers.insert(PublicKey(key), r);
                }
                _ => unreadable.push(k),
            }
        }
        for k in unreadable {
            tracing::warn!("dropping an unreadable reputation record");
            tree.remove(k)?;
        }
        Ok(Reputation {
            tree: Some(tree),
            peers: Mutex::new(peers),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, PeerReputation>> {
        self.peers.lock().expect("reputation lock")
    }

    /// Change `peer`'s record (created if new, evicting the least recently used
    /// unbanned one when full) and store it. None when it could not be kept (full of
    /// bans).
    fn update(
        &self,
        peer: &PublicKey,
        change: impl FnOnce(&mut PeerReputation, u64),
    ) -> Result<Option<PeerReputation>, ReputationError> {
        let now = now_ms();
        let (record, evicted) = {
            let mut peers = self.lock();
            let mut evicted = None;
            if !peers.contains_key(peer) && peers.len() >= MAX_PEERS {
                let oldest = peers
                    .iter()
                    .filter(|(_, r)| !r.banned())
                    .min_by_key(|(_, r)| r.last_used_ms)
                    .map(|(k, _)| *k);
                match oldest {
                    Some(k) => {
                        peers.remove(&k);
                        evicted = Some(k);
                    }
                    None => return Ok(None),
                }
            }
            let r = peers.entry(*peer).or_default();
            change(r, now);
            (r.clone(), evicted)
        };
        if let Some(tree) = &self.tree {
            if let Some(k) = evicted {
                tree.remove(k.0)?;
            }
            tree.insert(
                peer.0,
                wire::encode(&Stored::V1(record.clone()), MAX_RECORD)?,
            )?;
        }
        Ok(Some(record))
    }

    /// Record an observation; a store error is logged (routing goes on without it).
    fn observe(&self, peer: &PublicKey, change: impl FnOnce(&mut PeerReputation, u64)) {
        if let Err(e) = self.update(peer, change) {
            tracing::warn!(%peer, "reputation not recorded: {e}");
        }
    }

    /// `peer` sent back the result of an execution this node gave it.
    pub fn success(&self, peer: &PublicKey) {
        self.observe(peer, |r, now| r.success(now));
    }

    /// `peer` answered a submit in `rtt_us` microseconds.
    pub fn round_trip(&self, peer: &PublicKey, rtt_us: f64) {
        self.observe(peer, |r, now| r.round_trip(rtt_us, now));
    }

    /// `peer` was unreachable or refused for a reason of its own.
    pub fn failure(&self, peer: &PublicKey) {
        self.observe(peer, |r, now| r.failure(now));
    }

    /// `peer` accepted an execution and sent no result before its deadline.
    pub fn timeout(&self, peer: &PublicKey) {
        self.observe(peer, |r, now| r.timeout(now));
    }

    /// A verification verdict on `peer`'s result: in the agreeing group, or not.
    pub fn record_verdict(&self, peer: &PublicKey, agreed: bool) {
        self.observe(peer, |r, now| r.verdict(agreed, now));
    }

    /// Ban `peer`: never chosen as a provider, its submits refused. Stored (call the
    /// store's persist to have it on disk).
    pub fn ban(
        &self,
        peer: &PublicKey,
        reason: Option<String>,
    ) -> Result<PeerReputation, ReputationError> {
        let reason = reason.filter(|r| !r.trim().is_empty());
        if let Some(r) = &reason
            && r.len() > MAX_BAN_REASON
        {
            return Err(ReputationError::ReasonTooLong(r.len()));
        }
        self.update(peer, |r, now| {
            r.ban = Some(Ban {
                reason,
                since_ms: now,
            });
            r.last_used_ms = now;
        })?
        .ok_or(ReputationError::Full)
    }

    /// Lift a ban (a peer that is not banned is left as it is).
    pub fn unban(&self, peer: &PublicKey) -> Result<PeerReputation, ReputationError> {
        self.update(peer, |r, _| r.ban = None)?
            .ok_or(ReputationError::Full)
    }

    pub fn ban_of(&self, peer: &PublicKey) -> Option<Ban> {
        self.lock().get(peer).and_then(|r| r.ban.clone())
    }

    pub fn is_banned(&self, peer: &PublicKey) -> bool {
        self.lock().get(peer).is_some_and(PeerReputation::banned)
    }

    pub fn get(&self, peer: &PublicKey) -> Option<PeerReputation> {
        self.lock().get(peer).cloned()
    }

    /// Every record, by key.
    pub fn list(&self) -> Vec<(PublicKey, PeerReputation)> {
        let mut out: Vec<_> = self.lock().iter().map(|(k, r)| (*k, r.clone())).collect();
        out.sort_by_key(|a| a.0);
        out
    }

    /// Where `peer` stands for provider choice at `now`.
    pub fn rank(&self, peer: &PublicKey, now: u64) -> Rank {
        match self.lock().get(peer) {
            Some(r) if r.banned() => Rank::Banned,
            Some(r) if r.distrusted(now) => Rank::Distrusted,
            _ => Rank::Clean,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}
