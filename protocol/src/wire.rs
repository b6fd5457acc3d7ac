//! The wire codec: bincode 2 (serde) behind our own functions, with a hard size limit that
//! is checked before anything is allocated, a version prefix on every frame, and no panic
//! on any input.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of every frame format this build speaks. A frame starts with it (2 bytes, big
/// endian); a peer that sends another version gets a clear error, not a garbled decode.
pub const WIRE_VERSION: u16 = 1;

/// Largest work message (execution request or result, with inputs or outputs inline):
/// room for a 10 MiB payload with its JSON escapes and envelope. Was 4 MiB; raised for
/// issue 17's 10 MiB round trip. What bounds a node's memory against large messages is
/// not this limit alone: the node reads messages above [`LARGE_WORK_MESSAGE`] only within
/// a node-wide byte budget (node/src/network/codec.rs), and its API takes bodies above it
/// only a few at a time (docs/security.md).
pub const MAX_WORK_MESSAGE: usize = 16 * 1024 * 1024;
/// Work messages above this size are "large": read only within the node's budget.
pub const LARGE_WORK_MESSAGE: usize = 4 * 1024 * 1024;
/// Largest gossip message (announcement or event). Gossip is for small things only.
pub const MAX_GOSSIP_MESSAGE: usize = 64 * 1024;
/// Largest package chunk carried in one response.
pub const MAX_PACKAGE_CHUNK: usize = 1024 * 1024;
/// Largest package-protocol message (a chunk plus its framing, or a signed definition).
pub const MAX_PACKAGE_MESSAGE: usize = MAX_PACKAGE_CHUNK + 64 * 1024;

/// bincode's own cap on what one decode may claim (lengths of strings, vectors). It is a
/// second line of defence behind the per-message limits above: a length field can never
/// make the decoder allocate more than this.
const DECODE_CLAIM_LIMIT: usize = MAX_WORK_MESSAGE + 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_CLAIM_LIMIT>()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {size} bytes exceeds the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("message is empty or shorter than its header")]
    Truncated,
    #[error("unsupported wire version {got} (this node speaks version {WIRE_VERSION})")]
    UnsupportedVersion { got: u16 },
    #[error("could not decode message: {0}")]
    Decode(String),
    #[error("could not encode message: {0}")]
    Encode(String),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Encode a value (no version prefix; used inside signed envelopes and for storage).
pub fn encode<T: Serialize + ?Sized>(value: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: max,
        });
    }
    Ok(bytes)
}

/// Decode a value; the whole input must be consumed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: max,
        });
    }
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// Encode a top-level frame: version prefix, then the value.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let body = encode(value, max.saturating_sub(2))?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&WIRE_VERSION.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode a top-level frame, checking size and version first.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: max,
        });
    }
    if bytes.len() < 2 {
        return Err(WireError::Truncated);
    }
    let version = u16::from_be_bytes([bytes[0], bytes[1]]);
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { got: version });
    }
    decode(&bytes[2..], max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversize_is_refused_both_ways() {
        let big = vec![7u8; 2000];
        assert!(matches!(
            encode(&big, 1000),
            Err(WireError::TooLarge { .. })
        ));
        let bytes = encode(&big, 4000).unwrap();
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 1000),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // varint 0xFD + u64::MAX: a vector claiming 2^64-1 elements.
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Vec<u64>>(&bytes, 1024),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn version_and_trailing_bytes_are_checked() {
        let mut frame = encode_frame(&"hi".to_string(), 100).unwrap();
        assert_eq!(decode_frame::<String>(&frame, 100).unwrap(), "hi");
        frame.push(0);
        assert_eq!(
            decode_frame::<String>(&frame, 100),
            Err(WireError::TrailingBytes(1))
        );
        frame[1] = 9;
        assert_eq!(
            decode_frame::<String>(&frame, 100),
            Err(WireError::UnsupportedVersion { got: 9 })
        );
        assert_eq!(decode_frame::<String>(&[1], 100), Err(WireError::Truncated));
    }
}
