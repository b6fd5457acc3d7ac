//! Signed envelopes of every payload type that crosses the network or the Application API,
//! decoded and verified as a node does.
//!
//! `wire_decode` feeds frames; a fuzzer can never forge a signature there, so everything
//! behind the signature check (payload decode, the claimed-signer check, what a node does
//! with a verified payload) is only reached through its seeds. This target signs the
//! fuzzer's payload bytes itself, with fixed test keys, so that all of it runs on mutated
//! input. The first byte chooses:
//! - bits 0-2: the payload type (`ExecutionRequest`, `ExecutionResult`, `CancelRequest`,
//!   `Announcement`, `Event`, `ServiceRecord`, `UsageReceipt`, `CumulativeAck`);
//! - bits 3-4: the mode:
//!   0. the rest is a bincode `Signed<T>` (as inside a frame);
//!   1. the rest is a JSON `Signed<T>` (the Application API takes signed submits as JSON);
//!   2. and 3. the rest is `issued_at` (u64 LE), `expires_at` (u64 LE), a key byte, then
//!      payload bytes that this target signs with a seed key (bit 0 of the key byte picks
//!      it; bit 1 signs under the next type's domain, a replay across domains).
//!
//! Properties checked (a panic, abort or sanitizer report is a failure):
//! - decoding and `verify`/`verify_signature` never panic, at several clocks;
//! - an envelope signed here, checked at its own `issued_at` with a valid window, never
//!   fails on version, window, clock or signature: it fails on the domain exactly when it
//!   was signed under another domain, and otherwise verifies or fails on its payload or on
//!   the claimed signer only; `verify` and `verify_signature` agree on the payload;
//! - a verified payload claims the signer, re-encodes, and signed again verifies;
//! - an envelope survives a JSON round trip with the same verdict (the API's form);
//! - a verified service record can be `check`-ed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesg_protocol::economy::{CumulativeAck, MAX_RECEIPT_BYTES, UsageReceipt};
use mesg_protocol::envelope::{Claims, ENVELOPE_VERSION, EnvelopeError, EnvelopeHeader, Signed};
use mesg_protocol::types::{
    Announcement, CancelRequest, Event, ExecutionRequest, ExecutionResult, ServiceRecord, domains,
};
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE, MAX_PACKAGE_MESSAGE, MAX_WORK_MESSAGE};
use mesg_protocol::{Bytes, Keypair, PublicKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::sync::Once;

/// A fixed "now" (2027-01-15), the same the protocol's own tests use.
const NOW_MS: u64 = 1_800_000_000_000;
/// What `envelope.rs` prepends to the header and payload before signing (private there;
/// [`check_signing_context`] makes sure this copy still matches).
const SIGNING_CONTEXT: &[u8] = b"mesg-envelope-v1\0";
/// The secret keys of the seeds (`examples/gen_seeds.rs`): requester, node.
const SEEDS: [[u8; 32]; 2] = [[7; 32], [9; 32]];

/// Every payload type with its signing domain and its message limit.
const KINDS: [(&str, usize); 8] = [
    (domains::EXECUTION_REQUEST, MAX_WORK_MESSAGE),
    (domains::EXECUTION_RESULT, MAX_WORK_MESSAGE),
    (domains::CANCEL, MAX_WORK_MESSAGE),
    (domains::ANNOUNCEMENT, MAX_GOSSIP_MESSAGE),
    (domains::EVENT, MAX_GOSSIP_MESSAGE),
    (domains::SERVICE_RECORD, MAX_PACKAGE_MESSAGE),
    (domains::RECEIPT, MAX_RECEIPT_BYTES),
    (domains::CUMULATIVE_ACK, MAX_RECEIPT_BYTES),
];

/// The same fields as `Signed<T>`, which cannot be built outside its crate with a payload
/// that is not a `T`: encoded with bincode it decodes as a `Signed<T>`.
#[derive(Serialize, Deserialize)]
struct RawSigned {
    header: EnvelopeHeader,
    payload: Bytes,
    signature: Bytes,
}

fn sign_raw<T: DeserializeOwned>(
    key: &Keypair,
    header: EnvelopeHeader,
    payload: &[u8],
) -> Signed<T> {
    let mut msg = SIGNING_CONTEXT.to_vec();
    msg.extend_from_slice(&wire::encode(&header, 4096).expect("a header encodes"));
    msg.extend_from_slice(payload);
    let raw = RawSigned {
        header,
        payload: Bytes(payload.to_vec()),
        signature: Bytes(key.sign(&msg).to_vec()),
    };
    let bytes = wire::encode(&raw, usize::MAX).expect("encode raw envelope");
    wire::decode(&bytes, usize::MAX).expect("a raw envelope decodes as Signed<T>")
}

/// ed25519 signatures are deterministic: the same header and payload signed here and by
/// `Signed::sign` must give the same signature, or this target no longer reaches past the
/// signature check.
fn check_signing_context() {
    let key = Keypair::from_secret_bytes(SEEDS[0]);
    let cancel = CancelRequest {
        execution_id: mesg_protocol::ExecutionId([1; 16]),
        requester: key.public(),
        reason: "x".into(),
    };
    let real = Signed::sign(&key, domains::CANCEL, &cancel, NOW_MS, 1000, 1024).unwrap();
    let mine: Signed<CancelRequest> = sign_raw(&key, real.header.clone(), &real.payload.0);
    assert_eq!(
        mine.signature, real.signature,
        "SIGNING_CONTEXT here differs from envelope.rs: update it"
    );
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in data.iter().skip(at).take(8).enumerate() {
        b[i] = *x;
    }
    u64::from_le_bytes(b)
}

/// Every check a node may run on an envelope it received; returns `verify`'s verdict at
/// the envelope's own `issued_at`.
fn exercise<T>(signed: &Signed<T>, domain: &str, max: usize) -> Result<T, EnvelopeError>
where
    T: Serialize + DeserializeOwned + Claims + Debug,
{
    let h = &signed.header;
    for now in [
        0,
        NOW_MS,
        h.expires_at,
        h.expires_at.saturating_add(1),
        u64::MAX,
    ] {
        let _ = signed.verify(domain, now, max);
    }
    let _ = signed.digest();
    let _ = signed.signer();
    let _ = format!("{signed:?}");
    if let Ok(p) = signed.payload_unverified(max) {
        let _ = p.claimed_signer();
    }
    let verdict = signed.verify(domain, h.issued_at, max);
    let unchecked = signed.verify_signature(domain, h.issued_at, max);
    match (&verdict, &unchecked) {
        (Ok(a), Ok(b)) => assert_eq!(
            wire::encode(a, usize::MAX).ok(),
            wire::encode(b, usize::MAX).ok(),
            "verify and verify_signature decode different payloads"
        ),
        (Err(EnvelopeError::WrongSigner { .. }), Ok(_)) => {}
        (Ok(_), Err(e)) => panic!("verify accepts what verify_signature refuses: {e}"),
        (Err(a), Err(b)) => assert_eq!(a, b, "verify and verify_signature disagree"),
        (Err(a), Ok(_)) => panic!("verify fails with {a} although the signature checks out"),
    }
    if let Ok(payload) = &verdict {
        assert_eq!(
            payload.claimed_signer(),
            h.signer,
            "verified payload claims another signer"
        );
    }

    // The JSON form (the Application API's signed submit) keeps the verdict.
    match serde_json::to_vec(signed) {
        Ok(json) => match serde_json::from_slice::<Signed<T>>(&json) {
            Ok(back) => {
                assert!(back == *signed, "JSON round trip changed the envelope");
                let again = back.verify(domain, h.issued_at, max);
                assert_eq!(
                    again.as_ref().err(),
                    verdict.as_ref().err(),
                    "JSON round trip changed the verdict"
                );
            }
            // JSON carries keys as base58 and checks they are curve points; the binary
            // form takes any 32 bytes (verification then fails), so only a valid signer
            // must come back.
            Err(e) if PublicKey::from_base58(&h.signer.to_base58()).is_ok() => {
                panic!("an envelope's JSON does not decode: {e}")
            }
            Err(_) => {}
        },
        Err(e) => panic!("an envelope does not serialize to JSON: {e}"),
    }
    verdict
}

/// A verified payload: it re-encodes, and signed again by the same key it verifies.
fn resign<T>(payload: &T, key: &Keypair, domain: &str, max: usize)
where
    T: Serialize + DeserializeOwned + Claims + Debug,
{
    // Canonical re-encoding may be longer than the input (e.g. `1e9` in a Json value
    // becomes `1000000000`), so a payload at the limit may not be signed again.
    let Ok(again) = Signed::sign(key, domain, payload, NOW_MS, 60_000, max) else {
        return;
    };
    if let Err(e) = again.verify(domain, NOW_MS, max) {
        panic!("a verified payload, signed again, does not verify: {e}\n{payload:?}");
    }
}

/// Decodes and checks one envelope; returns its payload when it decodes (verified or not).
fn run<T>(kind: usize, mode: u8, rest: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + Claims + Debug,
{
    let (domain, max) = KINDS[kind];
    match mode {
        0 => {
            let signed = wire::decode::<Signed<T>>(rest, max).ok()?;
            exercise(&signed, domain, max).ok();
            signed.payload_unverified(max).ok()
        }
        1 => {
            if rest.len() > max {
                return None;
            }
            let signed = serde_json::from_slice::<Signed<T>>(rest).ok()?;
            exercise(&signed, domain, max).ok();
            signed.payload_unverified(max).ok()
        }
        _ => {
            if rest.len() < 17 {
                return None;
            }
            let issued_at = u64_at(rest, 0);
            let expires_at = u64_at(rest, 8);
            let key_byte = rest[16];
            let payload = &rest[17..];
            if payload.len() > max {
                return None;
            }
            let key = Keypair::from_secret_bytes(SEEDS[usize::from(key_byte & 1)]);
            // Bit 1 of the key byte: sign under the next type's domain (a replay across domains).
            let cross = key_byte & 2 != 0;
            let signed_domain = if cross {
                KINDS[(kind + 1) % KINDS.len()].0
            } else {
                domain
            };
            let header = EnvelopeHeader {
                version: ENVELOPE_VERSION,
                domain: signed_domain.to_string(),
                signer: key.public(),
                nonce: mesg_protocol::envelope::Nonce([key_byte; 16]),
                issued_at,
                expires_at,
            };
            let signed: Signed<T> = sign_raw(&key, header, payload);
            let verdict = exercise(&signed, domain, max);
            let window_ok = expires_at > issued_at
                && expires_at - issued_at <= mesg_protocol::envelope::MAX_TTL_MS;
            match (&verdict, cross, window_ok) {
                (Err(EnvelopeError::Domain { .. }), true, _) => {}
                (v, true, _) => panic!("signed under another domain, verify gave {v:?}"),
                (Err(EnvelopeError::BadWindow), false, false) => {}
                (v, false, false) => panic!("a bad window, verify gave {v:?}"),
                (Ok(p), false, true) => resign(p, &key, domain, max),
                (
                    Err(EnvelopeError::Payload(_) | EnvelopeError::WrongSigner { .. }),
                    false,
                    true,
                ) => {}
                (Err(e), false, true) => panic!("a good envelope fails with: {e}"),
            }
            verdict.ok()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static CHECK: Once = Once::new();
    CHECK.call_once(check_signing_context);
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind = usize::from(selector & 7) % KINDS.len();
    let mode = (selector >> 3) & 3;
    let mode = mode.min(2);
    match kind {
        0 => drop(run::<ExecutionRequest>(kind, mode, rest)),
        1 => drop(run::<ExecutionResult>(kind, mode, rest)),
        2 => drop(run::<CancelRequest>(kind, mode, rest)),
        3 => drop(run::<Announcement>(kind, mode, rest)),
        4 => drop(run::<Event>(kind, mode, rest)),
        6 => {
            // What a requester does with a verified receipt: chain it.
            if let Some(receipt) = run::<UsageReceipt>(kind, mode, rest) {
                let _ = (receipt.hash(), receipt.state(), receipt.pair());
            }
        }
        7 => drop(run::<CumulativeAck>(kind, mode, rest)),
        _ => {
            // What a node does with a verified record: check its hash and definition.
            if let Some(record) = run::<ServiceRecord>(kind, mode, rest) {
                let _ = record.check();
                let _ = record.definition.canonical_bytes();
            }
        }
    };
});
