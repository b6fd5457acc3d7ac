//! The HTTP client of a node's Application API: requests with the bearer token, errors
//! mapped to what a person can act on ([`Unreachable`], [`ApiError`]), and the two
//! streaming formats the API uses, parsed here: server-sent events ([`SseParser`]) and
//! newline-delimited JSON ([`LineParser`]).

use anyhow::anyhow;
use futures::StreamExt;
use futures::stream::BoxStream;
use mesg_api_types::ApiError as ErrorBody;
use reqwest::{RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The longest line or event accepted from a stream: a bound, so that a misbehaving
/// server cannot make the CLI grow without limit.
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// No node answers at the URL: the one error every command may hit first.
#[derive(Debug)]
pub struct Unreachable {
    pub url: String,
    pub reason: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no mesg node answers at {} ({}). Start one with `mesg-node`, or point --node / MESG_NODE at a running node.",
            self.url, self.reason
        )
    }
}

impl std::error::Error for Unreachable {}

/// An error answer of the API: `{code, message, details}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Vec<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Decode an error body; a body that is not the API's JSON still gives a readable error.
    pub fn from_body(status: u16, body: &[u8]) -> ApiError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => ApiError {
                status,
                code: b.code,
                message: b.message,
                details: b.details,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let reason = reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                let mut message = format!("the node answered HTTP {status} {reason}");
                if !text.is_empty() {
                    let cut: String = text.chars().take(300).collect();
                    message.push_str(&format!(": {cut}"));
                }
                ApiError {
                    status,
                    code: format!("http_{status}"),
                    message,
                    details: Vec::new(),
                }
            }
        }
    }

    /// An error carried inside a stream (e.g. the last line of a deploy).
    pub fn from_value(v: &serde_json::Value) -> ApiError {
        let body = serde_json::to_vec(v).unwrap_or_default();
        let mut e = ApiError::from_body(0, &body);
        if e.code == "http_0" {
            e.code = "error".into();
            e.message = format!("the node reported an error: {v}");
        }
        e
    }
}

/// The words of the innermost cause of an HTTP failure (`connection refused`, ...).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    let mut last = e.to_string();
    loop {
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                ConnectionRefused => "connection refused".into(),
                ConnectionReset => "connection reset".into(),
                ConnectionAborted => "connection aborted".into(),
                TimedOut => "timed out".into(),
                AddrNotAvailable => "address not available".into(),
                _ => io.to_string(),
            };
        }
        match cur.source() {
            Some(next) => {
                last = next.to_string();
                cur = next;
            }
            None => return last,
        }
    }
}

/// Name of the token file in a node's data dir (mesg-node writes it on first start).
pub const API_TOKEN_FILE: &str = "api.token";

/// A client of one node's Application API.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    display: String,
    http: reqwest::Client,
    token: Option<String>,
    loopback: bool,
}

