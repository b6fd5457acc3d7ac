//! Kademlia without its bootstrap's dials. libp2p-kad bootstraps (a lookup of the node's
//! own key, then one per bucket) whenever a peer enters a routing table of fewer than
//! 20 peers, which every node does while it starts; there is no setting to turn it off.
//! Here the routing table is filled only by the node (`BucketInserts::Manual`, from
//! signed announcements and identify), so what a bootstrap's lookups discover is never
//! inserted: its only effect was its dials, a few hundred connections per node to peers
//! it is not connected to, each opened, counted against the peer's bound and closed
//! again. In the simulation of 100 nodes those dials were almost every connection
//! opened in the first minutes, and what kept the connections above their bound.
//!
//! [`GatedKad`] wraps Kademlia and refuses the dials it asks for while the only queries
//! in progress are bootstraps: a refused dial is reported to Kademlia as a failed one at
//! once, so the lookup goes on with the peers already connected and ends in a round
//! trip. The node's own queries (providers, records, publishing) dial as before; a
//! bootstrap that runs beside one of them dials too (the two cannot be told apart).

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::kad::{self, store::MemoryStore};
use libp2p::swarm::behaviour::{DialFailure, FromSwarm};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, DialError, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use prometheus_client::metrics::counter::Counter;
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

/// Kademlia, with its bootstrap's dials refused (see the module's doc).
pub(super) struct GatedKad {
    inner: kad::Behaviour<MemoryStore>,
    /// Dials refused (`mesg_kad_bootstrap_dials_refused_total`).
    refused: Counter,
}

/// Why a dial was refused (reported to Kademlia only).
#[derive(Debug, thiserror::Error)]
#[error("a Kademlia bootstrap does not dial: the routing table is filled from announcements")]
struct BootstrapDoesNotDial;

impl GatedKad {
    pub(super) fn new(inner: kad::Behaviour<MemoryStore>, refused: Counter) -> GatedKad {
        GatedKad { inner, refused }
    }

    /// Only bootstraps are running: what they would dial is not needed.
    fn only_bootstraps(&mut self) -> bool {
        let mut any = false;
        for q in self.inner.iter_queries() {
            if !matches!(q.info(), kad::QueryInfo::Bootstrap { .. }) {
                return false;
            }
            any = true;
        }
        any
    }
}

impl Deref for GatedKad {
    type Target = kad::Behaviour<MemoryStore>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for GatedKad {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl NetworkBehaviour for GatedKad {
    type ConnectionHandler = <kad::Behaviour<MemoryStore> as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = kad::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<kad::Event, THandlerInEvent<Self>>> {
        loop {
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::Dial { opts }) if self.only_bootstraps() => {
                    self.refused.inc();
                    let error = DialError::Denied {
                        cause: ConnectionDenied::new(BootstrapDoesNotDial),
                    };
                    // Kademlia alone saw the dial: it alone hears that it failed.
                    self.inner
                        .on_swarm_event(FromSwarm::DialFailure(DialFailure {
                            peer_id: opts.get_peer_id(),
                            error: &error,
                            connection_id: opts.connection_id(),
                        }));
                }
                other => return other,
            }
        }
    }
}
