//! Who may give a service its name: a publisher's signed claim that binds a sid to one
//! service hash.
//!
//! A sid in a definition is just text: any node can deploy a different package under the
//! same sid and announce it. A claim makes the name attributable: the publisher (a CLI
//! account, or the node a service was deployed on without an account) signs
//! `{sid, service_hash}`, the claim travels with announcements, and every node verifies it
//! before a sid can resolve to that hash. Nodes then bind each sid to one publisher (pinned,
//! configured or first seen), so a stranger can announce the name but never take it over.
//!
//! Claims do not expire (a name binding is not a request); they are small, versioned and
//! size-limited, and they are verified on their own bytes, never trusted from a peer.

use crate::definition::is_valid_sid;
use crate::hash::ServiceHash;
use crate::keys::{Keypair, PublicKey};
use crate::value::Bytes;
use crate::wire::{self, WireError};
use serde::{Deserialize, Serialize};

/// Version of the claim format this build signs and verifies.
pub const CLAIM_VERSION: u16 = 1;
/// Largest encoded claim (without its signature). A claim holds a sid of at most
/// [`crate::definition::MAX_SID_LEN`] characters, a hash, a key and a time: about 150 bytes.
/// The cap keeps an announcement of many services inside the gossip limit.
pub const MAX_CLAIM_BYTES: usize = 512;
/// Clock skew tolerated on a claim's `created_at`: a claim from further in the future
/// could otherwise win "the latest claim of this publisher" for years.
pub const MAX_CLAIM_SKEW_MS: u64 = 10 * 60 * 1000;
const CLAIM_CONTEXT: &[u8] = b"mesg-publisher-claim-v1\0";

/// "`publisher` names `service_hash` `sid`", as the publisher signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublisherClaim {
    pub version: u16,
    pub sid: String,
    pub service_hash: ServiceHash,
    pub publisher: PublicKey,
    /// Unix milliseconds when signed: among one publisher's services with the same sid,
    /// the latest claim is the current version.
    pub created_at: u64,
}

/// A claim and the publisher's ed25519 signature over its encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedClaim {
    pub claim: PublisherClaim,
    pub signature: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("unsupported publisher claim version {0} (this node speaks {CLAIM_VERSION})")]
    Version(u16),
    #[error("publisher claim names an invalid sid `{0}`")]
    InvalidSid(String),
    #[error("publisher claim signature does not verify for publisher {0}")]
    BadSignature(PublicKey),
    #[error("publisher claim is dated {created_at}, in the future (now {now})")]
    Future { created_at: u64, now: u64 },
    #[error("publisher claim is for service {claimed}, not {actual}")]
    WrongService {
        claimed: ServiceHash,
        actual: ServiceHash,
    },
    #[error("publisher claim names sid `{claimed}`, but the definition's sid is `{actual}`")]
    WrongSid { claimed: String, actual: String },
    #[error("publisher claim: {0}")]
    Encoding(#[from] WireError),
    #[error("publisher claim is not valid hex: {0}")]
    Hex(String),
}

fn signing_message(claim: &PublisherClaim) -> Result<Vec<u8>, WireError> {
    let mut msg = CLAIM_CONTEXT.to_vec();
    msg.extend_from_slice(&wire::encode(claim, MAX_CLAIM_BYTES)?);
    Ok(msg)
}

impl SignedClaim {
    /// Sign "`key` names `service_hash` `sid`" at `created_at`.
    pub fn sign(
        key: &Keypair,
        sid: &str,
        service_hash: ServiceHash,
        created_at: u64,
    ) -> Result<SignedClaim, ClaimError> {
        if !is_valid_sid(sid) {
            return Err(ClaimError::InvalidSid(sid.to_string()));
        }
        let claim = PublisherClaim {
            version: CLAIM_VERSION,
            sid: sid.to_string(),
            service_hash,
            publisher: key.public(),
            created_at,
        };
        let signature = key.sign(&signing_message(&claim)?);
        Ok(SignedClaim {
            claim,
            signature: Bytes(signature.to_vec()),
        })
    }

    /// Check version, sid, date and signature; returns the claim.
    pub fn verify(&self, now_ms: u64) -> Result<&PublisherClaim, ClaimError> {
        let c = &self.claim;
        if c.version != CLAIM_VERSION {
            return Err(ClaimError::Version(c.version));
        }
        if !is_valid_sid(&c.sid) {
            return Err(ClaimError::InvalidSid(c.sid.clone()));
        }
        if c.created_at > now_ms.saturating_add(MAX_CLAIM_SKEW_MS) {
            return Err(ClaimError::Future {
                created_at: c.created_at,
                now: now_ms,
            });
        }
        if !c.publisher.verify(&signing_message(c)?, &self.signature.0) {
            return Err(ClaimError::BadSignature(c.publisher));
        }
        Ok(c)
    }

