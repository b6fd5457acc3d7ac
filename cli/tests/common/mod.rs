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

/// Run `mesg` with `args`, no colours, a clean environment for mesg's own variables, and
/// `MESG_HOME` set to `home` when given.
pub fn mesg_in(home: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesg"));
    cmd.args(args)
        .env_remove("MESG_NODE")
        .env_remove("MESG_TOKEN")
        .env_remove("MESG_ACCOUNT")
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

pub fn mesg(args: &[&str]) -> Run {
    mesg_in(None, args)
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
