//! Content hashes: 32-byte sha256 digests shown in base58.
//!
//! Every hash is computed over a domain-separated input (`mesg/<kind>/<version>\0...`), so a
//! hash of one kind can never be confused with another kind computed over the same bytes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    #[error("not valid base58: {0}")]
    Base58(String),
    #[error("a hash is 32 bytes, this one decodes to {0} bytes")]
    Length(usize),
}

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// Hash `parts` under `domain`: each part is length-prefixed so concatenations are unambiguous.
    pub fn domain(domain: &str, parts: &[&[u8]]) -> Hash32 {
        let mut h = Sha256::new();
        h.update(domain.as_bytes());
        h.update([0u8]);
        for part in parts {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Hash32(h.finalize().into())
    }

    /// Plain sha256 of bytes (content of one file, a whole message).
    pub fn sha256(bytes: &[u8]) -> Hash32 {
        Hash32(Sha256::digest(bytes).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).into_string()
    }

    pub fn from_base58(s: &str) -> Result<Hash32, HashParseError> {
        let bytes = bs58::decode(s.trim())
            .into_vec()
            .map_err(|e| HashParseError::Base58(e.to_string()))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| HashParseError::Length(bytes.len()))?;
        Ok(Hash32(arr))
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_base58())
    }
}

impl FromStr for Hash32 {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash32::from_base58(s)
    }
}

/// Base58 text in human-readable formats (JSON), raw bytes in binary ones (bincode).
impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_base58())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Hash32::from_base58(&s).map_err(serde::de::Error::custom)
        } else {
            Ok(Hash32(<[u8; 32]>::deserialize(d)?))
        }
    }
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Hash32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = HashParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($name(Hash32::from_base58(s)?))
            }
        }

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }
        }
    };
}

hash_newtype!(
    /// Identity of a service: its canonical definition plus the content hash of its package.
    ServiceHash
);
hash_newtype!(
    /// Content hash of a service package (the build context), see [`crate::package`].
    PackageHash
);
hash_newtype!(
    /// Identity of an instance: a service started with a given environment.
    InstanceHash
);
hash_newtype!(
    /// Hash of an environment override set.
    EnvHash
);

impl EnvHash {
    /// Order-independent hash of `KEY=VALUE` overrides.
    pub fn of<'a>(env: impl IntoIterator<Item = (&'a str, &'a str)>) -> EnvHash {
        let mut pairs: Vec<(&str, &str)> = env.into_iter().collect();
        pairs.sort();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(pairs.len() * 2);
        for (k, v) in &pairs {
            parts.push(k.as_bytes());
            parts.push(v.as_bytes());
        }
        EnvHash(Hash32::domain("mesg/env/1", &parts))
    }
}

impl InstanceHash {
    /// `InstanceHash = H(service hash, env hash)`.
    pub fn of(service: &ServiceHash, env: &EnvHash) -> InstanceHash {
        InstanceHash(Hash32::domain(
            "mesg/instance/1",
            &[service.as_bytes(), env.as_bytes()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_round_trip_and_errors() {
        let h = Hash32::sha256(b"mesg");
        assert_eq!(Hash32::from_base58(&h.to_base58()).unwrap(), h);
        assert!(matches!(
            Hash32::from_base58("0OIl"),
            Err(HashParseError::Base58(_))
        ));
        assert_eq!(
            Hash32::from_base58("3mJr7AoUXx2Wqd"),
            Err(HashParseError::Length(10))
        );
    }

    #[test]
    fn env_hash_ignores_order_but_not_content() {
        let a = EnvHash::of([("A", "1"), ("B", "2")]);
        let b = EnvHash::of([("B", "2"), ("A", "1")]);
        let c = EnvHash::of([("A", "12")]);
        let d = EnvHash::of([("A1", "2")]);
        assert_eq!(a, b);
        assert_ne!(c, d, "length prefixes keep A=12 and A1=2 apart");
    }

    #[test]
    fn json_is_base58_and_binary_is_raw() {
        let h = ServiceHash(Hash32::sha256(b"x"));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h));
        let back: ServiceHash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }
}
