//! OpenAPI schemas of the protocol types the Application API sends and takes (feature
//! `openapi`): the node generates its OpenAPI document from them, so the document says
//! what these types really look like in JSON.
//!
//! Structs whose JSON is their serde derive get `#[derive(ToSchema)]` where they are
//! declared. The types here serialize by hand (base58 hashes and keys, hex ids, base64
//! bytes, any JSON value) or are too rich for a schema to help a client (service and
//! process definitions, whose rules live in their validators), so their schemas are
//! written here, next to each other.

use crate::definition::ServiceDefinition;
use crate::envelope::EnvelopeHeader;
use crate::envelope::Nonce;
use crate::hash::{EnvHash, Hash32, InstanceHash, PackageHash, ServiceHash};
use crate::keys::PublicKey;
use crate::process::ProcessDefinition;
use crate::types::{EventId, ExecutionId};
use crate::value::{Bytes, Json};
use std::borrow::Cow;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// A 32-byte value in base58 (the Bitcoin alphabet): 32 to 44 characters.
pub const BASE58_32_PATTERN: &str = "^[1-9A-HJ-NP-Za-km-z]{32,44}$";
/// A 16-byte id in hex.
pub const HEX_ID_PATTERN: &str = "^[0-9a-fA-F]{32}$";

fn string(description: &str, pattern: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .into()
}

/// Implements the schema of a type as `$schema`, under the type's own name.
macro_rules! schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

schema!(
    Hash32,
    "Hash32",
    string("sha256 digest, base58", BASE58_32_PATTERN)
);
schema!(
    ServiceHash,
    "ServiceHash",
    string(
        "service hash (definition and package), base58",
        BASE58_32_PATTERN
    )
);
schema!(
    InstanceHash,
    "InstanceHash",
    string(
        "instance hash (service hash and env), base58",
        BASE58_32_PATTERN
    )
);
schema!(
    PackageHash,
    "PackageHash",
    string(
        "content hash of a service package, base58",
        BASE58_32_PATTERN
    )
);
schema!(
    EnvHash,
    "EnvHash",
    string("hash of an instance's env, base58", BASE58_32_PATTERN)
);
schema!(
    PublicKey,
    "PublicKey",
    string(
        "ed25519 public key of an account or a node, base58",
        BASE58_32_PATTERN
    )
);
schema!(
    ExecutionId,
    "ExecutionId",
    string("execution id: 32 hex characters", HEX_ID_PATTERN)
);
schema!(
    EventId,
    "EventId",
    string("event id: 32 hex characters", HEX_ID_PATTERN)
);
schema!(
    Json,
    "Json",
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some("any JSON value"))
        .into()
);
schema!(
    Bytes,
    "Bytes",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .content_encoding("base64")
        .description(Some("bytes, base64"))
        .into()
);
schema!(
    Nonce,
    "Nonce",
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(255))
        )
        .min_items(Some(16))
        .max_items(Some(16))
        .description(Some("16 random bytes"))
        .into()
);
schema!(
    ServiceDefinition,
    "ServiceDefinition",
    free_object(
        "a service definition: its mesg.yml as JSON (name, sid, tasks, events, configuration, dependencies)"
    )
);
schema!(
    ProcessDefinition,
    "ProcessDefinition",
    free_object(
        "a process definition: its process file as JSON (name, trigger, steps); see docs/processes.md"
    )
);

fn free_object(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(description))
        .into()
}

/// The schema of every [`Signed`](crate::envelope::Signed) envelope, `SignedEnvelope`: the envelope is the same
/// whatever payload it carries, so one schema stands for all of them (`Signed<T>` is
/// generic, which a schema cannot be).
#[derive(Debug)]
pub struct SignedEnvelope;

impl PartialSchema for SignedEnvelope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "a signed envelope: the header and the payload (bincode, base64) signed together with ed25519",
            ))
            .property(
                "header",
                Ref::from_schema_name(EnvelopeHeader::name()),
            )
            .required("header")
            .property(
                "payload",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_encoding("base64")
                    .description(Some("bincode-encoded payload, base64")),
            )
            .required("payload")
            .property(
                "signature",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_encoding("base64")
                    .description(Some("ed25519 signature, base64")),
            )
            .required("signature")
            .into()
    }
}

impl ToSchema for SignedEnvelope {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((EnvelopeHeader::name().into(), EnvelopeHeader::schema()));
        EnvelopeHeader::schemas(schemas);
    }
}
