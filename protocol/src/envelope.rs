//! Signed envelopes: `{domain, signer, nonce, issued_at, expires_at, payload}` + ed25519.
//!
//! The signature covers the encoded header and the payload *bytes*: we sign bytes, never a
//! structure re-encoded on the other side, so an envelope verifies exactly as it was sent.
//! Verification checks the version, the domain (a request can never be replayed as a
//! result), the expiry window, the signature, and that the signer is the identity the
//! payload claims (see [`Claims`]).

use crate::hash::Hash32;
use crate::keys::{Keypair, PublicKey, random_bytes};
use crate::value::Bytes;
use crate::wire::{self, WireError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;

pub const ENVELOPE_VERSION: u16 = 1;
/// Clock skew tolerated between signer and verifier: an envelope's `issued_at` and a
/// request's `created_at` may be this far ahead of the verifier's clock, no further (a
/// time far ahead would keep a request alive, and its deadline away, for years). One
/// minute covers clocks kept by NTP with a wide margin.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;
/// Longest validity of any envelope.
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
const SIGNING_CONTEXT: &[u8] = b"mesg-envelope-v1\0";

/// The identity a payload says signed it. Verification fails when the actual signer differs.
pub trait Claims {
    fn claimed_signer(&self) -> PublicKey;
}

/// A random 16-byte nonce; with the signer it identifies one envelope for replay protection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    pub fn random() -> Nonce {
        let mut b = [0u8; 16];
        // An OS without a random source cannot run a node at all; key generation failed first.
        random_bytes(&mut b).expect("OS random source");
        Nonce(b)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", hex::encode(self.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvelopeHeader {
    #[cfg_attr(feature = "openapi", schema(maximum = 65535))]
    pub version: u16,
    pub domain: String,
    pub signer: PublicKey,
    pub nonce: Nonce,
    /// Unix milliseconds.
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub issued_at: u64,
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("unsupported envelope version {0}")]
    Version(u16),
    #[error("wrong domain: expected `{expected}`, got `{got}`")]
    Domain { expected: String, got: String },
    #[error("signature does not verify for signer {0}")]
    BadSignature(PublicKey),
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    #[error(
        "issued in the future ({issued_at}, now {now}); at most {MAX_CLOCK_SKEW_MS} ms of clock skew is tolerated"
    )]
    NotYetValid { issued_at: u64, now: u64 },
    #[error("validity window is invalid or longer than allowed")]
    BadWindow,
    #[error("signed by {actual}, but the payload claims {claimed}")]
    WrongSigner {
        claimed: PublicKey,
        actual: PublicKey,
    },
    #[error("payload: {0}")]
    Payload(#[from] WireError),
}

/// A payload of type `T`, signed. `T` is only decoded after the signature checks out.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T> {
    pub header: EnvelopeHeader,
    pub payload: Bytes,
    pub signature: Bytes,
    #[serde(skip)]
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            header: self.header.clone(),
            payload: self.payload.clone(),
            signature: self.signature.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header
            && self.payload == other.payload
            && self.signature == other.signature
    }
}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("domain", &self.header.domain)
            .field("signer", &self.header.signer)
            .field("payload", &self.payload)
            .finish()
    }
}

fn signing_message(header: &EnvelopeHeader, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut msg = SIGNING_CONTEXT.to_vec();
    msg.extend_from_slice(&wire::encode(header, 4096)?);
    msg.extend_from_slice(payload);
    Ok(msg)
}

impl<T: Serialize + DeserializeOwned + Claims> Signed<T> {
    /// Sign `payload` under `domain`, valid from `now_ms` for `ttl_ms`.
    pub fn sign(
        key: &Keypair,
        domain: &str,
        payload: &T,
        now_ms: u64,
        ttl_ms: u64,
        max_payload: usize,
    ) -> Result<Signed<T>, WireError> {
        let header = EnvelopeHeader {
            version: ENVELOPE_VERSION,
            domain: domain.to_string(),
            signer: key.public(),
            nonce: Nonce::random(),
            issued_at: now_ms,
            expires_at: now_ms.saturating_add(ttl_ms.min(MAX_TTL_MS)),
        };
        let payload = wire::encode(payload, max_payload)?;
        let signature = key.sign(&signing_message(&header, &payload)?);
        Ok(Signed {
            header,
            payload: Bytes(payload),
            signature: Bytes(signature.to_vec()),
            _payload: PhantomData,
        })
    }

