//! `mesg peers ban|unban` and the reputation table of `mesg peers`: what the node keeps
//! of the peers it used as providers (docs/verification.md, "Reputation and bans").

use super::network::format_rtt;
use super::{Ctx, print_json, views};
use crate::output::{Cell, Paint, SHORT, Table, outln, short};
use clap::Subcommand;
use mesg_api_types::PeerReputationView;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// Connections, nodes known from their announcements, and the reputation of the
    /// peers this node used (the default).
    #[command(after_help = "Examples:
  mesg peers
  mesg peers list --json | jq -r '.peers[] | select(.connected) | .peer_id'
  mesg peers list --json | jq '.reputation[] | select(.banned)'
  mesg --node http://10.0.0.5:50052 peers")]
    List,
    /// Ban a peer: this node never chooses it as a provider and refuses its submits.
    /// Kept across restarts.
    #[command(after_help = "Examples:
  mesg peers ban PEER_KEY
  mesg peers ban PEER_KEY --reason 'returned wrong outputs'")]
    Ban {
        /// The peer's public key (base58; `mesg peers` lists them).
        key: String,
        /// Why (shown in `mesg peers` and told to the peer when it submits; 256 bytes at
        /// most).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a peer's ban.
    #[command(after_help = "Examples:
  mesg peers unban PEER_KEY")]
    Unban {
        /// The peer's public key (base58).
        key: String,
    },
}

pub async fn run(ctx: &Ctx, command: Option<PeersCommand>) -> anyhow::Result<()> {
    match command.unwrap_or(PeersCommand::List) {
        PeersCommand::List => super::network::peers(ctx).await,
        PeersCommand::Ban { key, reason } => ban(ctx, &key, reason).await,
        PeersCommand::Unban { key } => unban(ctx, &key).await,
    }
}

async fn ban(ctx: &Ctx, key: &str, reason: Option<String>) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client
        .json(
            client
                .put(&["v1", "peers", key, "ban"])
                .json(&json!({ "reason": reason })),
        )
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let r: PeerReputationView = views::decode(&v, "peer reputation")?;
    outln!(
        "banned {}: never chosen as a provider, its submits refused (`mesg peers unban {}` lifts it)",
        r.node,
        r.node
    );
    Ok(())
}

async fn unban(ctx: &Ctx, key: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let v: Value = client
        .json(client.delete(&["v1", "peers", key, "ban"]))
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let r: PeerReputationView = views::decode(&v, "peer reputation")?;
    outln!("{} is not banned", r.node);
    Ok(())
}

/// The reputation table of `mesg peers` (nothing when the node keeps none).
pub fn print_reputation(reputation: &[PeerReputationView]) {
    if reputation.is_empty() {
        return;
    }
    outln!(
        "{}",
        views::bold(&format!(
            "reputation of the peers this node used ({}):",
            reputation.len()
        ))
    );
    let mut table = Table::new(&[
        "NODE",
        "RESULTS",
        "FAILURES",
        "TIMEOUTS",
        "AGREED",
        "DISAGREED",
        "RTT",
        "VERIFIED",
        "STATUS",
    ]);
    for r in reputation {
        let status = if r.banned {
            let why = r
                .ban_reason
                .as_ref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            Cell::painted(format!("banned{why}"), Paint::Red)
        } else if r.distrusted {
            Cell::painted("last (recent disagreement)", Paint::Yellow)
        } else {
            Cell::painted("ok", Paint::Green)
        };
        table.row(vec![
            short(&r.node.to_string(), SHORT).into(),
            r.successes.to_string().into(),
            r.failures.to_string().into(),
            r.timeouts.to_string().into(),
            r.agreed.to_string().into(),
            r.disagreed.to_string().into(),
            format_rtt(r.rtt_us).into(),
            format!("{:.0}%", r.sample_rate * 100.0).into(),
            status,
        ]);
    }
    let text = table.render(crate::output::color_out());
    for line in text.lines() {
        outln!("  {line}");
    }
}
