//! Write mesg Services in Rust.
//!
//! ```no_run
//! # async fn run() -> Result<(), mesg_sdk::SdkError> {
//! let service = mesg_sdk::Service::from_env()?;
//! service
//!     .listen(|task: mesg_sdk::Task| async move {
//!         match task.key.as_str() {
//!             "echo" => Ok(task.inputs),
//!             other => Err(format!("unknown task {other}")),
//!         }
//!     })
//!     .await
//! # }
//! ```
//!
//! The SDK speaks the node's service API (docs/service-api.md): it keeps one task stream
//! open (reconnecting with backoff when the node restarts), runs each task in its own tokio
//! task, and posts results, retrying while the node is unreachable so that a result is not
//! lost to a node restart.

use futures::StreamExt;
use mesg_protocol::service_api::*;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("environment variable {0} is not set: this program must be started by a mesg node")]
    MissingEnv(&'static str),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the node refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the task stream sent a malformed line: {0}")]
    Protocol(String),
}

/// One task to run.
#[derive(Debug, Clone)]
pub struct Task {
    pub execution_id: String,
    pub key: String,
    pub inputs: Value,
}

/// A connection to the node that runs this service instance.
#[derive(Debug, Clone)]
pub struct Service {
    client: reqwest::Client,
    endpoint: String,
    token: String,
    pub service_hash: String,
    pub instance_hash: String,
    max_concurrency: usize,
}

fn env(name: &'static str) -> Result<String, SdkError> {
    std::env::var(name).map_err(|_| SdkError::MissingEnv(name))
}

impl Service {
    /// Connect using the variables the node injects into the container.
    pub fn from_env() -> Result<Service, SdkError> {
        Ok(Service::new(
            &env(ENV_ENDPOINT)?,
            &env(ENV_TOKEN)?,
            &std::env::var(ENV_SERVICE_HASH).unwrap_or_default(),
            &std::env::var(ENV_INSTANCE_HASH).unwrap_or_default(),
        ))
    }

    pub fn new(endpoint: &str, token: &str, service_hash: &str, instance_hash: &str) -> Service {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client without TLS always builds");
        Service {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.to_string(),
            service_hash: service_hash.to_string(),
            instance_hash: instance_hash.to_string(),
            max_concurrency: 1024,
        }
    }

    /// Run at most `n` tasks at once (default 1024); more wait in the stream.
    pub fn with_max_concurrency(mut self, n: usize) -> Service {
        self.max_concurrency = n.max(1);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.endpoint, path)
    }

    /// Receive tasks forever, run `handler` on each, post its result. Reconnects with
    /// backoff whenever the stream breaks; returns only if the node refuses the token.
    pub async fn listen<H, F>(&self, handler: H) -> Result<(), SdkError>
    where
        H: Fn(Task) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Value, String>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let limit = Arc::new(Semaphore::new(self.max_concurrency));
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.stream_once(&handler, &limit).await {
                Ok(()) => {
                    tracing::warn!("task stream closed by the node; reconnecting");
                    backoff = Duration::from_millis(100);
                }
                Err(SdkError::Refused { status, message }) if status == 401 || status == 403 => {
                    return Err(SdkError::Refused { status, message });
                }
                Err(e) => tracing::warn!("task stream: {e}; retrying in {backoff:?}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn stream_once<H, F>(
        &self,
        handler: &Arc<H>,
        limit: &Arc<Semaphore>,
    ) -> Result<(), SdkError>
    where
        H: Fn(Task) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Value, String>> + Send + 'static,
    {
        let resp = self
            .client
            .get(self.url(TASKS_PATH))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let resp = check(resp).await?;
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = &line[..line.len() - 1];
                if line.is_empty() {
                    continue;
                }
                let msg: TaskStreamMessage =
                    serde_json::from_slice(line).map_err(|e| SdkError::Protocol(e.to_string()))?;
                match msg {
                    TaskStreamMessage::Ready { .. } => {
                        tracing::info!("connected to the node; waiting for tasks")
                    }
                    TaskStreamMessage::Keepalive => {}
                    TaskStreamMessage::Task {
                        execution_id,
                        task,
                        inputs,
                    } => {
                        let permit = limit
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("semaphore is never closed");
                        let handler = handler.clone();
                        let this = self.clone();
                        tokio::spawn(async move {
                            let task = Task {
                                execution_id,
                                key: task,
                                inputs,
                            };
                            let id = task.execution_id.clone();
                            let result = handler(task).await;
                            drop(permit);
                            if let Err(e) = this.submit_result(&id, result).await {
                                tracing::error!("result of {id} not delivered: {e}");
                            }
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Post the result of an execution. Retries for up to 10 minutes while the node is
    /// unreachable or restarting; a refusal (unknown or finished execution) is final.
    pub async fn submit_result(
        &self,
        execution_id: &str,
        result: Result<Value, String>,
    ) -> Result<(), SdkError> {
        let body = match result {
            Ok(outputs) => TaskResultRequest {
                execution_id: execution_id.to_string(),
                outputs: Some(outputs),
                error: None,
            },
            Err(error) => TaskResultRequest {
                execution_id: execution_id.to_string(),
                outputs: None,
                error: Some(error),
            },
        };
        self.post_with_retry(RESULTS_PATH, &body).await
    }

    /// Emit an event (its data is checked against the definition by the node).
    pub async fn emit(&self, event: &str, data: Value) -> Result<(), SdkError> {
        let body = EmitEventRequest {
            event: event.to_string(),
            data,
            execution_id: None,
        };
        self.post_with_retry(EVENTS_PATH, &body).await
    }

    async fn post_with_retry<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<(), SdkError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = self
                .client
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await;
            let retry = match attempt {
                Ok(resp) if resp.status().is_server_error() => {
                    format!("node answered {}", resp.status())
                }
                Ok(resp) => return check(resp).await.map(|_| ()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(SdkError::Protocol(format!(
                    "gave up after 10 minutes: {retry}"
                )));
            }
            tracing::warn!("{path}: {retry}; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, SdkError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ApiError>(&text)
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or(text);
    Err(SdkError::Refused { status, message })
}