impl Client {
    /// `node` is the API's base URL (`http://127.0.0.1:50052`). Nothing connects yet.
    pub fn new(node: &str, token: Option<String>) -> anyhow::Result<Client> {
        let text = node.trim();
        let base = Url::parse(text).map_err(|e| {
            anyhow!("--node `{node}` is not a URL ({e}); use for example http://127.0.0.1:50052")
        })?;
        match base.scheme() {
            "http" => {}
            "https" => anyhow::bail!(
                "--node {node}: this mesg build speaks plain HTTP only; reach a remote node through an SSH tunnel (ssh -L 50052:127.0.0.1:50052 host) and use http://127.0.0.1:50052"
            ),
            other => anyhow::bail!(
                "--node {node}: unsupported scheme `{other}`; use for example http://127.0.0.1:50052"
            ),
        }
        let Some(host) = base.host_str() else {
            anyhow::bail!("--node {node} has no host; use for example http://127.0.0.1:50052");
        };
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("mesg-cli/", env!("CARGO_PKG_VERSION")));
        if loopback {
            // A proxy from the environment must never stand between us and a local node.
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| anyhow!("cannot create the HTTP client: {e}"))?;
        let token = token.filter(|t| !t.trim().is_empty());
        Ok(Client {
            display: text.trim_end_matches('/').to_string(),
            base,
            http,
            token,
            loopback,
        })
    }

    pub fn token_given(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the node is on this machine (a loopback URL).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Take the token a local node generated in its data dir (`DIR/api.token`, DIR
    /// defaulting to ~/.mesg). A missing file is not an error here: the node may have been
    /// started with --api-token, and its 401 then says what to do.
    pub fn with_local_token(mut self, data_dir: Option<PathBuf>) -> anyhow::Result<Client> {
        let dir = match data_dir {
            Some(d) => d,
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".mesg"),
                None => return Ok(self),
            },
        };
        let path = dir.join(API_TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => {
                self.token = Some(t.trim().to_string());
            }
            Ok(_) => anyhow::bail!(
                "{} is empty: restart the node to have a new token written, or pass --token",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => anyhow::bail!(
                "cannot read the node's API token {}: permission denied (it is readable by the user that runs the node only); run mesg as that user or pass --token",
                path.display()
            ),
            Err(_) => {}
        }
        Ok(self)
    }

    /// The node URL as the user gave it.
    pub fn base(&self) -> &str {
        &self.display
    }

    /// The URL of an API path given as segments; each segment is percent-encoded, so an
    /// id typed by a user can never change the route.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for s in segments {
                // URLs resolve `.` and `..` (and their %2e forms): never let an id do that.
                match *s {
                    "." => path.push("%2E"),
                    ".." => path.push("%2E%2E"),
                    s => path.push(s),
                };
            }
        }
        url
    }

    pub fn get(&self, segments: &[&str]) -> RequestBuilder {
        self.http.get(self.url(segments))
    }

    pub fn post(&self, segments: &[&str]) -> RequestBuilder {
        self.http.post(self.url(segments))
    }

    pub fn put(&self, segments: &[&str]) -> RequestBuilder {
        self.http.put(self.url(segments))
    }

    pub fn delete(&self, segments: &[&str]) -> RequestBuilder {
        self.http.delete(self.url(segments))
    }

    /// Send with the token; a non-2xx answer becomes an [`ApiError`], a transport failure
    /// an [`Unreachable`] or a plain error that names the node.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Err(ApiError::from_body(status, &body).into())
    }

    /// Send and decode a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> anyhow::Result<T> {
        let response = self.send(request).await?;
        let path = response.url().path().to_string();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&body).map_err(|e| {
            anyhow!(
                "the node at {} answered {path} with unexpected JSON ({e}); is it a mesg node of a compatible version?",
                self.display
            )
        })
    }

    /// [`Client::json`], with None when the node answers 404 (it has no such thing).
    pub async fn json_if_found<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> anyhow::Result<Option<T>> {
        match self.json(request).await {
            Ok(v) => Ok(Some(v)),
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.status == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Map a reqwest failure to an error a person can act on.
    pub fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let reason = root_cause(&e);
        if e.is_connect() || (e.is_timeout() && !e.is_body()) {
            Unreachable {
                url: self.display.clone(),
                reason,
            }
            .into()
        } else if e.is_body() || e.is_decode() {
            anyhow!(
                "the connection to the node at {} broke: {reason}",
                self.display
            )
        } else {
            anyhow!(
                "the node at {} did not answer properly: {reason}",
                self.display
            )
        }
    }

    /// Server-sent events of a successful response.
    pub fn sse(&self, response: Response) -> Frames<SseParser> {
        Frames::new(self, response, SseParser::default())
    }

    /// Newline-delimited JSON lines of a successful response.
    pub fn lines(&self, response: Response) -> Frames<LineParser> {
        Frames::new(self, response, LineParser::default())
    }
}

/// Turns bytes into frames (events, lines), keeping what is incomplete for the next chunk.
pub trait Decoder {
    type Item;
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Self::Item>, String>;
    /// The end of the stream: whatever complete frame is left.
    fn finish(&mut self) -> Vec<Self::Item>;
}

/// A streaming response body, decoded frame by frame.
pub struct Frames<D: Decoder> {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: D,
    ready: VecDeque<D::Item>,
    client: Client,
    done: bool,
}