    /// Verify, and check that the claim names this service under this sid.
    pub fn verify_for(
        &self,
        service_hash: &ServiceHash,
        sid: &str,
        now_ms: u64,
    ) -> Result<&PublisherClaim, ClaimError> {
        let c = self.verify(now_ms)?;
        if &c.service_hash != service_hash {
            return Err(ClaimError::WrongService {
                claimed: c.service_hash,
                actual: *service_hash,
            });
        }
        if c.sid != sid {
            return Err(ClaimError::WrongSid {
                claimed: c.sid.clone(),
                actual: sid.to_string(),
            });
        }
        Ok(c)
    }

    /// The claim as hex of its wire encoding (for an HTTP header).
    pub fn to_hex(&self) -> Result<String, ClaimError> {
        Ok(hex::encode(wire::encode(self, MAX_CLAIM_BYTES + 128)?))
    }

    /// Parse [`SignedClaim::to_hex`]; size-limited before decoding. Not verified.
    pub fn from_hex(s: &str) -> Result<SignedClaim, ClaimError> {
        if s.len() > 2 * (MAX_CLAIM_BYTES + 128) {
            return Err(WireError::TooLarge {
                size: s.len() / 2,
                limit: MAX_CLAIM_BYTES + 128,
            }
            .into());
        }
        let bytes = hex::decode(s.trim()).map_err(|e| ClaimError::Hex(e.to_string()))?;
        Ok(wire::decode(&bytes, MAX_CLAIM_BYTES + 128)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash32;

    fn hash(b: u8) -> ServiceHash {
        ServiceHash(Hash32::sha256(&[b]))
    }

    #[test]
    fn a_claim_verifies_and_any_change_breaks_it() {
        let key = Keypair::generate().unwrap();
        let c = SignedClaim::sign(&key, "echo", hash(1), 1000).unwrap();
        assert_eq!(c.verify(1000).unwrap().publisher, key.public());
        assert!(c.verify_for(&hash(1), "echo", 1000).is_ok());
        assert!(matches!(
            c.verify_for(&hash(2), "echo", 1000),
            Err(ClaimError::WrongService { .. })
        ));
        assert!(matches!(
            c.verify_for(&hash(1), "kv", 1000),
            Err(ClaimError::WrongSid { .. })
        ));
        // Another sid, hash or publisher under the same signature: refused.
        let mut other = c.clone();
        other.claim.sid = "kv".into();
        assert!(matches!(
            other.verify(1000),
            Err(ClaimError::BadSignature(_))
        ));
        let mut other = c.clone();
        other.claim.service_hash = hash(2);
        assert!(matches!(
            other.verify(1000),
            Err(ClaimError::BadSignature(_))
        ));
        let mut other = c.clone();
        other.claim.publisher = Keypair::generate().unwrap().public();
        assert!(matches!(
            other.verify(1000),
            Err(ClaimError::BadSignature(_))
        ));
        let mut other = c.clone();
        other.claim.version = 2;
        assert_eq!(other.verify(1000), Err(ClaimError::Version(2)));
        // From the far future: refused.
        let later = SignedClaim::sign(&key, "echo", hash(1), 1001 + MAX_CLAIM_SKEW_MS).unwrap();
        assert!(matches!(later.verify(1000), Err(ClaimError::Future { .. })));
        assert!(later.verify(1001).is_ok());
    }

    #[test]
    fn hex_round_trip_and_limits() {
        let key = Keypair::generate().unwrap();
        let c = SignedClaim::sign(&key, "echo", hash(1), 5).unwrap();
        assert_eq!(SignedClaim::from_hex(&c.to_hex().unwrap()).unwrap(), c);
        assert!(matches!(
            SignedClaim::from_hex("zz"),
            Err(ClaimError::Hex(_))
        ));
        assert!(matches!(
            SignedClaim::from_hex(&"00".repeat(4096)),
            Err(ClaimError::Encoding(WireError::TooLarge { .. }))
        ));
        assert!(matches!(
            SignedClaim::sign(&key, "Not A Sid", hash(1), 5),
            Err(ClaimError::InvalidSid(_))
        ));
    }
}
