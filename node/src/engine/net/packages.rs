//! Services from other nodes: their signed records (from the DHT or a node that runs
//! them) and their packages, downloaded in chunks, hashed before they are parsed, checked
//! against the record and this node's rules, then built; and serving ours to peers
//! (never a package deployed `--private`).

use super::Router;
use crate::engine::error::EngineError;
use crate::network::{NetError, NetworkHandle, package_key, record_key, service_key};
use crate::store::ServiceEntry;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use mesg_protocol::envelope::Signed;
use mesg_protocol::messages::{PackageRequest, PackageResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_PACKAGE_CHUNK};
use mesg_protocol::{Bytes, ServiceHash, ServiceRecord, now_ms};
use std::collections::HashSet;

impl Router {
    pub(super) async fn on_package_request(
        &self,
        _peer: PeerId,
        request: PackageRequest,
        channel: ResponseChannel<PackageResponse>,
    ) {
        let Some(net) = self.network().cloned() else {
            return;
        };
        let response = match request {
            PackageRequest::Record(hash) => match self.store.service(&hash) {
                Ok(Some(entry)) => PackageResponse::Record(entry.signed),
                _ => PackageResponse::NotFound(format!("no service {hash} here")),
            },
            PackageRequest::Chunk { package, .. } if self.services.is_private_package(&package) => {
                PackageResponse::NotFound(format!(
                    "package {package} is private: its publisher deployed it with --private and does not serve it to peers; ask them for the service directory"
                ))
            }
            PackageRequest::Chunk { package, offset } => {
                let path = self.services.package_path(&package);
                match read_chunk(&path, offset).await {
                    Ok((total, data)) => PackageResponse::Chunk {
                        total,
                        data: Bytes(data),
                    },
                    Err(e) => PackageResponse::NotFound(format!("package {package}: {e}")),
                }
            }
        };
        net.respond_package(channel, response).await;
    }

    /// Peers that may hold a service or its package: announced providers, DHT providers.
    pub(super) async fn holders(&self, net: &NetworkHandle, hash: &ServiceHash) -> Vec<PeerId> {
        let me = self.node();
        let mut peers: Vec<PeerId> = self
            .providers()
            .candidates(hash, &me)
            .iter()
            .filter_map(|k| k.peer_id().ok())
            .collect();
        if let Ok(more) = net.providers(service_key(hash)).await {
            peers.extend(more);
        }
        peers
    }

    /// Learn a service this node never saw: its signed record (definition and package
    /// hash), from the DHT or from a node that runs it. Enough to validate and route
    /// executions; [`Engine::fetch_package`] makes it runnable here.
    #[tracing::instrument(skip_all, fields(service = %hash))]
    pub async fn fetch_record(&self, hash: ServiceHash) -> Result<ServiceEntry, EngineError> {
        let not_found = || EngineError::NotFound {
            what: "service (on this node and in the network)",
            id: hash.to_string(),
        };
        let net = self.network().cloned().ok_or_else(not_found)?;
        let mut found: Option<Signed<ServiceRecord>> = None;
        if let Ok(value) = net.get_record(record_key(&hash)).await
            && let Ok(s) = wire::decode::<Signed<ServiceRecord>>(&value, wire::MAX_PACKAGE_MESSAGE)
        {
            found = Some(s);
        }
        if found.is_none() {
            for p in self.holders(&net, &hash).await {
                if let Ok(PackageResponse::Record(s)) =
                    net.send_package(p, PackageRequest::Record(hash)).await
                {
                    found = Some(s);
                    break;
                }
            }
        }
        let signed = found.ok_or_else(not_found)?;
        let record = signed
            .verify(domains::SERVICE_RECORD, now_ms(), wire::MAX_PACKAGE_MESSAGE)
            .map_err(|e| EngineError::BadSignature(format!("service record: {e}")))?;
        record
            .check()
            .map_err(|e| EngineError::InvalidPackage(e.to_string()))?;
        if record.service_hash != hash {
            return Err(EngineError::InvalidPackage(
                "the record is for another service".into(),
            ));
        }
        let entry = ServiceEntry {
            record,
            signed,
            image: None,
            deployed_at: now_ms(),
        };
        // Keep the publisher's claim, to resolve its sid here and announce it with the
        // service if this node runs it one day.
        let announced = self.providers().claims_of(&hash);
        if let Some(sid) = &entry.record.definition.sid {
            for c in announced {
                if c.verify_for(&hash, sid, now_ms()).is_ok() {
                    self.services.store_claim(&c, false)?;
                }
            }
        }
        // Another task may have fetched it meanwhile; a built image is kept.
        self.services.learned(entry).await
    }

