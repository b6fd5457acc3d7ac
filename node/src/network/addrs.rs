//! Which addresses a peer may make this node dial.
//!
//! Announcements and identify messages carry addresses chosen by the remote peer. Taken
//! as they come, they let any peer make the whole network dial a victim (a host on the
//! operator's LAN, a service on loopback) over and over. So addresses from peers are
//! capped in number and, unless the node runs in a private network (every node on
//! loopback, a LAN or a Docker network), loopback, private and link-local ones are
//! dropped. Addresses the operator gives (`--listen`, `--bootstrap`) are never filtered.
//!
//! A relayed address (`<relay address>/p2p/<relay id>/p2p-circuit`) is taken when it is
//! well formed (one circuit, the relay's id right before it, an address before that),
//! under the same rule for the relay's address, and at most [`MAX_CIRCUIT_ADDRS`] of
//! them; the destination after the circuit is dropped (the node dials the peer that
//! announced it, never another one named there).

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Most addresses taken from one announcement or identify message: a node listens on a
/// handful (TCP and QUIC, IPv4 and IPv6); more only serves to make us dial others.
pub const MAX_REMOTE_ADDRS: usize = 8;

/// Most relayed addresses among them (a node reserves on a relay or two; each address
/// is a dial of the relay it names).
pub const MAX_CIRCUIT_ADDRS: usize = 4;

/// Whether the node runs in a private network, as the operator asked (`--private-network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PrivateNetwork {
    /// On when one of the node's own `--listen` or `--bootstrap` addresses is a loopback
    /// or private IP address (a test network, a LAN, a Docker network).
    #[default]
    Auto,
    On,
    Off,
}

impl PrivateNetwork {
    /// Resolve `auto` against the node's own addresses.
    pub fn resolve(self, listen: &[Multiaddr], bootstrap: &[Multiaddr]) -> bool {
        match self {
            PrivateNetwork::On => true,
            PrivateNetwork::Off => false,
            PrivateNetwork::Auto => listen
                .iter()
                .chain(bootstrap)
                .any(|a| !is_unspecified(a) && is_private(a)),
        }
    }
}

/// Whether `addr` names a loopback, private, link-local or otherwise non-global host
/// (including `localhost` by name).
pub fn is_private(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip4_private(&ip),
        Protocol::Ip6(ip) => ip6_private(&ip),
        Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) | Protocol::Dnsaddr(h) => {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost")
        }
        _ => false,
    })
}

fn ip4_private(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        // 100.64.0.0/10 (carrier-grade NAT) and 0.0.0.0/8.
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || o[0] == 0
}

fn ip6_private(ip: &Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ip4_private(&v4);
    }
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
}

/// The addresses of `addrs` this node may remember and dial: without `/p2p` suffixes
/// (a relayed address keeps its relay's id), never unspecified, private ones only in a
/// private network, at most [`MAX_REMOTE_ADDRS`] of which [`MAX_CIRCUIT_ADDRS`] relayed.
/// Returns them and how many were dropped.
pub fn filter_remote(addrs: Vec<Multiaddr>, private_network: bool) -> (Vec<Multiaddr>, usize) {
    let total = addrs.len();
    let mut out: Vec<Multiaddr> = Vec::new();
    let mut circuits = 0;
    for a in addrs {
        let circuit = a.iter().any(|p| matches!(p, Protocol::P2pCircuit));
        let a = if circuit {
            match relayed(&a) {
                Some(a) if circuits < MAX_CIRCUIT_ADDRS => a,
                _ => continue,
            }
        } else {
            a.iter()
                .filter(|p| !matches!(p, Protocol::P2p(_)))
                .collect()
        };
        if is_unspecified(&a) || (!private_network && is_private(&a)) || out.contains(&a) {
            continue;
        }
        circuits += usize::from(circuit);
        out.push(a);
        if out.len() == MAX_REMOTE_ADDRS {
            break;
        }
    }
    let dropped = total - out.len();
    (out, dropped)
}

/// A relayed address reduced to `<relay address>/p2p/<relay id>/p2p-circuit`, or `None`
/// when it is malformed: more than one circuit, no relay id right before it, no
/// address before the relay id, anything but a peer id after it.
fn relayed(addr: &Multiaddr) -> Option<Multiaddr> {
    let parts: Vec<Protocol> = addr.iter().collect();
    let at = parts
        .iter()
        .position(|p| matches!(p, Protocol::P2pCircuit))?;
    let (before, after) = (&parts[..at], &parts[at + 1..]);
    if !matches!(before.last(), Some(Protocol::P2p(_))) || before.len() < 2 {
        return None;
    }
    if before[..before.len() - 1]
        .iter()
        .any(|p| matches!(p, Protocol::P2p(_)))
        || after.len() > 1
        || after.iter().any(|p| !matches!(p, Protocol::P2p(_)))
    {
        return None;
    }
    Some(
        before
            .iter()
            .cloned()
            .chain(std::iter::once(Protocol::P2pCircuit))
            .collect(),
    )
}

