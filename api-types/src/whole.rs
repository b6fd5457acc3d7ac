//! Integers in request bodies, read the way JSON Schema reads them.
//!
//! For JSON Schema an `integer` is any number with no fractional part, so `5.0` is a valid
//! `integer` and clients (and fuzzers reading the OpenAPI document) may send it. serde_json
//! refuses `5.0` for a `u64`; these deserializers accept a whole number written either way
//! and still refuse `5.5`, negatives for unsigned fields and values out of range, with the
//! field's usual error.

use serde::Deserialize;
use serde::de::{Deserializer, Error, Unexpected};

fn whole<E: Error>(n: serde_json::Number, min: i128, max: i128) -> Result<i128, E> {
    let value = if let Some(u) = n.as_u64() {
        i128::from(u)
    } else if let Some(i) = n.as_i64() {
        i128::from(i)
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 {
            return Err(E::invalid_value(Unexpected::Float(f), &"a whole number"));
        }
        // Exact for every float in range (all floats above 2^53 are whole); beyond i128
        // it saturates, and the range check below refuses it.
        f as i128
    };
    if value < min || value > max {
        return Err(E::invalid_value(
            Unexpected::Other(&value.to_string()),
            &"a number in range",
        ));
    }
    Ok(value)
}

/// An optional `u64` that also accepts `5.0` (in JSON; binary formats such as the
/// store's bincode read the plain integer).
pub fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    if !d.is_human_readable() {
        return Option::<u64>::deserialize(d);
    }
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| whole(n, 0, i128::from(u64::MAX)).map(|v| v as u64))
        .transpose()
}

/// An optional `i64` that also accepts `5.0` (in JSON; binary formats read the plain
/// integer).
pub fn option_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    if !d.is_human_readable() {
        return Option::<i64>::deserialize(d);
    }
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| whole(n, i128::from(i64::MIN), i128::from(i64::MAX)).map(|v| v as i64))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Body {
        #[serde(default, deserialize_with = "option_u64")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "option_i64")]
        i: Option<i64>,
    }

    fn read(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_read_in_either_spelling() {
        assert_eq!(read(r#"{"n": 259585.0}"#).unwrap().n, Some(259585));
        assert_eq!(read(r#"{"n": 259585}"#).unwrap().n, Some(259585));
        assert_eq!(
            read(r#"{"n": 18446744073709551615}"#).unwrap().n,
            Some(u64::MAX)
        );
        assert_eq!(read(r#"{"i": -3.0}"#).unwrap().i, Some(-3));
        assert_eq!(read(r#"{"n": null}"#).unwrap().n, None);
        assert_eq!(read(r#"{}"#).unwrap().n, None);
    }

    #[test]
    fn fractions_negatives_and_huge_floats_are_refused() {
        assert!(read(r#"{"n": 1.5}"#).unwrap_err().contains("whole number"));
        assert!(read(r#"{"n": -1}"#).unwrap_err().contains("range"));
        assert!(read(r#"{"n": 1e300}"#).unwrap_err().contains("range"));
        assert_eq!(
            read(r#"{"n": 1.0e19}"#).unwrap().n,
            Some(10_000_000_000_000_000_000)
        );
        assert!(read(r#"{"n": "7"}"#).is_err());
    }

    #[test]
    fn binary_formats_keep_their_plain_integers() {
        #[derive(serde::Serialize)]
        struct Plain {
            n: Option<u64>,
            i: Option<i64>,
        }
        let plain = Plain {
            n: Some(7),
            i: Some(-2),
        };
        let bytes = mesg_protocol::wire::encode(&plain, 1024).unwrap();
        let body: Body = mesg_protocol::wire::decode(&bytes, 1024).unwrap();
        assert_eq!((body.n, body.i), (Some(7), Some(-2)));
    }
}
