//! `mesg service search`: the catalogue of the network (`GET /v1/catalogue`) as a table,
//! one row per task, so that a user finds what to run, who publishes it, what a call
//! costs and who provides it before executing anything.

use super::views;
use super::{Ctx, print_json};
use crate::output::{Cell, Paint, SHORT, Table, outln, short};
use clap::Args;
use mesg_api_types::{Catalogue, CatalogueEntry};
use mesg_protocol::economy::Price;
use serde_json::Value;

/// `mesg service search`'s arguments (declared here: args.rs is long enough).
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A sid, or its start (`ech` finds `echo` and `echo-2`); nothing: every service.
    pub query: Option<String>,
    /// Only services with this task, and only this task listed.
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Only tasks whose price per call is at most N micro-credits (free tasks cost 0).
    /// It reads the `call` part of a price, the least a call costs and the least
    /// `mesg exec --max-price` must be; run time and output are priced on top.
    #[arg(long, value_name = "N")]
    pub max_price: Option<u64>,
    /// Only services published by this key (base58), or by keys that start with it (at
    /// least 4 characters, as printed in the PUBLISHER column).
    #[arg(long, value_name = "KEY")]
    pub publisher: Option<String>,
    /// At most N services (1 to 1000; the node's default is 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// A price in a table cell: `free`, or its non-zero parts (`1000 µc/call + 2 µc/ms`).
pub fn price_cell(price: Option<&Price>) -> String {
    let Some(p) = price.filter(|p| !p.is_free()) else {
        return "free".to_string();
    };
    let parts: Vec<String> = [(p.call, "call"), (p.per_ms, "ms"), (p.per_kib, "KiB")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} µc/{unit}"))
        .collect();
    parts.join(" + ")
}

/// Providers' load: the least and the most executions in flight they announce.
fn load_cell(s: &CatalogueEntry) -> String {
    let loads = s.providers.iter().map(|p| p.in_flight);
    match (loads.clone().min(), loads.max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("{lo} in flight"),
        (Some(lo), Some(hi)) => format!("{lo}-{hi} in flight"),
        _ => "-".to_string(),
    }
}

fn publisher_cell(s: &CatalogueEntry) -> String {
    match (s.publishers.first(), s.publishers.len()) {
        (None, _) => "(unpublished)".to_string(),
        (Some(p), 1) => short(&p.to_string(), SHORT),
        (Some(p), n) => format!("{} +{}", short(&p.to_string(), SHORT), n - 1),
    }
}

/// The table of a catalogue answer (one row per task; a service's columns on its first).
pub fn table(c: &Catalogue) -> Table {
    let mut table = Table::new(&[
        "SID",
        "HASH",
        "TASK",
        "PRICE",
        "PUBLISHER",
        "PROVIDERS",
        "LOAD",
    ]);
    for s in &c.services {
        let head = |first: bool| -> Vec<Cell> {
            if !first {
                return vec!["".into(), "".into()];
            }
            vec![
                s.sid.clone().unwrap_or_else(|| "-".into()).into(),
                short(&s.service_hash.to_string(), SHORT).into(),
            ]
        };
        let tail = |first: bool| -> Vec<Cell> {
            if !first {
                return vec!["".into(), "".into(), "".into()];
            }
            vec![
                publisher_cell(s).into(),
                s.providers.len().to_string().into(),
                load_cell(s).into(),
            ]
        };
        if !s.definition_known {
            let mut row = head(true);
            row.push(Cell::painted("?", Paint::Dim));
            row.push(Cell::painted("(definition not fetched yet)", Paint::Dim));
            row.extend(tail(true));
            table.row(row);
            continue;
        }
        for (i, t) in s.tasks.iter().enumerate() {
            let mut row = head(i == 0);
            row.push(t.key.clone().into());
            row.push(if t.free {
                Cell::painted("free", Paint::Green)
            } else {
                price_cell(t.price.as_ref()).into()
            });
            row.extend(tail(i == 0));
            table.row(row);
        }
        if s.tasks.is_empty() {
            let mut row = head(true);
            row.push("-".into());
            row.push("-".into());
            row.extend(tail(true));
            table.row(row);
        }
    }
    table
}

pub async fn run(ctx: &Ctx, args: &SearchArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(q) = &args.query {
        query.push(("sid", q.clone()));
    }
    if let Some(t) = &args.task {
        query.push(("task", t.clone()));
    }
    if let Some(m) = args.max_price {
        query.push(("max_price", m.to_string()));
    }
    if let Some(p) = &args.publisher {
        query.push(("publisher", p.clone()));
    }
    if let Some(l) = args.limit {
        query.push(("limit", l.to_string()));
    }
    let v: Value = client
        .json(client.get(&["v1", "catalogue"]).query(&query))
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let c: Catalogue = views::decode(&v, "catalogue")?;
    if c.services.is_empty() {
        outln!(
            "no service matches, among those this node hears announced (`mesg service list --network`){}",
            if c.unfetched > 0 {
                format!(
                    "; {} definition(s) not fetched yet: try again in a few seconds",
                    c.unfetched
                )
            } else {
                String::new()
            }
        );
        return Ok(());
    }
    table(&c).print();
    if c.matched as usize > c.services.len() {
        outln!(
            "{} of {} matching services shown (--limit)",
            c.services.len(),
            c.matched
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_as_their_non_zero_parts() {
        assert_eq!(price_cell(None), "free");
        assert_eq!(price_cell(Some(&Price::default())), "free");
        let p = Price {
            call: 1000,
            per_ms: 2,
            per_kib: 0,
        };
        assert_eq!(price_cell(Some(&p)), "1000 µc/call + 2 µc/ms");
        let p = Price {
            call: 0,
            per_ms: 0,
            per_kib: 5,
        };
        assert_eq!(price_cell(Some(&p)), "5 µc/KiB");
    }
}
