//! `mesg executions why ID`: why an execution is not running (the node's diagnosis), and
//! the warning of `mesg exec` when no node is known to provide the service.

use super::executions::resolve_id;
use super::views;
use super::{Ctx, print_json};
use crate::client::Client;
use crate::output::{
    Cell, Paint, SHORT, Table, errln, format_age, format_duration_ms, outln, pe, po, sanitize,
    short, status_paint,
};
use mesg_api_types::{Diagnosis, DiagnosisState, PeerVerdict};
use mesg_protocol::now_ms;
use serde_json::Value;

pub async fn why(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let id = resolve_id(client, id).await?;
    let v: Value = client
        .json(client.get(&["v1", "executions", &id, "why"]))
        .await?;
    if ctx.json() {
        print_json(&v);
        return Ok(());
    }
    let d: Diagnosis = views::decode(&v, "diagnosis")?;
    print_diagnosis(&d, now_ms());
    Ok(())
}

fn verdict_paint(v: PeerVerdict) -> Paint {
    match v {
        PeerVerdict::Busy | PeerVerdict::NotTried | PeerVerdict::Offered => Paint::Yellow,
        PeerVerdict::NoInstance
        | PeerVerdict::NotAnswering
        | PeerVerdict::Unreachable
        | PeerVerdict::Refused
        | PeerVerdict::PriceAboveCap => Paint::Red,
    }
}

/// The diagnosis as `mesg executions why` prints it: the summary, the facts, and one row
/// per provider considered.
pub fn print_diagnosis(d: &Diagnosis, now: u64) {
    let w = |label: &str, value: String| outln!("{:<12}{value}", format!("{label}:"));
    w("execution", d.execution_id.to_string());
    w(
        "status",
        format!(
            "{} ({})",
            po(status_paint(d.status.as_str()), d.status.as_str()),
            d.state.as_str()
        ),
    );
    match &d.sid {
        Some(sid) => w("service", format!("{sid} ({})", d.service_hash)),
        None => w("service", d.service_hash.to_string()),
    }
    w("why", sanitize(&d.summary, false));
    if d.state != DiagnosisState::Routing {
        if let Some(x) = &d.executor {
            w("executor", x.to_string());
        }
        if let Some(n) = d.queued_tasks {
            w(
                "queued",
                format!("{n} task(s) before the container takes them"),
            );
        }
        return;
    }
    let mut when = Vec::new();
    if let Some(t) = d.next_attempt_at {
        when.push(format!(
            "next in {}",
            format_duration_ms(t.saturating_sub(now))
        ));
    }
    if let Some(t) = d.patience_until {
        when.push(if t > now {
            format!("gives up in {}", format_duration_ms(t - now))
        } else {
            "giving up".to_string()
        });
    }
    let when = if when.is_empty() {
        String::new()
    } else {
        format!(" ({})", when.join(", "))
    };
    w("attempts", format!("{}{when}", d.attempts));
    if let Some(e) = &d.last_error {
        w("last error", po(Paint::Red, &sanitize(e, false)));
    }
    w(
        "nodes",
        format!(
            "{} known; providers considered: {}; without the service: {}",
            d.known_nodes,
            d.peers.len(),
            d.without_service
        ),
    );
    if d.peers.is_empty() {
        return;
    }
    outln!();
    let mut table = Table::new(&["PEER", "VERDICT", "CODE", "WHEN", "DETAIL"]);
    for p in &d.peers {
        let mut verdict = p.verdict.label().to_string();
        if p.offered_since.is_some()
            && !matches!(p.verdict, PeerVerdict::Offered | PeerVerdict::NotAnswering)
        {
            verdict.push_str(", offered again now");
        }
        table.row(vec![
            p.peer_id.clone().into(),
            Cell::painted(verdict, verdict_paint(p.verdict)),
            p.code.clone().unwrap_or_else(|| "-".into()).into(),
            p.at.map(|t| format_age(now, t))
                .unwrap_or_else(|| "-".into())
                .into(),
            sanitize(p.detail.as_deref().unwrap_or(""), false).into(),
        ]);
    }
    table.print();
}

/// The `waiting:` line of `mesg executions show`, from the execution's diagnosis (an
/// execution that waits for a provider or an instance carries one).
pub fn print_waiting(execution: &Value, id: &str) {
    if let Some(why) = execution["diagnosis"]["summary"].as_str() {
        outln!(
            "{:<16}{} (`mesg executions why {}`)",
            "waiting:",
            sanitize(why, false),
            short(id, SHORT)
        );
    }
}

/// Whether any node (this one included) is known to provide `service` (a hash, a sid or
/// `sid@PUBLISHER`), from `GET /v1/network/services`. `None` when the node did not say.
pub async fn provider_known(client: &Client, service: &str) -> Option<bool> {
    let v: Value = client
        .json(client.get(&["v1", "network", "services"]))
        .await
        .ok()?;
    let sid = service.split('@').next().unwrap_or(service);
    let services = v["services"].as_array()?;
    Some(services.iter().any(|s| {
        let named = s["service_hash"].as_str() == Some(service) || s["sid"].as_str() == Some(sid);
        named && s["providers"].as_array().is_some_and(|p| !p.is_empty())
    }))
}

/// After an execution of a service no node is known to provide was created: warn at once
/// (on stderr) when the node's diagnosis confirms that nobody provides it.
pub async fn warn_if_unprovided(client: &Client, id: &str, service: &str) {
    let Ok(v) = client
        .json::<Value>(client.get(&["v1", "executions", id, "why"]))
        .await
    else {
        return;
    };
    let Ok(d) = views::decode::<Diagnosis>(&v, "diagnosis") else {
        return;
    };
    if d.state != DiagnosisState::Routing || !d.peers.is_empty() {
        return;
    }
    let wait = d
        .patience_until
        .map(|t| format!(" up to {}", format_duration_ms(t.saturating_sub(now_ms()))))
        .unwrap_or_default();
    errln!(
        "{} no node in the network is known to provide service {service}; the execution will wait{wait} for one (`mesg executions why {id}` says more)",
        pe(Paint::Yellow, "warning:"),
    );
}
