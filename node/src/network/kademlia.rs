//! Kademlia traffic of the swarm: providing keys, finding providers, putting and getting
//! signed service records, and what peers ask us to store (only valid records under
//! their own key). Queries in progress wait here for their answer.

use super::behaviour::Behaviour;
use super::{NetError, record_key};
use libp2p::kad::store::RecordStore;
use libp2p::{PeerId, Swarm, kad};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_PACKAGE_MESSAGE;
use mesg_protocol::{ServiceRecord, Signed, now_ms, wire};
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;

/// A query in progress and who waits for its answer.
enum Pending {
    /// Providers found so far are gathered until the query settles.
    Providers(
        oneshot::Sender<Result<Vec<PeerId>, NetError>>,
        HashSet<PeerId>,
    ),
    Record(oneshot::Sender<Result<Vec<u8>, NetError>>),
}

/// Kademlia queries waiting for their answer, by query id.
#[derive(Default)]
pub(super) struct PendingQueries {
    queries: HashMap<kad::QueryId, Pending>,
}

impl PendingQueries {
    pub(super) fn start_providing(swarm: &mut Swarm<Behaviour>, key: Vec<u8>) {
        if let Err(e) = swarm
            .behaviour_mut()
            .kad
            .start_providing(kad::RecordKey::new(&key))
        {
            tracing::warn!("cannot provide: {e}");
        }
    }

    pub(super) fn get_providers(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<PeerId>, NetError>>,
    ) {
        let id = swarm
            .behaviour_mut()
            .kad
            .get_providers(kad::RecordKey::new(&key));
        self.queries
            .insert(id, Pending::Providers(reply, HashSet::new()));
    }

    pub(super) fn put_record(swarm: &mut Swarm<Behaviour>, key: Vec<u8>, value: Vec<u8>) {
        let kad = &mut swarm.behaviour_mut().kad;
        let record = kad::Record::new(kad::RecordKey::new(&key), value);
        // Keep it locally too so that we answer GET for it ourselves.
        if let Err(e) = kad.store_mut().put(record.clone()) {
            tracing::warn!("cannot store record: {e}");
        }
        if let Err(e) = kad.put_record(record, kad::Quorum::One) {
            tracing::warn!("cannot publish record: {e}");
        }
    }

    pub(super) fn get_record(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    ) {
        let id = swarm
            .behaviour_mut()
            .kad
            .get_record(kad::RecordKey::new(&key));
        self.queries.insert(id, Pending::Record(reply));
    }

    pub(super) fn on_event(&mut self, swarm: &mut Swarm<Behaviour>, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => match check_record(&record) {
                Ok(()) => {
                    if let Err(e) = swarm.behaviour_mut().kad.store_mut().put(record) {
                        tracing::warn!(peer = %source, "cannot store record: {e}");
                    }
                }
                Err(reason) => tracing::debug!(peer = %source, "record refused: {reason}"),
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(provider),
                    },
            } => {
                let peer = provider.provider;
                if let Err(e) = swarm.behaviour_mut().kad.store_mut().add_provider(provider) {
                    tracing::debug!(peer = %peer, "provider not stored: {e}");
                }
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                kad::QueryResult::GetProviders(r) => self.on_providers(swarm, id, r, step.last),
                kad::QueryResult::GetRecord(r) => self.on_record(swarm, id, r, step.last),
                _ => {}
            },
            _ => {}
        }
    }

    /// Providers found: answered as soon as some are found, or when the query ends.
    fn on_providers(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: kad::QueryId,
        result: kad::GetProvidersResult,
        last: bool,
    ) {
        let done = match (result, self.queries.get_mut(&id)) {
            (
                Ok(kad::GetProvidersOk::FoundProviders { providers, .. }),
                Some(Pending::Providers(_, found)),
            ) => {
                found.extend(providers);
                last || !found.is_empty()
            }
            (_, Some(_)) => true,
            (_, None) => false,
        };
        if (done || last)
            && let Some(Pending::Providers(reply, found)) = self.queries.remove(&id)
        {
            let _ = reply.send(Ok(found.into_iter().collect()));
            if let Some(mut q) = swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
    }

    /// A record found: answered with the first valid one, or "not found" at the end.
    fn on_record(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: kad::QueryId,
        result: kad::GetRecordResult,
        last: bool,
    ) {
        let found = match result {
            Ok(kad::GetRecordOk::FoundRecord(peer_record)) => check_record(&peer_record.record)
                .ok()
                .map(|()| peer_record.record.value),
            _ => None,
        };
        if let Some(value) = found {
            if let Some(Pending::Record(reply)) = self.queries.remove(&id) {
                let _ = reply.send(Ok(value));
            }
            if let Some(mut q) = swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        } else if last && let Some(Pending::Record(reply)) = self.queries.remove(&id) {
            let _ = reply.send(Err(NetError::Kademlia("record not found".into())));
        }
    }
}

/// A Kademlia record must be a signed service record stored under its own key.
fn check_record(record: &kad::Record) -> Result<(), String> {
    let signed: Signed<ServiceRecord> =
        wire::decode(&record.value, MAX_PACKAGE_MESSAGE).map_err(|e| e.to_string())?;
    let service = signed
        .verify(domains::SERVICE_RECORD, now_ms(), MAX_PACKAGE_MESSAGE)
        .map_err(|e| e.to_string())?;
    service.check().map_err(|e| e.to_string())?;
    if record.key.as_ref() != record_key(&service.service_hash).as_slice() {
        return Err("record stored under another key".into());
    }
    Ok(())
}
