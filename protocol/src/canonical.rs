//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, strings and
//! numbers as serde_json writes them. Written by hand so that the output never depends on
//! serde_json's `preserve_order` feature, which any crate in the build could switch on.

use serde_json::Value;

pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            out.extend_from_slice(value.to_string().as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical_json(v, out);
            }
            out.push(b'}');
        }
    }
}

pub fn to_canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical_json(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [true, null], "y": "s\"q"}});
        assert_eq!(
            String::from_utf8(to_canonical_json(&v)).unwrap(),
            r#"{"a":{"y":"s\"q","z":[true,null]},"b":1}"#
        );
    }
}
