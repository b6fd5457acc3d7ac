//! A small client of a node's Application API (JSON over HTTP, bearer token).

use anyhow::{Context, anyhow};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What a call returned: the HTTP status and the JSON body (`Null` when there is none).
pub type Reply = (StatusCode, Value);

impl Api {
    pub fn new(base: &str, token: &str, timeout: Duration) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(10))
            .build()
            .context("http client")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        let resp = req.bearer_auth(&self.token).send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
            .with_context(|| format!("GET {}{path}", self.base))
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// GET that must answer 200.
    pub async fn get_ok(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.get(path).await?;
        if status != StatusCode::OK {
            return Err(anyhow!("GET {}{path}: {status}: {body}", self.base));
        }
        Ok(body)
    }
}

/// The error message of an API error body (`{"error": {"message": ...}}` or similar).
pub fn error_message(body: &Value) -> String {
    let pick = |v: &Value| -> Option<String> {
        v.get("message")
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    };
    body.get("error")
        .and_then(|e| pick(e).or_else(|| e.as_str().map(str::to_string)))
        .or_else(|| pick(body))
        .unwrap_or_else(|| body.to_string())
}
