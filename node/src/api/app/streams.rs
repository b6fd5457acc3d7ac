//! The two streaming answers of the API: newline-delimited JSON (a deploy's progress,
//! container logs) and server-sent events (executions, events, process runs).

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// One line of newline-delimited JSON.
pub(super) fn ndjson<T: Serialize>(v: &T) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A newline-delimited JSON answer, sent as its lines come.
pub(super) fn ndjson_response<S>(stream: S) -> Response
where
    S: Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// An event named `name` carrying `v` as JSON.
/// The answer of a long operation as newline-delimited JSON: a line per step received on
/// `steps` while `work` runs, then one line with its outcome (`done`, or `error` with the
/// API error it would have answered). Deploy and instance start speak it.
pub(super) fn progress_response<P, T, L>(
    mut steps: tokio::sync::mpsc::Receiver<P>,
    work: tokio::task::JoinHandle<Result<T, crate::engine::EngineError>>,
    step: impl Fn(P) -> L + Send + 'static,
    done: impl Fn(T) -> L + Send + 'static,
    error: impl Fn(mesg_api_types::ApiError) -> L + Send + 'static,
) -> Response
where
    P: Send + 'static,
    T: Send + 'static,
    L: Serialize + Send + 'static,
{
    let stream = async_stream::stream! {
        while let Some(p) = steps.recv().await {
            yield Ok::<_, Infallible>(ndjson(&step(p)));
        }
        let last = match work.await {
            Ok(Ok(value)) => done(value),
            Ok(Err(e)) => error(crate::api::ApiErr::from(e).bounded_body()),
            Err(e) => error(mesg_api_types::ApiError {
                code: "internal".into(),
                message: e.to_string(),
                details: Vec::new(),
            }),
        };
        yield Ok(ndjson(&last));
    };
    ndjson_response(stream)
}

pub(super) fn sse_json<T: Serialize>(name: &str, v: &T) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(v)
        .unwrap_or_default()
}

/// The `lagged` event: the client was too slow and missed some events.
pub(super) fn sse_lagged(lagged: BroadcastStreamRecvError) -> SseEvent {
    SseEvent::default().event("lagged").data(lagged.to_string())
}

/// A server-sent events answer, with keep-alives.
pub(super) fn sse_response<S>(stream: S) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
