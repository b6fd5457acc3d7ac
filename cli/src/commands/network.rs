//! `mesg peers` (list) and `mesg service list --network`: what the node knows of the network.

use super::views;
use super::{Ctx, print_json};
use crate::output::{Cell, Paint, SHORT, Table, format_duration_ms, outln, short};
use mesg_api_types::{NetworkServiceList, NetworkServiceView, PeerList};
use serde_json::Value;

/// A round-trip time: `850 µs`, `12.3 ms`.
pub fn format_rtt(us: Option<f64>) -> String {
    match us {
        Some(us) if us.is_finite() && us >= 0.0 => {
            if us < 1000.0 {
                format!("{us:.0} µs")
            } else {
                format!("{:.1} ms", us / 1000.0)
            }
        }
        _ => "-".to_string(),
    }
}

fn print_indented(table: &Table) {
    let text = table.render(crate::output::color_out());
    for line in text.lines() {
        outln!("  {line}");
    }
}

pub async fn peers(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client.json(client.get(&["v1", "peers"])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let PeerList {
        nodes,
        peers,
        reputation,
    } = views::decode(&v, "peer list")?;
    if peers.is_empty() && nodes.is_empty() && reputation.is_empty() {
        outln!(
            "no peers: this node is alone. Start it with `mesg-node --bootstrap ADDR` to join a network; `mesg node info` prints the addresses others can bootstrap from"
        );
        return Ok(());
    }
    let connected = peers.iter().filter(|p| p.connected).count();
    outln!(
        "{}",
        views::bold(&format!(
            "peers ({connected} connected, {} known):",
            peers.len()
        ))
    );
    if peers.is_empty() {
        outln!("  (none)");
    } else {
        let mut table = Table::new(&["PEER ID", "NODE", "CONNECTED", "ADDRESSES"]);
        for p in &peers {
            let node = nodes
                .iter()
                .find(|n| n.peer_id == p.peer_id)
                .map(|n| short(&n.node.to_string(), SHORT))
                .unwrap_or_else(|| "-".into());
            table.row(vec![
                p.peer_id.clone().into(),
                node.into(),
                if p.connected {
                    Cell::painted("yes", Paint::Green)
                } else {
                    Cell::painted("no", Paint::Dim)
                },
                if p.addrs.is_empty() {
                    "-".to_string().into()
                } else {
                    p.addrs.join(" ").into()
                },
            ]);
        }
        print_indented(&table);
    }
    outln!(
        "{}",
        views::bold(&format!(
            "nodes known from their announcements ({}):",
            nodes.len()
        ))
    );
    if nodes.is_empty() {
        outln!("  (none yet: nodes announce what they run every 5 s)");
        super::peers::print_reputation(&reputation);
        return Ok(());
    }
    let mut table = Table::new(&["NODE", "PEER ID", "SERVICES", "RTT", "EXPIRES"]);
    for n in &nodes {
        let services: Vec<String> = n
            .services
            .iter()
            .map(|s| {
                let label = s
                    .sid
                    .clone()
                    .unwrap_or_else(|| short(&s.service_hash.to_string(), SHORT));
                if s.in_flight > 0 {
                    format!("{label} ({} in flight)", s.in_flight)
                } else {
                    label
                }
            })
            .collect();
        table.row(vec![
            short(&n.node.to_string(), SHORT).into(),
            n.peer_id.clone().into(),
            if services.is_empty() {
                "-".to_string().into()
            } else {
                services.join(", ").into()
            },
            format_rtt(n.rtt_us).into(),
            format!("in {}", format_duration_ms(n.expires_in_ms)).into(),
        ]);
    }
    print_indented(&table);
    super::peers::print_reputation(&reputation);
    Ok(())
}

pub async fn services(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client
        .json(client.get(&["v1", "network", "services"]))
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let services = views::decode::<NetworkServiceList>(&v, "service list")?.services;
    if services.is_empty() {
        outln!(
            "no service runs in the network yet, on this node or on the nodes it knows (`mesg peers` shows them)"
        );
        return Ok(());
    }
    let mut table = Table::new(&[
        "SID",
        "PUBLISHER",
        "HASH",
        "PROVIDERS",
        "NODE",
        "PEER ID",
        "IN FLIGHT",
    ]);
    let publisher = |s: &NetworkServiceView| match (&s.sid, &s.publisher) {
        (None, _) => "-".to_string(),
        (Some(_), Some(p)) => short(&p.to_string(), SHORT),
        (Some(_), None) => "(unpublished)".to_string(),
    };
    for s in &services {
        let mut first = true;
        for p in &s.providers {
            let (sid, by, hash, count) = if first {
                (
                    s.sid.clone().unwrap_or_else(|| "-".into()),
                    publisher(s),
                    short(&s.service_hash.to_string(), SHORT),
                    s.providers.len().to_string(),
                )
            } else {
                Default::default()
            };
            first = false;
            table.row(vec![
                sid.into(),
                by.into(),
                hash.into(),
                count.into(),
                short(&p.node.to_string(), SHORT).into(),
                p.peer_id.clone().into(),
                p.in_flight.to_string().into(),
            ]);
        }
        if s.providers.is_empty() {
            table.row(vec![
                s.sid.clone().unwrap_or_else(|| "-".into()).into(),
                publisher(s).into(),
                short(&s.service_hash.to_string(), SHORT).into(),
                "0".into(),
            ]);
        }
    }
    table.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_read_in_the_right_unit() {
        assert_eq!(format_rtt(None), "-");
        assert_eq!(format_rtt(Some(850.4)), "850 µs");
        assert_eq!(format_rtt(Some(12_345.0)), "12.3 ms");
        assert_eq!(format_rtt(Some(f64::NAN)), "-");
    }
}
