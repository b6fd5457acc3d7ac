//! Settlement behind a small trait: what this node owes a peer, paying it, and verifying
//! a payment received. The first method, `credits`, settles by signed cumulative totals
//! alone ("I have settled S µc in total to you"); a chain or a payment provider would be a
//! new type implementing [`SettlementMethod`] (attaching its proof), nothing else changes.

use super::records::key;
use super::{EntryKind, Ledger, LedgerError, abort, read_account, shift, tx_enc, write_account};
use mesg_protocol::economy::{CumulativeAck, MAX_SETTLEMENT_BYTES, Settlement};
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::{PublicKey, now_ms};

/// Validity of a settlement statement's signature.
const SETTLEMENT_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("nothing to settle: this node owes {peer} nothing it has not settled")]
    NothingOwed { peer: PublicKey },
    #[error("settlement refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A way of settling what nodes owe each other.
pub trait SettlementMethod: Send + Sync {
    /// The method's name, carried in every statement (`credits`).
    fn method(&self) -> &'static str;
    /// µc this node accepted owing `peer` and has not settled yet.
    fn balance(&self, ledger: &Ledger, peer: &PublicKey) -> Result<u64, SettleError>;
    /// Pay `peer` what is owed: booked here, and the signed statement to send it.
    fn pay(&self, ledger: &Ledger, peer: &PublicKey) -> Result<Signed<Settlement>, SettleError>;
    /// A statement received from a payer: verified and booked; the µc it added (0 for a
    /// statement already booked).
    fn verify_payment(
        &self,
        ledger: &Ledger,
        statement: &Signed<Settlement>,
    ) -> Result<u64, SettleError>;
}

/// Settlement by signed cumulative totals only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credits;

impl SettlementMethod for Credits {
    fn method(&self) -> &'static str {
        "credits"
    }

    fn balance(&self, ledger: &Ledger, peer: &PublicKey) -> Result<u64, SettleError> {
        let a = ledger.account(peer)?;
        Ok(a.accepted.saturating_sub(a.paid))
    }

    fn pay(&self, ledger: &Ledger, peer: &PublicKey) -> Result<Signed<Settlement>, SettleError> {
        let total = ledger.account(peer)?.accepted;
        let statement = Settlement {
            payer: ledger.node(),
            payee: *peer,
            total,
            method: self.method().to_string(),
            proof: Vec::new(),
        };
        statement.check_shape().map_err(SettleError::Refused)?;
        let signed = Signed::sign(
            &ledger.key,
            domains::SETTLEMENT,
            &statement,
            now_ms(),
            SETTLEMENT_TTL_MS,
            MAX_SETTLEMENT_BYTES,
        )
        .map_err(|e| SettleError::Refused(e.to_string()))?;
        let booked = ledger.transact(|t| {
            let mut account = read_account(t, peer)?;
            // Booked against what is accepted now (the statement's total).
            if total <= account.paid {
                return Ok(false);
            }
            let delta = total - account.paid;
            account.paid = total;
            account.balance = shift(account.balance, delta.into()).or_else(abort)?;
            write_account(t, peer, &account)?;
            t.insert(&key::peer(key::PAID, peer)[..], tx_enc(&signed)?)?;
            ledger.append(
                t,
                EntryKind::Settle,
                *peer,
                None,
                delta,
                format!("paid, {total} µc in total (credits)"),
            )?;
            Ok(true)
        });
        if !booked? {
            // Already settled: send the last statement again (it may have been lost).
            return match ledger
                .tree
                .get(key::peer(key::PAID, peer))
                .map_err(LedgerError::from)?
            {
                Some(v) if total > 0 => Ok(super::dec(&v)?),
                _ => Err(SettleError::NothingOwed { peer: *peer }),
            };
        }
        Ok(signed)
    }

    fn verify_payment(
        &self,
        ledger: &Ledger,
        statement: &Signed<Settlement>,
    ) -> Result<u64, SettleError> {
        let s = statement
            .verify(domains::SETTLEMENT, now_ms(), MAX_SETTLEMENT_BYTES)
            .map_err(|e| SettleError::Refused(e.to_string()))?;
        s.check_shape().map_err(SettleError::Refused)?;
        if s.payee != ledger.node() {
            return Err(SettleError::Refused(format!(
                "the statement pays {}, not this node",
                s.payee
            )));
        }
        if s.method != self.method() {
            return Err(SettleError::Refused(format!(
                "settlement method `{}` is not `{}`",
                s.method,
                self.method()
            )));
        }
        let payer = s.payer;
        let added = ledger.transact(|t| {
            let mut account = read_account(t, &payer)?;
            if s.total > account.acked {
                return abort(LedgerError::Invalid(format!(
                    "{} µc settled is more than the {} µc the payer acknowledged",
                    s.total, account.acked
                )));
            }
            if s.total <= account.received {
                return Ok(0);
            }
            let delta = s.total - account.received;
            account.received = s.total;
            account.balance = shift(account.balance, -i128::from(delta)).or_else(abort)?;
            write_account(t, &payer, &account)?;
            ledger.append(
                t,
                EntryKind::Settle,
                payer,
                None,
                delta,
                format!("received, {} µc in total (credits)", s.total),
            )?;
            Ok(delta)
        });
        match added {
            Ok(d) => Ok(d),
            Err(LedgerError::Invalid(m)) => Err(SettleError::Refused(m)),
            Err(e) => Err(e.into()),
        }
    }
}

impl Ledger {
    /// Record a requester node's acknowledgement (verified; see `apply_ack_in`).
    pub fn record_ack(&self, signed: &Signed<CumulativeAck>) -> Result<(), LedgerError> {
        let ack = self.check_ack(signed, &signed.signer())?;
        self.transact(|t| self.apply_ack_in(t, &ack, signed))
    }
}