pub(super) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_loopback_addresses_are_recognised() {
        for s in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/172.17.0.2/tcp/1",
            "/ip4/192.168.1.1/udp/1/quic-v1",
            "/ip4/169.254.1.1/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/::ffff:10.0.0.1/tcp/1",
            "/dns4/localhost/tcp/1",
        ] {
            assert!(is_private(&a(s)), "{s}");
        }
        for s in [
            "/ip4/8.8.8.8/tcp/1",
            "/ip6/2001:4860::8888/tcp/1",
            "/dns4/example.org/tcp/1",
        ] {
            assert!(!is_private(&a(s)), "{s}");
        }
    }

    #[test]
    fn remote_addresses_are_filtered_deduplicated_and_capped() {
        let mut addrs = vec![
            a("/ip4/127.0.0.1/tcp/1"),
            a("/ip4/10.0.0.1/tcp/1"),
            a("/ip4/0.0.0.0/tcp/1"),
            a("/ip4/8.8.8.8/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"),
            a("/ip4/8.8.8.8/tcp/1"),
        ];
        let (kept, dropped) = filter_remote(addrs.clone(), false);
        assert_eq!(kept, vec![a("/ip4/8.8.8.8/tcp/1")]);
        assert_eq!(dropped, 4);
        let (kept, _) = filter_remote(addrs.clone(), true);
        assert_eq!(kept.len(), 3, "{kept:?}");
        for port in 2..100 {
            addrs.push(a(&format!("/ip4/9.9.9.9/tcp/{port}")));
        }
        let (kept, dropped) = filter_remote(addrs.clone(), false);
        assert_eq!(kept.len(), MAX_REMOTE_ADDRS);
        assert_eq!(dropped, addrs.len() - MAX_REMOTE_ADDRS);
    }

    #[test]
    fn relayed_addresses_keep_their_relay_and_are_checked() {
        let relay = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        let dst = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X";
        let good = a(&format!(
            "/ip4/8.8.8.8/tcp/1/p2p/{relay}/p2p-circuit/p2p/{dst}"
        ));
        let (kept, dropped) = filter_remote(vec![good], false);
        assert_eq!(
            kept,
            vec![a(&format!("/ip4/8.8.8.8/tcp/1/p2p/{relay}/p2p-circuit"))]
        );
        assert_eq!(dropped, 0);
        for bad in [
            format!("/p2p/{relay}/p2p-circuit"),
            "/ip4/8.8.8.8/tcp/1/p2p-circuit".to_string(),
            format!("/ip4/8.8.8.8/tcp/1/p2p/{relay}/p2p-circuit/p2p-circuit"),
            format!("/ip4/8.8.8.8/tcp/1/p2p/{relay}/p2p-circuit/ip4/1.1.1.1/tcp/2"),
            format!("/ip4/8.8.8.8/tcp/1/p2p/{dst}/p2p/{relay}/p2p-circuit"),
        ] {
            let (kept, _) = filter_remote(vec![a(&bad)], true);
            assert!(kept.is_empty(), "{bad}");
        }
        // A relay on a private address: only in a private network.
        let private = a(&format!("/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit"));
        assert!(filter_remote(vec![private.clone()], false).0.is_empty());
        assert_eq!(filter_remote(vec![private], true).0.len(), 1);
        // At most MAX_CIRCUIT_ADDRS relayed ones, direct ones still taken after them.
        let mut many: Vec<Multiaddr> = (1..20)
            .map(|p| a(&format!("/ip4/8.8.8.8/tcp/{p}/p2p/{relay}/p2p-circuit")))
            .collect();
        many.push(a("/ip4/9.9.9.9/tcp/1"));
        let (kept, _) = filter_remote(many, false);
        assert_eq!(
            kept.iter()
                .filter(|a| a.to_string().contains("p2p-circuit"))
                .count(),
            MAX_CIRCUIT_ADDRS
        );
        assert!(kept.contains(&a("/ip4/9.9.9.9/tcp/1")));
    }

    #[test]
    fn auto_mode_follows_the_nodes_own_addresses() {
        let public = [a("/ip4/0.0.0.0/tcp/4001")];
        let lo = [a("/ip4/127.0.0.1/tcp/4001")];
        let boot = [a("/ip4/172.18.0.2/tcp/4001")];
        assert!(!PrivateNetwork::Auto.resolve(&public, &[]));
        assert!(PrivateNetwork::Auto.resolve(&lo, &[]));
        assert!(PrivateNetwork::Auto.resolve(&public, &boot));
        assert!(!PrivateNetwork::Off.resolve(&lo, &boot));
        assert!(PrivateNetwork::On.resolve(&public, &[]));
    }
}
