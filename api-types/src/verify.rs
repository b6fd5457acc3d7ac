//! The `verify` field of a create-execution body: `"2/3"` (QUORUM/REPLICAS),
//! `"2/3/5"` (with MAX_TOTAL) or an object `{"replicas": 3, "quorum": 2, "max_total": 5}`,
//! read into a checked [`VerifySpec`] with its own error words.

use mesg_protocol::verification::VerifySpec;
use serde::Deserialize;
use serde::de::{Deserializer, Error};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// An optional spec, as text or object (JSON); binary formats read the object.
pub fn option_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VerifySpec>, D::Error> {
    if !d.is_human_readable() {
        return Option::<VerifySpec>::deserialize(d);
    }
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => s.parse().map(Some).map_err(D::Error::custom),
        Some(v @ serde_json::Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom(
            "verify: expected text like \"2/3\" (quorum/replicas) or an object {\"replicas\": 3, \"quorum\": 2}",
        )),
    }
}

/// `"2/3"` or `{replicas, quorum, max_total}`.
pub fn spec_schema() -> RefOr<Schema> {
    let count = |d: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(16))
            .description(Some(d))
    };
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*[0-9]+/[0-9]+(/[0-9]+)?\s*$"))
                .description(Some("QUORUM/REPLICAS or QUORUM/REPLICAS/MAX_TOTAL, e.g. 2/3")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("replicas", count("distinct executors asked at first"))
                .required("replicas")
                .property("quorum", count("agreeing results that complete the execution"))
                .required("quorum")
                .property(
                    "max_total",
                    count("most executors asked in all when results disagree (default: twice replicas, at most 16)"),
                ),
        )
        .description(Some(
            "k-of-n verification: 1 <= quorum <= replicas <= max_total <= 16",
        ))
        .into()
}

#[cfg(test)]
mod tests {
    use crate::CreateExecution;
    use serde_json::json;

    fn create(verify: serde_json::Value) -> Result<CreateExecution, String> {
        serde_json::from_value(json!({"service": "s", "task": "t", "verify": verify}))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn verify_is_text_or_an_object_and_is_checked() {
        let text = create(json!("2/3")).unwrap().verify.unwrap();
        assert_eq!((text.quorum, text.replicas, text.max_total), (2, 3, 6));
        let object = create(json!({"replicas": 3, "quorum": 2, "max_total": 5}))
            .unwrap()
            .verify
            .unwrap();
        assert_eq!(object, "2/3/5".parse().unwrap());
        assert_eq!(create(json!(null)).unwrap().verify, None);
        let none: CreateExecution =
            serde_json::from_value(json!({"service": "s", "task": "t"})).unwrap();
        assert_eq!(none.verify, None);
        assert!(!serde_json::to_string(&none).unwrap().contains("verify"));
        for (bad, word) in [
            (json!("3/2"), "quorum 3 is more than replicas 2"),
            (
                json!({"replicas": 2, "quorum": 3}),
                "quorum 3 is more than replicas 2",
            ),
            (json!({"replicas": 40, "quorum": 3}), "more than 16"),
            (json!({"replicas": 3}), "quorum"),
            (json!(3), "expected text like"),
        ] {
            let e = create(bad.clone()).unwrap_err();
            assert!(e.contains(word), "{bad}: {e}");
        }
    }
}
