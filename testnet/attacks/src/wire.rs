//! Tools of the wire attack cases (`tests/wire_*.rs`): hand-made hostile package tars, a
//! minimal rogue peer that speaks the work and package protocols with its own key, and
//! signed execution requests with whatever times it likes. Kept apart from the other
//! helpers' rogue peer so that these cases depend only on the network API itself.

use crate::{Api, Reply};
use mesg_node::network::{self, NetError, NetworkConfig, NetworkHandle, PeerId};
use mesg_protocol::messages::{PackageRequest, PackageResponse, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    ExecutionId, ExecutionRequest, Json, Keypair, PublicKey, ServiceHash, Signed, now_ms,
};
use mesg_testkit::NodeProcess;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A tar whose entries are (name, size written in the header, PAX `size` if any, bytes
/// actually present): what no honest packer writes.
pub fn forged_tar(entries: &[(&str, u64, Option<u64>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, header_size, pax, data) in entries {
        if let Some(size) = pax {
            let rest = format!(" size={size}\n");
            let mut len = rest.len() + 1;
            while len.to_string().len() + rest.len() != len {
                len += 1;
            }
            let body = format!("{len}{rest}");
            let mut h = tar::Header::new_ustar();
            h.set_path("pax").expect("pax name");
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(body.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            pad(&mut out, body.as_bytes());
        }
        let mut h = tar::Header::new_gnu();
        h.set_path(name).expect("entry name");
        h.set_mode(0o644);
        h.set_size(*header_size);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        pad(&mut out, data);
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

fn pad(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
}

/// `POST /v1/services` with raw tar bytes (`?private=true` when asked): the status and
/// the last JSON line (or the error body).
pub async fn post_package(api: &Api, tar: Vec<u8>, private: bool) -> Reply {
    let path = if private {
        "/v1/services?private=true"
    } else {
        "/v1/services"
    };
    let resp = api
        .request(reqwest::Method::POST, path)
        .header("content-type", "application/x-tar")
        .body(tar)
        .send()
        .await
        .expect("the node answers the deploy");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let body = match lines.len() {
        0 => Value::String(text),
        1 => lines[0].clone(),
        _ => json!({"last": lines.last(), "lines": lines}),
    };
    Reply { status, body }
}

/// Deploy a service directory (privately or not) and start an instance; returns the
/// service hash, once the instance's container is connected, and the deploy's lines.
pub async fn deploy_and_start(api: &Api, dir: &std::path::Path, private: bool) -> (String, Value) {
    let pkg = mesg_package::Package::from_dir(dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
        .expect("package");
    let reply = post_package(api, pkg.to_tar_bytes().expect("tar"), private).await;
    assert_eq!(reply.status, 200, "deploy: {}", reply.body);
    let done = &reply.body["last"];
    assert_eq!(done["type"], "done", "deploy: {}", reply.body);
    let hash = done["service"]["hash"].as_str().expect("hash").to_string();
    let inst = api.post("/v1/instances", &json!({"service": hash})).await;
    assert_eq!(inst.status, 201, "start: {}", inst.body);
    let instance = inst.body["hash"].as_str().expect("instance").to_string();
    for _ in 0..400 {
        let v = api.get(&format!("/v1/instances/{instance}")).await;
        if v.body["connected"] == true {
            return (hash, reply.body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance {instance} never connected its task stream");
}

/// An in-process peer with its own key, connected to one target node.
pub struct Rogue {
    pub key: Keypair,
    pub net: NetworkHandle,
    pub target: PeerId,
}

impl std::fmt::Debug for Rogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rogue")
            .field("key", &self.key.public())
            .field("target", &self.target)
            .finish()
    }
}

impl Rogue {
    /// Join `target` and wait until it answers a work request.
    pub async fn join(target: &NodeProcess) -> Rogue {
        let key = Keypair::generate().expect("key");
        let (net, mut events) = network::spawn(
            &key,
            NetworkConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
                bootstrap: vec![target.p2p_addr().parse().expect("addr")],
                ..NetworkConfig::default()
            },
            &mut Default::default(),
            CancellationToken::new(),
        )
        .expect("rogue network");
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let target_key: PublicKey = target.public_key.parse().expect("node key");
        let rogue = Rogue {
            key,
            net,
            target: target_key.peer_id().expect("peer id"),
        };
        // An unknown cancel is answered (refused) once the connection is up.
        for _ in 0..100 {
            let probe = rogue.sign_cancel();
            if rogue
                .net
                .send_work(rogue.target, WorkRequest::Cancel(probe))
                .await
                .is_ok()
            {
                return rogue;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the rogue peer never reached the node");
    }

    fn sign_cancel(&self) -> Signed<mesg_protocol::CancelRequest> {
        let cancel = mesg_protocol::CancelRequest {
            execution_id: ExecutionId::random(),
            requester: self.key.public(),
            reason: "probe".into(),
        };
        Signed::sign(
            &self.key,
            domains::CANCEL,
            &cancel,
            now_ms(),
            60_000,
            MAX_WORK_MESSAGE,
        )
        .expect("sign")
    }

    /// A request of `task` on `service` by this peer, created at `created_at`.
    pub fn request(&self, service: ServiceHash, task: &str, created_at: u64) -> ExecutionRequest {
        request(&self.key, self.key.public(), service, task, created_at)
    }

    pub async fn submit(&self, req: &ExecutionRequest) -> Result<WorkResponse, NetError> {
        let signed = sign(&self.key, req, now_ms());
        self.net
            .send_work(self.target, WorkRequest::Submit(signed))
            .await
    }

    pub async fn package_chunk(
        &self,
        package: mesg_protocol::PackageHash,
    ) -> Result<PackageResponse, NetError> {
        self.net
            .send_package(self.target, PackageRequest::Chunk { package, offset: 0 })
            .await
    }
}

/// A request of `task` on `service`, signed later by `requester`, answered to `node`.
pub fn request(
    requester: &Keypair,
    node: PublicKey,
    service: ServiceHash,
    task: &str,
    created_at: u64,
) -> ExecutionRequest {
    ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: service,
        task_key: task.into(),
        inputs: Json(json!({"message": "x"})),
        requester: requester.public(),
        requester_node: node,
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 10_000,
        created_at,
        cause: None,
        idempotency_key: None,
        max_price: None,
        verify: None,
    }
}

/// Sign `req` with an envelope issued at `issued_at`, valid one minute.
pub fn sign(key: &Keypair, req: &ExecutionRequest, issued_at: u64) -> Signed<ExecutionRequest> {
    Signed::sign(
        key,
        domains::EXECUTION_REQUEST,
        req,
        issued_at,
        60_000,
        MAX_WORK_MESSAGE,
    )
    .expect("sign")
}
