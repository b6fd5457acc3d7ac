//! ed25519 keys. One type serves accounts (people, Applications) and nodes: a node's key is
//! also its libp2p identity, so its PeerId and the signer of its messages are the same key.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not valid base58: {0}")]
    Base58(String),
    #[error("an ed25519 public key is 32 bytes, got {0}")]
    Length(usize),
    #[error("not a valid ed25519 public key")]
    InvalidPoint,
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// An ed25519 public key: an account or a node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).into_string()
    }

    pub fn from_base58(s: &str) -> Result<PublicKey, KeyError> {
        let bytes = bs58::decode(s.trim())
            .into_vec()
            .map_err(|e| KeyError::Base58(e.to_string()))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let key = PublicKey(arr);
        key.verifying_key()?;
        Ok(key)
    }

    pub(crate) fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidPoint)
    }

    /// The libp2p PeerId of a node whose key this is.
    pub fn peer_id(&self) -> Result<libp2p_identity::PeerId, KeyError> {
        let pk = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .map_err(|_| KeyError::InvalidPoint)?;
        Ok(libp2p_identity::PublicKey::from(pk).to_peer_id())
    }

    /// The ed25519 key a PeerId was made from (ed25519 PeerIds embed the key).
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Option<PublicKey> {
        let mh = peer.as_ref();
        // Identity multihash (code 0): the digest is the protobuf-encoded public key.
        if mh.code() != 0 {
            return None;
        }
        let pk = libp2p_identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
        let ed = pk.try_into_ed25519().ok()?;
        Some(PublicKey(ed.to_bytes()))
    }

    /// Verify a raw signature over `msg`.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(vk) = self.verifying_key() else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        vk.verify_strict(msg, &sig).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base58())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_base58(s)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_base58())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            PublicKey::from_base58(&s).map_err(serde::de::Error::custom)
        } else {
            Ok(PublicKey(<[u8; 32]>::deserialize(d)?))
        }
    }
}

/// A secret ed25519 key.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

/// Fill `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
}

impl Keypair {
    pub fn generate() -> Result<Keypair, KeyError> {
        let mut seed = [0u8; 32];
        random_bytes(&mut seed)?;
        Ok(Keypair::from_secret_bytes(seed))
    }

    pub fn from_secret_bytes(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte secret seed (to persist with 0600 permissions).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The same key as a libp2p identity, so the node's PeerId is derived from it.
    pub fn to_libp2p(&self) -> libp2p_identity::Keypair {
        libp2p_identity::Keypair::ed25519_from_bytes(self.secret_bytes())
            .expect("32 bytes are always a valid ed25519 secret")
    }

    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        self.to_libp2p().public().to_peer_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libp2p_identity_and_our_key_agree() {
        let k = Keypair::generate().unwrap();
        let peer = k.peer_id();
        assert_eq!(k.public().peer_id().unwrap(), peer);
        assert_eq!(PublicKey::from_peer_id(&peer), Some(k.public()));
        let restored = Keypair::from_secret_bytes(k.secret_bytes());
        assert_eq!(restored.peer_id(), peer);
    }

    #[test]
    fn signatures_verify_only_for_the_right_key_and_message() {
        let k = Keypair::generate().unwrap();
        let other = Keypair::generate().unwrap();
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig));
        assert!(!k.public().verify(b"hellO", &sig));
        assert!(!other.public().verify(b"hello", &sig));
        assert!(!k.public().verify(b"hello", &sig[..63]));
    }

    #[test]
    fn public_key_text_round_trip() {
        let k = Keypair::generate().unwrap().public();
        assert_eq!(PublicKey::from_base58(&k.to_string()).unwrap(), k);
        assert!(matches!(
            PublicKey::from_base58("abc"),
            Err(KeyError::Length(_))
        ));
    }
}
