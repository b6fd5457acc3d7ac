//! Gossipsub traffic of the swarm: publishing, (un)subscribing, and checking each
//! message that arrives before gossipsub forwards it and the engine sees it (frame,
//! envelope signature, expiry, topic, and that the signer is the publisher, except for
//! announcements, which any node may publish again: they are signed by the node they
//! describe, expire, and only a newer one replaces an older).

use super::behaviour::Behaviour;
use super::swarm::EventSink;
use super::{ANNOUNCE_TOPIC, ANNOUNCE_TOPIC_V1, NetError, NetworkEvent, events_topic};
use libp2p::{PeerId, Swarm, gossipsub};
use mesg_protocol::messages::GossipMessage;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_GOSSIP_MESSAGE;
use mesg_protocol::{PublicKey, now_ms, wire};
use tokio::sync::oneshot;

pub(super) fn publish(
    swarm: &mut Swarm<Behaviour>,
    topic: String,
    data: Vec<u8>,
    reply: oneshot::Sender<Result<(), NetError>>,
) {
    let result = swarm
        .behaviour_mut()
        .gossipsub
        .publish(gossipsub::IdentTopic::new(topic), data)
        .map(|_| ())
        .map_err(|e| NetError::Gossip(e.to_string()));
    let _ = reply.send(result);
}

pub(super) fn subscribe(swarm: &mut Swarm<Behaviour>, topic: String, subscribe: bool) {
    let t = gossipsub::IdentTopic::new(topic.clone());
    let gossipsub = &mut swarm.behaviour_mut().gossipsub;
    if subscribe {
        if let Err(e) = gossipsub.subscribe(&t) {
            tracing::warn!("cannot subscribe to {topic}: {e:?}");
        }
    } else {
        gossipsub.unsubscribe(&t);
    }
}

/// Validate a message (gossipsub waits for the verdict before forwarding it) and hand
/// the valid ones to the engine.
pub(super) async fn on_message(
    swarm: &mut Swarm<Behaviour>,
    events: &EventSink,
    propagation_source: PeerId,
    message_id: gossipsub::MessageId,
    message: gossipsub::Message,
) {
    let verdict = check_gossip(&message);
    let acceptance = match &verdict {
        Ok(_) => gossipsub::MessageAcceptance::Accept,
        Err(reason) => {
            tracing::debug!(peer = %propagation_source, "gossip rejected: {reason}");
            gossipsub::MessageAcceptance::Reject
        }
    };
    swarm
        .behaviour_mut()
        .gossipsub
        .report_message_validation_result(&message_id, &propagation_source, acceptance);
    if let (Ok(msg), Some(source)) = (verdict, message.source) {
        events
            .emit(NetworkEvent::Gossip {
                source,
                message: msg,
            })
            .await;
    }
}

/// Check a gossip message alone: frame, envelope, expiry, and (but for announcements)
/// that the envelope's signer is the peer that published it.
fn check_gossip(message: &gossipsub::Message) -> Result<GossipMessage, String> {
    let decoded: GossipMessage =
        wire::decode_frame(&message.data, MAX_GOSSIP_MESSAGE).map_err(|e| e.to_string())?;
    let topic = message.topic.as_str();
    let signer = match &decoded {
        GossipMessage::Announce(s) => {
            if topic != ANNOUNCE_TOPIC {
                return Err(format!("announcement on topic {topic}"));
            }
            // Signed by the node it describes (the signer is checked against the claimed
            // node when it is applied), and passed on by whoever learned it in a peer
            // exchange (how a healed partition's sides learn what changed): the
            // publisher need not be the signer.
            s.verify(domains::ANNOUNCEMENT, now_ms(), MAX_GOSSIP_MESSAGE)
                .map_err(|e| e.to_string())?;
            return Ok(decoded);
        }
        GossipMessage::AnnounceV1(s) => {
            if topic != ANNOUNCE_TOPIC_V1 {
                return Err(format!("announcement on topic {topic}"));
            }
            s.verify(domains::ANNOUNCEMENT_V1, now_ms(), MAX_GOSSIP_MESSAGE)
                .map_err(|e| e.to_string())?;
            s.signer()
        }
        GossipMessage::Event(s) => {
            let event = s
                .verify(domains::EVENT, now_ms(), MAX_GOSSIP_MESSAGE)
                .map_err(|e| e.to_string())?;
            if topic != events_topic(&event.service_hash) {
                return Err(format!("event of {} on topic {topic}", event.service_hash));
            }
            s.signer()
        }
    };
    let source = message.source.ok_or("unsigned gossip message")?;
    if PublicKey::from_peer_id(&source) != Some(signer) {
        return Err(format!("signed by {signer} but published by {source}"));
    }
    Ok(decoded)
}
