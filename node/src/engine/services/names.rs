//! Service names (sids) bound to publishers, so that no node can take a name over.
//!
//! Any node can announce any sid. A sid therefore resolves only through a publisher's
//! verified claim ([`mesg_protocol::SignedClaim`]), and to one publisher per sid:
//! - configured by the operator (`mesg-node --pin sid=KEY`) or asked for in the call
//!   (`sid@KEY`);
//! - else pinned: the publisher of a service deployed on this node (the operator's
//!   choice), or the only publisher seen the first time the sid was resolved (trust on
//!   first use). Pins live in the store and survive restarts;
//! - else, with several publishers and no pin, the sid is ambiguous: refused, with the
//!   candidates listed, until the operator pins one or names the service by hash.
//!
//! Offers without a valid claim (older nodes, forged or mismatched claims) are
//! unpublished: usable by hash, never by sid. An execution by hash never goes through here.

use super::Services;
use crate::engine::error::EngineError;
use crate::store::ServiceEntry;
use mesg_protocol::{PublicKey, ServiceHash, SignedClaim, now_ms, wire};
use std::fmt;

/// Store tree of pins: sid -> publisher key (base58).
const PINS_TREE: &str = "sid_pins";
/// Store tree of the claims this node holds: service hash -> encoded [`SignedClaim`].
const CLAIMS_TREE: &str = "sid_claims";
/// Most claims kept per service: the same package may be deployed by several operators
/// (each node's key publishes what it deploys without an account); a few suffice to
/// resolve its sid, and a flood of claimants cannot grow the store.
pub const MAX_CLAIMS_PER_SERVICE: usize = 8;
/// Largest encoded list of claims of one service.
const MAX_CLAIMS_BYTES: usize =
    MAX_CLAIMS_PER_SERVICE * (mesg_protocol::publisher::MAX_CLAIM_BYTES + 128);
/// Most candidates listed in an ambiguity error: enough to choose, bounded against a
/// network that announces thousands of services under one sid.
pub const MAX_LISTED_CANDIDATES: usize = 16;

/// One service that may carry a sid, with its verified publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub service_hash: ServiceHash,
    pub publisher: PublicKey,
    /// When the publisher signed its claim: the latest is a publisher's current version.
    pub created_at: u64,
    /// Deployed on this node (the operator's choice).
    pub local: bool,
}

/// Where the publisher a sid resolves to came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinSource {
    /// Given in this call (`sid@KEY`) or by `--pin`.
    Configured,
    /// Stored: a local deploy or the first resolution.
    Pinned,
    /// Chosen now: pin it.
    FirstUse,
}

impl fmt::Display for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PinSource::Configured => "configured",
            PinSource::Pinned => "pinned",
            PinSource::FirstUse => "first use",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub service_hash: ServiceHash,
    pub publisher: PublicKey,
    pub source: PinSource,
}

/// Why a sid does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "service `{0}` not found\nno service published under this sid is held here or announced in the network (a service without a publisher claim is reachable by its hash only)"
    )]
    Unknown(String),
    #[error(
        "sid `{sid}` is ambiguous: published by {} publishers ({}); choose one with `{sid}@PUBLISHER`, pin it with `mesg-node --pin {sid}=PUBLISHER`, or use a service hash",
        publishers_count(candidates),
        list(candidates)
    )]
    Ambiguous {
        sid: String,
        candidates: Vec<Candidate>,
    },
    #[error(
        "sid `{sid}` is pinned ({how}) to publisher {publisher}, who runs no service under it; other publishers of it: {}. Use a service hash to run one of them",
        list(others)
    )]
    PinnedElsewhere {
        sid: String,
        publisher: PublicKey,
        how: PinSource,
        others: Vec<Candidate>,
    },
    /// No service can have this name: answered like an unknown service (404), since ids in
    /// URLs are free text and every other unknown id is a 404 too.
    #[error("no service `{0}`: it is not a service hash, a sid or `sid@PUBLISHER_KEY`")]
    BadName(String),
}