    /// Download a known service's package from a node that holds it, check it against the
    /// record's hashes, and build its image here; each step (and the bytes received) told
    /// to `progress` when given.
    #[tracing::instrument(skip_all, fields(service = %entry.record.service_hash))]
    pub async fn fetch_package(
        &self,
        entry: ServiceEntry,
        progress: Option<&Progress>,
    ) -> Result<ServiceEntry, EngineError> {
        let hash = entry.record.service_hash;
        let net = self.network().cloned().ok_or_else(|| {
            EngineError::Conflict(format!("service {hash} has no package on this node"))
        })?;
        let rec = entry.record.clone();
        if rec.package_size > self.services.max_package_bytes() {
            return Err(EngineError::InvalidPackage(format!(
                "package of {} bytes exceeds this node's limit",
                rec.package_size
            )));
        }
        let mut peers = self.holders(&net, &hash).await;
        if let Ok(more) = net.providers(package_key(&rec.package_hash)).await {
            peers.extend(more);
        }
        if let Ok(p) = rec.publisher.peer_id() {
            peers.push(p);
        }
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));
        let mut last_error = String::from("no node holds the package");
        for peer in peers {
            tell(
                progress,
                format!(
                    "fetching package {} ({} bytes) of service {hash} from {peer}",
                    rec.package_hash, rec.package_size
                ),
            )
            .await;
            let tar = match self.download(&net, peer, &rec, progress).await {
                Ok(tar) => tar,
                Err(e) => {
                    last_error = format!("{peer}: {e}");
                    tell(progress, format!("not from {peer}: {e}")).await;
                    continue;
                }
            };
            // Hash first: the bytes of a peer are only hashed (a streaming read that keeps no
            // content) until they match the signed record; only then is the package parsed.
            match mesg_package::hash_tar(&tar, self.services.max_package_bytes()) {
                Ok(h) if h == rec.package_hash => {}
                Ok(h) => {
                    last_error = format!(
                        "{peer} sent package {h}, not {} as the record says",
                        rec.package_hash
                    );
                    continue;
                }
                Err(e) => {
                    last_error = format!("{peer} sent an unreadable package: {e}");
                    continue;
                }
            }
            let (package, definition) = match self.services.check_package(&tar) {
                Ok(checked) => checked,
                Err(e) => {
                    last_error = format!("{peer} sent an invalid package: {e}");
                    continue;
                }
            };
            if package.hash() != rec.package_hash || definition != rec.definition {
                last_error = format!("{peer} sent a package that does not match the record");
                continue;
            }
            // The publisher's Dockerfile and dependencies under this node's rules.
            self.services.check_runnable(&package, &definition).await?;
            drop(package);
            tell(progress, "package checked; building its image".to_string()).await;
            let entry = self.services.install_fetched(entry, tar, progress).await?;
            net.start_providing(package_key(&rec.package_hash)).await;
            tracing::info!(service = %hash, from = %peer, "package fetched from the network and built");
            return Ok(entry);
        }
        Err(EngineError::Network(format!(
            "cannot fetch the package of service {hash}: {last_error}"
        )))
    }

    pub(super) async fn download(
        &self,
        net: &NetworkHandle,
        peer: PeerId,
        rec: &ServiceRecord,
        progress: Option<&Progress>,
    ) -> Result<Vec<u8>, NetError> {
        let mut tar: Vec<u8> = Vec::new();
        // A tar is a little larger than the files it holds.
        let cap = self.services.max_package_bytes() + 16 * 1024 * 1024;
        loop {
            let resp = net
                .send_package(
                    peer,
                    PackageRequest::Chunk {
                        package: rec.package_hash,
                        offset: tar.len() as u64,
                    },
                )
                .await?;
            match resp {
                PackageResponse::Chunk { total, data } => {
                    if total > cap || data.0.is_empty() && (tar.len() as u64) < total {
                        return Err(NetError::Request {
                            peer,
                            reason: "bad package chunk".into(),
                        });
                    }
                    tar.extend_from_slice(&data.0);
                    tell(
                        progress,
                        format!("received {} of {total} bytes from {peer}", tar.len()),
                    )
                    .await;
                    if tar.len() as u64 >= total {
                        return Ok(tar);
                    }
                }
                PackageResponse::NotFound(m) => return Err(NetError::Request { peer, reason: m }),
                PackageResponse::Record(_) => {
                    return Err(NetError::Request {
                        peer,
                        reason: "unexpected answer".into(),
                    });
                }
            }
        }
    }
}

/// Where a long operation reports its steps (lines of text), e.g. to an API client.
pub type Progress = tokio::sync::mpsc::Sender<String>;

/// Report a step, if anyone listens (a client that went away does not stop the work).
pub(crate) async fn tell(progress: Option<&Progress>, message: String) {
    if let Some(p) = progress {
        let _ = p.send(message).await;
    }
}

async fn read_chunk(path: &std::path::Path, offset: u64) -> std::io::Result<(u64, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let total = f.metadata().await?.len();
    f.seek(std::io::SeekFrom::Start(offset.min(total))).await?;
    let want = (total.saturating_sub(offset)).min(MAX_PACKAGE_CHUNK as u64) as usize;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf).await?;
    Ok((total, buf))
}
