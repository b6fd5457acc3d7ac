//! Kademlia's automatic bootstrap does not dial (the node's `network/kad_gate.rs`), while
//! the node's own lookups still do. Three in-process swarms on loopback TCP, no Docker:
//! C provides a key, B is connected to C, A is connected to B only.

use mesg_node::network::{self, NetworkConfig, NetworkHandle};
use mesg_protocol::Keypair;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

struct Swarm {
    net: NetworkHandle,
    registry: libp2p::metrics::Registry,
}

/// A swarm on loopback that dials `bootstrap` (if any) and nothing else it is not told to.
async fn swarm(bootstrap: Option<&Swarm>) -> Swarm {
    let mut registry = libp2p::metrics::Registry::default();
    let bootstrap = match bootstrap {
        Some(b) => vec![b.net.listen_addrs().await.unwrap()[0].clone()],
        None => Vec::new(),
    };
    let (net, mut events) = network::spawn(
        &Keypair::generate().unwrap(),
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap,
            private_network: true,
            ..NetworkConfig::default()
        },
        &mut registry,
        CancellationToken::new(),
    )
    .unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    // Until it listens (its address is what the next swarm dials).
    let deadline = Instant::now() + Duration::from_secs(10);
    while net.listen_addrs().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the swarm never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Swarm { net, registry }
}

impl Swarm {
    async fn connected_to(&self, other: &Swarm) -> bool {
        let peer = other.net.local_peer().to_string();
        self.net
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == peer && p.connected)
    }

    /// `mesg_kad_bootstrap_dials_refused_total` on this swarm's registry.
    fn dials_refused(&self) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("mesg_kad_bootstrap_dials_refused_total "))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

async fn until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bootstrap_learns_of_c_from_b_but_does_not_dial_it_and_a_provider_lookup_does() {
    let key = b"a key only C provides".to_vec();
    let c = swarm(None).await;
    // C alone knows it provides the key: B connects after, so B holds no record of it.
    c.net.start_providing(key.clone()).await;
    let b = swarm(Some(&c)).await;
    until("B connected to C", 10, async || b.connected_to(&c).await).await;
    // B has C in its routing table (identify) before A asks it anything.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A enters B into its routing table: libp2p bootstraps (a lookup of A's own key,
    // asking B, who answers with C). Its dial of C is refused.
    let a = swarm(Some(&b)).await;
    until("A connected to B", 10, async || a.connected_to(&b).await).await;
    until("A's bootstrap reached for C", 10, async || {
        a.dials_refused() >= 1 || a.connected_to(&c).await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !a.connected_to(&c).await,
        "A's bootstrap dialled C, a peer it only heard of from B"
    );

    // A's own lookup dials C (B only knows C is closer) and finds it provides the key.
    let providers = tokio::time::timeout(Duration::from_secs(15), a.net.providers(key))
        .await
        .expect("the provider lookup ended")
        .expect("providers found");
    assert!(
        providers.contains(&c.net.local_peer()),
        "C not among the providers found: {providers:?}"
    );
    assert!(
        a.connected_to(&c).await,
        "the lookup reached C without dialling it?"
    );
}
