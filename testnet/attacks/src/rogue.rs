//! A rogue peer: a libp2p node built from the project's own network crate
//! (`mesg_node::network::spawn`) with its own key, joined to a real node through
//! bootstrap, that sends what an honest node never would: announcements with lies (load,
//! addresses, instances it does not run, a short life), events it has no right to
//! publish or with bad data, replays of its own signed messages, envelopes whose nonce
//! was used before. Each attack case in `tests/peer_*.rs` drives one.

pub use mesg_node::network::events_topic;
use mesg_node::network::{self, ANNOUNCE_TOPIC, NetError, NetworkConfig, NetworkEvent};
use mesg_protocol::messages::{GossipMessage, PackageResponse, Reject, RejectCode, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE};
use mesg_protocol::{
    Announcement, Event, EventId, Hash32, InstanceHash, Json, Keypair, PublicKey, ServiceHash,
    ServiceOffer, Signed, now_ms,
};
use mesg_testkit::NodeProcess;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the rogue answers the executions routed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSubmit {
    /// `Busy`: it never takes work.
    Refuse,
    /// `Accepted`, then never a result: work sent there is lost until its deadline.
    AcceptAndVanish,
}

/// A rogue peer connected to one real node.
#[derive(Debug)]
pub struct Rogue {
    pub key: Keypair,
    pub net: network::NetworkHandle,
    /// Execution requests (`Submit`) it received.
    pub submits: Arc<AtomicUsize>,
    handler: tokio::task::JoinHandle<()>,
    /// Stops its swarm task ([`Rogue::shutdown`]); none for another handle on the same
    /// rogue ([`Rogue::from_parts`]), which does not own the swarm.
    stop: Option<CancellationToken>,
}

impl Rogue {
    /// A rogue with a fresh key, connected to `target`.
    pub async fn join(target: &NodeProcess, on_submit: OnSubmit) -> Rogue {
        Rogue::join_as(Keypair::generate().expect("key"), target, on_submit).await
    }

