//! The `kv` example service: `set` and `get` values kept as files in the /data volume.
//! `kv set KEY JSON` and `kv get KEY` do the same from the command line (for tests that
//! check the volume without a node).

use mesg_sdk::{Service, Task};
use serde_json::{Value, json};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    PathBuf::from(std::env::var("KV_DIR").unwrap_or_else(|_| "/data".into()))
}

fn path_of(key: &str) -> Result<PathBuf, String> {
    if key.is_empty()
        || key.len() > 200
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || key.starts_with('.')
    {
        return Err(format!(
            "invalid key `{key}`: use letters, digits, -, _ and ."
        ));
    }
    Ok(data_dir().join(format!("{key}.json")))
}

fn set(key: &str, value: &Value) -> Result<(), String> {
    let path = path_of(key)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value.to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
}

fn get(key: &str) -> Result<Option<Value>, String> {
    match std::fs::read_to_string(path_of(key)?) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn handle(task: &Task) -> Result<Value, String> {
    let key = task.inputs["key"].as_str().unwrap_or_default();
    match task.key.as_str() {
        "set" => set(key, &task.inputs["value"]).map(|_| json!({ "ok": true })),
        "get" => Ok(match get(key)? {
            Some(v) => json!({ "found": true, "value": v }),
            None => json!({ "found": false }),
        }),
        other => Err(format!("kv has no task `{other}`")),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("set") if args.len() == 4 => {
            let value = serde_json::from_str(&args[3]).unwrap_or(Value::String(args[3].clone()));
            if let Err(e) = set(&args[2], &value) {
                eprintln!("kv: {e}");
                std::process::exit(1);
            }
            return;
        }
        Some("get") if args.len() == 3 => {
            match get(&args[2]) {
                Ok(Some(v)) => println!("{v}"),
                Ok(None) => std::process::exit(3),
                Err(e) => {
                    eprintln!("kv: {e}");
                    std::process::exit(1);
                }
            }
            return;
        }
        Some(other) => {
            eprintln!("usage: kv [set KEY JSON | get KEY]; got `{other}`");
            std::process::exit(2);
        }
        None => {}
    }
    tracing_subscriber::fmt().with_target(false).init();
    let service = match Service::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kv: {e}");
            std::process::exit(2);
        }
    };
    println!("kv: ready, data in {}", data_dir().display());
    if let Err(e) = service
        .listen(|task: Task| async move { handle(&task) })
        .await
    {
        eprintln!("kv: {e}");
        std::process::exit(1);
    }
}
