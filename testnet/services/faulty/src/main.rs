//! The `faulty` example service: fails, breaks its output schema, hangs, or crashes on
//! demand. With CRASH_ON_START=1 it exits at once, to exercise restart limits.

use mesg_sdk::{Service, Task};
use serde_json::json;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_target(false).init();
    if std::env::var("CRASH_ON_START").as_deref() == Ok("1") {
        eprintln!("faulty: CRASH_ON_START=1, exiting with code 3");
        std::process::exit(3);
    }
    let service = match Service::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("faulty: {e}");
            std::process::exit(2);
        }
    };
    println!("faulty: ready");
    let result = service
        .listen(|task: Task| async move {
            match task.key.as_str() {
                "fail" => Err(task.inputs["message"]
                    .as_str()
                    .unwrap_or("failed on purpose")
                    .to_string()),
                "bad_output" => Ok(json!({ "count": "not a number" })),
                "hang" => std::future::pending().await,
                "crash" => {
                    eprintln!("faulty: crashing on purpose");
                    std::process::exit(4);
                }
                "ok" => Ok(json!({ "ok": true })),
                other => Err(format!("faulty has no task `{other}`")),
            }
        })
        .await;
    if let Err(e) = result {
        eprintln!("faulty: {e}");
        std::process::exit(1);
    }
}
