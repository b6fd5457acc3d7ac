//! The attack suite's tools: a client of a real node's Application API that can also
//! misbehave (wrong tokens, hostile headers, raw sockets), and rogue peers built from the
//! project's own crates (`rogue`). Each file in `tests/` is one hole of the adversarial
//! review (docs/security.md lists them): the hostile input, the refusal it must get, and
//! a check that honest work still completes meanwhile.

pub mod containers;
pub mod http;
pub mod names;
pub mod rogue;
pub mod wire;

use mesg_testkit::NodeProcess;
use serde_json::Value;
use std::time::Duration;

/// An Application API client that sends the node's token (unless told otherwise).
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    pub http: reqwest::Client,
}

/// One HTTP answer: status and body (JSON when it parses, else a string).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Api {
    /// A client with the node's own token.
    pub fn new(node: &NodeProcess) -> Api {
        Api::with_token(node, node.token())
    }

    /// A client with the given token (or none).
    pub fn with_token(node: &NodeProcess, token: Option<String>) -> Api {
        Api {
            base: node.api_url(),
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    /// A request to `path` with the token, ready for more headers.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn send(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("the node answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        Api::send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        Api::send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// Deploy a service directory and return the final NDJSON line.
    pub async fn deploy(&self, dir: &std::path::Path) -> Value {
        self.deploy_reply(dir).await.body
    }

    /// Deploy a service directory and return the status with the last JSON line of the
    /// answer: the plain error of a refusal, or the `done`/`error` line of a deploy that
    /// streamed.
    pub async fn deploy_reply(&self, dir: &std::path::Path) -> Reply {
        let pkg = mesg_package::Package::from_dir(dir, mesg_package::DEFAULT_MAX_PACKAGE_BYTES)
            .expect("package");
        let resp = self
            .request(reqwest::Method::POST, "/v1/services")
            .header("content-type", "application/x-tar")
            .body(pkg.to_tar_bytes().expect("tar"))
            .send()
            .await
            .expect("deploy");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .unwrap_or(Value::String(text));
        Reply { status, body }
    }

    /// Run `task` of `service` with `inputs` and wait for the end; returns the execution
    /// (its `status` is `Completed` or `Failed`), or the error answer.
    pub async fn exec_wait(&self, service: &str, task: &str, inputs: Value) -> Value {
        self.post(
            "/v1/executions?wait=true",
            &serde_json::json!({"service": service, "task": task, "inputs": inputs}),
        )
        .await
        .body
    }

    /// Deploy a service directory, start an instance and wait until its container has
    /// connected; returns (service hash, instance hash).
    pub async fn deploy_and_start(&self, dir: &std::path::Path) -> (String, String) {
        let done = self.deploy(dir).await;
        assert_eq!(done["type"], "done", "deploy: {done}");
        let hash = done["service"]["hash"].as_str().expect("hash").to_string();
        let started = self
            .post("/v1/instances", &serde_json::json!({"service": hash}))
            .await;
        assert_eq!(started.status, 201, "start: {started:?}");
        let instance = started.body["hash"].as_str().expect("instance").to_string();
        for _ in 0..400 {
            if self.get(&format!("/v1/instances/{instance}")).await.body["connected"] == true {
                return (hash, instance);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance {instance} never connected its task stream");
    }
}
