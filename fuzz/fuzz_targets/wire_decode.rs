//! Untrusted bytes from a peer, as every protocol of a node receives them.
//!
//! Properties checked (a panic, abort or sanitizer report is a failure):
//! - `wire::decode_frame` never panics, for every top-level message type and its limit;
//! - every signed envelope inside a decoded message can be verified (`Signed::verify`) with
//!   its own domain without panicking, both at a fixed clock and at the envelope's own
//!   `issued_at` (so the window checks pass and the signature check itself runs), and its
//!   payload can be decoded without verification (`payload_unverified`) and digested;
//! - a decoded service record can be checked (`ServiceRecord::check`, which hashes and
//!   re-validates the definition) without panicking;
//! - a decoded message re-encodes and that frame decodes again (what a node accepted, it
//!   can forward). Equality is not asserted: `Json` values carry floats, and serde_json's
//!   default float parsing is not guaranteed to round-trip to the last bit.
//! - the payload types decode from raw bytes (`wire::decode`, as `verify` does after the
//!   signature check, which a fuzzer can never pass) without panicking, and every decoded
//!   payload (raw or from an envelope) re-encodes to bytes that decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesg_protocol::economy::{MAX_RECEIPT_BYTES, MAX_SETTLEMENT_BYTES};
use mesg_protocol::verification::{MAX_COMMIT_BYTES, MAX_REVEAL_BYTES};
use mesg_protocol::envelope::{Claims, Signed};
use mesg_protocol::messages::{
    GossipMessage, PackageRequest, PackageResponse, WorkRequest, WorkResponse,
};
use mesg_protocol::types::{
    Announcement, CancelRequest, Event, ExecutionRequest, ExecutionResult, ServiceRecord, domains,
};
use mesg_protocol::wire::{
    self, MAX_GOSSIP_MESSAGE, MAX_PACKAGE_MESSAGE, MAX_WORK_MESSAGE, WireError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A fixed "now" (2027-01-15), the same the protocol's own tests use.
const NOW_MS: u64 = 1_800_000_000_000;

fn envelope<T: Serialize + DeserializeOwned + Claims>(
    signed: &Signed<T>,
    domain: &str,
    max: usize,
) -> Option<T> {
    let _ = signed.verify(domain, NOW_MS, max);
    let _ = signed.verify(domain, signed.header.issued_at, max);
    let _ = signed.verify(domain, signed.header.issued_at.saturating_add(1), max);
    let _ = signed.digest();
    let _ = signed.signer();
    let payload = signed.payload_unverified(max).ok()?;
    reencodes(&payload, max);
    Some(payload)
}

fn record(signed: &Signed<ServiceRecord>) {
    if let Some(record) = envelope(signed, domains::SERVICE_RECORD, MAX_PACKAGE_MESSAGE) {
        let _ = record.check();
        let _ = record.definition.canonical_bytes();
    }
}

/// What decoded must encode again, and that encoding must decode (the same property as
/// for frames, for values without the frame header; it catches serde attributes such as
/// `skip_serializing_if` that a binary format cannot round-trip).
fn reencodes<T: Serialize + DeserializeOwned>(value: &T, max: usize) {
    match wire::encode(value, max) {
        Ok(again) => {
            if let Err(e) = wire::decode::<T>(&again, max) {
                panic!("a decoded value re-encodes to bytes that do not decode: {e}");
            }
        }
        // Canonical re-encoding may be longer than the input (e.g. `1e9` in a Json value
        // becomes `1000000000`), so a value at the limit may not fit any more.
        Err(WireError::TooLarge { .. }) => {}
        Err(e) => panic!("a decoded value does not re-encode: {e}"),
    }
}

/// Decode a frame; if it decodes, re-encode it and decode that again.
fn frame<T: Serialize + DeserializeOwned>(data: &[u8], max: usize) -> Option<T> {
    let msg = wire::decode_frame::<T>(data, max).ok()?;
    match wire::encode_frame(&msg, max) {
        Ok(again) => {
            if let Err(e) = wire::decode_frame::<T>(&again, max) {
                panic!("a decoded message re-encodes to a frame that does not decode: {e}");
            }
        }
        Err(WireError::TooLarge { .. }) => {}
        Err(e) => panic!("a decoded message does not re-encode: {e}"),
    }
    Some(msg)
}

/// A payload type straight from raw bytes.
fn payload<T: Serialize + DeserializeOwned>(data: &[u8], max: usize) -> Option<T> {
    let value = wire::decode::<T>(data, max).ok()?;
    reencodes(&value, max);
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    if let Some(msg) = frame::<WorkRequest>(data, MAX_WORK_MESSAGE) {
        match &msg {
            WorkRequest::Submit(s) => {
                envelope(s, domains::EXECUTION_REQUEST, MAX_WORK_MESSAGE);
            }
            WorkRequest::Result(s) => {
                envelope(s, domains::EXECUTION_RESULT, MAX_WORK_MESSAGE);
            }
            WorkRequest::Cancel(s) => {
                envelope(s, domains::CANCEL, MAX_WORK_MESSAGE);
            }
            WorkRequest::PricedResult { result, receipt } => {
                envelope(result, domains::EXECUTION_RESULT, MAX_WORK_MESSAGE);
                envelope(receipt, domains::RECEIPT, MAX_RECEIPT_BYTES);
            }
            WorkRequest::Settle { settlement, ack } => {
                envelope(settlement, domains::SETTLEMENT, MAX_SETTLEMENT_BYTES);
                if let Some(ack) = ack {
                    envelope(ack, domains::CUMULATIVE_ACK, MAX_RECEIPT_BYTES);
                }
            }
            WorkRequest::Commit(s) => {
                envelope(s, domains::VERIFY_COMMIT, MAX_COMMIT_BYTES);
            }
            WorkRequest::Reveal(s) => {
                envelope(s, domains::VERIFY_REVEAL, MAX_REVEAL_BYTES);
            }
            WorkRequest::Exchange(x) => {
                envelope(&x.own, domains::ANNOUNCEMENT, MAX_GOSSIP_MESSAGE);
            }
            WorkRequest::EventsSince(_) => {}
            WorkRequest::Reconcile(x) => {
                envelope(&x.own, domains::ANNOUNCEMENT, MAX_GOSSIP_MESSAGE);
            }
            WorkRequest::Receipts(list) => {
                for receipt in list {
                    envelope(receipt, domains::RECEIPT, MAX_RECEIPT_BYTES);
                }
            }
        }
    }
    if let Some(msg) = frame::<WorkResponse>(data, MAX_WORK_MESSAGE) {
        if let WorkResponse::Announcements(list) = &msg {
            for s in list {
                envelope(s, domains::ANNOUNCEMENT, MAX_GOSSIP_MESSAGE);
            }
        }
        if let WorkResponse::Events(list) = &msg {
            for s in list {
                envelope(s, domains::EVENT, MAX_GOSSIP_MESSAGE);
            }
        }
        let _ = format!("{msg:?}");
    }
    if let Some(msg) = frame::<GossipMessage>(data, MAX_GOSSIP_MESSAGE) {
        match &msg {
            GossipMessage::AnnounceV1(s) => {
                envelope(s, domains::ANNOUNCEMENT_V1, MAX_GOSSIP_MESSAGE);
            }
            GossipMessage::Announce(s) => {
                envelope(s, domains::ANNOUNCEMENT, MAX_GOSSIP_MESSAGE);
            }
            GossipMessage::Event(s) => {
                envelope(s, domains::EVENT, MAX_GOSSIP_MESSAGE);
            }
        }
    }
    if let Some(msg) = frame::<PackageRequest>(data, MAX_PACKAGE_MESSAGE) {
        let _ = format!("{msg:?}");
    }
    if let Some(PackageResponse::Record(s)) = frame::<PackageResponse>(data, MAX_PACKAGE_MESSAGE) {
        record(&s);
    }

    // Payloads on their own (what `verify` decodes once the signature checks out).
    payload::<ExecutionRequest>(data, MAX_WORK_MESSAGE);
    payload::<ExecutionResult>(data, MAX_WORK_MESSAGE);
    payload::<CancelRequest>(data, MAX_WORK_MESSAGE);
    payload::<Announcement>(data, MAX_GOSSIP_MESSAGE);
    if let Some(c) = payload::<mesg_protocol::SignedClaim>(data, MAX_GOSSIP_MESSAGE) {
        let _ = c.verify(u64::MAX);
    }
    payload::<Event>(data, MAX_GOSSIP_MESSAGE);
    if let Some(r) = payload::<ServiceRecord>(data, MAX_PACKAGE_MESSAGE) {
        let _ = r.check();
    }
});
