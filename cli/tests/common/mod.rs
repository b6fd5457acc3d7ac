//! Helpers of the CLI's integration tests: run the `mesg` binary, and a tiny scripted HTTP
//! server that plays a node's API (for streams and answers a test needs exactly).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one run of `mesg` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "mesg failed:\n{self:#?}");
        self
    }
}

/// Point `mesg` at the data dir of the test node named by `--node` (MESG_DATA_DIR), as a
/// user of a local node would have it: mesg reads the node's API token there. Nodes this
/// process did not start (the mock API, a token node) get no data dir.
fn local_node_dir(cmd: &mut Command, args: &[&str]) {
    let dir = args
        .windows(2)
        .find(|w| w[0] == "--node")
        .and_then(|w| mesg_testkit::data_dir_of(w[1]));
    match dir {
        Some(d) => cmd.env("MESG_DATA_DIR", d),
        None => cmd.env_remove("MESG_DATA_DIR"),
    };
}

/// Run `mesg` with `args`, no colours, a clean environment for mesg's own variables, and
/// `MESG_HOME` set to `home` when given.
pub fn mesg_in(home: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesg"));
    local_node_dir(&mut cmd, args);
    cmd.args(args)
        .env_remove("MESG_NODE")
        .env_remove("MESG_TOKEN")
        .env_remove("MESG_ACCOUNT")
        .env_remove("MESG_CONTEXT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    match home {
        Some(h) => cmd.env("MESG_HOME", h),
        None => cmd.env_remove("MESG_HOME"),
    };
    let out = cmd.output().expect("run mesg");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `mesg --node URL ARGS...` (a test talking to one of several real nodes).
pub fn on(url: &str, args: &[&str]) -> Run {
    let mut full = vec!["--node", url];
    full.extend_from_slice(args);
    mesg(&full)
}

pub fn mesg(args: &[&str]) -> Run {
    mesg_in(None, args)
}

/// The `mesg` command with the tests' environment: no colours, none of mesg's own
/// variables, the extra `env` set.
pub fn mesg_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesg"));
    local_node_dir(&mut cmd, args);
    cmd.args(args)
        .env_remove("MESG_NODE")
        .env_remove("MESG_TOKEN")
        .env_remove("MESG_ACCOUNT")
        .env_remove("MESG_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Run `mesg` with extra environment variables.
pub fn mesg_env(env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = mesg_command(args, env).output().expect("run mesg");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Parse a run's stdout as one JSON document.
pub fn json_of(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"))
}

/// Poll `f` every 250 ms until it gives a value, for at most `secs` seconds.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The instances of the service `sid` on the node, as `mesg service show` prints them
/// (one row each).
pub fn instance_rows(url: &str, sid: &str) -> Vec<String> {
    let show = mesg(&["--node", url, "service", "show", sid]);
    show.ok();
    let section: Vec<String> = show
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("instances:"))
        .skip(1)
        .map(str::to_string)
        .collect();
    if section.iter().any(|l| l.contains("(none;")) {
        return Vec::new();
    }
    // A header, then one row per instance (then `HASH: reason` lines).
    section
        .into_iter()
        .skip(1)
        .filter(|l| l.starts_with("  ") && !l.trim().is_empty())
        .filter(|l| {
            !l.split_whitespace()
                .next()
                .is_some_and(|w| w.ends_with(':'))
        })
        .collect()
}

/// Wait until an instance of `sid` is running with its container connected to the node
/// (`mesg service show`'s CONNECTED column).
///
/// `POST /v1/instances` answers `running` before the container has connected its task
/// stream; an execution created in that moment is routed to the network instead and fails
/// after 10 s with "no node in the network runs service" (a node issue): tests wait.
pub fn wait_connected(url: &str, sid: &str) {
    let connected = eventually(30, || {
        instance_rows(url, sid)
            .iter()
            .any(|row| {
                let cells: Vec<&str> = row.split_whitespace().collect();
                cells.get(1) == Some(&"running") && cells.get(3) == Some(&"yes")
            })
            .then_some(())
    });
    assert!(
        connected.is_some(),
        "{sid} never connected: {:#?}",
        instance_rows(url, sid)
    );
}

/// Which stream a line of a background `mesg` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// A `mesg` running in the background (a stream, `service dev`): its output lines as they
/// come. Killed on drop.
pub struct Background {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(Stream, String)>,
    /// Every line received so far, for failure messages.
    pub seen: Vec<(Stream, String)>,
}

impl Background {
    pub fn spawn(args: &[&str]) -> Background {
        let mut child = mesg_command(args, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mesg");
        // Bounded: a reader blocks (and so does the child, on its pipe) if a test stops
        // reading for long; 10k lines is more than any test waits through.
        let (tx, rx) = std::sync::mpsc::sync_channel(10_000);
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for (stream, reader) in [
            (Stream::Out, Box::new(out) as Box<dyn Read + Send>),
            (Stream::Err, Box::new(err) as Box<dyn Read + Send>),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { return };
                    if tx.send((stream, line)).is_err() {
                        return;
                    }
                }
            });
        }
        Background {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first new line of `stream` that satisfies `pred`, waiting at most `secs`.
    pub fn wait_line(
        &mut self,
        stream: Stream,
        secs: u64,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((s, line)) => {
                    self.seen.push((s, line.clone()));
                    if s == stream && pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Wait for the process to exit, at most `secs`; its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Collect what is left of its output.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return Some(status.code().unwrap_or(-1));
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send a signal (`INT`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request the mock server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/v1/events/stream?service=echo`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the mock answers.
pub enum Reply {
    /// A JSON body with a status.
    Json(u16, String),
    /// A streamed body: each chunk written and flushed separately (with a pause), then
    /// the connection closes.
    Stream {
        content_type: &'static str,
        chunks: Vec<Vec<u8>>,
    },
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 server on loopback; records every request.
pub struct Mock {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Status",
    }
}

impl Mock {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let handler = handler.clone();
                let recorded = recorded.clone();
                std::thread::spawn(move || {
                    let Some(req) = read_request(&mut stream) else {
                        return;
                    };
                    recorded.lock().expect("lock").push(req.clone());
                    match handler(&req) {
                        Reply::Json(status, body) => {
                            let _ = write!(
                                stream,
                                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                reason(status),
                                body.len()
                            );
                        }
                        Reply::Stream {
                            content_type,
                            chunks,
                        } => {
                            let _ = write!(
                                stream,
                                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n"
                            );
                            for chunk in chunks {
                                let _ = stream.write_all(&chunk);
                                let _ = stream.flush();
                                std::thread::sleep(Duration::from_millis(30));
                            }
                        }
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Mock { url, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

pub fn not_found(what: &str) -> Reply {
    Reply::Json(
        404,
        format!(r#"{{"code":"not_found","message":"{what} not found","details":[]}}"#),
    )
}
