//! Helpers for tests that drive a real `mesg-node` process over its HTTP API.
#![allow(dead_code)]

use futures::StreamExt;
use mesg_testkit::NodeProcess;
use serde_json::{Value, json};
use std::time::Duration;

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    /// The value of the metric `name` (full name, no labels) on the node's `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The node's whole `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn new(node: &NodeProcess) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = node.auth_header() {
            headers.insert(reqwest::header::AUTHORIZATION, auth.parse().unwrap());
        }
        Api {
            base: node.api_url(),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Wait until `sid` is announced in the network this node sees.
    pub async fn wait_announced(&self, sid: &str) {
        for _ in 0..300 {
            let (_, v) = self.get("/v1/network/services").await;
            if v["services"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["sid"] == sid))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{sid} never announced");
    }

    /// Wait until this node sees `providers` providers of `sid` (other than itself).
    pub async fn wait_providers(&self, sid: &str, providers: usize) {
        for _ in 0..300 {
            let (_, v) = self.get("/v1/network/services").await;
            if let Some(s) = v["services"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["sid"] == sid))
                && s["providers"].as_array().map_or(0, |p| p.len()) >= providers
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {providers} provider(s) of {sid} announced in time");
    }

    /// Wait until this node knows a provider of `sid` in the network (other than itself);
    /// its service hash.
    pub async fn provider_of(&self, sid: &str) -> mesg_protocol::ServiceHash {
        for _ in 0..300 {
            let (_, v) = self.get("/v1/network/services").await;
            if let Some(s) = v["services"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["sid"] == sid))
                && !s["providers"].as_array().is_none_or(|p| p.is_empty())
            {
                return s["service_hash"].as_str().unwrap().parse().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no provider of {sid} announced in time");
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Deploy a service directory; returns the last NDJSON line (`done` or `error`) and
    /// every progress message.
    pub async fn deploy(&self, dir: &std::path::Path) -> (Value, Vec<String>) {
        let pkg =
            mesg_package::Package::from_dir(dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        let r = self
            .http
            .post(format!("{}/v1/services", self.base))
            .header("content-type", "application/x-tar")
            .body(pkg.to_tar_bytes().unwrap())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "deploy answered {status}: {text}");
        let mut progress = Vec::new();
        let mut last = Value::Null;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["type"] == "progress" {
                progress.push(v["message"].as_str().unwrap_or_default().to_string());
            } else {
                last = v;
            }
        }
        (last, progress)
    }

    /// Deploy and start a service; returns (service hash, instance hash).
    pub async fn deploy_and_start(&self, dir: &std::path::Path, env: Value) -> (String, String) {
        let (done, _) = self.deploy(dir).await;
        assert_eq!(done["type"], "done", "{done}");
        let hash = done["service"]["hash"].as_str().unwrap().to_string();
        let (status, inst) = self
            .post("/v1/instances", json!({"service": hash, "env": env}))
            .await;
        assert_eq!(status, 201, "{inst}");
        let instance = inst["hash"].as_str().unwrap().to_string();
        self.wait_connected(&instance).await;
        (hash, instance)
    }

    /// Wait until the instance's container opened its task stream.
    pub async fn wait_connected(&self, instance: &str) {
        for _ in 0..200 {
            let (_, v) = self.get(&format!("/v1/instances/{instance}")).await;
            if v["connected"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance {instance} never connected its task stream");
    }

    pub async fn exec(&self, service: &str, task: &str, inputs: Value) -> (u16, Value) {
        self.post(
            "/v1/executions?wait=true",
            json!({"service": service, "task": task, "inputs": inputs}),
        )
        .await
    }

    pub async fn exec_async(&self, service: &str, task: &str, inputs: Value) -> String {
        let (status, e) = self
            .post(
                "/v1/executions",
                json!({"service": service, "task": task, "inputs": inputs}),
            )
            .await;
        assert_eq!(status, 201, "{e}");
        e["id"].as_str().unwrap().to_string()
    }

    /// Open an SSE stream and collect `data:` payloads of events named `event` until
    /// `done` says stop or the time runs out.
    pub async fn sse_until(
        &self,
        path: &str,
        event: &str,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 200 {
            panic!(
                "GET {path}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        let mut body = r.bytes_stream();
        let mut buf = String::new();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(timeout, async {
            let mut current = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(pos) = buf.find('\n') {
                    let line = buf[..pos].trim_end_matches('\r').to_string();
                    buf.drain(..=pos);
                    if let Some(name) = line.strip_prefix("event:") {
                        current = name.trim().to_string();
                    } else if let Some(data) = line.strip_prefix("data:")
                        && current == event
                    {
                        let v: Value = serde_json::from_str(data.trim()).unwrap();
                        let stop = done(&v);
                        out.push(v);
                        if stop {
                            return;
                        }
                    }
                }
            }
        })
        .await;
        out
    }
}