    /// Check everything and return the payload.
    pub fn verify(
        &self,
        domain: &str,
        now_ms: u64,
        max_payload: usize,
    ) -> Result<T, EnvelopeError> {
        let payload = self.verify_signature(domain, now_ms, max_payload)?;
        let claimed = payload.claimed_signer();
        if claimed != self.header.signer {
            return Err(EnvelopeError::WrongSigner {
                claimed,
                actual: self.header.signer,
            });
        }
        Ok(payload)
    }
}

impl<T: DeserializeOwned> Signed<T> {
    /// Check version, domain, window and signature, and decode the payload; does not check
    /// the claimed signer (see [`Signed::verify`]).
    pub fn verify_signature(
        &self,
        domain: &str,
        now_ms: u64,
        max_payload: usize,
    ) -> Result<T, EnvelopeError> {
        self.check_header(domain, now_ms)?;
        let msg = signing_message(&self.header, &self.payload.0)?;
        if !self.header.signer.verify(&msg, &self.signature.0) {
            return Err(EnvelopeError::BadSignature(self.header.signer));
        }
        Ok(wire::decode(&self.payload.0, max_payload)?)
    }

    /// [`Signed::verify_signature`] for an envelope whose signature was checked already,
    /// with others, by [`Signed::signatures_hold`]: version, domain and window, then the
    /// payload.
    pub fn verify_checked_signature(
        &self,
        domain: &str,
        now_ms: u64,
        max_payload: usize,
    ) -> Result<T, EnvelopeError> {
        self.check_header(domain, now_ms)?;
        Ok(wire::decode(&self.payload.0, max_payload)?)
    }

