//! The `echo` example service: `echo` returns its inputs, `sleep` waits, `tick` emits an
//! event. `echo env` prints the MESG_* variables (tests read them with `docker exec`).

use mesg_sdk::{Service, Task};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("env") {
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("MESG_") || k == "TICK_INTERVAL_MS")
            .collect();
        vars.sort();
        for (k, v) in vars {
            println!("{k}={v}");
        }
        return;
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
    println!("echo: ready");
    let emitter = service.clone();
    let result = service
        .listen(move |task: Task| {
            let emitter = emitter.clone();
            let ticks = ticks.clone();
            async move {
                match task.key.as_str() {
                    "echo" => Ok(task.inputs),
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