impl NameError {
    /// A stable machine-readable code (the API's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            NameError::Unknown(_) => "not_found",
            NameError::Ambiguous { .. } => "ambiguous_sid",
            NameError::PinnedElsewhere { .. } => "sid_pinned_elsewhere",
            NameError::BadName(_) => "not_found",
        }
    }

    /// One line per candidate (for clients that show lists).
    pub fn details(&self) -> Vec<String> {
        let cands = match self {
            NameError::Ambiguous { candidates, .. } => candidates,
            NameError::PinnedElsewhere { others, .. } => others,
            _ => return Vec::new(),
        };
        cands
            .iter()
            .take(MAX_LISTED_CANDIDATES)
            .map(|c| format!("service {} published by {}", c.service_hash, c.publisher))
            .collect()
    }
}

fn publishers_count(c: &[Candidate]) -> usize {
    let mut keys: Vec<_> = c.iter().map(|c| c.publisher).collect();
    keys.sort();
    keys.dedup();
    keys.len()
}

fn list(c: &[Candidate]) -> String {
    let mut s: Vec<String> = c
        .iter()
        .take(MAX_LISTED_CANDIDATES)
        .map(|c| format!("{} by {}", c.service_hash, c.publisher))
        .collect();
    if c.len() > MAX_LISTED_CANDIDATES {
        s.push(format!("and {} more", c.len() - MAX_LISTED_CANDIDATES));
    }
    s.join(", ")
}

/// A publisher's current version: local first, then the latest claim, then by hash.
fn best<'a>(c: impl Iterator<Item = &'a Candidate>) -> Option<&'a Candidate> {
    c.max_by(|a, b| {
        (a.local, a.created_at)
            .cmp(&(b.local, b.created_at))
            .then(b.service_hash.cmp(&a.service_hash))
    })
}

/// Resolve `sid` among `candidates` (verified claims), given the configured publisher
/// (`--pin` or `sid@KEY`) and the stored pin. Pure: the caller stores a
/// [`PinSource::FirstUse`] answer as the new pin.
pub fn resolve(
    sid: &str,
    configured: Option<PublicKey>,
    pinned: Option<PublicKey>,
    candidates: &[Candidate],
) -> Result<Resolved, NameError> {
    let mut sorted = candidates.to_vec();
    sorted.sort_by_key(|c| (c.publisher, c.service_hash));
    sorted.dedup_by(|a, b| a.service_hash == b.service_hash && a.publisher == b.publisher);
    let pin = configured
        .map(|k| (k, PinSource::Configured))
        .or(pinned.map(|k| (k, PinSource::Pinned)));
    if let Some((publisher, source)) = pin {
        return match best(sorted.iter().filter(|c| c.publisher == publisher)) {
            Some(c) => Ok(Resolved {
                service_hash: c.service_hash,
                publisher,
                source,
            }),
            None if sorted.is_empty() => Err(NameError::Unknown(sid.to_string())),
            None => Err(NameError::PinnedElsewhere {
                sid: sid.to_string(),
                publisher,
                how: source,
                others: sorted,
            }),
        };
    }
    // Deployed here without a pin (a store from before pins): the operator's choice.
    if let Some(c) = best(sorted.iter().filter(|c| c.local)) {
        return Ok(Resolved {
            service_hash: c.service_hash,
            publisher: c.publisher,
            source: PinSource::FirstUse,
        });
    }
    let mut hashes: Vec<_> = sorted.iter().map(|c| c.service_hash).collect();
    hashes.sort();
    hashes.dedup();
    if hashes.len() == 1 {
        // One package, however many publishers vouch for it: nothing to choose between.
        // Pin its first publisher (earliest claim).
        let c = sorted
            .iter()
            .min_by_key(|c| (c.created_at, c.publisher))
            .expect("one candidate");
        return Ok(Resolved {
            service_hash: c.service_hash,
            publisher: c.publisher,
            source: PinSource::FirstUse,
        });
    }
    match publishers_count(&sorted) {
        0 => Err(NameError::Unknown(sid.to_string())),
        1 => {
            let c = best(sorted.iter()).expect("one candidate");
            Ok(Resolved {
                service_hash: c.service_hash,
                publisher: c.publisher,
                source: PinSource::FirstUse,
            })
        }
        _ => Err(NameError::Ambiguous {
            sid: sid.to_string(),
            candidates: sorted,
        }),
    }
}