impl<D: Decoder> fmt::Debug for Frames<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frames")
            .field("node", &self.client.display)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<D: Decoder> Frames<D> {
    fn new(client: &Client, response: Response, decoder: D) -> Frames<D> {
        Frames {
            body: response.bytes_stream().boxed(),
            decoder,
            ready: VecDeque::new(),
            client: client.clone(),
            done: false,
        }
    }

    /// The next frame; `None` at the end of the stream. Cancel-safe: a frame is only taken
    /// out of the body after the await point.
    pub async fn next(&mut self) -> Option<anyhow::Result<D::Item>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => match self.decoder.feed(&chunk) {
                    Ok(items) => self.ready.extend(items),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(anyhow!(
                            "the node at {} sent a malformed stream: {e}",
                            self.client.display
                        )));
                    }
                },
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(self.client.transport_error(e)));
                }
                None => {
                    self.done = true;
                    let rest = self.decoder.finish();
                    self.ready.extend(rest);
                }
            }
        }
    }
}

/// Split `buf` at the next line end (`\n`, `\r\n` or `\r`) from `from`: the line's range
/// and where the next line starts. `None` when no complete line is there yet (a final
/// `\r` waits for a possible `\n`).
fn next_line(buf: &[u8], from: usize) -> Option<(usize, usize, usize)> {
    let rel = buf[from..].iter().position(|&b| b == b'\n' || b == b'\r')?;
    let end = from + rel;
    if buf[end] == b'\r' {
        match buf.get(end + 1) {
            None => None,
            Some(b'\n') => Some((from, end, end + 2)),
            Some(_) => Some((from, end, end + 1)),
        }
    } else {
        Some((from, end, end + 1))
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the server sent none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    pub id: Option<String>,
}

/// Incremental parser of `text/event-stream` (the WHATWG rules that matter here: `event`,
/// `data` (several lines join with `\n`), `id`; `retry` and unknown fields ignored; lines
/// starting with `:` are comments (keepalives); a blank line ends an event; an event
/// without data is not dispatched; a stream cut in the middle of an event drops it).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    started: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl SseParser {
    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    event: event.unwrap_or_else(|| "message".to_string()),
                    data,
                    id: self.id.clone(),
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
    }
}

impl Decoder for SseParser {
    type Item = SseEvent;

    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(chunk);
        if !self.started {
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return Ok(Vec::new());
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            self.started = true;
        }
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some((start, end, next)) = next_line(&self.buf, pos) {
            let line = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
            self.line(&line, &mut out);
            pos = next;
        }
        self.buf.drain(..pos);
        let pending = self.buf.len()
            + self.data.as_ref().map_or(0, String::len)
            + self.event.as_ref().map_or(0, String::len);
        if pending > MAX_FRAME_BYTES {
            return Err(format!("an event is longer than {MAX_FRAME_BYTES} bytes"));
        }
        Ok(out)
    }

    fn finish(&mut self) -> Vec<SseEvent> {
        // An event is only complete with its blank line: a cut stream drops the last one.
        self.buf.clear();
        self.data = None;
        self.event = None;
        Vec::new()
    }
}

/// Incremental splitter of newline-delimited text (NDJSON): one item per non-empty line,
/// `\r\n` accepted, a last line without `\n` kept.
#[derive(Debug, Default)]
pub struct LineParser {
    buf: Vec<u8>,
}