    /// A rogue with `key` (e.g. the same identity again after [`Rogue::shutdown`]),
    /// connected to `target`.
    pub async fn join_as(key: Keypair, target: &NodeProcess, on_submit: OnSubmit) -> Rogue {
        let stop = CancellationToken::new();
        let (net, mut events) = network::spawn(
            &key,
            NetworkConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
                bootstrap: vec![target.p2p_addr().parse().expect("addr")],
                private_network: true,
                ..NetworkConfig::default()
            },
            &mut Default::default(),
            stop.clone(),
        )
        .expect("rogue network");
        let submits = Arc::new(AtomicUsize::new(0));
        let handler = {
            let net = net.clone();
            let submits = submits.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        NetworkEvent::Work {
                            request, channel, ..
                        } => {
                            let answer = match request {
                                mesg_protocol::messages::WorkRequest::Submit(_) => {
                                    submits.fetch_add(1, Ordering::SeqCst);
                                    match on_submit {
                                        OnSubmit::Refuse => WorkResponse::Rejected(Reject::new(
                                            RejectCode::Busy,
                                            "rogue",
                                        )),
                                        OnSubmit::AcceptAndVanish => WorkResponse::Accepted,
                                    }
                                }
                                _ => WorkResponse::Accepted,
                            };
                            net.respond_work(channel, answer).await;
                        }
                        NetworkEvent::Package { channel, .. } => {
                            net.respond_package(channel, PackageResponse::NotFound("rogue".into()))
                                .await;
                        }
                        _ => {}
                    }
                }
            })
        };
        let rogue = Rogue {
            key,
            net,
            submits,
            handler,
            stop: Some(stop),
        };
        let target_peer = target.node_info()["peer_id"]
            .as_str()
            .expect("peer id")
            .to_string();
        for _ in 0..150 {
            let peers = rogue.net.peers().await.unwrap_or_default();
            if peers
                .iter()
                .any(|p| p.peer_id == target_peer && p.connected)
            {
                return rogue;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the rogue peer did not connect to the node");
    }

    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// A plain request of `echo` on `service` from this rogue (as requester and node),
    /// unsigned: cases change what they attack, then sign it.
    pub fn echo_request(
        &self,
        service: ServiceHash,
        message: &str,
    ) -> mesg_protocol::ExecutionRequest {
        mesg_protocol::ExecutionRequest {
            execution_id: mesg_protocol::ExecutionId::random(),
            service_hash: service,
            task_key: "echo".into(),
            inputs: mesg_protocol::Json(serde_json::json!({ "message": message })),
            requester: self.public(),
            requester_node: self.public(),
            parent: None,
            process: None,
            tags: vec![],
            timeout_ms: 10_000,
            created_at: mesg_protocol::now_ms(),
            cause: None,
            idempotency_key: None,
            max_price: None,
            verify: None,
        }
    }

    /// Another handle on the same rogue (to announce from a background task); it does
    /// not answer work requests.
    pub fn from_parts(key: Keypair, net: network::NetworkHandle) -> Rogue {
        Rogue {
            key,
            net,
            submits: Arc::new(AtomicUsize::new(0)),
            handler: tokio::spawn(async {}),
            stop: None,
        }
    }

    /// Publish a signed gossip message on `topic`, retrying while the node's
    /// subscription is not known yet. Returns the frame that went out.
    pub async fn publish(&self, topic: String, message: GossipMessage) -> Vec<u8> {
        let frame = wire::encode_frame(&message, MAX_GOSSIP_MESSAGE).expect("frame");
        self.publish_frame(topic, frame.clone())
            .await
            .expect("published");
        frame
    }

    /// Publish an encoded frame as is (a replay), retrying for a while.
    pub async fn publish_frame(&self, topic: String, frame: Vec<u8>) -> Result<(), NetError> {
        let mut last = Err(NetError::Stopped);
        for _ in 0..100 {
            last = self.net.publish(topic.clone(), frame.clone()).await;
            if last.is_ok() {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    }

    /// Announce `services` at `addrs`, valid for `ttl_ms`, signed with its own key.
    pub async fn announce(&self, services: Vec<ServiceOffer>, addrs: Vec<String>, ttl_ms: u64) {
        let a = Announcement {
            node: self.public(),
            seq: now_ms(),
            addrs,
            services,
            ttl_ms,
        };
        let signed = Signed::sign(
            &self.key,
            domains::ANNOUNCEMENT,
            &a,
            now_ms(),
            ttl_ms.max(1_000),
            MAX_GOSSIP_MESSAGE,
        )
        .expect("sign");
        self.publish(ANNOUNCE_TOPIC.to_string(), GossipMessage::Announce(signed))
            .await;
    }

    /// An event "of" `instance` of `service` that this rogue emits.
    pub fn event(
        &self,
        service: ServiceHash,
        instance: InstanceHash,
        key: &str,
        data: serde_json::Value,
    ) -> Event {
        Event {
            id: EventId::random(),
            service_hash: service,
            instance_hash: instance,
            key: key.to_string(),
            data: Json(data),
            emitter: self.public(),
            created_at: now_ms(),
            cause: None,
            seq: 0,
        }
    }

    /// Sign `event` with its own key and publish it; returns the envelope (to replay).
    pub async fn publish_event(&self, event: &Event) -> Signed<Event> {
        let signed = Signed::sign(
            &self.key,
            domains::EVENT,
            event,
            now_ms(),
            600_000,
            MAX_GOSSIP_MESSAGE,
        )
        .expect("sign");
        self.publish(
            events_topic(&event.service_hash),
            GossipMessage::Event(signed.clone()),
        )
        .await;
        signed
    }

    /// Disconnect for good: the swarm stops and its connections close.
    pub async fn shutdown(self) {
        self.handler.abort();
        let _ = self.handler.await;
        // The swarm task closes its connections, then ends.
        if let Some(stop) = &self.stop {
            stop.cancel();
            self.net.stopped().await;
        }
        drop(self.net);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An offer of `service` with a made-up instance and a claimed load.
pub fn offer(service: ServiceHash, in_flight: u32) -> ServiceOffer {
    ServiceOffer {
        service_hash: service,
        sid: None,
        instance_hash: fake_instance(service),
        in_flight,
        claim: None,
    }
}

/// The instance hash a rogue claims for `service`.
pub fn fake_instance(service: ServiceHash) -> InstanceHash {
    InstanceHash(Hash32::sha256(service.as_bytes()))
}

/// A counter or gauge of a node's `/metrics` (0 when absent).
pub async fn metric(api: &crate::Api, name: &str) -> f64 {
    let reply = api.get("/metrics").await;
    let text = reply.body.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Wait until `metric(name)` reaches `at_least`; returns its value.
pub async fn wait_metric(api: &crate::Api, name: &str, at_least: f64) -> f64 {
    let mut v = 0.0;
    for _ in 0..150 {
        v = metric(api, name).await;
        if v >= at_least {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} stayed at {v}, expected at least {at_least}");
}

/// Deploy a service directory and start an instance; returns (service, instance).
pub async fn deploy_and_start(api: &crate::Api, dir: &std::path::Path) -> (String, String) {
    let done = api.deploy(dir).await;
    assert_eq!(done["type"], "done", "{done}");
    let hash = done["service"]["hash"]
        .as_str()
        .expect("service hash")
        .to_string();
    let inst = api
        .post(
            "/v1/instances",
            &serde_json::json!({"service": hash, "env": {}}),
        )
        .await;
    assert_eq!(inst.status, 201, "{}", inst.body);
    let instance = inst.body["hash"].as_str().expect("instance").to_string();
    for _ in 0..300 {
        if api.get(&format!("/v1/instances/{instance}")).await.body["connected"] == true {
            return (hash, instance);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("instance {instance} did not connect");
}

/// Events in the node's recent list (`GET /v1/events`).
pub async fn recent_events(api: &crate::Api) -> Vec<serde_json::Value> {
    api.get("/v1/events?limit=1000").await.body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Subscribe the node to `service`'s network events (an SSE client) while the returned
/// response lives.
pub async fn watch_events(api: &crate::Api, service: &str) -> reqwest::Response {
    let resp = api
        .request(
            reqwest::Method::GET,
            &format!("/v1/events/stream?service={service}"),
        )
        .send()
        .await
        .expect("event stream");
    assert_eq!(resp.status().as_u16(), 200, "event stream");
    resp
}

/// Wait until the node lists `node` in its provider table (its announcement is in).
pub async fn wait_known(api: &crate::Api, node: &PublicKey) {
    let key = node.to_string();
    for _ in 0..150 {
        let v = api.get("/v1/peers").await.body;
        if v["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["node"] == key.as_str()))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node never listed {key}");
}

/// Submit `signed` to `to`, retrying while the connection is being set up; the answer.
pub async fn submit_until_answered(
    rogue: &Rogue,
    to: network::PeerId,
    signed: Signed<mesg_protocol::ExecutionRequest>,
) -> mesg_protocol::messages::WorkResponse {
    let mut answer = Err(network::NetError::Stopped);
    for _ in 0..50 {
        answer = rogue
            .net
            .send_work(
                to,
                mesg_protocol::messages::WorkRequest::Submit(signed.clone()),
            )
            .await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answer.expect("the victim answers")
}

/// The code and message of a refusal (panics on any other answer).
pub fn refused(
    answer: mesg_protocol::messages::WorkResponse,
) -> (mesg_protocol::messages::RejectCode, String) {
    match answer {
        mesg_protocol::messages::WorkResponse::Rejected(r) => (r.code, r.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Sign `payload` like [`Signed::sign`] but with a chosen nonce (an honest signer never
/// reuses one).
pub fn sign_with_nonce<
    T: serde::Serialize + serde::de::DeserializeOwned + mesg_protocol::Claims,
>(
    key: &Keypair,
    domain: &str,
    payload: &T,
    nonce: mesg_protocol::envelope::Nonce,
) -> Signed<T> {
    let mut signed = Signed::sign(
        key,
        domain,
        payload,
        now_ms(),
        60_000,
        wire::MAX_WORK_MESSAGE,
    )
    .expect("sign");
    signed.header.nonce = nonce;
    let mut msg = b"mesg-envelope-v1\0".to_vec();
    msg.extend_from_slice(&wire::encode(&signed.header, 4096).expect("header"));
    msg.extend_from_slice(&signed.payload.0);
    signed.signature = mesg_protocol::Bytes(key.sign(&msg).to_vec());
    signed
}
