//! The `echo` example service: `echo` returns its inputs, `sleep` waits, `tick` emits an
//! event.
//!
//! Besides the service, for tests and benchmarks:
//! - `echo env` prints the MESG_* variables (tests read them with `docker exec`).
//! - `ECHO_TAMPER` (only where a test's copy of the service declares it): when set, the
//!   `echo` task appends its value to the returned `message`: a faulty double of an
//!   honest provider (same service hash, other outputs) for the verification tests.
//! - `echo once` copies stdin to stdout unchanged and exits 0: a one-shot task for
//!   `docker exec` / `docker run --rm`, the baseline of a per-task container. Like
//!   `echo env`, it needs no MESG_* variables.
//! - In service mode the container also serves a raw TCP echo on `0.0.0.0:7000`
//!   (`ECHO_TCP_PORT` changes the port, 0 disables it): the benchmarks' floor, an echo
//!   straight to the container with no node in between. Each frame is a 4-byte big-endian
//!   length N (at most 16 MiB; a bigger one closes the connection) and N bytes, sent back
//!   unchanged. A port that cannot be bound is reported on stderr and the service runs on.

use mesg_sdk::{Service, Task};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// Default port of the raw TCP echo.
const DEFAULT_TCP_PORT: u16 = 7000;
/// Largest frame the raw TCP echo accepts.
const MAX_FRAME: usize = 16 * 1024 * 1024;

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("env") => {
            let mut vars: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| k.starts_with("MESG_") || k == "TICK_INTERVAL_MS")
                .collect();
            vars.sort();
            for (k, v) in vars {
                println!("{k}={v}");
            }
            return;
        }
        Some("once") => {
            if let Err(e) = copy_stdin_to_stdout() {
                eprintln!("echo once: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    tracing_subscriber::fmt().with_target(false).init();
    let service = match Service::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(2);
        }
    };
    let ticks = Arc::new(AtomicU64::new(0));
    let interval: u64 = std::env::var("TICK_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if interval > 0 {
        let (service, ticks) = (service.clone(), ticks.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(interval)).await;
                let count = ticks.fetch_add(1, Ordering::SeqCst) + 1;
                if let Err(e) = service.emit("tick", json!({ "count": count })).await {
                    eprintln!("echo: tick not emitted: {e}");
                }
            }
        });
    }
    start_tcp_echo().await;
    println!("echo: ready");
    let emitter = service.clone();
    let tamper = std::env::var("ECHO_TAMPER").unwrap_or_default();
    let result = service
        .listen(move |task: Task| {
            let emitter = emitter.clone();
            let ticks = ticks.clone();
            let tamper = tamper.clone();
            async move {
                match task.key.as_str() {
                    "echo" if tamper.is_empty() => Ok(task.inputs),
                    "echo" => {
                        let mut outputs = task.inputs;
                        let said = outputs["message"].as_str().unwrap_or_default().to_string();
                        outputs["message"] = json!(format!("{said}{tamper}"));
                        Ok(outputs)
                    }
                    "sleep" => {
                        let ms = task.inputs["ms"].as_f64().unwrap_or(0.0).max(0.0) as u64;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(json!({ "slept": ms }))
                    }
                    "tick" => {
                        let count = ticks.fetch_add(1, Ordering::SeqCst) + 1;
                        let mut data = json!({ "count": count });
                        if let Some(v) = task.inputs.get("value").filter(|v| !v.is_null()) {
                            data["value"] = v.clone();
                        }
                        emitter
                            .emit("tick", data)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(json!({ "count": count }))
                    }
                    other => Err(format!("echo has no task `{other}`")),
                }
            }
        })
        .await;
    if let Err(e) = result {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

/// `echo once`: stdin to stdout, byte for byte.
fn copy_stdin_to_stdout() -> std::io::Result<()> {
    let mut input = Vec::new();
    std::io::stdin().lock().read_to_end(&mut input)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&input)?;
    out.flush()
}

/// Bind the raw TCP echo (unless `ECHO_TCP_PORT` is 0) and serve it in the background.
/// Any failure is printed and the service goes on without it.
async fn start_tcp_echo() {
    let port = match std::env::var("ECHO_TCP_PORT") {
        Err(_) => DEFAULT_TCP_PORT,
        Ok(v) => match v.trim().parse::<u16>() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("echo: ECHO_TCP_PORT={v:?} is not a port ({e}); TCP echo disabled");
                return;
            }
        },
    };
    if port == 0 {
        return;
    }
    match TcpListener::bind(("0.0.0.0", port)).await {
        Ok(listener) => {
            println!("echo: TCP echo on 0.0.0.0:{port}");
            tokio::spawn(serve_tcp_echo(listener));
        }
        Err(e) => eprintln!("echo: TCP echo not listening on 0.0.0.0:{port}: {e}"),
    }
}

/// Accept connections forever, one task each.
async fn serve_tcp_echo(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Small frames go out at once: this is a latency floor.
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = echo_frames(stream).await;
                });
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                eprintln!("echo: TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Echo length-prefixed frames until the peer closes. `Ok` on a clean close between
/// frames; an error on a frame over [`MAX_FRAME`], a truncated frame or an I/O error.
async fn echo_frames<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<()> {
    // One buffer holds the header and the payload, so each reply is one write.
    let mut buf = vec![0u8; 4];
    loop {
        let mut header = [0u8; 4];
        match stream.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("frame of {len} bytes is over {MAX_FRAME}"),
            ));
        }
        buf.resize(4 + len, 0);
        buf[..4].copy_from_slice(&header);
        stream.read_exact(&mut buf[4..]).await?;
        stream.write_all(&buf).await?;
        stream.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn echoes_frames_back_until_close() {
        let (mut client, server) = tokio::io::duplex(1024);
        let task = tokio::spawn(echo_frames(server));
        let big = vec![7u8; 5000];
        for payload in [&b"hello"[..], b"", &big] {
            client.write_all(&frame(payload)).await.unwrap();
            let mut back = vec![0u8; 4 + payload.len()];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, frame(payload));
        }
        drop(client);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn closes_on_oversized_or_truncated_frame() {
        let (mut client, server) = tokio::io::duplex(1024);
        let task = tokio::spawn(echo_frames(server));
        client
            .write_all(&((MAX_FRAME + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        let (mut client, server) = tokio::io::duplex(1024);
        let task = tokio::spawn(echo_frames(server));
        client.write_all(&frame(b"hello")[..6]).await.unwrap();
        drop(client);
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn serves_over_loopback_tcp() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_tcp_echo(listener));
        let mut conns = Vec::new();
        for _ in 0..2 {
            conns.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            let payload = format!("connection {i}");
            conn.write_all(&frame(payload.as_bytes())).await.unwrap();
            let mut back = vec![0u8; 4 + payload.len()];
            conn.read_exact(&mut back).await.unwrap();
            assert_eq!(back, frame(payload.as_bytes()));
        }
        server.abort();
    }
}