impl Decoder for LineParser {
    type Item = String;

    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(rel) = self.buf[pos..].iter().position(|&b| b == b'\n') {
            let end = pos + rel;
            let line = String::from_utf8_lossy(&self.buf[pos..end]);
            let line = line.trim_end_matches('\r');
            if !line.trim().is_empty() {
                out.push(line.to_string());
            }
            pos = end + 1;
        }
        self.buf.drain(..pos);
        if self.buf.len() > MAX_FRAME_BYTES {
            return Err(format!("a line is longer than {MAX_FRAME_BYTES} bytes"));
        }
        Ok(out)
    }

    fn finish(&mut self) -> Vec<String> {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        let rest = rest.trim_end_matches('\r');
        if rest.trim().is_empty() {
            Vec::new()
        } else {
            vec![rest.to_string()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.feed(c).unwrap());
        }
        out.extend(p.finish());
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn sse_events_with_names_and_multi_line_data() {
        let events = parse_all(&[
            b"event: execution\ndata: {\"a\":1}\n\nevent: event\ndata: line one\ndata: line two\n\n",
        ]);
        assert_eq!(
            events,
            vec![
                ev("execution", "{\"a\":1}"),
                ev("event", "line one\nline two")
            ]
        );
    }

    #[test]
    fn sse_comments_and_keepalives_are_ignored() {
        let events = parse_all(&[b":\n\n: keep-alive\n\ndata: x\n:comment inside\n\n:\n\n"]);
        assert_eq!(events, vec![ev("message", "x")]);
    }

    #[test]
    fn sse_events_split_anywhere_across_chunks() {
        let text: &[u8] =
            b"event: execution\r\ndata: {\"id\":\"1\"}\r\n\r\nevent: lagged\rdata: 3\r\rdata:no-space\n\n";
        let whole = parse_all(&[text]);
        assert_eq!(
            whole,
            vec![
                ev("execution", "{\"id\":\"1\"}"),
                ev("lagged", "3"),
                ev("message", "no-space"),
            ]
        );
        // Every split point, including between \r and \n, gives the same events.
        for i in 0..text.len() {
            assert_eq!(parse_all(&[&text[..i], &text[i..]]), whole, "split at {i}");
        }
        // And byte by byte.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
    }

    #[test]
    fn sse_field_rules() {
        // No data: not dispatched, and its event name does not leak into the next one.
        let events =
            parse_all(&[b"event: ghost\n\ndata\n\nid: 7\ndata: a\nretry: 10\nfoo: bar\n\n"]);
        assert_eq!(
            events,
            vec![
                ev("message", ""),
                SseEvent {
                    event: "message".into(),
                    data: "a".into(),
                    id: Some("7".into())
                }
            ]
        );
        // A stream cut before the blank line drops the unfinished event.
        assert_eq!(
            parse_all(&[b"data: done\n\ndata: cut"]),
            vec![ev("message", "done")]
        );
        // A byte-order mark at the start is skipped, even when split.
        assert_eq!(
            parse_all(&[b"\xEF\xBB", b"\xBFdata: bom\n\n"]),
            vec![ev("message", "bom")]
        );
    }

    #[test]
    fn sse_refuses_endless_events() {
        let mut p = SseParser::default();
        let big = vec![b'x'; MAX_FRAME_BYTES + 1];
        assert!(p.feed(b"data: ").is_ok());
        assert!(p.feed(&big).is_err());
    }

    #[test]
    fn ndjson_lines_split_across_chunks() {
        let mut p = LineParser::default();
        let mut out = p.feed(b"{\"a\":1}\n{\"b\"").unwrap();
        out.extend(p.feed(b":2}\r\n\n  \n{\"c\":3}").unwrap());
        out.extend(p.finish());
        assert_eq!(out, vec![r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
    }

    #[test]
    fn api_errors_decode_with_details_or_fall_back_to_text() {
        let e = ApiError::from_body(
            400,
            br#"{"code":"invalid_inputs","message":"invalid inputs","details":["inputs.a: missing"]}"#,
        );
        assert_eq!(e.code, "invalid_inputs");
        assert_eq!(e.details, vec!["inputs.a: missing"]);
        let e = ApiError::from_body(502, b"<html>bad gateway</html>");
        assert_eq!(e.code, "http_502");
        assert!(
            e.message
                .contains("HTTP 502 Bad Gateway: <html>bad gateway</html>")
        );
    }

    #[test]
    fn urls_encode_each_segment() {
        let c = Client::new("http://127.0.0.1:50052/", None).unwrap();
        assert_eq!(
            c.url(&["v1", "services", "../node"]).as_str(),
            "http://127.0.0.1:50052/v1/services/..%2Fnode"
        );
        // A lone `..` or `.` cannot climb out of the route either.
        for dots in ["..", "."] {
            let url = c.url(&["v1", "services", dots, "x"]);
            assert!(url.path().starts_with("/v1/services/"), "{url}");
            assert_eq!(url.path_segments().unwrap().count(), 4, "{url}");
        }
        let c = Client::new("http://host:1/prefix", None).unwrap();
        assert_eq!(
            c.url(&["v1", "node"]).as_str(),
            "http://host:1/prefix/v1/node"
        );
        assert!(Client::new("https://host", None).is_err());
        assert!(Client::new("not a url", None).is_err());
    }
}
