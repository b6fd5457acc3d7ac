//! Serde helpers for values that must look natural in JSON and still encode in bincode,
//! which cannot carry self-describing data such as `serde_json::Value`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A JSON value: itself in JSON, its compact text in binary encodings.
#[derive(Clone, PartialEq, Default)]
pub struct Json(pub serde_json::Value);

impl Json {
    pub fn null() -> Json {
        Json(serde_json::Value::Null)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Json {
        Json(v)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.serialize(s)
        } else {
            s.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Ok(Json(serde_json::Value::deserialize(d)?))
        } else {
            let text = String::deserialize(d)?;
            // serde_json limits nesting to 128 levels, so hostile text cannot blow the stack.
            serde_json::from_str(&text)
                .map(Json)
                .map_err(serde::de::Error::custom)
        }
    }
}

/// Bytes: base64 in JSON, raw in binary encodings.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

use base64::Engine as _;

pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("invalid base64: {e}"))
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64_encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            base64_decode(&text)
                .map(Bytes)
                .map_err(serde::de::Error::custom)
        } else {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_bytes_are_natural_in_json_and_compact_in_bincode() {
        let v = (
            Json(serde_json::json!({"a": [1, "x"]})),
            Bytes(vec![1, 2, 3]),
        );
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"[{"a":[1,"x"]},"AQID"]"#);
        let back: (Json, Bytes) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        let bin = crate::wire::encode(&v, 1024).unwrap();
        let back: (Json, Bytes) = crate::wire::decode(&bin, 1024).unwrap();
        assert_eq!(back, v);
    }
}
