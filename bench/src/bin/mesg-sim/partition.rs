//! The partition phase of mesg-sim: the nodes cut into halves (each side refuses the
//! other's peer ids with libp2p's connection gate, below every protocol), a new provider
//! started on each side during the cut, then the cut ended and the healing timed.

use super::{Args, Node, provide_echo, until};
use anyhow::Result;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Cut the nodes into halves (each side refuses the other's peer ids, below every
/// protocol), start one new provider on each side during the cut, end the cut, and time
/// (a) the first connection across, (b) every node knowing both new providers.
pub(super) async fn partition(nodes: &[Node], args: &Args) -> Result<String> {
    let half = nodes.len() / 2;
    let (a, b) = nodes.split_at(half);
    let a_ids: Vec<_> = a.iter().map(|x| x.peer).collect();
    let b_ids: Vec<_> = b.iter().map(|x| x.peer).collect();
    let b_set: HashSet<_> = b_ids.iter().copied().collect();
    for x in a {
        x.net.set_blocked(b_ids.clone(), true).await;
    }
    for x in b {
        x.net.set_blocked(a_ids.clone(), true).await;
    }
    let cut_at = Instant::now();
    // Across connections left (should be none once the gate closed them).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let across_cut = across(a, &b_set).await;
    // New providers: node 2 on side A, the last simulated node on side B.
    let pa = &a[2.min(a.len() - 1)];
    let pb = &b[b.len() - 2];
    let service = provide_echo(pa).await?;
    provide_echo(pb).await?;
    let hold = Duration::from_secs(if args.quick { 3 } else { args.cut_secs });
    let own_side = until(
        hold + Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            a.iter()
                .filter(|x| x.key != pa.key)
                .all(|x| x.knows_provider(&service, &pa.key))
                && b.iter()
                    .filter(|x| x.key != pb.key)
                    .all(|x| x.knows_provider(&service, &pb.key))
        },
    )
    .await;
    let leaked = a
        .iter()
        .filter(|x| x.knows_provider(&service, &pb.key))
        .count()
        + b.iter()
            .filter(|x| x.knows_provider(&service, &pa.key))
            .count();
    if let Some(left) = hold.checked_sub(cut_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let held = cut_at.elapsed().as_secs_f64();
    for x in a {
        x.net.set_blocked(b_ids.clone(), false).await;
    }
    for x in b {
        x.net.set_blocked(a_ids.clone(), false).await;
    }
    let healed_at = Instant::now();
    let limit = Duration::from_secs(if args.quick { 15 } else { 60 });
    let mut first_across = None;
    let mut everyone = None;
    while healed_at.elapsed() < limit && (first_across.is_none() || everyone.is_none()) {
        if first_across.is_none() && across(a, &b_set).await > 0 {
            first_across = Some(healed_at.elapsed());
        }
        if everyone.is_none()
            && nodes.iter().all(|x| {
                (x.key == pa.key || x.knows_provider(&service, &pa.key))
                    && (x.key == pb.key || x.knows_provider(&service, &pb.key))
            })
        {
            everyone = Some(healed_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let knowing = nodes
        .iter()
        .filter(|x| x.knows_provider(&service, &pa.key) || x.key == pa.key)
        .filter(|x| x.knows_provider(&service, &pb.key) || x.key == pb.key)
        .count();
    let across_after = across(a, &b_set).await;
    let ms = |d: Option<Duration>| match d {
        Some(d) => format!("{} ms", d.as_millis()),
        None => format!("not within {} s", limit.as_secs()),
    };
    Ok(format!(
        "{} | {held:.1} | {across_cut} | {} | {} | {} | {knowing} of {} | {across_after}",
        match own_side {
            Some(d) => format!("{} ms", d.as_millis()),
            None => "not within the cut".into(),
        },
        leaked,
        ms(first_across),
        ms(everyone),
        nodes.len(),
    ))
}

/// Connections from the nodes of `side` to peers in `other`, asked of all at once.
async fn across(side: &[Node], other: &HashSet<libp2p::PeerId>) -> usize {
    futures::future::join_all(side.iter().map(Node::connected))
        .await
        .iter()
        .map(|c| c.iter().filter(|p| other.contains(p)).count())
        .sum()
}
