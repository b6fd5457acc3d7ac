//! What the provider table passes on to peers (peer exchange): every live signed
//! announcement to a peer that joins, only the ones a peer lacks or holds older to a
//! peer that sent a summary of what it holds (a reconcile), and that summary itself.
//!
//! Why a summary and not the full list each time: a node that already knows the network
//! and connects to a peer (after a partition, a restart of the peer, a trim) lacks at
//! most a few announcements; the full list is hundreds of kilobytes at a few hundred
//! nodes, the summary about 15 bytes per node and the answer only what differs.

use super::{NodeEntry, ProviderTable};
use mesg_protocol::PublicKey;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::HeldAnnouncement;
use mesg_protocol::{Announcement, now_ms};
use std::collections::HashMap;

impl ProviderTable {
    /// The live signed announcements held, but `except`'s and those of nodes that may be
    /// gone (see `departed`), newest first, at most `max_count` and about `max_bytes`
    /// encoded: what a joining peer is given.
    pub fn signed_announcements(
        &self,
        except: &PublicKey,
        max_count: usize,
        max_bytes: usize,
    ) -> Vec<Signed<Announcement>> {
        self.passable(except, |_, _| true, max_count, max_bytes)
    }

    /// Like [`ProviderTable::signed_announcements`], but only those of nodes missing
    /// from `held`, or held with an older `seq` that says something else: what a
    /// reconciling peer lacks.
    pub fn newer_than(
        &self,
        except: &PublicKey,
        held: &[HeldAnnouncement],
        max_count: usize,
        max_bytes: usize,
    ) -> Vec<Signed<Announcement>> {
        let held: HashMap<[u8; 8], (u64, [u8; 8])> = held
            .iter()
            .map(|h| (h.node_prefix, (h.seq, h.content)))
            .collect();
        self.passable(
            except,
            |node, e| {
                held.get(&HeldAnnouncement::prefix_of(node))
                    .is_none_or(|(seq, content)| e.seq > *seq && e.content != *content)
            },
            max_count,
            max_bytes,
        )
    }

    /// What this node holds, for a reconcile: one entry per live announcement (those of
    /// departed nodes too: the peer need not send them again), at most `max_count`,
    /// newest first.
    pub fn held_summary(&self, max_count: usize) -> Vec<HeldAnnouncement> {
        let now = now_ms();
        let mut live: Vec<(&PublicKey, &NodeEntry)> = self
            .nodes
            .iter()
            .filter(|(_, e)| e.expires_at > now)
            .collect();
        live.sort_by_key(|(_, e)| std::cmp::Reverse(e.seen_at));
        live.into_iter()
            .take(max_count)
            .map(|(node, e)| HeldAnnouncement {
                node_prefix: HeldAnnouncement::prefix_of(node),
                seq: e.seq,
                content: e.content,
            })
            .collect()
    }

    /// Whether `a` tells this table something besides a refresh: its node is not held (and
    /// offers something), or offers other instances than the held announcement did. What
    /// a node learns from a peer exchange is passed on over gossip only then.
    pub fn offers_differ(&self, a: &Announcement) -> bool {
        let offered = |services: &[mesg_protocol::ServiceOffer]| {
            let mut v: Vec<_> = services
                .iter()
                .map(|s| (s.service_hash, s.instance_hash))
                .collect();
            v.sort_unstable();
            v
        };
        match self.nodes.get(&a.node) {
            Some(e) if e.expires_at > now_ms() && e.seq < a.seq => {
                offered(&e.services) != offered(&a.services)
            }
            Some(e) if e.expires_at > now_ms() => false,
            _ => !a.services.is_empty(),
        }
    }

    fn passable(
        &self,
        except: &PublicKey,
        wanted: impl Fn(&PublicKey, &NodeEntry) -> bool,
        max_count: usize,
        max_bytes: usize,
    ) -> Vec<Signed<Announcement>> {
        let now = now_ms();
        let mut live: Vec<(&PublicKey, &NodeEntry)> = self
            .nodes
            .iter()
            .filter(|(k, e)| {
                *k != except
                    && e.expires_at > now
                    && e.signed.is_some()
                    && !e.departed
                    && wanted(k, e)
            })
            .collect();
        live.sort_by_key(|(_, e)| std::cmp::Reverse(e.seen_at));
        let mut out = Vec::new();
        let mut bytes = 0;
        for (_, e) in live.into_iter().take(max_count) {
            let Some(s) = &e.signed else { continue };
            // Header and framing are small next to the payload and the signature.
            let size = s.payload.0.len() + s.signature.0.len() + 256;
            if bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(s.clone());
        }
        out
    }
}
