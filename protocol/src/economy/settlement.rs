//! Settlement statements: the payer's signed "I have settled S µc in total to you". Like
//! the cumulative acknowledgement, only the latest counts and it only grows, so a lost
//! or repeated statement does no harm. The `credits` method settles by these alone; a
//! chain or a payment provider would carry a proof of payment in `proof`.

use crate::envelope::Claims;
use crate::keys::PublicKey;
use serde::{Deserialize, Serialize};

/// Largest encoded settlement statement (two keys, a total, a method name and a proof).
pub const MAX_SETTLEMENT_BYTES: usize = 2048;
/// Longest settlement method name.
pub const MAX_METHOD_LEN: usize = 32;
/// Longest payment proof a method may attach.
pub const MAX_PROOF_LEN: usize = 1024;

/// Signed by the payer node ([`crate::types::domains::SETTLEMENT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub payer: PublicKey,
    pub payee: PublicKey,
    /// µc settled to the payee in total, this settlement included (only grows).
    pub total: u64,
    /// The settlement method, e.g. `credits`.
    pub method: String,
    /// What the method needs to verify the payment (empty for `credits`).
    pub proof: Vec<u8>,
}

impl Claims for Settlement {
    fn claimed_signer(&self) -> PublicKey {
        self.payer
    }
}

impl Settlement {
    /// Bounds any method relies on, checked before anything else.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.method.is_empty() || self.method.len() > MAX_METHOD_LEN {
            return Err(format!(
                "settlement method name must be 1 to {MAX_METHOD_LEN} bytes"
            ));
        }
        if self.proof.len() > MAX_PROOF_LEN {
            return Err(format!(
                "settlement proof of {} bytes exceeds {MAX_PROOF_LEN}",
                self.proof.len()
            ));
        }
        if self.payer == self.payee {
            return Err("a node cannot settle with itself".into());
        }
        Ok(())
    }
}