/// Split `sid@PUBLISHER` into its parts (`sid` alone has no publisher).
pub fn parse_name(name: &str) -> Result<(String, Option<PublicKey>), NameError> {
    let bad = || NameError::BadName(name.to_string());
    match name.split_once('@') {
        None => Ok((name.to_ascii_lowercase(), None)),
        Some((sid, key)) => {
            let key = PublicKey::from_base58(key).map_err(|_| bad())?;
            if sid.is_empty() {
                return Err(bad());
            }
            Ok((sid.to_ascii_lowercase(), Some(key)))
        }
    }
}

impl Services {
    /// The publisher `sid` is pinned to on this node, configured first.
    pub(super) fn pins_of(
        &self,
        sid: &str,
    ) -> Result<(Option<PublicKey>, Option<PublicKey>), EngineError> {
        let configured = self
            .config
            .pins
            .iter()
            .find(|(s, _)| s == sid)
            .map(|(_, k)| *k);
        let stored = self
            .store
            .blob(PINS_TREE, sid.as_bytes())?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| PublicKey::from_base58(&s).ok());
        Ok((configured, stored))
    }

    /// Pin `sid` to `publisher` (replacing any stored pin).
    pub fn pin_sid(&self, sid: &str, publisher: &PublicKey) -> Result<(), EngineError> {
        self.store
            .put_blob(PINS_TREE, sid.as_bytes(), publisher.to_base58().as_bytes())?;
        Ok(())
    }

    /// The claims this node holds for a service (several publishers may claim the same
    /// package; the first is the one it announces).
    pub fn stored_claims(&self, service: &ServiceHash) -> Vec<SignedClaim> {
        self.store
            .blob(CLAIMS_TREE, service.as_bytes().as_slice())
            .ok()
            .flatten()
            .and_then(|b| wire::decode(&b, MAX_CLAIMS_BYTES).ok())
            .unwrap_or_default()
    }

    /// The first claim this node holds for a service.
    pub fn stored_claim(&self, service: &ServiceHash) -> Option<SignedClaim> {
        self.stored_claims(service).into_iter().next()
    }

    /// Keep a verified claim for a service this node knows (to announce it with the
    /// service, and to resolve its sid here even when its announcers are gone). `first`
    /// puts it in front (a local deploy); at most [`MAX_CLAIMS_PER_SERVICE`] are kept.
    pub fn store_claim(&self, claim: &SignedClaim, first: bool) -> Result<(), EngineError> {
        let hash = claim.claim.service_hash;
        let mut all = self.stored_claims(&hash);
        all.retain(|c| c.claim.publisher != claim.claim.publisher);
        if first {
            all.insert(0, claim.clone());
        } else {
            all.push(claim.clone());
        }
        all.truncate(MAX_CLAIMS_PER_SERVICE);
        let bytes = wire::encode(&all, MAX_CLAIMS_BYTES)
            .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        self.store
            .put_blob(CLAIMS_TREE, hash.as_bytes().as_slice(), &bytes)?;
        Ok(())
    }

    /// The claim to announce with a service: the first stored one; for a service deployed
    /// here before claims existed, one signed now by this node's key (it was the publisher).
    pub fn claim_of(&self, entry: &ServiceEntry) -> Option<SignedClaim> {
        let sid = entry.record.definition.sid.as_deref()?;
        if let Some(c) = self.stored_claim(&entry.record.service_hash) {
            return Some(c);
        }
        if entry.record.publisher != self.node() {
            return None;
        }
        let c =
            SignedClaim::sign(&self.key, sid, entry.record.service_hash, entry.deployed_at).ok()?;
        if let Err(e) = self.store_claim(&c, true) {
            tracing::warn!(service = %entry.record.service_hash, "claim signed now not kept (signed again next time): {e}");
        }
        Some(c)
    }

    /// Every service known under `sid`, here and in the network, with a verified claim.
    pub(super) fn sid_candidates(&self, sid: &str) -> Result<Vec<Candidate>, EngineError> {
        let me = self.node();
        let mut out = Vec::new();
        let now = now_ms();
        for entry in self.store.services()? {
            if entry.record.definition.sid.as_deref() != Some(sid) {
                continue;
            }
            let hash = entry.record.service_hash;
            let local = entry.record.publisher == me;
            let mut claims = self.stored_claims(&hash);
            if claims.is_empty() {
                claims.extend(self.claim_of(&entry));
            }
            // Claims are verified before they are stored; check again, they are cheap.
            for (i, c) in claims.iter().enumerate() {
                if c.verify_for(&hash, sid, now).is_ok() {
                    out.push(Candidate {
                        service_hash: hash,
                        publisher: c.claim.publisher,
                        created_at: c.claim.created_at,
                        // The deploy made here (its claim is stored first) is the
                        // operator's choice; other claims on the same package are not.
                        local: local && i == 0,
                    });
                }
            }
        }
        let announced = self.providers.lock().expect("providers lock").by_sid(sid);
        for c in announced {
            if !out
                .iter()
                .any(|o| o.service_hash == c.service_hash && o.publisher == c.publisher)
            {
                out.push(Candidate {
                    service_hash: c.service_hash,
                    publisher: c.publisher,
                    created_at: c.created_at,
                    local: false,
                });
            }
        }
        Ok(out)
    }

    /// Resolve a sid (or `sid@PUBLISHER`) to one service hash: see the module doc. What
    /// this node holds and what other nodes announce count alike, so that a lookup here
    /// never settles on a fetched record that the network would show to be ambiguous.
    pub fn resolve_sid(&self, name: &str) -> Result<ServiceHash, EngineError> {
        let (sid, asked) = parse_name(name)?;
        let (configured, stored) = self.pins_of(&sid)?;
        let candidates = self.sid_candidates(&sid)?;
        let r = resolve(&sid, asked.or(configured), stored, &candidates)?;
        if r.source == PinSource::FirstUse || (stored.is_none() && asked.is_some()) {
            tracing::info!(sid = %sid, publisher = %r.publisher, "sid pinned to its publisher");
            self.pin_sid(&sid, &r.publisher)?;
        }
        Ok(r.service_hash)
    }

    /// A deploy's publisher must match the configured pin of its sid, if any.
    pub fn check_local_claim(&self, claim: &SignedClaim) -> Result<(), EngineError> {
        let sid = &claim.claim.sid;
        let (configured, _) = self.pins_of(sid)?;
        if let Some(k) = configured
            && k != claim.claim.publisher
        {
            return Err(EngineError::BadRequest(format!(
                "sid `{sid}` is pinned by --pin to publisher {k}; deploy with that account (mesg --account NAME service deploy) or change the pin"
            )));
        }
        Ok(())
    }

    /// Keep a deployed service's claim and pin its sid to the publisher: a deploy on this
    /// node is the operator's choice.
    pub fn commit_local_claim(&self, claim: &SignedClaim) -> Result<(), EngineError> {
        self.store_claim(claim, true)?;
        self.pin_sid(&claim.claim.sid, &claim.claim.publisher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::{Hash32, Keypair};

    pub(super) fn key() -> PublicKey {
        Keypair::generate().unwrap().public()
    }

    pub(super) fn cand(h: u8, publisher: PublicKey, created_at: u64, local: bool) -> Candidate {
        Candidate {
            service_hash: ServiceHash(Hash32::sha256(&[h])),
            publisher,
            created_at,
            local,
        }
    }

    #[test]
    pub(super) fn one_publisher_is_trusted_on_first_use_and_its_latest_version_wins() {
        let honest = key();
        let cands = [cand(1, honest, 10, false), cand(2, honest, 20, false)];
        let r = resolve("echo", None, None, &cands).unwrap();
        assert_eq!(r.service_hash, cands[1].service_hash);
        assert_eq!((r.publisher, r.source), (honest, PinSource::FirstUse));
        assert_eq!(
            resolve("echo", None, None, &[]),
            Err(NameError::Unknown("echo".into()))
        );
    }

    #[test]
    pub(super) fn several_publishers_without_a_pin_are_ambiguous_and_listed() {
        let (honest, rogue) = (key(), key());
        let cands = [cand(1, honest, 10, false), cand(2, rogue, 99, false)];
        let e = resolve("echo", None, None, &cands).unwrap_err();
        assert_eq!(e.code(), "ambiguous_sid");
        let msg = e.to_string();
        for c in &cands {
            assert!(msg.contains(&c.service_hash.to_string()), "{msg}");
            assert!(msg.contains(&c.publisher.to_string()), "{msg}");
        }
        assert_eq!(e.details().len(), 2);
    }

    #[test]
    pub(super) fn one_package_vouched_for_by_several_publishers_is_not_ambiguous() {
        let (b, d) = (key(), key());
        let cands = [cand(1, b, 20, false), cand(1, d, 10, false)];
        let r = resolve("echo", None, None, &cands).unwrap();
        assert_eq!(r.service_hash, cands[0].service_hash);
        assert_eq!(r.publisher, d, "the earliest claim is pinned");
        // Pinned to b: b's claim on the same package still counts.
        assert_eq!(
            resolve("echo", None, Some(b), &cands).unwrap().service_hash,
            cands[0].service_hash
        );
    }

    #[test]
    pub(super) fn a_pin_chooses_its_publisher_and_never_another() {
        let (honest, rogue) = (key(), key());
        let cands = [cand(1, honest, 10, false), cand(2, rogue, 99, false)];
        let r = resolve("echo", None, Some(honest), &cands).unwrap();
        assert_eq!(r.service_hash, cands[0].service_hash);
        assert_eq!(r.source, PinSource::Pinned);
        // Only the rogue announces it now: refused, not silently the rogue.
        let e = resolve("echo", None, Some(honest), &cands[1..]).unwrap_err();
        assert_eq!(e.code(), "sid_pinned_elsewhere");
        assert!(e.to_string().contains(&rogue.to_string()));
    }

    #[test]
    pub(super) fn a_configured_publisher_overrides_the_stored_pin() {
        let (a, b) = (key(), key());
        let cands = [cand(1, a, 10, true), cand(2, b, 5, false)];
        let r = resolve("echo", Some(b), Some(a), &cands).unwrap();
        assert_eq!(r.service_hash, cands[1].service_hash);
        assert_eq!(r.source, PinSource::Configured);
    }

    #[test]
    pub(super) fn a_local_deploy_is_the_operators_choice() {
        let (mine, other) = (key(), key());
        let cands = [cand(1, other, 99, false), cand(2, mine, 1, true)];
        let r = resolve("echo", None, None, &cands).unwrap();
        assert_eq!(r.service_hash, cands[1].service_hash);
    }

    #[test]
    pub(super) fn only_offers_with_a_valid_claim_are_sid_candidates() {
        use crate::engine::net::drop_invalid_claims;
        use crate::engine::providers::ProviderTable;
        use mesg_protocol::{Announcement, InstanceHash, ServiceOffer};
        let (honest, rogue) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
        let offer = |h: u8, claim: Option<SignedClaim>| ServiceOffer {
            service_hash: ServiceHash(Hash32::sha256(&[h])),
            sid: Some("echo".into()),
            instance_hash: InstanceHash(Hash32::sha256(&[h, 1])),
            in_flight: 0,
            claim,
        };
        let h = |b: u8| ServiceHash(Hash32::sha256(&[b]));
        let now = now_ms();
        let good = SignedClaim::sign(&honest, "echo", h(1), now).unwrap();
        // The rogue replays the honest claim on its own package, forges one in the
        // honest key's name, and announces another without any claim.
        let mut forged = SignedClaim::sign(&rogue, "echo", h(3), now).unwrap();
        forged.claim.publisher = honest.public();
        let mut a = Announcement {
            node: rogue.public(),
            seq: 1,
            addrs: vec![],
            services: vec![
                offer(2, Some(good.clone())),
                offer(3, Some(forged)),
                offer(4, None),
            ],
            ttl_ms: 10_000,
        };
        drop_invalid_claims(&mut a, now);
        assert!(a.services.iter().all(|s| s.claim.is_none()));
        let mut b = Announcement {
            node: honest.public(),
            seq: 1,
            addrs: vec![],
            services: vec![offer(1, Some(good))],
            ttl_ms: 10_000,
        };
        drop_invalid_claims(&mut b, now);
        let mut t = ProviderTable::default();
        t.apply(&a);
        t.apply(&b);
        let claims = t.by_sid("echo");
        assert_eq!(claims.len(), 1);
        assert_eq!(
            (claims[0].service_hash, claims[0].publisher),
            (h(1), honest.public())
        );
    }

    #[test]
    pub(super) fn names_with_a_publisher_parse() {
        let k = key();
        assert_eq!(parse_name("Echo").unwrap(), ("echo".into(), None));
        assert_eq!(
            parse_name(&format!("echo@{k}")).unwrap(),
            ("echo".into(), Some(k))
        );
        assert_eq!(parse_name("echo@nope").unwrap_err().code(), "not_found");
    }
}
