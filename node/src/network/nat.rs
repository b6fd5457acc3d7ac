//! Peers behind NAT: whether this node is reachable (AutoNAT), the circuit relay v2
//! server it may run for others (`--relay-server`), and the relay reservations it keeps
//! so that nodes it cannot accept connections from still reach it.
//!
//! Why: a node behind a NAT or a firewall can dial out but nobody can dial it, so work
//! for its services never arrives. With a reservation on a relay (a node that others can
//! dial), it is reachable at `<relay>/p2p/<relay id>/p2p-circuit/p2p/<self>`, an address
//! it announces (signed) like any other; a peer that dials it there gets a relayed
//! connection, which DCUtR then tries to upgrade to a direct one (hole punching).
//!
//! Which relays: the ones the operator names (`--relay`, kept for as long as the node
//! runs), and, when AutoNAT finds the node not reachable and no relay is named, up to
//! [`AUTO_RELAYS`] connected peers that offer the relay protocol (identify). Reservations
//! that fail or close are retried with backoff (1 s doubling to 60 s).

use super::NetError;
use super::behaviour::Behaviour;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, relay};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The protocol a relay server offers (identify lists it).
pub(super) const HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

/// Relays chosen automatically when the node is not reachable and none is named.
pub(super) const AUTO_RELAYS: usize = 2;

/// Relay-capable peers remembered as candidates (identify), at most.
const MAX_CANDIDATES: usize = 32;

/// Reservations held by a relay server, in total and per peer.
pub const RELAY_MAX_RESERVATIONS: usize = 128;
pub const RELAY_MAX_RESERVATIONS_PER_PEER: usize = 4;
/// How long a reservation lasts before the client renews it.
pub const RELAY_RESERVATION_DURATION: Duration = Duration::from_secs(60 * 60);
/// Circuits a relay server carries at once, in total and per peer.
pub const RELAY_MAX_CIRCUITS: usize = 64;
pub const RELAY_MAX_CIRCUITS_PER_PEER: usize = 8;
/// A relayed connection is closed after this long or this many bytes (each way
/// together), whichever comes first; the peers then dial again (a new circuit) unless
/// DCUtR gave them a direct connection. 4 MiB holds announcements, peer exchange and
/// thousands of small work messages; a single work message larger than that (up to
/// 16 MiB) cannot travel over a relay and needs a direct connection.
pub const RELAY_MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(5 * 60);
pub const RELAY_MAX_CIRCUIT_BYTES: u64 = 4 << 20;

/// The period of the AutoNAT server's limits (see [`autonat_config`]).
pub const AUTONAT_THROTTLE: Duration = Duration::from_secs(30);

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The relay server's limits (libp2p's rate limiters per peer and per IP are kept:
/// one reservation and one circuit every two minutes per peer, every minute per IP,
/// with bursts of 30 and 60).
pub(super) fn relay_server_config() -> relay::Config {
    relay::Config {
        max_reservations: RELAY_MAX_RESERVATIONS,
        max_reservations_per_peer: RELAY_MAX_RESERVATIONS_PER_PEER,
        reservation_duration: RELAY_RESERVATION_DURATION,
        max_circuits: RELAY_MAX_CIRCUITS,
        max_circuits_per_peer: RELAY_MAX_CIRCUITS_PER_PEER,
        max_circuit_duration: RELAY_MAX_CIRCUIT_DURATION,
        max_circuit_bytes: RELAY_MAX_CIRCUIT_BYTES,
        ..relay::Config::default()
    }
}

/// AutoNAT (v1): every node asks connected peers to dial it back, and answers such
/// requests: at most 30 per [`AUTONAT_THROTTLE`] in total and 3 per peer (libp2p's
/// figures per second), each for at most 16 addresses. A server dials only the IP it
/// observes the asker at, so a peer cannot make it dial a third host. In a private
/// network (loopback, LAN, Docker) private addresses count too.
pub(super) fn autonat_config(private_network: bool) -> autonat::Config {
    autonat::Config {
        only_global_ips: !private_network,
        throttle_clients_period: AUTONAT_THROTTLE,
        ..autonat::Config::default()
    }
}

