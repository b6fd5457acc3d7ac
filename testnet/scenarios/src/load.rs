//! Steady load on the requester node: executions of echo's `sleep` (50-200 ms) and `echo`
//! tasks submitted at a fixed rate, each with a client-chosen id (an idempotency key, so an
//! ambiguous submit can be looked up), a timeout and the scenario's tag; and a tracker
//! that follows them until they end.

use crate::api::{Api, error_message};
use crate::testnet::now_ms;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Submit {
    /// Not answered yet.
    Pending,
    /// 201: the requester recorded it (it is flushed before the answer).
    Accepted,
    /// The API answered with an error: the execution was not created.
    Refused(String),
    /// No answer (connection refused or reset, timeout): looked up at the end.
    NoAnswer(String),
}

#[derive(Debug, Clone)]
pub struct End {
    pub status: String,
    pub error: Option<String>,
    pub executor: Option<String>,
    pub outputs: Value,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub task: &'static str,
    pub inputs: Value,
    pub submitted_at: u64,
    pub submit: Submit,
    pub end: Option<End>,
    /// Last status seen (Created, InProgress) before the end.
    pub last_status: Option<String>,
    pub executor: Option<String>,
}

impl Record {
    /// Does a Completed execution carry the outputs its inputs call for?
    pub fn outputs_ok(&self) -> bool {
        let Some(end) = &self.end else { return true };
        if end.status != "Completed" {
            return true;
        }
        match self.task {
            "echo" => end.outputs == self.inputs,
            "sleep" => end.outputs.get("slept") == self.inputs.get("ms"),
            _ => true,
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub records: BTreeMap<String, Record>,
}

pub type Shared = Arc<Mutex<State>>;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub service: String,
    pub tag: String,
    pub rate_per_s: f64,
    pub timeout_ms: u64,
    /// Prefix of the 32-hex execution ids (16 hex: the run), then 16 hex: scenario + seq.
    pub id_prefix: String,
    pub scenario_index: u64,
}

#[derive(Debug)]
pub struct Load {
    pub state: Shared,
    api: Api,
    cfg: LoadConfig,
    bursts: u64,
    submitting: Arc<AtomicBool>,
    tracking: Arc<AtomicBool>,
    submitter: tokio::task::JoinHandle<()>,
    tracker: tokio::task::JoinHandle<()>,
}

/// xorshift64*: enough to vary task durations.
fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

impl Load {
    pub fn start(api: Api, cfg: LoadConfig) -> Load {
        let api_for_burst = api.clone();
        let state: Shared = Arc::new(Mutex::new(State::default()));
        let submitting = Arc::new(AtomicBool::new(true));
        let tracking = Arc::new(AtomicBool::new(true));
        let submitter = {
            let (api, cfg, state, submitting) =
                (api.clone(), cfg.clone(), state.clone(), submitting.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.rate_per_s));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut rng = now_ms() | 1;
                let mut seq = 0u64;
                while submitting.load(Ordering::SeqCst) {
                    tick.tick().await;
                    if !submitting.load(Ordering::SeqCst) {
                        break;
                    }
                    seq += 1;
                    let r = next_rand(&mut rng);
                    let (task, inputs) = if r.is_multiple_of(3) {
                        (
                            "echo",
                            json!({"message": format!("{}-{seq}", cfg.tag), "count": seq}),
                        )
                    } else {
                        ("sleep", json!({"ms": 50 + (r >> 8) % 151}))
                    };
                    let id = format!("{}{:016x}", cfg.id_prefix, (cfg.scenario_index << 40) | seq);
                    submit(&api, &cfg, &state, id, task, inputs);
                }
            })
        };
        let tracker = {
            let (state, tracking) = (state.clone(), tracking.clone());
            let tag = cfg.tag.clone();
            tokio::spawn(async move {
                while tracking.load(Ordering::SeqCst) {
                    if let Ok(list) = list_tagged(&api, &tag).await {
                        let mut st = state.lock().expect("load state");
                        for e in list {
                            if let Some(id) = e["id"].as_str()
                                && let Some(r) = st.records.get_mut(id)
                            {
                                apply(r, &e);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        Load {
            state,
            api: api_for_burst,
            cfg,
            bursts: 0,
            submitting,
            tracking,
            submitter,
            tracker,
        }
    }

    /// Submit `n` executions of `sleep ms` at once (on top of the steady load), so that
    /// some are surely in flight when a fault begins.
    pub fn burst(&mut self, n: u64, ms: u64) {
        for _ in 0..n {
            self.bursts += 1;
            // Sequence numbers above 2^32 keep burst ids apart from the steady ones.
            let id = format!(
                "{}{:016x}",
                self.cfg.id_prefix,
                (self.cfg.scenario_index << 40) | (1 << 32) | self.bursts
            );
            submit(
                &self.api,
                &self.cfg,
                &self.state,
                id,
                "sleep",
                json!({"ms": ms}),
            );
        }
    }

    pub async fn stop_submitting(&mut self) {
        self.submitting.store(false, Ordering::SeqCst);
        let _ = (&mut self.submitter).await;
        // Let the last submits get their answers (the client times out at 5 s).
        for _ in 0..60 {
            let pending = self
                .state
                .lock()
                .expect("load state")
                .records
                .values()
                .any(|r| r.submit == Submit::Pending);
            if !pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop_tracking(&mut self) {
        self.tracking.store(false, Ordering::SeqCst);
        let _ = (&mut self.tracker).await;
    }

    pub fn snapshot(&self) -> Vec<(String, Record)> {
        self.state
            .lock()
            .expect("load state")
            .records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Record an execution and POST it (in the background).
fn submit(
    api: &Api,
    cfg: &LoadConfig,
    state: &Shared,
    id: String,
    task: &'static str,
    inputs: Value,
) {
    state.lock().expect("load state").records.insert(
        id.clone(),
        Record {
            task,
            inputs: inputs.clone(),
            submitted_at: now_ms(),
            submit: Submit::Pending,
            end: None,
            last_status: None,
            executor: None,
        },
    );
    let body = json!({
        "service": cfg.service,
        "task": task,
        "inputs": inputs,
        "tags": [cfg.tag],
        "timeout_ms": cfg.timeout_ms,
        "execution_id": id,
    });
    let (api, state) = (api.clone(), state.clone());
    tokio::spawn(async move {
        let outcome = match api.post("/v1/executions", &body).await {
            Ok((s, _)) if s == StatusCode::CREATED || s == StatusCode::OK => Submit::Accepted,
            Ok((s, b)) => Submit::Refused(format!("{s}: {}", error_message(&b))),
            Err(e) => Submit::NoAnswer(format!("{e:#}")),
        };
        if let Some(r) = state.lock().expect("load state").records.get_mut(&id) {
            r.submit = outcome;
        }
    });
}

/// Update a record from the execution JSON the node returned.
pub fn apply(r: &mut Record, e: &Value) {
    let status = e["status"].as_str().unwrap_or_default().to_string();
    if let Some(x) = e["executor"].as_str() {
        r.executor = Some(x.to_string());
    }
    if r.end.is_some() {
        return;
    }
    if status == "Completed" || status == "Failed" {
        r.end = Some(End {
            status,
            error: e["error"].as_str().map(str::to_string),
            executor: e["executor"].as_str().map(str::to_string),
            outputs: e["outputs"].clone(),
        });
    } else {
        r.last_status = Some(status);
    }
}

/// Every execution carrying `tag` (all pages).
async fn list_tagged(api: &Api, tag: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("/v1/executions?limit=1000&tag={tag}");
        if let Some(b) = &before {
            path.push_str(&format!("&before={b}"));
        }
        let page = api.get_ok(&path).await?;
        if let Some(list) = page["executions"].as_array() {
            out.extend(list.iter().cloned());
        }
        match page["next"].as_str() {
            Some(n) => before = Some(n.to_string()),
            None => return Ok(out),
        }
    }
}
