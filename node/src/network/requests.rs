//! Request-response traffic of the swarm: work (`/mesg/work/1`: submits, results,
//! cancels) and packages (`/mesg/package/1`). Outbound requests wait here for their
//! answer; inbound ones go to the engine as [`NetworkEvent`]s with the channel to answer
//! on.
//!
//! Each step is logged with its `peer` and libp2p request id (requests in, responses
//! out, requests out, responses or failures in), so one peer's work can be followed.

use super::behaviour::Behaviour;
use super::swarm::EventSink;
use super::{NetError, NetworkEvent};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, Swarm};
use mesg_protocol::messages::{PackageRequest, PackageResponse, WorkRequest, WorkResponse};
use std::collections::HashMap;
use tokio::sync::oneshot;

type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// Outbound requests waiting for their answer, by request id.
#[derive(Default)]
pub(super) struct PendingRequests {
    work: HashMap<OutboundRequestId, Reply<WorkResponse>>,
    package: HashMap<OutboundRequestId, Reply<PackageResponse>>,
}

impl PendingRequests {
    pub(super) fn send_work(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: WorkRequest,
        reply: Reply<WorkResponse>,
    ) {
        let kind = work_kind(&request);
        let id = swarm.behaviour_mut().work.send_request(&peer, request);
        tracing::debug!(peer = %peer, request = %id, kind, "work request out");
        self.work.insert(id, reply);
    }

    pub(super) fn respond_work(
        swarm: &mut Swarm<Behaviour>,
        channel: ResponseChannel<WorkResponse>,
        response: WorkResponse,
    ) {
        if swarm
            .behaviour_mut()
            .work
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!("work response not sent: the requester is gone");
        }
    }

    pub(super) fn send_package(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: PackageRequest,
        reply: Reply<PackageResponse>,
    ) {
        let id = swarm.behaviour_mut().package.send_request(&peer, request);
        tracing::debug!(peer = %peer, request = %id, "package request out");
        self.package.insert(id, reply);
    }

    pub(super) fn respond_package(
        swarm: &mut Swarm<Behaviour>,
        channel: ResponseChannel<PackageResponse>,
        response: PackageResponse,
    ) {
        if swarm
            .behaviour_mut()
            .package
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!("package response not sent: the requester is gone");
        }
    }

    pub(super) async fn on_work_event(
        &mut self,
        events: &EventSink,
        event: request_response::Event<WorkRequest, WorkResponse>,
    ) {
        let describe = |r: &WorkResponse| {
            if matches!(r, WorkResponse::Accepted) {
                "work response in (accepted)"
            } else {
                "work response in (rejected)"
            }
        };
        if let Some((peer, request, channel)) =
            on_event("work", &mut self.work, work_kind, describe, event)
        {
            events
                .emit(NetworkEvent::Work {
                    peer,
                    request,
                    channel,
                })
                .await;
        }
    }

    pub(super) async fn on_package_event(
        &mut self,
        events: &EventSink,
        event: request_response::Event<PackageRequest, PackageResponse>,
    ) {
        let describe = |_: &PackageResponse| "package response in";
        if let Some((peer, request, channel)) =
            on_event("package", &mut self.package, |_| "package", describe, event)
        {
            events
                .emit(NetworkEvent::Package {
                    peer,
                    request,
                    channel,
                })
                .await;
        }
    }
}

/// One request-response event of either protocol (`kind`): an answer or a failure goes
/// to the request waiting for it in `pending`; an inbound request is returned, for the
/// engine. Every step is logged with its peer and request id.
fn on_event<Req, Resp>(
    kind: &'static str,
    pending: &mut HashMap<OutboundRequestId, Reply<Resp>>,
    request_kind: impl Fn(&Req) -> &'static str,
    describe: impl Fn(&Resp) -> &'static str,
    event: request_response::Event<Req, Resp>,
) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request_id,
                request,
                channel,
            } => {
                tracing::debug!(peer = %peer, request = %request_id, kind = request_kind(&request), "{kind} request in");
                return Some((peer, request, channel));
            }
            request_response::Message::Response {
                request_id,
                response,
            } => {
                tracing::debug!(peer = %peer, request = %request_id, "{}", describe(&response));
                if let Some(reply) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
        },
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            tracing::debug!(peer = %peer, request = %request_id, "{kind} request failed: {error}");
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(outbound_error(peer, &error)));
            }
        }
        request_response::Event::InboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            tracing::debug!(peer = %peer, request = %request_id, "inbound {kind} request failed: {error}");
        }
        request_response::Event::ResponseSent {
            peer, request_id, ..
        } => {
            tracing::debug!(peer = %peer, request = %request_id, "{kind} response out");
        }
    }
    None
}

fn work_kind(request: &WorkRequest) -> &'static str {
    match request {
        WorkRequest::Submit(_) => "submit",
        WorkRequest::Result(_) => "result",
        WorkRequest::Cancel(_) => "cancel",
        WorkRequest::PricedResult { .. } => "priced_result",
        WorkRequest::Settle { .. } => "settle",
        WorkRequest::Commit(_) => "commit",
        WorkRequest::Reveal(_) => "reveal",
        WorkRequest::Exchange(_) => "exchange",
        WorkRequest::EventsSince(_) => "events_since",
        WorkRequest::Reconcile(_) => "reconcile",
        WorkRequest::Receipts(_) => "receipts",
    }
}

fn outbound_error(peer: PeerId, error: &request_response::OutboundFailure) -> NetError {
    match error {
        request_response::OutboundFailure::DialFailure => NetError::Unreachable {
            peer,
            reason: "dial failed".into(),
        },
        other => NetError::Request {
            peer,
            reason: other.to_string(),
        },
    }
}
