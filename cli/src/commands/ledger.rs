//! `mesg ledger`: the economy's books of the node (accounts per peer, the signed log,
//! credit limits, settlement), and the receipt line of `mesg executions show`.

use super::{Ctx, print_json, views};
use crate::output::{Cell, Paint, SHORT, Table, outln, short};
use anyhow::Context;
use clap::Subcommand;
use mesg_api_types::{LedgerAccounts, LedgerLog, ReceiptView};
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// The accounts per peer (the default): balance (positive: the peer owes this node),
    /// reserved, limit, receipts accepted, settled, the last receipt's status.
    #[command(after_help = "Examples:
  mesg ledger
  mesg ledger accounts --json")]
    Accounts,
    /// The signed, hash-chained log, newest first.
    #[command(after_help = "Examples:
  mesg ledger log
  mesg ledger log --limit 500 --json")]
    Log {
        /// Most entries (at most 10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Pay a peer what this node accepted owing it (method `credits`).
    #[command(after_help = "Examples:
  mesg ledger settle PEER_KEY")]
    Settle {
        /// The peer's public key.
        peer: String,
    },
    /// Set a peer's own credit limit in µc (`default`: the node's default again).
    #[command(after_help = "Examples:
  mesg ledger limit PEER_KEY 5000000
  mesg ledger limit PEER_KEY default")]
    Limit {
        /// The peer's public key.
        peer: String,
        /// µc, or `default`.
        limit: String,
    },
}

pub async fn run(ctx: &Ctx, command: Option<LedgerCommand>) -> anyhow::Result<()> {
    match command.unwrap_or(LedgerCommand::Accounts) {
        LedgerCommand::Accounts => accounts(ctx).await,
        LedgerCommand::Log { limit } => log(ctx, limit).await,
        LedgerCommand::Settle { peer } => settle(ctx, &peer).await,
        LedgerCommand::Limit { peer, limit } => set_limit(ctx, &peer, &limit).await,
    }
}

async fn accounts(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client.json(client.get(&["v1", "ledger"])).await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let books: LedgerAccounts = views::decode(&v, "ledger")?;
    if books.accounts.is_empty() {
        outln!(
            "no accounts yet: priced executions between this node and others open them (default credit limit {} µc)",
            books.default_limit
        );
        return Ok(());
    }
    let mut table = Table::new(&[
        "PEER",
        "BALANCE",
        "RESERVED",
        "LIMIT",
        "ACCEPTED",
        "SETTLED",
        "LAST RECEIPT",
    ]);
    for a in &books.accounts {
        let balance = match a.balance {
            b if b > 0 => Cell::painted(format!("+{b}"), Paint::Green),
            b if b < 0 => Cell::painted(b.to_string(), Paint::Yellow),
            b => b.to_string().into(),
        };
        // Accepted: what the peer acknowledged owing (as executor) and what this node
        // accepted owing it (as requester); settled: paid and received.
        let accepted = format!("{} / {}", a.acked, a.accepted);
        let settled = format!("{} / {}", a.received, a.paid);
        let last = match &a.last_receipt {
            Some(s) if s.starts_with("rejected") => {
                Cell::painted(format!("{s} ({} rejected)", a.rejected), Paint::Red)
            }
            Some(s) => s.clone().into(),
            None if a.shares > 0 => format!("publisher: {} µc of shares", a.shares).into(),
            None => "-".to_string().into(),
        };
        table.row(vec![
            short(&a.peer.to_string(), SHORT).into(),
            balance,
            a.reserved.to_string().into(),
            format!("{}{}", a.limit, if a.own_limit { "" } else { "*" }).into(),
            accepted.into(),
            settled.into(),
            last,
        ]);
    }
    table.print();
    outln!(
        "µc; balance > 0: the peer owes this node. accepted: acknowledged by the peer / accepted by this node; settled: received / paid; * the default limit"
    );
    Ok(())
}

async fn log(ctx: &Ctx, limit: usize) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let limit = limit.to_string();
    let v: Value = client
        .json(
            client
                .get(&["v1", "ledger", "log"])
                .query(&[("limit", &limit)]),
        )
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let log: LedgerLog = views::decode(&v, "ledger log")?;
    let mut table = Table::new(&["SEQ", "KIND", "PEER", "EXECUTION", "AMOUNT", "REASON"]);
    for e in &log.entries {
        table.row(vec![
            e.seq.to_string().into(),
            e.kind.clone().into(),
            short(&e.peer.to_string(), SHORT).into(),
            e.execution_id
                .map_or_else(|| "-".to_string(), |id| short(&id.to_string(), SHORT))
                .into(),
            e.amount.to_string().into(),
            crate::output::sanitize(&e.reason, false).into(),
        ]);
    }
    table.print();
    Ok(())
}

async fn settle(ctx: &Ctx, peer: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client
        .json(
            client
                .post(&["v1", "ledger", "settle"])
                .json(&json!({"peer": peer})),
        )
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    outln!(
        "settled with {peer}: {} µc in total ({})",
        v["total"],
        v["method"].as_str().unwrap_or("credits")
    );
    Ok(())
}

async fn set_limit(ctx: &Ctx, peer: &str, limit: &str) -> anyhow::Result<()> {
    let limit: Option<u64> = match limit {
        "default" => None,
        n => Some(
            n.parse()
                .with_context(|| format!("`{n}` is not a number of µc (or `default`)"))?,
        ),
    };
    let client = ctx.client()?;
    let v: Value = client
        .json(
            client
                .put(&["v1", "ledger", "limits", peer])
                .json(&json!({ "limit": limit })),
        )
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    outln!("credit limit of {peer}: {} µc", v["limit"]);
    Ok(())
}

/// The receipt line of an execution (`mesg executions show`).
pub fn receipt_line(v: &Value) -> Option<String> {
    let r: ReceiptView = serde_json::from_value(v.get("receipt")?.clone()).ok()?;
    let with = if r.role == "executor" { "to" } else { "from" };
    let mut line = format!(
        "{} (receipt {} {with} {}, {} µc)",
        r.status,
        r.sequence,
        short(&r.peer.to_string(), SHORT),
        r.amount
    );
    if let Some(reason) = r.reason {
        line.push_str(&format!(": {reason}"));
    }
    Some(line)
}
