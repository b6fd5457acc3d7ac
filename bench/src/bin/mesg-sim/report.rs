//! The tables mesg-sim prints (and appends to `--out`): one row per size, the details,
//! the partition and the connections per phase.

use super::{Args, Row};
use std::fmt::Write as _;

pub(super) fn tables(rows: &[Row], args: &Args) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| nodes (simulated) | membership (ms) | provider known p50 (ms) | provider known max (ms) | new node first exec from node start (ms) | idle in KiB/node/min mean / max | idle out KiB/node/min mean / max |\n|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} |",
            r.n,
            r.membership,
            r.provider_p50,
            r.provider_max,
            r.first_exec,
            r.idle_in.0,
            r.idle_in.1,
            r.idle_out.0,
            r.idle_out.1
        );
    }
    let _ = writeln!(
        s,
        "\nDetails:\n\n| nodes | wall time (s) | start all (s) | membership reached (min nodes known / N-1) | connected peers per node at idle min / mean / max (target {}, max {}) | nodes that know the provider | new node: attempts until the first completed | idle window (s) | connections dialled per node per minute at idle | over one refresh period: window (s), in mean / max, out mean / max |\n|---|---|---|---|---|---|---|---|---|---|",
        args.target_peers, args.max_peers
    );
    for r in rows {
        let fp = match &r.full_period {
            Some((secs, i, o)) => format!(
                "{secs:.0}: {:.1} / {:.1}, {:.1} / {:.1}",
                i.0, i.1, o.0, o.1
            ),
            None => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.1} | {} / {} | {} / {:.1} / {} | {} of {} | {} | {:.0} | {:.1} | {} |",
            r.n,
            r.wall_s,
            r.start_all_s,
            r.membership_min,
            r.n - 1,
            r.conns.0,
            r.conns.1,
            r.conns.2,
            r.provider_known,
            r.n - 1,
            r.first_exec_attempts,
            r.idle_window_s,
            r.idle_opened,
            fp
        );
    }
    let _ = writeln!(
        s,
        "\nPartition into halves (N + 1 nodes, the newcomer included), one new provider started on each side during the cut:\n\n| nodes | each side knows its new provider after | cut held (s) | connections across 1 s into the cut | nodes that learned the other side's provider during the cut | first connection across after the cut (healed) | every node knows both new providers after the cut | nodes knowing both at the end | connections across at the end |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(s, "| {} | {} |", r.n, r.partition);
    }
    let _ = writeln!(
        s,
        "\nConnections per phase, all nodes together (the nodes' `mesg_connections_*` and `mesg_kad_*` counters):\n\n| nodes | phase | length (s) | connections |\n|---|---|---|---|"
    );
    for r in rows {
        for (name, secs, line) in &r.churn {
            let _ = writeln!(s, "| {} | {name} | {secs:.0} | {line} |", r.n);
        }
    }
    s
}
