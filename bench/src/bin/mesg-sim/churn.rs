//! Connection churn of mesg-sim, per phase: the nodes' own connection counters
//! (`mesg_connections_opened_total{origin}`, `mesg_connections_closed_total{origin,
//! reason}`, `mesg_connections_short_lived_total`, `mesg_kad_queries_total{kind}`,
//! `mesg_kad_requests_total{kind}`, see the node's `network/conn_stats.rs`), read from
//! every node's metrics registry and summed, so that a phase's figures are the difference
//! of two snapshots.

use super::Node;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The nodes' Kademlia routing tables now (`mesg_kad_routing_table_peers`): min / mean /
/// max peers, and how many nodes hold fewer than K = 20 (each insertion into such a
/// table starts a Kademlia bootstrap).
pub(super) fn routing_tables(nodes: &[Node]) -> String {
    // Each node's registry encoded once; its table size and bootstraps read from it.
    let mut sizes = Vec::new();
    let mut boots = Vec::new();
    for node in nodes {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &node.registry).is_err() {
            continue;
        }
        let value = |prefix: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse().ok())
        };
        sizes.extend(value("mesg_kad_routing_table_peers "));
        boots.extend(value("mesg_kad_queries_total{kind=\"bootstrap\"} "));
    }
    if sizes.is_empty() {
        return "routing tables: none read".into();
    }
    let min = sizes.iter().copied().fold(f64::MAX, f64::min);
    let max = sizes.iter().copied().fold(0.0, f64::max);
    let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
    let small = sizes.iter().filter(|&&s| s < 20.0).count();
    let most_boots = boots.iter().copied().fold(0.0, f64::max);
    format!(
        "routing tables {min:.0} / {mean:.1} / {max:.0} peers (min / mean / max), {small} of {} below 20; kad bootstraps finished since the start: {} nodes, at most {most_boots:.0} on one",
        sizes.len(),
        boots.iter().filter(|&&b| b > 0.0).count()
    )
}

/// Every series of the counters above, summed over the nodes (`name{labels}` → value).
#[derive(Clone, Default)]
pub(super) struct Snapshot(BTreeMap<String, f64>);

impl Snapshot {
    pub(super) fn take(nodes: &[Node]) -> Snapshot {
        let mut sums = BTreeMap::new();
        for node in nodes {
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, &node.registry).is_err() {
                continue;
            }
            for line in text.lines() {
                if !(line.starts_with("mesg_connections_") || line.starts_with("mesg_kad_")) {
                    continue;
                }
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let v: f64 = value.parse().unwrap_or(0.0);
                *sums.entry(series.to_string()).or_insert(0.0) += v;
            }
        }
        Snapshot(sums)
    }

    /// What happened since `before`.
    pub(super) fn since(&self, before: &Snapshot) -> Snapshot {
        Snapshot(
            self.0
                .iter()
                .map(|(k, v)| {
                    let d = v - before.0.get(k).copied().unwrap_or(0.0);
                    (k.clone(), d.max(0.0))
                })
                .collect(),
        )
    }

    /// The sum of the series of `metric` whose labels contain every one of `labels`.
    pub(super) fn sum(&self, metric: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(metric)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                    && labels.iter().all(|l| k.contains(l))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
            // An empty f64 sum is -0.0, which prints as "-0".
            + 0.0
    }

    /// Connections opened per node per minute over `secs` with `nodes` nodes (each
    /// counted once, by its dialer).
    pub(super) fn opened_per_node_min(&self, nodes: usize, secs: f64) -> f64 {
        let dialled = self.sum("mesg_connections_opened_total", &[])
            - self.sum("mesg_connections_opened_total", &["origin=\"inbound\""]);
        dialled / nodes as f64 * 60.0 / secs
    }

    /// One line: opened (by origin), closed (by reason), short-lived, Kademlia queries.
    pub(super) fn line(&self) -> String {
        let opened = |o: &str| {
            self.sum(
                "mesg_connections_opened_total",
                &[&format!("origin=\"{o}\"")],
            )
        };
        let closed = |r: &str| {
            self.sum(
                "mesg_connections_closed_total",
                &[&format!("reason=\"{r}\"")],
            )
        };
        let mut s = String::new();
        let _ = write!(
            s,
            "dialled {:.0} (target {:.0}, bootstrap {:.0}, request {:.0}, kademlia {:.0}, and {:.0} inbound); closed trimmed {:.0}, transient {:.0}, by the peer {:.0}, here {:.0}; short-lived {:.0}; kad bootstraps {:.0} ({:.0} requests), other kad queries {:.0} ({:.0} requests)",
            self.sum("mesg_connections_opened_total", &[]) - opened("inbound"),
            opened("target"),
            opened("bootstrap"),
            opened("request"),
            opened("kademlia"),
            opened("inbound"),
            closed("trimmed"),
            closed("transient"),
            closed("remote"),
            closed("local"),
            self.sum("mesg_connections_short_lived_total", &[]),
            self.sum("mesg_kad_queries_total", &["kind=\"bootstrap\""]),
            self.sum("mesg_kad_requests_total", &["kind=\"bootstrap\""]),
            self.sum("mesg_kad_queries_total", &[])
                - self.sum("mesg_kad_queries_total", &["kind=\"bootstrap\""]),
            self.sum("mesg_kad_requests_total", &[])
                - self.sum("mesg_kad_requests_total", &["kind=\"bootstrap\""]),
        );
        s
    }
}
