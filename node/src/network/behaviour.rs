//! What the swarm speaks: the combined libp2p behaviour (connection limits, identify,
//! ping, Kademlia, gossipsub, request-response for work and packages, and for peers
//! behind NAT: AutoNAT, the circuit relay v2 client and optional server, DCUtR; see
//! `nat`), its settings, and
//! the construction of the `Swarm` from the node's key and [`NetworkConfig`].
//!
//! Kept apart from the task that drives the swarm so that the protocol choices (names,
//! limits, timeouts, scores) read in one place.

use super::codec::FrameCodec;
use super::kad_gate::GatedKad;
use super::nat;
use super::{ANNOUNCE_TOPIC, ANNOUNCE_TOPIC_V1, EVENTS_TOPIC_PREFIX, NetworkConfig};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, autonat, connection_limits, dcutr, gossipsub, identify, kad, noise,
    ping, relay, request_response, tcp, yamux,
};
use mesg_protocol::messages::{PackageRequest, PackageResponse, WorkRequest, WorkResponse};
use mesg_protocol::wire::{MAX_GOSSIP_MESSAGE, MAX_PACKAGE_MESSAGE, MAX_WORK_MESSAGE};
use mesg_protocol::{Keypair, ServiceHash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

type WorkCodec = FrameCodec<WorkRequest, WorkResponse, MAX_WORK_MESSAGE>;
type PackageCodec = FrameCodec<PackageRequest, PackageResponse, MAX_PACKAGE_MESSAGE>;

/// Concurrent work streams on one connection (inbound and outbound together; a peer has
/// at most 4 connections). Each inbound stream may hold a frame of up to
/// `LARGE_WORK_MESSAGE` (4 MiB) while it arrives, so this bounds what one peer can pin:
/// 256 × 4 MiB per connection, and only for bytes it really sends, until the request
/// timeout; frames above that, up to `MAX_WORK_MESSAGE` (16 MiB), share one node-wide
/// budget (`codec::LARGE_FRAME_BUDGET`). Four times the 64 requests in flight of the routing benchmark, whose results
/// flow back on the same connection. (Was 1,024, with the whole frame reserved up front.)
pub const MAX_WORK_STREAMS: usize = 256;

/// How often Kademlia refreshes its whole routing table (libp2p's default: 5 minutes).
const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Only our topics may be subscribed to (ours or a peer's subscriptions).
#[derive(Debug, Default, Clone)]
pub struct TopicWhitelist;

impl gossipsub::TopicSubscriptionFilter for TopicWhitelist {
    fn can_subscribe(&mut self, topic: &gossipsub::TopicHash) -> bool {
        let t = topic.as_str();
        t == ANNOUNCE_TOPIC
            || t == ANNOUNCE_TOPIC_V1
            || t.strip_prefix(EVENTS_TOPIC_PREFIX)
                .is_some_and(|h| h.parse::<ServiceHash>().is_ok())
    }
}

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    /// Kademlia, its bootstrap's dials refused (`kad_gate`).
    pub(super) kad: GatedKad,
    pub(super) gossipsub: gossipsub::Behaviour<gossipsub::IdentityTransform, TopicWhitelist>,
    pub(super) work: request_response::Behaviour<WorkCodec>,
    pub(super) package: request_response::Behaviour<PackageCodec>,
    /// Dials through relays and keeps reservations on them (every node).
    pub(super) relay_client: relay::client::Behaviour,
    /// Relays others' circuits (`--relay-server` only).
    pub(super) relay_server: Toggle<relay::Behaviour>,
    pub(super) autonat: autonat::Behaviour,
    /// Upgrades relayed connections to direct ones (hole punching).
    pub(super) dcutr: dcutr::Behaviour,
    /// Peers this node refuses connections with (none unless asked: the simulation's
    /// partition, `NetworkHandle::set_blocked`). Kept last and apart: not a node flag.
    pub(super) blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
}

/// Build the swarm (transports, behaviour, metrics); it neither listens nor dials yet.
pub(super) fn build_swarm(
    key: &Keypair,
    config: &NetworkConfig,
    registry: &mut libp2p::metrics::Registry,
) -> anyhow::Result<Swarm<Behaviour>> {
    let identity = key.to_libp2p();
    let request_timeout = config.request_timeout;
    let max_connections = config.max_connections;
    let relay_server = config.relay_server;
    let private_network = config.private_network;
    let bootstrap_dials_refused = prometheus_client::metrics::counter::Counter::default();
    registry.register(
        "mesg_kad_bootstrap_dials_refused",
        "Dials of Kademlia bootstraps refused (kad_gate)",
        bootstrap_dials_refused.clone(),
    );
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_dns()?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            let peer = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(StreamProtocol::new("/mesg/kad/1.0.0"));
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            kad_config.set_query_timeout(Duration::from_secs(10));
            kad_config.set_max_packet_size(MAX_PACKAGE_MESSAGE);
            // Peers enter the routing table only through `PeerBook` (announcements,
            // identify), never into a full bucket: Kademlia alone inserts every peer that
            // connects and, when its bucket is full, dials the bucket's oldest
            // disconnected entry to check on it; each such dial was a connection whose own
            // insertion dialled again (most of the connections a node opened at idle in
            // the simulation). Announcements already say who is alive.
            kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
            // Its whole-table refresh (a lookup per bucket) is not needed: the table is
            // filled from announcements. It still runs when a peer enters a table of
            // fewer than 20 (libp2p's automatic bootstrap, which cannot be turned off:
            // every start), without dialling (`kad_gate`).
            kad_config.set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL));
            let mut kad =
                kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config()?,
                TopicWhitelist,
            )?;
            gossipsub.with_peer_score(score_params(), gossipsub::PeerScoreThresholds::default())?;
            let rr = request_response::Config::default()
                .with_request_timeout(request_timeout)
                .with_max_concurrent_streams(MAX_WORK_STREAMS);
            // Package chunks are up to 1 MiB: give them longer than small work messages.
            let rr_package = request_response::Config::default()
                .with_request_timeout(request_timeout * 6)
                .with_max_concurrent_streams(64);
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(max_connections))
                        .with_max_established_per_peer(Some(4))
                        .with_max_pending_incoming(Some(128)),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/mesg/id/1.0.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad: GatedKad::new(kad, bootstrap_dials_refused),
                gossipsub,
                work: request_response::Behaviour::new(
                    [(
                        StreamProtocol::new("/mesg/work/1"),
                        request_response::ProtocolSupport::Full,
                    )],
                    rr,
                ),
                package: request_response::Behaviour::new(
                    [(
                        StreamProtocol::new("/mesg/package/1"),
                        request_response::ProtocolSupport::Full,
                    )],
                    rr_package,
                ),
                relay_client,
                relay_server: Toggle::from(relay_server.then(|| {
                    let mut server = relay::Behaviour::new(peer, nat::relay_server_config());
                    // The operator says this node is reachable: offer the protocol
                    // whatever AutoNAT concludes.
                    server.set_status(Some(relay::Status::Enable));
                    server
                })),
                autonat: autonat::Behaviour::new(peer, nat::autonat_config(private_network)),
                dcutr: dcutr::Behaviour::new(peer),
                blocked: libp2p::allow_block_list::Behaviour::default(),
            })
        })
        .map_err(|e| anyhow::anyhow!("network behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

fn gossip_config() -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(700))
        // Publish to the topic mesh, not to every connected peer: flooding made each
        // message cost one copy per connection at every publisher. The mesh (libp2p's
        // degrees: 6, between 5 and 12) carries it to every subscriber in a few hops.
        .flood_publish(false)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_MESSAGE + 4096)
        .duplicate_cache_time(Duration::from_secs(120))
        // Content-hash ids: the same message published twice is one message.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(mesg_protocol::Hash32::sha256(&m.data).0.to_vec())
        })
        .build()
        .map_err(|e| e.to_string())
}