/// `addr` (a relay's address ending in `/p2p/<relay id>`, optionally followed by
/// `/p2p-circuit`) as the address to listen on through that relay, and the relay's id.
pub fn relay_listen_addr(addr: &Multiaddr) -> Result<(PeerId, Multiaddr), NetError> {
    let mut base = addr.clone();
    if matches!(base.iter().last(), Some(Protocol::P2pCircuit)) {
        base.pop();
    }
    let bad = |why: &str| NetError::Address(format!("relay {addr}: {why}"));
    if base.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return Err(bad("more than one /p2p-circuit"));
    }
    let Some(Protocol::P2p(relay)) = base.iter().last() else {
        return Err(bad("must end with /p2p/<relay peer id>"));
    };
    if base.iter().count() < 2 {
        return Err(bad("no address before /p2p/<relay peer id>"));
    }
    Ok((relay, base.with(Protocol::P2pCircuit)))
}

/// Whether `addr` goes through a relay.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// One reservation the node wants, and how getting it goes.
struct Slot {
    relay: PeerId,
    addr: Multiaddr,
    listener: Option<ListenerId>,
    reserved: bool,
    backoff: Duration,
    next: Instant,
}

impl Slot {
    fn new(relay: PeerId, addr: Multiaddr) -> Slot {
        Slot {
            relay,
            addr,
            listener: None,
            reserved: false,
            backoff: MIN_BACKOFF,
            next: Instant::now(),
        }
    }
}

/// The reservations this node keeps on relays.
pub(super) struct Relays {
    /// Named by the operator (`--relay`): always kept.
    named: Vec<Slot>,
    /// Chosen among candidates while AutoNAT says the node is not reachable.
    auto: Vec<Slot>,
    /// Connected peers that offer the relay protocol, with an address to reach them.
    candidates: HashMap<PeerId, Multiaddr>,
    /// AutoNAT's verdict: the node is not reachable from outside.
    private: bool,
}

impl Relays {
    pub(super) fn new(named: &[Multiaddr]) -> Result<Relays, NetError> {
        let named = named
            .iter()
            .map(|a| relay_listen_addr(a).map(|(relay, addr)| Slot::new(relay, addr)))
            .collect::<Result<_, _>>()?;
        Ok(Relays {
            named,
            auto: Vec::new(),
            candidates: HashMap::new(),
            private: false,
        })
    }

    /// Ask for the reservations whose time has come (a listener on the relay circuit:
    /// the relay client dials the relay and reserves a slot).
    pub(super) fn tick(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        for slot in self.named.iter_mut().chain(self.auto.iter_mut()) {
            if slot.listener.is_some() || slot.next > now {
                continue;
            }
            slot.next = now + slot.backoff;
            slot.backoff = (slot.backoff * 2).min(MAX_BACKOFF);
            match swarm.listen_on(slot.addr.clone()) {
                Ok(id) => {
                    tracing::debug!(relay = %slot.relay, "asking for a relay reservation");
                    slot.listener = Some(id);
                }
                Err(e) => tracing::warn!(relay = %slot.relay, "relay reservation: {e}"),
            }
        }
    }

    /// A relay accepted (or renewed) a reservation.
    pub(super) fn on_reserved(&mut self, relay: PeerId, renewal: bool) {
        for slot in self.slots_mut().filter(|s| s.relay == relay) {
            slot.reserved = true;
            slot.backoff = MIN_BACKOFF;
        }
        if !renewal {
            tracing::info!(relay = %relay, "relay reservation accepted: reachable through the relay");
        }
    }

    /// A listener closed: when it was a named relay's, the reservation is asked for
    /// again after the backoff; an automatic relay is given up for another candidate.
    pub(super) fn on_listener_closed(&mut self, id: ListenerId, reason: Option<String>) {
        if let Some(at) = self.auto.iter().position(|s| s.listener == Some(id)) {
            let slot = self.auto.remove(at);
            self.candidates.remove(&slot.relay);
            tracing::info!(relay = %slot.relay, reason = reason.as_deref().unwrap_or("closed"), "automatic relay reservation lost");
            self.fill_auto();
            return;
        }
        for slot in self.slots_mut().filter(|s| s.listener == Some(id)) {
            slot.listener = None;
            if slot.reserved {
                slot.backoff = MIN_BACKOFF;
                slot.next = Instant::now() + MIN_BACKOFF;
            }
            slot.reserved = false;
            tracing::info!(relay = %slot.relay, reason = reason.as_deref().unwrap_or("closed"), "relay reservation lost; asking again after {:?}", slot.next.saturating_duration_since(Instant::now()));
        }
    }

    /// A peer's identify: a peer that offers the relay protocol becomes a candidate.
    pub(super) fn on_identify(&mut self, peer: PeerId, offers_hop: bool, addrs: &[Multiaddr]) {
        let direct = addrs.iter().find(|a| !is_circuit(a));
        match direct {
            Some(addr) if offers_hop => {
                if self.candidates.len() < MAX_CANDIDATES || self.candidates.contains_key(&peer) {
                    self.candidates
                        .insert(peer, addr.clone().with(Protocol::P2p(peer)));
                }
            }
            _ => {
                self.candidates.remove(&peer);
            }
        }
    }

