//! The serialized forms of [`TaskDefinition`]: why they are written by hand.
//!
//! A definition travels and is stored as bincode (service records, the node's store),
//! which has no field names, and its JSON form is what the service hash is computed over.
//! A field added to a task must change neither for tasks that do not use it:
//!
//! - binary: fields added after `price` ride in its slot, an enum whose first two
//!   variants encode exactly as the old `Option<Price>` did (tag 0: free; tag 1 and the
//!   price). A task with the new fields is variant 2, which an older node refuses as
//!   undecodable rather than misreading. Later fields get variant 3, and so on.
//! - JSON: the new fields are left out while unset (`deterministic: false`, no
//!   `verify`), so the canonical encoding, hence the service hash, is what it was.

use super::TaskDefinition;
use crate::economy::Price;
use crate::schema::ParamMap;
use crate::verification::VerifySpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The binary slot of `price` and what came after it.
#[derive(Serialize, Deserialize)]
enum PriceSlot {
    Free,
    Priced(Price),
    /// Version 2: the price and the verification fields.
    Extended {
        price: Option<Price>,
        deterministic: bool,
        verify: Option<VerifySpec>,
    },
}

#[derive(Serialize)]
struct BinaryRef<'a> {
    name: &'a Option<String>,
    description: &'a Option<String>,
    inputs: &'a ParamMap,
    outputs: &'a ParamMap,
    timeout_ms: Option<u64>,
    price: PriceSlot,
}

#[derive(Deserialize)]
struct Binary {
    name: Option<String>,
    description: Option<String>,
    inputs: ParamMap,
    outputs: ParamMap,
    timeout_ms: Option<u64>,
    price: PriceSlot,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize)]
struct TextRef<'a> {
    name: &'a Option<String>,
    description: &'a Option<String>,
    inputs: &'a ParamMap,
    outputs: &'a ParamMap,
    timeout_ms: Option<u64>,
    price: Option<Price>,
    #[serde(skip_serializing_if = "is_false")]
    deterministic: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<VerifySpec>,
}

#[derive(Deserialize)]
struct Text {
    name: Option<String>,
    description: Option<String>,
    inputs: ParamMap,
    outputs: ParamMap,
    timeout_ms: Option<u64>,
    price: Option<Price>,
    #[serde(default)]
    deterministic: bool,
    #[serde(default)]
    verify: Option<VerifySpec>,
}

impl Serialize for TaskDefinition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self;
        if s.is_human_readable() {
            return TextRef {
                name: &t.name,
                description: &t.description,
                inputs: &t.inputs,
                outputs: &t.outputs,
                timeout_ms: t.timeout_ms,
                price: t.price,
                deterministic: t.deterministic,
                verify: t.verify,
            }
            .serialize(s);
        }
        let price = match (t.price, t.deterministic, t.verify) {
            (None, false, None) => PriceSlot::Free,
            (Some(p), false, None) => PriceSlot::Priced(p),
            (price, deterministic, verify) => PriceSlot::Extended {
                price,
                deterministic,
                verify,
            },
        };
        BinaryRef {
            name: &t.name,
            description: &t.description,
            inputs: &t.inputs,
            outputs: &t.outputs,
            timeout_ms: t.timeout_ms,
            price,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TaskDefinition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let t = Text::deserialize(d)?;
            return Ok(TaskDefinition {
                name: t.name,
                description: t.description,
                inputs: t.inputs,
                outputs: t.outputs,
                timeout_ms: t.timeout_ms,
                price: t.price,
                deterministic: t.deterministic,
                verify: t.verify,
            });
        }
        let b = Binary::deserialize(d)?;
        let (price, deterministic, verify) = match b.price {
            PriceSlot::Free => (None, false, None),
            PriceSlot::Priced(p) => (Some(p), false, None),
            PriceSlot::Extended {
                price,
                deterministic,
                verify,
            } => (price, deterministic, verify),
        };
        Ok(TaskDefinition {
            name: b.name,
            description: b.description,
            inputs: b.inputs,
            outputs: b.outputs,
            timeout_ms: b.timeout_ms,
            price,
            deterministic,
            verify,
        })
    }
}