/// Gossipsub peer-score parameters: libp2p's defaults, except that loopback peers are
/// exempt from the IP colocation penalty. Many nodes on one machine (a loopback benchmark,
/// local tests) all connect from 127.0.0.1 / ::1; past the colocation threshold each one
/// would score below the graylist threshold and the mesh would never form. Any other
/// address, private or docker-bridge ones included, keeps the default threshold.
fn score_params() -> gossipsub::PeerScoreParams {
    let mut params = gossipsub::PeerScoreParams::default();
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    params
}

#[cfg(test)]
mod tests {
    use super::{IpAddr, Ipv4Addr, Ipv6Addr, gossipsub, score_params};

    #[test]
    fn score_params_exempt_only_loopback_from_colocation() {
        let params = score_params();
        params.validate().expect("valid score params");
        let whitelist = &params.ip_colocation_factor_whitelist;
        assert!(whitelist.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(whitelist.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(whitelist.len(), 2);
        // Everything else keeps libp2p's colocation penalty.
        let default = gossipsub::PeerScoreParams::default();
        assert_eq!(
            params.ip_colocation_factor_weight,
            default.ip_colocation_factor_weight
        );
        assert_eq!(
            params.ip_colocation_factor_threshold,
            default.ip_colocation_factor_threshold
        );
    }
}
