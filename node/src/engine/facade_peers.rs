//! The engine's surface for peers: their reputation as this node keeps it, and bans
//! (`mesg peers ban`, `PUT/DELETE /v1/peers/{key}/ban`).

use super::reputation::{PeerReputation, ReputationError, sample_rate};
use super::{Engine, EngineError};
use crate::store::StoreError;
use mesg_api_types::PeerReputationView;
use mesg_protocol::PublicKey;

impl Engine {
    /// Every peer this node keeps a reputation of (used as a provider, or banned).
    pub fn peer_reputations(&self) -> Vec<PeerReputationView> {
        self.parts
            .router
            .reputation()
            .list()
            .into_iter()
            .map(|(k, r)| reputation_view(k, &r))
            .collect()
    }

    /// Ban `peer`: never chosen as a provider, its submits refused; on disk when this
    /// returns.
    pub async fn ban_peer(
        &self,
        peer: &PublicKey,
        reason: Option<String>,
    ) -> Result<PeerReputationView, EngineError> {
        let r = self
            .parts
            .router
            .reputation()
            .ban(peer, reason)
            .map_err(engine_error)?;
        self.store().persist().await?;
        tracing::info!(%peer, "peer banned");
        Ok(reputation_view(*peer, &r))
    }

    /// Lift a ban; on disk when this returns.
    pub async fn unban_peer(&self, peer: &PublicKey) -> Result<PeerReputationView, EngineError> {
        let r = self
            .parts
            .router
            .reputation()
            .unban(peer)
            .map_err(engine_error)?;
        self.store().persist().await?;
        tracing::info!(%peer, "peer unbanned");
        Ok(reputation_view(*peer, &r))
    }
}

fn engine_error(e: ReputationError) -> EngineError {
    match e {
        ReputationError::Store(e) => EngineError::Store(StoreError::Db(e)),
        ReputationError::Record(e) => EngineError::Store(StoreError::Encode(e.to_string())),
        e @ ReputationError::ReasonTooLong(_) => EngineError::BadRequest(e.to_string()),
        e @ ReputationError::Full => EngineError::Conflict(e.to_string()),
    }
}

pub(crate) fn reputation_view(node: PublicKey, r: &PeerReputation) -> PeerReputationView {
    PeerReputationView {
        node,
        peer_id: node.peer_id().map(|p| p.to_string()).unwrap_or_default(),
        successes: r.successes,
        failures: r.failures,
        timeouts: r.timeouts,
        agreed: r.agreed,
        disagreed: r.disagreed,
        consecutive_agreed: r.consecutive_agreed,
        rtt_us: r.rtt_us,
        rtt_dev_us: r.rtt_dev_us,
        last_disagreement_at: r.last_disagreement_ms,
        last_timeout_at: r.last_timeout_ms,
        distrusted: r.distrusted(mesg_protocol::now_ms()),
        sample_rate: sample_rate(r),
        banned: r.banned(),
        ban_reason: r.ban.as_ref().and_then(|b| b.reason.clone()),
        banned_at: r.ban.as_ref().map(|b| b.since_ms),
    }
}