    /// A peer's last connection closed: it is no candidate any more.
    /// The relays this node reserves on (or tries to).
    pub(super) fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.named.iter().chain(self.auto.iter()).map(|s| s.relay)
    }

    pub(super) fn on_disconnected(&mut self, peer: PeerId) {
        self.candidates.remove(&peer);
    }

    /// AutoNAT's verdict changed. Not reachable (and no relay named): reserve on up to
    /// [`AUTO_RELAYS`] candidates. Reachable: give automatic reservations up.
    pub(super) fn on_nat_status(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        status: &autonat::NatStatus,
    ) {
        match status {
            autonat::NatStatus::Private => {
                tracing::info!(
                    candidates = self.candidates.len(),
                    "AutoNAT: this node is not reachable from outside"
                );
                self.private = true;
                self.fill_auto();
            }
            autonat::NatStatus::Public(addr) => {
                tracing::info!("AutoNAT: this node is reachable at {addr}");
                self.private = false;
                for slot in self.auto.drain(..) {
                    if let Some(id) = slot.listener {
                        swarm.remove_listener(id);
                    }
                }
            }
            autonat::NatStatus::Unknown => {}
        }
    }

    /// While not reachable, keep [`AUTO_RELAYS`] automatic reservations (none when the
    /// operator named relays).
    pub(super) fn fill_auto(&mut self) {
        if !self.private || !self.named.is_empty() {
            return;
        }
        let mut candidates: Vec<(&PeerId, &Multiaddr)> = self
            .candidates
            .iter()
            .filter(|(p, _)| !self.auto.iter().any(|s| s.relay == **p))
            .collect();
        candidates.sort_by_key(|(p, _)| **p);
        let room = AUTO_RELAYS.saturating_sub(self.auto.len());
        let picked: Vec<Slot> = candidates
            .into_iter()
            .take(room)
            .map(|(p, a)| Slot::new(*p, a.clone().with(Protocol::P2pCircuit)))
            .collect();
        for slot in &picked {
            tracing::info!(relay = %slot.relay, "choosing a relay (not reachable from outside)");
        }
        self.auto.extend(picked);
    }

    fn slots_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.named.iter_mut().chain(self.auto.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    const RELAY: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn relay_addresses_must_name_the_relay() {
        let (id, listen) =
            relay_listen_addr(&a(&format!("/ip4/1.2.3.4/tcp/1/p2p/{RELAY}"))).unwrap();
        assert_eq!(id.to_string(), RELAY);
        assert_eq!(
            listen,
            a(&format!("/ip4/1.2.3.4/tcp/1/p2p/{RELAY}/p2p-circuit"))
        );
        let (_, same) =
            relay_listen_addr(&a(&format!("/ip4/1.2.3.4/tcp/1/p2p/{RELAY}/p2p-circuit"))).unwrap();
        assert_eq!(same, listen);
        for bad in [
            "/ip4/1.2.3.4/tcp/1".to_string(),
            format!("/p2p/{RELAY}"),
            format!("/ip4/1.2.3.4/tcp/1/p2p/{RELAY}/p2p-circuit/p2p-circuit"),
        ] {
            assert!(relay_listen_addr(&a(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn automatic_relays_only_when_not_reachable_and_none_named() {
        let mut relays = Relays::new(&[]).unwrap();
        for _ in 0..5 {
            let p = PeerId::random();
            relays.on_identify(p, true, &[a("/ip4/1.2.3.4/tcp/1")]);
        }
        relays.on_identify(PeerId::random(), false, &[a("/ip4/1.2.3.5/tcp/1")]);
        assert_eq!(relays.candidates.len(), 5);
        relays.fill_auto();
        assert!(relays.auto.is_empty(), "reachable: no automatic relay");
        relays.private = true;
        relays.fill_auto();
        assert_eq!(relays.auto.len(), AUTO_RELAYS);
        assert!(relays.auto.iter().all(|s| is_circuit(&s.addr)));
        let mut named = Relays::new(&[a(&format!("/ip4/1.2.3.4/tcp/1/p2p/{RELAY}"))]).unwrap();
        named.on_identify(PeerId::random(), true, &[a("/ip4/1.2.3.4/tcp/1")]);
        named.private = true;
        named.fill_auto();
        assert!(named.auto.is_empty(), "named relays replace automatic ones");
    }
}