    /// Whether every envelope of `batch` is signed by its signer, checked in one ed25519
    /// batch verification: for a batch of tens (a requester's receipts) about half the
    /// cost of checking each apart, and each distinct signer's key is decoded once. The
    /// same equation as a single check; unlike [`Signed::verify_signature`]'s strict check
    /// it does not refuse a signature whose `R` is of small order, which only its own
    /// signer can make (no one else can make a signature hold). False when any fails, a
    /// signer's key is weak or malformed, or the batch is empty: then check each apart
    /// to learn which. Headers are not checked here.
    pub fn signatures_hold(batch: &[&Signed<T>]) -> bool {
        if batch.is_empty() {
            return false;
        }
        let mut keys: Vec<(PublicKey, ed25519_dalek::VerifyingKey)> = Vec::new();
        let mut verifying = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        let mut signatures = Vec::with_capacity(batch.len());
        for signed in batch {
            let signer = signed.header.signer;
            let key = match keys.iter().find(|(k, _)| *k == signer) {
                Some((_, vk)) => *vk,
                None => match signer.verifying_key() {
                    Ok(vk) if !vk.is_weak() => {
                        keys.push((signer, vk));
                        vk
                    }
                    _ => return false,
                },
            };
            let Ok(signature) = ed25519_dalek::Signature::from_slice(&signed.signature.0) else {
                return false;
            };
            let Ok(msg) = signing_message(&signed.header, &signed.payload.0) else {
                return false;
            };
            verifying.push(key);
            messages.push(msg);
            signatures.push(signature);
        }
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &verifying).is_ok()
    }

    /// Version, domain and validity window.
    fn check_header(&self, domain: &str, now_ms: u64) -> Result<(), EnvelopeError> {
        let h = &self.header;
        if h.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(h.version));
        }
        if h.domain != domain {
            return Err(EnvelopeError::Domain {
                expected: domain.to_string(),
                got: h.domain.clone(),
            });
        }
        if h.expires_at <= h.issued_at || h.expires_at - h.issued_at > MAX_TTL_MS {
            return Err(EnvelopeError::BadWindow);
        }
        if h.issued_at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(EnvelopeError::NotYetValid {
                issued_at: h.issued_at,
                now: now_ms,
            });
        }
        if now_ms > h.expires_at {
            return Err(EnvelopeError::Expired {
                expires_at: h.expires_at,
                now: now_ms,
            });
        }
        Ok(())
    }

    /// Decode the payload without verifying (for data this node verified before storing).
    pub fn payload_unverified(&self, max_payload: usize) -> Result<T, WireError> {
        wire::decode(&self.payload.0, max_payload)
    }

    /// A digest identifying this exact envelope (header, payload and signature).
    pub fn digest(&self) -> Hash32 {
        let header = wire::encode(&self.header, 4096).unwrap_or_default();
        Hash32::domain(
            "mesg/envelope/1",
            &[&header, &self.payload.0, &self.signature.0],
        )
    }

    pub fn signer(&self) -> PublicKey {
        self.header.signer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Note {
        author: PublicKey,
        text: String,
    }

    impl Claims for Note {
        fn claimed_signer(&self) -> PublicKey {
            self.author
        }
    }

    const NOW: u64 = 1_800_000_000_000;

    fn signed(key: &Keypair, author: PublicKey) -> Signed<Note> {
        let note = Note {
            author,
            text: "hello".into(),
        };
        Signed::sign(key, "test/note/1", &note, NOW, 10_000, 1024).unwrap()
    }

    #[test]
    fn a_good_envelope_verifies() {
        let k = Keypair::generate().unwrap();
        let s = signed(&k, k.public());
        let note = s.verify("test/note/1", NOW + 5, 1024).unwrap();
        assert_eq!(note.text, "hello");
    }

    #[test]
    fn expiry_future_domain_and_signer_are_checked() {
        let k = Keypair::generate().unwrap();
        let s = signed(&k, k.public());
        assert!(matches!(
            s.verify("test/note/1", NOW + 10_001, 1024),
            Err(EnvelopeError::Expired { .. })
        ));
        assert!(matches!(
            s.verify("test/note/1", NOW - MAX_CLOCK_SKEW_MS - 1, 1024),
            Err(EnvelopeError::NotYetValid { .. })
        ));
        assert!(matches!(
            s.verify("test/other/1", NOW, 1024),
            Err(EnvelopeError::Domain { .. })
        ));
        let other = Keypair::generate().unwrap();
        let forged = signed(&other, k.public());
        assert!(matches!(
            forged.verify("test/note/1", NOW, 1024),
            Err(EnvelopeError::WrongSigner { .. })
        ));
    }

    #[test]
    fn changing_the_signer_field_breaks_the_signature() {
        let k = Keypair::generate().unwrap();
        let other = Keypair::generate().unwrap();
        let mut s = signed(&k, k.public());
        s.header.signer = other.public();
        assert!(matches!(
            s.verify("test/note/1", NOW, 1024),
            Err(EnvelopeError::BadSignature(_))
        ));
    }

    #[test]
    fn json_round_trip_keeps_the_signature_valid() {
        let k = Keypair::generate().unwrap();
        let s = signed(&k, k.public());
        let json = serde_json::to_string(&s).unwrap();
        let back: Signed<Note> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        back.verify("test/note/1", NOW, 1024).unwrap();
    }

    #[test]
    fn a_batch_holds_only_when_every_signature_does() {
        let (a, b) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
        let notes: Vec<_> = (0..5)
            .map(|n| signed(if n % 2 == 0 { &a } else { &b }, a.public()))
            .collect();
        let all: Vec<&Signed<Note>> = notes.iter().collect();
        assert!(Signed::signatures_hold(&all));
        assert!(!Signed::<Note>::signatures_hold(&[]));

        // One signature swapped for another envelope's, one payload changed after
        // signing, one signer named in place of the real one: each fails the batch.
        let mut swapped = notes[1].clone();
        swapped.signature = notes[3].signature.clone();
        let mut changed = notes[2].clone();
        changed.payload.0[0] ^= 1;
        let mut renamed = notes[0].clone();
        renamed.header.signer = b.public();
        for bad in [&swapped, &changed, &renamed] {
            let mut batch = all.clone();
            batch[2] = bad;
            assert!(!Signed::signatures_hold(&batch));
            assert!(bad.verify_signature("test/note/1", NOW, 1024).is_err());
        }
    }

    #[test]
    fn a_signature_checked_in_a_batch_still_has_its_header_checked() {
        let k = Keypair::generate().unwrap();
        let s = signed(&k, k.public());
        assert!(Signed::signatures_hold(&[&s]));
        assert_eq!(
            s.verify_checked_signature("test/note/1", NOW, 1024)
                .unwrap()
                .text,
            "hello"
        );
        assert!(matches!(
            s.verify_checked_signature("test/note/1", NOW + 10_001, 1024),
            Err(EnvelopeError::Expired { .. })
        ));
        assert!(matches!(
            s.verify_checked_signature("test/other/1", NOW, 1024),
            Err(EnvelopeError::Domain { .. })
        ));
    }
}
