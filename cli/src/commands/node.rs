//! `mesg node info`.

use super::{Ctx, print_json};
use crate::output::{Paint, outln, po};
use serde_json::Value;

pub async fn info(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client.json(client.get(&["v1", "node"])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let s = |key: &str| v[key].as_str().unwrap_or("-").to_string();
    outln!("node:         {}", client.base());
    outln!("public key:   {}", s("public_key"));
    outln!("peer id:      {}", s("peer_id"));
    outln!("version:      {}", s("version"));
    outln!("data dir:     {}", s("data_dir"));
    outln!("api:          {}", s("api"));
    outln!("service api:  {}", s("service_api"));
    let addrs: Vec<&str> = v["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if addrs.is_empty() {
        outln!("listening:    -");
    } else {
        for (i, a) in addrs.iter().enumerate() {
            outln!(
                "{}{a}",
                if i == 0 {
                    "listening:    "
                } else {
                    "              "
                }
            );
        }
    }
    let docker = &v["docker"];
    if docker["available"].as_bool() == Some(true) {
        outln!(
            "docker:       {} (engine {}, API {})",
            po(Paint::Green, "available"),
            docker["version"].as_str().unwrap_or("?"),
            docker["api_version"].as_str().unwrap_or("?")
        );
    } else {
        outln!(
            "docker:       {}: {}",
            po(Paint::Red, "unavailable"),
            docker["error"].as_str().unwrap_or("unknown reason")
        );
        outln!(
            "              services cannot be deployed or started until Docker runs on the node's machine"
        );
    }
    Ok(())
}
