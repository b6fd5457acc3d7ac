//! `mesg node info`.

use super::views;
use super::{Ctx, print_json};
use crate::output::{Paint, outln, po};
use mesg_api_types::NodeInfo;
use serde_json::Value;

pub async fn info(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client.json(client.get(&["v1", "node"])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let info: NodeInfo = views::decode(&v, "node info")?;
    outln!("node:         {}", client.base());
    outln!("public key:   {}", info.public_key);
    outln!("peer id:      {}", info.peer_id);
    outln!("version:      {}", info.version);
    outln!("data dir:     {}", info.data_dir);
    outln!("api:          {}", info.api);
    outln!("service api:  {}", info.service_api);
    if info.listen_addrs.is_empty() {
        outln!("listening:    -");
    } else {
        for (i, a) in info.listen_addrs.iter().enumerate() {
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
    match &info.docker {
        Some(docker) if docker.available => {
            outln!(
                "docker:       {} (engine {}, API {})",
                po(Paint::Green, "available"),
                docker.version.as_deref().unwrap_or("?"),
                docker.api_version.as_deref().unwrap_or("?")
            );
        }
        docker => {
            outln!(
                "docker:       {}: {}",
                po(Paint::Red, "unavailable"),
                docker
                    .as_ref()
                    .and_then(|d| d.error.as_deref())
                    .unwrap_or("unknown reason")
            );
            outln!(
                "              services cannot be deployed or started until Docker runs on the node's machine"
            );
        }
    }
    Ok(())
}
