//! The small decoders of `mesg-protocol` that read what the Application API and the service
//! API receive: ids, hashes and keys in URL paths and queries, durations, execution
//! statuses, parameter types, paths, base64, the JSON bodies a service container posts
//! (`TaskResultRequest`, `EmitEventRequest`) and the task stream lines an SDK reads
//! (`TaskStreamMessage`), and the validation of any JSON value (task inputs from a user or
//! a peer, outputs and event data from a container) against a definition's parameters.
//!
//! Every input goes through all of them (they are cheap): the whole input as text, each
//! of its lines as text, and the whole input as JSON.
//!
//! Properties checked (a panic, abort or sanitizer report is a failure):
//! - no parser panics;
//! - what parses prints back to text that parses to the same value (ids, hashes, keys,
//!   statuses, parameter types, paths, base64);
//! - a parsed duration is within 1 ms..=`MAX_TIMEOUT_MS`;
//! - a JSON body that parses serializes to JSON that parses to an equal body;
//! - `schema::validate` never panics, and a value it accepts for a parameter map is also
//!   accepted after a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesg_protocol::definition::{MAX_TIMEOUT_MS, parse_duration_ms};
use mesg_protocol::process::Path;
use mesg_protocol::schema::{self, ParamMap, ParamType};
use mesg_protocol::service_api::{
    ApiError, EmitEventRequest, TaskResultRequest, TaskStreamMessage,
};
use mesg_protocol::value::{base64_decode, base64_encode};
use mesg_protocol::{
    EventId, ExecutionId, ExecutionStatus, Hash32, InstanceHash, PackageHash, PublicKey,
    ServiceDefinition, ServiceHash,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::{Debug, Display};
use std::str::FromStr;
use std::sync::OnceLock;

/// Every parameter map of the example services and of the full seed definition.
fn param_maps() -> &'static Vec<ParamMap> {
    static MAPS: OnceLock<Vec<ParamMap>> = OnceLock::new();
    MAPS.get_or_init(|| {
        let mut maps = Vec::new();
        for text in [
            include_str!("../../testnet/services/echo/mesg.yml"),
            include_str!("../../testnet/services/kv/mesg.yml"),
            include_str!("../seeds/definition_yaml/valid-full.yml"),
        ] {
            let def = ServiceDefinition::from_yaml(text).expect("fixture definition parses");
            for task in def.tasks.values() {
                maps.push(task.inputs.clone());
                maps.push(task.outputs.clone());
            }
            for event in def.events.values() {
                maps.push(event.data.clone());
            }
        }
        maps
    })
}

/// `T` parsed from `text` prints to text that parses to the same value.
fn round_trip<T>(text: &str)
where
    T: FromStr + Display + PartialEq + Debug,
{
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        match printed.parse::<T>() {
            Ok(back) => assert_eq!(
                back, value,
                "`{text}` -> `{printed}` parses to another value"
            ),
            Err(_) => panic!("`{text}` parses, but its printed form `{printed}` does not"),
        }
    }
}

fn text_parsers(text: &str) {
    round_trip::<ExecutionId>(text);
    round_trip::<EventId>(text);
    round_trip::<Hash32>(text);
    round_trip::<ServiceHash>(text);
    round_trip::<InstanceHash>(text);
    round_trip::<PackageHash>(text);
    round_trip::<PublicKey>(text);
    if let Ok(ms) = parse_duration_ms(text) {
        assert!(
            (1..=MAX_TIMEOUT_MS).contains(&ms),
            "`{text}` parses to {ms} ms"
        );
    }
    if let Some(status) = ExecutionStatus::parse(text) {
        assert_eq!(ExecutionStatus::parse(status.as_str()), Some(status));
    }
    if let Some(kind) = ParamType::parse(text) {
        assert_eq!(ParamType::parse(kind.as_str()), Some(kind));
    }
    if let Ok(path) = Path::parse(text) {
        let printed = path.to_string();
        match Path::parse(&printed) {
            Ok(back) => assert_eq!(back, path, "path `{text}` -> `{printed}` changed"),
            Err(e) => panic!("path `{text}` prints as `{printed}`, which does not parse: {e}"),
        }
    }
    if let Ok(bytes) = base64_decode(text) {
        assert_eq!(
            base64_decode(&base64_encode(&bytes)).as_deref(),
            Ok(&bytes[..])
        );
    }
}

/// A JSON body that parses serializes to JSON that parses to an equal value.
fn json_body<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value = serde_json::from_slice::<T>(data).ok()?;
    let json = serde_json::to_vec(&value).expect("a parsed body serializes");
    match serde_json::from_slice::<T>(&json) {
        // serde_json's float parsing may differ in the last bit from its printing, so
        // equality is only asserted when the text came back the same.
        Ok(back) => {
            if serde_json::to_vec(&back).ok().as_deref() == Some(&json[..]) {
                assert_eq!(back, value, "JSON round trip changed the body");
            }
        }
        Err(e) => panic!("a parsed body's JSON does not parse: {e}"),
    }
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        text_parsers(text);
        for line in text.lines().take(64) {
            text_parsers(line);
        }
    }
    json_body::<TaskResultRequest>(data);
    json_body::<EmitEventRequest>(data);
    json_body::<TaskStreamMessage>(data);
    json_body::<ApiError>(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let again: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&value).expect("a Value serializes"))
                .expect("a Value's JSON parses");
        for params in param_maps() {
            let first = schema::validate(params, &value, "inputs");
            if let Err(errors) = &first {
                assert!(!errors.0.is_empty(), "validation failed without an error");
                let _ = errors.to_string();
            }
            if first.is_ok() {
                assert!(
                    schema::validate(params, &again, "inputs").is_ok(),
                    "a value accepted before a JSON round trip is refused after it"
                );
            }
        }
    }
});
