//! Settlements between nodes (the `credits` method): the payer books and signs its
//! cumulative total and sends it with its latest acknowledgement; the payee verifies
//! both (signed by the payer, not more than the payer acknowledged) and books it.

use super::{Router, reject};
use crate::engine::error::EngineError;
use crate::ledger::{Credits, SettleError, SettlementMethod};
use libp2p::PeerId;
use mesg_protocol::PublicKey;
use mesg_protocol::economy::{CumulativeAck, Settlement};
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{RejectCode, WorkRequest, WorkResponse};

impl Router {
    /// Settle what this node accepted owing `peer`: booked here, sent to the peer, which
    /// books it too. Returns the total settled.
    pub async fn settle(&self, peer: &PublicKey) -> Result<u64, EngineError> {
        let method = Credits;
        let statement = method.pay(&self.books, peer)?;
        self.store.persist().await?;
        let total = statement
            .payload_unverified(mesg_protocol::economy::MAX_SETTLEMENT_BYTES)
            .map(|s| s.total)
            .unwrap_or_default();
        let net = self
            .network()
            .cloned()
            .ok_or_else(|| EngineError::Network("the network is not started".into()))?;
        let target = peer
            .peer_id()
            .map_err(|e| EngineError::BadRequest(format!("peer: {e}")))?;
        let ack = self.books.latest_ack_to(peer)?;
        match net
            .send_work(
                target,
                WorkRequest::Settle {
                    settlement: statement,
                    ack,
                },
            )
            .await
        {
            Ok(WorkResponse::Accepted) => Ok(total),
            Ok(WorkResponse::Rejected(r)) => {
                Err(SettleError::Refused(format!("{peer} refused it: {}", r.message)).into())
            }
            Ok(other) => Err(EngineError::Network(format!(
                "unexpected answer to a settlement: {other:?}"
            ))),
            // Booked here: the statement is sent again by the next `settle`.
            Err(e) => Err(EngineError::Network(format!(
                "settled here ({total} µc in total) but {peer} was not reached: {e}; run settle again"
            ))),
        }
    }

    /// Payee: a settlement statement from a peer.
    pub(super) async fn on_settle(
        &self,
        peer: PeerId,
        settlement: Signed<Settlement>,
        ack: Option<Signed<CumulativeAck>>,
    ) -> WorkResponse {
        if settlement.signer().peer_id().ok() != Some(peer) {
            return reject(
                RejectCode::WrongNode,
                "the settlement is not signed by the node that sent it",
            );
        }
        if let Some(ack) = ack
            && let Err(e) = self.books.record_ack(&ack)
        {
            return reject(RejectCode::BadSignature, e.to_string());
        }
        match Credits.verify_payment(&self.books, &settlement) {
            // Durable before the payer hears it was taken.
            Ok(_) => match self.store.persist().await {
                Ok(()) => WorkResponse::Accepted,
                Err(e) => reject(RejectCode::Internal, e.to_string()),
            },
            Err(SettleError::Ledger(e)) => reject(RejectCode::Internal, e.to_string()),
            Err(e) => reject(RejectCode::Malformed, e.to_string()),
        }
    }
}
